"""Verify the Sprint 90 converge (rehearsal, prod, dev) on containerized Postgres.

Every assertion reads the real databases (and the controller's files through testinfra's `host`):
nothing is taken from the runs' own reports without checking the database behind it.  Assertions
that belong to a role run only where the converged playbooks include that role on that host
(molecule/shared/verify_lib.roles_on); until then they are skipped with "pending: role X".
"""
from __future__ import annotations

import json
import os

import pgstate
import pytest
import verify_lib as lib
from conftest import SCENARIO_DIR

# The controller: the runs' artifacts and backups are files there (every host is a database
# reached over libpq from it).
testinfra_hosts = ["local://"]

HOSTS = ["prod", "dev", "staging"]
PROD_SEED = os.environ.get("PGSAFE_MOLECULE_PROD_SEED") or "prod_partitioned"  # as molecule.yml seeds them
SEED = {"prod": PROD_SEED, "staging": PROD_SEED, "dev": "dev"}
ANALYTICS = "bazaar-vid_export_analytics"
SCALE = float(os.environ.get("PGSAFE_MOLECULE_SCALE") or 1)
# The tables whose drift a role fixes; every other table of the code must match it already.
RESPONSIBLE = {"bazaar-vid_exports": "schema_fix", "bazaar-vid_export_analytics": "schema_fix",
               "bazaar-vid_api_usage_metric": "table_merge"}


def require_role(host: str, role: str) -> None:
    if role not in lib.roles_on(SCENARIO_DIR, host):
        pytest.skip(f"pending: role {role} is not in the playbooks converged on {host}")


# --------------------------------------------------------------------------- check mode
@pytest.mark.parametrize("name", HOSTS)
def test_check_mode_converge_changed_nothing(name):
    """The check-mode converge left catalogs, data, write counters and the database list as prepared."""
    state = lib.ephemeral() / "state"
    assert (state / f"{name}.pre_converge_verified").exists(), "the check guard did not run before the converge"
    with open(state / f"{name}.pre_converge.json", encoding="utf-8") as handle:
        before_converge = json.load(handle)
    assert pgstate.differences(lib.prepared(name), before_converge) == []
    assert before_converge["data"], "the snapshot holds no tables: the comparison proved nothing"


# --------------------------------------------------------------------------- the runs
@pytest.mark.parametrize("name", HOSTS)
def test_every_run_on_the_host_succeeded(host, name):
    """The latest run of every converged playbook on the host succeeded: report and database agree."""
    plays = [p for p in lib.converged_plays(SCENARIO_DIR) if p["hosts"] == name]
    assert plays, f"no converged play targets {name}"
    for play in plays:
        playbook = play["pgsafe_playbook"]
        report_file = host.file(f"{os.environ['PGSAFE_ARTIFACTS_ROOT']}/{name}/{playbook}/latest/report.json")
        assert report_file.exists, f"no report for {playbook} on {name}"
        report = json.loads(report_file.content_string)
        assert report["status"] == "succeeded", f"{playbook} on {name}: {report['status']}"
        assert not report["check_mode"]
        failed = [k for k, s in report["sections"].items() if isinstance(s, dict) and s.get("status") == "failed"]
        assert failed == [], f"{playbook} on {name}: failed sections {failed}"
        rows = lib.query(name, "SELECT status FROM pgsafe.run WHERE run_id = %s", (report["run_id"],))
        assert rows == [("succeeded",)], f"pgsafe.run for {report['run_id']}: {rows}"


# --------------------------------------------------------------------------- nothing lost
@pytest.mark.parametrize("name", HOSTS)
def test_no_row_was_lost(after, name):
    """Every prepared row is still in its table, or in quarantine (row or table), or in a verified backup of
    a schema the plan removed; tables that are not merge targets hold exactly before - quarantined rows."""
    removed = set(lib.plan(name).get("auth_schema_removal_schemas") or []) \
        if "auth_schema_removal" in lib.roles_on(SCENARIO_DIR, name) else set()
    merge_targets = {m["target"] for m in lib.plan(name).get("table_merge_merges") or []}
    lost, miscounted = lib.lost_rows(name, after(name), removed, merge_targets)
    assert lost == {}, f"rows lost on {name} (table: rows): {lost}"
    assert miscounted == {}, f"before != after + quarantined on {name} (before, after, quarantined): {miscounted}"


