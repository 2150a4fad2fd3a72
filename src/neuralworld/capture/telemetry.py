"""Camera motion embedded in the video file (GoPro GPMF, Sony, Insta360, DJI, phone apps...).

Read through telemetry-parser (the parser of the Gyroflow project, PyPI `telemetry-parser`), in
two steps: `read_streams` turns the file into plain arrays (`Streams`), `poses_from_streams`
turns those into one pose per video frame. `read_telemetry_poses` does both.

Orientation, in order of preference:
1. The camera's own orientation, when the file has it (GoPro CORI; telemetry-parser's
   "Quaternion" group, which multiplies CORI by IORI, the image's orientation relative to the
   body, so it follows the picture even when the camera stabilises or levels it).
2. Otherwise the gyroscope integrated over time, started level from the accelerometer's
   gravity and kept level by a complementary filter (Mahony et al., "Nonlinear complementary
   filters on the special orthogonal group", IEEE TAC 2008).

Axis conventions of telemetry-parser (checked on a GoPro MAX with benchmarks/telemetry_gopro.py:
the orientation agrees with the integrated gyro to 0.04 degree per frame and with the video's
own rotation (odometry) only under this mapping):
  - "Quaternion": per video frame, the image's camera-to-world rotation in OpenGL camera axes
    (x right, y up, z backward); its world is the camera at the start of the recording, not level.
  - normalized_imu(): gyro in degrees/s and accelerometer in m/s^2 in IMU axes, which are
    OpenGL camera axes after (x, y, z) -> (-y, x, z) (`IMU_TO_OPENGL`).
The world is then turned so that z is up (the mean accelerometer direction over the whole
clip, where walking's accelerations average out) and x is the first frame's heading.

Time alignment: telemetry-parser gives every sample a time in seconds from the start of the
file's metadata track, which starts with the video track (both at 0 in GoPro files), and the
orientation quaternions one per video frame at the video's frame rate. Frame times here are
seconds from the first video frame, so a frame at time t is looked up at telemetry time
t + lag_s. lag_s is 0 by default; `estimate_lag` finds it by cross-correlating the
telemetry's angular speed with the video's (odometry), e.g. for gyro-only files whose clock
is offset (on the GoPro MAX the gyro runs about 15 ms behind its own CORI).

Coverage: frames whose time falls outside the telemetry (a log that starts late or stops
early) keep the nearest orientation but are flagged invalid (their control vectors' valid
flag is 0), and the report says how many. No telemetry at all is a UserError.

Translation: telemetry has no position good enough for walking (GPS is metres off), so poses
here move along the camera's level heading at the GPS 2D speed when there is a GPS fix, and
not at all otherwise; the importer replaces that with the video's direction of travel scaled
by the same speeds (`report["speed"]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from neuralworld.errors import UserError
from neuralworld.geometry import OPENCV_TO_OPENGL_CAMERA, make_pose, rotation_angle

IMU_TO_OPENGL = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float64)  # normalized IMU -> OpenGL camera
MAHONY_GAIN = 0.5  # 1/s: how fast the accelerometer's gravity pulls the integrated tilt back
COVERAGE_TOLERANCE_S = 0.05  # a frame this close outside the telemetry's span still counts as covered


@dataclass
class Streams:
    """Telemetry as plain arrays. Times in seconds on the telemetry clock (see module doc)."""
    camera: str = ""
    model: str = ""
    quat_t: np.ndarray | None = None  # (Q,) image orientation times
    quat: np.ndarray | None = None  # (Q, 4) x, y, z, w: camera-to-world, OpenGL camera axes
    body_quat: np.ndarray | None = None  # (Q, 4) the body's orientation (GoPro CORI) when known
    imu_t: np.ndarray | None = None  # (M,)
    gyro: np.ndarray | None = None  # (M, 3) rad/s, OpenGL camera axes
    accl: np.ndarray | None = None  # (M, 3) m/s^2, OpenGL camera axes (points up at rest)
    gps_t: np.ndarray | None = None  # (G,)
    gps_speed: np.ndarray | None = None  # (G,) m/s, 2D (horizontal)
    found: dict = field(default_factory=dict)  # stream name -> sample count, for the report


def read_telemetry_poses(video_path, frame_times: np.ndarray, lag_s: float = 0.0):
    """(poses (N,4,4) camera-to-world, valid (N,) bool, report dict) for frames at `frame_times`
    (seconds from the first video frame) from the telemetry embedded in `video_path`."""
    return poses_from_streams(read_streams(video_path), frame_times, lag_s, name=str(video_path))


def read_streams(video_path) -> Streams:
    """Parse a file's telemetry with telemetry-parser; UserError when it has none we can use."""
    import telemetry_parser

    path = Path(video_path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        parser = telemetry_parser.Parser(str(path))
        groups = parser.telemetry()
        imu = parser.normalized_imu()
    except Exception as e:  # the parser raises OSError("Unsupported file format") and others
        raise UserError(f"{path}: no camera telemetry found ({e}); use --motion-format vo to estimate "
                        "the motion from the video, or give a pose file") from None
    s = Streams(camera=str(parser.camera or ""), model=str(parser.model or ""))
    quat = _collect(groups, "Quaternion")
    if quat:
        s.quat_t = np.array([q["t"] for q in quat], np.float64) / 1000.0
        s.quat = np.array([[q["v"][k] for k in "xyzw"] for q in quat], np.float64)
        s.found["orientation (Quaternion)"] = len(quat)
    cori = _collect(groups, "CameraOrientation")
    if quat and len(cori) == len(quat):
        # GoPro CORI in telemetry-parser's sign convention for its own Quaternion (x negated)
        s.body_quat = np.array([[-q["x"], q["y"], q["z"], q["w"]] for q in cori], np.float64)
        s.found["body orientation (CORI)"] = len(cori)
    if imu:
        rows = [r for r in imu if r.get("gyro") is not None]
        if rows:
            s.imu_t = np.array([r["timestamp_ms"] for r in rows], np.float64) / 1000.0
            s.gyro = np.radians(np.array([r["gyro"] for r in rows], np.float64)) @ IMU_TO_OPENGL.T
            s.found["gyroscope"] = len(rows)
            if all(r.get("accl") is not None for r in rows):
                s.accl = np.array([r["accl"] for r in rows], np.float64) @ IMU_TO_OPENGL.T
                s.found["accelerometer"] = len(rows)
    s.gps_t, s.gps_speed = _gps_speed(groups)
    if s.gps_t is not None:
        s.found["GPS speed"] = len(s.gps_t)
    for name in ("GravityVector", "ImageOrientation", "Magnetometer"):
        if samples := _collect(groups, name):
            s.found[name] = len(samples)
    if s.quat is None and s.gyro is None:
        raise UserError(f"{path}: has no orientation or gyroscope telemetry ({s.camera or 'unknown camera'}); "
                        "use --motion-format vo to estimate the motion from the video")
    return s


def _collect(groups: list, name: str, key: str = "Data") -> list:
    out = []
    for g in groups:
        if isinstance(g, dict) and isinstance(g.get(name), dict) and isinstance(g[name].get(key), list):
            out += g[name][key]
    return out


def _gps_speed(groups: list):
    """GPS 2D speed samples (GoPro GPS5: lat, lon, alt, 2D speed, 3D speed), only with a 2D/3D fix.
    Samples of a payload are spread evenly from its timestamp to the next payload's."""
    payloads = []
    for g in groups:
        gps = g.get("GPS") if isinstance(g, dict) else None
        if not isinstance(gps, dict) or not gps.get("Data") or "TimestampUs" not in gps:
            continue
        fix = gps.get("0x47505346", 3)  # GPSF: 0 none, 2 2D, 3 3D
        scale = gps.get("Scale", [1] * 5)
        rows = [r for r in gps["Data"] if isinstance(r, list) and len(r) >= 4]
        if fix >= 2 and rows and len(scale) >= 4:
            payloads.append((gps["TimestampUs"] / 1e6, np.array([r[3] for r in rows], np.float64) / scale[3]))
    if not payloads:
        return None, None
    t0 = _first_timestamp(groups)
    times, speeds = [], []
    for k, (t, v) in enumerate(payloads):
        t_next = payloads[k + 1][0] if k + 1 < len(payloads) else t + (t - payloads[k - 1][0] if k else 1.0)
        times.append(t - t0 + (t_next - t) * np.arange(len(v)) / len(v))
        speeds.append(v)
    return np.concatenate(times), np.concatenate(speeds)


def _first_timestamp(groups: list) -> float:
    """Telemetry clock at the first video frame: the first orientation (else gyro) payload's timestamp."""
    for name in ("CameraOrientation", "Gyroscope"):
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get(name), dict) and "TimestampUs" in g[name]:
                return g[name]["TimestampUs"] / 1e6
    return 0.0


