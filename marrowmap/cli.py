"""The ``marrowmap`` command. Each subcommand loads the settings once and hands them down.

Subcommands import their deployable lazily, so the listener image never needs the
analysis stack and the worker image never needs the listener.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from marrowmap import __version__
from marrowmap.logs import configure_logging
from marrowmap.settings import Settings, SettingsError, load_settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@click.group()
@click.version_option(__version__, prog_name="marrowmap")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="Override MARROWMAP_LOG_FORMAT.")
@click.pass_context
def main(ctx: click.Context, log_format: str | None) -> None:
    """MarrowMap: hip MRI bone-marrow oedema map, integrated with the PACS."""
    overrides = {"log_format": log_format} if log_format else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective settings (after config file and environment)."""
    click.echo(_settings(ctx).model_dump_json(indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()

# Subcommands are registered below by their modules' owners; keep one block per command.
_ = Path


# --- listen ---------------------------------------------------------------------------------
@main.command("listen")
@click.pass_context
def listen(ctx: click.Context) -> None:
    """Run the DICOM listener (C-STORE/C-ECHO SCP) and its sealer until Ctrl-C / SIGTERM."""
    from service.listener import run_listener

    run_listener(_settings(ctx))
