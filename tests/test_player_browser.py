"""The web player in a real browser (Debian's chromium through Playwright): it loads and draws,
matches Python's rollout frame for frame with each of its models and ways to run, maps keys to
the right controls, keeps stepping while the page is busy, reports its threads (also on a
static host), and plays offline."""

import http.server
import re
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from neuralworld import export, metrics, play
from neuralworld.controls import POSE_KIND
from neuralworld.player import PlayerState, integrate_sticks
from neuralworld.world import World

from player_worlds import (ShiftNet, action_schema, bar_column, bar_frames, pose_schema, save_world)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(),
                       reason="ONNX Runtime Web not fetched (run bash scripts/fetch-web-runtime.sh)"),
]


class StaticHost(play.WebFolderHandler):
    """A static file host that sends no cross-origin isolation headers."""

    def end_headers(self):
        http.server.SimpleHTTPRequestHandler.end_headers(self)


class Served:
    def __init__(self, web: Path, handler=None):
        self.web = web
        self.server = play.make_server(web, "127.0.0.1", 0)
        if handler is not None:
            self.server.RequestHandlerClass = lambda *a, **k: handler(*a, directory=str(web.resolve()), **k)
        self.url = play.server_url(self.server)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def pose_world(tmp_path_factory):
    """A world exported with its models, plus the network alone (model.net.onnx: the memory
    updated by the page's memory.js, as `neuralworld bench` measures it)."""
    world = save_world(tmp_path_factory.mktemp("browser") / "world", pose_schema(), seed=3)
    w = World.load(world)
    net_only, _ = export.export_onnx(w.net, w.layout, w.height, w.width, w.schema, step=False)
    web = export.export_network(w.net, world / "web", layout=w.layout, height=w.height, width=w.width,
                                schema=w.schema, start_frames=w.start_frames, meta={"start_attitude": [0.03, -0.05]},
                                extra_models={"model.net.onnx": (net_only, {"precision": "float32", "memory": "outside"})})
    served = Served(web)
    yield world, served
    served.stop()


@pytest.fixture(scope="module")
def shift_world(tmp_path_factory):
    """The analytic world: the picture moves sideways with the yaw the page sends (ShiftNet)."""
    net = ShiftNet(height=32, width=64)
    web = export.export_network(net, tmp_path_factory.mktemp("shift") / "web", layout=net.config.layout,
                                height=32, width=64, schema=pose_schema(), start_frames=bar_frames(4, 32, 64, 16))
    served = Served(web)
    yield served
    served.stop()


def open_page(browser, url, errors=None):
    page = browser.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)) if errors is not None else None)
    page.goto(url)
    page.evaluate("window.nw.ready")
    return page


def frame_array(values, h, w):
    return np.array(values, np.uint8).reshape(h, w, 3)


def test_page_loads_and_draws(browser, pose_world):
    errors = []
    page = open_page(browser, pose_world[1].url + "?threads=2", errors)
    page.wait_for_function("window.nw.frames > 10", timeout=20000)
    # the badge names the backend and its threads, and shows a frame rate once frames flow
    page.wait_for_function("parseFloat(document.getElementById('badge').textContent.split('·')[2]) > 0", timeout=5000)
    badge = page.inner_text("#badge")
    assert re.fullmatch(r"wasm · 2 threads · \d+\.\d fps", badge), badge
    assert page.evaluate("[window.nw.threads, window.nw.model, self.crossOriginIsolated]") == [2, "model.int8.onnx", True]
    # the worker draws on the page's canvas (an OffscreenCanvas): what the screen shows
    shot = cv2.imdecode(np.frombuffer(page.locator("#view").screenshot(), np.uint8), cv2.IMREAD_COLOR)
    assert shot.std() > 5  # not blank
    assert page.is_hidden("#error") and not errors
    page.keyboard.press("o")
    page.wait_for_function("document.querySelectorAll('#levels canvas').length === 3", timeout=5000)
    overlay = page.inner_text("#overlay")
    assert "controls:" in overlay and "2 threads (cross-origin isolated)" in overlay and "worker" in overlay
    assert re.search(r"frame time p95 \d+\.\d ms", overlay), overlay
    assert 0 < page.evaluate("window.nw.pacing.p95") < 1000
    page.keyboard.press("p")
    assert page.evaluate("window.nw.paused")
    page.wait_for_timeout(100)  # a frame in flight lands
    frames = page.evaluate("window.nw.frames")
    page.keyboard.press(".")  # one step while paused
    page.wait_for_function(f"window.nw.frames === {frames + 1}", timeout=5000)
    page.wait_for_timeout(200)
    assert page.evaluate("window.nw.frames") == frames + 1 and "paused" in page.inner_text("#badge")
    page.close()


