"""Snapshots and diffs on real Postgres: Sprint 90 drift exactly, hostile identifiers, partitions, indexes.

Every database here is fresh (created per test on the shared test cluster, or a scratch database that
ddl_snapshot creates and drops on the scratch cluster).
"""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots, summarize
from ansible.module_utils.pgsafe_snapshot import ddl_snapshot, live_snapshot, qname, schema_fingerprint, take_snapshot
from tests import pg

REFERENCE = (pg.ROOT / "files/reference/bazaar_vid.sql").read_text()


def P(table, *rest):  # noqa: N802 - short helper for expected object names
    return qname("public", table, *rest)


EXPORTS, ANALYTICS = "bazaar-vid_exports", "bazaar-vid_export_analytics"
ANALYTICS_FK = P(ANALYTICS, "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk")
BRIEF = "bazaar-vid_animation_design_brief"
JOB = "bazaar-vid_custom_component_job"
NOW_SPELLINGS = {"now()", "CURRENT_TIMESTAMP"}

# The real prod (the app's introspected schema and migrations, with Sprint 90's drift) against what the
# code declares (files/reference/bazaar_vid.sql): the spec's drift, the real drift the introspection shows
# (project.audio, message.sequence nullable, three columns the code dropped, two objects under other
# names), and nothing that is only a spelling (now() vs CURRENT_TIMESTAMP, unique index vs constraint).
SHARED_REAL_DRIFT = {
    ("column", P("bazaar-vid_project", "audio"), "presence"),
    ("column", P("bazaar-vid_message", "sequence"), "not_null"),
    *{("column", P(JOB, c), "presence") for c in ("original_tsx_code", "last_fix_attempt", "fix_issues")},
    ("index", '"public"."message_project_sequence_idx"', "name"),
    ("constraint", P("bazaar-vid_scene_iteration", "bazaar-vid_scene_iteration_message_id_bazaar-vid_message_id_fk"),
     "name"),
}
PROD_VS_REFERENCE = SHARED_REAL_DRIFT | {
    ("column", P(EXPORTS, "id"), "type"),
    ("column", P(EXPORTS, "id"), "default"),  # text id: the uuid default went with the type
    ("column", P(EXPORTS, "user_id"), "type"),
    ("column", P(EXPORTS, "project_id"), "type"),
    ("column", P(ANALYTICS, "export_id"), "type"),
    ("constraint", P(EXPORTS, "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"), "presence"),
    ("constraint", P(EXPORTS, "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk"), "presence"),
    ("constraint", ANALYTICS_FK, "presence"),
    ("function", '"public"."show_db_tree"()', "presence"),
    ("table", P("api_usage_metric"), "presence"),  # the only table the code does not declare
}
DEV_VS_REFERENCE = SHARED_REAL_DRIFT | {
    ("column", P(ANALYTICS, "export_id"), "type"),
    ("constraint", ANALYTICS_FK, "presence"),
    ("table", P("bazaar-vid_api_usage_metric"), "presence"),
    ("table", P("api_usage_metric"), "presence"),
    ("schema", '"auth"', "presence"), ("schema", '"pgrst"', "presence"), ("schema", '"neon_auth"', "presence"),
    ("table", '"neon_auth"."users_sync"', "presence"),
    ("function", '"auth"."session"()', "presence"), ("function", '"auth"."user_id"()', "presence"),
    ("function", '"pgrst"."pre_config"()', "presence"),
    *{("column", P(BRIEF, c), "comment") for c in ("originalTsxCode", "lastFixAttempt", "fixIssues")},
}
# Columns added by later migrations sit at the end in both databases; prod's message, job and iteration
# tables also got columns in another order than the code declares them.
PROD_COLUMN_ORDER = {P(t) for t in ("bazaar-vid_user", "bazaar-vid_project", "bazaar-vid_scene", "bazaar-vid_message",
                                    JOB, "bazaar-vid_scene_iteration")}
DEV_COLUMN_ORDER = {P(t) for t in ("bazaar-vid_user", "bazaar-vid_project", "bazaar-vid_scene")}


