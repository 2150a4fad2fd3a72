import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from neuralworld.capture.format import open_capture
from neuralworld.cli import main
from neuralworld.geometry import roll_pitch
from neuralworld.world import World
from worldgen import moving_pattern

# a micro version of the tiny preset: 32x32 frames, memory of 2 + 4 frames, a few thousand weights
MICRO = ["--preset", "tiny", "--size", "32x32", "--batch", "2", "--threads", "1",
         "--set", "memory_frames=[2,4]", "--set", "channels=[8,16]", "--set", "decoder_blocks=[1,1]",
         "--set", "encoder_blocks=[0,0]", "--set", "control_embed=16"]
ADVERSARIAL = ["--set", "adversarial_weight=0.1", "--set", "disc_channels=8"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("captures")
    return {
        "a": str(moving_pattern(root / "a", frames=40, seed=0)),
        "b": str(moving_pattern(root / "b", frames=30, seed=1)),
        "pose": str(moving_pattern(root / "pose", frames=30, seed=2, kind="pose")),
        "none": str(moving_pattern(root / "none", frames=30, seed=3, kind="none")),
        "short": str(moving_pattern(root / "short", frames=6, seed=4)),
        "big": str(moving_pattern(root / "big", frames=30, size=64, seed=5)),
    }


def train(*args) -> int:
    return main(["train", *args])


def test_train_writes_a_playable_world(tmp_path, captures):
    out = tmp_path / "world"
    assert train(captures["a"], captures["b"], "-o", str(out), "--steps", "4", "--checkpoint-every", "2",
                 *MICRO, *ADVERSARIAL) == 0
    meta = json.loads((out / "world.json").read_text())
    assert meta["format"] == "neuralworld-world" and meta["preset"] == "tiny"
    assert meta["config"]["memory_frames"] == [2, 4] and meta["training"]["recipe"]["adversarial_weight"] == 0.1
    schema = meta["controls"]
    assert schema["kind"] == "actions" and schema["names"] == ["dy", "dx"]
    assert len(schema["mean"]) == 2 and all(s > 0 for s in schema["scale"])
    assert schema["ranges"][0][0] >= -2 and schema["ranges"][0][1] <= 2
    training = meta["training"]
    assert training["steps"] == 4 and [c["val_frames"] for c in training["captures"]] == [4, 3]
    assert np.isfinite(training["val_psnr"]) and np.isfinite(training["val_copy_psnr"])
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["critic"] is not None
    world = World.load(out)
    assert world.start_frames.shape == (4, 32, 32, 3)
    frame = world.step([1.0, 0.0])
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    # the world holds the averaged weights, not the raw ones
    weights = load_file(out / "weights.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in state["ema"].items())
    assert any(not torch.equal(weights[k], v) for k, v in state["net"].items() if v.is_floating_point())


def test_pose_captures_train_pose_worlds(tmp_path, captures):
    out = tmp_path / "world"
    assert train(captures["pose"], "-o", str(out), "--steps", "1", *MICRO) == 0
    world = World.load(out)
    assert world.schema.kind == "pose6dof" and world.schema.dim == 16
    # the roll and pitch of the newest start frame's camera, where a player starts
    newest = open_capture(captures["pose"]).poses[world.layout.window - 1]
    assert np.allclose(world.start_attitude, roll_pitch(newest[:3, :3]), atol=1e-5)
    assert json.loads((out / "world.json").read_text())["start_attitude"] == list(world.start_attitude)
    world.step(np.eye(4)[:3].reshape(12).tolist() + [0, 0, 0.05, 1])


def test_warp_takes_the_capture_camera_and_action_worlds_go_without(tmp_path, captures):
    camera = moving_pattern(tmp_path / "camera", frames=30, seed=2, kind="pose",
                            intrinsics={"fx": 24.0, "fy": 24.0, "cx": 15.5, "cy": 15.5})
    assert train(str(camera), "-o", str(tmp_path / "pose"), "--steps", "1", *MICRO, "--set", "warp=input") == 0
    config = World.load(tmp_path / "pose").config
    assert config.warp == "input" and config.focal == pytest.approx(24.0 / 32) and config.focal_y == 0  # square
    squeezed = ["--size", "32x16", "--set", "memory_frames=[2]", "--set", "channels=[8]"]  # 32x32 frames at 32x16
    assert train(str(camera), "-o", str(tmp_path / "squeezed"), "--steps", "1", *MICRO, *squeezed, "--set",
                 "warp=input") == 0
    config = World.load(tmp_path / "squeezed").config
    assert config.focal == pytest.approx(24.0 / 32) and config.focal_y == pytest.approx(24.0 / 32)  # fy over the height
    assert train(captures["a"], "-o", str(tmp_path / "car"), "--steps", "1", *MICRO, "--set", "warp=input") == 0
    assert World.load(tmp_path / "car").config.warp == "off"  # no move to warp by


def test_training_preview_and_rollout_command_draw_the_same_frames(tmp_path, captures):
    """One rollout engine, one noise source: the preview's free rollout (held-out start of
    capture a, recorded controls, seed 0) is what `neuralworld rollout --seed 0` draws."""
    import cv2

    from neuralworld.capture.format import open_capture

    out = tmp_path / "world"
    assert train(captures["a"], "-o", str(out), "--steps", "2", "--checkpoint-every", "2", *MICRO) == 0
    sheet = cv2.imread(str(out / "previews" / "step-0000002.png"))[:, :, ::-1]
    generated = [sheet[3 * 34:3 * 34 + 32, j * 34:j * 34 + 32] for j in range(4)]  # row 4: 4 held-out steps
    cap = open_capture(captures["a"])
    start = float(cap.times[36] - cap.times[0])  # 40 frames, the last tenth held out: frame 36 on
    frames = tmp_path / "frames"
    assert main(["rollout", str(out), "--from", captures["a"], "--start", str(start), "--frames", "4",
                 "--seed", "0", "-o", str(frames)]) == 0
    drawn = [cv2.imread(str(frames / f"frame-{j:06d}.png"))[:, :, ::-1] for j in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(generated, drawn))
    assert any(not np.array_equal(a, np.asarray(cap.frames[36 + j])) for j, a in enumerate(drawn))  # generated
    other = tmp_path / "other"
    assert main(["rollout", str(out), "--from", captures["a"], "--start", str(start), "--frames", "4",
                 "--seed", "1", "-o", str(other)]) == 0
    assert any(not np.array_equal(cv2.imread(str(other / f"frame-{j:06d}.png"))[:, :, ::-1], drawn[j])
               for j in range(4))  # another seed, other noise


@pytest.mark.parametrize("inputs, message", [
    (["a", "big"], "one size"),
    (["a", "pose"], "one kind"),
    (["none"], "no motion"),
    (["short"], "too short"),
])
def test_bad_captures_are_refused(tmp_path, captures, capsys, inputs, message):
    out = tmp_path / "world"
    assert train(*[captures[k] for k in inputs], "-o", str(out), "--steps", "1", *MICRO) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_output_folder_rules(tmp_path, captures, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert train(captures["a"], "-o", str(blocker / "world"), "--steps", "1", *MICRO) == 2
    assert "cannot write" in capsys.readouterr().err
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert train(captures["a"], "-o", str(out), "--steps", "1", *MICRO) == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert train(captures["a"], "-o", str(out), "--steps", "1", "--resume", *MICRO) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    assert train(captures["a"], "-o", str(out), "--steps", "1", "--force", *MICRO) == 0
    assert not (out / "keep.txt").exists() and (out / "world.json").exists()


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, captures, capsys):
    out = tmp_path / "world"
    rc = train(captures["a"], "-o", str(out), "--steps", "6", "--checkpoint-every", "2", "--debug-nan-at", "3", *MICRO)
    assert rc == 2
    err = capsys.readouterr().err
    assert "diverged at step 3" in err and "keep step 2" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert json.loads((out / "world.json").read_text())["training"]["steps"] == 2
    World.load(out)


def test_losses_read_every_few_steps_still_stop_before_a_bad_checkpoint(tmp_path, captures, capsys):
    """With --sync-every the losses are checked when read, and always before a checkpoint: a
    NaN at step 3 is found at the checkpoint after step 4, which is then not written."""
    out = tmp_path / "world"
    rc = train(captures["a"], "-o", str(out), "--steps", "6", "--checkpoint-every", "2", "--debug-nan-at", "3",
               "--sync-every", "5", *MICRO)
    assert rc == 2
    err = capsys.readouterr().err
    assert "diverged at a step from 2 to 3" in err and "keep step 2" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["ema"].values() if v.is_floating_point())


def test_speed_switches_are_on_with_cuda_and_off_on_the_cpu():
    from neuralworld.train import TrainOptions, speed_switches

    off = speed_switches(TrainOptions(), torch.device("cpu"))
    assert off == {"use_bf16": False, "use_compile": False, "channels_last": False, "fused": False,
                   "cuda_graphs": False, "cudnn_benchmark": False, "sync_every": 1}
    on = speed_switches(TrainOptions(), torch.device("cuda"))
    assert on == {"use_bf16": True, "use_compile": True, "channels_last": True, "fused": True,
                  "cuda_graphs": False, "cudnn_benchmark": True, "sync_every": 10}
    asked = speed_switches(TrainOptions(compile=False, cuda_graphs=True, channels_last=True, bf16=True, sync_every=3),
                           torch.device("cpu"))
    assert asked["channels_last"] and not asked["use_bf16"] and not asked["cuda_graphs"] and asked["sync_every"] == 3


def test_trainer_speed_switches_and_its_phase_timer(captures):
    from neuralworld.data import load_captures, sample_batch, step_generator
    from neuralworld.train import resolve_preset
    from neuralworld.trainer import LOSS_NAMES, PHASES, Trainer

    preset = resolve_preset("tiny", ["memory_frames=[2,4]", "channels=[8,16]", "decoder_blocks=[1,1]",
                                     "encoder_blocks=[0,0]", "control_embed=16", "adversarial_weight=0.1",
                                     "disc_channels=8", "recall=false"], size=(32, 32), batch=2)  # an action world
    data = load_captures([captures["a"]], preset.net, preset.recipe.unroll)
    trainer = Trainer(preset.net, preset.recipe, data.schema, torch.device("cpu"), 0, 1, use_bf16=False,
                      use_compile=False, channels_last=True, fused=True)
    conv = trainer.net.body.stems[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert trainer.opt.defaults["fused"] and trainer.opt_critic.defaults["fused"]
    phases = []
    batch = lambda i: sample_batch(data, preset.net, preset.recipe, step_generator(0, i))  # noqa: E731
    stats = trainer.step(batch(0), 0, timer=phases.append)
    assert phases == list(PHASES) and stats.shape == (len(LOSS_NAMES),) and torch.isfinite(stats).all()
    before = [p.detach().clone() for p in trainer.net.parameters()]
    with pytest.raises(FloatingPointError):  # checked: no update
        trainer.step(batch(1), 1, nan=True)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))
    unchecked = trainer.step(batch(2), 2, nan=True, check=False)  # the caller checks what it reads
    assert not torch.isfinite(unchecked).all()


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path, captures):
    common = [captures["a"], "--steps", "8", "--checkpoint-every", "3", "--seed", "3", *MICRO, *ADVERSARIAL]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "neuralworld", "train", "-o", str(killed), *common,
                             "--debug-step-sleep", "0.5"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] < 8
    assert train("-o", str(killed), "--resume", *common) == 0
    whole = tmp_path / "whole"
    assert train("-o", str(whole), *common) == 0
    a, b = torch.load(killed / "checkpoint.pt", weights_only=True), torch.load(whole / "checkpoint.pt",
                                                                              weights_only=True)
    assert a["step"] == b["step"] == 8
    for part in ("net", "ema", "critic"):
        for k in b[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-5, atol=1e-6)
    steps = [int(r.split(",")[0]) for r in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 8


@pytest.mark.slow
def test_two_processes_with_gloo_end_with_identical_weights(tmp_path, captures):
    out = tmp_path / "world"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "neuralworld", "train", captures["a"], "-o", str(out), "--steps", "3", "--device", "cpu",
           "--debug-replica-hash", *MICRO, *ADVERSARIAL]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    hashes = [(out / f"replica-{r}.sha256").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    meta = json.loads((out / "world.json").read_text())
    assert meta["training"]["processes"] == 2 and meta["training"]["samples"] == 3 * 2 * 2
    # the replicas moved away from their common start: the hash is of trained weights
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


@pytest.mark.slow
def test_short_training_beats_copying_the_last_frame(tmp_path):
    from neuralworld.train import TrainOptions, resolve_preset, train_world

    cap = moving_pattern(tmp_path / "cap", frames=200, seed=1)
    preset = resolve_preset("tiny", ["lr=1e-3", "memory_frames=[2,4]", "channels=[16,32]", "decoder_blocks=[1,1]",
                                     "encoder_blocks=[0,0]"], size=(32, 32), batch=8)
    summary = train_world([cap], tmp_path / "world", preset,
                          TrainOptions(steps=150, threads=1, checkpoint_every=150, progress=False))
    assert summary["val_psnr"] > summary["val_copy_psnr"] + 0.5
