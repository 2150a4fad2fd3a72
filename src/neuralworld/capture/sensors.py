"""The phone's motion log (`--motion-format phone-sensors`) and its camera orientations.

The recorder page (record/page/record.js) writes motion.json beside each video:

  {
    "format": "neuralworld-phone-sensors", "version": 1,
    "clock": "seconds since the MediaRecorder start event (page performance clock)",
    "video": {"mime": "video/webm;codecs=vp8", "width": 1280, "height": 720, "frame_rate": 30},
    "screen_angle": 0,                 # screen.orientation.angle at the start, degrees
    "orientation_absolute": true,      # alpha is a compass heading (else: an arbitrary start)
    "orientation_columns": ["t", "alpha", "beta", "gamma"],
    "orientation": [[t, alpha, beta, gamma], ...],          # DeviceOrientation events, degrees
    "motion_columns": ["t", "acc_gravity_x", "acc_gravity_y", "acc_gravity_z", "acc_x", "acc_y",
                       "acc_z", "rate_alpha", "rate_beta", "rate_gamma", "interval_ms"],
    "motion": [[t, ...], ...],         # DeviceMotion events: m/s^2 in device axes, deg/s
    "xr": null,                        # reserved for WebXR poses
    "user_agent": "..."
  }

Times: every event's timeStamp (the page's performance.now() clock, ms) minus the timeStamp of
MediaRecorder's `start` event, in seconds. The browser's video starts at 0 with the first frame
after that event, so sensor time t and video time t agree within one frame interval; rows before
the start (negative t) are kept so that the first frames have neighbours. Values the browser does
not give are null. A CSV with a header `t,alpha,beta,gamma` (seconds on the video's clock,
degrees) is read the same way, for logs from other tools.

Orientation: DeviceOrientation's alpha, beta, gamma are intrinsic Tait-Bryan angles Z-X'-Y''
(W3C DeviceOrientation Event Specification, section 4.1), rotating the Earth frame (x east,
y north, z up) into the device frame (x to the screen's right, y to its top, z out of the screen)
of a phone in its natural (portrait) orientation: R_device = Rz(alpha) Rx(beta) Ry(gamma), the
device's axes written in Earth coordinates. The Earth frame is our world (z up, right-handed;
geometry.CONVENTION); with a non-absolute alpha its heading is arbitrary but constant, which the
controls (relative motion, gravity roll and pitch) do not see. The rear camera looks out of the
back (-z) with the image's right along the screen's right and the image's down along the
screen's bottom; when the screen is turned by `screen_angle` (counter-clockwise, so the video is
upright on the turned screen) the screen's axes are the device's turned by -screen_angle about z.
So our camera-to-world rotation is R_device @ Rz(-screen_angle) @ diag(1, -1, -1).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from neuralworld.errors import UserError

FORMAT = "neuralworld-phone-sensors"
# the rear camera's axes (x right, y down, z forward) in the axes of a portrait screen
REAR_CAMERA_IN_SCREEN = np.diag([1.0, -1.0, -1.0])
MAX_GAP_S = 0.25  # a frame further than this from any orientation reading has no trusted rotation


@dataclass
class PhoneSensors:
    """A parsed motion log. Times in seconds on the video's clock, rows in increasing time."""
    orientation_t: np.ndarray  # (K,)
    angles: np.ndarray  # (K, 3) alpha, beta, gamma in degrees
    screen_angle: float = 0.0
    absolute: bool = False
    motion_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,)
    acc_gravity: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (M, 3) m/s^2, device axes
    rotation_rate: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (M, 3) deg/s about z, x, y
    video: dict = field(default_factory=dict)

    def camera_rotations(self) -> np.ndarray:
        """(K, 3, 3) camera-to-world rotations of the rear camera at orientation_t."""
        return camera_rotation_from_device(*self.angles.T, screen_angle=self.screen_angle)

    def rotations_at(self, times: np.ndarray, max_gap_s: float = MAX_GAP_S) -> tuple[np.ndarray, np.ndarray]:
        """Camera rotations at frame `times` (slerp between readings) -> ((N,3,3), (N,) valid).
        Frames outside the readings take the nearest one; they, and frames more than `max_gap_s`
        from any reading, are flagged invalid."""
        times = np.asarray(times, np.float64)
        if len(self.orientation_t) == 0:
            return np.broadcast_to(np.eye(3), (len(times), 3, 3)).copy(), np.zeros(len(times), bool)
        rotations = Rotation.from_matrix(self.camera_rotations())
        if len(self.orientation_t) == 1:
            R = np.broadcast_to(rotations.as_matrix()[0], (len(times), 3, 3)).copy()
        else:
            R = Slerp(self.orientation_t, rotations)(np.clip(times, self.orientation_t[0], self.orientation_t[-1])).as_matrix()
        nearest = np.abs(times[:, None] - self.orientation_t[None, :]).min(axis=1) if len(times) else np.zeros(0)
        inside = (times >= self.orientation_t[0] - max_gap_s) & (times <= self.orientation_t[-1] + max_gap_s)
        return R, inside & (nearest <= max_gap_s)


