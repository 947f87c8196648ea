"""A throwaway PostgreSQL server (Debian's ``postgresql``: initdb into a temporary folder, loopback
port, user ``vandal`` trusted), for the tests and ``benchmarks/bench_serve.py``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


def postgres_tools() -> tuple[str, str] | None:
    """(initdb, pg_ctl): on the PATH, else Debian's /usr/lib/postgresql/<major>/bin (newest first)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (folder / "initdb").exists():
                return str(folder / "initdb"), str(folder / "pg_ctl")
        return None
    return initdb, pg_ctl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def temporary_postgres(fast: bool = True) -> Iterator[str]:
    """Start a server -> its URL; stopped and erased on leaving. Run as the ``postgres`` user when we
    are root (PostgreSQL refuses root). ``fast``: no fsync (test data, not durable)."""
    tools = postgres_tools()
    if tools is None:
        raise Unavailable("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    initdb, pg_ctl = tools
    # Not under pytest's temporary folder: that one is private to us, and the server runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="vandal-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root without runuser")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1" + (" -c fsync=off" if fast else "")
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "vandal", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
                        options, "start"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"could not start ({error}; {detail.decode(errors='replace')[-500:]})") from error
    try:
        yield f"postgresql://vandal@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