def assert_matches_python(page, world_dir, steps=5):
    """With the same start frames, controls and noise, the page's first frames and memory are
    Python's World rollout, to 2 levels of 8 bits."""
    page.evaluate("window.nw.pause(true)")
    page.evaluate("window.nw.reset()")
    world = World.load(world_dir)
    world.reset()
    if world.schema.kind == POSE_KIND:
        controls, _ = integrate_sticks(np.array([0.0, 0.2]), np.array([[1.0, -0.5], [0.5, 0.8]]), ["forward", "turn"],
                                       1 / 15, frames=steps)
    else:  # steering and throttle within the schema's ranges
        controls = np.random.default_rng(3).uniform(*np.array(world.schema.ranges).T, size=(steps, world.schema.dim))
    rng = np.random.default_rng(7)
    for i, c in enumerate(controls):
        noise = [rng.random((1, *shape), dtype=np.float32) for shape in world.config.noise_shapes()]
        expected = world.step(c, noise=noise)
        got = frame_array(page.evaluate("([c, n]) => window.nw.step(c, n)",
                                        [c.tolist(), [n.ravel().tolist() for n in noise]]), world.height, world.width)
        assert np.abs(got.astype(int) - expected).max() <= 2, f"frame {i}"
    assert expected.std() > 5 and np.abs(expected.astype(int) - world.start_frames[-1]).mean() > 2  # it changes
    for level, (js, py) in enumerate(zip(page.evaluate("window.nw.memory()"), world.memory)):
        assert np.abs(np.array(js) - py.numpy().ravel()).max() <= 2 / 255 + 1e-6, f"memory level {level}"


@pytest.mark.parametrize("query", ["?model=model.onnx", "?model=model.onnx&worker=0", "?model=model.net.onnx"],
                         ids=["worker", "main-thread", "memory-in-javascript"])
def test_first_frames_match_python(browser, pose_world, query):
    """The float32 step model, in the worker or on the page's thread, and the network alone with
    the memory pushed by memory.js: Python's frames and memory."""
    world_dir, served = pose_world
    page = open_page(browser, served.url + query)
    assert page.evaluate("window.nw.model") == query.split("=")[1].split("&")[0]
    assert_matches_python(page, world_dir)
    page.close()


