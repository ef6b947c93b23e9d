"""A real one-node Kubernetes cluster for tests: control plane, containerd, runc, CNI and kubelet.

`LocalCluster` runs etcd 3.6.4 and Kubernetes v1.34.4 (kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet; built by tools/k8s-testbins/build.sh) plus its own containerd, all as
root in a fresh work dir, and pods really run (runc, overlayfs, a CNI bridge). Images are never
pulled: the pause image and `localhost/ion-kube-test:1` (static busybox, entrypoint `sh`) are
written as OCI tars here and imported; others come from `import_image_tar` or
`import_docker_image`. Pods must use `imagePullPolicy: Never` (or IfNotPresent).

    with LocalCluster() as cluster:           # ~5-15 s
        cluster.kubeconfig                   # admin kubeconfig (O=system:masters)
        ns = cluster.new_namespace("demo")

Networking: pods are on a per-cluster bridge; `host_ip` (the bridge's gateway) is how a pod
reaches a service on the host, which must listen on 0.0.0.0 or on `host_ip`. There is no
kube-proxy and no cluster DNS: only the `kubernetes` service works in pods (in-cluster config),
through one DNAT rule for 10.0.0.1:443. Several clusters may run on one host at once: each takes
a slot (0-15) that fixes its bridge, subnet, cgroup root and DNAT rule; `/run/ion-kube` holds
the slot locks and state files, so a later run can clean up after a crashed one.

Manual use (as root):  python -m tests.kube.cluster up  |  status  |  down [--slot N]
Prerequisites:         tools/k8s-node/prepare.sh && tools/k8s-testbins/build.sh (as root)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import yaml

from tests.kube import images
from tests.kube.pki import Pki, write_kubeconfig, write_pki

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools/k8s-testbins/build.sh"
PREPARE_SCRIPT = REPO / "tools/k8s-node/prepare.sh"
INSTALL_HINT = "tools/k8s-node/prepare.sh && tools/k8s-testbins/build.sh (as root)"

TEST_IMAGE = "localhost/ion-kube-test:1"
PAUSE_IMAGE = "localhost/ion-kube-pause:3.10"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
MAX_SLOTS = 16
MAX_WORK_DIR = 60  # the kubelet puts unix sockets ~40 bytes deep under <work>/kubelet/root
CGROUP_FS = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "clusterrole-aggregation-controller",
)


class ClusterError(RuntimeError):
    """The cluster could not be started (or a helper failed); the message says why."""


def state_dir() -> Path:
    return Path(os.environ.get("ION_KUBE_STATE_DIR", "/run/ion-kube"))


def cache_dir() -> Path:
    if os.environ.get("ION_CACHE_DIR"):
        return Path(os.environ["ION_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ion"


def go_binary() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    return "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None


def _has_all(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def find_binaries(*, build: bool = False) -> Path | None:
    """The dir holding the five binaries: $ION_K8S_BIN_DIR, else the build cache.

    With `build=True` and go available, builds them when missing (4-7 min, once).
    """
    override = os.environ.get("ION_K8S_BIN_DIR")
    if override:
        return Path(override) if _has_all(Path(override)) else None
    if not BUILD_SCRIPT.exists():
        return None
    found = subprocess.run(
        [str(BUILD_SCRIPT), "--cached-only"], capture_output=True, text=True, check=False
    )
    if found.returncode == 0:
        return Path(found.stdout.strip())
    if build and go_binary():
        built = subprocess.run(
            [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )  # its progress goes to our stderr
        if built.returncode == 0:
            return Path(built.stdout.strip())
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {built.returncode}")
    return None


def pause_binary() -> Path | None:
    path = cache_dir() / "pause/latest/pause"
    return path if os.access(path, os.X_OK) else None


def busybox_binary() -> Path | None:
    """A statically linked busybox (busybox-static), or None."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and _is_static_elf(path):
            return path
    return None


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP (dynamic loader) program header."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], order) != 3 for i in range(phnum)
    )


