"""Motion logs that come beside a recording, read into one form and aligned to the frames.

Formats (`auto` tells them apart by content):
  kitti     KITTI odometry poses: 12 numbers per line, the row-major 3x4 camera-to-world [R|t]
            of one frame per line, no header. Its world is the first camera's frame (OpenCV
            axes: y down, z forward), turned here into our z-up world (geometry.OPENCV_WORLD_TO_ZUP).
            Times: --times FILE, else `times.txt` beside the pose file, else the frames' own.
            Intrinsics: `calib.txt` beside it (line `P0: ` + 12 numbers), when present.
  tum       TUM trajectory: `timestamp tx ty tz qx qy qz qw` per line, `#` comments. Assumed:
            OpenCV camera axes and a z-up world, as the TUM RGB-D motion-capture ground truth.
  pose-csv  A CSV with a header, as phone AR loggers write: a time column, a position and a
            quaternion (column names below). Assumed (--pose-axes arkit, the default for CSVs):
            ARKit/ARCore axes, camera x right, y up, z backward and a y-up world; give
            --pose-axes opencv for OpenCV camera axes in a z-up world.
  actions   A CSV with a header: a time column (or a frame column) and named numeric columns
            (e.g. `steering,throttle`); those become the controls. Columns whose first value is
            not a number are left out (with a note). The names become the capture's columns, so
            each must be unique (case aside), not `t` or `valid`, and free of commas and quotes.

Every value of a pose or action must be a number within +-1e9 and every time within +-1e12 s
(format.MAX_ABS_VALUE, MAX_ABS_TIME_S): a log that holds 1e308 or NaN is refused in one line.

CSV column names (case and punctuation ignored: `Pos.X` = `pos_x`):
  time      t, time, times, timestamp, seconds, sec, secs, time_s, timestamp_s (seconds);
            the same with _ms, _us or _ns (milli-, micro-, nanoseconds)
  frame     frame, frame_index, frame_idx, frame_number, frame_id (0-based frame of the source)
  position  x|tx|px|pos_x|position_x|p_x|t_x|translation_x|trans_x, the same for y and z
  rotation  qx|q_x|quat_x|quaternion_x|rot_x|rotation_x|orientation_x|ori_x, same for y, z, w

Alignment to the frames (`align`):
  * One row per frame: a KITTI file, a CSV with a frame column, or a CSV with exactly as many
    rows as the source has frames. Row i belongs to frame i (or to its `frame`). When such a log
    has times, they become the frames' times: they are the recording's real capture times
    (a log written at capture time beats a container re-timed to a constant rate, as in the
    Donkey Car segments). Frames that no row names are dropped.
  * Any other log is aligned by time: its times are seconds on the frames' clock (a video's
    first frame is at 0; --times gives the frames other times; --time-offset shifts the log).
    Poses are interpolated, positions linearly and rotations by slerp; actions hold their last
    value (a command stays in force until the next one; interpolating would invent values that
    were never sent, e.g. half a key press). Frames outside the log (give or take half its
    median step) are dropped, with a warning saying how many; a log that covers none is an
    error naming both time ranges. Frames inside a gap of the log longer than max(0.5 s,
    5 x its median step) keep an interpolated pose but are marked not valid.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralworld.capture.format import check_action_names, check_times, check_values
from neuralworld.errors import UserError
from neuralworld.geometry import (OPENCV_TO_OPENGL_CAMERA, OPENCV_WORLD_TO_ZUP, YUP_WORLD_TO_ZUP,
                                  change_camera, change_world, interpolate_poses, make_pose,
                                  quat_to_matrix)

FILE_FORMATS = ("kitti", "tum", "pose-csv", "actions")
# Axes of poses written by other tools (`to_our_axes`): camera axes and world up of each.
AXES = {
    "opencv": "camera x right, y down, z forward; world z up (ours, TUM)",
    "kitti": "camera x right, y down, z forward; world y down (KITTI; COLMAP's first camera)",
    "arkit": "camera x right, y up, z back; world y up (ARKit, ARCore, Record3D, Polycam)",
    "opengl": "camera x right, y up, z back; world z up (nerfstudio, instant-ngp, Blender)",
    "opencv-yup": "camera x right, y down, z forward; world y up (Stray Scanner: ARKit's world)",
}
POSE_AXES = ("auto",) + tuple(AXES)
DEFAULT_AXES = {"kitti": "kitti", "tum": "opencv", "pose-csv": "arkit"}

_TIME_UNITS = {"": 1.0, "_s": 1.0, "_ms": 1e-3, "_us": 1e-6, "_ns": 1e-9}
TIME_NAMES = {base + suffix: scale for base in ("t", "time", "times", "timestamp", "seconds", "sec", "secs")
              for suffix, scale in _TIME_UNITS.items()}
FRAME_NAMES = ("frame", "frame_index", "frame_idx", "frame_number", "frame_id")
_POSITION = ("{a}", "t{a}", "p{a}", "pos_{a}", "position_{a}", "p_{a}", "t_{a}", "translation_{a}", "trans_{a}")
_ROTATION = ("q{a}", "q_{a}", "quat_{a}", "quaternion_{a}", "rot_{a}", "rotation_{a}", "orientation_{a}", "ori_{a}")


@dataclass
class MotionLog:
    """A motion file read into our conventions, before alignment to frames."""
    path: Path
    format: str  # one of FILE_FORMATS
    times: np.ndarray | None  # (M,) seconds, or None when the log has no times
    times_path: Path | None = None  # where the times came from, when not from `path` itself
    frame_index: np.ndarray | None = None  # (M,) int: the frame of each row, when the log names it
    poses: np.ndarray | None = None  # (M, 4, 4) camera-to-world, our axes
    actions: np.ndarray | None = None  # (M, K)
    names: list[str] = field(default_factory=list)  # action names
    intrinsics: dict | None = None  # {"fx","fy","cx","cy"} at the source's size (KITTI calib.txt)
    intrinsics_from: str | None = None  # the file the intrinsics came from
    pose_axes: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "actions" if self.actions is not None else "pose"

    def __len__(self) -> int:
        return len(self.times if self.times is not None else self.frame_index if self.frame_index is not None
                   else self.poses if self.poses is not None else self.actions)


@dataclass
class Aligned:
    """A log aligned to frames: which source frames are kept and their times and motion."""
    keep: np.ndarray  # (n,) indices of the kept source frames, increasing
    times: np.ndarray  # (n,) seconds on the source's clock
    valid: np.ndarray  # (n,) bool
    poses: np.ndarray | None = None  # (n, 4, 4)
    actions: np.ndarray | None = None  # (n, K)
    notes: list[str] = field(default_factory=list)
    own_times: bool = False  # the times are the log's own (per-frame log with times)


# ---------------------------------------------------------------- reading

def read_motion(path, motion_format: str = "auto", pose_axes: str = "auto", times_path=None) -> MotionLog:
    """Read a motion file; `motion_format` "auto" recognises the format by content."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected a KITTI, TUM or CSV motion log)") from None
    lines = _content_lines(text)
    if not lines:
        raise UserError(f"{path}: the file is empty")
    found = detect_format(path, lines)
    if motion_format == "auto":
        motion_format = found
    elif found != motion_format and ({"kitti", "tum"} & {found, motion_format}):
        raise UserError(f"{path}: looks like a {found} file, not {motion_format} "
                        f"(use --motion-format {found} or auto)")
    if motion_format == "kitti":
        log = _read_kitti(path, lines, times_path)
    elif motion_format == "tum":
        log = _read_tum(path, lines)
    else:
        log = _read_csv(path, lines, motion_format)
    if log.kind == "pose":
        axes = DEFAULT_AXES[log.format] if pose_axes == "auto" else pose_axes
        log.poses, log.pose_axes = to_our_axes(log.poses, axes), axes
    if log.times is not None:
        check_times(log.times, str(path))
    return log


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are not blank or `#` comments; a first line like
    `#timestamp,x,y` is a CSV header and is kept (without the `#`)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        line = line.strip()
        if line.startswith("#") and not out and "," in line and re.search("[a-zA-Z]", line):
            line = line.lstrip("#").strip()
        if line and not line.startswith("#"):
            out.append((i + 1, line))
    return out


