"""Long-horizon measures: does a world hold when it is played?

  idle    From real memory, stand still for IDLE_FRAMES frames (a pose world: zero motion; an
          action world: its neutral action, the recording's mean). Reported: PSNR of the last
          frame against the newest real frame. A world you stand in should not change.
  tour    From real memory, free play under a scripted tour of what the player can do (pose
          worlds: stand, walk, turn on the spot, look up and down, strafe, back up; action
          worlds: neutral, full and low throttle, full steering both ways), TOUR_FRAMES frames
          at the capture's time step (a world trained on shorter steps takes each frame's move
          in several of them, World.move). Every CHUNK frames are compared with the capture's real
          frames on four statistics (chunk_stats):
            detail    high-frequency share (metrics.high_frequency_share), over the reference's
            structure mean luma gradient after a 1-pixel blur (metrics.structure), over the
                      reference's: the edges of things, which soup lacks even where a faint grid
                      of single pixels gives it a real frame's high-frequency share
            contrast  luma standard deviation, over the reference's
            colour    distance of the mean RGB (0..1) from the reference's
          Where the true views of the tour are known (synthetic captures: capture/synth.py renders
          the same trajectory) the reference is each chunk's true view, and the bands are
          TRUTH_BANDS around it: this tells soup from a view of the same place looking elsewhere.
          Otherwise the reference is the capture's real frames: their mean, with bands as wide as
          their own chunks spread, widened by BAND_MARGINS (Bands.from_real). frames_until_collapse
          is the first frame of the first chunk that leaves a band (None: the world held).
  moves   Walking must change the view: the mean absolute change between consecutive tour
          frames, over that of consecutive real frames; a frozen world (copy-the-last-frame)
          scores 0 and fails MOVES_MIN.
  truth   On synthetic captures, PSNR / SSIM of the tour against the true render of the same
          trajectory at TRUTH_HORIZONS.

The bands were calibrated on the recordings in the project's development data (a synthetic
trail, a car track, a GoPro walk, KITTI): their real chunks stay inside; the same frames blurred
with a 1-pixel Gaussian leave the detail band (about 3% of the real share), and with added
Gaussian noise of standard deviation 0.1 leave it upward; a trail world that had turned to
green soup after 200 frames of the tour (detail 0.3-0.55 and contrast 0.44-0.6 of the true
views) leaves the truth bands. Grey soup with a faint grid and coloured edges kept the real
frames' detail and contrast (a walking demo world: detail 0.45-1.63, contrast 0.57-0.61 of the
real frames') until the structure band: its structure was 0.36-0.41 of the real frames', other
soups' 0.19-0.43, where the demo capture's real chunks span 0.82-1.19 and the same frames
blurred by 1 pixel keep 0.85 (by 2 pixels, 0.66). tests/test_tour.py holds the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuralworld import metrics
from neuralworld.controls import POSE_KIND, ControlSchema
from neuralworld.player import ActionDriver, drive_from

CHUNK = 50
TOUR_FRAMES = 600
IDLE_FRAMES = 150
TRUTH_HORIZONS = (32, 128, 512)
BAND_MARGINS = {"detail": (0.5, 1.25), "structure": (0.7, 1.5), "contrast": (0.5, 1.5)}  # times the real chunks' min and max
COLOUR_MARGIN = 0.08  # added to the real chunks' largest colour distance
TRUTH_BANDS = {"detail": (0.5, 2.0), "structure": (0.6, 1.5), "contrast": (0.7, 1.4), "colour": 0.08}  # around each chunk's true view
MOVES_MIN = 0.25

# (seconds, sticks): the moves a player makes, in the player's sign convention (player.py)
POSE_TOUR = [
    (3.0, {}),  # stand
    (3.0, {"forward": 1.0}),  # walk
    (1.5, {"turn": 0.5}),  # turn right on the spot
    (2.0, {"forward": 1.0}),
    (1.0, {"look": 0.25}),  # look up
    (2.0, {"look": -0.25}),  # look down
    (1.0, {"look": 0.25}),  # level again
    (1.5, {"turn": -0.5}),  # turn left on the spot
    (1.5, {"strafe": 1.0}),  # step right
    (1.5, {"strafe": -1.0}),  # step left
    (2.0, {"forward": -1.0}),  # back up
    (1.0, {"forward": 1.0, "turn": 0.3}),  # walk and turn
]
ACTION_TOUR = [
    (2.0, {}),  # neutral: the recording's mean action
    (2.0, {"forward": 1.0}),  # full throttle
    (1.5, {"turn": -1.0}),  # full steering left
    (1.5, {"turn": 1.0}),  # full steering right
    (2.0, {"forward": -1.0}),  # the lowest throttle recorded
    (2.0, {"turn": 0.5, "forward": 0.5}),
]


def _rows(script, dt: float, frames: int) -> list[dict]:
    """The script's sticks for each of `frames` steps of dt seconds, repeated as needed."""
    seconds = np.cumsum([s for s, _ in script])
    t = (np.arange(frames) * dt) % seconds[-1]
    return [script[int(np.searchsorted(seconds, ti, side="right"))][1] for ti in t]


