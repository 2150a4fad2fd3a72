"""Posed recordings made by other tools: phone apps that track the camera with ARKit or ARCore,
and structure-from-motion tools. Each reader returns the frames (a video, or image files in
order) and a per-frame pose log in our axes (geometry.CONVENTION), which `import` aligns like
any log with one row per frame (motion_files.align).

  nerfstudio  `transforms.json` (nerfstudio's format, which extends instant-ngp's and the
              original NeRF's; https://docs.nerf.studio/quickstart/data_conventions.html):
              `frames` of {file_path, transform_matrix 4x4 camera-to-world}, OpenGL camera
              axes (x right, y up, z back); intrinsics fl_x, fl_y, cx, cy, w, h (or
              camera_angle_x) at the top level or per frame; file paths relative to the file.
              Times: a per-frame `timestamp` in seconds when every frame has one, else the
              frames 1/fps apart (--fps) in natural file-name order. (nerfstudio's `time` is
              normalised to 0..1 by D-NeRF-style data sets, so it is not read as seconds.)
  colmap      A COLMAP sparse model (https://colmap.github.io/format.html), text or binary:
              cameras, images (world-to-camera quaternion qw qx qy qz and translation, OpenCV
              camera axes), points3D; read with pycolmap, COLMAP's own bindings, so every
              camera model COLMAP writes is understood. Frames are the model's images in
              natural name order together with the other images of the images folder, which
              have no pose and are dropped (with a note); no times (--fps).
              Point import at the project folder (`images/` + `sparse/0/`), the model folder,
              or give the images folder as the source and the model with --motion.
  stray       Stray Scanner (https://github.com/strayrobots/scanner, docs/format.md): `rgb.mp4`,
              `odometry.csv` (`timestamp, frame, x, y, z, qx, qy, qz, qw`: camera-to-world,
              the app turns ARKit's camera by 180 degrees about x into OpenCV axes, world is
              ARKit's, y up) and `camera_matrix.csv` (3x3 intrinsics at the video's size).
  record3d    Record3D: a `.r3d` file (a zip archive of `metadata` + `rgbd/<i>.jpg`) or its
              exported folder (`metadata.json` + `rgb/<i>.jpg`), as read by nerfstudio's
              `ns-process-data record3d`: metadata `poses` [qx, qy, qz, qw, px, py, pz] per frame
              (ARKit axes), `K` (3x3, column-major) at `w` x `h`, `fps`, `frameTimestamps`.
  polycam     Polycam's raw data export (https://github.com/PolyCam/polyform, README):
              `keyframes/corrected_images` + `corrected_cameras` (globally optimised; else
              `images` + `cameras`), one JSON per keyframe named by its timestamp in
              microseconds, with fx, fy, cx, cy, width, height and the rows t_00..t_23 of the
              3x4 camera-to-world matrix in ARKit axes.

World up: the ARKit apps' worlds are gravity-aligned, y up. nerfstudio's and COLMAP's are not
fixed (nerfstudio's own processing makes z up; a COLMAP model's world is usually its first
camera's, y down), so with --pose-axes auto the reader takes, among the conventions that fit
the format, the one whose world up agrees best with the cameras' mean up direction (people
and cars hold cameras roughly upright).

Pixel centres: COLMAP and nerfstudio put the first pixel's centre at (0.5, 0.5), we at (0, 0),
so their principal points move by half a pixel. Intrinsics given for another image size than
the frames' are scaled to it. Lens distortion is not undone (a note says so).

Checked, each an error naming the file and the frame: a listed image that does not exist,
a matrix that is not a rotation plus a translation (scaled, sheared, mirrored, or a last row
other than 0 0 0 1), NaN or infinite values, and images without poses or poses without
images where the format pairs them one to one.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralworld.capture.motion_files import MotionLog, orthonormal, read_motion, to_our_axes
from neuralworld.capture.video import (IMAGE_SUFFIXES, Source, image_source, natural_key, open_source,
                                       transform_intrinsics)
from neuralworld.errors import UserError
from neuralworld.geometry import invert_pose, make_pose, quat_to_matrix

RECORDING_FORMATS = ("nerfstudio", "colmap", "stray", "record3d", "polycam")
AUTO_AXES = {  # conventions --pose-axes auto chooses among, by the cameras' mean up direction
    "nerfstudio": ("opengl", "arkit"), "colmap": ("kitti", "opencv", "opencv-yup"),
    "stray": ("opencv-yup",), "record3d": ("arkit",), "polycam": ("arkit",),
}
RIGID_TOLERANCE = 1e-3  # max |R^T R - I| of a rotation written as text
UNIT_TOLERANCE = 1e-3  # max | |q| - 1 | of a rotation quaternion
_COLMAP_MODELS = ("", "sparse/0", "sparse", "colmap/sparse/0")  # where a project keeps its model


@dataclass
class Recording:
    format: str
    source: Source  # the frames: a video, or image files in order
    log: MotionLog  # one pose per posed frame (frame_index into the source), our axes


def detect_recording(path) -> str | None:
    """The format of a posed recording at `path` (a folder or file), or None."""
    return next((fmt for fmt in RECORDING_FORMATS if fits(path, fmt)), None)


def fits(path, fmt: str) -> bool:
    """True when `path` has the layout of a `fmt` recording (see _LAYOUTS)."""
    path = Path(path)
    if fmt == "nerfstudio":
        file = path / "transforms.json" if path.is_dir() else path
        return file.suffix.lower() == ".json" and isinstance(_load_json(file, quiet=True).get("frames"), list)
    if fmt == "colmap":
        return _colmap_model(path) is not None
    if path.is_file():
        return fmt == "record3d" and path.suffix.lower() == ".r3d"
    if fmt == "stray":
        return (path / "rgb.mp4").is_file() and (path / "odometry.csv").is_file()
    if fmt == "record3d":
        return _record3d_metadata(path) is not None
    keyframes = path / "keyframes" if (path / "keyframes").is_dir() else path
    return fmt == "polycam" and any((keyframes / d).is_dir() for d in ("cameras", "corrected_cameras"))


def read_recording(path, fmt: str = "auto", pose_axes: str = "auto", images=None,
                   stack: contextlib.ExitStack | None = None) -> Recording:
    """Read the recording at `path` (format `fmt` or detected). `images`: a folder holding the
    frames named by a COLMAP model or transforms.json, instead of the one beside it. `stack`
    holds temporary files (a .r3d archive's images) for as long as the frames are read."""
    path, images = Path(path), Path(images) if images is not None else None
    for p in (path, images):
        if p is not None and not p.exists():
            raise UserError(f"{p}: no such file or folder")
    fmt = detect_recording(path) if fmt == "auto" else fmt
    if fmt is None:
        raise UserError(f"{path}: not a recording this version reads (expected {', '.join(RECORDING_FORMATS)})")
    if not fits(path, fmt):
        raise UserError(f"{path}: does not look like a {fmt} recording ({_LAYOUTS[fmt]})")
    if images is not None and fmt not in ("nerfstudio", "colmap"):
        raise UserError(f"{path}: a {fmt} recording brings its own frames: give it as the source, without --motion")
    if fmt == "nerfstudio":
        source, log, size = _read_nerfstudio(path, images)
    elif fmt == "colmap":
        source, log, size = _read_colmap(path, images)
    elif fmt == "stray":
        source, log, size = _read_stray(path)
    elif fmt == "record3d":
        source, log, size = _read_record3d(path, stack or contextlib.ExitStack())
    else:
        source, log, size = _read_polycam(path)
    if pose_axes == "auto":
        pose_axes = max(AUTO_AXES[fmt], key=lambda a: _mean_up(to_our_axes(log.poses, a)))
    log.poses, log.pose_axes, log.format = to_our_axes(log.poses, pose_axes), pose_axes, fmt
    if log.intrinsics is not None and size is not None:  # scale to the frames' own size
        w, h = size
        if (w, h) != (source.width, source.height):
            log.intrinsics = transform_intrinsics(log.intrinsics, (0, 0, w, h), source.width, source.height)
    return Recording(fmt, source, log)


_LAYOUTS = {
    "nerfstudio": "expected transforms.json, or a folder holding it",
    "colmap": "expected a COLMAP sparse model (cameras, images, points3D .bin or .txt), or a project folder "
              "with images/ and sparse/0/",
    "stray": "expected a Stray Scanner folder with rgb.mp4 and odometry.csv",
    "record3d": "expected a .r3d file, or an exported folder with metadata.json and rgb/",
    "polycam": "expected a Polycam raw export folder with keyframes/cameras and keyframes/images",
}


def _mean_up(poses: np.ndarray) -> float:
    """Mean over cameras of world up . camera up (camera up = -y in OpenCV axes)."""
    return float(np.mean(-poses[:, 2, 1]))


# ---------------------------------------------------------------- shared checks

def _load_json(path: Path, quiet: bool = False) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if quiet:
            return {}
        raise UserError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        if quiet:
            return {}
        raise UserError(f"{path}: expected a JSON object")
    return data


def _numbers(path: Path, value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """`value` as a finite float array of `shape`, or an error naming the file and `what`."""
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: {what} is not numbers") from None
    if a.shape != shape:
        raise UserError(f"{path}: {what} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        where = f" (entry {np.argwhere(~np.isfinite(a))[0][0]})" if a.ndim else ""
        raise UserError(f"{path}: {what} has NaN or infinite values{where}: fix or drop that frame")
    return a


def rigid(path: Path, M: np.ndarray, what: str) -> np.ndarray:
    """A 3x4 or 4x4 camera-to-world matrix -> 4x4 with an exact rotation; an error when its 3x3
    part is not a rotation (scaled, sheared, mirrored) or its last row is not 0 0 0 1."""
    R = M[:3, :3]
    bad = np.abs(R.T @ R - np.eye(3)).max() > RIGID_TOLERANCE or np.linalg.det(R) < 0
    if bad or (M.shape[0] == 4 and np.abs(M[3] - [0, 0, 0, 1]).max() > RIGID_TOLERANCE):
        raise UserError(f"{path}: {what} is not a rigid transform (its rotation part is scaled, sheared or "
                        "mirrored, or its last row is not 0 0 0 1): fix or drop that frame")
    return make_pose(orthonormal(R), M[:3, 3])


def unit_quaternions(path: Path, q: np.ndarray, names: list[str]) -> np.ndarray:
    """(N, 4) x y z w -> normalised; an error for a quaternion that is not of unit length."""
    norm = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(np.abs(norm - 1) > UNIT_TOLERANCE)
    if len(bad):
        raise UserError(f"{path}: {names[bad[0]]} has a rotation quaternion of length {norm[bad[0]]:.4g}, "
                        "not 1: not a rotation (fix or drop that frame)")
    return q / norm[:, None]


def _image(root: Path, name: str, where: Path, what: str) -> Path:
    """The image file `name` under `root`; tries image suffixes for a name without one (NeRF's
    synthetic scenes); an error naming the file that lists it otherwise."""
    p = root / name
    if p.is_file():
        return p
    if not p.suffix:
        for suffix in (".png", ".jpg", ".jpeg"):
            if p.with_suffix(suffix).is_file():
                return p.with_suffix(suffix)
    raise UserError(f"{where}: {what} names the image {p}, which does not exist (a missing image: restore it or "
                    "remove the frame)")


def _intrinsics_note(values: np.ndarray) -> list[str]:
    """values (N, 4) fx fy cx cy per frame: a note when they differ by over 1% (the median is used)."""
    spread = (values.max(0) - values.min(0)) / np.abs(np.median(values, 0)).clip(1e-9)
    if (spread > 0.01).any():
        return [f"intrinsics differ between frames (fx {values[:, 0].min():.1f}..{values[:, 0].max():.1f}): "
                "using their median"]
    return []


def _pinhole(values: np.ndarray) -> dict:
    fx, fy, cx, cy = np.median(values, axis=0)
    return {"fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy)}


# ---------------------------------------------------------------- nerfstudio / instant-ngp

def _read_nerfstudio(path: Path, images: Path | None):
    file = path / "transforms.json" if path.is_dir() else path
    data = _load_json(file)
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{file}: no `frames` list (expected nerfstudio / instant-ngp transforms.json)")
    paths, matrices, stamps, rows = [], [], [], []
    notes = []
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or "file_path" not in f or "transform_matrix" not in f:
            raise UserError(f"{file}: frame {i} lacks file_path or transform_matrix")
        what = f"frame {i} ({f['file_path']})"
        name = str(f["file_path"])
        paths.append(_image(images, Path(name).name, file, what) if images else _image(file.parent, name, file, what))
        m = f["transform_matrix"]
        shape = (3, 4) if isinstance(m, list) and len(m) == 3 else (4, 4)  # instant-ngp writes 4x4, some tools 3x4
        label = f"{what}'s transform_matrix"
        matrices.append(rigid(file, _numbers(file, m, shape, label), label))
        t = f.get("timestamp")
        stamps.append(None if t is None else float(_numbers(file, t, (), f"{what}'s timestamp")))
        rows.append({k: f.get(k, data.get(k)) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x",
                                                         "camera_angle_y", "k1", "k2", "k3", "k4", "p1", "p2")})
    timed = all(s is not None for s in stamps)
    if not timed and any(s is not None for s in stamps):
        notes.append("only some frames have a timestamp: ignored, frames spaced by --fps in file-name order")
    key = (lambda i: stamps[i]) if timed else (lambda i: natural_key(paths[i]))
    order = sorted(range(len(frames)), key=key)
    source = image_source(file.parent, [paths[i] for i in order])
    K, size = _nerfstudio_intrinsics(file, [rows[i] for i in order], source, notes)
    times = np.array([stamps[i] for i in order]) if timed else None
    log = MotionLog(file, "nerfstudio", times, frame_index=np.arange(len(order)),
                    poses=np.stack([matrices[i] for i in order]), intrinsics=K, intrinsics_from=str(file), notes=notes)
    return source, log, size


def _nerfstudio_intrinsics(file: Path, rows: list[dict], source: Source, notes: list[str]):
    """Pinhole intrinsics (our pixel centres) and the image size they refer to, or (None, None)."""
    values = []
    for r in rows:
        if r["fl_x"] is None and r["camera_angle_x"] is None:
            return None, None
        r = {k: None if v is None else float(_numbers(file, v, (), k)) for k, v in r.items()}
        w, h = r["w"] or source.width, r["h"] or source.height
        fx = r["fl_x"] or 0.5 * w / np.tan(0.5 * r["camera_angle_x"])
        fy = r["fl_y"] or (0.5 * h / np.tan(0.5 * r["camera_angle_y"]) if r["camera_angle_y"] else fx)
        cx = r["cx"] if r["cx"] is not None else w / 2
        cy = r["cy"] if r["cy"] is not None else h / 2
        values.append([fx, fy, cx - 0.5, cy - 0.5, w, h])
    values = np.array(values)
    distortion = {k: rows[0][k] for k in ("k1", "k2", "k3", "k4", "p1", "p2") if rows[0][k]}
    if distortion:
        notes.append(f"lens distortion ({', '.join(f'{k}={v:g}' for k, v in distortion.items())}) is not undone")
    notes += _intrinsics_note(values[:, :4])
    return _pinhole(values[:, :4]), (int(values[0, 4]), int(values[0, 5]))


# ---------------------------------------------------------------- COLMAP

def _colmap_model(path: Path) -> Path | None:
    """The sparse model folder at or under `path` (a file of the model names its folder)."""
    if path.is_file():
        if path.stem not in ("cameras", "images", "points3D") or path.suffix not in (".bin", ".txt"):
            return None
        path = path.parent
    for sub in _COLMAP_MODELS:
        d = path / sub
        if all((d / f"{n}.bin").is_file() or (d / f"{n}.txt").is_file() for n in ("cameras", "images")):
            return d
    return None


def _read_colmap(path: Path, images: Path | None):
    import pycolmap  # COLMAP's bindings: reads text and binary models and every camera model

    model = _colmap_model(path)
    names_file = model / ("images.bin" if (model / "images.bin").is_file() else "images.txt")
    try:
        rec = pycolmap.Reconstruction(str(model))
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{model}: cannot read the COLMAP model ({str(e).splitlines()[0][:200]})") from None
    root = images or _colmap_images(path, model)
    posed = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: natural_key(im.name))
    if not posed:
        raise UserError(f"{names_file}: no registered images (the reconstruction failed?)")
    for im in posed:
        _image(root, im.name, names_file, f"image {im.image_id}")
    on_disk = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    sequence = sorted(set(on_disk) | {im.name for im in posed}, key=natural_key)
    index = {n: i for i, n in enumerate(sequence)}
    labels = [f"image {im.image_id} ({im.name})" for im in posed]
    q = np.stack([_numbers(names_file, im.cam_from_world().rotation.quat, (4,), f"{label}'s rotation")
                  for im, label in zip(posed, labels)])
    t = np.stack([_numbers(names_file, im.cam_from_world().translation, (3,), f"{label}'s translation")
                  for im, label in zip(posed, labels)])
    world_to_camera = make_pose(quat_to_matrix(unit_quaternions(names_file, q, labels)), t)
    cameras = [rec.cameras[im.camera_id] for im in posed]
    values = np.stack([[c.focal_length_x, c.focal_length_y, c.principal_point_x - 0.5, c.principal_point_y - 0.5]
                       for c in cameras])
    notes = _intrinsics_note(values)
    if len({(c.width, c.height) for c in cameras}) > 1:
        raise UserError(f"{model}: cameras of different image sizes in one model: import each camera's images apart")
    distorted = sorted({c.model.name for c in cameras if not c.is_undistorted()})
    if distorted:
        notes.append(f"camera model {', '.join(distorted)}: its lens distortion is not undone")
    source = image_source(root, [root / n for n in sequence])
    log = MotionLog(names_file, "colmap", None, frame_index=np.array([index[im.name] for im in posed]),
                    poses=invert_pose(world_to_camera), intrinsics=_pinhole(values), intrinsics_from=str(model),
                    notes=notes)
    return source, log, (cameras[0].width, cameras[0].height)


def _colmap_images(path: Path, model: Path) -> Path:
    """The images folder of a COLMAP project: PROJECT/images beside sparse/ (or colmap/)."""
    base = path.parent if path.is_file() else path
    for d in (base / "images", model.parent / "images", model.parent.parent / "images",
              model.parent.parent.parent / "images"):
        if d.is_dir():
            return d
    raise UserError(f"{model}: a COLMAP model with no images/ folder beside it (give the images folder as the "
                    f"source and the model with --motion {model})")


# ---------------------------------------------------------------- Stray Scanner

def _read_stray(path: Path):
    odometry = path / "odometry.csv"
    log = read_motion(odometry, "pose-csv", "opencv")  # axes turned in read_recording
    if log.frame_index is None:
        raise UserError(f"{odometry}: no frame column (expected the header timestamp, frame, x, y, z, qx, qy, qz, qw)")
    source = open_source(path / "rgb.mp4")
    matrix = path / "camera_matrix.csv"
    if matrix.is_file():
        try:
            K = np.loadtxt(matrix, delimiter=",", ndmin=2)
        except ValueError:
            raise UserError(f"{matrix}: not a 3x3 matrix of comma-separated numbers") from None
        K = _numbers(matrix, K, (3, 3), "the camera matrix")
        log.intrinsics, log.intrinsics_from = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}, str(matrix)
    else:
        log.notes.append(f"{matrix.name} is missing: intrinsics unknown")
    return source, log, None


# ---------------------------------------------------------------- Record3D

def _record3d_metadata(path: Path) -> Path | None:
    for name in ("metadata.json", "metadata"):
        if (path / name).is_file() and any((path / d).is_dir() for d in ("rgb", "rgbd")):
            return path / name
    return None


def _numbered_images(files) -> list[Path]:
    """Image files named by their frame number (0.jpg, 1.jpg, ...) in number order."""
    return sorted((p for p in files if p.stem.isdigit() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: int(p.stem))


def _read_record3d(path: Path, stack: contextlib.ExitStack):
    if path.is_file():  # a .r3d archive: metadata + rgbd/<i>.jpg (+ depth, not used)
        try:
            archive = stack.enter_context(zipfile.ZipFile(path))
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{path}: not a Record3D .r3d archive ({e})") from None
        members = [m for m in archive.namelist() if m.startswith("rgbd/") and Path(m).stem.isdigit()
                   and Path(m).suffix.lower() in IMAGE_SUFFIXES]
        if "metadata" not in archive.namelist() or not members:
            raise UserError(f"{path}: not a Record3D .r3d archive (no metadata or no rgbd/ images)")
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="neuralworld-r3d-")))
        for m in members:
            archive.extract(m, folder)
        meta_file, meta = path, _load_json_bytes(path, archive.read("metadata"))
        images = _numbered_images((folder / "rgbd").iterdir())
    else:
        meta_file = _record3d_metadata(path)
        meta = _load_json(meta_file)
        folder = path / "rgb" if (path / "rgb").is_dir() else path / "rgbd"
        images = _numbered_images(folder.iterdir())
    poses = meta.get("poses")
    if not isinstance(poses, list) or not poses:
        raise UserError(f"{meta_file}: no `poses` in the metadata")
    n = len(poses)
    if [int(p.stem) for p in images] != list(range(n)):
        numbered = f" numbered {images[0].stem}..{images[-1].stem}" if images else ""
        raise UserError(f"{meta_file}: {n} poses for {len(images)} images{numbered}: images and poses do not match "
                        "(export the recording again)")
    rows = _numbers(meta_file, poses, (n, 7), "poses")  # qx qy qz qw px py pz per frame
    q = unit_quaternions(meta_file, rows[:, :4], [f"pose {i}" for i in range(n)])
    stamps = meta.get("frameTimestamps")
    if isinstance(stamps, list) and len(stamps) == n:
        times = _numbers(meta_file, stamps, (n,), "frameTimestamps")
    else:
        fps = _numbers(meta_file, meta.get("fps", 0), (), "fps")
        times = np.arange(n) / float(fps) if fps > 0 else None
    K = _numbers(meta_file, meta.get("K"), (9,), "K").reshape(3, 3).T  # stored column-major
    size = (int(_numbers(meta_file, meta.get("w"), (), "w")), int(_numbers(meta_file, meta.get("h"), (), "h")))
    log = MotionLog(meta_file, "record3d", times, frame_index=np.arange(n),
                    poses=make_pose(quat_to_matrix(q), rows[:, 4:]), intrinsics_from=str(meta_file),
                    intrinsics={"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]})
    return image_source(path, images), log, size


def _load_json_bytes(path: Path, data: bytes) -> dict:
    try:
        meta = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: its metadata is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: its metadata is not a JSON object")
    return meta


# ---------------------------------------------------------------- Polycam

def _read_polycam(path: Path):
    keyframes = path / "keyframes" if (path / "keyframes").is_dir() else path
    corrected = (keyframes / "corrected_cameras").is_dir() and (keyframes / "corrected_images").is_dir()
    cam_dir = keyframes / ("corrected_cameras" if corrected else "cameras")
    img_dir = keyframes / ("corrected_images" if corrected else "images")
    cameras = sorted(cam_dir.glob("*.json"), key=natural_key)
    images = {p.stem: p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if img_dir.is_dir() else {}
    if not cameras:
        raise UserError(f"{cam_dir}: no camera JSON files")
    missing = [c for c in cameras if c.stem not in images]
    if missing:
        raise UserError(f"{missing[0]}: has no image {missing[0].stem}.jpg in {img_dir} (a missing image: restore it "
                        "or remove the camera)")
    extra = sorted(set(images) - {c.stem for c in cameras})
    if extra:
        raise UserError(f"{images[extra[0]]}: has no camera {cam_dir / (extra[0] + '.json')} (images and cameras "
                        "do not match: restore the camera or remove the image)")
    timed = all(c.stem.isdigit() for c in cameras)
    if timed:
        cameras.sort(key=lambda c: int(c.stem))
    matrices, values = [], []
    for c in cameras:
        j = _load_json(c)
        try:
            M = [[j[f"t_{r}{k}"] for k in range(4)] for r in range(3)]
            values.append([j["fx"], j["fy"], j["cx"], j["cy"], j["width"], j["height"]])
        except KeyError as e:
            raise UserError(f"{c}: no {e.args[0]} (expected Polycam's fx, fy, cx, cy, width, height, "
                            "t_00..t_23)") from None
        matrices.append(rigid(c, _numbers(c, M, (3, 4), "the camera transform t_00..t_23"), "the camera transform"))
        values[-1] = _numbers(c, values[-1], (6,), "the intrinsics")
    values = np.stack(values)
    notes = _intrinsics_note(values[:, :4]) + ([] if corrected else
                                               ["no corrected_cameras: using the unoptimised ARKit poses"])
    if not timed:
        notes.append("keyframe names are not timestamps: frames spaced by --fps in name order")
    times = np.array([int(c.stem) for c in cameras]) * 1e-6 if timed else None  # names: microseconds
    source = image_source(path, [images[c.stem] for c in cameras])
    log = MotionLog(cam_dir, "polycam", times, frame_index=np.arange(len(cameras)), poses=np.stack(matrices),
                    intrinsics=_pinhole(values[:, :4]), intrinsics_from=str(cam_dir), notes=notes)
    return source, log, (int(values[0, 4]), int(values[0, 5]))
