"""`ion module create --route 'EXPR => EXECUTOR[,cpu=,memory=,gpu=]'`: the flag's syntax."""

from __future__ import annotations

import click
import pytest

import ion.cli.main  # noqa: F401  # registers the commands (module imports main's State)
from ion.cli.commands.module import _route, _route_text


def test_route_flag_syntax() -> None:
    route = _route('data.mime startswith "video/" or files.size >= 1GiB => azurebatch,gpu=1')
    assert (route.when, route.executor, route.gpu) == (
        'data.mime startswith "video/" or files.size >= 1GiB',
        "azurebatch",
        1,
    )
    default = _route("* => kubernetes, cpu=500m, memory=512Mi")
    assert (default.when, default.cpu, default.memory, default.HasField("gpu")) == (
        "",
        "500m",
        "512Mi",
        False,
    )
    assert _route_text({"when": "", "executor": "kubernetes", "cpu": "500m"}) == (
        "* => kubernetes,cpu=500m"
    )
    for bad in ("files.count > 1", "true =>", "true => local,disk=1", "true => local,gpu=two"):
        with pytest.raises(click.BadParameter):
            _route(bad)
