"""`neuralworld export`: the step models (float32, int8, float16), their names and shapes, parity and
quality against PyTorch, the options, the web folder."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from neuralworld import export, metrics, quantize
from neuralworld.cli import main
from neuralworld.controls import ControlSchema
from neuralworld.errors import UserError
from neuralworld.model.network import MoveWarp
from neuralworld.world import World

from player_worlds import (HEIGHT, WIDTH, action_schema, channel_pads, model_constants, random_world_net,
                           save_world, start_frames)

pytestmark = pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(),
                                reason="ONNX Runtime Web not fetched (run bash scripts/fetch-web-runtime.sh)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A saved tiny world with random weights, exported through the CLI."""
    world = save_world(tmp_path_factory.mktemp("export") / "world")
    assert main(["export", str(world)]) == 0
    return world, world / "web"


def test_web_folder_holds_everything_the_page_needs(exported):
    world, web = exported
    page = json.loads((web / "world.json").read_text())
    for name in export.PLAYER_FILES + ["model.onnx", "model.int8.onnx", "model.f16.onnx", "start_memory.bin",
                                       "ort/ort.wasm.min.mjs", "ort/ort-wasm-simd-threaded.wasm"]:
        assert (web / name).is_file(), name
    assert page["format"] == export.WEB_FORMAT and page["exporter"] == "dynamo"
    assert page["height"] == HEIGHT and page["width"] == WIDTH
    assert page["memory"]["frames"] == [4, 8, 16] and page["memory"]["sizes"] == [[32, 32], [8, 8], [2, 2]]
    assert page["controls"]["names"][15] == "valid" and len(page["controls"]["mean"]) == 16
    # one model per backend: int8 for WebAssembly, float32 and float16 for WebGPU
    assert page["backends"] == {"wasm": "model.int8.onnx", "webgpu": "model.onnx", "webgpu-f16": "model.f16.onnx"}
    assert page["models"]["model.onnx"]["parity"]["max_levels"] <= export.PARITY_LEVELS
    for name in ("model.int8.onnx", "model.f16.onnx"):
        assert page["models"][name]["psnr_db"] >= export.QUALITY_MIN_DB
    # offline: the service worker caches the page, the page its backend's model and runtime; that is every file
    files = {p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()}
    listed = {f for group in page["files"].values() for f in group}
    assert {f for f in files if not f.startswith("ort/")} <= listed
    assert "ort/ort-wasm-simd-threaded.wasm" in page["files"]["wasm"] and "model.int8.onnx" in page["files"]["wasm"]
    assert all((web / f).is_file() for f in listed - {"./"})
    # the memory after the start frames, as the model's memory inputs hold it (8-bit values)
    w = World.load(world)
    data = np.fromfile(web / "start_memory.bin", np.uint8)
    levels = np.split(data, np.cumsum([np.prod(s) for s in page["start_memory"]["shapes"]])[:-1])
    for level, expected, shape in zip(levels, w.memory, page["start_memory"]["shapes"]):
        np.testing.assert_array_equal(level.reshape(shape).astype(np.float32) / np.float32(255), expected[0].numpy())
    assert export.is_current(world, web)


