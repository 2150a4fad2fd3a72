import json

import numpy as np
import pytest
import torch

from neuralworld import metrics
from neuralworld.capture.format import CaptureWriter, open_capture
from neuralworld.cli import main
from neuralworld.controls import ACTION_KIND, POSE_CONTROL_NAMES, POSE_KIND, ControlSchema
from neuralworld.evaluate import copy_last, evaluate_world
from neuralworld.heldout import plan_capture
from neuralworld.model.config import NetConfig
from neuralworld.world import World

H, W = 16, 16


def write_action_capture(path, frames: np.ndarray, actions=None, names=("steering", "throttle")):
    n = len(frames)
    actions = np.zeros((n, len(names))) if actions is None else actions
    with CaptureWriter(path, W if frames.shape[2] == W else frames.shape[2], frames.shape[1]) as w:
        for f in frames:
            w.add(f)
        w.finish(np.arange(n) / 10.0, source="test", fps=10.0, actions=actions, action_names=list(names))
    return path


def ramp_frames(n: int, rng, h=H, w=W) -> np.ndarray:
    """Distinct textured frames whose brightness drifts, so copy-last has a known error."""
    base = rng.integers(40, 190, (h, w, 3))
    return np.stack([np.clip(base + i, 0, 255) for i in range(n)]).astype(np.uint8)


def as_uint8(frame: torch.Tensor) -> bytes:
    """(1, 3, H, W) in [0, 1] -> the bytes of the (H, W, 3) uint8 frame it holds."""
    return (frame[0].permute(1, 2, 0) * 255).round().byte().numpy().tobytes()


class PerfectNet(torch.nn.Module):
    """A test double of a network that draws the true next frame of a capture: it finds the
    newest memory frame among the capture's frames and returns the one after it."""

    def __init__(self, frames, memory_frames=(2, 4)):
        super().__init__()
        self.frames = np.array(frames)  # a writable copy of the memory-mapped frames
        h, w = self.frames.shape[1:3]
        self.config = NetConfig(height=h, width=w, memory_frames=memory_frames, channels=(8, 8),
                                encoder_blocks=(0, 0), decoder_blocks=(0, 0))
        self.index = {f.tobytes(): i for i, f in enumerate(self.frames)}

    def forward(self, controls, memory, noise):
        assert controls.shape == (1, 2)
        assert [tuple(n.shape) for n in noise] == [(1, 1, 16, 16), (1, 1, 4, 4)]
        i = self.index[as_uint8(memory[0][:, -3:])]
        return torch.from_numpy(self.frames[min(i + 1, len(self.frames) - 1)]).permute(2, 0, 1)[None] / 255.0


ACTIONS = ControlSchema.identity(ACTION_KIND)


def perfect_world(frames) -> World:
    return World(PerfectNet(frames), ACTIONS, np.asarray(frames[:4]))


@pytest.fixture
def capture(tmp_path, rng):
    return open_capture(write_action_capture(tmp_path / "cap", ramp_frames(60, rng)))


def test_perfect_world_scores_capped_psnr_and_copy_last_scores_the_known_error(capture):
    world = perfect_world(capture.frames)
    r = evaluate_world(world, [capture], horizons=(1, 8, 32), starts=3, one_step_points=5, free_play=40,
                       fidelity_frames=4)
    assert r["one_step"]["psnr"] == metrics.PSNR_CAP and r["one_step"]["ssim"] == pytest.approx(1.0)
    assert r["rollout"]["psnr"] == [metrics.PSNR_CAP] * 3
    assert r["rollout"]["ssim"] == pytest.approx([1.0] * 3)
    # copy-last: frame i differs from frame i-h by h/255 everywhere (no clipping in 40..189+59)
    expected = [10 * np.log10(255.0 ** 2 / h ** 2) for h in (1, 8, 32)]
    assert r["baselines"]["copy_last"]["rollout"]["psnr"] == pytest.approx(expected)
    assert r["baselines"]["copy_last"]["one_step"]["psnr"] == pytest.approx(expected[0])
    assert r["control_fidelity"]["available"] is False  # action capture: nothing to compare with
    assert r["speed"]["frames_per_s"] > 0
    assert r["evaluated"]["captures"][0]["memory_frames"] == 4
    # the free-play rollout of a perfect world holds the capture's own detail
    assert r["detail_retention"] == pytest.approx(1.0, abs=0.15)
    json.dumps(r)  # metrics.json must be plain JSON


def test_short_capture_uses_what_fits_and_says_so(tmp_path, rng, capsys):
    cap = open_capture(write_action_capture(tmp_path / "short", ramp_frames(20, rng)))
    r = evaluate_world(perfect_world(cap.frames), [cap], starts=2, one_step_points=3, free_play=10,
                       fidelity_frames=4)
    assert r["rollout"]["horizons"] == [1, 8, 32, 128]
    assert r["rollout"]["psnr"][:2] == [metrics.PSNR_CAP] * 2 and r["rollout"]["psnr"][2:] == [None, None]
    assert any("horizons cut to [1, 8]" in n for n in r["evaluated"]["notes"])
    assert "horizons cut" in capsys.readouterr().err
    # shorter than the memory window: memory from fewer frames
    plan = plan_capture(3, 4, (1, 8), 2, 2, "tiny")
    assert plan.warm == 2 and plan.horizons == [1] and "memory filled from 2" in plan.notes[0]


def test_copy_last_world_repeats_the_newest_memory_frame(capture):
    base = copy_last(perfect_world(capture.frames))
    frames = base.rollout(np.asarray(capture.frames[3:7]), np.zeros((3, 2)))
    assert all(np.array_equal(f, capture.frames[6]) for f in frames)


