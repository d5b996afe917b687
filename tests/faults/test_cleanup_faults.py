"""Fault cases 16-22, 24, 25 for the cleanup: merge, safe drop, legacy audit, schema removal.

Every case runs the real modules (library/pgsafe_*.py, run as Ansible runs them) against fresh Sprint 90
databases on the test cluster, then measures what was lost: rows are counted and hashed before and after,
and every pre-run row must be in place, in the merge target, or in quarantine.
"""
from __future__ import annotations

import threading
from decimal import Decimal
import time
import uuid

import psycopg2

from tests.cleanup_helpers import (DEV_MAP, REFERENCE_SQL, count, exists, quarantined, run_module, schema_exists,
                                   start_module, table_hash)

EMPTY = ["bazaar-vid_component_error", "bazaar-vid_patch", "bazaar-vid_scene_plan", "bazaar-vid_scene_specs"]


def conn_params(server, db):
    return server.module_params(db)


def merge_params(server, db, **extra):
    params = dict(conn_params(server, db), run_id="t-" + uuid.uuid4().hex[:8], source="api_usage_metric",
                  target="bazaar-vid_api_usage_metric", column_map=DEV_MAP, target_definition=REFERENCE_SQL)
    params.update(extra)
    return params


def create_target(server, db):
    """The prefixed metric table as the code declares it (dev lacks it)."""
    from ansible.module_utils.pgsafe_merge_ddl import statements_for_table
    for stmt in statements_for_table(REFERENCE_SQL, "bazaar-vid_api_usage_metric"):
        server.execute(db, stmt)


def merged_rows_missing(server, db, source_schema, source_name, run_id=None):
    """Source rows (by id) whose mapped content is neither in the target nor recorded in quarantine_row."""
    q = '''SELECT count(*) FROM {src} s WHERE NOT EXISTS (
               SELECT 1 FROM "bazaar-vid_api_usage_metric" t WHERE t.id = s.id AND t.provider = s.provider
                  AND t.model = s.model AND t."userId" IS NOT DISTINCT FROM s."userId"
                  AND t."projectId" IS NOT DISTINCT FROM s."projectId" AND t."responseTime" = s."responseTime"
                  AND t."tokenCount" IS NOT DISTINCT FROM s."tokenCount"
                  AND t."errorMessage" IS NOT DISTINCT FROM s."errorMessage"
                  AND t."timestamp" = s."timestamp" AND t.success = s.success)
             AND NOT EXISTS (SELECT 1 FROM pgsafe.quarantine_row q WHERE q.source_table = 'api_usage_metric'
                  AND q.row_data = to_jsonb(s))'''
    src = '"{0}"."{1}"'.format(source_schema, source_name.replace('"', '""'))
    return server.execute(db, q.format(src=src))[0][0]


