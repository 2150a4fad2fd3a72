"""Visual odometry on small rendered sequences with known camera motion."""

import av
import cv2
import numpy as np
import pytest

from neuralworld.capture import open_capture
from neuralworld.capture.odometry import (direction_given_rotation, estimate_poses, fit_rotation,
                                          intrinsics_from_fov)
from neuralworld.cli import main
from neuralworld.errors import UserError
from neuralworld.geometry import make_pose, relative_poses, roll_pitch, rotation_angle
from scipy.spatial.transform import Rotation

W, H = 160, 120
INTR = {"fx": 110.0, "fy": 110.0, "cx": (W - 1) / 2, "cy": (H - 1) / 2}


def scene(rng, n=700):
    """Random points in front of the first camera (OpenCV axes), with grey levels and sizes."""
    pts = np.c_[rng.uniform(-8, 8, n), rng.uniform(-4, 4, n), rng.uniform(4, 20, n)]
    return pts, rng.integers(90, 255, n), rng.uniform(1.0, 2.5, n)


def render(points, shades, radii, T):
    """Draw the points as anti-aliased blobs seen by a camera with camera-to-world pose T."""
    cam = (points - T[:3, 3]) @ T[:3, :3]  # (P, 3) in camera axes
    order = np.argsort(-cam[:, 2])  # far first, near blobs cover far ones
    img = np.full((H, W), 30, np.uint8)
    for i in order:
        x, y, z = cam[i]
        if z < 0.5:
            continue
        u, v = INTR["fx"] * x / z + INTR["cx"], INTR["fy"] * y / z + INTR["cy"]
        if -5 < u < W + 5 and -5 < v < H + 5:
            r = max(1.0, radii[i] * 6 / z)
            cv2.circle(img, (int(u * 16), int(v * 16)), int(r * 16), int(shades[i]), -1, cv2.LINE_AA, 4)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.repeat(img[..., None], 3, axis=2)


def trajectory(n, step=(0.0, 0.0, 0.15), yaw_deg=0.4):
    """Camera-to-world poses in the first camera's axes: moving by `step` (camera axes) and
    turning by yaw_deg about the camera's down axis every frame."""
    T = [np.eye(4)]
    d = make_pose(Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix(), np.array(step))
    for _ in range(n - 1):
        T.append(T[-1] @ d)
    return np.stack(T)


def frames_of(poses, rng):
    pts, shades, radii = scene(rng)
    return np.stack([render(pts, shades, radii, T) for T in poses])


def rel_errors(est, true):
    re, rt = relative_poses(est), relative_poses(true)
    rot = np.degrees(rotation_angle(np.swapaxes(re[:, :3, :3], 1, 2) @ rt[:, :3, :3]))
    te, tt = re[:, :3, 3], rt[:, :3, 3]
    cos = np.sum(te * tt, 1) / np.maximum(np.linalg.norm(te, axis=1) * np.linalg.norm(tt, axis=1), 1e-12)
    return rot, np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture(scope="module")
def walk():
    rng = np.random.default_rng(1)
    true = trajectory(24)
    return frames_of(true, rng), np.arange(24) * 0.1, true


def test_recovers_rotation_direction_and_scale(walk):
    frames, times, true = walk
    poses, valid, report = estimate_poses(frames, times, INTR, speed=1.5)
    rot, direction = rel_errors(poses, true)
    assert valid.all() and report["tracking_failures"] == 0
    assert np.median(rot) < 0.1
    assert np.median(direction) < 5.0
    # scale rule: the given speed (1.5 m/s * 0.1 s = the true 0.15 m per frame)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.allclose(steps[report["static_frames"]:], 0.15, atol=1e-6)
    # world z up: the first camera is level and the motion stays level
    assert np.allclose(roll_pitch(poses[0, :3, :3]), 0, atol=1e-9)
    assert np.abs(np.degrees(roll_pitch(poses[:, :3, :3]))).max() < 1.0
    assert abs(poses[-1, 2, 3]) < 0.2


def test_default_scale_is_walking_speed_and_fov_guess(walk):
    frames, times, _ = walk
    poses, _, report = estimate_poses(frames, times, None, fov_deg=72.0)
    assert "72" in report["intrinsics_source"]
    assert report["intrinsics"]["fx"] == pytest.approx(intrinsics_from_fov(W, H, 72.0)["fx"], rel=1e-3)
    assert "1.4" in report["scale"]
    assert report["distance_m"] == pytest.approx(1.4 * 0.1 * report["moving_frames"], rel=1e-6)


def test_given_rotations_are_used_as_is(walk):
    frames, times, true = walk
    level = Rotation.from_euler("x", -90, degrees=True).as_matrix()  # camera forward -> world +y, level
    given = level @ true[:, :3, :3]
    poses, valid, _ = estimate_poses(frames, times, INTR, rotations=given)
    assert np.allclose(poses[:, :3, :3], given)
    _, direction = rel_errors(poses, true)
    assert np.median(direction) < 5.0 and valid.all()


