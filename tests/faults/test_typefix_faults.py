"""Fault cases of the type change (fault-cases.md 6-11, 13-15, 22, 24, 25) on real Postgres.

Each case proves with counts and content hashes that no row was lost or duplicated and that nothing is
left half-applied.
"""
from __future__ import annotations

import json
import signal
import threading
import time

import psycopg2
import pytest

from tests.typefix_support import (
    ANALYTICS,
    EXPORTS,
    PROD_CHANGES,
    PROD_FKS,
    column_types,
    data_fingerprint,
    fks,
    run_module,
    schema_fingerprint,
    spawn_module,
    table_content,
)

FK_NAMES = [f["name"] for f in PROD_FKS]
A0 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def args_for(server, db, **extra):
    base = dict(server.module_params(db), run_id=extra.pop("run_id", "fault-run"), changes=PROD_CHANGES,
                foreign_keys=PROD_FKS, orphan_policy="quarantine", strategy="rewrite", retries=1,
                backoff_seconds=0.05)
    base.update(extra)
    return base


def slow_changes(seconds_per_row):
    """The prod plan plus analytics.ip_address -> varchar(64) through a deliberately slow using expression,
    so that a test can act while the analytics rewrite runs."""
    return PROD_CHANGES + [{"table": ANALYTICS, "column": "ip_address", "type": "varchar(64)",
                            "using": "ip_address || left(pg_sleep({0})::text, 0)".format(seconds_per_row)}]


def count(server, db, table):
    return server.execute(db, 'SELECT count(*) FROM "{0}"'.format(table.replace('"', '""')))[0][0]


def quarantined(server, db):
    if not server.execute(db, "SELECT to_regclass('pgsafe.quarantine_row') IS NOT NULL")[0][0]:
        return []
    return server.execute(db, "SELECT source_table, source_pk, reason, run_id, restored_at IS NOT NULL "
                              "FROM pgsafe.quarantine_row ORDER BY id")


def normalised(content):
    """Row content with every uuid-looking text value lower-cased and hyphenated (what the cast does)."""
    from ansible.module_utils.pgsafe_typechange_parse import normalise_uuid
    out = {}
    for key, row in content.items():
        data = json.loads(row)
        data = {k: (normalise_uuid(v) or v) if isinstance(v, str) else v for k, v in data.items()
                if not k.endswith("_pgsafe_new")}  # an interrupted online run's shadow columns are not content
        out[normalise_uuid(key) or key] = json.dumps(data, sort_keys=True)
    return out


