"""Job directories made ahead of need, so a job starts with one rename instead of a dozen creations.

Creating a file or a directory costs the kernel 0.1-0.3 ms on the development VM, and a job's
directory needs about a dozen: the directory, its `ion/in/data`, `ion/out/data` and
`ion/out/events` tree with `ion/out/insights.json`, and `job.json`, `module.lock`, `module.log`
and `result.json`. A `SparePool` keeps a few such directories ready under
`<jobs dir>/.spare/<owner>/`, made on a worker thread while jobs run; `take()` hands one out (or
None when none is ready: the job then makes its own) and starts making its replacement.

A spare holds only empty files, which every reader of a job's directory takes as "nothing
happened yet"; the executor turns it into a job by writing the request into its `job.json` and
renaming the directory into place, so a job's directory appears whole, request included. Each
process's spares live in a directory marked by a lock that process holds; the spares of a
process that is gone are removed by the next pool that starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SPARE_FILES = ("job.json", "module.lock", "module.log", "result.json")
"""Empty files in every spare (each means "not yet" to a reader of a job's directory)."""

_OWNER = "owner.lock"


def _held(lock: Path) -> bool:
    """True if some open file holds `lock`'s flock (its process is alive)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # being set up by its owner right now (or never finished): leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class SparePool:
    """A few empty job directories, made in the background, handed out one at a time."""

    def __init__(self, jobs_dir: Path, *, size: int, make_layout: Callable[[Path], None]) -> None:
        """`make_layout(directory)` creates the module's empty tree inside a new spare."""
        self._base = jobs_dir / ".spare"
        self._size = size
        self._make_layout = make_layout
        self._ready: list[Path] = []
        self._root: Path | None = None
        self._owner_fd: int | None = None
        self._filler: asyncio.Task[None] | None = None
        self._discards: set[asyncio.Task[None]] = set()
        self._closed = False

    def take(self) -> Path | None:
        """A ready spare directory, now the caller's; None if none is ready."""
        spare = self._ready.pop() if self._ready else None
        self._fill()
        return spare

    def discard(self, spare: Path) -> None:
        """Remove a spare the caller took but could not use (in the background)."""
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(shutil.rmtree, spare, ignore_errors=True)
        )
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    def _fill(self) -> None:
        if self._closed or self._size <= 0 or len(self._ready) >= self._size:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill_up())

    async def _fill_up(self) -> None:
        while not self._closed and len(self._ready) < self._size:
            try:
                made = await asyncio.to_thread(self._make, self._size - len(self._ready))
            except OSError as err:  # a full or read-only disk: jobs make their own directories
                log.debug("could not make spare job directories: %s", err)
                return
            if self._closed:
                await asyncio.to_thread(self._remove, made)
                return
            self._ready.extend(made)

    def _make(self, count: int) -> list[Path]:
        """On a worker thread: make `count` spares (fewer if one fails after the first)."""
        root = self._root or self._set_up()
        made: list[Path] = []
        for _ in range(count):
            spare = root / uuid.uuid4().hex
            try:
                spare.mkdir()
                for name in SPARE_FILES:
                    os.close(os.open(spare / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
                self._make_layout(spare)
            except OSError:
                shutil.rmtree(spare, ignore_errors=True)
                if not made:
                    if not root.is_dir():  # removed behind our back: set up again next time
                        self._root = None
                    raise
                break
            made.append(spare)
        return made

    def _set_up(self) -> Path:
        """Make this pool's directory, locked by this process; remove those of dead processes."""
        self._base.mkdir(parents=True, exist_ok=True)
        with os.scandir(self._base) as entries:
            stale = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        for other in stale:
            if not _held(other / _OWNER):
                shutil.rmtree(other, ignore_errors=True)
        root = self._base / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        fd = os.open(root / _OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if self._owner_fd is not None:
            os.close(self._owner_fd)
        self._owner_fd, self._root = fd, root
        return root

    @staticmethod
    def _remove(spares: list[Path]) -> None:
        for spare in spares:
            shutil.rmtree(spare, ignore_errors=True)

    async def aclose(self) -> None:
        """Stop making spares and remove this process's; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._filler is not None:
            with contextlib.suppress(Exception):
                await self._filler
        if self._discards:
            await asyncio.gather(*self._discards, return_exceptions=True)
        root, self._root, self._ready = self._root, None, []
        if root is not None:
            await asyncio.to_thread(shutil.rmtree, root, True)
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
