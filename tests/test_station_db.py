"""The station database on a real SQLite file: migrations, records and reviews, versions, keys,
audit, stats, and the image store's retention."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")
pytest.importorskip("argon2")

from vandal.serve.blobs import ImageStore, media_type, sha256  # noqa: E402
from vandal.serve.db import Database, DatabaseError, audit, keys, records, stats, versions  # noqa: E402
from vandal.serve.db.times import parse_time  # noqa: E402


def inspection(model="m", score=0.2, label=False, file="a.png", version=1):
    return records.NewInspection(model=model, version=version, file=file, sha256=sha256(file.encode()), size=10,
                                 pred_score=score, pred_label=label, image_threshold=0.5, pixel_threshold=0.5,
                                 key_name="line1")


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "station.sqlite"))
    yield database
    database.dispose()


def test_migrations_create_the_schema_once_and_wal_is_on(tmp_path):
    path = tmp_path / "s.sqlite"
    first = Database(str(path))
    Database(f"sqlite:///{path}").dispose()  # a second open migrates nothing and keeps the data
    with first.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"  # the newest
        tables = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inspections", "reviews", "model_versions", "api_keys", "audit", "watched_files"} <= tables
    first.dispose()


def test_a_bad_url_names_the_option():
    with pytest.raises(DatabaseError, match="--database"):
        Database("nonsense://")


def test_records_page_newest_first_with_filters_and_cursor(db):
    with db.begin() as conn:
        made = records.add_inspections(conn, [inspection(score=i / 10, label=i >= 5, file=f"{i}.png")
                                              for i in range(10)])
        made += records.add_inspections(conn, [inspection(model="other")])
    assert [r["id"] for r in made] == list(range(1, 12))
    assert made[0]["file"] == "0.png" and made[0]["verdict"] is None and made[0]["key"] == "line1"
    with db.connect() as conn:
        page, cursor = records.list_inspections(conn, model="m", limit=4)
        assert [r["id"] for r in page] == [10, 9, 8, 7] and cursor == 7
        page, cursor = records.list_inspections(conn, model="m", limit=4, cursor=cursor)
        assert [r["id"] for r in page] == [6, 5, 4, 3] and cursor == 3
        page, cursor = records.list_inspections(conn, model="m", limit=4, cursor=cursor)
        assert [r["id"] for r in page] == [2, 1] and cursor is None
        flagged, _ = records.list_inspections(conn, model="m", label=True)
        assert {r["file"] for r in flagged} == {f"{i}.png" for i in range(5, 10)}
        future, _ = records.list_inspections(conn, since=datetime.utcnow() + timedelta(hours=1))
        assert future == []


def test_reviews_supersede_and_all_are_kept(db):
    with db.begin() as conn:
        (made,) = records.add_inspections(conn, [inspection(label=True)])
        assert records.add_review(conn, made["id"], "defect", "scratch", "alice")["verdict"] == "defect"
        records.add_review(conn, made["id"], "good", "dust, not a scratch", "bob")
        assert records.add_review(conn, 999, "good") is None
        with pytest.raises(ValueError, match="verdict"):
            records.add_review(conn, made["id"], "maybe")
    with db.connect() as conn:
        one = records.get_inspection(conn, made["id"])
        assert one["verdict"] == "good" and [r["verdict"] for r in one["reviews"]] == ["defect", "good"]
        assert [r["key"] for r in one["reviews"]] == ["alice", "bob"]
        assert records.list_inspections(conn, verdict="good")[0][0]["id"] == made["id"]
        assert records.list_inspections(conn, verdict="defect")[0] == []
        assert records.list_inspections(conn, verdict="none")[0] == []


def test_versions_are_numbered_per_model_and_found_by_stamp(db):
    with db.begin() as conn:
        assert versions.add_version(conn, "m", "create", references=3, stamp="a", key_name="alice")["version"] == 1
        assert versions.add_version(conn, "m", "references", references=5, stamp="b")["version"] == 2
        assert versions.add_version(conn, "n", "create", stamp="a")["version"] == 1
        rolled = versions.add_version(conn, "m", "rollback", stamp="c", source_version=1)
    assert rolled["version"] == 3 and rolled["source_version"] == 1
    with db.connect() as conn:
        assert [v["version"] for v in versions.list_versions(conn, "m")] == [3, 2, 1]
        assert versions.list_versions(conn, "m")[-1]["by"] == "alice"
        assert versions.version_of_stamp(conn, "m", "b") == 2 and versions.version_of_stamp(conn, "m", "z") is None
        assert versions.latest(conn, "m").version == 3


def test_keys_are_hashed_verified_and_revoked(db):
    with db.begin() as conn:
        assert not keys.any_active(conn)
        entry, key = keys.add_key(conn, "alice", "inspector")
        with pytest.raises(ValueError, match="exists"):
            keys.add_key(conn, "alice", "admin")
        with pytest.raises(ValueError, match="role"):
            keys.add_key(conn, "bob", "root")
    assert entry["role"] == "inspector" and key.startswith(f"vandal_{entry['prefix']}_")
    with db.connect() as conn:
        stored = conn.exec_driver_sql("SELECT hash FROM api_keys").scalar()
    assert key not in stored and stored.startswith("$argon2id$")
    verifier = keys.KeyVerifier()
    with db.connect() as conn:
        who = verifier.identify(conn, key)
        assert who == keys.Identity("alice", "inspector") and who.may("viewer") and not who.may("admin")
        assert verifier.identify(conn, key[:-2] + "xx") is None
        assert verifier.identify(conn, "Bearer nonsense") is None
    with db.begin() as conn:
        assert keys.revoke_key(conn, "alice") and not keys.revoke_key(conn, "alice")
    with db.connect() as conn:
        assert verifier.identify(conn, key) is None, "a remembered key is refused once revoked"
        assert keys.list_keys(conn)[0]["revoked"] is not None


def test_audit_pages_newest_first(db):
    with db.begin() as conn:
        for i in range(3):
            audit.record(conn, "alice", "model.create", f"m{i}", {"references": i})
    with db.connect() as conn:
        page, cursor = audit.list_audit(conn, limit=2)
        assert [e["target"] for e in page] == ["m2", "m1"] and page[0]["detail"] == {"references": 2}
        assert [e["target"] for e in audit.list_audit(conn, cursor=cursor)[0]] == ["m0"]


def test_stats_count_rates_and_quantiles(db):
    base = datetime(2026, 12, 1, 8, 30)
    with db.begin() as conn:
        early = records.add_inspections(conn, [inspection(score=0.9, label=True), inspection(score=0.1)], time=base)
        late = records.add_inspections(conn, [inspection(score=0.7, label=True), inspection(score=0.2)],
                                       time=base + timedelta(hours=2))
        records.add_review(conn, early[0]["id"], "good")  # a false alarm
        records.add_review(conn, early[1]["id"], "defect")  # a miss
        records.add_review(conn, late[0]["id"], "defect")
    with db.connect() as conn:
        rows = records.score_rows(conn, "m")
    hours = stats.bucketed(rows, "hour")
    assert [b["start"] for b in hours] == ["2026-12-01T08:00:00.000Z", "2026-12-01T10:00:00.000Z"]
    assert hours[0] | {"score_quantiles": None} == {
        "start": "2026-12-01T08:00:00.000Z", "scored": 2, "flagged": 1, "reviewed": 2, "false_alarms": 1,
        "misses": 1, "false_alarm_rate": 1.0, "miss_rate": 1.0, "score_quantiles": None}
    assert hours[1]["false_alarm_rate"] == 0.0 and hours[1]["miss_rate"] is None
    (day,) = stats.bucketed(rows, "day")
    assert day["scored"] == 4 and day["score_quantiles"]["p50"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="bucket"):
        stats.bucketed(rows, "week")
    spread = stats.histogram(rows)
    assert len(spread["edges"]) == 21 and spread["edges"][0] == 0 and spread["edges"][-1] == 1.0
    assert sum(spread["counts"]) == 4 and spread["counts"][18] == 1  # 0.9 in [0.9, 0.95)
    assert stats.histogram([]) == {"edges": [round(i / 20, 6) for i in range(21)], "counts": [0] * 20}


def test_times_parse_offsets_to_utc():
    assert parse_time("2026-12-03T10:00:00+01:00", "since") == datetime(2026, 12, 3, 9)
    assert parse_time("2026-12-03T09:00:00Z", "since") == datetime(2026, 12, 3, 9)
    with pytest.raises(ValueError, match="until"):
        parse_time("yesterday", "until")


def test_image_store_keeps_by_hash_and_prunes(tmp_path):
    store = ImageStore(tmp_path / "images", keep_days=1)
    data = b"\x89PNG fake"
    digest = store.put(data)
    assert digest == sha256(data) and store.get(digest) == data and media_type(data) == "image/png"
    assert store.put(data) == digest and len(list((tmp_path / "images").glob("??/*"))) == 1
    old = time.time() - 2 * 86400
    os.utime(store.path(digest), (old, old))
    assert store.get(digest) is None and store.prune() == 1
    assert ImageStore(tmp_path / "none", keep_days=0).put(data) is None
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_the_model_lock_excludes_other_holders(db, tmp_path):
    import threading

    from vandal.serve.locking import model_lock

    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(10)
        with model_lock(db, tmp_path / "locks", "m"):  # another open file: excluded as another process would be
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with model_lock(db, tmp_path / "locks", "m"):
        inside.set()
        thread.join(0.3)
        assert thread.is_alive(), "the second holder waits"
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
    with model_lock(db, tmp_path / "locks", "other"):
        pass  # other models are not held up


def test_the_migrations_build_exactly_the_schema(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vandal.serve.db.schema import metadata

    with db.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == [], "schema.py and the migrations differ: add a migration"


def test_concurrent_writers_get_distinct_versions_and_every_record(db):
    from concurrent.futures import ThreadPoolExecutor

    def write(worker: int) -> list[int]:
        numbers = []
        for i in range(5):
            with db.begin() as conn:
                numbers.append(versions.add_version(conn, "busy", "references")["version"])
                records.add_inspections(conn, [inspection(file=f"{worker}-{i}.png")])
        return numbers

    with ThreadPoolExecutor(6) as pool:
        numbers = [n for found in pool.map(write, range(6)) for n in found]
    assert sorted(numbers) == list(range(1, 31))
    with db.connect() as conn:
        assert records.count_inspections(conn) == 30
