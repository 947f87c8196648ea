"""Fit options over HTTP: the ``preset`` and ``settings`` form fields -> a validated config.

Composed exactly as the CLI composes them (:func:`vandal.presets.compose`, settings on top of the
preset). One rule is the service's own: a client may not name files on the server. Settings that
take a local path as well as a name (``backbone``, ``segmenter``) accept names only, and
``adapters`` (always a file) cannot be set over HTTP: ship it in a preset or a model bundle.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..config import ConfigError, DetectorConfig, iter_settings
from .errors import ServiceError

NAMES_ONLY = ("backbone.name", "objects.segmenter")  # a registry name or a Hugging Face id, never a path
SERVER_FILES = ("text.adapters",)


def looks_like_path(value: str) -> bool:
    """Absolute, home-relative, climbing, backslashed or unprintable names, or anything that exists here."""
    if not value:
        return False
    if value.startswith(("/", "~", ".")) or "\\" in value or ".." in PurePosixPath(value).parts \
            or PureWindowsPath(value).is_absolute() or not value.isprintable():
        return True
    try:
        return Path(value).exists()
    except (OSError, ValueError):  # NUL bytes, names too long: not a name a registry knows either
        return True


def check_remote_settings(settings: dict[str, Any]) -> None:
    """Refuse settings that would make the server read a file a client names."""
    for key, value in iter_settings(settings):
        if key in SERVER_FILES and value is not None:
            raise ServiceError(422, f"field 'settings': {key} names a file on the server and cannot be set over "
                                    "HTTP; use a preset that sets it, or fit with `vandal fit` and copy the bundle")
        if key in NAMES_ONLY and isinstance(value, str) and looks_like_path(value):
            raise ServiceError(422, f"field 'settings': {key}={value!r} is a path; over HTTP give a registered name "
                                    "or a Hugging Face id")


def fit_config(preset: str | None, settings_text: str | None) -> DetectorConfig:
    """The form fields -> a config; a 422 names the field (and the setting) at fault."""
    from ..presets import compose

    settings: Any = {}
    if settings_text not in (None, ""):
        try:
            settings = json.loads(settings_text)
        except json.JSONDecodeError as error:
            raise ServiceError(422, f"field 'settings': not valid JSON ({error})") from error
        if not isinstance(settings, dict):
            raise ServiceError(422, "field 'settings': must be a JSON object of config fields, e.g. "
                                    '{"image_size": 256, "neighbourhood": [1, 3]}')
    try:
        compose(preset or None)
    except (ConfigError, ValueError, TypeError) as error:
        raise ServiceError(422, f"field 'preset': {error}") from error
    try:
        check_remote_settings(settings)
        return compose(preset or None, extra=settings).config
    except (ConfigError, ValueError, TypeError) as error:
        raise ServiceError(422, f"field 'settings': {error}") from error