def detect_format(path: Path, lines: list[tuple[int, str]]) -> str:
    """kitti | tum | pose-csv | actions, from the first content line; UserError if none fits."""
    first = lines[0][1]
    fields = _split(first)
    if all(_is_number(f) for f in fields):
        if len(fields) == 12:
            return "kitti"
        if len(fields) == 8:
            return "tum"
        raise UserError(f"{path}: unknown column layout: {len(fields)} numbers per line and no header "
                        "(expected 12 for KITTI poses, 8 for TUM `timestamp tx ty tz qx qy qz qw`, or a "
                        "CSV with a header)")
    names = [normalise(n) for n in fields]
    if _pose_columns(names) is not None:
        return "pose-csv"
    if any(n in TIME_NAMES or n in FRAME_NAMES for n in names) and len(names) >= 2:
        return "actions"
    raise UserError(f"{path}: unknown column layout (header {', '.join(fields)}): expected a time column "
                    "(t, time or timestamp) or a frame column, with a position and quaternion "
                    "(x y z qx qy qz qw) for poses or named numeric columns for actions")


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lstrip("#").lower()).strip("_")


def _split(line: str) -> list[str]:
    return [f for f in re.split(r"[,;\t ]+", line.strip()) if f]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _numbers(path: Path, lines: list[tuple[int, str]], width: int, what: str) -> np.ndarray:
    """Whitespace-separated numeric rows -> (M, width) float64, checked."""
    out = np.empty((len(lines), width))
    for i, (n, line) in enumerate(lines):
        fields = _split(line)
        if len(fields) != width:
            raise UserError(f"{path}: line {n} has {len(fields)} numbers, expected {width} ({what})")
        try:
            out[i] = [float(f) for f in fields]
        except ValueError:
            raise UserError(f"{path}: line {n} is not all numbers ({what})") from None
    _check_finite(path, out, [n for n, _ in lines])
    return out


