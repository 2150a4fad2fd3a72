// Player input -> the control vector the world is driven by.
//
// Pose worlds: the reference demo's walker (Ollin Boer Bohan, "World Emulation via Neural
// Network", 2025) with the rules of src/neuralworld/player.py (player_step), whose numbers
// (speeds, turn rate, pitch limits, jump, gravity) the page reads from world.json's "player_rules",
// written by `neuralworld export`, and tested against it. Each step gives the 16 numbers of
// src/neuralworld/controls.py: the 3x4 rows of inv(T_prev) @ T_new (poses camera-to-world,
// OpenCV camera axes x right / y down / z forward, world z up, geometry.camera_rotation),
// the previous pose's roll and pitch, the time step, and valid = 1.
// Action worlds: two axes (turn, forward) drive the world's named controls within their ranges.
//
// One sign convention for every stick, as in player.py: forward + ahead, strafe + right,
// turn + right, look + up.

// ---------------------------------------------------------------- input devices

// Everything the devices say, as axes in [-1, 1] and a few buttons, read once per step.
export class Input {
  constructor(target) {
    this.keys = new Set();
    this.mouse = [0, 0]; // pixels moved under pointer lock since the last read
    this.sticks = { walk: [0, 0], look: [0, 0] }; // touch sticks, y down
    this.touchJump = false;
    this.target = target;
    this.listeners = [];
    const on = (el, type, fn, opts) => { el.addEventListener(type, fn, opts); this.listeners.push([el, type, fn]); };
    on(window, 'keydown', (e) => { if (!e.ctrlKey && !e.metaKey) this.keys.add(e.code); });
    on(window, 'keyup', (e) => this.keys.delete(e.code));
    on(window, 'blur', () => this.keys.clear());
    on(document, 'mousemove', (e) => {
      if (document.pointerLockElement === target) { this.mouse[0] += e.movementX; this.mouse[1] += e.movementY; }
    });
    on(target, 'click', () => { if (target.requestPointerLock && !matchMedia('(pointer: coarse)').matches) target.requestPointerLock(); });
  }

  down(...codes) { return codes.some((c) => this.keys.has(c)); }

  axis(neg, pos) { return (this.down(...pos) ? 1 : 0) - (this.down(...neg) ? 1 : 0); }

  gamepad() {
    const pads = navigator.getGamepads ? Array.from(navigator.getGamepads()).filter(Boolean) : [];
    const dz = (v) => (Math.abs(v) < 0.15 ? 0 : v);
    if (!pads.length) return null;
    const p = pads[0], a = p.axes;
    return {
      walk: [dz(a[0] || 0), dz(a[1] || 0)], look: [dz(a[2] || 0), dz(a[3] || 0)],
      jump: !!(p.buttons[0] && p.buttons[0].pressed), run: !!(p.buttons[10] && p.buttons[10].pressed),
    };
  }

  // One reading of every device: the sticks forward, strafe, turn, look in [-1, 1] (signs as
  // above), mouse [dx, dy] (pixels moved under pointer lock, + right and + down), run, jump.
  read() {
    const pad = this.gamepad();
    const clamp = (v) => Math.max(-1, Math.min(1, v));
    const r = {
      forward: clamp(this.axis(['KeyS', 'ArrowDown'], ['KeyW', 'ArrowUp']) - this.sticks.walk[1] - (pad ? pad.walk[1] : 0)),
      strafe: clamp(this.axis(['KeyA'], ['KeyD']) + this.sticks.walk[0] + (pad ? pad.walk[0] : 0)),
      turn: clamp(this.axis(['KeyJ', 'ArrowLeft'], ['KeyL', 'ArrowRight']) + this.sticks.look[0] + (pad ? pad.look[0] : 0)),
      look: clamp(this.axis(['KeyK'], ['KeyI']) - this.sticks.look[1] - (pad ? pad.look[1] : 0)),
      mouse: this.mouse,
      run: this.down('ShiftLeft', 'ShiftRight') || (pad ? pad.run : false),
      jump: this.down('Space') || this.touchJump || (pad ? pad.jump : false),
    };
    this.mouse = [0, 0];
    return r;
  }
}