@pytest.mark.parametrize("model", ["model.int8.onnx", "model.f16.onnx"])
def test_reduced_precision_models_stay_close_to_python(browser, pose_world, model):
    """The WebAssembly backend's int8 model (the default) and the float16 model (run here on
    WebAssembly: no software WebGPU adapter offers shader-f16) stay within QUALITY_MIN_DB of
    Python's float32 frames."""
    world_dir, served = pose_world
    page = open_page(browser, served.url + ("" if model == "model.int8.onnx" else f"?model={model}"))
    assert page.evaluate("window.nw.model") == model
    page.evaluate("window.nw.pause(true)")
    page.evaluate("window.nw.reset()")
    world = World.load(world_dir)
    world.reset()
    rng = np.random.default_rng(3)
    c = np.array(world.schema.mean, np.float32)
    for i in range(3):
        noise = [rng.random((1, *shape), dtype=np.float32) for shape in world.config.noise_shapes()]
        expected = world.step(c, noise=noise).astype(float)
        got = frame_array(page.evaluate("([c, n]) => window.nw.step(c, n)", [c.tolist(), [n.ravel().tolist() for n in noise]]),
                          world.height, world.width).astype(float)
        assert metrics.psnr(got / 255, expected / 255) >= export.QUALITY_MIN_DB, i
    # the memory (bytes in the int8 model) holds the frame the page drew, as 8-bit values
    newest = np.array(page.evaluate("window.nw.memory()")[0], np.float32)[-3 * world.height * world.width:]
    np.testing.assert_array_equal(newest.reshape(3, world.height, world.width),
                                  got.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    page.close()


@pytest.mark.parametrize("kind, fields", [("pose", {"objective": "flow", "sampler_steps": 2}),
                                          ("pose", {"warp": "base"}), ("pose", {"warp": "base", "recall": True}),
                                          ("actions", {"look_frames": 8})],
                         ids=["flow-sampler", "warp-by-the-move", "recall-of-real-frames", "recall-by-look"])
def test_worlds_with_more_inside_their_step_play_in_the_page_as_in_python(browser, tmp_path, kind, fields):
    """Frame for frame: a flow world's sampler steps and the Gaussian noise made from the page's
    uniforms; a warping world's homography and Catmull-Rom gathers; a recalling world's pose,
    recalled frame and relative pose (recall.Follower, world.js's Follower); an action world's
    frames recalled by look, constants of its model (network.LookRecall) with no page code of their own."""
    world = save_world(tmp_path / "world", pose_schema() if kind == "pose" else action_schema(), seed=6, **fields)
    served = Served(export.export_world(world))
    try:
        page = open_page(browser, served.url + "?model=model.onnx")
        assert_matches_python(page, world)
        page.close()
    finally:
        served.stop()


@pytest.mark.slow
def test_webgpu_matches_python_where_chromium_has_an_adapter(playwright, pose_world):
    """Chromium's software WebGPU (SwiftShader) stands in for a GPU: same frames as Python."""
    world_dir, served = pose_world
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=[a for a in ARGS if a != "--disable-gpu"]
                                   + ["--enable-unsafe-webgpu"])
    try:
        page = b.new_page()
        page.goto(served.url + "?backend=webgpu")
        page.evaluate("window.nw.ready")
        if page.evaluate("window.nw.backend") not in ("webgpu", "webgpu-f16"):
            pytest.skip("chromium offers no WebGPU adapter here")
        # SwiftShader has no shader-f16: the float32 model, its memory kept on the device between steps
        assert page.evaluate("[window.nw.backend, window.nw.model]") == ["webgpu", "model.onnx"]
        assert_matches_python(page, world_dir, steps=3)
    finally:
        b.close()


def mulberry32(seed: int, count: int) -> np.ndarray:
    """The page's seeded noise source (world.js `seeded`, used by nw.seed), in Python."""
    a, out = seed & 0xFFFFFFFF, np.empty(count, np.float64)
    for i in range(count):
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = a
        t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF
        out[i] = ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296
    return out


@pytest.fixture(scope="module")
def recall_world(tmp_path_factory):
    """A world that recalls real frames (recall.py), exported."""
    world = save_world(tmp_path_factory.mktemp("browser") / "recall", pose_schema(), seed=5, warp="base", recall=True)
    served = Served(export.export_world(world, wasm="float32", webgpu_f16=False))
    yield world, served
    served.stop()


