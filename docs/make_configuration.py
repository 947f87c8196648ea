"""Regenerate the tables of docs/configuration.md from the config metadata and the preset files.

Run ``python docs/make_configuration.py`` after changing src/vandal/config.py, a preset or the
``[evaluate]`` defaults; ``--check`` exits 1 when the page is stale (tests/test_docs.py makes the
same comparison). Only the text between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->`` is rewritten; the prose around the markers is kept as written.
Imports nothing heavy (no torch): the config, the presets and the click options only.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vandal.cli.evaluate import EVAL_DEFAULTS, evaluate
from vandal.cli.options import field_option
from vandal.config import FIELDS, SECTIONS, ConfigError, DetectorConfig, FieldSpec, iter_settings
from vandal.presets import DEFAULT_PRESET, compose, load_preset, preset_names

PAGE = Path(__file__).with_name("configuration.md")
KINDS = {"int": "integer", "float": "number", "str": "text", "bool": "true / false", "ints": "integers, e.g. `1,3,5`"}
DEFAULT_NOTE = "The default preset: the same configuration as `Detector()` or a command given no `--preset`."
DIVERGED_NOTE = "Marked `(default)` by `vandal presets`, though it differs from `Detector()`'s defaults."
MARKER = re.compile(r"(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END generated: (?P=name) -->)",
                    re.DOTALL)


def show(value: Any) -> str:
    """A value as written after ``--set key=`` (lists comma-separated, booleans lower case)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def flags_of(spec: FieldSpec) -> str:
    """The command-line flag(s) exactly as the generated click option declares them."""
    opt = field_option(spec)
    return " / ".join(f"`{flag}`" for flag in [*opt.opts, *opt.secondary_opts])


def kind_of(spec: FieldSpec) -> str:
    text = "one of " + ", ".join(f"`{c}`" for c in spec.choices) if spec.choices else KINDS[spec.kind]
    return text + (", or unset" if spec.optional else "")


def section_table(section: str) -> list[str]:
    """One section: its purpose (the dataclass docstring) and a row per field."""
    purpose = inspect.getdoc(SECTIONS[section]).split("\n\n")[0]
    lines = [f"### `{section}`", "", cell(purpose), "",
             "| Key | Alias / flag | Type | Default | Stage | What it does |",
             "| --- | --- | --- | --- | --- | --- |"]
    for spec in FIELDS.values():
        if spec.section == section:
            lines.append(f"| `{spec.key}` | `{spec.alias}`<br>{flags_of(spec)} | {kind_of(spec)} | "
                         f"`{show(spec.default)}` | {spec.stage} | {cell(spec.help)} |")
    return lines


def fields_block() -> str:
    lines: list[str] = []
    for section in SECTIONS:
        lines += [*section_table(section), ""]
    return "\n".join(lines)


def preset_section(name: str) -> list[str]:
    """One preset: its description, what it sets (against the defaults), its evaluation defaults."""
    preset = load_preset(name)
    lines = [f"### `{name}`", "", cell(preset.description), ""]
    if name == DEFAULT_PRESET:
        lines += [DEFAULT_NOTE if _is_default(name) else DIVERGED_NOTE, ""]
    if preset.preset:
        lines += [f"Builds on `{preset.preset}`; the settings below replace its own.", ""]
    lines += ["| Key | Preset value | Default |", "| --- | --- | --- |"]
    for key, value in iter_settings(preset.detector):
        lines.append(f"| `{key}` | `{show(value)}` | `{show(FIELDS[key].default)}` |")
    if preset.evaluate:
        pairs = ", ".join(f"`{key} = {show(value)}`" for key, value in preset.evaluate.items())
        lines += ["", f"`vandal evaluate` defaults (`[evaluate]`): {pairs}."]
    return lines + [""]


def _is_default(name: str) -> bool:
    try:
        return compose(name).config == DetectorConfig()
    except ConfigError:  # a preset that needs more (a class name) is not the defaults
        return False


def presets_block() -> str:
    lines = ["| Preset | Summary |", "| --- | --- |"]
    for name in preset_names():
        lines.append(f"| [`{name}`](#{name}) | {cell(load_preset(name).description.split(':')[0])} |")
    lines.append("")
    for name in preset_names():
        lines += preset_section(name)
    return "\n".join(lines)


def evaluate_block() -> str:
    """The ``[evaluate]`` keys a preset or config file may set, with the flag each one defaults."""
    params = {param.name: param for param in evaluate.params}
    lines = ["| `[evaluate]` key | Flag | Default |", "| --- | --- | --- |"]
    for key, default in EVAL_DEFAULTS.items():
        opt = params[key]
        flags = " / ".join(f"`{flag}`" for flag in [*opt.opts, *getattr(opt, "secondary_opts", [])])
        lines.append(f"| `{key}` | {flags} | `{show(default)}` |")
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {"fields": fields_block, "presets": presets_block,
                                         "evaluate": evaluate_block}


def render(page: str) -> str:
    """The page with every generated block rewritten; fails naming a block whose markers are missing."""
    found = {match.group("name") for match in MARKER.finditer(page)}
    missing = sorted(set(BLOCKS) - found)
    if missing:
        raise ValueError(f"{PAGE.name}: no '<!-- BEGIN generated: {missing[0]} -->' ... "
                         f"'<!-- END generated: {missing[0]} -->' markers; add them where the block belongs")
    unknown = sorted(found - set(BLOCKS))
    if unknown:
        raise ValueError(f"{PAGE.name}: unknown generated block {unknown[0]!r}; known: {', '.join(BLOCKS)}")

    def replace(match: re.Match) -> str:
        return match.group(1) + BLOCKS[match.group("name")]() + match.group(4)

    return MARKER.sub(replace, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 if the page is stale; write nothing.")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    fresh = render(page)
    if args.check:
        if fresh != page:
            print(f"{PAGE} is stale: run python docs/make_configuration.py", file=sys.stderr)
            return 1
        return 0
    if fresh != page:
        PAGE.write_text(fresh, encoding="utf-8")
        print(f"rewrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
