"""`neuralworld bench`: figures per runtime, FLOPs and the machine's peak, as a table and JSON."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralworld import bench, export
from neuralworld.cli import main
from neuralworld.model.config import get_preset

from player_worlds import save_world


def test_flops_and_frames_per_second_of_a_preset(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--runtimes", "torch,onnxruntime", "--seconds", "0.2",
                 "--threads", "1", "--no-train", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    row = figures["results"][0]
    assert row["target"] == "preset tiny" and 50_000 < row["params"] < 5_000_000
    assert 0.01 < row["gflops_per_frame"] < 1.0
    assert figures["peak_gflops"]["1"] > 0.5 and figures["threads"] == [1]
    measured = {(r["runtime"], r["lever"]): r for r in row["results"]}
    assert set(measured) == {("torch", "network float32")} | {("onnxruntime", lever) for lever, _ in bench.NATIVE}
    for r in measured.values():
        assert r["threads"] == 1 and r["fps"] > 0 and abs(r["gflops_per_s"] - r["fps"] * row["gflops_per_frame"]) < 1e-6
    table = capsys.readouterr().out
    assert "onnxruntime" in table and "step int8" in table and "GFLOP/frame" in table and "machine peak" in table
    assert main(["bench", "--preset", "tiny", "--runtimes", "torch", "--json", str(out)]) == 2  # no overwrite


def test_repeat_keeps_the_best_of_interleaved_timings(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--runtimes", "torch", "--seconds", "0.1", "--threads", "1,2",
                 "--repeat", "3", "--no-train", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["repeat"] == 3
    results = figures["results"][0]["results"]
    kept = {r["threads"]: r["fps"] for r in results}
    assert len(results) == 2 and sorted(kept) == [1, 2]  # one figure per thread count
    timed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  torch ")]
    order = [int(words[3]) for words in timed]
    assert order == [1, 2] * 3  # thread counts in turn, three times
    for t, fps in kept.items():
        assert fps == pytest.approx(max(float(words[5]) for words in timed if int(words[3]) == t), abs=0.05)


def test_a_random_world_steps_with_a_standing_move():
    """The page's bench steps with the schema's mean controls: for a random world, standing (a
    rotation), not the zero matrix a mean of zeros would give the warp."""
    net, schema, _ = bench.random_world(get_preset("tiny").net)
    mean = np.array(schema.mean)
    assert np.array_equal(mean[:12].reshape(3, 4), np.eye(3, 4)) and mean[schema.names.index("valid")] == 1
    assert np.array_equal(net.normalise_controls(torch.tensor(mean, dtype=torch.float32)[None]), torch.zeros(1, 16))


def test_unknown_runtime_or_threads_is_a_user_error():
    assert main(["bench", "--preset", "tiny", "--runtimes", "cuda"]) == 2
    assert main(["bench", "--preset", "tiny", "--threads", "two"]) == 2
    assert main(["bench", "--preset", "tiny", "--repeat", "0"]) == 2
    assert main(["bench", "--preset", "tiny", "--warmup", "-1"]) == 2


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not Path(bench.CHROMIUM).exists(), reason=f"no chromium at {bench.CHROMIUM}")
@pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(), reason="ONNX Runtime Web not fetched")
def test_browser_frames_per_second_per_lever(tmp_path, capsys):
    world = save_world(tmp_path / "world")
    out = tmp_path / "bench.json"
    assert main(["bench", str(world), "--runtimes", "wasm", "--seconds", "0.5", "--warmup", "0.3", "--threads", "1,2",
                 "--walk-seconds", "0.5", "--no-train", "--profile", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    row = figures["results"][0]
    results = {(r["lever"], r["threads"]): r for r in row["results"]}
    assert set(results) == {(lever, t) for lever, _ in bench.LEVERS for t in (1, 2)}
    for (lever, t), r in results.items():
        assert r["fps"] > 1 and 0 < r["inference_ms"] < 1000 and 0 < r["first_frame_ms"] < 60000, (lever, t)
        assert r["threads"] == t and r["cross_origin_isolated"]  # the page runs on the threads it was asked for
        assert 0.3 <= r["warmup_seconds"] < 0.3 + 1, (lever, t)  # timed after the warm-up's steps
    assert results[("all", 1)]["model"] == "model.int8.onnx" and results[("before", 1)]["model"] == "model.net.onnx"
    walk = results[("all", 2)]["walk"]
    assert walk["fps"] > 1 and 0 < walk["p95_ms"] <= walk["max_ms"]
    assert row["download_mb"]["all"] < row["download_mb"]["before"]
    table = capsys.readouterr().out
    assert "all levers, 2 threads:" in table and "x before" in table and "walking (all levers" in table
    # --profile: the runtime's own per-operator times of the page's (int8) model, on each thread count
    for t in ("1", "2"):
        prof = row["profile"][t]
        assert prof["runs"] > 3 and prof["ops"]["QLinearConv"] > 0 and prof["ops"].get("Conv", 0) + prof["ops"].get("FusedConv", 0) > 0
        assert all(ms >= 0 for ms in prof["ops"].values()) and prof["nodes"][0][3] >= prof["nodes"][-1][3]
    assert "per-operator profile of the page's model, 2 threads" in table and "slowest nodes:" in table
    assert figures["warmup_seconds"] == 0.3