def assert_converged_prod(server, db):
    types = column_types(server, db, EXPORTS)
    assert (types["id"], types["user_id"], types["project_id"]) == ("uuid", "character varying(255)", "uuid")
    assert column_types(server, db, ANALYTICS)["export_id"] == "uuid"
    got = fks(server, db)
    for name in FK_NAMES:
        assert got[name][0] is True, name
    assert "ON DELETE CASCADE" in got[FK_NAMES[2]][1]
    leftovers = server.execute(db, "SELECT attrelid::regclass::text, attname FROM pg_attribute a JOIN pg_class c ON "
                                   "c.oid = a.attrelid AND c.relkind = 'r' WHERE attname LIKE '%pgsafe_new' AND NOT "
                                   "attisdropped")
    assert leftovers == []
    assert server.execute(db, "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgsafe_typechange_sync'")[0][0] == 0
    assert server.execute(db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid")[0][0] == 0


# ----------------------------------------------------------------------------- 6: values that do not cast
def test_non_castable_values_are_listed_and_nothing_changes(pg_server, prod_db, rows_lost):
    db = prod_db
    pg_server.execute(db, f'ALTER TABLE "{ANALYTICS}" ALTER COLUMN export_id DROP NOT NULL')
    ids = [r[0] for r in pg_server.execute(db, f'SELECT id FROM "{EXPORTS}" ORDER BY id LIMIT 3')]
    for old, new in zip(ids, ["", "not-a-uuid", " " + A0], strict=True):
        pg_server.execute(db, f'UPDATE "{EXPORTS}" SET id = %s WHERE id = %s', (new, old))
    an = pg_server.execute(db, f'SELECT id::text FROM "{ANALYTICS}" ORDER BY id LIMIT 1')[0][0]
    pg_server.execute(db, f'UPDATE "{ANALYTICS}" SET export_id = NULL WHERE id = %s', (an,))
    schema_before, data_before = schema_fingerprint(pg_server, db), data_fingerprint(pg_server, db)

    result = run_module("pgsafe_column_types", args_for(pg_server, db))
    assert result.get("failed"), result
    msg = result["msg"]
    assert "precheck failed, nothing changed" in msg
    assert "3 value(s) do not cast to uuid" in msg
    for value in ("''", "'not-a-uuid'", repr(" " + A0)):
        assert value in msg, value
    assert '"id": ""' in msg and '{"id": "not-a-uuid"}' in msg
    assert "export_id: 1 value(s) do not cast to uuid NOT NULL" in msg and an in msg
    assert schema_fingerprint(pg_server, db) == schema_before
    assert data_fingerprint(pg_server, db) == data_before
    assert quarantined(pg_server, db) == []
    rows_lost(0)


# ----------------------------------------------------------------------------- 7: spellings, collisions
def test_uuid_spelling_variants_normalise_and_children_are_not_orphans(pg_server, prod_db, rows_lost):
    db = prod_db
    exp = pg_server.execute(db, f'SELECT id FROM "{EXPORTS}" e WHERE EXISTS (SELECT 1 FROM "{ANALYTICS}" a '
                                f'WHERE a.export_id = e.id) ORDER BY id LIMIT 1')[0][0]
    pg_server.execute(db, f'UPDATE "{EXPORTS}" SET id = upper(id) WHERE id = %s', (exp,))
    kids = [r[0] for r in pg_server.execute(db, f'SELECT id::text FROM "{ANALYTICS}" WHERE export_id = %s', (exp,))]
    assert len(kids) >= 2
    pg_server.execute(db, f'UPDATE "{ANALYTICS}" SET export_id = %s WHERE id = %s', ("{" + exp + "}", kids[0]))
    pg_server.execute(db, f'UPDATE "{ANALYTICS}" SET export_id = %s WHERE id = ANY(%s::uuid[])',
                      (exp.replace("-", ""), kids[1:]))
    before = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}

    plan = run_module("pgsafe_column_types", args_for(pg_server, db), check=True)
    assert not plan.get("failed"), plan.get("msg")
    norm = {(n["table"], n["column"]): n["count"] for n in plan["precheck"]["normalising"]}
    assert norm[('"public"."bazaar-vid_exports"', "id")] == 1
    assert norm[('"public"."bazaar-vid_export_analytics"', "export_id")] == len(kids)
    assert any("castable, will normalise" in h for h in plan["hazards"])
    assert plan["precheck"]["would_quarantine"] == {"public.bazaar-vid_exports": 2, "public.bazaar-vid_export_analytics": 6}

    result = run_module("pgsafe_column_types", args_for(pg_server, db))
    assert not result.get("failed"), result.get("msg")
    assert result["quarantined"] == {'"public"."bazaar-vid_exports"': 2, '"public"."bazaar-vid_export_analytics"': 6}
    assert_converged_prod(pg_server, db)
    after = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    qrows = {(r[0], json.dumps(r[1], sort_keys=True)) for r in quarantined(pg_server, db)}
    for table in (EXPORTS, ANALYTICS):
        kept = {k for k in before[table] if (table, json.dumps({"id": k}, sort_keys=True)) not in qrows}
        assert set(after[table]) == kept
        assert {k: before[table][k] for k in kept} == after[table]
    assert pg_server.execute(db, f'SELECT count(*) FROM "{ANALYTICS}" WHERE export_id = %s::uuid', (exp,))[0][0] == len(kids)
    rows_lost(len(before[EXPORTS]) - len(after[EXPORTS]) - 2 + len(before[ANALYTICS]) - len(after[ANALYTICS]) - 6)


