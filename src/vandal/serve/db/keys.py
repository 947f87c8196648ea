"""API keys with roles: ``viewer`` reads, ``inspector`` also predicts and reviews, ``admin`` also
changes models and manages keys.

A key is ``vandal_<prefix>_<secret>``: the prefix finds its row, the whole key is checked against an
argon2id hash (never stored in clear, shown once when made). Verifying costs an argon2 hash, so a
verified key is remembered by its SHA-256 in memory; its row is still read on every request, so a
revocation takes effect at once, in every process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from .schema import api_keys
from .times import shown, utcnow

ROLES = ("viewer", "inspector", "admin")
KEY_NAME_RULE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
KEY_RULE = re.compile(r"vandal_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: a key's name and role (name None: an open station without keys)."""

    name: str | None
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hasher() -> Any:
    from argon2 import PasswordHasher

    # OWASP's argon2id minimum (19 MiB, 2 passes): keys are 256 random bits, the hash guards a stolen database.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def check_key_name(name: str) -> str:
    if not KEY_NAME_RULE.fullmatch(name):
        raise ValueError(f"key name {name[:80]!r} is not allowed: use 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def key_json(row: Any) -> dict[str, Any]:
    data = row._mapping
    return {"name": data["name"], "role": data["role"], "prefix": data["prefix"], "created": shown(data["created"]),
            "revoked": shown(data["revoked"])}


def active_row(conn: Connection, name: str) -> Any:
    return conn.execute(select(api_keys).where(api_keys.c.name == name, api_keys.c.revoked.is_(None))).first()


def add_key(conn: Connection, name: str, role: str) -> tuple[dict[str, Any], str]:
    """Make a key -> (its listing entry, the key itself: shown once, never stored)."""
    check_key_name(name)
    check_role(role)
    if active_row(conn, name) is not None:
        raise ValueError(f"a key named {name!r} exists; revoke it first (vandal keys revoke {name}) or choose "
                         "another name")
    prefix = secrets.token_hex(6)
    key = f"vandal_{prefix}_{secrets.token_urlsafe(32)}"
    conn.execute(insert(api_keys).values(name=name, role=role, prefix=prefix, hash=_hasher().hash(key),
                                         created=utcnow()))
    return key_json(active_row(conn, name)), key


def list_keys(conn: Connection, include_revoked: bool = True) -> list[dict[str, Any]]:
    statement = select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        statement = statement.where(api_keys.c.revoked.is_(None))
    return [key_json(row) for row in conn.execute(statement)]


def revoke_key(conn: Connection, name: str) -> bool:
    """Revoke the active key ``name`` -> whether there was one."""
    done = conn.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked.is_(None))
                        .values(revoked=utcnow()))
    return bool(done.rowcount)


def any_active(conn: Connection) -> bool:
    return conn.execute(select(api_keys.c.id).where(api_keys.c.revoked.is_(None)).limit(1)).first() is not None


class KeyVerifier:
    """``Authorization`` keys -> :class:`Identity`, with verified keys remembered (thread-safe)."""

    def __init__(self, max_remembered: int = 1024):
        self._verified: dict[tuple[int, str], bool] = {}
        self._lock = threading.Lock()
        # At most two argon2 hashes at once (19 MiB and a core each): guessing keys cannot take the machine.
        self._hashing = threading.BoundedSemaphore(2)
        self.max_remembered = max_remembered

    def identify(self, conn: Connection, key: str) -> Identity | None:
        """The active key's identity, or None for a malformed, unknown, wrong or revoked key."""
        match = KEY_RULE.fullmatch(key)
        if match is None:
            return None
        rows = conn.execute(select(api_keys).where(api_keys.c.prefix == match.group(1),
                                                   api_keys.c.revoked.is_(None))).all()
        digest = hashlib.sha256(key.encode()).hexdigest()
        for row in rows:
            with self._lock:
                known = self._verified.get((row.id, digest))
            if known is None:
                with self._hashing:
                    known = self._check(row.hash, key)
                with self._lock:
                    if len(self._verified) >= self.max_remembered:
                        self._verified.clear()
                    self._verified[(row.id, digest)] = known
            if known:
                return Identity(row.name, row.role)
        return None

    @staticmethod
    def _check(hashed: str, key: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(_hasher().verify(hashed, key))
        except (VerificationError, InvalidHashError):
            return False
