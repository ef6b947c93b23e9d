"""The local executor's side of its shim (`_shim`): start it, hand it modules, hear their ends.

One shim per executor and event loop, started with the first module. If it cannot be started
or has gone, `spawn` raises `ShimUnavailable` and the executor starts the module itself behind
a `sh` wrapper, which records the same files; a module whose shim dies while it runs is
followed through its files from then on (`ShimGone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SHIM = Path(__file__).with_name("_shim.py")


class ShimUnavailable(Exception):
    """No shim can take the module now: start it another way."""


class ShimGone(Exception):
    """The shim ended before the module did: its end is to be read from its files."""


class ShimChild:
    """A module process the shim started: its pid and, once it ends, its exit code."""

    def __init__(self, pid: int, ended: asyncio.Future[int]) -> None:
        self.pid = pid
        self._ended = ended

    @property
    def gone(self) -> bool:
        """The shim ended before reporting this module's end."""
        return self._ended.done() and self._ended.exception() is not None

    @property
    def returncode(self) -> int | None:
        """The exit code once the shim reported it, else None."""
        if self._ended.done() and self._ended.exception() is None:
            return self._ended.result()
        return None

    async def wait(self) -> int:
        """Wait for the module to end; return its exit code.

        Raises:
            ShimGone: the shim ended first.
        """
        return await asyncio.shield(self._ended)


class ShimClient:
    """Starts modules through the executor's shim process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._ids = itertools.count(1)
        self._started: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ended: dict[str, asyncio.Future[int]] = {}
        self._failed = False
        """The shim could not be started: do not try again in this process."""

    def _start(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        if self._failed:
            raise ShimUnavailable("the shim could not be started earlier")
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SHIM), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives this process, to record its modules' ends
            )
        except OSError as err:
            ours.close()
            self._failed = True
            log.warning("could not start the local executor's shim (%s); using a wrapper", err)
            raise ShimUnavailable(str(err)) from err
        finally:
            theirs.close()
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._readable)
        self._loop, self._sock = loop, ours
        return ours

    def _socket(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        if self._sock is not None and self._loop is not loop:
            self._lost()  # a new event loop (tests): the old one's shim carries on alone
        return self._sock if self._sock is not None else self._start(loop)

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        log_path: Path,
        started: Path,
        exit_path: Path,
        lock_fd: int,
    ) -> ShimChild:
        """Have the shim start the module holding `lock_fd`'s lock; return it once it runs.

        Raises:
            ShimUnavailable: no shim could take it (nothing was started).
            OSError: the shim could not open the module's log (nothing was started).
        """
        sock = self._socket()
        rid = str(next(self._ids))
        request = {
            "id": rid,
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd) if cwd is not None else None,
            "log": str(log_path),
            "started": str(started),
            "exit": str(exit_path),
        }
        loop = asyncio.get_running_loop()
        began: asyncio.Future[dict[str, Any]] = loop.create_future()
        ended: asyncio.Future[int] = loop.create_future()
        self._started[rid], self._ended[rid] = began, ended
        data = json.dumps(request).encode() + b"\n"
        try:
            sock.setblocking(True)  # a request is small; the shim reads at once
            try:
                sent = socket.send_fds(sock, [data], [lock_fd])
                if sent < len(data):
                    sock.sendall(data[sent:])
            finally:
                sock.setblocking(False)
        except OSError as err:
            self._started.pop(rid, None)
            self._ended.pop(rid, None)
            self._lost()
            raise ShimUnavailable(f"the shim is gone: {err}") from err
        try:
            reply = await began
        except ShimGone as err:
            # It took the lock with the request; whether it started the module before it
            # ended, the lock and the files say. Never start a second copy here.
            raise ShimGone("the shim ended while starting the module") from err
        if "error" in reply:
            self._ended.pop(rid, None)
            raise OSError(reply["error"])
        return ShimChild(int(reply["pid"]), ended)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            rid = message["id"]
            if "exit" in message:
                ended = self._ended.pop(rid, None)
                if ended is not None and not ended.done():
                    ended.set_result(int(message["exit"]))
            else:
                began = self._started.pop(rid, None)
                if began is not None and not began.done():
                    began.set_result(message)

    def _lost(self) -> None:
        """The shim's socket closed (or is let go): every module not yet reported is `gone`."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._buffer = b""
        for futures in (self._started, self._ended):
            for future in futures.values():
                if not future.done():
                    with contextlib.suppress(RuntimeError):  # its event loop is closed
                        future.set_exception(ShimGone())
                        future.exception()  # retrieved: nobody may be waiting any more
            futures.clear()
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.poll()  # reaped now if it has ended; else left to end on its own

    def close(self) -> None:
        """No more modules: the shim ends once those it runs have ended."""
        self._lost()