def test_two_spellings_of_one_uuid_in_a_unique_column_abort(pg_server, prod_db, rows_lost):
    db = prod_db
    exp = pg_server.execute(db, f'SELECT id FROM "{EXPORTS}" ORDER BY id LIMIT 1')[0][0]
    pg_server.execute(db, f"INSERT INTO \"{EXPORTS}\" (id, user_id, project_id, render_id) SELECT upper(id), user_id, "
                          f"project_id, 'render-collision' FROM \"{EXPORTS}\" WHERE id = %s", (exp,))
    data_before, schema_before = data_fingerprint(pg_server, db), schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db))
    assert result.get("failed")
    assert "collision" in result["msg"] and exp in result["msg"] and exp.upper() in result["msg"]
    assert data_fingerprint(pg_server, db) == data_before and schema_fingerprint(pg_server, db) == schema_before
    rows_lost(0)


# ----------------------------------------------------------------------------- 14: orphans
def test_orphans_with_policy_fail_abort_listing_them(pg_server, prod_db, rows_lost):
    db = prod_db
    data_before, schema_before = data_fingerprint(pg_server, db), schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db, orphan_policy="fail"))
    assert result.get("failed")
    assert "2 orphan row(s)" in result["msg"] and "orphan_policy fail" in result["msg"]
    orphan_ids = pg_server.execute(db, f'SELECT id FROM "{EXPORTS}" e WHERE NOT EXISTS (SELECT 1 FROM '
                                       f'"bazaar-vid_project" p WHERE p.id::text = e.project_id)')
    assert len(orphan_ids) == 2 and all(i[0] in result["msg"] for i in orphan_ids)
    assert data_fingerprint(pg_server, db) == data_before and schema_fingerprint(pg_server, db) == schema_before
    rows_lost(0)


def test_orphans_quarantined_then_rollback_restores_hash_identical(pg_server, prod_db, rows_lost):
    db = prod_db
    data_before, schema_before = data_fingerprint(pg_server, db), schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db, run_id="q-run"))
    assert not result.get("failed"), result.get("msg")
    assert (count(pg_server, db, EXPORTS), count(pg_server, db, ANALYTICS)) == (132, 373)
    rows = quarantined(pg_server, db)
    assert len(rows) == 8 and {r[3] for r in rows} == {"q-run"}
    assert sum(1 for r in rows if r[0] == EXPORTS and r[2].startswith("orphan")) == 2
    assert sum(1 for r in rows if r[0] == ANALYTICS and r[2].startswith("depends on quarantined row")) == 6
    for name, c in result["counts"].items():
        assert c["before"] == c["after"] + c["quarantined"], name
    journal = pg_server.execute(db, "SELECT rollback_sql FROM pgsafe.journal WHERE run_id = 'q-run' AND "
                                    "status = 'completed' AND rollback_sql IS NOT NULL")
    assert journal and journal[0][0] == result["rollback_sql"]
    # The rollback playbook runs the recorded SQL: types and FKs back, quarantined rows back.
    pg_server.execute(db, result["rollback_sql"])
    assert data_fingerprint(pg_server, db) == data_before
    assert schema_fingerprint(pg_server, db) == schema_before
    assert all(r[4] for r in quarantined(pg_server, db))
    lost = 134 + 379 - count(pg_server, db, EXPORTS) - count(pg_server, db, ANALYTICS)
    rows_lost(lost)
    assert lost == 0


def test_quarantine_restore_module_is_hash_checked_and_idempotent(pg_server, prod_db, rows_lost):
    db = prod_db
    before = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    assert not run_module("pgsafe_column_types", args_for(pg_server, db, run_id="r-run")).get("failed")
    params = dict(pg_server.module_params(db), run_id="r-run")
    blocked = run_module("pgsafe_quarantine_restore", params)
    assert blocked.get("failed") and "rollback SQL" in blocked["msg"]
    assert (count(pg_server, db, EXPORTS), count(pg_server, db, ANALYTICS)) == (132, 373)  # all or nothing
    pg_server.execute(db, f'ALTER TABLE "{EXPORTS}" DROP CONSTRAINT "{FK_NAMES[1]}"')
    assert run_module("pgsafe_quarantine_restore", params, check=True)["pending"] == {
        '"public"."bazaar-vid_exports"': 2, '"public"."bazaar-vid_export_analytics"': 6}
    done = run_module("pgsafe_quarantine_restore", params)
    assert not done.get("failed"), done.get("msg")
    assert done["restored"] == {'"public"."bazaar-vid_exports"': 2, '"public"."bazaar-vid_export_analytics"': 6}
    after = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    assert after == before
    assert run_module("pgsafe_quarantine_restore", params)["changed"] is False
    rows_lost(sum(len(before[t]) - len(after[t]) for t in before))