def tour_controls(schema: ControlSchema, dt: float, frames: int, start_pose: np.ndarray | None = None,
                  idle: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(frames, C) controls of the tour (or of standing still), the (frames + 1, 4, 4) poses of a
    pose world (None for actions) and a (frames,) bool: whether the player asked to move."""
    script = [(1.0, {})] if idle else (POSE_TOUR if schema.kind == POSE_KIND else ACTION_TOUR)
    rows = _rows(script, dt, frames)
    moving = np.array([any(v != 0 for v in r.values()) for r in rows])
    if schema.kind == POSE_KIND:
        names = ["forward", "strafe", "turn", "look"]
        sticks = np.array([[r.get(n, 0.0) for n in names] for r in rows])
        controls, poses = drive_from(start_pose, np.arange(frames) * dt, sticks, names, dt, frames)
        return controls, poses, moving
    driver = ActionDriver(schema)
    return np.stack([driver.step(r, dt) for r in rows]), None, moving | (not idle)


def frame_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 -> per frame: high-frequency share, structure, luma standard deviation
    (N,) and mean RGB (N, 3)."""
    return {"detail": metrics.high_frequency_share(frames), "structure": metrics.structure(frames),
            "contrast": metrics.luma(frames).std(axis=(1, 2)), "colour": metrics.to_float(frames).mean(axis=(1, 2))}


def chunk_stats(frames: np.ndarray, chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 -> per chunk of `chunk` frames (the last, shorter one included): the
    means of frame_stats, (K,) and colour (K, 3)."""
    return chunk_means(frame_stats(frames), chunk)


def chunk_means(per_frame: dict[str, np.ndarray], chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """frame_stats -> their means per chunk of `chunk` frames (the last, shorter one included)."""
    starts = range(0, max(1, len(per_frame["detail"])), chunk)
    return {k: np.array([v[i:i + chunk].mean(axis=0) for i in starts]) for k, v in per_frame.items()}


@dataclass
class Bands:
    """Reference values per chunk and the band each statistic's ratio (or distance) must stay in."""
    detail_ref: np.ndarray  # (K,) or (1,): high-frequency share of the reference
    structure_ref: np.ndarray  # mean luma gradient (1-pixel blur) of the reference
    contrast_ref: np.ndarray  # luma standard deviation of the reference
    colour_ref: np.ndarray  # (K, 3) or (1, 3): mean RGB of the reference
    detail: tuple[float, float]  # band of detail / detail_ref
    structure: tuple[float, float]  # band of structure / structure_ref
    contrast: tuple[float, float]  # band of contrast / contrast_ref
    colour: float  # largest allowed distance from colour_ref
    reference: str  # "capture" (its frames' mean and spread) or "truth" (the true view of each chunk)

    @classmethod
    def from_real(cls, frames: np.ndarray) -> "Bands":
        """Bands from a capture's real frames: around their mean, as wide as their own chunks
        spread (times BAND_MARGINS; plus COLOUR_MARGIN)."""
        per_frame = frame_stats(frames)
        s = chunk_means(per_frame)
        refs = {k: per_frame[k].mean() for k in ("detail", "structure", "contrast")}
        colour_ref = per_frame["colour"].mean(axis=0)

        def band(k):  # the real chunks' spread of value / reference, widened by BAND_MARGINS
            ratio = s[k] / max(refs[k], 1e-12)
            return BAND_MARGINS[k][0] * ratio.min(), BAND_MARGINS[k][1] * ratio.max()

        return cls(np.array([refs["detail"]]), np.array([refs["structure"]]), np.array([refs["contrast"]]),
                   colour_ref[None], band("detail"), band("structure"), band("contrast"),
                   float(np.linalg.norm(s["colour"] - colour_ref, axis=1).max()) + COLOUR_MARGIN, "capture")

    @classmethod
    def from_truth(cls, truth: np.ndarray) -> "Bands":
        """Bands around the true views of the same tour, chunk by chunk (TRUTH_BANDS)."""
        s = chunk_stats(truth)
        return cls(s["detail"], s["structure"], s["contrast"], s["colour"], TRUTH_BANDS["detail"],
                   TRUTH_BANDS["structure"], TRUTH_BANDS["contrast"], TRUTH_BANDS["colour"], "truth")

    def check(self, frames: np.ndarray) -> dict:
        """Per-chunk values of `frames` and where they leave the bands."""
        s = chunk_stats(frames)
        k = len(s["detail"])
        ref = lambda a: a[:k] if len(a) > 1 else a  # noqa: E731 -- per chunk, or one value for all
        detail = s["detail"] / np.maximum(ref(self.detail_ref), 1e-12)
        structure = s["structure"] / np.maximum(ref(self.structure_ref), 1e-12)
        contrast = s["contrast"] / np.maximum(ref(self.contrast_ref), 1e-12)
        colour = np.linalg.norm(s["colour"] - ref(self.colour_ref), axis=1)
        outside = lambda v, band: (v < band[0]) | (v > band[1])  # noqa: E731
        out = (outside(detail, self.detail) | outside(structure, self.structure) | outside(contrast, self.contrast)
               | (colour > self.colour))
        first = int(np.argmax(out)) if out.any() else None
        return {"detail": detail.tolist(), "structure": structure.tolist(), "contrast": contrast.tolist(),
                "colour": colour.tolist(),
                "in_band": (~out).tolist(), "frames_until_collapse": None if first is None else first * CHUNK,
                "held": not out.any()}

    def to_json(self) -> dict:
        return {"reference": self.reference, "detail": list(self.detail), "structure": list(self.structure),
                "contrast": list(self.contrast), "colour_max": self.colour}


def moves_ratio(start: np.ndarray, generated: np.ndarray, real: np.ndarray, moving: np.ndarray) -> float:
    """Mean absolute change of the generated frames (N, H, W, 3) from one step to the next (the
    first from the newest real frame `start`) where the player asked to move, over the mean
    change between consecutive real frames of the capture."""
    def change(frames):
        return np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))

    real_change = float(change(real).mean()) if len(real) > 1 else 0.0
    gen = change(np.concatenate([start[None], generated]))  # (N,)
    asked = gen[moving] if moving.any() else gen
    return float(asked.mean() / real_change) if real_change > 0 else float("nan")


