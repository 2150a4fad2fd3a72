// The browser player's page: the canvas, the devices, the badge and debug overlay, offline play.
//
// The world itself (world.js: the network in a loop, after the reference demo, Ollin Boer Bohan,
// "World Emulation via Neural Network", 2025) runs in a Web Worker (worker.js) that draws on this
// page's canvas through an OffscreenCanvas; ?worker=0 runs it on this thread instead. The page
// sends the devices' readings (controls.js Input) and asks for what the keys and buttons do.
// `window.nw` exposes a small hook for tests (see the end of this file).
//
// Query options: ?backend=wasm|webgpu, ?threads=N (WebAssembly threads), ?model=FILE (another of
// the export's models), ?worker=0, ?pixelated, ?profile=1 (WebAssembly: nw.endProfiling() prints the
// runtime's per-operator times to the console).

import { Input, attachStick } from './controls.js';

const $ = (id) => document.getElementById(id);
const canvas = $('view');
const params = new URLSearchParams(location.search);

const state = {
  meta: null, backend: '', threads: 0, model: '', ready: false, paused: false, input: null, offline: null,
  firstFrameMs: null, // ms from the page's navigation to its first generated frame
  status: { frames: 0, fps: 0, inferMs: 0, stepMs: 0, worldTime: 0, dt: 0, controls: null, pacing: { p95: 0, max: 0 } },
  call: null, // (name, ...args) -> Promise: World's methods, in the worker or here
};

function showError(message) {
  const box = $('error');
  box.hidden = false;
  box.textContent = message;
  $('badge').textContent = 'not running';
}

// ---------------------------------------------------------------- the world, in a worker or here

function onStatus(status) {
  state.status = status;
  if (state.firstFrameMs === null && status.frames > 0) state.firstFrameMs = performance.now(); // since navigation
}

// The worker, started before anything else so that the runtime loads while the page does;
// resolves to {backend, threads, model} once its world has loaded.
function startWorker(options, base) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const offscreen = canvas.transferControlToOffscreen();
  const pending = new Map();
  let next = 0;
  state.call = (name, ...args) => new Promise((resolve, reject) => {
    pending.set(++next, { resolve, reject });
    worker.postMessage({ type: 'call', id: next, name, args });
  });
  state.send = (reading) => worker.postMessage({ type: 'input', reading });
  const ready = new Promise((resolve, reject) => {
    worker.onerror = (e) => reject(new Error(e.message || 'the worker failed to start'));
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'status') onStatus(m.status);
      else if (m.type === 'ready') resolve(m);
      else if (m.type === 'failed') reject(new Error(m.message));
      else if (m.type === 'error') { state.paused = true; showError(`The world stopped: ${m.message}`); }
      else if (m.type === 'reply') {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.error !== undefined) p.reject(new Error(m.error)); else p.resolve(m.result);
      }
    };
  });
  worker.postMessage({ type: 'start', canvas: offscreen, options, base }, [offscreen]);
  return ready;
}

// ?worker=0: the world on this thread
async function startHere(meta, options, base) {
  const { World } = await import('./world.js');
  const world = new World(meta, canvas, options, base, onStatus);
  await world.load();
  world.play((e) => { state.paused = true; showError(`The world stopped: ${e.message || e}`); });
  state.call = async (name, ...args) => world[name](...args);
  state.send = (reading) => world.input(reading);
  return { backend: world.backend, threads: world.threads, model: world.file };
}

async function load() {
  const options = { backend: params.get('backend'), threads: params.get('threads'), model: params.get('model'),
                    profile: params.get('profile') === '1' };
  const base = new URL('./', location.href).href;
  const worker = params.get('worker') === '0' ? null : startWorker(options, base);
  const r = await fetch('world.json');
  if (!r.ok) throw new Error(`world.json: HTTP ${r.status}`);
  const meta = state.meta = await r.json();
  document.title = `neuralworld: ${meta.name || 'world'}`;
  canvas.style.setProperty('--aspect', String(meta.width / meta.height));
  if (params.get('pixelated') !== null) canvas.classList.add('pixelated');
  const started = await (worker || startHere(meta, options, base));
  Object.assign(state, { backend: started.backend, threads: started.threads, model: started.model, ready: true });
  state.offline = cacheForOffline(meta, started.backend);
}

// ---------------------------------------------------------------- badge, overlay, buttons

function threadsText() {
  if (state.backend !== 'wasm') return '';
  const n = state.threads;
  return ` · ${n} thread${n === 1 ? '' : 's'}`;
}

function updateBadge() {
  if (!state.ready) return;
  $('badge').textContent = `${state.backend}${threadsText()} · ${state.status.fps.toFixed(1)} fps${state.paused ? ' · paused' : ''}`;
  if (!$('overlay').hidden) updateOverlay();
}

