"""Ion's images on a real Docker engine: users, entry points, contents, labels, and module images
run through the local executor's docker path and as the example pipeline's modules.

Needs `docker_engine` and `ion_images` (tests/containers/fixtures.py): skipped without an
engine, a failure with ION_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from ion.core.events import Event, EventMeta, Insight, new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.executor import JobRequest, JobState
from ion.core.testing.embedded import EmbeddedBackends
from ion.dispatcher.executors.local import LocalExecutor
from tests.containers.fixtures import DockerEngine, IonImages

pytestmark = pytest.mark.timeout(1800)

SERVICES = ("handler", "dispatcher", "management", "cli")
EXAMPLES = (
    "example-ingest",
    "example-thumbnailer",
    "example-digit-classifier",
    "example-stats-reporter",
    "example-html-report",
)
ALL = SERVICES + EXAMPLES
SECRET_NAME = re.compile(
    r"(?i)(secret|token|passw(or)?d|connection_?string|account_?key|access_?key|api_?key"
    r"|credential|sas)"
)
SECRET_VALUE = re.compile(
    r"(AccountKey=|SharedAccessKey=|SharedAccessSignature|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|sig=[A-Za-z0-9%]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16})"
)


def test_the_image_set_is_complete(ion_images: IonImages) -> None:
    assert sorted(ion_images.tags) == sorted(ALL)
    for name, tag in ion_images.tags.items():
        assert tag == f"localhost/ion-{name}:{ion_images.version}"


@pytest.mark.parametrize("name", ALL)
def test_every_image_runs_as_a_numeric_non_root_user(
    docker_engine: DockerEngine, ion_images: IonImages, name: str
) -> None:
    config = docker_engine.inspect(ion_images.tag(name))["Config"]
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", config["User"]), config["User"]
    ran = docker_engine.run("run", "--rm", "--entrypoint", "id", ion_images.tag(name))
    assert ran.stdout.startswith("uid=10001(ion) gid=10001(ion)"), ran.stdout


def test_the_handler_image_answers_help_with_its_commands(
    docker_engine: DockerEngine, ion_images: IonImages
) -> None:
    ran = docker_engine.run("run", "--rm", ion_images.tag("handler"), "--help")
    for command in ("prepare", "commit", "run"):
        assert re.search(rf"^\s+{command}\s", ran.stdout, re.MULTILINE), ran.stdout
    bad = docker_engine.run("run", "--rm", ion_images.tag("handler"), "no-such", check=False)
    assert bad.returncode == 2 and "No such command" in bad.stderr


FIND = """
import importlib.util, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
print(*[m for m in sys.argv[1:] if found(m)])
"""


def _importable(engine: DockerEngine, image: str, *modules: str) -> set[str]:
    ran = engine.run("run", "--rm", "--entrypoint", "python", image, "-c", FIND, *modules)
    return set(ran.stdout.split())


def test_the_handler_image_carries_no_kubernetes_or_grpc_client(
    docker_engine: DockerEngine, ion_images: IonImages
) -> None:
    probe = (
        "kubernetes",
        "grpc",
        "ion.handler",
        "azure.storage.blob",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    )
    assert _importable(docker_engine, ion_images.tag("handler"), *probe) == {
        "ion.handler",
        "azure.storage.blob",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    }
    # The same probe does see them where they belong, so an empty answer above means absent.
    assert {"kubernetes", "ion.dispatcher"} <= _importable(
        docker_engine, ion_images.tag("dispatcher"), "kubernetes", "ion.dispatcher", "grpc"
    )
    assert {"kubernetes", "grpc", "ion.management"} <= _importable(
        docker_engine, ion_images.tag("management"), "kubernetes", "grpc", "ion.management"
    )


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("dispatcher", ["serve", "--help"]),
        ("management", ["serve", "--help"]),
        ("cli", ["--help"]),
    ],
)
def test_each_service_image_starts_its_own_command(
    docker_engine: DockerEngine, ion_images: IonImages, name: str, command: list[str]
) -> None:
    config = docker_engine.inspect(ion_images.tag(name))["Config"]
    entry = {"dispatcher": "ion-dispatcher", "management": "ion-management", "cli": "ion"}[name]
    assert config["Entrypoint"] == [entry]
    ran = docker_engine.run("run", "--rm", ion_images.tag(name), *command)
    assert "Usage:" in ran.stdout


@pytest.mark.parametrize("name", ALL)
def test_labels_are_there_and_nothing_secret_looking_is_in_env_or_history(
    docker_engine: DockerEngine, ion_images: IonImages, name: str
) -> None:
    image = docker_engine.inspect(ion_images.tag(name))
    labels = image["Config"]["Labels"] or {}
    assert labels["org.opencontainers.image.title"] == f"ion-{name.replace('example-', 'module-')}"
    assert labels["org.opencontainers.image.version"] == ion_images.version
    revision = labels["org.opencontainers.image.revision"]
    assert revision == ion_images.revision  # what the build said, a commit of this repository
    commit = revision.removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), revision
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
    assert known.returncode == 0, f"{revision} is not a commit here"
    assert "org.opencontainers.image.source" in labels
    assert labels["org.opencontainers.image.base.name"] == ion_images.base
    for pair in image["Config"]["Env"]:
        key, _, value = pair.partition("=")
        assert not (SECRET_NAME.search(key) and value), f"{name}: secret-looking env {key}"
        assert not SECRET_VALUE.search(value), f"{name}: secret-looking value in {key}"
    history = docker_engine.run(
        "history", "--no-trunc", "--format", "{{.CreatedBy}}", ion_images.tag(name)
    ).stdout
    assert "pip install" not in history or "--no-index" in history or "PIP_NO_INDEX" in history
    assert not SECRET_VALUE.search(history), f"{name}: secret-looking text in its history"
    # Nothing from the build stage (wheels, requirements) reached the final image.
    ran = docker_engine.run(
        "run", "--rm", "--entrypoint", "sh", ion_images.tag(name), "-c",
        "ls -d /build /root/.cache /opt/ion/bin/pip 2>/dev/null; true",
    )  # fmt: skip
    assert ran.stdout == ""


@pytest.mark.parametrize("name", ["dispatcher", "management"])
def test_services_declare_a_health_check(
    docker_engine: DockerEngine, ion_images: IonImages, name: str
) -> None:
    check = docker_engine.inspect(ion_images.tag(name))["Config"]["Healthcheck"]
    assert check["Test"][:3] == ["CMD", "python", "/opt/ion/bin/ion-healthcheck"]
    assert check["Test"][3] == name
    # Nothing listens yet: the check itself runs and says unhealthy (exit 1), naming the port.
    ran = docker_engine.run(
        "run", "--rm", "--entrypoint", "python", ion_images.tag(name),
        "/opt/ion/bin/ion-healthcheck", name, check=False,
    )  # fmt: skip
    assert ran.returncode == 1 and "unhealthy on port" in ran.stderr


def test_the_management_image_serves_and_its_health_check_passes(
    docker_engine: DockerEngine, ion_images: IonImages
) -> None:
    name = f"ion-test-mgmt-{uuid.uuid4().hex[:8]}"
    docker_engine.run(
        "run", "-d", "--rm", "--name", name, "--network", "none",
        ion_images.tag("management"), "serve", "--insecure",
    )  # fmt: skip
    try:
        ran = None
        for _ in range(120):
            ran = docker_engine.run(
                "exec", name, "python", "/opt/ion/bin/ion-healthcheck", "management", check=False
            )
            if ran.returncode == 0:
                break
            subprocess.run(["sleep", "0.5"], check=True)
        assert ran is not None and ran.returncode == 0, (
            ran.stderr if ran else "",
            docker_engine.run("logs", name, check=False).stderr[-3000:],
        )
    finally:
        docker_engine.run("rm", "-f", name, check=False)


# -- a 2018-style module image through the local executor's docker path ----------------------

MODULE_2018 = textwrap.dedent(
    """\
    #!/bin/sh
    # A module as written for the 2018 system: only /ion, no Ion code.
    set -e
    in=/ion/in/data/greeting.txt
    tr a-z A-Z < "$in" > /ion/out/data/shout.txt
    id -u > /ion/out/data/uid.txt
    printf '[{"key":"words","value":"%s"}]' "$(wc -w < "$in" | tr -d ' ')" > /ion/out/insights.json
    printf '[{"key":"eventType","value":"greeting.shouted"},{"key":"files","value":"shout.txt"},{"key":"mood","value":"%s"}]' \\
      "$MOOD" > /ion/out/events/shouted.json
    """
)


def _build_2018_module(engine: DockerEngine, base: str, tmp: Path, *, user: str) -> str:
    ctx = tmp / f"module-{user or 'root'}"
    ctx.mkdir()
    (ctx / "module.sh").write_text(MODULE_2018)
    user_line = f"USER {user}\n" if user else ""
    (ctx / "Dockerfile").write_text(
        f'FROM {base}\nCOPY module.sh /module.sh\n{user_line}ENTRYPOINT ["/bin/sh", "/module.sh"]\n'
    )
    tag = f"localhost/ion-test-module-2018:{user.replace(':', '-') or 'root'}"
    engine.run("build", "--network", "none", "-t", tag, str(ctx))
    return tag


@pytest.mark.parametrize("user", ["", "10001:10001"], ids=["root-image", "non-root-image"])
async def test_a_2018_module_image_runs_unchanged_through_the_local_executor_docker_path(
    docker_engine: DockerEngine, ion_images: IonImages, tmp_path: Path, user: str
) -> None:
    image = _build_2018_module(docker_engine, ion_images.base, tmp_path, user=user)
    async with EmbeddedBackends.open(tmp_path / "backends") as backends:
        await backends.watch("greeting.written", "greeting.shouted")
        executor = LocalExecutor(
            tmp_path / "jobs",
            bus=backends.bus,
            blobs=backends.blobs,
            meta=backends.meta,
            container_runtime="docker",
        )
        # The parent: a process module writes the file the image module will read.
        root = new_root_event("greeting.requested", data={"lang": "en"})
        await backends.meta.upsert_event_meta(
            EventMeta(id=root.event_id, context=root.context, type=root.type, data=root.data)
        )
        writer = ModuleSpec(
            name="writer",
            subscribes_to="greeting.requested",
            publishes=["greeting.written"],
            command=[
                "/bin/sh",
                "-c",
                'echo "hello from the parent" > "$HANDLER_BASE_DIR/out/data/greeting.txt";'
                ' printf \'[{"key":"eventType","value":"greeting.written"},'
                '{"key":"files","value":"greeting.txt"}]\' > "$HANDLER_BASE_DIR/out/events/w.json"',
            ],
        )
        first = JobRequest(job_id="writer-1-a1", attempt=1, event=root, spec=writer)
        await executor.submit(first)
        written = await executor.wait(first.job_id)
        assert written.state == JobState.SUCCEEDED, written.reason
        [message] = await backends.published("greeting.written")
        child = Event.from_json(message.body)

        # The module under test: image only, no command, so it runs with `docker run`.
        shouter = ModuleSpec(
            name="shouter",
            subscribes_to="greeting.written",
            publishes=["greeting.shouted"],
            image=image,
            env={"MOOD": "loud"},
            max_execution_seconds=120,
        )
        job = JobRequest(
            job_id=f"shouter-{uuid.uuid4().hex[:8]}-a1", attempt=1, event=child, spec=shouter
        )
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        log = await executor.logs(job.job_id)
        assert result.state == JobState.SUCCEEDED, (result.reason, log.decode()[-2000:])
        assert result.exit_code == 0

        prefix = f"{child.correlation_id}/{child.event_id}/shouter"
        assert sorted(result.outputs) == [f"{prefix}/shout.txt", f"{prefix}/uid.txt"]
        shout = b"".join([c async for c in backends.blobs.get_stream(f"{prefix}/shout.txt")])
        assert shout == b"HELLO FROM THE PARENT\n"
        uid = b"".join([c async for c in backends.blobs.get_stream(f"{prefix}/uid.txt")])
        # As root the dispatcher keeps the image's user; as a user it runs the module as itself.
        expected_uid = (user.split(":")[0] or "0") if os.geteuid() == 0 else str(os.geteuid())
        assert uid.decode().strip() == expected_uid

        [shouted] = await backends.published("greeting.shouted")
        assert shouted.message_id in result.child_event_ids
        event = Event.from_json(shouted.body)
        assert event.type == "greeting.shouted"
        assert event.context.parent_event_id == child.event_id
        child_meta = await backends.meta.get_event_meta(event.correlation_id, event.event_id)
        assert {p.key: p.value for p in child_meta.data}.get("mood") == "loud"
        assert child_meta.files == ["shout.txt"]
        docs = await backends.meta.list_documents(child.correlation_id)
        insights = [d for d in docs if isinstance(d, Insight)]
        assert "4" in [{p.key: p.value for p in d.data}.get("words") for d in insights]
        await executor.delete(job.job_id)
        await executor.delete(first.job_id)
        await executor.aclose()


# -- the example modules' images against a prepared /ion ---------------------------------------


def _job_dir(tmp: Path, name: str, eventmeta: dict[str, str] | None = None) -> Path:
    """A base dir as Ion's handler lays it out, writable by the images' user (as an emptyDir)."""
    base = tmp / name
    for sub in ("in/data", "out/data", "out/events"):
        (base / sub).mkdir(parents=True)
    if eventmeta:
        pairs = [{"key": k, "value": v} for k, v in eventmeta.items()]
        (base / "in" / "eventmeta.json").write_text(json.dumps(pairs))
    for path in [base, *base.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, 10001, 10001)
        else:
            path.chmod(0o777 if path.is_dir() else 0o666)
    return base


def _events(base: Path) -> list[dict[str, str]]:
    found = []
    for path in sorted((base / "out" / "events").glob("*.json")):
        found.append({p["key"]: p["value"] for p in json.loads(path.read_text())})
    return found


def test_example_module_images_run_their_scripts_against_a_prepared_ion_dir(
    docker_engine: DockerEngine, ion_images: IonImages, tmp_path: Path
) -> None:
    # ingest, with HANDLER_BASE_DIR unset (base dir /ion, as in a 2018 job pod)
    ingest = _job_dir(tmp_path, "ingest", {"count": "6", "seed": "7"})
    ran = docker_engine.run(
        "run", "--rm", "--network", "none", "-v", f"{ingest}:/ion", ion_images.tag("example-ingest")
    )  # fmt: skip
    [event] = _events(ingest)
    assert event["eventType"] == "media.ingested", ran.stdout + ran.stderr
    manifest = json.loads((ingest / "out" / "data" / "manifest.json").read_text())
    pngs = sorted((ingest / "out" / "data").rglob("*.png"))
    assert len(pngs) >= 6 and manifest

    # the classifier on ingest's files: scikit-learn trained at start-up inside the image
    classify = _job_dir(tmp_path, "classify")
    subprocess.run(
        ["cp", "-a", f"{ingest}/out/data/.", f"{classify}/in/data/"], check=True
    )  # keeps the image user's ownership
    ran = docker_engine.run(
        "run", "--rm", "--network", "none", "-v", f"{classify}:/ion",
        ion_images.tag("example-digit-classifier"),
    )  # fmt: skip
    [event] = _events(classify)
    assert event["eventType"] == "digits.classified", ran.stdout + ran.stderr
    insights = {
        p["key"]: p["value"] for p in json.loads((classify / "out" / "insights.json").read_text())
    }
    assert float(insights["heldout_accuracy"]) > 0.9
