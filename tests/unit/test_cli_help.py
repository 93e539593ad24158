"""Every command's --help names each of its options in full, in an 80-column terminal or a pipe: a flag cut
to `--max-detection-…` cannot be typed."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dreem_trainer.cli import app


def commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(command line, command) for every command under `group`, its subgroups' included."""
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += commands(command, (*prefix, name))
        else:
            found.append((" ".join((*prefix, name)), command))
    return found


COMMANDS = commands(typer.main.get_command(app))


def test_every_command_is_checked() -> None:
    assert {name for name, _ in COMMANDS} == {"train", "track", "eval", "render", "config validate", "config show"}


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_names_every_option_in_full_at_80_columns(name: str, command: Any) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    flags = [flag for parameter in command.params for flag in [*parameter.opts, *parameter.secondary_opts]]
    for flag in (flag for flag in flags if flag.startswith("-")):
        assert any(flag in line.replace(",", " ").replace("/", " ").split() for line in lines), flag
