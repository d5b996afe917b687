"""Fingerprints on real Postgres: invariance (fault case 12), normalised uuids (case 7), quarantine accounting."""
from __future__ import annotations

import json

import pytest
from psycopg2 import sql

from ansible.module_utils.pgsafe_fingerprint import (
    FingerprintError, compare, fingerprint, quarantine_contribution, reconcile, table_key)
from ansible.module_utils.pgsafe_meta import ensure_meta_schema

EXPORTS = "public.bazaar-vid_exports"
ANALYTICS = "public.bazaar-vid_export_analytics"
HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'

TYPES_DDL = """
CREATE TABLE "Mixed Types" (
    id integer PRIMARY KEY, f8 double precision, f4 real, n numeric(12,4), ts timestamp, tstz timestamptz,
    d date, iv interval, b bytea, j jsonb, js json, m money, arr text[], "we""ird col" text, "ünï" text);
INSERT INTO "Mixed Types" VALUES
 (1, 0.1, 1.1, 12.5, '2025-03-01 09:00:00.123456', '2025-03-01 09:00:00+02', '2025-02-28', '1 day 02:03:04',
  '\\x00ff10', '{"b": 1, "a": [1, 2, {"z": null, "y": "é"}]}', '{"b": 1, "a": 2}', 12.34, '{x,"y z"}', 'q"q', 'ü'),
 (2, 1e300, -0.0, NULL, 'infinity', '-infinity', NULL, '-3 mons', '', '[]', '[]', NULL, '{}', NULL, NULL),
 (3, 'NaN', 3.14159, 0.0001, NULL, '2024-12-31 23:59:59.999999-08', '2000-01-01', NULL, NULL, '"s"', '"s"', 0, NULL,
  '', '');
"""


def _fp(conn, **kwargs):
    return fingerprint(conn, **kwargs)["tables"]


@pytest.fixture
def conn(pg_server, prod_db):
    c = pg_server.connect(prod_db)
    yield c
    c.close()


def test_fingerprint_counts_every_table_and_reads_only(pg_server, prod_db, conn):
    tables = _fp(conn)
    assert tables[EXPORTS]["rows"] == 134 and tables[ANALYTICS]["rows"] == 379
    assert tables["public.api_usage_metric"]["rows"] == 0 and tables["public.api_usage_metric"]["hash"] == "0" * 16
    assert tables[EXPORTS]["kinds"]["id"] == "text" and tables[EXPORTS]["kinds"]["created_at"] == "timestamp"
    assert not any(k.startswith("pgsafe") for k in tables)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
        assert len(tables) == cur.fetchone()[0]
    # two workers sharing a snapshot give the same answer as one connection
    extra = []

    def more():
        extra.append(pg_server.connect(prod_db))
        return extra[-1]
    assert fingerprint(conn, connect=more, workers=3)["tables"] == tables
    for c in extra:
        c.close()


def test_invariant_under_session_settings_and_jsonb_key_order(pg_server, conn):
    """Fault case 12: TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output differ."""
    with conn.cursor() as cur:
        cur.execute(TYPES_DDL)
    reference = _fp(conn)
    odd = pg_server.connect(conn.info.dbname)
    with odd.cursor() as cur:
        for stmt in ("SET TimeZone = 'Pacific/Chatham'", "SET DateStyle = 'SQL, DMY'", "SET extra_float_digits = -3",
                     "SET IntervalStyle = 'sql_standard'", "SET bytea_output = 'escape'",
                     "SET lc_monetary = 'C.UTF-8'", "SET search_path = pg_temp, public"):
            cur.execute(stmt)
    assert _fp(odd) == reference
    # the client's settings are untouched afterwards
    with odd.cursor() as cur:
        cur.execute("SELECT current_setting('TimeZone'), current_setting('extra_float_digits')")
        assert cur.fetchone() == ("Pacific/Chatham", "-3")
    # jsonb keys reordered by a round trip through text with another key order, json likewise
    with odd.cursor() as cur:
        cur.execute('UPDATE public."Mixed Types" SET j = \'{"a": [1, 2, {"y": "é", "z": null}], "b": 1}\'::jsonb, '
                    'js = \'{"a": 2,   "b": 1}\'::json WHERE id = 1')
        cur.execute('CREATE TABLE public."Mixed Types copy" AS SELECT * FROM public."Mixed Types" ORDER BY id DESC')
        cur.execute('ALTER TABLE public."Mixed Types" RENAME TO "Mixed Types old"')
        cur.execute('ALTER TABLE public."Mixed Types copy" RENAME TO "Mixed Types"')
    again = _fp(odd)
    assert again['public.Mixed Types']["hash"] == reference['public.Mixed Types']["hash"]
    # a real change is seen
    with odd.cursor() as cur:
        cur.execute('UPDATE public."Mixed Types" SET f8 = 0.1000000001 WHERE id = 1')
    assert _fp(odd)['public.Mixed Types']["hash"] != reference['public.Mixed Types']["hash"]
    odd.close()


