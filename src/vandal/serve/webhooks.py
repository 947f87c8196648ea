"""Per-model webhooks: which URLs hear about a model's inspections, kept in one JSON file.

A webhook is ``{"id", "model", "url", "only_flagged", "secret", "created"}``. The secret signs each
delivery's body (``X-Vandal-Signature: sha256=<hex HMAC-SHA256>``) and is shown once, at creation.
The file ``DIR/.vandal-serve/webhooks.json`` lives beside the models, so every process serving that
folder delivers to the same hooks; it is rewritten atomically under a file lock and reread when it
changes. How deliveries went is per process (see :mod:`.webhook_delivery`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ServiceError

FILE_NAME = "webhooks.json"
MAX_HOOKS_PER_MODEL = 32
MAX_URL_LENGTH = 2048


def sign(secret: str, body: bytes) -> str:
    """The ``X-Vandal-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: Any) -> str:
    """An ``http(s)://host[:port]/path`` URL, or a 422 saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise ServiceError(422, "field 'url': give the receiver's URL as a string, e.g. http://host:8080/hook")
    if len(url) > MAX_URL_LENGTH:
        raise ServiceError(422, f"field 'url': longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise ServiceError(422, f"field 'url': {url[:100]!r} is not a URL ({error})") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(422, f"field 'url': {url[:100]!r} must be an http:// or https:// URL with a host")
    if any(c.isspace() for c in url):
        raise ServiceError(422, "field 'url': contains white space")
    return url


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (``flock`` on ``path``; a no-op where fcntl is missing:
    Windows, where one process per models folder is assumed)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class WebhookRegistry:
    """The webhooks of every model, stored in ``folder/webhooks.json`` (thread- and process-safe)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / FILE_NAME
        self._lock = threading.Lock()
        self._hooks: list[dict[str, Any]] = []
        self._stamp: tuple[int, int] | None = None

    def _read(self) -> list[dict[str, Any]]:
        """The hooks on disk (cached until the file changes)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._hooks, self._stamp = [], None
            return self._hooks
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp != self._stamp:
            try:
                hooks = json.loads(self.path.read_text())["webhooks"]
                if not isinstance(hooks, list):
                    raise TypeError("'webhooks' is not a list")
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ServiceError(500, f"{self.path.name} in the models folder's .vandal-serve is damaged "
                                        f"({error}); fix or delete it (its webhooks are then lost)") from error
            self._hooks, self._stamp = hooks, stamp
        return self._hooks

    def _write(self, hooks: list[dict[str, Any]]) -> None:
        staging = self.path.with_name(f".{FILE_NAME}.{uuid.uuid4().hex[:8]}")
        # The secrets sign deliveries: readable by the server's user alone (created so, never widened).
        with open(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(json.dumps({"webhooks": hooks}, indent=1))
        os.replace(staging, self.path)  # readers see the old file or the new one, never half of one

    @contextlib.contextmanager
    def _changing(self) -> Iterator[list[dict[str, Any]]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock, file_lock(self.folder / f".{FILE_NAME}.lock"):
            self._stamp = None  # another process may have written since our last read
            hooks = [dict(hook) for hook in self._read()]
            yield hooks
            self._write(hooks)

    def of(self, model: str) -> list[dict[str, Any]]:
        """The hooks of ``model`` (secrets included: for signing, never for answers), oldest first."""
        with self._lock:
            return [dict(hook) for hook in self._read() if hook.get("model") == model]

    def add(self, model: str, url: str, only_flagged: bool = False) -> dict[str, Any]:
        """A new hook on ``model`` -> its entry with the secret (the only time the secret is shown)."""
        url = check_url(url)
        if not isinstance(only_flagged, bool):
            raise ServiceError(422, "field 'only_flagged': true or false")
        hook = {"id": uuid.uuid4().hex[:12], "model": model, "url": url, "only_flagged": only_flagged,
                "secret": secrets.token_hex(32), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with self._changing() as hooks:
            if sum(h.get("model") == model for h in hooks) >= MAX_HOOKS_PER_MODEL:
                raise ServiceError(409, f"model {model!r} has {MAX_HOOKS_PER_MODEL} webhooks, the most it may have; "
                                        "delete one first")
            hooks.append(hook)
        return dict(hook)

    def remove(self, model: str, hook_id: str) -> None:
        with self._changing() as hooks:
            kept = [h for h in hooks if not (h.get("model") == model and h.get("id") == hook_id)]
            if len(kept) == len(hooks):
                raise ServiceError(404, f"model {model!r} has no webhook {hook_id[:40]!r}; "
                                        f"GET /models/{model}/webhooks lists them")
            hooks[:] = kept

    def remove_model(self, model: str) -> None:
        """Forget every hook of a deleted model."""
        if not self.path.exists():
            return
        with self._changing() as hooks:
            hooks[:] = [h for h in hooks if h.get("model") != model]


def public(hook: dict[str, Any]) -> dict[str, Any]:
    """A hook as answers show it: everything but the secret."""
    return {key: value for key, value in hook.items() if key != "secret"}
