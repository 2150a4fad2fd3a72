"""A `forest` world on one GPU, in one run: captures, a speed table, training, evaluation.

    bash scripts/gpu-run.sh -o OUT                    # on a CUDA machine (installs what is missing)
    python benchmarks/gpu_run.py -o OUT --device cpu --preset tiny ...   # the same run, tiny, on a CPU

On a machine with this repository (and the car track's MP4 + CSV files, --car-data) it:
  1. makes its captures: the synth trail rendered through EGL (a long walk whose last
     --held-out-fraction is the unseen continuation), and the car track imported from its
     MP4 + CSV files, the --car-held-out segments kept apart;
  2. measures speed (train_speed.py): the bf16 peak (datasheet and a timed matrix product),
     training FLOPs per sample, the largest batch that fits, each speed switch in turn at the
     training batch, the time split of a step and its peak memory;
  3. trains a world on the trail and one on the car track for their shares of --minutes, with
     the switches that measured faster and a batch that fills the GPU (the learning rate
     scaled by the square root of the batch, at most 4x: train_speed.scaled_lr);
  4. evaluates each with `neuralworld eval`'s measures on frames it never trained on: idle,
     the tour and frames-until-collapse, open-loop horizons, all against copy-the-last-frame;
  5. writes OUT (gpu_outputs.py): metrics.json (everything), report.md (the speed table and
     the worlds' figures), preview.png (open-loop horizons and tours), curve.png (validation
     PSNR against copy-the-last-frame over time), world-fp16/ (the trail world, fp16 weights).

Each phase is timed; a phase that fails is recorded under "errors" and the run goes on with
what it has. metrics.json is rewritten after every phase, so a run stopped early keeps what it
measured. Training is shortened so that the run ends within --deadline-minutes.
"""

from __future__ import annotations

import os
import sys
import time

START = time.time()  # run as a script, the deadline counts from here
if not sys.stderr.isatty():  # progress bars in a log: a line now and then, not hundreds
    os.environ.setdefault("TQDM_MININTERVAL", "15")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed  # noqa: E402
from gpu_outputs import curve_png, figures, preview_png, report_markdown, tour_truth, write_fp16_world  # noqa: E402

