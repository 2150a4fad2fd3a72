"""The capture format: one folder, written by `import`, `synth` and `record`, read by the rest.

  capture.json  what the capture is (see `CaptureWriter.finish` for the keys)
  frames.npy    (N, H, W, 3) uint8 RGB at working resolution; memory-mapped on read, so a
                training window is a slice of the file (no decoding; see benchmarks/capture_io.py)
  frames.csv    one row per frame: t (seconds, increasing), then the motion columns:
                pose:    tx ty tz qx qy qz qw roll pitch valid   (camera-to-world, geometry.CONVENTION)
                actions: one column per action name, then valid
                none:    valid
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from neuralworld.controls import ACTION_KIND, POSE_CONTROL_NAMES, POSE_KIND, pose_controls
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_dir, atomic_write_json, read_json
from neuralworld.geometry import CONVENTION, make_pose, matrix_to_quat, quat_to_matrix, roll_pitch

FORMAT = "neuralworld-capture"
VERSION = 1
_NPY_HEADER_BYTES = 128  # fixed so the header can be rewritten once the frame count is known
RESERVED_COLUMNS = ("t", "valid")  # frames.csv's own columns, beside the motion's
# Pose entries (metres) and action values beyond this are refused: no camera moves 1e9 m, the
# controls are float32 in training (their statistics square them), and a log that holds such a
# value (1e308, a stray epoch time) is broken rather than meant.
MAX_ABS_VALUE = 1e9
MAX_ABS_TIME_S = 1e12  # 31,700 years: any clock's seconds since its epoch, not 1e308 (nor nanoseconds)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy version 1.0 header for uint8 data of `shape`, padded to _NPY_HEADER_BYTES."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    body = text.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class CaptureWriter:
    """Writes a capture into a temporary folder that becomes `path` only when `finish` succeeds.

        with CaptureWriter(out, width=256, height=192, force=False) as w:
            for image in frames:            # (H, W, 3) uint8 RGB
                w.add(image)
            w.finish(times, source="walk.mp4", fps=30.0, poses=poses, motion_source="kitti")
    """

    def __init__(self, path: Path, width: int, height: int, force: bool = False):
        self.path, self.width, self.height, self.force = Path(path), int(width), int(height), force
        self.count = 0
        self._finished = False

    def __enter__(self):
        self._ctx = atomic_dir(self.path, self.force)
        self.tmp = self._ctx.__enter__()
        self._file = open(self.tmp / "frames.npy", "wb")
        self._file.write(_npy_header((0, self.height, self.width, 3)))
        return self

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame {self.count}: expected ({self.height}, {self.width}, 3) uint8, "
                             f"got {image.shape} {image.dtype}")
        self._file.write(np.ascontiguousarray(image).tobytes())
        self.count += 1

    def finish(self, times, *, source: str, fps: float | None = None, poses=None, actions=None,
               action_names=None, valid=None, motion_source: str | None = None,
               intrinsics: dict | None = None, extra: dict | None = None) -> None:
        """Write the table and capture.json. Exactly one of `poses` ((N,4,4) camera-to-world) or
        `actions` ((N,K) with `action_names`) or neither (motion kind "none")."""
        n = self.count
        times = np.asarray(times, np.float64)
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
        if n == 0:
            raise UserError(f"{source}: no frames")
        if times.shape != (n,) or valid.shape != (n,):
            raise ValueError(f"{n} frames but {times.shape} times and {valid.shape} valid flags")
        check_times(times, source)
        columns = {"t": times}
        if poses is not None:
            poses = np.asarray(poses, np.float64)
            check_values(poses, f"{source}: poses")
            rp = roll_pitch(poses[:, :3, :3])
            q = matrix_to_quat(poses[:, :3, :3])
            for i, name in enumerate(["tx", "ty", "tz"]):
                columns[name] = poses[:, i, 3]
            for i, name in enumerate(["qx", "qy", "qz", "qw"]):
                columns[name] = q[:, i]
            columns["roll"], columns["pitch"] = rp[:, 0], rp[:, 1]
            motion = {"kind": "pose", "source": motion_source}
            controls = {"kind": POSE_KIND, "names": POSE_CONTROL_NAMES}
        elif actions is not None:
            actions = np.asarray(actions, np.float64).reshape(n, -1)
            names = list(action_names)
            check_action_names(names, source)
            check_values(actions, f"{source}: actions", columns=names)
            for i, name in enumerate(names):
                columns[name] = actions[:, i]
            motion = {"kind": "actions", "source": motion_source, "names": names}
            ranges = [[float(actions[:, i].min()), float(actions[:, i].max())] for i in range(len(names))]
            controls = {"kind": ACTION_KIND, "names": names, "ranges": ranges}
        else:
            motion = {"kind": "none", "source": None}
            controls = {"kind": "none", "names": []}
        columns["valid"] = valid.astype(np.int64)
        _write_table(self.tmp / "frames.csv", columns)
        duration = float(times[-1] - times[0]) if n > 1 else 0.0
        if fps is None:
            fps = (n - 1) / duration if duration > 0 else 0.0
        meta = {
            "format": FORMAT, "version": VERSION,
            "source": str(source),
            "frames": n, "width": self.width, "height": self.height,
            "fps": round(float(fps), 6), "duration_s": round(duration, 6),
            "motion": motion, "controls": controls,
            "intrinsics": intrinsics,
            "convention": CONVENTION,
            "valid_frames": int(valid.sum()),
        }
        meta.update(extra or {})
        self._file.seek(0)
        self._file.write(_npy_header((n, self.height, self.width, 3)))
        self._file.close()
        atomic_write_json(self.tmp / "capture.json", meta)
        self._check_written(times, valid, poses, actions)
        self._finished = True

    def _check_written(self, times, valid, poses, actions) -> None:
        """Read the capture back as the later steps will, before it is committed: one that does
        not hold what was given (a bug) fails here instead of misleading `train`."""
        try:
            cap = Capture(self.tmp)
        except UserError as e:
            raise RuntimeError(f"{self.path}: the capture written does not read back ({e})") from None
        # frames.csv keeps 10 significant digits; rotations pass through quaternions
        same = (np.allclose(cap.times, times, rtol=1e-9, atol=0) and (cap.valid == valid).all()
                and (poses is None or np.allclose(cap.poses, poses, rtol=1e-6, atol=1e-6))
                and (actions is None or np.allclose(cap.actions, actions, rtol=1e-9, atol=0)))
        if not same:
            raise RuntimeError(f"{self.path}: the capture written does not read back as it was given")

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            with contextlib.suppress(OSError):  # the error that stopped the writing is the one to tell
                self._file.close()
            self._ctx.__exit__(exc_type, exc, tb)  # removes the temporary folder (a full disk: a UserError)
            return False
        try:
            self._file.close()  # flushes, so a full disk can show here
            if not self._finished:
                raise RuntimeError("CaptureWriter closed without finish()")
        except BaseException as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)
        return False


def check_times(times: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(times)):
        raise UserError(f"{what}: timestamps contain NaN or infinite values")
    far = np.flatnonzero(np.abs(times) > MAX_ABS_TIME_S)
    if len(far):
        raise UserError(f"{what}: timestamp {times[far[0]]:g} (row {far[0]}) is not within +-{MAX_ABS_TIME_S:g} s "
                        "(are these seconds?)")
    bad = np.flatnonzero(np.diff(times) <= 0)
    if len(bad):
        raise UserError(f"{what}: timestamps are not increasing (at row {bad[0] + 1}: "
                        f"{times[bad[0]]:.6f} then {times[bad[0] + 1]:.6f})")


def check_values(values: np.ndarray, what: str, rows=None, columns=None) -> None:
    """Refuse NaN, infinities and values beyond +-MAX_ABS_VALUE in `values` (N, K...): a UserError
    naming `what` and the first bad value's row (`rows[i]`, a line number, when given; else row
    i) and column (`columns[j]`, when given)."""
    v = np.asarray(values, np.float64).reshape(len(values), -1)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(v) <= MAX_ABS_VALUE)  # NaN compares False
    if bad.any():
        i, j = np.argwhere(bad)[0]
        where = (f"row {i}" if rows is None else f"line {rows[i]}") + (f", column {columns[j]!r}" if columns else "")
        raise UserError(f"{what}, {where}: {v[i, j]:g} is not a number within +-{MAX_ABS_VALUE:g} "
                        "(fix the log, or leave that column out)")


def check_action_names(names: list[str], what: str) -> None:
    """Action names become columns of frames.csv: refuse names it cannot hold as they are (empty,
    with a comma, a quote or a line break), its own columns (t, valid) and repeated names."""
    seen = {}
    for name in names:
        if not name.strip() or name != name.strip() or not name.isprintable() or any(c in name for c in ',"'):
            raise UserError(f"{what}: column name {name!r} cannot be stored in a capture (rename it: "
                            "no commas, quotes, line breaks or surrounding spaces)")
        key = name.lower()
        if key in RESERVED_COLUMNS:
            raise UserError(f"{what}: a value column named {name!r} would clash with the capture's own "
                            f"{key!r} column (rename it)")
        if key in seen:
            raise UserError(f"{what}: two columns named {seen[key]!r} and {name!r} (rename or remove one)")
        seen[key] = name


def _write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    names = list(columns)
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    data = np.stack([np.asarray(columns[k], np.float64) for k in names], axis=1)
    for row in data:
        buf.write(",".join(f"{v:.10g}" for v in row) + "\n")
    path.write_text(buf.getvalue())


class Capture:
    """A capture on disk, checked on open. Frames are memory-mapped (N, H, W, 3) uint8."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such capture folder")
        self.meta = read_json(self.path / "capture.json", "capture.json (is this a capture folder?)")
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise UserError(f"{self.path}: capture.json is not a neuralworld capture")
        if self.meta.get("version") != VERSION:
            raise UserError(f"{self.path}: capture format version {self.meta.get('version')} is not "
                            f"supported (this neuralworld reads version {VERSION})")
        _check_meta(self.meta, self.path / "capture.json")
        try:
            self.frames = np.load(self.path / "frames.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise UserError(f"{self.path / 'frames.npy'}: cannot read frames ({e})") from None
        n, h, w = self.meta["frames"], self.meta["height"], self.meta["width"]
        if self.frames.shape != (n, h, w, 3) or self.frames.dtype != np.uint8:
            raise UserError(f"{self.path / 'frames.npy'}: holds {self.frames.shape} {self.frames.dtype}, "
                            f"capture.json says ({n}, {h}, {w}, 3) uint8")
        self.table = _read_table(self.path / "frames.csv")
        if len(self.table["t"]) != n:
            raise UserError(f"{self.path / 'frames.csv'}: {len(self.table['t'])} rows for {n} frames")
        check_times(self.table["t"], str(self.path / "frames.csv"))
        motion = self.meta["motion"]
        needed = [*RESERVED_COLUMNS, *(POSE_TABLE_COLUMNS if motion["kind"] == "pose" else
                                       motion.get("names", []) if motion["kind"] == "actions" else [])]
        missing = [c for c in needed if c not in self.table]
        if missing:
            raise UserError(f"{self.path / 'frames.csv'}: no column {', '.join(map(repr, missing))} "
                            f"(a {motion['kind']} capture needs {', '.join(needed)}; import it again)")

    def __len__(self) -> int:
        return int(self.meta["frames"])

    def __repr__(self) -> str:
        return f"Capture({str(self.path)!r}, {len(self)} frames {self.width}x{self.height}, {self.motion_kind})"

    @property
    def width(self) -> int:
        return int(self.meta["width"])

    @property
    def height(self) -> int:
        return int(self.meta["height"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def times(self) -> np.ndarray:
        return self.table["t"]

    @property
    def valid(self) -> np.ndarray:
        return self.table["valid"] > 0.5

    @property
    def motion_kind(self) -> str:
        return self.meta["motion"]["kind"]

    @property
    def control_kind(self) -> str:
        return self.meta["controls"]["kind"]

    @property
    def control_names(self) -> list[str]:
        return list(self.meta["controls"]["names"])

    @property
    def poses(self) -> np.ndarray | None:
        """(N,4,4) camera-to-world, or None for a capture without poses."""
        if self.motion_kind != "pose":
            return None
        t = self.table
        q = np.stack([t["qx"], t["qy"], t["qz"], t["qw"]], axis=1)
        return make_pose(quat_to_matrix(q), np.stack([t["tx"], t["ty"], t["tz"]], axis=1))

    @property
    def actions(self) -> np.ndarray | None:
        """(N,K) action values in control_names order, or None."""
        if self.motion_kind != "actions":
            return None
        return np.stack([self.table[k] for k in self.meta["motion"]["names"]], axis=1)

    def controls(self) -> np.ndarray:
        """(N, C) float32: row i is the control that leads from frame i-1 to frame i."""
        if self.motion_kind == "pose":
            return pose_controls(self.poses, self.times, self.valid)
        if self.motion_kind == "actions":
            return self.actions.astype(np.float32)
        raise UserError(f"{self.path}: this capture has no motion (import it with a pose or action "
                        "log, or with --motion-format vo to estimate motion from the video)")


POSE_TABLE_COLUMNS = ("tx", "ty", "tz", "qx", "qy", "qz", "qw", "roll", "pitch")


def _check_meta(meta, path: Path) -> None:
    """One line naming the first field of capture.json that a hand edit or damage made wrong."""
    def bad(field: str, want: str):
        raise UserError(f"{path}: {field} is {json.dumps(meta.get(field))[:60]}, expected {want} "
                        "(the file is damaged or was edited; import the capture again)")

    for field in ("frames", "width", "height"):
        if type(meta.get(field)) is not int or meta[field] < 1:
            bad(field, "a whole number of 1 or more")
    fps = meta.get("fps")
    if type(fps) not in (int, float) or not math.isfinite(fps) or fps < 0:
        bad("fps", "a number of 0 or more (0: a single frame)")
    motion, controls = meta.get("motion"), meta.get("controls")
    if not isinstance(motion, dict) or motion.get("kind") not in ("pose", "actions", "none"):
        bad("motion", 'an object whose "kind" is "pose", "actions" or "none"')
    if motion["kind"] == "actions" and not (isinstance(motion.get("names"), list)
                                            and all(isinstance(n, str) for n in motion["names"])):
        bad("motion", 'an object with the action "names" as a list of strings')
    if not (isinstance(controls, dict) and isinstance(controls.get("kind"), str)
            and isinstance(controls.get("names"), list) and all(isinstance(n, str) for n in controls["names"])):
        bad("controls", 'an object with a "kind" string and a list of "names"')
    intrinsics = meta.get("intrinsics")
    if intrinsics is not None and not isinstance(intrinsics, dict):
        bad("intrinsics", "an object of fx, fy, cx, cy (or null)")


def open_capture(path) -> Capture:
    return Capture(Path(path))


def _read_table(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UserError(f"{path}: missing")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "t" not in rows[0]:
        raise UserError(f"{path}: no header with a 't' column")
    try:
        data = np.array(rows[1:], dtype=np.float64).reshape(len(rows) - 1, len(rows[0]))
    except ValueError as e:
        raise UserError(f"{path}: unreadable values ({e})") from None
    return {name: data[:, i] for i, name in enumerate(rows[0])}