# ----------------------------------------------------------------------------- 8: locks
def _writer(server, db, stop, stalls, errors):
    conn = server.connect(db)
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = '20s'")
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                cur.execute(f'UPDATE "{EXPORTS}" SET download_count = download_count + 1 WHERE render_id = '
                            f'(SELECT min(render_id) FROM "{EXPORTS}")')
            except psycopg2.Error as exc:
                errors.append(str(exc))
            stalls.append(time.monotonic() - t0)
            time.sleep(0.01)
    conn.close()


def test_lock_not_obtainable_fails_closed_with_bounded_writer_stall(pg_server, prod_db, rows_lost):
    db = prod_db
    data_before = data_fingerprint(pg_server, db)
    holder = pg_server.connect(db, autocommit=False)
    holder.cursor().execute(f'SELECT count(*) FROM "{ANALYTICS}"')  # ACCESS SHARE held open
    stop, stalls, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(pg_server, db, stop, stalls, errors))
    writer.start()
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        result = run_module("pgsafe_column_types", args_for(pg_server, db, lock_timeout="300ms", retries=2,
                                                            backoff_seconds=0.2, backoff_max_seconds=0.3))
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        writer.join()
        holder.rollback()
        holder.close()
    assert result.get("failed")
    assert "failed closed" in result["msg"] and "3 attempt(s)" in result["msg"]
    lock_attempts = [a for a in result["attempts"] if a["step"] == "type change (rewrite)"]
    assert [a["outcome"] for a in lock_attempts] == ["55P03"] * 3
    assert all(a["seconds"] < 0.3 + 0.25 for a in lock_attempts)
    assert elapsed < 10
    assert errors == []
    assert max(stalls) <= 0.3 + 0.25, max(stalls)  # a writer waits at most lock_timeout per attempt
    assert column_types(pg_server, db, EXPORTS)["id"] == "text"
    assert data_fingerprint(pg_server, db)[ANALYTICS] == data_before[ANALYTICS]
    assert quarantined(pg_server, db) == []
    rows_lost(0)


def test_statement_timeout_rolls_back_fully_without_retry(pg_server, prod_db, rows_lost):
    db = prod_db
    data_before, schema_before = data_fingerprint(pg_server, db), schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db, changes=slow_changes(0.002),
                                                        statement_timeout="300ms"))
    assert result.get("failed") and "statement timeout" in result["msg"]
    assert len([a for a in result["attempts"] if a["step"] == "type change (rewrite)"]) == 1
    assert data_fingerprint(pg_server, db) == data_before and schema_fingerprint(pg_server, db) == schema_before
    assert quarantined(pg_server, db) == []
    rows_lost(0)


