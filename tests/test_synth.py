import subprocess
import sys

import cv2
import numpy as np
import pytest

from neuralworld.capture import open_capture
from neuralworld.capture.scene import Renderer, intrinsics, make_scene
from neuralworld.capture.synth import render_poses
from neuralworld.capture.trajectory import WalkLimits, walk
from neuralworld.cli import main
from neuralworld.controls import walk_pose
from neuralworld.errors import UserError
from neuralworld.geometry import matrix_to_quat, roll_pitch


def _trail_pose(scene, index=0, turn=0.0, pitch=0.0):
    """Standing on the trail at eye height, looking along it (yaw + turn)."""
    p0, p1 = scene.trail[index], scene.trail[index + 8]
    yaw = np.arctan2(p1[1] - p0[1], p1[0] - p0[0]) + turn
    return walk_pose([p0[0], p0[1], scene.height_at(*p0) + 1.6], yaw, pitch)


def test_synth_capture_passes_the_checks_of_an_imported_one(tmp_path):
    out = tmp_path / "cap"
    assert main(["synth", "-o", str(out), "--frames", "12", "--size", "64x48", "--seed", "2"]) == 0
    cap = open_capture(out)
    assert cap.frames.shape == (12, 48, 64, 3) and cap.frames.dtype == np.uint8
    assert cap.meta["motion"] == {"kind": "pose", "source": "synthetic"}
    assert cap.meta["fps"] == 30 and np.allclose(np.diff(cap.times), 1 / 30)
    assert set(cap.table) >= {"t", "tx", "ty", "tz", "qx", "qy", "qz", "qw", "roll", "pitch", "valid"}
    assert np.all(np.isfinite(cap.poses)) and cap.valid.all()
    controls = cap.controls()
    assert controls.shape == (12, 16) and np.all(controls[1:, 15] == 1)
    assert set(cap.meta["intrinsics"]) == {"fx", "fy", "cx", "cy"}
    assert cap.meta["intrinsics"] == pytest.approx(intrinsics(64, 48))
    assert cap.meta["synth"]["seed"] == 2 and cap.meta["synth"]["scene"] == "trail"
    # the eye is 1.6 m above the ground, and the frames show a place, not a flat colour
    scene = make_scene("trail", 2)
    eye = cap.poses[:, 2, 3] - scene.height_at(cap.poses[:, 0, 3], cap.poses[:, 1, 3])
    assert np.all(np.abs(eye - 1.6) < 0.1)
    assert cap.frames.std(axis=(1, 2, 3)).min() > 10
    # the frames are the scene seen from the recorded poses
    assert np.array_equal(render_poses(cap.poses[[0, 7]], 64, 48, seed=2), cap.frames[[0, 7]])
    # an existing output is refused
    assert main(["synth", "-o", str(out), "--frames", "2", "--size", "64x48"]) == 2
    # a walk of a single frame (nothing to differentiate) is a capture too
    assert main(["synth", "-o", str(tmp_path / "one"), "--frames", "1", "--size", "64x48", "--seed", "2"]) == 0
    one = open_capture(tmp_path / "one")
    assert len(one) == 1 and np.allclose(one.poses[0], walk(scene, 1, seed=2)[0])


@pytest.mark.slow
def test_rendering_is_deterministic_across_calls_and_processes(tmp_path):
    scene = make_scene("trail", 5)
    poses = np.stack([_trail_pose(scene, 40), _trail_pose(scene, 400, turn=1.0, pitch=-0.3)])
    first = render_poses(poses, 64, 48, seed=5)
    assert np.array_equal(first, render_poses(poses, 64, 48, seed=5))
    assert not np.array_equal(first[0], first[1])
    np.save(tmp_path / "poses.npy", poses)
    code = ("import numpy as np, sys; from neuralworld.capture.synth import render_poses; "
            "np.save(sys.argv[2], render_poses(np.load(sys.argv[1]), 64, 48, seed=5))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "poses.npy"), str(tmp_path / "frames.npy")],
                   check=True)
    assert np.array_equal(first, np.load(tmp_path / "frames.npy"))
    # another seed is another place
    assert not np.array_equal(first[0], render_poses(poses[:1], 64, 48, seed=6)[0])


