import numpy as np
import pytest

from neuralworld.controls import pose_controls, walk_pose
from neuralworld.geometry import (camera_rotation, interpolate_poses, invert_pose, make_pose,
                                  matrix_to_quat, quat_to_matrix, roll_pitch, rotation_angle)


def test_camera_rotation_axes_and_roll_pitch_round_trip(rng):
    yaw, pitch, roll = rng.uniform(-3, 3, 50), rng.uniform(-1.4, 0.7, 50), rng.uniform(-0.5, 0.5, 50)
    R = camera_rotation(yaw, pitch, roll)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(roll_pitch(R), np.stack([roll, pitch], 1), atol=1e-9)
    level = camera_rotation(0.0, 0.0)
    assert np.allclose(level[:, 2], [1, 0, 0])  # forward = world +x at yaw 0
    assert np.allclose(level[:, 1], [0, 0, -1])  # camera down = world down


def test_quaternion_round_trip_and_slerp_midpoint():
    R = camera_rotation(0.3, 0.2, 0.1)
    assert np.allclose(quat_to_matrix(matrix_to_quat(R)), R)
    T0, T1 = make_pose(camera_rotation(0.0, 0.0), [0, 0, 0]), make_pose(camera_rotation(1.0, 0.0), [2, 0, 0])
    mid = interpolate_poses([0.0, 1.0], np.stack([T0, T1]), [0.5])[0]
    assert np.allclose(mid[:3, :3], camera_rotation(0.5, 0.0)) and np.allclose(mid[:3, 3], [1, 0, 0])


def test_pose_controls_walk_forward_and_turn():
    # walk 1.5 m/s forward along +x for 3 frames at 30 fps, then turn left in place
    times = np.arange(4) / 30
    poses = np.stack([walk_pose([0.05 * i, 0, 1.6], 0.0, 0.0) for i in range(3)]
                     + [walk_pose([0.1, 0, 1.6], 0.1, 0.0)])
    c = pose_controls(poses, times)
    assert c.shape == (4, 16) and c.dtype == np.float32
    assert c[0, 15] == 0 and np.all(c[1:, 15] == 1)
    assert np.allclose(c[1:, 14], 1 / 30)
    rel = c[1].reshape(-1)[:12].reshape(3, 4)
    assert np.allclose(rel[:, :3], np.eye(3), atol=1e-6)
    assert np.allclose(rel[:, 3], [0, 0, 0.05], atol=1e-6)  # forward is camera +z
    turn = c[3, :12].reshape(3, 4)[:, :3]
    assert rotation_angle(turn) == pytest.approx(0.1, abs=1e-6)
    # a left turn (counter-clockwise from above) rotates the camera about its -y (up) axis
    assert turn[0, 2] < 0  # new forward has a component toward the old camera's left (-x)
    T = invert_pose(poses[2]) @ poses[3]
    assert np.allclose(T[:3, :4].reshape(12), c[3, :12], atol=1e-6)
