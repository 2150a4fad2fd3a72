"""The one error type a user sees: a single line naming the input and the problem."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

# a write that failed for want of room: the disk, the user's quota, the largest file allowed
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_WHAT_TO_DO = {errno.ENOSPC: "free some space, or write elsewhere", errno.EDQUOT: "free some space, or write elsewhere",
               errno.EFBIG: "write elsewhere", errno.EROFS: "write elsewhere",
               errno.EACCES: "check its permissions", errno.EPERM: "check its permissions"}


class UserError(Exception):
    """Bad input or a refused action. The CLI prints it as one line and exits with status 2."""


def os_error_line(e: OSError, path=None) -> str | None:
    """`PATH: PROBLEM (what to do)` for an OSError that is the machine's trouble rather than a bug:
    one that names a file (`path`, else its own), or a full disk. None for any other."""
    path = path if path is not None else e.filename
    if path is None and e.errno not in DISK_FULL:
        return None
    problem = os.strerror(e.errno).lower() if e.errno else str(e)
    hint = f" ({_WHAT_TO_DO[e.errno]})" if e.errno in _WHAT_TO_DO else ""
    return f"{path}: {problem}{hint}" if path is not None else f"{problem}{hint}"


def run_script(main) -> None:
    """Run a benchmark script's `main()` and exit with its status; a UserError (a world folder
    without a world, a capture that is not one) ends as the CLI's do, in one line and status 2."""
    try:
        status = main()
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
