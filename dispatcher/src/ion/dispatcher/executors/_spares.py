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

A finished job's directory is recycled rather than removed (`recycle`): it leaves the jobs
directory at once (a rename), and a worker thread empties it back into a spare, which saves
removing and creating its directories again (removing one costs up to a millisecond here). Only
a plain tree is recycled: the expected directories, real and ours with their usual mode, their
files and nothing deeper in the module's data directories, and no process holding the module's
lock; anything else is removed as before. The executor recycles only jobs whose module ran as a
process of its own (never a container, which could outlive its client and keep its mount).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPARE_FILES = ("job.json", "module.lock", "module.log", "result.json")
"""Empty files in every spare (each means "not yet" to a reader of a job's directory)."""

_OWNER = "owner.lock"
_RECYCLE_MAX_FILES = 64
"""A data directory with more files than this is removed, not emptied (one thread hop less)."""


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
        # The mode the umask gives a new directory, read from the root when it is made (not at
        # import: `ion up` tightens the umask after this module is imported).
        self._dir_mode = 0o700
        self._owner_fd: int | None = None
        self._filler: asyncio.Task[None] | None = None
        self._discards: set[asyncio.Task[Any]] = set()
        self._recycling = 0
        self._closed = False

    def take(self) -> Path | None:
        """A ready spare directory, now the caller's; None if none is ready."""
        spare = self._ready.pop() if self._ready else None
        self._fill()
        return spare

    def recycle(self, directory: Path) -> bool:
        """Take a finished job's directory out of the jobs directory, to become a spare.

        False (nothing done) if the pool holds twice the spares it makes ahead already, or the
        directory cannot be moved; the caller removes it then.
        """
        root = self._root
        if self._closed or root is None or len(self._ready) + self._recycling >= 2 * self._size:
            return False
        target = root / uuid.uuid4().hex
        try:
            os.rename(directory, target)
        except OSError:
            return False
        self._recycling += 1
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._reset, target))
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)
        task.add_done_callback(lambda done: self._recycled(target, done))
        return True

    def _recycled(self, target: Path, done: asyncio.Future[bool]) -> None:
        self._recycling -= 1
        ok = not done.cancelled() and done.exception() is None and done.result()
        if ok and not self._closed:  # once closed, `aclose` removes it with the rest
            self._ready.append(target)

    def _reset(self, spare: Path) -> bool:
        """On a worker thread: empty `spare` back to a fresh one; remove it (False) if it is not
        a plain job directory."""
        try:
            if _held(spare / "module.lock") or not self._empty(spare, self._dir_mode):
                shutil.rmtree(spare, ignore_errors=True)
                return False
        except OSError:
            shutil.rmtree(spare, ignore_errors=True)
            return False
        return True

    @staticmethod
    def _empty(spare: Path, dir_mode: int) -> bool:
        uid = os.getuid()

        def plain_dir(path: str) -> bool:
            st = os.lstat(path)
            return (
                stat.S_ISDIR(st.st_mode)
                and st.st_uid == uid
                and stat.S_IMODE(st.st_mode) == dir_mode
            )

        def clear(path: str) -> None:
            """Make a regular file empty (truncated here and closed, so no flush is left for
            the next writer's close), or create it."""
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                os.unlink(path)
                st = None
            if st is None or st.st_size:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                try:
                    os.ftruncate(fd, 0)
                finally:
                    os.close(fd)

        def only(path: str, allowed: set[str]) -> set[str]:
            """The names in `path`, each unexpected file removed; raises if one is a dir."""
            names: set[str] = set()
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.name in allowed:
                        names.add(entry.name)
                    elif entry.is_dir(follow_symlinks=False):
                        raise IsADirectoryError(entry.path)
                    else:
                        os.unlink(entry.path)
            return names

        def empty_data(path: str) -> None:
            if not plain_dir(path):
                raise NotADirectoryError(path)
            with os.scandir(path) as entries:
                found = list(entries)
            if len(found) > _RECYCLE_MAX_FILES:
                raise OSError(f"{len(found)} files in {path}")
            for entry in found:
                if entry.is_dir(follow_symlinks=False):
                    raise IsADirectoryError(entry.path)
                os.unlink(entry.path)

        top = str(spare)
        if not plain_dir(top):
            return False
        try:
            only(top, {"ion", *SPARE_FILES})
            ion = f"{top}/ion"
            if not plain_dir(ion) or only(ion, {"in", "out"}) != {"in", "out"}:
                return False
            if not (plain_dir(f"{ion}/in") and plain_dir(f"{ion}/out")):
                return False
            only(f"{ion}/in", {"data"})
            only(f"{ion}/out", {"data", "events", "insights.json"})
            for data in (f"{ion}/in/data", f"{ion}/out/data", f"{ion}/out/events"):
                empty_data(data)
        except (IsADirectoryError, NotADirectoryError, FileNotFoundError):
            return False
        for name in SPARE_FILES:
            clear(f"{top}/{name}")
        clear(f"{ion}/out/insights.json")
        return True

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
        self._dir_mode = stat.S_IMODE(os.stat(root).st_mode)
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
