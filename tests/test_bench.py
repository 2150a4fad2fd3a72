"""`neuralworld bench`: figures per runtime, FLOPs and the machine's peak, as a table and JSON."""

import json
from pathlib import Path

import pytest

from neuralworld import bench, export
from neuralworld.cli import main

from player_worlds import save_world


def test_flops_and_frames_per_second_of_a_preset(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--runtimes", "torch,onnxruntime", "--seconds", "0.2",
                 "--no-train", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    row = figures["results"][0]
    assert row["target"] == "preset tiny" and 50_000 < row["params"] < 5_000_000
    assert 0.01 < row["gflops_per_frame"] < 1.0
    assert figures["peak_gflops"]["1"] > 0.5
    for runtime in ("torch", "onnxruntime"):
        r = row["runtimes"][runtime]
        assert r["fps"] > 0 and abs(r["gflops_per_s"] - r["fps"] * row["gflops_per_frame"]) < 1e-6
    table = capsys.readouterr().out
    assert "onnxruntime" in table and "GFLOP/frame" in table and "machine peak" in table
    assert main(["bench", "--preset", "tiny", "--runtimes", "torch", "--json", str(out)]) == 2  # no overwrite


def test_unknown_runtime_is_a_user_error():
    assert main(["bench", "--preset", "tiny", "--runtimes", "cuda"]) == 2


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not Path(bench.CHROMIUM).exists(), reason=f"no chromium at {bench.CHROMIUM}")
@pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(), reason="ONNX Runtime Web not fetched")
def test_browser_frames_per_second(tmp_path):
    world = save_world(tmp_path / "world")
    out = tmp_path / "bench.json"
    assert main(["bench", str(world), "--runtimes", "wasm", "--seconds", "0.5", "--no-train", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["results"][0]["runtimes"]["chromium-wasm"]
    assert r["fps"] > 1 and 0 < r["inference_ms"] < 1000 and r["memory_ms"] >= 0
