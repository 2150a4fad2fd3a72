// A world in a loop, as in the reference demo (Ollin Boer Bohan, "World Emulation via Neural
// Network", 2025), with ONNX Runtime Web: WebGPU when the device has an adapter, else WebAssembly.
//
// Each step runs the exported step model (export.py, PlayerStep: engine.step as one graph):
// (controls, memory, noise) -> (frame as RGBA bytes, new memory). The frame is drawn as it comes
// and the new memory is the next step's input, so the page holds no copy of the memory rule and
// runs no per-pixel JavaScript; on WebGPU the memory stays on the device (preferredOutputLocation).
// Models without the memory inside (`neuralworld bench` measures what that costs) give the float
// frame, pushed into memory by memory.js.
//
// This module runs in a Web Worker (worker.js) that draws on an OffscreenCanvas, so that the
// page's own work never holds a frame back; ?worker=0 runs it in the page. One inference is in
// flight at a time; world time follows real time in the time steps the world was trained on
// (timeStep), never faster than its smallest step.

import { makeDriver } from './controls.js';

const PACING_WINDOW = 300; // frames over which the 95th-percentile frame time is taken

// WebGPU when the device has an adapter (unless options.backend is 'wasm'), else WebAssembly.
// The model is the world's file for the backend (world.json "backends"), or options.model.
async function createSession(meta, options, base) {
  const errors = [];
  const want = options.backend;
  const gpu = typeof navigator !== 'undefined' && navigator.gpu;
  if (want !== 'wasm' && gpu) {
    try {
      const adapter = await gpu.requestAdapter();
      if (!adapter) throw new Error('no WebGPU adapter');
      // a software adapter (SwiftShader) is far slower than WebAssembly: only when asked for
      const info = adapter.info || {};
      if (want !== 'webgpu' && (info.isFallbackAdapter || adapter.isFallbackAdapter || info.architecture === 'swiftshader')) {
        throw new Error('only a software WebGPU adapter');
      }
      // float16 arithmetic where the adapter has it (shader-f16) and the export made the model
      const backend = adapter.features.has('shader-f16') && meta.backends['webgpu-f16'] ? 'webgpu-f16' : 'webgpu';
      const file = options.model || meta.backends[backend];
      const [ort, bytes] = await Promise.all([import('./ort/ort.webgpu.min.mjs'), fetchBytes(new URL(file, base))]);
      configure(ort, options, base);
      const outputs = {};
      for (let i = 0; i < meta.memory.frames.length; i++) outputs[`new_memory_${i}`] = 'gpu-buffer';
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: ['webgpu'], graphOptimizationLevel: 'all', preferredOutputLocation: outputs,
      });
      return { ort, session, backend, file };
    } catch (e) {
      errors.push(`webgpu: ${e.message || e}`);
    }
  }
  try {
    const file = options.model || meta.backends.wasm;
    const [ort, bytes] = await Promise.all([import('./ort/ort.wasm.min.mjs'), fetchBytes(new URL(file, base))]);
    configure(ort, options, base);
    // options.profile: the runtime's per-operator times, printed to the console by endProfiling
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['wasm'], graphOptimizationLevel: 'all', enableProfiling: Boolean(options.profile),
    });
    return { ort, session, backend: 'wasm', file };
  } catch (e) {
    errors.push(`wasm: ${e.message || e}`);
  }
  throw new Error(errors.join('; '));
}

// WebAssembly threads: options.threads, else the device's cores, at most 4. More than one needs
// cross-origin isolation (SharedArrayBuffer): `neuralworld play` sends the COOP/COEP headers and
// the service worker adds them where a static host cannot; without it the runtime uses one thread.
export function threadCount(options) {
  const cores = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 1;
  const wanted = Number(options.threads) || Math.min(4, cores);
  return self.crossOriginIsolated ? wanted : 1;
}

