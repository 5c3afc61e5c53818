"""The `payhooks` command's table: every command defined is dispatched, under one name."""

from __future__ import annotations

from payhooks.cli import commands
from payhooks.cli.commands import Command
from payhooks.cli.main import COMMANDS


def test_every_command_defined_is_in_the_table_once() -> None:
    defined = [value for value in vars(commands).values() if isinstance(value, Command)]
    listed = list(COMMANDS.values())
    assert sorted(map(id, defined)) == sorted(map(id, listed))
