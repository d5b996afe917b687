"""The fingerprint's canonical form (pgsafe-fp-v4) sees every one-value change in every column type, hashes a
row stored as jsonb exactly like the live row, and gives the same answer read in pieces by several workers."""
from __future__ import annotations

import pytest
from psycopg2 import sql

from ansible.module_utils import pgsafe_fingerprint
from ansible.module_utils.pgsafe_content_hash import (ALGORITHM, add_hashes, jsonb_rows_hash, table_content_hash,
                                                      table_kinds)
from ansible.module_utils.pgsafe_fingerprint import (FingerprintError, fingerprint, load_fingerprint,
                                                     quarantine_contribution, reconcile, store_fingerprint,
                                                     table_pieces)
from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from ansible.module_utils.pgsafe_quarantine import restore_rows, write_rows

EVERY_TYPE = """
CREATE TYPE "Mood" AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE "Every Type" (
    id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric, n2 numeric(12,2), f4 real, f8 double precision,
    b bool, t text, v varchar(40), ch char(3), u uuid, tu text, ts timestamp, tstz timestamptz, d date,
    iv interval, j json, jb jsonb, ba bytea, ta text[], ia int[], ip inet, mood "Mood", m money, z float8);
INSERT INTO "Every Type" VALUES
 (1, 1, 5, 0, 5, 1.50, 1.5, 1, true, 'a', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2025-03-01 09:00:00', '2025-03-01 09:00:00+00', '2025-02-28',
  '1 mon', '{"a": 5}', '{"a": 5, "b": [1, "x"]}', '\\x00ff', '{a,b}', '{1,2}', '10.0.0.1', 'ok', 12.34, 0),
 (2, -1, -5, -4294967297, 'NaN', 0, 'NaN', 'Infinity', false, '', 'Zoë', 'x', NULL, 'not a uuid',
  'infinity', '-infinity', NULL, '-3 days', '[]', 'null', '', '{}', '{}', NULL, NULL, 0, 'NaN'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""

# (column, row id, new value): each must change the table's hash. Pairs PostgreSQL's own hash functions
# cannot tell apart are here on purpose: numeric and jsonb numbers differing in sign (hash_numeric ignores the
# sign), numeric NaN/Infinity/-Infinity (all hash alike), int8 values whose halves fold alike.
CHANGES = [
    ("i2", 1, "-1"), ("i4", 1, "-5"), ("i8", 1, "4294967297"), ("i8", 2, "4294967297"), ("i4", 3, "0"),
    ("n", 1, "-5"), ("n", 1, "5.000000000000000000001"), ("n", 2, "'Infinity'"), ("n", 2, "'-Infinity'"),
    ("n", 3, "'NaN'"), ("n", 3, "0"), ("n2", 1, "-1.50"), ("n2", 2, "NULL"),
    ("f4", 1, "-1.5"), ("f4", 2, "'Infinity'"), ("f8", 1, "1.0000000000000002"), ("f8", 2, "'-Infinity'"),
    ("f8", 2, "'NaN'"), ("f8", 3, "0"),
    ("b", 1, "false"), ("b", 3, "false"),
    ("t", 1, "'A'"), ("t", 2, "NULL"), ("t", 3, "''"), ("v", 2, "'Zoe'"), ("ch", 1, "'abc'"),
    ("u", 1, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'"), ("u", 3, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("tu", 1, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1f'"), ("tu", 1, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g'"),
    ("tu", 2, "'not a uuid!'"),
    ("ts", 1, "'2025-03-01 09:00:00.000001'"), ("ts", 2, "'-infinity'"), ("tstz", 1, "'2025-03-01 09:00:00+01'"),
    ("d", 1, "'2025-03-01'"), ("iv", 1, "'30 days'"), ("iv", 2, "'-72 hours'"),
    ("j", 1, """'{"a": -5}'"""), ("j", 2, "'{}'"), ("jb", 1, """'{"a": -5, "b": [1, "x"]}'"""),
    ("jb", 1, """'{"a": 5, "b": ["x", 1]}'"""), ("jb", 1, """'{"a": 5.0, "b": [1, "x"]}'"""), ("jb", 2, "'[]'"),
    ("ba", 1, "'\\x00fe'"), ("ba", 2, "NULL"), ("ta", 1, "'{b,a}'"), ("ta", 2, "'{NULL}'"), ("ia", 1, "'{1,-2}'"),
    ("ip", 1, "'10.0.0.2'"), ("mood", 1, "'happy'"), ("m", 1, "-12.34"),
    ("z", 1, "1e-320"), ("z", 1, "NULL"), ("z", 2, "'Infinity'"),
]

# Different spellings of one value that hash alike, deliberately (see pgsafe_content_hash's docstring).
EQUAL = [
    ("n", 1, "5.000"), ("n2", 2, "-0.00"), ("z", 1, "'-0'"),  # numerically equal (numeric scale, float zero)
    ("tu", 1, "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"), ("tu", 1, "'{a0eebc999c0b4ef8bb6d6bb9bd380a11}'"),
    ("tstz", 1, "'2025-03-01 10:00:00+01'"), ("jb", 1, """'{"b": [1, "x"],   "a": 5}'"""),
    ("jb", 2, "NULL"),  # a JSON null and a SQL NULL are one value in to_jsonb(row)
]


@pytest.fixture
def every_type(pg_server, prod_db):
    conn = pg_server.connect(prod_db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute(EVERY_TYPE)
    yield conn
    conn.rollback()
    conn.close()


def _hash_both_ways(cur):
    """The live hash, checked against the hash of the same rows stored as to_jsonb (the quarantine path)."""
    live = table_content_hash(cur, "public", "Every Type")
    cur.execute('SELECT to_jsonb(e.*)::text FROM "Every Type" e')  # e.*: the table has a column t
    stored = jsonb_rows_hash(cur, [r[0] for r in cur.fetchall()], table_kinds(cur, "public", "Every Type"))
    assert stored == live, "a row stored as jsonb must hash like the live row"
    return live["hash"]


def _with_value(cur, column, row, value):
    cur.execute("SAVEPOINT change")
    cur.execute(sql.SQL('UPDATE "Every Type" SET {0} = {1} WHERE id = %s').format(sql.Identifier(column),
                                                                                  sql.SQL(value)), (row,))
    try:
        return _hash_both_ways(cur)
    finally:
        cur.execute("ROLLBACK TO SAVEPOINT change")


def test_every_one_value_change_in_every_type_changes_the_hash(every_type):
    with every_type.cursor() as cur:
        base = _hash_both_ways(cur)
        unseen = [(column, row, value) for column, row, value in CHANGES if _with_value(cur, column, row, value) == base]
        assert _hash_both_ways(cur) == base
    assert not unseen, "changes the fingerprint did not see: {0}".format(unseen)


def test_spellings_of_one_value_hash_alike_on_purpose(every_type):
    with every_type.cursor() as cur:
        base = _hash_both_ways(cur)
        differ = [(column, row, value) for column, row, value in EQUAL if _with_value(cur, column, row, value) != base]
    assert not differ, "deliberately equal spellings hashed differently: {0}".format(differ)


def test_values_swapped_between_rows_change_the_hash(every_type):
    """Row hashes are not linear in the values: two rows exchanging a column's values are a change."""
    with every_type.cursor() as cur:
        base = _hash_both_ways(cur)
        for column in ("i4", "t", "u", "jb", "n"):
            cur.execute("SAVEPOINT swap")
            cur.execute(sql.SQL('UPDATE "Every Type" a SET {0} = b.{0} FROM "Every Type" b '
                                'WHERE (a.id, b.id) IN ((1, 2), (2, 1))').format(sql.Identifier(column)))
            assert _hash_both_ways(cur) != base, column
            cur.execute("ROLLBACK TO SAVEPOINT swap")


