"""Camera motion estimated from the video itself: monocular visual odometry.

The classic two-view pipeline (Nister, "An efficient solution to the five-point relative pose
problem", PAMI 2004; as taught by Scaramuzza and Fraundorfer, "Visual Odometry", IEEE RAM 2011):

1. Corners (Shi-Tomasi, `cv2.goodFeaturesToTrack`) on the grayscale frame at working size,
   tracked frame to frame with pyramidal Lucas-Kanade (`cv2.calcOpticalFlowPyrLK`); a track is
   kept only when tracking it back lands within `FB_MAX_ERROR_PX` of where it started
   (forward-backward check, Kalal et al., "Forward-Backward Error", ICPR 2010).
2. Tracks run from a keyframe k to the current frame j. A rotation-only fit of their bearing
   vectors (Kabsch / Wahba) gives the rotation and the residual parallax: the median image
   distance that rotation does not explain. Translation only shows as parallax.
3. Once the parallax reaches `KEYFRAME_PARALLAX_PX`, the essential matrix between k and j
   (`cv2.findEssentialMat`, RANSAC with local optimisation, + `cv2.recoverPose`) gives the
   rotation and the direction of travel; j becomes the next keyframe and the frames between
   k and j are placed along that direction. With fast motion every frame is a keyframe.
4. If no parallax builds up within `STATIC_SPAN_S`, the camera is judged static over that
   span (it may still rotate): zero translation. A shorter tail with too little parallax to
   place it (at the end, or before a frame that cannot be tracked) keeps the last direction.

Scale: monocular vision sees only the direction of travel. Each frame's step is
speed * dt where speed is, in this order: the given per-frame speeds (e.g. GPS), the given
constant speed (the user's --speed), or `WALKING_SPEED` (1.4 m/s, a typical walking pace);
static spans move 0 m.

Intrinsics: from the capture when known, else a pinhole with a horizontal field of view of
`fov_deg` (default `DEFAULT_FOV_DEG` = 70 degrees, a typical phone main camera; action
cameras in linear mode are near 85), principal point at the image centre, square pixels.

World axes: z up (geometry.CONVENTION). Without known rotations the first camera is assumed
level (no roll or pitch) and facing world +x; with `rotations` (e.g. from the camera's own
telemetry, gravity-aligned) those are used instead and only the translation comes from video.

Failures never raise: a dark or blank frame, or a frame where tracking or the geometry fails,
keeps the previous rotation and position and is marked invalid (so its control vector's valid
flag is 0); tracking restarts from the next usable frame. Only a video with no motion at all,
or with no usable frames, is refused (UserError).
"""

from __future__ import annotations

import cv2
import numpy as np

from neuralworld.errors import UserError
from neuralworld.geometry import camera_rotation, make_pose, rotation_angle

DEFAULT_FOV_DEG = 70.0  # horizontal field of view guessed when the capture has no intrinsics
WALKING_SPEED = 1.4  # m/s, the default scale: a typical walking pace
MAX_CORNERS = 300  # tracked corners kept per keyframe
MIN_TRACKS = 25  # fewer surviving tracks than this: tracking failed for the frame
FB_MAX_ERROR_PX = 1.0  # forward-backward tracking error above which a track is dropped
KEYFRAME_PARALLAX_PX = 2.0  # residual parallax (px at working size) that gives a trusted direction
STATIC_SPAN_S = 0.5  # no parallax within this time: the camera is judged static (zero translation)
STATIC_ROTATION_DEG = 1.0  # a video that never turns further than this and never translates is static
DARK_MEAN = 12.0  # grayscale mean (0..255) below which a frame is too dark to track
BLANK_STD = 3.0  # grayscale standard deviation below which a frame is blank (no texture)
RANSAC_THRESHOLD_PX = 1.0  # essential-matrix inlier threshold

_LK = dict(winSize=(21, 21), maxLevel=3,
           criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))


