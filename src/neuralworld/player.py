"""The player: how sticks and keys move a walker through a pose world, and the time steps the
world is asked for. One set of rules for Python (rollout control files, evaluation tours) and
the browser (web/controls.js reads them from the exported world.json, so both use these
numbers), after the reference system's demo (Ollin Boer Bohan, "World Emulation via Neural
Network", 2025):

  - walk 1.5 m/s, run 3 m/s, running backward at 0.75 times that; a diagonal stick is no
    faster than a straight one; the velocity moves toward its target at 20 m/s^2 at most;
  - turn and look at 2.5 rad/s at full stick; pitch stays within -1.5..+0.75 rad; roll is 0;
  - jump: 2.2 m/s upward, gravity 9.81 m/s^2, back on the ground at the starting height.

One sign convention for every stick, here and in the page:
  forward + ahead, strafe + right, turn + right, look + up (each -1..1); run and jump 0/1.

The player's pose is `controls.walk_pose(position, yaw, pitch)` and its control vectors come
from `controls.pose_controls` of the integrated poses, so they mean what recorded ones mean.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from neuralworld.controls import ControlSchema, pose_controls, walk_pose
from neuralworld.geometry import invert_pose

STICK_NAMES = ["forward", "strafe", "turn", "look", "run", "jump"]


@dataclass(frozen=True)
class PlayerRules:
    walk_speed: float = 1.5  # m/s
    run_speed: float = 3.0  # m/s
    backward_run_factor: float = 0.75  # running backward is slower
    acceleration: float = 20.0  # m/s^2, how fast the velocity follows the stick
    turn_rate: float = 2.5  # rad/s at full stick, for yaw and pitch
    pitch_min: float = -1.5  # rad
    pitch_max: float = 0.75  # rad
    jump_speed: float = 2.2  # m/s
    gravity: float = 9.81  # m/s^2
    mouse_rad_per_pixel: float = 0.0025  # mouse look under pointer lock (browser only)
    max_step: float = 1.0 / 15.0  # s: the world is never asked to jump further in time than this
    step_quantum: float = 1.0 / 60.0  # s: time steps are whole multiples of this

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


RULES = PlayerRules()


def world_time_step(real_dt: float, rules: PlayerRules = RULES) -> float:
    """The world time step for a real frame interval: min(max_step, dt) rounded to a multiple of
    step_quantum (never 0). Halves round up, as JavaScript's Math.round does in the page."""
    return max(1, int(np.floor(min(rules.max_step, real_dt) / rules.step_quantum + 0.5))) * rules.step_quantum


def trained_time_step(schema: ControlSchema, behind: float) -> float:
    """The step a player asks a world for when the world's time is `behind` seconds behind real
    time: the step the world was trained on nearest to it, so that world time follows real time
    in steps the world knows (the page keeps the difference from step to step: web/player.js,
    timeStep); for worlds that list no trained steps, world_time_step's rule."""
    if not schema.time_steps:
        return world_time_step(behind)
    return min(schema.time_steps, key=lambda t: (abs(t - behind), -t))