def test_a_table_read_in_pieces_by_workers_equals_one_scan(pg_server, prod_db, monkeypatch):
    conn = pg_server.connect(prod_db)
    extra = []

    def more():
        extra.append(pg_server.connect(prod_db))
        return extra[-1]
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE "Big one" (id int, u uuid, doc jsonb, note text)')
            cur.execute("INSERT INTO \"Big one\" SELECT g, md5(g::text)::uuid, jsonb_build_object('g', -g), "
                        "repeat('x', g % 300) FROM generate_series(1, 20000) g")
            cur.execute('DELETE FROM "Big one" WHERE id % 7 = 0')  # holes: pieces must not depend on full pages
        whole = fingerprint(conn, tables=["public.Big one"])["tables"]
        monkeypatch.setattr(pgsafe_fingerprint, "SPLIT_BYTES", 64 * 1024)
        with conn.cursor() as cur:
            pieces = table_pieces(cur, [("public", "Big one", "r")], 3)
            cur.execute(sql.SQL('EXPLAIN SELECT count(*) FROM "Big one" t WHERE {0}').format(pieces[1][1]))
            plan = " ".join(r[0] for r in cur.fetchall())
        conn.rollback()
        assert len(pieces) == 6 and pieces[0][1] is not None and "Tid Range Scan" in plan
        assert fingerprint(conn, tables=["public.Big one"], connect=more, workers=3)["tables"] == whole
        with conn.cursor() as cur:  # rows added after the size was read are still in the last, open-ended piece
            cur.execute('INSERT INTO "Big one" SELECT g, NULL, NULL, repeat(\'y\', 900) FROM generate_series(1, 3000) g')
        grown = fingerprint(conn, tables=["public.Big one"])["tables"]
        assert fingerprint(conn, tables=["public.Big one"], connect=more, workers=2)["tables"] == grown != whole
    finally:
        for c in [conn] + extra:
            c.close()


