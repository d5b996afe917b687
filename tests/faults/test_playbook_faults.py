"""Playbook-level fault cases (fault-cases.md 2, 8, 9, 10, 25 and the gates): the Sprint 90 prod
playbook interrupted in every phase, its backend terminated, its lock waits, statement timeouts.

One fresh prod-like database goes through the cases IN ORDER (pytest keeps file order): each case
breaks a run, checks that nothing is lost and nothing is half-done, and the next case's run is the
re-run after the cause was removed, so every case also proves that the re-run gets past the point
where the previous one broke.  The last case runs to the end and a second run is a no-op.

The prod playbook's rehearsal gate is overridden here by name (pgsafe_overrides.rehearsal, with a reason): the gates
have their own cases in test_gate_faults.py.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ansible.module_utils.pgsafe_backup import MANIFEST_NAME, TMP_PREFIX
from tests.faults import faultlib as fl

# Whole playbook runs per case: part of `make faults`, not of `make test` (CI time).
pytestmark = pytest.mark.slow

LOCK_TIMEOUT_S = 3.0  # schema_fix_lock_timeout (role default)


@pytest.fixture(scope="module")
def world(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pbfaults")
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = fl.Env(tmp, {"prod": (pg_server, prod), "staging": (pg_server, staging)})
        state = {"env": env, "server": pg_server, "db": prod,
                 "before": fl.fingerprint(pg_server, prod), "verified": 0}
        yield state


def prod_vars(world, **extra):
    base = {**fl.NO_REHEARSAL, "confirm_database": world["db"]}
    base.update(extra)
    return base


def verified_backups(world) -> int:
    server, db = world["server"], world["db"]
    if not server.execute(db, "SELECT to_regclass('pgsafe.backup') IS NOT NULL")[0][0]:
        return 0
    return server.execute(db, "SELECT count(*) FROM pgsafe.backup WHERE verified")[0][0]


def assert_nothing_lost_or_half_done(world, rows_lost):
    """Every pre-run row is in place or in quarantine; no half-converted column is left over."""
    server, db = world["server"], world["db"]
    lost = fl.rows_lost_between(world["before"], server, db)
    rows_lost(lost)
    assert lost == 0
    leftovers = server.execute(db, "SELECT attrelid::regclass::text, attname FROM pg_attribute a "
                                   "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                                   "WHERE n.nspname = 'public' AND NOT attisdropped AND attnum > 0 "
                                   "AND (attname LIKE '%\\_new' OR attname LIKE '%pgsafe%')")
    assert leftovers == [], f"half-converted columns left: {leftovers}"
    # the pair is converted together or not at all
    id_type = fl.column_type(server, db, fl.EXPORTS, "id")
    child_type = fl.column_type(server, db, fl.ANALYTICS, "export_id")
    assert (id_type, child_type) in (("text", "text"), ("uuid", "uuid")), (id_type, child_type)
    invalid = server.execute(db, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
    assert invalid == [] or all("pgsafe" not in i for (i,) in invalid)


def last_started_phase(text: str) -> str | None:
    phases = re.findall(r"Start phase (\w+)\]", text)
    return phases[-1] if phases else None


def kill_in_phase(world, phase, when=None, timeout=300):
    """Start the prod playbook, SIGKILL its whole process group once ``phase`` is running (and
    ``when()`` says so), and return the run's output."""
    env = world["env"]
    proc = env.start("sprint90_prod.yml", prod_vars(world))
    try:
        fl.wait_for(lambda: f"Start phase {phase}]" in proc.out_path.read_text(), timeout=timeout, proc=proc)
        if when is not None:
            fl.wait_for(when, timeout=120, proc=proc)
    finally:
        fl.kill_group(proc)
    # the killed controller's backend may still finish (or roll back) its statement: wait until it is gone
    fl.wait_for(lambda: not fl.pgsafe_sessions(world["server"], world["db"]), timeout=120)
    out = proc.out_path.read_text()
    assert last_started_phase(out) == phase, f"killed in {last_started_phase(out)}, not {phase}"
    assert f"End phase {phase}]" not in out
    return out


class LockHolder:
    """Another session holding ACCESS SHARE on a table (what an open `BEGIN; SELECT ...` holds)."""

    def __init__(self, server, db, table):
        self.conn = server.connect(db, autocommit=False)
        self.table = table

    def __enter__(self):
        schema, name = self.table.split(".", 1)
        with self.conn.cursor() as cur:
            cur.execute('SELECT set_config(\'application_name\', \'fault-holder\', false)')
            cur.execute(f'SELECT count(*) FROM "{schema}"."{name}"')
        self.pid = self.conn.get_backend_pid()
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def pgsafe_waiting_on_lock(server, db):
    return server.execute("postgres", "SELECT pid, extract(epoch FROM now() - state_change)::float, query_start "
                                      "FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'pgsafe%%' "
                                      "AND wait_event_type = 'Lock'", (db,))


