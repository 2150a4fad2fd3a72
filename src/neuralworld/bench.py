"""`neuralworld bench`: how fast a world runs, per runtime and per speed lever, against what this
machine can do.

For a world folder or a preset with random weights (speed does not depend on the weights), all
in one run: frames/s on each thread count (--threads, default 1 and 2) in PyTorch eager,
onnxruntime CPU and headless chromium's WebAssembly backend (WebGPU too when chromium finds an
adapter); FLOPs per frame and parameters; the machine's own peak from a numpy float32 matrix
product timed in the same run, and the share of it each runtime reaches; training samples/s
from benchmarks/train_speed.py.

The browser figures are whole player steps (inference, memory update, drawing), as in play, for
each lever on its own and then together (LEVERS): the int8 model, the memory update inside the
model, the world in a Web Worker. Each page load also gives the time to its first generated
frame (a fresh browser, files from a local server) and, for the player as exported, the frame
times while walking (the live loop holding W): their 95th percentile and the longest. The
download is what the page fetches for its model and runtime. --profile adds where the page's
time goes: onnxruntime's own per-operator profile of the player as exported, in the page.
--repeat N times every figure N times, the thread counts and runtimes in turn, and keeps each
one's best: on a shared machine other work only ever slows a timing down, so the best of a few
interleaved runs is the figure least bent by it (as `timeit` advises).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_json, check_new_output

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# seconds of steps before the page's timing: over its first seconds chromium compiles the runtime's hot
# WebAssembly again, optimised, on the cores the steps use (at 2 threads in the worker, `forest`'s page
# drew 31, 38, 39, then 43-45 frames/s in its first seconds; on the page's thread it settled in about 2)
WARMUP_SECONDS = 3.0

_PEAK_SCRIPT = """
import sys, time, numpy as np
n = int(sys.argv[1]); a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
best, t_end = 0.0, time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < t_end:
    t = time.perf_counter(); a @ b; best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
