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
recorded. A world's ControlSchema says which kind it takes, their names, the ranges seen in
training and the normalisation the network applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from neuralworld.errors import UserError
from neuralworld.geometry import camera_rotation, invert_pose, make_pose, relative_poses, roll_pitch

POSE_CONTROL_NAMES = [
    "r00", "r01", "r02", "tx",
    "r10", "r11", "r12", "ty",
    "r20", "r21", "r22", "tz",
    "roll", "pitch", "dt", "valid",
]
POSE_KIND = "pose6dof"
ACTION_KIND = "actions"
# In "2d" control mode a pose world's network sees only these two entries of the 16-number
# vector: tz (forward motion, metres) and r02 (sine of the yaw change about the camera's y axis).
POSE_2D_INDEX = (11, 2)


@dataclass(frozen=True)
class ControlSchema:
    """What a world is driven by; world.json's "controls" holds it as JSON (to_json / from_json)."""
    kind: str  # POSE_KIND or ACTION_KIND
    names: tuple[str, ...]  # one per entry of the control vector
    ranges: tuple[tuple[float, float], ...]  # (min, max) of each entry over the training captures
    mean: tuple[float, ...]  # the network normalises entry i as (value - mean[i]) / scale[i]
    scale: tuple[float, ...]
    time_steps: tuple[float, ...] = ()  # seconds per step the world was trained on (empty: unknown)

    def __post_init__(self):
        n = len(self.names)
        if self.kind not in (POSE_KIND, ACTION_KIND) or not n:
            raise UserError(f"controls: kind {self.kind!r} with {n} names (expected {POSE_KIND} or {ACTION_KIND})")
        if not (len(self.ranges) == len(self.mean) == len(self.scale) == n):
            raise UserError(f"controls: {n} names but {len(self.ranges)} ranges, {len(self.mean)} means, "
                            f"{len(self.scale)} scales")
        values = np.array([*np.ravel(self.ranges), *self.mean, *self.scale], np.float64)
        if not np.isfinite(values).all() or min(self.scale) <= 0:
            raise UserError("controls: ranges, means and scales must be finite numbers, scales above 0")

    @property
    def dim(self) -> int:
        return len(self.names)

    def network_index(self, control_mode: str) -> list[int]:
        """The entries a network of `control_mode` sees ("2d" pose worlds: forward motion and yaw)."""
        return list(POSE_2D_INDEX) if control_mode == "2d" and self.kind == POSE_KIND else list(range(self.dim))

    def clip(self, controls: np.ndarray) -> np.ndarray:
        """(..., C) controls with every entry kept within the range seen in training."""
        lo, hi = np.array(self.ranges, np.float32).T
        return np.clip(np.asarray(controls, np.float32), lo, hi)

    def split_move(self, controls: np.ndarray) -> np.ndarray:
        """(C,) one move -> (k, C) the same move as k equal moves. A pose move that lasts k >= 2
        times the longest step the world was trained on (a 30 frames/s capture's 1/30 s for a world
        trained at 1/60 s) is taken in k steps it knows, as the page does (it steps at trained steps
        following real time); any other move is one step, (1, C).

        The k moves compose to the original: rotation R^(1/k) (its axis, 1/k of its angle),
        translation t_k solving (I + R_k + ... + R_k^(k-1)) t_k = t; each carries the roll and pitch
        of the frame it starts from, dt / k and the same valid flag."""
        c = np.asarray(controls, np.float64).reshape(-1)
        timed = self.kind == POSE_KIND and self.time_steps and len(c) == self.dim
        k = int(round(c[14] / max(self.time_steps))) if timed else 1
        if k < 2:
            return c[None].astype(np.float32)
        move = c[:12].reshape(3, 4)
        R_k = Rotation.from_rotvec(Rotation.from_matrix(move[:, :3]).as_rotvec() / k).as_matrix()
        powers = [np.linalg.matrix_power(R_k, j) for j in range(k)]  # R_k^j: the turn before substep j
        t_k = np.linalg.solve(sum(powers), move[:, 3])
        start = camera_rotation(0.0, c[13], c[12])  # an orientation with the move's roll and pitch
        out = np.repeat(c[None], k, axis=0)
        out[:, :12] = np.concatenate([R_k, t_k[:, None]], 1).reshape(12)
        out[:, 12:14] = roll_pitch(start @ np.stack(powers))  # of the frame each substep starts from
        out[:, 14] = c[14] / k
        return out.astype(np.float32)

    @classmethod
    def fit(cls, kind: str, names, values: np.ndarray, time_steps=()) -> "ControlSchema":
        """The schema of (N, C) training controls: their ranges, mean and standard deviation
        (1 for constant entries such as the valid flag, which then pass unscaled)."""
        values = np.asarray(values)
        std = values.std(axis=0)
        return cls(kind, tuple(names), tuple(zip(values.min(0).tolist(), values.max(0).tolist())),
                   tuple(values.mean(0).tolist()), tuple(np.where(std > 1e-6, std, 1.0).tolist()),
                   tuple(float(t) for t in time_steps))

    @classmethod
    def identity(cls, kind: str = POSE_KIND, names=None) -> "ControlSchema":
        """No normalisation (mean 0, scale 1) and ranges -1..1: for networks with random weights
        (speed figures, tests)."""
        names = tuple(names or (POSE_CONTROL_NAMES if kind == POSE_KIND else ("steering", "throttle")))
        return cls(kind, names, ((-1.0, 1.0),) * len(names), (0.0,) * len(names), (1.0,) * len(names))

    def to_json(self) -> dict:
        return {"kind": self.kind, "names": list(self.names), "ranges": [list(r) for r in self.ranges],
                "mean": list(self.mean), "scale": list(self.scale), "time_steps": list(self.time_steps)}

    @classmethod
    def from_json(cls, d: dict) -> "ControlSchema":
        try:
            return cls(d["kind"], tuple(d["names"]), tuple((float(lo), float(hi)) for lo, hi in d["ranges"]),
                       tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["scale"]),
                       tuple(float(v) for v in d.get("time_steps", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"controls: not a control schema ({type(e).__name__}: {e})") from None


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


def pose_controls_between(poses: np.ndarray, times: np.ndarray, valid: np.ndarray, a: np.ndarray,
                          b: np.ndarray) -> np.ndarray:
    """The control vectors of the moves from frames `a` to frames `b` (index arrays of one shape),
    not only from one frame to the next: what a world stepping over several frames at once is
    given (training on every k-th frame). (..., 16) float32, the same numbers pose_controls gives
    for b = a + 1."""
    poses = np.asarray(poses, np.float64)
    a, b = np.asarray(a), np.asarray(b)
    out = np.zeros(a.shape + (16,), np.float64)
    out[..., :12] = (invert_pose(poses[a]) @ poses[b])[..., :3, :4].reshape(*a.shape, 12)
    out[..., 12:14] = roll_pitch(poses[a][..., :3, :3])
    out[..., 14] = np.asarray(times, np.float64)[b] - np.asarray(times, np.float64)[a]
    out[..., 15] = np.asarray(valid, bool)[a] & np.asarray(valid, bool)[b]
    return out.astype(np.float32)


def walk_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose of a player at `position` (metres, world z up) heading `yaw`, looking
    `pitch` above the horizon, roll 0: the state the players (Python and browser) integrate."""
    return make_pose(camera_rotation(yaw, pitch, 0.0), position)