function configure(ort, options, base) {
  ort.env.wasm.wasmPaths = new URL('./ort/', base).href; // local files, never a CDN
  ort.env.wasm.numThreads = threadCount(options);
  ort.env.logLevel = 'error';
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// 32-bit seeded generator (mulberry32) for reproducible noise in tests
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// the network's noise inputs as (channels, h, w); exports without "noise": one map per level
function noiseShapes(meta) {
  return meta.noise || meta.memory.sizes.map(([h, w]) => [1, h, w]);
}

const BYTE_VALUES = Float32Array.from({ length: 256 }, (_, k) => k / 255); // = quantize8's k / 255 in float32

function toValues(bytes) {
  const out = new Float32Array(bytes.length);
  for (let k = 0; k < bytes.length; k++) out[k] = BYTE_VALUES[bytes[k]];
  return out;
}

// ---- recall of real frames by pose (recall.py: Bank.recall and Follower, number for number)

const wrap = (a) => Math.atan2(Math.sin(a), Math.cos(a)); // to (-pi, pi], as np.angle(exp(1j a))
const heading = (p) => Math.atan2(p[6], p[2]); // a 4x4 row-major pose's forward axis about the vertical
function roundHalfEven(x) { // numpy's round
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function matmul4(a, b) { // row-major 4x4
  const out = new Float64Array(16);
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v += a[4 * i + k] * b[4 * k + j];
      out[4 * i + j] = v;
    }
  }
  return out;
}

function invertPose(p) { // [R | t] -> [R^T | -R^T t]
  const out = new Float64Array(16);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) out[4 * i + j] = p[4 * j + i];
    out[4 * i + 3] = -(p[i] * p[3] + p[4 + i] * p[7] + p[8 + i] * p[11]);
  }
  out[15] = 1;
  return out;
}

function yawed(p, angle) { // turned by `angle` about the world's vertical at its place
  const c = Math.cos(angle), s = Math.sin(angle), out = Float64Array.from(p);
  for (let j = 0; j < 3; j++) {
    out[j] = c * p[j] - s * p[4 + j];
    out[4 + j] = s * p[j] + c * p[4 + j];
  }
  return out;
}

// The camera's pose over play, from the moves of the controls, and the bank frame it recalls.
class Follower {
  constructor(recall, bytes, height, width) {
    Object.assign(this, { rule: recall, bytes });
    this.poses = recall.poses.map((p) => Float64Array.from(p));
    this.headings = this.poses.map(heading);
    this.start = Float64Array.from(recall.start_pose);
    this.size = 3 * height * width;
    this.frame = new Float32Array(this.size); // recall_frame, (1, 3, H, W) values k / 255
    this.relative = new Float32Array(12); // recall_pose, rows of [R | t]
    this.shown = -1;
    this.reset();
  }

  reset() { this.pose = Float64Array.from(this.start); }

  nearest(position, toward) {
    let best = 0, bestCost = Infinity, bestOff = 0;
    for (let i = 0; i < this.poses.length; i++) {
      const p = this.poses[i];
      const metres = Math.hypot(p[3] - position[0], p[7] - position[1], p[11] - position[2]);
      const off = wrap(this.headings[i] - toward);
      const cost = metres + this.rule.heading_metres * Math.abs(off);
      if (cost < bestCost) { best = i; bestCost = cost; bestOff = off; }
    }
    return [best, bestOff];
  }

  step(controls) {
    const move = new Float64Array(16);
    for (let k = 0; k < 12; k++) move[k] = controls[k];
    move[15] = 1;
    const before = heading(this.pose);
    this.pose = matmul4(this.pose, move);
    const now = heading(this.pose), turning = wrap(now - before), position = [this.pose[3], this.pose[7], this.pose[11]];
    let [i, off] = this.nearest(position, now);
    let seenFrom = this.poses[i];
    if (Math.abs(off) > this.rule.facing) { // nothing faced this way: a frame turned to face a sector
      const t = now / this.rule.sector, r = this.rule.turning;
      const sector = this.rule.sector * (turning > r ? Math.ceil(t) : turning < -r ? Math.floor(t) : roundHalfEven(t));
      [i, off] = this.nearest(position, sector);
      seenFrom = yawed(this.poses[i], -off);
    }
    const rel = matmul4(invertPose(seenFrom), this.pose);
    this.relative.set(rel.subarray(0, 12));
    if (i !== this.shown) {
      const bytes = this.bytes.subarray(i * this.size, (i + 1) * this.size);
      for (let k = 0; k < this.size; k++) this.frame[k] = BYTE_VALUES[bytes[k]];
      this.shown = i;
    }
  }
}

