// The browser player: the world's network in a loop, as in the reference demo (Ollin Boer Bohan,
// "World Emulation via Neural Network", 2025).
//
// Each step: read the controls, draw one U(0, 1) noise map per memory level, run the network
// (ONNX Runtime Web: WebGPU when an adapter exists, else WebAssembly), draw the frame, push it
// into the memory pyramid (memory.js, the same rule as Python). One inference is in flight at a
// time; world time advances by the time step the world was trained on that fits the real time
// passed (timeStep), never faster than its smallest step. `window.nw` exposes a small hook for
// tests (see the end of this file).

import { Memory, quantize8 } from './memory.js';
import { Input, attachStick, makeDriver } from './controls.js';

const $ = (id) => document.getElementById(id);
const canvas = $('view'), ctx = canvas.getContext('2d');
const params = new URLSearchParams(location.search);

const state = {
  meta: null, ort: null, session: null, backend: '', memory: null, driver: null, input: null,
  start: null, paused: false, inFlight: false, lastStep: 0, behind: 0, worldTime: 0, frames: 0,
  lastFrame: null, lastControls: null, lastDt: 0, inferMs: 0, pushMs: 0, stepMs: 0, fps: 0, fpsWindow: [],
  random: Math.random, image: null,
};

function showError(message) {
  const box = $('error');
  box.hidden = false;
  box.textContent = message;
  $('badge').textContent = 'not running';
}

// ---------------------------------------------------------------- loading

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r;
}

// WebGPU when the device has an adapter (unless ?backend=wasm), else WebAssembly.
async function createSession(modelBytes) {
  const errors = [];
  const want = params.get('backend');
  if (want !== 'wasm' && navigator.gpu) {
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) throw new Error('no WebGPU adapter');
      // a software adapter (SwiftShader) is far slower than WebAssembly: only when asked for
      const info = adapter.info || {};
      if (want !== 'webgpu' && (info.isFallbackAdapter || adapter.isFallbackAdapter || info.architecture === 'swiftshader')) {
        throw new Error('only a software WebGPU adapter');
      }
      const ort = await import('./ort/ort.webgpu.min.mjs');
      configure(ort);
      const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['webgpu'] });
      return { ort, session, backend: 'webgpu' };
    } catch (e) {
      errors.push(`webgpu: ${e.message || e}`);
    }
  }
  try {
    const ort = await import('./ort/ort.wasm.min.mjs');
    configure(ort);
    const session = await ort.InferenceSession.create(modelBytes, {
      executionProviders: ['wasm'], graphOptimizationLevel: 'all',
    });
    return { ort, session, backend: 'wasm' };
  } catch (e) {
    errors.push(`wasm: ${e.message || e}`);
  }
  throw new Error(errors.join('; '));
}

function configure(ort) {
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href; // local files, never a CDN
  // the device's cores, at most 4 (?threads=N overrides): on an idle 2-core CPU two threads ran
  // forest at 42 frames/s against 27 with one, tiny at 402 against 261 (`neuralworld bench`);
  // more than one thread needs cross-origin isolation, which `neuralworld play` sets up
  const threads = Number(params.get('threads') || Math.min(4, navigator.hardwareConcurrency || 1));
  ort.env.wasm.numThreads = self.crossOriginIsolated ? threads : 1;
  ort.env.logLevel = 'error';
}

async function load() {
  const meta = state.meta = await (await fetchOk('world.json')).json();
  document.title = `neuralworld: ${meta.name || 'world'}`;
  canvas.width = meta.width;
  canvas.height = meta.height;
  canvas.style.setProperty('--aspect', String(meta.width / meta.height));
  if (params.get('pixelated') !== null) canvas.classList.add('pixelated');
  state.image = ctx.createImageData(meta.width, meta.height);
  const [model, start] = await Promise.all([
    fetchOk(meta.model).then((r) => r.arrayBuffer()),
    fetchOk(meta.start_frames.file).then((r) => r.arrayBuffer()),
  ]);
  state.start = new Uint8Array(start);
  state.memory = new Memory(meta.memory, meta.height, meta.width);
  state.driver = makeDriver(meta.controls, meta.player_rules);
  Object.assign(state, await createSession(new Uint8Array(model)));
  reset();
}

