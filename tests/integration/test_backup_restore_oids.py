"""A restore gives enum labels and catalog objects new OIDs: the backup's content hashes must not depend on them.

The manifest's cheap "record" hash hashes an enum by its label's OID and a reg* value by the object's OID, so
a restore test of a table with such a column, restored where the OIDs come out different, reported a changed
table although every row was equal. Here the OIDs are made to differ on purpose (types created and dropped
before the ones the table uses), at every depth a type can hide an enum: array, domain, composite, range.
"""
from __future__ import annotations

from ansible.module_utils import pgsafe_backup_exec as ex

SCHEMA_SQL = """
DO $$BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE TYPE "shift %s" AS ENUM (''a'')', i); END LOOP; END$$;
CREATE TYPE "Mood" AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN mood_d AS "Mood" NOT NULL;
CREATE TYPE mood_pair AS (first "Mood", note text);
CREATE TYPE mood_range AS RANGE (subtype = "Mood");
DO $$BEGIN FOR i IN 1..40 LOOP EXECUTE format('DROP TYPE "shift %s"', i); END LOOP; END$$;
CREATE TABLE "odd-Table" (id int PRIMARY KEY, "theMood" "Mood", moods "Mood"[], d mood_d, p mood_pair,
                          r mood_range, rel regclass);
INSERT INTO "odd-Table"
SELECT g, (ARRAY['sad','ok','happy']::"Mood"[])[g % 3 + 1], ARRAY['ok','happy']::"Mood"[], 'sad',
       ROW('happy', 'n' || g)::mood_pair, mood_range('sad', 'happy'), '"odd-Table"'::regclass
  FROM generate_series(1, 300) g;
CREATE TABLE plain (id int PRIMARY KEY, label text);
INSERT INTO plain SELECT g, 'x' || g FROM generate_series(1, 300) g;
"""


def test_restore_test_passes_when_enum_and_regclass_oids_differ_in_the_restored_copy(pg_server, scratch_server,
                                                                                      tmp_path):
    db = pg_server.create_database()
    try:
        pg_server.execute(db, SCHEMA_SQL)
        taken = ex.take_backup(pg_server.module_params(db), str(tmp_path), ["database"], reason="oid test")
        manifest, doc = ex.verify_backup(taken["path"], scratch_params=scratch_server.module_params("postgres"))
        assert doc["restore_tested"] and not doc["problems"], doc["problems"]
        methods = {entry["table"]: entry["method"] for entry in manifest["tables"].values()}
        # the OID-hashed table by its text form; a table of plain types keeps the cheap record hash
        assert methods["odd-Table"] == "text" and methods["plain"] == "record", methods
    finally:
        pg_server.drop_database(db)