@dataclass
class PlayerState:
    """What the player integrates: position (metres, world z up), velocity, heading and pitch."""
    position: np.ndarray
    velocity: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    ground: float = 0.0  # height of the ground under the player
    roll: float = 0.0  # the camera's roll, held: a player does not roll (the world's start attitude)

    @classmethod
    def start(cls, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> "PlayerState":
        return cls(np.zeros(3), np.zeros(3), yaw, pitch, 0.0, roll)

    def pose(self) -> np.ndarray:
        return walk_pose(self.position, self.yaw, self.pitch)


def player_step(state: PlayerState, sticks: dict[str, float], dt: float, rules: PlayerRules = RULES) -> PlayerState:
    """Advance the player by dt seconds under the stick values (names as STICK_NAMES)."""
    forward, strafe = float(sticks.get("forward", 0.0)), float(sticks.get("strafe", 0.0))
    running = float(sticks.get("run", 0.0)) > 0.5
    norm = np.hypot(forward, strafe)
    if norm > 1.0:  # a diagonal is no faster than a straight line
        forward, strafe = forward / norm, strafe / norm
    speed = rules.run_speed if running else rules.walk_speed
    if running and forward < 0:
        forward *= rules.backward_run_factor

    yaw = state.yaw - float(sticks.get("turn", 0.0)) * rules.turn_rate * dt  # turning right lowers the heading
    pitch = float(np.clip(state.pitch + float(sticks.get("look", 0.0)) * rules.turn_rate * dt,
                          rules.pitch_min, rules.pitch_max))

    ahead = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # heading on the ground
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    target = speed * (forward * ahead + strafe * right)  # (3,) horizontal velocity wanted
    v = state.velocity.copy()
    change = target[:2] - v[:2]
    limit = rules.acceleration * dt
    n = np.linalg.norm(change)
    v[:2] += change if n <= limit else change * (limit / n)

    on_ground = state.position[2] <= state.ground + 1e-9
    if on_ground and float(sticks.get("jump", 0.0)) > 0.5:
        v[2] = rules.jump_speed
    elif not on_ground:
        v[2] -= rules.gravity * dt
    position = state.position + v * dt
    if position[2] < state.ground:  # landed
        position[2], v[2] = state.ground, 0.0
    return PlayerState(position, v, yaw, pitch, state.ground, state.roll)


def integrate_sticks(times: np.ndarray, sticks: np.ndarray, names: list[str], dt: float,
                     frames: int | None = None, start: PlayerState | None = None):
    """Stick rows (K,) times and (K, len(names)) values -> (N, 16) pose controls, (N+1, 4, 4) poses.

    Frame n (1..N) is the world at time n * dt; the stick values used for the step into frame n
    are those of the last row whose t <= (n - 1) * dt. N defaults to the rows' duration / dt.
    Row 0 of the poses is the start (the last frame of the world's memory); control row n-1
    leads from pose n-1 to pose n. The poses have no roll; the controls carry the start's roll.
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
    controls[:, 12] = state.roll
    return controls, poses


def drive_from(pose: np.ndarray, times: np.ndarray, sticks: np.ndarray, names: list[str], dt: float,
               frames: int) -> tuple[np.ndarray, np.ndarray]:
    """integrate_sticks from a real camera pose (4, 4) instead of the origin: the player starts
    with the pose's heading and pitch, and its relative motions are applied to the real (possibly
    rolled) pose. -> (frames, 16) pose controls and (frames + 1, 4, 4) poses, row 0 = `pose`."""
    forward = pose[:3, 2]
    start = PlayerState.start(float(np.arctan2(forward[1], forward[0])), float(np.arcsin(np.clip(forward[2], -1, 1))))
    _, poses = integrate_sticks(times, sticks, names, dt, frames, start)
    poses = pose @ invert_pose(poses[0]) @ poses
    return pose_controls(poses, np.arange(frames + 1) * dt)[1:], poses


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


class ActionDriver:
    """Two sticks (turn, forward in -1..1) -> an action world's named controls, as the page's
    ActionDriver (web/controls.js) does it: the turn stick drives the first name that looks like
    steering (else the first), the forward stick the first that looks like throttle (else the
    second); a centred stick gives the recording's mean, +-1 the ends of the trained range; the
    sticks ease toward their input at `ease_rate` per second, as a hand on a wheel would."""

    STEER = re.compile(r"steer|turn|yaw|angle", re.I)
    THROTTLE = re.compile(r"throttle|speed|forward|accel|gas", re.I)

    def __init__(self, schema: ControlSchema, ease_rate: float = 4.0):
        self.lo, self.hi = np.array(schema.ranges, np.float64).T
        self.neutral = np.clip(np.array(schema.mean, np.float64), self.lo, self.hi)
        names = list(schema.names)

        def find(pattern, fallback):
            i = next((i for i, n in enumerate(names) if pattern.search(n)), -1)
            return i if i >= 0 else (fallback if fallback < len(names) else -1)

        self.turn_index = find(self.STEER, 0)
        self.forward_index = find(self.THROTTLE, 0 if self.turn_index == 1 else 1)
        if self.forward_index == self.turn_index:
            self.forward_index = -1
        self.ease_rate = ease_rate
        self.axes = np.zeros(2)

    def value(self, i: int, a: float) -> float:
        """Stick a in -1..1 -> the value of control i: -1 = low end, 0 = neutral, +1 = high end."""
        n = self.neutral[i]
        return n + a * (self.hi[i] - n) if a >= 0 else n + a * (n - self.lo[i])

    def step(self, sticks: dict[str, float], dt: float) -> np.ndarray:
        want = np.clip([sticks.get("turn", 0.0) + sticks.get("strafe", 0.0), sticks.get("forward", 0.0)], -1, 1)
        self.axes += np.clip(want - self.axes, -self.ease_rate * dt, self.ease_rate * dt)
        out = self.neutral.copy()
        if self.turn_index >= 0:
            out[self.turn_index] = self.value(self.turn_index, self.axes[0])
        if self.forward_index >= 0:
            out[self.forward_index] = self.value(self.forward_index, self.axes[1])
        return out.astype(np.float32)