@pytest.mark.parametrize("which", ["pose_world", "recall_world"])
def test_page_and_python_agree_over_300_frames_of_the_tour(browser, request, which):
    """The same start, tour controls and noise (the page's seeded source) give the same frames in
    the page as in Python's World, frame after frame, within a few 8-bit levels (the float32 step
    model; the int8 one is held to QUALITY_MIN_DB above); for a recalling world, its pose and
    recalls too, turning past every heading its bank faces."""
    from neuralworld.controls import walk_pose
    from neuralworld.recall import FACING, pose_heading
    from neuralworld.tour import tour_controls

    world_dir, served = request.getfixturevalue(which)
    world = World.load(world_dir)
    controls, _, _ = tour_controls(world.schema, 1 / 30, 300, walk_pose(np.zeros(3), 0.0, 0.0))
    page = open_page(browser, served.url + "?model=model.onnx")
    page.evaluate("window.nw.pause(true)")
    page.evaluate("window.nw.reset()")
    got = np.array(page.evaluate("""async (controls) => {
        window.nw.seed(11);
        const frames = [];
        for (const c of controls) frames.push(...await window.nw.step(c));
        return frames; }""", controls.tolist()), np.int64).reshape(300, world.height, world.width, 3)
    sizes = world.layout.sizes(world.height, world.width)
    per_step = sum(h * w for h, w in sizes)
    draws = mulberry32(11, 300 * per_step).astype(np.float32)
    world.reset()
    expected, headings = [], []
    for i, c in enumerate(controls):
        flat, noise = draws[i * per_step:(i + 1) * per_step], []
        for h, w in sizes:
            noise.append(flat[:h * w].reshape(1, 1, h, w))
            flat = flat[h * w:]
        expected.append(world.step(c, noise=noise))
        if world.follower is not None:
            headings.append(float(pose_heading(world.follower.pose)))
    if world.follower is not None:  # it turned where no frame of the bank faced: frames shown as if turned
        assert max(np.abs(headings)) > np.abs(pose_heading(world.bank.poses)).max() + FACING
    diff = np.abs(got - np.array(expected, np.int64))
    assert diff.max() <= 4 and diff.mean() < 0.05, (diff.max(), diff.mean())
    assert np.abs(np.diff(np.array(expected, np.int64), axis=0)).mean() > 0.1  # the frames change along the tour
    page.close()


