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

The sticks become 16-number pose controls through `integrate_sticks`, the browser player's
rules (DESIGN.md, after the reference system's player), which web/ mirrors:
  - world time step: min(1/15 s, real frame interval) rounded to a multiple of 1/60 s;
  - walk 1.5 m/s, run 3 m/s, running backward at 0.75 times that; a diagonal stick is no
    faster than a straight one; the velocity moves toward its target at 20 m/s^2 at most;
  - turn and look at 2.5 rad/s at full stick; pitch stays within -1.5..+0.75 rad; roll is 0;
  - jump: 2.2 m/s upward, gravity 9.81 m/s^2, back on the ground at the starting height.
The player's pose is `controls.walk_pose(position, yaw, pitch)` and the control vectors come
from `controls.pose_controls` of the integrated poses, so they mean what recorded ones mean.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralworld.controls import POSE_KIND, pose_controls, walk_pose
from neuralworld.errors import UserError

STICK_NAMES = ["forward", "strafe", "turn", "look", "run", "jump"]

WALK_SPEED = 1.5  # m/s
RUN_SPEED = 3.0  # m/s
BACKWARD_RUN_FACTOR = 0.75  # running backward is slower
ACCELERATION = 20.0  # m/s^2, how fast the velocity follows the stick
TURN_RATE = 2.5  # rad/s at full stick, for yaw and pitch
PITCH_MIN, PITCH_MAX = -1.5, 0.75  # rad
JUMP_SPEED = 2.2  # m/s
GRAVITY = 9.81  # m/s^2
MAX_STEP = 1.0 / 15.0  # s: the world is never asked to jump further in time than this
STEP_QUANTUM = 1.0 / 60.0  # s: time steps are whole multiples of this


def world_time_step(real_dt: float) -> float:
    """The world time step for a real frame interval: min(1/15, dt) rounded to 1/60 (never 0).
    Halves round up, as JavaScript's Math.round does in the browser player."""
    return max(1, int(np.floor(min(MAX_STEP, real_dt) / STEP_QUANTUM + 0.5))) * STEP_QUANTUM


@dataclass
class PlayerState:
    """What the player integrates: position (metres, world z up), velocity, heading and pitch."""
    position: np.ndarray
    velocity: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    ground: float = 0.0  # height of the ground under the player

    @classmethod
    def start(cls, yaw: float = 0.0, pitch: float = 0.0) -> "PlayerState":
        return cls(np.zeros(3), np.zeros(3), yaw, pitch, 0.0)

    def pose(self) -> np.ndarray:
        return walk_pose(self.position, self.yaw, self.pitch)


def player_step(state: PlayerState, sticks: dict[str, float], dt: float) -> PlayerState:
    """Advance the player by dt seconds under the stick values (names as STICK_NAMES)."""
    forward, strafe = float(sticks.get("forward", 0.0)), float(sticks.get("strafe", 0.0))
    running = float(sticks.get("run", 0.0)) > 0.5
    norm = np.hypot(forward, strafe)
    if norm > 1.0:  # a diagonal is no faster than a straight line
        forward, strafe = forward / norm, strafe / norm
    speed = RUN_SPEED if running else WALK_SPEED
    if running and forward < 0:
        forward *= BACKWARD_RUN_FACTOR

    yaw = state.yaw - float(sticks.get("turn", 0.0)) * TURN_RATE * dt  # turning right lowers the heading
    pitch = float(np.clip(state.pitch + float(sticks.get("look", 0.0)) * TURN_RATE * dt, PITCH_MIN, PITCH_MAX))

    ahead = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # heading on the ground
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    target = speed * (forward * ahead + strafe * right)  # (3,) horizontal velocity wanted
    v = state.velocity.copy()
    change = target[:2] - v[:2]
    limit = ACCELERATION * dt
    n = np.linalg.norm(change)
    v[:2] += change if n <= limit else change * (limit / n)

    on_ground = state.position[2] <= state.ground + 1e-9
    if on_ground and float(sticks.get("jump", 0.0)) > 0.5:
        v[2] = JUMP_SPEED
    elif not on_ground:
        v[2] -= GRAVITY * dt
    position = state.position + v * dt
    if position[2] < state.ground:  # landed
        position[2], v[2] = state.ground, 0.0
    return PlayerState(position, v, yaw, pitch, state.ground)


def integrate_sticks(times: np.ndarray, sticks: np.ndarray, names: list[str], dt: float,
                     frames: int | None = None, start: PlayerState | None = None):
    """Stick rows (K,) times and (K, len(names)) values -> (N, 16) pose controls, (N+1, 4, 4) poses.

    Frame n (1..N) is the world at time n * dt; the stick values used for the step into frame n
    are those of the last row whose t <= (n - 1) * dt. N defaults to the file's duration / dt.
    Row 0 of the poses is the start (the last frame of the world's memory); control row n-1
    leads from pose n-1 to pose n.
    """
    times = np.asarray(times, np.float64)
    sticks = np.asarray(sticks, np.float64).reshape(len(times), len(names))
    if frames is None:
        frames = int(np.floor((times[-1] - times[0]) / dt + 0.5)) if len(times) > 1 else 0
    state = start or PlayerState.start()
    poses = [state.pose()]
    for n in range(1, frames + 1):
        row = max(0, int(np.searchsorted(times, times[0] + (n - 1) * dt + 1e-9, side="right")) - 1)
        state = player_step(state, dict(zip(names, sticks[row])), dt)
        poses.append(state.pose())
    poses = np.stack(poses)
    controls = pose_controls(poses, np.arange(frames + 1) * dt)[1:]
    return controls, poses


def read_control_file(path: Path, control_names: list[str], control_kind: str, dt: float,
                      frames: int | None = None, start: PlayerState | None = None) -> np.ndarray:
    """A control file (either form) -> (N, C) float32 raw control vectors for a world."""
    path = Path(path)
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


def random_sticks(rng: np.random.Generator, seconds: float, hold: tuple[float, float] = (0.4, 1.2)):
    """Random walk-and-look commands for `seconds`: (times (K,), values (K, 4), names), each row
    held for a random time in `hold`. Mostly walking forward, some strafing, turning both ways
    and gentle looking up and down (the moves a player makes, not only the recorded ones)."""
    names = ["forward", "strafe", "turn", "look"]
    times, rows, t = [], [], 0.0
    while t < seconds:
        times.append(t)
        rows.append([rng.choice([1.0, 1.0, 0.5, 0.0, -0.5]), rng.choice([0.0, 0.0, 0.0, 0.5, -0.5]),
                     rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.3)])
        t += rng.uniform(*hold)
    times.append(seconds)  # the end of the last row
    rows.append([0.0] * len(names))
    return np.array(times), np.array(rows), names
