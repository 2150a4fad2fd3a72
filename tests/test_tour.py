"""The long-horizon measures: bands that real frames stay in and blur or noise leave, a frozen
world that holds its bands but does not move, and tours that do what the player does."""

import cv2
import numpy as np
import pytest

from neuralworld.capture.format import open_capture
from neuralworld.controls import ACTION_KIND, POSE_KIND, ControlSchema, walk_pose
from neuralworld.evaluate import copy_last, evaluate_world
from neuralworld.player import RULES
from neuralworld.tour import Bands, moves_ratio, tour_controls


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    from neuralworld.capture.synth import synthesize

    path = synthesize(tmp_path_factory.mktemp("tour") / "trail", seed=3, frames=240, width=64, height=48,
                      fps=30, progress=False)
    return open_capture(path)


def test_real_frames_stay_in_their_bands_blur_and_noise_leave(trail):
    real = np.asarray(trail.frames)
    bands = Bands.from_real(real)
    assert bands.check(real)["held"]
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in real])
    out = bands.check(blurred)
    assert out["frames_until_collapse"] == 0 and max(out["detail"]) < bands.detail[0]
    noisy = np.clip(real + np.random.default_rng(0).normal(0, 0.1 * 255, real.shape), 0, 255).astype(np.uint8)
    out = bands.check(noisy)
    assert not out["held"] and max(out["detail"]) > bands.detail[1]
    white = np.full_like(real, 250)
    assert bands.check(white)["frames_until_collapse"] == 0  # no contrast, the wrong colour


def test_soup_with_a_faint_pixel_grid_keeps_detail_and_contrast_but_leaves_the_structure_band(trail):
    # what a melted world looks like: the place's colours smeared (a 6-pixel blur) under a faint
    # repeating 4x4 pattern, the grid a stride-4 network draws; its fine detail and contrast pass
    # for the real frames', the edges of things do not
    real = np.asarray(trail.frames)
    bands = Bands.from_real(real)
    grid = np.tile(np.random.default_rng(1).uniform(-1, 1, (4, 4, 1)), (real.shape[1] // 4, real.shape[2] // 4, 1))
    smeared = np.stack([cv2.GaussianBlur(f, (0, 0), 6.0) for f in real]).astype(np.float64)
    soup = np.clip(smeared + 12 * grid, 0, 255).astype(np.uint8)
    out = bands.check(soup)
    assert all(bands.detail[0] < d < bands.detail[1] for d in out["detail"])
    assert all(bands.contrast[0] < c < bands.contrast[1] for c in out["contrast"])
    assert max(out["colour"]) < bands.colour
    assert out["frames_until_collapse"] == 0 and max(out["structure"]) < bands.structure[0]
    # a real view a little soft (1 pixel) keeps its structure (detail is what catches it)
    blurred = bands.check(np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in real]))
    assert min(blurred["structure"]) > bands.structure[0]


def test_truth_bands_hold_the_true_views_and_catch_soup(trail):
    truth = np.asarray(trail.frames)
    bands = Bands.from_truth(truth)
    assert bands.check(truth)["held"] and bands.reference == "truth"
    soup = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in truth])
    soup = (0.5 * soup + 0.5 * soup.mean(axis=(1, 2), keepdims=True)).astype(np.uint8)  # blurred, washed out
    out = bands.check(soup)
    assert out["frames_until_collapse"] == 0 and out["contrast"][0] < bands.contrast[0]
    noisy = np.clip(truth + np.random.default_rng(0).normal(0, 0.1 * 255, truth.shape), 0, 255).astype(np.uint8)
    assert max(bands.check(noisy)["detail"]) > bands.detail[1]


