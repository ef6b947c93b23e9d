"""Per-image, hash-pinned requirements, cut from requirements/lock.txt.

    .venv/bin/python tools/docker/requirements.py           # (re)write deployment/docker/requirements/
    .venv/bin/python tools/docker/requirements.py --check   # exit 1 if a file is stale

Each image installs only what its Ion members need at run time: the closure of their
`Requires-Dist` (with the extras named below, markers evaluated for Linux CPython 3.11), read
from the distributions installed in the venv by tools/bootstrap.sh. Every pin is copied from the
lock as it stands there (version and hashes), so an image never resolves anything itself.
Ion's own members are not pinned here: they are built from this tree as wheels
(tools/docker/wheelhouse.sh) and installed with --no-deps; `# ion:` lines name them.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
OUT = ROOT / "deployment" / "docker" / "requirements"


@dataclass(frozen=True)
class ImageDeps:
    """What one image carries: Ion members (built locally) and third-party roots (with extras)."""

    members: tuple[str, ...]
    roots: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    """Distributions this image must never carry (checked here and by tests/containers)."""


IMAGES: dict[str, ImageDeps] = {
    # In every job pod, twice: Azure backends (it commits to them), no gRPC, no Kubernetes.
    # protobuf comes with the OTLP/HTTP span exporter (OTLP's wire format), never grpcio.
    "handler": ImageDeps(
        members=("ion-core", "ion-handler"),
        roots=("ion-core[azure]", "ion-handler", "opentelemetry-sdk"),
        forbidden=("kubernetes", "grpcio", "grpcio-tools"),
    ),
    "dispatcher": ImageDeps(
        members=("ion-core", "ion-handler", "ion-dispatcher"),
        roots=("ion-core[azure]", "ion-dispatcher[kubernetes,azurebatch]", "opentelemetry-sdk"),
        forbidden=("grpcio",),
    ),
    "management": ImageDeps(
        members=("ion-core", "ion-handler", "ion-dispatcher", "ion-proto", "ion-management"),
        roots=(
            "ion-core[azure]",
            "ion-dispatcher[kubernetes,azurebatch]",
            "ion-management[kubernetes]",
            "opentelemetry-sdk",
        ),
    ),
    "cli": ImageDeps(
        members=("ion-core", "ion-handler", "ion-proto", "ion-cli"),
        roots=("ion-cli",),
        forbidden=("kubernetes",),
    ),
    # The example modules speak only the file contract: no Ion code at all.
    "examples": ImageDeps(
        members=(),
        roots=("numpy", "pillow", "scikit-learn"),
        forbidden=("kubernetes", "grpcio"),
    ),
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def lock_blocks() -> dict[str, tuple[str, str]]:
    """Map each locked distribution to (version, its pin block: the pin line and hash lines)."""
    blocks: dict[str, tuple[str, str]] = {}
    name, version, lines = "", "", list[str]()
    for line in [*LOCK.read_text().splitlines(), ""]:
        match = _PIN.match(line)
        if (match or not line.startswith(" ") or line.lstrip().startswith("#")) and name:
            blocks[name] = (version, "\n".join(lines))
            name, lines = "", []
        if match:
            name, version = canonicalize_name(match.group(1)), match.group(2)
            lines = [line]
        elif name and line.lstrip().startswith("--hash"):
            lines.append(line)
    for block_name, (_, text) in blocks.items():
        text = text.rstrip()
        if text.endswith("\\"):
            raise SystemExit(f"lock block of {block_name} is cut short")
    return blocks


def closure(roots: tuple[str, ...]) -> set[str]:
    """Every distribution the roots need at run time on Linux CPython 3.11."""
    env = {**default_environment(), "python_version": "3.11", "sys_platform": "linux"}
    env.update(platform_system="Linux", implementation_name="cpython")
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [Requirement(root) for root in roots]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{req.name} is not installed in this venv: run tools/bootstrap.sh first"
            ) from None
        for text in requires:
            dep = Requirement(text)
            wanted = ["", *sorted(req.extras)]
            if dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in wanted
            ):
                todo.append(dep)
    return names


def render(image: str, deps: ImageDeps, blocks: dict[str, tuple[str, str]]) -> str:
    members = {canonicalize_name(m) for m in deps.members}
    ion_all = {canonicalize_name(n) for n in ("ion-core", "ion-handler", "ion-dispatcher")}
    ion_all |= {canonicalize_name(n) for n in ("ion-proto", "ion-management", "ion-cli")}
    needed = closure(deps.roots)
    stray = (needed & ion_all) - members
    if stray:
        raise SystemExit(f"{image}: needs Ion members {sorted(stray)} not listed in its members")
    third_party = sorted(needed - ion_all)
    missing = [name for name in third_party if name not in blocks]
    if missing:
        raise SystemExit(f"{image}: {missing} are not in requirements/lock.txt (run make lock)")
    bad = sorted(set(third_party) & {canonicalize_name(f) for f in deps.forbidden})
    if bad:
        raise SystemExit(f"{image}: must not carry {bad}, but its dependencies pull them in")
    head = [
        f"# The {image} image's third-party requirements: generated by",
        "# tools/docker/requirements.py from requirements/lock.txt (each pin exactly as locked).",
        "# Do not edit; regenerate with `make docker-requirements`.",
        f"# roots: {' '.join(deps.roots)}",
        *(f"# ion: {member}" for member in deps.members),
    ]
    return "\n".join([*head, *(blocks[name][1] for name in third_party)]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is not up to date")
    args = parser.parse_args()
    blocks = lock_blocks()
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for image, deps in IMAGES.items():
        path = OUT / f"{image}.txt"
        text = render(image, deps, blocks)
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    if stale:
        print(f"stale: {', '.join(stale)} (run make docker-requirements)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
