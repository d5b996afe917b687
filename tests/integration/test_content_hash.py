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


def test_typed_mapped_rows_hash_equals_the_default_path_and_the_cast_target(pg_server, prod_db):
    """A type change's before-hash (typed=True: values already of their kinds' types) is the default path's hash
    and the table's hash once altered, over every hash kind (and NULLs, an enum, UUID spellings)."""
    from ansible.module_utils.pgsafe_content_hash import mapped_rows_hash, table_kinds
    conn = pg_server.connect(prod_db, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TYPE pg_temp.mood AS ENUM ('sad', 'ok')")
            cur.execute("CREATE TEMP TABLE t (id text, u varchar(40), n int4, x numeric(8,2), f float8, r float4, "
                        "b bool, ts timestamp, tz timestamptz, j json, jb jsonb, iv interval, ip inet, d date, "
                        "m pg_temp.mood, raw bytea, arr int[])")
            cur.execute("INSERT INTO t SELECT CASE WHEN g % 3 = 0 THEN upper(gen_random_uuid()::text) "
                        "ELSE '{' || gen_random_uuid() || '}' END, CASE WHEN g % 2 = 0 THEN gen_random_uuid()::text "
                        "END, g, g / 7.0, g / 3.0, -g / 3.0, g % 2 = 0, '2025-01-01'::timestamp + g * interval '1 min', "
                        "'2025-01-01'::timestamptz + g * interval '1 h', json_build_object('g', g), "
                        "CASE WHEN g % 4 = 0 THEN 'null'::jsonb ELSE jsonb_build_object('g', g) END, "
                        "g * interval '1 mon 1 s', ('10.0.0.' || g)::inet, '2025-01-01'::date + g, "
                        "(ARRAY['sad', 'ok'])[g % 2 + 1]::pg_temp.mood, int4send(g), ARRAY[g, NULL] "
                        "FROM generate_series(1, 60) g")
            cur.execute("INSERT INTO t (id) VALUES (NULL)")
            cur.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
            temp = cur.fetchone()[0]
            casts = {"id": "uuid", "u": "uuid", "n": "int8", "ts": "timestamptz", "j": "jsonb"}
            kinds = table_kinds(cur, temp, "t")
            kinds.update({"id": "uuid", "u": "uuid", "n": "int", "ts": "timestamptz", "j": "jsonb"})
            values = {c: (sql.SQL("CAST(t.{0} AS {1})").format(sql.Identifier(c), sql.SQL(casts[c])) if c in casts
                          else sql.SQL("t.{0}").format(sql.Identifier(c))) for c in kinds}
            source = sql.SQL("{0} AS t").format(sql.Identifier(temp, "t"))
            typed = mapped_rows_hash(cur, source, values, kinds, typed=True)
            assert typed == mapped_rows_hash(cur, source, values, kinds) and typed["rows"] == 61
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            cur.execute("ALTER TABLE t " + ", ".join("ALTER COLUMN {0} TYPE {1} USING CAST({0} AS {1})".format(c, to)
                                                    for c, to in casts.items()))
            assert table_content_hash(cur, temp, "t") == typed
    finally:
        conn.rollback()
        conn.close()


def test_the_uuid_spelling_shortcuts_decide_exactly_what_the_pattern_decides(pg_server):
    """The text hash sends a value to UUID_SPELLING_RE only when cheap tests cannot settle it (length, first and
    second character, canonical shape): over spellings and near-spellings of every length around 32-38 bytes (case,
    braces, hyphens moved or missing, multi-byte characters, a non-hex first or second character), the value hashed
    is the pattern's own answer (``value::uuid::text`` when it matches, else the value)."""
    from ansible.module_utils.pgsafe_content_hash import UUID_SPELLING_RE, _sql, _uuid_or_text
    canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    plain = canonical.replace("-", "")
    values = {canonical, canonical.upper(), "{" + canonical + "}", "{" + canonical.upper() + "}", plain, plain.upper(),
              "{" + plain + "}", "A" + canonical[1:], canonical[:-1] + "F", "{" + canonical, canonical + "}",
              canonical[:8] + canonical[9:], canonical[:23] + canonical[24:], canonical[:7] + "-" + canonical[7:],
              "g" + canonical[1:], canonical[0] + "g" + canonical[2:], "{g" + canonical[1:] + "}", "-" + canonical[1:],
              "é" + canonical[2:], canonical[:-2] + "é", "{" + "é" + plain[2:] + "}", " " + canonical[1:], "x" * 36,
              "{" + "x" * 34 + "}", '{"value": "remembered 50d12c361446"}', "0" * 32, "0" * 33, "F" * 32, "f" * 39,
              "0" * 31, "", "-" * 36, "{}" + plain[:34], canonical.replace("-", "--", 1)[:36], None}
    values |= {v[:n] for v in (canonical, "{" + canonical + "}") for n in range(30, 39)}
    sql = _sql()
    conn = pg_server.connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT v, {0}, CASE WHEN v ~* {1} THEN v::uuid::text ELSE v END "
                                "FROM unnest(%s::text[]) AS v").format(
                _uuid_or_text(sql, sql.SQL("v"), "auto"), sql.Literal(UUID_SPELLING_RE)), (sorted(values, key=str),))
            rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == len(values)
    assert [row for row in rows if row[1] != row[2]] == []
    assert sum(1 for v, hashed, _ in rows if v is not None and hashed != v) >= 8  # the spellings were normalised


def test_timestamptz_hashes_as_its_utc_wall_time_whatever_the_session_zone(pg_server):
    """The live timestamptz hash (``AT TIME ZONE INTERVAL '0'``: no zone lookup per value) equals the hash of its
    UTC wall time, infinities included, in any session TimeZone."""
    from ansible.module_utils.pgsafe_content_hash import _sql, typed_value_hash
    sql = _sql()
    conn = pg_server.connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'America/St_Johns'")
            cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {0} IS DISTINCT FROM timestamp_hash_extended("
                                "timezone('UTC', v), 0)), count(*) FROM unnest(ARRAY['2024-03-10 02:30:00-05', "
                                "'1999-12-31 23:59:59.999999+14', 'infinity', '-infinity', '4713-01-01 00:00:00+00 BC', "
                                "'294276-12-31 23:59:59+00', NULL]::timestamptz[]) AS v").format(
                typed_value_hash(sql.SQL("v"), "timestamptz")))
            assert cur.fetchone() == (0, 7)
    finally:
        conn.close()