@pytest.mark.parametrize("name", HOSTS)
def test_foreign_keys_and_indexes_are_valid(name):
    invalid_fks = lib.query(name, "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                                  "WHERE contype = 'f' AND NOT convalidated")
    assert invalid_fks == []
    invalid_indexes = lib.query(name, "SELECT indexrelid::regclass::text FROM pg_index "
                                      "WHERE NOT indisvalid OR NOT indisready")
    assert invalid_indexes == []


# --------------------------------------------------------------------------- schema vs the code
# The run is judged, not the world: the tables whose drift the plan fixes equal the code's afterwards;
# every other table the code declares keeps the schema it was prepared with (its pre-existing drift, e.g.
# the real prod's missing project.audio, is not the run's), or was retired on purpose (quarantine).
@pytest.mark.parametrize("table", sorted(RESPONSIBLE))
@pytest.mark.parametrize("name", HOSTS)
def test_table_the_plan_fixes_matches_the_code(name, table):
    """Columns (any order), constraints (with their names, all valid) and indexes equal the code's."""
    reference = lib.table_definition(name, "public", table, dbname=lib.ensure_reference(name))
    if table == ANALYTICS and SEED[name] == "prod_partitioned":
        reference = partitioned_like(reference)
    actual = lib.table_definition(name, "public", table)
    if actual != reference:
        require_role(name, RESPONSIBLE[table])
    assert actual is not None, f'"{table}" is missing on {name}'
    assert actual["columns"] == reference["columns"]
    assert {k: (v["type"], v["definition"]) for k, v in actual["constraints"].items()} == \
        {k: (v["type"], v["definition"]) for k, v in reference["constraints"].items()}
    assert all(v["valid"] for v in actual["constraints"].values())
    assert actual["indexes"] == reference["indexes"]


def partitioned_like(reference):
    """The code's analytics table as the partitioned variant has it: the PK includes the partition key
    (PostgreSQL requires it; tools/sprint90_fixtures.py), the indexes are the parent's (ON ONLY)."""
    out = json.loads(json.dumps(reference))
    out["constraints"][f"{ANALYTICS}_pkey"]["definition"] = "PRIMARY KEY (id, created_at)"
    out["indexes"] = sorted([d.replace(" ON public.", " ON ONLY public.").replace("btree (id)", "btree (id, created_at)"),
                             v] for d, v in out["indexes"])
    return out


def test_partitioned_analytics_fks_are_valid_on_every_partition():
    """The analytics FK exists, validated, on the partitioned parent and on each of its partitions."""
    if PROD_SEED != "prod_partitioned":
        pytest.skip("prod is not the partitioned variant")
    for name in ("prod", "staging"):
        rows = lib.query(name, """SELECT c.relname, k.convalidated FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
            WHERE i.inhparent = '"bazaar-vid_export_analytics"'::regclass ORDER BY 1""")
        assert len(rows) == len(lib.sprint90_fixtures.ANALYTICS_MONTHS) + 1, rows
        assert all(valid for _, valid in rows), f"{name}: {rows}"


@pytest.mark.parametrize("name", HOSTS)
def test_tables_outside_the_plan_kept_their_schema(name):
    """Every other table of the code: the same columns, constraints and indexes as prepared, or retired."""
    retired = {t.split(".", 1)[1] for t in lib.relocated_tables(name)}
    untouched = [t for t in lib.reference_tables() if t not in RESPONSIBLE and t not in retired]
    assert len(untouched) > 10, untouched  # the comparison covers the app's tables, not an empty set
    before, now = lib.prepared(name)["catalog"], lib.current(name, with_rows=False)["catalog"]
    for kind, position in (("columns", 1), ("constraints", 1)):
        for table in untouched:
            was = [row for row in before[kind] if row[0] == "public" and row[position] == table]
            assert [row for row in now[kind] if row[0] == "public" and row[position] == table] == was, (kind, table)


# --------------------------------------------------------------------------- roles' outcomes
@pytest.mark.parametrize("name", HOSTS)
def test_quarantine_holds_exactly_the_orphans(name):
    require_role(name, "schema_fix")
    plan = lib.plan(name).get("schema_fix_plan") or {}
    if plan.get("orphan_policy", "quarantine") != "quarantine":
        pytest.skip(f"the plan of {name} does not quarantine orphans")
    counts = lib.sprint90_fixtures.counts(SEED[name], SCALE)
    rows = dict(lib.query(name, "SELECT source_table, count(*) FROM pgsafe.quarantine_row "
                                "WHERE restored_at IS NULL AND source_schema = 'public' GROUP BY 1"))
    expected = {"bazaar-vid_exports": counts["exports_orphan"], "bazaar-vid_export_analytics": counts["analytics_orphan"]}
    assert rows == {k: v for k, v in expected.items() if v}, f"quarantine on {name}"
    if not rows:
        return
    # Only true orphans: no quarantined export points at an existing project, no quarantined analytics row
    # at a live export; every one has its provenance (run, reason, hash) and is gone from the live table.
    assert lib.query(name, """SELECT count(*) FROM pgsafe.quarantine_row q
        WHERE q.restored_at IS NULL AND q.source_table = 'bazaar-vid_exports'
          AND EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id::text = q.row_data->>'project_id')""")[0][0] == 0
    assert lib.query(name, """SELECT count(*) FROM pgsafe.quarantine_row q
        WHERE q.restored_at IS NULL AND q.source_table = 'bazaar-vid_export_analytics'
          AND EXISTS (SELECT 1 FROM "bazaar-vid_exports" e WHERE e.id::text = q.row_data->>'export_id')""")[0][0] == 0
    assert lib.query(name, """SELECT count(*) FROM pgsafe.quarantine_row q
        WHERE q.restored_at IS NULL AND (q.reason = '' OR q.row_sha256 = ''
           OR NOT EXISTS (SELECT 1 FROM pgsafe.run r WHERE r.run_id = q.run_id))""")[0][0] == 0
    assert lib.query(name, """SELECT count(*) FROM pgsafe.quarantine_row q JOIN "bazaar-vid_exports" e
        ON e.id::text = q.row_data->>'id' WHERE q.restored_at IS NULL
        AND q.source_table = 'bazaar-vid_exports'""")[0][0] == 0


@pytest.mark.parametrize("name", HOSTS)
def test_cleaned_tables_are_set_aside_with_their_rows(after, name):
    require_role(name, "table_cleanup")
    entries = lib.plan(name).get("table_cleanup_tables") or []
    if not entries:
        pytest.skip(f"no table cleanup planned on {name}")
    relocated = lib.relocated_tables(name)
    now = after(name)
    for entry in entries:
        qualified = entry["name"] if isinstance(entry, dict) else entry
        schema, table = lib.split_name(qualified)
        key = f"{schema}.{table}"
        assert not lib.regclass_exists(name, schema, table), f"{key} is still in place on {name}"
        assert key in relocated, f"{key} was not set aside (pgsafe.quarantined_object) on {name}"
        assert sorted(now["rows"].get(relocated[key], [])) == sorted(lib.prepared(name)["rows"][key])
    retain = lib.query(name, "SELECT count(*) FROM pgsafe.quarantined_object WHERE retain_until <= now() "
                             "AND restored_at IS NULL AND purged_at IS NULL")
    assert retain == [(0,)]


@pytest.mark.parametrize("name", HOSTS)
def test_merged_rows_all_arrived(name):
    require_role(name, "table_merge")
    merges = lib.plan(name).get("table_merge_merges") or []
    if not merges:
        pytest.skip(f"no merge planned on {name}")
    relocated = lib.relocated_tables(name)
    for merge in merges:
        src_schema, src_table = lib.split_name(merge["source"])
        tgt_schema, tgt_table = lib.split_name(merge["target"])
        assert not lib.regclass_exists(name, src_schema, src_table), f"merge source {merge['source']} still in place"
        held = relocated.get(f"{src_schema}.{src_table}")
        assert held, f"merge source {merge['source']} was not kept in quarantine"
        q_schema, q_table = held.split(".", 1)
        key_src = next(k for k, v in merge["column_map"].items() if v == "id")
        missing = lib.query(name, lib.sql.SQL("SELECT count(*) FROM {} s WHERE NOT EXISTS "
                                              "(SELECT 1 FROM {} t WHERE t.id = s.{})").format(
            lib.sql.Identifier(q_schema, q_table), lib.sql.Identifier(tgt_schema, tgt_table),
            lib.sql.Identifier(key_src)))[0][0]
        assert missing == 0, f"{missing} rows of {merge['source']} are not in {merge['target']}"
        kept = lib.query(name, lib.sql.SQL("SELECT count(*) FROM {}").format(lib.sql.Identifier(q_schema, q_table)))
        assert kept[0][0] == len(lib.prepared(name)["rows"][f"{src_schema}.{src_table}"])


@pytest.mark.parametrize("name", HOSTS)
def test_removed_schemas_are_gone_after_a_verified_backup(name):
    require_role(name, "auth_schema_removal")
    schemas = lib.plan(name).get("auth_schema_removal_schemas") or []
    if not schemas:
        pytest.skip(f"no schema removal planned on {name}")
    for schema in schemas:
        assert lib.query(name, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)) == [(0,)], schema
        assert lib.covered_by_backup(name, schema), f"no verified, restore-tested backup covers schema {schema}"


