"""validate.yml on real Postgres: seeded damage is caught, a clean database passes, validation never writes."""
from __future__ import annotations

import json
import time

import pytest
from psycopg2 import sql

from ansible.module_utils.pgsafe_fingerprint import fingerprint, store_fingerprint
from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from tests import pg

RUN_ID = "run-fix-dev"
FK = "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"
PROBED = {"bazaar-vid_user", "bazaar-vid_project", "bazaar-vid_exports", "bazaar-vid_export_analytics"}

# Each damage alone must fail validation, in the check named.
DAMAGES = {
    "lost_row": ['DELETE FROM api_usage_metric WHERE id = (SELECT id FROM api_usage_metric ORDER BY id LIMIT 1)'],
    "changed_value": ['UPDATE "bazaar-vid_exports" SET render_id = render_id || \'-x\' '
                      'WHERE id = (SELECT id FROM "bazaar-vid_exports" ORDER BY id LIMIT 1)'],
    "orphan_not_valid_fk": [
        'ALTER TABLE "bazaar-vid_scene" DROP CONSTRAINT "bazaar-vid_scene_projectId_bazaar-vid_project_id_fk"',
        'INSERT INTO "bazaar-vid_scene" ("projectId", "tsxCode") VALUES (gen_random_uuid(), \'orphan\')',
        'ALTER TABLE "bazaar-vid_scene" ADD CONSTRAINT "bazaar-vid_scene_projectId_bazaar-vid_project_id_fk" '
        'FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE NOT VALID'],
    "wrong_type": [f'ALTER TABLE "bazaar-vid_export_analytics" DROP CONSTRAINT "{FK}"',
                   'ALTER TABLE "bazaar-vid_export_analytics" ALTER export_id TYPE text'],
    "missing_index": ['DROP INDEX export_analytics_event_idx'],
}


# What the fix targeted: validation judges the damage below against it and against the schema right
# after the fix (the drift dev had before and that the fix does not touch is pre-existing, not a failure).
PLAN = {"schema_fix": {"changes": [{"table": "public.bazaar-vid_export_analytics", "column": "export_id",
                                    "type": "uuid"}],
                       "foreign_keys": [{"name": FK, "table": "public.bazaar-vid_export_analytics"}]}}


@pytest.fixture(scope="module")
def fixed_dev_template(pg_server, tmp_path_factory):
    """dev after a correct fix (analytics.export_id uuid + FK, the prefixed metric table), with a stored
    'before' fingerprint of run RUN_ID taken before the fix, and a snapshot file of the schema after it."""
    import sprint90_fixtures

    from ansible.module_utils.pgsafe_snapshot import dumps, take_snapshot

    name = pg_server.create_database(template=pg_server.ensure_template("dev"))
    conn = pg_server.connect(name, autocommit=False)
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
        conn.commit()
        before = fingerprint(conn)
        with conn.cursor() as cur:
            cur.execute('ALTER TABLE "bazaar-vid_export_analytics" ALTER export_id TYPE uuid USING export_id::uuid')
            cur.execute(sql.SQL('ALTER TABLE "bazaar-vid_export_analytics" ADD CONSTRAINT {0} FOREIGN KEY (export_id) '
                                'REFERENCES "bazaar-vid_exports" (id) ON DELETE CASCADE').format(sql.Identifier(FK)))
            cur.execute(sprint90_fixtures.PREFIXED_METRIC)
            store_fingerprint(cur, before, "before", RUN_ID)
        conn.commit()
        with conn.cursor() as cur:
            baseline = tmp_path_factory.mktemp("baseline") / "schema_fixed.json"
            baseline.write_text(dumps(take_snapshot(cur)))
        conn.rollback()
    finally:
        conn.close()
    yield name, str(baseline)
    pg_server.drop_database(name)


def _judged(extra, baseline):
    """validate.yml's extra vars: judge against the fixed schema and the fix's plan."""
    return dict(extra, validate_before_snapshot=baseline, validate_plan=PLAN)


def _copy(pg_server, template, statements=()):
    name = pg_server.create_database(template=template)
    for statement in statements:
        pg_server.execute(name, statement)
    return name


def _report(artifacts, host):
    return json.loads((artifacts / host / "validate" / "latest" / "report.json").read_text())


