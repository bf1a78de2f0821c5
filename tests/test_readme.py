"""The README's reference parts stay true: every setting and every subcommand is documented."""

from __future__ import annotations

from pathlib import Path

from marrowmap.cli import main
from marrowmap.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in Settings.model_fields if f"`MARROWMAP_{name.upper()}`" not in reference]
    assert missing == []


def test_every_subcommand_is_in_the_command_table() -> None:
    commands = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in main.commands if f"`marrowmap {name}" not in commands]
    assert missing == []