// A touch stick in element `el`: reports its offset from where the finger landed, in [-1, 1].
export function attachStick(el, out, radius = 50) {
  let id = null, origin = null;
  const knob = el.querySelector('.knob');
  el.addEventListener('pointerdown', (e) => {
    id = e.pointerId; origin = [e.clientX, e.clientY]; el.setPointerCapture(id); e.preventDefault();
  });
  el.addEventListener('pointermove', (e) => {
    if (e.pointerId !== id) return;
    let dx = (e.clientX - origin[0]) / radius, dy = (e.clientY - origin[1]) / radius;
    const n = Math.hypot(dx, dy);
    if (n > 1) { dx /= n; dy /= n; }
    out[0] = dx; out[1] = dy;
    if (knob) knob.style.transform = `translate(${dx * radius}px, ${dy * radius}px)`;
  });
  const end = (e) => {
    if (e.pointerId !== id) return;
    id = null; out[0] = 0; out[1] = 0;
    if (knob) knob.style.transform = '';
  };
  el.addEventListener('pointerup', end);
  el.addEventListener('pointercancel', end);
}

// ---------------------------------------------------------------- pose worlds

// Camera-to-world rotation (3x3, row-major) heading `yaw`, looking `pitch` above the horizon,
// roll 0: geometry.camera_rotation. Columns: right, down, forward.
export function cameraRotation(yaw, pitch) {
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const f = [cy * cp, sy * cp, sp];
  const r = [sy, -cy, 0];
  const d = [f[1] * r[2] - f[2] * r[1], f[2] * r[0] - f[0] * r[2], f[0] * r[1] - f[1] * r[0]]; // f x r
  return [r[0], d[0], f[0], r[1], d[1], f[1], r[2], d[2], f[2]];
}

// The 16 numbers for moving from pose (R0, p0) to (R1, p1): rows of [R0^T R1 | R0^T (p1 - p0)],
// then the previous pose's roll and pitch, dt and valid.
export function poseControl(R0, p0, R1, p1, roll, prevPitch, dt) {
  const out = new Float32Array(16);
  const dp = [p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += R0[k * 3 + i] * R1[k * 3 + j];
      out[i * 4 + j] = s;
    }
    out[i * 4 + 3] = R0[i] * dp[0] + R0[3 + i] * dp[1] + R0[6 + i] * dp[2];
  }
  out[12] = roll; out[13] = prevPitch; out[14] = dt; out[15] = 1;
  return out;
}

export class Walker {
  // rules: world.json "player_rules" (player.PlayerRules as JSON); attitude: [roll, pitch] of the
  // world's newest start frame (world.json "start_attitude"), where the player starts looking
  constructor(rules, attitude = [0, 0]) { this.rules = rules; this.attitude = attitude; this.reset(); }

  reset() {
    this.position = [0, 0, 0]; // metres, world z up; z = height of a jump above the ground
    this.velocity = [0, 0, 0];
    this.yaw = 0;
    [this.roll, this.pitch] = this.attitude; // the roll is held (player.PlayerState.roll)
  }

