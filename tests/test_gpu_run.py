"""benchmarks/gpu_run.py end to end on the CPU with a tiny config, and its parts: the car import
without PyAV, the peak table, the batch and learning-rate rules. The GPU run itself is the same
code with the CUDA rungs of the speed ladder switched on."""

import fractions
import importlib.util
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from neuralworld.capture import open_capture
from neuralworld.world import World

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_run = load("gpu_run")
train_speed = sys.modules["train_speed"]

TINY = ["--device", "cpu", "--threads", "1", "--preset", "tiny", "--size", "64x48", "--car-size", "32x32",
        "--set", "memory_frames=[2,4]", "--set", "channels=[8,16]", "--set", "decoder_blocks=[1,1]",
        "--set", "encoder_blocks=[0,0]", "--set", "control_embed=16", "--steps", "4", "--curve-steps", "2",
        "--trail-frames", "150", "--held-out-fraction", "0.3", "--horizons", "1,8", "--starts", "2",
        "--one-step-points", "4", "--free-play", "40", "--tour-frames", "60", "--idle-frames", "10",
        "--fidelity-frames", "8", "--ladder-steps", "2", "--ladder-seconds", "0.5", "--max-batch", "16"]


def car_segment(folder: Path, name: str, n: int, seed: int) -> Path:
    """A car-track-like segment: a 48x48 H.264 MP4 of a scrolling texture and its CSV of
    frame,t,steering,throttle at irregular times."""
    rng = np.random.default_rng(seed)
    texture = (rng.random((48, 400, 3)) * 255).astype(np.uint8)
    with av.open(str(folder / f"{name}.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=fractions.Fraction(20))
        s.width, s.height, s.pix_fmt = 48, 48, "yuv420p"
        for i in range(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, 3 * i:3 * i + 48]), format="rgb24")))
        c.mux(s.encode())
    t = np.cumsum(np.r_[0.0, 0.04 + 0.03 * rng.random(n - 1)])
    rows = ["frame,t,steering,throttle"] + [f"{i},{t[i]:.3f},{(i % 7 - 3) / 10:.1f},{0.5 + (i % 3) / 20:.2f}"
                                            for i in range(n)]
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return folder / f"{name}.mp4"


@pytest.fixture(scope="module")
def car_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("car")
    for k, n in enumerate([70, 60, 50]):
        car_segment(folder, f"seg-{k}", n, k)
    return folder


