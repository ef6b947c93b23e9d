"""Errors are one line with what to do next, exit 1; usage errors exit 2; precedence of settings."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ion.management.certs import Pem, issue, new_ca, write_pem


def _one_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ion: error: ")
    return str(lines[0])


def _certs(up: Any) -> dict[str, str]:
    return yaml.safe_load((up.home / "cli.yaml").read_text())


def test_unreachable_server_says_how_to_start_one(ion: Any, helpers: Any) -> None:
    line = _one_line(ion("module", "list", "--endpoint", f"localhost:{helpers.free_port()}"))
    assert "cannot reach the management server" in line and "ion up" in line


def test_no_certificates_configured_says_run_ion_up(tmp_path: Path, helpers: Any) -> None:
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path)})
    line = _one_line(ion("module", "list"))
    assert "no client certificate configured" in line and "ion up" in line


def test_partial_certificate_flags_name_the_missing_ones(tmp_path: Path, helpers: Any) -> None:
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path)})
    line = _one_line(ion("module", "list", "--certfile", "x.pem"))
    assert "--keyfile" in line and "--cacertfile" in line


def test_missing_certificate_file_is_named_with_its_source(ion: Any, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    line = _one_line(ion("module", "list", env={"ION_CERTFILE": str(missing)}))
    assert str(missing) in line and "ION_CERTFILE" in line


def test_expired_client_certificate_is_named(ion: Any, up: Any, tmp_path: Path) -> None:
    certs = up.home / "certs"
    ca = Pem(cert=(certs / "ca.pem").read_bytes(), key=(certs / "ca-key.pem").read_bytes())
    past = datetime.now(UTC) - timedelta(days=9)
    write_pem(
        issue(ca, "ion-cli", client=True, not_before=past, not_after=past + timedelta(days=1)),
        tmp_path / "old.pem",
        tmp_path / "old-key.pem",
    )
    line = _one_line(
        ion(
            "module",
            "list",
            "--certfile",
            str(tmp_path / "old.pem"),
            "--keyfile",
            str(tmp_path / "old-key.pem"),
        )
    )
    assert "old.pem" in line and "expired" in line


def test_key_of_another_certificate_is_named(ion: Any, up: Any) -> None:
    certs = up.home / "certs"
    line = _one_line(ion("module", "list", "--keyfile", str(certs / "server-key.pem")))
    assert "server-key.pem" in line and "client.pem" in line


def test_certificate_of_another_ca_is_refused_naming_the_file(ion: Any, tmp_path: Path) -> None:
    write_pem(
        issue(new_ca("Rogue"), "ion-cli", client=True),
        tmp_path / "rogue.pem",
        tmp_path / "rogue-key.pem",
    )
    line = _one_line(
        ion(
            "module",
            "list",
            "--certfile",
            str(tmp_path / "rogue.pem"),
            "--keyfile",
            str(tmp_path / "rogue-key.pem"),
        )
    )
    assert "refused the client certificate" in line and "rogue.pem" in line


def test_server_not_signed_by_the_given_ca_names_the_cacertfile(ion: Any, tmp_path: Path) -> None:
    other = new_ca("Other")
    (tmp_path / "other-ca.pem").write_bytes(other.cert)
    line = _one_line(ion("module", "list", "--cacertfile", str(tmp_path / "other-ca.pem")))
    assert "other-ca.pem" in line and "does not verify" in line


def test_insecure_client_against_mtls_server_is_told_to_use_tls(ion: Any) -> None:
    line = _one_line(ion("module", "list", "--insecure"))
    assert "requires mutual TLS" in line


def test_server_side_errors_are_one_line(ion: Any) -> None:
    line = _one_line(ion("module", "get", "-n", "no-such-module"))
    assert "no-such-module" in line
    line = _one_line(ion("module", "create", "-n", "Bad_Name", "-i", "x", "--command", "true"))
    assert "modulename" in line


def test_usage_errors_exit_2(ion: Any) -> None:
    result = ion("module", "create", "-i", "x")
    assert result.exit_code == 2 and "--name" in result.stderr
    result = ion("module", "create", "-n", "x", "-i", "x")
    assert result.exit_code == 2 and "--command" in result.stderr


def test_debug_shows_the_traceback(
    up: Any, helpers: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.cli.main import main

    monkeypatch.setenv("ION_HOME", str(up.home))
    args = ["module", "list", "--endpoint", f"localhost:{helpers.free_port()}"]
    assert main(args) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", *args]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "cannot reach the management server" in err


def test_flags_beat_environment_beat_config_file(
    ion: Any, up: Any, tmp_path: Path, helpers: Any
) -> None:
    ports = [helpers.free_port() for _ in range(3)]
    config = {**_certs(up), "endpoint": f"localhost:{ports[0]}"}
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"ION_CLI_CONFIG": str(path)}
    assert f":{ports[0]}" in _one_line(ion("module", "list", env=env))
    env["ION_ENDPOINT"] = f"localhost:{ports[1]}"
    assert f":{ports[1]}" in _one_line(ion("module", "list", env=env))
    assert f":{ports[2]}" in _one_line(
        ion("--endpoint", f"localhost:{ports[2]}", "module", "list", env=env)
    )
    assert f":{ports[2]}" in _one_line(
        ion("module", "list", "--endpoint", f"localhost:{ports[2]}", env=env)
    )
    config["endpoint"] = up.endpoint
    path.write_text(yaml.safe_dump(config))
    assert ion("module", "list", env={"ION_CLI_CONFIG": str(path)}).exit_code == 0


def test_unknown_config_setting_is_named(ion: Any, tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text("endpoint: x:1\nendpiont: typo\n")
    line = _one_line(ion("module", "list", "--config", str(path)))
    assert "endpiont" in line


def test_tls_server_name_is_the_name_the_server_certificate_is_checked_against(
    ion: Any, up: Any
) -> None:
    port = up.endpoint.rsplit(":", 1)[1]
    # the server's certificate names localhost and 127.0.0.1, not this name
    wrong = ion(
        "module", "list", "--endpoint", f"127.0.0.1:{port}", "--tls-server-name", "ion.example"
    )
    assert wrong.exit_code == 1, wrong.output
    print("WRONG", wrong.stderr)
    right = ion("module", "list", "-o", "json", env={"ION_TLS_SERVER_NAME": "localhost"})
    assert right.exit_code == 0, right.output


@pytest.mark.parametrize("verbosity", [None, "INFO"])
def test_a_tls_failure_prints_one_line_and_no_grpc_log(
    up: Any, helpers: Any, tmp_path: Path, verbosity: str | None
) -> None:
    """gRPC's C core logs `Handshake failed` to stderr itself; `ion` (a real process: the log
    bypasses Python) silences it unless the user set GRPC_VERBOSITY, so one line remains
    (and the gRPC line too only if the user asked for gRPC's logs)."""
    (tmp_path / "other-ca.pem").write_bytes(new_ca("Other").cert)
    env = helpers.clean_env(up.home)
    env.pop("GRPC_VERBOSITY")
    env.pop("GRPC_TRACE", None)
    if verbosity:
        env["GRPC_VERBOSITY"] = verbosity  # the user's own choice is kept
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ion"),
            "module",
            "list",
            "--cacertfile",
            str(tmp_path / "other-ca.pem"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("ion: error: ") and "does not verify" in lines[-1], done.stderr
    if verbosity:
        assert any("Handshake failed" in line for line in lines[:-1]), done.stderr
    else:
        assert len(lines) == 1, done.stderr


def test_home_is_private_to_its_user(up: Any, ion: Any, tmp_path: Path) -> None:
    """`ion up` closed the home the fixture made 0755; what the server wrote is 0600/0700."""
    (tmp_path / "in.txt").write_text("private")
    created = ion("event", "create", "--type", "private.check", "--file", str(tmp_path / "in.txt"))
    assert created.exit_code == 0, created.output
    assert stat.S_IMODE(up.home.stat().st_mode) == 0o700
    written = ["meta.db", "bus.db", "blobs", "certs", "front-api-token", "cli.yaml"]
    paths = [up.home / name for name in written]
    paths += [p for d in ("blobs", "jobs") for p in (up.home / d).rglob("*")]
    assert len(paths) > len(written)  # the event's blob at least
    opened = {
        str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths if p.lstat().st_mode & 0o077
    }
    assert opened == {}
