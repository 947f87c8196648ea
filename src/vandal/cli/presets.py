"""``vandal presets``: the named configurations shipped with vandal."""

from __future__ import annotations

from importlib import resources

import click

from .common import user_errors


@click.command(help="List the named presets (use one with --preset NAME), or print one with --show NAME.")
@click.option("--show", default=None, metavar="NAME", help="Print the preset's TOML.")
@user_errors
def presets(show: str | None) -> None:
    from .. import presets as catalogue

    if show is not None:
        catalogue.load_preset(show)  # unknown names fail with the list
        click.echo(resources.files(catalogue.__name__).joinpath(f"{show}.toml").read_text(encoding="utf-8"))
        return
    for name in catalogue.preset_names():
        description = catalogue.load_preset(name).description
        default = " (default)" if name == catalogue.DEFAULT_PRESET else ""
        click.echo(f"{name}{default}\n    {description}")
