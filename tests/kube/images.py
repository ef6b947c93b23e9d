"""Tiny OCI images written directly as an OCI image-layout tar, with no container engine.

`ctr images import` reads the tar; the name comes from the `io.containerd.image.name`
annotation of the manifest in index.json. Two images are made this way for the test cluster:
the sandbox ("pause") image and `localhost/ion-kube-test:1`, static busybox with `sh` as
entrypoint.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Entry:
    """One entry of the image's single layer: a file (`data`), a dir or a symlink."""

    path: str
    data: bytes | None = None
    mode: int = 0o644
    link: str | None = None
    is_dir: bool = False


def go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _layer_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = entry.mode
            if entry.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.link
                info.mode = 0o777
                tar.addfile(info)
            else:
                data = entry.data or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_image_tar(
    name: str,
    entries: Iterable[Entry],
    *,
    entrypoint: list[str],
    cmd: list[str] | None = None,
    user: str | None = None,
) -> bytes:
    """An OCI image-layout tar holding one image `name` with a single gzip layer."""
    layer = _layer_tar(entries)
    layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
    image_config: dict[str, object] = {
        "Env": [PATH_ENV],
        "Entrypoint": entrypoint,
        "WorkingDir": "/",
    }
    if cmd is not None:
        image_config["Cmd"] = cmd
    if user is not None:
        image_config["User"] = user
    config = json.dumps(
        {
            "created": "1970-01-01T00:00:00Z",
            "architecture": go_arch(),
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/kube/images.py"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
            "layers": [
                {"mediaType": LAYER_TYPE, "digest": _digest(layer_gz), "size": len(layer_gz)}
            ],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": go_arch(), "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))

        def add_dir(path: str) -> None:
            info = tarfile.TarInfo(path)
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, 0, 0o755
            tar.addfile(info)

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        add_dir("blobs")
        add_dir("blobs/sha256")
        for blob in (layer_gz, config, manifest):
            add("blobs/sha256/" + _digest(blob).removeprefix("sha256:"), blob)
    return out.getvalue()


def pause_image_tar(name: str, pause_binary: Path) -> bytes:
    """The pod sandbox image: the static pause binary as /pause, run as 65535."""
    return oci_image_tar(
        name,
        [Entry("/pause", pause_binary.read_bytes(), mode=0o755)],
        entrypoint=["/pause"],
        user="65535:65535",
    )


def busybox_image_tar(name: str, busybox: Path) -> bytes:
    """Static busybox as /bin/busybox with every applet linked in /bin; entrypoint `sh`."""
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    entries = [
        Entry("/bin", is_dir=True, mode=0o755),
        Entry("/bin/busybox", busybox.read_bytes(), mode=0o755),
        Entry("/etc", is_dir=True, mode=0o755),
        Entry("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
        Entry("/etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        Entry("/root", is_dir=True, mode=0o700),
        Entry("/tmp", is_dir=True, mode=0o1777),
        Entry("/usr", is_dir=True, mode=0o755),
        Entry("/usr/bin", link="../bin"),
    ]
    entries += [Entry(f"/bin/{a}", link="busybox") for a in applets if a not in ("busybox",)]
    return oci_image_tar(name, entries, entrypoint=["sh"])
