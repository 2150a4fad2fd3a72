"""Where uploads land: resumable partial recordings, and finished raw recordings.

The recorder's folder (`neuralworld record -o FOLDER`) holds

  FOLDER/.partial/<id>/     an upload in progress: recording.json, video.part, motion.json
  FOLDER/raw/<id>/          a finished recording: recording.json, video.<webm|mp4>, motion.json
  FOLDER/<id>/              its capture, made from raw/<id>/ by the importer

Every name on disk is made here: a recording id is the server's clock plus random hex
(`20250102-153000-a1b2c3`), never a name sent by a client, and the video's extension comes
from a fixed table of container types. A partial becomes a raw recording in one rename, only
when the client says it is complete and the byte count it announces equals what arrived, so
an upload that stops halfway never leaves a capture behind, only a partial that can be resumed
or that `cleanup_partials` removes. Finished recordings are never deleted here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

from neuralworld.fileio import atomic_write_json

ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
# container types a browser's MediaRecorder writes -> the extension the server gives the file
VIDEO_TYPES = {"video/webm": "webm", "video/x-matroska": "mkv", "video/mp4": "mp4", "video/quicktime": "mov"}
PARTIAL_MAX_AGE_S = 6 * 3600  # a partial untouched this long is abandoned (its page is gone)
READ_BLOCK = 64 * 1024  # uploads go to disk in blocks of this size: a connection holds no more


class TooLarge(Exception):
    """The upload would pass the size cap; the recording has been discarded."""


class OffsetMismatch(Exception):
    """A chunk did not start where the stored bytes end; `received` says where to resume."""

    def __init__(self, received: int):
        super().__init__(f"expected offset {received}")
        self.received = received


def _copy(read, length: int, f) -> int:
    """Write `length` bytes from `read(n) -> bytes` to file `f` block by block; returns the bytes
    written (fewer when the client went away)."""
    left = length
    while left > 0:
        block = read(min(left, READ_BLOCK))
        if not block:
            break
        f.write(block)
        left -= len(block)
    return length - left


def _json_object_ends(path: Path) -> bool:
    """Whether the file starts with `{` and ends with `}` (blanks aside): a check that needs no
    memory, whatever the size."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        tail = f.read().rstrip()
    return head[:1] == b"{" and tail[-1:] == b"}"


def new_recording_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def video_extension(mime: str) -> str | None:
    """'video/webm;codecs=vp8' -> 'webm'; None for a type we do not take."""
    return VIDEO_TYPES.get(str(mime).split(";")[0].strip().lower())


