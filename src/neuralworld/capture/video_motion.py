"""Motion of a video that came without a motion log: `--motion-format telemetry`, `vo`, `sfm`, `auto`.

  telemetry  orientation from the camera's embedded telemetry (capture/telemetry.py), the
             direction of travel from the video (capture/odometry.py, given those rotations),
             scaled by --speed, else the telemetry's GPS speed, else a walking pace
  vo         everything from the video (capture/odometry.py), scaled by --speed or a walking pace
  sfm        everything from the video by structure from motion (capture/sfm.py: COLMAP through
             pycolmap), within --sfm-budget seconds, scaled by --speed or a walking pace
  auto       the first that works: telemetry when the video carries it; else sfm when it
             finishes within --sfm-budget and places at least AUTO_SFM_MIN_VALID of the frames;
             else vo. A video whose motion cannot be found (the camera does not move, nothing
             to track) gets no motion and a note saying why, rather than a capture pretending
             to move. SfM is slower (2-16 against 75-220 frames/s on KITTI here) and more
             accurate (docs/MEASURED.md), so it comes first where it fits the budget.

The estimates work on the decoded frames at working size, so the source's intrinsics (or a
field-of-view guess at the source's size) go through the same centre crop and resize.
"""

from __future__ import annotations

import numpy as np

from neuralworld.capture.odometry import DEFAULT_FOV_DEG, estimate_poses, intrinsics_from_fov
from neuralworld.capture.sfm import AUTO_SFM_MIN_VALID, DEFAULT_BUDGET_S, estimate_poses_sfm
from neuralworld.capture.telemetry import (angular_speed, estimate_lag, poses_from_streams, read_streams)
from neuralworld.capture.video import crop_box, transform_intrinsics
from neuralworld.errors import UserError

MIN_LAG_CORRELATION = 0.8  # a gyro/video lag is applied only when their angular speeds agree this well


def motion_from_video(motion_format: str, source, frames: np.ndarray, times: np.ndarray,
                      intrinsics: dict | None, speed: float | None = None,
                      sfm_budget: float = DEFAULT_BUDGET_S, progress: bool = False):
    """(poses (N,4,4) or None, valid (N,), report, source label, notes); poses None only for
    auto when no motion could be found (the notes say why).
    intrinsics: at the source's size or None; frames: (N,H,W,3) at working size."""
    if speed is not None and not speed >= 0:
        raise UserError(f"--speed {speed}: expected a speed in metres per second (0 or more)")
    if not sfm_budget > 0:
        raise UserError(f"--sfm-budget {sfm_budget}: expected a positive number of seconds")
    K = working_intrinsics(source, frames, intrinsics)
    if motion_format == "auto":
        try:
            streams = read_streams(source.path) if source.kind == "video" else None
        except UserError:
            streams = None
        notes = []
        try:
            if streams is not None:
                return _telemetry(streams, source, frames, times, K, speed)
            try:
                found = _sfm(source, frames, times, K, speed, sfm_budget, progress)
                share = found[1].mean()
                if share >= AUTO_SFM_MIN_VALID:
                    return found
                notes.append(f"structure from motion placed only {share:.0%} of the frames: using visual odometry")
            except UserError as e:
                notes.append(f"structure from motion: {e}: using visual odometry")
            poses, valid, report, label, vo_notes = _vo(source, frames, times, K, speed)
            return poses, valid, report, label, notes + vo_notes
        except UserError as e:  # no trustworthy motion: a capture without motion, and why
            return None, None, None, None, notes + [f"no motion: {e}"]
    if motion_format == "telemetry":
        if source.kind != "video":
            raise UserError(f"{source.path}: --motion-format telemetry needs a video file with embedded telemetry")
        return _telemetry(read_streams(source.path), source, frames, times, K, speed)
    if motion_format == "vo":
        return _vo(source, frames, times, K, speed)
    if motion_format == "sfm":
        return _sfm(source, frames, times, K, speed, sfm_budget, progress)
    raise ValueError(motion_format)


def working_intrinsics(source, frames: np.ndarray, intrinsics: dict | None) -> tuple[dict, str]:
    """Intrinsics at the frames' working size, and where they came from."""
    h, w = frames.shape[1:3]
    what = "given"
    if intrinsics is None:
        intrinsics = intrinsics_from_fov(source.width, source.height, DEFAULT_FOV_DEG)
        what = f"field-of-view guess {DEFAULT_FOV_DEG:g} degrees (horizontal, before cropping; set --fov)"
    return transform_intrinsics(intrinsics, crop_box(source.width, source.height, w, h), w, h), what


def _vo(source, frames, times, K, speed):
    poses, valid, report = estimate_poses(frames, times, K[0], speed=speed, name=str(source.path))
    report["intrinsics_source"] = K[1]
    return poses, valid, report, "odometry", _odometry_notes(report)


def _sfm(source, frames, times, K, speed, budget, progress):
    poses, valid, report = estimate_poses_sfm(frames, times, K[0], speed=speed, budget_s=budget, progress=progress,
                                              name=str(source.path))
    report["intrinsics"] = {k: round(float(v), 4) for k, v in K[0].items()}
    report["intrinsics_source"] = K[1]
    notes = []
    if not valid.all():
        notes.append(f"structure from motion placed {int(valid.sum())} of {len(valid)} frames: the others are "
                     "flagged invalid")
    return poses, valid, report, "sfm", notes


def _telemetry(streams, source, frames, times, K, speed):
    tel, tel_valid, tel_report = poses_from_streams(streams, times, name=str(source.path))
    if streams.quat is None and streams.gyro is not None:  # gyro clock: line it up with the video
        vo, _, _ = estimate_poses(frames, times, K[0], speed=speed, name=str(source.path))
        lag, corr = estimate_lag(times, angular_speed(times, vo[:, :3, :3]), streams.imu_t,
                                 np.linalg.norm(streams.gyro, axis=1))
        tel_report["lag_estimate"] = {"lag_s": lag, "correlation": round(corr, 3)}
        if corr >= MIN_LAG_CORRELATION:
            tel, tel_valid, tel_report2 = poses_from_streams(streams, times, lag, name=str(source.path))
            tel_report2["lag_estimate"] = tel_report["lag_estimate"]
            tel_report = tel_report2
    gps = tel_report.pop("speed")
    if speed is None and gps is not None:
        speed = np.asarray(gps, np.float64)
        tel_report["translation"] = "odometry direction, GPS 2D speed"
    else:
        tel_report["translation"] = "odometry direction, " + (f"--speed {speed:g} m/s" if speed is not None
                                                               else "walking speed")
    poses, valid, vo_report = estimate_poses(frames, times, K[0], speed=speed, rotations=tel[:, :3, :3],
                                             name=str(source.path))
    vo_report["intrinsics_source"] = K[1]
    notes = _odometry_notes(vo_report)
    if "warning" in tel_report:
        notes.append(f"{source.path}: {tel_report['warning']}")
    return poses, valid & tel_valid, {"telemetry": tel_report, "odometry": vo_report}, "telemetry", notes


def _odometry_notes(report: dict) -> list[str]:
    notes = []
    if report["dark_or_blank_frames"]:
        notes.append(f"{report['dark_or_blank_frames']} frames too dark or blank to track: flagged invalid")
    if report["tracking_failures"]:
        notes.append(f"tracking failed on {report['tracking_failures']} frames: their motion is held and "
                     "flagged invalid")
    return notes
