"""Two ways to export a sampled (flow) world's K Euler steps, timed where they run: unrolled in one
model (what `neuralworld export` does: the runtime is called once per frame) or one denoiser
step as its own model that the page would call K times per frame, doing the Euler update itself.

    python benchmarks/flow_loop.py [--preset forest] [--steps 1,2,4] [--threads 1,2] [--seconds 3]

Both are the network alone in float32 (no memory update, which is the same for both), random
weights (speed does not depend on them), timed in onnxruntime and in headless Chromium's
WebAssembly backend (onnxruntime-web from the player's own files). Prints frames/s per
(K, way, runtime, threads) as a table.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from flow_speed import parse_args  # the sibling benchmark's options
from torch import nn

from neuralworld import bench
from neuralworld.errors import run_script
from neuralworld.model.config import get_preset
from neuralworld.model.network import gaussian_from_uniform

HARNESS = """<!doctype html><meta charset="utf-8"><script type="module">
import * as ort from './ort/ort.wasm.min.mjs';
const q = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
ort.env.wasm.numThreads = Number(q.get('threads'));
const spec = await (await fetch('spec.json')).json();
function feeds(inputs) {
  const out = {};
  for (const [name, shape] of inputs) {
    const n = shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.random();
    out[name] = new ort.Tensor('float32', data, shape);
  }
  return out;
}
async function time(run, seconds) {  // a second of warm-up first: V8 tiers WebAssembly up as it runs
  const w0 = performance.now();
  while (performance.now() - w0 < 1000) await run();
  let frames = 0; const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) { await run(); frames++; }
  return 1000 * frames / (performance.now() - t0);
}
window.measure = async (model, k, seconds) => {
  const session = await ort.InferenceSession.create(new Uint8Array(await (await fetch(model)).arrayBuffer()),
                                                    {executionProviders: ['wasm']});
  const f = feeds(spec[model]);
  const run = k === 0 ? () => session.run(f) : async () => {  // k denoiser calls and k Euler updates
    let x = f.x_t.data;
    for (let s = 0; s < k; s++) {
      const t = 1 - s / k, next = 1 - (s + 1) / k;
      f.t.data[0] = t;
      const x0 = (await session.run(f)).x0.data;
      const y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) y[i] = x[i] + (next - t) * (x[i] - (2 * x0[i] - 1)) / t;
      x = y; f.x_t = new ort.Tensor('float32', x, f.x_t.dims);
    }
  };
  const fps = await time(run, seconds);
  await session.release();
  return fps;
};
window.ready = true;
</script>"""


class DenoiserStep(nn.Module):
    """One call of the flow world's denoiser: (controls, memory.., noise maps.., x_t, t) -> x0 in
    [0, 1] (WorldNet.predict), for a page that loops over the sampler's steps itself."""

    def __init__(self, net, levels: int):
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, controls, *tensors):
        memory, maps = list(tensors[:self.levels]), list(tensors[self.levels:2 * self.levels])
        x_t, t = tensors[-2], tensors[-1]
        return self.net.predict(controls, memory, maps, None, x_t, t)


class Unrolled(nn.Module):
    """The K Euler steps in one model (WorldNet.sample): (controls, memory.., noise..) -> frame."""

    def __init__(self, net, levels: int):
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, controls, *tensors):
        return self.net(controls, list(tensors[:self.levels]), list(tensors[self.levels:]))


def to_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], output: str) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes that are fixed here
        torch.onnx.export(module.eval(), tuple(inputs.values()), buf, dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=[output])
    return buf.getvalue()


def onnxruntime_fps(model: bytes, inputs: dict[str, np.ndarray], k: int, threads: int, seconds: float) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = dict(inputs)

    def frame():
        if k == 0:
            return session.run(None, feeds)
        x = feeds["x_t"]
        for s in range(k):
            t, nxt = 1 - s / k, 1 - (s + 1) / k
            feeds["t"] = np.array([t], np.float32)
            x0 = 2 * session.run(None, feeds)[0] - 1
            x = (x + (nxt - t) * (x - x0) / t).astype(np.float32)
            feeds["x_t"] = x

    return bench.frames_per_second(frame, seconds)