# ----------------------------------------------------------------------------- 9, 10: killed mid-way
def _wait_for(server, db, sql_text, params=(), timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = server.execute(db, sql_text, params)
        if row and row[0][0]:
            return row[0][0]
        time.sleep(0.01)
    raise AssertionError("timed out waiting for: " + sql_text)


def test_backend_terminated_mid_change_then_rerun_converges(pg_server, prod_db, rows_lost):
    db = prod_db
    before = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    schema_before = schema_fingerprint(pg_server, db)
    proc = spawn_module("pgsafe_column_types", args_for(pg_server, db, changes=slow_changes(0.005), run_id="killed"))
    pid = _wait_for(pg_server, db, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                                    "application_name = 'pgsafe' AND state = "
                                    "'active' AND query LIKE 'ALTER TABLE \"public\".\"bazaar-vid_export_analytics\"%%'")
    pg_server.execute(db, "SELECT pg_terminate_backend(%s)", (pid,))
    out, _ = proc.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result.get("failed") and "rolled back by the server" in result["msg"]
    assert schema_fingerprint(pg_server, db) == schema_before  # the server rolled everything back
    assert {t: normalised(table_content(pg_server, db, t)) for t in before} == before
    assert quarantined(pg_server, db) == []
    rerun = run_module("pgsafe_column_types", args_for(pg_server, db, run_id="rerun"))
    assert not rerun.get("failed"), rerun.get("msg")
    assert_converged_prod(pg_server, db)
    assert (count(pg_server, db, EXPORTS), count(pg_server, db, ANALYTICS)) == (132, 373)
    assert len(quarantined(pg_server, db)) == 8
    rows_lost(134 + 379 - 132 - 373 - len(quarantined(pg_server, db)))


def test_backend_terminated_mid_backfill_then_rerun_converges(pg_server, prod_db, rows_lost):
    db = prod_db
    before = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    proc = spawn_module("pgsafe_column_types", args_for(pg_server, db, strategy="online", batch_size=10,
                                                        throttle_ms=100, run_id="bf-killed",
                                                        online_method="shadow_columns"))
    # Backfilling: a batch is visible in pg_stat_activity only while it runs (between batches the last
    # statement shown is its COMMIT), so a loaded machine can miss every one; the shadow column of the
    # first table, created just before the batches start, is a signal that stays.
    _wait_for(pg_server, db, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND "
                             "attname LIKE '%%pgsafe_new' AND NOT attisdropped) OR EXISTS (SELECT 1 FROM "
                             "pg_stat_activity WHERE datname = current_database() AND application_name = 'pgsafe' "
                             "AND query LIKE 'WITH b AS%%')", (f'"{EXPORTS}"',))
    time.sleep(0.3)
    pids = pg_server.execute(db, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgsafe' AND datname = "
                                 "current_database() AND pid <> pg_backend_pid()")
    for (pid,) in pids:
        pg_server.execute(db, "SELECT pg_terminate_backend(%s)", (pid,))
    out, _ = proc.communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1]).get("failed")
    leftover = pg_server.execute(db, "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid AND "
                                     "c.relkind = 'r' WHERE attname LIKE '%pgsafe_new' AND NOT attisdropped")[0][0]
    assert leftover >= 1  # half-way: shadow columns exist...
    # An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index under the shadow index's name.
    conn = pg_server.connect(db)
    with pytest.raises(psycopg2.errors.UniqueViolation), conn.cursor() as cur:
        cur.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "bazaar-vid_exports_pkey_pgsafe_new" ON "{EXPORTS}" (status)')
    conn.close()
    assert pg_server.execute(db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid")[0][0] == 1
    plan = run_module("pgsafe_column_types", args_for(pg_server, db, strategy="auto", run_id="bf-plan"), check=True)
    assert plan["plan"]["strategy"] == "online" and "resuming" in plan["plan"]["strategy_reason"]  # ...and are reported
    rerun = run_module("pgsafe_column_types", args_for(pg_server, db, strategy="online", run_id="bf-rerun"))
    assert not rerun.get("failed"), rerun.get("msg")
    assert any("dropped invalid index" in e for e in rerun["events"])
    assert_converged_prod(pg_server, db)
    after = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    q = {json.dumps(r[1], sort_keys=True) for r in quarantined(pg_server, db)}
    for t, rows in before.items():
        assert {k: v for k, v in rows.items() if json.dumps({"id": k}) not in q} == after[t]
    rows_lost(sum(len(before[t]) - len(after[t]) for t in before) - len(q))


def test_run_killed_between_backfill_and_swap_then_rerun_converges(pg_server, prod_db, rows_lost):
    db = prod_db
    holder = pg_server.connect(db, autocommit=False)
    holder.cursor().execute('UPDATE "bazaar-vid_user" SET name = name WHERE false')  # the swap's lock waits on this
    proc = spawn_module("pgsafe_column_types", args_for(pg_server, db, strategy="online", lock_timeout="30s",
                                                        run_id="swap-killed", online_method="shadow_columns"))
    try:
        _wait_for(pg_server, db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                                 "application_name = 'pgsafe' AND "
                                 "wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%%')")
        journal = pg_server.execute(db, "SELECT step FROM pgsafe.journal WHERE run_id = 'swap-killed' ORDER BY id")
        assert ("online:backfill",) in journal
        proc.send_signal(signal.SIGKILL)  # the controller dies while the swap waits
        proc.wait(timeout=30)
    finally:
        holder.rollback()  # the orphaned backend gets its lock, cannot answer the dead client, and rolls back
        holder.close()
    _wait_for(pg_server, db, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                             "application_name = 'pgsafe' AND pid <> pg_backend_pid())")
    # The app keeps writing while nobody runs the change: the sync trigger covers it.
    new_id = "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a22"
    pg_server.execute(db, f"INSERT INTO \"{EXPORTS}\" (id, user_id, project_id, render_id) SELECT %s, user_id, "
                          f"project_id, 'render-late' FROM \"{EXPORTS}\" ORDER BY id LIMIT 1", (new_id,))
    assert pg_server.execute(db, f'SELECT id_pgsafe_new::text FROM "{EXPORTS}" WHERE id = %s', (new_id,))[0][0] == new_id
    assert column_types(pg_server, db, EXPORTS)["id"] == "text"  # the swap never happened
    before = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    rerun = run_module("pgsafe_column_types", args_for(pg_server, db, strategy="auto", run_id="swap-rerun"))
    assert not rerun.get("failed"), rerun.get("msg")
    assert rerun["plan"]["strategy"] == "online"
    assert_converged_prod(pg_server, db)
    after = {t: normalised(table_content(pg_server, db, t)) for t in (EXPORTS, ANALYTICS)}
    q = {json.dumps(r[1], sort_keys=True) for r in quarantined(pg_server, db)}
    assert len(q) == 8
    for t, rows in before.items():
        assert {k: v for k, v in rows.items() if json.dumps({"id": k}) not in q} == after[t]
    assert new_id in after[EXPORTS]
    rows_lost(134 + 379 + 1 - sum(len(after[t]) for t in after) - len(q))  # fixture rows + the late insert


# ----------------------------------------------------------------------------- 15: late orphans
def test_late_orphan_rejected_by_not_valid_fk_or_quarantined_at_validate(pg_server, dev_db, rows_lost):
    from ansible.module_utils.pgsafe_typechange import Runner
    from ansible.module_utils.pgsafe_typechange_facts import gather_facts
    from ansible.module_utils.pgsafe_typechange_parse import normalise_changes, normalise_fks
    from ansible.module_utils.pgsafe_typechange_plan import build_plan
    from ansible.module_utils.pgsafe_connection import connect
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    db = dev_db
    n_before = count(pg_server, db, ANALYTICS)
    bogus = "c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a33"
    # The type is converted; an orphan slips in before the FK exists; the FK is then added NOT VALID.
    pg_server.execute(db, f'ALTER TABLE "{ANALYTICS}" ALTER COLUMN export_id TYPE uuid USING export_id::uuid')
    pg_server.execute(db, f"INSERT INTO \"{ANALYTICS}\" (export_id, event) VALUES (%s, 'viewed')", (bogus,))
    pg_server.execute(db, f'ALTER TABLE "{ANALYTICS}" ADD CONSTRAINT "{FK_NAMES[2]}" FOREIGN KEY (export_id) '
                          f'REFERENCES "{EXPORTS}" (id) ON DELETE CASCADE NOT VALID')
    # From now on the NOT VALID FK rejects a new orphan.
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        pg_server.execute(db, f"INSERT INTO \"{ANALYTICS}\" (export_id, event) VALUES (%s, 'viewed')", (bogus,))
    changes = normalise_changes([PROD_CHANGES[3]])
    fk_list = normalise_fks([PROD_FKS[2]])
    conn = connect(pg_server.module_params(db))
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            facts = gather_facts(cur, changes, fk_list)
        conn.commit()
        plan = build_plan(changes, fk_list, facts, "rewrite")
        plan["_facts"] = facts
        assert plan["foreign_keys"][0]["state"] == "not_valid"
        runner = Runner(conn, plan, "late-run", orphan_policy="quarantine", lock_timeout="2s")
        assert runner.validate() == [FK_NAMES[2]]  # VALIDATE failed, re-scan quarantined the late orphan, re-VALIDATE
        assert any("re-scan" in e for e in runner.events)
    finally:
        conn.close()
    assert fks(pg_server, db)[FK_NAMES[2]][0] is True
    rows = quarantined(pg_server, db)
    assert len(rows) == 1 and rows[0][0] == ANALYTICS and rows[0][2].startswith("orphan")
    rows_lost(n_before + 1 - count(pg_server, db, ANALYTICS) - len(rows))


# ----------------------------------------------------------------------------- 24, 25: check mode, idempotence
def _counters(server, db):
    server.execute(db, "SELECT pg_stat_clear_snapshot()")
    return server.execute(db, "SELECT relid::regclass::text, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                              "ORDER BY 1")


def test_check_mode_writes_nothing_and_takes_no_exclusive_lock(pg_server, prod_db, rows_lost):
    db = prod_db
    schema_before, data_before = schema_fingerprint(pg_server, db), data_fingerprint(pg_server, db)
    counters_before = _counters(pg_server, db)
    stop, strong = threading.Event(), []

    def watch():
        conn = pg_server.connect(db)
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT l.mode, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                            "WHERE a.application_name = 'pgsafe' AND l.locktype = 'relation' AND l.mode <> "
                            "'AccessShareLock' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
                            "current_database())")  # the cluster is shared with other sessions
                strong.extend(cur.fetchall())
        conn.close()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_module("pgsafe_column_types", args_for(pg_server, db), check=True, diff=True)
    finally:
        stop.set()
        watcher.join()
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["message"].startswith("would convert")
    assert '"id" text NOT NULL' in result["diff"]["before"] and '"id" uuid NOT NULL DEFAULT gen_random_uuid()' in \
        result["diff"]["after"]
    assert "ALTER TABLE" in result["rollback_sql"]
    assert strong == []
    time.sleep(0.7)  # stats of the finished session are flushed at its exit
    assert _counters(pg_server, db) == counters_before
    assert schema_fingerprint(pg_server, db) == schema_before and data_fingerprint(pg_server, db) == data_before
    assert pg_server.execute(db, "SELECT to_regclass('pgsafe.journal') IS NULL")[0][0]  # nothing created
    rows_lost(0)


def test_second_run_and_already_fixed_dev_are_no_ops(pg_server, dev_db, rows_lost):
    db = dev_db
    dev_changes, dev_fks = [PROD_CHANGES[3]], [PROD_FKS[2]]
    first = run_module("pgsafe_column_types", args_for(pg_server, db, changes=dev_changes, foreign_keys=dev_fks))
    assert not first.get("failed") and first["changed"] is True
    schema_after, data_after = schema_fingerprint(pg_server, db), data_fingerprint(pg_server, db)
    for strategy in ("rewrite", "online", "auto"):
        again = run_module("pgsafe_column_types", args_for(pg_server, db, changes=dev_changes, foreign_keys=dev_fks,
                                                           strategy=strategy))
        assert again["changed"] is False and again["converged"] is True
        assert again["message"].startswith("already converged")
    assert schema_fingerprint(pg_server, db) == schema_after and data_fingerprint(pg_server, db) == data_after
    rows_lost(0)


# ----------------------------------------------------------------------------- 11: disk
def test_too_little_disk_refuses_with_numbers(pg_server, prod_db, rows_lost):
    db = prod_db
    schema_before = schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db, disk_free_bytes=1000, disk_margin_bytes=0))
    assert result.get("failed") and "not enough disk" in result["msg"] and "1000 available" in result["msg"]
    need = result["precheck"]["disk"]["required_bytes"]
    assert str(need) in result["msg"] and need > 2 * 16384
    assert schema_fingerprint(pg_server, db) == schema_before
    rows_lost(0)