def test_pose_tour_stands_walks_turns_looks_strafes_and_backs_up():
    schema = ControlSchema.identity(POSE_KIND)
    controls, poses, moving = tour_controls(schema, 1 / 30, 630, walk_pose(np.zeros(3), 0.3, 0.0))
    assert controls.shape == (630, 16) and poses.shape == (631, 4, 4)
    assert not moving[:90].any() and np.allclose(controls[:90, 11], 0) and np.allclose(controls[:90, 3], 0)
    walk = controls[90:180]  # 3 s forward: +z in camera axes at up to the walking speed
    assert walk[:, 11].max() == pytest.approx(RULES.walk_speed / 30, rel=1e-3) and walk[:, 3].std() < 1e-6
    assert controls[:, 3].min() < -0.04 and controls[:, 3].max() > 0.04  # strafes both ways
    assert controls[:, 11].min() < -0.04  # backs up
    assert controls[:, 13].max() > 0.5 and controls[:, 13].min() < -0.5  # looks up and down
    assert controls[:, 2].min() < -0.03 and controls[:, 2].max() > 0.03  # turns both ways


def test_action_tour_stays_within_the_trained_ranges():
    schema = ControlSchema(ACTION_KIND, ("steering", "throttle"), ((-0.7, 0.6), (0.4, 1.0)), (0.1, 0.7), (0.3, 0.15))
    controls, poses, moving = tour_controls(schema, 1 / 20, 300)
    assert poses is None and moving.all() and controls.shape == (300, 2)
    assert controls[:40] == pytest.approx(np.tile([0.1, 0.7], (40, 1)))  # neutral first
    assert controls[:, 0].min() == pytest.approx(-0.7) and controls[:, 0].max() == pytest.approx(0.6)
    assert controls[:, 1].min() == pytest.approx(0.4) and controls[:, 1].max() == pytest.approx(1.0)
    idle, _, _ = tour_controls(schema, 1 / 20, 10, idle=True)
    assert idle == pytest.approx(np.tile([0.1, 0.7], (10, 1)))


def test_copy_last_holds_its_bands_and_idles_but_does_not_move(trail, tmp_path):
    from neuralworld.capture.format import CaptureWriter
    from neuralworld.model.config import NetConfig
    from neuralworld.model.network import CopyLastNet
    from neuralworld.world import World

    plain = tmp_path / "plain"  # the same frames and poses, without the synthetic scene: capture bands
    with CaptureWriter(plain, trail.width, trail.height) as w:
        for f in trail.frames:
            w.add(np.asarray(f))
        w.finish(trail.times, source="test", fps=trail.fps, poses=trail.poses, motion_source="file")
    config = NetConfig(height=48, width=64, memory_frames=(2, 4), channels=(8, 8), encoder_blocks=(0, 0),
                       decoder_blocks=(0, 0))
    frozen = copy_last(World(CopyLastNet(config), ControlSchema.identity(POSE_KIND), np.asarray(trail.frames[:4])))
    options = dict(horizons=(1,), starts=1, one_step_points=2, free_play=4, fidelity_frames=2, tour_frames=300,
                   idle_frames=30)
    play = evaluate_world(frozen, [open_capture(plain)], **options)["play"]
    assert play["bands"]["reference"] == "capture"
    assert play["idle_psnr"] == 100.0 and play["held"] and play["frames_until_collapse"] is None
    assert play["moves"] == 0.0 and not play["moved"]
    assert len(play["chunks"]["detail"]) == 6
    # against the true views of the tour, a frozen picture leaves its bands once the view turns
    play = evaluate_world(frozen, [trail], **options)["play"]
    assert play["bands"]["reference"] == "truth" and play["truth"]["32"]["psnr"] > 30  # the tour starts standing
    assert not play["held"] and play["frames_until_collapse"] > 0


def test_moves_compares_with_the_real_change():
    real = np.stack([np.full((4, 4, 3), 10 * i, np.uint8) for i in range(5)])  # 10 levels a frame
    gen = np.stack([np.full((4, 4, 3), 5 * i, np.uint8) for i in range(1, 5)])
    assert moves_ratio(np.zeros((4, 4, 3), np.uint8), gen, real, np.ones(4, bool)) == pytest.approx(0.5)