def poses_from_streams(s: Streams, frame_times: np.ndarray, lag_s: float = 0.0, name: str = "video"):
    """One camera-to-world pose per frame (project convention) from parsed telemetry."""
    frame_times = np.asarray(frame_times, np.float64)
    t = frame_times + lag_s  # telemetry clock of each frame
    if s.quat is not None:
        src_t = s.quat_t
        R_gl = Rotation.from_quat(s.quat)  # image camera (OpenGL axes) -> start-of-recording world
        body = Rotation.from_quat(s.body_quat) if s.body_quat is not None else R_gl
        source = "camera orientation"
    elif s.gyro is not None:
        src_t = s.imu_t
        R_gl = body = integrate_gyro(s.imu_t, s.gyro, s.accl)
        source = "integrated gyroscope" + (" with accelerometer gravity" if s.accl is not None else "")
    else:
        raise UserError(f"{name}: no orientation or gyroscope telemetry")
    if len(src_t) < 2:
        raise UserError(f"{name}: telemetry has fewer than two orientation samples")
    covered = (t >= src_t[0] - COVERAGE_TOLERANCE_S) & (t <= src_t[-1] + COVERAGE_TOLERANCE_S)
    if not covered.any():
        raise UserError(f"{name}: the telemetry ({src_t[0]:.2f}..{src_t[-1]:.2f} s) does not overlap the "
                        f"video's frames ({frame_times[0]:.2f}..{frame_times[-1]:.2f} s); "
                        "use --motion-format vo instead")
    R = Slerp(src_t, R_gl)(np.clip(t, src_t[0], src_t[-1])).as_matrix() @ OPENCV_TO_OPENGL_CAMERA  # (N,3,3)
    up = _world_up(s, src_t, body)
    W = _level_world(up, R[0][:, 2])
    R = W @ R  # (N, 3, 3) camera-to-world, world z up
    speed, translation = None, "none (no GPS fix): position held"
    pos = np.zeros((len(t), 3))
    if s.gps_t is not None and len(s.gps_t) >= 2:
        speed = np.interp(t, s.gps_t, s.gps_speed)
        heading = R[:, :, 2].copy()
        heading[:, 2] = 0.0
        heading /= np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)
        step = np.concatenate([[0.0], np.diff(frame_times)]) * speed
        pos = np.cumsum(step[:, None] * np.concatenate([heading[:1], heading[:-1]]), axis=0)
        translation = "GPS 2D speed along the camera's level heading"
    rates = np.degrees(angular_speed(frame_times, R))
    report = {
        "camera": f"{s.camera} {s.model}".strip(),
        "streams": dict(s.found),
        "orientation_source": source,
        "translation": translation,
        "time_alignment": f"frame time + {lag_s:.4f} s on the telemetry clock (0 = the video's first frame)",
        "lag_s": float(lag_s),
        "telemetry_span_s": [float(src_t[0]), float(src_t[-1])],
        "frames": int(len(t)),
        "frames_outside_telemetry": int((~covered).sum()),
        "median_angular_speed_deg_s": float(np.median(rates)) if len(rates) else 0.0,
        "speed": None if speed is None else [round(float(v), 4) for v in speed],
    }
    if not covered.all():
        report["warning"] = (f"the telemetry covers {covered.sum()} of {len(t)} frames "
                             f"({src_t[0]:.2f}..{src_t[-1]:.2f} s); frames outside are flagged invalid")
    return make_pose(R, pos), covered, report


