import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from neuralworld.capture.format import open_capture
from neuralworld.cli import main
from neuralworld.controls import ControlSchema, walk_pose
from neuralworld.errors import UserError
from neuralworld.model.config import NetConfig
from neuralworld.model.network import WorldNet, example_inputs
from neuralworld.recall import BANK_STEP, SECTOR, Bank, bank_capacity, choose_bank, pose_heading, relative_pose
from neuralworld.world import World
from test_train import MICRO
from worldgen import moving_pattern

NET = NetConfig(height=32, width=32, memory_frames=(2, 4), channels=(8, 16), encoder_blocks=(0, 1),
                decoder_blocks=(1, 1), control_embed=16, warp="base", focal=0.75, recall=True, recall_refresh=0.0,
                recall_refresh_coarse=0.0)


def _turn(angle: float) -> torch.Tensor:
    """(1, 16) pose controls of turning right by `angle` radians on the spot (about the camera's y)."""
    c = torch.zeros(1, 16)
    R = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    c[0, :12] = torch.cat([R, torch.zeros(3, 1)], 1).reshape(12)
    return c


def test_what_comes_into_view_is_the_recalled_frame_and_the_rest_the_world_s_own():
    """A fresh recall world (its change starts at zero) turning right shows its own dark view
    moved left, and in the columns that came into view at the right, the recalled white frame.
    When the camera moves, the refresh mixes recall_refresh of the recalled view's fine detail
    and recall_refresh_coarse of the rest into the whole frame; standing still, nothing."""
    net = WorldNet(NET, ControlSchema.identity()).eval()
    _, memory, noise = example_inputs(NET, 16, batch=1)
    memory = [torch.zeros_like(m) for m in memory]  # the world's view: black
    recalled = (torch.ones(1, 3, 32, 32), torch.eye(3, 4).reshape(1, 12))  # a white frame facing the camera's way
    frame = net(_turn(math.radians(10)), memory, noise, recall=recalled)[0, 0]  # (32, 32) red
    came = round(24 * math.tan(math.radians(10)))  # 4 columns: 24 pixels of focal length
    assert frame[14:18, -came + 1:].min() > 0.99  # what came into view (rows about the centre)
    assert frame[8:24, :32 - came - 1].max() < 0.01  # what the old view held (away from the corners, which
    # the turn also brings into view)
    refreshed = WorldNet(dataclasses.replace(NET, recall_refresh=0.25, recall_refresh_coarse=0.1),
                         ControlSchema.identity()).eval()
    refreshed.load_state_dict(net.state_dict())
    moving = refreshed(_turn(math.radians(2)), memory, noise, recall=recalled)[0, 0]
    torch.testing.assert_close(moving[8:24, :28], torch.full((16, 28), 0.1))  # a flat view: coarse alone
    standing = refreshed(_turn(0.0), memory, noise, recall=recalled)[0, 0]
    assert standing.max() == 0  # a world you stand in does not change
    # a grey view, a recalled frame of one-pixel stripes (its fine detail; its coarse view is the
    # same grey), a step forward: the stripes come in at recall_refresh of their contrast
    grey = [torch.full_like(m, 0.5) for m in memory]
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2] = 1.0
    forward = torch.zeros(1, 16)
    forward[0, :12] = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.01]]).reshape(12)
    walked = refreshed(forward, grey, noise, recall=(stripes, torch.eye(3, 4).reshape(1, 12)))[0, 0]
    torch.testing.assert_close(walked[8:24, 8:24:2], torch.full((16, 8), 0.5 + 0.25 * 0.5), atol=0.01, rtol=0)
    torch.testing.assert_close(walked[8:24, 9:24:2], torch.full((16, 8), 0.5 - 0.25 * 0.5), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="recalls real frames"):
        net(_turn(0.0), memory, noise)


def test_hold_still_shows_the_newest_frame_while_standing_and_the_network_s_when_moving():
    """A world whose network changes the view (its output layer made non-zero) keeps the newest
    frame exactly on a step that does not move when hold_still is on, and draws its own frame on
    one that moves; with hold_still off, standing still changes the view too."""
    torch.manual_seed(0)
    held = WorldNet(dataclasses.replace(NET, hold_still=True), ControlSchema.identity()).eval()
    with torch.no_grad():
        for p in held.body.out.parameters():
            p.normal_(0, 0.1)
    drawn = WorldNet(NET, ControlSchema.identity()).eval()
    drawn.load_state_dict(held.state_dict())
    _, memory, noise = example_inputs(NET, 16, batch=1)
    recalled = (torch.rand(1, 3, 32, 32), torch.eye(3, 4).reshape(1, 12))
    newest = memory[0][:, -3:]
    with torch.no_grad():
        assert torch.equal(held(_turn(0.0), memory, noise, recall=recalled), newest)
        assert (drawn(_turn(0.0), memory, noise, recall=recalled) - newest).abs().mean() > 0.01
        moving = held(_turn(math.radians(2)), memory, noise, recall=recalled)
        torch.testing.assert_close(moving, drawn(_turn(math.radians(2)), memory, noise, recall=recalled))
        assert (moving - newest).abs().mean() > 0.01


