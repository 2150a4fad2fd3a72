"""int8 for the WebAssembly backend: calibration inputs come from the world's own start frames and
the player's moves, and quality is measured against the float32 model."""

import numpy as np
import pytest
import torch

from neuralworld import export, metrics, quantize
from neuralworld.model.memory import memory_from_frames
from neuralworld.world import frames_to_tensor

from player_worlds import HEIGHT, WIDTH, channel_pads, pose_schema, random_world_net, start_frames


@pytest.fixture(scope="module")
def net():
    # without the warp: these tests count the pads and casts of the memory rule, and the warp adds
    # its own (its worlds are quantized in test_export and played in test_player_browser)
    return random_world_net(pose_schema(), seed=4, warp="off")


def test_calibration_plays_the_world_from_its_start_frames(net):
    schema, layout, frames = pose_schema(), net.config.layout, start_frames()
    played = quantize.played_inputs(net, layout, schema, frames, steps=60)
    assert len(played) == 60
    first = played[0]
    for got, want in zip(first[1:1 + len(layout.frames)], memory_from_frames(frames_to_tensor(frames[None]), layout)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # starts from the world's own frames
    controls = np.stack([p[0][0].numpy() for p in played])
    assert np.ptp(controls[:, 11], axis=0) > 0.05  # the tour walks (forward motion of the pose control)
    assert not torch.equal(played[-1][1], first[1])  # and the memory follows the network's own frames


def test_int8_quality_is_psnr_against_float32(net):
    schema, layout = pose_schema(), net.config.layout
    model, _ = export.export_onnx(net, layout, HEIGHT, WIDTH, schema)
    names = export.input_names(len(layout.frames))
    played = quantize.played_inputs(net, layout, schema, start_frames(), steps=8)
    assert export.quality(model, model, played) == metrics.PSNR_CAP
    stepped, _ = export.export_onnx(net, layout, HEIGHT, WIDTH, schema, memory_bytes=True)
    int8 = quantize.quantize_int8(stepped, [export.feeds(p, names, True) for p in played[::2]], HEIGHT)
    db = export.quality(int8, model, played[1::2])
    assert quantize.QUALITY_MIN_DB <= db < metrics.PSNR_CAP  # close, but not the same


def test_dropping_the_channel_padding_keeps_the_sums(net):
    schema, layout = pose_schema(), net.config.layout
    model, _ = export.export_onnx(net, layout, HEIGHT, WIDTH, schema)
    unpadded = quantize.drop_channel_padding(model)
    import onnx

    assert channel_pads(onnx.load_from_string(model)) == len(layout.frames)
    assert channel_pads(onnx.load_from_string(unpadded)) == 0
    inputs = [export.parity_inputs(layout, HEIGHT, WIDTH, schema, seed) for seed in (1, 2)]
    assert export.check_parity(net, unpadded, inputs)["max_levels"] == 0


def test_memory_as_bytes_is_the_same_memory(net):
    """The WebAssembly model's memory in bytes (memory.push_bytes) holds push's values exactly."""
    schema, layout = pose_schema(), net.config.layout
    stepped, _ = export.export_onnx(net, layout, HEIGHT, WIDTH, schema, memory_bytes=True)
    inputs = [export.parity_inputs(layout, HEIGHT, WIDTH, schema, seed, start_frames() if seed == 3 else None)
              for seed in (1, 2, 3)]
    assert export.check_parity(net, stepped, inputs)["max_levels"] <= export.PARITY_LEVELS
    import onnx
    import onnxruntime as ort

    session = ort.InferenceSession(stepped, providers=["CPUExecutionProvider"])
    assert export.keeps_bytes(session)
    assert all(o.type == "tensor(uint8)" for o in session.get_outputs())
    ops = [n.op_type for n in onnx.load_from_string(stepped).graph.node]
    assert "Cast" not in ops and ops.count("DequantizeLinear") == len(layout.frames)  # bytes_by_quantize
