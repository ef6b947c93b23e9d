"""`ion completion bash|zsh|fish` prints a script that completes commands and flags (#10 §7)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ion.cli.main import cli


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _ion_completion ion"),
        ("zsh", "#compdef ion"),
        ("fish", "complete --no-files --command ion"),
    ],
)
def test_the_script_calls_ion_back_for_completions(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell], prog_name="ion")
    assert result.exit_code == 0, result.output
    assert marker in result.stdout and "_ION_COMPLETE" in result.stdout
    assert "ion completion" in result.stderr  # how to install it, on stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"], prog_name="ion")
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("words", "expected", "absent"),
    [
        ("ion mod", "module", ""),
        ("ion event create --", "--event-type", "--amqp-connection-string"),
    ],
)
def test_ion_completes_commands_and_visible_flags(words: str, expected: str, absent: str) -> None:
    env = {"_ION_COMPLETE": "bash_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split()) - 1)
    result = CliRunner().invoke(cli, [], prog_name="ion", env=env)
    offered = [line.split(",", 1)[1] for line in result.stdout.splitlines()]
    assert expected in offered, result.stdout
    assert not absent or absent not in offered
