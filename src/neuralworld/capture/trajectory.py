"""Camera trajectories for the synthetic world: a person walking with a phone, or a given file.

`walk` simulates a walker on a scene's trail, frame by frame: walking at about 1.5 m/s along
the trail (either way round), now and then stepping off it to a clearing a few metres away,
stopping to look around, turning back; and, so that a world learns every move its player can
make, standing still, stepping sideways, backing up and turning on the spot. The body steers
toward a target and around trunks and bushes; the head (the phone) looks around on top of the
body's heading; the hand adds a little shake and the steps a little bob. The limits are those of the reference system's player
(Ollin Boer Bohan, "World Emulation via Neural Network", 2025): camera turn rate at most
2.5 rad/s, pitch within -1.5..+0.75 rad, acceleration at most 20 m/s^2, roll near 0, eye
height 1.6 m.

`load_trajectory` reads a pose sequence instead (see its docstring for the formats).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from neuralworld.capture.format import check_times
from neuralworld.errors import UserError
from neuralworld.geometry import camera_rotation, make_pose, quat_to_matrix


@dataclass(frozen=True)
class WalkLimits:
    speed: float = 1.5  # m/s, a walk
    max_turn_rate: float = 2.5  # rad/s of the camera's heading
    body_turn_rate: float = 1.6  # rad/s of the body's heading (the head adds the rest)
    max_accel: float = 2.0  # m/s^2 of the walking speed (the shake and bob add a little)
    pitch_range: tuple = (-1.5, 0.75)  # rad, looking down .. up
    eye_height: float = 1.6  # metres above the ground
    clearance: float = 0.6  # metres kept between the eye and a trunk or bush


def _smooth_noise(rng, t: np.ndarray, freqs, amplitude: float) -> np.ndarray:
    """A smooth random signal: sinusoids at `freqs` Hz with random phases, RMS `amplitude`.
    Smooth in time, so its accelerations stay small whatever the frame rate."""
    phases = rng.uniform(0, 2 * np.pi, len(freqs))
    weights = rng.uniform(0.5, 1.0, len(freqs))
    signal = sum(w * np.sin(2 * np.pi * f * t + p) for f, w, p in zip(freqs, weights, phases))
    return signal * amplitude / np.sqrt(np.sum(weights**2) / 2)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _approach(value, target, rate, dt):
    """Move `value` toward `target` at most `rate * dt`, easing in over ~0.3 s."""
    step = (target - value) * min(1.0, dt / 0.3)
    return value + np.clip(step, -rate * dt, rate * dt)


def walk(scene, frames: int, fps: float = 30.0, seed: int = 0, limits: WalkLimits = WalkLimits()):
    """(frames, 4, 4) camera-to-world poses of a walk through `scene` (see the module docstring)."""
    rng = np.random.default_rng([seed, 3])
    dt = 1.0 / fps
    t = np.arange(frames) * dt
    trail = scene.trail
    m = len(trail)
    tangent = np.roll(trail, -1, axis=0) - np.roll(trail, 1, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    obstacles = cKDTree(scene.obstacles[:, :2])
    radii = scene.obstacles[:, 2] + limits.clearance

    def clear(p):
        return all(np.linalg.norm(p - scene.obstacles[j, :2]) > radii[j] + 0.5
                   for j in obstacles.query_ball_point(p, 6.0))

    index = int(rng.integers(m))  # where on the trail the walk starts
    direction = int(rng.choice([-1, 1]))
    pos = trail[index].copy()
    heading = np.arctan2(*(direction * tangent[index])[::-1])
    velocity, head_yaw, pitch, cam_yaw = np.zeros(2), 0.0, -0.05, heading
    mode, until, goal = "trail", rng.uniform(4, 12), None
    move, spin = 0.0, 0.0  # player moves: walking direction off the heading (rad), turning on the spot (rad/s)
    head_target, pitch_target, next_glance = 0.0, -0.05, rng.uniform(2, 6)
    walk_speed = limits.speed * rng.uniform(0.9, 1.1)
    lateral = 0.0
    out = np.zeros((frames, 4))  # x, y, camera yaw, pitch

    for i in range(frames):
        now = t[i]
        # the walker's plan: switch modes when the current one is over
        if now >= until:
            mode = rng.choice(["trail", "off", "stop", "back", "still", "strafe", "backup", "spin"],
                              p=[0.30, 0.12, 0.14, 0.07, 0.10, 0.11, 0.09, 0.07])
            until = now + {"trail": rng.uniform(5, 15), "off": 10.0, "stop": rng.uniform(1.5, 5),
                           "back": rng.uniform(3, 6), "still": rng.uniform(1.5, 4), "strafe": rng.uniform(1, 3),
                           "backup": rng.uniform(1, 3), "spin": rng.uniform(0.6, 2.0)}[mode]
            move = {"strafe": rng.choice([-1, 1]) * np.pi / 2, "backup": np.pi}.get(mode, 0.0)
            spin = rng.choice([-1, 1]) * rng.uniform(1.0, limits.max_turn_rate - 0.2) if mode == "spin" else 0.0
            walk_speed = limits.speed * rng.uniform(0.85, 1.15)
            if mode == "back":
                direction = -direction
            if mode == "off":  # a clear spot a few metres to one side, ahead
                ahead = (index + direction * int(rng.uniform(4, 10) / 0.25)) % m
                goal = trail[ahead] + normal[ahead] * rng.choice([-1, 1]) * rng.uniform(3, 8)
                if not clear(goal):
                    mode, goal = "trail", None
        # follow the trail from the nearest point near the last one (the loop never jumps)
        window = (index + np.arange(-40, 41)) % m
        index = int(window[np.argmin(np.linalg.norm(trail[window] - pos, axis=1))])
        lateral = 0.98 * lateral + 0.02 * rng.normal(0, 0.6)
        if mode == "off":
            target = goal
            if np.linalg.norm(goal - pos) < 0.7:
                mode, until = "stop", now + rng.uniform(1.5, 4)
        else:
            ahead = (index + direction * 12) % m  # 3 m ahead
            target = trail[ahead] + normal[ahead] * np.clip(lateral, -0.4, 0.4)
        # steer: toward the target, away from trunks and bushes that are close
        want = target - pos
        want /= max(np.linalg.norm(want), 1e-6)
        for j in obstacles.query_ball_point(pos, 3.5):
            away = pos - scene.obstacles[j, :2]
            d = np.linalg.norm(away)
            want += away / max(d, 1e-6) * 1.5 * max(0.0, (radii[j] + 1.5 - d) / 1.5)
        target_speed = 0.0 if mode in ("stop", "still", "spin") else walk_speed
        if mode in ("strafe", "backup"):  # the player's moves: the heading holds, the body moves off it
            ahead = pos + 1.0 * np.array([np.cos(heading + move), np.sin(heading + move)])
            if not clear(ahead):
                mode, until, target_speed = "still", now + rng.uniform(1, 2), 0.0
        elif mode == "spin":
            heading = _wrap(heading + spin * dt)
        else:
            if mode != "still":
                move = 0.0
            turn = _wrap(np.arctan2(want[1], want[0]) - heading)
            if abs(turn) > 1.2:  # turning on the spot: slow down first
                target_speed *= 0.3
            heading = _wrap(heading + np.clip(turn * min(1.0, dt / 0.25), -limits.body_turn_rate * dt,
                                              limits.body_turn_rate * dt))
        # the velocity follows the wanted one as a vector, so a change of direction is smooth too
        want_velocity = target_speed * np.array([np.cos(heading + move), np.sin(heading + move)])
        change = (want_velocity - velocity) * min(1.0, dt / 0.3)
        velocity = velocity + change * min(1.0, limits.max_accel * dt / max(np.linalg.norm(change), 1e-9))
        pos = pos + velocity * dt
        # where the phone looks: glances while walking, a real look around while stopped
        if mode in ("still", "spin"):  # the phone held still on the body
            head_target, pitch_target = 0.0, pitch
        elif now >= next_glance:
            if mode == "stop":
                head_target, pitch_target = rng.uniform(-1.3, 1.3), rng.uniform(-0.9, 0.5)
                next_glance = now + rng.uniform(0.8, 2.0)
            elif rng.uniform() < 0.5:
                head_target, pitch_target = rng.uniform(-0.7, 0.7), rng.normal(-0.05, 0.15)
                next_glance = now + rng.uniform(0.5, 1.5)
            else:
                head_target, pitch_target = 0.0, rng.normal(-0.08, 0.06)
                next_glance = now + rng.uniform(2, 6)
            if rng.uniform() < 0.04:  # rarely: straight down at the feet, or up into the trees
                pitch_target = rng.choice([-1.35, 0.7])
        head_yaw = _approach(head_yaw, head_target, 2.0, dt)
        pitch = _approach(pitch, pitch_target, 1.5, dt)
        turn_step = (limits.max_turn_rate - 0.15) * dt  # the shake below adds up to ~0.1 rad/s
        cam_yaw = cam_yaw + np.clip(_wrap(heading + head_yaw - cam_yaw), -turn_step, turn_step)
        out[i] = pos[0], pos[1], cam_yaw, pitch

    # the hand: small smooth shake of position and angles; the steps: a bob while walking
    # ~0..1; a walk of one frame stands still (a gradient needs two)
    moving = np.linalg.norm(np.gradient(out[:, :2], dt, axis=0), axis=1) / limits.speed if frames > 1 \
        else np.zeros(frames)
    shake_freqs = [0.7, 1.3, 2.1, 3.4]
    x = out[:, 0] + _smooth_noise(rng, t, shake_freqs, 0.004)
    y = out[:, 1] + _smooth_noise(rng, t, shake_freqs, 0.004)
    bob = 0.015 * np.clip(moving, 0, 1) * np.sin(2 * np.pi * 1.9 * t)
    z = scene.height_at(x, y) + limits.eye_height + bob + _smooth_noise(rng, t, shake_freqs, 0.004)
    yaw = np.unwrap(out[:, 2]) + _smooth_noise(rng, t, shake_freqs, 0.003)
    pitch = np.clip(out[:, 3] + _smooth_noise(rng, t, shake_freqs, 0.004), *limits.pitch_range)
    roll = _smooth_noise(rng, t, [0.2, 0.5, 1.1, 2.3], 0.02)
    return make_pose(camera_rotation(yaw, pitch, roll), np.stack([x, y, z], axis=1))


def load_trajectory(path, fps: float = 30.0):
    """Read a camera trajectory -> (times (N,), poses (N,4,4) camera-to-world).

    Formats, in the project's convention (geometry.CONVENTION: camera x right, y down,
    z forward; world z up, metres):
      .npy  (N, 4, 4) camera-to-world poses, one per frame at `fps`
      text  TUM lines `t tx ty tz qx qy qz qw` (t seconds, increasing; position in metres;
            quaternion x, y, z, w of the camera-to-world rotation); `#` starts a comment
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such trajectory file")
    if path.suffix == ".npy":
        try:
            poses = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot read ({e})") from None
        if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
            raise UserError(f"{path}: holds {poses.shape}, expected (N, 4, 4) camera-to-world poses")
        times = np.arange(len(poses)) / fps
        poses = poses.astype(np.float64)
    else:
        try:
            rows = np.loadtxt(path, comments="#", ndmin=2)
        except ValueError as e:
            raise UserError(f"{path}: not a TUM trajectory ({e}) "
                            "(expected lines 't tx ty tz qx qy qz qw')") from None
        if rows.shape[1] != 8 or len(rows) == 0:
            raise UserError(f"{path}: {rows.shape[1]} columns, expected 8: t tx ty tz qx qy qz qw")
        q = rows[:, 4:8]
        if not np.all(np.isfinite(rows)) or np.any(np.linalg.norm(q, axis=1) < 1e-6):
            raise UserError(f"{path}: values are not finite or a quaternion is zero")
        times, poses = rows[:, 0], make_pose(quat_to_matrix(q), rows[:, 1:4])
    if not np.all(np.isfinite(poses)):
        raise UserError(f"{path}: poses contain NaN or infinite values")
    if not np.allclose(poses[:, 3], [0, 0, 0, 1]) or not np.allclose(
            poses[:, :3, :3] @ np.swapaxes(poses[:, :3, :3], 1, 2), np.eye(3), atol=1e-4):
        raise UserError(f"{path}: not rigid camera-to-world poses (rotation not orthonormal or bad last row)")
    check_times(times, str(path))
    return times, poses