def test_a_fingerprint_stored_without_its_algorithm_never_compares_as_current(pg_server, prod_db):
    conn = pg_server.connect(prod_db, autocommit=False)
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            store_fingerprint(cur, {"tables": {}}, "before", run_id="no-algorithm")
            loaded = load_fingerprint(cur, "no-algorithm", "before")
        conn.rollback()
        assert loaded["algorithm"] == "unrecorded"
        with pytest.raises(FingerprintError, match="different algorithms"):
            reconcile(loaded, fingerprint(conn, tables=["public.bazaar-vid_user"]), [])
        assert fingerprint(conn, tables=["public.bazaar-vid_user"])["algorithm"] == ALGORITHM == "pgsafe-fp-v4"
    finally:
        conn.rollback()
        conn.close()


def test_a_quarantined_row_keeps_every_column_when_one_is_named_like_the_alias(pg_server, prod_db):
    """The quarantine stores to_jsonb(m.*): a bare to_jsonb(m) was the row's column "m", the rest lost."""
    conn = pg_server.connect(prod_db, autocommit=False)
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            cur.execute('CREATE TABLE "Has m" (id int PRIMARY KEY, m text, s text, "Has m" int)')
            cur.execute("""INSERT INTO "Has m" VALUES (1, 'x', 'y', 7), (2, 'z', 'w', 8)""")
            before = table_content_hash(cur, "public", "Has m")
            assert write_rows(cur, "run-m", ("public", "Has m"), ["id"], sql.SQL("t.id = 1"), (), "test", True) == 1
            cur.execute("SELECT row_data FROM pgsafe.quarantine_row WHERE run_id = 'run-m'")
            assert cur.fetchone()[0] == {"id": 1, "m": "x", "s": "y", "Has m": 7}
            moved = quarantine_contribution(cur, "public", "Has m", run_id="run-m")
            after = table_content_hash(cur, "public", "Has m")
            assert moved["rows"] == 1 and add_hashes(after["hash"], moved["hash"]) == before["hash"]
            assert restore_rows(cur, "run-m") == {'"public"."Has m"': 1}  # its sha256 checked on the way back
            assert table_content_hash(cur, "public", "Has m") == before
    finally:
        conn.rollback()
        conn.close()
