"""The CRUD probe follows the code's schema (the reference), not table names written into Python.

A database built from the reference itself passes on every foreign key the code declares; damage to a
foreign key's type or ON DELETE action fails the probe naming that foreign key; nothing is ever committed.
"""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_snapshot import qname, take_snapshot
from ansible.module_utils.pgsafe_validate import crud_probe
from tests import pg

REFERENCE = (pg.ROOT / "files/reference/bazaar_vid.sql").read_text()
EXPORTS = qname("public", "bazaar-vid_exports")
ANALYTICS = qname("public", "bazaar-vid_export_analytics")
ANALYTICS_FK = "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"


@pytest.fixture
def code_db(pg_server):
    name = pg_server.create_database()
    pg_server.execute(name, REFERENCE)
    yield name
    pg_server.drop_database(name)


def snapshot(pg_server, db):
    conn = pg_server.connect(db)
    try:
        with conn.cursor() as cur:
            return take_snapshot(cur)
    finally:
        conn.close()


def probe(pg_server, db, reference, focus=()):
    conn = pg_server.connect(db, autocommit=False)
    try:
        return crud_probe(conn, reference, snapshot(pg_server, db), focus)
    finally:
        conn.close()


def test_every_foreign_key_of_the_code_passes_on_the_code_schema(pg_server, code_db):
    reference = snapshot(pg_server, code_db)
    result = probe(pg_server, code_db, reference)
    assert result["status"] == "ok", result["summary"]
    assert len(result["items"]) == 12  # capped: the first twelve of the code's foreign keys
    focused = probe(pg_server, code_db, reference, {EXPORTS, ANALYTICS})
    assert focused["status"] == "ok", focused["summary"]
    # exports -> user, exports -> project, analytics -> exports
    assert sorted(i["step"].split(" (")[1] for i in focused["items"]) == sorted([
        "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk)",
        "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk)",
        "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk)"])
    assert pg_server.execute(code_db, 'SELECT count(*) FROM "bazaar-vid_user"')[0][0] == 0  # rolled back


def test_a_text_key_and_a_lost_cascade_fail_naming_the_foreign_key(pg_server, code_db):
    reference = snapshot(pg_server, code_db)
    pg_server.execute(code_db, f'ALTER TABLE "bazaar-vid_export_analytics" DROP CONSTRAINT "{ANALYTICS_FK}"')
    pg_server.execute(code_db, 'ALTER TABLE "bazaar-vid_export_analytics" ALTER export_id TYPE text')
    pg_server.execute(code_db, 'ALTER TABLE "bazaar-vid_exports" DROP CONSTRAINT '
                               '"bazaar-vid_exports_user_id_bazaar-vid_user_id_fk", ADD CONSTRAINT '
                               '"bazaar-vid_exports_user_id_bazaar-vid_user_id_fk" FOREIGN KEY (user_id) '
                               'REFERENCES "bazaar-vid_user" (id)')
    result = probe(pg_server, code_db, reference, {EXPORTS, ANALYTICS})
    assert result["status"] == "failed"
    failed = {i["step"].split(" (")[1].rstrip(")"): i["detail"] for i in result["items"] if i["status"] == "failed"}
    assert set(failed) == {ANALYTICS_FK, "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"}
    assert failed[ANALYTICS_FK].startswith("read with the code's join: operator does not exist: text = uuid")
    assert "CASCADE" in failed["bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"]
    assert pg_server.execute(code_db, 'SELECT count(*) FROM "bazaar-vid_exports"')[0][0] == 0