print(best / 1e9)
"""


def machine_peak_gflops(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a numpy float32 (size x size) matrix product on `threads` threads (a fresh
    process, since BLAS reads its thread count when it loads)."""
    env = {**os.environ, **{k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(size), str(seconds)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def count_flops(net: torch.nn.Module, inputs: list[torch.Tensor]) -> int:
    """FLOPs of one frame (a multiply-add counts 2), by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        network_call(net, inputs)()
    return int(counter.get_total_flops())


def network_call(net: torch.nn.Module, inputs: list[torch.Tensor]):
    """A function that runs the network once on inputs in export order (export.input_names)."""
    from neuralworld.export import NetworkOnly

    only = NetworkOnly(net, net.config.layout)
    return lambda: only(*inputs)


def frames_per_second(step, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_torch(net, inputs, threads: int, seconds: float) -> dict:
    torch.set_num_threads(threads)
    with torch.inference_mode():
        fps = frames_per_second(network_call(net, inputs), seconds)
    return {"fps": fps, "threads": threads}


def bench_onnxruntime(model_bytes: bytes, inputs, threads: int, seconds: float) -> dict:
    import onnxruntime as ort

    from neuralworld.export import feeds as as_feeds
    from neuralworld.export import keeps_bytes

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    feeds = as_feeds(inputs, [i.name for i in session.get_inputs()], keeps_bytes(session))
    return {"fps": frames_per_second(lambda: session.run(None, feeds), seconds), "threads": threads}


# The levers, as page options (player.js): each on its own against "before" (the player as it was:
# the float32 network alone, its memory pushed by memory.js, on the page's thread), then together.
LEVERS = [
    ("before", "model=model.net.onnx&worker=0"),
    ("int8", "model=model.net.int8.onnx&worker=0"),
    ("memory in model", "model=model.onnx&worker=0"),
    ("worker", "model=model.net.onnx"),
    ("all", "model=model.int8.onnx"),
]
# the same models in onnxruntime (the page's worker has no counterpart there)
NATIVE = [("network float32", "model.net.onnx"), ("network int8", "model.net.int8.onnx"),
          ("step float32", "model.onnx"), ("step int8", "model.int8.onnx")]


def browser_missing() -> str | None:
    """Why headless chromium cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM}"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e .[test])"
    return None


@contextlib.contextmanager
def served_page(web_dir: Path, args: list[str]):
    """A fresh headless chromium page (launched with `args`) and the URL that serves `web_dir`
    as `neuralworld play` does (cross-origin isolated); both closed afterwards."""
    from playwright.sync_api import sync_playwright

    from neuralworld.play import make_server, server_url

    server = make_server(web_dir, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + args)
            try:
                yield browser.new_page(), server_url(server)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


def bench_browser(web_dir: Path, backend: str, seconds: float, threads: int = 1, query: str = "",
                  walk_seconds: float = 0.0, warmup: float = WARMUP_SECONDS) -> dict:
    """Whole player steps per second in headless chromium, timed after `warmup` seconds of them, the
    time to the first frame and, with walk_seconds, the live loop's frame times while walking;
    {"skipped": reason} when not possible."""
    missing = browser_missing()
    if missing:
        return {"skipped": missing}
    # WebGPU: chromium offers its software adapter (SwiftShader) only with this flag
    with served_page(web_dir, ["--enable-unsafe-webgpu"] if backend == "webgpu" else ["--disable-gpu"]) as (page, url):
        page.goto(f"{url}?backend={backend}&threads={threads}" + (f"&{query}" if query else ""))
        page.wait_for_function("window.nw && window.nw.ready", timeout=30000)
        try:
            page.evaluate("window.nw.ready")
        except Exception as e:  # noqa: BLE001 -- reported in the table, not fatal
            return {"skipped": f"the page did not load the model ({str(e).splitlines()[0][:120]})"}
        page.wait_for_function("window.nw.firstFrameMs !== null", timeout=60000)
        first = page.evaluate("window.nw.firstFrameMs")
        page.evaluate("window.nw.pause(true)")
        if not page.evaluate("window.nw.backend").startswith(backend):
            adapter = page.evaluate("navigator.gpu ? navigator.gpu.requestAdapter().then(a => !!a) : false")
            return {"skipped": "no WebGPU adapter" if not adapter else "WebGPU session failed, wasm used"}
        adapter = page.evaluate("""async () => { if (!navigator.gpu) return null;
            const a = await navigator.gpu.requestAdapter(); return a ? (a.info || {}).architecture || 'yes' : null; }""")
        software = backend == "webgpu" and adapter == "swiftshader"  # seconds per frame: one step of warm-up
        result = page.evaluate(f"window.nw.bench({seconds}, {0 if software else warmup})")
        out = {"fps": result["fps"], "inference_ms": result["inference_ms"], "step_p95_ms": result["step_p95_ms"],
               "warmup_seconds": result["warmup_seconds"],
               "first_frame_ms": first, "threads": result["threads"], "model": result["model"],
               "cross_origin_isolated": page.evaluate("self.crossOriginIsolated")}
        if walk_seconds > 0:
            page.evaluate("window.nw.reset()")
            page.evaluate("window.nw.pause(false)")
            page.keyboard.down("KeyW")
            page.wait_for_timeout(500)  # up to speed
            page.evaluate("window.nw.resetPacing()")
            start = page.evaluate("[window.nw.frames, performance.now()]")
            page.wait_for_timeout(walk_seconds * 1000)
            end = page.evaluate("[window.nw.frames, performance.now()]")
            pacing = page.evaluate("window.nw.pacing")
            page.keyboard.up("KeyW")
            out["walk"] = {"fps": 1000 * (end[0] - start[0]) / (end[1] - start[1]), "p95_ms": pacing["p95"],
                           "max_ms": pacing["max"], "seconds": walk_seconds}
        if backend == "webgpu":
            out["adapter"] = adapter
        return out


def profile_browser(web_dir: Path, seconds: float, threads: int) -> dict:
    """Where the page's time goes: onnxruntime's own per-operator profile of the player as exported
    (WebAssembly, on the page's thread so that its console reaches us), over `seconds` of whole
    steps. {"ops": {operator: ms per frame}, "nodes": [(node, operator, output shape, ms per
    frame)] (slowest first), "runs", "fps"}; {"skipped": reason} when not possible."""
    missing = browser_missing()
    if missing:
        return {"skipped": missing}
    lines: list[str] = []
    with served_page(web_dir, ["--disable-gpu"]) as (page, url):
        page.on("console", lambda m: lines.append(m.text))
        page.goto(f"{url}?backend=wasm&threads={threads}&worker=0&profile=1")
        page.wait_for_function("window.nw && window.nw.ready", timeout=30000)
        page.evaluate("window.nw.ready")
        page.evaluate("window.nw.pause(true)")
        fps = page.evaluate(f"window.nw.bench({seconds}, 0)")["fps"]  # one step of warm-up: the profile counts all
        page.evaluate("window.nw.endProfiling()")
        page.wait_for_timeout(500)  # the last console messages
    events = []
    for line in (part.strip().rstrip(",") for text in lines for part in text.splitlines()):
        if line.startswith("{") and '"cat"' in line:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    runs = sum(1 for e in events if e.get("name") == "model_run")
    if not runs:
        return {"skipped": "the page printed no profile"}
    ops, nodes = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op, shape = e["args"].get("op_name", "?"), e["args"].get("output_type_shape", [])
            ops[op] += e["dur"] / 1000 / runs
            nodes[(e["name"][:-len("_kernel_time")], op, json.dumps(shape))] += e["dur"] / 1000 / runs
    return {"ops": dict(ops.most_common()), "nodes": [(*k, v) for k, v in nodes.most_common(12)], "runs": runs,
            "fps": fps}


def print_profile(row: dict) -> None:
    for t, prof in sorted(row.get("profile", {}).items()):
        print()
        if "skipped" in prof:
            print(f"{row['target']}, per-operator profile, {t} thread{'s' * (t > 1)}: skipped: {prof['skipped']}")
            continue
        total = sum(prof["ops"].values())
        print(f"{row['target']}, per-operator profile of the page's model, {t} thread{'s' * (t > 1)} "
              f"({prof['runs']} runs at {prof['fps']:.1f} frames/s while profiled; kernels {total:.2f} ms per frame):")
        for op, ms in prof["ops"].items():
            if ms >= 0.01 * total:
                print(f"  {op:<20} {ms:7.2f} ms {100 * ms / total:5.1f}%")
        print("  slowest nodes:")
        for name, op, shape, ms in prof["nodes"]:
            print(f"  {ms:7.2f} ms  {op:<16} {name[:40]:<40} {shape}")


def training_speed(preset) -> dict:
    """Training samples/s from `measure_training_speed` of benchmarks/train_speed.py (a source checkout)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "train_speed.py"
    if not script.is_file():
        return {"skipped": "no benchmarks/train_speed.py (it comes with the source checkout)"}
    spec = importlib.util.spec_from_file_location("train_speed", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.measure_training_speed(preset, steps=2, warmup=1)  # a few steps are enough for a rate
    except Exception as e:  # noqa: BLE001 -- one figure missing is no reason to lose the rest
        return {"skipped": f"measure_training_speed failed: {type(e).__name__}: {e}"}


def load_target(world: Path | None, preset: str | None):
    """(name, net, schema, start frames, Preset, recall) for a world folder or a preset with random
    weights; recall: a recalling world's (bank, start pose), else None (bench_one makes one)."""
    from neuralworld.model.config import PRESETS, Preset, TrainRecipe, get_preset

    if world is not None:
        from neuralworld.world import World

        w = World.load(world)
        recipe = w.summary.get("recipe")
        recipe = (TrainRecipe.from_json(recipe) if isinstance(recipe, dict) else
                  PRESETS[w.preset].recipe if w.preset in PRESETS else TrainRecipe())
        recall = (w.bank, w.start_pose) if w.bank is not None else None
        return str(world), w.net, w.schema, w.start_frames, Preset(w.preset or "world", w.config, recipe), recall
    net, schema, start = random_world(get_preset(preset).net)
    return f"preset {preset}", net, schema, start, get_preset(preset), None


def stand_in_bank(start: np.ndarray):
    """(bank, start pose) for timing a recalling network without a capture: its start frames,
    seen from a row of places heading a little apart (recall.Bank)."""
    from neuralworld.controls import walk_pose
    from neuralworld.recall import Bank

    poses = np.stack([walk_pose(np.array([0.5 * i, 0.0, 0.0]), 0.2 * i, 0.0) for i in range(len(start))])
    return Bank(start, poses), poses[-1]


def random_world(config):
    """(net, schema, start frames) of a network with random weights: speed does not depend on them."""
    from neuralworld.controls import ControlSchema, walk_pose
    from neuralworld.model.network import WorldNet
    from neuralworld.tour import tour_controls

    # its mean, which the page's bench steps with, is the player standing for a 1/30 s step: the
    # identity schema's mean of zeros would be a zero rotation, a move no player makes
    identity = ControlSchema.identity()
    standing = tour_controls(identity, 1 / 30, 1, walk_pose(np.zeros(3), 0.0, 0.0), idle=True)[0][0]
    schema = dataclasses.replace(identity, mean=tuple(standing.tolist()))
    torch.manual_seed(0)
    net = WorldNet(config, schema).eval()
    with torch.no_grad():  # random everywhere (a fresh residual net starts as an exact copy of its input)
        for p in net.parameters():
            p.normal_(0.0, 0.02)
    start = np.random.default_rng(0).integers(0, 256, (4, config.height, config.width, 3), dtype=np.uint8)
    return net, schema, start


def download_mb(web: Path, model: str) -> float:
    """MB the page fetches for a model on the WebAssembly backend: the model and the runtime."""
    from neuralworld.export import RUNTIME_OF

    return ((web / model).stat().st_size + sum((web / "ort" / f).stat().st_size for f in RUNTIME_OF["wasm"])) / 1e6


def bench_one(name, net, schema, start, preset, *, seconds: float, threads: list[int], runtimes: list[str],
              peaks: dict, train: bool, walk_seconds: float = 3.0, profile: bool = False, recall=None,
              repeat: int = 1, warmup: float = WARMUP_SECONDS) -> dict:
    from neuralworld import export, quantize
    from neuralworld.recall import Follower

    config = net.config
    layout, h, w = config.layout, config.height, config.width
    bank, start_pose = (recall or stand_in_bank(start)) if config.recall else (None, None)
    inputs = export.parity_inputs(layout, h, w, schema, seed=0, noise_shapes=config.noise_shapes(),
                                  recall=bank is not None)
    flops = count_flops(net, inputs)
    row = {"target": name, "height": h, "width": w, "params": sum(p.numel() for p in net.parameters()),
           "gflops_per_frame": flops / 1e9, "results": []}
    print(f"{name}: {w}x{h}, {row['params'] / 1e6:.2f} M parameters, {flops / 1e9:.3f} GFLOP per frame", flush=True)

    def record(runtime, lever, result, t):
        """Keep the result, or the faster of it and the same figure's earlier timing (--repeat)."""
        result = {"runtime": runtime, "lever": lever, **result, "threads": t}
        if "fps" in result:
            result["gflops_per_s"] = result["fps"] * flops / 1e9
            result["share_of_peak"] = result["gflops_per_s"] / peaks[max(t, 1)]
        earlier = next((i for i, r in enumerate(row["results"]) if (r["runtime"], r["lever"], r["threads"])
                        == (runtime, lever, t)), None)
        if earlier is None:
            row["results"].append(result)
        elif result.get("fps", 0.0) > row["results"][earlier].get("fps", 0.0):
            row["results"][earlier] = result
        shown = f"{result['fps']:.1f} frames/s" if "fps" in result else f"skipped: {result['skipped']}"
        print(f"  {runtime:<16} {lever:<16} {t} thread{'s' * (t != 1)}  {shown}", flush=True)

    with tempfile.TemporaryDirectory(prefix="neuralworld-bench-") as tmp:
        if {"onnxruntime", "wasm", "webgpu"} & set(runtimes):
            # the exported player, and the network alone (its memory updated outside) in float32 and int8
            net_only, _ = export.export_onnx(net, layout, h, w, schema, step=False)
            played = quantize.played_inputs(net, layout, schema, start,
                                            follower=Follower(bank, start_pose) if bank is not None else None)
            names = export.net_input_names(net)
            calibration = [export.feeds(c, names, False) for c in played[::quantize.CALIBRATION_EVERY]]
            net_int8 = quantize.quantize_int8(net_only, calibration, h)
            outside = {"memory": "outside"}
            web = export.export_network(net, Path(tmp) / "web", layout=layout, height=h, width=w, schema=schema,
                                        start_frames=start, webgpu_f16=False, meta={"name": name}, bank=bank,
                                        start_pose=start_pose, extra_models={
                                            "model.net.onnx": (net_only, {"precision": "float32", **outside}),
                                            "model.net.int8.onnx": (net_int8, {"precision": "int8", **outside})})
            row["download_mb"] = {lever: download_mb(web, query.split("model=")[1].split("&")[0])
                                  for lever, query in LEVERS if (web / query.split("model=")[1].split("&")[0]).is_file()}
        # every runtime on one thread count, then the next, and all again for --repeat: ratios from like conditions
        for t in [t for _ in range(repeat) for t in threads]:
            if "torch" in runtimes:
                record("torch", "network float32", bench_torch(net, inputs, t, seconds), t)
            if "onnxruntime" in runtimes:
                for lever, model in NATIVE:
                    record("onnxruntime", lever, bench_onnxruntime((web / model).read_bytes(), inputs, t, seconds), t)
            if "wasm" in runtimes:
                for lever, query in LEVERS:
                    record("chromium-wasm", lever, bench_browser(web, "wasm", seconds, t, query,
                                                                 walk_seconds if lever == "all" else 0.0, warmup), t)
        if "webgpu" in runtimes:
            record("chromium-webgpu", "all", bench_browser(web, "webgpu", seconds, warmup=warmup), 0)
        if profile and "wasm" in runtimes:
            row["profile"] = {t: profile_browser(web, seconds, t) for t in threads}
    if train:
        row["training"] = training_speed(preset)
        t = row["training"]
        print(f"  {'training':<16} " + (f"{t['samples_per_s']:.1f} samples/s" if "samples_per_s" in t
                                       else f"skipped: {t.get('skipped', t)}"), flush=True)
    return row


def _find(row, runtime, lever, threads):
    return next((r for r in row["results"] if (r["runtime"], r["lever"], r["threads"]) == (runtime, lever, threads)
                 and "fps" in r), None)


def print_table(rows: list[dict], peaks: dict, threads: list[int]) -> None:
    print()
    print("machine peak (numpy float32 matmul): " + ", ".join(f"{v:.0f} GFLOP/s on {k} thread{'s' * (k > 1)}"
                                                             for k, v in sorted(peaks.items())))
    for row in rows:
        print()
        print(f"{row['target']}: {row['width']}x{row['height']}, {row['params'] / 1e6:.2f} M parameters, "
              f"{row['gflops_per_frame']:.3f} GFLOP/frame")
        header = f"{'runtime':<16} {'lever':<16}" + "".join(f" {f'{t} thread' + 's' * (t > 1) + ': fps  ms  peak':>30}"
                                                            for t in threads)
        header += f" {'first frame':>12} {'download':>9}"
        print(header)
        print("-" * len(header))
        pairs = sorted({(r["runtime"], r["lever"]) for r in row["results"]}, key=lambda k: [
            (r["runtime"], r["lever"]) for r in row["results"]].index(k))
        for runtime, lever in pairs:
            line = f"{runtime:<16} {lever:<16}"
            firsts = []
            for t in ([0] if runtime == "chromium-webgpu" else threads):
                r = next((r for r in row["results"] if (r["runtime"], r["lever"], r["threads"]) == (runtime, lever, t)), None)
                if r is None or "fps" not in r:
                    line += f" {('skipped: ' + r['skipped'])[:30] if r else '':>30}"
                    continue
                line += f" {r['fps']:>14.1f} {1000 / r['fps']:>6.1f} {100 * r['share_of_peak']:>6.0f}%"
                if "first_frame_ms" in r:
                    firsts.append(r["first_frame_ms"])
            if firsts:
                line += f" {f'{min(firsts) / 1000:.2f} s':>12}"
            if runtime == "chromium-wasm" and lever in row.get("download_mb", {}):
                line += f" {row['download_mb'][lever]:>6.1f} MB"
            print(line)
        summary(row, threads)
        print_profile(row)
        t = row.get("training", {})
        if "samples_per_s" in t:
            print(f"  training: {t['samples_per_s']:.1f} samples/s" + (f" (batch {t['batch']}, {t.get('threads', '?')} "
                                                                        "threads)" if "batch" in t else ""))


def summary(row: dict, threads: list[int]) -> None:
    """The ratios that matter: all levers against before and against onnxruntime's float32 network
    on the same threads, a second thread against one, and the frame times while walking."""
    for t in threads:
        everything, before = _find(row, "chromium-wasm", "all", t), _find(row, "chromium-wasm", "before", t)
        native = _find(row, "onnxruntime", "network float32", t)
        if everything and (before or native):
            parts = ([f"{everything['fps'] / before['fps']:.2f}x before"] if before else []) + (
                [f"{100 * everything['fps'] / native['fps']:.0f}% of onnxruntime's float32 network"] if native else [])
            print(f"  all levers, {t} thread{'s' * (t > 1)}: " + ", ".join(parts))
        if everything and "walk" in everything:
            walk = everything["walk"]
            print(f"  walking (all levers, {t} thread{'s' * (t > 1)}): {walk['fps']:.1f} frames/s, frame time p95 "
                  f"{walk['p95_ms']:.1f} ms, longest {walk['max_ms']:.1f} ms")
    if len(threads) > 1:
        lo, hi = min(threads), max(threads)
        gains = [f"{lever} {_find(row, 'chromium-wasm', lever, hi)['fps'] / _find(row, 'chromium-wasm', lever, lo)['fps']:.2f}x"
                 for lever, _ in LEVERS if _find(row, "chromium-wasm", lever, hi) and _find(row, "chromium-wasm", lever, lo)]
        if gains:
            print(f"  {hi} threads against {lo} in chromium: " + ", ".join(gains))


RUNTIMES = ["torch", "onnxruntime", "wasm", "webgpu"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", type=Path, nargs="?", help="world folder to measure (else --preset)")
    parser.add_argument("--preset", action="append", default=None,
                        help="measure this preset with random weights (repeatable; default: tiny and forest)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES[:3]),
                        help="comma-separated runtimes: torch, onnxruntime, wasm (chromium), webgpu (chromium, "
                             "when it finds an adapter)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per runtime, lever and thread count")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS,
                        help="seconds of steps the page runs before each of its timings: chromium optimises the "
                             "runtime's hot code in the background over the first seconds")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts for every runtime (the page's ?threads=N)")
    parser.add_argument("--walk-seconds", type=float, default=3.0,
                        help="seconds of walking in the page with every lever, for its frame times (0: none)")
    parser.add_argument("--no-train", action="store_true", help="skip the training samples/s figure")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the page's time goes: onnxruntime's per-operator profile of the "
                             "player as exported, in chromium's WebAssembly backend, on each thread count")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time every figure this many times, thread counts and runtimes in turn, and keep each "
                             "one's best (a shared machine's other work only slows timings down)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")


