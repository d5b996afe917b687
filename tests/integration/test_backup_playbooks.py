"""playbooks/backup.yml and playbooks/restore.yml end to end on the test clusters.

prod = a fresh Sprint 90 database on the test cluster; staging = the scratch cluster (restore tests)
and, through a local connection, the "remote" host receiving the third copy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible.module_utils import pgsafe_backup_exec as ex
from ansible.module_utils.pgsafe_backup import BackupError, load_manifest, verify_files
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS
from tests.pg import run_playbook, write_inventory

EXPORTS = 'public.bazaar-vid_exports'  # table_key: parts quoted only when they hold a dot or a quote


def fingerprint(server, db):
    conn = server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            ex.pin_settings(cur)
            return ex.table_stats(cur, [t for t in ex.list_tables(cur) if t[0] not in PRODUCT_SCHEMAS])
    finally:
        conn.close()


@pytest.fixture
def setup(tmp_path, pg_server, scratch_server, prod_db):
    inv = write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db), "staging": (scratch_server, "postgres")})
    dests = [str(tmp_path / "primary"), str(tmp_path / "mirror")]
    extra = {"backup_hosts": "prod", "backup_destinations": dests, "backup_remote_host": "staging",
             "backup_remote_dir": str(tmp_path / "remote"), "restore_backup_root": dests[0]}
    env = {"PGSAFE_ARTIFACTS_ROOT": str(tmp_path / "artifacts")}
    yield inv, extra, env, prod_db
    for (name,) in pg_server.execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s",
                                     (prod_db + "\\_restored\\_%",)):
        pg_server.drop_database(name)


def test_backup_copies_verify_and_restore(pg_server, scratch_server, setup, tmp_path):
    inv, extra, env, db = setup
    before = fingerprint(pg_server, db)
    result = run_playbook("backup.yml", inventory=str(inv), extra_vars=extra, env=dict(env, ANSIBLE_VERBOSITY="3"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert pg_server.libpq["password"] not in out  # -vvv: the password is in no argv, log or result
    rows = pg_server.execute(db, "SELECT backup_id, verified, restore_tested, locations, kind, covers, details "
                                 "FROM pgsafe.backup")
    assert len(rows) == 1
    backup_id, verified, restore_tested, locations, kind, covers, details = rows[0]
    assert verified and restore_tested and kind == "database" and covers == [{"type": "database"}]
    assert details["verification"]["restore_test"]["status"] == "ok"
    assert details["tables"][EXPORTS]["rows"] == 134
    expected = {str(tmp_path / "primary" / backup_id), str(tmp_path / "mirror" / backup_id),
                "staging:" + str(tmp_path / "remote" / backup_id)}
    assert set(locations) == expected
    for directory in ("primary", "mirror", "remote"):  # three identical, checksum-clean copies
        manifest, _ = load_manifest(str(tmp_path / directory / backup_id))
        assert verify_files(str(tmp_path / directory / backup_id), manifest) == []
        assert not [n for n in os.listdir(tmp_path / directory) if n.startswith(".tmp-")]
    assert not (tmp_path / "primary" / (backup_id + ".tar")).exists()
    report = json.loads((tmp_path / "artifacts" / "prod" / "backup" / "latest" / "report.json").read_text())
    section = report["sections"]["backup"]
    assert section["backup_id"] == backup_id and "restore-tested" in section["summary"]
    assert fingerprint(pg_server, db) == before

    # restore.yml with no arguments: the newest verified backup into a NEW database
    result = run_playbook("restore.yml", inventory=str(inv), extra_vars={"restore_backup_root": extra[
        "restore_backup_root"]}, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    restored = pg_server.execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s",
                                 (db + "\\_restored\\_%",))
    assert len(restored) == 1
    assert fingerprint(pg_server, restored[0][0]) == before

    # lose rows, then put one table back: refused without the confirmation, nothing changed
    pg_server.execute(db, 'DELETE FROM "bazaar-vid_export_analytics" WHERE id IN (SELECT id FROM '
                          '"bazaar-vid_export_analytics" ORDER BY id LIMIT 50)')
    damaged = fingerprint(pg_server, db)
    objects = {"restore_mode": "objects", "restore_objects": ["public.bazaar-vid_export_analytics"],
               "restore_backup_root": extra["restore_backup_root"]}
    path = str(tmp_path / "primary" / backup_id)
    with pytest.raises(BackupError, match="restore_confirm=" + db):
        ex.restore_objects(pg_server.module_params(db), path, objects["restore_objects"])
    assert fingerprint(pg_server, db) == damaged
    result = run_playbook("restore.yml", inventory=str(inv), extra_vars=dict(objects, restore_confirm=db), env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert fingerprint(pg_server, db) == before

    # a dropped table comes back with its indexes and constraints
    pg_server.execute(db, 'DROP TABLE "bazaar-vid_export_analytics"')
    done = ex.restore_objects(pg_server.module_params(db), path, objects["restore_objects"])
    assert done["create"] == ['public.bazaar-vid_export_analytics'] and done["problems"] == []
    assert fingerprint(pg_server, db) == before
    indexes = pg_server.execute(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'bazaar-vid_export_analytics'")
    assert indexes[0][0] >= 1


def test_check_mode_writes_nothing(pg_server, setup, tmp_path):
    inv, extra, env, db = setup
    result = run_playbook("backup.yml", inventory=str(inv), extra_vars=extra, env=env, check=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (tmp_path / "primary").exists() or os.listdir(tmp_path / "primary") == []
    assert pg_server.execute(db, "SELECT to_regclass('pgsafe.backup')")[0][0] is None


def test_failed_backup_fails_the_play(pg_server, setup, tmp_path):
    inv, extra, env, db = setup
    result = run_playbook("backup.yml", inventory=str(inv), env=env,
                          extra_vars=dict(extra, backup_scope="objects", backup_objects=["public.no_such_table"]))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'table "public"."no_such_table" not found' in out, out[-4000:]
    assert "NO verified backup was taken" in out
    report = json.loads((tmp_path / "artifacts" / "prod" / "backup" / "latest" / "report.json").read_text())
    assert report["status"] == "failed"
    assert not list(Path(extra["backup_destinations"][0]).glob("*"))
