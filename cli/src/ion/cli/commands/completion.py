"""`ion completion bash|zsh|fish`: the shell script that completes `ion`'s commands and flags.

Click's own shell completion: the script calls `ion` back with `_ION_COMPLETE` set, so it
completes whatever this `ion` has, hidden 2018 flags left out.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
HOW = {
    "bash": 'eval "$(ion completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(ion completion zsh)"    # in ~/.zshrc',
    "fish": "ion completion fish > ~/.config/fish/completions/ion.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script of SHELL (bash, zsh or fish) for `ion`."""
    kind = get_completion_class(shell)
    if kind is None:  # click knows every one of SHELLS
        raise click.UsageError(f"no completion for {shell}")
    root = ctx.find_root().command
    click.echo(kind(root, {}, "ion", "_ION_COMPLETE").source())
    click.echo(f"ion: note: install it with: {HOW[shell]}", err=True)
