"""``vandal keys`` and the station options of ``vandal serve`` (click's runner, a real SQLite file)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vandal.cli.main import app

pytest.importorskip("sqlalchemy")
pytest.importorskip("argon2")


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_keys_add_prints_the_key_once_on_the_last_line_list_and_revoke(tmp_path):
    from vandal.serve.db import Database
    from vandal.serve.db.keys import KeyVerifier

    models = str(tmp_path / "models")
    added = run("keys", "add", "line-1", "--role", "inspector", "--models", models)
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("vandal_") and " " not in key
    assert added.stdout.strip() == key, "stdout holds the key alone (the message goes to stderr)"
    db = Database(f"{models}/.vandal-serve/station.sqlite")
    with db.connect() as conn:
        assert KeyVerifier().identify(conn, key).role == "inspector"
    again = run("keys", "add", "line-1", "--role", "admin", "--models", models)
    assert again.exit_code != 0 and "exists" in again.output
    listed = run("keys", "list", "--models", models)
    assert "line-1\tinspector" in listed.output and key not in listed.output
    assert run("keys", "revoke", "line-1", "--models", models).exit_code == 0
    assert "revoked" in run("keys", "list", "--models", models).output
    missing = run("keys", "revoke", "line-1", "--models", models)
    assert missing.exit_code != 0 and "no active key" in missing.output
    with db.connect() as conn:
        assert KeyVerifier().identify(conn, key) is None


def test_keys_take_a_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    assert run("keys", "add", "a", "--role", "viewer", "--database", url).exit_code == 0
    assert "a\tviewer" in run("keys", "list", "--database", url).output
    from_env = CliRunner().invoke(app, ["keys", "list"], env={"VANDAL_DATABASE": url}, catch_exceptions=False)
    assert "a\tviewer" in from_env.output
    bad = run("keys", "list", "--database", "nonsense://x")
    assert bad.exit_code != 0 and "--database" in bad.output


def test_serve_refuses_to_listen_beyond_loopback_without_a_key(tmp_path):
    refused = run("serve", "--models", str(tmp_path), "--host", "0.0.0.0", "--port", "1")
    assert refused.exit_code != 0
    assert "no API key exists" in refused.output and "vandal keys add" in refused.output
    assert "--no-auth" in refused.output


def test_station_helpers(capsys):
    from vandal.cli.serve import auth_mode, is_loopback, served_names

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    names = served_names("10.1.2.3", ("line.example",))
    assert {"localhost", "127.0.0.1", "10.1.2.3", "line.example"} <= set(names)
    assert auth_mode("0.0.0.0", True, None, None) == "off"
    assert "warning: --no-auth" in capsys.readouterr().err
    assert auth_mode("127.0.0.1", False, None, None) == "auto"
