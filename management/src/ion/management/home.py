"""Ion's home is private to its user: events, outputs, logs and keys live there.

`ion-management up` and `pipeline run` make the home 0700 and each entry directly under it
(`meta.db`, `bus.db`, `blobs/`, `jobs/`, ...) 0600 or 0700, so a home made world-readable by an
older Ion or by hand is closed, and set the process umask to 077 so what they create from then
on (databases, blobs, job directories, module outputs) is the user's alone. Entries deeper down
keep their modes: behind a 0700 directory no other user can reach them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def make_private(home: Path) -> None:
    """Create `home` (0700) or close it and its direct entries to other users.

    Only what this user owns is changed; a symlink is left alone (its target may be shared).
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (home, *home.iterdir()):
        with contextlib.suppress(FileNotFoundError):  # a file removed meanwhile (a -wal)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
                continue
            if info.st_mode & 0o077:
                path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)


def keep_private(home: Path) -> None:
    """`make_private(home)`, and everything this process creates from now on is 0600/0700."""
    make_private(home)
    os.umask(PRIVATE_UMASK)