# ----------------------------------------------------------------------------- views
def test_dependent_view_is_recreated_in_the_same_transaction(pg_server, prod_db, rows_lost):
    db = prod_db
    pg_server.execute(db, f'CREATE VIEW "export stats" AS SELECT e.id, e.project_id, count(a.id) AS events FROM '
                          f'"{EXPORTS}" e LEFT JOIN "{ANALYTICS}" a ON a.export_id = e.id GROUP BY e.id, e.project_id')
    pg_server.execute(db, "COMMENT ON VIEW \"export stats\" IS 'per export'")
    for strategy in ("rewrite",):
        result = run_module("pgsafe_column_types", args_for(pg_server, db, strategy=strategy))
        assert not result.get("failed"), result.get("msg")
    assert any("recreated in the same transaction" in h for h in result["hazards"])
    assert pg_server.execute(db, 'SELECT sum(events) FROM "export stats"')[0][0] == 373
    assert pg_server.execute(db, "SELECT obj_description('\"export stats\"'::regclass)")[0][0] == "per export"
    assert column_types(pg_server, db, "export stats")["id"] == "uuid"
    rows_lost(0)


def test_view_with_dependents_is_refused_by_name(pg_server, prod_db, rows_lost):
    db = prod_db
    pg_server.execute(db, f'CREATE VIEW v_exports AS SELECT id FROM "{EXPORTS}"')
    pg_server.execute(db, "CREATE VIEW v_on_v AS SELECT id FROM v_exports")
    schema_before = schema_fingerprint(pg_server, db)
    result = run_module("pgsafe_column_types", args_for(pg_server, db))
    assert result.get("failed") and '"public"."v_exports"' in result["msg"] and "nothing changed" in result["msg"]
    assert schema_fingerprint(pg_server, db) == schema_before
    rows_lost(0)