# --------------------------------------------------------------------------- case 16: conflicting keys
def test_merge_conflicting_duplicate_key_fails_by_default_then_keep_target_quarantines(pg_server, dev_db, rows_lost):
    create_target(pg_server, dev_db)
    first, second = [r[0] for r in pg_server.execute(dev_db, "SELECT id FROM api_usage_metric ORDER BY id LIMIT 2")]
    # One identical row, one colliding row with different values, one row only the target has.
    pg_server.execute(dev_db, '''INSERT INTO "bazaar-vid_api_usage_metric" (id, provider, model, "userId", "projectId",
            "toolName", success, "responseTime", "tokenCount", "errorType", "errorMessage", "timestamp")
        SELECT id, provider, model, "userId", "projectId", "toolName", success, "responseTime", "tokenCount",
               "errorType", "errorMessage", "timestamp" FROM api_usage_metric WHERE id = %s''', (first,))
    pg_server.execute(dev_db, '''INSERT INTO "bazaar-vid_api_usage_metric" (id, provider, model, success, "responseTime")
        VALUES (%s, 'openai', 'target-version', true, 999999), (gen_random_uuid(), 'groq', 'only-in-target', true, 1)''',
                      (second,))
    source_before = table_hash(pg_server, dev_db, "public", "api_usage_metric")
    target_before = table_hash(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric")

    failed = run_module("pgsafe_table_merge", merge_params(pg_server, dev_db))
    assert failed.get("failed") and failed["rc"] != 0
    assert "collide with different target rows" in failed["msg"] and second in failed["msg"]
    assert "keep_target" in failed["msg"] and "nothing changed" in failed["msg"]
    assert failed["differing_count"] == 1 and failed["identical"] == 1
    assert table_hash(pg_server, dev_db, "public", "api_usage_metric") == source_before
    assert table_hash(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric") == target_before

    params = merge_params(pg_server, dev_db, policy="keep_target")
    done = run_module("pgsafe_table_merge", params, diff=True)
    assert done["rc"] == 0, done.get("msg")
    assert done["changed"] and done["action"] == "merged"
    assert (done["inserted"], done["identical"], done["quarantined"]) == (248, 1, 1)
    assert done["proof"]["ok"] and done["proof"]["missing_in_target"] == 0 and done["proof"]["differing_in_target"] == 0
    assert done["proof"]["source_sha"] == done["proof"]["target_sha"]
    assert done["diff"]["before"]["target_rows"] == 3 and done["diff"]["after"]["target_rows"] == 251
    # The target row won; the source row is in quarantine_row, and the whole source in the quarantine schema.
    assert pg_server.execute(dev_db, 'SELECT model, "responseTime" FROM "bazaar-vid_api_usage_metric" WHERE id = %s',
                             (second,)) == [("target-version", 999999)]
    qrows = pg_server.execute(dev_db, "SELECT source_pk->>'id', row_data->>'model', reason FROM pgsafe.quarantine_row "
                                      "WHERE run_id = %s", (params["run_id"],))
    assert [r[0] for r in qrows] == [second] and "keep_target" in qrows[0][2]
    assert not exists(pg_server, dev_db, "public", "api_usage_metric")
    qschema, qname = quarantined(pg_server, dev_db, "api_usage_metric")
    assert table_hash(pg_server, dev_db, qschema, qname) == source_before
    assert count(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric") == 251
    lost = merged_rows_missing(pg_server, dev_db, qschema, qname)
    rows_lost(lost)
    assert lost == 0
    again = run_module("pgsafe_table_merge", params)
    assert again["rc"] == 0 and not again["changed"] and again["action"] == "converged"


# --------------------------------------------------------------------------- case 18: mapping type errors
def test_merge_type_errors_and_null_into_not_null_are_listed_and_nothing_is_inserted(pg_server, dev_db, rows_lost):
    bad_ids = [r[0] for r in pg_server.execute(dev_db, "SELECT id FROM api_usage_metric ORDER BY id LIMIT 3")]
    pg_server.execute(dev_db, '''ALTER TABLE api_usage_metric ALTER COLUMN "responseTime" TYPE text,
                                 ALTER COLUMN provider DROP NOT NULL''')
    pg_server.execute(dev_db, '''UPDATE api_usage_metric SET "responseTime" = '12ms' WHERE id = %s''', (bad_ids[0],))
    pg_server.execute(dev_db, '''UPDATE api_usage_metric SET "responseTime" = 'n/a' WHERE id = %s''', (bad_ids[1],))
    pg_server.execute(dev_db, "UPDATE api_usage_metric SET provider = NULL WHERE id = %s", (bad_ids[2],))
    before = table_hash(pg_server, dev_db, "public", "api_usage_metric")

    plan = run_module("pgsafe_table_merge", merge_params(pg_server, dev_db), check=True)
    assert plan["rc"] == 0 and plan["action"] == "refused" and not plan["changed"]
    by_kind = {p["kind"]: p for p in plan["problems"]}
    assert by_kind["cast"]["count"] == 2
    assert {r["value"] for r in by_kind["cast"]["rows"]} == {"12ms", "n/a"}
    assert {r["pk"]["id"] for r in by_kind["cast"]["rows"]} == set(bad_ids[:2])
    assert by_kind["not_null"]["count"] == 1 and by_kind["not_null"]["rows"][0]["pk"]["id"] == bad_ids[2]

    result = run_module("pgsafe_table_merge", merge_params(pg_server, dev_db))
    assert result["rc"] != 0 and "refused" in result["msg"] and "NOT NULL" in result["msg"]
    assert "do not cast to integer" in result["msg"]
    assert not exists(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric")  # not even created
    after = table_hash(pg_server, dev_db, "public", "api_usage_metric")
    rows_lost(max(0, before[0] - after[0]))
    assert after == before
    assert pg_server.execute(dev_db, "SELECT count(*) FROM pgsafe.journal WHERE step = 'table_merge' "
                                     "AND status = 'failed'")[0][0] == 1


# --------------------------------------------------------------------------- case 9/17: interrupted, then re-run
def test_merge_interrupted_half_way_rolls_back_and_rerun_converges(pg_server, dev_db, rows_lost):
    before = table_hash(pg_server, dev_db, "public", "api_usage_metric")
    holder = pg_server.connect(dev_db, autocommit=False)
    with holder.cursor() as cur:  # a reader: the merge copies, then waits for ACCESS EXCLUSIVE to retire the source
        cur.execute("SELECT count(*) FROM api_usage_metric")
    proc = start_module("pgsafe_table_merge", merge_params(pg_server, dev_db, lock_timeout="60s"))
    pid = None
    for _ in range(200):
        rows = pg_server.execute(dev_db, "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = "
                                         "'pgsafe' AND wait_event_type = 'Lock'", (dev_db,))
        if rows:
            pid = rows[0][0]
            break
        time.sleep(0.1)
    assert pid, "the merge never reached the retire step"
    pg_server.execute("postgres", "SELECT pg_terminate_backend(%s)", (pid,))
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "rolled back" in out
    holder.rollback()
    holder.close()
    # Half-way means nothing: no target created, source intact, nothing quarantined.
    assert not exists(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric")
    assert table_hash(pg_server, dev_db, "public", "api_usage_metric") == before
    assert quarantined(pg_server, dev_db, "api_usage_metric") is None

    params = merge_params(pg_server, dev_db)
    done = run_module("pgsafe_table_merge", params)
    assert done["rc"] == 0 and done["action"] == "merged" and done["inserted"] == 250
    qschema, qname = quarantined(pg_server, dev_db, "api_usage_metric")
    assert table_hash(pg_server, dev_db, qschema, qname) == before
    lost = merged_rows_missing(pg_server, dev_db, qschema, qname)
    rows_lost(lost)
    assert lost == 0
    assert not run_module("pgsafe_table_merge", params)["changed"]


# --------------------------------------------------------------------------- case 17: writes during the merge
def test_writes_to_the_source_during_the_merge_are_merged_or_rejected_never_stranded(pg_server, dev_db, rows_lost):
    committed, errors, stop = [], [], threading.Event()

    def writer():
        conn = pg_server.connect(dev_db)
        while not stop.is_set():
            new_id = str(uuid.uuid4())
            try:
                with conn.cursor() as cur:
                    cur.execute('''INSERT INTO api_usage_metric (id, provider, model, success, "responseTime")
                                   VALUES (%s, 'openai', 'late-writer', true, 42)''', (new_id,))
                committed.append(new_id)
            except psycopg2.Error as exc:
                errors.append(str(exc).splitlines()[0])
            time.sleep(0.01)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    try:
        done = run_module("pgsafe_table_merge", merge_params(pg_server, dev_db, lock_timeout="20s"))
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert done["rc"] == 0, done.get("msg")
    assert committed, "the writer never got a row in"
    assert any("does not exist" in e for e in errors), errors[:3]  # writes after the merge fail loudly
    present = {r[0] for r in pg_server.execute(dev_db, 'SELECT id::text FROM "bazaar-vid_api_usage_metric" '
                                                       "WHERE model = 'late-writer'")}
    stranded = [i for i in committed if i not in present]
    rows_lost(len(stranded))
    assert not stranded
    assert done["proof"]["source_rows"] == 250 + len(committed)


# --------------------------------------------------------------------------- case 19: row lands after planning
def test_empty_table_that_gains_a_row_after_planning_is_skipped_and_reported(pg_server, prod_db, rows_lost):
    params = dict(conn_params(pg_server, prod_db), run_id="t-empty", tables=EMPTY + ["api_usage_metric"])
    plan = run_module("pgsafe_table_retire", params, check=True)
    assert plan["rc"] == 0 and {t["action"] for t in plan["tables"]} == {"retire"}
    project = pg_server.execute(prod_db, 'SELECT id FROM "bazaar-vid_project" LIMIT 1')[0][0]
    pg_server.execute(prod_db, '''INSERT INTO "bazaar-vid_patch" ("projectId", patch) VALUES (%s, '{"op": "late"}')''',
                      (project,))
    before = table_hash(pg_server, prod_db, "public", "bazaar-vid_patch")
    result = run_module("pgsafe_table_retire", params, diff=True)
    assert result["rc"] == 0 and result["changed"]
    assert result["skipped"] == [{"table": '"public"."bazaar-vid_patch"', "row_count": 1,
                                  "reason": "not empty: 1 rows (the plan expected an empty table); left in place"}]
    assert exists(pg_server, prod_db, "public", "bazaar-vid_patch")
    assert table_hash(pg_server, prod_db, "public", "bazaar-vid_patch") == before
    for name in [n for n in EMPTY if n != "bazaar-vid_patch"] + ["api_usage_metric"]:
        assert not exists(pg_server, prod_db, "public", name) and quarantined(pg_server, prod_db, name)
    rows_lost(0 if table_hash(pg_server, prod_db, "public", "bazaar-vid_patch")[0] == 1 else 1)
    again = run_module("pgsafe_table_retire", params)
    assert not again["changed"] and len(again["skipped"]) == 1


def test_emptiness_is_rechecked_under_the_lock_inside_the_moving_transaction(pg_server, prod_db, rows_lost):
    """A row inserted by a transaction that commits while the retire waits for its lock is seen."""
    project = pg_server.execute(prod_db, 'SELECT id FROM "bazaar-vid_project" LIMIT 1')[0][0]
    writer = pg_server.connect(prod_db, autocommit=False)
    with writer.cursor() as cur:
        cur.execute('''INSERT INTO "bazaar-vid_scene_plan" ("projectId", "rawReasoning", "planData", "userPrompt")
                       VALUES (%s, 'r', '{}', 'p')''', (project,))
    proc = start_module("pgsafe_table_retire", dict(conn_params(pg_server, prod_db), run_id="t-race",
                                                    tables=["bazaar-vid_scene_plan"], lock_timeout="30s"))
    for _ in range(100):
        if pg_server.execute(prod_db, "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'pgsafe' "
                                      "AND wait_event_type = 'Lock'", (prod_db,)):
            break
        time.sleep(0.1)
    writer.commit()  # the row lands while the retire waits for ACCESS EXCLUSIVE
    writer.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert '"row_count": 1' in out and "not empty" in out
    assert count(pg_server, prod_db, "public", "bazaar-vid_scene_plan") == 1
    rows_lost(0)


# --------------------------------------------------------------------------- case 20: dependents
def test_table_with_view_fk_or_function_body_dependents_is_refused(pg_server, prod_db, rows_lost):
    pg_server.execute(prod_db, '''
        CREATE VIEW patch_view AS SELECT id FROM "bazaar-vid_patch";
        CREATE TABLE plan_note (id int PRIMARY KEY, plan_id uuid REFERENCES "bazaar-vid_scene_plan" (id));
        CREATE FUNCTION count_specs() RETURNS bigint LANGUAGE plpgsql AS
            $$ BEGIN RETURN (SELECT count(*) FROM "bazaar-vid_scene_specs"); END $$;''')
    params = dict(conn_params(pg_server, prod_db), run_id="t-deps", tables=EMPTY)
    result = run_module("pgsafe_table_retire", params)
    assert result["rc"] == 0
    blocked = {b["table"]: b["reason"] for b in result["blocked"]}
    assert set(blocked) == {'"public"."bazaar-vid_patch"', '"public"."bazaar-vid_scene_plan"',
                            '"public"."bazaar-vid_scene_specs"'}
    assert "view" in blocked['"public"."bazaar-vid_patch"'] and "patch_view" in blocked['"public"."bazaar-vid_patch"']
    assert "foreign key" in blocked['"public"."bazaar-vid_scene_plan"'] and "plan_note" in blocked[
        '"public"."bazaar-vid_scene_plan"']
    assert "count_specs" in blocked['"public"."bazaar-vid_scene_specs"']
    for name in ("bazaar-vid_patch", "bazaar-vid_scene_plan", "bazaar-vid_scene_specs"):
        assert exists(pg_server, prod_db, "public", name)
    assert quarantined(pg_server, prod_db, "bazaar-vid_component_error")
    assert pg_server.execute(prod_db, "SELECT count(*) FROM patch_view")[0][0] == 0  # the view still works
    failing = run_module("pgsafe_table_retire", dict(params, fail_on_skipped=True))
    assert failing["rc"] != 0 and "patch_view" in failing["msg"]
    rows_lost(0)


# --------------------------------------------------------------------------- restore and purge
def test_retired_table_restores_in_one_step_and_purges_only_with_a_backup(pg_server, prod_db, rows_lost):
    params = dict(conn_params(pg_server, prod_db), run_id="t-retire", tables=["api_usage_metric"],
                  retention_days=0)
    assert run_module("pgsafe_table_retire", params)["changed"]
    back = run_module("pgsafe_table_retire", dict(params, run_id="t-back", state="restored",
                                                  restore_run_id="t-retire", tables=[]), diff=True)
    assert back["rc"] == 0 and back["changed"] and back["tables"][0]["action"] == "restored"
    assert exists(pg_server, prod_db, "public", "api_usage_metric")
    again = run_module("pgsafe_table_retire", dict(params, state="restored", tables=["api_usage_metric"]))
    assert again["rc"] == 0 and not again["changed"]
    # retire again, then purge: refused without a backup id, done with one, RESTRICT.
    assert run_module("pgsafe_table_retire", dict(params, run_id="t-retire2"))["changed"]
    refused = run_module("pgsafe_table_retire", dict(params, state="purged", tables=[]))
    assert refused["rc"] != 0 and "backup_id" in refused["msg"]
    planned = run_module("pgsafe_table_retire", dict(params, state="purged", tables=[], backup_id="b"), check=True)
    assert [t["original"] for t in planned["tables"]] == ['"public"."api_usage_metric"']
    purged = run_module("pgsafe_table_retire", dict(params, state="purged", tables=[], backup_id="final-dump-1"))
    assert purged["rc"] == 0 and purged["tables"][0]["action"] == "purged"
    assert pg_server.execute(prod_db, "SELECT purge_backup_id FROM pgsafe.quarantined_object WHERE purged_at IS NOT NULL"
                             ) == [("final-dump-1",)]
    rows_lost(0)


def test_retired_table_is_out_of_reach_of_deletes_in_live_tables_and_gets_its_keys_back(pg_server, prod_db, rows_lost):
    """A retired table's ON DELETE CASCADE key must not delete its set-aside rows when the app deletes a
    parent row (foreign key actions run as the table's owner, whatever the app may touch), nor must a
    RESTRICT key make that delete fail, as after a real drop.  Restore adds the keys back; one whose rows
    lost their parent meanwhile stays NOT VALID, rows kept, and the result says how to fix it."""
    pg_server.execute(prod_db, '''
        CREATE TABLE "app Parent" (id int PRIMARY KEY);
        INSERT INTO "app Parent" SELECT g FROM generate_series(1, 3) g;
        CREATE TABLE "legacy-Child" (id int PRIMARY KEY,
            parent_id int CONSTRAINT "child→parent" REFERENCES "app Parent" ON DELETE CASCADE,
            other_id int);
        INSERT INTO "legacy-Child" VALUES (1, 1, 2), (2, 1, 3), (3, 2, 3);
        ALTER TABLE "legacy-Child" ADD CONSTRAINT "restrict fk" FOREIGN KEY (other_id) REFERENCES "app Parent"
            ON DELETE RESTRICT NOT VALID;''')
    before = table_hash(pg_server, prod_db, "public", "legacy-Child")
    params = dict(conn_params(pg_server, prod_db), run_id="t-fk", tables=[{"name": "legacy-Child", "expected_rows": 3}],
                  retention_days=0)
    retired = run_module("pgsafe_table_retire", params)
    assert retired["rc"] == 0 and retired["changed"], {k: v for k, v in retired.items() if k != "invocation"}
    quarantine = retired["tables"][0]["quarantine_table"]
    # The app deletes parent rows: nothing cascades into the quarantine, nothing is refused.
    pg_server.execute(prod_db, 'DELETE FROM "app Parent" WHERE id IN (1, 3)')
    assert pg_server.execute(prod_db, "SELECT count(*) FROM " + quarantine)[0][0] == 3
    back = run_module("pgsafe_table_retire", dict(params, run_id="t-fk-back", state="restored",
                                                  restore_run_id="t-fk", tables=[]))
    assert back["rc"] == 0 and back["tables"][0]["action"] == "restored", back
    assert table_hash(pg_server, prod_db, "public", "legacy-Child") == before
    keys = dict(pg_server.execute(prod_db, "SELECT conname, convalidated FROM pg_constraint "
                                           "WHERE conrelid = '\"legacy-Child\"'::regclass AND contype = 'f'"))
    assert keys == {"child→parent": False, "restrict fk": False}  # orphans now: kept, key not validated
    states = {fk["constraint"]: fk["state"] for fk in back["tables"][0]["foreign_keys"]}
    assert states == {"child→parent": "not valid", "restrict fk": "not valid, as before"}
    assert "VALIDATE CONSTRAINT" in back["tables"][0]["reason"]
    rows_lost(3 - pg_server.execute(prod_db, 'SELECT count(*) FROM "legacy-Child"')[0][0])


# --------------------------------------------------------------------------- case 21: cross-schema dependency
def test_public_function_calling_auth_user_id_blocks_auth_only(pg_server, dev_db, rows_lost):
    pg_server.execute(dev_db, '''CREATE FUNCTION public.current_app_user() RETURNS text LANGUAGE sql STABLE
                                 AS $$ SELECT auth.user_id() $$''')
    synced = table_hash(pg_server, dev_db, "neon_auth", "users_sync")
    params = dict(conn_params(pg_server, dev_db), run_id="t-auth", schemas=["auth", "pgrst", "neon_auth"])
    refused = run_module("pgsafe_schema_removal", params)
    assert refused["rc"] != 0 and "nothing dropped" in refused["msg"]
    assert "current_app_user" in refused["msg"] and "auth" in refused["msg"]
    assert all(schema_exists(pg_server, dev_db, s) for s in ("auth", "pgrst", "neon_auth"))

    done = run_module("pgsafe_schema_removal", dict(params, independent=True), diff=True)
    assert done["rc"] == 0 and done["changed"]
    assert done["removed"] == ["pgrst", "neon_auth"]
    assert [b["schema"] for b in done["blocked"]] == ["auth"]
    assert schema_exists(pg_server, dev_db, "auth") and not schema_exists(pg_server, dev_db, "neon_auth")
    assert pg_server.execute(dev_db, "SELECT public.current_app_user()") == [(None,)]  # still works
    neon = [s for s in done["schemas"] if s["schema"] == "neon_auth"][0]
    assert {"kind": "table", "name": '"neon_auth"."users_sync"', "owner": "postgres", "rows": synced[0]} in neon["objects"]
    assert neon["statements"] == ['DROP TABLE "neon_auth"."users_sync" RESTRICT', 'DROP SCHEMA "neon_auth" RESTRICT']
    journal = pg_server.execute(dev_db, "SELECT object FROM pgsafe.journal WHERE step = 'schema_removal' "
                                        "AND status = 'completed' ORDER BY id")
    assert [j[0] for j in journal] == ['"pgrst"', '"neon_auth"']
    again = run_module("pgsafe_schema_removal", dict(params, independent=True))
    assert again["rc"] == 0 and not again["changed"] and [b["schema"] for b in again["blocked"]] == ["auth"]
    rows_lost(0)


def test_recorded_dependents_default_policy_view_block_even_when_allowed(pg_server, dev_db, rows_lost):
    pg_server.execute(dev_db, '''CREATE TABLE public.notes (id int, who text DEFAULT auth.user_id());
                                 ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
                                 CREATE POLICY own_notes ON public.notes USING (who = auth.user_id());
                                 CREATE VIEW public.me AS SELECT auth.session() AS claims;''')
    params = dict(conn_params(pg_server, dev_db), run_id="t-rec", schemas=["auth"], allow_dependents=["auth"])
    plan = run_module("pgsafe_schema_removal", params, check=True)
    deps = " ".join(d["description"] for d in plan["schemas"][0]["dependents"])
    assert "default value for column who" in deps and "policy own_notes" in deps and "view me" in deps
    result = run_module("pgsafe_schema_removal", params)
    assert result["rc"] != 0 and schema_exists(pg_server, dev_db, "auth")
    rows_lost(0)


# --------------------------------------------------------------------------- schema owned by another role
def test_schema_owned_by_another_role_is_refused_for_a_login_that_cannot_drop_it(pg_server, dev_db, rows_lost):
    from ansible.module_utils.pgsafe_meta import META_DDL
    suffix = uuid.uuid4().hex[:8]
    owner, login, password = f"owner_{suffix}", f"limited_{suffix}", "pw-" + suffix
    pg_server.execute("postgres", f'CREATE ROLE "{owner}"')
    pg_server.execute("postgres", f"CREATE ROLE \"{login}\" LOGIN PASSWORD '{password}'")
    try:
        pg_server.execute(dev_db, f'''CREATE SCHEMA legacy_stuff AUTHORIZATION "{owner}";
                                     CREATE TABLE legacy_stuff.kept (id int); INSERT INTO legacy_stuff.kept VALUES (1);
                                     GRANT USAGE ON SCHEMA legacy_stuff TO "{login}";
                                     {META_DDL}
                                     GRANT USAGE, CREATE ON SCHEMA pgsafe TO "{login}";
                                     GRANT ALL ON ALL TABLES IN SCHEMA pgsafe TO "{login}";
                                     GRANT ALL ON ALL SEQUENCES IN SCHEMA pgsafe TO "{login}";''')
        params = dict(conn_params(pg_server, dev_db), login_user=login, login_password=password, run_id="t-own",
                      schemas=["legacy_stuff", "pgrst"], independent=True)
        pg_server.execute(dev_db, f'GRANT ALL ON SCHEMA pgrst TO "{login}"; ALTER SCHEMA pgrst OWNER TO "{login}"; '
                                  f'ALTER FUNCTION pgrst.pre_config() OWNER TO "{login}"')
        result = run_module("pgsafe_schema_removal", params)
        assert result["rc"] == 0, result.get("msg")
        assert [b["schema"] for b in result["blocked"]] == ["legacy_stuff"]
        assert f"owned by {owner}" in result["blocked"][0]["reason"]
        assert result["removed"] == ["pgrst"]
        assert pg_server.execute(dev_db, "SELECT count(*) FROM legacy_stuff.kept") == [(1,)]
        strict = run_module("pgsafe_schema_removal", dict(params, independent=False))
        assert strict["rc"] != 0 and f"owned by {owner}" in strict["msg"]
        # Case 24: the login lacks ownership of a table to retire or merge: refused before any change.
        login_params = dict(conn_params(pg_server, dev_db), login_user=login, login_password=password, run_id="t-own")
        retire = run_module("pgsafe_table_retire", dict(login_params, tables=["bazaar-vid_patch"]))
        assert retire["rc"] == 0 and "not the owner" in retire["blocked"][0]["reason"]
        assert exists(pg_server, dev_db, "public", "bazaar-vid_patch")
        merged = run_module("pgsafe_table_merge", dict(merge_params(pg_server, dev_db), login_user=login,
                                                       login_password=password))
        assert merged["rc"] != 0 and "not the owner" in merged["msg"]
        assert not exists(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric")
    finally:
        pg_server.execute(dev_db, "DROP SCHEMA IF EXISTS legacy_stuff CASCADE")  # test teardown only
        pg_server.execute(dev_db, f'DROP OWNED BY "{login}", "{owner}"')
        pg_server.execute("postgres", f'DROP ROLE IF EXISTS "{login}"')
        pg_server.execute("postgres", f'DROP ROLE IF EXISTS "{owner}"')
    rows_lost(0)


# --------------------------------------------------------------------------- case 22: hostile names
HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'


def test_hostile_and_long_names_are_plain_names(pg_server, prod_db, rows_lost):
    long_a = "bazaar-vid_" + "a" * 45 + "_one"  # 60 bytes: "public_" + name needs 67, so it is hashed
    long_b = "bazaar-vid_" + "a" * 45 + "_two"
    for name in (HOSTILE, long_a, long_b):
        pg_server.execute(prod_db, 'CREATE TABLE "{0}" (id serial PRIMARY KEY, "mixed Case" text)'.format(
            name.replace('"', '""')))
    users = table_hash(pg_server, prod_db, "public", "bazaar-vid_user")
    params = dict(conn_params(pg_server, prod_db), run_id="t-hostile",
                  tables=[{"schema": "public", "name": HOSTILE}, {"name": long_a}, {"name": long_b}])
    result = run_module("pgsafe_table_retire", params)
    assert result["rc"] == 0 and [t["action"] for t in result["tables"]] == ["retired"] * 3
    names = [t["quarantine_name"] for t in result["tables"]]
    assert len(set(names)) == 3 and all(len(n.encode()) <= 63 for n in names)
    assert table_hash(pg_server, prod_db, "public", "bazaar-vid_user") == users
    back = run_module("pgsafe_table_retire", dict(params, state="restored", restore_run_id="t-hostile", tables=[]))
    assert back["rc"] == 0 and all(exists(pg_server, prod_db, "public", n) for n in (HOSTILE, long_a, long_b))
    # The owned sequence moved with the table and back: inserts still work.
    pg_server.execute(prod_db, 'INSERT INTO "{0}" ("mixed Case") VALUES (\'x\')'.format(HOSTILE.replace('"', '""')))
    rows_lost(0)


def test_merge_with_quoted_spaced_unicode_names(pg_server, prod_db, rows_lost):
    src, tgt = 'old "metric" tablé', "bazaar-vid_new metric"
    pg_server.execute(prod_db, '''CREATE TABLE "old ""metric"" tablé" (id integer PRIMARY KEY, "user""Id" text,
                                      "naïve value" numeric(6,2));
                                  INSERT INTO "old ""metric"" tablé" SELECT i, 'u' || i, i * 1.5 FROM generate_series(1, 40) i;
                                  CREATE TABLE "bazaar-vid_new metric" (id bigint PRIMARY KEY, user_id varchar(10),
                                      value numeric(8,2) NOT NULL DEFAULT 0);''')
    before = table_hash(pg_server, prod_db, "public", src)
    params = dict(conn_params(pg_server, prod_db), run_id="t-uni", source='"old ""metric"" tablé"', target=tgt,
                  column_map={"id": "id", 'user"Id': "user_id", "naïve value": "value"})
    done = run_module("pgsafe_table_merge", params)
    assert done["rc"] == 0, done.get("msg")
    assert done["inserted"] == 40 and done["proof"]["ok"]
    qschema, qname = quarantined(pg_server, prod_db, src)
    assert table_hash(pg_server, prod_db, qschema, qname) == before
    assert pg_server.execute(prod_db, 'SELECT user_id, value FROM "bazaar-vid_new metric" WHERE id = 3') == [
        ("u3", Decimal("4.50"))]
    assert pg_server.execute(prod_db, 'SELECT count(*) FROM "bazaar-vid_new metric" t JOIN pgsafe_quarantine."{0}" s '
                                      'ON s.id = t.id AND s."user""Id" = t.user_id AND s."naïve value" = t.value'.format(
                                          qname.replace('"', '""'))) == [(40,)]
    rows_lost(0)


def test_lossy_cast_is_listed_and_refused(pg_server, prod_db, rows_lost):
    pg_server.execute(prod_db, '''CREATE TABLE src_lossy (id int PRIMARY KEY, label text);
                                  INSERT INTO src_lossy VALUES (1, 'short'), (2, 'this label is far too long');
                                  CREATE TABLE tgt_lossy (id int PRIMARY KEY, label varchar(10));''')
    params = dict(conn_params(pg_server, prod_db), run_id="t-lossy", source="src_lossy", target="tgt_lossy",
                  column_map={"id": "id", "label": "label"})
    result = run_module("pgsafe_table_merge", params)
    assert result["rc"] != 0 and "allow_lossy_casts" in result["msg"]
    lossy = [p for p in result["problems"] if p["kind"] == "lossy"][0]
    assert lossy["rows"] == [{"pk": {"id": 2}, "value": "this label is far too long", "would_become": "this label"}]
    assert count(pg_server, prod_db, "public", "tgt_lossy") == 0 and count(pg_server, prod_db, "public", "src_lossy") == 2
    rows_lost(0)


# --------------------------------------------------------------------------- case 24: check mode writes nothing
def test_check_mode_writes_nothing_and_takes_no_lock(pg_server, dev_db, rows_lost):
    pg_server.execute(dev_db, "SELECT pg_stat_force_next_flush()")
    catalog = "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2"
    before = pg_server.execute(dev_db, catalog)
    # Another session holds ROW EXCLUSIVE on a table: ACCESS EXCLUSIVE would wait, check mode must not.
    holder = pg_server.connect(dev_db, autocommit=False)
    with holder.cursor() as cur:
        cur.execute('LOCK TABLE "bazaar-vid_patch" IN ROW EXCLUSIVE MODE')
    try:
        for name, params in (
                ("pgsafe_table_merge", merge_params(pg_server, dev_db, lock_timeout="1s")),
                ("pgsafe_table_retire", dict(conn_params(pg_server, dev_db), run_id="c", tables=EMPTY,
                                             lock_timeout="1s")),
                ("pgsafe_schema_removal", dict(conn_params(pg_server, dev_db), run_id="c",
                                               schemas=["auth", "pgrst", "neon_auth"], lock_timeout="1s"))):
            result = run_module(name, params, check=True, diff=True)
            assert result["rc"] == 0, (name, result.get("msg"))
            assert result["changed"], name  # it plans changes...
            assert "diff" in result
    finally:
        holder.rollback()
        holder.close()
    assert pg_server.execute(dev_db, catalog) == before  # ...and made none: no pgsafe schema, nothing moved
    assert not schema_exists(pg_server, dev_db, "pgsafe")
    rows_lost(0)
