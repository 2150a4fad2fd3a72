"""`neuralworld import`: a video file or an image folder (+ its motion) -> a capture folder.

    neuralworld import walk.mp4 -o walk --motion poses.csv
    neuralworld import kitti/00 -o kitti00 --motion kitti/00/poses.txt
    neuralworld import seg.mp4 -o seg --motion seg.csv            # t + steering, throttle
    neuralworld import scan.r3d -o scan                           # a phone app's posed recording
    neuralworld import clip.mp4 -o clip --motion-format sfm       # motion by structure from motion

Frames: decoded and resized by capture/video.py (working-size rule and centre crop there).
Motion files: read and aligned by capture/motion_files.py (formats, column names and the
alignment rules there); posed recordings of apps and SfM tools by capture/recordings.py;
motion from the video itself by capture/video_motion.py. Frame times, first rule that applies:
  1. the times of a log with one row per frame (KITTI + times.txt or --times, a CSV with a
     frame column or one row per frame, a posed recording's timestamps): the recording's own
     capture times;
  2. --times FILE (first number of each line, one line per frame);
  3. a video's presentation times (variable frame rate kept); --fps N spaces them 1/N apart;
  4. an image folder's frames 1/fps apart, --fps defaulting to 10 (KITTI's rate).
The stored times start at 0 at the first kept frame (capture.json `import.time_origin_s` keeps
the original clock's value). A damaged or cut-short video is an error, not a silent partial
import: a capture that quietly lacks its end would skew every later step.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neuralworld.capture.format import CaptureWriter, check_times, open_capture
from neuralworld.capture.motion_files import (AXES, FILE_FORMATS, POSE_AXES, align, read_kitti_calib, read_motion,
                                              read_times)
from neuralworld.capture.odometry import intrinsics_from_fov
from neuralworld.capture.recordings import RECORDING_FORMATS, detect_recording, read_recording
from neuralworld.capture.sfm import AUTO_SFM_MIN_VALID, DEFAULT_BUDGET_S
from neuralworld.capture.video import Source, crop_box, iter_frames, open_source, transform_intrinsics, working_size
from neuralworld.argtypes import size_type
from neuralworld.errors import UserError
from neuralworld.fileio import check_new_output, disk_full_is_user_error

MOTION_FORMATS = ("auto",) + FILE_FORMATS + RECORDING_FORMATS + ("none", "telemetry", "vo", "sfm", "phone-sensors")
FROM_VIDEO = ("none", "telemetry", "vo", "sfm")  # motion formats that read no file
IMAGE_FOLDER_FPS = 10.0  # KITTI and most driving data sets


@dataclass
class Motion:
    """Motion resolved for the decoded frames: which frames to keep, their times and motion."""
    kind: str  # "pose" | "actions" | "none"
    keep: np.ndarray  # (n,) indices of kept frames among the decoded ones
    times: np.ndarray  # (n,) seconds on the source clock
    valid: np.ndarray  # (n,) bool
    source: str | None = None  # how the motion was obtained: kitti, tum, pose-csv, actions-csv, telemetry, odometry
    poses: np.ndarray | None = None
    actions: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know (drops, gaps)
    report: dict | None = None
    time_source: str | None = None  # set when the motion gave the frames new times


def warn(message: str) -> None:
    print(f"neuralworld import: warning: {message}", file=sys.stderr)


def resolve_motion(motion_format: str, log, source: Source, frames: np.ndarray, times: np.ndarray,
                   intrinsics: dict | None, fov: float | None, time_offset: float = 0.0,
                   motion_path=None, speed: float | None = None, sfm_budget: float = DEFAULT_BUDGET_S,
                   progress: bool = False) -> Motion:
    """The motion of the decoded `frames` (N,H,W,3) at `times` (N,): from the log when one was
    given, else from the video's telemetry or the frames themselves (structure from motion, visual
    odometry), or none."""
    everything = np.arange(len(times))
    if log is not None:
        what = "the video's frames" if source.kind == "video" else "the frames"
        a = align(log, times, time_offset, what)
        label = "actions-csv" if log.kind == "actions" else log.format
        return Motion(log.kind, a.keep, a.times, a.valid, label, a.poses, a.actions, log.names,
                      log.notes + a.notes, time_source=str(log.times_path or log.path) if a.own_times else None)
    if motion_format in ("auto", "telemetry", "vo", "sfm"):  # from the video itself: capture/video_motion.py
        from neuralworld.capture.video_motion import motion_from_video
        poses, valid, report, label, notes = motion_from_video(motion_format, source, frames, times,
                                                               intrinsics, speed, sfm_budget, progress)
        if poses is not None:
            return Motion("pose", everything, times, valid, label, poses, notes=notes, report=report)
        return Motion("none", everything, times, np.ones(len(times), bool), notes=notes)
    if motion_format == "none":
        return Motion("none", everything, times, np.ones(len(times), bool),
                      notes=["no motion: `train` needs a pose or action log (--motion FILE), or "
                             "--motion-format telemetry / vo"])
    if motion_format == "phone-sensors" and motion_path:  # `neuralworld record`'s log: capture/sensors.py
        from neuralworld.capture.sensors import phone_sensor_poses
        poses, valid, report = phone_sensor_poses(motion_path, frames, times, intrinsics, fov, time_offset)
        return Motion("pose", everything, times, valid, "phone-sensors", poses, report=report)
    raise UserError(f"--motion-format {motion_format} reads a file: give it with --motion FILE")


def source_intrinsics(source: Source, log, intrinsics: str | None, fov: float | None) -> tuple[dict | None, str | None]:
    """Pinhole intrinsics at the source's size, and where they came from (None when unknown)."""
    if intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in intrinsics.split(","))
        except ValueError:
            raise UserError(f"--intrinsics {intrinsics}: expected fx,fy,cx,cy in pixels of the source") from None
        return {"fx": fx, "fy": fy, "cx": cx, "cy": cy}, "--intrinsics"
    if fov:
        if not 1 <= fov <= 179:
            raise UserError(f"--fov {fov}: expected a horizontal field of view between 1 and 179 degrees")
        return intrinsics_from_fov(source.width, source.height, fov), "--fov"
    if log is not None and log.intrinsics:
        return log.intrinsics, log.intrinsics_from
    if source.kind == "images" and (source.path / "calib.txt").is_file():
        return read_kitti_calib(source.path / "calib.txt"), str(source.path / "calib.txt")
    return None, None


