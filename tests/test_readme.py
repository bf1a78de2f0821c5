"""The README's reference parts stay true: every setting and every subcommand is documented."""

from __future__ import annotations

import re
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


def test_ci_runs_the_quickstart_install_and_test_command() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in quickstart and "/usr/bin/python3 -m venv .venv" in ci
    assert ".venv/bin/pip install -e '.[service,worker,web]'" in quickstart
    assert ".venv/bin/pip install -q -e '.[service,worker,web]'" in ci
    assert "bash .ci/run" in quickstart and "the test command .venv/bin/python -m pytest -q" in quickstart
    assert "\n.venv/bin/python -m pytest -q\n" in ci


def test_readme_calls_dcmtk_tools_by_full_path() -> None:
    for tool in ("storescu", "echoscu", "storescp", "findscu"):
        for match in re.finditer(rf"(\S*){tool} [+-]", README):  # a command line, with options
            assert match.group(1).endswith("/usr/bin/"), f"{tool} without /usr/bin/: {match.group(0)}"
