"""`ion-management`: serve Ion's management API, front API and embedded dispatchers.

Commands: `serve` (mutual TLS with given certificates, or `--insecure`), `up` (create a local CA
and certificates under Ion's home on first run, then serve with them) and `certs generate`.
Settings: flags > `ION_*` environment > config file (`--config`, `ION_CONFIG`, or
`<ION_HOME>/config.yaml`). SIGTERM and Ctrl-C stop the process cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from ion.core import entrypoint, errors, logs, telemetry
from ion.core.config import IonSettings, load_settings
from ion.management import app
from ion.management.certs import DEFAULT_HOSTS, TlsFiles, ensure_local_pki
from ion.management.home import keep_private

TOKEN_ENV = "ION_MANAGEMENT__FRONT_API_TOKEN"
TOKEN_FILE = "front-api-token"


class _State:
    def __init__(self, config: Path | None, home: Path | None, debug: bool) -> None:
        self.config = config
        self.home = home
        self.debug = debug

    def settings(self, **management: Any) -> IonSettings:
        env: Mapping[str, str] = os.environ
        if self.home is not None:
            env = {**os.environ, "ION_HOME": str(self.home)}
        settings = load_settings(environ=env, config_file=self.config)
        return settings.with_overrides(management=management)


def _fail(state: _State, err: BaseException) -> None:
    if state.debug:
        traceback.print_exception(err)
    click.echo(f"ion-management: error: {err}", err=True)
    sys.exit(1)


def _serve(state: _State, settings: IonSettings, tls: TlsFiles | None, token: str | None) -> None:
    try:
        logs.configure(
            level=settings.telemetry.log_level,
            fmt=settings.telemetry.log_format,
            service="ion-management",
        )
        telemetry.configure_tracing(settings.telemetry.traces, service_name="ion-management")
    except errors.IonError as err:
        _fail(state, err)

    def ready(endpoints: app.Endpoints) -> None:
        mode = "mutual TLS" if endpoints.tls else "PLAINTEXT"
        click.echo(
            f"ion-management: management API on {endpoints.host}:{endpoints.grpc_port} ({mode}),"
            f" front API {endpoints.front_api_url}, web console {endpoints.front_api_url}/ui/,"
            f" home {settings.home}",
            err=True,
        )

    async def main(stop: asyncio.Event) -> None:
        await app.run(settings, stop=stop, tls=tls, front_api_token=token, on_ready=ready)

    try:
        entrypoint.run_until_signal(main)
    except errors.IonError as err:
        _fail(state, err)


def _token(home: Path, *, create: bool, token_file: Path | None = None) -> str | None:
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_file or home / TOKEN_FILE
    if path.is_file():
        return path.read_text().strip() or None
    if not create:
        return None
    home.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def _common_serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--host", default=None, help="Listen address [127.0.0.1]."),
            click.option("--port", type=int, default=None, help="gRPC port [9000]."),
            click.option(
                "--front-api-port", type=int, default=None, help="Front API HTTP port [9001]."
            ),
        ]
    ):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ION_CONFIG",
    help="Settings file [<ION_HOME>/config.yaml].",
)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Ion's home directory [$ION_HOME or ~/.ion].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, home: Path | None, debug: bool) -> None:
    """Ion's management server: gRPC API over mutual TLS, front API and dispatchers."""
    ctx.obj = _State(config, home.expanduser().resolve() if home else None, debug)


