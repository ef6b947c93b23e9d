"""The local executor's shim: the parent of every module process it starts, recording each
one's exit code in the job's directory, whether or not the executor is still alive then.

It does what a `sh` wrapper around each module did (`run-<token>.started`, then
`run-<token>.exit`), once per executor rather than once per job: a module then costs one
process start, not two (the wrapper's shell doubled a short module's start). containerd's shim
and Podman's conmon play the same part for containers.

Run as `python -I -S _shim.py FD`, FD one end of a Unix socket pair. Standard library only:
it must start fast and must not import Ion. Requests and replies are JSON lines:

- `{"id", "argv", "env", "cwd", "log", "started", "exit"}` with the job's locked
  `module.lock` attached (SCM_RIGHTS): start the module in a session of its own, output
  appended to `log`, holding the lock; reply `{"id", "pid"}` once `started` holds the pid,
  then `{"id", "exit": code}` once `exit` holds its exit code (128 + N for signal N, as a
  shell reports it). A command that cannot be started exits 127 (not found) or 126 (not
  runnable), with the shell's words in the log.
- End of input: no more requests. The shim lives on until every module it started has ended
  and its exit code is recorded, then exits. A restarted executor adopts those modules from
  their files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from typing import Any

_MAX_FDS = 1


def _write_file(path: str, text: str) -> None:
    """Write `path` whole: a reader sees no file or all of it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _exit_code(status: int) -> int:
    """The exit code a shell reports for a wait status (128 + N for signal N)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class Shim:
    """Starts modules on request and reports their ends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.buffer = b""
        self.fds: list[int] = []
        self.children: dict[int, tuple[str, str, int]] = {}
        """pidfd -> (request id, exit file, pid)."""
        self.reading = True

    def reply(self, message: dict[str, Any]) -> None:
        """Tell the executor (if it is still there: the files say it all the same)."""
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, _MAX_FDS * 4)
        except OSError:
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            self.reading = False
            self.selector.unregister(self.sock)
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.spawn(json.loads(line))

    def spawn(self, request: dict[str, Any]) -> None:
        lock_fd = self.fds.pop(0) if self.fds else -1
        rid, exit_file = request["id"], request["exit"]
        try:
            log_fd = os.open(
                request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except OSError as err:
            if lock_fd >= 0:
                os.close(lock_fd)
            self.reply({"id": rid, "error": f"could not open the module's log: {err}"})
            return
        try:
            keep = (lock_fd,) if lock_fd >= 0 else ()
            try:
                proc = subprocess.Popen(
                    request["argv"],
                    env=request["env"],
                    cwd=request["cwd"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=keep,
                )
            except OSError as err:
                self.not_started(request, log_fd, err)
                return
        finally:
            os.close(log_fd)
            if lock_fd >= 0:
                os.close(lock_fd)  # the module holds the lock from here on
        with contextlib.suppress(OSError):  # if not, the executor finds the run by its lock
            _write_file(request["started"], str(proc.pid))
        pidfd = os.pidfd_open(proc.pid)
        proc.returncode = 0  # reaped below with waitpid; Popen must not reap it too
        self.children[pidfd] = (rid, exit_file, proc.pid)
        self.selector.register(pidfd, selectors.EVENT_READ, "child")
        self.reply({"id": rid, "pid": proc.pid})

    def not_started(self, request: dict[str, Any], log_fd: int, err: OSError) -> None:
        """Record a command that could not be started as a shell would: 127 or 126."""
        program = request["argv"][0] if request["argv"] else ""
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            code, words = 127, "not found"
        else:
            code, words = 126, err.strerror or "cannot execute"
        if err.filename and request["cwd"] and err.filename == request["cwd"]:
            code, words = 2, f"cannot change to {request['cwd']}: {err.strerror}"
        os.write(log_fd, f"{program}: {words}\n".encode())
        with contextlib.suppress(OSError):
            _write_file(request["exit"], str(code))
        self.reply({"id": request["id"], "pid": 0})
        self.reply({"id": request["id"], "exit": code})

    def reap(self, pidfd: int) -> None:
        rid, exit_file, pid = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        code = _exit_code(status)
        # If not (its directory is gone, or the disk full), the run reads as vanished.
        with contextlib.suppress(OSError):
            _write_file(exit_file, str(code))
        self.reply({"id": rid, "exit": code})

    def run(self) -> None:
        while self.reading or self.children:
            for key, _ in self.selector.select():
                if key.data is None:
                    self.receive()
                else:
                    self.reap(key.fd)


def main() -> None:
    """Serve the executor on the socket whose descriptor is the first argument."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the executor
    sock = socket.socket(fileno=int(sys.argv[1]))
    Shim(sock).run()


if __name__ == "__main__":
    main()