def missing_prerequisites(*, allow_build: bool = True) -> str | None:
    """None when a cluster can start here; otherwise what is missing and how to install it.

    With `allow_build`, missing binaries are not a problem as long as go is there to build them.
    """
    missing: list[str] = []
    if sys.platform != "linux":
        return "the Kubernetes test cluster needs Linux"
    if os.geteuid() != 0:
        missing.append("root (the node needs mounts, cgroups, netns and iptables)")
    for tool in ("containerd", "ctr", "runc", "iptables", "ip"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            missing.append(tool)
    missing += [f"{CNI_DIR}/{p}" for p in CNI_PLUGINS if not os.access(CNI_DIR / p, os.X_OK)]
    if busybox_binary() is None:
        missing.append("a static busybox (busybox-static)")
    if pause_binary() is None:
        missing.append(f"the pause binary ({cache_dir()}/pause/latest/pause)")
    if find_binaries() is None and not (allow_build and go_binary()):
        missing.append("the Kubernetes binaries (and no go to build them)")
    if not missing:
        return None
    return f"Kubernetes test cluster: missing {', '.join(missing)}; run {INSTALL_HINT}"


# --- processes --------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, start_time: int) -> bool:
    return _start_time(pid) == start_time


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid, start_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], *, check: bool = True, timeout: float = 60, **kw: Any) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return str(done.stdout)