def test_rows_as_jsonb_hash_like_live_rows_for_every_type(conn):
    """The quarantine path (row as to_jsonb) gives each row exactly its live hash, whatever the types."""
    from ansible.module_utils.pgsafe_content_hash import jsonb_rows_hash

    with conn.cursor() as cur:
        cur.execute(TYPES_DDL)
        cur.execute('ALTER TABLE "Mixed Types" ADD COLUMN c char(5), ADD COLUMN e_id text, ADD COLUMN nul jsonb')
        cur.execute('''UPDATE "Mixed Types" SET c = 'ab', e_id = upper(md5(id::text)::uuid::text),
                       nul = CASE id WHEN 1 THEN 'null'::jsonb WHEN 2 THEN '"s"' END''')
        live = _fp(conn, tables=["public.Mixed Types"])["public.Mixed Types"]
        cur.execute('SELECT to_jsonb(t)::text FROM "Mixed Types" t')
        rows = [r[0] for r in cur.fetchall()]
        assert jsonb_rows_hash(cur, rows, live["kinds"]) == {"rows": 3, "hash": live["hash"]}
        for normalize in ({"e_id": "uuid"}, {"n": "text", "f8": "ignore", "tstz": "timestamp_utc"}):
            key = "public.Mixed Types"
            live = _fp(conn, tables=[key], normalize={key: normalize})[key]
            assert jsonb_rows_hash(cur, rows, live["kinds"], normalize)["hash"] == live["hash"], normalize
    conn.rollback()


def test_text_to_uuid_conversion_compares_equal(conn):
    """Fault case 7/13: exports' text ids become uuid; the content compares equal after normalisation."""
    before = fingerprint(conn)
    with conn.cursor() as cur:
        cur.execute('ALTER TABLE "bazaar-vid_exports" ALTER id TYPE uuid USING id::uuid, '
                    'ALTER project_id TYPE uuid USING project_id::uuid, ALTER user_id TYPE varchar(255)')
        cur.execute('ALTER TABLE "bazaar-vid_export_analytics" ALTER export_id TYPE uuid USING export_id::uuid')
    after = fingerprint(conn)
    result = reconcile(before, after, [])
    assert result["ok"], result["summary"]
    by_table = {x["table"]: x for x in result["tables"]}
    assert by_table[EXPORTS]["status"] == "explained"
    assert "id: text -> uuid" in by_table[EXPORTS]["type_changes"]
    assert after["tables"][EXPORTS]["hash"] == before["tables"][EXPORTS]["hash"]
    # without the uuid normalisation the same data would NOT compare equal (the normalisation is doing the work)
    with conn.cursor() as cur:
        cur.execute('ALTER TABLE "bazaar-vid_exports" ALTER id TYPE text USING upper(id::text)')
    raw = fingerprint(conn, tables=[EXPORTS], uuid_text="off")["tables"][EXPORTS]["hash"]
    assert raw != before["tables"][EXPORTS]["hash"]


def test_uuid_spelling_variants_normalise(conn):
    """Fault case 7: upper case, braces, no hyphens hash as the canonical spelling; other text does not."""
    before = _fp(conn, tables=[EXPORTS])
    with conn.cursor() as cur:
        cur.execute('SELECT id FROM "bazaar-vid_exports" ORDER BY id LIMIT 4')
        ids = [r[0] for r in cur.fetchall()]
        variants = [ids[0].upper(), "{" + ids[1] + "}", ids[2].replace("-", ""), "{" + ids[3].upper().replace("-", "") + "}"]
        for old, new in zip(ids, variants, strict=True):
            cur.execute('UPDATE "bazaar-vid_exports" SET id = %s WHERE id = %s', (new, old))
    assert _fp(conn, tables=[EXPORTS]) == before
    with conn.cursor() as cur:  # a genuinely different id is a change
        cur.execute('UPDATE "bazaar-vid_exports" SET id = %s WHERE id = %s', ("not-a-uuid", variants[0]))
    assert _fp(conn, tables=[EXPORTS])[EXPORTS]["hash"] != before[EXPORTS]["hash"]
    # an explicit uuid normalisation of a column that does not cast names the table
    with pytest.raises(FingerprintError, match="bazaar-vid_exports"):
        fingerprint(conn, tables=[EXPORTS], normalize={EXPORTS: {"id": "uuid"}})


