"""`neuralworld export`: a world as ONNX plus everything the browser player needs.

The page runs one model per step: the world's rollout step itself (engine.step, PlayerStep
below), exported through PyTorch's dynamo exporter (torch.export -> ONNX, opset 18) with fixed
shapes, batch 1 and the names the player uses:
  inputs   controls (1, C), memory_0..memory_{L-1}, noise_0..noise_{L-1} (float32), for
           flow worlds noise_x (1, 4, H, W), the uniforms the sampler's K Euler steps (unrolled
           in the graph) start from (world.json "noise" lists the noise shapes), and for worlds
           that recall real frames recall_frame (1, 3, H, W) and recall_pose (1, 12), what
           recall.Follower gives (the page's copy of it follows the player's pose)
  outputs  frame (1, H, W, 4) uint8 RGBA, the picture to draw (memory.newest_frame, opaque)
           new_memory_0..new_memory_{L-1}, the memory with the frame pushed in (model/memory.push)
The page feeds each step's new memory back in: it runs no per-pixel JavaScript, and on WebGPU the
memory never leaves the device. Before anything is written, onnxruntime runs each model on fixed
inputs against PyTorch: the float32 model must give the same memory (to one 8-bit level where a
value sits on a rounding boundary), the others must keep one-step PSNR >= QUALITY_MIN_DB.

One model per backend (world.json "backends" says which file each runs):
  wasm        model.int8.onnx  convolutions in int8 (quantize.py); float32 with --wasm float32
  webgpu      model.onnx       float32 (also the reference for parity)
  webgpu-f16  model.f16.onnx   float16 arithmetic in the network's body, for adapters with
                               shader-f16 (--no-webgpu-f16: none)

The web folder (default WORLD/web) is a static site that any file server can serve:
  index.html style.css player.js world.js worker.js controls.js memory.js sw.js   the player (web/)
  ort/                  ONNX Runtime Web, from npm
  model*.onnx           the models above
  world.json            what the page needs of the world
  start_memory.bin      the memory after the world's start frames (memory_from_frames), uint8
                        levels one after another, each (3 n_i, h_i, w_i): value = byte / 255
  recall_frames.bin     worlds that recall: the bank's frames, uint8 (M, 3, H, W); world.json
                        "recall" holds their poses, the start pose and recall.py's numbers

The player follows the reference system's demo (Ollin Boer Bohan, "World Emulation via Neural
Network", 2025), which ran its world with ONNX Runtime Web in the page.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuralworld import __version__, engine, metrics, quantize
from neuralworld.controls import POSE_KIND, ControlSchema
from neuralworld.engine import draw_noise
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_dir
from neuralworld.model.memory import (MemoryLayout, from_bytes, memory_from_frames, newest_frame, push_bytes,
                                      quantize8, to_bytes)
from neuralworld.player import RULES
from neuralworld.recall import Follower, recall_rule
from neuralworld.world import World, frames_to_tensor

WEB_FORMAT = "neuralworld-web"
WEB_VERSION = 2
OPSET = 18
WEB_SOURCE = Path(__file__).parent / "web"
RECALL_INPUTS = ["recall_frame", "recall_pose"]  # recall.Follower.step's (1, 3, H, W) and (1, 12), float32
RUNTIME_DIR = WEB_SOURCE / "ort"  # filled by scripts/fetch-web-runtime.sh
PLAYER_FILES = ["index.html", "style.css", "player.js", "world.js", "worker.js", "controls.js", "memory.js", "sw.js"]
# the runtime files each backend loads (ort.*.min.mjs imports its .mjs/.wasm pair)
RUNTIME_OF = {"wasm": ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"],
              "webgpu": ["ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                         "ort-wasm-simd-threaded.asyncify.wasm"]}
PARITY_LEVELS = 1  # float32 model: memory values within one 8-bit level of PyTorch's ...
PARITY_SHARE = 1e-3  # ... and at most this share of them off by that level (values on a rounding boundary)
QUALITY_MIN_DB = quantize.QUALITY_MIN_DB


def input_names(levels: int, noise_inputs: int | None = None, recall: bool = False) -> list[str]:
    """controls, memory_i per level, noise_i per level, noise_x for a flow sampler's start, and a
    recalling world's recall_frame and recall_pose."""
    noise = [f"noise_{i}" for i in range(levels)] + ["noise_x"] * ((noise_inputs or levels) - levels)
    return ["controls"] + [f"memory_{i}" for i in range(levels)] + noise + RECALL_INPUTS * recall