def intrinsics_from_fov(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> dict:
    """Pinhole intrinsics of a `width` x `height` image with a horizontal field of view of `fov_deg`."""
    fx = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return {"fx": float(fx), "fy": float(fx), "cx": (width - 1) / 2, "cy": (height - 1) / 2}


def camera_matrix(intrinsics: dict) -> np.ndarray:
    return np.array([[intrinsics["fx"], 0, intrinsics["cx"]],
                     [0, intrinsics["fy"], intrinsics["cy"]],
                     [0, 0, 1]], np.float64)


def is_unusable(gray: np.ndarray) -> bool:
    """True for a frame too dark or too uniform to track (lens cap, black frame, fade)."""
    return float(gray.mean()) < DARK_MEAN or float(gray.std()) < BLANK_STD


def estimate_poses(frames: np.ndarray, times: np.ndarray, intrinsics: dict | None = None,
                   fov_deg: float | None = None, speed=None, rotations: np.ndarray | None = None,
                   name: str = "video"):
    """Camera poses of a video from its frames.

    frames: (N, H, W, 3) uint8 RGB at working size; times: (N,) seconds.
    intrinsics: {"fx", "fy", "cx", "cy"} at working size, or None to use `fov_deg`.
    speed: None (walking pace), a number (m/s), or (N,) per-frame m/s (NaN = unknown).
    rotations: optional (N, 3, 3) camera-to-world rotations to use instead of estimated ones.
    Returns (poses (N, 4, 4) camera-to-world, valid (N,) bool, report dict).
    """
    frames = np.asarray(frames)
    times = np.asarray(times, np.float64)
    n, h, w = frames.shape[:3]
    if intrinsics is None:
        fov = DEFAULT_FOV_DEG if fov_deg is None else float(fov_deg)
        intrinsics, intr_source = intrinsics_from_fov(w, h, fov), f"field-of-view guess {fov:g} degrees"
    else:
        intr_source = "given"
    K = camera_matrix(intrinsics)
    steps = _step_lengths(times, speed)  # (N,) metres from frame i-1 to i if moving

    tracker = _Tracker(K, w, h, KEYFRAME_PARALLAX_PX)
    R_world = np.zeros((n, 3, 3))
    pos = np.zeros((n, 3))
    valid = np.zeros(n, bool)
    moving = np.zeros(n, bool)  # frame i translated from frame i-1
    dark = failures = 0
    parallaxes, track_counts = [], []
    R0 = camera_rotation(0.0, 0.0, 0.0) if rotations is None else np.asarray(rotations[0], np.float64)
    key = None  # index of the current keyframe, None while (re)starting
    heading = None  # world direction of the last placed segment, to continue a short unplaced tail

    def continue_tail(end: int) -> None:
        """Frames key+1..end had too little parallax yet: keep moving along the last direction."""
        if heading is not None and key is not None and end > key and times[end] - times[key] <= STATIC_SPAN_S:
            span = slice(key + 1, end + 1)
            pos[span] = pos[key] + np.cumsum(steps[span])[:, None] * heading[None]
            moving[span] = True
    for i in range(n):
        gray = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY)
        R_prev, pos_prev = (R0, np.zeros(3)) if i == 0 else (R_world[i - 1], pos[i - 1])
        R_world[i] = R_prev if rotations is None else rotations[i]
        pos[i] = pos_prev
        if is_unusable(gray):
            if key is not None:
                continue_tail(i - 1)
                pos[i] = pos[i - 1]
            dark += 1
            key = None
        elif key is None:  # (re)start tracking here; the first frame is the origin
            tracker.start(gray)
            key, valid[i] = i, i == 0
        else:
            R_known = None if rotations is None else rotations[key].T @ rotations[i]
            rel = tracker.track(gray, R_known)
            if rel is None:
                continue_tail(i - 1)
                pos[i] = pos[i - 1]
                failures += 1
                tracker.start(gray)  # a fresh start here: the next frame is tracked from this one
                key = i
            else:
                R_rel, direction, parallax, tracks = rel
                parallaxes.append(parallax)
                track_counts.append(tracks)
                R_world[i] = R_world[key] @ R_rel if rotations is None else rotations[i]
                valid[i] = True
                span = slice(key + 1, i + 1)
                if direction is not None:  # new keyframe: place frames key+1..i along the direction
                    heading = R_world[key] @ direction
                    pos[span] = pos[key] + np.cumsum(steps[span])[:, None] * heading[None]
                    moving[span] = True
                    tracker.new_keyframe(gray)
                    key = i
                elif times[i] - times[key] > STATIC_SPAN_S:  # no parallax built up: static span
                    pos[span] = pos[key]
                    heading = None
                    tracker.new_keyframe(gray)
                    key = i
    continue_tail(n - 1)
    report = {
        "method": "visual odometry (Shi-Tomasi + pyramidal Lucas-Kanade, 5-point essential matrix)",
        "rotation_source": "video" if rotations is None else "given rotations",
        "intrinsics": {k: round(float(v), 4) for k, v in intrinsics.items()},
        "intrinsics_source": intr_source,
        "scale": _scale_rule(speed),
        "frames": int(n),
        "valid_frames": int(valid.sum()),
        "dark_or_blank_frames": int(dark),
        "tracking_failures": int(failures),
        "moving_frames": int(moving.sum()),
        "static_frames": int(n - moving.sum()),
        "median_tracks": float(np.median(track_counts)) if track_counts else 0.0,
        "median_parallax_px": float(np.median(parallaxes)) if parallaxes else 0.0,
        "distance_m": float(np.linalg.norm(np.diff(pos, axis=0), axis=1).sum()),
    }
    if dark == n:
        raise UserError(f"{name}: all {n} frames are too dark or blank to estimate motion from")
    if valid.sum() <= 1 and n > 1:
        raise UserError(f"{name}: could not track the camera in any frame ({failures} tracking failures, "
                        f"{dark} dark or blank frames; too little texture?), so there is no motion to estimate "
                        "(give its motion as a file, or import it with --motion-format none)")
    turned = rotation_angle(np.einsum("ji,njk->nik", R_world[0], R_world)).max()  # from frame 0
    if not moving.any() and np.degrees(turned) < STATIC_ROTATION_DEG:
        raise UserError(f"{name}: the camera does not move (no parallax and under "
                        f"{STATIC_ROTATION_DEG:g} degree of rotation in {n} frames), so there is no "
                        "motion to estimate (import it with --motion-format none, or give its motion)")
    return make_pose(R_world, pos), valid, report