# ----------------------------------------------------------------------------- 22: hostile identifiers
HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'
HOSTILE_CHILD = "Kind tâble \"quoted\" " + "y" * 40


@pytest.mark.parametrize("strategy", ["rewrite", "online"])
def test_hostile_identifiers_are_plain_names(pg_server, prod_db, strategy, rows_lost):
    from psycopg2 import sql
    db = prod_db
    conn = pg_server.connect(db)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {0} ({1} text PRIMARY KEY, note text)").format(
            sql.Identifier(HOSTILE), sql.Identifier('Id"; --')))
        cur.execute(sql.SQL("CREATE TABLE {0} (id serial PRIMARY KEY, {1} text NOT NULL)").format(
            sql.Identifier(HOSTILE_CHILD), sql.Identifier('parentId"x')))
        cur.execute(sql.SQL("CREATE INDEX ON {0} ({1})").format(sql.Identifier(HOSTILE_CHILD),
                                                               sql.Identifier('parentId"x')))
        cur.execute(sql.SQL("INSERT INTO {0} SELECT md5(i::text)::uuid::text, 'n' || i FROM generate_series(1, 50) i")
                    .format(sql.Identifier(HOSTILE)))
        cur.execute(sql.SQL("INSERT INTO {0} ({1}) SELECT upper(md5((i % 50 + 1)::text)::uuid::text) "
                            "FROM generate_series(1, 120) i").format(sql.Identifier(HOSTILE_CHILD),
                                                                     sql.Identifier('parentId"x')))
    conn.close()
    users = count(pg_server, db, "bazaar-vid_user")
    fk_name = "fk " + HOSTILE + " ' ; --"
    args = args_for(pg_server, db, strategy=strategy, orphan_policy="fail",
                    changes=[{"table": "public." + '"' + HOSTILE.replace('"', '""') + '"', "column": 'Id"; --',
                              "type": "uuid"},
                             {"table": '"' + HOSTILE_CHILD.replace('"', '""') + '"', "column": 'parentId"x',
                              "type": "uuid"}],
                    foreign_keys=[{"name": fk_name, "table": '"' + HOSTILE_CHILD.replace('"', '""') + '"',
                                   "columns": ['parentId"x'],
                                   "ref_table": '"' + HOSTILE.replace('"', '""') + '"', "ref_columns": ['Id"; --'],
                                   "on_delete": "restrict"}])
    result = run_module("pgsafe_column_types", args)
    assert not result.get("failed"), result.get("msg")
    assert count(pg_server, db, "bazaar-vid_user") == users
    assert column_types(pg_server, db, HOSTILE)['Id"; --'] == "uuid"
    assert column_types(pg_server, db, HOSTILE_CHILD)['parentId"x'] == "uuid"
    assert fks(pg_server, db)[fk_name][0] is True
    assert (count(pg_server, db, HOSTILE), count(pg_server, db, HOSTILE_CHILD)) == (50, 120)
    assert run_module("pgsafe_column_types", args)["changed"] is False
    rows_lost(170 - count(pg_server, db, HOSTILE) - count(pg_server, db, HOSTILE_CHILD))