def _decode(source: Source, width: int, height: int, path: Path, progress: bool) -> tuple[np.ndarray, list]:
    """Decode every frame into a raw file at `path`; (N,H,W,3) uint8 memory map, times (or Nones)."""
    times = []
    bar = tqdm(total=source.frames, unit="frame", desc=f"decoding {source.path.name}", disable=not progress,
               leave=False)
    with open(path, "wb") as f, bar:
        for t, image in iter_frames(source, width, height):
            f.write(image.data)
            times.append(t)
            bar.update()
    if not times:
        raise UserError(f"{source.path}: no frames could be decoded")
    return np.memmap(path, np.uint8, "r", shape=(len(times), height, width, 3)), times


def _frame_times(source: Source, decoded: list, times_file, fps: float | None) -> tuple[np.ndarray, str]:
    """Times of the decoded frames before any log is consulted, and where they came from."""
    n = len(decoded)
    if times_file:
        times = read_times(times_file)
        if len(times) != n:
            raise UserError(f"{times_file}: {len(times)} times for {n} frames of {source.path}")
        return times, str(times_file)
    if fps:
        return np.arange(n) / fps, f"--fps {fps:g}"
    if source.kind == "video":
        missing = [i for i, t in enumerate(decoded) if t is None]
        if missing:
            raise UserError(f"{source.path}: frame {missing[0]} has no timestamp (pass --fps N to space the "
                            "frames 1/N s apart)")
        times = np.asarray(decoded, np.float64)
        back = np.flatnonzero(np.diff(times) <= 0)
        if len(back):
            i = int(back[0]) + 1
            raise UserError(f"{source.path}: frame {i} has time {times[i]:.6f} s, not after frame {i - 1}'s "
                            f"{times[i - 1]:.6f} s (pass --fps N to space the frames 1/N s apart)")
        return times, "video presentation times"
    return np.arange(n) / IMAGE_FOLDER_FPS, f"{IMAGE_FOLDER_FPS:g} fps (image folder default)"


