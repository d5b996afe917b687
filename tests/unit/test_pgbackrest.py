"""The pgBackRest engine's decisions without a server: config, commands, info/verify parsing, the guard's check."""
from __future__ import annotations

import datetime
import json

import pytest

from ansible.module_utils import pgsafe_pgbackrest as pb
from ansible.module_utils.pgsafe_backup import BackupError

NOW = datetime.datetime(2026, 12, 5, 18, 0, tzinfo=datetime.timezone.utc)
PATHS = pb.layout("/srv/pgsafe/pgbackrest", "prod")
DAMAGED = """2026-12-05 17:36:19.434 P00   INFO: verify command begin 2.45: --stanza=proto
2026-12-05 17:36:19.848 P01   INFO: invalid checksum '20261205-173606F/pg_data/base/5/2838.lz4'
2026-12-05 17:36:19.965 P00   INFO: stanza: proto
                                    status: error
                                      backup: 20261205-173606F, status: invalid, total files checked: 966
stanza: proto
status: error
  backup: 20261205-173606F, status: invalid, total files checked: 966, total valid files: 965
"""
INTACT = """stanza: proto
status: ok
  archiveId: 15-1, total WAL checked: 3, total valid WAL: 3
  backup: 20261205-173606F, status: valid, total files checked: 966, total valid files: 966
"""


def info_json(*backups, archive_max="000000010000000000000009"):
    return json.dumps([{"name": "prod", "status": {"code": 0, "message": "ok"},
                        "db": [{"id": 1, "system-id": 77, "version": "15"}],
                        "archive": [{"id": "15-1", "min": "000000010000000000000001", "max": archive_max}],
                        "backup": [{"label": label, "type": kind, "prior": None, "error": False,
                                    "timestamp": {"start": 1796492166, "stop": 1796492172},
                                    "lsn": {"start": "0/2000028", "stop": "0/3000050"},
                                    "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
                                    "info": {"size": 100, "repository": {"size": 10}}} for label, kind in backups]}])


def record(age_minutes=5, verified=True, restore_tested=True, lsn="0/9000100", stanza="prod"):
    return {"backup_id": "pgbackrest-prod-L", "taken_at": NOW - datetime.timedelta(minutes=age_minutes),
            "verified": verified, "restore_tested": restore_tested, "covers": [{"type": "database"}],
            "details": {"engine": "pgbackrest", "pgbackrest": {"stanza": stanza, "label": "L", "lsn_stop": "0/3000050",
                                                              "pitr_target": {"lsn": lsn} if lsn else None}}}


def test_config_names_the_stanza_repository_and_server_and_refuses_bad_names():
    text = pb.render_config("prod", PATHS, "/var/lib/postgresql/15/main", 5432, socket_path="/run/postgresql")
    assert "[prod]" in text and "repo1-path=/srv/pgsafe/pgbackrest/prod/repo" in text
    assert "pg1-path=/var/lib/postgresql/15/main" in text and "pg1-socket-path=/run/postgresql" in text
    with pytest.raises(BackupError, match="stanza"):
        pb.layout("/x", "../etc")
    with pytest.raises(BackupError, match="absolute path"):
        pb.render_config("prod", PATHS, "relative/dir", 5432)


def test_archiving_problems_name_each_setting_and_its_fix():
    good = {"archive_mode": "on", "wal_level": "replica", "archive_command": pb.archive_command(PATHS["config"], "prod")}
    assert pb.archiving_problems(good, PATHS["config"], "prod") == []
    bad = pb.archiving_problems({"archive_mode": "off", "wal_level": "minimal", "archive_command": ""},
                                PATHS["config"], "prod")
    assert len(bad) == 3 and "restart" in bad[0] and "pg_reload_conf" in bad[2]


def test_command_runs_as_the_servers_os_user():
    argv = pb.command(PATHS["config"], "prod", "backup", "--type=incr", run_as="postgres")
    assert argv[:4] == ["runuser", "-u", "postgres", "--"] and argv[-1] == "backup" and "--type=incr" in argv


def test_info_is_parsed_and_the_backup_type_follows_the_newest_full():
    info = pb.parse_info(info_json(("F1", "full"), ("F1_I1", "incr")), "prod")
    assert [b["label"] for b in info["backups"]] == ["F1", "F1_I1"] and info["archive_max"].endswith("09")
    assert pb.backup_type(info["backups"], 7, info["backups"][0]["stop"] + datetime.timedelta(days=1)) == "incr"
    assert pb.backup_type(info["backups"], 7, info["backups"][0]["stop"] + datetime.timedelta(days=8)) == "full"
    assert pb.backup_type([], 7, NOW, "incr") == "full"
    with pytest.raises(BackupError, match="no stanza staging"):
        pb.parse_info(info_json(), "staging")


