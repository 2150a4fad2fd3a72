"""Structure from motion (capture/sfm.py) on a small rendered sequence with known camera motion,
and `import`'s sfm and auto motion formats."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from neuralworld.capture import open_capture
from neuralworld.capture.sfm import _every_frame, estimate_poses_sfm, keyframes, level_world
from neuralworld.cli import main
from neuralworld.geometry import make_pose, roll_pitch

from test_odometry import INTR, H, W, encode, frames_of, rel_errors, trajectory


@pytest.fixture(scope="module")
def walk():
    """24 frames, 0.1 s apart: 0.15 m forward and 0.4 degrees to the right per frame."""
    true = trajectory(24)
    return frames_of(true, np.random.default_rng(1)), np.arange(24) * 0.1, true


def test_sfm_recovers_rotation_direction_and_scale(walk):
    frames, times, true = walk
    poses, valid, report = estimate_poses_sfm(frames, times, INTR, speed=1.5)
    assert valid.all() and report["registered_keyframes"] == report["keyframes"] == 24
    rot, direction = rel_errors(poses, true)
    assert np.median(rot) < 0.3 and np.median(direction) < 10.0
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.mean(steps) == pytest.approx(0.15, rel=1e-6)  # the scale rule: 1.5 m/s * 0.1 s while moving
    # and SfM's own scale is consistent along the path: its steps vary from run to run (its threads
    # order the work differently), seen from 0.137 to 0.165; a scale that drifts or jumps leaves 15%
    assert np.allclose(steps, 0.15, rtol=0.15)
    # our world: z up along the cameras' mean up, the first camera facing +x
    assert np.abs(np.degrees(roll_pitch(poses[:, :3, :3]))).max() < 1.0
    assert np.allclose(poses[0, :3, 2], [1, 0, 0], atol=0.02) and np.allclose(poses[0, :3, 3], 0)


def test_keyframes_are_about_ten_a_second_and_end_with_the_last_frame():
    assert np.array_equal(keyframes(np.arange(10) / 30), [0, 3, 6, 9])
    assert np.array_equal(keyframes(np.arange(11) / 30), [0, 3, 6, 9, 10])
    assert np.array_equal(keyframes(np.arange(5) / 10), np.arange(5))


def test_level_world_does_not_depend_on_the_reconstruction_world(walk):
    _, _, true = walk
    turned = make_pose(Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix(), [4, -2, 7]) @ true
    assert np.allclose(level_world(turned), level_world(true), atol=1e-9)
    # the true walk is level (it turns about the camera's down axis), so it stays level
    assert np.allclose(roll_pitch(level_world(true)[:, :3, :3]), 0, atol=1e-9)


def test_every_frame_interpolates_and_flags_what_sfm_did_not_place():
    times = np.arange(20) * 0.1
    keys = np.arange(0, 20, 2)  # every second frame is a keyframe
    index = np.array([2, 4, 10, 12, 14])  # 0 and 18 not registered; 6 and 8 missing between 4 and 10
    key_poses = make_pose(np.repeat(np.eye(3)[None], 5, 0), np.c_[index * 0.1, np.zeros(5), np.zeros(5)])
    poses, valid = _every_frame(times, keys, index, key_poses)
    assert np.allclose(poses[2:15, 0, 3], times[2:15])  # linear between registered keyframes
    assert np.allclose(poses[:2, 0, 3], 0.2) and np.allclose(poses[15:, 0, 3], 1.4)  # held outside
    assert not valid[:2].any() and not valid[15:].any() and not valid[5:10].any()
    assert valid[2:5].all() and valid[10:15].all()


def test_import_sfm_auto_and_budget(walk, tmp_path, capsys):
    frames, _, true = walk
    video = encode(tmp_path / "walk.mp4", frames)
    common = ["--size", f"{W}x{H}", "--intrinsics", f"110,110,{(W - 1) / 2},{(H - 1) / 2}", "--speed", "1.5"]
    assert main(["import", str(video), "-o", str(tmp_path / "auto")] + common) == 0
    cap = open_capture(tmp_path / "auto")
    assert cap.meta["motion"] == {"kind": "pose", "source": "sfm"}  # auto: no telemetry, SfM fits its budget
    assert cap.meta["import"]["motion_report"]["registered_keyframes"] == 24
    assert np.median(rel_errors(cap.poses, true)[0]) < 0.3
    capsys.readouterr()
    # too little time: an error for sfm, nothing written; auto falls back to visual odometry
    rc = main(["import", str(video), "-o", str(tmp_path / "sfm"), "--motion-format", "sfm", "--sfm-budget", "0.001"]
              + common)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "did not finish within its 0.001 s budget" in err[0]
    assert not (tmp_path / "sfm").exists()
    assert main(["import", str(video), "-o", str(tmp_path / "fallback"), "--sfm-budget", "0.001"] + common) == 0
    assert "using visual odometry" in capsys.readouterr().err
    assert open_capture(tmp_path / "fallback").meta["motion"]["source"] == "odometry"