def import_capture(source, out, motion=None, motion_format: str = "auto", times=None, size=None,
                   fps: float | None = None, force: bool = False, pose_axes: str = "auto",
                   time_offset: float = 0.0, intrinsics: str | None = None, fov: float | None = None,
                   progress: bool | None = None, speed: float | None = None,
                   sfm_budget: float = DEFAULT_BUDGET_S) -> Path:
    """Import a video file or image folder (+ a motion log) into the capture folder `out`.

    size: (width, height) or None for the working-size rule; fps: space frames 1/fps apart;
    intrinsics: "fx,fy,cx,cy" at the source's size; fov: horizontal field of view in degrees;
    speed: m/s to scale the translation of motion estimated from the video (telemetry, vo, sfm);
    sfm_budget: seconds allowed for structure from motion.
    Returns the capture's path. Raises UserError on bad input, leaving nothing behind."""
    out = Path(out)
    check_new_output(out, force)
    if motion_format not in MOTION_FORMATS:
        raise UserError(f"--motion-format {motion_format}: expected one of {', '.join(MOTION_FORMATS)}")
    if motion and motion_format in FROM_VIDEO:
        raise UserError(f"--motion {motion}: --motion-format {motion_format} reads no file (drop one of them)")
    if fps is not None and not fps > 0:
        raise UserError(f"--fps {fps}: expected a positive number of frames per second")
    with contextlib.ExitStack() as stack:  # temporary files of a recording (a .r3d's images)
        src, log = open_inputs(source, motion, motion_format, pose_axes, times, stack)
        _import(src, log, out, motion, motion_format, times, size, fps, force, time_offset, intrinsics, fov,
                progress, speed, sfm_budget)
    return out


def open_inputs(source, motion, motion_format: str, pose_axes: str, times, stack: contextlib.ExitStack):
    """The frames' source and the motion log read from a file (None when the motion comes from
    the video or from `record`'s sensor log). A posed recording (capture/recordings.py) is the
    source itself, or, for COLMAP and nerfstudio, --motion beside a folder of its images."""
    if motion_format in RECORDING_FORMATS or motion_format == "auto":
        target, images = (motion, source) if motion else (source, None)
        fmt = detect_recording(target) if motion_format == "auto" else motion_format
        if fmt is not None:
            rec = read_recording(target, fmt, pose_axes, images, stack)
            return rec.source, rec.log
    src = open_source(source)
    log = read_motion(motion, motion_format, pose_axes, times) if motion and motion_format != "phone-sensors" else None
    return src, log


def _import(src: Source, log, out: Path, motion, motion_format, times, size, fps, force, time_offset, intrinsics,
            fov, progress, speed, sfm_budget) -> None:
    width, height = working_size(src.width, src.height, size)
    crop = crop_box(src.width, src.height, width, height)
    K, K_from = source_intrinsics(src, log, intrinsics, fov)
    if progress is None:
        progress = sys.stderr.isatty()
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with disk_full_is_user_error(out), \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".decode", dir=out.absolute().parent) as tmp:
        frames, decoded = _decode(src, width, height, Path(tmp) / "frames.u8", progress)
        frame_times, time_source = _frame_times(src, decoded, times, fps)
        check_times(frame_times, str(times or src.path))
        m = resolve_motion(motion_format, log, src, frames, frame_times, K, fov, time_offset, motion_path=motion,
                           speed=speed, sfm_budget=sfm_budget, progress=progress)
        time_source = m.time_source or time_source
        for note in m.notes:
            warn(note)
        meta = {
            "source_kind": src.kind, "source_size": [src.width, src.height], "rotation": src.rotation,
            "crop": list(crop), "frames_decoded": len(frames), "time_source": time_source,
            "time_origin_s": float(m.times[0]),
            "motion_file": str(log.path) if log is not None else str(motion) if motion else None,
            "pose_axes": log.pose_axes if log is not None else None, "intrinsics_source": K_from,
            "notes": m.notes,
        }
        if m.report is not None:
            meta["motion_report"] = m.report
        kinds = {"pose": dict(poses=m.poses), "actions": dict(actions=m.actions, action_names=m.names),
                 "none": {}}[m.kind]
        with CaptureWriter(out, width, height, force) as w:
            for i in tqdm(m.keep, unit="frame", desc="writing", disable=not progress, leave=False):
                w.add(frames[i])
            w.finish(m.times - m.times[0], source=str(src.path), fps=_nominal_fps(src, m.times, fps),
                     valid=m.valid, motion_source=m.source,
                     intrinsics=transform_intrinsics(K, crop, width, height) if K else None,
                     extra={"import": meta}, **kinds)
        del frames


