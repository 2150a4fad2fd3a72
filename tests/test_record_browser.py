"""The recorder page in a real browser: Debian's chromium with its fake camera records a few
seconds while the test turns the "phone" through injected DeviceOrientation events; the upload
becomes a capture whose frames and rotations match what was recorded and injected."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from neuralworld.capture.format import open_capture
from neuralworld.geometry import roll_pitch
from neuralworld.record.server import RecordServer, import_recording

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]

YAW_RATE = 30.0  # deg/s: the injected alpha turns the phone counter-clockwise at this rate
# Dispatches sensor events every 20 ms on the page clock: alpha = YAW_RATE * s, beta = 90 + 10 sin(2 pi s / 2)
# (the phone upright, nodding), s = seconds since window.injectStart.
INJECT = """rate => {
  window.injectStart = performance.now();
  window.injected = setInterval(() => {
    const s = (performance.now() - window.injectStart) / 1000;
    window.dispatchEvent(new DeviceOrientationEvent('deviceorientation',
      {alpha: (rate * s) % 360, beta: 90 + 10 * Math.sin(Math.PI * s), gamma: 0, absolute: true}));
    window.dispatchEvent(new DeviceMotionEvent('devicemotion', {accelerationIncludingGravity: {x: 0, y: 9.81, z: 0},
      acceleration: {x: 0, y: 0, z: 0}, rotationRate: {alpha: rate, beta: 0, gamma: 0}, interval: 20}));
  }, 20);
}"""


def test_record_in_chromium_makes_a_capture_that_follows_the_sensors(tmp_path):
    from playwright.sync_api import sync_playwright

    imported = []

    def first_only(raw, capture):  # the second recording only checks the page's warning
        if imported:
            return {"frames": 0}
        imported.append(raw)
        return import_recording(raw, capture)

    server = RecordServer(tmp_path / "rec", token="browser-test", port=0, import_fn=first_only, log=lambda m: None).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page()
            dropped = []

            def drop_one_answer(route):  # the 2nd chunk reaches the server but its answer is lost
                if len(dropped) == 0 and "offset=0" not in route.request.url:
                    dropped.append(route.request.url)
                    route.fetch()
                    return route.abort("connectionreset")
                route.continue_()
            page.route("**/video?offset=*", drop_one_answer)
            page.goto(server.url)
            page.wait_for_selector("#record:not([disabled])", timeout=15000)
            page.evaluate(INJECT, YAW_RATE)
            page.click("#record")
            page.wait_for_function("typeof rec === 'object' && rec && rec.t0 !== null", timeout=10000)
            page.wait_for_timeout(3000)
            assert page.is_hidden("#warning")
            page.click("#record")
            page.wait_for_function("document.body.dataset.imported", timeout=60000)
            rec_id = page.evaluate("document.body.dataset.imported")
            t0, inject_start, recorded_bytes = page.evaluate("[rec.t0, window.injectStart, rec.bytes]")
            assert "Train on it: neuralworld train" in page.text_content("#status") and len(dropped) == 1

            # a recording without sensor events shows the warning
            page.evaluate("clearInterval(window.injected)")
            page.click("#record")
            page.wait_for_selector("#warning:not([hidden])", timeout=10000)
            assert "motion will be estimated from the video" in page.text_content("#warning")
            page.click("#record")
            page.wait_for_function("document.body.dataset.imported !== %r" % rec_id, timeout=30000)
            browser.close()
    finally:
        server.stop()

    raw = tmp_path / "rec" / "raw" / rec_id
    meta = json.loads((raw / "recording.json").read_text())
    assert (raw / meta["video"]).stat().st_size == recorded_bytes == meta["video_bytes"]
    with av.open(str(raw / meta["video"])) as container:
        video_frames = sum(1 for _ in container.decode(video=0))
    cap = open_capture(tmp_path / "rec" / rec_id)
    assert video_frames >= 20 and len(cap) == video_frames
    assert cap.meta["motion"] == {"kind": "pose", "source": "phone-sensors"}

    # each frame's rotation follows the injected angles at that frame's time on the page clock
    log = json.loads((raw / "motion.json").read_text())
    assert len(log["orientation"]) > 50 and len(log["motion"]) > 50 and log["orientation_absolute"] is True
    logged = np.array([row[0] for row in log["orientation"] if row[1] is not None])
    # frames within the logged span (a loaded machine can starve the injecting timer near the end)
    video_t = cap.meta["import"]["time_origin_s"] + cap.times
    inside = (video_t >= logged.min()) & (video_t <= logged.max())
    assert inside.mean() > 0.7
    R = cap.poses[inside, :3, :3]
    s = (t0 + 1000 * video_t[inside] - inject_start) / 1000  # seconds since the injection began
    yaw = np.degrees(np.unwrap(np.arctan2(R[:, 1, 2], R[:, 0, 2])))
    roll, pitch = np.degrees(roll_pitch(R)).T
    assert np.abs(yaw - (90 + YAW_RATE * s)).max() < 4.0
    assert np.abs(pitch - 10 * np.sin(np.pi * s)).max() < 4.0
    assert np.abs(roll).max() < 0.5
    assert yaw[-1] - yaw[0] > YAW_RATE * 2  # it really turned during the recording
