"""Where the deployment tests find helm, terraform and the provider mirror.

`tools/deploy-bins/build.sh` builds them and prints ``ION_HELM=...``, ``ION_TERRAFORM=...`` and
``TF_CLI_CONFIG_FILE=...`` (`.ci/run` exports them). Without those variables (a local run), the
tests ask the script for what is already cached (``--cached-only``, never a 12-minute build).
Missing tools skip the tests with the command that builds them, unless
``ION_REQUIRE_DEPLOY_TOOLS=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["REPO", "DeployTools", "deploy_tools", "require_deploy_tools"]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "deploy-bins" / "build.sh"
REQUIRE = "ION_REQUIRE_DEPLOY_TOOLS"


@dataclass(frozen=True, slots=True)
class DeployTools:
    """Paths of the tools; None where a tool is not available."""

    helm: Path | None
    terraform: Path | None
    terraformrc: Path | None
    """CLI config whose filesystem_mirror holds the azurerm provider (TF_CLI_CONFIG_FILE)."""
    problems: dict[str, str]
    """Why each missing tool (by field name) is missing."""


def _is_mirror_config(path: Path) -> bool:
    try:
        return "filesystem_mirror" in path.read_text()
    except OSError:
        return False


def _cached(tools: str) -> dict[str, str]:
    """Ask build.sh for the cached tools' variables; {} if not all of them are built."""
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT), "--cached-only", *tools.split()],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def deploy_tools(environ: dict[str, str] | None = None) -> DeployTools:
    """Return where helm, terraform and the azurerm mirror config are (None where missing)."""
    env = dict(os.environ) if environ is None else environ
    problems: dict[str, str] = {}

    helm_path = env.get("ION_HELM") or _cached("helm").get("ION_HELM")
    helm = Path(helm_path) if helm_path and os.access(helm_path, os.X_OK) else None
    if helm is None:
        problems["helm"] = "helm v3.22.0 is not built (tools/deploy-bins/build.sh helm, 2-3 min)"

    tf_path = env.get("ION_TERRAFORM") or _cached("terraform").get("ION_TERRAFORM")
    tf_path = tf_path or shutil.which("terraform")
    terraform = Path(tf_path) if tf_path and os.access(tf_path, os.X_OK) else None
    if terraform is None:
        problems["terraform"] = "terraform is missing (tools/deploy-bins/build.sh terraform)"

    rc_env = env.get("TF_CLI_CONFIG_FILE", "")
    rc_path = (
        rc_env
        if rc_env and _is_mirror_config(Path(rc_env))
        else _cached("azurerm").get("TF_CLI_CONFIG_FILE")
    )
    terraformrc = Path(rc_path) if rc_path and _is_mirror_config(Path(rc_path)) else None
    if terraformrc is None:
        problems["terraformrc"] = (
            "the azurerm provider mirror is not built (tools/deploy-bins/build.sh azurerm,"
            " ~12 min and 5 GB of memory)"
        )
    return DeployTools(helm, terraform, terraformrc, problems)


def require_deploy_tools(*needed: str) -> DeployTools:
    """Return the tools, or skip (fail when ION_REQUIRE_DEPLOY_TOOLS=1) if one of `needed` is
    missing; `needed` names fields of DeployTools: "helm", "terraform", "terraformrc"."""
    tools = deploy_tools()
    missing = [name for name in needed if getattr(tools, name) is None]
    if not missing:
        return tools
    reason = "; ".join(tools.problems[name] for name in missing)
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)
