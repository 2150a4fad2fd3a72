"""Output media of `eval`, `rollout` and `ablate`: MP4 clips, PNG figures and a self-contained HTML page.

The page needs no network: figures and sample strips are inline PNGs (base64 data URLs),
clips are MP4 files beside index.html (H.264, yuv420p, which browsers play) referenced by
relative paths.
"""

from __future__ import annotations

import base64
import html
import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames, fps: float, scale: int = 1) -> int:
    """Write (H, W, 3) uint8 frames to an H.264 MP4 (yuv420p), atomically; returns the frame count.

    yuv420p needs even sizes: an odd last row or column is repeated. `scale` enlarges each
    pixel to scale x scale (small worlds are hard to see at their own size).
    """
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        stream = None
        for frame in frames:
            frame = np.asarray(frame, np.uint8)
            if scale > 1:
                frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
            h, w = frame.shape[:2]
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError("no frames to write")
    os.replace(tmp, path)
    return count


def side_by_side(*frames: np.ndarray) -> np.ndarray:
    """(H, W, 3) frames of one size -> (H, W * n, 3), left to right."""
    return np.concatenate(frames, axis=1)


def grid(rows: list[list[np.ndarray]], gap: int = 2, min_height: int = 96) -> np.ndarray:
    """A grid of (H, W, 3) uint8 frames with white gaps, enlarged by a whole factor so that a
    row is at least `min_height` pixels tall."""
    h, w = rows[0][0].shape[:2]
    k = max(1, -(-min_height // h))
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h * k + gap) - gap, cols * (w * k + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            y, x = i * (h * k + gap), j * (w * k + gap)
            out[y:y + h * k, x:x + w * k] = np.asarray(frame, np.uint8).repeat(k, 0).repeat(k, 1)
    return out


def png_bytes(image: np.ndarray) -> bytes:
    import matplotlib.image

    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.asarray(image, np.uint8), format="png")
    return buf.getvalue()


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def new_figure(cols: int = 1, size=(5.0, 3.2)):
    """A matplotlib figure on the Agg backend (no display needed): (fig, axes list)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, cols, figsize=(size[0] * cols, size[1]), squeeze=False)
    return fig, list(axes[0])


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return "inf" if v == float("inf") else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Page:
    """A self-contained HTML page built section by section."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list]) -> None:
        def cell(v):
            if v is None:
                return "-"
            if isinstance(v, float):
                return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
            return html.escape(str(v))

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, png: bytes, caption: str) -> None:
        data = base64.b64encode(png).decode()
        self.parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def video(self, filename: str, caption: str) -> None:
        self.parts.append(f'<figure><video src="{html.escape(filename)}" controls loop muted playsinline>'
                          f'</video><figcaption>{html.escape(caption)} (<a href="{html.escape(filename)}">'
                          f"{html.escape(filename)}</a>)</figcaption></figure>")

    def render(self) -> str:
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;"
                 "text-align:right}th{background:#eee}figure{margin:1em 0}img,video{max-width:100%;"
                 "image-rendering:pixelated}figcaption{color:#555;font-size:90%}")
        return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{style}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body></html>\n")