// ---------------------------------------------------------------- the loop

function reset() {
  const { meta } = state;
  state.memory.reset(state.start, meta.start_frames.count);
  state.driver.reset();
  state.worldTime = 0;
  // show the newest real frame until the first generated one
  const k = meta.start_frames.count - 1, n = meta.height * meta.width;
  const px = state.image.data;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) px[4 * p + c] = state.start[(k * n + p) * 3 + c];
    px[4 * p + 3] = 255;
  }
  ctx.putImageData(state.image, 0, 0);
}

// the network's U(0, 1) noise inputs: world.json "noise" lists their (channels, h, w), in the
// order of its noise inputs (NetConfig.noise_shapes); older exports: one map per memory level
function noiseShapes() {
  return state.meta.noise || state.meta.memory.sizes.map(([h, w]) => [1, h, w]);
}

function drawNoise() {
  return noiseShapes().map(([c, h, w]) => {
    const a = new Float32Array(c * h * w);
    for (let i = 0; i < a.length; i++) a[i] = state.random();
    return a;
  });
}

// One step of the world, as engine.step in Python: controls (Float32Array C), noise (one
// Float32Array per level) -> the frame (Float32Array 3 x H x W), pushed into memory and drawn.
async function worldStep(controls, noise) {
  const { ort, meta, memory } = state;
  const t0 = performance.now();
  // within the ranges the world was trained on, as World.step keeps them
  const ranges = meta.controls.ranges;
  const c = Float32Array.from(controls, (v, i) => Math.min(ranges[i][1], Math.max(ranges[i][0], v)));
  const feeds = { controls: new ort.Tensor('float32', c, [1, c.length]) };
  meta.memory.sizes.forEach(([h, w], i) => {
    // memory changes only after the run has finished (one inference in flight), so no copy
    feeds[`memory_${i}`] = new ort.Tensor('float32', memory.levels[i], [1, 3 * meta.memory.frames[i], h, w]);
  });
  const noiseNames = meta.inputs.filter((name) => name.startsWith('noise_'));
  noiseShapes().forEach(([ch, h, w], i) => {
    const n = noise[i] instanceof Float32Array ? noise[i] : Float32Array.from(noise[i]);
    feeds[noiseNames[i]] = new ort.Tensor('float32', n, [1, ch, h, w]);
  });
  const out = await state.session.run(feeds);
  const t1 = performance.now();
  const frame = out.frame.data instanceof Float32Array ? out.frame.data : await out.frame.getData();
  memory.push(frame);
  const t2 = performance.now();
  draw(frame);
  state.lastFrame = frame;
  state.lastControls = Array.from(c);
  state.frames += 1;
  state.inferMs = t1 - t0;
  state.pushMs = t2 - t1;
  state.stepMs = performance.now() - t0;
  const now = performance.now();
  state.fpsWindow.push(now);
  while (state.fpsWindow.length && state.fpsWindow[0] < now - 1000) state.fpsWindow.shift();
  state.fps = state.fpsWindow.length > 1 ? 1000 * (state.fpsWindow.length - 1) / (now - state.fpsWindow[0]) : 0;
  return frame;
}

function draw(frame) {
  const n = state.meta.height * state.meta.width, px = state.image.data;
  for (let p = 0; p < n; p++) {
    px[4 * p] = quantize8(frame[p]) * 255;
    px[4 * p + 1] = quantize8(frame[n + p]) * 255;
    px[4 * p + 2] = quantize8(frame[2 * n + p]) * 255;
    px[4 * p + 3] = 255;
  }
  ctx.putImageData(state.image, 0, 0);
}

async function advance(dt) {
  state.inFlight = true;
  try {
    const controls = state.driver.step(state.input.read(), dt);
    state.lastDt = dt;
    state.worldTime += dt;
    await worldStep(controls, drawNoise());
  } catch (e) {
    state.paused = true;
    showError(`The world stopped: ${e.message || e}`);
  } finally {
    state.inFlight = false;
  }
}