def _step_lengths(times: np.ndarray, speed) -> np.ndarray:
    """(N,) metres travelled from frame i-1 to frame i when moving (entry 0 is 0)."""
    dt = np.concatenate([[0.0], np.diff(times)])
    if speed is None:
        v = np.full(len(times), WALKING_SPEED)
    else:
        v = np.broadcast_to(np.asarray(speed, np.float64), times.shape).copy()
        v[~np.isfinite(v)] = WALKING_SPEED if np.isfinite(v).sum() == 0 else np.nanmedian(v)
    return v * dt


def _scale_rule(speed) -> str:
    if speed is None:
        return f"walking speed {WALKING_SPEED} m/s while moving, 0 when static"
    if np.ndim(speed) == 0:
        return f"given speed {float(speed):g} m/s while moving, 0 when static"
    return "given per-frame speeds while moving, 0 when static"


def _bearings(pts: np.ndarray, K_inv: np.ndarray) -> np.ndarray:
    """(M, 2) pixels -> (M, 3) unit bearing vectors in camera axes."""
    b = np.c_[pts, np.ones(len(pts))] @ K_inv.T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def fit_rotation(b_key: np.ndarray, b_cur: np.ndarray) -> np.ndarray:
    """Rotation R (camera j's axes in keyframe k's) minimising |b_key - R b_cur|^2 (Kabsch)."""
    U, _, Vt = np.linalg.svd(b_key.T @ b_cur)
    d = np.sign(np.linalg.det(U @ Vt))
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def direction_given_rotation(b_key: np.ndarray, b_cur: np.ndarray, R_rel: np.ndarray) -> np.ndarray | None:
    """Unit position of camera j in keyframe k's axes when their relative rotation R_rel is known.

    Epipolar constraint: b_key, R_rel b_cur and the baseline c are coplanar, so
    c . (b_key x R_rel b_cur) = 0 for every track; c is the null vector of those rows, its sign
    the one that puts the points in front of both cameras (cheirality)."""
    a = R_rel @ b_cur.T  # (3, M) current bearings in keyframe axes
    rows = np.cross(b_key, a.T)
    c = np.linalg.eigh(rows.T @ rows)[1][:, 0]  # eigenvector of the smallest eigenvalue
    # depths: d_k b_key = c + d_j a  ->  least squares per track; count tracks in front of both
    # 2x2 normal equations per track: [[1, -k.a], [-k.a, 1]] [d_k, d_j] = [k.c, -a.c]
    ka = np.sum(b_key * a.T, axis=1)
    kc, ac = b_key @ c, a.T @ c
    det = np.maximum(1.0 - ka ** 2, 1e-12)
    d_k, d_j = (kc - ka * ac) / det, (ka * kc - ac) / det
    front = ((d_k > 0) & (d_j > 0)).sum()
    behind = ((d_k < 0) & (d_j < 0)).sum()
    if front == behind:
        return None
    return c if front > behind else -c