from neuralworld.argtypes import parse_horizons, size_type  # noqa: E402
from neuralworld.capture.format import CaptureWriter, open_capture  # noqa: E402
from neuralworld.model.config import PRESETS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAR_DATA = [REPO / ".data" / "donkey-track", REPO.parent / "shared" / "data" / "donkey-track"]
CAR_HELD_OUT = "seg-21-11-25_8-6,seg-21-11-25_8-13"  # as in docs/MEASURED.md
FILES = ("metrics.json", "report.md", "preview.png", "curve.png", "world-fp16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-o", "--output", required=True, type=Path, help="folder for the results (made if missing; "
                   "its files of an earlier run are replaced)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", default="forest", choices=list(PRESETS), help="network and recipe of both worlds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a field of the preset "
                   "(repeatable; as `neuralworld train --set`)")
    p.add_argument("--size", type=size_type, metavar="WxH", help="the trail world's frame size (default: the preset's)")
    p.add_argument("--car-size", type=size_type, default="128x128", metavar="WxH", help="the car world's frame size")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=5.0, help="training minutes, both worlds together "
                        "(at most: see --deadline-minutes)")
    length.add_argument("--steps", type=int, help="optimizer steps per world instead of minutes")
    p.add_argument("--car-share", type=float, default=0.35, help="the car world's share of the training minutes")
    p.add_argument("--deadline-minutes", type=float, default=9.0,
                   help="the whole run's time: training is shortened to end in time for the evaluations")
    p.add_argument("--eval-minutes", type=float, default=1.0, help="time kept for each world's evaluation")
    p.add_argument("--speed-minutes", type=float, default=2.5,
                   help="time for the speed measures: rungs of the speed ladder that would start later are skipped")
    p.add_argument("--curve-minutes", type=float, default=0.25,
                   help="validate (a point of the training curve) every this many minutes")
    p.add_argument("--curve-steps", type=int, default=0, help="with --steps: validate every this many steps")
    p.add_argument("--trail-frames", type=int, default=6000, help="frames of the synth walk (train + held out)")
    p.add_argument("--trail-seed", type=int, default=7, help="the synth place and walk")
    p.add_argument("--held-out-fraction", type=float, default=0.2,
                   help="the trail walk's last part, never trained on: the unseen continuation")
    p.add_argument("--car-data", type=Path, help="folder of the car track's seg-*.mp4 + .csv files (default: "
                   ".data/donkey-track in the repository, else ../shared/data/donkey-track beside it)")
    p.add_argument("--car-held-out", default=CAR_HELD_OUT, help="car segments (file stems) evaluated, not trained on")
    p.add_argument("--no-trail", action="store_true", help="leave out the synth trail world")
    p.add_argument("--no-car", action="store_true", help="leave out the car world")
    p.add_argument("--batch", type=int, help="training batch (default: on CUDA chosen by the batch search, "
                   "else the preset's)")
    p.add_argument("--max-batch", type=int, default=4096, help="largest batch the search tries")
    p.add_argument("--max-train-batch", type=int, default=1024, help="largest batch training is given")
    p.add_argument("--no-compile", action="store_true", help="train without torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="train with CUDA graphs where they measured faster (they are always measured)")
    p.add_argument("--ladder-steps", type=int, default=12, help="timed steps per rung of the speed ladder")
    p.add_argument("--ladder-seconds", type=float, default=4.0, help="time per rung of the speed ladder")
    p.add_argument("--horizons", default="1,8,32,128,512", help="open-loop horizons of the evaluation")
    p.add_argument("--starts", type=int, default=4, help="open-loop start points per held-out capture")
    p.add_argument("--one-step-points", type=int, default=32, help="one-step points per held-out capture")
    p.add_argument("--free-play", type=int, default=600, help="frames of free play (detail retention)")
    p.add_argument("--tour-frames", type=int, default=600, help="frames of the scripted tour")
    p.add_argument("--idle-frames", type=int, default=150, help="frames of standing still")
    p.add_argument("--fidelity-frames", type=int, default=64, help="frames of the control-fidelity rollout")
    p.add_argument("--work", type=Path, help="folder for captures and full worlds (default: a temporary one, "
                   "removed at the end); captures found there are reused")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None, start: float | None = None) -> int:
    """Run it all; `start` is when the run's clock started (default: now)."""
    args = build_parser().parse_args(argv)
    return GpuRun(args, start or time.time()).run()


