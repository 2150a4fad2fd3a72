"""Write a capture out as the tools of capture/recordings.py would have recorded it.

Each writer follows its format's own documentation, with the conventions written out here
rather than taken from the reader, so that a round trip checks the reader against the format:
  * OpenGL camera axes (nerfstudio, ARKit): x right, y up, z back = ours times diag(1, -1, -1).
  * ARKit world (Record3D, Polycam, Stray Scanner): y up; here x = our x, y = our z, z = -our y.
  * COLMAP world: a camera's frame, y down; here x = our x, y = -our z, z = our y.
Frames are written as PNG (and a lossless video for Stray Scanner), so they come back exactly.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.spatial.transform import Rotation

GL = np.diag([1.0, -1.0, -1.0, 1.0])  # our camera axes -> OpenGL's (right-multiplied)
ARKIT_WORLD = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)  # ours -> ARKit
COLMAP_WORLD = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)  # ours -> y down
STRAY_CLOCK = 8012.25  # ARKit times are seconds since the phone started
POLYCAM_CLOCK_US = 638443502  # Polycam names keyframes by microseconds on its own clock


def _png(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))


def _quat_xyzw(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_quat()


def write_nerfstudio(cap, folder: Path, timestamps: bool = True) -> Path:
    """transforms.json (OpenGL camera, z-up world) + images/, frames listed in reverse order."""
    K = cap.meta["intrinsics"]
    frames = []
    for i in reversed(range(len(cap))):
        _png(folder / "images" / f"frame_{i + 1:05d}.png", cap.frames[i])
        frame = {"file_path": f"images/frame_{i + 1:05d}.png", "transform_matrix": (cap.poses[i] @ GL).tolist()}
        if timestamps:
            frame["timestamp"] = float(cap.times[i])
        frames.append(frame)
    data = {"camera_model": "OPENCV", "w": cap.width, "h": cap.height, "fl_x": K["fx"], "fl_y": K["fy"],
            "cx": K["cx"] + 0.5, "cy": K["cy"] + 0.5, "k1": 0, "k2": 0, "p1": 0, "p2": 0, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(data, indent=2))
    return folder


def write_colmap(cap, project: Path, binary: bool) -> Path:
    """PROJECT/images + PROJECT/sparse/0 (cameras, images, points3D), one PINHOLE camera; image ids
    run backwards so that id order is not name order."""
    K = cap.meta["intrinsics"]
    model = project / "sparse" / "0"
    model.mkdir(parents=True)
    params = [K["fx"], K["fy"], K["cx"] + 0.5, K["cy"] + 0.5]
    images = []
    for i in range(len(cap)):
        name = f"frame_{i:04d}.png"
        _png(project / "images" / name, cap.frames[i])
        world_to_camera = np.linalg.inv(COLMAP_WORLD @ cap.poses[i])
        x, y, z, w = _quat_xyzw(world_to_camera[:3, :3])
        images.append((len(cap) - i, [w, x, y, z], world_to_camera[:3, 3], name))
    if binary:  # little-endian records, as COLMAP's scripts/python/read_write_model.py reads them
        (model / "cameras.bin").write_bytes(struct.pack("<QiiQQ4d", 1, 1, 1, cap.width, cap.height, *params))
        blob = struct.pack("<Q", len(images))
        for image_id, q, t, name in images:
            blob += struct.pack("<i4d3di", image_id, *q, *t, 1) + name.encode() + b"\0" + struct.pack("<Q", 0)
        (model / "images.bin").write_bytes(blob)
        (model / "points3D.bin").write_bytes(struct.pack("<Q", 0))
    else:
        (model / "cameras.txt").write_text("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                                           f"1 PINHOLE {cap.width} {cap.height} {' '.join(repr(v) for v in params)}\n")
        lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
        for image_id, q, t, name in images:
            lines += [f"{image_id} {' '.join(repr(float(v)) for v in (*q, *t))} 1 {name}", ""]
        (model / "images.txt").write_text("\n".join(lines) + "\n")
        (model / "points3D.txt").write_text("# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]\n")
    return project


def write_stray(cap, folder: Path) -> Path:
    """rgb.mp4 (lossless), odometry.csv (OpenCV camera, ARKit world), camera_matrix.csv."""
    folder.mkdir(parents=True)
    with av.open(str(folder / "rgb.mp4"), "w") as c:
        s = c.add_stream("libx264rgb", rate=30)
        s.width, s.height, s.pix_fmt, s.options = cap.width, cap.height, "rgb24", {"crf": "0"}
        for frame in cap.frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        c.mux(s.encode())
    rows = ["timestamp, frame, x, y, z, qx, qy, qz, qw"]
    for i in range(len(cap)):
        T = ARKIT_WORLD @ cap.poses[i]
        values = [float(v) for v in (STRAY_CLOCK + cap.times[i], *T[:3, 3], *_quat_xyzw(T[:3, :3]))]
        rows.append(f"{values[0]!r}, {i:06d}, " + ", ".join(repr(v) for v in values[1:]))
    (folder / "odometry.csv").write_text("\n".join(rows) + "\n")
    K = cap.meta["intrinsics"]
    (folder / "camera_matrix.csv").write_text(f"{K['fx']!r}, 0.0, {K['cx']!r}\n0.0, {K['fy']!r}, {K['cy']!r}\n"
                                              "0.0, 0.0, 1.0\n")
    return folder


def write_record3d(cap, path: Path) -> Path:
    """A .r3d archive (`metadata` + rgbd/<i>.png) when `path` ends in .r3d, else the exported
    folder (metadata.json + rgb/<i>.png). Poses [qx, qy, qz, qw, px, py, pz] in ARKit axes."""
    K = cap.meta["intrinsics"]
    poses = []
    for i in range(len(cap)):
        T = ARKIT_WORLD @ cap.poses[i] @ GL
        poses.append([*_quat_xyzw(T[:3, :3]), *T[:3, 3]])
    meta = {"w": cap.width, "h": cap.height, "fps": 30, "poses": poses,
            "K": [K["fx"], 0, 0, 0, K["fy"], 0, K["cx"], K["cy"], 1],  # column-major
            "frameTimestamps": [float(t) for t in cap.times]}
    images = {i: cv2.imencode(".png", cv2.cvtColor(np.asarray(f), cv2.COLOR_RGB2BGR))[1].tobytes()
              for i, f in enumerate(cap.frames)}
    if path.suffix == ".r3d":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("metadata", json.dumps(meta))
            for i, data in images.items():
                z.writestr(f"rgbd/{i}.png", data)
    else:
        (path / "rgb").mkdir(parents=True)
        (path / "metadata.json").write_text(json.dumps(meta))
        for i, data in images.items():
            (path / "rgb" / f"{i}.png").write_bytes(data)
    return path


def write_polycam(cap, folder: Path) -> Path:
    """keyframes/corrected_images + corrected_cameras, named by microsecond timestamps."""
    K = cap.meta["intrinsics"]
    for i in range(len(cap)):
        stamp = POLYCAM_CLOCK_US + int(round(cap.times[i] * 1e6))
        _png(folder / "keyframes" / "corrected_images" / f"{stamp}.png", cap.frames[i])
        T = ARKIT_WORLD @ cap.poses[i] @ GL
        camera = {"fx": K["fx"], "fy": K["fy"], "cx": K["cx"], "cy": K["cy"], "width": cap.width,
                  "height": cap.height, "blur_score": 120.5, "timestamp": stamp}
        camera.update({f"t_{r}{k}": float(T[r, k]) for r in range(3) for k in range(4)})
        (folder / "keyframes" / "corrected_cameras").mkdir(parents=True, exist_ok=True)
        (folder / "keyframes" / "corrected_cameras" / f"{stamp}.json").write_text(json.dumps(camera))
    return folder