def test_pure_rotation_gives_zero_translation():
    rng = np.random.default_rng(2)
    true = trajectory(14, step=(0, 0, 0), yaw_deg=1.0)
    poses, valid, report = estimate_poses(frames_of(true, rng), np.arange(14) / 30, INTR)
    rot, _ = rel_errors(poses, true)
    assert np.median(rot) < 0.1 and valid.all()
    assert report["moving_frames"] == 0
    assert np.allclose(poses[:, :3, 3], 0)


def test_static_video_is_refused():
    rng = np.random.default_rng(3)
    frames = frames_of(trajectory(20, step=(0, 0, 0), yaw_deg=0.0), rng)
    with pytest.raises(UserError, match="does not move"):
        estimate_poses(frames, np.arange(20) / 30, INTR, name="still.mp4")


def test_dark_and_noise_frames_are_flagged_not_fatal(walk):
    frames, times, true = walk
    frames = frames.copy()
    frames[8] = 2  # black frame
    frames[9] = 0
    frames[15] = np.random.default_rng(4).integers(0, 255, frames[15].shape, dtype=np.uint8)  # untrackable
    poses, valid, report = estimate_poses(frames, times, INTR)
    assert report["dark_or_blank_frames"] == 2
    assert report["tracking_failures"] >= 1
    assert not valid[8] and not valid[9] and not valid[10] and not valid[15]
    assert valid[:8].all() and valid[11:15].all() and valid[17:].all()
    assert np.allclose(poses[8], poses[7]) and np.allclose(poses[10], poses[7])  # held
    rot, _ = rel_errors(poses, true)
    ok = valid[1:] & valid[:-1]
    assert np.median(rot[ok]) < 0.15


def test_blank_video_is_refused():
    with pytest.raises(UserError, match="too dark or blank"):
        estimate_poses(np.zeros((5, H, W, 3), np.uint8), np.arange(5) / 30, INTR)


def test_geometry_helpers(rng):
    R = Rotation.from_rotvec([0.02, -0.05, 0.01]).as_matrix()
    c = np.array([0.3, -0.1, 0.9]) / np.linalg.norm([0.3, -0.1, 0.9])
    X = np.c_[rng.uniform(-3, 3, 50), rng.uniform(-2, 2, 50), rng.uniform(4, 10, 50)]  # keyframe axes
    b_key = X / np.linalg.norm(X, axis=1, keepdims=True)
    Xc = (X - c) @ R  # the same points in the current camera's axes
    b_cur = Xc / np.linalg.norm(Xc, axis=1, keepdims=True)
    assert np.allclose(direction_given_rotation(b_key, b_cur, R), c, atol=1e-6)
    # far points: the rotation-only fit recovers R
    far = X * 1e4
    b_far = (far - c) @ R
    b_far /= np.linalg.norm(b_far, axis=1, keepdims=True)
    assert np.allclose(fit_rotation(b_key, b_far), R, atol=1e-4)


def encode(path, frames, fps=10):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt, s.options = W, H, "yuv420p", {"crf": "10"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())
    return path


def test_import_vo_flags_dark_frames_and_scales(tmp_path, walk, capsys):
    frames, _, true = walk
    frames = frames.copy()
    frames[8] = 0
    video = encode(tmp_path / "walk.mp4", frames)
    rc = main(["import", str(video), "-o", str(tmp_path / "cap"), "--motion-format", "vo", "--size", f"{W}x{H}",
               "--intrinsics", f"110,110,{(W - 1) / 2},{(H - 1) / 2}", "--speed", "1.5"])
    assert rc == 0, capsys.readouterr().err
    assert "too dark or blank" in capsys.readouterr().err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["motion"] == {"kind": "pose", "source": "odometry"}
    assert cap.meta["import"]["motion_report"]["dark_or_blank_frames"] == 1
    controls = cap.controls()
    assert controls[8, 15] == 0 and controls[9, 15] == 0 and controls[3:8, 15].all() and controls[12:, 15].all()
    steps = np.linalg.norm(controls[12:, [3, 7, 11]], axis=1)  # metres per frame while moving
    assert np.allclose(steps, 0.15, atol=1e-4)


def test_import_static_video(tmp_path, capsys):
    frames = frames_of(trajectory(12, step=(0, 0, 0), yaw_deg=0.0), np.random.default_rng(5))
    video = encode(tmp_path / "still.mp4", frames)
    rc = main(["import", str(video), "-o", str(tmp_path / "vo"), "--motion-format", "vo", "--size", f"{W}x{H}"])
    assert rc == 2 and "does not move" in capsys.readouterr().err
    assert not (tmp_path / "vo").exists()
    rc = main(["import", str(video), "-o", str(tmp_path / "auto"), "--size", f"{W}x{H}"])
    assert rc == 0 and "no motion" in capsys.readouterr().err
    assert open_capture(tmp_path / "auto").motion_kind == "none"
    rc = main(["import", str(video), "-o", str(tmp_path / "tel"), "--motion-format", "telemetry"])
    assert rc == 2 and "no camera telemetry" in capsys.readouterr().err
