"""Sprint 90 on the fixture variant whose analytics table is partitioned by month (prod_partitioned).

The fix must have the same outcomes as on the plain table: the orphans (in every partition) quarantined and
restorable, the FKs valid on the parent and on each partition, nothing lost (rows after + quarantined =
rows before, fingerprints reconciled).  Plus the pieces on their own: an FK on a partitioned table, a
partition's orphan quarantined, a targeted backup of a partitioned table that restores its partitions'
rows, a fingerprint that counts a partitioned table's rows once.
"""
from __future__ import annotations

import json

import pytest

from tests.pg import run_playbook, write_inventory

EXPORTS, ANALYTICS = '"bazaar-vid_exports"', '"bazaar-vid_export_analytics"'
PARTITIONS = ["bazaar-vid_export_analytics_2025_03", "bazaar-vid_export_analytics_2025_04",
              "bazaar-vid_export_analytics_2025_05", "bazaar-vid_export_analytics_default"]
FK = "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"


def count(server, db, relation):
    return server.execute(db, f"SELECT count(*) FROM {relation}")[0][0]


def column_type(server, db, table, column):
    return server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = %s::regclass AND attname = %s", (table, column))[0][0]


@pytest.fixture(scope="module")
def scenario(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sprint90p")
    with pg_server.sprint90_database("prod_partitioned") as prod, \
            pg_server.sprint90_database("prod_partitioned") as staging:
        inventory = write_inventory(tmp / "inv", {"prod": (pg_server, prod), "staging": (pg_server, staging)},
                                    extra_vars={"backup_destinations": [str(tmp / "b1"), str(tmp / "b2")]},
                                    shipped_plans=True)
        seeded = {p: count(pg_server, prod, f'"{p}"') for p in PARTITIONS}
        yield {"server": pg_server, "prod": prod, "staging": staging, "inventory": str(inventory),
               "artifacts": tmp / "artifacts", "tmp": tmp, "seeded": seeded}


def play(scenario, playbook, **extra):
    result = run_playbook(playbook, inventory=scenario["inventory"], extra_vars=extra or None,
                          env={"PGSAFE_ARTIFACTS_ROOT": str(scenario["artifacts"])})
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_partitioned_rehearsal_passes(scenario):
    code, out = play(scenario, "sprint90_rehearsal.yml")
    assert code == 0, out[-4000:]
    assert column_type(scenario["server"], scenario["staging"], ANALYTICS, "export_id") == "uuid"


@pytest.mark.slow
def test_partitioned_prod_fix_quarantines_orphans_validates_fks_loses_nothing(scenario):
    server, prod = scenario["server"], scenario["prod"]
    before = scenario["seeded"]
    code, out = play(scenario, "sprint90_prod.yml", confirm_database=prod)
    assert code == 0, out[-4000:]
    assert column_type(server, prod, ANALYTICS, "export_id") == "uuid"
    assert count(server, prod, EXPORTS) == 132 and count(server, prod, ANALYTICS) == 373
    quarantined = dict(server.execute(prod, "SELECT source_table, count(*) FROM pgsafe.quarantine_row GROUP BY 1"))
    assert quarantined == {"bazaar-vid_exports": 2, "bazaar-vid_export_analytics": 6}
    # every partition lost exactly its orphans, no more
    after = {p: count(server, prod, f'"{p}"') for p in PARTITIONS}
    assert sum(before.values()) - sum(after.values()) == 6 and all(after[p] < before[p] for p in PARTITIONS)
    fks = server.execute(prod, "SELECT conrelid::regclass::text, convalidated FROM pg_constraint "
                               "WHERE contype = 'f' AND conname = %s ORDER BY 1", (FK,))
    assert sorted(r[0] for r in fks) == sorted([ANALYTICS] + [f'"{p}"' for p in PARTITIONS]), fks
    assert all(r[1] for r in fks), fks
    assert server.execute(prod, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated") \
        == [(0,)]
    report = json.loads((scenario["artifacts"] / "prod/sprint90_prod/latest/report.json").read_text())
    assert report["status"] == "succeeded", report["status"]
    # nothing lost: the run reconciled every table with its before-fingerprint (analytics counted once)
    page = (scenario["artifacts"] / "prod/sprint90_prod/latest/report.html").read_text()
    assert "379 &#8594; 373 (explained)" in page and "134 &#8594; 132 (explained)" in page
    # provenance: each quarantined analytics row names the partition it lived in
    assert server.execute(prod, "SELECT count(*) FROM pgsafe.quarantine_row WHERE reason LIKE '%%(in partition %%'") \
        == [(6,)]


@pytest.mark.slow
def test_partitioned_rollback_puts_every_orphan_back_into_its_partition(scenario):
    server, prod = scenario["server"], scenario["prod"]
    run_id = server.execute(prod, "SELECT run_id FROM pgsafe.run WHERE playbook = 'sprint90_prod' "
                                  "AND status = 'succeeded' ORDER BY started_at LIMIT 1")[0][0]
    code, out = play(scenario, "rollback.yml", rollback_hosts="prod", rollback_run_id=run_id, confirm_database=prod)
    assert code == 0, out[-4000:]
    assert column_type(server, prod, ANALYTICS, "export_id") == "text"
    assert count(server, prod, EXPORTS) == 134 and count(server, prod, ANALYTICS) == 379
    assert {p: count(server, prod, f'"{p}"') for p in PARTITIONS} == scenario["seeded"]
    assert server.execute(prod, "SELECT count(*) FROM pgsafe.quarantine_row WHERE restored_at IS NULL") == [(0,)]
    assert server.execute(prod, "SELECT count(*) FROM pg_constraint WHERE conname = %s", (FK,)) == [(0,)]


# ----------------------------------------------------------------------------- the pieces, on their own
@pytest.fixture
def partitioned_db(pg_server):
    with pg_server.sprint90_database("prod_partitioned") as name:
        yield name


def planned_statements(server, db):
    """[(sql, lock level)] of the Sprint 90 type change as the plan shows it (the engine runs the same)."""
    from ansible.module_utils.pgsafe_typechange_parse import normalise_changes, normalise_fks
    from ansible.module_utils.pgsafe_typechange_plan import plan_unit, unit_statements
    from tests.typefix_support import PROD_CHANGES, PROD_FKS
    with server.connect(db, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        unit = plan_unit(cur, normalise_changes(PROD_CHANGES), normalise_fks(PROD_FKS), "quarantine", "rewrite")
        out = [(st["sql"] if isinstance(st["sql"], str) else st["sql"].as_string(cur), st["lock_level"])
               for st in unit_statements(unit["plan"], "quarantine")]
        conn.rollback()
    return out


def partition_of_each(server, db, ids):
    return dict(server.execute(db, f"SELECT id::text, tableoid::regclass::text FROM {ANALYTICS} "
                                   "WHERE id::text = ANY(%s)", (ids,)))


def test_type_change_of_a_partitioned_table_plans_fk_per_partition_and_quarantines_restorably(pg_server,
                                                                                             partitioned_db):
    from tests.typefix_support import PROD_CHANGES, PROD_FKS, run_module
    db = partitioned_db
    orphans = [r[0] for r in pg_server.execute(db, f"SELECT a.id::text FROM {ANALYTICS} a WHERE NOT EXISTS "
                                                   f"(SELECT 1 FROM {EXPORTS} e JOIN \"bazaar-vid_project\" p "
                                                   "ON p.id::text = e.project_id WHERE e.id = a.export_id)")]
    where = partition_of_each(pg_server, db, orphans)
    assert len(orphans) == 6 and len(set(where.values())) == 4  # an orphan in every partition
    args = dict(pg_server.module_params(db), run_id="part-run", changes=PROD_CHANGES, foreign_keys=PROD_FKS,
                orphan_policy="quarantine", strategy="rewrite")
    statements = planned_statements(pg_server, db)
    # The plan shows how the server allows it: NOT VALID on each partition, VALIDATE each, then the parent.
    for part in PARTITIONS:
        assert (f'ALTER TABLE "public"."{part}" ADD CONSTRAINT "{FK}" FOREIGN KEY ("export_id") REFERENCES '
                f'"public"."bazaar-vid_exports" ("id") ON DELETE CASCADE ON UPDATE NO ACTION NOT VALID',
                "ACCESS EXCLUSIVE") in statements, part
        assert (f'ALTER TABLE "public"."{part}" VALIDATE CONSTRAINT "{FK}"', "SHARE UPDATE EXCLUSIVE") in statements
    attach = [(sql, lock) for sql, lock in statements if sql.startswith(f"ALTER TABLE \"public\".{ANALYTICS} ADD")]
    assert len(attach) == 1 and not attach[0][0].endswith("NOT VALID"), statements
    assert attach[0][1].startswith("SHARE ROW EXCLUSIVE"), attach
    assert statements.index(attach[0]) > max(statements.index((f'ALTER TABLE "public"."{p}" VALIDATE CONSTRAINT '
                                                                f'"{FK}"', "SHARE UPDATE EXCLUSIVE"))
                                              for p in PARTITIONS)
    done = run_module("pgsafe_column_types", args)
    assert not done.get("failed"), done
    fks = pg_server.execute(db, "SELECT conrelid::regclass::text, convalidated FROM pg_constraint "
                                "WHERE conname = %s", (FK,))
    assert len(fks) == 5 and all(v for _, v in fks), fks
    rows = pg_server.execute(db, "SELECT source_pk->>'id', reason FROM pgsafe.quarantine_row "
                                 "WHERE source_table = 'bazaar-vid_export_analytics'")
    assert sorted(r[0] for r in rows) == sorted(orphans)
    for pk, reason in rows:  # provenance: the partition each row lived in
        assert f"(in partition {where[pk]})" in reason, reason
    # A new partition gets the FK from its parent.
    pg_server.execute(db, f'CREATE TABLE "bazaar-vid_export_analytics_2030_01" PARTITION OF {ANALYTICS} '
                          "FOR VALUES FROM ('2030-01-01') TO ('2030-02-01')")
    assert pg_server.execute(db, "SELECT convalidated FROM pg_constraint WHERE conname = %s AND conrelid = "
                                 "'\"bazaar-vid_export_analytics_2030_01\"'::regclass", (FK,)) == [(True,)]
    # Restorable: without the new FK (the rollback drops it first) the rows go back into their partitions.
    from ansible.module_utils.pgsafe_quarantine import restore_rows
    pg_server.execute(db, f'ALTER TABLE {ANALYTICS} DROP CONSTRAINT "{FK}"')
    with pg_server.connect(db, autocommit=False) as conn, conn.cursor() as cur:
        restored = restore_rows(cur, "part-run", tables=['"public"."bazaar-vid_export_analytics"'])
        conn.commit()
    assert restored == {'"public"."bazaar-vid_export_analytics"': 6}, restored
    assert partition_of_each(pg_server, db, orphans) == where
    # A run that stopped after adding the FK NOT VALID on a partition (before the parent's): the next run adds it
    # on the others only, validates every one (setting the orphans aside again) and attaches them.
    first = PARTITIONS[0]
    pg_server.execute(db, f'ALTER TABLE "{first}" ADD CONSTRAINT "{FK}" FOREIGN KEY (export_id) '
                          f'REFERENCES {EXPORTS} (id) ON DELETE CASCADE NOT VALID')
    statements = [sql for sql, _ in planned_statements(pg_server, db)]
    assert not [s for s in statements if s.startswith(f'ALTER TABLE "public"."{first}" ADD')], statements
    again = run_module("pgsafe_column_types", dict(args, run_id="part-run-2"))
    assert not again.get("failed"), again
    fks = pg_server.execute(db, "SELECT count(*) FILTER (WHERE convalidated), count(*) FROM pg_constraint "
                                "WHERE conname = %s", (FK,))
    assert fks == [(6, 6)], fks  # the parent, its four partitions and the new one


def test_targeted_backup_of_a_partitioned_table_restores_its_partitions_rows(pg_server, scratch_server,
                                                                             partitioned_db, tmp_path):
    from ansible.module_utils import pgsafe_backup_exec as ex
    db = partitioned_db
    params = pg_server.module_params(db)
    taken = ex.take_backup(params, str(tmp_path), ["public.bazaar-vid_export_analytics"])
    assert taken["manifest"]["tables"]["public.bazaar-vid_export_analytics"]["rows"] == 379
    assert list(taken["manifest"]["tables"]) == ["public.bazaar-vid_export_analytics"]  # counted once
    _, verified = ex.verify_backup(taken["path"], scratch_params=scratch_server.module_params("postgres"))
    assert verified["verified"] and verified["restore_test"]["status"] == "ok", verified
    assert verified["restore_test"]["tables_compared"] == 1
    # Restoring the table's rows into the live database refills every partition.
    before = {p: count(pg_server, db, f'"{p}"') for p in PARTITIONS}
    pg_server.execute(db, f"DELETE FROM {ANALYTICS}")
    done = ex.restore_objects(params, taken["path"], ["public.bazaar-vid_export_analytics"], confirm_overwrite=db)
    assert done["problems"] == [], done
    assert {p: count(pg_server, db, f'"{p}"') for p in PARTITIONS} == before


def test_fingerprint_counts_a_partitioned_tables_rows_once(pg_server, partitioned_db):
    from ansible.module_utils.pgsafe_fingerprint import fingerprint
    conn = pg_server.connect(partitioned_db, autocommit=False)
    try:
        tables = fingerprint(conn)["tables"]
    finally:
        conn.close()
    assert tables["public.bazaar-vid_export_analytics"]["rows"] == 379
    assert not [t for t in tables if "export_analytics_" in t], sorted(tables)


def test_schema_diff_shows_partitioning_as_information_not_drift_or_tables_to_drop(pg_server, scratch_server,
                                                                                   partitioned_db):
    from ansible.module_utils.pgsafe_schema_diff import diff_snapshots
    from ansible.module_utils.pgsafe_snapshot import ddl_snapshot, live_snapshot
    from tests.integration.test_schema_snapshot import PROD_VS_REFERENCE, REFERENCE, keyset
    reference, _ = ddl_snapshot(scratch_server.module_params("postgres"), REFERENCE, label="bazaar_vid.sql")
    plain = diff_snapshots(live_snapshot(pg_server.module_params(partitioned_db)), reference)
    # no partition shows as a table (extra, to investigate or retire)
    assert not [d for d in plain if d["kind"] == "table" and "export_analytics_" in d["object"]], plain
    extra = {k for k in keyset(plain) if k[0] != "column_order"} - PROD_VS_REFERENCE
    by_key = {(d["kind"], d["object"], d["attribute"]): d for d in plain}
    assert extra == {("table", f'"public".{ANALYTICS}', "kind"), ("table", f'"public".{ANALYTICS}', "partition_key"),
                     ("constraint", f'"public".{ANALYTICS}."bazaar-vid_export_analytics_pkey"', "definition")}, extra
    assert {by_key[k]["severity"] for k in extra} == {"info"}
    assert "RANGE (created_at)" in by_key[("table", f'"public".{ANALYTICS}', "kind")]["hazard"]["note"]


def test_retiring_an_empty_partitioned_table_moves_its_partitions_and_restores_them(pg_server, partitioned_db):
    from ansible.module_utils import pgsafe_retire as retire
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    db = partitioned_db
    pg_server.execute(db, 'CREATE TABLE "old-events" (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at); '
                          'CREATE TABLE "old-events_2024" PARTITION OF "old-events" '
                          "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'); "
                          'CREATE TABLE "old-events_default" PARTITION OF "old-events" DEFAULT')
    where = "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " \
            "WHERE c.relname LIKE 'old-events%%' AND c.relkind IN ('r', 'p') ORDER BY 2"
    with pg_server.connect(db, autocommit=False) as conn, conn.cursor() as cur:
        ensure_meta_schema(cur)
        [planned] = retire.plan(cur, ["public.old-events"])
        assert planned["action"] == "retire", planned  # its partitions are not dependents that block it
        assert retire.retire_table(cur, "retire-run", "public.old-events")["action"] == "retired"
        conn.commit()
    assert {s for s, _ in pg_server.execute(db, where)} == {"pgsafe_quarantine"}
    with pg_server.connect(db, autocommit=False) as conn, conn.cursor() as cur:
        [record] = retire.restorable(cur, "public.old-events")
        assert retire.restore_table(cur, "restore-run", record)["action"] == "restored"
        conn.commit()
    assert pg_server.execute(db, where) == [("public", "old-events"), ("public", "old-events_2024"),
                                            ("public", "old-events_default")]


def test_merge_into_a_partitioned_table_routes_every_row_and_keeps_collisions_restorable(pg_server, partitioned_db):
    from tests.typefix_support import run_module
    db = partitioned_db
    pg_server.execute(db, 'CREATE TABLE "events" (id int, at date, v text, PRIMARY KEY (id, at)) '
                          'PARTITION BY RANGE (at); '
                          "CREATE TABLE \"events_2025\" PARTITION OF \"events\" FOR VALUES FROM ('2025-01-01') "
                          "TO ('2026-01-01'); CREATE TABLE \"events_default\" PARTITION OF \"events\" DEFAULT; "
                          "CREATE TABLE \"old_events\" (id int, at date, v text, PRIMARY KEY (id, at)); "
                          "INSERT INTO \"old_events\" SELECT i, date '2024-12-20' + i, 'v' || i "
                          "FROM generate_series(1, 30) i; "
                          "INSERT INTO \"events\" VALUES (1, date '2024-12-21', 'v1'), "
                          "(2, date '2024-12-22', 'other')")
    args = dict(pg_server.module_params(db), run_id="merge-part", source="old_events", target="events",
                column_map={"id": "id", "at": "at", "v": "v"}, policy="keep_target")
    done = run_module("pgsafe_table_merge", args)
    assert not done.get("failed"), done
    assert count(pg_server, db, '"events"') == 30  # 2 + 28 new (1 identical skipped, 1 differing kept aside)
    assert count(pg_server, db, '"events_2025"') > 0 and count(pg_server, db, '"events_default"') > 0
    assert pg_server.execute(db, "SELECT source_pk FROM pgsafe.quarantine_row WHERE run_id = 'merge-part'") \
        == [({"id": 2, "at": "2024-12-22"},)]
