"""int8 models for the browser's WebAssembly backend: static quantization with onnxruntime's tools.

The exported step model (export.PlayerStep) is quantized in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around each quantized operator, which onnxruntime fuses into integer
kernels such as QLinearConv): weights to int8 per output channel, activations to uint8 per
tensor, with ranges calibrated (min-max) on what the page will feed the model: the world's own
start frames, then its own frames as the float network plays them under the player's tour of
moves (tour.tour_controls). After Jacob et al., "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference" (CVPR 2018), as onnxruntime implements it
(onnxruntime.quantization.quantize_static).

Only the convolutions below full resolution are quantized. In WebAssembly, onnxruntime's integer
convolution works on channels-last tensors with the output channels as the inner dimension of
its matrix product, which the full-resolution layers (3 to 8 channels over 192x256 pixels) fill
badly: there they were slower than float32, with transposes around them; at the coarser scales
(32 to 256 channels) int8 was faster (`neuralworld bench`). Everything else stays float32: the
control MLP (a few hundred numbers), FiLM, activations and residual sums (integer versions of
these elementwise operators were slower in the browser than their float ones), the clamp of the
frame and the memory update, so that the memory keeps its exact 8-bit rule. Before quantizing,
the zero channels that the network pads its inputs with (network.pad_channels, for a WebGPU
backend's sake) are dropped along with the weights they meet (drop_channel_padding).

export.quality measures what quantization costs: the one-step PSNR of the quantized model's
frames against the float32 model's, on inputs the calibration did not see.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from neuralworld import engine
from neuralworld.controls import ControlSchema
from neuralworld.model.memory import MemoryLayout, memory_from_frames
from neuralworld.tour import tour_controls

CALIBRATION_STEPS = 96  # steps of the tour played by the float network (at 1/15 s: 6.4 s of moves)
CALIBRATION_EVERY = 4  # every 4th step calibrates (24 inputs); the others measure quality
QUALITY_MIN_DB = 40.0  # one-step PSNR against float32 below which a quantized model is not used


def played_inputs(net, layout: MemoryLayout, schema: ControlSchema, start_frames: np.ndarray,
                  steps: int = CALIBRATION_STEPS, seed: int = 0, start_attitude=(0.0, 0.0),
                  follower=None) -> list[list[torch.Tensor]]:
    """The inputs (controls, memory_0.., noise_0.., and a flow world's noise_x) of `steps` steps of the float network played
    from the start frames under the player's tour (pose worlds walk, turn, look, strafe, back up;
    action worlds steer and throttle), at the world's trained time step nearest 1/15 s, starting
    with the start frames' (roll, pitch) as the page does. A recalling world's inputs end with what
    its `follower` (recall.Follower) recalls at each step."""
    from neuralworld.geometry import camera_rotation, make_pose
    from neuralworld.player import trained_time_step
    from neuralworld.world import frames_to_tensor

    dt = trained_time_step(schema, 1 / 15)
    roll, pitch = start_attitude
    start = make_pose(camera_rotation(0.0, pitch, roll), np.zeros(3))  # where the page starts
    controls, _, _ = tour_controls(schema, dt, steps, start)
    memory = memory_from_frames(frames_to_tensor(np.asarray(start_frames)[None]), layout)
    generator = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for c in controls:
            c = torch.as_tensor(schema.clip(c))[None]  # (1, C), as World.step and the page clip it
            noise = engine.draw_noise(generator, net.config.noise_shapes())
            recall = follower.step(c[0].numpy()) if follower is not None else None
            out.append([c, *memory, *noise, *(recall or ())])
            _, memory = engine.step(net, memory, c, noise, layout, recall=recall)
    return out


def quantize_int8(model_bytes: bytes, calibration: list[dict], height: int) -> bytes:
    """The model with its channel padding dropped and its convolutions below full resolution
    (frames `height` rows high) quantized to int8 (QDQ), calibrated on `calibration` (onnxruntime
    feeds, {input name: array})."""
    model_bytes = drop_channel_padding(model_bytes)
    exclude = full_resolution_convs(model_bytes, height)
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="neuralworld-int8-") as tmp:
        source, prepared, out = (Path(tmp) / n for n in ("model.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(model_bytes)
        # shape inference and graph cleanup, as onnxruntime recommends before quantizing
        quant_pre_process(os.fspath(source), os.fspath(prepared), skip_symbolic_shape=True)
        quantize_static(os.fspath(prepared), os.fspath(out), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=list(exclude),
                        calibrate_method=CalibrationMethod.MinMax)
        return out.read_bytes()


def drop_channel_padding(model_bytes: bytes) -> bytes:
    """Each convolution fed by a zero padding of its input channels (a constant Pad on axis 1
    only, used by nothing else) takes the unpadded input and the weights of its real channels
    instead: the same sums without the zero terms, and no padded copy of the input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    drop = []
    for pad in graph.node:
        if pad.op_type != "Pad" or len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        modes = [a.s for a in pad.attribute if a.name == "mode"]
        constant = len(pad.input) < 3 or not pad.input[2] or (
            pad.input[2] in inits and not numpy_helper.to_array(inits[pad.input[2]]).any())
        pads = numpy_helper.to_array(inits[pad.input[1]])  # [begin per axis..., end per axis...]
        if modes not in ([], [b"constant"]) or not constant or len(pads) != 8 or pads[[0, 1, 2, 3, 4, 6, 7]].any():
            continue  # only zeros after the channels of a 4-d tensor
        convs = users.get(pad.output[0], [])
        if not convs or any(c.op_type != "Conv" or c.input[0] != pad.output[0] or c.input[1] not in inits
                            or any(a.name == "group" and a.i != 1 for a in c.attribute) for c in convs):
            continue
        for conv in convs:
            name = conv.input[1] + "_unpadded"
            if name not in inits:  # one weight may meet several pads (a flow sampler's steps)
                w = numpy_helper.to_array(inits[conv.input[1]])
                inits[name] = numpy_helper.from_array(w[:, :w.shape[1] - int(pads[5])].copy(), name)
                graph.initializer.append(inits[name])
            conv.input[0], conv.input[1] = pad.input[0], name
        drop.append(pad)
    for pad in drop:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # the padded weights and the pads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def full_resolution_convs(model_bytes: bytes, height: int) -> list[str]:
    """Names of the convolutions whose output is `height` rows high or more (the frame's own
    scale, or a padded frame's: the refresh blur's pass along rows)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(model_bytes))
    rows = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.value_info) + list(model.graph.output)}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and rows.get(n.output[0], [0, 0, 0, 0])[2] >= height]