# ---------------------------------------------------------------------------------------- cases
def test_lock_held_on_exports_preflight_refuses_naming_the_session(world, rows_lost):
    env, server, db = world["env"], world["server"], world["db"]
    with LockHolder(server, db, fl.EXPORTS) as holder:
        result = env.run("sprint90_prod.yml", prod_vars(world))
    assert result.returncode != 0
    assert f'session {holder.pid} holds AccessShareLock on "public"."bazaar-vid_exports"' in result.flat
    assert "wait for it to finish or stop it before the run" in result.flat
    assert "Start phase backup]" not in result.stdout
    assert fl.fingerprint(server, db) == world["before"]
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_lock_held_with_preflight_bypassed_waits_lock_timeout_per_attempt_and_fails_closed(world, rows_lost):
    env, server, db = world["env"], world["server"], world["db"]
    waits: dict = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for pid, seconds, started in pgsafe_waiting_on_lock(server, db):
                waits[(pid, started)] = max(waits.get((pid, started), 0.0), seconds)
            time.sleep(0.1)

    with LockHolder(server, db, fl.ANALYTICS):
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            started = time.monotonic()
            result = env.run("sprint90_prod.yml", prod_vars(world, preflight_tables=[]))
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            sampler.join()
    assert result.returncode != 0
    assert "failed in phase schema_fix" in result.flat, result.flat[-3000:]
    assert "bazaar-vid_export_analytics" in result.flat and "lock" in result.flat.lower()
    assert waits, "the ALTER never queued behind the held lock"
    assert max(waits.values()) <= LOCK_TIMEOUT_S + 1.5, waits  # bounded writer stall per attempt
    assert len(waits) <= 4, waits  # bounded retries (schema_fix_retries=3 -> at most 4 attempts)
    assert elapsed < 600
    assert_nothing_lost_or_half_done(world, rows_lost)
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "text"  # failed closed: nothing converted
    world["verified"] = verified_backups(world)


def test_statement_timeout_in_schema_fix_rolls_back_fully(world, rows_lost):
    env, server, db = world["env"], world["server"], world["db"]
    result = env.run("sprint90_prod.yml", prod_vars(world, schema_fix_statement_timeout="1ms"))
    assert result.returncode != 0
    assert "failed in phase schema_fix" in result.flat, result.flat[-3000:]
    assert "statement timeout" in result.flat
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "text"
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_backend_terminated_mid_alter_then_rerun(world, rows_lost):
    """pg_terminate_backend on the pgsafe session while its ALTER waits for the lock."""
    env, server, db = world["env"], world["server"], world["db"]
    proc = env.start("sprint90_prod.yml", prod_vars(world))
    holder = None
    terminated = []
    try:
        fl.wait_for(lambda: "Start phase schema_fix]" in proc.out_path.read_text(), timeout=400, proc=proc)
        holder = LockHolder(server, db, fl.ANALYTICS).__enter__()
        waiting = fl.wait_for(lambda: pgsafe_waiting_on_lock(server, db), timeout=120, proc=proc)
        for pid, _, _ in waiting:
            terminated += server.execute("postgres", "SELECT pg_terminate_backend(%s)", (pid,))
        holder.__exit__()
        holder = None
        proc.wait(timeout=300)
    finally:
        if holder is not None:
            holder.__exit__()
        if proc.poll() is None:
            fl.kill_group(proc)
    out = fl.flat(proc.out_path.read_text())
    assert terminated and terminated[0][0] is True
    if proc.returncode != 0:  # a terminated backend is an error naming the step, never a silent success
        assert "failed in phase schema_fix" in out, out[-3000:]
        assert "terminat" in out.lower() or "connection" in out.lower()
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_killed_in_backup_leaves_no_verified_backup(world, rows_lost):
    """SIGKILL while pg_dump writes into its temporary directory; the re-run (next case) backs up anew."""
    env = world["env"]
    before_verified = verified_backups(world)

    def dump_in_progress():
        return [p for p in env.backups[0].glob(TMP_PREFIX + "*")] if env.backups[0].exists() else []

    with fl.PsSampler(marker=str(env.inventory)) as sampler:
        kill_in_phase(world, "backup", when=lambda: dump_in_progress() and sampler.environs)
    world["killed_passfiles"] = fl.passfiles_of(sampler.environs)
    time.sleep(2)
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=False).stdout
    assert str(env.backups[0]) not in ps, "pg_dump outlived its controller"
    assert verified_backups(world) == before_verified  # the half-written directory is never a backup
    for dest in env.backups:  # only tmp dirs (".tmp-*") may lack a manifest; finished ones have one
        for child in (dest.iterdir() if dest.exists() else ()):
            if child.is_dir() and not child.name.startswith(TMP_PREFIX):
                assert (child / MANIFEST_NAME).exists(), f"{child} looks like a backup but has no manifest"
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_killed_run_leaves_no_password_file_behind(world, rows_lost):
    """The pg_dump of the SIGKILLed run read the password from a 0600 passfile: it must not outlive the run."""
    passfiles = world.get("killed_passfiles")
    assert passfiles, "the killed run's pg_dump environment was not sampled"
    left = [p for p in passfiles if Path(p).exists()]
    assert left == [], f"password file(s) left behind by the killed run: {left}"
    rows_lost(0)


