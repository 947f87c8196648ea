"""``vandal keys``: the station's API keys (add, list, revoke), in the database ``vandal serve`` uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import echo, user_errors

ROLE_HELP = "viewer: read models, inspections, stats; inspector: also predict and review; admin: also change models."


def station_options(function: Any) -> Any:
    """--models and --database, as ``vandal serve`` takes them (the database defaults to the models folder's)."""
    function = click.option("--database", default=None, metavar="URL", envvar="VANDAL_DATABASE",
                            help="Station database: a SQLite file or URL, or postgresql://USER:PASSWORD@HOST/NAME "
                                 "($VANDAL_DATABASE keeps a password off the command line) [default: "
                                 "station.sqlite in the models folder's .vandal-serve/].")(function)
    return click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Folder of named model bundles [default: $VANDAL_MODELS or the per-user data "
                             "folder].")(function)


def open_database(models: Path | None, database: str | None) -> Any:
    from ..serve import ServeSettings, default_models_dir, require_extra

    require_extra()
    from ..serve.db import Database

    return Database(ServeSettings(models=models or default_models_dir(), database=database).database_url)


@click.group(help="Manage the station's API keys (sent as 'Authorization: Bearer KEY'). " + ROLE_HELP)
def keys() -> None:
    pass


@keys.command("add", help="Make a key; it is printed once, alone on the last line, and stored only hashed.")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "inspector", "admin"]), required=True, help=ROLE_HELP)
@station_options
@user_errors
def add(name: str, role: str, models: Path | None, database: str | None) -> None:
    from ..serve.db import audit
    from ..serve.db import keys as key_table

    db = open_database(models, database)
    with db.begin() as conn:
        entry, key = key_table.add_key(conn, name, role)
        audit.record(conn, None, "key.add", name, {"role": role, "via": "cli"})
    echo(f"key {name!r} ({role}) added to {db.shown}; it is shown once, store it now:")
    click.echo(key)


@keys.command("list", help="The keys: name, role, created, revoked (never the keys themselves).")
@station_options
@user_errors
def list_keys(models: Path | None, database: str | None) -> None:
    from ..serve.db import keys as key_table

    with open_database(models, database).connect() as conn:
        found = key_table.list_keys(conn)
    if not found:
        echo("no keys: `vandal serve` answers on loopback only, without keys (vandal keys add NAME --role admin)")
    for entry in found:
        state = f"revoked {entry['revoked']}" if entry["revoked"] else "active"
        click.echo(f"{entry['name']}\t{entry['role']}\tcreated {entry['created']}\t{state}")


@keys.command("revoke", help="Revoke a key: refused from the next request on, by every server on this database.")
@click.argument("name")
@station_options
@user_errors
def revoke(name: str, models: Path | None, database: str | None) -> None:
    from ..serve.db import audit
    from ..serve.db import keys as key_table

    with open_database(models, database).begin() as conn:
        if not key_table.revoke_key(conn, name):
            raise click.ClickException(f"no active key named {name!r} (vandal keys list shows them)")
        audit.record(conn, None, "key.revoke", name, {"via": "cli"})
    echo(f"key {name!r} revoked")
