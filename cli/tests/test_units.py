"""Pieces of the CLI on their own: output rendering, dotenv files, config resolution, version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ion.cli import config
from ion.cli.commands._common import parse_dotenv
from ion.cli.errors import CliError
from ion.cli.main import cli
from ion.cli.output import as_data, render, render_one
from ion.proto import module_pb2

ROWS = [{"id": "a-1", "publishes": ["x", "y"], "n": 2}, {"id": "b-2", "publishes": [], "n": 0}]


def test_render_table_json_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    render(ROWS, "table", columns=("id", "publishes"))
    table = capsys.readouterr().out
    assert "ID" in table and "x, y" in table and "b-2" in table and "n" not in table.split()
    render(ROWS, "json", columns=("id",))
    assert json.loads(capsys.readouterr().out) == ROWS
    render(ROWS, "yaml", columns=("id",))
    assert yaml.safe_load(capsys.readouterr().out) == ROWS
    render_one({"a": 1, "b": [1, 1]}, "yaml")
    assert "&" not in capsys.readouterr().out


def test_as_data_keeps_numbers_numbers_and_defaults() -> None:
    data = as_data(module_pb2.ModuleGetResponse(name="x", succeeded=3))
    assert data["succeeded"] == 3 and data["failed"] == 0 and data["module"] is None


def test_dotenv(tmp_path: Path) -> None:
    path = tmp_path / "m.env"
    path.write_text('# c\nA=1\nexport B="two words"\nC=x # note\n\nD=a=b\n')
    assert parse_dotenv(path) == {"A": "1", "B": "two words", "C": "x", "D": "a=b"}
    path.write_text("not a pair\n")
    with pytest.raises(CliError, match=r"m\.env:1"):
        parse_dotenv(path)


def test_config_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text(
        "endpoint: h:1\ncertfile: c.pem\nkeyfile: /abs/k.pem\ntimeout: 5\ninsecure: 'no'\n"
    )
    conn = config.resolve({}, environ={}, config_file=path)
    assert conn.endpoint == "h:1" and conn.certfile == tmp_path / "c.pem"
    assert conn.keyfile == Path("/abs/k.pem") and conn.timeout == 5 and not conn.insecure
    assert conn.source("certfile").startswith("certfile in ")
    env_conn = config.resolve(
        {}, environ={"ION_TIMEOUT": "7", "ION_INSECURE": "true"}, config_file=path
    )
    assert (
        env_conn.timeout == 7 and env_conn.insecure and env_conn.source("timeout") == "ION_TIMEOUT"
    )
    with pytest.raises(CliError, match="not a number"):
        config.resolve({"timeout": "soon"}, environ={}, config_file=path)


def test_defaults_without_any_config(tmp_path: Path) -> None:
    conn = config.resolve({}, environ={"ION_HOME": str(tmp_path)})
    assert conn.endpoint == "localhost:9000" and conn.timeout == 30 and conn.certfile is None


def test_version_prints_versions() -> None:
    result = CliRunner().invoke(cli, ["version", "-o", "json"])
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["version"] and data["grpc"] and data["python"]


def test_certs_generate_runs_ion_management(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["certs", "generate", "--dir", str(tmp_path / "c"), "--host", "ion.example"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "client.pem").is_file() and (tmp_path / "c" / "ca.pem").is_file()