def run(args) -> int:
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise UserError(f"--runtimes: unknown {', '.join(unknown)} (choose from {', '.join(RUNTIMES)})")
    try:
        threads = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise UserError(f"--threads {args.threads}: expected thread counts such as 1,2")
    if args.world is not None and args.preset:
        raise UserError("give a world folder or --preset, not both")
    if args.repeat < 1:
        raise UserError(f"--repeat {args.repeat}: expected 1 or more")
    if not args.warmup >= 0:
        raise UserError(f"--warmup {args.warmup}: expected seconds, 0 or more")
    if args.json is not None:
        check_new_output(args.json, args.force)
    targets = [(args.world, None)] if args.world is not None else [(None, p) for p in (args.preset or ["tiny", "forest"])]
    peaks = {t: machine_peak_gflops(t) for t in sorted({1, *threads})}
    rows = []
    for world, preset in targets:
        *target, recall = load_target(world, preset)
        rows.append(bench_one(*target, seconds=args.seconds, threads=threads, runtimes=runtimes, peaks=peaks,
                              train=not args.no_train, walk_seconds=args.walk_seconds, profile=args.profile,
                              recall=recall, repeat=args.repeat, warmup=args.warmup))
    print_table(rows, peaks, threads)
    if args.json is not None:
        atomic_write_json(args.json, {"peak_gflops": {str(k): v for k, v in peaks.items()}, "threads": threads,
                                      "repeat": args.repeat, "warmup_seconds": args.warmup, "results": rows})
    return 0