def test_each_damage_is_caught(pg_server, fixed_dev_template, tmp_path):
    template, baseline = fixed_dev_template
    hosts = {damage: _copy(pg_server, template, stmts) for damage, stmts in DAMAGES.items()}
    try:
        inv = pg.write_inventory(tmp_path / "inv", {h: (pg_server, db) for h, db in hosts.items()})
        artifacts = tmp_path / "artifacts"
        result = pg.run_playbook("validate.yml", inventory=str(inv),
                                 extra_vars=_judged({"pgsafe_artifacts_root": str(artifacts),
                                                     "pgsafe_migration_run_id": RUN_ID}, baseline))
        assert result.returncode != 0  # damaged hosts fail the play
        sections = {h: _report(artifacts, h)["sections"]["validate"] for h in hosts}
        failed = {h: sorted(c["check"] for c in s["checks"] if c["status"] == "failed") for h, s in sections.items()}
        for host in DAMAGES:
            assert _report(artifacts, host)["status"] == "failed", host

        def losses(host):
            return [(x["table"], x["kind"], x["rows"]) for x in sections[host]["integrity"]["losses"]]

        assert failed["lost_row"] == ["integrity"]
        assert losses("lost_row") == [("public.api_usage_metric", "rows_missing", 1)]
        assert failed["changed_value"] == ["integrity"]
        assert losses("changed_value") == [("public.bazaar-vid_exports", "values_changed", 0)]
        assert "foreign_keys" in failed["orphan_not_valid_fk"]
        fk_items = next(c for c in sections["orphan_not_valid_fk"]["checks"] if c["check"] == "foreign_keys")["items"]
        assert [(i["constraint"], i["orphans"]) for i in fk_items] == [
            ("bazaar-vid_scene_projectId_bazaar-vid_project_id_fk", 1)]
        assert failed["wrong_type"] == ["conformance", "crud_probe"]  # content intact: integrity still ok
        conformance = next(c for c in sections["wrong_type"]["checks"] if c["check"] == "conformance")["items"]
        assert {(i["judgement"], i["kind"], i["attribute"], i["live"], i["code"]) for i in conformance if i["fails"]} \
            >= {("targeted", "column", "type", "text", "uuid")}
        assert failed["missing_index"] == ["conformance"]
        conformance = next(c for c in sections["missing_index"]["checks"] if c["check"] == "conformance")["items"]
        assert [(i["judgement"], i["kind"], i["object"]) for i in conformance if i["fails"]] == [
            ("new", "index", '"public"."export_analytics_event_idx"')]
    finally:
        for db in hosts.values():
            pg_server.drop_database(db)


def _counters(pg_server, db):
    time.sleep(1.2)  # backends flush their statistics when they exit
    rows = pg_server.execute(db, "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup "
                                 "FROM pg_stat_user_tables")
    return {r[0]: r[1:] for r in rows}


def _fingerprints(pg_server, db):
    conn = pg_server.connect(db)
    try:
        return fingerprint(conn, tables=None)["tables"], fingerprint(conn, tables=[
            "pgsafe.run", "pgsafe.fingerprint", "pgsafe.journal", "pgsafe.quarantine_row"])["tables"]
    finally:
        conn.close()


def test_validation_never_writes(pg_server, fixed_dev_template, tmp_path):
    template, baseline = fixed_dev_template
    db = _copy(pg_server, template)
    try:
        inv = pg.write_inventory(tmp_path / "inv", {"dev": (pg_server, db)})
        extra = _judged({"pgsafe_artifacts_root": str(tmp_path / "artifacts"), "pgsafe_migration_run_id": RUN_ID},
                        baseline)
        data_before = _fingerprints(pg_server, db)
        counters_before = _counters(pg_server, db)

        # without the CRUD probe: not one write counter of any table moves
        result = pg.run_playbook("validate.yml", inventory=str(inv), extra_vars=dict(
            extra, validate_checks=["foreign_keys", "invalid_indexes", "conformance", "integrity"]))
        assert result.returncode == 0, result.stdout[-3000:]
        assert _fingerprints(pg_server, db) == data_before
        assert _counters(pg_server, db) == counters_before

        # with the probe (the default): data and fingerprints identical; only the probed tables (the plan's table,
        # the table its foreign key points at, and their parents) count the probe's attempted, rolled-back rows;
        # no live row added anywhere
        result = pg.run_playbook("validate.yml", inventory=str(inv), extra_vars=extra)
        assert result.returncode == 0, result.stdout[-3000:]
        section = _report(tmp_path / "artifacts", "dev")["sections"]["validate"]
        assert {c["check"]: c["status"] for c in section["checks"]} == {
            "foreign_keys": "ok", "invalid_indexes": "ok", "crud_probe": "ok", "conformance": "ok", "integrity": "ok"}
        assert _fingerprints(pg_server, db) == data_before
        after = _counters(pg_server, db)
        for table, values in counters_before.items():
            if table.split(".", 1)[1] in PROBED:
                assert after[table][3] == values[3], table  # n_live_tup
                assert after[table][0] > values[0], table  # probe inserts, rolled back
            else:
                assert after[table] == values, table
    finally:
        pg_server.drop_database(db)