@pytest.mark.parametrize("name", HOSTS)
def test_backups_are_present_and_verified(host, name):
    require_role(name, "backup")
    backups = lib.verified_backups(name)
    assert backups, f"no verified, restore-tested backup recorded on {name}"
    for backup in backups:
        assert backup["locations"], backup["backup_id"]
        for location in backup["locations"]:
            assert host.file(location).is_directory, f"{backup['backup_id']}: {location} is missing"
            assert host.file(f"{location}/manifest.json").exists, f"{location} has no manifest"


def test_rehearsal_attested_the_plan_on_prod():
    require_role("staging", "rehearsal")
    rows = lib.query("prod", "SELECT result FROM pgsafe.attestation WHERE environment = 'staging' "
                             "ORDER BY attested_at DESC LIMIT 1")
    assert rows == [("passed",)], f"latest attestation of the rehearsal: {rows}"


# --------------------------------------------------------------------------- this server's castability check
def test_the_castability_precheck_of_this_server_version_names_every_bad_value():
    """On this scenario's server (PG 15: regex + server cast of each rejected value; PG >= 16: the server's own
    pg_input_is_valid), the type change's precheck lists the values that do not cast and changes nothing."""
    import sys  # noqa: PLC0415

    sys.path.insert(0, str(lib.PROJECT))
    from tests.cleanup_helpers import run_module  # noqa: PLC0415

    lib.query("staging", "DROP DATABASE IF EXISTS pgsafe_verify_cast", dbname="postgres")
    lib.query("staging", "CREATE DATABASE pgsafe_verify_cast", dbname="postgres")
    try:
        good = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        lib.query("staging", "CREATE TABLE ids (id text PRIMARY KEY); INSERT INTO ids VALUES (%s), (%s), (%s), "
                             "(%s), (%s)", (good, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12}", "not-a-uuid", "",
                                            " " + good[:-1] + "3"), dbname="pgsafe_verify_cast")
        inst = lib.instances()["staging"]
        result = run_module("pgsafe_column_types", dict(
            login_host=inst["address"], login_port=inst["port"], login_user="postgres", login_password=lib.password(),
            login_db="pgsafe_verify_cast", ssl_mode="disable", run_id="verify-cast", strategy="rewrite",
            changes=[{"table": "ids", "column": "id", "type": "uuid"}], foreign_keys=[], orphan_policy="fail"),
            check=True)
        version = lib.query("staging", "SHOW server_version_num")[0][0]
        assert result.get("failed"), result
        assert "3 value(s) do not cast to uuid" in result["msg"], result["msg"]
        for value in ("'not-a-uuid'", "''", repr(" " + good[:-1] + "3")):
            assert value in result["msg"], (value, version)
        assert lib.query("staging", "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = 'ids'::regclass AND attname = 'id'",
                         dbname="pgsafe_verify_cast") == [("text",)]
    finally:
        lib.query("staging", "DROP DATABASE IF EXISTS pgsafe_verify_cast", dbname="postgres")
