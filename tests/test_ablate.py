import json

import numpy as np
import pytest

from neuralworld.ablate import hold_ladder, ladder
from neuralworld.capture.format import CaptureWriter, open_capture
from neuralworld.cli import main
from neuralworld.model.config import PRESETS


def test_the_warp_is_a_rung_of_the_hold_ladder_and_no_part_of_the_earlier_recipes():
    assert {c.net.warp for _, _, c in ladder(PRESETS["tiny"])} == {"off"}
    hold = {name: c.net for name, _, c in hold_ladder(PRESETS["tiny"])}
    assert hold["today"].warp == "off" and hold["standing"].warp == "off"
    assert hold["warp"].warp == "input" and not hold["warp"].recall
    assert hold["recall"].warp == "base" and hold["recall"].recall and hold["all"].recall


def write_capture(path, n=64, size=16):
    """A texture sliding sideways, driven by a recorded steering/throttle log."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size, 4 * size, 3)).astype(np.uint8)
    with CaptureWriter(path, size, size) as w:
        for i in range(n):
            w.add(np.ascontiguousarray(np.roll(texture, i, axis=1)[:, :size]))
        w.finish(np.arange(n) / 10.0, source="test", fps=10.0,
                 actions=np.c_[np.full(n, 0.1), 0.5 + 0.1 * (np.arange(n) % 3)], action_names=["steering", "throttle"])
    return path


def test_ladder_changes_one_thing_per_rung():
    rungs = ladder(PRESETS["tiny"])
    names = [name for name, _, _ in rungs]
    assert names == ["baseline2022", "6dof", "memory", "unet", "adversarial", "bigger"]
    cfg = {name: c.net for name, _, c in rungs}
    recipe = {name: c.recipe for name, _, c in rungs}
    assert cfg["baseline2022"].memory_frames == (1,) and cfg["baseline2022"].network == "flat8"
    assert cfg["baseline2022"].control_mode == "2d" and recipe["baseline2022"].adversarial_weight == 0
    assert cfg["6dof"].control_mode == "6dof" and cfg["6dof"].memory_frames == (1,)
    assert cfg["memory"].memory_frames == PRESETS["tiny"].net.memory_frames and cfg["memory"].network == "flat8"
    assert cfg["unet"].network == "unet" and recipe["unet"].adversarial_weight == 0
    assert recipe["adversarial"].adversarial_weight > 0 and cfg["adversarial"].channel_mult == 1.0
    assert cfg["bigger"].channel_mult == 2.0
    # the training recipe is shared: equal compute means equal batches
    assert len({r.batch for r in recipe.values()}) == 1 and len({r.lr for r in recipe.values()}) == 1


@pytest.mark.slow
def test_ablate_runs_the_ladder_at_micro_scale(tmp_path):
    cap = write_capture(tmp_path / "cap")
    out = tmp_path / "abl"
    assert main(["ablate", str(cap), "-o", str(out), "--steps", "1", "--batch", "2", "--size", "16x16",
                 "--horizons", "1,4,32", "--starts", "1", "--free-play", "6", "--fidelity-frames", "2"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in result["rungs"]] == ["baseline2022", "6dof", "memory", "unet", "adversarial",
                                                    "bigger"]
    assert "equal samples: 1 optimizer steps x batch 2" in result["compute"]
    for r in result["rungs"]:
        assert (out / r["world"] / "world.json").is_file() and r["training"]["steps"] == 1
        assert r["metrics"]["rollout"]["psnr"][0] > 0 and r["metrics"]["rollout"]["psnr"][2] is None
    assert result["rungs"][-1]["parameters"] > result["rungs"][-2]["parameters"]
    # every rung is measured on the same held-out tail: 16 memory frames + the last quarter
    held = open_capture(out / "held-out" / "1-cap")
    assert len(held) == 16 + 16 and held.meta["held_out_of"]["first_held_out_frame"] == 48
    table = (out / "ablation.md").read_text()
    assert table.count("\n| ") == 8  # header + 6 rungs + copy-last
    assert "copy the last frame" in table and "horizons cut to [1, 4]" in table
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_ablate_refuses_sizes_the_flat_body_cannot_take(tmp_path, capsys):
    cap = write_capture(tmp_path / "cap", n=8)
    assert main(["ablate", str(cap), "-o", str(tmp_path / "a"), "--steps", "1", "--size", "20x20"]) == 2
    assert "divisible by 8" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