@cli.command()
@_common_serve_options
@click.option("--certfile", type=click.Path(path_type=Path), help="Server certificate (PEM).")
@click.option("--keyfile", type=click.Path(path_type=Path), help="Server private key (PEM).")
@click.option(
    "--cacertfile", type=click.Path(path_type=Path), help="CA that signs client certificates."
)
@click.option("--insecure", is_flag=True, default=None, help="Serve plaintext gRPC (warns).")
@click.option(
    "--front-api-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"File holding the front API bearer token [${TOKEN_ENV}, else <ION_HOME>/{TOKEN_FILE}].",
)
@click.pass_obj
def serve(
    state: _State,
    host: str | None,
    port: int | None,
    front_api_port: int | None,
    certfile: Path | None,
    keyfile: Path | None,
    cacertfile: Path | None,
    insecure: bool | None,
    front_api_token_file: Path | None,
) -> None:
    """Serve with the given certificates (mutual TLS), or plaintext with --insecure."""
    try:
        settings = state.settings(
            host=host,
            port=port,
            front_api_port=front_api_port,
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
            cacertfile=str(cacertfile) if cacertfile else None,
            insecure=insecure,
        )
        cfg = settings.management
        tls: TlsFiles | None = None
        if not cfg.insecure:
            missing = [
                flag
                for flag, value in (
                    ("--certfile", cfg.certfile),
                    ("--keyfile", cfg.keyfile),
                    ("--cacertfile", cfg.cacertfile),
                )
                if not value
            ]
            if missing:
                raise errors.ConfigError(
                    f"mutual TLS needs {', '.join(missing)} (or ION_MANAGEMENT__CERTFILE,"
                    " __KEYFILE, __CACERTFILE); `ion-management up` creates local ones, and"
                    " --insecure serves plaintext"
                )
            tls = TlsFiles(
                certfile=Path(cfg.certfile).expanduser(),
                keyfile=Path(cfg.keyfile).expanduser(),
                cacertfile=Path(cfg.cacertfile).expanduser(),
            )
        token = _token(settings.home, create=False, token_file=front_api_token_file)
    except errors.IonError as err:
        _fail(state, err)
        return
    _serve(state, settings, tls, token)


@cli.command()
@_common_serve_options
@click.option(
    "--cert-host",
    "cert_hosts",
    multiple=True,
    help="Extra name or IP the server certificate is valid for (repeatable).",
)
@click.pass_obj
def up(
    state: _State,
    host: str | None,
    port: int | None,
    front_api_port: int | None,
    cert_hosts: tuple[str, ...],
) -> None:
    """Create the local CA and certificates if needed, then serve over mutual TLS."""
    try:
        settings = state.settings(host=host, port=port, front_api_port=front_api_port)
        keep_private(settings.home)
        hosts = tuple(dict.fromkeys((*DEFAULT_HOSTS, settings.management.host, *cert_hosts)))
        pki, written = ensure_local_pki(settings.home / "certs", hosts=hosts)
        if written:
            click.echo(f"ion-management: created certificates in {pki.directory}", err=True)
        token = _token(settings.home, create=True)
    except errors.IonError as err:
        _fail(state, err)
        return
    _serve(state, settings, pki.server, token)


@cli.group()
def certs() -> None:
    """Certificates for mutual TLS."""


@certs.command("generate")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write them [<ION_HOME>/certs].",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Name or IP the server certificate is valid for (repeatable) [localhost, 127.0.0.1, ::1].",
)
@click.option("--force", is_flag=True, help="Replace the CA and certificates even if valid.")
@click.pass_obj
def generate(state: _State, directory: Path | None, hosts: tuple[str, ...], force: bool) -> None:
    """Create a CA, a server certificate and a client certificate (kept if still valid)."""
    try:
        settings = state.settings()
        target = (directory or settings.home / "certs").expanduser().resolve()
        pki, written = ensure_local_pki(target, hosts=hosts or DEFAULT_HOSTS, force=force)
    except (errors.IonError, OSError) as err:
        _fail(state, err)
        return
    for path in written:
        click.echo(f"wrote {path}", err=True)
    if not written:
        click.echo(f"certificates in {pki.directory} are valid; nothing written", err=True)
    click.echo(
        json.dumps(
            {
                "ca": str(pki.ca_cert),
                "server": {
                    "certfile": str(pki.server.certfile),
                    "keyfile": str(pki.server.keyfile),
                },
                "client": {
                    "certfile": str(pki.client.certfile),
                    "keyfile": str(pki.client.keyfile),
                },
            }
        )
    )