def net_input_names(net: nn.Module) -> list[str]:
    """input_names of a network with the WorldNet signature."""
    config = net.config
    return input_names(len(config.layout.frames), len(config.noise_shapes()), config.recall)


def output_names(levels: int) -> list[str]:
    return ["frame"] + [f"new_memory_{i}" for i in range(levels)]


class PlayerStep(nn.Module):
    """engine.step as one graph: forward(controls, memory_0.., noise_0..) -> (frame (1, H, W, 4)
    uint8 RGBA, new_memory_0..). The frame is the one World.step returns (memory.newest_frame),
    with an opaque alpha channel so that the page can draw it as it comes.

    With memory_bytes, the memory goes in and out as bytes (memory.to_bytes; memory.push_bytes
    updates it): the same values with a quarter of the data to copy in and out of the runtime
    and to shift, for WebAssembly (WebGPU has no 8-bit tensors)."""

    def __init__(self, net: nn.Module, layout: MemoryLayout, memory_bytes: bool = False):
        super().__init__()
        self.net, self.layout, self.memory_bytes = net, layout, memory_bytes

    def forward(self, controls, *tensors):
        levels = len(self.layout.frames)
        tensors, recall = split_recall(self.net, tensors)
        memory, noise = list(tensors[:levels]), list(tensors[levels:])
        if self.memory_bytes:
            extra = {"recall": recall} if recall else {}
            frame = self.net(controls, from_bytes(memory), noise, **extra)  # engine.step on bytes
            memory = push_bytes(memory, frame.float(), self.layout)
            newest = memory[0][:, -3:]  # (1, 3, H, W) newest_frame, already bytes
        else:
            _, memory = engine.step(self.net, memory, controls, noise, self.layout, recall=recall)
            newest = newest_frame(memory).permute(0, 3, 1, 2)  # (1, 3, H, W) uint8
        # RGBA, opaque: the alpha a padding of the channels before they go last (one block; padding
        # each pixel of the channels-last frame took the page 0.47 ms a step), not a frame-sized constant
        return F.pad(newest, (0, 0, 0, 0, 0, 1), value=255).permute(0, 2, 3, 1), *memory


class NetworkOnly(nn.Module):
    """forward(controls, memory_0.., noise_0..) -> frame (1, 3, H, W) float: the network alone,
    its memory updated outside (by web/memory.js; `neuralworld bench` measures what that costs)."""

    def __init__(self, net: nn.Module, layout: MemoryLayout):
        super().__init__()
        self.net, self.levels = net, len(layout.frames)

    def forward(self, controls, *tensors):
        tensors, recall = split_recall(self.net, tensors)
        extra = {"recall": recall} if recall else {}
        return self.net(controls, list(tensors[:self.levels]), list(tensors[self.levels:]), **extra)


def split_recall(net: nn.Module, tensors: tuple) -> tuple[tuple, tuple | None]:
    """The inputs after controls -> (memory and noise, (recall_frame, recall_pose) of a recalling
    world or None)."""
    if net.config.recall:
        return tensors[:-2], tuple(tensors[-2:])
    return tensors, None


class Folded(nn.Module):
    """A FiLMBlock computed by its forward_folded (batch 1)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, cond):
        return self.block.forward_folded(x, cond)


def with_full_resolution_film_folded(net: nn.Module) -> nn.Module:
    """A copy of a WorldNet whose full-resolution blocks (the UNet's first scale, which stays
    float32 in the int8 model) fold FiLM into their convolutions; other networks as they are."""
    body = getattr(net, "body", None)
    if not hasattr(body, "decoder"):
        return net
    net = copy.deepcopy(net)
    for blocks in (net.body.encoder[0], net.body.decoder[0]):
        for i, block in enumerate(blocks):
            blocks[i] = Folded(block)
    return net


class HalfBody(nn.Module):
    """A network body (the UNet) computing in float16 behind float32 inputs and outputs."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body.half()

    def forward(self, memory, noise, cond):
        half = lambda ts: [t.half() for t in ts]  # noqa: E731
        return self.body(half(memory), half(noise), cond.half()).float()