// The step the world is asked for when its time is `behind` seconds behind real time: the time
// step it was trained on nearest to that, so world time follows real time in steps the world
// knows (player.py, trained_time_step); worlds that list none: min(1/15 s, behind) rounded to
// 1/60 s.
function timeStep(behind) {
  const steps = state.meta.controls.time_steps || [];
  if (!steps.length) return Math.max(1, Math.round(Math.min(1 / 15, behind) * 60)) / 60;
  return steps.reduce((best, t) => (Math.abs(t - behind) < Math.abs(best - behind) - 1e-9
    || (Math.abs(Math.abs(t - behind) - Math.abs(best - behind)) <= 1e-9 && t > best) ? t : best));
}

function tick(now) {
  requestAnimationFrame(tick);
  if (!state.session || state.paused || state.inFlight) return;
  const steps = state.meta.controls.time_steps || [];
  const smallest = steps.length ? Math.min(...steps) : 1 / 60, largest = steps.length ? Math.max(...steps) : 1 / 15;
  // how far world time is behind real time (a long stall is not made up for)
  const behind = Math.min(largest, state.behind + (now - state.lastStep) / 1000);
  state.lastStep = now;
  state.behind = behind;
  if (behind < smallest - 0.002) return; // no faster than the world's smallest trained step
  const dt = timeStep(behind);
  state.behind = Math.max(0, behind - dt);
  advance(dt);
}

// ---------------------------------------------------------------- badge, overlay, buttons

function updateBadge() {
  if (!state.session) return;
  $('badge').textContent = `${state.backend} · ${state.fps.toFixed(1)} fps${state.paused ? ' · paused' : ''}`;
  if (!$('overlay').hidden) updateOverlay();
}

function updateOverlay() {
  const { meta, driver } = state;
  const names = meta.controls.names, c = state.lastControls || [];
  const lines = [
    `backend ${state.backend}   ${state.fps.toFixed(1)} fps   inference ${state.inferMs.toFixed(1)} ms   memory ${state.pushMs.toFixed(1)} ms   step ${state.stepMs.toFixed(1)} ms`,
    `world time ${state.worldTime.toFixed(2)} s   dt ${(state.lastDt * 1000).toFixed(1)} ms   frames ${state.frames}`,
  ];
  if (driver.position) {
    lines.push(`position ${driver.position.map((v) => v.toFixed(2)).join(' ')} m   yaw ${driver.yaw.toFixed(2)}   pitch ${driver.pitch.toFixed(2)} rad`);
  }
  lines.push('controls:');
  for (let i = 0; i < names.length; i += 4) {
    lines.push('  ' + names.slice(i, i + 4).map((n, j) => `${n.padStart(8)} ${(c[i + j] ?? 0).toFixed(3).padStart(7)}`).join(' '));
  }
  lines.push(`memory: ${meta.memory.frames.map((n, i) => `${n}x${meta.memory.sizes[i].join('x')}`).join('  ')}`);
  $('overlay').textContent = lines.join('\n');
  drawLevels();
}

// the newest frame of each memory level, small
function drawLevels() {
  const box = $('levels'), { meta, memory } = state;
  if (box.children.length !== meta.memory.frames.length) {
    box.replaceChildren(...meta.memory.sizes.map(([h, w]) => Object.assign(document.createElement('canvas'), { width: w, height: h })));
  }
  meta.memory.sizes.forEach(([h, w], i) => {
    const cv = box.children[i], img = cv.getContext('2d').createImageData(w, h);
    const level = memory.levels[i], base = level.length - 3 * h * w;
    for (let p = 0; p < h * w; p++) {
      for (let c = 0; c < 3; c++) img.data[4 * p + c] = level[base + c * h * w + p] * 255;
      img.data[4 * p + 3] = 255;
    }
    cv.getContext('2d').putImageData(img, 0, 0);
  });
}

function toggleOverlay() {
  $('overlay').hidden = !$('overlay').hidden;
  $('levels').hidden = $('overlay').hidden;
  updateBadge();
}

function togglePause() {
  state.paused = !state.paused;
  $('pause').textContent = state.paused ? 'play' : 'pause';
  updateBadge();
}