@certs.command("secret")
@click.option(
    "--namespace",
    default="",
    help="Namespace of the Secrets [the pod's own in a cluster, else `default`].",
)
@click.option(
    "--name",
    "server_secret",
    default="ion-management-tls",
    show_default=True,
    help="Secret for the server: tls.crt, tls.key, ca.crt.",
)
@click.option(
    "--client-name",
    "client_secret",
    default="ion-client-tls",
    show_default=True,
    help="Secret for the CLI's client certificate: tls.crt, tls.key, ca.crt.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Name or IP the server certificate is valid for (repeatable) [localhost, 127.0.0.1, ::1].",
)
@click.option("--label", "label_pairs", multiple=True, help="KEY=VALUE label on both Secrets.")
@click.option("--kubeconfig", default="", help="Kubeconfig file [in-cluster credentials].")
@click.option("--force", is_flag=True, help="Replace Secrets that exist (new CA: re-issue CLIs).")
@click.pass_obj
def secret(
    state: _State,
    namespace: str,
    server_secret: str,
    client_secret: str,
    hosts: tuple[str, ...],
    label_pairs: tuple[str, ...],
    kubeconfig: str,
    force: bool,
) -> None:
    """Create the mTLS Secrets in Kubernetes, unless they exist (the Helm chart's hook).

    A new CA signs a server certificate for the --host names and a client certificate; the CA
    key is not kept. Existing Secrets are kept, so upgrades never rotate certificates.
    """
    from ion.dispatcher.executors.kubernetes import KubeApi, default_namespace
    from ion.management.cert_secrets import install_cert_secrets

    labels: dict[str, str] = {}
    for pair in label_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(state, errors.ValidationError(f"--label {pair!r} must be KEY=VALUE"))
            return
        labels[key] = value

    async def run() -> None:
        api = await KubeApi.connect(kubeconfig=kubeconfig)
        try:
            done = await install_cert_secrets(
                api,
                namespace=default_namespace(namespace),
                server_secret=server_secret,
                client_secret=client_secret,
                hosts=hosts or DEFAULT_HOSTS,
                labels=labels,
                force=force,
            )
        finally:
            await api.aclose()
        verb = "created" if done.created else "kept existing"
        click.echo(f"{verb} Secrets {done.server_secret} and {done.client_secret}", err=True)

    try:
        asyncio.run(run())
    except errors.IonError as err:
        _fail(state, err)


@cli.command()
@click.option(
    "--namespace",
    default="",
    help="Namespace to clean [the pod's own in a cluster, else `default`].",
)
@click.option("--secret", "secrets_", multiple=True, help="Also delete this Secret (repeatable).")
@click.option("--kubeconfig", default="", help="Kubeconfig file [in-cluster credentials].")
@click.pass_obj
def cleanup(state: _State, namespace: str, secrets_: tuple[str, ...], kubeconfig: str) -> None:
    """Delete what Ion made at run time in a Kubernetes namespace (the Helm chart's uninstall hook).

    Dispatcher Deployments, their ConfigMaps and per-module RBAC objects, and Ion's Jobs, found
    by their managed-by labels. Module records in the metadata store are kept: a management
    server started again on the same backends deploys the modules again.
    """
    from ion.dispatcher.executors.kubernetes import KubeApi, default_namespace
    from ion.management.deployers.kubernetes import cleanup as delete_ion_objects

    async def run() -> None:
        api = await KubeApi.connect(kubeconfig=kubeconfig)
        try:
            done = await delete_ion_objects(api, default_namespace(namespace), secrets=secrets_)
        finally:
            await api.aclose()
        for line in done:
            click.echo(f"deleted {line}", err=True)

    try:
        asyncio.run(run())
    except errors.IonError as err:
        _fail(state, err)


@cli.group()
def pipeline() -> None:
    """Run pipeline files on this machine."""


