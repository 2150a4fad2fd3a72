"""Writing outputs safely: never half-written, never over a user's files without --force."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from neuralworld.errors import UserError


def check_new_output(path: Path, force: bool) -> None:
    """Refuse an existing output unless --force; refuse an output whose parent cannot be written."""
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path}: already exists (pass --force to replace it)")
    parent = path.absolute().parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write in {parent}")


@contextlib.contextmanager
def atomic_dir(path: Path, force: bool = False):
    """Yield a temporary folder beside `path`; on success it replaces `path`, on error it is removed.

    The temporary folder is a hidden sibling, so the final rename stays on one file system.
    """
    path = Path(path)
    check_new_output(path, force)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any folder the user makes
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():  # --force: move the old one aside first so that nothing is lost on a failed rename
        old = tmp.with_suffix(".old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
