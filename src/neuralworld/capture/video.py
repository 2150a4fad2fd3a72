"""Reading frames from a video file or a folder of images, centre-cropped and resized.

Videos are decoded with PyAV (anything FFmpeg reads: mp4, mov, mkv, webm, avi, ...). Each
frame's time is its presentation time (`frame.time`) relative to the first frame, so variable
frame rate (common on phones) is kept. A rotation stored in the file (phones filming upright)
is applied, as FFmpeg's players do. Crop, resize and the conversion to RGB run in one FFmpeg
filter graph (crop -> scale with area averaging -> rgb24), so Python touches each frame once.

Image folders: the png/jpg/jpeg/bmp/tif files of one folder, in natural name order
(frame2.png before frame10.png), decoded with OpenCV on two threads. They carry no times.

Working size (`working_size`):
  * `--size WxH` wins (both multiples of 4).
  * Otherwise the reference system's 256x192 (landscape sources; portrait: 192x256) when the
    source is at least that big.
  * A smaller source is never upscaled: the size is the largest (by area) whose sides are
    multiples of 64 and fit in both the source and 256x192 (192x256 portrait); ties go to
    the aspect closest to the source's. Multiples of 64 let the memory pyramid keep all four
    levels. So a 128x128 source stays 128x128 and a 620x188 KITTI image becomes 256x128.
  * A source under 64 pixels on a side keeps its own size rounded down to multiples of 4.
The source is centre-cropped to the working aspect, then resized (area averaging).
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from neuralworld.errors import UserError

DEFAULT_SIZE = (256, 192)  # (width, height) of landscape sources, as the reference system
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_BATCH = 32  # images decoded per batch on the thread pool


@dataclass
class Source:
    """A video file or an image folder, opened and checked (one frame decoded)."""
    path: Path
    kind: str  # "video" | "images"
    width: int  # as displayed (after the file's rotation)
    height: int
    frames: int | None  # expected count when the container says, else None
    fps: float | None  # nominal rate of a video, None for images
    rotation: int = 0  # degrees clockwise applied to the decoded frames
    codec: str | None = None
    images: list[Path] = field(default_factory=list)
    duration: float | None = None  # the video stream's own duration in seconds, when known


def open_source(path) -> Source:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_images(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")
    return _open_video(path)


def natural_key(p) -> list:
    """Sort key of natural name order: frame2.png before frame10.png."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", str(p))]


def _open_images(path: Path) -> Source:
    images = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                    key=natural_key)
    if not images:
        raise UserError(f"{path}: no images in this folder (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return image_source(path, images)


def image_source(path: Path, images: list[Path]) -> Source:
    """A source of the given image files in the given order (`path` names them in messages)."""
    first = _read_image(images[0])
    return Source(Path(path), "images", first.shape[1], first.shape[0], len(images), None, images=list(images))


def _read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale images are repeated over the three channels."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UserError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _open_video(path: Path) -> Source:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise UserError(f"{path}: no frame could be decoded (damaged or cut short?)")
            rotation = (-int(round(first.rotation or 0))) % 360  # FFmpeg's autorotate rule
            width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
            if stream.duration:
                duration = float(stream.duration * stream.time_base)
            else:  # Matroska and WebM give only the container's duration (audio included)
                duration = container.duration / av.time_base if container.duration else None
            fps = float(stream.average_rate) if stream.average_rate else None
            return Source(path, "video", width, height, stream.frames or None, fps, rotation,
                          stream.codec_context.name, duration=duration)
    except UserError:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError) as e:
        raise UserError(f"{path}: cannot be read as a video ({_short(e)}; not a video, or damaged or "
                        "cut short)") from None


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


def working_size(src_width: int, src_height: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) of the stored frames for a source of this size (rule in the module doc)."""
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0 or w % 4 or h % 4:
            raise UserError(f"--size {w}x{h}: width and height must be positive multiples of 4")
        return int(w), int(h)
    cap_w, cap_h = DEFAULT_SIZE if src_width >= src_height else DEFAULT_SIZE[::-1]
    if src_width >= cap_w and src_height >= cap_h:
        return cap_w, cap_h
    max_w, max_h = min(cap_w, src_width), min(cap_h, src_height)
    if max_w < 64 or max_h < 64:
        return max(4, max_w // 4 * 4), max(4, max_h // 4 * 4)
    aspect = math.log(src_width / src_height)
    candidates = [(w, h) for w in range(64, max_w + 1, 64) for h in range(64, max_h + 1, 64)]
    return max(candidates, key=lambda s: (s[0] * s[1], -abs(math.log(s[0] / s[1]) - aspect)))


def crop_box(src_width: int, src_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, crop_width, crop_height): the centred region of the source with the target aspect."""
    if src_width * height > width * src_height:  # source wider than the target: cut the sides
        cw, ch = min(src_width, round(src_height * width / height)), src_height
    else:  # taller: cut top and bottom
        cw, ch = src_width, min(src_height, round(src_width * height / width))
    return (src_width - cw) // 2, (src_height - ch) // 2, cw, ch