@pipeline.command("run")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "-d", multiple=True, help="Root event data as key=value (repeatable).")
@click.option(
    "--file",
    "-f",
    "file_items",
    multiple=True,
    metavar="NAME=PATH",
    help="A file for the root event, stored as NAME (PATH alone: its base name); repeatable.",
)
@click.option(
    "--timeout", default=300.0, show_default=True, help="Seconds to wait for the flow to settle."
)
@click.option(
    "-o", "--output", type=click.Choice(["tree", "json"]), default="tree", show_default=True
)
@click.option("--log-level", default="WARNING", show_default=True, help="Log below the tree.")
@click.pass_obj
def pipeline_run(
    state: _State,
    path: Path,
    data: tuple[str, ...],
    file_items: tuple[str, ...],
    timeout: float,
    output: str,
    log_level: str,
) -> None:
    """Start PATH's modules, raise its root event, wait until the flow settles, print the tree.

    It runs in a temporary home of its own (printed), never on the bus of `ion up`, unless
    --home or ION_HOME names one. It leaves no subscription behind; with a home given, its
    dead letters stay listable and replayable (`ION_HOME=DIR ion up`, then `ion event dlq
    list`). Ctrl-C cancels its jobs, prints the flow's correlation id and exits 130.

    Exits 0 only if the flow succeeded: every module run in it succeeded, and at least one
    module handled the root event.
    """
    import tempfile

    from rich.console import Console

    from ion.core import entrypoint
    from ion.core.events import Event
    from ion.core.flow import Flow
    from ion.core.flowtree import print_flow
    from ion.core.modules import PipelineSpec
    from ion.core.records import RunStatus
    from ion.management.control import RootFile
    from ion.management.pipeline import run_pipeline

    program = "ion-management pipeline run"
    console = Console(stderr=True)
    home = state.home
    temporary = home is None and not os.environ.get("ION_HOME")
    if temporary:
        home = Path(tempfile.mkdtemp(prefix="ion-pipeline-"))
    raised: list[Event] = []
    try:
        settings = entrypoint.start(
            "ion-management",
            home=home,
            log_level=log_level,
            environ=os.environ,
            config_file=state.config,
        )
        keep_private(settings.home)
        spec = PipelineSpec.load(path)
        extra = dict(_pair(d) for d in data)
        files = [_root_file(item, RootFile) for item in file_items]
        if temporary:
            console.print(
                f"home: {settings.home} (temporary; --home DIR keeps one)", soft_wrap=True
            )
        with console.status(f"running {spec.name} ...") as status:

            def progress(flow: Flow) -> None:
                runs = flow.runs()
                done = sum(1 for r in runs if r.status.settled)
                active = ", ".join(
                    r.module for r in runs if r.status in (RunStatus.RUNNING, RunStatus.RETRYING)
                )
                status.update(f"running {spec.name}: {done}/{len(runs)} module runs done  {active}")

            flow = asyncio.run(
                run_pipeline(
                    spec,
                    settings,
                    data=extra,
                    files=files,
                    timeout=timeout,
                    on_progress=progress,
                    on_raised=raised.append,
                )
            )
    except KeyboardInterrupt:
        if raised:
            cid = raised[0].correlation_id
            look = f"ION_HOME={settings.home} ion up &  then  ion trace flow -c {cid}"
            console.print(
                f"[bold red]interrupted[/]: flow {cid} cancelled (running jobs stopped, their"
                " folders removed)",
                soft_wrap=True,
            )
            console.print(f"look at it: {look}", soft_wrap=True)
        else:
            console.print("[bold red]interrupted[/] before the root event was raised")
        sys.exit(130)
    except Exception as err:
        if state.debug:
            traceback.print_exception(err)
        entrypoint.fail(program, err)
    if output == "json":
        # the same shape as `ion trace flow -o json`
        click.echo(json.dumps(flow.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_flow(flow)
        console.print(f"outputs: {settings.blobs_url}/{flow.correlation_id}/", soft_wrap=True)
        console.print(f"logs:    {settings.blobs_url}/logs/{flow.correlation_id}/", soft_wrap=True)
    if not flow.succeeded:
        unhandled = [r.event_type for r in flow.roots if not r.handled]
        if unhandled:
            console.print(
                f"[bold red]the flow did not succeed[/]: no module subscribes to"
                f" {', '.join(unhandled)}, so nothing ran"
            )
        else:
            console.print("[bold red]the flow did not succeed[/]; see the reasons and logs above")
            console.print(
                f"dead letters: ION_HOME={settings.home} ion up &  then  ion event dlq list",
                soft_wrap=True,
            )
        sys.exit(1)


def _root_file(item: str, kind: Any) -> Any:
    """`NAME=PATH` (or `PATH`) as a root file streamed from PATH."""
    name, sep, where = item.partition("=")
    if not sep:
        name, where = "", item
    source = Path(where).expanduser()
    if not where or not source.is_file():
        raise errors.ValidationError(
            f"--file {item!r}: {where or '(no path)'} is not a file; give NAME=PATH", field="file"
        )
    return kind.from_path(source, name=name.strip() or source.name)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise errors.ValidationError(f"--data {text!r} must look like key=value", field="data")
    return key, value


def main(argv: list[str] | None = None) -> int:
    """Run `ion-management`."""
    cli.main(args=argv, prog_name="ion-management")
    return 0


if __name__ == "__main__":
    main()
