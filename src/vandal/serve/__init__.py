"""``vandal serve``: an HTTP inspection service and page over the same :class:`~vandal.detector.Detector`.

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart): ``pip install 'vandal[serve]'``.
Importing this package is cheap; :func:`create_app` imports the web stack and says which extra
is missing when it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServeSettings, default_models_dir

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeSettings", "create_app", "default_models_dir", "require_extra"]

EXTRA_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart", "sqlalchemy": "sqlalchemy",
                 "alembic": "alembic", "argon2": "argon2-cffi"}


def require_extra() -> None:
    """Fail with one message naming the ``serve`` extra when its packages are missing."""
    import importlib.util

    missing = [package for module, package in EXTRA_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"vandal serve needs {', '.join(missing)}: install the serve extra, "
                          "pip install 'vandal[serve]'")


def create_app(settings: ServeSettings | None = None, **options: Any) -> FastAPI:
    """The ASGI app (``settings`` or its fields as keyword options, e.g. ``models=DIR``)."""
    require_extra()
    from .app import build_app

    return build_app(settings if settings is not None else ServeSettings(**options))
