"""Control files: what `neuralworld rollout --controls FILE` drives a world with.

A control file is a CSV with a header row, in one of two forms.

1. Control vectors, one row per generated frame: the columns are the world's control names
   (`world.json` -> controls.names), in any order; any other column (e.g. `t`) is ignored.
   A car world:   steering,throttle          A pose world: r00,r01,...,dt,valid (16 columns)
                  0.1,0.6
2. Sticks with timing, for pose worlds: a `t` column (seconds, increasing, starting at 0) and
   any of the columns below (missing ones are 0). Each row holds from its `t` until the next
   row's `t`; the last row's `t` is the end of the file's time.
     forward  -1..1  walk forward (+) or backward (-)      strafe  -1..1  step right (+) / left (-)
     turn     -1..1  turn right (+) / left (-)             look    -1..1  look up (+) / down (-)
     run      0/1    run instead of walk                   jump    0/1    jump (when on the ground)
   Example: walk forward for one second, then turn left on the spot for half a second:
     t,forward,turn
     0,1,0
     1,0,-1
     1.5,0,0

The sticks become 16-number pose controls through `player.integrate_sticks`, the player's
rules (neuralworld/player.py), which the browser player shares.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from neuralworld.controls import POSE_KIND, ControlSchema
from neuralworld.errors import UserError
from neuralworld.player import STICK_NAMES, PlayerState, integrate_sticks


def read_control_file(path: Path, schema: ControlSchema, dt: float, frames: int | None = None,
                      start: PlayerState | None = None) -> np.ndarray:
    """A control file (either form) -> (N, C) float32 raw control vectors for a world of `schema`."""
    path = Path(path)
    control_names, control_kind = list(schema.names), schema.kind
    if not path.is_file():
        raise UserError(f"{path}: no such control file")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    if len(rows) < 2:
        raise UserError(f"{path}: needs a header row and at least one row of values")
    header = [h.strip() for h in rows[0]]
    try:
        values = np.array([[float(v) for v in r] for r in rows[1:]], np.float64)
    except ValueError as e:
        raise UserError(f"{path}: unreadable value ({e})") from None
    if values.shape[1] != len(header):
        raise UserError(f"{path}: rows have {values.shape[1]} values for {len(header)} columns")
    if not np.isfinite(values).all():
        raise UserError(f"{path}: contains NaN or infinite values")
    col = {name: values[:, i] for i, name in enumerate(header)}

    if all(name in col for name in control_names):  # form 1: control vectors
        out = np.stack([col[name] for name in control_names], axis=1).astype(np.float32)
        return out if frames is None else _fit_length(out, frames)
    sticks = [n for n in header if n in STICK_NAMES]
    unknown = [n for n in header if n not in STICK_NAMES and n != "t"]
    if "t" in col and sticks and not unknown:  # form 2: sticks with timing
        if control_kind != POSE_KIND:
            raise UserError(f"{path}: stick columns ({', '.join(sticks)}) drive pose worlds only; this world "
                            f"takes {control_kind} controls: give one column per name: {', '.join(control_names)}")
        if np.any(np.diff(col["t"]) <= 0):
            raise UserError(f"{path}: the t column must increase from row to row")
        controls, _ = integrate_sticks(col["t"], np.stack([col[n] for n in sticks], 1), sticks, dt, frames, start)
        if len(controls) == 0:
            raise UserError(f"{path}: lasts less than one time step ({dt:.4f} s); give rows up to a later t")
        return controls
    missing = [n for n in control_names if n not in col]
    raise UserError(f"{path}: columns {', '.join(header)} are neither this world's controls (missing "
                    f"{', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}) nor t + stick values "
                    f"({', '.join(STICK_NAMES)}); see `neuralworld rollout --help`")


def _fit_length(controls: np.ndarray, frames: int) -> np.ndarray:
    """Cut to `frames` rows, or hold the last row for the rest."""
    if len(controls) >= frames:
        return controls[:frames]
    return np.concatenate([controls, np.repeat(controls[-1:], frames - len(controls), axis=0)])