def _silhouette_width(with_object, without_object):
    """Median width in pixels of what differs between two renders, over the middle rows."""
    h = with_object.shape[0]
    differs = np.abs(with_object.astype(int) - without_object.astype(int)).sum(-1) > 24
    return float(np.median(differs[h // 2 - 6: h // 2 + 6].sum(1)))


def test_moving_forward_enlarges_what_is_ahead():
    full = make_scene("trail", 1)
    conifers = np.unique(full.owners["cone"])
    tree = int(conifers[0])  # a conifer: its crown starts well above the eye, so the eye sees the trunk
    x, y = full.obstacles[full.obstacles[:, 3] == tree][0, :2]
    one_tree, nothing = full.only([tree]), full.only([])
    # walking forward from 9 m to 4.5 m in front of the trunk, heading +x toward it
    poses = [walk_pose([x - d, y, full.height_at(x - d, y) + 1.6], 0.0, 0.0) for d in (9.0, 4.5)]
    images = []
    for scene in (one_tree, nothing):
        with Renderer(scene, 160, 120) as renderer:
            images.append([renderer.render(pose) for pose in poses])
    widths = [_silhouette_width(images[0][i], images[1][i]) for i in range(2)]
    assert widths[0] >= 3
    assert widths[1] / widths[0] == pytest.approx(2.0, rel=0.2)  # apparent size ~ 1 / distance


def test_turning_left_moves_the_image_content_right():
    scene = make_scene("trail", 3)
    width, height, turn = 128, 96, 0.08
    a, b = render_poses([_trail_pose(scene, 200), _trail_pose(scene, 200, turn=turn)], width, height, seed=3)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) for im in (a, b)]
    (dx, dy), _ = cv2.phaseCorrelate(*gray, window=cv2.createHanningWindow((width, height), cv2.CV_32F))
    expected = intrinsics(width, height)["fx"] * np.tan(turn)  # ~7 pixels
    assert dx == pytest.approx(expected, rel=0.3)
    assert abs(dy) < 1.5


def test_walk_looks_like_a_person_with_a_phone():
    scene = make_scene("trail", 0)
    fps, limits = 30.0, WalkLimits()
    poses = walk(scene, 1800, fps, seed=4)
    assert np.array_equal(poses, walk(scene, 1800, fps, seed=4))
    pos = poses[:, :3, 3]
    velocity = np.diff(pos, axis=0) * fps
    speed = np.linalg.norm(velocity[:, :2], axis=1)
    assert 0.8 < speed.mean() < 1.7 and speed.max() < 2.2
    assert (speed < 0.2).mean() > 0.01  # it stops now and then
    assert np.linalg.norm(np.diff(velocity, axis=0) * fps, axis=1).max() <= 20.0
    forward = poses[:, :3, 2]
    yaw = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
    turn_rate = np.abs(np.diff(yaw)) * fps
    assert turn_rate.max() <= limits.max_turn_rate and turn_rate.max() > 1.0  # it looks around
    roll, pitch = roll_pitch(poses[:, :3, :3]).T
    assert pitch.min() >= -1.5 and pitch.max() <= 0.75 and np.abs(np.median(pitch)) < 0.2
    assert np.abs(roll).max() < 0.1
    # it stays near the trail, and never walks into a trunk or bush
    from scipy.spatial import cKDTree
    assert cKDTree(scene.trail).query(pos[:, :2])[0].max() < 12
    dist, idx = cKDTree(scene.obstacles[:, :2]).query(pos[:, :2])
    assert np.all(dist - scene.obstacles[idx, 2] > 0.2)


def test_trajectory_files_tum_and_npy(tmp_path):
    scene = make_scene("trail", 0)
    poses = walk(scene, 6, 30.0, seed=1)
    times = 10 + np.array([0, 0.05, 0.1, 0.2, 0.25, 0.3])
    q = matrix_to_quat(poses[:, :3, :3])
    lines = ["# t tx ty tz qx qy qz qw"] + [" ".join(f"{v:.9f}" for v in [t, *p[:3, 3], *qq])
                                            for t, p, qq in zip(times, poses, q)]
    (tmp_path / "walk.txt").write_text("\n".join(lines) + "\n")
    assert main(["synth", "-o", str(tmp_path / "tum"), "--trajectory", str(tmp_path / "walk.txt"),
                 "--size", "32x24"]) == 0
    cap = open_capture(tmp_path / "tum")
    assert len(cap) == 6 and np.allclose(cap.times, times) and np.allclose(cap.poses, poses, atol=1e-6)
    np.save(tmp_path / "walk.npy", poses)
    assert main(["synth", "-o", str(tmp_path / "npy"), "--trajectory", str(tmp_path / "walk.npy"),
                 "--size", "32x24", "--fps", "10"]) == 0
    cap2 = open_capture(tmp_path / "npy")
    assert np.allclose(cap2.times, np.arange(6) / 10) and np.allclose(cap2.poses, poses, atol=1e-6)
    # the same poses (up to the text's rounding) give the same frames
    assert np.mean(np.abs(cap.frames.astype(int) - cap2.frames.astype(int)) > 2) < 0.01
    np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
    assert main(["synth", "-o", str(tmp_path / "bad"), "--trajectory", str(tmp_path / "bad.npy")]) == 2
    assert not (tmp_path / "bad").exists()


def test_missing_egl_says_what_to_install(monkeypatch):
    import moderngl

    def unavailable(**kwargs):
        raise moderngl.Error("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", unavailable)
    with pytest.raises(UserError, match="libegl1"):
        Renderer(make_scene("trail", 0), 32, 24)