def _nominal_fps(source: Source, times: np.ndarray, fps: float | None) -> float:
    """The rate given, or the median frame rate of the kept frames (robust to variable rates)."""
    if fps:
        return float(fps)
    if len(times) > 1:
        return float(1.0 / np.median(np.diff(times)))
    return float(source.fps or 0.0)



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a video file (anything FFmpeg decodes: mp4, mov, mkv, webm, avi, ...), a "
                   "folder of images (png, jpg) taken in natural name order, or a posed recording: a nerfstudio / "
                   "instant-ngp transforms.json (or its folder), a COLMAP project or sparse model folder, a Stray "
                   "Scanner folder, a Record3D .r3d file or exported folder, a Polycam raw data export folder")
    p.add_argument("-o", "--output", required=True, metavar="CAPTURE", help="the capture folder to write")
    p.add_argument("--motion", metavar="FILE", help="the camera's motion: a KITTI pose file, a TUM trajectory, "
                   "a pose CSV (t, x, y, z, qx, qy, qz, qw; phone AR loggers), an action CSV (t or frame + "
                   "named numeric columns, e.g. steering, throttle), or a COLMAP sparse model or transforms.json "
                   "whose images are in SOURCE")
    p.add_argument("--motion-format", choices=MOTION_FORMATS, default="auto",
                   help="how to get the motion. auto: a --motion file or a posed-recording SOURCE is recognised by "
                   "its content and layout; without either, the first that works of: the video's telemetry, "
                   f"sfm when it finishes within --sfm-budget and places {AUTO_SFM_MIN_VALID * 100:.0f}%% of the "
                   "frames, vo, none (no motion can be found). kitti, tum, pose-csv, actions: a --motion file of that kind. nerfstudio "
                   "(transforms.json: OpenGL camera, per-frame timestamp in seconds when present, else --fps), "
                   "colmap (cameras/images/points3D .txt or .bin, world-to-camera; frames in image-name order, "
                   "--fps), stray (rgb.mp4 + odometry.csv + camera_matrix.csv), record3d (.r3d or metadata.json + "
                   "rgb/), polycam (keyframes/corrected_cameras + corrected_images, microsecond names): a posed "
                   "recording of that app or tool, poses turned into our axes. none: no motion. telemetry: the "
                   "camera's embedded telemetry. vo: visual odometry from the frames (fast). sfm: structure from "
                   "motion from the frames (COLMAP through pycolmap: slower, more accurate). phone-sensors: the "
                   "motion log of `neuralworld record`")
    p.add_argument("--times", metavar="FILE", help="the frames' times, one line per frame, seconds first "
                   "(KITTI times.txt; found beside a KITTI pose file without this option)")
    p.add_argument("--size", type=size_type, metavar="WxH", help="working size, multiples of 4. Default: 256x192 "
                   "(portrait 192x256) after a centre crop to that aspect; a smaller source is never upscaled and "
                   "gets the largest size in multiples of 64 that fits (a 128x128 source stays 128x128)")
    p.add_argument("--fps", type=float, help="space the frames 1/FPS seconds apart instead of using their own "
                   f"times (image folders and recordings without times: default {IMAGE_FOLDER_FPS:g})")
    p.add_argument("--pose-axes", choices=POSE_AXES, default="auto",
                   help="axes of the poses: " + "; ".join(f"{k}: {v}" for k, v in AXES.items()) + ". auto: kitti "
                   "for KITTI, opencv for TUM, arkit for pose CSVs, the app's own for Stray Scanner, Record3D and "
                   "Polycam, and for nerfstudio and COLMAP the one (opengl or arkit; kitti, opencv or opencv-yup) "
                   "whose world up best matches the cameras' mean up")
    p.add_argument("--time-offset", type=float, default=0.0, metavar="SECONDS",
                   help="added to a time-aligned log's times to put them on the frames' clock")
    p.add_argument("--intrinsics", metavar="FX,FY,CX,CY", help="pinhole intrinsics in pixels of the source as shown "
                   "(default: a recording's own, KITTI calib.txt when present, else unknown)")
    p.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view of the source in degrees, "
                   "when the intrinsics are not known")
    p.add_argument("--speed", type=float, metavar="M/S", help="the camera's speed while moving, to scale motion "
                   "estimated from the video (telemetry, vo, sfm): default the telemetry's GPS speed when present, "
                   "else 1.4 m/s (walking); frames where the camera is judged static move 0 m")
    p.add_argument("--sfm-budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help="time allowed for structure from motion (sfm, and auto's try of it) before it is cancelled")
    p.add_argument("--force", action="store_true", help="replace CAPTURE if it exists")


def run(args) -> int:
    out = import_capture(args.source, args.output, motion=args.motion, motion_format=args.motion_format,
                         times=args.times, size=args.size, fps=args.fps, force=args.force,
                         pose_axes=args.pose_axes, time_offset=args.time_offset, intrinsics=args.intrinsics,
                         fov=args.fov, speed=args.speed, sfm_budget=args.sfm_budget)
    cap = open_capture(out)
    motion = cap.meta["motion"]
    print(f"{out}: {len(cap)} frames {cap.width}x{cap.height}, {cap.meta['duration_s']:.2f} s at "
          f"{cap.fps:.2f} fps, motion: {motion['kind']}" + (f" ({motion['source']})" if motion["source"] else ""))
    return 0