def test_the_tiny_run_writes_every_output(tmp_path, car_data, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    assert gpu_run.main(["-o", str(out), "--work", str(work), "--car-data", str(car_data), "--car-held-out", "seg-2",
                         *TINY]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["errors"] == [] and m["format"] == "neuralworld-gpu-run"
    assert set(m["phases"]) >= {"captures", "speed", "train trail", "train car", "eval trail", "eval car", "outputs"}

    # captures: the trail walk and its unseen continuation; the car segments minus the held-out one
    trail, car = m["captures"]["trail"], m["captures"]["car"]
    assert trail["frames"] == 150 and trail["train_frames"] == 105
    assert car["train"] == ["seg-0", "seg-1"] and car["held_out"] == ["seg-2"] and car["frames"] == 180

    # the speed table
    s = m["speed"]
    assert s["samples_per_s"] > 0 and s["flops_per_sample"] > 0 and s["peak"]["matmul"]["flops_per_s"] > 0
    assert s["mfu_matmul"] == pytest.approx(s["flops_per_sample"] * s["samples_per_s"] / s["peak"]["matmul"]["flops_per_s"])
    assert s["mfu_datasheet"] is None  # no bf16 peak for a CPU
    assert set(s["split"]) == {"data", "forward", "backward", "critic", "optimizer"}
    assert s["split"]["forward"] > 0 and s["split"]["backward"] > 0 and s["split"]["data"] > 0
    assert s["peak_rss_bytes"] > 0 and s["peak_memory_bytes"] is None
    assert [t["batch"] for t in s["batch_search"]["trials"]] == [8, 16] and s["batch_search"]["largest"] == 16
    assert s["batch_search"]["stopped_by"] == "cap" and s["training_batch"]["batch"] == 8
    ladder = {r["name"]: r for r in s["ladder"]}
    assert list(ladder) == [r[0] for r in train_speed.LADDER]
    assert all(ladder[n]["skipped"] == "needs CUDA" for n in train_speed.CUDA_ONLY)
    assert ladder["host"]["samples_per_s"] > 0 and ladder["host"]["kept"]
    report = (out / "report.md").read_text()
    for words in ("samples/s", "MFU", "time split per step", "peak memory", "largest batch that fits",
                  "copy the last frame", "idle PSNR", "collapse at"):
        assert words in report and words in printed

    # both worlds trained, with a training curve, and measured against copy-the-last-frame
    for name in ("trail", "car"):
        w = m["worlds"][name]
        assert w["training"]["steps"] == 4
        assert [p["step"] for p in w["curve"]] == [2, 4] and all(p["val_copy_psnr"] > 0 for p in w["curve"])
        f = w["figures"]
        assert len(f["psnr"]) == len(f["copy_psnr"]) == 2 and f["horizons"] == [1, 8]
        assert f["idle_psnr"] > 0 and f["copy_idle_psnr"] == 100.0
        assert f["held"] == (f["frames_until_collapse"] is None)
    assert m["worlds"]["trail"]["figures"]["truth"]  # the synth trail has true views of the tour
    assert "truth" not in m["worlds"]["car"]["figures"]

    # the fp16 world: half the bytes of weights, loads and plays like the float32 one
    assert m["fp16_world"]["world"] == "trail" and m["fp16_world"]["under_16_mb"]
    assert m["fp16_world"]["psnr_vs_float32_16_frames"] > 35
    weights = load_file(out / "world-fp16" / "weights.safetensors")
    assert weights["body.out.weight"].dtype == torch.float16 and weights["control_mean"].dtype == torch.float32
    world = World.load(out / "world-fp16")
    frames = world.rollout(None, np.tile(np.asarray(world.schema.mean, np.float32), (5, 1)))
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8

    for png in ("preview.png", "curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    preview = matplotlib.image.imread(out / "preview.png")
    assert preview.shape[0] > 7 * 128 and preview.shape[1] > 2 * 128  # 7 rows of strips at least 128 px tall

    # OUT holds what comes back from a GPU machine: a few files (a recalling world's bank adds
    # two), none more than one folder down
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 7 + 2 * world.config.recall and all(len(p.relative_to(out).parts) <= 2 for p in files)


def test_a_failed_phase_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_run.main(["-o", str(out), "--no-trail", "--car-data", str(tmp_path / "nothing"), *TINY]) == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["errors"][0].startswith("capture car: FileNotFoundError") and str(tmp_path / "nothing") in m["errors"][0]
    assert any(e.startswith("captures: RuntimeError: no captures") for e in m["errors"])
    assert "outputs" in m["phases"] and "## Errors" in (out / "report.md").read_text()


def test_the_car_import_without_pyav_matches_the_import(tmp_path, car_data):
    """Where PyAV is missing, OpenCV decodes the segment and the capture holds the same times,
    actions and (to within decoder rounding) frames."""
    from neuralworld.capture.importer import import_capture

    video = car_data / "seg-1.mp4"
    a = open_capture(import_capture(video, tmp_path / "pyav", motion=video.with_suffix(".csv"), progress=False))
    gpu_run.import_segment_opencv(video, video.with_suffix(".csv"), tmp_path / "opencv")
    b = open_capture(tmp_path / "opencv")
    assert (b.control_kind, b.control_names, len(b)) == (a.control_kind, a.control_names, len(a))
    assert np.allclose(b.times, a.times) and np.array_equal(b.controls(), a.controls())
    assert (b.width, b.height) == (a.width, a.height)
    diff = np.abs(np.asarray(b.frames, np.int16) - np.asarray(a.frames, np.int16))
    assert diff.mean() < 2.0


def test_the_datasheet_peaks_and_the_batch_rules():
    peak = train_speed.datasheet_peak
    assert peak("NVIDIA H200") == peak("NVIDIA H100 80GB HBM3") == pytest.approx(989.4e12)
    assert peak("NVIDIA H100 PCIe") == pytest.approx(756e12) and peak("NVIDIA A100-SXM4-80GB") == pytest.approx(312e12)
    assert peak("NVIDIA GeForce GTX 1080") is None
    assert train_speed.scaled_lr(3e-4, 64, 16) == pytest.approx(6e-4)  # square root of 4
    assert train_speed.scaled_lr(3e-4, 4096, 16) == pytest.approx(1.2e-3)  # at most 4x
    search = {"trials": [{"batch": 16, "samples_per_s": 100}, {"batch": 32, "samples_per_s": 190},
                         {"batch": 64, "samples_per_s": 200}, {"batch": 128, "samples_per_s": 205},
                         {"batch": 256, "samples_per_s": None, "out_of_memory": True}]}
    assert train_speed.choose_batch(search) == 32  # the smallest within 90% of the best
    assert train_speed.choose_batch(search, cap=16) == 16


def test_the_ladder_keeps_what_measures_faster_and_reports_what_fails(monkeypatch):
    """A switch that measures slower is left out of the rungs after it; one that fails is
    reported and left out too; the host rung is always the starting point."""
    from neuralworld.train import resolve_preset

    preset = resolve_preset("tiny", ["memory_frames=[2,4]", "channels=[8,16]", "decoder_blocks=[1,1]",
                                     "encoder_blocks=[0,0]"], size=(32, 32), batch=2)
    data = train_speed.random_data(preset.net, preset.recipe.unroll)
    speeds = {"host": 10.0, "no-sync": 12.0, "channels-last": 8.0}
    seen = []

    def fake_time_steps(trainer, data, preset, device, split=False, **kw):
        name = seen[-1]
        t = train_speed.Timing(preset.recipe.batch, steps=2, seconds=2 * preset.recipe.batch / speeds[name])
        t.phases = {"data": 0.1, "forward": 0.2, "backward": 0.3, "critic": 0.0, "optimizer": 0.1} if split else {}
        return t

    class FakeTrainer:
        def __init__(self, *args, **switches):
            name = next(n for n, change, adds, *_ in train_speed.LADDER
                        if n not in seen and (n not in train_speed.CUDA_ONLY))
            seen.append(name)
            self.switches = switches
            if name == "fused-adamw":
                assert not switches["channels_last"]  # measured slower: not carried on
                raise RuntimeError("fused kernels need a GPU\nmore lines")

    monkeypatch.setattr(train_speed, "time_steps", fake_time_steps)
    monkeypatch.setattr(train_speed, "Trainer", FakeTrainer)
    rows, kept = train_speed.speed_ladder(preset, data, data, torch.device("cpu"))
    by = {r["name"]: r for r in rows}
    assert by["host"]["kept"] and by["no-sync"]["kept"] and not by["channels-last"]["kept"]
    assert by["fused-adamw"]["error"] == "RuntimeError: fused kernels need a GPU" and "kept" not in by["fused-adamw"]
    assert by["no-sync"]["samples_per_s"] == pytest.approx(12.0) and by["no-sync"]["read_every"] == 10
    assert kept == {"use_bf16": False, "use_compile": False, "channels_last": False, "fused": False,
                    "cudnn_benchmark": False}


def test_the_batch_search_stops_at_the_first_batch_out_of_memory(monkeypatch):
    from neuralworld.train import resolve_preset

    preset = resolve_preset("tiny", ["memory_frames=[2,4]", "channels=[8,16]", "decoder_blocks=[1,1]",
                                     "encoder_blocks=[0,0]"], size=(32, 32), batch=4)
    data = train_speed.random_data(preset.net, preset.recipe.unroll)

    def fake_time_steps(trainer, data, preset, device, **kw):
        if preset.recipe.batch >= 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return train_speed.Timing(preset.recipe.batch, steps=2, seconds=0.1)

    monkeypatch.setattr(train_speed, "time_steps", fake_time_steps)
    search = train_speed.largest_batch(preset, data, torch.device("cpu"), {"use_bf16": False}, cap=1024)
    assert [t["batch"] for t in search["trials"]] == [4, 8, 16, 32]
    assert search["largest"] == 16 and search["stopped_by"] == "out of memory" and search["trials"][-1]["out_of_memory"]