export class World {
  // meta: world.json; canvas: an OffscreenCanvas or a <canvas>; options: {backend, threads, model};
  // base: the URL the world's files are under; report(status): called after every frame
  constructor(meta, canvas, options, base, report = () => {}) {
    Object.assign(this, { meta, options, base, report });
    canvas.width = meta.width;
    canvas.height = meta.height;
    this.ctx = canvas.getContext('2d');
    this.driver = makeDriver(meta.controls, meta.player_rules, meta.start_attitude || [0, 0]);
    this.reading = { forward: 0, strafe: 0, turn: 0, look: 0, run: false, jump: false };
    this.mouse = [0, 0]; // pixels moved since the last step
    this.random = Math.random;
    this.paused = false;
    this.queue = Promise.resolve(); // steps, resets and calls one after another
    this.lastStep = 0; this.worldTime = 0; this.lastDt = 0; this.frames = 0;
    this.inferMs = 0; this.stepMs = 0; this.lastControls = null; this.lastFrame = null;
    this.intervals = []; this.stamps = [];
  }

  async load() {
    const { meta } = this;
    const start = fetchBytes(new URL(meta.start_memory.file, this.base)); // while the runtime starts
    const bank = meta.recall ? fetchBytes(new URL(meta.recall.file, this.base)) : null;
    Object.assign(this, await createSession(meta, this.options, this.base));
    const { ort, session } = this;
    this.threads = this.backend === 'wasm' ? ort.env.wasm.numThreads : 0;
    this.inside = session.outputNames.includes('new_memory_0'); // the memory update inside the model
    this.controls = new Float32Array(meta.controls.names.length);
    this.feeds = { controls: new ort.Tensor('float32', this.controls, [1, this.controls.length]) };
    // the U(0, 1) noise inputs: world.json "noise" lists their (channels, h, w) in input order
    // (NetConfig.noise_shapes: one map per memory level, and a flow world's noise_x)
    const names = meta.inputs.filter((name) => name.startsWith('noise_'));
    this.noise = noiseShapes(meta).map(([c, h, w], i) => {
      const a = new Float32Array(c * h * w);
      this.feeds[names[i]] = new ort.Tensor('float32', a, [1, c, h, w]);
      return a;
    });
    if (bank) { // a world that recalls real frames: recall.py's Follower, fed at every step
      this.follower = new Follower(meta.recall, await bank, meta.height, meta.width);
      this.feeds.recall_frame = new ort.Tensor('float32', this.follower.frame, [1, 3, meta.height, meta.width]);
      this.feeds.recall_pose = new ort.Tensor('float32', this.follower.relative, [1, 12]);
    }
    this.dims = meta.memory.sizes.map(([h, w], i) => [1, 3 * meta.memory.frames[i], h, w]);
    // the model's memory: float32 values k / 255, or (WebAssembly's int8 model) the bytes k
    this.bytes = (meta.models[this.file] || {}).memory_dtype === 'uint8';
    const bytes = await start;
    this.start = []; // the memory after the start frames, as bytes, one array per level
    let offset = 0;
    for (const dims of this.dims) {
      const n = dims.reduce((a, b) => a * b);
      this.start.push(bytes.slice(offset, offset + n));
      offset += n;
    }
    if (!this.inside) {
      const { Memory, toRGBA } = await import('./memory.js');
      this.js = new Memory(meta.memory, meta.height, meta.width);
      this.toRGBA = toRGBA;
    }
    this.reset();
  }