def test_verify_damage_is_named_file_by_file_even_though_pgbackrest_exits_zero():
    damaged = pb.parse_verify(DAMAGED)
    assert not damaged["ok"] and damaged["damaged"] == [
        {"file": "20261205-173606F/pg_data/base/5/2838.lz4", "problem": "invalid checksum"}]
    message = pb.verify_refusal("prod", PATHS["repo"], damaged)
    assert "/srv/pgsafe/pgbackrest/prod/repo/backup/prod/20261205-173606F/pg_data/base/5/2838.lz4" in message
    assert "nothing was changed" in message and "backup_pgbackrest_type=full" in message
    assert pb.parse_verify(INTACT)["ok"]
    assert not pb.parse_verify("")["ok"]  # no answer is not a pass


def test_wal_positions_and_segments():
    assert pb.lsn_int("0/3000050") < pb.lsn_int("1/0")
    assert pb.wal_segment("0/9000100") == "000000010000000000000009"
    assert pb.wal_segment("1/A000000") == "00000001000000010000000A"
    with pytest.raises(BackupError):
        pb.lsn_int("nope")


def test_the_guard_accepts_only_a_verified_restore_tested_fresh_backup_with_an_archived_pitr_target():
    found, _ = pb.find_physical_backup([record()], NOW, 60, "prod", "000000010000000000000009")
    assert found["backup_id"] == "pgbackrest-prod-L"
    for bad, why in ((record(verified=False), "not verified"), (record(restore_tested=False), "restore-tested"),
                     (record(age_minutes=90), "older than"), (record(lsn=None), "no PITR target"),
                     (record(lsn="0/1000000"), "before the end of the backup")):
        found, reasons = pb.find_physical_backup([bad], NOW, 60, "prod", "000000010000000000000009")
        assert found is None and why in reasons[0]
    found, reasons = pb.find_physical_backup([record()], NOW, 60, "prod", "000000010000000000000008")
    assert found is None and "not archived" in reasons[0]
    found, reasons = pb.find_physical_backup([record(stanza="other")], NOW, 60, "prod")
    assert found is None and "no pgBackRest backup" in reasons[0]


def test_restore_options_turn_archiving_off_and_target_the_lsn():
    options = pb.restore_options(PATHS, label="L", target_lsn="0/9000100", pg_path="/srv/pitr")
    assert "--archive-mode=off" in options and "--type=lsn" in options and "--target=0/9000100" in options
    assert "--target-action=promote" in options and "--set=L" in options and "--delta" in options
    assert "--target-exclusive" in options
    assert "--type=immediate" in pb.restore_options(PATHS, label="L")


def test_the_rehearsal_copy_takes_a_backup_not_yet_restore_tested_its_comparison_is_the_test():
    untested = record(restore_tested=False)
    assert pb.find_physical_backup([untested], NOW, 60, "prod")[0] is None
    assert pb.find_physical_backup([untested], NOW, 60, "prod", require_restore_tested=False)[0] is untested
    unverified = record(verified=False, restore_tested=False)
    found, reasons = pb.find_physical_backup([unverified], NOW, 60, "prod", require_restore_tested=False)
    assert found is None and "not verified" in reasons[0]


def test_the_rehearsal_copy_refuses_an_unnamed_data_dir_the_sources_or_another_than_stagings(tmp_path):
    staging, prod = tmp_path / "staging", tmp_path / "prod"
    staging.mkdir()
    prod.mkdir()
    (tmp_path / "link").symlink_to(prod)
    args = ("u@127.0.0.1:5433/app", "u@db1:5432/app")
    for unnamed in ("", None, "relative/dir"):
        assert "rehearsal_pgbackrest_data_dir" in pb.copy_refusal(unnamed, str(prod), None, *args)
    # the source's own directory, also through a symlink: never restored over
    assert "SOURCE" in pb.copy_refusal(str(tmp_path / "link"), str(prod), None, *args)
    # staging runs from another directory than the one named: the copy would not be the rehearsal's server
    refusal = pb.copy_refusal(str(tmp_path / "other"), str(prod), str(staging), *args)
    assert str(staging) in refusal and "nothing was changed" in refusal
    assert pb.copy_refusal(str(staging), str(prod), str(staging), *args) is None
    assert pb.copy_refusal(str(staging), str(prod), None, *args) is None  # staging not running: restored, started
    # a server runs from the directory but staging does not answer: someone else's cluster, refused
    assert "does not answer" in pb.copy_refusal(str(staging), str(prod), None, *args, pid_port="5434")


def test_a_copy_that_differs_is_refused_naming_the_tables_and_the_point():
    problems = [{"table": "public.t", "problem": "hash", "message": "public.t: content hash 1 after restore, 2"}]
    message = pb.copy_mismatch(problems, "u@db1:5432/app", "u@127.0.0.1:5433/app", "0/9000100")
    assert "REHEARSAL COPY DIFFERS" in message and "public.t" in message and "0/9000100" in message
    assert "nothing was recorded" in message
    # an unlogged table: its rows are in no WAL and no physical backup; the fix is named
    unlogged = pb.copy_mismatch(problems, "u@db1:5432/app", "u@127.0.0.1:5433/app", "0/9000100", ["public.t"])
    assert "public.t is UNLOGGED" in unlogged and "SET LOGGED" in unlogged and "backup_engine: pg_dump" in unlogged