  // Advance by dt seconds under input reading `r`; returns the 16-number control.
  step(r, dt) {
    const W = this.rules, mouse = r.mouse || [0, 0];
    const R0 = cameraRotation(this.yaw, this.pitch), p0 = this.position.slice(), pitch0 = this.pitch;
    this.yaw -= r.turn * W.turn_rate * dt + mouse[0] * W.mouse_rad_per_pixel; // turning right lowers the heading
    this.pitch = Math.min(W.pitch_max, Math.max(W.pitch_min,
      this.pitch + r.look * W.turn_rate * dt - mouse[1] * W.mouse_rad_per_pixel));
    // target walking velocity on the ground, in world axes (player.player_step)
    let fwd = r.forward, side = r.strafe;
    const n = Math.hypot(fwd, side);
    if (n > 1) { fwd /= n; side /= n; } // a diagonal is no faster than a straight line
    const speed = r.run ? W.run_speed : W.walk_speed;
    if (r.run && fwd < 0) fwd *= W.backward_run_factor;
    fwd *= speed;
    side *= speed;
    const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw);
    const target = [cy * fwd + sy * side, sy * fwd - cy * side];
    let dvx = target[0] - this.velocity[0], dvy = target[1] - this.velocity[1];
    const dv = Math.hypot(dvx, dvy), maxDv = W.acceleration * dt;
    if (dv > maxDv) { dvx *= maxDv / dv; dvy *= maxDv / dv; }
    this.velocity[0] += dvx; this.velocity[1] += dvy;
    // jump and fall
    const grounded = this.position[2] <= 1e-9;
    if (grounded && r.jump) this.velocity[2] = W.jump_speed;
    else if (!grounded) this.velocity[2] -= W.gravity * dt;
    for (let i = 0; i < 3; i++) this.position[i] += this.velocity[i] * dt;
    if (this.position[2] < 0) { this.position[2] = 0; this.velocity[2] = 0; } // landed
    return poseControl(R0, p0, cameraRotation(this.yaw, this.pitch), this.position, this.roll, pitch0, dt);
  }
}

// ---------------------------------------------------------------- action worlds

// Named controls (e.g. steering, throttle) within their ranges from world.json. The turn axis
// drives the first name that looks like steering (else the first), the forward axis the first
// that looks like throttle (else the second); a centred axis gives the recording's mean.
export class ActionDriver {
  constructor(schema) {
    this.names = schema.names;
    const C = this.names.length;
    const ranges = this.names.map((_, i) => (schema.ranges || [])[i] || [-1, 1]); // [[lo, hi], ...] (world.json)
    this.lo = ranges.map((r) => r[0]);
    this.hi = ranges.map((r) => r[1]);
    const mean = schema.mean || this.lo.map((lo, i) => (lo + this.hi[i]) / 2);
    this.neutral = mean.map((m, i) => Math.min(this.hi[i], Math.max(this.lo[i], m)));
    const find = (re, fallback) => {
      const i = this.names.findIndex((n) => re.test(n));
      return i >= 0 ? i : (fallback < C ? fallback : -1);
    };
    this.turnIndex = find(/steer|turn|yaw|angle/i, 0);
    this.forwardIndex = find(/throttle|speed|forward|accel|gas/i, this.turnIndex === 1 ? 0 : 1);
    if (this.forwardIndex === this.turnIndex) this.forwardIndex = -1;
    this.axes = [0, 0];
  }

  reset() { this.axes = [0, 0]; }

  // axis in [-1, 1] -> value: -1 = lo, 0 = neutral, +1 = hi
  value(i, a) {
    return a >= 0 ? this.neutral[i] + a * (this.hi[i] - this.neutral[i]) : this.neutral[i] + a * (this.neutral[i] - this.lo[i]);
  }

  step(r, dt) {
    // axes ease toward the input at 4 units/s, as a hand on a wheel would
    const want = [r.turn + r.strafe, r.forward];
    for (let k = 0; k < 2; k++) {
      const target = Math.max(-1, Math.min(1, want[k]));
      const d = target - this.axes[k], max = 4 * dt;
      this.axes[k] += Math.max(-max, Math.min(max, d));
    }
    const out = Float32Array.from(this.neutral);
    if (this.turnIndex >= 0) out[this.turnIndex] = this.value(this.turnIndex, this.axes[0]);
    if (this.forwardIndex >= 0) out[this.forwardIndex] = this.value(this.forwardIndex, this.axes[1]);
    return out;
  }
}

export function makeDriver(schema, rules, attitude) {
  return schema.kind === 'actions' ? new ActionDriver(schema) : new Walker(rules, attitude);
}
