"""`neuralworld export`: a world as ONNX plus everything the browser player needs.

The network goes out through PyTorch's dynamo exporter (torch.export -> ONNX, opset 18)
with fixed shapes, batch 1, and the input and output names the player uses: inputs `controls` (1, C),
`memory_0`..`memory_{L-1}`, `noise_0`..`noise_{L-1}`, output `frame` (1, 3, H, W).
Before anything is written, onnxruntime runs the model on fixed inputs and its frame is
compared with PyTorch's; a difference over PARITY_TOLERANCE stops the export.

The web folder (default WORLD/web) is a static site that any file server can serve:
  index.html style.css player.js memory.js controls.js sw.js   the player (web/ in this package)
  ort/                                                       ONNX Runtime Web, from npm
  model.onnx                                                 the network
  world.json                                                 what the page needs of the world
  start_frames.bin                                           (K, H, W, 3) uint8 real frames, raw

The player follows the reference system's demo (Ollin Boer Bohan, "World Emulation via
Neural Network", 2025), which ran its world with ONNX Runtime Web in the page.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neuralworld import __version__
from neuralworld.controls import ControlSchema
from neuralworld.engine import draw_noise
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_dir
from neuralworld.model.memory import MemoryLayout, memory_from_frames, quantize8
from neuralworld.player import RULES
from neuralworld.world import World, frames_to_tensor

WEB_FORMAT = "neuralworld-web"
WEB_VERSION = 1
OPSET = 18
WEB_SOURCE = Path(__file__).parent / "web"
RUNTIME_DIR = WEB_SOURCE / "ort"  # filled by scripts/fetch-web-runtime.sh
PLAYER_FILES = ["index.html", "style.css", "player.js", "memory.js", "controls.js", "sw.js"]
PARITY_TOLERANCE = 1e-3  # max abs error on frames in [0, 1], float32 weights
# float16 weights round each weight to 11 significant bits (relative error up to 2^-11); through
# a few layers that moves output pixels by up to about a hundredth, still under one 8-bit level
# in most pixels. Computation stays float32: only the stored weights are halved.
FP16_PARITY_TOLERANCE = 2e-2


def input_names(levels: int, noise_inputs: int | None = None) -> list[str]:
    """controls, memory_i per level, noise_i per level, and noise_x for a flow sampler's start."""
    noise = [f"noise_{i}" for i in range(levels)] + ["noise_x"] * ((noise_inputs or levels) - levels)
    return ["controls"] + [f"memory_{i}" for i in range(levels)] + noise


class _FlatInputs(nn.Module):
    """forward(controls, memory_0.., noise_0..) -> frame: the network with one named input per tensor."""

    def __init__(self, net: nn.Module, levels: int):
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, controls, *tensors):
        return self.net(controls, list(tensors[:self.levels]), list(tensors[self.levels:]))