def _wait(what: str, ok: Callable[[], bool], timeout: float, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        check()
        try:
            if ok():
                return
        except Exception:  # not up yet
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# --- per-slot state ---------------------------------------------------------------------------


@dataclass
class ClusterState:
    """What a cluster leaves on the host: enough to tear it down from another process."""

    slot: int
    work_dir: str
    node_name: str
    bridge: str
    subnet: str
    gateway: str
    cgroup: str
    socket: str
    kubeconfig: str = ""
    api_url: str = ""
    dnat: list[str] = field(default_factory=list)
    pids: dict[str, list[int]] = field(default_factory=dict)  # name -> [pid, start time]
    owner_pid: int = 0
    manual: bool = False

    @staticmethod
    def for_slot(slot: int, work_dir: Path) -> ClusterState:
        return ClusterState(
            slot=slot,
            work_dir=str(work_dir),
            node_name=f"ion-node-{slot}",
            bridge=f"ionkbr{slot}",
            subnet=f"10.88.{100 + slot}.0/24",
            gateway=f"10.88.{100 + slot}.1",
            cgroup=f"ion-kube-s{slot}",
            # Unix socket paths must stay short (104 bytes): not under a pytest tmp dir.
            socket=str(state_dir() / f"s{slot}" / "containerd.sock"),
        )

    def live_pids(self) -> dict[str, int]:
        return {name: pid for name, (pid, st) in self.pids.items() if _alive(pid, st)}


def _state_path(slot: int) -> Path:
    return state_dir() / f"slot-{slot}.json"


def _read_state(slot: int) -> ClusterState | None:
    try:
        return ClusterState(**json.loads(_state_path(slot).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: ClusterState) -> None:
    path = _state_path(state.slot)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(path)


# --- host state: mounts, netns, bridge, cgroups, iptables -----------------------------------


def _mounts_under(prefix: str) -> list[str]:
    """Mount points at or under `prefix` (or under any dir whose name starts with it)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


def _umount_under(prefix: str) -> None:
    for _ in range(5):
        points = sorted(set(_mounts_under(prefix)), key=lambda p: p.count("/"), reverse=True)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _netns_in_subnet(subnet: str) -> list[str]:
    """Named network namespaces holding an address of `subnet` (pods of one cluster)."""
    prefix = subnet.rsplit(".", 1)[0] + "."
    found = []
    with contextlib.suppress(OSError):
        for entry in NETNS_DIR.iterdir():
            out = subprocess.run(
                ["ip", "-n", entry.name, "-4", "-o", "addr", "show"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if f" {prefix}" in out:
                found.append(str(entry))
    return found


def _delete_netns(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        Path(path).unlink()


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _cgroup_dirs(name: str) -> list[Path]:
    """`name` at the top of every cgroup hierarchy that has it."""
    with contextlib.suppress(OSError):
        return [d / name for d in CGROUP_FS.iterdir() if (d / name).is_dir()]
    return []


def _remove_cgroups(name: str) -> None:
    for top in _cgroup_dirs(name):
        for _ in range(3):
            dirs = sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for d in [*dirs, top]:
                try:
                    d.rmdir()
                except OSError:
                    with contextlib.suppress(OSError):
                        for pid in (d / "cgroup.procs").read_text().split():
                            os.kill(int(pid), signal.SIGKILL)
            if not top.exists():
                break
            time.sleep(0.2)


def _make_cgroups(name: str) -> None:
    """`name` in every cgroup v1 hierarchy (the kubelet's --cgroup-root must exist)."""
    for hierarchy in CGROUP_FS.iterdir():
        if hierarchy.name == "unified" or not hierarchy.is_dir():
            continue
        (hierarchy / name).mkdir(exist_ok=True)
        if hierarchy.name.startswith("cpuset") or hierarchy.name.endswith("cpuset"):
            for knob in ("cpuset.cpus", "cpuset.mems"):
                target = hierarchy / name / knob
                if target.exists() and not target.read_text().strip():
                    target.write_text((hierarchy / knob).read_text())


def _dnat_rule(state: ClusterState, api_port: int) -> list[str]:
    return [
        "PREROUTING",
        "-s",
        state.subnet,
        "-d",
        f"{KUBERNETES_SERVICE_IP}/32",
        "-p",
        "tcp",
        "--dport",
        "443",
        "-m",
        "comment",
        "--comment",
        state.cgroup,
        "-j",
        "DNAT",
        "--to-destination",
        f"{state.gateway}:{api_port}",
    ]


def _nat_rules_tagged(tag: str) -> list[list[str]]:
    """`-A ...` rules of the nat table whose comment is `tag`, as argument lists."""
    out = _run(["iptables", "-w", "-t", "nat", "-S"], check=False)
    rules = []
    for line in out.splitlines():
        if line.startswith("-A ") and f"--comment {tag} " in line + " ":
            rules.append(line.split()[1:])
    return rules


def _delete_dnat(tag: str) -> None:
    for rule in _nat_rules_tagged(tag):
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule], capture_output=True)


def _shims_of(sock: str) -> list[int]:
    """containerd-shim processes serving the containerd at `sock`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if cmd and "containerd-shim" in cmd[0] and sock in cmd:
                pids.append(int(entry.name))
    return pids


def leftovers(state: ClusterState) -> dict[str, list[str]]:
    """What of a cluster is still on the host: processes, mounts, netns, links, cgroups, rules.

    Empty lists everywhere after a clean teardown (the harness's own tests assert this).
    """
    return {
        "processes": [f"{n}:{p}" for n, p in state.live_pids().items()],
        "shims": [str(p) for p in _shims_of(state.socket)],
        "mounts": _mounts_under(state.work_dir),
        "netns": _netns_in_subnet(state.subnet),
        "bridge": [state.bridge] if _link_exists(state.bridge) else [],
        "cgroups": [str(p) for p in _cgroup_dirs(state.cgroup)],
        "iptables": [" ".join(r) for r in _nat_rules_tagged(state.cgroup)],
    }


def _clean_host(state: ClusterState, *, extra_netns: list[str] | None = None) -> None:
    """Remove a (stopped) cluster's mounts, netns, bridge, IPAM, cgroups, rules and log links."""
    for pid in _shims_of(state.socket):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _umount_under(state.work_dir)
    for path in {*(extra_netns or []), *_netns_in_subnet(state.subnet)}:
        if Path(path).exists():
            _delete_netns(path)
    if _link_exists(state.bridge):
        subprocess.run(["ip", "link", "del", state.bridge], capture_output=True, check=False)
    shutil.rmtree(Path(state.work_dir) / "cni/ipam", ignore_errors=True)
    shutil.rmtree(Path(state.socket).parent, ignore_errors=True)
    _remove_cgroups(state.cgroup)
    _delete_dnat(state.cgroup)
    with contextlib.suppress(OSError):
        for cached in Path("/var/lib/cni/results").glob(f"{state.cgroup}-*"):
            cached.unlink()
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(state.work_dir):
                link.unlink()
    _clean_shared_kubelet_paths()


# Paths every kubelet uses whatever its --root-dir (device plugin socket, log symlinks).
SHARED_KUBELET_PATHS = (
    Path("/var/lib/kubelet/device-plugins/kubelet.sock"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet/pki/kubelet.crt"),
    Path("/var/lib/kubelet/pki/kubelet.key"),
    Path("/var/lib/kubelet/pki"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
)


def _clean_shared_kubelet_paths() -> None:
    """Remove what kubelets leave outside their root dir, once no kubelet runs on the host."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if cmd and Path(cmd[0]).name == "kubelet":
                return
    for path in SHARED_KUBELET_PATHS:
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only when empty
            else:
                path.unlink()


def _stop_pid(pid: int, start_time: int, *, grace: float) -> None:
    if not _alive(pid, start_time):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    if grace > 0 and not _wait_gone(pid, start_time, grace):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, start_time, 10)


def _ctr(state: ClusterState, *args: str, check: bool = False, timeout: float = 30) -> str:
    cmd = ["ctr", "--address", state.socket, "-n", "k8s.io", *args]
    return _run(cmd, check=check, timeout=timeout)


def _sandbox_netns(state: ClusterState) -> list[str]:
    """Network namespaces of this cluster's pod sandboxes, from containerd's container specs."""
    found = []
    for cid in _ctr(state, "containers", "ls", "-q").split():
        with contextlib.suppress(ValueError, KeyError, TypeError, ClusterError):
            info = json.loads(_ctr(state, "containers", "info", cid))
            for ns in info["Spec"]["linux"]["namespaces"]:
                if ns.get("type") == "network" and ns.get("path"):
                    found.append(ns["path"])
    return sorted(set(found))


def teardown(
    state: ClusterState,
    procs: dict[str, subprocess.Popen[bytes]] | None = None,
    *,
    pod_grace: int = 1,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, float]:
    """Stop a cluster and leave nothing on the host (part B §7 of the deployment reference).

    Order: controller-manager and scheduler are killed first, so nothing re-creates pods; then
    every pod is deleted while the kubelet still runs (its StopPodSandbox runs CNI DEL and
    removes the netns) and we wait for containerd's tasks and the netns to be gone; the kubelet
    is stopped; containerd kills what is left, is stopped, and stray shims are killed; the
    apiserver and etcd get SIGKILL (the data is thrown away); then mounts under the work dir are
    lazily unmounted deepest first, the bridge, IPAM dir, kubepods cgroups and DNAT rule removed.
    """
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    pids = state.pids

    def stop(name: str, grace: float) -> None:
        if name in pids:
            _stop_pid(*pids[name], grace=grace)
        if procs and name in procs:
            with contextlib.suppress(Exception):
                procs[name].wait(timeout=10)

    stop("kube-controller-manager", 0)
    stop("kube-scheduler", 0)
    netns: list[str] = []
    live = state.live_pids()
    if "containerd" in live:
        netns = _sandbox_netns(state)
    if {"kubelet", "kube-apiserver", "containerd"} <= set(live) and state.kubeconfig:
        try:
            _delete_all_pods(state, pod_grace)
            deadline = time.monotonic() + 30 + pod_grace
            while time.monotonic() < deadline:
                tasks = _ctr(state, "tasks", "ls", "-q").split()
                if not tasks and not any(Path(p).exists() for p in netns):
                    break
                time.sleep(0.2)
            else:
                log("teardown: pods did not stop within 30 s; forcing")
        except Exception as exc:
            log(f"teardown: deleting pods failed: {exc!r}")
    timings["pods_stopped"] = time.monotonic() - t0
    stop("kubelet", 5)
    timings["kubelet_stopped"] = time.monotonic() - t0
    if "containerd" in state.live_pids():
        for tid in _ctr(state, "tasks", "ls", "-q").split():
            _ctr(state, "tasks", "kill", "-s", "SIGKILL", tid)
            _ctr(state, "tasks", "delete", "-f", tid)
        for cid in _ctr(state, "containers", "ls", "-q").split():
            _ctr(state, "containers", "delete", cid)
    stop("containerd", 5)
    for pid in _shims_of(state.socket):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    timings["containerd_stopped"] = time.monotonic() - t0
    for name in ("kube-apiserver", "etcd", *pids):
        stop(name, 0)
    timings["control_plane_stopped"] = time.monotonic() - t0
    _clean_host(state, extra_netns=netns)
    timings["total"] = time.monotonic() - t0
    return timings


def _delete_all_pods(state: ClusterState, grace: int) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=state.kubeconfig)  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api)
        for pod in core.list_pod_for_all_namespaces(_request_timeout=10).items:
            meta = pod.metadata
            assert meta is not None and meta.name and meta.namespace
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_pod(
                    meta.name,
                    meta.namespace,
                    grace_period_seconds=grace,
                    _request_timeout=10,
                )
    finally:
        api.close()


# --- the cluster ------------------------------------------------------------------------------


class LocalCluster:
    """A one-node cluster with a real kubelet. Start with `start()` or `with`; `stop()` ends it.

    Attributes after start: `kubeconfig` (admin, O=system:masters), `api_url`, `node_name`,
    `host_ip` (bridge gateway: how pods reach host services listening on 0.0.0.0 or on it),
    `containerd_socket`, `work_dir`, `pod_subnet`, `slot`, `timings` (seconds per phase).
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        build: bool = False,
        manual: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._base_dir = base_dir
        self._bin_dir = bin_dir
        self._build = build
        self._manual = manual
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock_fd: int | None = None
        self._state: ClusterState | None = None
        self._pki: Pki | None = None
        self._stopped = False
        self.timings: dict[str, float] = {}
        self.teardown_timings: dict[str, float] = {}

    # -- public attributes ---------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise ClusterError("the cluster is not started")
        return self._state

    @property
    def work_dir(self) -> Path:
        return Path(self.state.work_dir)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    @property
    def api_url(self) -> str:
        return self.state.api_url

    @property
    def node_name(self) -> str:
        return self.state.node_name

    @property
    def host_ip(self) -> str:
        return self.state.gateway

    @property
    def pod_subnet(self) -> str:
        return self.state.subnet

    @property
    def slot(self) -> int:
        return self.state.slot

    @property
    def containerd_socket(self) -> Path:
        return Path(self.state.socket)

    @property
    def ca_cert(self) -> Path:
        return self.work_dir / "pki/ca.crt"

    test_image = TEST_IMAGE
    pause_image = PAUSE_IMAGE

    def pids(self) -> dict[str, int]:
        """Live component processes by name."""
        return self.state.live_pids()

    def logs(self) -> dict[str, Path]:
        """Log file of each component (etcd, kube-*, kubelet, containerd)."""
        return {p.stem: p for p in sorted((self.work_dir / "logs").glob("*.log"))}

    def log_tails(self, lines: int = 30) -> str:
        """The last `lines` lines of every component log, for a failure report."""
        out = []
        for name, path in self.logs().items():
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                tail = [f"<unreadable: {exc}>"]
            out.append(f"----- {name} ({path}) -----")
            out.extend(tail)
        return "\n".join(out)

    def api_client(self) -> Any:
        """A new `kubernetes.client.ApiClient` for the admin user; close it when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def leftovers(self) -> dict[str, list[str]]:
        return leftovers(self.state)

    def pod_netns(self) -> list[str]:
        """Network namespaces of the pod sandboxes that exist now."""
        return _sandbox_netns(self.state)

    # -- images ----------------------------------------------------------------------------------

    def import_image_tar(self, src: str | Path | bytes | IO[bytes]) -> None:
        """Import an image tar (OCI layout or `docker save` format) into the node's containerd."""
        cmd = ["ctr", "--address", self.state.socket, "-n", "k8s.io", "images", "import"]
        if isinstance(src, str | Path):
            _run([*cmd, str(src)], timeout=300)
            return
        data = src if isinstance(src, bytes) else None
        done = subprocess.run(
            [*cmd, "-"],
            input=data,
            stdin=None if data is not None else cast(IO[bytes], src),
            capture_output=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(f"ctr images import failed: {done.stderr.decode().strip()}")

    def import_docker_image(self, *refs: str) -> None:
        """`docker save refs... | ctr images import -` (one stream, so shared layers go once);
        docker is reached through DOCKER_HOST."""
        if shutil.which("docker") is None:
            raise ClusterError("import_docker_image needs the docker CLI (and DOCKER_HOST)")
        save = subprocess.Popen(
            ["docker", "save", *refs], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert save.stdout is not None
        try:
            self.import_image_tar(save.stdout)
        finally:
            save.stdout.close()
            err = save.stderr.read().decode() if save.stderr else ""
            rc = save.wait(timeout=120)
        if rc != 0:
            raise ClusterError(f"docker save {' '.join(refs)} failed ({rc}): {err.strip()}")

    def images(self) -> list[str]:
        """Image names known to the node's containerd."""
        return _ctr(self.state, "images", "ls", "-q", check=True).split()

    # -- namespaces ------------------------------------------------------------------------------

    def new_namespace(self, prefix: str = "t", *, timeout: float = 30) -> str:
        """Create a fresh namespace; returns once its `default` ServiceAccount and root CA exist."""
        from kubernetes import client

        base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40] or "t"
        name = f"{base}-{secrets.token_hex(3)}"
        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            _wait(
                f"ServiceAccount default in namespace {name}",
                lambda: (
                    bool(core.read_namespaced_service_account("default", name))
                    and bool(core.read_namespaced_config_map("kube-root-ca.crt", name))
                ),
                timeout,
                lambda: None,
            )
        finally:
            api.close()
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace (in the background: the namespace controller finishes it)."""
        from kubernetes import client

        api = self.api_client()
        try:
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(api).delete_namespace(name, grace_period_seconds=0)
        finally:
            api.close()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        reason = missing_prerequisites(allow_build=self._build)
        if reason:
            raise ClusterError(reason)
        bin_dir = self._bin_dir or find_binaries(build=self._build)
        if bin_dir is None:
            raise ClusterError(f"Kubernetes binaries not built; run {INSTALL_HINT}")
        self._bins = bin_dir
        t0 = time.monotonic()
        self._acquire_slot()
        try:
            self._start(t0, timeout)
        except BaseException:
            self._log("ion-kube: start failed; logs:\n" + self.log_tails(20))
            self.stop()
            raise
        self.timings["ready"] = time.monotonic() - t0

    def stop(self) -> None:
        """Tear down (idempotent). Leaves the logs in the work dir; removes everything else."""
        if self._state is None or self._stopped:
            return
        self._stopped = True
        state = self._state
        try:
            self.teardown_timings = teardown(state, self._procs, log=self._log)
        finally:
            for sub in ("containerd", "kubelet", "etcd-data", "images", "cni"):
                shutil.rmtree(Path(state.work_dir) / sub, ignore_errors=True)
            with contextlib.suppress(OSError):
                _state_path(state.slot).unlink()
            self._release_slot()

    # -- internals -------------------------------------------------------------------------------

    def _acquire_slot(self) -> None:
        directory = state_dir()
        directory.mkdir(parents=True, exist_ok=True)
        refused: list[str] = []
        for slot in range(MAX_SLOTS):
            fd = os.open(directory / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # another live session owns it
            old = _read_state(slot)
            if old is not None and old.live_pids():
                os.close(fd)
                if old.manual:
                    continue  # a cluster started with `up`: leave it alone
                refused.append(
                    f"slot {slot}: processes of an earlier session still run "
                    f"({old.live_pids()}, work dir {old.work_dir}); stop them with "
                    f"`python -m tests.kube.cluster down --slot {slot}`"
                )
                break
            base = self._base_dir or Path(tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            prefix = f"ion-kube-s{slot}-"
            # Leftovers of a crashed run in this slot: its state file (if any) and the names
            # that the slot fixes (bridge, subnet, cgroup, DNAT comment, work dir prefix).
            stale = old or ClusterState.for_slot(slot, Path("/nonexistent"))
            _clean_host(stale)
            with contextlib.suppress(OSError):
                for old_base in {base, Path(tempfile.gettempdir())}:
                    for d in old_base.glob(prefix + "*"):  # earlier runs of this slot
                        _umount_under(str(d))
                        shutil.rmtree(d, ignore_errors=True)
            if len(str(base / prefix)) + 8 > MAX_WORK_DIR:
                os.close(fd)
                raise ClusterError(
                    f"work dir base {base} is too long: the kubelet's unix sockets under it "
                    f"would exceed 104 bytes (keep base + '/{prefix}XXXXXXXX' <= {MAX_WORK_DIR})"
                )
            work = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
            self._lock_fd = fd
            self._state = ClusterState.for_slot(slot, work)
            self._state.owner_pid = os.getpid()
            self._state.manual = self._manual
            _write_state(self._state)
            return
        raise ClusterError(
            "; ".join(refused) or f"all {MAX_SLOTS} cluster slots in {directory} are in use"
        )

    def _release_slot(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _spawn(self, name: str, args: list[str], cwd: Path | None = None) -> None:
        st = self.state
        log = (self.work_dir / "logs" / f"{name}.log").open("ab")
        env = dict(os.environ)
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.work_dir,
            env=env,
            start_new_session=True,  # Ctrl-C of the test run must not kill it before teardown
        )
        log.close()
        self._procs[name] = proc
        start_time = _start_time(proc.pid)
        st.pids[name] = [proc.pid, start_time if start_time is not None else -1]
        _write_state(st)

    def _check_procs(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                path = self.work_dir / "logs" / f"{name}.log"
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:])
                raise ClusterError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def _start(self, t0: float, timeout: float) -> None:
        st = self.state
        work = self.work_dir
        for sub in ("logs", "containerd", "cni/net.d", "kubelet/root", "kubelet/pod-logs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        Path(st.socket).parent.mkdir(parents=True, exist_ok=True)
        bins = self._bins
        ports = {
            "etcd_client": _free_port(),
            "etcd_peer": _free_port(),
            "etcd_metrics": _free_port(),
            "apiserver": _free_port("0.0.0.0"),
            "kcm": _free_port(),
            "scheduler": _free_port(),
            "kubelet": _free_port("0.0.0.0"),
            "kubelet_healthz": _free_port(),
        }
        self.ports = ports
        st.api_url = f"https://127.0.0.1:{ports['apiserver']}"

        # Host networking first: the bridge with its gateway IP (so host services can bind to
        # it before any pod exists), the DNAT rule for the `kubernetes` service, cgroup root.
        subprocess.run(["ip", "link", "add", st.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{st.gateway}/24", "dev", st.bridge], check=True)
        subprocess.run(["ip", "link", "set", st.bridge, "up"], check=True)
        st.dnat = _dnat_rule(st, ports["apiserver"])
        _write_state(st)
        subprocess.run(["iptables", "-w", "-t", "nat", "-A", *st.dnat], check=True)
        _make_cgroups(st.cgroup)

        # containerd (own socket, root and state) and etcd start together.
        self._write_containerd_config()
        self._spawn("containerd", ["containerd", "--config", str(work / "containerd/config.toml")])
        self._spawn(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=ion",
                f"--data-dir={work / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{ports['etcd_client']}",
                f"--advertise-client-urls=http://127.0.0.1:{ports['etcd_client']}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                f"--initial-cluster=ion=http://127.0.0.1:{ports['etcd_peer']}",
                f"--listen-metrics-urls=http://127.0.0.1:{ports['etcd_metrics']}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        # PKI while they start.
        pki = write_pki(work / "pki", extra_ips=[st.gateway])
        self._pki = pki
        server = st.api_url
        admin_kc = write_kubeconfig(
            work / "admin.kubeconfig",
            server=server,
            ca_crt=pki.ca_crt,
            user="admin",
            client_crt=pki.admin_crt,
            client_key=pki.admin_key,
        )
        kcm_kc = write_kubeconfig(
            work / "kcm.kubeconfig",
            server=server,
            ca_crt=pki.ca_crt,
            user="system:kube-controller-manager",
            token=pki.kcm_token,
        )
        sched_kc = write_kubeconfig(
            work / "scheduler.kubeconfig",
            server=server,
            ca_crt=pki.ca_crt,
            user="system:kube-scheduler",
            token=pki.scheduler_token,
        )
        st.kubeconfig = str(admin_kc)
        _write_state(st)

        deadline = t0 + timeout
        _wait(
            "containerd",
            lambda: (
                subprocess.run(
                    ["ctr", "--address", st.socket, "version"], capture_output=True, timeout=5
                ).returncode
                == 0
            ),
            deadline - time.monotonic(),
            self._check_procs,
        )
        self.timings["containerd"] = time.monotonic() - t0
        import_error: list[BaseException] = []
        importer = threading.Thread(target=self._import_base_images, args=(import_error,))
        importer.start()

        _wait(
            "etcd",
            lambda: (
                b'"true"'
                in urllib.request.urlopen(
                    f"http://127.0.0.1:{ports['etcd_client']}/health", timeout=2
                ).read()
            ),
            deadline - time.monotonic(),
            self._check_procs,
        )
        self.timings["etcd"] = time.monotonic() - t0
        self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
                "--bind-address=0.0.0.0",
                f"--secure-port={ports['apiserver']}",
                f"--advertise-address={st.gateway}",
                f"--tls-cert-file={pki.apiserver_crt}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_crt}",
                f"--token-auth-file={pki.tokens_csv}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={pki.admin_crt}",
                f"--kubelet-client-key={pki.admin_key}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--cert-dir={work / 'apiserver-certs'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
        ctx.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
        _wait(
            "kube-apiserver /readyz",
            lambda: (
                urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=3).read() == b"ok"
            ),
            deadline - time.monotonic(),
            self._check_procs,
        )
        self.timings["apiserver"] = time.monotonic() - t0
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kcm']}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._write_kubelet_config()
        self._spawn(
            "kubelet",
            [
                str(bins / "kubelet"),
                f"--config={work / 'kubelet/config.yaml'}",
                f"--kubeconfig={admin_kc}",
                f"--root-dir={work / 'kubelet/root'}",
                f"--cert-dir={work / 'kubelet/pki'}",
                f"--hostname-override={st.node_name}",
                "--v=2",
            ],
        )
        _wait(
            f"node {st.node_name} Ready and untainted, ServiceAccount default/default",
            self._node_usable,
            deadline - time.monotonic(),
            self._check_procs,
        )
        self.timings["node_ready"] = time.monotonic() - t0
        importer.join(max(1.0, deadline - time.monotonic()))
        if importer.is_alive():
            raise ClusterError("image import did not finish in time")
        if import_error:
            raise ClusterError(f"image import failed: {import_error[0]}") from import_error[0]
        self.timings["images"] = self._images_done - t0

    def _import_base_images(self, errors: list[BaseException]) -> None:
        try:
            pause, busybox = pause_binary(), busybox_binary()
            assert pause is not None and busybox is not None
            self.import_image_tar(images.pause_image_tar(PAUSE_IMAGE, pause))
            self.import_image_tar(images.busybox_image_tar(TEST_IMAGE, busybox))
        except BaseException as exc:
            errors.append(exc)
        self._images_done = time.monotonic()

    def _node_usable(self) -> bool:
        from kubernetes import client

        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            node = core.read_node(self.state.node_name, _request_timeout=5)
            conditions = (node.status.conditions if node.status else None) or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            if not ready or (node.spec and node.spec.taints):
                return False
            core.read_namespaced_service_account("default", "default", _request_timeout=5)
            return True
        finally:
            api.close()

    def _write_containerd_config(self) -> None:
        st, work = self.state, self.work_dir
        c = work / "containerd"
        config = f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{st.socket}"
[ttrpc]
  address = "{st.socket}.ttrpc"
[debug]
  address = "{Path(st.socket).parent / "debug.sock"}"
  level = "info"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    enable_selinux = false
    restrict_oom_score_adj = true
    disable_apparmor = true
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      discard_unpacked_layers = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{c / "runc"}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_DIR}"
      conf_dir = "{work / "cni/net.d"}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{c / "certs"}"
"""
        (c / "config.toml").write_text(config)
        conflist = {
            "cniVersion": "1.0.0",
            "name": st.cgroup,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": st.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(work / "cni/ipam"),
                        "ranges": [[{"subnet": st.subnet, "gateway": st.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (work / "cni/net.d/10-bridge.conflist").write_text(json.dumps(conflist, indent=2))

    def _write_kubelet_config(self) -> None:
        st, work = self.state, self.work_dir
        assert self._pki is not None
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{st.cgroup}",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{st.socket}",
            "address": "0.0.0.0",
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet_healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self._pki.ca_crt)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(work / "kubelet/pod-logs"),
            "volumePluginDir": str(work / "kubelet/volume-plugins"),
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            # No KUBE-FIREWALL / KUBE-IPTABLES-HINT / canary chains: nothing of ours may stay
            # in iptables after teardown, and nothing here needs them.
            "makeIPTablesUtilChains": False,
            "serializeImagePulls": False,
            "nodeStatusReportFrequency": "10s",
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "5s",
        }
        (work / "kubelet/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


# --- command line ---------------------------------------------------------------------------


def _print_cluster(cluster: LocalCluster) -> None:
    print(f"slot        {cluster.slot}")
    print(f"kubeconfig  {cluster.kubeconfig}")
    print(f"api         {cluster.api_url}")
    print(f"node        {cluster.node_name}")
    print(f"host ip     {cluster.host_ip}   (pods reach host services here)")
    print(f"containerd  {cluster.containerd_socket}")
    print(f"logs        {cluster.work_dir / 'logs'}")
    print(f"test image  {TEST_IMAGE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster that keeps running after this exits")
    up.add_argument("--build", action="store_true", help="build the binaries if missing")
    down = sub.add_parser("down", help="tear down clusters left by `up` or by a crashed run")
    down.add_argument("--slot", type=int, help="only this slot (default: every unlocked one)")
    sub.add_parser("status", help="list slots, their processes and leftovers")
    args = parser.parse_args(argv)

    if args.cmd == "up":
        cluster = LocalCluster(build=args.build, manual=True)
        cluster.start()
        _print_cluster(cluster)
        print(
            f"ready in {cluster.timings['ready']:.1f} s; stop with: python -m tests.kube.cluster down --slot {cluster.slot}"
        )
        # The lock is released when we exit; the state file keeps the cluster's pids.
        return 0
    if args.cmd == "status":
        for slot in range(MAX_SLOTS):
            state = _read_state(slot)
            if state is None:
                continue
            left = {k: v for k, v in leftovers(state).items() if v}
            print(f"slot {slot}: {state.work_dir} manual={state.manual} {left}")
        return 0
    slots = [args.slot] if args.slot is not None else list(range(MAX_SLOTS))
    for slot in slots:
        state = _read_state(slot)
        if state is None:
            continue
        fd = os.open(state_dir() / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"slot {slot}: in use by a running session (pid {state.owner_pid}); skipped")
                continue
            timings = teardown(state, log=print)
            for sub_dir in ("containerd", "kubelet", "etcd-data", "cni"):
                shutil.rmtree(Path(state.work_dir) / sub_dir, ignore_errors=True)
            _state_path(slot).unlink(missing_ok=True)
            print(f"slot {slot}: torn down in {timings['total']:.1f} s")
        finally:
            os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "INSTALL_HINT",
    "PAUSE_IMAGE",
    "TEST_IMAGE",
    "ClusterError",
    "ClusterState",
    "LocalCluster",
    "find_binaries",
    "leftovers",
    "missing_prerequisites",
    "teardown",
]
