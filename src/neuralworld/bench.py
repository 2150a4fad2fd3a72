"""`neuralworld bench`: how fast a world runs, per runtime, against what this machine can do.

For a world folder or a preset with random weights (speed does not depend on the weights):
frames/s in PyTorch eager, onnxruntime CPU, headless chromium's WebAssembly backend and, when
chromium finds a WebGPU adapter, WebGPU; FLOPs per frame and parameters; the machine's own
peak from a numpy float32 matrix product timed in the same run, and the share of it each
runtime reaches; training samples/s from benchmarks/train_speed.py.
The browser figures are whole player steps (inference, memory update, drawing), as in play.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def count_flops(net: torch.nn.Module, inputs: list[torch.Tensor], levels: int) -> int:
    """FLOPs of one frame (a multiply-add counts 2), by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(inputs[0], inputs[1:1 + levels], inputs[1 + levels:])
    return int(counter.get_total_flops())


def frames_per_second(step, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_torch(net, inputs, levels: int, threads: int, seconds: float) -> dict:
    torch.set_num_threads(threads)
    controls, memory, noise = inputs[0], inputs[1:1 + levels], inputs[1 + levels:]
    with torch.inference_mode():
        fps = frames_per_second(lambda: net(controls, memory, noise), seconds)
    return {"fps": fps, "threads": threads}


def bench_onnxruntime(model_bytes: bytes, inputs, threads: int, seconds: float) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return {"fps": frames_per_second(lambda: session.run(["frame"], feeds), seconds), "threads": threads}


def bench_browser(web_dir: Path, backend: str, seconds: float, threads: int = 1) -> dict:
    """Whole player steps per second in headless chromium; {"skipped": reason} when not possible."""
    if not Path(CHROMIUM).exists():
        return {"skipped": f"no chromium at {CHROMIUM}"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -e .[test])"}
    from neuralworld.play import make_server, server_url

    server = make_server(web_dir, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # WebGPU: chromium offers its software adapter (SwiftShader) only with this flag
    args = CHROMIUM_ARGS + (["--enable-unsafe-webgpu"] if backend == "webgpu" else ["--disable-gpu"])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{server_url(server)}?backend={backend}&threads={threads}")
                page.wait_for_function("window.nw && window.nw.ready", timeout=30000)
                try:
                    page.evaluate("window.nw.ready")
                except Exception as e:  # noqa: BLE001 -- reported in the table, not fatal
                    return {"skipped": f"the page did not load the model ({str(e).splitlines()[0][:120]})"}
                page.evaluate("window.nw.pause(true)")
                if page.evaluate("window.nw.backend") != backend:
                    adapter = page.evaluate("navigator.gpu ? navigator.gpu.requestAdapter().then(a => !!a) : false")
                    return {"skipped": "no WebGPU adapter" if not adapter else "WebGPU session failed, wasm used"}
                adapter = page.evaluate("""async () => { if (!navigator.gpu) return null;
                    const a = await navigator.gpu.requestAdapter(); return a ? (a.info || {}).architecture || 'yes' : null; }""")
                software = backend == "webgpu" and adapter == "swiftshader"  # seconds per frame: warm up less
                result = page.evaluate(f"window.nw.bench({seconds}, {1 if software else 3})")
                out = {"fps": result["fps"], "inference_ms": result["inference_ms"], "memory_ms": result["memory_ms"],
                       "threads": threads, "cross_origin_isolated": page.evaluate("self.crossOriginIsolated")}
                if backend == "webgpu":
                    out["adapter"] = adapter
                return out
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


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
    """(name, net, schema, start frames, Preset) for a world folder or a preset with random weights."""
    from neuralworld.controls import ControlSchema
    from neuralworld.model.config import PRESETS, Preset, TrainRecipe, get_preset
    from neuralworld.model.network import WorldNet

    if world is not None:
        from neuralworld.world import World

        w = World.load(world)
        recipe = w.summary.get("recipe")
        recipe = (TrainRecipe.from_json(recipe) if isinstance(recipe, dict) else
                  PRESETS[w.preset].recipe if w.preset in PRESETS else TrainRecipe())
        return str(world), w.net, w.schema, w.start_frames, Preset(w.preset or "world", w.config, recipe)
    config = get_preset(preset).net
    schema = ControlSchema.identity()
    torch.manual_seed(0)
    net = WorldNet(config, schema).eval()
    with torch.no_grad():  # random everywhere (a fresh residual net starts as an exact copy of its input)
        for p in net.parameters():
            p.normal_(0.0, 0.02)
    start = np.random.default_rng(0).integers(0, 256, (4, config.height, config.width, 3), dtype=np.uint8)
    return f"preset {preset}", net, schema, start, get_preset(preset)


def bench_one(name, net, schema, start, preset, *, seconds: float, threads: int, runtimes: list[str], peaks: dict,
              train: bool, browser_threads: int = 1) -> dict:
    from neuralworld import export

    config = net.config
    layout, h, w = config.layout, config.height, config.width
    levels = len(layout.frames)
    inputs = export.parity_inputs(layout, h, w, schema, seed=0, noise_shapes=config.noise_shapes())
    flops = count_flops(net, inputs, levels)
    row = {"target": name, "height": h, "width": w, "params": sum(p.numel() for p in net.parameters()),
           "gflops_per_frame": flops / 1e9, "runtimes": {}}
    print(f"{name}: {w}x{h}, {row['params'] / 1e6:.2f} M parameters, {flops / 1e9:.3f} GFLOP per frame", flush=True)

    def record(runtime, result, peak_threads):
        if "fps" in result:
            result["gflops_per_s"] = result["fps"] * flops / 1e9
            result["share_of_peak"] = result["gflops_per_s"] / peaks[peak_threads]
        row["runtimes"][runtime] = result
        shown = f"{result['fps']:.1f} frames/s" if "fps" in result else f"skipped: {result['skipped']}"
        print(f"  {runtime:<16} {shown}", flush=True)

    if "torch" in runtimes:
        record("torch", bench_torch(net, inputs, levels, threads, seconds), threads)
    if "onnxruntime" in runtimes:
        model_bytes, _ = export.export_onnx(net, layout, h, w, schema)
        record("onnxruntime", bench_onnxruntime(model_bytes, inputs, threads, seconds), threads)
    browser_runtimes = [r for r in ("wasm", "webgpu") if r in runtimes]
    if browser_runtimes:
        with tempfile.TemporaryDirectory(prefix="neuralworld-bench-") as tmp:
            web = export.export_network(net, Path(tmp) / "web", layout=layout, height=h, width=w, schema=schema,
                                        start_frames=start, meta={"name": name})
            for runtime in browser_runtimes:
                record(f"chromium-{runtime}", bench_browser(web, runtime, seconds, browser_threads), browser_threads)
    if train:
        row["training"] = training_speed(preset)
        t = row["training"]
        print(f"  {'training':<16} " + (f"{t['samples_per_s']:.1f} samples/s" if "samples_per_s" in t
                                       else f"skipped: {t.get('skipped', t)}"), flush=True)
    return row


def print_table(rows: list[dict], peaks: dict) -> None:
    print()
    print("machine peak (numpy float32 matmul): " + ", ".join(f"{v:.0f} GFLOP/s on {k} thread{'s' * (k > 1)}"
                                                             for k, v in sorted(peaks.items())))
    header = f"{'target':<18} {'runtime':<16} {'frames/s':>9} {'ms/frame':>9} {'GFLOP/s':>8} {'of peak':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        for runtime, r in row["runtimes"].items():
            if "fps" in r:
                note = "".join(f"  {k} {r[k]}" for k in ("threads", "adapter") if k in r)
                if "inference_ms" in r:
                    note += f"  (inference {r['inference_ms']:.1f} ms, memory {r['memory_ms']:.1f} ms)"
                print(f"{row['target']:<18} {runtime:<16} {r['fps']:>9.1f} {1000 / r['fps']:>9.1f} "
                      f"{r['gflops_per_s']:>8.1f} {100 * r['share_of_peak']:>7.0f}%{note}")
            else:
                print(f"{row['target']:<18} {runtime:<16} {'skipped: ' + r['skipped']}")
        t = row.get("training", {})
        if "samples_per_s" in t:
            print(f"{row['target']:<18} {'training':<16} {t['samples_per_s']:>9.1f} samples/s"
                  + (f" (batch {t['batch']}, {t.get('threads', '?')} threads)" if "batch" in t else ""))
        print(f"{'':<18} {'(model)':<16} {row['params'] / 1e6:.2f} M parameters, "
              f"{row['gflops_per_frame']:.3f} GFLOP/frame, {row['width']}x{row['height']}")


RUNTIMES = ["torch", "onnxruntime", "wasm", "webgpu"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", type=Path, nargs="?", help="world folder to measure (else --preset)")
    parser.add_argument("--preset", action="append", default=None,
                        help="measure this preset with random weights (repeatable; default: tiny and forest)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="comma-separated runtimes: torch, onnxruntime, wasm (chromium), webgpu (chromium, "
                             "when it finds an adapter)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per runtime")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for PyTorch and onnxruntime (the browser page uses one)")
    parser.add_argument("--browser-threads", type=int, default=1,
                        help="WebAssembly threads in the page (the player's ?threads=N; it uses 1 by default)")
    parser.add_argument("--no-train", action="store_true", help="skip the training samples/s figure")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")


def run(args) -> int:
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise UserError(f"--runtimes: unknown {', '.join(unknown)} (choose from {', '.join(RUNTIMES)})")
    if args.world is not None and args.preset:
        raise UserError("give a world folder or --preset, not both")
    if args.json is not None:
        check_new_output(args.json, args.force)
    targets = [(args.world, None)] if args.world is not None else [(None, p) for p in (args.preset or ["tiny", "forest"])]
    peak_threads = sorted({1, args.threads, args.browser_threads})
    peaks = {t: machine_peak_gflops(t) for t in peak_threads}
    rows = []
    for world, preset in targets:
        rows.append(bench_one(*load_target(world, preset), seconds=args.seconds, threads=args.threads,
                              runtimes=runtimes, peaks=peaks, train=not args.no_train,
                              browser_threads=args.browser_threads))
    print_table(rows, peaks)
    if args.json is not None:
        atomic_write_json(args.json, {"peak_gflops": {str(k): v for k, v in peaks.items()}, "results": rows})
    return 0