def assert_actionable(differences, reference):
    """What a DBA can act on: no declared table called extra, no spelling as drift, no drop of data."""
    declared = set(reference["tables"])
    for d in differences:
        if d["kind"] == "table" and d["right"] is None:
            assert d["object"] not in declared, d
        if d["attribute"] == "default":
            assert not {d["left"], d["right"]} <= NOW_SPELLINGS, d
        note = d["hazard"]["note"]
        if d["kind"] in ("table", "schema") and d["right"] is None:
            assert "DROP" not in note.upper().replace("NEVER DROP", ""), d  # never told to drop what has data
            if "holds data" in d["summary"] or "with data" in note:
                assert "never drop" in note.lower(), d


def keyset(diffs):
    return {(d["kind"], d["object"], d["attribute"]) for d in diffs}


def snap(server, db, **kw):
    return live_snapshot(server.module_params(db), **kw)


@pytest.fixture(scope="module")
def reference(scratch_server):
    """The code's reference schema, loaded into a throwaway database on the scratch server."""
    snapshot, name = ddl_snapshot(scratch_server.module_params("postgres"), REFERENCE, label="bazaar_vid.sql")
    assert scratch_server.execute("postgres", "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == [(0,)]
    return snapshot


def test_prod_vs_reference_is_exactly_the_real_drift(pg_server, prod_db, reference):
    result = summarize(diff_snapshots(snap(pg_server, prod_db), reference))
    assert keyset(result["differences"]) == PROD_VS_REFERENCE
    assert {d["object"] for d in result["column_order"]} == PROD_COLUMN_ORDER
    assert_actionable(result["differences"], reference)
    by_key = {(d["kind"], d["object"], d["attribute"]): d for d in result["differences"]}
    exports_id = by_key[("column", P(EXPORTS, "id"), "type")]
    assert (exports_id["left"], exports_id["right"], exports_id["severity"]) == ("text", "uuid", "blocking")
    assert exports_id["hazard"]["rewrite"] and exports_id["hazard"]["cast_may_fail"]
    assert by_key[("column", P(EXPORTS, "user_id"), "type")]["right"] == "character varying(255)"
    audio = by_key[("column", P("bazaar-vid_project", "audio"), "presence")]
    assert (audio["left"], audio["right"], audio["severity"]) == (None, "jsonb", "blocking")
    index = by_key[("index", '"public"."message_project_sequence_idx"', "name")]
    assert (index["left"], index["right"]) == ("idx_message_project_sequence", "message_project_sequence_idx")
    assert "message_project_sequence_idx" in index["summary"] and "idx_message_project_sequence" in index["summary"]
    old_metric = by_key[("table", P("api_usage_metric"), "presence")]
    assert old_metric["summary"] == "table not in the code: investigate (empty)"
    assert "~0 rows" in old_metric["hazard"]["note"] and not old_metric["hazard"]["data_loss"]
    assert result["counts"] == {"blocking": 10, "warning": 5, "info": 2}


def test_dev_vs_reference_is_exactly_the_real_drift(pg_server, dev_db, reference):
    result = summarize(diff_snapshots(snap(pg_server, dev_db), reference))
    assert keyset(result["differences"]) == DEV_VS_REFERENCE
    assert {d["object"] for d in result["column_order"]} == DEV_COLUMN_ORDER
    assert_actionable(result["differences"], reference)
    comments = {d["object"]: d["left"] for d in result["differences"] if d["attribute"] == "comment"}
    assert all(comments.values()) and all(d["right"] is None for d in result["differences"]
                                          if d["attribute"] == "comment")
    by_key = {(d["kind"], d["object"], d["attribute"]): d for d in result["differences"]}
    old_metric = by_key[("table", P("api_usage_metric"), "presence")]  # 250 rows: investigate, never drop
    assert old_metric["summary"] == "table not in the code: investigate (holds data)"
    assert "~250 rows" in old_metric["hazard"]["note"] and "never drop it" in old_metric["hazard"]["note"]
    schema = by_key[("schema", '"neon_auth"', "presence")]
    assert "with data" in schema["hazard"]["note"] and not schema["hazard"]["data_loss"]


def test_snapshot_is_read_only_and_product_schema_is_ignored(pg_server, prod_db):
    before = snap(pg_server, prod_db)
    with pg_server.connect(prod_db, autocommit=False) as conn, conn.cursor() as cur:
        ensure_meta_schema(cur)
        cur.execute("INSERT INTO pgsafe.run (run_id, playbook, environment) VALUES ('r1', 'x', 'prod')")
        cur.execute('INSERT INTO "bazaar-vid_metric" (name, value) SELECT \'m\', g FROM generate_series(1, 500) g')
        cur.execute("ANALYZE")
    after = snap(pg_server, prod_db)
    assert '"pgsafe"' not in after["schemas"] and not any(k.startswith('"pgsafe') for k in after["tables"])
    assert after["tables"][P("bazaar-vid_metric")]["reltuples"] > before["tables"][P("bazaar-vid_metric")]["reltuples"]
    assert schema_fingerprint(after) == schema_fingerprint(before)
    assert diff_snapshots(before, after) == []
    # a snapshot taken with the product schema included still fingerprints the same
    full = snap(pg_server, prod_db, ignore_schemas=())
    assert '"pgsafe"' in full["schemas"] and schema_fingerprint(full) == schema_fingerprint(before)
    # READ ONLY for real: the snapshot runs inside a read-only transaction without error
    with pg_server.connect(prod_db, autocommit=False) as conn, conn.cursor() as cur:
        conn.set_session(readonly=True)
        take_snapshot(cur)
        cur.execute("SHOW transaction_read_only")
        assert cur.fetchone()[0] == "on"


HOSTILE = r'''
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA "wéird schema";
COMMENT ON SCHEMA "wéird schema" IS 'schéma';
CREATE TYPE "wéird schema"."Mood" AS ENUM ('sad', 'ok', 'ünïcode');
CREATE DOMAIN "wéird schema"."pos int" AS integer CHECK (VALUE > 0);
CREATE SEQUENCE "wéird schema"."seq ""q""" START 10 INCREMENT 5;
CREATE TABLE "wéird schema"."Order-Items ""v2""" (
    "userId" integer NOT NULL,
    "select" text,
    "to drop" text,
    "naïve col" varchar(20) DEFAULT 'x',
    "quoted""col" text COLLATE "C",
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doubled integer GENERATED ALWAYS AS ("userId" * 2) STORED,
    mood "wéird schema"."Mood",
    qty "wéird schema"."pos int",
    email citext,
    CONSTRAINT "check ""this""" CHECK ("userId" > 0)
);
ALTER TABLE "wéird schema"."Order-Items ""v2""" DROP COLUMN "to drop";
COMMENT ON TABLE "wéird schema"."Order-Items ""v2""" IS 'tâble';
COMMENT ON COLUMN "wéird schema"."Order-Items ""v2"""."quoted""col" IS 'a "quoted" comment';
CREATE INDEX "lower ""select"" idx" ON "wéird schema"."Order-Items ""v2""" (lower("select")) WHERE "userId" > 0;
CREATE UNIQUE INDEX "naïve_uq" ON "wéird schema"."Order-Items ""v2""" ("naïve col") INCLUDE ("quoted""col");
CREATE TABLE "wéird schema"."events-by-month" (
    id bigint NOT NULL, at date NOT NULL, "userId" bigint, payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE "wéird schema"."events-2026-01" PARTITION OF "wéird schema"."events-by-month"
    FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE "wéird schema"."events-2026-02" PARTITION OF "wéird schema"."events-by-month"
    FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX "events at" ON "wéird schema"."events-by-month" (at DESC NULLS LAST);
CREATE TABLE "wéird schema"."user" ("order" integer PRIMARY KEY, "group" text);
ALTER TABLE "wéird schema"."events-by-month" ADD CONSTRAINT "events→user" FOREIGN KEY ("userId")
    REFERENCES "wéird schema"."Order-Items ""v2""" (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
CREATE VIEW "wéird schema"."view ""v""" AS SELECT "userId", "select" FROM "wéird schema"."Order-Items ""v2""";
COMMENT ON COLUMN "wéird schema"."view ""v"""."select" IS 'view column';
CREATE MATERIALIZED VIEW "wéird schema"."mat-view" AS SELECT count(*) AS n FROM "wéird schema"."user";
CREATE FUNCTION "wéird schema"."touch ""it"""() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW."group" := coalesce(NEW."group", 'g'); RETURN NEW; END $$;
CREATE PROCEDURE "wéird schema"."do it"(a integer, "b c" text DEFAULT 'x') LANGUAGE sql AS $$ SELECT 1 $$;
CREATE TRIGGER "trg ""one""" BEFORE INSERT ON "wéird schema"."user" FOR EACH ROW
    EXECUTE FUNCTION "wéird schema"."touch ""it"""();
ALTER TABLE "wéird schema"."user" ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own rows" ON "wéird schema"."user" FOR SELECT TO PUBLIC USING ("order" > 0);
COMMENT ON POLICY "own rows" ON "wéird schema"."user" IS 'pólicy';
'''
W = "wéird schema"
ORDER_ITEMS = qname(W, 'Order-Items "v2"')


@pytest.fixture
def hostile_pair(pg_server):
    names = [pg_server.create_database(), pg_server.create_database()]
    try:
        for name in names:
            pg_server.execute(name, HOSTILE)
        yield names
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_hostile_identifiers_snapshot(pg_server, hostile_pair):
    s = snap(pg_server, hostile_pair[0])
    json.dumps(s)  # JSON-serialisable
    table = s["tables"][ORDER_ITEMS]
    assert list(table["columns"]) == ["userId", "select", "naïve col", 'quoted"col', "id", "doubled", "mood", "qty",
                                      "email"]
    assert [c["position"] for c in table["columns"].values()] == list(range(1, 10))  # dropped column not counted
    assert table["columns"]["id"]["identity"] == "always" and table["columns"]["doubled"]["generated"] == "stored"
    assert table["columns"]['quoted"col']["collation"] == "C" and table["columns"]["select"]["collation"] is None
    assert table["columns"]['quoted"col']["comment"] == 'a "quoted" comment'
    assert table["columns"]["mood"]["type"] == '"wéird schema"."Mood"'
    assert table["comment"] == "tâble"
    partial = s["indexes"][qname(W, 'lower "select" idx')]
    assert partial["keys"] == ['lower("select")'] and partial["predicate"] == '"userId" > 0'
    assert partial["definition"].startswith('CREATE INDEX ON "wéird schema"."Order-Items ""v2"""')
    covering = s["indexes"][qname(W, "naïve_uq")]
    assert covering["unique"] and covering["keys"] == ["naïve col"] and covering["include"] == ['quoted"col']
    assert covering["definition"].endswith('("naïve col") INCLUDE ("quoted""col")')
    parent, child = s["tables"][qname(W, "events-by-month")], s["tables"][qname(W, "events-2026-01")]
    assert parent["kind"] == "partitioned table" and parent["partition_key"] == "RANGE (at)"
    assert child["partition_of"] == qname(W, "events-by-month") and "2026-01-01" in child["partition_bound"]
    # indexes and FKs cloned onto partitions are the parent's: reported once
    assert {i["table"] for i in s["indexes"].values() if i["name"] == "events at"} == {qname(W, "events-by-month")}
    assert not any(i["table"] == qname(W, "events-2026-01") for i in s["indexes"].values())
    fk = s["constraints"][qname(W, "events-by-month", "events→user")]
    assert (fk["on_delete"], fk["deferrable"], fk["initially_deferred"], fk["references"]) == (
        "SET NULL", True, True, ORDER_ITEMS)
    assert not any(c["table"] == qname(W, "events-2026-01") and c["type"] == "foreign key"
                   for c in s["constraints"].values())
    assert s["constraints"][qname(W, 'Order-Items "v2"', 'check "this"')]["type"] == "check"
    assert s["enums"][qname(W, "Mood")]["labels"] == ["sad", "ok", "ünïcode"]
    assert s["domains"][qname(W, "pos int")]["constraints"][0].endswith("CHECK ((VALUE > 0))")
    assert s["sequences"][qname(W, 'seq "q"')]["increment"] == 5
    assert not any("Order-Items" in k for k in s["sequences"])  # the identity sequence belongs to its column
    assert qname(W, 'touch "it"') + "()" in s["functions"]
    assert s["functions"][qname(W, "do it") + '(IN a integer, IN "b c" text)']["kind"] == "procedure"
    assert s["triggers"][qname(W, "user", 'trg "one"')]["definition"].startswith("CREATE TRIGGER BEFORE INSERT")
    assert s["policies"][qname(W, "user", "own rows")]["comment"] == "pólicy"
    assert s["tables"][qname(W, "user")]["rls_enabled"]
    assert s["views"][qname(W, 'view "v"')]["columns"]["select"]["comment"] == "view column"
    assert s["views"][qname(W, "mat-view")]["kind"] == "materialized view"
    assert s["extensions"]['"citext"']["version"]
    # extension members (citext's functions and type) are not reported as our own objects
    assert not any(f["name"].startswith("citext") for f in s["functions"].values())
    assert s["schemas"]['"wéird schema"']["comment"] == "schéma"


def test_hostile_identical_then_exact_differences(pg_server, hostile_pair):
    one, two = hostile_pair
    assert diff_snapshots(snap(pg_server, one), snap(pg_server, two)) == []
    assert schema_fingerprint(snap(pg_server, one)) == schema_fingerprint(snap(pg_server, two))
    pg_server.execute(two, r'''
        ALTER TABLE "wéird schema"."Order-Items ""v2""" ADD COLUMN "later" int;
        ALTER TABLE "wéird schema"."Order-Items ""v2""" DROP COLUMN "later";
        ALTER TABLE "wéird schema"."Order-Items ""v2""" ALTER COLUMN "naïve col" TYPE varchar(50);
        ALTER TABLE "wéird schema"."Order-Items ""v2""" ALTER COLUMN "select" SET NOT NULL;
        DROP INDEX "wéird schema"."lower ""select"" idx";
        CREATE INDEX "lower ""select"" idx" ON "wéird schema"."Order-Items ""v2""" (lower("select")) WHERE "userId" > 1;
        COMMENT ON INDEX "wéird schema"."naïve_uq" IS 'îndex';
        COMMENT ON CONSTRAINT "events→user" ON "wéird schema"."events-by-month" IS 'fk';
        COMMENT ON TRIGGER "trg ""one""" ON "wéird schema"."user" IS 'trîgger';
        COMMENT ON FUNCTION "wéird schema"."touch ""it"""() IS 'fn';
        COMMENT ON MATERIALIZED VIEW "wéird schema"."mat-view" IS 'mv';
        COMMENT ON TYPE "wéird schema"."Mood" IS 'enum';
        COMMENT ON DOMAIN "wéird schema"."pos int" IS 'dom';
        COMMENT ON SEQUENCE "wéird schema"."seq ""q""" IS 'sq';
        COMMENT ON EXTENSION citext IS 'ext';
        ALTER TYPE "wéird schema"."Mood" ADD VALUE 'new';
        CREATE TABLE "wéird schema"."events-2026-03" PARTITION OF "wéird schema"."events-by-month"
            FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
    ''')
    diffs = diff_snapshots(snap(pg_server, one), snap(pg_server, two))
    oi = ORDER_ITEMS
    assert keyset(diffs) == {
        ("column", oi + '."naïve col"', "type"),
        ("column", oi + '."select"', "not_null"),
        ("index", qname(W, 'lower "select" idx'), "definition"),
        ("index", qname(W, "naïve_uq"), "comment"),
        ("constraint", qname(W, "events-by-month", "events→user"), "comment"),
        ("trigger", qname(W, "user", 'trg "one"'), "comment"),
        ("function", qname(W, 'touch "it"') + "()", "comment"),
        ("view", qname(W, "mat-view"), "comment"),
        ("enum", qname(W, "Mood"), "comment"),
        ("enum", qname(W, "Mood"), "labels"),
        ("domain", qname(W, "pos int"), "comment"),
        ("sequence", qname(W, 'seq "q"'), "comment"),
        ("extension", '"citext"', "comment"),
        ("table", qname(W, "events-2026-03"), "presence"),
    }
    by_key = {(d["kind"], d["object"], d["attribute"]): d for d in diffs}
    widen = by_key[("column", oi + '."naïve col"', "type")]
    assert not widen["hazard"]["rewrite"] and not widen["hazard"]["cast_may_fail"]
    assert by_key[("column", oi + '."select"', "not_null")]["hazard"]["scan"]
    assert by_key[("enum", qname(W, "Mood"), "labels")]["severity"] == "blocking"


def test_playbook_drift_report_names_the_spec_drift(pg_server, scratch_server, prod_db, dev_db, tmp_path):
    before = {db: schema_fingerprint(snap(pg_server, db)) for db in (prod_db, dev_db)}
    inv = pg.write_inventory(tmp_path, {"prod": (pg_server, prod_db), "dev": (pg_server, dev_db),
                                        "staging": (scratch_server, "postgres")})
    artifacts = tmp_path / "artifacts"
    proc = pg.run_playbook("drift_report.yml", inventory=str(inv), env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    expected = {"prod": PROD_VS_REFERENCE, "dev": DEV_VS_REFERENCE}
    for env in ("prod", "dev"):
        run_dir = artifacts / env / "drift_report" / "latest"
        report = json.loads((run_dir / "report.json").read_text())
        section = report["sections"]["drift_report"]
        comparisons = {c["right_label"]: c for c in section["comparisons"]}
        assert set(comparisons) == {"reference", "dev" if env == "prod" else "prod"}
        assert keyset(comparisons["reference"]["differences"]) == expected[env]
        assert {d["object"] for d in comparisons["reference"]["column_order"]} == (
            PROD_COLUMN_ORDER if env == "prod" else DEV_COLUMN_ORDER)
        peer = comparisons["dev" if env == "prod" else "prod"]
        assert peer["total"] > 0 and peer["left_fingerprint"] != peer["right_fingerprint"]
        assert section["fingerprint"] == before[prod_db if env == "prod" else dev_db]
        assert json.loads((run_dir / "snapshot.json").read_text())["format_version"] == 1
        page = (run_dir / "report.html").read_text()
        assert "<h3>{0} vs reference</h3>".format(env) in page and "<h4>constraint</h4>" in page
        assert "bazaar-vid_exports" in (run_dir / "report.md").read_text()
    # the targets' schemas are unchanged (the run record lives in the ignored product schema)
    assert {db: schema_fingerprint(snap(pg_server, db)) for db in (prod_db, dev_db)} == before


def test_snapshot_file_round_trip_and_bad_sources(pg_server, scratch_server, dev_db, tmp_path):
    from ansible.module_utils.pgsafe_snapshot import SnapshotSourceError, dumps, read_snapshot_file

    live = snap(pg_server, dev_db)
    path = tmp_path / "dev.json"
    path.write_text(dumps(live))
    saved = read_snapshot_file(str(path))
    assert diff_snapshots(saved, live) == [] and schema_fingerprint(saved) == schema_fingerprint(live)
    path.write_text('{"format_version": 42}')
    with pytest.raises(SnapshotSourceError, match="format_version 42"):
        read_snapshot_file(str(path))
    with pytest.raises(SnapshotSourceError, match="cannot read snapshot file"):
        read_snapshot_file(str(tmp_path / "missing.json"))
    before = {r[0] for r in scratch_server.execute("postgres", "SELECT datname FROM pg_database")}
    with pytest.raises(SnapshotSourceError, match=r"broken\.sql.*does_not_exist"):
        ddl_snapshot(scratch_server.module_params("postgres"), "CREATE TABLE t (a does_not_exist);",
                     prefix="pgsafe_scratch_test", label="broken.sql")
    after = {r[0] for r in scratch_server.execute("postgres", "SELECT datname FROM pg_database")}
    assert not {d for d in after - before if d.startswith("pgsafe_scratch_test")}  # dropped on failure too


def test_take_snapshot_leaves_the_callers_session_alone(pg_server, dev_db):
    """Callers (typefix, validation) snapshot inside their own transaction or in autocommit mode."""
    with pg_server.connect(dev_db, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET search_path = public; SET TimeZone = 'Europe/Paris'")
        conn.commit()
        in_tx = take_snapshot(cur)
        cur.execute("SHOW search_path")
        assert cur.fetchone()[0] == "public"
        cur.execute('SELECT count(*) FROM "bazaar-vid_exports"')  # unqualified names still resolve
        assert cur.fetchone()[0] > 0
        conn.rollback()
    conn = pg_server.connect(dev_db, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET search_path = public; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = -3")
            auto = take_snapshot(cur)
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "public"
    finally:
        conn.close()
    assert diff_snapshots(in_tx, auto) == [] and schema_fingerprint(in_tx) == schema_fingerprint(auto)
    assert in_tx["tables"][P(EXPORTS)]["columns"]["id"]["type"] == "uuid"


INDEX_FORMS = '''
CREATE TABLE "Keys" (id int PRIMARY KEY, "Name" text, code text COLLATE "C", n int, at date);
CREATE INDEX "by name C" ON "Keys" ("Name" COLLATE "C");
CREATE INDEX "by code" ON "Keys" (code);
CREATE INDEX "by code default" ON "Keys" (code COLLATE "default");
CREATE INDEX "pattern" ON "Keys" ("Name" text_pattern_ops, n DESC);
CREATE INDEX "nulls" ON "Keys" (n NULLS FIRST, at DESC NULLS LAST);
CREATE INDEX "hash n" ON "Keys" USING hash (n);
CREATE INDEX "incl" ON "Keys" (n) INCLUDE ("Name", code);
'''


def test_index_key_forms(pg_server):
    """Every way a key can differ is spelled: collation, operator class, order, nulls, method, INCLUDE."""
    name = pg_server.create_database()
    try:
        pg_server.execute(name, INDEX_FORMS)
        indexes = snap(pg_server, name)["indexes"]
        # an ignored column leaves the keys of the indexes on it spelled the same way
        without_code = snap(pg_server, name, ignore_patterns=["public.Keys.code"])["indexes"]
    finally:
        pg_server.drop_database(name)
    on = 'CREATE INDEX ON "public"."Keys" USING '
    assert {key: idx["definition"] for key, idx in indexes.items()} == {
        '"public"."Keys_pkey"': 'CREATE UNIQUE INDEX ON "public"."Keys" USING btree ("id")',
        '"public"."by name C"': on + 'btree ("Name" COLLATE "pg_catalog"."C")',
        '"public"."by code"': on + 'btree ("code")',  # the column's own collation is not repeated
        '"public"."by code default"': on + 'btree ("code" COLLATE "pg_catalog"."default")',
        '"public"."pattern"': on + 'btree ("Name" text_pattern_ops, "n" DESC)',
        '"public"."nulls"': on + 'btree ("n" NULLS FIRST, "at" DESC NULLS LAST)',
        '"public"."hash n"': on + 'hash ("n")',
        '"public"."incl"': on + 'btree ("n") INCLUDE ("Name", "code")',
    }
    assert {key: idx["definition"] for key, idx in without_code.items()} == {
        key: idx["definition"] for key, idx in indexes.items()}
    assert indexes['"public"."incl"']["keys"] == ["n"] and indexes['"public"."incl"']["include"] == ["Name", "code"]
