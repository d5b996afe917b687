"""pgsafe_content_hash.table_content_hash: the one way to hash a table's content, equal to the fingerprint's."""
from __future__ import annotations

from psycopg2 import sql

from ansible.module_utils.pgsafe_content_hash import add_hashes, table_content_hash
from ansible.module_utils.pgsafe_fingerprint import fingerprint

EXPORTS = "public.bazaar-vid_exports"


def test_table_content_hash_equals_the_fingerprint_and_adds_up(pg_server, prod_db):
    conn = pg_server.connect(prod_db, autocommit=False)
    try:
        whole = fingerprint(conn, tables=[EXPORTS])["tables"][EXPORTS]
        with conn.cursor() as cur:
            assert table_content_hash(cur, "public", "bazaar-vid_exports") == {"rows": whole["rows"],
                                                                                "hash": whole["hash"]}
            ids = sql.SQL("t.id < %s")
            cur.execute('SELECT max(id) FROM (SELECT id FROM "bazaar-vid_exports" ORDER BY id LIMIT 50) x')
            cut = cur.fetchone()[0]
            part = table_content_hash(cur, "public", "bazaar-vid_exports", where=ids, params=(cut,))
            rest = table_content_hash(cur, "public", "bazaar-vid_exports", where=sql.SQL("NOT (t.id < %s)"),
                                      params=(cut,))
            assert part["rows"] == 49 and part["rows"] + rest["rows"] == whole["rows"]
            assert add_hashes(part["hash"], rest["hash"]) == whole["hash"]  # additive: rows moved are accounted for
            cur.execute("SELECT current_setting('TimeZone')")
            zone = cur.fetchone()[0]
        conn.rollback()
        assert zone  # the pinned settings were restored (no SET LOCAL left behind in the caller's transaction)
    finally:
        conn.close()


def test_mapped_rows_hash_equals_the_target_once_copied(pg_server, prod_db):
    """A merge's proof: the source rows, mapped to the target's columns (renamed, cast), hash as the target rows."""
    from ansible.module_utils.pgsafe_content_hash import mapped_rows_hash, table_kinds
    conn = pg_server.connect(prod_db, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE src (ident text, n int4, at timestamp, doc json)")
            cur.execute("INSERT INTO src SELECT 'k' || g, g, '2025-01-01'::timestamp + g * interval '1 hour', "
                        "json_build_object('g', g) FROM generate_series(1, 40) g")
            cur.execute("CREATE TEMP TABLE dst (id text, n int8, at timestamptz, doc jsonb)")
            cur.execute("INSERT INTO dst SELECT ident, n, at AT TIME ZONE 'UTC', doc::jsonb FROM src")
            cur.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
            temp = cur.fetchone()[0]
            values = {"id": sql.SQL("s.ident"), "n": sql.SQL("s.n::int8"), "at": sql.SQL("s.at AT TIME ZONE 'UTC'"),
                      "doc": sql.SQL("s.doc::jsonb")}
            mapped = mapped_rows_hash(cur, sql.SQL("{0} AS s").format(sql.Identifier(temp, "src")), values,
                                      table_kinds(cur, temp, "dst"))
            assert mapped == table_content_hash(cur, temp, "dst") and mapped["rows"] == 40
    finally:
        conn.rollback()
        conn.close()