class RecordingStore:
    """The upload state on disk, safe to call from the server's request threads."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = Path(folder)
        self.partial_root = self.folder / ".partial"
        self.raw_root = self.folder / "raw"
        self.max_bytes = int(max_bytes)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.created_here: set[str] = set()  # partials this server made (removed when it stops)

    # --- paths -----------------------------------------------------------------------------
    def partial(self, rec_id: str) -> Path:
        return self.partial_root / rec_id

    def raw(self, rec_id: str) -> Path:
        return self.raw_root / rec_id

    def capture(self, rec_id: str) -> Path:
        return self.folder / rec_id

    def _lock(self, rec_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rec_id, threading.Lock())

    # --- the protocol's steps ----------------------------------------------------------------
    def create(self, mime: str, info: dict) -> str:
        """Start a partial recording; `info` (client-declared, JSON) is kept for reference only."""
        ext = video_extension(mime)
        if ext is None:
            raise ValueError(f"video type {mime!r} not taken (one of {', '.join(VIDEO_TYPES)})")
        self.cleanup_partials(PARTIAL_MAX_AGE_S)
        rec_id = new_recording_id()
        while self.partial(rec_id).exists() or self.raw(rec_id).exists() or self.capture(rec_id).exists():
            rec_id = new_recording_id()
        path = self.partial(rec_id)
        path.mkdir(parents=True)
        (path / "video.part").touch()
        atomic_write_json(path / "recording.json", {
            "id": rec_id, "mime": str(mime)[:100], "video": f"video.{ext}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "client": info,
        })
        self.created_here.add(rec_id)
        return rec_id

    def state(self, rec_id: str) -> dict | None:
        """{'stage': 'uploading', 'received', 'motion'} | {'stage': 'raw'} | None if unknown."""
        if ID_PATTERN.match(rec_id) is None:
            return None
        part = self.partial(rec_id)
        if part.is_dir():
            video = part / "video.part"
            return {"stage": "uploading", "received": video.stat().st_size if video.exists() else 0,
                    "motion": (part / "motion.json").is_file()}
        if self.raw(rec_id).is_dir():
            return {"stage": "raw"}
        return None

    def append(self, rec_id: str, offset: int, length: int, read) -> int:
        """Append `length` bytes, read through `read(n) -> bytes`, at byte `offset` of the video.

        Returns the stored size. A dropped connection keeps the bytes that did arrive (the client
        asks for the size and resumes from there). Raises OffsetMismatch, or TooLarge after
        deleting the whole partial, so that an oversized upload leaves nothing."""
        with self._lock(rec_id):
            part = self.partial(rec_id)
            video = part / "video.part"
            received = video.stat().st_size
            if offset != received:
                raise OffsetMismatch(received)
            if received + length + self._motion_bytes(part) > self.max_bytes:
                self.discard(rec_id)
                raise TooLarge()
            with open(video, "ab") as f:
                _copy(read, length, f)
            return video.stat().st_size

    def put_motion(self, rec_id: str, length: int, read) -> None:
        """Store the motion log (JSON, see capture/sensors.py) of `length` bytes, read through
        `read(n) -> bytes` straight to disk. It counts toward the size cap (TooLarge, after
        deleting the whole partial); one that is cut short or not a JSON object is a ValueError
        (the importer reads it in full later)."""
        with self._lock(rec_id):
            part = self.partial(rec_id)
            if (part / "video.part").stat().st_size + length > self.max_bytes:
                self.discard(rec_id)
                raise TooLarge()
            tmp = part / "motion.json.part"
            try:
                with open(tmp, "wb") as f:
                    stored = _copy(read, length, f)
                if stored < length:
                    raise ValueError(f"cut short: {stored} of {length} bytes")
                if not _json_object_ends(tmp):
                    raise ValueError("not a JSON object")
                os.replace(tmp, part / "motion.json")
            finally:
                tmp.unlink(missing_ok=True)

    def complete(self, rec_id: str, video_bytes: int) -> Path:
        """Make the partial a finished raw recording if the announced size is what arrived."""
        with self._lock(rec_id):
            part = self.partial(rec_id)
            received = (part / "video.part").stat().st_size
            if received != video_bytes or received == 0:
                raise OffsetMismatch(received)
            if not (part / "motion.json").is_file():
                raise FileNotFoundError("motion log not uploaded")
            meta = json.loads((part / "recording.json").read_text())
            os.replace(part / "video.part", part / meta["video"])
            meta.update(video_bytes=received, completed=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            atomic_write_json(part / "recording.json", meta)
            self.raw_root.mkdir(parents=True, exist_ok=True)
            os.replace(part, self.raw(rec_id))
            self.created_here.discard(rec_id)
            return self.raw(rec_id)

    def discard(self, rec_id: str) -> None:
        """Remove a partial (never a finished recording)."""
        shutil.rmtree(self.partial(rec_id), ignore_errors=True)
        self.created_here.discard(rec_id)

    # --- housekeeping -----------------------------------------------------------------------
    def _motion_bytes(self, part: Path) -> int:
        motion = part / "motion.json"
        return motion.stat().st_size if motion.exists() else 0

    def cleanup_partials(self, older_than_s: float) -> list[str]:
        """Remove partials not touched for `older_than_s` seconds; returns their ids."""
        removed = []
        if not self.partial_root.is_dir():
            return removed
        now = time.time()
        for path in self.partial_root.iterdir():
            try:
                files = [path, *path.iterdir()] if path.is_dir() else [path]
                newest = max(p.stat().st_mtime for p in files)
            except FileNotFoundError:  # removed meanwhile by another request
                continue
            if now - newest >= older_than_s:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def cleanup_own_partials(self) -> list[str]:
        """Remove the partials this server made: once it stops, their pages cannot resume them
        (the next server has a new token)."""
        removed = sorted(self.created_here)
        for rec_id in removed:
            self.discard(rec_id)
        return removed

    def raw_without_capture(self) -> list[str]:
        """Finished recordings whose import has not happened (stopped mid-import, or failed)."""
        if not self.raw_root.is_dir():
            return []
        return sorted(p.name for p in self.raw_root.iterdir()
                      if ID_PATTERN.match(p.name) and not self.capture(p.name).exists())
