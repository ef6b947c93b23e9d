"""Named points where a test can make this process die at once, as `kill -9` would.

`ION_FAILPOINTS` lists point names (comma-separated); when the process reaches one of them it
sends itself SIGKILL. The fault tests use it to stop a dispatcher at each step between receive
and settle. Unset (always, outside those tests), a point costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(p.strip() for p in os.environ.get("ION_FAILPOINTS", "").split(",") if p.strip())


def reach(point: str) -> None:
    """Die here with SIGKILL if `point` is armed in `ION_FAILPOINTS`."""
    if point in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> frozenset[str]:
    """The points armed in this process."""
    return _ARMED
