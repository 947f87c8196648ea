"""Command-line options generated from the configuration (:mod:`vandal.config`), never kept by hand.

:func:`config_options` adds ``--preset``, ``--config FILE``, ``--set key=value`` (repeatable) and one
flag per config field (``--neighbourhood``, ``--augment/--no-augment``, ...) to a command;
:func:`compose_options` turns what was given into a validated config. Every flag defaults to
"not given", so the layering is: defaults < preset < config file < ``--set`` < flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from ..config import FIELDS, FieldSpec

PREFIX = "config_"  # parameter names of generated options: config_<alias>
COMMON_FLAGS = {"preset": "--preset", "config_file": "--config", "assignments": "--set"}
COMMON = tuple(COMMON_FLAGS)
_TYPES = {"int": click.INT, "float": click.FLOAT, "str": click.STRING, "ints": click.STRING}
_METAVARS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "ints": "N,N,..."}


def _help(spec: FieldSpec) -> str:
    default = spec.default
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{spec.help} [{spec.key}; default: {'unset' if shown is None else shown}]"


def field_option(spec: FieldSpec) -> click.Option:
    """The click option of one config field (named ``config_<alias>``, default: not given)."""
    name = PREFIX + spec.alias
    if spec.kind == "bool":
        return click.Option([f"{spec.flag}/--no-{spec.flag[2:]}", name], default=None, help=_help(spec))
    kind = click.Choice(spec.choices) if spec.choices else _TYPES[spec.kind]
    return click.Option([spec.flag, name], type=kind, default=None, help=_help(spec),
                        metavar=None if spec.choices else _METAVARS[spec.kind])


def config_options(command: Callable) -> Callable:
    """Decorator: the preset / config file / ``--set`` options and one flag per config field."""
    for spec in reversed(list(FIELDS.values())):
        command = _append(command, field_option(spec))
    command = click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                           help="Set any config field, e.g. --set memory.neighbourhood=1,3,5 (repeatable).")(command)
    command = click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                           help="A TOML config file (sections as in `vandal presets --show NAME`).")(command)
    command = click.option("--preset", default=None, metavar="NAME",
                           help="Start from a named preset (list them with `vandal presets`).")(command)
    return command


def _append(command: Callable, opt: click.Option) -> Callable:
    # click.option() builds an Option from declarations; appending a ready Option keeps its exact name.
    params = getattr(command, "__click_params__", None)
    if params is None:
        params = command.__click_params__ = []  # type: ignore[attr-defined]
    params.append(opt)
    return command


def pop_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the generated options from a command's kwargs -> the given fields ``{alias: value}``
    plus ``preset``, ``config_file`` and ``assignments``."""
    given = {key[len(PREFIX):]: kwargs.pop(key) for key in list(kwargs) if key.startswith(PREFIX)}
    for key in COMMON:
        given[key] = kwargs.pop(key, None)
    return given


def given_flags(options: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields given on the command line, ``{alias: value}``."""
    return {k: v for k, v in options.items() if k not in COMMON and v is not None}


def compose_options(options: Mapping[str, Any], base: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None):
    """Given options -> :class:`vandal.presets.Composed` (``base``: defaults a command adds below
    everything, ``extra``: settings it adds on top)."""
    from ..presets import compose

    return compose(options.get("preset"), options.get("config_file"), options.get("assignments") or (),
                   given_flags(options), extra=extra, base=base)


def fit_stage_given(options: Mapping[str, Any]) -> list[str]:
    """Flags of fit-stage fields that were given (a saved detector fixes those)."""
    out = [spec.flag for spec in FIELDS.values() if spec.stage == "fit" and options.get(spec.alias) is not None]
    out += [flag for name, flag in COMMON_FLAGS.items() if options.get(name)]
    return out