def test_recall_shows_a_frame_facing_the_camera_as_taken_and_else_one_turned_to_a_sector():
    ahead = walk_pose(np.zeros(3), 0.0, 0.0)
    aside = walk_pose(np.array([3.0, 0.0, 0.0]), 0.05, 0.0)
    bank = Bank(np.zeros((2, 8, 8, 3), np.uint8), np.stack([ahead, aside]))
    i, seen_from = bank.recall(walk_pose(np.array([0.1, 0.0, 0.0]), 0.1, 0.0))
    assert i == 0 and np.array_equal(seen_from, ahead)  # near and facing: as it was taken
    # turning towards a heading nothing in the bank faces: a frame shown as if it faced the
    # next sector boundary that way, at its own place
    camera = walk_pose(np.zeros(3), 2.0, 0.0)
    heading = pose_heading(camera)
    for turning, sector in ((0.01, math.ceil(heading / SECTOR) * SECTOR), (-0.01, math.floor(heading / SECTOR) * SECTOR)):
        i, seen_from = bank.recall(camera, turning)
        assert pose_heading(seen_from) == pytest.approx(math.remainder(sector, 2 * math.pi), abs=1e-9)
        np.testing.assert_allclose(seen_from[:3, 3], bank.poses[i][:3, 3])
    rel = relative_pose(torch.from_numpy(ahead), torch.from_numpy(ahead))
    torch.testing.assert_close(rel, torch.eye(3, 4).reshape(12))


def test_the_bank_keeps_a_frame_per_step_walked_and_thins_a_long_walk_evenly_to_its_budget():
    poses = np.stack([walk_pose(np.array([0.125 * i, 0.0, 0.0]), 0.0, 0.0) for i in range(1000)])  # 125 m ahead
    valid = np.ones(1000, bool)
    valid[5] = False
    every = choose_bank(poses, valid, most=10_000)
    assert every[0] == 0 and 5 not in every
    assert np.allclose(np.diff(poses[every, 0, 3]), BANK_STEP)  # one every BANK_STEP metres
    thinned = choose_bank(poses, valid, most=20)
    assert len(thinned) == 20 and set(thinned) <= set(every) and thinned[0] == 0 and thinned[-1] == every[-1]
    gaps = np.diff(poses[thinned, 0, 3])
    assert gaps.max() - gaps.min() <= BANK_STEP + 1e-9  # evenly along the walk, not its start alone
    assert bank_capacity(192, 256) * 3 * 192 * 256 <= 32 << 20 < (bank_capacity(192, 256) + 1) * 3 * 192 * 256


def test_a_recall_world_trains_keeps_its_bank_and_its_export_plays_as_python(tmp_path):
    from neuralworld.export import ExportedWorld, export_world

    capture = moving_pattern(tmp_path / "pose", frames=30, seed=2, kind="pose")
    out = tmp_path / "world"
    assert main(["train", str(capture), "-o", str(out), "--steps", "2", *MICRO, "--set", "warp=base",
                 "--set", "recall=true"]) == 0
    world = World.load(out)
    assert world.config.recall and len(world.bank) >= 1
    assert world.bank.frames.shape[1:] == (32, 32, 3) and (out / "recall_poses.npy").exists()
    moves = open_capture(capture).controls()[10:16]  # (6, C) the capture's own moves
    frames = world.rollout(None, moves)
    assert frames.shape == (6, 32, 32, 3)
    assert not np.allclose(world.follower.pose, world.start_pose)  # it followed the moves
    web = export_world(out, wasm="float32", webgpu_f16=False)
    meta = json.loads((web / "world.json").read_text())
    assert meta["inputs"][-2:] == ["recall_frame", "recall_pose"] and meta["recall"]["count"] == len(world.bank)
    assert (web / "recall_frames.bin").stat().st_size == world.bank.frames.size
    exported = ExportedWorld(world, web / "model.onnx").rollout(None, moves)
    assert np.abs(exported.astype(int) - frames).max() <= 1  # the exported step recalls as Python does
    with pytest.raises(UserError, match="recall"):
        NetConfig(height=32, width=32, recall=True)  # nothing to warp the recalled frames with
