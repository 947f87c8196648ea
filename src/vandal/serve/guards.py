"""Browser-facing guards (ASGI middleware), on every request before anything else runs:

- ``Host`` must be one of the allowed names: a page on another site that rebinds its DNS name to
  this machine (DNS rebinding) sends its own name and is refused (421).
- State-changing requests (POST, PUT, PATCH, DELETE) from a browser must come from this server's
  own origin: a cross-site form or script (``Origin`` another site's, or ``null``, or
  ``Sec-Fetch-Site: cross-site``) is refused (403). Clients that send neither header (curl, httpx,
  line software) are not browsers and pass.
- Every answer carries a Content-Security-Policy with ``frame-ancestors 'none'`` (no framing of a
  page with a Delete button), ``nosniff`` and a no-referrer policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .limits import send_json

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def host_name(host: str) -> str:
    """``Host`` header -> its name without the port (``[::1]:8000`` -> ``[::1]``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_origin(headers: dict[bytes, bytes], host: str) -> str | None:
    """Why a state-changing request is cross-origin (None: same origin, or not from a browser)."""
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if origin:
        if origin == "null":
            return "Origin is null (a sandboxed frame or a file)"
        parts = urlsplit(origin)
        if parts.netloc.lower() != host.lower():
            return f"Origin {origin[:100]!r} is not this server's"
        return None
    site = headers.get(b"sec-fetch-site", b"").decode("latin-1").strip().lower()
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site is {site}"
    return None


class GuardMiddleware:
    """Allowed hosts, same-origin state changes, and security headers (see the module)."""

    def __init__(self, app: Any, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = {host_name(h) for h in allowed_hosts}
        self.any_host = "*" in self.allowed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")

        async def secured_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if not self.any_host and host_name(host) not in self.allowed:
            return await send_json(secured_send, 421, {
                "detail": f"Host {host[:100]!r} is not served here (DNS rebinding guard); a server reached by "
                          "another name needs it in --allowed-host"})
        if scope["method"] in STATE_CHANGING:
            reason = cross_origin(headers, host)
            if reason is not None:
                return await send_json(secured_send, 403, {
                    "detail": f"cross-origin request refused: {reason}; changes are accepted from this server's "
                              "own page or from clients outside a browser"})
        await self.app(scope, receive, secured_send)