function wireUi() {
  state.input = new Input(canvas);
  $('reset').addEventListener('click', () => window.nw.reset());
  $('pause').addEventListener('click', () => togglePause());
  $('overlay-toggle').addEventListener('click', () => toggleOverlay());
  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.code === 'KeyR') window.nw.reset();
    else if (e.code === 'KeyP') togglePause();
    else if (e.code === 'KeyO') toggleOverlay();
    else if (e.code === 'Period' && state.paused && !state.inFlight && state.session) advance(timeStep(1 / 15));
    else return;
    e.preventDefault();
  });
  window.addEventListener('keydown', (e) => { if (e.code === 'Space' || e.code.startsWith('Arrow')) e.preventDefault(); });
  // touch: sticks and a jump button, shown on the first touch
  attachStick($('walk-stick'), state.input.sticks.walk);
  attachStick($('look-stick'), state.input.sticks.look);
  const jump = $('jump');
  jump.addEventListener('pointerdown', (e) => { state.input.touchJump = true; e.preventDefault(); });
  for (const t of ['pointerup', 'pointercancel', 'pointerleave']) jump.addEventListener(t, () => { state.input.touchJump = false; });
  const showTouch = () => { $('touch').hidden = false; };
  window.addEventListener('touchstart', showTouch, { once: true });
  if (matchMedia('(pointer: coarse)').matches) showTouch();
}

// ---------------------------------------------------------------- offline

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  try {
    await navigator.serviceWorker.register('sw.js');
  } catch (e) {
    console.warn('offline play unavailable:', e);
  }
}

// ---------------------------------------------------------------- test hook

// 32-bit seeded generator (mulberry32) for reproducible noise in tests
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function idle() {
  while (state.inFlight) await new Promise((r) => setTimeout(r, 1));
}

function toUint8HWC(frame) {
  const { height: H, width: W } = state.meta, n = H * W, out = new Array(n * 3);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) out[3 * p + c] = quantize8(frame[c * n + p]) * 255;
  return out;
}

window.nw = {
  ready: null,
  get backend() { return state.backend; },
  get meta() { return state.meta; },
  get frames() { return state.frames; },
  get fps() { return state.fps; },
  get lastControls() { return state.lastControls; },
  get paused() { return state.paused; },
  pause(flag = true) { state.paused = flag; updateBadge(); },
  async reset() { await idle(); reset(); },
  seed(s) { state.random = s === null ? Math.random : seeded(s); },
  // one step with the given controls and noise (arrays), or the player's own when omitted;
  // returns the frame as a flat (H, W, 3) array of 0..255
  async step(controls = null, noise = null) {
    await idle();
    state.inFlight = true;
    try {
      const c = controls || state.driver.step(state.input.read(), timeStep(1 / 15));
      return toUint8HWC(await worldStep(c, noise || drawNoise()));
    } finally {
      state.inFlight = false;
    }
  },
  // frames/s of whole steps (inference, memory update, drawing) with random controls and noise
  async bench(seconds = 3, warmup = 3) {
    await idle();
    state.inFlight = true;
    try {
      const names = state.meta.controls.names, mean = state.meta.controls.mean || names.map(() => 0);
      const controls = Float32Array.from(mean);
      for (let i = 0; i < warmup; i++) await worldStep(controls, drawNoise());
      let frames = 0, infer = 0, push = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < seconds * 1000) {
        await worldStep(controls, drawNoise());
        infer += state.inferMs;
        push += state.pushMs;
        frames += 1;
      }
      const s = (performance.now() - t0) / 1000;
      return { backend: state.backend, frames, seconds: s, fps: frames / s, inference_ms: infer / frames,
               memory_ms: push / frames };
    } finally {
      state.inFlight = false;
    }
  },
  lastFrame() { return state.lastFrame ? toUint8HWC(state.lastFrame) : null; },
  memory() { return state.memory.levels.map((l) => Array.from(l)); },
};

wireUi();
window.nw.ready = (async () => {
  registerServiceWorker();
  try {
    await load();
  } catch (e) {
    showError(`This world's model could not load on this device: ${e.message || e}`);
    throw e;
  }
  updateBadge();
  setInterval(updateBadge, 250);
  state.lastStep = performance.now();
  requestAnimationFrame(tick);
  return { backend: state.backend };
})();
