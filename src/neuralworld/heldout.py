"""Held-out captures as a world sees them, and where each is measured.

HeldOut: a capture checked against a world (same control kind and names, same aspect ratio)
and read at the world's size: a capture of another size is resized (OpenCV area
interpolation) when its aspect ratio is the same to within ASPECT_TOLERANCE, refused otherwise.

Plan: the points of one capture that every subject (the world and its baselines) is measured
on. A capture shorter than the memory window plus the longest horizon is used as far as it
goes: the memory is filled from fewer frames and/or the longest horizons are dropped, and the
plan's notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neuralworld.capture.format import Capture
from neuralworld.controls import ControlSchema
from neuralworld.errors import UserError
from neuralworld.world import resize_frames

ASPECT_TOLERANCE = 0.01
HORIZONS = (1, 8, 32, 128)  # open-loop horizons measured by default (frames after real memory)


@dataclass
class HeldOut:
    """A capture seen at a world's size: frames resized on access, controls checked against the world."""
    capture: Capture
    schema: ControlSchema  # the world's
    height: int
    width: int
    controls: np.ndarray  # (N, C) float32 raw control vectors
    name: str = ""

    def __len__(self) -> int:
        return len(self.capture)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, H, W, 3) uint8 at the world's size."""
        clip = np.array(self.capture.frames[start:stop])  # a copy: the capture is memory-mapped read-only
        return resize_frames(clip, self.height, self.width)

    def frames_at(self, index: np.ndarray) -> np.ndarray:
        return resize_frames(np.array(self.capture.frames[np.asarray(index, int)]), self.height, self.width)


def held_out(world, capture: Capture) -> HeldOut:
    """Check that `capture` can drive `world` (same kind and names of controls, same aspect)."""
    kind, names = world.schema.kind, list(world.schema.names)
    if capture.control_kind == "none":
        raise UserError(f"{capture.path}: this capture has no motion, so it cannot drive a world "
                        "(import it with a pose or action log)")
    if capture.control_kind != kind:
        raise UserError(f"{capture.path}: has {capture.control_kind} controls but the world takes {kind} "
                        "controls (evaluate on captures of the kind the world was trained on)")
    if capture.control_names != names:
        raise UserError(f"{capture.path}: controls {capture.control_names} differ from the world's {names}")
    h, w = world.height, world.width
    if (capture.height, capture.width) != (h, w):
        if abs(capture.width / capture.height - w / h) > ASPECT_TOLERANCE * (w / h):
            raise UserError(f"{capture.path}: frames are {capture.width}x{capture.height}, the world's "
                            f"{w}x{h}: a different aspect ratio (import the capture again with --size {w}x{h})")
    return HeldOut(capture, world.schema, h, w, capture.controls(), capture.path.name)


@dataclass
class Plan:
    """Where each capture is measured; shared by the world and its baselines so they see the same data."""
    warm: int  # real frames in memory at each start
    horizons: list[int]
    starts: list[int]  # rollout start points: first generated frame index
    one_step: list[int]
    free_start: int
    notes: list[str] = field(default_factory=list)


def plan_capture(n: int, window: int, horizons, starts: int, one_step_points: int, name: str) -> Plan:
    if n < 2:
        raise UserError(f"{name}: {n} frame(s): a rollout needs at least 2 (one for memory, one to predict)")
    notes = []
    warm = min(window, n - 1)  # keep the memory full when possible; shorten the horizons first
    avail = n - warm
    fit = [h for h in horizons if h <= avail]
    if warm < window:
        notes.append(f"{name}: {n} frames do not fill the memory window ({window}) and leave a frame to "
                     f"predict: memory filled from {warm} real frames")
    if fit != list(horizons):
        notes.append(f"{name}: {n} frames are fewer than the memory window ({window}) + the longest horizon "
                     f"({max(horizons)}): horizons cut to {fit} (only {avail} frames after the memory)")
    s = np.unique(np.linspace(warm, n - max(fit), max(1, starts)).round().astype(int)) if fit else np.zeros(0, int)
    o = np.unique(np.linspace(warm, n - 1, max(1, one_step_points)).round().astype(int))
    return Plan(warm, fit, s.tolist(), o.tolist(), warm, notes)