def test_killed_in_schema_fix_mid_alter_then_rerun(world, rows_lost):
    server, db = world["server"], world["db"]
    before_verified = verified_backups(world)
    holder = {}

    def alter_waiting():
        if "h" not in holder:
            holder["h"] = LockHolder(server, db, fl.ANALYTICS).__enter__()
        return pgsafe_waiting_on_lock(server, db)

    try:
        kill_in_phase(world, "schema_fix", when=alter_waiting)
    finally:
        if "h" in holder:
            holder["h"].__exit__()
    assert verified_backups(world) > before_verified  # the re-run got past the backup this time
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_killed_in_table_cleanup_then_rerun(world, rows_lost):
    server, db = world["server"], world["db"]
    holder = {}

    def cleanup_waiting():
        if "h" not in holder:
            holder["h"] = LockHolder(server, db, "public.bazaar-vid_patch").__enter__()
        return pgsafe_waiting_on_lock(server, db)

    try:
        kill_in_phase(world, "table_cleanup", when=cleanup_waiting)
    finally:
        if "h" in holder:
            holder["h"].__exit__()
    # the schema fix (the phase before) completed in this re-run
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "uuid"
    assert_nothing_lost_or_half_done(world, rows_lost)
    for table in fl.CLEANUP_TABLES:  # each retired table is either in place or in quarantine, never gone
        name = table.split(".", 1)[1]
        where = server.execute(db, "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                   "WHERE c.relname = %s OR c.relname LIKE %s", (name, name + "%"))
        assert where, f"{table} vanished"


def test_killed_in_validate_then_rerun(world, rows_lost):
    server, db = world["server"], world["db"]
    kill_in_phase(world, "validate", when=lambda: fl.pgsafe_sessions(server, db) or True)
    assert_nothing_lost_or_half_done(world, rows_lost)


def test_rerun_after_every_fault_converges_and_second_run_is_a_no_op(world, rows_lost):
    env, server, db = world["env"], world["server"], world["db"]
    result = env.run("sprint90_prod.yml", prod_vars(world))
    assert result.returncode == 0, result.flat[-4000:]
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "uuid"
    assert fl.column_type(server, db, fl.ANALYTICS, "export_id") == "uuid"
    fks = server.execute(db, "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' "
                             "AND conrelid IN ('public.\"bazaar-vid_exports\"'::regclass, "
                             "'public.\"bazaar-vid_export_analytics\"'::regclass)")
    assert len(fks) == 3 and all(valid for _, valid in fks), fks
    for table in fl.CLEANUP_TABLES:
        schema, name = table.split(".", 1)
        assert server.execute(db, "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, name))[0][0] is None
    assert_nothing_lost_or_half_done(world, rows_lost)
    after = fl.fingerprint(server, db)
    backups = verified_backups(world)
    again = env.run("sprint90_prod.yml", prod_vars(world))
    assert again.returncode == 0, again.flat[-4000:]
    assert fl.plan_section_status(env, "prod", "sprint90_prod") == "converged"
    assert fl.fingerprint(server, db) == after
    assert verified_backups(world) == backups  # no new backup for a run that changes nothing


def test_lock_in_another_copy_of_the_database_is_not_blamed(pg_server, tmp_path, rows_lost):
    """Two databases cloned from one template share table OIDs: a lock held in one must not make the
    preflight of the other refuse (pg_locks spans the cluster; only this database's locks count)."""
    with pg_server.sprint90_database("prod") as target, pg_server.sprint90_database("prod") as other:
        env = fl.Env(tmp_path, {"prod": (pg_server, target), "staging": (pg_server, "postgres")})
        before = fl.fingerprint(pg_server, target)
        with LockHolder(pg_server, other, fl.EXPORTS) as holder:
            result = env.run("validate.yml", {"preflight_tables": [fl.EXPORTS], "validate_checks": ["invalid_indexes"]},
                             extra_args=("--limit", "prod"))
        assert f"session {holder.pid} holds" not in result.flat, "a lock in another database was blamed"
        assert result.returncode == 0, result.flat[-3000:]
        assert fl.fingerprint(pg_server, target) == before
        rows_lost(fl.rows_lost_between(before, pg_server, target))
