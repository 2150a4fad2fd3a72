// The memory pyramid's push in JavaScript, the same rule as src/neuralworld/model/memory.py (and
// tested against it). The page runs the rule inside its model (export.py, PlayerStep); this copy
// serves models without it, with which `neuralworld bench` measures what that saves.
//
// Level i keeps the last `frames[i]` frames at 1 / factor^i per side, oldest first, stacked
// along channels: a Float32Array laid out (3 * n_i, h_i, w_i), exactly the ONNX input
// memory_i (1, 3 * n_i, h_i, w_i). A new frame enters every level after being average-pooled
// from the full frame by the level's factor, clamped to [0, 1] and rounded to 8 bits; the
// oldest frame drops out. Zeros stand for frames not seen yet.

// torch.round rounds halves to even; Math.round rounds them up.
function roundHalfEven(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

// clamp to [0, 1], round to 256 levels, in float32 like quantize8 in memory.py
export function quantize8(v) {
  const x = Math.fround(Math.min(1, Math.max(0, v)) * 255);
  return Math.fround(roundHalfEven(x) / 255);
}

export class Memory {
  // layout: world.json "memory": {frames: [4, 8, ...], factor: 4, sizes: [[h0, w0], ...]}
  constructor(layout, height, width) {
    this.frames = layout.frames;
    this.factor = layout.factor;
    this.sizes = layout.sizes;
    this.height = height;
    this.width = width;
    this.levels = this.frames.map((n, i) => new Float32Array(3 * n * this.sizes[i][0] * this.sizes[i][1]));
  }

  // frame: Float32Array (3, H, W) in [0, 1] (the network's output, before any rounding)
  push(frame) {
    // block sums in float64, each level's from the one above (a sum of sums is the sum over
    // the whole block, as torch's CPU avg_pool2d accumulates it in double), then the mean
    let sums = frame, sh = this.height, sw = this.width;
    this.levels.forEach((level, i) => {
      const [h, w] = this.sizes[i], f = i === 0 ? 1 : this.factor, area = (this.factor ** i) ** 2;
      if (f > 1) {
        const next = new Float64Array(3 * h * w);
        for (let c = 0; c < 3; c++) {
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++) {
              let sum = 0;
              for (let dy = 0; dy < f; dy++) {
                const row = (c * sh + y * f + dy) * sw + x * f;
                for (let dx = 0; dx < f; dx++) sum += sums[row + dx];
              }
              next[(c * h + y) * w + x] = sum;
            }
          }
        }
        sums = next; sh = h; sw = w;
      }
      const per = 3 * h * w, base = level.length - per;
      level.copyWithin(0, per); // drop the oldest frame
      for (let j = 0; j < per; j++) level[base + j] = quantize8(Math.fround(sums[j] / area));
    });
  }
}

// (3, H, W) float in [0, 1] -> (H, W, 4) RGBA bytes of the frame as memory holds it
export function toRGBA(frame) {
  const n = frame.length / 3, rgba = new Uint8Array(4 * n);
  for (let p = 0; p < n; p++) {
    rgba[4 * p] = Math.round(quantize8(frame[p]) * 255);
    rgba[4 * p + 1] = Math.round(quantize8(frame[n + p]) * 255);
    rgba[4 * p + 2] = Math.round(quantize8(frame[2 * n + p]) * 255);
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}
