"""Build Ion's container images with `docker build --network none` (what `make images` runs).

    .venv/bin/python tools/docker/images.py [--base-image IMAGE] [--only handler,cli] [--list]

Images, each tagged `localhost/ion-<name>:<version>` and `localhost/ion-<name>:dev`:
handler, dispatcher, management, cli, and one `example-<module>` per module of
examples/media-classifiers. BASE_IMAGE (default `python:3.11-slim`; here, where nothing can be
pulled, `localhost/ion-base:bookworm-py311` from tools/docker/base-image.sh) is the base of all.

Builds are offline: tools/docker/wheelhouse.sh fills the wheelhouse first, then each image gets
a build context of its own under <cache>/contexts/<image>/ holding only what it installs:
`requirements.txt` (deployment/docker/requirements/<set>.txt), `wheels/` (those pins' wheels),
`ion/` (Ion's wheels it needs), `app/` (example scripts) and `healthcheck.py`. Docker's layer
cache makes a warm run take seconds. Progress and each image's time go to stderr; stdout gets
one line per image: `<name> <tag> <seconds> <size bytes>`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "deployment" / "docker"
EXAMPLES = ROOT / "examples" / "media-classifiers"
DEFAULT_BASE = "python:3.11-slim"
REGISTRY = "localhost"
MEMBERS = ("core", "handler", "dispatcher", "proto", "management", "cli")


@dataclass(frozen=True)
class Image:
    """One image to build: its Dockerfile, requirement set and build arguments."""

    name: str
    dockerfile: str
    requirements: str
    build_args: dict[str, str] = field(default_factory=dict)
    app: bool = False
    healthcheck: bool = False


def cache_dir() -> Path:
    """Ion's cache directory, as the shell scripts compute it."""
    if os.environ.get("ION_CACHE_DIR"):
        return Path(os.environ["ION_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ion"


def example_modules() -> dict[str, str]:
    """Module name -> its script, from the example pipeline (`command: ["python", X]`)."""
    pipeline = yaml.safe_load((EXAMPLES / "pipeline.yaml").read_text())
    out = {}
    for module in pipeline["modules"]:
        command = module["command"]
        if len(command) != 2 or command[0] != "python":
            raise SystemExit(f"example module {module['name']}: expected ['python', SCRIPT]")
        out[module["name"]] = command[1]
    return out


def all_images() -> list[Image]:
    images = [
        Image("handler", "handler.Dockerfile", "handler"),
        Image("dispatcher", "dispatcher.Dockerfile", "dispatcher", healthcheck=True),
        Image("management", "management.Dockerfile", "management", healthcheck=True),
        Image("cli", "cli.Dockerfile", "cli"),
    ]
    for module, script in example_modules().items():
        images.append(
            Image(
                f"example-{module}",
                "example-module.Dockerfile",
                "examples",
                build_args={"MODULE": module, "SCRIPT": script},
                app=True,
            )
        )
    return images


def version() -> str:
    project = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def revision() -> str:
    """The commit, with `-dirty` when the images' inputs have uncommitted changes."""
    head = _git("rev-parse", "HEAD") or "unknown"
    paths = [*MEMBERS, "examples", "deployment/docker", "requirements"]
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return f"{head}-dirty" if dirty else head


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", re.MULTILINE)
_ION = re.compile(r"^# ion: (\S+)$", re.MULTILINE)


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextlib.contextmanager
def one_build_at_a_time(cache: Path) -> Iterator[None]:
    """Hold the cache's build lock: runs of this script (two test sessions, say) take turns."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "images.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another images.py run is building; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def stage_context(image: Image, house: Path, contexts: Path) -> Path:
    """Make the image's build context: only the files it installs or copies."""
    ctx = contexts / image.name
    (ctx / "wheels").mkdir(parents=True)
    (ctx / "ion").mkdir()
    requirements = DOCKER_DIR / "requirements" / f"{image.requirements}.txt"
    text = requirements.read_text()
    shutil.copyfile(requirements, ctx / "requirements.txt")
    shutil.copyfile(DOCKER_DIR / "context.dockerignore", ctx / ".dockerignore")
    wheels = {p.name: p for p in house.glob("*.whl")}
    for name, pinned in _PIN.findall(text):
        prefix = f"{_canon(name)}-{pinned}-"
        found = [
            w for w in wheels if _canon(w.split("-", 1)[0]) + "-" + w.split("-")[1] + "-" == prefix
        ]
        if not found:
            raise SystemExit(f"{image.name}: no wheel of {name}=={pinned} in {house}")
        for wheel in found:
            _link(wheels[wheel], ctx / "wheels" / wheel)
    for member in _ION.findall(text):
        found_ion = sorted((house / "ion").glob(f"{_canon(member)}-*.whl"))
        if not found_ion:
            raise SystemExit(f"{image.name}: no wheel of {member} in {house / 'ion'}")
        for wheel_path in found_ion:
            _link(wheel_path, ctx / "ion" / wheel_path.name)
    if image.healthcheck:
        shutil.copyfile(DOCKER_DIR / "healthcheck.py", ctx / "healthcheck.py")
    if image.app:
        (ctx / "app").mkdir()
        for script in sorted(EXAMPLES.glob("*.py")):
            shutil.copyfile(script, ctx / "app" / script.name)
    return ctx


def say(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def build(image: Image, ctx: Path, *, base: str, tag_version: str, rev: str, quiet: bool) -> float:
    tags = [f"{REGISTRY}/ion-{image.name}:{tag_version}", f"{REGISTRY}/ion-{image.name}:dev"]
    source = _git("config", "--get", "remote.origin.url")
    args = {"BASE_IMAGE": base, "VERSION": tag_version, "REVISION": rev, "SOURCE": source}
    args.update(image.build_args)
    argv = ["docker", "build", "--network", "none", "-f", str(DOCKER_DIR / image.dockerfile)]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for tag in tags:
        argv += ["-t", tag]
    argv.append(str(ctx))
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no buildx plugin here
    start = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=quiet, text=True, check=False)
    took = time.monotonic() - start
    if done.returncode != 0:
        if quiet:
            sys.stderr.write(done.stdout[-6000:] + done.stderr[-4000:])
        raise SystemExit(f"images: building {tags[0]} failed (exit {done.returncode})")
    return took


def image_size(tag: str) -> int:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-image",
        default=os.environ.get("BASE_IMAGE") or DEFAULT_BASE,
        help=f"base of every image [$BASE_IMAGE or {DEFAULT_BASE}]",
    )
    parser.add_argument("--only", default="", help="comma list of image names to build")
    parser.add_argument("--list", action="store_true", help="print the image names and exit")
    parser.add_argument("--verbose", "-v", action="store_true", help="show docker build output")
    args = parser.parse_args()
    images = all_images()
    if args.list:
        for image in images:
            print(image.name)
        return 0
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {image.name for image in images}
        if unknown:
            raise SystemExit(f"images: unknown image(s) {sorted(unknown)}")
        images = [image for image in images if image.name in wanted]
    if shutil.which("docker") is None:
        raise SystemExit("images: no docker client on PATH (tools/docker/prepare.sh installs one)")
    with one_build_at_a_time(cache_dir()):
        return build_all(images, args.base_image, verbose=args.verbose)


def build_all(images: list[Image], base: str, *, verbose: bool) -> int:
    start = time.monotonic()
    stale = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docker" / "requirements.py"), "--check"],
        check=False,
    )
    if stale.returncode != 0:
        raise SystemExit(
            "images: deployment/docker/requirements is stale: make docker-requirements"
        )
    say("filling the wheelhouse (tools/docker/wheelhouse.sh) ...")
    subprocess.run(
        [str(ROOT / "tools" / "docker" / "wheelhouse.sh")], check=True, stdout=subprocess.DEVNULL
    )
    house = cache_dir() / "wheelhouse"
    say(f"wheelhouse ready in {time.monotonic() - start:.1f} s")
    tag_version, rev = version(), revision()
    say(f"building {len(images)} image(s) on {base}, version {tag_version}, revision {rev}")
    (cache_dir() / "contexts").mkdir(parents=True, exist_ok=True)
    contexts = Path(tempfile.mkdtemp(prefix="run-", dir=cache_dir() / "contexts"))
    try:
        for number, image in enumerate(images, 1):
            ctx = stage_context(image, house, contexts)
            say(f"[{number}/{len(images)}] ion-{image.name} ...")
            took = build(image, ctx, base=base, tag_version=tag_version, rev=rev, quiet=not verbose)
            tag = f"{REGISTRY}/ion-{image.name}:{tag_version}"
            size = image_size(tag)
            say(
                f"[{number}/{len(images)}] ion-{image.name} built in {took:.1f} s"
                f" ({size / 1e6:.0f} MB)"
            )
            print(f"{image.name} {tag} {took:.2f} {size}", flush=True)
    finally:
        shutil.rmtree(contexts, ignore_errors=True)
    say(f"all {len(images)} image(s) in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
