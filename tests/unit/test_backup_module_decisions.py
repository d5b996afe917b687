"""The decisions the backup modules moved into module_utils: the guard's usable backup, the --diff of a
restore and of retention, failures reported one way, a second database's connection."""
import datetime
import json
import os

import pytest

from ansible.module_utils.pgsafe_backup import (BackupError, build_manifest, file_inventory, find_usable_backup,
                                                manifest_bytes, reported_failures)
from ansible.module_utils.pgsafe_backup_records import retention_diff
from ansible.module_utils.pgsafe_backup_restore import restore_diff
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_snapshot import scratch_server

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc)


def record(backup_id, minutes, **extra):
    return dict({"backup_id": backup_id, "taken_at": NOW - datetime.timedelta(minutes=minutes),
                 "covers": [{"type": "database"}], "verified": True, "restore_tested": True, "locations": [],
                 "manifest_sha256": None}, **extra)


def backup_dir(root, backup_id):
    path = root / backup_id
    (path / "dump").mkdir(parents=True)
    (path / "dump" / "toc.dat").write_bytes(b"toc")
    manifest = build_manifest(backup_id, "db", "16", [{"type": "database"}], "directory", file_inventory(str(path)),
                              {}, NOW.isoformat(), "me", "test")
    data = manifest_bytes(manifest)
    (path / "manifest.json").write_bytes(data)
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_usable_backup_skips_a_newer_one_whose_files_no_longer_verify(tmp_path):
    good_sha = backup_dir(tmp_path, "old")
    bad_sha = backup_dir(tmp_path, "new")
    (tmp_path / "new" / "dump" / "toc.dat").write_bytes(b"TOC")  # same size, flipped content
    records = [record("new", 5, manifest_sha256=bad_sha), record("old", 30, manifest_sha256=good_sha)]
    found, decision = find_usable_backup(records, ["database"], 60, NOW, backup_root=str(tmp_path))
    assert decision is None and found["backup_id"] == "old"
    assert found["verified_location"] == os.path.join(str(tmp_path), "old")
    found, decision = find_usable_backup(records[:1], ["database"], 60, NOW, backup_root=str(tmp_path))
    assert found is None and "new: files do not verify" in decision["reasons"][0]
    assert find_usable_backup(records, ["database"], 60, NOW)[0]["backup_id"] == "new"  # no root: records only


def test_restore_diff_names_what_the_target_gets():
    whole = {"target_database": "copy", "overwrites": True, "rows_from_backup": {"public.a": 3}}
    assert restore_diff(whole) == ({"database": "copy", "exists": True},
                                   {"database": "copy", "tables": {"public.a": 3}})
    objects = {"database": "prod", "replace_rows_of": ["public.a"], "create": ["public.b"], "create_schemas": [],
               "rows_from_backup": {"public.a": 3, "public.b": 1}}
    before, after = restore_diff(objects)
    assert before["tables_whose_rows_are_replaced"] == ["public.a"]
    assert after["tables"] == {"public.a": 3, "public.b": 1}


def test_retention_diff_per_destination():
    deleted = [{"backup_id": "b1", "path": "/d1/b1"}]
    kept = [{"backup_id": "b2", "path": "/d1/b2"}, {"backup_id": "c1", "path": "/d2/c1"}]
    assert retention_diff(deleted, kept) == ({"/d1": ["b1", "b2"], "/d2": ["c1"]}, {"/d1": ["b2"], "/d2": ["c1"]})


class Module:
    def fail_json(self, **kwargs):
        raise SystemExit(kwargs)


@pytest.mark.parametrize(("error", "kind"), [(OSError(28, "No space left"), "io"),
                                              (BackupError("x", kind="damaged"), "damaged"),
                                              (RuntimeError("deadlock\n detected"), "database")])
def test_reported_failures_one_way(error, kind):
    with pytest.raises(SystemExit) as exc:
        with reported_failures(Module(), "backup"):
            raise error
    assert exc.value.args[0]["failure_kind"] == kind
    assert "\n" not in exc.value.args[0]["msg"]


def test_reported_failures_lets_other_errors_through_when_asked():
    with pytest.raises(RuntimeError):
        with reported_failures(Module(), "copy", database_errors=False):
            raise RuntimeError("not a database error")


def test_second_database_has_the_first_connections_options():
    option = second_connection_option()
    assert option["type"] == "dict"
    assert {"login_host", "login_port", "login_user", "login_password", "login_db", "ssl_mode",
            "connect_params", "session_role"} <= set(option["options"])
    assert option["options"]["login_password"]["no_log"] is True


def test_scratch_server_is_the_given_one_or_the_own_servers_postgres():
    own = {"login_host": "db", "login_port": 5433, "login_user": "u", "login_password": "p", "login_db": "app",
           "session_role": "owner", "connect_params": {}}
    given = {"login_host": "scratch", "login_db": "postgres"}
    assert scratch_server(own, given) is given
    fallback = scratch_server(own)
    assert fallback["login_host"] == "db" and fallback["login_db"] == "postgres" and fallback["session_role"] is None
    assert json.dumps(fallback)  # plain data
