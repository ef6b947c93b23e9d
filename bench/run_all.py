"""Run every bench/bench_*.py in its own process and print their result lines (`make bench`).

Usage: `.venv/bin/python bench/run_all.py [--quick] [--only NAME ...]`. `--quick` makes each
script do a CI-sized run (scripts that predate the flag get `--small`). Result lines go to
stdout as they come, `name value unit baseline=<v> ratio=<r> [target=...]`; notes (what the
baselines are, skips, failures) go to stderr. A script exiting 2 is reported as skipped (its
own message says why, e.g. an emulator is missing); any other failure makes the exit code 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIPPED = 2


def scripts(only: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if any(name in p.stem for name in only)]
    return found


def size_flag(script: Path, quick: bool) -> list[str]:
    """The script's own flag for a CI-sized run, as its --help names it."""
    if not quick:
        return []
    usage = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for flag in ("--quick", "--small"):
        if flag in usage:
            return [flag]
    return []


def run(script: Path, quick: bool) -> int:
    argv = [sys.executable, str(script), *size_flag(script, quick)]
    print(f"# {script.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with subprocess.Popen(
        argv, cwd=HERE.parent, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
    took = time.perf_counter() - start
    if proc.returncode == SKIPPED:
        print(f"# {script.name}: skipped (see its message above)", file=sys.stderr, flush=True)
    elif proc.returncode != 0:
        print(f"# {script.name}: FAILED (exit {proc.returncode})", file=sys.stderr, flush=True)
    else:
        print(f"# {script.name}: done in {took:.1f} s", file=sys.stderr, flush=True)
    return proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="CI-sized runs")
    parser.add_argument("--only", nargs="*", default=[], help="run scripts whose name has these")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"# {os.cpu_count()} CPUs, load {load:.2f}; python {sys.version.split()[0]};"
        f" {'quick' if args.quick else 'full'} run",
        file=sys.stderr,
        flush=True,
    )
    failed = [s.name for s in scripts(args.only) if run(s, args.quick) not in (0, SKIPPED)]
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
