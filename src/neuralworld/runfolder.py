"""The files of a training run's folder: the checkpoint, metrics.csv, preview strips, and the
rule that keeps a user's world safe until a new run has something to show (a new run works in
a hidden partial folder that becomes the output at its first checkpoint; see train.py)."""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "neuralworld-checkpoint"
CHECKPOINT_KEYS = {"step", "samples", "elapsed_s", "preset", "seed", "batch", "val_fraction", "config", "schema",
                   "summary", "net", "ema", "ema_count", "opt"}
METRIC_COLUMNS = ["step", "samples", "elapsed_s", "samples_per_s", "loss", "l1", "g_adv", "d_loss",
                  "val_l1", "val_psnr", "val_copy_psnr"]


def write_preview(path: Path, rows: list[np.ndarray]) -> None:
    """Rows of (n, H, W, 3) uint8 frames -> one PNG strip (rows padded to the longest)."""
    import cv2

    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    sheet = np.zeros((len(rows) * (h + 2), n * (w + 2), 3), np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            sheet[i * (h + 2):i * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = frame
    ok, png = cv2.imencode(".png", sheet[:, :, ::-1])
    atomic_write_bytes(path, png.tobytes())


def partial_folder(output: Path) -> Path:
    """Where a new run works until its first checkpoint: a hidden sibling of OUTPUT."""
    return output.parent / f".{output.name}.partial"


def check_output(output: Path, resume: bool, force: bool) -> None:
    """Refuse what would lose a user's files or cannot continue, before any work or writing."""
    if resume:
        if not (output / CHECKPOINT).is_file():
            hint = (" (a run stopped before its first checkpoint leaves nothing to resume; train again "
                    "without --resume)" if not output.exists() or partial_folder(output).exists() else
                    " (train without --resume first)")
            raise UserError(f"{output}: no {CHECKPOINT} to resume from{hint}")
        return
    if output.exists() and not force:
        raise UserError(f"{output}: already exists (pass --resume to continue its training, "
                        "or --force to replace it)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = output.parent / f".{output.name}.write-test-{os.getpid()}"  # one per process (torchrun ranks)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{output}: cannot write the world folder there ({e.strerror or e})") from None


def commit_output(work: Path, output: Path) -> None:
    """Make the partial folder OUTPUT; an old OUTPUT (--force) is removed only after that."""
    old = output.parent / f".{output.name}.replaced"
    if old.exists():
        shutil.rmtree(old)
    if output.exists():
        output.rename(old)
    work.rename(output)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def save_checkpoint(output: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(output / CHECKPOINT, buf.getvalue())


def load_checkpoint(output: Path) -> dict:
    """checkpoint.pt, read without running any pickled code; one line when it is damaged."""
    path = output / CHECKPOINT
    again = "train again without --resume, with --force"
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, IndexError, KeyError, pickle.UnpicklingError) as e:
        raise UserError(f"{path}: cannot read the checkpoint ({type(e).__name__}); it is damaged, or not a "
                        f"neuralworld checkpoint ({again})") from None
    missing = CHECKPOINT_KEYS - set(state) if isinstance(state, dict) else CHECKPOINT_KEYS
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or missing:
        raise UserError(f"{path}: not a neuralworld checkpoint ({again})")
    return state


class MetricsLog:
    """metrics.csv (one row per logged step; validation columns on checkpoint rows), and
    TensorBoard scalars when tensorboard is installed. `path` may move (partial -> output)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows = []
        if resume_step is not None and path.is_file():  # drop rows a killed run wrote after its checkpoint
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])
