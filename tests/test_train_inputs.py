"""Bad inputs to `train` and damaged world folders: one line, exit 2, and nothing a user had is
lost: an old world survives a failed --force, a failed run leaves no folder behind, a run killed
before its first checkpoint can simply be started again."""

import json
import pickle
import shutil

import pytest

from neuralworld.cli import main
from neuralworld.world import World
from worldgen import moving_pattern

MICRO = ["--preset", "tiny", "--size", "32x32", "--batch", "2", "--threads", "1",
         "--set", "memory_frames=[2,4]", "--set", "channels=[8,16]", "--set", "decoder_blocks=[1,1]",
         "--set", "encoder_blocks=[0,0]", "--set", "control_embed=16"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    good = moving_pattern(root / "good", frames=40, seed=0)
    short = moving_pattern(root / "short", frames=6, seed=1)
    pose = moving_pattern(root / "pose", frames=40, seed=2, kind="pose")
    world = root / "world"
    assert main(["train", str(good), "-o", str(world), "--steps", "2", *MICRO]) == 0
    return {"good": str(good), "short": str(short), "pose": str(pose), "world": world}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_force_with_a_bad_capture_keeps_the_old_world(made, tmp_path, capsys):
    world = shutil.copytree(made["world"], tmp_path / "world")
    before = sorted(p.name for p in world.iterdir())
    assert main(["train", made["short"], "-o", str(world), "--force", "--steps", "2", *MICRO]) == 2
    assert "too short" in one_line(capsys)
    assert sorted(p.name for p in world.iterdir()) == before
    World.load(world)
    assert [p.name for p in tmp_path.iterdir()] == ["world"]  # no partial folder left


def test_a_failed_run_leaves_nothing_and_can_be_run_again(made, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", made["short"], "-o", str(out), "--steps", "2", *MICRO]) == 2
    one_line(capsys)
    assert list(tmp_path.iterdir()) == []
    assert main(["train", made["good"], "-o", str(out), "--steps", "2", *MICRO]) == 0


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(made, tmp_path, capsys):
    out = tmp_path / "new"
    partial = tmp_path / ".new.partial"  # what a run killed before its first checkpoint leaves
    (partial / "previews").mkdir(parents=True)
    assert main(["train", made["good"], "-o", str(out), "--resume", "--steps", "2", *MICRO]) == 2
    assert "train again without --resume" in one_line(capsys)
    assert main(["train", made["good"], "-o", str(out), "--steps", "2", *MICRO]) == 0
    assert not partial.exists() and (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("options, message", [
    (["--set", "lr=abc"], "lr='abc': expected float"),
    (["--set", "memory_factor=0"], "the factor must be 2 or more"),
    (["--set", "channels=[8,-1]"], "channels 1 or more"),
    (["--val-fraction", "1.5"], "--val-fraction 1.5: must be between 0 and 1"),
    (["--steps", "-1"], "--steps -1: give 1 or more"),
    (["--minutes", "0"], "--minutes 0.0: give a time above 0"),
])
def test_bad_options_are_one_line_and_write_nothing(made, tmp_path, capsys, options, message):
    assert main(["train", made["good"], "-o", str(tmp_path / "w"), *MICRO[:-2], *options]) == 2
    assert message in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, pickle.dumps({"format": "neuralworld-checkpoint"}), b"abc"])
def test_a_damaged_checkpoint_is_one_line(made, tmp_path, capsys, content):
    world = shutil.copytree(made["world"], tmp_path / "world")
    (world / "checkpoint.pt").write_bytes(content)
    assert main(["train", made["good"], "-o", str(world), "--resume", "--steps", "3", *MICRO]) == 2
    assert "checkpoint.pt" in one_line(capsys)


def test_resuming_with_other_controls_is_one_line(made, capsys):
    world = made["world"]
    assert main(["train", made["pose"], "-o", str(world), "--resume", "--steps", "3", *MICRO]) == 2
    assert "resume with the same captures" in one_line(capsys)


@pytest.mark.parametrize("damage, message", [
    (lambda w: (w / "weights.safetensors").write_bytes(b""), "cannot read the weights"),
    (lambda w: (w / "weights.safetensors").write_bytes(pickle.dumps({"a": 1})), "cannot read the weights"),
    (lambda w: (w / "weights.safetensors").write_bytes((w / "weights.safetensors").read_bytes()[:500]),
     "cannot read the weights"),
    (lambda w: (w / "world.json").write_text("[1, 2]"), "not a neuralworld world"),
    (lambda w: (w / "world.json").write_text(json.dumps({**json.loads((w / "world.json").read_text()),
                                                          "config": None})), "no network config"),
    (lambda w: (w / "world.json").write_text(json.dumps(
        {**(m := json.loads((w / "world.json").read_text())), "config": {**m["config"], "height": "tall"}})),
     "height='tall'"),
    (lambda w: (w / "world.json").write_text(json.dumps(
        {**(m := json.loads((w / "world.json").read_text())), "config": {**m["config"], "channels": [16, 16]}})),
     "do not fit world.json's network"),
])
def test_a_damaged_world_is_one_line(made, tmp_path, capsys, damage, message):
    world = shutil.copytree(made["world"], tmp_path / "world")
    damage(world)
    assert main(["rollout", str(world), "--from", made["good"], "--frames", "2", "-o", str(tmp_path / "o.mp4")]) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "o.mp4").exists()


def test_resume_refuses_options_that_are_not_the_checkpoints(made, tmp_path, capsys):
    world = shutil.copytree(made["world"], tmp_path / "world")
    before = (world / "checkpoint.pt").read_bytes()
    assert main(["train", made["good"], "-o", str(world), "--resume", "--steps", "3", *MICRO,
                 "--set", "channels=[8,8]", "--seed", "5"]) == 2
    err = one_line(capsys)
    assert "channels [8, 16] (given [8, 8])" in err and "seed 0 (given 5)" in err
    assert (world / "checkpoint.pt").read_bytes() == before
    # the same options as the checkpoint's, or none of them, resume
    assert main(["train", made["good"], "-o", str(world), "--resume", "--steps", "3", *MICRO]) == 0
    assert main(["train", made["good"], "-o", str(world), "--resume", "--steps", "4"]) == 0
    assert json.loads((world / "world.json").read_text())["training"]["steps"] == 4
