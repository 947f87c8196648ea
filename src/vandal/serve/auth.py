"""Who may do what: ``Authorization: Bearer KEY`` -> an :class:`Identity`, checked against the role
a route needs (viewer < inspector < admin). 401 without a key or with a bad one, 403 for a role
that may not.

Modes (``--no-auth`` and the listening address pick one): ``auto`` asks for keys once one exists
(an open station on loopback until then), ``required`` always asks, ``off`` never does.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .db import Database
from .db.keys import ROLES, Identity, KeyVerifier, any_active
from .errors import ServiceError

OPEN = Identity(None, "admin")  # an open station: everyone may do everything
bearer = HTTPBearer(auto_error=False, description="An API key: `vandal keys add NAME --role viewer|inspector|admin`.")
UNAUTHORISED_HEADERS = {"WWW-Authenticate": 'Bearer realm="vandal"'}


class Auth:
    """Resolves requests' keys against the database (mode: auto, required or off)."""

    def __init__(self, db: Database, mode: str):
        self.db = db
        self.mode = mode
        self.verifier = KeyVerifier()

    def keys_required(self) -> bool:
        if self.mode == "off":
            return False
        if self.mode == "required":
            return True
        with self.db.connect() as conn:
            return any_active(conn)

    def identify(self, key: str | None) -> Identity:
        """The identity a request acts as (OPEN when no key is needed); 401 when a needed key is missing or bad."""
        if self.mode == "off":
            return OPEN
        if key is None:
            if self.keys_required():
                raise ServiceError(401, "this station needs an API key: send the header 'Authorization: Bearer KEY' "
                                        "(an admin makes one with `vandal keys add NAME --role ROLE`)",
                                   UNAUTHORISED_HEADERS)
            return OPEN
        with self.db.connect() as conn:
            identity = self.verifier.identify(conn, key)
        if identity is None:
            raise ServiceError(401, "the API key is not valid (unknown, mistyped or revoked); ask an admin for one "
                                    "(`vandal keys list` shows the active ones)", UNAUTHORISED_HEADERS)
        return identity


def check_role(identity: Identity, role: str) -> Identity:
    if not identity.may(role):
        allowed = " or ".join(ROLES[ROLES.index(role):])
        raise ServiceError(403, f"key {identity.name!r} has the role {identity.role}; this needs {allowed}")
    return identity


def requires(role: str) -> Any:
    """A route dependency: the request's identity, which must hold ``role`` (or a higher one)."""

    def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
                   ) -> Identity:
        # A plain function: FastAPI runs it in a worker thread, so the database is never read on the event loop.
        auth: Auth = request.app.state.auth
        return check_role(auth.identify(credentials.credentials if credentials else None), role)

    return Depends(dependency)


VIEWER, INSPECTOR, ADMIN = requires("viewer"), requires("inspector"), requires("admin")
