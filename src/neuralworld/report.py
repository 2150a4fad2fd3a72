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


def _cell(v) -> str:
    """A table cell's text: '-' for None, floats to 3 decimals (2 from 10 up)."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
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
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
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


# ----------------------------------------------------------------------------- the eval report

def _subjects(result: dict) -> list[tuple[str, dict]]:
    return [("world", result)] + list(result["baselines"].items())


def horizon_figure(result: dict) -> bytes:
    """PSNR and SSIM per rollout horizon, world against the baselines."""
    fig, (a, b) = new_figure(2)
    for name, r in _subjects(result):
        hs = r["rollout"]["horizons"]
        a.plot(hs, [v if v is not None else np.nan for v in r["rollout"]["psnr"]], "o-", label=name)
        b.plot(hs, [v if v is not None else np.nan for v in r["rollout"]["ssim"]], "o-", label=name)
    for ax, what in ((a, "PSNR (dB)"), (b, "SSIM")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("horizon (frames after real memory)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    return figure_png(fig)


def curves_figure(result: dict) -> bytes:
    """PSNR per step of the open-loop rollouts, and detail retention over the free-play rollout."""
    fig, (a, b) = new_figure(2)
    a.plot(np.arange(1, len(result["rollout"]["psnr_by_step"]) + 1), result["rollout"]["psnr_by_step"])
    a.set_xlabel("step")
    a.set_ylabel("PSNR (dB), mean over starts")
    a.set_title("open loop, recorded controls")
    chunks = [v if v is not None else np.nan for v in result.get("detail_by_chunk", [])]
    b.plot(np.arange(len(chunks)) * 50 + 25, chunks, "o-")
    b.axhline(1.0, color="gray", ls="--", lw=1)
    b.set_xlabel("free-play frame")
    b.set_ylabel("detail retention (1 = real)")
    b.set_title("free play")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return figure_png(fig)


def play_figure(play: dict) -> bytes:
    """The tour's chunk values against their bands: detail, structure, contrast and colour distance."""
    chunks, bands = play["chunks"], play["bands"]
    x = np.arange(len(chunks["detail"])) * 50 + 25
    limits = [("detail", "detail (reference = 1)", bands["detail"]),
              ("structure", "structure (reference = 1)", bands["structure"]),
              ("contrast", "luma contrast (reference = 1)", bands["contrast"]),
              ("colour", "mean colour distance", [0.0, bands["colour_max"]])]
    fig, axes = new_figure(len(limits), size=(4.2, 3.0))
    for ax, (key, label, (lo, hi)) in zip(axes, limits):
        ax.axhspan(lo, hi, color="tab:green", alpha=0.15, label="band of the real frames")
        ok = np.array(chunks["in_band"])
        values = np.array(chunks[key])
        ax.plot(x, values, "-", color="gray", lw=1)
        ax.plot(x[ok], values[ok], "o", color="tab:green")
        ax.plot(x[~ok], values[~ok], "x", color="tab:red", label="chunk out of band")
        ax.set_xlabel("tour frame")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if key == "detail":
            ax.set_yscale("log")
            ax.legend(fontsize=7)
    return figure_png(fig)


def play_text(play: dict) -> str:
    collapse = play["frames_until_collapse"]
    held = "held" if collapse is None else f"left its bands at frame {collapse}"
    return (f"Idle: PSNR {play['idle_psnr']:.2f} dB after {play['idle_frames']} frames standing still. Tour of "
            f"{play['tour_frames']} frames: {held}; moves {play['moves']:.2f} of the real frame-to-frame change "
            f"({'moves' if play['moved'] else 'too still: a frozen world scores 0'}).")


