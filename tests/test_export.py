"""`neuralworld export`: ONNX names and shapes, parity with PyTorch, float16 weights, the web folder."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from neuralworld import export
from neuralworld.cli import main
from neuralworld.errors import UserError
from neuralworld.world import World

from player_worlds import HEIGHT, WIDTH, action_schema, random_world_net, save_world, start_frames

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
    for name in export.PLAYER_FILES + ["model.onnx", "start_frames.bin", "ort/ort.wasm.min.mjs", "ort/ort-wasm-simd-threaded.wasm"]:
        assert (web / name).is_file(), name
    assert page["format"] == export.WEB_FORMAT and page["exporter"] == "dynamo"
    assert page["height"] == HEIGHT and page["width"] == WIDTH
    assert page["memory"]["frames"] == [4, 8, 16] and page["memory"]["sizes"] == [[32, 32], [8, 8], [2, 2]]
    assert page["controls"]["names"][15] == "valid" and len(page["controls"]["mean"]) == 16
    assert page["parity_max_abs_error"] < export.PARITY_TOLERANCE
    # the service worker's list names every file of the folder
    files = {p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()}
    assert files <= set(page["files"])
    frames = np.fromfile(web / "start_frames.bin", np.uint8).reshape(page["start_frames"]["shape"])
    np.testing.assert_array_equal(frames, np.load(world / "start_frames.npy"))
    assert export.is_current(world, web)


def test_onnx_names_shapes_and_opset(exported):
    _, web = exported
    model = onnx.load(web / "model.onnx")
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"controls": [1, 16], "memory_0": [1, 12, 32, 32], "memory_1": [1, 24, 8, 8],
                    "memory_2": [1, 48, 2, 2], "noise_0": [1, 1, 32, 32], "noise_1": [1, 1, 8, 8],
                    "noise_2": [1, 1, 2, 2]}
    assert [o.name for o in model.graph.output] == ["frame"]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]


def test_onnxruntime_matches_the_world_on_new_inputs(exported):
    world_dir, web = exported
    world = World.load(world_dir)
    session = ort.InferenceSession(str(web / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = export.parity_inputs(world.layout, HEIGHT, WIDTH, world.schema, seed=42)
    with torch.no_grad():
        expected = world.net(inputs[0], inputs[1:4], inputs[4:]).numpy()
    got = session.run(["frame"], dict(zip(export.input_names(3), (t.numpy() for t in inputs))))[0]
    assert np.abs(got - expected).max() < 1e-3
    assert expected.std() > 0.01  # a network that draws something, so the comparison means something


def test_fp16_halves_the_model_and_keeps_parity(exported, tmp_path):
    world, web = exported
    out = export.export_world(world, tmp_path / "web16", fp16=True)
    page = json.loads((out / "world.json").read_text())
    assert page["fp16_weights"] and page["parity_max_abs_error"] < export.FP16_PARITY_TOLERANCE
    model = onnx.load(out / "model.onnx")
    weight_bytes = lambda m: sum(len(i.raw_data) for i in m.graph.initializer)  # noqa: E731
    assert weight_bytes(model) < 0.55 * weight_bytes(onnx.load(web / "model.onnx"))
    assert (out / "model.onnx").stat().st_size < (web / "model.onnx").stat().st_size
    assert {i.name: i.type.tensor_type.elem_type for i in model.graph.input}["controls"] == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_parity_failure_is_loud():
    schema = action_schema()
    net_a, net_b = random_world_net(schema, seed=1), random_world_net(schema, seed=2)
    layout = net_a.config.layout
    model, _ = export.export_onnx(net_a, layout, HEIGHT, WIDTH, schema)
    inputs = [export.parity_inputs(layout, HEIGHT, WIDTH, schema, seed=0)]
    assert export.check_parity(net_a, model, inputs, 1e-3) < 1e-3
    with pytest.raises(UserError, match="differs from PyTorch"):
        export.check_parity(net_b, model, inputs, 1e-3)


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
    export.export_world(world, out)
    (out / "stray.txt").write_text("old")
    export.export_world(world, out)  # an earlier export is replaced without --force
    assert not (out / "stray.txt").exists() and (out / "model.onnx").is_file()


def test_staleness_follows_the_weights(exported, tmp_path):
    world, web = exported
    copy = tmp_path / "world"
    World.load(world).save(copy)
    export.export_world(copy)
    assert export.is_current(copy, copy / "web")
    w = World.load(copy)
    with torch.no_grad():
        next(w.net.parameters()).add_(0.01)
    w.save(copy)
    assert not export.is_current(copy, copy / "web")


def test_export_of_an_action_world(tmp_path):
    world = save_world(tmp_path / "car", action_schema())
    web = export.export_world(world, fp16=False)
    page = json.loads((web / "world.json").read_text())
    assert page["controls"]["kind"] == "actions" and page["controls"]["names"] == ["steering", "throttle"]
    assert page["controls"]["ranges"] == [[-0.7, 0.6], [0.4, 1.0]]
    assert len(start_frames()) == page["start_frames"]["count"]


def test_a_flow_world_exports_its_sampler_with_the_noise_it_starts_from(tmp_path):
    world = save_world(tmp_path / "flow", seed=4, objective="flow", sampler_steps=2)
    web = export.export_world(world)
    page = json.loads((web / "world.json").read_text())
    assert page["inputs"][-1] == "noise_x" and page["noise"][-1] == [4, HEIGHT, WIDTH]
    assert page["parity_max_abs_error"] < export.PARITY_TOLERANCE
    model = onnx.load(web / "model.onnx")
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims["noise_x"] == [1, 4, HEIGHT, WIDTH]
    w = World.load(world)
    inputs = export.parity_inputs(w.layout, HEIGHT, WIDTH, w.schema, seed=5, noise_shapes=w.config.noise_shapes())
    session = ort.InferenceSession(str(web / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["frame"], dict(zip(page["inputs"], (t.numpy() for t in inputs))))[0]
    with torch.no_grad():
        two = w.net(inputs[0], inputs[1:4], inputs[4:]).numpy()
        w.net.sampler_steps = 1
        one = w.net(inputs[0], inputs[1:4], inputs[4:]).numpy()
    assert np.abs(got - two).max() < 1e-3 and np.abs(one - two).max() > 1e-3  # K steps are in the graph
    other = [t.clone() for t in inputs]
    other[-1] = torch.rand(other[-1].shape, generator=torch.Generator().manual_seed(9))
    moved = session.run(["frame"], dict(zip(page["inputs"], (t.numpy() for t in other))))[0]
    assert np.abs(moved - got).max() > 1e-3  # the sampler's noise changes the frame
    assert page["sampler_steps"] == 2 and export.is_current(world, web)
    export.export_world(world, web, sampler_steps=1)  # play --sampler-steps 1
    assert json.loads((web / "world.json").read_text())["sampler_steps"] == 1
    assert export.is_current(world, web, 1) and not export.is_current(world, web)
