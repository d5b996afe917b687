"""files/reference/bazaar_vid.sql is the schema the app's code declared during Sprint 90, and it loads.

Loaded, as one transaction, into a fresh database on the test cluster; checked against the Drizzle
schema it was written from (shared/app/code-schema-before-sprint90.ts, next to the repository) and
against facts the Sprint 90 work depends on.
"""
from __future__ import annotations

import re

import pytest

from tests import pg

REFERENCE = pg.ROOT / "files/reference/bazaar_vid.sql"
CODE_SCHEMA = pg.ROOT.parent / "shared/app/code-schema-before-sprint90.ts"
PREFIX = "bazaar-vid_"

TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
COLUMNS = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
      FROM pg_attribute a
     WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""
FOREIGN_KEY = """
    SELECT c.confdeltype
      FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
     WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND c.confrelid = %s::regclass AND a.attname = %s
"""


def code_table_names(text: str) -> set[str]:
    """The table names of the createTable calls of a Drizzle schema file, with the table prefix."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    text = re.sub(r"(^|\s)//[^\n]*", r"\1", text)
    return {PREFIX + name for name in re.findall(r"\bcreateTable\(\s*[\"'`]([^\"'`]+)[\"'`]", text)}


@pytest.fixture(scope="module")
def reference_db(pg_server):
    name = pg_server.create_database()
    conn = pg_server.connect(name, autocommit=False)
    try:
        with conn.cursor() as cur:  # one transaction, like psql -1 -v ON_ERROR_STOP=1 -f
            cur.execute(REFERENCE.read_text())
        conn.commit()
    finally:
        conn.close()
    yield name
    pg_server.drop_database(name)


def columns(server, db, table):
    return dict(server.execute(db, COLUMNS, (f'"{table}"',)))


def test_tables_are_the_createtable_calls_of_the_code(pg_server, reference_db):
    if not CODE_SCHEMA.is_file():
        pytest.skip(f"the app's Drizzle schema is not next to the repository ({CODE_SCHEMA} is absent)")
    expected = code_table_names(CODE_SCHEMA.read_text())
    assert len(expected) == 30
    assert {row[0] for row in pg_server.execute(reference_db, TABLES)} == expected


def test_columns_and_indexes_prod_lacked_are_declared(pg_server, reference_db):
    assert columns(pg_server, reference_db, "bazaar-vid_project")["audio"] == "jsonb"
    rows = pg_server.execute(reference_db, "SELECT pg_get_indexdef(%s::regclass)", ("message_project_sequence_idx",))
    assert rows[0][0].endswith('ON public."bazaar-vid_message" USING btree ("projectId", sequence)')


def test_exports_pair_types_and_cascading_foreign_keys(pg_server, reference_db):
    cols = columns(pg_server, reference_db, "bazaar-vid_exports")
    assert (cols["id"], cols["user_id"], cols["project_id"]) == ("uuid", "character varying(255)", "uuid")
    for table, column, parent in [("bazaar-vid_exports", "user_id", "bazaar-vid_user"),
                                  ("bazaar-vid_exports", "project_id", "bazaar-vid_project"),
                                  ("bazaar-vid_export_analytics", "export_id", "bazaar-vid_exports")]:
        rows = pg_server.execute(reference_db, FOREIGN_KEY, (f'"{table}"', f'"{parent}"', column))
        assert rows == [("c",)], f"{table}.{column} -> {parent}: expected one FK with ON DELETE CASCADE, got {rows}"


def test_unique_index_is_an_index_not_a_constraint(pg_server, reference_db):
    rows = pg_server.execute(reference_db, "SELECT indisunique FROM pg_index WHERE indexrelid = %s::regclass",
                             ("project_unique_name",))
    assert rows == [(True,)]
    rows = pg_server.execute(reference_db, "SELECT conname FROM pg_constraint WHERE conname = %s "
                                           "OR conindid = %s::regclass", ("project_unique_name", "project_unique_name"))
    assert rows == []


def test_api_usage_metric_has_the_code_columns(pg_server, reference_db):
    cols = columns(pg_server, reference_db, "bazaar-vid_api_usage_metric")
    for name in ("userId", "projectId", "toolName", "responseTime", "tokenCount", "errorType", "errorMessage"):
        assert name in cols, f"api_usage_metric lacks {name!r}: {sorted(cols)}"
    assert "metadata" not in cols
    assert "user_id" not in cols
