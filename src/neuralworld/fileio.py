"""Writing outputs safely: never half-written, never over a user's files without --force."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from neuralworld.errors import DISK_FULL, UserError, os_error_line


def check_new_output(path: Path, force: bool) -> None:
    """Refuse an existing output unless --force; refuse an output whose parent cannot be written."""
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path}: already exists (pass --force to replace it)")
    parent = path.absolute().parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write in {parent}")


@contextlib.contextmanager
def disk_full_is_user_error(path: Path):
    """Turn a write that fails for want of room (disk, quota) into a UserError naming `path`,
    the output the user asked for (not a temporary file within it)."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise UserError(os_error_line(e, path)) from None


@contextlib.contextmanager
def atomic_dir(path: Path, force: bool = False):
    """Yield a temporary folder beside `path`; on success it replaces `path`, on error (a full
    disk included: a UserError) it is removed.

    The temporary folder is a hidden sibling, so the final rename stays on one file system.
    """
    path = Path(path)
    check_new_output(path, force)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    with disk_full_is_user_error(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any folder the user makes
    try:
        with disk_full_is_user_error(path):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():  # --force: move the old one aside first so that nothing is lost on a failed rename
        old = tmp.with_suffix(".old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary sibling, renamed over it when complete and
    removed on any failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL:  # name the file, not its temporary sibling
            raise OSError(e.errno, os.strerror(e.errno), str(path)) from None
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