class _Tracker:
    """Tracks corners from a keyframe to the current frame and measures the motion between them."""

    def __init__(self, K: np.ndarray, width: int, height: int, keyframe_parallax_px: float):
        self.K, self.K_inv = K, np.linalg.inv(K)
        self.f = float(K[0, 0])
        self.min_distance = max(4, int(round(min(width, height) / 40)))
        self.keyframe_parallax_px = keyframe_parallax_px

    def start(self, gray: np.ndarray) -> None:
        self.prev = gray
        self.key_pts = self.cur_pts = np.zeros((0, 2), np.float32)
        self.new_keyframe(gray)

    def new_keyframe(self, gray: np.ndarray) -> None:
        """The current frame becomes the keyframe: keep surviving tracks, top up with new corners."""
        pts = self.cur_pts
        if len(pts) < MAX_CORNERS:
            mask = np.full(gray.shape, 255, np.uint8)
            for x, y in pts:
                cv2.circle(mask, (int(x), int(y)), self.min_distance, 0, -1)
            new = cv2.goodFeaturesToTrack(gray, MAX_CORNERS - len(pts), 0.01, self.min_distance, mask=mask)
            if new is not None:
                pts = np.concatenate([pts, new.reshape(-1, 2)]).astype(np.float32)
        self.key_pts = self.cur_pts = pts
        self.prev = gray

    def track(self, gray: np.ndarray, R_known: np.ndarray | None):
        """Track into `gray`. Returns (R_rel, direction or None, parallax px, tracks) or None on failure.

        R_rel: camera j's axes in keyframe k's; direction: unit position of j in k's axes, given
        only once the parallax is large enough to trust it (then j should become the keyframe)."""
        if len(self.cur_pts) < MIN_TRACKS:
            return None
        p0 = self.cur_pts.reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(self.prev, gray, p0, None, **_LK)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self.prev, p1, None, **_LK)
        fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
        h, w = gray.shape
        p1 = p1.reshape(-1, 2)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < FB_MAX_ERROR_PX) \
            & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        self.key_pts, self.cur_pts, self.prev = self.key_pts[ok], p1[ok], gray
        if ok.sum() < MIN_TRACKS:
            return None
        b_key, b_cur = _bearings(self.key_pts, self.K_inv), _bearings(self.cur_pts, self.K_inv)
        if R_known is None:  # rotation-only fit, trimmed once to drop moving objects and bad tracks
            R_rel = fit_rotation(b_key, b_cur)
            res = np.linalg.norm(b_key - b_cur @ R_rel.T, axis=1)
            keep = res <= max(3 * np.median(res), 1.0 / self.f)
            if keep.sum() >= MIN_TRACKS:
                R_rel = fit_rotation(b_key[keep], b_cur[keep])
        else:
            R_rel = R_known
        parallax = float(np.median(np.linalg.norm(b_key - b_cur @ R_rel.T, axis=1))) * self.f
        if parallax < self.keyframe_parallax_px:
            return R_rel, None, parallax, int(ok.sum())
        E, mask = cv2.findEssentialMat(self.key_pts, self.cur_pts, self.K, method=cv2.USAC_ACCURATE,
                                       prob=0.999, threshold=RANSAC_THRESHOLD_PX)
        if E is None or E.shape != (3, 3) or mask is None or mask.sum() < MIN_TRACKS:
            return None
        inl = mask.ravel() > 0
        if R_known is None:
            _, R, t, _ = cv2.recoverPose(E, self.key_pts[inl], self.cur_pts[inl], self.K)
            R_rel = R.T  # OpenCV: x_cur = R x_key + t, so camera j's axes in k's are R^T
        direction = direction_given_rotation(b_key[inl], b_cur[inl], R_rel)
        if direction is None:
            return None
        return R_rel, direction, parallax, int(ok.sum())