def _check_finite(path: Path, values: np.ndarray, line_numbers) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise UserError(f"{path}: NaN or infinite value on line {line_numbers[int(np.flatnonzero(bad)[0])]}")


def _read_kitti(path: Path, lines, times_path) -> MotionLog:
    rows = _numbers(path, lines, 12, "KITTI: a row-major 3x4 pose per line")
    check_values(rows, str(path), [n for n, _ in lines])
    M = rows.reshape(-1, 3, 4)
    log = MotionLog(path, "kitti", None, poses=make_pose(orthonormal(M[:, :, :3]), M[:, :, 3]))
    times_path = Path(times_path) if times_path else path.with_name("times.txt")
    if times_path.is_file():
        log.times, log.times_path = read_times(times_path), times_path
        if len(log.times) != len(rows):
            raise UserError(f"{times_path}: {len(log.times)} times for the {len(rows)} poses of {path}")
    calib = path.with_name("calib.txt")
    if calib.is_file():
        log.intrinsics, log.intrinsics_from = read_kitti_calib(calib), str(calib)
    return log


def _read_tum(path: Path, lines) -> MotionLog:
    rows = _numbers(path, lines, 8, "TUM: timestamp tx ty tz qx qy qz qw")
    check_values(rows[:, 1:], str(path), [n for n, _ in lines], ["tx", "ty", "tz", "qx", "qy", "qz", "qw"])
    return MotionLog(path, "tum", rows[:, 0], poses=make_pose(_quat_rotations(path, rows[:, 4:8]), rows[:, 1:4]))


