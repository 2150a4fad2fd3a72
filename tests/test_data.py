"""Training windows: the controls of every move a window can make, gathered where the frames are."""

import numpy as np
import pytest
import torch

from neuralworld.capture.format import open_capture
from neuralworld.capture.synth import synthesize
from neuralworld.controls import pose_controls_between
from neuralworld.data import DT, load_captures, sample_batch, step_generator
from neuralworld.train import resolve_preset


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("walk") / "walk", seed=3, frames=60, width=32, height=24, progress=False)


def preset(*sets):
    return resolve_preset("tiny", ["memory_frames=[2,4]", *sets], size=(24, 32), batch=16)


def test_the_moves_table_holds_the_control_of_every_move(walk):
    p = preset("frame_skip=true")
    data = load_captures([str(walk)], p.net, p.recipe.unroll, frame_skip=True)
    cap = open_capture(walk)
    assert data.skips == (1, 2) and data.moves.shape == (3, len(cap), 16)  # 30 frames/s: strides 1 and 2
    for k in range(3):
        j = np.arange(k, len(cap))
        want = pose_controls_between(cap.poses, cap.times, cap.valid, j - k, j)
        assert np.array_equal(data.moves[k, k:].numpy(), want)
    assert np.array_equal(data.moves[1, 1:].numpy(), cap.controls()[1:])  # stride 1: the capture's own controls


def test_strided_and_standing_windows_get_the_controls_of_their_moves(walk):
    """A standing target repeats the frame before it, with zero motion and the time of the move
    it replaces; a strided target's move takes two frame intervals."""
    p = preset("frame_skip=true", "still_fraction=0.5")
    data = load_captures([str(walk)], p.net, p.recipe.unroll, frame_skip=True)
    standing = strided = 0
    for step in range(8):
        b = sample_batch(data, p.net, p.recipe, step_generator(0, step))
        for i in range(p.recipe.batch):
            for k in range(1, p.recipe.unroll):
                c = b.controls[i, k].numpy()
                if np.allclose(c[:12], np.eye(4)[:3].ravel()):
                    standing += 1
                    assert torch.equal(b.targets[i, k], b.targets[i, k - 1]) and c[DT] > 0
                elif c[DT] > 1.5 / 30:
                    strided += 1
                    assert c[DT] == pytest.approx(2 / 30, abs=1e-4)
    assert standing > 0 and strided > 0


def test_standing_windows_keep_a_clean_memory(walk):
    """Every memory frame is replaced by static, except in windows where the player stands:
    their memory is the capture's own frames (smooth), their noise level 0."""
    def roughness(memory):  # (B, 3 n, H, W) -> (B,) mean difference between neighbouring pixels
        return (memory[..., 1:] - memory[..., :-1]).abs().mean(dim=(1, 2, 3))

    sets = ["memory_static=1.0", "memory_noise=0.1", "brightness_jitter=0.0"]
    moving, standing = preset(*sets, "still_fraction=0.0"), preset(*sets, "still_fraction=1.0")
    data = load_captures([str(walk)], moving.net, moving.recipe.unroll)
    b = sample_batch(data, moving.net, moving.recipe, step_generator(0, 0))
    assert (roughness(b.memory[0]) > 0.2).all()  # static everywhere
    b = sample_batch(data, standing.net, standing.recipe, step_generator(0, 0))
    assert (roughness(b.memory[0]) < 0.1).all() and (b.noise_level == 0).all()


@pytest.mark.parametrize("sync_free", [False, True])
def test_memory_corruptions_at_their_rates(sync_free):
    """Both ways of corrupting memory (counting the frames to replace on the CPU; on a GPU
    without that wait) replace frames by static and black at the recipe's rates."""
    from neuralworld.data import corrupt_memory_frames

    recipe = preset("memory_static=0.2", "memory_black=0.1", "memory_noise=0.0").recipe
    frames = torch.full((64, 20, 3, 4, 4), 0.5)
    out, sigma = corrupt_memory_frames(frames, recipe, torch.Generator().manual_seed(0), sync_free=sync_free)
    black = (out == 0).flatten(2).all(-1)
    static = (out != 0.5).flatten(2).any(-1) & ~black
    assert abs(static.float().mean() - 0.2) < 0.03 and abs(black.float().mean() - 0.1) < 0.03
    assert (out[~static & ~black] == 0.5).all() and (sigma == 0).all()
    assert out[static].std() > 0.2  # static, not a flat colour
    assert frames.eq(0.5).all()  # the input is left as it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_step_on_a_gpu_waits_for_nothing(walk):
    """Captures on the GPU, windows gathered there, losses not read: no host sync in a step."""
    from neuralworld.trainer import Trainer

    p = preset("frame_skip=true", "still_fraction=0.2", "adversarial_weight=0.1")
    dev = torch.device("cuda")
    data = load_captures([str(walk)], p.net, p.recipe.unroll, frame_skip=True, device=dev)
    trainer = Trainer(p.net, p.recipe, data.schema, dev, 0, 1, use_bf16=True, use_compile=False,
                      channels_last=True, fused=True)
    trainer.step(sample_batch(data, p.net, p.recipe, step_generator(0, 0, 0, dev), dev), 0, check=False)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.step(sample_batch(data, p.net, p.recipe, step_generator(0, 1, 0, dev), dev), 1, check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
