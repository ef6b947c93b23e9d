"""Shared helpers of the benchmark scripts: the result line, a scratch directory, timing.

Every measure prints exactly one line:

    <name> <value> <unit> baseline=<value> ratio=<value> target=<text>

`baseline` is measured side by side in the same run; `ratio` is value / baseline (for a
throughput below 1 means slower than the baseline, for a time above 1 means slower).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def parse_args(description: str) -> argparse.Namespace:
    """The options every bench script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (smaller, fewer reps)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args()


def fmt(value: float) -> str:
    """A number with about four significant digits."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def report(name: str, value: float, unit: str, *, baseline: float, target: str = "") -> None:
    """Print the one line of a measure."""
    ratio = value / baseline if baseline else float("inf")
    line = f"{name} {fmt(value)} {unit} baseline={fmt(baseline)} ratio={fmt(ratio)}"
    if target:
        line += f" target={target}"
    print(line, flush=True)


def note(text: str) -> None:
    """Context for a human (what the baseline is), on stderr so the result lines stay clean."""
    print(f"# {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def scratch(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A temporary directory under /tmp, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=f"ion-bench-{prefix}-", dir="/tmp"))
    try:
        yield path
    finally:
        if keep:
            note(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def median_time(fn: Callable[[], object], *, reps: int) -> float:
    """Median wall time of `reps` calls of `fn`, in seconds."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without ION_* / HANDLER_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ION_", "HANDLER_"))}
    env.update(extra)
    return env
