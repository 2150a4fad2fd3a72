"""Action worlds recall real frames by look (network.LookRecall): which frames training keeps, which
one a frame recalls, and the fine detail mixed in where the frame lacks it."""

import dataclasses
import json

import cv2
import numpy as np
import torch

from neuralworld.capture.format import open_capture
from neuralworld.cli import main
from neuralworld.model.network import LookRecall, WorldNet, example_inputs
from neuralworld.world import World, resize_frames
from player_worlds import action_schema, tiny_config
from test_train import MICRO
from worldgen import moving_pattern

CONFIG = tiny_config(look_refresh=0.4, look_frames=3)


def _patterns(count: int, size: int = 32) -> np.ndarray:
    """(count, size, size, 3) uint8: each a different colour under its own fine noise."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (count, 1, 1, 3))
    return np.clip(base + rng.integers(-40, 40, (count, size, size, 3)), 0, 255).astype(np.uint8)


def test_look_recall_keeps_evenly_spaced_frames_and_recalls_the_one_that_looks_most_alike():
    look = LookRecall(CONFIG)
    frames = _patterns(7)
    look.fill(torch.from_numpy(frames))
    kept = look.frames.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(kept, frames[[0, 3, 6]])
    blurred = torch.from_numpy(frames[[6, 0]]).permute(0, 3, 1, 2).float() / 255
    blurred = torch.nn.functional.avg_pool2d(blurred, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    recalled = look(blurred)  # a blurred frame recalls its own sharp frame
    torch.testing.assert_close(recalled, torch.from_numpy(frames[[6, 0]]).permute(0, 3, 1, 2).float() / 255)


def test_an_action_world_takes_fine_detail_only_where_its_frame_lacks_it():
    """A fresh network (its change starts at zero) draws its newest memory frame: from a kept frame
    itself, nothing is mixed in; from that frame blurred, the kept frame's fine detail comes back
    at look_refresh times the share the blurred frame lacks."""
    net = WorldNet(CONFIG, action_schema()).eval()
    frames = _patterns(3)
    net.look.fill(torch.from_numpy(frames))
    controls, memory, noise = example_inputs(CONFIG, 2)
    sharp = torch.from_numpy(frames[1]).permute(2, 0, 1)[None].float() / 255
    blurred = net.refresh_blur(sharp)
    with torch.no_grad():
        for newest in (sharp, blurred):
            memory[0] = torch.cat([memory[0][:, :-3], newest], 1)
            out = net(controls, memory, noise)
            if newest is sharp:
                torch.testing.assert_close(out, sharp)
            else:
                lacks = 1 - net.fine_detail(blurred) / net.fine_detail(sharp)
                assert 0.5 < lacks.item() < 1
                assert (out - sharp).abs().mean() < (blurred - sharp).abs().mean()
                gained = net.fine_detail(out) - net.fine_detail(blurred)
                torch.testing.assert_close(gained, 0.4 * lacks * (net.fine_detail(sharp) - net.fine_detail(blurred)),
                                           rtol=0.15, atol=0)
    without = WorldNet(dataclasses.replace(CONFIG, look_refresh=0.0), action_schema())
    assert without.look is None and WorldNet(CONFIG, action_schema()).look is not None


def test_training_an_action_world_keeps_its_training_frames_and_its_export_plays_as_python(tmp_path):
    from neuralworld.export import ExportedWorld, export_world

    capture = moving_pattern(tmp_path / "car", frames=40, seed=4)
    out = tmp_path / "world"
    assert main(["train", str(capture), "-o", str(out), "--steps", "2", *MICRO]) == 0
    config = json.loads((out / "world.json").read_text())["config"]
    assert config["look_refresh"] == 0.4 and config["look_frames"] == 36  # the 90% trained on
    world = World.load(out)
    trained = resize_frames(np.asarray(open_capture(capture).frames[:36]), 32, 32)
    np.testing.assert_array_equal(world.net.look.frames.permute(0, 2, 3, 1).numpy(), trained)
    web = export_world(out, webgpu_f16=False)
    controls = np.random.default_rng(1).uniform(-1, 1, (6, world.schema.dim))
    soft = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in world.start_frames])  # frames that lack detail
    got = ExportedWorld(world, web / "model.onnx").rollout(soft, controls, seed=3)
    expected = World.load(out).rollout(soft, controls, seed=3)
    assert np.abs(got.astype(int) - expected).max() <= 1
    plain = World.load(out)
    plain.net.look = None
    assert np.abs(plain.rollout(soft, controls, seed=3).astype(int) - expected).mean() > 0.5  # detail came in
