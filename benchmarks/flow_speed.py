"""What a sampled world costs to play: frames/s of a flow world at K = 1, 2, 4 sampler steps per
frame against the regression world of the same preset, in onnxruntime and in Chromium's
WebAssembly backend (the page as it plays: int8 step model in a worker), on 1 and 2 threads.

    python benchmarks/flow_speed.py [--preset forest] [--steps 1,2,4] [--threads 1,2] [--seconds 3]

Random weights (speed does not depend on them). The export unrolls the K Euler steps inside one
model, so the page calls the runtime once per frame whatever K is. Prints one line per
(objective, K, runtime, threads) and a table.
"""

from __future__ import annotations

import argparse
import dataclasses

from neuralworld import bench
from neuralworld.errors import run_script
from neuralworld.model.config import get_preset


def parse_args(doc: str) -> argparse.Namespace:
    """The options of the flow speed benchmarks (this one and flow_loop.py); steps and threads as
    lists of whole numbers."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="forest")
    parser.add_argument("--steps", default="1,2,4", help="sampler steps K to measure, comma separated")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    args.steps = [int(k) for k in args.steps.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    return args


def main() -> None:
    args = parse_args(__doc__)
    threads = args.threads
    bench.LEVERS = [lever for lever in bench.LEVERS if lever[0] == "all"]  # the page as it plays
    bench.NATIVE = [n for n in bench.NATIVE if n[0].startswith("step")]
    peaks = {t: bench.machine_peak_gflops(t) for t in threads}
    preset = get_preset(args.preset)
    variants = [("regression", None)] + [("flow", k) for k in args.steps]
    rows = []
    for objective, k in variants:
        config = dataclasses.replace(preset.net, objective=objective, **({"sampler_steps": k} if k else {}))
        net, schema, start = bench.random_world(config)
        name = f"{args.preset} {objective}" + (f" K={k}" if k else "")
        rows.append(bench.bench_one(name, net, schema, start, preset, seconds=args.seconds,
                                    threads=threads, runtimes=["onnxruntime", "wasm"], peaks=peaks, train=False,
                                    walk_seconds=0.0))
    columns = (("onnxruntime", "step float32"), ("onnxruntime", "step int8"), ("chromium-wasm", "all"))
    print(f"\n| {args.preset}, frames/s | " + " | ".join(f"{rt} {lever}, {t} thread{'s' * (t > 1)}"
                                                        for t in threads for rt, lever in columns) + " |")
    print("|---|" + "---|" * len(columns) * len(threads))
    for row in rows:
        cells = []
        for t in threads:
            for runtime, lever in columns:
                r = bench._find(row, runtime, lever, t)
                cells.append(f"{r['fps']:.1f}" if r and "fps" in r else "-")
        print(f"| {row['target']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_script(main)
