"""Does the camera's own telemetry agree with the video? Checked on the GoPro walk.

Prints the telemetry streams found, the time alignment (video and metadata track starts,
the telemetry's span, the lag that best lines up the gyro with the video's rotation), and:
  gyro vs CORI         per-frame rotation of the body from its orientation (CORI) against the
                       integrated gyroscope, in degrees per frame (checks the IMU axes mapping)
  vo vs telemetry      per-frame rotation of the picture from the camera's orientation
                       (CORI x IORI: the stabilised, levelled image) against visual odometry,
                       in degrees per frame, for a few guesses of the lens's field of view
  vo speed             frames per second of the odometry at the working size

    python benchmarks/telemetry_gopro.py [--video ../shared/data/gopro-walk/max-heromode.mp4] [--width 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from neuralworld.capture.odometry import estimate_poses
from neuralworld.capture.telemetry import angular_speed, estimate_lag, poses_from_streams, read_streams
from neuralworld.errors import run_script
from neuralworld.geometry import rotation_angle


def decode(path: Path, width: int):
    """-> frames (N, H, W, 3) uint8 at `width` (aspect kept), times (N,) from the first frame, starts."""
    with av.open(str(path)) as c:
        starts = {f"{s.index}:{s.type}:{(s.codec_context.name if s.type != 'data' else s.metadata.get('handler_name', ''))}":
                  float(s.start_time * s.time_base) if s.start_time is not None else None for s in c.streams}
        frames, times = [], []
        for f in c.decode(video=0):
            img = f.to_ndarray(format="rgb24")
            h = int(round(img.shape[0] * width / img.shape[1] / 2)) * 2
            frames.append(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
            times.append(float(f.pts * f.time_base))
    times = np.array(times)
    return np.stack(frames), times - times[0], starts


def per_frame_error(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Degrees between consecutive-frame rotations of two (N,3,3) sequences, in camera axes."""
    ra = np.swapaxes(Ra[:-1], 1, 2) @ Ra[1:]
    rb = np.swapaxes(Rb[:-1], 1, 2) @ Rb[1:]
    return np.degrees(rotation_angle(np.swapaxes(ra, 1, 2) @ rb))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path,
                   default=Path(__file__).resolve().parents[2] / "shared/data/gopro-walk/max-heromode.mp4")
    p.add_argument("--width", type=int, default=256, help="working width in pixels")
    p.add_argument("--fovs", default="70,90,110,120", help="horizontal fields of view to try for vo (degrees)")
    args = p.parse_args()
    cv2.setNumThreads(2)

    frames, times, starts = decode(args.video, args.width)
    s = read_streams(args.video)
    print(f"camera: {s.camera} {s.model}")
    print("streams:", ", ".join(f"{k} ({v})" for k, v in s.found.items()))
    print("stream start times (s):", starts)
    print(f"video: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}, {times[-1]:.3f} s; "
          f"orientation samples {len(s.quat_t)} over {s.quat_t[0]:.3f}..{s.quat_t[-1]:.3f} s; "
          f"IMU {len(s.imu_t)} samples at {1 / np.median(np.diff(s.imu_t)):.1f} Hz over "
          f"{s.imu_t[0]:.3f}..{s.imu_t[-1]:.3f} s")

    # the body: CORI against the integrated gyro, at the lag that lines them up best
    body = Rotation.from_quat(s.body_quat).as_matrix()  # (Q,3,3) OpenGL camera axes
    gyro_speed = np.linalg.norm(s.gyro, axis=1)
    cori_speed = angular_speed(s.quat_t, body)
    lag_body, corr_body = estimate_lag(s.quat_t, cori_speed, s.imu_t, gyro_speed)
    gyro_R = _integrate(s.imu_t, s.gyro)
    at = np.clip(s.quat_t + lag_body, s.imu_t[0], s.imu_t[-1])
    err = per_frame_error(body, Slerp(s.imu_t, gyro_R)(at).as_matrix())
    print(f"gyro vs CORI (body): median {np.median(err):.3f} deg/frame, mean {err.mean():.3f} "
          f"(body turns a median {np.median(np.degrees(cori_speed)) / 30:.3f} deg/frame); gyro lag {lag_body * 1000:+.1f} ms")

    # the picture: telemetry orientation against visual odometry
    tel, valid, report = poses_from_streams(s, times)
    print(f"telemetry poses: {report['orientation_source']}, {report['frames_outside_telemetry']} frames outside, "
          f"translation: {report['translation']}")
    print("vo vs telemetry (picture), per assumed field of view:")
    print("  fov deg   median deg/frame   mean   vo turn deg/frame   tel turn deg/frame   vo frames/s")
    best = None
    for fov in (float(f) for f in args.fovs.split(",")):
        t0 = time.perf_counter()
        vo, vo_valid, vo_report = estimate_poses(frames, times, None, fov_deg=fov, name=args.video.name)
        fps = len(frames) / (time.perf_counter() - t0)
        err = per_frame_error(vo[:, :3, :3], tel[:, :3, :3])
        turn_vo = np.median(np.degrees(angular_speed(times, vo[:, :3, :3]))) * np.median(np.diff(times))
        turn_tel = np.median(np.degrees(angular_speed(times, tel[:, :3, :3]))) * np.median(np.diff(times))
        print(f"  {fov:6.0f}    {np.median(err):10.3f}        {err.mean():.3f}     {turn_vo:10.3f}          "
              f"{turn_tel:10.3f}        {fps:8.0f}")
        if best is None or np.median(err) < best[0]:
            best = (np.median(err), fov, vo)
    # lag of the gyro against the picture's rotation seen by vo (what an import without CORI would use)
    vo_speed = angular_speed(times, best[2][:, :3, :3])
    lag_vo, corr_vo = estimate_lag(times, vo_speed, s.imu_t, gyro_speed)
    print(f"time alignment: orientation sample k is frame k (both from 0 s); gyro vs vo angular speed "
          f"cross-correlation lag {lag_vo * 1000:+.1f} ms at correlation {corr_vo:.2f} (the stabilised "
          f"picture does not follow the body's shake); gyro vs CORI {lag_body * 1000:+.1f} ms at {corr_body:.2f}")
    print("(speeds measured on a shared 2-core machine; figures are pessimistic under load)")


def _integrate(t: np.ndarray, gyro: np.ndarray) -> Rotation:
    """Plain gyro integration (no gravity correction), body rates in rad/s."""
    steps = Rotation.from_rotvec(gyro[:-1] * np.diff(t)[:, None])
    R = [Rotation.identity()]
    for s in steps:
        R.append(R[-1] * s)
    return Rotation.concatenate(R)


if __name__ == "__main__":
    run_script(main)