def test_walker_mirrors_the_control_file_rules(browser, pose_world):
    page = open_page(browser, pose_world[1].url)
    times = np.array([0.0, 0.3, 0.6, 0.8, 1.0, 1.2])
    names = ["forward", "strafe", "turn", "look", "run", "jump"]
    sticks = np.array([[1, 0, 0, 0, 0, 0], [0.5, 0.7, 1, 0, 0, 0], [1, 0, -0.5, 0, 1, 1],
                       [-1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], float)
    dt = 1 / 30
    # the player starts with the start frames' roll and pitch (world.json's start_attitude)
    expected, _ = integrate_sticks(times, sticks, names, dt, start=PlayerState.start(pitch=-0.05, roll=0.03))
    rows = [sticks[max(0, np.searchsorted(times, n * dt + 1e-9, side="right") - 1)].tolist() for n in range(len(expected))]
    got = np.array(page.evaluate("""async ([rows, dt]) => {
        const m = await import('./controls.js');
        // the rules and start attitude as export wrote them
        const w = new m.Walker(window.nw.meta.player_rules, window.nw.meta.start_attitude);
        // the same sticks with the same signs as Python's
        return rows.map(([forward, strafe, turn, look, run, jump]) => Array.from(w.step(
            {forward, strafe, turn, look, run: run > 0.5, jump: jump > 0.5}, dt)));
    }""", [rows, dt]))
    assert np.abs(got - expected).max() < 1e-4
    assert np.ptp(expected[:, 11]) > 0.02 and np.ptp(expected[:, 7]) > 0.01  # it walked and jumped
    assert np.allclose(expected[:, 12], 0.03) and expected[0, 13] == pytest.approx(-0.05)
    page.close()


def test_left_turn_moves_the_picture_right(browser, shift_world):
    page = open_page(browser, shift_world.url)
    page.evaluate("window.nw.pause(true)")
    page.evaluate("window.nw.reset()")
    still = frame_array(page.evaluate("window.nw.step()"), 32, 64)
    assert abs(bar_column(still) - 16) < 0.5  # no key: no turn
    page.keyboard.down("j")
    for _ in range(3):
        frame = frame_array(page.evaluate("window.nw.step()"), 32, 64)
    page.keyboard.up("j")
    assert page.evaluate("window.nw.lastControls[2]") < -0.1  # r02 < 0: the new forward is to the left
    moved = bar_column(frame)
    assert 16 + 8 < moved < 16 + 16  # 3 steps of 2.5 rad/s * 1/15 s at 24 px/rad: 12 px right
    page.keyboard.down("l")
    frame = frame_array(page.evaluate("window.nw.step()"), 32, 64)
    page.keyboard.up("l")
    assert bar_column(frame) < moved - 2  # right turn: back to the left
    # the live loop, holding the left arrow
    page.evaluate("window.nw.reset()")
    page.evaluate("window.nw.pause(false)")
    page.keyboard.down("ArrowLeft")
    start = page.evaluate("window.nw.frames")
    page.wait_for_function(f"window.nw.frames >= {start + 3}", timeout=10000)
    page.keyboard.up("ArrowLeft")
    page.evaluate("window.nw.pause(true)")
    shift = (bar_column(frame_array(page.evaluate("window.nw.lastFrame()"), 32, 64)) - 16) % 64
    assert 1 < shift < 32, shift
    page.close()


def test_action_world_keys_drive_named_controls(browser, tmp_path):
    world = save_world(tmp_path / "car", action_schema(), seed=5)
    served = Served(export.export_world(world))
    try:
        page = open_page(browser, served.url)
        page.evaluate("window.nw.pause(true)")
        page.evaluate("window.nw.reset()")
        page.evaluate("window.nw.step()")
        steering, throttle = page.evaluate("window.nw.lastControls")
        assert abs(steering - 0.1) < 1e-6 and abs(throttle - 0.7) < 1e-6  # centred: the recording's mean
        page.keyboard.down("ArrowLeft")
        page.keyboard.down("ArrowUp")
        for _ in range(4):
            page.evaluate("window.nw.step()")
        steering, throttle = page.evaluate("window.nw.lastControls")
        page.keyboard.up("ArrowLeft")
        page.keyboard.up("ArrowUp")
        assert -0.7 <= steering < -0.3 and 0.85 < throttle <= 1.0
        page.close()
    finally:
        served.stop()


def test_the_world_keeps_stepping_while_the_page_is_busy(browser, pose_world):
    """Inference and drawing live in a worker: a page that blocks its main thread for a second
    still gets its frames; with ?worker=0 it does not."""
    counts = {}
    for query in ("", "?worker=0"):
        page = open_page(browser, pose_world[1].url + query)
        page.wait_for_function("window.nw.frames > 5", timeout=20000)
        counts[query] = page.evaluate("""async () => {
            const before = window.nw.frames, t = performance.now();
            while (performance.now() - t < 1000) {}  // the page is busy for a second
            await new Promise((r) => setTimeout(r, 50));  // the worker's reports arrive
            return window.nw.frames - before; }""")
        page.close()
    assert counts[""] >= 20 and counts["?worker=0"] <= 6, counts  # at most the 50 ms after the block


def test_a_static_host_without_isolation_headers_gets_threads_through_the_service_worker(browser, pose_world):
    """Without COOP/COEP headers the page starts on one thread; its service worker adds the
    headers, the page reloads once and runs on the threads it asked for."""
    served = Served(pose_world[1].web, StaticHost)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(served.url + "?threads=2")
        page.wait_for_function("self.crossOriginIsolated && window.nw && window.nw.threads === 2", timeout=30000)
        page.evaluate("window.nw.ready")
        assert "2 threads" in page.inner_text("#badge")
    finally:
        context.close()
        served.stop()


def test_plays_offline_after_the_server_stops(browser, pose_world):
    served = Served(pose_world[1].web)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(served.url)
        page.evaluate("window.nw.ready")
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        assert page.evaluate("window.nw.offline")  # the backend's model and runtime are cached
        served.stop()
        page.reload()
        page.evaluate("window.nw.ready")
        start = page.evaluate("window.nw.frames")
        page.wait_for_function(f"window.nw.frames > {start + 5}", timeout=20000)
        assert page.is_hidden("#error")
    finally:
        context.close()


def test_a_model_that_cannot_load_says_so(browser, pose_world, tmp_path):
    web = shutil.copytree(pose_world[1].web, tmp_path / "broken")
    for model in web.glob("*.onnx"):
        model.write_bytes(b"not a model")
    served = Served(web)
    try:
        page = browser.new_page()
        page.goto(served.url)
        page.wait_for_selector("#error", state="visible", timeout=20000)
        assert "could not load" in page.inner_text("#error")
        page.close()
    finally:
        served.stop()