def device_rotation(alpha, beta, gamma) -> np.ndarray:
    """W3C DeviceOrientation angles (degrees, intrinsic Z-X'-Y'') -> (..., 3, 3) rotations whose
    columns are the device's x, y, z axes in Earth coordinates (east, north, up)."""
    angles = np.stack(np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (alpha, beta, gamma))), -1)
    return Rotation.from_euler("ZXY", angles.reshape(-1, 3), degrees=True).as_matrix().reshape(angles.shape[:-1] + (3, 3))


def screen_in_device(screen_angle: float) -> np.ndarray:
    """The turned screen's axes in the device's natural axes: Rz(-screen_angle)."""
    return Rotation.from_euler("z", -float(screen_angle), degrees=True).as_matrix()


def camera_rotation_from_device(alpha, beta, gamma, screen_angle: float = 0.0) -> np.ndarray:
    """DeviceOrientation angles (degrees) -> (..., 3, 3) camera-to-world rotations of the rear camera
    in our convention (geometry.CONVENTION)."""
    return device_rotation(alpha, beta, gamma) @ screen_in_device(screen_angle) @ REAR_CAMERA_IN_SCREEN


def read_phone_sensors(path: Path) -> PhoneSensors:
    """Read a motion log (the recorder's JSON, or a CSV `t,alpha,beta,gamma`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such motion log")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    try:
        log = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON motion log ({e})") from None
    if not isinstance(log, dict) or log.get("format") != FORMAT:
        raise UserError(f"{path}: not a phone sensor log (expected \"format\": \"{FORMAT}\"; "
                        "record one with `neuralworld record`)")
    if log.get("version") != 1:
        raise UserError(f"{path}: phone sensor log version {log.get('version')} is not supported (this reads 1)")
    t, angles = _columns(path, log, "orientation", ["t", "alpha", "beta", "gamma"])
    mt, motion = _columns(path, log, "motion", ["t", "acc_gravity_x", "acc_gravity_y", "acc_gravity_z",
                                                 "rate_alpha", "rate_beta", "rate_gamma"], required=False)
    return PhoneSensors(orientation_t=t, angles=angles, screen_angle=float(log.get("screen_angle") or 0.0),
                        absolute=bool(log.get("orientation_absolute")), motion_t=mt,
                        acc_gravity=motion[:, :3], rotation_rate=motion[:, 3:], video=log.get("video") or {})


def _columns(path: Path, log: dict, key: str, names: list[str], required: bool = True):
    """Rows of `log[key]` -> (times (R,), values (R, len(names)-1)), rows with a null in `names`
    dropped, sorted by time, repeated times dropped."""
    columns = log.get(f"{key}_columns")
    rows = log.get(key) or []
    if not isinstance(rows, list) or not isinstance(columns, list):
        raise UserError(f"{path}: '{key}' must be a list of rows with '{key}_columns' naming them")
    missing = [n for n in names if n not in columns]
    if missing and required:
        raise UserError(f"{path}: '{key}_columns' lacks {', '.join(missing)}")
    if missing or not rows:
        return np.zeros(0), np.zeros((0, len(names) - 1))
    index = [columns.index(n) for n in names]
    try:
        data = np.array([[np.nan if row[i] is None else float(row[i]) for i in index] for row in rows], np.float64)
    except (TypeError, ValueError, IndexError) as e:
        raise UserError(f"{path}: unreadable '{key}' rows ({e})") from None
    return _clean(data)


def _clean(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = data[np.isfinite(data).all(axis=1)]
    data = data[np.argsort(data[:, 0], kind="stable")]
    keep = np.concatenate([[True], np.diff(data[:, 0]) > 0]) if len(data) else np.zeros(0, bool)
    data = data[keep]
    return data[:, 0], data[:, 1:]


def _read_csv(path: Path) -> PhoneSensors:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]] if rows else []
    if not {"t", "alpha", "beta", "gamma"} <= set(header):
        raise UserError(f"{path}: a CSV motion log needs a header with t, alpha, beta, gamma")
    index = [header.index(n) for n in ("t", "alpha", "beta", "gamma")]
    try:
        data = np.array([[float(row[i]) if row[i].strip() else np.nan for i in index] for row in rows[1:] if row],
                        np.float64).reshape(-1, 4)
    except (ValueError, IndexError) as e:
        raise UserError(f"{path}: unreadable rows ({e})") from None
    t, angles = _clean(data)
    return PhoneSensors(orientation_t=t, angles=angles)


def phone_sensor_poses(path: Path, frames: np.ndarray, times: np.ndarray, intrinsics: dict | None = None,
                       fov_deg: float | None = None, time_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Camera poses of a phone recording: rotations from its motion log, translation from the video.

    frames: (N, H, W, 3) uint8 at working size; times: (N,) seconds on the video's clock
    (`time_offset` is added to them to reach the log's clock). The translation comes from visual
    odometry (capture/odometry.py) run with the sensors' rotations; when it cannot tell (a camera
    that never moves) the translation is zero and the report says so. Without any orientation
    reading the whole motion comes from odometry. Returns (poses (N,4,4), valid (N,), report)."""
    from neuralworld.capture.odometry import estimate_poses
    from neuralworld.geometry import make_pose

    path = Path(path)
    sensors = read_phone_sensors(path)
    times = np.asarray(times, np.float64)
    report = {"method": "phone sensors (W3C DeviceOrientation) + visual odometry for translation",
              "log": FORMAT, "orientation_rows": int(len(sensors.orientation_t)),
              "motion_rows": int(len(sensors.motion_t)), "absolute_heading": sensors.absolute,
              "screen_angle": sensors.screen_angle}
    if len(sensors.orientation_t) == 0:
        poses, valid, odometry = estimate_poses(frames, times, intrinsics, fov_deg=fov_deg, name=str(path))
        report.update(rotation_source="video (the log has no orientation readings)", translation_source="video",
                      odometry=odometry)
        return poses, valid, report
    rotations, valid = sensors.rotations_at(times + time_offset)
    report.update(rotation_source="phone sensors", frames_without_orientation=int((~valid).sum()),
                  log_span_s=[round(float(sensors.orientation_t[0]), 4), round(float(sensors.orientation_t[-1]), 4)])
    try:
        poses, vo_valid, odometry = estimate_poses(frames, times, intrinsics, fov_deg=fov_deg,
                                                   rotations=rotations, name=str(path))
    except UserError as e:  # nothing to estimate from (a still camera): orientation only
        report.update(translation_source="none: zero translation", translation_note=str(e))
        return make_pose(rotations, np.zeros((len(times), 3))), valid, report
    report.update(translation_source="visual odometry", odometry=odometry)
    return make_pose(rotations, poses[:, :3, 3]), valid & vo_valid, report
