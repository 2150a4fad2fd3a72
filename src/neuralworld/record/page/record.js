// neuralworld recorder page: the rear camera through MediaRecorder, the motion sensors logged on
// the video's clock, both uploaded to `neuralworld record` (protocol: record/server.py; motion
// log format: record/sensors.py). No build step, no dependencies.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const ui = { preview: $("preview"), button: $("record"), resolution: $("resolution"), elapsed: $("elapsed"),
             size: $("size"), uploaded: $("uploaded"), warning: $("warning"), status: $("status") };
// container types in order of preference (Chrome/Firefox record webm, Safari mp4)
const TYPES = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm", "video/mp4;codecs=avc1", "video/mp4"];
const TIMESLICE_MS = 1000;  // MediaRecorder hands over a piece every second: uploaded while recording

let config = { chunk_bytes: 1 << 20, max_bytes: Infinity };
let stream = null;
let rec = null;              // the recording in progress (see startRecording)
let asked = false;           // motion permission asked (iOS wants it from a tap)
const warnings = new Set();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const api = (path, options = {}) =>
  fetch(path, { ...options, headers: { "X-Token": token, ...(options.headers || {}) } });

function warn(text) { warnings.add(text); ui.warning.textContent = [...warnings].join("\n"); ui.warning.hidden = false; }
function status(text) { ui.status.textContent = text; }
function mb(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }

// A sensor event's time on the page's performance clock (ms). Events carry it as timeStamp; an
// old browser that puts epoch time there gets the handler's time instead.
function eventTime(e) {
  const now = performance.now();
  return Math.abs(now - e.timeStamp) < 5000 ? e.timeStamp : now;
}

// --- camera ---------------------------------------------------------------------------------
async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    warn("No camera access: this page must be opened over HTTPS (neuralworld record --lan) or on 127.0.0.1.");
    return;
  }
  if (stream) stream.getTracks().forEach((t) => t.stop());
  const [width, height] = ui.resolution.value.split("x").map(Number);
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: "environment", width: { ideal: width }, height: { ideal: height } },
    });
  } catch (err) {
    warn(`Camera refused or missing (${err.name}): allow the camera for this page and reload.`);
    return;
  }
  ui.preview.srcObject = stream;
  ui.button.disabled = false;
}

function pickType() {
  if (typeof MediaRecorder === "undefined") return null;
  return TYPES.find((t) => MediaRecorder.isTypeSupported(t)) || null;
}

// --- motion sensors -------------------------------------------------------------------------
async function askMotionPermission() {
  // iOS 13+: both requests must start inside the tap's handler, before any other await
  const asks = [window.DeviceOrientationEvent, window.DeviceMotionEvent]
    .filter((E) => E && typeof E.requestPermission === "function")
    .map((E) => E.requestPermission().catch(() => "denied"));
  const answers = await Promise.all(asks);
  if (answers.some((a) => a !== "granted")) warn("Motion sensors not allowed: the motion will be estimated from the video alone.");
}

// Readings are logged from the tap until the recorder's stop event, so that they span every frame.
function onOrientation(e) {
  if (!rec || !rec.logging) return;
  rec.orientation.push([eventTime(e), e.alpha, e.beta, e.gamma]);
  if (e.alpha === null || e.beta === null) return;
  rec.sensorRows++;
  rec.absolute = rec.absolute && !!e.absolute;
}

function onMotion(e) {
  if (!rec || !rec.logging) return;
  const g = e.accelerationIncludingGravity || {}, a = e.acceleration || {}, r = e.rotationRate || {};
  const v = (x) => (x === undefined ? null : x);
  rec.motion.push([eventTime(e), v(g.x), v(g.y), v(g.z), v(a.x), v(a.y), v(a.z),
                   v(r.alpha), v(r.beta), v(r.gamma), v(e.interval)]);
}

function screenAngle() {
  if (screen.orientation && typeof screen.orientation.angle === "number") return screen.orientation.angle;
  return typeof window.orientation === "number" ? (window.orientation + 360) % 360 : 0;
}