def _quat_rotations(path: Path, q: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(q, axis=1)
    if (norm < 1e-6).any():
        raise UserError(f"{path}: row {int(np.flatnonzero(norm < 1e-6)[0]) + 1} has a zero quaternion")
    return quat_to_matrix(q / norm[:, None])


def orthonormal(R: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices (text files round their entries)."""
    u, _, vt = np.linalg.svd(R)
    return u @ vt


def read_times(path) -> np.ndarray:
    """A times file: the first number of each line is a time in seconds (KITTI times.txt, TUM rgb.txt)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such times file")
    lines = [(i + 1, line.strip()) for i, line in enumerate(path.read_text().splitlines())]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"{path}: the times file is empty")
    out = []
    for n, line in lines:
        try:
            out.append(float(_split(line)[0]))
        except ValueError:
            raise UserError(f"{path}: line {n} does not start with a time in seconds") from None
    times = np.array(out)
    check_times(times, str(path))
    return times


def read_kitti_calib(path) -> dict | None:
    """fx, fy, cx, cy of camera 0 from a KITTI calib.txt (`P0: ` + the 3x4 projection matrix)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(("P0:", "P_rect_00:")):
            try:
                P = np.array([float(v) for v in line.split(":", 1)[1].split()]).reshape(3, 4)
            except ValueError:
                raise UserError(f"{path}: cannot read the P0 projection matrix") from None
            return {"fx": P[0, 0], "fy": P[1, 1], "cx": P[0, 2], "cy": P[1, 2]}
    return None


def _pose_columns(names: list[str]) -> list[int] | None:
    """Indices of x, y, z, qx, qy, qz, qw in a normalised header, or None."""
    found = []
    for patterns in [_POSITION] * 3 + [_ROTATION] * 4:
        axis = "xyzxyzw"[len(found)]
        hit = next((names.index(p.format(a=axis)) for p in patterns if p.format(a=axis) in names), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def _read_csv(path: Path, lines: list[tuple[int, str]], motion_format: str) -> MotionLog:
    delimiter = next((d for d in ",;\t" if d in lines[0][1]), None)  # None: whitespace-separated
    rows = [next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split() for _, line in lines]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    line_numbers = [n for n, _ in lines[1:]]
    names = [normalise(n) for n in header]
    if not body:
        raise UserError(f"{path}: has a header but no rows")
    for n, r in zip(line_numbers, body):
        if len(r) != len(header):
            raise UserError(f"{path}: line {n} has {len(r)} fields, the header has {len(header)}")
    time_cols = [i for i, n in enumerate(names) if n in TIME_NAMES]
    frame_cols = [i for i, n in enumerate(names) if n in FRAME_NAMES]
    for what, cols in (("time", time_cols), ("frame", frame_cols)):
        if len(cols) > 1:
            raise UserError(f"{path}: {len(cols)} {what} columns ({', '.join(header[i] for i in cols)}): "
                            "keep one (remove or rename the others)")
    time_col = time_cols[0] if time_cols else None
    frame_col = frame_cols[0] if frame_cols else None
    pose_cols = _pose_columns(names)
    if motion_format == "pose-csv" and pose_cols is None:
        raise UserError(f"{path}: unknown column layout for a pose CSV (header {', '.join(header)}): "
                        "expected a position x y z (or tx, pos_x, ...) and a quaternion qx qy qz qw")
    if motion_format == "actions":
        skip = {time_col, frame_col}
        value_cols = [i for i in range(len(names)) if i not in skip]
    else:
        value_cols = pose_cols
    log = MotionLog(path, motion_format, None)
    numeric = []
    for i in value_cols:
        if _is_number(body[0][i]):
            numeric.append(i)
        else:
            log.notes.append(f"column {header[i]!r} is not numeric: left out")
    if not numeric or (motion_format == "pose-csv" and len(numeric) < 7):
        raise UserError(f"{path}: unknown column layout (header {', '.join(header)}): no numeric value "
                        "columns besides time and frame")
    if motion_format == "actions":
        check_action_names([header[c] for c in numeric], str(path))
    used = numeric + [c for c in (time_col, frame_col) if c is not None]
    data = np.empty((len(body), len(used)))
    for r, row in enumerate(body):
        try:
            data[r] = [float(row[c]) for c in used]
        except ValueError:
            bad = next(c for c in used if not _is_number(row[c]))
            raise UserError(f"{path}: line {line_numbers[r]}, column {header[bad]!r}: {row[bad]!r} "
                            "is not a number") from None
    _check_finite(path, data, line_numbers)
    check_values(data[:, :len(numeric)], str(path), line_numbers, [header[c] for c in numeric])
    col = {c: data[:, k] for k, c in enumerate(used)}
    if time_col is not None:
        log.times = col[time_col] * TIME_NAMES[names[time_col]]
    if frame_col is not None:
        index = col[frame_col]
        if (index != np.round(index)).any() or (index < 0).any() or (np.diff(index) <= 0).any():
            raise UserError(f"{path}: column {header[frame_col]!r} must hold increasing frame numbers from 0")
        log.frame_index = index.astype(np.int64)
    if motion_format == "pose-csv":
        values = np.stack([col[c] for c in pose_cols], axis=1)
        log.poses = make_pose(_quat_rotations(path, values[:, 3:7]), values[:, :3])
    else:
        log.actions = np.stack([col[c] for c in numeric], axis=1)
        log.names = [header[c] for c in numeric]
    return log


def to_our_axes(poses: np.ndarray, axes: str) -> np.ndarray:
    """Camera-to-world poses in a source's axes (one of AXES) -> OpenCV camera axes in a z-up world."""
    if axes not in AXES:
        raise ValueError(f"unknown pose axes {axes!r}")
    if axes in ("arkit", "opengl"):  # OpenGL camera (x right, y up, z back)
        poses = change_camera(poses, OPENCV_TO_OPENGL_CAMERA)
    if axes == "kitti":  # world = an OpenCV camera's frame, y down
        return change_world(poses, OPENCV_WORLD_TO_ZUP)
    if axes in ("arkit", "opencv-yup"):  # world y up
        return change_world(poses, YUP_WORLD_TO_ZUP)
    return poses


# ---------------------------------------------------------------- alignment

def align(log: MotionLog, frame_times: np.ndarray, time_offset: float = 0.0, what: str = "the frames") -> Aligned:
    """Per-frame motion for the source frames at `frame_times` (N,), rules in the module doc."""
    frame_times = np.asarray(frame_times, np.float64)
    n, m = len(frame_times), len(log)
    if log.kind == "pose" and m < 2:
        raise UserError(f"{log.path}: only {m} pose row (need at least 2)")
    per_frame = log.format == "kitti" or log.frame_index is not None or (log.times is None and m == n) or (
        log.format in ("pose-csv", "actions") and m == n)
    if per_frame:
        return _align_rows(log, frame_times)
    if log.times is None:
        raise UserError(f"{log.path}: {m} rows for {n} frames and neither a time nor a frame column "
                        "(give each row a time, or one row per frame)")
    return _align_times(log, frame_times, log.times + time_offset, what)


def _align_rows(log: MotionLog, frame_times: np.ndarray) -> Aligned:
    n, m = len(frame_times), len(log)
    notes = []
    if log.frame_index is None:
        if m != n:
            raise UserError(f"{log.path}: {m} rows for {n} frames (a {log.format} file has one row per frame)")
        keep = np.arange(n)
    else:
        keep = log.frame_index
        if keep[-1] >= n:
            raise UserError(f"{log.path}: names frame {keep[-1]} but the source has only {n} frames (0..{n - 1})")
        if m < n:
            notes.append(f"{n - m} of {n} frames have no row in {log.path.name}: dropped")
    times = log.times if log.times is not None else frame_times[keep]
    return Aligned(keep, np.asarray(times, np.float64), np.ones(len(keep), bool), log.poses, log.actions, notes,
                   own_times=log.times is not None)


def _align_times(log: MotionLog, frame_times: np.ndarray, t: np.ndarray, what: str) -> Aligned:
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    slack = 0.5 * step
    covered = (frame_times >= t[0] - slack) & (frame_times <= t[-1] + slack)
    if not covered.any():
        raise UserError(f"{log.path}: covers {t[0]:.3f}..{t[-1]:.3f} s but {what} span "
                        f"{frame_times[0]:.3f}..{frame_times[-1]:.3f} s: they do not overlap (log times must be "
                        "seconds on the frames' clock, first video frame at 0; shift them with --time-offset)")
    keep = np.flatnonzero(covered)
    notes = []
    before, after = int(keep[0]), len(frame_times) - 1 - int(keep[-1])
    if before or after:
        notes.append(f"{log.path.name} covers {t[0]:.3f}..{t[-1]:.3f} s, {what} span {frame_times[0]:.3f}.."
                     f"{frame_times[-1]:.3f} s: dropped {before} frames at the start and {after} at the end")
    ft = frame_times[keep]
    valid = np.ones(len(keep), bool)
    if log.kind == "pose":
        poses = interpolate_poses(t, log.poses, ft)
        j = np.clip(np.searchsorted(t, ft), 1, len(t) - 1)  # the log step each frame falls in
        gap = t[j] - t[j - 1]
        valid = gap <= max(0.5, 5 * step)
        if not valid.all():
            notes.append(f"{int((~valid).sum())} frames fall in gaps of {log.path.name}: marked not valid")
        return Aligned(keep, ft, valid, poses=poses, notes=notes)
    j = np.clip(np.searchsorted(t, ft, side="right") - 1, 0, len(t) - 1)  # last value at or before
    return Aligned(keep, ft, valid, actions=log.actions[j], notes=notes)
