"""Camera telemetry -> poses, on synthetic streams in telemetry-parser's conventions."""

import av
import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from neuralworld.capture.telemetry import (IMU_TO_OPENGL, Streams, angular_speed, estimate_lag,
                                           integrate_gyro, poses_from_streams, read_telemetry_poses)
from neuralworld.errors import UserError
from neuralworld.geometry import OPENCV_TO_OPENGL_CAMERA, camera_rotation, relative_poses, roll_pitch, rotation_angle

FPS = 30.0


def true_rotations(n):
    """Our camera-to-world rotations: turning left at 20 deg/s, looking 10 deg down, rolling gently."""
    t = np.arange(n) / FPS
    return t, camera_rotation(np.radians(20) * t, np.radians(-10), np.radians(3) * np.sin(2 * t))


def streams_for(t, R, start_world=Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix(), imu_rate=200.0):
    """Streams as telemetry-parser gives them for a camera whose true orientation is R at times t:
    quaternions in OpenGL camera axes in an arbitrary (not level) start world, and an IMU."""
    R_gl = start_world @ R @ OPENCV_TO_OPENGL_CAMERA
    imu_t = np.arange(0, t[-1], 1 / imu_rate)
    R_imu = Slerp(t, Rotation.from_matrix(R_gl))(imu_t)
    body_rates = (R_imu[:-1].inv() * R_imu[1:]).as_rotvec() * imu_rate  # rad/s in body (OpenGL) axes
    body_rates = np.vstack([body_rates, body_rates[-1:]])
    up_world = start_world @ np.array([0.0, 0.0, 1.0])
    accl = R_imu.inv().apply(up_world) * 9.81  # at rest the accelerometer points up
    return Streams(camera="Test", quat_t=t, quat=Rotation.from_matrix(R_gl).as_quat(),
                   imu_t=imu_t, gyro=body_rates, accl=accl, found={"test": len(t)})


def test_orientation_is_levelled_and_matches_truth():
    t, R = true_rotations(60)
    poses, valid, report = poses_from_streams(streams_for(t, R), t)
    assert valid.all() and report["frames_outside_telemetry"] == 0
    assert report["orientation_source"] == "camera orientation"
    assert np.allclose(roll_pitch(poses[:, :3, :3]), roll_pitch(R), atol=np.radians(0.2))
    rel_err = rotation_angle(np.swapaxes(relative_poses(poses)[:, :3, :3], 1, 2) @ relative_poses(_pose(R))[:, :3, :3])
    assert np.degrees(rel_err).max() < 0.01
    assert report["median_angular_speed_deg_s"] == pytest.approx(20.0, rel=0.05)
    assert np.allclose(poses[:, :3, 3], 0)  # no GPS: the position is held


def _pose(R):
    T = np.zeros((len(R), 4, 4))
    T[:, :3, :3], T[:, 3, 3] = R, 1.0
    return T


def test_gyro_integration_when_no_orientation():
    t, R = true_rotations(60)
    s = streams_for(t, R)
    s.quat = s.quat_t = None
    poses, valid, report = poses_from_streams(s, t)
    assert "gyroscope" in report["orientation_source"]
    assert np.allclose(roll_pitch(poses[:, :3, :3]), roll_pitch(R), atol=np.radians(0.5))
    rel = np.swapaxes(relative_poses(poses)[:, :3, :3], 1, 2) @ relative_poses(_pose(R))[:, :3, :3]
    assert np.degrees(rotation_angle(rel)).max() < 0.1


def test_mahony_filter_removes_tilt_drift():
    # a still camera whose gyro has a bias: pure integration tilts away, the filter keeps it level
    t = np.arange(0, 20, 0.005)
    gyro = np.tile([0.01, 0.0, 0.0], (len(t), 1))  # rad/s bias about the camera's x axis
    accl = np.tile([0.0, 9.81, 0.0], (len(t), 1))  # level, at rest (OpenGL: +y up)
    drift = np.degrees(rotation_angle(integrate_gyro(t, gyro, accl, gain=0.0)[-1].as_matrix()))
    kept = Rotation.from_matrix(integrate_gyro(t, gyro, accl)[-1].as_matrix())
    tilt = np.degrees(np.arccos(kept.apply([0.0, 1.0, 0.0])[1]))
    assert drift > 10 and tilt < 2


def test_partial_coverage_flags_frames_outside():
    t, R = true_rotations(60)
    s = streams_for(t[:30], R[:30])
    poses, valid, report = poses_from_streams(s, t)
    assert valid[:30].all() and not valid[32:].any()
    assert report["frames_outside_telemetry"] >= 28 and "covers" in report["warning"]
    assert np.allclose(poses[40, :3, :3], poses[31, :3, :3])  # held at the last orientation
    with pytest.raises(UserError, match="does not overlap"):
        poses_from_streams(s, t + 100.0)


def test_lag_shifts_lookup_and_is_estimated():
    t, R = true_rotations(90)
    t_wave = np.arange(0, 3, 0.005)
    speed = np.abs(np.sin(3 * t_wave)) + 0.3 * np.sin(11 * t_wave) ** 2  # telemetry angular speed
    lag = 0.037
    mid = 0.5 * (t[:-1] + t[1:])
    video = np.interp(mid + lag, t_wave, speed)
    found, corr = estimate_lag(t, video, t_wave, speed)
    assert found == pytest.approx(lag, abs=0.002) and corr > 0.99
    s = streams_for(t, R)
    shifted, _, report = poses_from_streams(s, t[:60], lag_s=5 / FPS)
    assert np.allclose(relative_poses(shifted)[:, :3, :3], relative_poses(_pose(R[5:65]))[:, :3, :3], atol=1e-6)
    assert report["lag_s"] == pytest.approx(5 / FPS)


def test_gps_speed_moves_along_heading():
    t, R = true_rotations(31)
    s = streams_for(t, R)
    s.gps_t, s.gps_speed = np.array([0.0, 0.5, 1.0]), np.array([1.2, 1.2, 1.2])
    poses, _, report = poses_from_streams(s, t)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.allclose(steps, 1.2 / FPS) and np.allclose(poses[:, 2, 3], 0)
    assert report["speed"][0] == pytest.approx(1.2) and "GPS" in report["translation"]


def test_angular_speed():
    t = np.arange(10) / FPS
    R = camera_rotation(np.radians(20) * t, np.radians(-10))
    assert np.allclose(np.degrees(angular_speed(t, R)), 20.0)


def test_imu_axes_are_a_rotation():
    assert np.isclose(np.linalg.det(IMU_TO_OPENGL), 1.0)


def test_video_without_telemetry_is_refused(tmp_path):
    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("h264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(UserError, match="no camera telemetry.*--motion-format vo"):
        read_telemetry_poses(path, np.arange(5) / 10)
    with pytest.raises(UserError, match="no such file"):
        read_telemetry_poses(tmp_path / "missing.mp4", np.arange(5) / 10)
