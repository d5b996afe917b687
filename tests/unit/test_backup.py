"""pgsafe_backup: manifests, checksums, retention and the guard's decision, without a server."""
import datetime
import json
import os

import pytest

from ansible.module_utils.pgsafe_backup import (MANIFEST_NAME, VERIFICATION_NAME, BackupError, build_manifest,
                                                check_backup_id, classify_dump_failure, compare_tables,
                                                covers_object, dump_selection_args, file_inventory,
                                                find_covering_backup, guard_failure_message, load_manifest,
                                                manifest_bytes, missing_objects, new_backup_id, parse_cover,
                                                parse_covers, select_retention, space_verdict, tables_in_scope,
                                                verification_document, verify_files)

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc)
HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'


def minutes_ago(n):
    return NOW - datetime.timedelta(minutes=n)


# ------------------------------------------------------------------ covers
def test_parse_cover_vocabulary():
    assert parse_cover("database") == {"type": "database"}
    assert parse_cover("schema:neon_auth") == {"type": "schema", "schema": "neon_auth"}
    assert parse_cover("public.bazaar-vid_exports") == {"type": "table", "schema": "public",
                                                         "table": "bazaar-vid_exports"}
    assert parse_cover('"odd.schema"."we""ird tåble"') == {"type": "table", "schema": "odd.schema",
                                                          "table": 'we"ird tåble'}
    assert parse_cover('schema:"dotted.schema"') == {"type": "schema", "schema": "dotted.schema"}
    with pytest.raises(BackupError):
        parse_cover("")
    with pytest.raises(BackupError):
        parse_cover({"type": "table", "schema": "public"})


def test_parse_covers_database_absorbs_and_schema_absorbs_its_tables():
    assert parse_covers(["public.a", "database"]) == [{"type": "database"}]
    assert parse_covers(["schema:auth", "auth.users", "public.b", "public.b"]) == [
        {"type": "schema", "schema": "auth"}, {"type": "table", "schema": "public", "table": "b"}]
    with pytest.raises(BackupError):
        parse_covers([])


def test_covers_object():
    table = {"type": "table", "schema": "public", "table": "bazaar-vid_exports"}
    assert covers_object([{"type": "database"}], table)
    assert covers_object([{"type": "database"}], {"type": "database"})
    assert covers_object([{"type": "schema", "schema": "public"}], table)
    assert not covers_object([{"type": "schema", "schema": "auth"}], table)
    assert not covers_object([{"type": "table", "schema": "public", "table": "bazaar-vid_export"}], table)
    assert not covers_object([{"type": "schema", "schema": "public"}], {"type": "database"})


def test_dump_selection_quotes_hostile_names_and_refuses_mixing():
    assert dump_selection_args([{"type": "database"}]) == []
    args = dump_selection_args(parse_covers(["public." + json.dumps(HOSTILE)[0:0] + '"' + HOSTILE.replace('"', '""')
                                             + '"']))
    assert args == ["-t", '"public"."' + HOSTILE.replace('"', '""') + '"']
    assert dump_selection_args(parse_covers(["schema:Auth Schema"])) == ["-n", '"Auth Schema"']
    with pytest.raises(BackupError, match="two backups"):
        dump_selection_args(parse_covers(["schema:auth", "public.t"]))


def test_scope_resolution_and_missing_objects():
    tables = [("auth", "x"), ("public", "a"), ("public", "b")]
    assert tables_in_scope(tables, parse_covers(["schema:public"])) == [("public", "a"), ("public", "b")]
    assert tables_in_scope(tables, parse_covers(["database"])) == tables
    assert missing_objects(parse_covers(["public.zz", "public.a"]), tables, ["auth", "public"]) == [
        'table "public"."zz"']
    assert missing_objects(parse_covers(["schema:nope"]), tables, ["auth", "public"]) == ['schema "nope"']


def test_backup_ids():
    assert new_backup_id('my "db"/../x', NOW, "abc123") == "my_db_x-20261125T120000Z-abc123"
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(BackupError):
            check_backup_id(bad)


