"""Repository-wide fixtures: the Azure emulators and the Service Bus fake, started on demand;
a Docker engine and Ion's images (tests/containers/fixtures.py), prepared on demand.

Tests that need the Azure emulators (Azurite, cosmosdb-server) skip when they are not installed,
unless ION_REQUIRE_EMULATORS=1 (as `.ci/run` sets), where that is an error. So that a skip is
never silent, the end of the run says which emulator suites did not run and why.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.containers.fixtures import docker_engine, ion_images
from tests.fakes.azure_emulators import INSTALL_HINT
from tests.fakes.fixtures import azurite, cosmos_server, servicebus_fake
from tests.kube.fixtures import kube_cluster, kube_namespace, pytest_runtest_makereport
from tests.kube.ion import kube_ion
from tests.kube.pipeline import stack

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


_WORKER_GROUPS = {
    # fixture -> the xdist group of every test that uses it (under `-n N --dist loadgroup`)
    "kube_cluster": "cluster",
    "kube_namespace": "cluster",
    "kube_ion": "cluster",
    "stack": "cluster",
    "docker_engine": "docker",
    "ion_images": "docker",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests that share the session's Kubernetes cluster on one xdist worker, and those
    that share its Docker images on one worker, so a parallel run (`make test` uses
    `-n 2 --dist loadgroup`) starts one cluster, not one per worker; other tests spread freely.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        groups = {_WORKER_GROUPS[name] for name in fixtures & _WORKER_GROUPS.keys()}
        if groups:
            item.add_marker(pytest.mark.xdist_group("cluster" if "cluster" in groups else "docker"))