// The log described in record/sensors.py: times in seconds on the video's clock, whose 0 is
// MediaRecorder's start event (the first video frame follows within one frame interval).
function motionLog(rec) {
  const t0 = rec.t0 ?? rec.requested;
  const rows = (list) => list.map(([t, ...rest]) => [+((t - t0) / 1000).toFixed(4), ...rest]);
  const s = rec.settings;
  return {
    format: "neuralworld-phone-sensors", version: 1,
    clock: "seconds since the MediaRecorder start event (page performance clock)",
    video: { mime: rec.type, width: s.width || null, height: s.height || null, frame_rate: s.frameRate || null },
    screen_angle: rec.screenAngle,
    orientation_absolute: rec.absolute && rec.sensorRows > 0,
    orientation_columns: ["t", "alpha", "beta", "gamma"],
    orientation: rows(rec.orientation),
    motion_columns: ["t", "acc_gravity_x", "acc_gravity_y", "acc_gravity_z", "acc_x", "acc_y", "acc_z",
                     "rate_alpha", "rate_beta", "rate_gamma", "interval_ms"],
    motion: rows(rec.motion),
    xr: null,
    user_agent: navigator.userAgent,
  };
}

// --- upload ---------------------------------------------------------------------------------
// Every piece the recorder hands over is appended to rec.pieces; the pump sends the bytes from
// rec.sent on, in chunks, each with its offset. After a failure it asks the server how much it
// holds and resumes there. Pieces wholly acknowledged are dropped to spare the phone's memory.
async function pump(rec) {
  if (rec.pumping) return;
  rec.pumping = true;
  let wait = 500;
  try {
    while (rec.sent < rec.bytes && !rec.failed) {
      const all = new Blob(rec.pieces);
      const from = rec.sent - rec.base;
      const chunk = all.slice(from, Math.min(all.size, from + config.chunk_bytes));
      try {
        const r = await api(`/api/recordings/${rec.id}/video?offset=${rec.sent}`, { method: "PUT", body: chunk });
        const answer = await r.json();
        if (r.status === 413) return fail(rec, answer.error);
        if (r.status === 404) return fail(rec, "the server no longer knows this recording (was it restarted?)");
        if (!r.ok && r.status !== 409) throw new Error(answer.error || r.status);
        rec.sent = answer.received;  // 409: the server says where to resume
        wait = 500;
        if (rec.offline) { rec.offline = false; status("Connection back, uploading."); }
      } catch (err) {
        rec.offline = true;
        status(`Upload interrupted (${err.message}); retrying…`);
        await sleep(wait);
        wait = Math.min(wait * 2, 8000);
        try {
          const s = await (await api(`/api/recordings/${rec.id}`)).json();
          if (s.state === "uploading") rec.sent = s.received;
        } catch (_) { /* still offline */ }
      }
      while (rec.pieces.length > 1 && rec.base + rec.pieces[0].size <= rec.sent) {
        rec.base += rec.pieces.shift().size;
      }
      showSizes();
    }
  } finally {
    rec.pumping = false;
  }
}

async function send(rec, path, options, what) {
  for (let wait = 500; ; wait = Math.min(wait * 2, 8000)) {
    try {
      const r = await api(path, options);
      const answer = await r.json();
      if (r.ok) return answer;
      if (r.status === 409 && answer.received !== undefined) { rec.sent = answer.received; await pump(rec); continue; }
      throw Object.assign(new Error(answer.error || `${what}: ${r.status}`), { final: r.status < 500 });
    } catch (err) {
      if (err.final) throw err;
      status(`${what}: connection lost, retrying…`);
      await sleep(wait);
    }
  }
}

function fail(rec, message) {
  rec.failed = true;
  rec.stopped = true;
  if (rec.recorder && rec.recorder.state !== "inactive") rec.recorder.stop();
  ui.button.classList.remove("on");
  ui.resolution.disabled = false;
  status(`Recording not kept: ${message}`);
  ui.button.disabled = false;
}

function showSizes() {
  if (!rec) return;
  ui.size.textContent = mb(rec.bytes);
  ui.uploaded.textContent = rec.sent < rec.bytes ? `uploaded ${mb(rec.sent)}` : "uploaded";
}