def test_mismatched_controls_and_sizes_are_refused(tmp_path, rng, capture):
    from neuralworld.errors import UserError

    world = perfect_world(capture.frames)
    other = open_capture(write_action_capture(tmp_path / "keys", ramp_frames(10, rng), names=("left", "right")))
    with pytest.raises(UserError, match="differ from the world's"):
        evaluate_world(world, [other])
    wide = open_capture(write_action_capture(tmp_path / "wide", ramp_frames(10, rng, 16, 32)))
    with pytest.raises(UserError, match="different aspect ratio"):
        evaluate_world(world, [wide])


def test_capture_of_same_aspect_is_resized(tmp_path, rng, capture):
    big = ramp_frames(40, rng, 32, 32)
    cap = open_capture(write_action_capture(tmp_path / "big", big))
    r = evaluate_world(copy_last(perfect_world(capture.frames)), [cap], horizons=(1,), starts=2,
                       one_step_points=2, free_play=5, fidelity_frames=2)
    assert any("resized" in n for n in r["evaluated"]["notes"])
    assert r["one_step"]["psnr"] > 30  # the same brightness drift of 1/255 a frame, at half size


def test_eval_command_refuses_a_missing_world(tmp_path, capture, capsys):
    code = main(["eval", str(tmp_path / "nothing"), str(capture.path), "-o", str(tmp_path / "rep")])
    assert code == 2
    err = capsys.readouterr().err
    assert "world.json is missing" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_eval_command_writes_metrics_and_an_offline_report(tmp_path, rng):
    from test_rollout import make_world

    world = make_world(tmp_path / "w")
    other = make_world(tmp_path / "w2", seed=1)
    cap = write_action_capture(tmp_path / "cap", ramp_frames(30, rng))
    out = tmp_path / "rep"
    assert main(["eval", str(world), str(cap), "-o", str(out), "--baseline", str(other), "--starts", "2",
                 "--one-step-points", "3", "--free-play", "12", "--horizons", "1,8,32"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["rollout"]["horizons"] == [1, 8, 32] and m["rollout"]["psnr"][2] is None  # 26 frames after memory
    assert set(m["baselines"]) == {"copy_last", "baseline_world"}
    assert 0 < m["one_step"]["ssim"] < 1 and m["speed"]["frames_per_s"] > 0
    assert m["evaluated"]["captures"][0]["name"] == "cap"
    page = (out / "index.html").read_text()
    assert "<img src=\"data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert 'src="rollout.mp4"' in page and (out / "rollout.mp4").stat().st_size > 0
    assert (out / "free_play.mp4").is_file()
    assert main(["eval", str(world), str(cap), "-o", str(out)]) == 2  # exists: needs --force


class RenderingNet(torch.nn.Module):
    """A test double of a pose world's network that knows the place: it composes the commanded
    relative motion with the pose of its newest memory frame and renders the true view."""

    def __init__(self, capture, renderer):
        super().__init__()
        self.renderer = renderer
        self.config = NetConfig(height=capture.height, width=capture.width, memory_frames=(2, 4),
                                channels=(8, 8), encoder_blocks=(0, 0), decoder_blocks=(0, 0))
        self.poses = {f.tobytes(): pose for f, pose in zip(np.asarray(capture.frames), capture.poses)}

    def forward(self, controls, memory, noise):
        rel = np.eye(4)
        rel[:3, :4] = controls[0, :12].double().numpy().reshape(3, 4)
        pose = self.poses[as_uint8(memory[0][:, -3:])] @ rel
        frame = self.renderer.render(pose)
        self.poses[frame.tobytes()] = pose  # the view it drew is where it stands now
        return torch.from_numpy(frame).permute(2, 0, 1)[None] / 255.0


@pytest.mark.slow
def test_control_fidelity_on_a_synthetic_capture(tmp_path):
    from neuralworld.capture.synth import synthesize

    from neuralworld.capture.scene import Renderer, make_scene

    cap = open_capture(synthesize(tmp_path / "syn", frames=24, width=16, height=16, fps=15, progress=False))
    spec = cap.meta["synth"]
    with Renderer(make_scene(spec["scene"], spec["seed"]), cap.width, cap.height, spec["fov_deg"]) as renderer:
        world = World(RenderingNet(cap, renderer), ControlSchema.identity(POSE_KIND, POSE_CONTROL_NAMES),
                      np.asarray(cap.frames[:4]))
        r = evaluate_world(world, [cap], horizons=(1, 8), starts=2, one_step_points=2, free_play=8,
                           fidelity_frames=10)
    fid = r["control_fidelity"]
    assert fid["available"] and fid["kinds"] == ["synthetic"]
    assert fid["psnr"] > 45  # the commanded trajectory, rendered twice (float32 controls: ~1e-7 m apart)
    assert r["one_step"]["psnr"] > 45  # recorded controls lead to the recorded frames too
    copy = r["baselines"]["copy_last"]["control_fidelity"]
    assert copy["available"] and copy["psnr"] < fid["psnr"] - 10  # walking and turning changes the view


def test_rotation_error_of_the_odometry_measure():
    from neuralworld.fidelity import _rotation_error_deg
    from neuralworld.geometry import camera_rotation, make_pose

    yaw = np.radians(np.arange(5) * 1.0)  # commanded: 1 degree per frame
    commanded = make_pose(camera_rotation(yaw, 0.0), np.zeros((5, 3)))
    still = make_pose(camera_rotation(np.zeros(5), 0.0), np.zeros((5, 3)))
    assert _rotation_error_deg(commanded, still, np.ones(5, bool)) == pytest.approx(1.0)
    assert _rotation_error_deg(commanded, commanded, np.ones(5, bool)) == pytest.approx(0.0, abs=1e-6)
    assert _rotation_error_deg(commanded, still, np.zeros(5, bool)) is None
