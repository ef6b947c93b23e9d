"""Repository-wide fixtures: the Azure emulators and the Service Bus fake, started on demand;
a Docker engine and Ion's images (tests/containers/fixtures.py), prepared on demand.

Tests that need the Azure emulators (Azurite, cosmosdb-server) skip when they are not installed,
unless ION_REQUIRE_EMULATORS=1 (as `.ci/run` sets), where that is an error. So that a skip is
never silent, the end of the run says which emulator suites did not run and why.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.containers.fixtures import docker_engine, ion_images
from tests.fakes.azure_emulators import INSTALL_HINT
from tests.fakes.fixtures import azurite, cosmos_server, servicebus_fake
from tests.kube.fixtures import kube_cluster, kube_namespace, pytest_runtest_makereport
from tests.kube.ion import kube_ion
from tests.kube.pipeline import stack

ROOT = Path(__file__).resolve().parent

__all__ = ["azurite", "cosmos_server", "docker_engine", "ion_images", "kube_ion", "servicebus_fake"]
# The real Kubernetes cluster (tests/kube/fixtures.py); the hook adds its logs to failures.
__all__ += ["kube_cluster", "kube_namespace", "pytest_runtest_makereport", "stack"]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Azure emulator suites were skipped, why, and how to make that an error."""
    skipped = [
        (report.nodeid, reason)
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report, pytest.TestReport)
        and INSTALL_HINT in (reason := _skip_reason(report))
    ]
    if not skipped:
        return
    suites = Counter(nodeid.split("::", 1)[0] for nodeid, _ in skipped)
    terminalreporter.section("Azure emulator suites skipped", sep="=", yellow=True, bold=True)
    terminalreporter.line(
        f"{len(skipped)} test(s) that need the Azure emulators (Azurite, cosmosdb-server)"
        " did not run:"
    )
    for suite, count in sorted(suites.items()):
        terminalreporter.line(f"  {suite}: {count} test(s) skipped")
    for reason in sorted({reason for _, reason in skipped}):
        terminalreporter.line(f"why: {reason}", yellow=True)
    terminalreporter.line(
        "CI (.ci/run) sets ION_REQUIRE_EMULATORS=1, which makes this an error;"
        " set it to make it one here."
    )


_SHARED = {
    # a fixture a test file names -> the worker group of the whole file in a parallel run
    "kube_cluster": "cluster",
    "kube_namespace": "cluster",
    "kube_ion": "cluster",
    "stack": "cluster",
    "docker_engine": "docker",
    "ion_images": "docker",
}


@functools.cache
def _worker_group(path: str) -> str:
    """The group of a test file: `cluster` if it uses the Kubernetes cluster, `docker` if it
    uses the Docker images, else the file itself."""
    try:
        text = (ROOT / path).read_text(encoding="utf-8")
    except OSError:
        return path
    found = {group for name, group in _SHARED.items() if re.search(rf"\b{name}\b", text)}
    return "cluster" if "cluster" in found else "docker" if found else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `-n N --dist loadscope` (as `make test` runs), schedule whole test files, and keep
    every file that uses the session's Kubernetes cluster on one worker, and every file that
    uses its Docker images on one worker: a run starts one cluster, not one per worker, and the
    tests of one file (which may share a session server) run in order on one worker.
    (xdist's own `loadgroup` marks do not reach its scheduler under pytest 9.)
    """
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedResourceScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _worker_group(nodeid.split("::", 1)[0])

    return SharedResourceScheduling(config, log)