// --- recording ------------------------------------------------------------------------------
async function startRecording() {
  const permission = asked ? Promise.resolve() : askMotionPermission();  // first tap: iOS prompt
  if (!asked) {
    asked = true;
    if (!("DeviceOrientationEvent" in window)) warn("This browser has no motion sensors: the motion will be estimated from the video alone.");
    window.addEventListener("deviceorientation", onOrientation);
    window.addEventListener("devicemotion", onMotion);
  }
  await permission;
  const type = pickType();
  if (!type) return warn("This browser cannot record video (no MediaRecorder type).");
  const track = stream.getVideoTracks()[0];
  const settings = track.getSettings();
  ui.button.disabled = true;
  const created = await api("/api/recordings", {
    method: "POST",
    body: JSON.stringify({ mime: type, client: { width: settings.width, height: settings.height,
                                                 frame_rate: settings.frameRate, user_agent: navigator.userAgent } }),
  });
  if (!created.ok) { ui.button.disabled = false; return status(`The server refused the recording (${created.status}).`); }
  const { id } = await created.json();
  const r = { id, type, settings, pieces: [], base: 0, bytes: 0, sent: 0, orientation: [], motion: [],
              sensorRows: 0, absolute: true, t0: null, requested: performance.now(), screenAngle: screenAngle(),
              logging: true, stopped: false, failed: false, pumping: false };
  rec = r;
  const recorder = new MediaRecorder(stream, { mimeType: type });
  r.recorder = recorder;
  recorder.onstart = (e) => { r.t0 = eventTime(e); r.startedAt = Date.now(); tick(); };
  recorder.ondataavailable = (e) => {
    if (!e.data || !e.data.size || r.failed) return;
    r.pieces.push(e.data);
    r.bytes += e.data.size;
    showSizes();
    if (r.bytes > config.max_bytes) { recorder.stop(); return fail(r, "over the server's size cap"); }
    pump(r);
  };
  recorder.onstop = () => { r.logging = false; finish(r); };
  recorder.start(TIMESLICE_MS);
  ui.button.classList.add("on");
  ui.button.disabled = false;
  ui.resolution.disabled = true;
  status("Recording…");
  setTimeout(() => {
    if (!r.stopped && r.sensorRows === 0) {
      warn("No motion sensor readings: the motion will be estimated from the video alone.");
    }
  }, 2000);
}

function tick() {
  if (!rec || rec.stopped) return;
  const s = Math.floor((Date.now() - rec.startedAt) / 1000);
  ui.elapsed.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  setTimeout(tick, 250);
}

function stopRecording() {
  rec.stopped = true;
  ui.button.classList.remove("on");
  ui.button.disabled = true;
  rec.recorder.stop();  // the last piece arrives, then onstop -> finish
}

async function finish(r) {
  if (r.failed) return;
  status("Uploading the end of the recording…");
  while (r.sent < r.bytes && !r.failed) { await pump(r); if (r.sent < r.bytes) await sleep(300); }
  if (r.failed) return;
  try {
    await send(r, `/api/recordings/${r.id}/motion`, { method: "PUT", headers: { "Content-Type": "application/json" },
                                                   body: JSON.stringify(motionLog(r)) }, "motion log");
    await send(r, `/api/recordings/${r.id}/complete`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                     body: JSON.stringify({ video_bytes: r.bytes }) }, "completion");
  } catch (err) {
    return fail(r, err.message);
  }
  ui.button.disabled = false;
  ui.resolution.disabled = false;
  status(`Recording ${r.id} received; making the capture…`);
  document.body.dataset.uploaded = r.id;
  for (;;) {
    await sleep(1000);
    let s;
    try { s = await (await api(`/api/recordings/${r.id}`)).json(); } catch (_) { continue; }
    if (s.state === "imported") {
      status(`Capture ready: ${s.capture} (${s.frames} frames)\nTrain on it: ${s.train}`);
      document.body.dataset.imported = r.id;
      return;
    }
    if (s.state === "failed") { status(`Recording ${r.id} kept, but its import failed: ${s.error}`); return; }
    if (s.state === "received") { status(`Recording ${r.id} kept on the computer (import it there).`); return; }
  }
}

ui.button.addEventListener("click", () => {
  if (rec && !rec.stopped && !rec.failed) stopRecording();
  else startRecording().catch((err) => { ui.button.disabled = false; status(`Could not start: ${err.message}`); });
});
ui.resolution.addEventListener("change", startCamera);

(async () => {
  try { config = await (await api("/api/config")).json(); } catch (_) { /* defaults */ }
  await startCamera();
})();
