"""Where the CLI connects and with which certificates: flags > ION_* environment > config file.

The config file is YAML (`endpoint`, `certfile`, `keyfile`, `cacertfile`, `timeout`,
`insecure`), by default `<ION_HOME>/cli.yaml` (`ION_HOME` defaults to `~/.ion`); `ion up`
writes it so every later command connects over mutual TLS without flags. Relative paths in
the file are relative to the file's directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ion.cli.errors import CliError

DEFAULT_ENDPOINT = "localhost:9000"
DEFAULT_TIMEOUT = 30.0
KEYS = (
    "endpoint",
    "certfile",
    "keyfile",
    "cacertfile",
    "tls_server_name",
    "timeout",
    "insecure",
)
ENV = {key: f"ION_{key.upper()}" for key in KEYS}
"""Environment variable of each setting: ION_ENDPOINT, ION_CERTFILE ..."""


def ion_home(environ: Mapping[str, str] | None = None) -> Path:
    """Return Ion's home: `$ION_HOME`, else `~/.ion`."""
    env = os.environ if environ is None else environ
    return Path(env.get("ION_HOME", "~/.ion")).expanduser()


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the CLI config file: `$ION_CLI_CONFIG`, else `<ION_HOME>/cli.yaml`."""
    env = os.environ if environ is None else environ
    if env.get("ION_CLI_CONFIG"):
        return Path(env["ION_CLI_CONFIG"]).expanduser()
    return ion_home(env) / "cli.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """Resolved connection settings; `origin` says where each value came from."""

    endpoint: str = DEFAULT_ENDPOINT
    certfile: Path | None = None
    keyfile: Path | None = None
    cacertfile: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    insecure: bool = False
    tls_server_name: str = ""
    """Name the server's certificate must carry when it is not the endpoint's host (a
    port-forward, or a pod reached by IP)."""
    config_file: Path | None = None
    origin: Mapping[str, str] | None = None

    def source(self, key: str) -> str:
        """Return where a setting came from, for messages (`--certfile`, `ION_CERTFILE` ...)."""
        return (self.origin or {}).get(key, "default")


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise CliError(f"{name}={value!r} is not a boolean; use true or false")


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the settings in a CLI config file ({} if it does not exist)."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"config file {path} cannot be read: {err}") from err
    if not isinstance(loaded, dict):
        raise CliError(f"config file {path} must be a mapping like 'endpoint: localhost:9000'")
    unknown = sorted(set(loaded) - set(KEYS))
    if unknown:
        raise CliError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(KEYS)}"
        )
    return loaded


def resolve(
    flags: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Connection:
    """Merge flags over environment over the config file into a Connection."""
    env = os.environ if environ is None else environ
    path = config_file or default_config_path(env)
    explicit = config_file is not None or bool(env.get("ION_CLI_CONFIG"))
    if explicit and not path.is_file():
        raise CliError(f"config file {path} does not exist (--config / ION_CLI_CONFIG)")
    file_values = read_config_file(path)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key in KEYS:
        if flags.get(key) is not None:
            values[key], origin[key] = flags[key], f"--{key}"
        elif env.get(ENV[key]):
            values[key], origin[key] = env[ENV[key]], ENV[key]
        elif file_values.get(key) is not None:
            values[key], origin[key] = file_values[key], f"{key} in {path}"
    paths: dict[str, Path | None] = {}
    for key in ("certfile", "keyfile", "cacertfile"):
        raw = values.get(key)
        if raw in (None, ""):
            paths[key] = None
            continue
        candidate = Path(str(raw)).expanduser()
        if origin[key].endswith(str(path)) and not candidate.is_absolute():
            candidate = path.parent / candidate
        paths[key] = candidate
    try:
        timeout = float(values.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError) as err:
        raise CliError(
            f"timeout {values.get('timeout')!r} ({origin.get('timeout')}) is not a number of seconds"
        ) from err
    if timeout <= 0:
        raise CliError(f"timeout must be positive ({origin.get('timeout')})")
    return Connection(
        endpoint=str(values.get("endpoint") or DEFAULT_ENDPOINT),
        certfile=paths["certfile"],
        keyfile=paths["keyfile"],
        cacertfile=paths["cacertfile"],
        timeout=timeout,
        insecure=_bool(values.get("insecure", False), origin.get("insecure", "insecure")),
        tls_server_name=str(values.get("tls_server_name") or ""),
        config_file=path if path.is_file() else None,
        origin=origin,
    )


def write_config(path: Path, values: Mapping[str, Any]) -> None:
    """Write a CLI config file (0600), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Written by `ion up`: where `ion` connects and with which certificates.\n"
    text += yaml.safe_dump(dict(values), sort_keys=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
