"""The control vector a world is driven by, computed in one place.

Pose worlds use the reference system's 16 numbers per generated frame i (the motion that
takes frame i-1 to frame i):
  [0..11]  the 3x4 relative pose inv(T[i-1]) @ T[i], rows flattened (rotation and translation
           in frame i-1's camera axes, metres)
  [12..13] frame i-1's gravity-relative roll and pitch (radians, see geometry.CONVENTION)
  [14]     the time step t[i] - t[i-1] in seconds
  [15]     valid flag: 1 when both frames' motion is trusted, else 0
Row 0 has no previous frame: identity motion, its own roll/pitch, dt 0, valid 0.

Action worlds (a car's steering and throttle, a game's keys) use their own named values as
recorded; the world's control schema holds their names and ranges.
"""

from __future__ import annotations

import numpy as np

from neuralworld.geometry import camera_rotation, make_pose, relative_poses, roll_pitch

POSE_CONTROL_NAMES = [
    "r00", "r01", "r02", "tx",
    "r10", "r11", "r12", "ty",
    "r20", "r21", "r22", "tz",
    "roll", "pitch", "dt", "valid",
]
POSE_KIND = "pose6dof"
ACTION_KIND = "actions"


def pose_controls(poses: np.ndarray, times: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(N,4,4) camera-to-world poses, (N,) seconds, (N,) bool -> (N,16) float32 control vectors."""
    poses = np.asarray(poses, np.float64)
    n = len(poses)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros((n, 16), np.float64)
    rel = np.concatenate([np.eye(4)[None], relative_poses(poses)]) if n > 1 else np.eye(4)[None]
    out[:, :12] = rel[:, :3, :4].reshape(n, 12)
    rp = roll_pitch(poses[:, :3, :3])
    out[:, 12:14] = np.concatenate([rp[:1], rp[:-1]])
    out[1:, 14] = np.diff(np.asarray(times, np.float64))
    out[1:, 15] = valid[1:] & valid[:-1]
    return out.astype(np.float32)


def walk_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose of a player at `position` (metres, world z up) heading `yaw`, looking
    `pitch` above the horizon, roll 0: the state the players (Python and browser) integrate."""
    return make_pose(camera_rotation(yaw, pitch, 0.0), position)