def test_onnx_names_shapes_and_opset(exported):
    _, web = exported
    F, U8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8
    for name in ("model.onnx", "model.int8.onnx", "model.f16.onnx"):
        model = onnx.load(web / name)
        memory = U8 if name == "model.int8.onnx" else F  # WebAssembly's model keeps its memory as bytes
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        inputs = {i.name: ([d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type)
                  for i in model.graph.input}
        assert inputs == {"controls": ([1, 16], F), "memory_0": ([1, 12, 32, 32], memory),
                          "memory_1": ([1, 24, 8, 8], memory), "memory_2": ([1, 48, 2, 2], memory),
                          "noise_0": ([1, 1, 32, 32], F), "noise_1": ([1, 1, 8, 8], F), "noise_2": ([1, 1, 2, 2], F)}, name
        outputs = {o.name: ([d.dim_value for d in o.type.tensor_type.shape.dim], o.type.tensor_type.elem_type)
                   for o in model.graph.output}
        assert outputs == {"frame": ([1, 32, 32, 4], U8), "new_memory_0": ([1, 12, 32, 32], memory),
                           "new_memory_1": ([1, 24, 8, 8], memory), "new_memory_2": ([1, 48, 2, 2], memory)}, name
        assert not any(n.op_type == "Cast" and n.attribute[0].i == U8 for n in model.graph.node)  # bytes_by_quantize


def test_the_model_steps_the_world_frame_for_frame(exported):
    """model.onnx is engine.step: its frames and memory, fed back step after step, are World's."""
    world_dir, web = exported
    world = World.load(world_dir)
    exported_world = export.ExportedWorld(world, web / "model.onnx")
    controls = np.array(world.schema.mean) + np.random.default_rng(5).normal(size=(6, world.schema.dim)) * 0.3
    got, expected = exported_world.rollout(None, controls, seed=2), world.rollout(None, controls, seed=2)
    assert np.abs(got.astype(int) - expected).max() <= 1
    for level, (m, py) in enumerate(zip(exported_world.memory, world.memory)):
        assert np.abs(m.numpy() - py.numpy()).max() <= 1 / 255 + 1e-6, level
    assert expected.std() > 5 and np.abs(expected[-1].astype(int) - world.start_frames[-1]).mean() > 2  # it changes
    session = ort.InferenceSession(str(web / "model.onnx"), providers=["CPUExecutionProvider"])
    frame = session.run(["frame"], dict(zip(export.input_names(3), (m.numpy() for m in [
        torch.zeros(1, 16), *World.load(world_dir).memory, *world.draw_noise()]))))[0]
    assert frame.dtype == np.uint8 and (frame[..., 3] == 255).all()  # RGBA, opaque


def test_int8_keeps_convolutions_at_full_size_or_taller_in_float32():
    """The refresh blur's pass along rows outputs the frame padded (6 rows taller): it stays float
    with the frame's own convolutions; a coarser scale's convolution is quantized."""
    from onnx import TensorProto, helper

    def conv(name, rows_in, pad_rows):  # a 1x1 (or 7x1) convolution of a (1, 3, rows_in, 8) tensor
        k = 7 if pad_rows else 1
        weight = helper.make_tensor(name + "_w", TensorProto.FLOAT, (3, 1, 1, k), [1.0 / k] * 3 * k)
        node = helper.make_node("Conv", [name + "_in", name + "_w"], [name + "_out"], name=name, group=3,
                                pads=[0, 0, 0, 0] if not pad_rows else [0, 3, 0, 3])
        return node, weight, helper.make_tensor_value_info(name + "_in", TensorProto.FLOAT, (1, 3, rows_in, 8))

    parts = [conv("full", 32, False), conv("padded", 38, True), conv("coarse", 8, False)]
    graph = helper.make_graph([p[0] for p in parts], "g", [p[2] for p in parts],
                              [helper.make_tensor_value_info(n + "_out", TensorProto.FLOAT, None)
                               for n in ("full", "padded", "coarse")], [p[1] for p in parts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert sorted(quantize.full_resolution_convs(model.SerializeToString(), 32)) == ["full", "padded"]


def test_exported_constants_are_the_network_s_own(exported):
    """Every constant of a frame's size or more in the exported model is one of the network's
    weights or buffers: nothing the size of a frame was computed at export and folded in, which
    the page would download for nothing."""
    _, web = exported
    model = onnx.load(web / "model.onnx")
    folded = [name for name, value in model_constants(model).items()
              if value.size >= HEIGHT * WIDTH and not name.startswith("net.")]
    assert not folded


def test_int8_model_keeps_the_memory_rule_and_the_picture(exported):
    """Convolutions below full resolution in int8 (QDQ around Conv, int8 weights), the channel
    padding dropped, the memory update left exact: the new memory is the old one shifted with the
    8-bit frame in, and the frames stay within QUALITY_MIN_DB of float32."""
    world_dir, web = exported
    model = onnx.load(web / "model.int8.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "AveragePool"} <= ops and channel_pads(model) == 0
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    from_int8 = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    full = set(quantize.full_resolution_convs((web / "model.int8.onnx").read_bytes(), HEIGHT))
    assert len(full) == 4 and len(convs) == 16  # level 0: stem, a block's two, the output
    assert all((c.input[1] in from_int8) == (c.name not in full) for c in convs)
    assert (web / "model.int8.onnx").stat().st_size < 0.75 * (web / "model.onnx").stat().st_size  # 0.3 for forest
    world = World.load(world_dir)
    int8 = export.ExportedWorld(world, web / "model.int8.onnx")
    controls = np.array(world.schema.mean)[None]
    got, expected = int8.rollout(None, controls, seed=1), world.rollout(None, controls, seed=1)
    start, memory = [m.numpy() for m in World.load(world_dir).memory], [m.numpy() for m in int8.memory]
    np.testing.assert_array_equal(memory[0][:, :-3], start[0][:, 3:])  # the oldest frame dropped, the rest kept
    np.testing.assert_array_equal(memory[0][0, -3:], got[0].transpose(2, 0, 1) / np.float32(255))
    for m in memory:
        np.testing.assert_array_equal(np.round(m * 255) / np.float32(255), m)  # 8-bit values
    assert metrics.psnr(got, expected).min() >= export.QUALITY_MIN_DB


def test_float16_model_computes_in_float16(exported):
    _, web = exported
    model = onnx.load(web / "model.f16.onnx")
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert {i.data_type for i in model.graph.initializer if i.name in weights} == {onnx.TensorProto.FLOAT16}
    full = onnx.load(web / "model.onnx")
    weight_bytes = lambda m: sum(len(i.raw_data) for i in m.graph.initializer if "weight" in i.name)  # noqa: E731
    assert weight_bytes(model) < 0.55 * weight_bytes(full)


def test_fp16_weights_halve_the_model(exported, tmp_path):
    world, web = exported
    out = export.export_world(world, tmp_path / "web16", fp16=True, webgpu_f16=False)
    page = json.loads((out / "world.json").read_text())
    info = page["models"]["model.onnx"]
    assert info["weights"] == "float16" and info["psnr_db"] >= export.QUALITY_MIN_DB
    model = onnx.load(out / "model.onnx")
    weight_bytes = lambda m: sum(len(i.raw_data) for i in m.graph.initializer)  # noqa: E731
    assert weight_bytes(model) < 0.55 * weight_bytes(onnx.load(web / "model.onnx"))
    assert {i.name: i.type.tensor_type.elem_type for i in model.graph.input}["controls"] == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_options_choose_the_models(exported, tmp_path, capsys):
    world, _ = exported
    out = tmp_path / "web"
    assert main(["export", str(world), "-o", str(out), "--wasm", "float32", "--no-webgpu-f16"]) == 0
    page = json.loads((out / "world.json").read_text())
    assert page["backends"] == {"wasm": "model.onnx", "webgpu": "model.onnx"}
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.onnx"]
    assert "wasm" in capsys.readouterr().out


def test_a_quantized_model_that_costs_quality_is_left_out(exported, tmp_path, monkeypatch, capsys):
    world, _ = exported
    monkeypatch.setattr(export, "QUALITY_MIN_DB", 200.0)  # nothing short of identical frames passes
    out = export.export_world(world, tmp_path / "web", webgpu_f16=False)
    page = json.loads((out / "world.json").read_text())
    assert page["backends"]["wasm"] == "model.onnx" and not (out / "model.int8.onnx").exists()
    assert "model.int8.onnx is left out" in capsys.readouterr().out


def test_parity_failure_is_loud():
    schema = action_schema()
    net_a, net_b = random_world_net(schema, seed=1), random_world_net(schema, seed=2)
    layout = net_a.config.layout
    model, _ = export.export_onnx(net_a, layout, HEIGHT, WIDTH, schema)
    inputs = [export.parity_inputs(layout, HEIGHT, WIDTH, schema, seed=0)]
    assert export.check_parity(net_a, model, inputs)["max_levels"] <= export.PARITY_LEVELS
    with pytest.raises(UserError, match="differs from PyTorch"):
        export.check_parity(net_b, model, inputs)


def test_parity_inputs_move_a_pose_world_as_a_walk_does():
    """Even with a random world's schema (mean 0, scale 1), the parity check's moves keep the warp's
    plane ahead of the camera across the frame: near its horizon a float rounding decides whether a
    pixel was inside the old view, and the check would fail an export that is right."""
    schema = ControlSchema.identity()
    layout = random_world_net(schema).config.layout
    warp = MoveWarp(HEIGHT, WIDTH, focal=0.7)
    for seed in range(8):
        controls = export.parity_inputs(layout, HEIGHT, WIDTH, schema, seed)[0]
        depth = (warp.K @ warp.plane(controls) @ warp.K_inv @ warp.pixels)[0, 2]  # (H W) each pixel's in the old view
        assert depth.min() > 0.3, seed


def test_missing_runtime_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "RUNTIME_DIR", tmp_path / "nothing")
    with pytest.raises(UserError, match="fetch-web-runtime.sh"):
        export.runtime_files()


def test_refuses_a_foreign_folder_and_replaces_an_old_export(exported, tmp_path):
    world, _ = exported
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert main(["export", str(world), "-o", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "keep"
    out = tmp_path / "web"
    export.export_world(world, out, wasm="float32", webgpu_f16=False)
    (out / "stray.txt").write_text("old")
    export.export_world(world, out, wasm="float32", webgpu_f16=False)  # an earlier export is replaced without --force
    assert not (out / "stray.txt").exists() and (out / "model.onnx").is_file()


def test_staleness_follows_the_weights(exported, tmp_path):
    world, web = exported
    copy = tmp_path / "world"
    World.load(world).save(copy)
    export.export_world(copy, wasm="float32", webgpu_f16=False)
    assert export.is_current(copy, copy / "web")
    w = World.load(copy)
    with torch.no_grad():
        next(w.net.parameters()).add_(0.01)
    w.save(copy)
    assert not export.is_current(copy, copy / "web")


def test_export_of_an_action_world(tmp_path):
    world = save_world(tmp_path / "car", action_schema())
    web = export.export_world(world, webgpu_f16=False)
    page = json.loads((web / "world.json").read_text())
    assert page["controls"]["kind"] == "actions" and page["controls"]["names"] == ["steering", "throttle"]
    assert page["controls"]["ranges"] == [[-0.7, 0.6], [0.4, 1.0]]
    assert len(start_frames()) == page["start_frames"] and page["backends"]["wasm"] == "model.int8.onnx"


def test_a_flow_world_exports_its_sampler_with_the_noise_it_starts_from(tmp_path):
    world = save_world(tmp_path / "flow", seed=4, objective="flow", sampler_steps=2)
    web = export.export_world(world, webgpu_f16=False)
    page = json.loads((web / "world.json").read_text())
    assert page["inputs"][-1] == "noise_x" and page["noise"][-1] == [4, HEIGHT, WIDTH]
    assert page["models"]["model.onnx"]["parity"]["max_levels"] <= export.PARITY_LEVELS
    for name in page["models"]:  # every model takes the sampler's noise
        model = onnx.load(web / name)
        dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        assert dims["noise_x"] == [1, 4, HEIGHT, WIDTH], name
    w = World.load(world)
    inputs = export.parity_inputs(w.layout, HEIGHT, WIDTH, w.schema, seed=5, noise_shapes=w.config.noise_shapes())
    session = ort.InferenceSession(str(web / "model.onnx"), providers=["CPUExecutionProvider"])
    run = lambda ts: session.run(["frame"], dict(zip(page["inputs"], (t.numpy() for t in ts))))[0][0, ..., :3]  # noqa: E731
    got = run(inputs).astype(int)
    as_bytes = lambda f: np.round(f[0].permute(1, 2, 0).numpy() * 255).astype(int)  # noqa: E731
    with torch.no_grad():
        two = as_bytes(w.net(inputs[0], inputs[1:4], inputs[4:]))
        w.net.sampler_steps = 1
        one = as_bytes(w.net(inputs[0], inputs[1:4], inputs[4:]))
    assert np.abs(got - two).max() <= 1 and np.abs(one - two).max() > 1  # K steps are in the graph
    other = [t.clone() for t in inputs]
    other[-1] = torch.rand(other[-1].shape, generator=torch.Generator().manual_seed(9))
    assert np.abs(run(other).astype(int) - got).max() > 1  # the sampler's noise changes the frame
    assert page["sampler_steps"] == 2 and export.is_current(world, web)
    export.export_world(world, web, webgpu_f16=False, sampler_steps=1)  # play --sampler-steps 1
    assert json.loads((web / "world.json").read_text())["sampler_steps"] == 1
    assert export.is_current(world, web, 1) and not export.is_current(world, web)