def with_float16_body(net: nn.Module) -> nn.Module | None:
    """A copy of a WorldNet whose body computes in float16, where the arithmetic is; the control
    MLP stays float32 (normalised controls subtract means of nearly equal size: float16's 11 bits
    lose them), and so do the residual sum, the clamp and the memory's 8-bit rule around it.
    None for networks without a body."""
    if not hasattr(net, "body"):
        return None
    net = copy.deepcopy(net)
    net.body = HalfBody(net.body)
    return net


class ExportedWorld(World):
    """A World whose steps run one of the page's exported step models in onnxruntime: Python-side
    play of an export, with the page's frames and memory and World's noise and rollouts."""

    def __init__(self, world: World, model: Path | bytes, threads: int = 1):
        import onnxruntime as ort

        super().__init__(world.net, world.schema, world.start_frames, world.preset, world.summary,
                         bank=world.bank, start_pose=world.start_pose)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.names = net_input_names(self.net)
        self.memory_bytes = keeps_bytes(self.session)

    def step(self, controls, noise=None) -> np.ndarray:
        t0 = time.perf_counter()
        c = torch.as_tensor(self.schema.clip(np.asarray(controls, np.float32).reshape(1, -1)))
        noise = self.draw_noise() if noise is None else [torch.as_tensor(np.asarray(n, np.float32)) for n in noise]
        recall = list(self.follower.step(c[0].numpy())) if self.follower is not None else []
        inputs = feeds([c, *self.memory, *noise, *recall], self.names, self.memory_bytes)
        frame, *memory = self.session.run(None, inputs)
        memory = [torch.from_numpy(m) for m in memory]
        self.memory = from_bytes(memory) if self.memory_bytes else memory
        self.step_seconds += time.perf_counter() - t0
        self.steps += 1
        return frame[0, :, :, :3]