def _world_up(s: Streams, src_t: np.ndarray, body: Rotation) -> np.ndarray:
    """World up in the orientation's world: the mean accelerometer direction rotated into it."""
    if s.accl is None:
        return body[0].apply([0.0, 1.0, 0.0])  # no accelerometer: assume the first frame level
    inside = (s.imu_t >= src_t[0]) & (s.imu_t <= src_t[-1])
    if not inside.any():
        return body[0].apply([0.0, 1.0, 0.0])
    a = s.accl[inside] / np.maximum(np.linalg.norm(s.accl[inside], axis=1, keepdims=True), 1e-9)
    up = Slerp(src_t, body)(s.imu_t[inside]).apply(a).mean(axis=0)
    return up / np.linalg.norm(up)


def _level_world(up: np.ndarray, forward0: np.ndarray) -> np.ndarray:
    """Rotation W taking a world with `up` to ours (z up), the first camera's heading along +x."""
    x = forward0 - (forward0 @ up) * up
    if np.linalg.norm(x) < 1e-6:  # looking straight up or down: any heading will do
        x = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(up, x), up])  # rows: new axes in old coordinates


def integrate_gyro(t: np.ndarray, gyro: np.ndarray, accl: np.ndarray | None = None,
                   gain: float = MAHONY_GAIN) -> Rotation:
    """Body-to-world orientations at times t (M,) from body rates gyro (M,3) rad/s, with the
    world's up (+y, OpenGL axes) kept on the accelerometer's gravity (`accl` (M,3), points up
    at rest) by Mahony's complementary filter; started level from the first 0.2 s of accl."""
    q = np.zeros((len(t), 4))
    R = np.eye(3)
    if accl is not None:  # start level: rotate the measured up onto world +y
        a0 = accl[t - t[0] <= 0.2].mean(axis=0)
        R = _align(a0 / np.linalg.norm(a0), np.array([0.0, 1.0, 0.0]))
    dts = np.diff(t, prepend=t[0])
    for k in range(len(t)):
        w = gyro[k]
        if accl is not None and gain > 0:
            a = accl[k] / max(np.linalg.norm(accl[k]), 1e-9)
            up_body = R[1]  # world +y in body axes (R maps body -> world, so its row 1)
            w = w + gain * np.cross(a, up_body)  # turns the estimate toward the measured up
        R = R @ Rotation.from_rotvec(w * dts[k]).as_matrix()
        q[k] = Rotation.from_matrix(R).as_quat()
    return Rotation.from_quat(q)


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b."""
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else Rotation.from_rotvec(np.pi * np.array([1.0, 0, 0])).as_matrix()
    return Rotation.from_rotvec(v / np.linalg.norm(v) * np.arctan2(np.linalg.norm(v), c)).as_matrix()


def angular_speed(times: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(N,) times, (N,3,3) rotations -> (N-1,) rad/s between consecutive frames."""
    rel = np.swapaxes(rotations[:-1], 1, 2) @ rotations[1:]
    return rotation_angle(rel) / np.maximum(np.diff(times), 1e-9)


def estimate_lag(times: np.ndarray, video_speed: np.ndarray, telemetry_t: np.ndarray,
                 telemetry_speed: np.ndarray, max_lag_s: float = 0.2, step_s: float = 0.001) -> tuple[float, float]:
    """Lag (s) that best lines up the telemetry's angular speed with the video's (odometry).

    times: (N,) frame times; video_speed: (N-1,) angular speed between consecutive frames;
    telemetry_t, telemetry_speed: (M,) angular speed samples on the telemetry clock (e.g. the
    gyro's norm). Returns (lag, correlation): the lag maximising the normalised correlation,
    searched over +-max_lag_s (telemetry time = frame time + lag), and that correlation."""
    mid = 0.5 * (times[:-1] + times[1:])
    v = video_speed - video_speed.mean()
    best, best_lag = -np.inf, 0.0
    for lag in np.arange(-max_lag_s, max_lag_s + step_s / 2, step_s):
        s = np.interp(mid + lag, telemetry_t, telemetry_speed)
        s = s - s.mean()
        c = float(s @ v) / (np.linalg.norm(s) * np.linalg.norm(v) + 1e-12)
        if c > best:
            best, best_lag = c, float(lag)
    return best_lag, best