class GpuRun:
    def __init__(self, args, start: float):
        from neuralworld.train import pick_device, resolve_preset

        self.args, self.t0 = args, start
        self.dev = pick_device(args.device)
        self.cuda = self.dev.type == "cuda"
        self.out = args.output
        self.out.mkdir(parents=True, exist_ok=True)
        self.keep_work = args.work is not None
        self.work = args.work or Path(tempfile.mkdtemp(prefix="neuralworld-gpu-run-"))
        self.work.mkdir(parents=True, exist_ok=True)
        size = args.size[::-1] if args.size else None
        self.presets = {"trail": resolve_preset(args.preset, args.set, size),
                        "car": resolve_preset(args.preset, args.set, args.car_size[::-1])}
        self.horizons = parse_horizons(args.horizons)
        self.metrics = {"format": "neuralworld-gpu-run", "version": 1, "machine": machine(self.dev),
                        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                        "phases": {}, "errors": [], "captures": {}, "speed": {}, "worlds": {}}
        self.captures: dict[str, dict] = {}
        self.media: dict[str, dict] = {}

    # --- bookkeeping ---

    def elapsed(self) -> float:
        return time.time() - self.t0

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a phase; record a failure in one line (the traceback goes to stderr) and go on."""
        print(f"== {name} ({self.elapsed() / 60:.1f} min into the run)", flush=True)
        t = time.time()
        try:
            yield
        except Exception as e:  # noqa: BLE001 -- one phase failing is no reason to lose the others
            traceback.print_exc()
            line = str(e).strip().splitlines()[0][:400] if str(e).strip() else ""
            self.metrics["errors"].append(f"{name}: {type(e).__name__}: {line}")
            print(f"== {name} failed: {type(e).__name__}: {line}", flush=True)
        finally:
            self.metrics["phases"][name] = round(time.time() - t, 2)
            self.save_metrics()

    def save_metrics(self) -> None:
        from neuralworld.fileio import atomic_write_json

        self.metrics["elapsed_s"] = round(self.elapsed(), 1)
        atomic_write_json(self.out / "metrics.json", self.metrics)

    def run(self) -> int:
        torch.manual_seed(self.args.seed)
        if self.args.threads:
            torch.set_num_threads(self.args.threads)
        try:
            with self.phase("captures"):
                self.make_captures()
            with self.phase("speed"):
                self.measure_speed()
            for name in self.captures:  # the trail first: a run stopped early has the main world whole
                with self.phase(f"train {name}"):
                    self.train(name)
                with self.phase(f"eval {name}"):
                    self.evaluate(name)
                with self.phase(f"outputs {name}"):
                    self.write_outputs()
            with self.phase("outputs"):
                self.write_outputs()
        finally:
            if not self.keep_work:
                shutil.rmtree(self.work, ignore_errors=True)
        print(report_markdown(self.metrics))
        print(f"wrote {', '.join(f for f in FILES if (self.out / f).exists())} in {self.out} "
              f"({self.elapsed() / 60:.1f} min; {len(self.metrics['errors'])} error(s))")
        return 0 if not self.metrics["errors"] else 1

    # --- 1. captures ---

    def make_captures(self) -> None:
        a = self.args
        if not a.no_trail:
            with self.phase("capture trail"):
                self.make_trail()
        if not a.no_car:
            with self.phase("capture car"):
                self.make_car()
        if not self.captures:
            raise RuntimeError("no captures to train on (see the errors above)")

    def make_trail(self) -> None:
        from neuralworld.ablate import write_held_out
        from neuralworld.capture.synth import synthesize

        a, net = self.args, self.presets["trail"].net
        path = self.work / "trail"
        t = time.time()
        if not (path / "capture.json").exists():
            synthesize(path, seed=a.trail_seed, frames=a.trail_frames, width=net.width, height=net.height)
        seconds = time.time() - t
        held = self.work / "trail-held-out"
        shutil.rmtree(held, ignore_errors=True)
        write_held_out(path, held, a.held_out_fraction, net.layout.window)
        n = len(open_capture(path))
        self.captures["trail"] = {"train": [path], "held_out": [held], "val_fraction": a.held_out_fraction}
        self.metrics["captures"]["trail"] = {
            "frames": n, "size": [net.width, net.height], "seed": a.trail_seed, "render_s": round(seconds, 2),
            "render_frames_per_s": round(n / seconds, 1) if seconds > 0.05 else None,
            "train_frames": int(round(n * (1 - a.held_out_fraction))), "held_out_frames": len(open_capture(held))}

    def make_car(self) -> None:
        a = self.args
        data = a.car_data or next((d for d in CAR_DATA if d.is_dir()), None)
        if data is None or not data.is_dir():
            raise FileNotFoundError(f"no car data: {a.car_data or ' or '.join(map(str, CAR_DATA))} (give --car-data "
                                    "or --no-car)")
        videos = sorted(v for v in data.glob("*.mp4") if v.with_suffix(".csv").is_file())
        if len(videos) < 2:
            raise FileNotFoundError(f"{data}: fewer than two MP4 + CSV segments")
        wanted = [s for s in a.car_held_out.split(",") if s]
        held = [v for v in videos if v.stem in wanted] or videos[-1:]
        t, frames, decoder = time.time(), 0, None
        paths = {}
        for v in videos:
            out = self.work / "car" / v.stem
            if not (out / "capture.json").exists():
                decoder = import_segment(v, v.with_suffix(".csv"), out)
            paths[v] = out
            frames += len(open_capture(out))
        seconds = time.time() - t
        self.captures["car"] = {"train": [paths[v] for v in videos if v not in held],
                                "held_out": [paths[v] for v in held], "val_fraction": 0.1}
        self.metrics["captures"]["car"] = {
            "data": str(data), "segments": len(videos), "frames": frames, "decoder": decoder,
            "train": [v.stem for v in videos if v not in held], "held_out": [v.stem for v in held],
            "import_s": round(seconds, 2), "import_frames_per_s": round(frames / seconds, 1) if seconds > 0.05 else None}

    # --- 2. speed ---

    def measure_speed(self) -> None:
        from neuralworld.data import load_captures

        a, dev, cuda = self.args, self.dev, self.cuda
        self.speed_start = time.time()
        name = "trail" if "trail" in self.captures else next(iter(self.captures))
        preset = self.presets[name]
        speed = self.metrics["speed"]
        speed.update(world=name, preset=preset.name, size=[preset.net.width, preset.net.height],
                     device=str(dev), device_name=self.metrics["machine"]["device_name"])
        speed["peak"] = peak = {"datasheet_bf16_flops_per_s": train_speed.datasheet_peak(speed["device_name"])
                                if cuda else None}
        peak["matmul"] = train_speed.matmul_peak(dev, seconds=1.0 if cuda else 0.3)
        speed.update(train_speed.train_flops_per_sample(preset, dev))
        self.save_metrics()

        caps = [str(c) for c in self.captures[name]["train"]]
        vf = self.captures[name]["val_fraction"]
        load = lambda where: load_captures(caps, preset.net, preset.recipe.unroll, vf, device=where,  # noqa: E731
                                           frame_skip=preset.recipe.frame_skip)
        device_data = load(dev)
        host_data = load("cpu") if cuda else device_data
        speed["captures_resident"] = {"device": str(device_data.frames.device), "frames": len(device_data.frames),
                                      "bytes": device_data.frames.numel()}
        base_batch = preset.recipe.batch
        switches = dict(use_bf16=cuda, channels_last=cuda, fused=cuda)
        cap = a.max_batch if cuda else min(a.max_batch, 4 * base_batch)
        search = train_speed.largest_batch(preset, device_data, dev, switches, cap=cap)
        speed["batch_search"] = search
        self.save_metrics()

        limit = a.max_train_batch
        if search["stopped_by"] != "cap" and search["largest"]:  # room for compile, cuDNN's workspaces, validation
            limit = min(limit, max(search["largest"] // 2, base_batch))
        batch = a.batch or (train_speed.choose_batch(search, limit) if cuda else None) or base_batch
        r = preset.recipe
        lr, disc_lr = (train_speed.scaled_lr(v, batch, base_batch) for v in (r.lr, r.disc_lr))
        train_preset = preset.with_fields(batch=batch, lr=lr, disc_lr=disc_lr)
        speed["training_batch"] = {
            "batch": batch, "preset_batch": base_batch, "lr": lr, "preset_lr": r.lr, "disc_lr": disc_lr,
            "rule": "the smallest batch within 90% of the search's best samples/s (at most --max-train-batch and "
                    "half the largest that fits), lr x sqrt(batch / preset batch), at most x4" if not a.batch and cuda else
                    "given by --batch" if a.batch else "the preset's (on the CPU the search stops at 4x it)"}
        self.batch = {"batch": batch, "lr": lr, "disc_lr": disc_lr, "base_batch": base_batch}

        rows, chosen = train_speed.speed_ladder(train_preset, host_data, device_data, dev, steps=a.ladder_steps,
                                                seconds=a.ladder_seconds, skip_compile=a.no_compile,
                                                adopt_cuda_graphs=a.cuda_graphs,
                                                deadline=self.speed_start + 60 * a.speed_minutes)
        speed["ladder"] = rows
        self.switches = chosen
        speed["training_switches"] = self.switches
        main_row = next((row for row in reversed(rows) if row.get("kept")), None)
        if main_row is None:
            raise RuntimeError("no rung of the speed ladder ran (see its errors in metrics.json)")
        speed["samples_per_s"] = main_row["samples_per_s"]
        speed["measured_on"] = main_row["name"]
        speed["split"] = main_row["split"]
        speed["peak_memory_bytes"] = main_row.get("peak_memory_bytes")
        if not cuda:  # no device allocator: the process's peak resident memory instead
            import resource

            speed["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        flops = speed["flops_per_sample"] * speed["samples_per_s"]
        speed["model_flops_per_s"] = flops
        speed["mfu_datasheet"] = flops / peak["datasheet_bf16_flops_per_s"] if peak["datasheet_bf16_flops_per_s"] else None
        speed["mfu_matmul"] = flops / peak["matmul"]["flops_per_s"]
        del device_data, host_data
        train_speed.free(dev)

    # --- 3. training ---

    def train_minutes(self, name: str) -> float:
        """This world's share of the training minutes still to spend: of --minutes, and of what
        the deadline leaves once the evaluations still to come have their time."""
        a = self.args
        share = lambda w: (a.car_share if w == "car" else 1 - a.car_share) if len(self.captures) > 1 else 1.0  # noqa: E731
        todo = [w for w in self.captures if "training" not in self.metrics["worlds"].get(w, {})]
        trained = sum(w.get("training", {}).get("elapsed_s") or 0 for w in self.metrics["worlds"].values()) / 60
        budget = min(a.minutes - trained, a.deadline_minutes - self.elapsed() / 60 - a.eval_minutes * len(todo))
        return max(0.1, budget * share(name) / sum(share(w) for w in todo))

    def train(self, name: str) -> None:
        from neuralworld.train import TrainOptions, train_world

        a, cap = self.args, self.captures[name]
        batch = getattr(self, "batch", None)
        preset = self.presets[name]
        if batch:
            preset = preset.with_fields(batch=batch["batch"], lr=batch["lr"], disc_lr=batch["disc_lr"])
        sw = getattr(self, "switches", {})
        length = dict(steps=a.steps) if a.steps else dict(minutes=self.train_minutes(name))
        options = TrainOptions(**length, device=a.device, seed=a.seed, val_fraction=cap["val_fraction"],
                               checkpoint_every=a.curve_steps if a.steps else 0,
                               checkpoint_minutes=a.curve_minutes, threads=a.threads, force=True,
                               compile=sw.get("use_compile"), bf16=sw.get("use_bf16"),
                               channels_last=sw.get("channels_last"), fused_optimizer=sw.get("fused"),
                               cudnn_benchmark=sw.get("cudnn_benchmark"), cuda_graphs=bool(sw.get("cuda_graphs")))
        print(f"training the {name} world: {length}, batch {preset.recipe.batch}, lr {preset.recipe.lr:.3g}, "
              f"switches {sw or 'the defaults'}", flush=True)
        folder = self.work / f"{name}-world"
        torch._dynamo.reset()  # compiled for this world's shapes alone, not generalised over both worlds'
        summary = train_world([str(c) for c in cap["train"]], folder, preset, options)
        curve = read_curve(folder / "metrics.csv")
        self.metrics["worlds"][name] = {
            "preset": preset.name, "net": preset.net.to_json(), "recipe": preset.recipe.to_json(),
            "training": {k: summary.get(k) for k in ("steps", "samples", "elapsed_s", "val_psnr", "val_copy_psnr",
                                                     "train_windows", "val_frames")},
            "samples_per_s": summary["samples"] / max(summary["elapsed_s"], 1e-9), "curve": curve,
            "options": dataclasses.asdict(options)}
        cap["world"] = folder

    # --- 4. evaluation ---

    def evaluate(self, name: str) -> None:
        from neuralworld.evaluate import evaluate_world
        from neuralworld.world import World

        a, cap = self.args, self.captures[name]
        if "world" not in cap:
            raise RuntimeError(f"no {name} world (its training failed)")
        world = World.load(cap["world"], device=self.dev)
        media: dict = {}
        result = evaluate_world(world, [open_capture(p) for p in cap["held_out"]], horizons=self.horizons,
                                starts=a.starts, one_step_points=a.one_step_points, free_play=a.free_play,
                                fidelity_frames=a.fidelity_frames, tour_frames=a.tour_frames,
                                idle_frames=a.idle_frames, seed=a.seed, media=media, progress=True)
        entry = self.metrics["worlds"][name]
        entry["eval"] = result
        entry["figures"] = figures(result)
        entry["held_out"] = [str(p) for p in cap["held_out"]]
        self.media[name] = {"rollout": media.get("rollout"), "tour": media.get("tour")}
        if name == "trail":
            self.media[name]["truth"] = tour_truth(world, open_capture(cap["held_out"][0]), a.tour_frames)

    # --- 5. outputs ---

    def write_outputs(self) -> None:
        from neuralworld.fileio import atomic_write_bytes

        if self.media:
            atomic_write_bytes(self.out / "preview.png", preview_png(self.media, self.horizons))
        curves = {n: w["curve"] for n, w in self.metrics["worlds"].items() if w.get("curve")}
        if curves:
            atomic_write_bytes(self.out / "curve.png", curve_png(curves))
        name = "trail" if "world" in self.captures.get("trail", {}) else next(
            (n for n, c in self.captures.items() if "world" in c), None)
        if name is not None and "fp16_world" not in self.metrics:  # the trail world's, else the first trained
            self.metrics["fp16_world"] = {"world": name, **write_fp16_world(self.captures[name]["world"],
                                                                          self.out / "world-fp16")}
        (self.out / "report.md").write_text(report_markdown(self.metrics))


# ----------------------------------------------------------------------------- helpers

def machine(dev: torch.device) -> dict:
    cuda = dev.type == "cuda"
    return {"device": dev.type, "device_name": torch.cuda.get_device_name(dev) if cuda else platform.processor()
            or platform.machine(), "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpu_memory_bytes": torch.cuda.get_device_properties(dev).total_memory if cuda else None}


def import_segment(video: Path, log: Path, out: Path) -> str:
    """One car segment (an MP4 and its CSV of frame,t,steering,throttle, one row per frame) as a
    capture: through `neuralworld import` where PyAV is installed, else decoded by OpenCV (whose
    wheels carry FFmpeg) and stored with the CSV's times and actions as the import stores them.
    Returns the decoder used."""
    try:
        import av  # noqa: F401
    except ImportError:
        import_segment_opencv(video, log, out)
        return "opencv"
    from neuralworld.capture.importer import import_capture

    import_capture(video, out, motion=log, progress=False)
    return "pyav"


def import_segment_opencv(video: Path, log: Path, out: Path) -> None:
    import cv2

    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    names = [k for k in rows[0] if k not in ("frame", "t")]
    frames, reader = [], cv2.VideoCapture(str(video))
    while True:
        ok, bgr = reader.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    reader.release()
    if len(frames) != len(rows):
        raise ValueError(f"{video}: OpenCV decoded {len(frames)} frames, {log} has {len(rows)} rows")
    order = [int(r["frame"]) for r in rows]
    times = np.array([float(r["t"]) for r in rows])
    actions = np.array([[float(r[n]) for n in names] for r in rows])
    h, w = frames[0].shape[:2]
    with CaptureWriter(out, w, h) as writer:
        for i in order:
            writer.add(frames[i])
        writer.finish(times - times[0], source=str(video), fps=float(1.0 / np.median(np.diff(times))),
                      actions=actions, action_names=names, motion_source="actions-csv",
                      extra={"import": {"decoder": "opencv", "motion_file": str(log), "time_origin_s": float(times[0])}})


def read_curve(path: Path) -> list[dict]:
    """The validation points of a training run's metrics.csv: elapsed time, step, PSNR, copy PSNR."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_psnr")]
    return [{"step": int(r["step"]), "elapsed_s": float(r["elapsed_s"]), "val_psnr": float(r["val_psnr"]),
             "val_copy_psnr": float(r["val_copy_psnr"])} for r in rows]


if __name__ == "__main__":
    sys.exit(main(start=START))