def parity_inputs(layout: MemoryLayout, height: int, width: int, schema: ControlSchema, seed: int,
                  start_frames: np.ndarray | None = None, noise_shapes=None, recall: bool = False) -> list[torch.Tensor]:
    """Fixed inputs in export order: controls (1, C) around the schema's mean and scale, memory of
    8-bit values (from the start frames when given, else random), noise U(0, 1) of `noise_shapes`
    (NetConfig.noise_shapes; default one map per memory level), and with `recall` a recalled frame
    of 8-bit values and a relative pose near standing (rotation and translation off by ~0.1).
    A pose world's move is near standing too, whatever its schema: the warp sees a plane, and a
    move far from any rotation (a random schema's) puts the plane's horizon inside the frame, where
    the depth nears 0 and a float rounding moves a pixel between inside and outside the old view."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(schema.mean, dtype=torch.float32)
    scale = torch.tensor(schema.scale, dtype=torch.float32)
    controls = (mean + scale * torch.randn(schema.dim, generator=g))[None]  # (1, C)
    if schema.kind == POSE_KIND:
        controls[0, :12] = (torch.eye(3, 4) + 0.1 * torch.randn(3, 4, generator=g)).reshape(12)
    sizes = layout.sizes(height, width)
    if start_frames is not None:
        memory = memory_from_frames(frames_to_tensor(start_frames[None]), layout)
    else:
        memory = [quantize8(torch.rand(1, 3 * n, h, w, generator=g)) for n, (h, w) in zip(layout.frames, sizes)]
    noise = draw_noise(g, noise_shapes or [(1, h, w) for h, w in sizes])
    if not recall:
        return [controls, *memory, *noise]
    frame = quantize8(torch.rand(1, 3, height, width, generator=g))
    relative = (torch.eye(3, 4) + 0.1 * torch.randn(3, 4, generator=g)).reshape(1, 12)
    return [controls, *memory, *noise, frame, relative]


def export_onnx(net: nn.Module, layout: MemoryLayout, height: int, width: int, schema: ControlSchema,
                step: bool = True, memory_bytes: bool = False) -> tuple[bytes, str]:
    """The player's step (PlayerStep, its memory as bytes with memory_bytes; with step=False the
    network alone, NetworkOnly) as ONNX bytes with fixed batch-1 shapes, and the exporter that
    made it ("dynamo", or "torchscript" when dynamo failed, which is printed)."""
    levels = len(layout.frames)
    flat = PlayerStep(net, layout, memory_bytes) if step else NetworkOnly(net, layout)
    shapes = net.config.noise_shapes()
    inputs = net_input_names(net)
    args = parity_inputs(layout, height, width, schema, seed=0, noise_shapes=shapes, recall="recall_pose" in inputs)
    args = tuple(feeds(args, inputs, memory_bytes, tensors=True).values())
    names = dict(input_names=inputs, output_names=output_names(levels) if step else ["frame"])
    flat.eval()
    quiet = logging.getLogger("torch.onnx")  # it warns about torchvision ops this network never uses
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(flat, args, None, dynamo=True, opset_version=OPSET, verbose=False,
                                        external_data=False, optimize=True, **names)
            return bytes_by_quantize(program.model_proto.SerializeToString()), "dynamo"
        except Exception as e:  # noqa: BLE001 -- any exporter failure: try the older one, say so
            print(f"export: the dynamo exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                  "using the TorchScript exporter")
            buf = io.BytesIO()
            torch.onnx.export(flat, args, buf, dynamo=False, opset_version=OPSET, **names)
            return bytes_by_quantize(buf.getvalue()), "torchscript"
        finally:
            quiet.setLevel(level)


def bytes_by_quantize(model_bytes: bytes) -> bytes:
    """Conversions between 8-bit values and bytes as onnxruntime's vectorised (de)quantization
    kernels, where its Cast converts one value at a time:
      Round, then Cast to uint8 (memory.to_bytes, the frame's bytes) -> QuantizeLinear with
        scale 1: the same bytes (both round halves to even; the values are whole numbers 0..255);
      Cast of uint8 to float, then Div by 255 (memory.from_bytes) -> DequantizeLinear with scale
        1/255: k * (1/255) instead of k / 255, at most one float32 ulp apart (6e-8)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    made = {n.output[0]: n for n in graph.node}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    users = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    to = lambda n: [a.i for a in n.attribute if a.name == "to"]  # noqa: E731
    pairs = []  # (first node, second node, replacement)
    for n in graph.node:
        nxt = users.get(n.output[0], [])
        if n.op_type == "Round" and len(nxt) == 1 and nxt[0].op_type == "Cast" and to(nxt[0]) == [onnx.TensorProto.UINT8]:
            pairs.append((n, nxt[0], 1.0, "QuantizeLinear"))
        elif (n.op_type == "Cast" and to(n) == [onnx.TensorProto.FLOAT] and len(nxt) == 1 and nxt[0].op_type == "Div"
              and nxt[0].input[0] == n.output[0] and float(inits.get(nxt[0].input[1], 0)) == 255.0
              and n.input[0] not in made and n.input[0] in {i.name for i in graph.input}):
            pairs.append((n, nxt[0], 1 / 255, "DequantizeLinear"))
    for first, second, scale, op in pairs:
        s_init = numpy_helper.from_array(np.array(scale, np.float32), first.name + "_scale")
        z_init = numpy_helper.from_array(np.array(0, np.uint8), first.name + "_zero")
        graph.initializer.extend([s_init, z_init])
        graph.node.insert(list(graph.node).index(first), helper.make_node(
            op, [first.input[0], s_init.name, z_init.name], list(second.output), name=first.name + "_bytes"))
        graph.node.remove(first)
        graph.node.remove(second)
    return model.SerializeToString()


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


def feeds(inputs: list[torch.Tensor], names: list[str], memory_bytes: bool, tensors: bool = False) -> dict:
    """Inputs in export order as onnxruntime feeds {name: array} (tensors=True: {name: tensor}),
    the memory as bytes (memory.to_bytes) for a model that keeps it so."""
    out = {n: to_bytes([t])[0] if memory_bytes and n.startswith("memory_") else t for n, t in zip(names, inputs)}
    return out if tensors else {n: t.numpy() for n, t in out.items()}


def keeps_bytes(session) -> bool:
    """Whether an onnxruntime session's model takes its memory as bytes."""
    return any(i.name.startswith("memory_") and i.type == "tensor(uint8)" for i in session.get_inputs())


def quality(model: bytes, reference: bytes, inputs_list: list[list[torch.Tensor]]) -> float:
    """The worst one-step PSNR (dB, metrics.psnr: at most PSNR_CAP) of a step model's frames
    against a reference step model's, over the inputs lists (export order)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (model, reference)]
    names = [i.name for i in sessions[0].get_inputs()]
    worst = float("inf")
    for inputs in inputs_list:
        got, want = (s.run(["frame"], feeds(inputs, names, keeps_bytes(s)))[0] for s in sessions)
        worst = min(worst, float(metrics.psnr(got[..., :3], want[..., :3]).min()))
    return worst


def check_parity(net: nn.Module, model_bytes: bytes, inputs_list: list[list[torch.Tensor]],
                 what: str = "model") -> dict:
    """Run the step model in onnxruntime and PlayerStep in PyTorch on each inputs list: the new
    memory must agree to PARITY_LEVELS 8-bit levels, with at most PARITY_SHARE of its values off
    (a float difference of 1e-6 moves a value that sits on a rounding boundary), and the frame
    must be the newest memory frame. Returns {"max_levels", "share"}; raises UserError otherwise."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    levels = sum(n.startswith("memory_") for n in names)
    step = PlayerStep(net, net.config.layout).eval()
    in_bytes = keeps_bytes(session)
    as_bytes = (lambda m: m.astype(np.float64)) if in_bytes else (lambda m: np.round(m * 255.0))
    worst, off, count = 0, 0, 0
    for inputs in inputs_list:
        with torch.no_grad():
            expected = [t.numpy() for t in step(*inputs)]
        got = session.run(output_names(levels), feeds(inputs, names, in_bytes))
        if [g.shape for g in got] != [e.shape for e in expected] or got[0].dtype != np.uint8:
            raise UserError(f"{what}: ONNX outputs {[g.shape for g in got]} differ in shape or type from PyTorch's "
                            f"{[e.shape for e in expected]} (report this as a bug)")
        diffs = [np.abs(as_bytes(g) - np.round(e * 255.0)) for g, e in zip(got[1:], expected[1:])]
        worst = max([worst] + [float(d.max()) for d in diffs])
        off += sum(int((d > 0).sum()) for d in diffs)
        count += sum(d.size for d in diffs)
        newest = as_bytes(got[1][0, -3:]).transpose(1, 2, 0)  # (H, W, 3) the frame memory holds
        if not np.array_equal(got[0][0, :, :, :3], newest) or not (got[0][..., 3] == 255).all():
            raise UserError(f"{what}: the ONNX frame is not its newest memory frame (report this as a bug)")
    share = off / max(count, 1)
    if not (worst <= PARITY_LEVELS and share <= PARITY_SHARE):
        raise UserError(f"{what}: ONNX memory differs from PyTorch's by up to {worst:g} 8-bit levels in "
                        f"{100 * share:.3g}% of values (allowed: {PARITY_LEVELS} in {100 * PARITY_SHARE:g}%); "
                        "the export is not trustworthy (report this as a bug)")
    return {"max_levels": worst, "share": share}


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


def _reduced(name: str, model: bytes, reference: bytes, held_out, what: str) -> dict | None:
    """{"psnr_db"} of a reduced-precision model against the float32 one, or None (with a note)
    when it costs more quality than QUALITY_MIN_DB allows."""
    db = quality(model, reference, held_out)
    if db < QUALITY_MIN_DB:
        print(f"export: {what}: one-step PSNR against float32 is {db:.1f} dB, under {QUALITY_MIN_DB:g} dB; "
              f"{name} is left out")
        return None
    return {"psnr_db": round(db, 2)}  # metrics.PSNR_CAP (100) for the same frames


def export_network(net: nn.Module, out_dir: Path, *, layout: MemoryLayout, height: int, width: int,
                   schema: ControlSchema, start_frames: np.ndarray, fp16: bool = False, wasm: str = "int8",
                   webgpu_f16: bool = True, force: bool = False, meta: dict | None = None,
                   extra_models: dict[str, tuple[bytes, dict]] | None = None, bank=None,
                   start_pose: np.ndarray | None = None) -> Path:
    """Export any network with the WorldNet signature and write the web folder `out_dir`.

    fp16: store model.onnx's weights as float16 (half its download, float32 arithmetic).
    wasm: "int8" (model.int8.onnx, when it keeps the quality) or "float32" (model.onnx).
    webgpu_f16: also write model.f16.onnx (float16 arithmetic) for WebGPU adapters with shader-f16.
    extra_models: more files {name: (bytes, description)} for the page's ?model= (benchmarks).
    bank, start_pose: a recalling world's real frames (recall.Bank) and the pose it starts at.
    A folder that holds an earlier export is replaced; anything else needs force=True."""
    out_dir = Path(out_dir)
    net = net.eval()
    ort_files = runtime_files()
    start_frames = np.ascontiguousarray(start_frames, dtype=np.uint8)
    if start_frames.ndim != 4 or start_frames.shape[1:] != (height, width, 3):
        raise UserError(f"start frames: expected (K, {height}, {width}, 3) uint8, got {start_frames.shape}")
    if wasm not in ("int8", "float32"):
        raise UserError(f"wasm={wasm!r}: expected int8 or float32")
    shapes = net.config.noise_shapes()
    names = net_input_names(net)
    recall = "recall_pose" in names
    if recall and (bank is None or start_pose is None):
        raise ValueError("a world that recalls real frames is exported with its bank and start pose")

    float32, exporter = export_onnx(net, layout, height, width, schema)
    checks = [parity_inputs(layout, height, width, schema, seed, noise_shapes=shapes, recall=recall)
              for seed in (1, 2)]
    checks.append(parity_inputs(layout, height, width, schema, 3, start_frames, noise_shapes=shapes, recall=recall))
    models = {"model.onnx": (float32, {"precision": "float32",
                                       "parity": check_parity(net, float32, checks, f"{out_dir} (float32)")})}
    # what the page will feed the model: calibration for int8, and unseen inputs to measure quality
    played = quantize.played_inputs(net, layout, schema, start_frames,
                                    start_attitude=(meta or {}).get("start_attitude", (0.0, 0.0)),
                                    follower=Follower(bank, start_pose) if recall else None)
    calibration, held_out = played[::quantize.CALIBRATION_EVERY], played[2::quantize.CALIBRATION_EVERY]
    if fp16:
        halved = halve_weights(float32)
        kept = _reduced("model.onnx", halved, float32, held_out, f"{out_dir} (float16 weights)")
        if kept is None:
            raise UserError(f"{out_dir}: float16 weights cost too much quality; export without --fp16")
        models["model.onnx"] = (halved, {"precision": "float32", "weights": "float16", **kept})
    backends = {"wasm": "model.onnx", "webgpu": "model.onnx"}
    if wasm == "int8":  # the memory as bytes too: WebAssembly only
        stepped, _ = export_onnx(with_full_resolution_film_folded(net), layout, height, width, schema,
                                 memory_bytes=True)
        int8 = quantize.quantize_int8(stepped, [feeds(c, names, True) for c in calibration], height)
        kept = _reduced("model.int8.onnx", int8, float32, held_out, f"{out_dir} (int8)")
        if kept is not None:
            models["model.int8.onnx"] = (int8, {"precision": "int8", "memory_dtype": "uint8", **kept})
            backends["wasm"] = "model.int8.onnx"
    if webgpu_f16 and with_float16_body(net) is not None:
        f16, _ = export_onnx(with_float16_body(net), layout, height, width, schema)
        kept = _reduced("model.f16.onnx", f16, float32, held_out, f"{out_dir} (float16)")
        if kept is not None:
            models["model.f16.onnx"] = (f16, {"precision": "float16", **kept})
            backends["webgpu-f16"] = "model.f16.onnx"
    models.update(extra_models or {})
    start_memory = memory_from_frames(frames_to_tensor(start_frames[None]), layout)

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
        "models": {name: info for name, (_, info) in models.items()},
        "backends": backends,
        "inputs": names,
        "noise": [list(shape) for shape in shapes],
        "outputs": output_names(len(layout.frames)),
        "exporter": exporter,
        "opset": OPSET,
        "start_memory": {"file": "start_memory.bin", "dtype": "uint8", "scale": 255,
                         "shapes": [list(m.shape[1:]) for m in start_memory]},
        "start_frames": int(len(start_frames)),
        "player": player_fingerprint(),
    }
    if recall:  # what web/world.js's Follower needs: the bank as bytes, (M, 3, H, W), and recall.py's rule
        page["recall"] = {"file": "recall_frames.bin", "count": len(bank), "poses": bank.poses.reshape(-1, 16).tolist(),
                          "start_pose": np.asarray(start_pose, np.float64).reshape(16).tolist(),
                          **recall_rule()}
    force = force or _is_previous_export(out_dir)
    with atomic_dir(out_dir, force=force) as tmp:
        for name in PLAYER_FILES:
            shutil.copyfile(WEB_SOURCE / name, tmp / name)
        (tmp / "ort").mkdir()
        for p in ort_files:
            shutil.copyfile(p, tmp / "ort" / p.name)
        for name, (data, _) in models.items():
            (tmp / name).write_bytes(data)
        (tmp / "start_memory.bin").write_bytes(b"".join(np.round(m.numpy() * 255.0).astype(np.uint8).tobytes()
                                                        for m in start_memory))
        if recall:
            (tmp / "recall_frames.bin").write_bytes(np.ascontiguousarray(bank.frames.transpose(0, 3, 1, 2)).tobytes())
        # for offline play: the service worker caches "page" when it installs; the page caches the
        # files of the backend it runs once they have loaded
        runtime = {b: [f"ort/{f}" for f in RUNTIME_OF[b.split("-")[0]]] for b in backends}
        page["files"] = {"page": PLAYER_FILES + ["start_memory.bin", "world.json", "./"] + ["recall_frames.bin"] * recall,
                         **{b: [model] + runtime[b] for b, model in backends.items()}}
        (tmp / "world.json").write_text(json.dumps(page, indent=2) + "\n")
    return out_dir


