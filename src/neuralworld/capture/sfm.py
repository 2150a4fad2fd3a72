"""Camera motion of any video by structure from motion: `import --motion-format sfm`.

COLMAP's incremental mapper (Schönberger and Frahm, "Structure-from-Motion Revisited",
CVPR 2016) through pycolmap, COLMAP's own bindings, on keyframes of the decoded frames at
working size:

1. Keyframes: every k-th frame, k = round(fps / KEYFRAME_RATE_HZ) (at least 1), and the last
   one, written as PNG to a temporary folder. Ten a second is dense enough for walking and
   driving: KITTI's 10 Hz car clips keep every frame (benchmarks/sfm_kitti.py).
2. SIFT features (`pycolmap.extract_features`), each keyframe matched with the next
   `OVERLAP` (`pycolmap.match_sequential`, no loop detection: it needs a vocabulary file),
   then `pycolmap.incremental_mapping` with one PINHOLE camera for all keyframes, its
   intrinsics held fixed: the known ones, or the field-of-view guess that vo uses too (on
   short forward-moving clips COLMAP's refinement of a guessed focal length wanders: 60 px
   for a true 183 px on a synthetic walk). The model with the most keyframes is kept.
3. World: COLMAP's is arbitrary, so it is turned into ours: z up along the cameras' mean up
   direction (people and cars hold cameras about upright), the first registered keyframe at
   the origin facing +x (where capture/odometry.py puts its first camera).
4. Every frame: poses between registered keyframes are interpolated (positions linearly,
   rotations by slerp, geometry.interpolate_poses). Frames before the first or after the last
   registered keyframe hold its pose and are marked invalid, as are the frames between two
   registered keyframes with more than one unregistered keyframe between them.
5. Scale: the reconstruction's scale is unknown, so it gets the rule of capture/odometry.py:
   the camera moves at --speed (default odometry.WALKING_SPEED) while it moves. One factor
   makes the mean speed of the moving frames equal that speed; a frame slower than
   STATIC_FRACTION of the 90th-percentile speed counts as static.

Progress: a bar over the keyframes (features, matching, then each registered keyframe).
Budget: all of it is cancelled after `budget_s` seconds (pycolmap's CancellationToken); that
is an error here, which `--motion-format auto` answers by falling back to visual odometry.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from neuralworld.capture.odometry import WALKING_SPEED
from neuralworld.errors import UserError
from neuralworld.geometry import interpolate_poses, invert_pose, make_pose

KEYFRAME_RATE_HZ = 10.0  # keyframes per second of video (at most one per frame)
OVERLAP = 10  # each keyframe is matched with this many following ones
DEFAULT_BUDGET_S = 300.0  # seconds for the whole reconstruction
STATIC_FRACTION = 0.1  # slower than this share of the 90th-percentile speed: static
MIN_KEYFRAMES = 3
AUTO_SFM_MIN_VALID = 0.8  # `--motion-format auto` takes SfM's motion when it places this share of the frames


def keyframes(times: np.ndarray) -> np.ndarray:
    """Indices of the keyframes of frames at `times` (N,): every k-th frame and the last."""
    n = len(times)
    fps = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else KEYFRAME_RATE_HZ
    step = max(1, int(round(fps / KEYFRAME_RATE_HZ)))
    return np.unique(np.r_[np.arange(0, n, step), n - 1])


def estimate_poses_sfm(frames: np.ndarray, times: np.ndarray, intrinsics: dict, speed: float | None = None,
                       budget_s: float = DEFAULT_BUDGET_S, progress: bool = False, name: str = "video"):
    """Camera poses of a video by structure from motion (steps in the module docstring).

    frames: (N, H, W, 3) uint8 RGB at working size; times: (N,) seconds; intrinsics: fx, fy, cx,
    cy at working size (pixel centres at integers).
    Returns (poses (N, 4, 4) camera-to-world in our axes, valid (N,) bool, report dict)."""
    import pycolmap  # COLMAP's bindings (their own C++ SfM pipeline)

    times = np.asarray(times, np.float64)
    keys = keyframes(times)
    if len(keys) < MIN_KEYFRAMES:
        raise UserError(f"{name}: {len(frames)} frames are too few for structure from motion (use --motion-format vo)")
    pycolmap.set_random_seed(0)  # RANSAC and mapping draw the same samples on every run
    token = pycolmap.CancellationToken()
    timer = threading.Timer(budget_s, token.cancel)
    timer.daemon = True
    seconds, registered = {}, [0]
    log_level, pycolmap.logging.minloglevel = pycolmap.logging.minloglevel, 2  # errors only
    bar = tqdm(total=len(keys), unit="keyframe", desc="sfm: features", disable=not progress, leave=False)
    try:
        with tempfile.TemporaryDirectory(prefix="neuralworld-sfm-") as tmp, bar:
            tmp = Path(tmp)
            (tmp / "images").mkdir()
            for k in keys:  # PNG: lossless, and COLMAP reads it
                image = cv2.cvtColor(np.asarray(frames[k]), cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(tmp / "images" / f"{k:06d}.png"), image)
            reader = pycolmap.ImageReaderOptions()
            # COLMAP puts the first pixel's centre at (0.5, 0.5), we at (0, 0)
            fx, fy, cx, cy = intrinsics["fx"], intrinsics["fy"], intrinsics["cx"] + 0.5, intrinsics["cy"] + 0.5
            reader.camera_model, reader.camera_params = "PINHOLE", f"{fx},{fy},{cx},{cy}"
            db = tmp / "database.db"
            timer.start()
            start = time.perf_counter()
            pycolmap.extract_features(db, tmp / "images", camera_mode=pycolmap.CameraMode.SINGLE,
                                      reader_options=reader, device=pycolmap.Device.cpu, cancellation_token=token)
            seconds["features"], start = time.perf_counter() - start, time.perf_counter()
            bar.set_description("sfm: matching")
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = OVERLAP
            pycolmap.match_sequential(db, pairing_options=pairing, device=pycolmap.Device.cpu,
                                      cancellation_token=token)
            seconds["matching"], start = time.perf_counter() - start, time.perf_counter()
            bar.set_description("sfm: mapping")

            def registered_one(count: int = 1) -> None:
                registered[0] += count
                bar.update(count)
            options = pycolmap.IncrementalPipelineOptions()
            options.random_seed = 0
            options.min_model_size = min(options.min_model_size, MIN_KEYFRAMES)
            options.ba_refine_focal_length = options.ba_refine_principal_point = False
            options.ba_refine_extra_params = False
            models = pycolmap.incremental_mapping(db, tmp / "images", tmp / "sparse", options=options,
                                                  initial_image_pair_callback=lambda: registered_one(2),
                                                  next_image_callback=registered_one, cancellation_token=token)
            seconds["mapping"] = time.perf_counter() - start
            if token.is_cancelled:
                raise InterruptedError
    except InterruptedError:
        raise UserError(f"{name}: structure from motion did not finish within its {budget_s:g} s budget "
                        f"({registered[0]} of {len(keys)} keyframes registered): raise --sfm-budget, or use "
                        "--motion-format vo") from None
    finally:
        timer.cancel()
        pycolmap.logging.minloglevel = log_level
    if not models:
        raise UserError(f"{name}: structure from motion registered no keyframes (too little texture or "
                        "parallax?): use --motion-format vo")
    model = max(models.values(), key=lambda m: m.num_reg_images())
    posed = sorted((int(Path(im.name).stem), im.cam_from_world().matrix()) for im in model.images.values()
                   if im.has_pose)
    index = np.array([k for k, _ in posed])
    world_to_camera = np.stack([make_pose(M[:, :3], M[:, 3]) for _, M in posed])
    key_poses = level_world(invert_pose(world_to_camera))
    poses, valid = _every_frame(times, keys, index, key_poses)
    poses, scale_rule = _scale(poses, valid, times, speed, name)
    report = {
        "method": f"structure from motion ({pycolmap.COLMAP_version}: incremental mapping, SIFT, "
                  "sequential matching)",
        "keyframes": int(len(keys)), "keyframe_step": int(keys[1] - keys[0]),
        "registered_keyframes": int(len(index)), "models": len(models),
        "scale": scale_rule, "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "frames": int(len(times)), "valid_frames": int(valid.sum()),
        "distance_m": float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum()),
    }
    return poses, valid, report


def level_world(poses: np.ndarray) -> np.ndarray:
    """(K, 4, 4) camera-to-world poses in any world -> ours: z up along the cameras' mean up
    (-y in OpenCV camera axes), the first camera at the origin with its heading along +x."""
    up = -poses[:, :3, 1].mean(axis=0)
    up /= np.linalg.norm(up)
    heading = poses[0, :3, 2] - (poses[0, :3, 2] @ up) * up  # forward, made level
    if np.linalg.norm(heading) < 1e-6:  # looking straight up or down: use the right axis
        heading = np.cross(up, poses[0, :3, 0])
    x = heading / np.linalg.norm(heading)
    W = np.stack([x, np.cross(up, x), up])  # rows: our axes in the old world (new = W @ old)
    out = make_pose(W @ poses[:, :3, :3], (poses[:, :3, 3] - poses[0, :3, 3]) @ W.T)
    return out


def _every_frame(times: np.ndarray, keys: np.ndarray, index: np.ndarray, key_poses: np.ndarray):
    """Poses of all frames from those of the registered keyframes `index` (sorted)."""
    n = len(times)
    first, last = int(index[0]), int(index[-1])
    poses = np.empty((n, 4, 4))
    poses[first:last + 1] = interpolate_poses(times[index], key_poses, times[first:last + 1]) \
        if len(index) > 1 else key_poses[0]
    poses[:first], poses[last + 1:] = key_poses[0], key_poses[-1]
    valid = np.zeros(n, bool)
    valid[first:last + 1] = True
    step = int(keys[1] - keys[0])
    for a, b in zip(index[:-1], index[1:]):
        if b - a > 2 * step:  # more than one keyframe between them was not registered
            valid[a + 1:b] = False
    return poses, valid


def _scale(poses: np.ndarray, valid: np.ndarray, times: np.ndarray, speed, name: str):
    """Scale positions so that the camera moves at `speed` m/s (default walking) while it moves."""
    target = WALKING_SPEED if speed is None else float(np.nanmedian(np.asarray(speed, np.float64)))
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    dt = np.diff(times)
    both = valid[1:] & valid[:-1]
    v = step / dt
    if not both.any() or np.percentile(v[both], 90) <= 0:
        raise UserError(f"{name}: structure from motion finds no camera motion (import with --motion-format none, "
                        "or give the motion)")
    moving = both & (v > STATIC_FRACTION * np.percentile(v[both], 90))
    s = target * dt[moving].sum() / step[moving].sum()
    poses = poses.copy()
    poses[:, :3, 3] *= s
    what = "walking speed" if speed is None else "given speed"
    return poses, f"{what} {target:g} m/s on average while moving ({int(moving.sum())} of {len(dt)} steps)"