# ------------------------------------------------------------------ manifests and damage
@pytest.fixture
def backup_dir(tmp_path):
    root = tmp_path / "b1"
    (root / "dump").mkdir(parents=True)
    (root / "dump" / "toc.dat").write_bytes(b"PGDMP" + bytes(range(200)))
    (root / "dump" / "3001.dat.gz").write_bytes(os.urandom(4096))
    (root / "dump" / "3002.dat.gz").write_bytes(b"")
    (root / "globals.sql").write_text("CREATE ROLE x;\n")
    manifest = build_manifest("b1", "bazaar_vid", "15.18", [{"type": "database"}], "directory",
                              file_inventory(str(root)), {}, NOW.isoformat(), "ops", "test")
    (root / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
    (root / VERIFICATION_NAME).write_text("{}")  # written later, never listed
    return root


def test_intact_backup_verifies(backup_dir):
    manifest, sha = load_manifest(str(backup_dir))
    assert len(sha) == 64 and verify_files(str(backup_dir), manifest) == []
    assert set(manifest["files"]) == {"dump/toc.dat", "dump/3001.dat.gz", "dump/3002.dat.gz", "globals.sql"}
    assert manifest["total_size"] == sum(f["size"] for f in manifest["files"].values())


def _damage(root, how):
    data = root / "dump" / "3001.dat.gz"
    if how == "deleted":
        data.unlink()
    elif how == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    elif how == "flipped":
        raw = bytearray(data.read_bytes())
        raw[2000] ^= 0x01
        data.write_bytes(bytes(raw))
    elif how == "appended":
        with open(data, "ab") as handle:
            handle.write(b"\0")
    elif how == "extra":
        (root / "dump" / "9999.dat.gz").write_bytes(b"x")
    elif how == "toc":
        raw = bytearray((root / "dump" / "toc.dat").read_bytes())
        raw[0] = ord("X")
        (root / "dump" / "toc.dat").write_bytes(bytes(raw))


@pytest.mark.parametrize("how,problem,file", [
    ("deleted", "missing", "dump/3001.dat.gz"), ("truncated", "size", "dump/3001.dat.gz"),
    ("flipped", "checksum", "dump/3001.dat.gz"), ("appended", "size", "dump/3001.dat.gz"),
    ("extra", "extra", "dump/9999.dat.gz"), ("toc", "checksum", "dump/toc.dat")])
def test_each_damage_is_caught_naming_the_file(backup_dir, how, problem, file):
    _damage(backup_dir, how)
    manifest, _ = load_manifest(str(backup_dir))
    problems = verify_files(str(backup_dir), manifest)
    assert [(p["problem"], p["file"]) for p in problems] == [(problem, file)]
    assert file in problems[0]["message"]


@pytest.mark.parametrize("edit", ["flip_digit", "truncate", "drop_field", "missing"])
def test_damaged_manifest_is_refused(backup_dir, edit):
    path = backup_dir / MANIFEST_NAME
    text = path.read_text()
    if edit == "flip_digit":
        doc = json.loads(text)
        doc["files"]["dump/3001.dat.gz"]["size"] += 1  # a forged size: the self-checksum no longer matches
        path.write_text(json.dumps(doc))
    elif edit == "truncate":
        path.write_text(text[: len(text) // 2])
    elif edit == "drop_field":
        doc = json.loads(text)
        del doc["manifest_checksum"]
        path.write_text(json.dumps(doc))
    else:
        path.unlink()
    with pytest.raises(BackupError, match="manifest|not a complete backup") as exc:
        load_manifest(str(backup_dir))
    assert exc.value.kind == "manifest"


def test_compare_tables_names_the_table():
    expected = {'"public"."a"': {"rows": 3, "hash": "1"}, '"public"."b"': {"rows": 2, "hash": "2"},
                '"public"."c"': {"rows": 1, "hash": "3"}}
    actual = {'"public"."a"': {"rows": 2, "hash": "1"}, '"public"."b"': {"rows": 2, "hash": "9"}}
    problems = compare_tables(expected, actual)
    assert [(p["table"], p["problem"]) for p in problems] == [('"public"."a"', "rows"), ('"public"."b"', "hash"),
                                                              ('"public"."c"', "missing")]
    assert compare_tables(expected, dict(expected)) == []


def test_verification_document_verdicts():
    ok = verification_document("b", "s", {"checksums": "ok", "toc": "ok"}, [], {"status": "ok"}, now=NOW)
    assert ok["verified"] and ok["restore_tested"]
    no_restore = verification_document("b", "s", {"checksums": "ok", "toc": "ok"}, [], None, now=NOW)
    assert no_restore["verified"] and not no_restore["restore_tested"]
    bad = verification_document("b", "s", {"checksums": "failed", "toc": "ok"}, [{"message": "x"}],
                                {"status": "ok"}, now=NOW)
    assert not bad["verified"] and not bad["restore_tested"]


def test_space_verdict_gives_numbers():
    ok, needed, msg = space_verdict(10 << 20, 100 << 20)
    assert ok and msg is None and needed == 26 << 20
    ok, needed, msg = space_verdict(10 << 20, 2 << 20)
    assert not ok and "2.0 MB free" in msg and "26.0 MB" in msg
    assert space_verdict(10 << 30, 0, factor=0)[0]


def test_classify_dump_failure():
    lock = ("pg_dump: error: could not obtain lock on relation \"public.bazaar-vid_exports\"\nThis usually means "
            "that someone requested an ACCESS EXCLUSIVE lock on the table after the pg_dump parent process had gotten")
    assert classify_dump_failure(1, lock)[0] == "lock_conflict"
    assert "NO BACKUP" in classify_dump_failure(1, lock)[1]
    waited = ("pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout\n"
              'pg_dump: detail: Query was: LOCK TABLE public."bazaar-vid_exports" IN ACCESS SHARE MODE')
    assert classify_dump_failure(1, waited)[0] == "lock_conflict"
    assert classify_dump_failure(1, "could not write to file: No space left on device")[0] == "disk_full"
    assert classify_dump_failure(-9, "")[0] == "killed"
    assert classify_dump_failure(1, "permission denied for table x")[0] == "permission"
    assert classify_dump_failure(1, "weird")[0] == "failed"


# ------------------------------------------------------------------ retention
def test_retention_never_deletes_the_only_verified_copy():
    backups = [{"backup_id": "old-verified", "taken_at": NOW - datetime.timedelta(days=40), "verified": True}] + [
        {"backup_id": "new-%d" % i, "taken_at": NOW - datetime.timedelta(days=i), "verified": False}
        for i in range(1, 6)]
    delete, keep = select_retention(backups, keep_count=2, keep_days=3, now=NOW)
    kept = {k["backup_id"] for k in keep}
    assert "old-verified" in kept
    assert kept == {"old-verified", "new-1", "new-2"}
    assert {d["backup_id"] for d in delete} == {"new-3", "new-4", "new-5"}
    delete, keep = select_retention(backups, keep_count=0, keep_days=0, now=NOW)
    assert [k["backup_id"] for k in keep] == ["old-verified"]


def test_retention_keeps_by_count_or_age():
    backups = [{"backup_id": "b%d" % i, "taken_at": (NOW - datetime.timedelta(days=i)).isoformat(), "verified": True}
               for i in range(10)]
    delete, keep = select_retention(backups, keep_count=3, keep_days=5, now=NOW)
    assert {k["backup_id"] for k in keep} == {"b0", "b1", "b2", "b3", "b4"}
    assert len(delete) == 5


# ------------------------------------------------------------------ the guard
def record(backup_id, age, covers, verified=True, restore_tested=True):
    return {"backup_id": backup_id, "taken_at": minutes_ago(age), "covers": covers, "verified": verified,
            "restore_tested": restore_tested, "locations": ["/b/" + backup_id]}


def test_guard_full_backup_covers_every_object():
    records = [record("full", 30, [{"type": "database"}])]
    found, why = find_covering_backup(records, ["public.bazaar-vid_exports", "schema:auth"], 60, NOW)
    assert found["backup_id"] == "full" and why is None


def test_guard_picks_newest_usable_and_explains_rejections():
    records = [record("fresh-unverified", 5, [{"type": "database"}], verified=False),
               record("fresh-not-restore-tested", 6, [{"type": "database"}], restore_tested=False),
               record("tables", 10, [{"type": "table", "schema": "public", "table": "bazaar-vid_exports"}]),
               record("old-full", 500, [{"type": "database"}])]
    found, _ = find_covering_backup(records, ["public.bazaar-vid_exports"], 180, NOW)
    assert found["backup_id"] == "tables"
    found, why = find_covering_backup(records, ["public.bazaar-vid_exports", "public.bazaar-vid_export_analytics"],
                                      180, NOW)
    assert found is None
    assert why["missing"] == [{"type": "table", "schema": "public", "table": "bazaar-vid_export_analytics"}]
    text = " ".join(why["reasons"])
    assert "fresh-unverified: not verified" in text and "fresh-not-restore-tested" in text
    assert "old-full: taken 500 minutes ago" in text


def test_guard_without_restore_test_still_wants_checksums_and_age():
    """For a caller whose next step restores the backup and compares it (the rehearsal's copy)."""
    records = [record("fresh-unverified", 5, [{"type": "database"}], verified=False),
               record("not-restore-tested", 6, [{"type": "database"}], restore_tested=False),
               record("old", 500, [{"type": "database"}], restore_tested=False)]
    assert find_covering_backup(records, ["database"], 180, NOW)[0] is None
    found, _ = find_covering_backup(records, ["database"], 180, NOW, require_restore_tested=False)
    assert found["backup_id"] == "not-restore-tested"
    found, why = find_covering_backup(records[:1] + records[2:], ["database"], 180, NOW, require_restore_tested=False)
    assert found is None and "not verified" in " ".join(why["reasons"]) and "500 minutes" in " ".join(why["reasons"])


def test_guard_schema_backup_covers_its_tables_only():
    records = [record("auth", 1, [{"type": "schema", "schema": "auth"}])]
    assert find_covering_backup(records, ["auth.users"], 10, NOW)[0]["backup_id"] == "auth"
    assert find_covering_backup(records, ["public.users"], 10, NOW)[0] is None
    assert find_covering_backup(records, ["database"], 10, NOW)[0] is None


def test_guard_command_survives_single_quotes():
    import shlex
    cover = "public.o'brien"
    msg = guard_failure_message("db", [cover], 60, find_covering_backup([], [cover], 60, NOW)[1])
    command = msg.split("Take one: ")[1].split(" (or, in a role")[0]
    extra = shlex.split(command)[-1]
    assert json.loads(extra)["backup_objects"] == [cover]


def test_guard_with_no_records_and_message():
    found, why = find_covering_backup([], ["public.bazaar-vid_exports"], datetime.timedelta(minutes=60), NOW)
    assert found is None
    msg = guard_failure_message("bazaar_vid", ["public.bazaar-vid_exports"], 60, why, "inventories/prod", "prod")
    assert "NO VERIFIED BACKUP" in msg and 'table "public"."bazaar-vid_exports"' in msg and "60 minutes" in msg
    assert "ansible-playbook -i inventories/prod playbooks/backup.yml --limit prod" in msg
    assert '"backup_objects": ["public.bazaar-vid_exports"]' in msg
    msg = guard_failure_message("db", ["database"], 60, find_covering_backup([], ["database"], 60, NOW)[1])
    assert "-e backup_scope=database" in msg and "the whole database" in msg


def test_guard_message_quotes_hostile_names():
    cover = '"public"."' + HOSTILE.replace('"', '""') + '"'
    found, why = find_covering_backup([], [cover], 60, NOW)
    msg = guard_failure_message("db", [cover], 60, why)
    assert parse_cover(json.loads(msg.split("backup_objects=")[1].split(")")[0])[0]) == {
        "type": "table", "schema": "public", "table": HOSTILE}


def test_compare_tables_lines_up_old_and_new_manifest_keys():
    """Manifests before table_key quoted every part ("public"."a"); a restore compares by the table named."""
    expected = {'"public"."a"': {"rows": 3, "hash": "1"}, 'public.b': {"rows": 2, "hash": "2"}}
    actual = {"public.a": {"rows": 3, "hash": "1"}, '"public"."b"': {"rows": 2, "hash": "2"}}
    assert compare_tables(expected, actual) == []