def parity_inputs(layout: MemoryLayout, height: int, width: int, schema: ControlSchema, seed: int,
                  start_frames: np.ndarray | None = None, noise_shapes=None) -> list[torch.Tensor]:
    """Fixed inputs in export order: controls (1, C) around the schema's mean and scale, memory of
    8-bit values (from the start frames when given, else random), noise U(0, 1) of `noise_shapes`
    (NetConfig.noise_shapes; default one map per memory level)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(schema.mean, dtype=torch.float32)
    scale = torch.tensor(schema.scale, dtype=torch.float32)
    controls = (mean + scale * torch.randn(schema.dim, generator=g))[None]  # (1, C)
    sizes = layout.sizes(height, width)
    if start_frames is not None:
        memory = memory_from_frames(frames_to_tensor(start_frames[None]), layout)
    else:
        memory = [quantize8(torch.rand(1, 3 * n, h, w, generator=g)) for n, (h, w) in zip(layout.frames, sizes)]
    return [controls, *memory, *draw_noise(g, noise_shapes or [(1, h, w) for h, w in sizes])]


def export_onnx(net: nn.Module, layout: MemoryLayout, height: int, width: int, schema: ControlSchema) -> tuple[bytes, str]:
    """The network as ONNX bytes with the player's input names and fixed batch-1 shapes, and the
    exporter that made it ("dynamo", or "torchscript" when dynamo failed, which is printed)."""
    levels = len(layout.frames)
    flat = _FlatInputs(net, levels).eval()
    shapes = net.config.noise_shapes()
    args = tuple(parity_inputs(layout, height, width, schema, seed=0, noise_shapes=shapes))
    names = dict(input_names=input_names(levels, len(shapes)), output_names=["frame"])
    quiet = logging.getLogger("torch.onnx")  # it warns about torchvision ops this network never uses
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(flat, args, None, dynamo=True, opset_version=OPSET, verbose=False,
                                        external_data=False, optimize=True, **names)
            return program.model_proto.SerializeToString(), "dynamo"
        except Exception as e:  # noqa: BLE001 -- any exporter failure: try the older one, say so
            print(f"export: the dynamo exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                  "using the TorchScript exporter")
            buf = io.BytesIO()
            torch.onnx.export(flat, args, buf, dynamo=False, opset_version=OPSET, **names)
            return buf.getvalue(), "torchscript"
        finally:
            quiet.setLevel(level)


def halve_weights(model_bytes: bytes) -> bytes:
    """Store every float32 weight of the ONNX model as float16 with a Cast back to float32 in
    front of its users: half the download, the same float32 arithmetic and inputs/outputs."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or np.prod(init.dims) < 16:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "_to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_parity(net: nn.Module, model_bytes: bytes, inputs_list: list[list[torch.Tensor]], tolerance: float,
                 what: str = "model") -> float:
    """Max abs difference between PyTorch's and onnxruntime's frames over the given inputs;
    raises UserError when it is over `tolerance`."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    levels = sum(n.startswith("memory_") for n in names)
    worst = 0.0
    for inputs in inputs_list:
        with torch.no_grad():
            expected = net(inputs[0], list(inputs[1:1 + levels]), list(inputs[1 + levels:])).numpy()
        got = session.run(["frame"], {n: t.numpy() for n, t in zip(names, inputs)})[0]
        if got.shape != expected.shape:
            raise UserError(f"{what}: ONNX frame has shape {got.shape}, PyTorch {expected.shape} (report this as a bug)")
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= tolerance:  # also catches NaN
        raise UserError(f"{what}: ONNX output differs from PyTorch by {worst:.3g} (max abs), over the tolerance "
                        f"{tolerance:g}; the export is not trustworthy (report this as a bug)")
    return worst


def runtime_files() -> list[Path]:
    """The ONNX Runtime Web files the page loads; a clear error when they were never fetched."""
    files = sorted(p for p in RUNTIME_DIR.glob("*") if p.suffix in (".mjs", ".wasm")) if RUNTIME_DIR.is_dir() else []
    if not any(p.name == "ort.wasm.min.mjs" for p in files):
        raise UserError(f"{RUNTIME_DIR}: ONNX Runtime Web is missing (run `bash scripts/fetch-web-runtime.sh`, "
                        "which installs it from the npm registry)")
    return files


def player_fingerprint() -> str:
    """Hash of the player's own files and the runtime version: a change makes old exports stale."""
    h = hashlib.sha256(f"{__version__}/{WEB_VERSION}".encode())
    for name in PLAYER_FILES:
        h.update((WEB_SOURCE / name).read_bytes())
    pkg = RUNTIME_DIR / "package.json"
    h.update(pkg.read_bytes() if pkg.is_file() else b"")
    return h.hexdigest()[:16]


