"""Tiny generated captures for the training tests: a smooth random texture seen through a
window that moves by a random walk; the actions are the window's motion, so a world can learn them."""

import numpy as np

from neuralworld.capture.format import CaptureWriter


def moving_pattern(path, frames=60, size=32, seed=0, kind="actions", force=False, intrinsics=None):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    big = 4 * size
    texture = gaussian_filter(rng.random((big, big, 3)), (3.0, 3.0, 0), mode="wrap")  # seamless when rolled
    texture = (255 * (texture - texture.min()) / (np.ptp(texture) + 1e-6)).astype(np.uint8)
    steps = rng.choice([-1, 1], size=(frames, 2))  # one pixel per frame along each axis: never a still frame
    steps[0] = 0
    pos = np.cumsum(steps, axis=0)
    with CaptureWriter(path, size, size, force=force) as w:
        for y, x in pos:
            w.add(np.roll(texture, (-y, -x), axis=(0, 1))[:size, :size].copy())
        times = np.arange(frames) / 20.0
        if kind == "actions":
            w.finish(times, source="moving-pattern", fps=20.0, actions=steps.astype(float), action_names=["dy", "dx"])
        elif kind == "pose":
            poses = np.tile(np.eye(4), (frames, 1, 1))
            poses[:, 0, 3], poses[:, 1, 3] = pos[:, 1] * 0.1, pos[:, 0] * 0.1
            w.finish(times, source="moving-pattern", fps=20.0, poses=poses, motion_source="synthetic",
                     intrinsics=intrinsics)
        else:
            w.finish(times, source="moving-pattern", fps=20.0)
    return path
