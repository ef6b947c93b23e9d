"""Local-disk failures worth retrying, as `errors.TransientError`s a person can act on.

A full disk, a read-only file system or an I/O error is not a bug of the caller: once space is
freed (or the disk remounted) the same call succeeds. The embedded backends raise these instead
of a bare OSError, so a dispatcher backs off and resumes instead of dying.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ion.core import errors

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
TRANSIENT_ERRNOS = DISK_FULL | {errno.EROFS, errno.EIO}


def free_space(path: str | os.PathLike[str]) -> str:
    """How much space is free on the disk of `path` (or its nearest existing parent)."""
    here = Path(path)
    for candidate in (here, *here.parents):
        with contextlib.suppress(OSError):
            if candidate.exists():
                free = shutil.disk_usage(candidate).free
                return f"{free / 1024 / 1024:.1f} MiB free on {candidate}"
    return "free space unknown"


def transient_os_error(
    err: BaseException, where: str | os.PathLike[str]
) -> errors.TransientError | None:
    """The TransientError for an OSError of a full, read-only or failing disk; else None.

    `where` names the path when the error does not.
    """
    if not isinstance(err, OSError) or err.errno not in TRANSIENT_ERRNOS:
        return None
    path = os.fspath(err.filename) if err.filename else os.fspath(where)
    if err.errno in DISK_FULL:
        message = f"disk full at {path} ({free_space(path)}): free space and Ion resumes"
    elif err.errno == errno.EROFS:
        message = (
            f"read-only file system at {path}: remount it read-write (or point ION_HOME at a"
            " writable disk) and Ion resumes"
        )
    else:
        message = f"I/O error at {path}: check the disk; Ion retries and resumes once it works"
    transient = errors.TransientError(message)
    transient.__cause__ = err
    return transient


@contextlib.contextmanager
def disk_errors(where: str | os.PathLike[str]) -> Iterator[None]:
    """Raise OSErrors of a full, read-only or failing disk as TransientError (see above)."""
    try:
        yield
    except OSError as err:
        transient = transient_os_error(err, where)
        if transient is None:
            raise
        raise transient from err