  reset() {
    const { meta } = this;
    this.driver.reset();
    if (this.follower) this.follower.reset();
    this.worldTime = 0;
    for (let i = 0; i < this.dims.length; i++) {
      const old = this.feeds[`memory_${i}`];
      if (old && old.location === 'gpu-buffer') old.dispose();
      const level = this.bytes ? this.start[i].slice() : toValues(this.start[i]);
      if (this.js) this.js.levels[i] = level; // memory.js updates these arrays in place
      this.feeds[`memory_${i}`] = new this.ort.Tensor(this.bytes ? 'uint8' : 'float32', level, this.dims[i]);
    }
    // show the newest real frame until the first generated one (memory level 0, last 3 channels)
    const n = meta.height * meta.width, level = this.start[0], base = level.length - 3 * n;
    const rgba = new Uint8Array(4 * n);
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < 3; c++) rgba[4 * p + c] = level[base + c * n + p];
      rgba[4 * p + 3] = 255;
    }
    this.draw(rgba);
  }

  // the memory as float32 levels (the values k / 255 whichever way the model keeps them)
  async readMemory() {
    const levels = await Promise.all(this.dims.map((_, i) => this.feeds[`memory_${i}`].getData()));
    return levels.map((level) => (level instanceof Uint8Array ? toValues(level) : level));
  }

  // One step of the world, as engine.step in Python: controls (C numbers), noise (one array per
  // noise input, or null to draw U(0, 1) in input order) -> the frame as RGBA bytes, drawn; the memory moves on.
  async step(controls, noise) {
    const { meta, feeds } = this;
    const t0 = performance.now();
    const ranges = meta.controls.ranges; // within the ranges the world was trained on, as World.step keeps them
    for (let i = 0; i < this.controls.length; i++) this.controls[i] = Math.min(ranges[i][1], Math.max(ranges[i][0], controls[i]));
    if (this.follower) this.follower.step(this.controls); // the pose the move leads to, and what it recalls
    for (let i = 0; i < this.noise.length; i++) {
      const a = this.noise[i];
      if (noise) a.set(noise[i]);
      else for (let k = 0; k < a.length; k++) a[k] = this.random();
    }
    const out = await this.session.run(feeds);
    const t1 = performance.now();
    let rgba;
    if (this.inside) {
      for (let i = 0; i < this.dims.length; i++) {
        const old = feeds[`memory_${i}`];
        feeds[`memory_${i}`] = out[`new_memory_${i}`];
        if (old.location === 'gpu-buffer') old.dispose();
      }
      rgba = out.frame.data;
    } else {
      const frame = out.frame.data; // (3, H, W) float
      this.js.push(frame);
      rgba = this.toRGBA(frame);
    }
    this.draw(rgba);
    const now = performance.now();
    this.lastFrame = rgba;
    this.lastControls = Array.from(this.controls);
    this.frames += 1;
    this.inferMs = t1 - t0;
    this.stepMs = now - t0;
    this.stamps.push(now);
    while (this.stamps.length && this.stamps[0] < now - 1000) this.stamps.shift();
    this.report(this.status());
    return rgba;
  }

  draw(rgba) {
    const { width, height } = this.meta;
    this.ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.byteLength), width, height), 0, 0);
  }

  get fps() {
    const s = this.stamps;
    return s.length > 1 ? 1000 * (s.length - 1) / (s[s.length - 1] - s[0]) : 0;
  }

  // 95th percentile and longest of the intervals between the loop's recent frames (ms)
  pacing() {
    const sorted = this.intervals.slice().sort((a, b) => a - b);
    return sorted.length ? { p95: sorted[Math.min(sorted.length - 1, Math.floor(0.95 * sorted.length))],
                             max: sorted[sorted.length - 1] } : { p95: 0, max: 0 };
  }

  status() {
    const d = this.driver;
    return { frames: this.frames, fps: this.fps, inferMs: this.inferMs, stepMs: this.stepMs, paused: this.paused,
             worldTime: this.worldTime, dt: this.lastDt, controls: this.lastControls, pacing: this.pacing(),
             position: d.position ? d.position.slice() : null, yaw: d.yaw, pitch: d.pitch };
  }

  // what the page's devices say (controls.js Input.read); mouse movements add up until a step
  input(reading) {
    this.mouse[0] += reading.mouse[0];
    this.mouse[1] += reading.mouse[1];
    this.reading = reading;
  }

  takeReading() {
    const r = { ...this.reading, mouse: this.mouse };
    this.mouse = [0, 0];
    return r;
  }

  // The step the world is asked for when its time is `behind` seconds behind real time: the time
  // step it was trained on nearest to that (the larger on a tie), so world time follows real time
  // in steps the world knows (player.py, trained_time_step); worlds that list none: min(1/15 s,
  // behind) rounded to 1/60 s.
  timeStep(behind) {
    const steps = this.meta.controls.time_steps || [];
    if (!steps.length) return Math.max(1, Math.round(Math.min(1 / 15, behind) * 60)) / 60;
    return steps.reduce((best, t) => (Math.abs(t - behind) < Math.abs(best - behind) - 1e-9
      || (Math.abs(Math.abs(t - behind) - Math.abs(best - behind)) <= 1e-9 && t > best) ? t : best));
  }

  // run `fn` after everything queued before it (one inference in flight)
  exclusive(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  async advance(dt, reading) {
    const controls = this.driver.step(reading || this.takeReading(), dt);
    this.lastDt = dt;
    this.worldTime += dt;
    return this.step(controls, null);
  }

  // The free-running loop: the next step as soon as the last one has finished and world time is
  // at least the smallest trained time step behind real time (without trained steps: at most 60
  // a second); a long stall is not made up for (world time falls behind by at most the largest
  // step). Waits are for the next display frame (requestAnimationFrame, in workers too; else a
  // timer); between steps the loop lets other tasks in (the page's input and calls), since a run
  // on WebAssembly finishes within the task that began it.
  async play(onError) {
    const steps = this.meta.controls.time_steps || [];
    const smallest = steps.length ? Math.min(...steps) : 1 / 60, largest = steps.length ? Math.max(...steps) : 1 / 15;
    const frame = typeof requestAnimationFrame === 'function'
      ? () => new Promise((r) => requestAnimationFrame(r)) : () => new Promise((r) => setTimeout(r, 4));
    const channel = new MessageChannel(); // a task at once: setTimeout(0) waits 4 ms when chained
    const task = () => new Promise((r) => { channel.port1.onmessage = r; channel.port2.postMessage(0); });
    this.lastStep = performance.now();
    this.behind = 0; // s world time is behind real time, as of lastStep
    for (;;) {
      const now = performance.now(), elapsed = now - this.lastStep;
      const behind = Math.min(largest, this.behind + elapsed / 1000);
      if (this.paused || behind < smallest - 0.002) { // 2 ms early is on time
        await frame();
        if (this.paused) { this.lastStep = performance.now(); this.behind = 0; }
        continue;
      }
      if (this.frames > 0) {
        this.intervals.push(elapsed);
        if (this.intervals.length > PACING_WINDOW) this.intervals.shift();
      }
      this.lastStep = now;
      const dt = this.timeStep(behind);
      this.behind = Math.max(0, behind - dt);
      try {
        await this.exclusive(() => this.advance(dt));
      } catch (e) {
        this.paused = true;
        onError(e);
      }
      await task();
    }
  }

  resetPacing() { this.intervals = []; }

  // ---- what the page asks for (window.nw and the keys), through worker.js or directly

  pause(flag) { this.paused = flag; this.report(this.status()); }

  seed(s) { this.random = s === null ? Math.random : seeded(s); }

  restart() { return this.exclusive(() => this.reset()); }

  // one step with the given controls and noise, or the player's own (`reading` from the page's devices)
  stepOnce(controls, noise, reading) {
    return this.exclusive(() => (controls ? this.step(controls, noise) : this.advance(this.timeStep(1 / 15), reading)));
  }

  // the memory as float32 levels, and the newest frame of each level (for the debug overlay)
  memory() { return this.exclusive(() => this.readMemory()); }

  lastFrameBytes() { return this.lastFrame; }

  // WebAssembly with options.profile: the runtime prints its profile (one JSON event per line,
  // each operator's time per run) to the console (`neuralworld bench --profile` reads it)
  endProfiling() { return this.exclusive(() => this.session.endProfiling()); }

  async newest() {
    const levels = await this.memory();
    return levels.map((level, i) => level.slice(level.length - 3 * this.dims[i][2] * this.dims[i][3]));
  }

  // frames/s of whole steps (inference, memory, drawing) with the recording's mean controls, timed
  // after `warmup` seconds of the same steps, at least one (the page is slower in its first seconds:
  // bench.py, WARMUP_SECONDS)
  async bench(seconds = 3, warmup = 3) {
    return this.exclusive(async () => {
      const mean = this.meta.controls.mean || this.meta.controls.names.map(() => 0);
      const w0 = performance.now();
      let warmupFrames = 0;
      do {
        await this.step(mean, null);
        warmupFrames += 1;
      } while (performance.now() - w0 < warmup * 1000);
      const warmupSeconds = (performance.now() - w0) / 1000;
      let frames = 0, infer = 0;
      const times = [], t0 = performance.now();
      while (performance.now() - t0 < seconds * 1000) {
        await this.step(mean, null);
        infer += this.inferMs;
        times.push(this.stepMs);
        frames += 1;
      }
      const s = (performance.now() - t0) / 1000;
      times.sort((a, b) => a - b);
      return { backend: this.backend, threads: this.threads, model: this.file, frames, seconds: s, fps: frames / s,
               inference_ms: infer / frames, step_p95_ms: times[Math.floor(0.95 * (times.length - 1))],
               warmup_frames: warmupFrames, warmup_seconds: warmupSeconds };
    });
  }
}
