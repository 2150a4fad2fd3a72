import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralworld.controls import ACTION_KIND, ControlSchema
from neuralworld.errors import UserError
from neuralworld.model.config import NetConfig
from neuralworld.model.memory import memory_from_frames, push
from neuralworld.model.network import WorldNet
from neuralworld.world import World, frames_to_tensor

MICRO = NetConfig(height=32, width=32, memory_frames=(2, 4), channels=(8, 16), encoder_blocks=(0, 0),
                    decoder_blocks=(1, 1), control_embed=16)
SCHEMA = ControlSchema(ACTION_KIND, ("steering", "throttle"), ((-1.0, 1.0), (0.0, 1.0)), (0.1, 0.5), (0.3, 0.2))


def make_world(rng) -> World:
    torch.manual_seed(0)
    net = WorldNet(MICRO, SCHEMA)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    start = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    return World(net, SCHEMA, start, preset="micro", summary={"steps": 0})


def test_save_load_round_trip_gives_the_same_frames(tmp_path, rng):
    world = make_world(rng)
    world.save(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["start_frames.npy", "weights.safetensors",
                                                                   "world.json"]
    meta = json.loads((tmp_path / "w/world.json").read_text())
    assert meta["format"] == "neuralworld-world" and meta["controls"]["names"] == ["steering", "throttle"]
    assert meta["memory"] == {"frames": [2, 4], "factor": 4}
    loaded = World.load(tmp_path / "w")
    assert loaded.config == MICRO and loaded.schema == SCHEMA
    assert torch.equal(loaded.net.control_mean, torch.tensor([0.1, 0.5]))
    assert meta["config"] == MICRO.to_json() and "lr" not in meta["config"]  # the network only
    a = [world.step([0.2, 0.7]) for _ in range(3)]
    b = [loaded.step([0.2, 0.7]) for _ in range(3)]
    assert all(x.shape == (32, 32, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert loaded.start_attitude == (0.0, 0.0)  # level unless training said otherwise
    World(world.net, SCHEMA, world.start_frames, start_attitude=(0.03, -0.05)).save(tmp_path / "tilted")
    assert World.load(tmp_path / "tilted").start_attitude == (0.03, -0.05)
    meta["start_attitude"] = ["up", 0]
    (tmp_path / "w/world.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="start_attitude"):
        World.load(tmp_path / "w")


def test_step_pushes_its_frame_like_training(rng):
    world = make_world(rng)
    noise = [rng.random((1, 1, 32, 32), dtype=np.float32), rng.random((1, 1, 8, 8), dtype=np.float32)]
    before = [m.clone() for m in world.memory]
    frame = world.step([0.0, 1.0], noise=noise)
    with torch.no_grad():
        expected = world.net(torch.tensor([[0.0, 1.0]]), before, [torch.from_numpy(n) for n in noise])
    after = push(before, expected, world.layout)
    assert all(torch.equal(a, b) for a, b in zip(world.memory, after))
    assert np.array_equal(frame, (after[0][0, -3:] * 255).round().byte().permute(1, 2, 0).numpy())


def test_reset_variants_and_seeding(rng):
    world = make_world(rng)
    first = [world.step([0, 0]) for _ in range(2)]
    world.reset()
    assert all(np.array_equal(f, world.step([0, 0])) for f in first)  # same seed, same frames
    world.reset(seed=1)
    assert not np.array_equal(first[0], world.step([0, 0]))
    world.reset("blank")
    assert all(m.abs().sum() == 0 for m in world.memory)
    big = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)  # resized to the world's size
    world.reset(big)
    assert world.memory[0].shape == (1, 6, 32, 32)
    small = np.ascontiguousarray(big[:, ::2, ::2])
    world.reset(small)
    assert torch.equal(world.memory[1], memory_from_frames(frames_to_tensor(small[None]), world.layout)[1])
    with pytest.raises(ValueError):
        world.step([0, 0, 0])


def test_load_refuses_unknown_versions_and_missing_files(tmp_path, rng):
    make_world(rng).save(tmp_path / "w")
    meta = json.loads((tmp_path / "w/world.json").read_text())
    meta["version"] = 99
    (tmp_path / "w/world.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="version 99 is not supported"):
        World.load(tmp_path / "w")
    with pytest.raises(UserError, match="world.json"):
        World.load(tmp_path / "nothing")


OLD_WORLD = Path(__file__).parent / "data" / "world-v1-combined-config"  # written when world.json's "config"
# held the network and the training recipe in one dict, with a critic that kept its own control normalisation


def test_worlds_written_with_the_combined_config_still_load_and_play_the_same():
    world = World.load(OLD_WORLD)
    assert world.config.channels == (8, 8) and world.schema.names == ("dy", "dx")
    frames = world.rollout(None, np.tile(np.float32([1.0, -1.0]), (3, 1)), seed=0)
    assert np.array_equal(frames, np.load(OLD_WORLD / "expected_frames.npy"))  # drawn by the version that wrote it


def test_their_checkpoints_resume(tmp_path):
    from neuralworld.cli import main
    from worldgen import moving_pattern

    cap = moving_pattern(tmp_path / "cap", frames=30, size=16, seed=0)  # the capture it was trained on
    out = shutil.copytree(OLD_WORLD, tmp_path / "world")
    assert main(["train", str(cap), "-o", str(out), "--resume", "--steps", "3", "--threads", "1"]) == 0
    meta = json.loads((out / "world.json").read_text())
    assert meta["training"]["steps"] == 3 and meta["training"]["recipe"]["adversarial_weight"] == 0.1
    assert meta["training"]["batch"] == 2 and "lr" not in meta["config"]


def test_a_move_longer_than_the_trained_steps_is_taken_in_steps_the_world_knows(rng):
    """A 1/30 s move for a world trained at 1/60 s: two moves that compose to it, each with the
    roll and pitch of the frame it starts from; the rollout takes both, one frame per move."""
    from neuralworld.controls import POSE_CONTROL_NAMES, POSE_KIND
    from neuralworld.geometry import camera_rotation, make_pose, roll_pitch

    names = tuple(POSE_CONTROL_NAMES)
    schema = ControlSchema(POSE_KIND, names, ((-10.0, 10.0),) * 16, (0.0,) * 16, (1.0,) * 16, (1 / 60,))
    start = camera_rotation(0.3, 0.2, -0.1)  # camera-to-world of the frame the move starts from
    turn = camera_rotation(0.0, 0.0, 0.0).T @ camera_rotation(0.25, -0.1, 0.05)  # a turn in camera axes
    move = make_pose(turn, np.array([0.1, -0.02, 0.05]))
    c = np.zeros(16)
    c[:12] = move[:3].reshape(12)
    c[12:14] = roll_pitch(start)
    c[14], c[15] = 1 / 30, 1.0
    parts = schema.split_move(c)
    assert parts.shape == (2, 16) and np.allclose(parts[:, 14], 1 / 60) and (parts[:, 15] == 1).all()
    half = make_pose(parts[0, :12].reshape(3, 4)[:, :3], parts[0, :12].reshape(3, 4)[:, 3])
    assert np.allclose(half @ half, move, atol=1e-5)
    assert np.allclose(parts[1, :12], parts[0, :12], atol=1e-6)
    assert np.allclose(parts[0, 12:14], roll_pitch(start), atol=1e-5)
    assert np.allclose(parts[1, 12:14], roll_pitch(start @ half[:3, :3]), atol=1e-5)
    c[14] = 1 / 60
    assert np.array_equal(schema.split_move(c), c[None].astype(np.float32))  # a trained step: as it is
    action = SCHEMA.split_move(np.array([0.2, 0.7]))
    assert action.shape == (1, 2)  # action worlds have no time step to split

    config = NetConfig(height=32, width=32, memory_frames=(2, 4), channels=(8, 16), encoder_blocks=(0, 0),
                       decoder_blocks=(1, 1), control_embed=16)
    world = World(WorldNet(config, schema), schema, rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    c[14] = 1 / 30
    frames = world.rollout(None, np.stack([c, c, c]))
    assert frames.shape == (3, 32, 32, 3) and world.steps == 6
