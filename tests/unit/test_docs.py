"""The README documents every setting and every CLI command."""

from __future__ import annotations

from pathlib import Path

from eventflow.cli import cli
from eventflow.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    commands = [line for line in README.splitlines() if line.startswith("make ")]
    assert (
        commands[:2]
        == [line for line in README.splitlines() if line.startswith(("make demo", "make test"))][:2]
    )
    assert commands[0].startswith("make demo") and commands[1].startswith("make test")


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"EVENTFLOW_{name.upper()}" in README, f"README misses EVENTFLOW_{name.upper()}"


def test_every_command_is_documented() -> None:
    for name in cli.commands:
        assert f"`eventflow {name}" in README, f"README misses `eventflow {name}`"