def chromium_fps(folder: Path, jobs: list[tuple[str, int]], threads: int, seconds: float) -> list[float | None]:
    if not Path(bench.CHROMIUM).exists():
        return [None] * len(jobs)
    from playwright.sync_api import sync_playwright

    from neuralworld.play import make_server, server_url

    server = make_server(folder, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=bench.CHROMIUM, args=bench.CHROMIUM_ARGS + ["--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(f"{server_url(server)}?threads={threads}")
                page.wait_for_function("window.ready === true", timeout=30000)
                return [page.evaluate(f"window.measure('{model}', {k}, {seconds})") for model, k in jobs]
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    args = parse_args(__doc__)
    steps, threads = args.steps, args.threads
    config = dataclasses.replace(get_preset(args.preset).net, objective="flow")
    net, schema, _ = bench.random_world(config)
    levels = len(config.memory_frames)
    g = torch.Generator().manual_seed(0)
    sizes = config.layout.sizes(config.height, config.width)
    common = {"controls": torch.zeros(1, schema.dim)}
    common.update({f"memory_{i}": torch.rand(1, 3 * n, h, w, generator=g)
                   for i, (n, (h, w)) in enumerate(zip(config.memory_frames, sizes))})
    maps = {f"noise_{i}": torch.rand(1, 1, h, w, generator=g) for i, (h, w) in enumerate(sizes)}
    start = torch.rand(1, 4, config.height, config.width, generator=g)
    unrolled_inputs = {**common, **maps, "noise_start": start}
    step_inputs = {**common, **maps, "x_t": gaussian_from_uniform(start), "t": torch.ones(1)}

    folder = Path(tempfile.mkdtemp(prefix="flow-loop-"))
    try:
        shutil.copytree(Path(bench.__file__).parent / "web" / "ort", folder / "ort")
        (folder / "index.html").write_text(HARNESS)
        models, spec = {}, {}
        for k in steps:
            net.sampler_steps = k
            models[f"unrolled-{k}.onnx"] = (to_onnx(Unrolled(net, levels), unrolled_inputs, "frame"), unrolled_inputs)
        models["step.onnx"] = (to_onnx(DenoiserStep(net, levels), step_inputs, "x0"), step_inputs)
        for name, (model, inputs) in models.items():
            (folder / name).write_bytes(model)
            spec[name] = [[n, list(v.shape)] for n, v in inputs.items()]
        (folder / "spec.json").write_text(json.dumps(spec))
        rows = {}
        for t in threads:
            jobs = [(f"unrolled-{k}.onnx", 0) for k in steps] + [("step.onnx", k) for k in steps]
            browser = chromium_fps(folder, jobs, t, args.seconds)
            for (model, k), fps in zip(jobs, browser):
                kk = k or int(model.split("-")[1].split(".")[0])
                way = "looped" if k else "unrolled"
                arrays = {n: v.numpy() for n, v in models[model][1].items()}
                native = onnxruntime_fps(models[model][0], arrays, k, t, args.seconds)
                rows.setdefault((kk, way), {})[t] = (native, fps)
                print(f"K={kk} {way:8s} {t} thread(s): onnxruntime {native:.1f} frames/s, chromium-wasm "
                      + (f"{fps:.1f}" if fps else "-") + " frames/s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n| {args.preset} flow, frames/s | " + " | ".join(f"onnxruntime {t}t | chromium-wasm {t}t" for t in threads) + " |")
    print("|---|" + "---|---|" * len(threads))
    for (k, way), by_threads in sorted(rows.items()):
        cells = [f"{by_threads[t][0]:.1f} | " + (f"{by_threads[t][1]:.1f}" if by_threads[t][1] else "-") for t in threads]
        print(f"| K={k}, {way} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_script(main)
