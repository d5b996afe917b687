"""pgsafe_content_hash.table_content_hash: the one way to hash a table's content, equal to the fingerprint's."""
from __future__ import annotations

from psycopg2 import sql

from ansible.module_utils.pgsafe_content_hash import add_hashes, table_content_hash
from ansible.module_utils.pgsafe_fingerprint import fingerprint

EXPORTS = "public.bazaar-vid_exports"


def test_table_content_hash_equals_the_fingerprint_and_adds_up(pg_server, prod_db):
    conn = pg_server.connect(prod_db)
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
