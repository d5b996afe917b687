"""One read, two proofs: the rehearsal's restore test (every restored table compared with the backup's manifest)
also takes the copy's before fingerprint, in the same snapshot and, for tables the manifest hashes by "record",
in the same scan (pgsafe_backup_restore ``fingerprint_label``).

What must hold: the fingerprint is exactly the one pgsafe_fingerprint takes of the restored database on its own
(every table, every entry: counts, hashes, columns, kinds), whatever path each table's read took (one scan for
both, or one per proof: enum columns hashed by the manifest's text method, an inheritance parent, a partitioned
table, a table in no manifest); the schema fingerprint read with it is pgsafe_snapshot's; the restore test still
reports a table whose content differs from the manifest; and a write after the shared read is a difference the
run's comparison with that fingerprint reports.
"""
from __future__ import annotations

import copy

import pytest

from ansible.module_utils import pgsafe_backup_exec as ex
from ansible.module_utils import pgsafe_backup_restore as br
from ansible.module_utils import pgsafe_fingerprint as fpm
from ansible.module_utils.pgsafe_connection import connect
from ansible.module_utils.pgsafe_snapshot import live_snapshot, schema_fingerprint

SCHEMA_SQL = """
CREATE TYPE "Mood" AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE "odd-Table" (id int PRIMARY KEY, "theMood" "Mood", note text);
INSERT INTO "odd-Table" SELECT g, (ARRAY['sad','ok','happy']::"Mood"[])[g % 3 + 1], 'n' || g FROM generate_series(1, 200) g;
CREATE TABLE "camelCase-items" (id text PRIMARY KEY, price numeric(10, 2), seen timestamptz, tags jsonb, f float8);
INSERT INTO "camelCase-items" SELECT md5(g::text)::uuid::text, g / 3.0, '2026-01-01'::timestamptz + g * interval '1 h',
       jsonb_build_object('g', g), g / 7.0 FROM generate_series(1, 500) g;
CREATE TABLE parent (id int, label text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 50) g;
INSERT INTO child SELECT g, 'c' || g, g FROM generate_series(1, 30) g;
CREATE TABLE events (id int, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events SELECT g, '2026-01-01'::date + g, 'e' || g FROM generate_series(1, 300) g;
"""


def _backup(pg_server, tmp_path):
    db = pg_server.create_database()
    pg_server.execute(db, SCHEMA_SQL)
    taken = ex.take_backup(pg_server.module_params(db), str(tmp_path / "b"), ["database"], reason="shared read")
    return db, taken["path"]


def _alone(pg_server, db):
    params = pg_server.module_params(db)
    with fpm.read_only_connections(params) as (conn, more):
        return fpm.fingerprint(conn, connect=more, workers=2)


@pytest.mark.parametrize("split_bytes", [fpm.SPLIT_BYTES, 8192], ids=["whole tables", "tables in block ranges"])
def test_restore_comparison_takes_the_same_fingerprint_pgsafe_fingerprint_takes_alone(pg_server, tmp_path,
                                                                                      monkeypatch, split_bytes):
    # 8192: every table of more than a page is read in pieces by the two workers, whose sums add up
    monkeypatch.setattr(fpm, "SPLIT_BYTES", split_bytes)
    source, path = _backup(pg_server, tmp_path)
    copy_db = "t_copy_" + source[2:]
    try:
        result = br.restore_database(pg_server.module_params("postgres"), path, copy_db, fingerprint=True)
        assert result["problems"] == []
        manifest, _ = br.load_manifest(path)
        methods = {e["table"]: e["method"] for e in manifest["tables"].values()}
        # both paths are exercised: one scan for both proofs (record), one read per proof (text, the enum)
        assert methods["camelCase-items"] == "record" and methods["odd-Table"] == "text", methods
        shared, alone = result["fingerprint"], _alone(pg_server, copy_db)
        assert set(shared["tables"]) == {"public.odd-Table", "public.camelCase-items", "public.parent",
                                         "public.child", "public.events"}
        assert shared["tables"] == alone["tables"]
        assert shared["algorithm"] == alone["algorithm"] and shared["settings"] == alone["settings"]
        # the schema, read in that snapshot too, is the schema pgsafe_snapshot reads (the attested schema_fingerprint)
        assert result["schema_fingerprint"] == schema_fingerprint(live_snapshot(pg_server.module_params(copy_db)))
    finally:
        pg_server.drop_database(copy_db)
        pg_server.drop_database(source)


def test_shared_read_still_reports_a_restored_table_that_differs_from_the_manifest(pg_server, tmp_path, monkeypatch):
    monkeypatch.setattr(fpm, "SPLIT_BYTES", 8192)  # the changed table is read in pieces
    source, path = _backup(pg_server, tmp_path)
    copy_db = "t_copy_" + source[2:]
    try:
        params = pg_server.module_params("postgres")
        assert br.restore_database(params, path, copy_db)["problems"] == []
        manifest, _ = br.load_manifest(path)
        # the copy's content changed (one value, same row count): the record-method table read in the shared scan
        pg_server.execute(copy_db, 'UPDATE "camelCase-items" SET price = price + 0.01 WHERE price = 1')
        problems, fp = br._compare_restored(dict(params, login_db=copy_db), copy_db, manifest, fingerprint=True)
        assert [(p["table"], p["problem"]) for p in problems] == [("public.camelCase-items", "hash")]
        # and a manifest that says otherwise than the copy (a changed hash) is a problem as well
        tampered = copy.deepcopy(manifest)
        key = next(k for k, e in tampered["tables"].items() if e["table"] == "parent")
        tampered["tables"][key]["hash"] = "1" + tampered["tables"][key]["hash"]
        pg_server.execute(copy_db, 'UPDATE "camelCase-items" SET price = price - 0.01 WHERE price = 1.01')
        problems, _ = br._compare_restored(dict(params, login_db=copy_db), copy_db, tampered, fingerprint=True)
        assert [(p["table"], p["problem"]) for p in problems] == [(key, "hash")]
    finally:
        pg_server.drop_database(copy_db)
        pg_server.drop_database(source)


def test_a_write_after_the_shared_read_is_a_difference_against_the_stored_before_fingerprint(pg_server, tmp_path):
    source, path = _backup(pg_server, tmp_path)
    copy_db = "t_copy_" + source[2:]
    try:
        params = pg_server.module_params("postgres")
        result = br.restore_database_recorded(
            dict(params, path=path, target_database=copy_db, confirm_overwrite="", pg_bin_dir=None, jobs=2,
                 no_owner=False, record_restore_test_in=None, record_as_target_backup=False,
                 target_backup_locations=[], fingerprint_label="before", fingerprint_run_id="r-shared"))
        assert result["problems"] == [] and result["fingerprint_stored_id"]
        target = pg_server.module_params(copy_db)
        conn = connect(target)
        try:
            clean = fpm.compare(conn, run_id="r-shared")
            assert clean["ok"], clean
            pg_server.execute(copy_db, "DELETE FROM events WHERE id = 7")
            after = fpm.compare(conn, run_id="r-shared")
        finally:
            conn.close()
        assert not after["ok"]
        assert [(loss["table"], loss["kind"]) for loss in after["losses"]] == [("public.events", "rows_missing")]
    finally:
        pg_server.drop_database(copy_db)
        pg_server.drop_database(source)