def transform_intrinsics(K: dict, crop: tuple[int, int, int, int], width: int, height: int) -> dict:
    """Pinhole intrinsics of the source (pixel centres at integer coordinates) -> the same camera
    seen through the centre crop and the resize to width x height."""
    x0, y0, cw, ch = crop
    sx, sy = width / cw, height / ch
    return {"fx": K["fx"] * sx, "fy": K["fy"] * sy,
            "cx": (K["cx"] - x0 + 0.5) * sx - 0.5, "cy": (K["cy"] - y0 + 0.5) * sy - 0.5}


def iter_frames(source: Source, width: int, height: int) -> Iterator[tuple[float | None, np.ndarray]]:
    """Yield (time in seconds relative to the first frame, None for images and for frames without
    a timestamp; (height, width, 3) uint8 RGB) for every frame of the source, in presentation order."""
    crop = crop_box(source.width, source.height, width, height)
    if source.kind == "images":
        yield from _iter_images(source, crop, width, height)
    else:
        yield from _iter_video(source, crop, width, height)


def _iter_images(source: Source, crop, width: int, height: int):
    x0, y0, cw, ch = crop

    def load(path: Path) -> np.ndarray:
        image = _read_image(path)
        if image.shape[:2] != (source.height, source.width):
            raise UserError(f"{path}: {image.shape[1]}x{image.shape[0]} image in a folder of "
                            f"{source.width}x{source.height} images")
        image = image[y0:y0 + ch, x0:x0 + cw]
        if (cw, ch) == (width, height):
            return np.ascontiguousarray(image)
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    with ThreadPoolExecutor(2) as pool:  # OpenCV releases the GIL while decoding and resizing
        for i in range(0, len(source.images), _BATCH):
            for image in pool.map(load, source.images[i:i + _BATCH]):
                yield None, image


def _filter_graph(first: av.VideoFrame, time_base, rotation: int, crop, width: int, height: int):
    """rotate -> crop -> scale (area) -> rgb24, all inside FFmpeg."""
    graph = av.filter.Graph()
    chain = [graph.add_buffer(width=first.width, height=first.height, format=first.format.name,
                              time_base=time_base)]
    rotate = {90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")],
              270: [("transpose", "cclock")]}.get(rotation, [])
    x0, y0, cw, ch = crop
    for name, arg in rotate + [("crop", f"w={cw}:h={ch}:x={x0}:y={y0}:exact=1"),
                               ("scale", f"w={width}:h={height}:flags=area"),
                               ("format", "rgb24"), ("buffersink", None)]:
        chain.append(graph.add(name, arg) if arg is not None else graph.add(name))
        chain[-2].link_to(chain[-1])
    graph.configure()
    return graph


def _iter_video(source: Source, crop, width: int, height: int):
    path = source.path
    count, t0, t_last, graph = 0, None, None, None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads: decoding is most of the cost
            for frame in container.decode(stream):
                if graph is None:
                    graph = _filter_graph(frame, stream.time_base, source.rotation, crop, width, height)
                    t0 = frame.time or 0.0
                t_last = frame.time if frame.time is not None else t_last
                graph.push(frame)
                image = np.ascontiguousarray(graph.pull().to_ndarray())  # (height, width, 3) uint8; rows may be padded
                count += 1
                yield (frame.time - t0 if frame.time is not None else None), image
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: decoding failed after {count} frames ({_short(e)}; the file may be "
                        "damaged or cut short)") from None
    # A cut file often decodes without an error but stops early: compare with what the container
    # promised. The slack allows for edit lists (a few frames fewer than the sample count) and
    # audio that outlasts the video.
    if source.frames and count < source.frames - max(2, source.frames // 100):
        raise UserError(f"{path}: only {count} of {source.frames} frames could be decoded "
                        "(the file is damaged or cut short)")
    interval = 1.0 / source.fps if source.fps else 0.0
    if source.duration and t_last is not None and (t_last - t0) + interval < source.duration - 0.25 - 1.5 * interval:
        raise UserError(f"{path}: frames end at {t_last - t0:.3f} s but the video should last "
                        f"{source.duration:.3f} s (the file is damaged or cut short)")