function updateOverlay() {
  const { meta } = state, s = state.status;
  const names = meta.controls.names, c = s.controls || [];
  const isolation = self.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated: one thread';
  const lines = [
    `backend ${state.backend}${threadsText()} (${isolation})   model ${state.model}   ${params.get('worker') === '0' ? 'main thread' : 'worker'}`,
    `${s.fps.toFixed(1)} fps   inference ${s.inferMs.toFixed(1)} ms   step ${s.stepMs.toFixed(1)} ms   frame time p95 ${s.pacing.p95.toFixed(1)} ms, longest ${s.pacing.max.toFixed(1)} ms`,
    `world time ${s.worldTime.toFixed(2)} s   dt ${(s.dt * 1000).toFixed(1)} ms   frames ${s.frames}`,
  ];
  if (s.position) {
    lines.push(`position ${s.position.map((v) => v.toFixed(2)).join(' ')} m   yaw ${s.yaw.toFixed(2)}   pitch ${s.pitch.toFixed(2)} rad`);
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
async function drawLevels() {
  const box = $('levels'), { meta } = state;
  if (box.children.length !== meta.memory.frames.length) {
    box.replaceChildren(...meta.memory.sizes.map(([h, w]) => Object.assign(document.createElement('canvas'), { width: w, height: h })));
  }
  const levels = await state.call('newest');
  meta.memory.sizes.forEach(([h, w], i) => {
    const cv = box.children[i], img = cv.getContext('2d').createImageData(w, h);
    for (let p = 0; p < h * w; p++) {
      for (let c = 0; c < 3; c++) img.data[4 * p + c] = levels[i][c * h * w + p] * 255;
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

function setPaused(flag) {
  state.paused = flag;
  $('pause').textContent = flag ? 'play' : 'pause';
  if (state.call) state.call('pause', flag);
  updateBadge();
}

function wireUi() {
  state.input = new Input(canvas);
  const send = () => { if (state.ready) state.send(state.input.read()); };
  $('reset').addEventListener('click', () => window.nw.reset());
  $('pause').addEventListener('click', () => setPaused(!state.paused));
  $('overlay-toggle').addEventListener('click', () => toggleOverlay());
  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.code === 'KeyR') window.nw.reset();
    else if (e.code === 'KeyP') setPaused(!state.paused);
    else if (e.code === 'KeyO') toggleOverlay();
    else if (e.code === 'Period' && state.paused && state.ready) state.call('stepOnce', null, null, state.input.read());
    else return;
    e.preventDefault();
  });
  window.addEventListener('keydown', (e) => { if (e.code === 'Space' || e.code.startsWith('Arrow')) e.preventDefault(); });
  // the world reads the devices as they change, and every display frame (sticks, gamepads, mouse)
  for (const type of ['keydown', 'keyup', 'blur']) window.addEventListener(type, () => queueMicrotask(send));
  const poll = () => { send(); requestAnimationFrame(poll); };
  requestAnimationFrame(poll);
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

// The service worker caches the page's own files when it installs (sw.js); the model and runtime
// files of the backend in use are cached here once they have loaded (revalidated, not downloaded
// again). Resolves to whether they were.
async function cacheForOffline(meta, backend) {
  if (!('caches' in self) || !window.isSecureContext) return false;
  try {
    const cache = await caches.open('neuralworld-v2');
    await cache.addAll(meta.files[backend] || []);
    return true;
  } catch (e) {
    console.warn('offline play unavailable:', e);
    return false;
  }
}

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  try {
    await navigator.serviceWorker.register('sw.js');
  } catch (e) {
    console.warn('offline play unavailable:', e);
    return;
  }
  // a host that sends no cross-origin isolation headers: the service worker adds them to what it
  // serves, so once it controls the page, one reload gives the page its threads
  const key = `neuralworld-isolation-reload:${location.pathname}`;
  if (self.crossOriginIsolated || sessionStorage.getItem(key)) return;
  const reload = () => { sessionStorage.setItem(key, '1'); location.reload(); };
  if (navigator.serviceWorker.controller) reload();
  else navigator.serviceWorker.addEventListener('controllerchange', reload, { once: true });
}

// ---------------------------------------------------------------- test hook

function toRGB(rgba) {
  const out = new Array((rgba.length / 4) * 3);
  for (let p = 0, q = 0; p < rgba.length; p += 4) { out[q++] = rgba[p]; out[q++] = rgba[p + 1]; out[q++] = rgba[p + 2]; }
  return out;
}

window.nw = {
  ready: null,
  get backend() { return state.backend; },
  get threads() { return state.threads; },
  get model() { return state.model; },
  get meta() { return state.meta; },
  get frames() { return state.status.frames; },
  get fps() { return state.status.fps; },
  get pacing() { return state.status.pacing; }, // {p95, max} ms between the loop's recent frames
  get firstFrameMs() { return state.firstFrameMs; },
  resetPacing() { return state.call('resetPacing'); },
  get lastControls() { return state.status.controls; },
  get paused() { return state.paused; },
  get offline() { return state.offline; }, // a promise: the backend's files cached for offline play
  pause(flag = true) { setPaused(flag); },
  reset() { return state.call('restart'); },
  seed(s) { return state.call('seed', s); },
  // one step with the given controls and noise (arrays), or the player's own when omitted;
  // returns the frame as a flat (H, W, 3) array of 0..255
  async step(controls = null, noise = null) {
    return toRGB(await state.call('stepOnce', controls, noise, state.input.read()));
  },
  // frames/s of whole steps (inference, memory update, drawing) with the recording's mean controls,
  // timed for `seconds` after `warmup` seconds of them
  bench(seconds = 3, warmup = 3) { return state.call('bench', seconds, warmup); },
  endProfiling() { return state.call('endProfiling'); }, // with ?profile=1: the per-operator profile, to the console
  async lastFrame() { const f = await state.call('lastFrameBytes'); return f ? toRGB(f) : null; },
  async memory() { return (await state.call('memory')).map((l) => Array.from(l)); },
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
  return { backend: state.backend, threads: state.threads };
})();
