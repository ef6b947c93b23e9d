"""2018's flags are accepted wherever 2018 accepted them (#10 §8).

`--amqp-connection-string` was persistent on `ion event`, and the connection flags on the root
command, so cobra took them before or after any sub-command; here they are hidden options of
every `event` command and group (ignored, with one note) and of every group.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

AMQP = ["--amqp-connection-string", "amqps://key:secret@ns.servicebus.windows.net"]
NOTE = "ion: note: --amqp-connection-string is ignored"


@pytest.mark.parametrize(
    "args",
    [
        ["event", "create", *AMQP, "--event-type", "old.flags", "--data", "k=v", "-o", "json"],
        ["event", *AMQP, "create", "--event-type", "old.flags", "-o", "json", *AMQP],
    ],
)
def test_event_create_takes_the_amqp_flag_before_or_after_the_command(
    ion: Any, args: list[str]
) -> None:
    result = ion(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["type"] == "old.flags"
    assert result.stderr.count(NOTE) == 1, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["event", "peek", "--sub-name", "old.flags_nobody", "--event-type", "old.flags", *AMQP],
        ["event", "get", "--sub-name", "old.flags_nobody", "--event-type", "old.flags", *AMQP],
        ["event", "dlq", *AMQP, "list", *AMQP],
        ["event", "dlq", "replay", "--module", "nobody", "--message-id", "m", *AMQP],
    ],
)
def test_every_event_command_takes_the_amqp_flag(ion: Any, args: list[str]) -> None:
    result = ion(*args)
    assert "No such option" not in result.output and result.exit_code in (0, 1), result.output
    assert result.stderr.count(NOTE) == 1, result.stderr


@pytest.mark.parametrize("group", [["module"], ["event"], ["event", "dlq"], ["trace"]])
def test_groups_take_the_connection_flags(ion: Any, up: Any, group: list[str]) -> None:
    verb = {"module": ["list"], "event": ["dlq", "list"], "dlq": ["list"], "trace": ["--help"]}
    args = [*group, "--endpoint", up.endpoint, "--timeout", "10", *verb[group[-1]]]
    result = ion(*args)
    assert result.exit_code == 0, result.output


def test_the_2018_flags_stay_out_of_help(ion: Any) -> None:
    for args in (["event", "create", "--help"], ["event", "--help"], ["module", "--help"]):
        shown = ion(*args).stdout
        assert "--amqp-connection-string" not in shown and "--endpoint" not in shown, shown
