"""The coordinate convention of the whole project, in one place.

Camera axes are OpenCV's: x right, y down, z forward. The world is right-handed with z up,
in metres. A pose is the 4x4 camera-to-world matrix T = [R | t]: it maps a point in camera
coordinates into the world, so R's columns are the camera's right, down and forward axes
written in world coordinates and t is the camera's position.

Gravity-relative angles of a camera (radians):
  pitch: elevation of the forward axis above the horizon (+ looking up), asin(forward . up)
  roll:  rotation about the forward axis, 0 when the right axis is level, + when the camera's
         right side is raised (world up leans toward camera +x)
  yaw:   heading of the forward axis seen from above, atan2(forward_y, forward_x)
`camera_rotation` builds R from yaw, pitch and roll; `roll_pitch` reads roll and pitch back.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

CONVENTION = {
    "camera_axes": "opencv: x right, y down, z forward",
    "world_axes": "right-handed, z up, metres",
    "pose": "camera-to-world 4x4 [R|t]; R columns = camera axes in world coordinates, t = camera position",
    "roll_pitch": "radians; pitch = asin(forward.up), + looking up; roll = atan2(up.x_cam, -up.y_cam), + right side raised",
}

UP = np.array([0.0, 0.0, 1.0])

# Fixed change of world axes for sources whose world has y down and z forward (KITTI, and any
# world taken from an OpenCV camera's own frame): x stays, z_new = -y_old (up), y_new = z_old.
OPENCV_WORLD_TO_ZUP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
# A point in our (OpenCV) camera axes -> the same point in OpenGL / ARKit camera axes
# (x right, y up, z backward). Its own inverse.
OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0])
# ARKit / OpenGL worlds are y up: x stays, z_new = y_old, y_new = -z_old.
YUP_WORLD_TO_ZUP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations and (..., 3) positions -> (..., 4, 4) poses."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    R, t = T[..., :3, :3], T[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return make_pose(Rt, -np.einsum("...ij,...j->...i", Rt, t))


def relative_poses(T: np.ndarray) -> np.ndarray:
    """(N,4,4) camera-to-world -> (N-1,4,4) inv(T[i-1]) @ T[i]: frame i's camera in frame i-1's axes."""
    return invert_pose(T[:-1]) @ T[1:]


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(np.asarray(q_xyzw, np.float64)).as_matrix()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions x, y, z, w with w >= 0."""
    q = Rotation.from_matrix(np.asarray(R, np.float64)).as_quat()
    return q * np.where(q[..., 3:4] < 0, -1.0, 1.0)


def rotation_angle(R: np.ndarray) -> np.ndarray:
    """Angle in radians of (..., 3, 3) rotations."""
    return np.linalg.norm(Rotation.from_matrix(np.asarray(R, np.float64)).as_rotvec(), axis=-1)


def roll_pitch(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) camera-to-world rotations -> (..., 2) gravity-relative roll, pitch in radians."""
    up_cam = np.einsum("...ji,j->...i", np.asarray(R, np.float64), UP)  # R^T @ up: world up in camera axes
    pitch = np.arcsin(np.clip(up_cam[..., 2], -1.0, 1.0))
    roll = np.arctan2(up_cam[..., 0], -up_cam[..., 1])
    return np.stack([roll, pitch], axis=-1)


def camera_rotation(yaw, pitch, roll=0.0) -> np.ndarray:
    """Camera-to-world rotation of a camera heading `yaw` (radians, counter-clockwise from world +x,
    seen from above), looking `pitch` above the horizon, rolled by `roll` (right side up is +).
    Broadcasts over arrays; returns (..., 3, 3). Inverse of `roll_pitch` for pitch and roll."""
    yaw, pitch, roll = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (yaw, pitch, roll)))
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.stack([cy * cp, sy * cp, sp], -1)
    right0 = np.stack([sy, -cy, np.zeros_like(yaw)], -1)  # level right axis
    down0 = np.cross(forward, right0)  # completes a right-handed (right, down, forward) frame
    # roll about forward: + raises the right side, i.e. right tilts toward up (= -down)
    cr, sr = np.cos(roll)[..., None], np.sin(roll)[..., None]
    right = cr * right0 - sr * down0
    down = sr * right0 + cr * down0
    return np.stack([right, down, forward], axis=-1)


def interpolate_poses(t_src: np.ndarray, T_src: np.ndarray, t_dst: np.ndarray) -> np.ndarray:
    """Poses at times t_dst from poses at increasing times t_src: positions linearly, rotations by
    slerp. t_dst must lie within [t_src[0], t_src[-1]] (callers check and say so)."""
    t_src, t_dst = np.asarray(t_src, np.float64), np.asarray(t_dst, np.float64)
    slerp = Slerp(t_src, Rotation.from_matrix(T_src[:, :3, :3]))
    R = slerp(np.clip(t_dst, t_src[0], t_src[-1])).as_matrix()
    pos = np.stack([np.interp(t_dst, t_src, T_src[:, i, 3]) for i in range(3)], axis=-1)
    return make_pose(R, pos)


def change_world(T: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Re-express camera-to-world poses in a world rotated by W (new = W @ old)."""
    return make_pose(W, np.zeros(3)) @ T


def change_camera(T: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Poses of a source whose camera coordinates are p_src = C @ p_ours (e.g. C =
    OPENCV_TO_OPENGL_CAMERA for ARKit) -> poses in our camera axes: T_src @ C."""
    return T @ make_pose(np.asarray(C, np.float64), np.zeros(3))
