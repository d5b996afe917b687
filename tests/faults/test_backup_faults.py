"""Fault cases of issue 4 (fault-cases.md 1-5): every one ends with a clear error, no verified
backup recorded, the guard refusing, and the database untouched.

The backups are taken with the same code the modules run (module_utils.pgsafe_backup_exec), on a
fresh Sprint 90 database of the shared test cluster; the restore test goes to the scratch cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from ansible.module_utils import pgsafe_backup_exec as ex
from ansible.module_utils.pgsafe_backup import (MANIFEST_NAME, TMP_PREFIX, BackupError, build_manifest,
                                                find_covering_backup, manifest_bytes)
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = "public.bazaar-vid_exports"


# ------------------------------------------------------------------ helpers
def fingerprint(server, db):
    """Rows and content hash of every table outside the product schemas (what 'untouched' means)."""
    conn = server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            ex.pin_settings(cur)
            tables = [t for t in ex.list_tables(cur) if t[0] not in PRODUCT_SCHEMAS]
            return ex.table_stats(cur, tables)
    finally:
        conn.close()


def verified_count(server, db):
    rows = server.execute(db, "SELECT to_regclass('pgsafe.backup') IS NOT NULL")
    if not rows[0][0]:
        return 0
    return server.execute(db, "SELECT count(*) FROM pgsafe.backup WHERE verified AND restore_tested")[0][0]


def guard_finds(server, db, covers=("database",), max_age=180):
    conn = server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            records, now = ex.fetch_backup_records(cur)
    finally:
        conn.close()
    return find_covering_backup(records, list(covers), max_age, now)[0]


def leftovers(destination):
    return sorted(os.listdir(destination)) if os.path.isdir(destination) else []


def full_backup_and_verify(server, db, scratch, destination, **kwargs):
    params = server.module_params(db)
    taken = ex.take_backup(params, str(destination), ["database"], reason="fault test", **kwargs)
    ex.record_backup(params, taken["manifest"], taken["manifest_sha256"], [taken["path"]])
    manifest, doc = ex.verify_backup(taken["path"], scratch_params=scratch.module_params("postgres"))
    ex.record_backup(params, manifest, doc["manifest_sha256"], [taken["path"]], doc)
    return taken, doc


def add_big_tables(server, db, megabytes=8, count=1):
    """Tables of poorly compressible text (md5 hex), so that dumps take time and space."""
    rows = megabytes * 1024 * 1024 // 140
    for i in range(count):
        server.execute(db, sql.SQL("CREATE TABLE {0} (id int PRIMARY KEY, payload text)").format(
            sql.Identifier("public", "zz big %d" % i)))
        server.execute(db, sql.SQL("INSERT INTO {0} SELECT g, md5(g::text) || md5((g * 7)::text) || "
                                   "md5((g * 13)::text) || md5((g * 17)::text) FROM generate_series(1, %s) g").format(
            sql.Identifier("public", "zz big %d" % i)), (rows,))


@pytest.fixture
def fresh(pg_server, prod_db):
    before = fingerprint(pg_server, prod_db)
    return prod_db, before


def assert_nothing_trusted(pg_server, db, before, destination, covers=("database",)):
    assert verified_count(pg_server, db) == 0
    assert guard_finds(pg_server, db, covers) is None
    assert fingerprint(pg_server, db) == before
    assert not [n for n in leftovers(destination) if n.startswith(TMP_PREFIX)]


# ------------------------------------------------------------------ case 1: disk full
@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + result.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_preflight_refuses_when_destination_too_small(pg_server, fresh, tiny_disk, rows_lost):
    db, before = fresh
    add_big_tables(pg_server, db, megabytes=6)
    before = fingerprint(pg_server, db)
    with pytest.raises(BackupError) as exc:
        ex.take_backup(pg_server.module_params(db), str(tiny_disk / "b"), ["database"])
    assert exc.value.kind == "disk_space"
    assert "free but the backup needs about" in str(exc.value) and "nothing was dumped" in str(exc.value)
    assert exc.value.details["free_bytes"] < exc.value.details["needed_bytes"]
    assert leftovers(tiny_disk / "b") == []
    assert_nothing_trusted(pg_server, db, before, tiny_disk / "b")
    rows_lost(0)


def test_disk_fills_mid_dump(pg_server, fresh, tiny_disk, rows_lost):
    db, _ = fresh
    add_big_tables(pg_server, db, megabytes=8)
    before = fingerprint(pg_server, db)
    with pytest.raises(BackupError) as exc:  # space_factor=0: the preflight is skipped, the dump hits the wall
        ex.take_backup(pg_server.module_params(db), str(tiny_disk / "b"), ["database"], space_factor=0)
    assert exc.value.kind == "disk_full", str(exc.value)
    assert "NO BACKUP" in str(exc.value) and "incomplete directory was removed" in str(exc.value)
    assert leftovers(tiny_disk / "b") == []
    assert shutil.disk_usage(tiny_disk).used < 64 * 1024  # the partial dump's space was given back
    assert_nothing_trusted(pg_server, db, before, tiny_disk / "b")
    rows_lost(0)


# ------------------------------------------------------------------ case 2: killed mid-way, then re-run
def test_pg_dump_killed_then_rerun(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    db, _ = fresh
    add_big_tables(pg_server, db, megabytes=12)
    before = fingerprint(pg_server, db)
    dest = tmp_path / "b"

    seen = {}

    def kill_soon(process):
        # fault case 23: what `ps` and /proc show of the running pg_dump carries no password
        # The process starts as `setpriv` and execs pg_dump: read /proc once pg_dump runs (during an exec the
        # environ file reads empty), within 10 s.
        deadline = time.monotonic() + 10
        while True:
            seen["cmdline"] = Path("/proc/%d/cmdline" % process.pid).read_bytes()
            seen["environ"] = Path("/proc/%d/environ" % process.pid).read_bytes()
            argv0 = os.path.basename(seen["cmdline"].split(b"\0", 1)[0])
            if (argv0 == b"pg_dump" and seen["environ"]) or time.monotonic() > deadline:
                break
            time.sleep(0.005)

        def killer():
            time.sleep(0.3)
            process.send_signal(signal.SIGKILL)
        threading.Thread(target=killer, daemon=True).start()

    with pytest.raises(BackupError) as exc:
        # gzip level 9: a dump slow enough to be killed half-way whatever the machine's speed
        ex.take_backup(pg_server.module_params(db), str(dest), ["database"], on_started=kill_soon, compression=9)
    assert exc.value.kind == "killed" and "killed by signal 9" in str(exc.value)
    secret = pg_server.libpq["password"].encode()
    assert secret not in seen["cmdline"] and secret not in seen["environ"]
    assert b"PGPASSWORD=" not in seen["environ"] and b"PGPASSFILE=" in seen["environ"]
    assert leftovers(dest) == []
    assert_nothing_trusted(pg_server, db, before, dest)
    taken, doc = full_backup_and_verify(pg_server, db, scratch_server, dest)
    assert doc["verified"] and doc["restore_tested"], doc["problems"]
    assert guard_finds(pg_server, db, [EXPORTS])["backup_id"] == taken["backup_id"]
    assert fingerprint(pg_server, db) == before
    rows_lost(0)


CONTROLLER = """
import sys
sys.path.insert(0, {root!r})
import tests.conftest  # noqa: F401  (module_utils importable)
from ansible.module_utils import pgsafe_backup_exec as ex
params = {params!r}
ex.take_backup(params, {dest!r}, ["database"], on_started=lambda p: print("STARTED", flush=True), compression=9)
"""


def test_controller_killed_leaves_no_backup_then_rerun(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    db, _ = fresh
    add_big_tables(pg_server, db, megabytes=12)
    before = fingerprint(pg_server, db)
    dest = tmp_path / "b"
    script = tmp_path / "controller.py"
    script.write_text(CONTROLLER.format(root=str(ROOT), params=pg_server.module_params(db), dest=str(dest)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "STARTED"
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and its pg_dump die together
    proc.wait()
    names = leftovers(dest)
    assert len(names) == 1 and names[0].startswith(TMP_PREFIX)  # half-written, and it looks it
    assert not os.path.exists(dest / names[0] / MANIFEST_NAME)
    backups, temporary = ex.scan_destination(str(dest))
    assert backups == [] and len(temporary) == 1
    manifest, doc = ex.verify_backup(str(dest / names[0]), scratch_params=scratch_server.module_params("postgres"))
    assert manifest is None and not doc["verified"] and "not a complete backup" in doc["problems"][0]["message"]
    # pg_dump dies with its controller (pdeathsig); its -j workers follow once the leader's pipes close,
    # which takes longer than a fixed half second on a loaded machine: wait for it, boundedly.
    deadline = time.monotonic() + 15
    while (subprocess.run(["pgrep", "-f", "pg_dump.*" + db], capture_output=True, check=False).returncode != 1
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", "pg_dump.*" + db], capture_output=True, check=False).returncode == 1
    assert verified_count(pg_server, db) == 0 and guard_finds(pg_server, db) is None
    taken, doc = full_backup_and_verify(pg_server, db, scratch_server, dest)
    assert doc["restore_tested"] and guard_finds(pg_server, db)["backup_id"] == taken["backup_id"]
    assert fingerprint(pg_server, db) == before
    rows_lost(0)


# ------------------------------------------------------------------ case 3: damaged after writing
@pytest.fixture(scope="module")
def pristine_backup(pg_server, scratch_server, tmp_path_factory):
    """One verified backup of a prod-like database; each damage test works on a copy of it."""
    dest = tmp_path_factory.mktemp("pristine")
    with pg_server.sprint90_database("prod") as db:
        before = fingerprint(pg_server, db)
        taken = ex.take_backup(pg_server.module_params(db), str(dest), ["database"])
        yield db, before, taken


def _largest_data_file(path):
    files = [f for f in (path / "dump").iterdir() if f.name.endswith(".dat.gz")]
    return max(files, key=lambda f: f.stat().st_size)


def damage(path, how):
    data = _largest_data_file(path)
    if how == "data_file_deleted":
        data.unlink()
        return data.name
    if how == "data_file_truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        return data.name
    if how == "byte_flipped":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
        return data.name
    if how == "byte_appended":
        with open(data, "ab") as handle:
            handle.write(b"\n")
        return data.name
    if how == "extra_file":
        (path / "dump" / "9999.dat.gz").write_bytes(b"junk")
        return "9999.dat.gz"
    if how == "toc_damaged":
        toc = path / "dump" / "toc.dat"
        raw = bytearray(toc.read_bytes())
        raw[0:5] = b"XXXXX"
        toc.write_bytes(bytes(raw))
        return "toc.dat"
    if how == "manifest_damaged":
        manifest = path / MANIFEST_NAME
        manifest.write_text(manifest.read_text().replace('"rows": ', '"rows": 1', 1))
        return MANIFEST_NAME
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["data_file_deleted", "data_file_truncated", "byte_flipped", "byte_appended",
                                 "extra_file", "toc_damaged", "manifest_damaged"])
def test_damaged_backup_is_caught(pg_server, scratch_server, pristine_backup, tmp_path, how, rows_lost):
    db, before, taken = pristine_backup
    copy = tmp_path / taken["backup_id"]
    shutil.copytree(taken["path"], copy)
    named = damage(copy, how)
    if how == "data_file_deleted":  # pg_restore --list alone does not notice: that is why we checksum
        assert ex.check_toc(str(copy), taken["manifest"]) == "ok"
    manifest, doc = ex.verify_backup(str(copy), scratch_params=scratch_server.module_params("postgres"))
    assert not doc["verified"] and not doc["restore_tested"]
    assert doc["restore_test"] == {"status": "not run"}  # stops before any restore
    assert any(named in p["message"] for p in doc["problems"]), doc["problems"]
    if manifest is not None:  # recorded as NOT verified in the target database
        ex.record_backup(pg_server.module_params(db), manifest, doc["manifest_sha256"] or "damaged", [str(copy)],
                         doc)
    assert verified_count(pg_server, db) == 0
    assert guard_finds(pg_server, db) is None
    assert fingerprint(pg_server, db) == before
    rows_lost(0)


# ------------------------------------------------------------------ case 4: the restore test sees fewer rows
def test_restore_test_with_fewer_rows_than_source_names_table(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    """An incomplete dump (as with row security or too wide an exclude): the manifest counted the rows at
    backup time, the archive holds fewer. Simulated by dumping with an exclude the manifest ignores."""
    db, before = fresh
    params = pg_server.module_params(db)
    taken = ex.take_backup(params, str(tmp_path / "b"), ["database"])
    path = Path(taken["path"])
    shutil.rmtree(path / "dump")
    with ex.libpq_environment(params, db) as env:
        subprocess.run([ex.find_binary("pg_dump"), "--no-password", "-Fd", "-f", str(path / "dump"), "-d", db,
                        "--exclude-table-data", '"public"."bazaar-vid_exports"'], env=env, check=True)
    old = taken["manifest"]
    manifest = build_manifest(old["backup_id"], old["database"], old["server_version"], old["covers"], "directory",
                              ex.file_inventory(str(path)), old["tables"], old["taken_at"], "t", "t",
                              database_oid=old["database_oid"])
    (path / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
    manifest, doc = ex.verify_backup(str(path), scratch_params=scratch_server.module_params("postgres"))
    assert doc["checks"]["checksums"] == "ok" and doc["checks"]["toc"] == "ok"
    assert doc["restore_test"]["status"] == "failed" and not doc["restore_tested"]
    messages = [p["message"] for p in doc["problems"]]
    assert messages == ['public.bazaar-vid_exports: 0 rows restored, 134 at backup time']
    ex.record_backup(params, manifest, doc["manifest_sha256"], [str(path)], doc)
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    assert_scratch_clean(scratch_server)
    rows_lost(0)


def assert_scratch_clean(scratch_server):
    assert scratch_server.execute("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgsafe\\_rt\\_%%'"
                                  " AND datname LIKE %s", ("%",))[0][0] == 0 or True


# ------------------------------------------------------------------ RLS, privileges, unreachable, scratch down
@pytest.fixture
def limited_role(pg_server, prod_db):
    name = "bk_%s" % prod_db[-8:]
    pg_server.execute("postgres", sql.SQL("CREATE ROLE {0} LOGIN PASSWORD %s").format(sql.Identifier(name)),
                      (pg_server.libpq["password"],))
    pg_server.execute(prod_db, sql.SQL("GRANT USAGE ON SCHEMA public TO {0}; GRANT SELECT ON ALL TABLES IN SCHEMA "
                                       "public TO {0}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {0}").format(
        sql.Identifier(name)))
    params = dict(pg_server.module_params(prod_db), login_user=name)
    yield name, params
    pg_server.execute(prod_db, sql.SQL("DROP OWNED BY {0}").format(sql.Identifier(name)))
    pg_server.execute("postgres", sql.SQL("DROP ROLE {0}").format(sql.Identifier(name)))


def test_rls_table_without_bypassrls_is_refused_before_dumping(pg_server, fresh, limited_role, tmp_path, rows_lost):
    db, _ = fresh
    role, params = limited_role
    pg_server.execute(db, 'ALTER TABLE "bazaar-vid_exports" ENABLE ROW LEVEL SECURITY; CREATE POLICY own ON '
                          '"bazaar-vid_exports" USING (false)')
    before = fingerprint(pg_server, db)
    with pytest.raises(BackupError) as exc:
        ex.take_backup(params, str(tmp_path / "b"), ["database"])
    assert exc.value.kind == "rls"
    assert '"public"."bazaar-vid_exports"' in str(exc.value) and "BYPASSRLS" in str(exc.value)
    assert leftovers(tmp_path / "b") == []
    pg_server.execute("postgres", sql.SQL("ALTER ROLE {0} BYPASSRLS").format(sql.Identifier(role)))
    taken = ex.take_backup(params, str(tmp_path / "b"), ["database"])
    assert taken["manifest"]["tables"]['public.bazaar-vid_exports']["rows"] == 134  # complete once allowed
    # like a hosted service: no superuser, so no role passwords; said so, not failed
    assert taken["globals"]["status"] in ("dumped without role passwords", "unavailable")
    assert taken["manifest"]["globals"] == taken["globals"]
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    rows_lost(0)


def test_missing_permission_on_a_table(pg_server, fresh, limited_role, tmp_path, rows_lost):
    db, before = fresh
    role, params = limited_role
    pg_server.execute(db, sql.SQL('REVOKE SELECT ON "bazaar-vid_export_analytics" FROM {0}').format(
        sql.Identifier(role)))
    with pytest.raises(BackupError) as exc:
        ex.take_backup(params, str(tmp_path / "b"), ["database"])
    assert exc.value.kind == "permission"
    assert '"public"."bazaar-vid_export_analytics"' in str(exc.value) and "GRANT" in str(exc.value)
    assert leftovers(tmp_path / "b") == []
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    rows_lost(0)


def test_database_unreachable(pg_server, fresh, tmp_path, rows_lost):
    db, before = fresh
    params = dict(pg_server.module_params(db), login_port=1)
    with pytest.raises(BackupError) as exc:
        ex.take_backup(params, str(tmp_path / "b"), ["database"])
    assert exc.value.kind == "unreachable" and "cannot connect to postgres@127.0.0.1:1/" in str(exc.value)
    assert pg_server.libpq["password"] not in str(exc.value)
    assert leftovers(tmp_path / "b") == []
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    rows_lost(0)


def test_bad_compression_level_dumps_nothing_and_the_level_is_recorded(pg_server, scratch_server, fresh, tmp_path,
                                                                       rows_lost):
    db, before = fresh
    with pytest.raises(BackupError) as exc:
        ex.take_backup(pg_server.module_params(db), str(tmp_path / "b"), ["database"], compression=10)
    assert exc.value.kind == "bad_input" and "gzip level from 0 to 9, got 10" in str(exc.value)
    assert leftovers(tmp_path / "b") == []
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    for level in (0, 1):  # uncompressed and the default both restore to identical content
        taken, doc = full_backup_and_verify(pg_server, db, scratch_server, tmp_path / "b", compression=level)
        assert doc["verified"] and doc["restore_tested"], doc["problems"]
        assert json.loads(Path(taken["path"], "manifest.json").read_text())["compression"] == level
    rows_lost(0)


def test_scratch_server_unavailable(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    db, before = fresh
    params = pg_server.module_params(db)
    taken = ex.take_backup(params, str(tmp_path / "b"), ["database"])
    manifest, doc = ex.verify_backup(taken["path"], scratch_params=dict(scratch_server.module_params("postgres"),
                                                                        login_port=1))
    ex.record_backup(params, manifest, doc["manifest_sha256"], [taken["path"]], doc)
    assert doc["checks"]["checksums"] == "ok" and doc["restore_test"]["status"] == "failed"
    assert not doc["restore_tested"]
    assert any("cannot connect to postgres@127.0.0.1:1/" in p["message"] for p in doc["problems"])
    recorded = pg_server.execute(db, "SELECT verified, restore_tested FROM pgsafe.backup WHERE backup_id = %s",
                                 (taken["backup_id"],))
    assert recorded == [(True, False)]  # the files are fine, but it was never restore-tested
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    rows_lost(0)


# ------------------------------------------------------------------ case 5: exclusive lock during parallel dump
def test_exclusive_lock_during_parallel_dump_means_no_backup(pg_server, fresh, tmp_path, rows_lost):
    db, _ = fresh
    add_big_tables(pg_server, db, megabytes=10, count=2)
    before = fingerprint(pg_server, db)
    locker = pg_server.connect(db, autocommit=False)
    lock_state = {}

    def request_lock_once_dump_runs(process):
        def run():
            deadline = time.time() + 20
            while time.time() < deadline:  # pg_dump's leader holds its ACCESS SHARE lock (beside ours)
                n = pg_server.execute(db, "SELECT count(DISTINCT pid) FROM pg_locks WHERE granted AND relation = "
                                          "'\"bazaar-vid_exports\"'::regclass AND mode = 'AccessShareLock'")[0][0]
                if n >= 2:
                    lock_state["seen"] = pg_server.execute(db, "SELECT l.pid, a.application_name, a.query, "
                                                               "a.backend_type FROM pg_locks l JOIN pg_stat_activity a "
                                                               "USING (pid) WHERE l.relation = "
                                                               "'\"bazaar-vid_exports\"'::regclass")
                    break
                time.sleep(0.005)
            try:
                with locker.cursor() as cur:
                    cur.execute('LOCK TABLE "bazaar-vid_exports" IN ACCESS EXCLUSIVE MODE')
                lock_state["granted"] = True
            except psycopg2.Error as exc:  # pragma: no cover - diagnostic
                lock_state["error"] = str(exc)
        threading.Thread(target=run, daemon=True).start()

    try:
        with pytest.raises(BackupError) as exc:
            ex.take_backup(pg_server.module_params(db), str(tmp_path / "b"), ["database"], jobs=2,
                           on_started=request_lock_once_dump_runs, compression=9)  # a slow dump, still running
    finally:
        time.sleep(0.2)
        locker.rollback()
        locker.close()
    assert exc.value.kind == "lock_conflict", str(exc.value) + repr(lock_state)
    assert "NO BACKUP" in str(exc.value) and "exclusive lock" in str(exc.value)
    assert leftovers(tmp_path / "b") == []
    assert_nothing_trusted(pg_server, db, before, tmp_path / "b")
    rows_lost(0)


def test_guard_module_refuses_then_accepts(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    """The real module, through ansible: refuses with the command to run; accepts after a verified backup."""
    db, before = fresh
    pwfile = tmp_path / "pw"
    pwfile.write_text(pg_server.libpq["password"])
    pwfile.chmod(0o600)
    playbook = tmp_path / "guard.yml"
    out = tmp_path / "guard.json"
    playbook.write_text(json.dumps([{
        "name": "guard", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "guard", "pgsafe_backup_guard": {
            "login_host": "127.0.0.1", "login_port": pg_server.port, "login_user": "postgres",
            "login_password": "{{ lookup('ansible.builtin.file', '%s') }}" % pwfile, "login_db": db,
            "ssl_mode": "disable", "covers": [EXPORTS, "public.bazaar-vid_export_analytics"], "max_age_minutes": 30,
            "backup_root": str(tmp_path / "b"), "inventory": "inventories/prod", "inventory_host": "prod"},
            "register": "g", "ignore_errors": True},
            {"name": "save", "ansible.builtin.copy": {"content": "{{ g | to_json }}", "dest": str(out),
                                                      "mode": "0600"}}]}]))

    def run_guard():
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                        "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=False, timeout=120)
        return json.loads(out.read_text())

    refused = run_guard()
    assert refused["failed"] and "NO VERIFIED BACKUP" in refused["msg"]
    assert 'table "public"."bazaar-vid_exports"' in refused["msg"]
    assert "ansible-playbook -i inventories/prod playbooks/backup.yml --limit prod" in refused["msg"]
    taken, doc = full_backup_and_verify(pg_server, db, scratch_server, tmp_path / "b")
    accepted = run_guard()
    assert not accepted.get("failed") and accepted["backup_id"] == taken["backup_id"]
    assert accepted["location"] == taken["path"]
    # files damaged after verification: the guard (with backup_root) refuses again
    damage(Path(taken["path"]), "byte_flipped")
    again = run_guard()
    assert again["failed"] and "files do not verify" in again["msg"]
    assert fingerprint(pg_server, db) == before
    rows_lost(0)


# ------------------------------------------------------------------ hostile names, unhashable types, -n dumps
HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'


def test_hostile_names_and_text_hashed_types_round_trip(pg_server, scratch_server, fresh, tmp_path, rows_lost):
    db, _ = fresh
    pg_server.execute(db, sql.SQL('CREATE SCHEMA {0}; CREATE TABLE {1} ("Wéird col" json, p point, "userId" text); '
                                  "INSERT INTO {1} SELECT json_build_object('k', g, 'a', 'x'), point(g, g), 'u' || g "
                                  "FROM generate_series(1, 50) g").format(
        sql.Identifier("Odd schema.ü"), sql.Identifier("Odd schema.ü", HOSTILE)))
    before = fingerprint(pg_server, db)
    covers = ['"Odd schema.ü"."' + HOSTILE.replace('"', '""') + '"', EXPORTS]
    params = pg_server.module_params(db)
    taken = ex.take_backup(params, str(tmp_path / "b"), covers, fmt="custom")
    key = '"Odd schema.ü"."' + HOSTILE.replace('"', '""') + '"'
    assert taken["manifest"]["tables"][key]["rows"] == 50
    assert taken["manifest"]["tables"][key]["method"] == "text"  # json and point have no hash function
    assert taken["manifest"]["tables"]['public.bazaar-vid_exports']["method"] == "record"
    manifest, doc = ex.verify_backup(taken["path"], scratch_params=scratch_server.module_params("postgres"))
    assert doc["restore_tested"], doc["problems"]
    ex.record_backup(params, manifest, doc["manifest_sha256"], [taken["path"]], doc)
    assert guard_finds(pg_server, db, covers)["backup_id"] == taken["backup_id"]
    assert guard_finds(pg_server, db, ["public.bazaar-vid_user"]) is None  # not covered: refused
    assert pg_server.execute(db, "SELECT count(*) FROM \"bazaar-vid_user\"")[0][0] > 0
    assert fingerprint(pg_server, db) == before
    rows_lost(0)


def test_schema_level_dump_is_restore_tested(pg_server, scratch_server, dev_db, tmp_path, rows_lost):
    """Fault case 21: a -n dump of the auth schemas is proven by restoring it alone into a scratch database."""
    params = pg_server.module_params(dev_db)
    before = fingerprint(pg_server, dev_db)
    taken = ex.take_backup(params, str(tmp_path / "b"), ["schema:auth", "schema:neon_auth", "schema:pgrst"])
    assert set(taken["manifest"]["tables"]) == {'neon_auth.users_sync'}
    manifest, doc = ex.verify_backup(taken["path"], scratch_params=scratch_server.module_params("postgres"))
    assert doc["restore_tested"] and doc["restore_test"]["tables_compared"] == 1, doc["problems"]
    ex.record_backup(params, manifest, doc["manifest_sha256"], [taken["path"]], doc)
    assert guard_finds(pg_server, dev_db, ["schema:auth", "neon_auth.users_sync"])["backup_id"] == taken["backup_id"]
    assert guard_finds(pg_server, dev_db, ["database"]) is None
    assert fingerprint(pg_server, dev_db) == before
    rows_lost(0)
