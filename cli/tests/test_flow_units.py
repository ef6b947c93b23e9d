"""`ion flow list --since/--until` values, read without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from ion.cli.commands.flow import parse_since

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        (" 1h ", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_a_duration_is_that_long_ago(text: str, back: timedelta) -> None:
    assert parse_since(text, now=NOW) == NOW - back


def test_a_timestamp_is_itself_and_utc_without_a_zone() -> None:
    assert parse_since("2026-01-30T08:00:00Z") == datetime(2026, 1, 30, 8, tzinfo=UTC)
    assert parse_since("2026-01-30T08:00:00") == datetime(2026, 1, 30, 8, tzinfo=UTC)
    later = parse_since("2026-01-30T08:00:00+02:00")
    assert later.astimezone(UTC) == datetime(2026, 1, 30, 6, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h", ""])
def test_anything_else_is_a_usage_error_naming_the_flag(text: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        parse_since(text, flag="--until")
    assert "--until" in caught.value.format_message() or caught.value.param_hint == "--until"