def export_world(world_dir: Path, out_dir: Path | None = None, fp16: bool = False, wasm: str = "int8",
                 webgpu_f16: bool = True, force: bool = False, sampler_steps: int | None = None) -> Path:
    """Export the world folder `world_dir` to `out_dir` (default world_dir/web); returns out_dir.
    sampler_steps: a flow world's Euler steps per frame in the exported graphs (default its own)."""
    world_dir = Path(world_dir)
    world = World.load(world_dir, sampler_steps=sampler_steps)
    out_dir = world_dir / "web" if out_dir is None else Path(out_dir)
    return export_network(world.net, out_dir, layout=world.layout, height=world.height, width=world.width,
                          schema=world.schema, start_frames=world.start_frames, fp16=fp16, wasm=wasm,
                          webgpu_f16=webgpu_f16, force=force, bank=world.bank, start_pose=world.start_pose,
                          meta={"name": world_dir.resolve().name, "preset": world.preset,
                                "start_attitude": list(world.start_attitude),
                                "source": world_fingerprint(world_dir), "objective": world.config.objective,
                                "sampler_steps": world.net.sampler_steps if world.config.objective == "flow" else None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", type=Path, help="world folder (made by `neuralworld train`)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="web folder to write (default: WORLD/web); an earlier export there is replaced")
    parser.add_argument("--wasm", choices=["int8", "float32"], default="int8",
                        help="the model the WebAssembly backend runs: int8 convolutions (model.int8.onnx, used "
                             f"when its one-step PSNR against float32 is at least {QUALITY_MIN_DB:g} dB) or float32 "
                             "(model.onnx)")
    parser.add_argument("--no-webgpu-f16", dest="webgpu_f16", action="store_false",
                        help="write no float16 model (model.f16.onnx, for WebGPU adapters with shader-f16)")
    parser.add_argument("--fp16", action="store_true",
                        help="store model.onnx's weights as float16 (half its download; arithmetic stays float32; "
                             f"refused when one-step PSNR against float32 falls under {QUALITY_MIN_DB:g} dB)")
    parser.add_argument("--force", action="store_true",
                        help="replace the output folder even when it is not an earlier export")
    parser.add_argument("--sampler-steps", type=int, default=None, metavar="K",
                        help="flow worlds: Euler steps of the sampler per frame, unrolled in the exported model "
                             "(default: the world's own); more steps, more detail, slower")


def run(args) -> int:
    out = export_world(args.world, args.output, fp16=args.fp16, wasm=args.wasm, webgpu_f16=args.webgpu_f16,
                       force=args.force, sampler_steps=args.sampler_steps)
    page = json.loads((out / "world.json").read_text())
    print(f"exported {args.world} -> {out} ({page['exporter']} exporter, opset {page['opset']})")
    for backend, name in page["backends"].items():
        info = page["models"][name]
        check = (f"parity with PyTorch: memory within {info['parity']['max_levels']:g} 8-bit level"
                 if "parity" in info else f"one-step PSNR against float32 {info['psnr_db']:.1f} dB")
        print(f"  {backend:<11} {name:<16} {info['precision']:<8} {(out / name).stat().st_size / 1e6:5.1f} MB  {check}")
    print(f"play it: neuralworld play {args.world}   (or serve {out} with any static file server)")
    return 0