def world_fingerprint(world_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("world.json", "weights.safetensors", "start_frames.npy"):
        p = Path(world_dir) / name
        h.update(name.encode() + (p.read_bytes() if p.is_file() else b""))
    return h.hexdigest()[:16]


def is_current(world_dir: Path, web_dir: Path, sampler_steps: int | None = None) -> bool:
    """True when web_dir is an export of the world as it is now, by this version of the player
    (and with `sampler_steps` per frame, when given)."""
    p = Path(web_dir) / "world.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("sampler_steps") is not None:  # a flow world: K steps are in the exported graph
        try:
            own = json.loads((Path(world_dir) / "world.json").read_text())["config"].get("sampler_steps")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
        if meta["sampler_steps"] != (sampler_steps or own):
            return False
    return (meta.get("format") == WEB_FORMAT and meta.get("source") == world_fingerprint(world_dir)
            and meta.get("player") == player_fingerprint() and (Path(web_dir) / meta.get("model", "")).is_file())


def _is_previous_export(path: Path) -> bool:
    try:
        return json.loads((Path(path) / "world.json").read_text()).get("format") == WEB_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_network(net: nn.Module, out_dir: Path, *, layout: MemoryLayout, height: int, width: int,
                   schema: ControlSchema, start_frames: np.ndarray, fp16: bool = False, force: bool = False,
                   meta: dict | None = None) -> Path:
    """Export any network with the WorldNet signature and write the web folder `out_dir`.

    A folder that holds an earlier export is replaced; anything else needs force=True."""
    out_dir = Path(out_dir)
    net = net.eval()
    ort_files = runtime_files()
    start_frames = np.ascontiguousarray(start_frames, dtype=np.uint8)
    if start_frames.ndim != 4 or start_frames.shape[1:] != (height, width, 3):
        raise UserError(f"start frames: expected (K, {height}, {width}, 3) uint8, got {start_frames.shape}")

    model_bytes, exporter = export_onnx(net, layout, height, width, schema)
    shapes = net.config.noise_shapes()
    checks = [parity_inputs(layout, height, width, schema, seed, noise_shapes=shapes) for seed in (1, 2)]
    checks.append(parity_inputs(layout, height, width, schema, 3, start_frames, noise_shapes=shapes))
    error = check_parity(net, model_bytes, checks, PARITY_TOLERANCE, what=f"{out_dir} (float32)")
    if fp16:
        model_bytes = halve_weights(model_bytes)
        error = check_parity(net, model_bytes, checks, FP16_PARITY_TOLERANCE, what=f"{out_dir} (float16 weights)")

    page = {
        "format": WEB_FORMAT,
        "version": WEB_VERSION,
        **(meta or {}),
        "height": height,
        "width": width,
        "memory": {**layout.to_json(), "sizes": [list(s) for s in layout.sizes(height, width)]},
        "controls": schema.to_json(),
        "player_rules": RULES.to_json(),
        "model": "model.onnx",
        "inputs": input_names(len(layout.frames), len(shapes)),
        "noise": [list(shape) for shape in shapes],
        "fp16_weights": fp16,
        "exporter": exporter,
        "opset": OPSET,
        "parity_max_abs_error": error,
        "start_frames": {"file": "start_frames.bin", "count": int(len(start_frames)), "dtype": "uint8",
                         "shape": list(start_frames.shape)},
        "player": player_fingerprint(),
    }
    force = force or _is_previous_export(out_dir)
    with atomic_dir(out_dir, force=force) as tmp:
        for name in PLAYER_FILES:
            shutil.copyfile(WEB_SOURCE / name, tmp / name)
        (tmp / "ort").mkdir()
        for p in ort_files:
            shutil.copyfile(p, tmp / "ort" / p.name)
        (tmp / "model.onnx").write_bytes(model_bytes)
        (tmp / "start_frames.bin").write_bytes(start_frames.tobytes())
        # every file, for the service worker to cache for offline play (world.json included)
        page["files"] = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["world.json", "./"]
        (tmp / "world.json").write_text(json.dumps(page, indent=2) + "\n")
    return out_dir


def export_world(world_dir: Path, out_dir: Path | None = None, fp16: bool = False, force: bool = False,
                 sampler_steps: int | None = None) -> Path:
    """Export the world folder `world_dir` to `out_dir` (default world_dir/web); returns out_dir.
    sampler_steps: a flow world's Euler steps per frame in the exported graph (default its own)."""
    world_dir = Path(world_dir)
    world = World.load(world_dir, sampler_steps=sampler_steps)
    out_dir = world_dir / "web" if out_dir is None else Path(out_dir)
    return export_network(world.net, out_dir, layout=world.layout, height=world.height, width=world.width,
                          schema=world.schema, start_frames=world.start_frames, fp16=fp16, force=force,
                          meta={"name": world_dir.resolve().name, "preset": world.preset,
                                "source": world_fingerprint(world_dir), "objective": world.config.objective,
                                "sampler_steps": world.net.sampler_steps if world.config.objective == "flow" else None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", type=Path, help="world folder (made by `neuralworld train`)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="web folder to write (default: WORLD/web); an earlier export there is replaced")
    parser.add_argument("--fp16", action="store_true",
                        help="store the weights as float16 (half the download; arithmetic stays float32; "
                             f"parity checked to {FP16_PARITY_TOLERANCE:g} instead of {PARITY_TOLERANCE:g})")
    parser.add_argument("--force", action="store_true",
                        help="replace the output folder even when it is not an earlier export")
    parser.add_argument("--sampler-steps", type=int, default=None, metavar="K",
                        help="flow worlds: Euler steps of the sampler per frame, unrolled in the exported model "
                             "(default: the world's own); more steps, more detail, slower")


def run(args) -> int:
    out = export_world(args.world, args.output, fp16=args.fp16, force=args.force, sampler_steps=args.sampler_steps)
    page = json.loads((out / "world.json").read_text())
    size = (out / "model.onnx").stat().st_size
    print(f"exported {args.world} -> {out} ({page['exporter']} exporter, opset {page['opset']}, "
          f"model {size / 1e6:.1f} MB, parity max abs error {page['parity_max_abs_error']:.2g})")
    print(f"play it: neuralworld play {args.world}   (or serve {out} with any static file server)")
    return 0