def test_quarantined_rows_account_before_equals_after_plus_quarantined(pg_server, conn):
    """Fault case 14: orphans moved to pgsafe.quarantine_row hash exactly as they did as live rows."""
    before = fingerprint(conn)
    with conn.cursor() as cur:
        ensure_meta_schema(cur)
        for table, where in (("bazaar-vid_export_analytics",
                              'export_id IN (SELECT e.id FROM "bazaar-vid_exports" e WHERE NOT EXISTS ('
                              'SELECT 1 FROM "bazaar-vid_project" p WHERE p.id::text = e.project_id))'),
                             ("bazaar-vid_exports",
                              'NOT EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id::text = t.project_id)')):
            cur.execute(sql.SQL(
                "WITH moved AS (DELETE FROM {0} t WHERE " + where + " RETURNING t.*) "
                "INSERT INTO pgsafe.quarantine_row (run_id, source_schema, source_table, source_pk, reason, row_data, "
                "row_sha256) SELECT 'run-q', 'public', %s, jsonb_build_object('id', m.id), 'orphan', to_jsonb(m), "
                "encode(sha256(convert_to(to_jsonb(m)::text, 'UTF8')), 'hex') FROM moved m").format(
                    sql.Identifier(table)), (table,))
        cur.execute('ALTER TABLE "bazaar-vid_exports" ALTER id TYPE uuid USING id::uuid, '
                    'ALTER project_id TYPE uuid USING project_id::uuid')
        cur.execute('ALTER TABLE "bazaar-vid_export_analytics" ALTER export_id TYPE uuid USING export_id::uuid')
        contribution = quarantine_contribution(cur, "public", "bazaar-vid_exports")
    conn.commit()
    assert contribution["rows"] == 2
    after = fingerprint(conn)
    assert after["tables"][EXPORTS]["rows"] == 132 and after["tables"][ANALYTICS]["rows"] == 373
    result = compare(conn, run_id="run-q", before=before, after=after)
    assert result["ok"], result["summary"]
    kinds = {(e["kind"], e["table"], e["rows"]) for e in result["explanations"]}
    assert kinds == {("quarantine", EXPORTS, 2), ("quarantine", ANALYTICS, 6)}
    # one more row deleted without a copy: flagged as loss, naming the table
    with conn.cursor() as cur:
        cur.execute('DELETE FROM "bazaar-vid_export_analytics" WHERE id = (SELECT id FROM '
                    '"bazaar-vid_export_analytics" ORDER BY id LIMIT 1)')
    conn.commit()
    lost = compare(conn, run_id="run-q", before=before)
    assert [(x["table"], x["kind"], x["rows"]) for x in lost["losses"]] == [(ANALYTICS, "rows_missing", 1)]


def test_hostile_names(pg_server, conn):
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {0}").format(sql.Identifier("sch.ema")))
        cur.execute(sql.SQL("CREATE TABLE {0}.{1} ({2} text, {3} int)").format(
            sql.Identifier("sch.ema"), sql.Identifier(HOSTILE), sql.Identifier('co"l ü'), sql.Identifier("userId")))
        cur.execute(sql.SQL("INSERT INTO {0}.{1} VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1), ('x', 2)").format(
            sql.Identifier("sch.ema"), sql.Identifier(HOSTILE)))
    key = table_key("sch.ema", HOSTILE)
    tables = _fp(conn)
    assert tables[key]["rows"] == 2 and set(tables[key]["columns"]) == {'co"l ü', "userId"}
    assert _fp(conn, tables=[key], normalize={key: {"userId": "text"}})[key]["rows"] == 2
    assert pg_server.execute(conn.info.dbname, 'SELECT count(*) FROM "bazaar-vid_user"')[0][0] == 40
    # a stored row of the hostile table hashes like the live one
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT to_jsonb(t) FROM {0}.{1} t").format(sql.Identifier("sch.ema"),
                                                                      sql.Identifier(HOSTILE)))
        rows = [r[0] for r in cur.fetchall()]
        from ansible.module_utils.pgsafe_content_hash import jsonb_rows_hash
        assert jsonb_rows_hash(cur, rows, tables[key]["kinds"])["hash"] == tables[key]["hash"]
        assert jsonb_rows_hash(cur, [json.dumps(rows[0])], tables[key]["kinds"])["hash"] != tables[key]["hash"]
    conn.rollback()


def test_row_security_fails_loudly_instead_of_undercounting(pg_server, conn):
    with conn.cursor() as cur:
        cur.execute('ALTER TABLE "bazaar-vid_project" ENABLE ROW LEVEL SECURITY')
        cur.execute('CREATE POLICY only_welcome ON "bazaar-vid_project" USING ("isWelcome")')
        cur.execute("CREATE ROLE pgsafe_fp_reader_%s LOGIN" % conn.info.backend_pid)
        cur.execute('GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgsafe_fp_reader_%s' % conn.info.backend_pid)
        cur.execute("SET ROLE pgsafe_fp_reader_%s" % conn.info.backend_pid)
    try:
        with pytest.raises(FingerprintError, match="bazaar-vid_project.*row-level security"):
            fingerprint(conn, tables=["public.bazaar-vid_project"])
    finally:
        with conn.cursor() as cur:
            cur.execute("RESET ROLE")
            cur.execute('DROP OWNED BY pgsafe_fp_reader_%s' % conn.info.backend_pid)
            cur.execute("DROP ROLE pgsafe_fp_reader_%s" % conn.info.backend_pid)