def write_eval_report(out: Path, result: dict, media: dict, fps: float = 15.0, clips: bool = True) -> None:
    """index.html (+ MP4 clips when `clips`) into the folder `out` from metrics and sample frames."""

    out = Path(out)
    page = Page(f"neuralworld eval: {result.get('world', 'world')}")
    caps = ", ".join(f"{c['name']} ({c['frames']} frames)" for c in result["evaluated"]["captures"])
    page.text(f"Held-out captures: {caps}. World size {result['evaluated']['world_size'][1]}x"
              f"{result['evaluated']['world_size'][0]}, memory window {result['evaluated']['memory_window']} "
              f"frames. Rollout speed {result['speed']['frames_per_s']:.1f} frames/s "
              f"({result['speed']['device']}). Full numbers: metrics.json.")
    page.heading("Summary")
    page.table(*summary_rows(result))
    for note in result["evaluated"]["notes"]:
        page.text("Note: " + note)
    fid = result["control_fidelity"]
    if not fid.get("available"):
        page.text(f"Control fidelity: not available ({fid.get('reason', '')}).")
    page.heading("Rollout against the real frames")
    page.image(horizon_figure(result), "PSNR and SSIM of the h-th generated frame, open loop from real "
                                       "memory with the recorded controls")
    page.image(curves_figure(result), "left: PSNR per step; right: high-frequency share of the free-play "
                                      "rollout relative to the real frames, per 50 frames")
    if "rollout" in media:
        real, gen, last = media["rollout"]
        cols = [h - 1 for h in result["rollout"]["horizons"] if h <= len(gen)]
        page.image(png_bytes(grid([[real[i] for i in cols], [gen[i] for i in cols], [last for _ in cols]])),
                   "rows: real, generated, copy-last; columns: horizons "
                   + ", ".join(str(i + 1) for i in cols))
        if clips:
            write_mp4(out / "rollout.mp4", (side_by_side(r, g) for r, g in zip(real, gen)), fps, scale=_scale(real))
            page.video("rollout.mp4", "real (left) and generated (right), recorded controls")
    if "tour" in media:
        tour = media["tour"]
        page.heading("Play: idle and the tour")
        page.text(play_text(result["play"]))
        page.image(play_figure(result["play"]), "per 50-frame chunk of the tour: the statistic against the band "
                                                "its real frames span")
        picks = list(range(0, len(tour), 50))
        page.image(png_bytes(grid([[tour[i] for i in picks]])),
                   "the tour, one frame per 50 (stand, walk, turn, look up and down, strafe, back up; or "
                   "steering and throttle)")
        if clips:
            write_mp4(out / "tour.mp4", tour, fps, scale=_scale(tour))
            page.video("tour.mp4", f"{len(tour)} frames of the tour")
    if "free_play" in media:
        gen = media["free_play"]
        picks = np.linspace(0, len(gen) - 1, min(8, len(gen))).round().astype(int)
        page.heading("Free play")
        page.image(png_bytes(grid([[gen[i] for i in picks]])),
                   "free-play frames " + ", ".join(str(i + 1) for i in picks))
        if clips:
            write_mp4(out / "free_play.mp4", gen, fps, scale=_scale(gen))
            page.video("free_play.mp4", f"{len(gen)} frames of free play")
    if "fidelity" in media:
        truth, gen = media["fidelity"]
        picks = np.linspace(0, len(gen) - 1, min(8, len(gen))).round().astype(int)
        page.heading("Control fidelity")
        page.image(png_bytes(grid([[truth[i] for i in picks], [gen[i] for i in picks]])),
                   "random walk-and-look commands; rows: true render, generated")
        if clips:
            write_mp4(out / "fidelity.mp4", (side_by_side(t, g) for t, g in zip(truth, gen)), fps, scale=_scale(gen))
            page.video("fidelity.mp4", "true render (left) and generated (right) of the same commands")
    (out / "index.html").write_text(page.render())


def _scale(frames) -> int:
    """Enlarge small frames in clips to about 256 pixels tall."""
    return max(1, 256 // frames[0].shape[0])


# ----------------------------------------------------------------------------- the eval table

def summary_rows(result: dict) -> tuple[list[str], list[list]]:
    """The eval table: one row per subject (world, copy-last, other world)."""
    horizons = result["rollout"]["horizons"]
    measured = [i for i, v in enumerate(result["rollout"]["ssim"]) if v is not None]
    last = measured[-1] if measured else len(horizons) - 1  # the longest horizon that was measured
    header = ["", "1-step PSNR", "1-step SSIM"] + [f"PSNR@{h}" for h in horizons] + \
             [f"SSIM@{horizons[last]}", "detail", "control fidelity", "idle PSNR", "collapse at", "moves"]
    subjects = [("world", result)] + [(k, v) for k, v in result["baselines"].items()]
    rows = [[name, r["one_step"]["psnr"], r["one_step"]["ssim"], *r["rollout"]["psnr"],
             r["rollout"]["ssim"][last], r["detail_retention"], fidelity_text(r["control_fidelity"]),
             *play_cells(r.get("play"))]
            for name, r in subjects]
    return header, rows


def play_cells(play: dict | None) -> list:
    """idle PSNR, frames until collapse ("held" when none) and moves of a play record."""
    if not play:
        return [None, None, None]
    collapse = play["frames_until_collapse"]
    return [play["idle_psnr"], "held" if collapse is None else collapse, play["moves"]]


def fidelity_text(fid: dict) -> str:
    """A control_fidelity record as a table cell: dB against a true render, degrees per frame, or n/a."""
    if not fid.get("available"):
        return "n/a"
    return f"{fid['psnr']:.2f} dB" if "psnr" in fid else f"{fid['rotation_error_deg_per_frame']:.3f} deg/frame"


def summary_table(result: dict) -> str:
    return markdown_table(*summary_rows(result))
