"""Single convolutions of `forest`'s shapes in the browser's WebAssembly runtime and natively.

    python benchmarks/wasm_ops.py [--threads 1,2] [--seconds 2]

Where does the page's time go, operator by operator? `neuralworld bench --profile` answers for
a whole model; this answers how far each kind of operator is from native: for each shape below
it writes a one-operator ONNX model (float32, and int8 in QDQ form as export does), times
`session.run` in headless Chromium (onnxruntime-web, WebAssembly, the page's runtime files) and
in native onnxruntime on the same thread counts, in one run, and prints milliseconds and the
page's share of native.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from neuralworld.bench import browser_missing, served_page
from neuralworld.errors import run_script
from neuralworld.export import runtime_files

# name: (input channels, output channels, height, width) of a 3x3 convolution in `forest`
SHAPES = {
    "full-size stem 13->8": (13, 8, 192, 256),
    "full-size block 8->8": (8, 8, 192, 256),
    "64x48 block 32->32": (32, 32, 48, 64),
    "16x12 block 128->128": (128, 128, 12, 16),
}

PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
const q = new URLSearchParams(location.search);
try {
  const ort = await import('./ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  ort.env.wasm.numThreads = Number(q.get('threads'));
  const bytes = new Uint8Array(await (await fetch(q.get('model'))).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const dims = session.inputMetadata[0].shape;
  const x = new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b) }, Math.random), dims);
  for (let i = 0; i < 5; i++) await session.run({ x });
  let n = 0; const t0 = performance.now();
  while (performance.now() - t0 < 1000 * Number(q.get('seconds'))) { await session.run({ x }); n += 1; }
  window.result = { ms: (performance.now() - t0) / n, threads: ort.env.wasm.numThreads };
} catch (e) { window.result = { error: String(e) }; }
</script>"""


def conv_model(cin: int, cout: int, h: int, w: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)],
                              "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, h, w])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime-web reads
    return model


def quantized(path: Path, out: Path, shape: list[int]) -> None:
    """The model in QDQ int8 form as quantize.quantize_int8 makes it (uint8 activations, int8 weights per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": np.random.rand(*shape).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"])


def native_ms(path: Path, threads: int, seconds: float) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    feeds = {"x": np.random.rand(*shape).astype(np.float32)}
    for _ in range(5):
        session.run(None, feeds)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, feeds)
        n += 1
    return 1000 * (time.perf_counter() - t0) / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model, runtime and thread count")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="neuralworld-wasm-ops-") as tmp:
        web = Path(tmp)
        (web / "ort").mkdir()
        for f in runtime_files():
            shutil.copyfile(f, web / "ort" / f.name)
        (web / "index.html").write_text(PAGE)
        models = []
        for k, (name, (cin, cout, h, w)) in enumerate(SHAPES.items()):
            onnx.save(conv_model(cin, cout, h, w), web / f"m{k}.onnx")
            quantized(web / f"m{k}.onnx", web / f"m{k}.int8.onnx", [1, cin, h, w])
            models += [(f"{name}, float32", f"m{k}.onnx"), (f"{name}, int8", f"m{k}.int8.onnx")]
        print(f"{'3x3 convolution':<34} {'threads':>7} {'page ms':>8} {'native ms':>10} {'page/native':>12}")
        for t in threads:
            for name, file in models:
                with served_page(web, ["--disable-gpu"]) as (page, url):
                    page.goto(f"{url}?threads={t}&model={file}&seconds={args.seconds}")
                    page.wait_for_function("window.result", timeout=120000)
                    result = page.evaluate("window.result")
                if "error" in result:
                    print(f"{name}: {result['error']}", file=sys.stderr)
                    return 1
                native = native_ms(web / file, t, args.seconds)
                print(f"{name:<34} {t:>7} {result['ms']:>8.2f} {native:>10.2f} {100 * native / result['ms']:>11.0f}%",
                      flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