def step_seconds(times: np.ndarray) -> float:
    """A capture's own time step (median frame interval): the tour and idle steps at it."""
    return float(np.median(np.diff(times))) if len(times) > 1 else 1 / 15


def measure_play(rollout, d, plan, *, tour_frames: int = TOUR_FRAMES, idle_frames: int = IDLE_FRAMES,
                 truth_cache: dict | None = None, real_limit: int = 3000) -> dict:
    """idle, tour, bands, moves and (synthetic captures) truth of one held-out capture `d`
    (heldout.HeldOut) from real memory at plan.free_start; `rollout(start, controls)` is the
    world's. The tour's frames come back under "frames" (for the report; not JSON)."""
    from neuralworld.fidelity import synth_renderer

    truth_cache = {} if truth_cache is None else truth_cache
    s = max(plan.free_start, 1)
    memory = d.frames(s - plan.warm, s)
    schema = d.schema
    dt = step_seconds(d.capture.times)
    pose = d.capture.poses[s - 1] if schema.kind == POSE_KIND else None
    real = d.frames(0, min(len(d), real_limit))

    idle_controls, _, _ = tour_controls(schema, dt, idle_frames, pose, idle=True)
    idle = rollout(memory, idle_controls)
    controls, poses, moving = tour_controls(schema, dt, tour_frames, pose)
    frames = rollout(memory, controls)
    render = synth_renderer(d.capture, d.height, d.width) if poses is not None else None
    truth = None
    if render is not None:
        if "tour" not in truth_cache:
            truth_cache["tour"] = np.asarray(render(poses[1:]), np.uint8)
        truth = truth_cache["tour"]
    bands = Bands.from_truth(truth) if truth is not None else Bands.from_real(real)
    out = {"idle_psnr": float(metrics.psnr(idle[-1], memory[-1])), "idle_frames": idle_frames,
           "tour_frames": tour_frames, "step_s": dt, "bands": bands.to_json(), **bands.check(frames),
           "moves": moves_ratio(memory[-1], frames, real, moving), "frames": frames}
    out["moved"] = bool(out["moves"] >= MOVES_MIN)
    if truth is not None:
        at = [h - 1 for h in TRUTH_HORIZONS if h <= len(frames)]  # SSIM where it is reported
        p, q = metrics.psnr(frames[at], truth[at]), metrics.ssim(frames[at], truth[at])
        out["truth"] = {str(i + 1): {"psnr": float(pi), "ssim": float(qi)} for i, pi, qi in zip(at, p, q)}
    return out
