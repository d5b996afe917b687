"""Security checks (fault-cases.md 22, 23): no secret anywhere a run leaves traces, and every name
that comes from inventory variables is a plain name to the SQL.

Secrets: one failing run (a SQL step dies on a statement timeout) and one succeeding run of the prod
playbook, both with -vvv and --diff, ANSIBLE_LOG_PATH set, while a thread samples `ps` and the
environment of every pg_dump / pg_restore / psql child. Then stdout, the log, the run's artifacts,
the backups, the process arguments, the children's environments, the passfiles and every text-like
column of the product schema are searched for the password.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from psycopg2 import sql

from tests.faults import faultlib as fl


@pytest.fixture(scope="module")
def traced(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secrets")
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = fl.Env(tmp, {"prod": (pg_server, prod), "staging": (pg_server, staging)})
        log = tmp / "ansible.log"
        extra = {**fl.NO_REHEARSAL, "confirm_database": prod}
        outputs = []
        with fl.PsSampler(marker=str(env.inventory)) as sampler:
            failing = env.run("sprint90_prod.yml", dict(extra, schema_fix_statement_timeout="1ms"),
                              extra_args=("-vvv", "--diff"), env={"ANSIBLE_LOG_PATH": str(log)})
            outputs.append(failing)
            ok = env.run("sprint90_prod.yml", extra, extra_args=("-vvv", "--diff"),
                         env={"ANSIBLE_LOG_PATH": str(log)})
            outputs.append(ok)
        yield {"env": env, "server": pg_server, "db": prod, "log": log, "runs": outputs, "sampler": sampler,
               "password": env.password}


def secrets_in(text: str, password: str) -> list[str]:
    found = []
    if password in text:
        i = text.index(password)
        found.append(text[max(0, i - 80):i].replace(password, "<PASSWORD>") + "<PASSWORD>")
    for needle in (f":{password}@", f"password={password}", f"PGPASSWORD={password}"):
        if needle in text:
            found.append(needle.replace(password, "<PASSWORD>"))
    return found


def test_runs_happened_as_intended(traced):
    failing, ok = traced["runs"]
    assert failing.returncode != 0 and "statement timeout" in failing.flat, failing.flat[-3000:]
    assert ok.returncode == 0, ok.flat[-4000:]
    assert "<redirected output>" not in ok.stdout and len(ok.stdout) > 10000  # -vvv really was verbose


def test_no_password_in_stdout_with_vvv_and_diff(traced):
    for result in traced["runs"]:
        assert secrets_in(result.stdout + result.stderr, traced["password"]) == []


def test_no_password_in_the_ansible_log(traced):
    text = traced["log"].read_text()
    assert "TASK [" in text  # the log was written
    assert secrets_in(text, traced["password"]) == []


def test_no_password_in_artifacts_or_backups(traced):
    env = traced["env"]
    files = [p for root in (env.artifacts, *env.backups) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "report.json" for p in files) and any(p.name == "manifest.json" for p in files)
    password = traced["password"].encode()
    leaking = [str(p) for p in files if password in p.read_bytes()]
    assert leaking == []


def test_no_password_in_process_arguments(traced):
    sampler = traced["sampler"]
    assert any("pg_dump" in a for a in sampler.args), "the sampler never saw pg_dump: sampling too slow?"
    leaking = [a for a in sampler.args if traced["password"] in a]
    assert leaking == []


def test_no_pgpassword_in_the_environment_of_pg_dump_and_pg_restore(traced):
    environs = traced["sampler"].environs
    assert environs, "no pg_dump/pg_restore environment was sampled"
    password = traced["password"].encode()
    for pid, raw in environs.items():
        names = [entry.split(b"=", 1)[0] for entry in raw.split(b"\0") if entry]
        assert b"PGPASSWORD" not in names, pid
        assert password not in raw, pid


def test_passfiles_are_0600_and_removed(traced):
    passfiles = fl.passfiles_of(traced["sampler"].environs)
    assert passfiles, "pg_dump got no PGPASSFILE: how did it authenticate?"
    for path in passfiles:
        assert not os.path.exists(path), f"passfile {path} was left behind"
    for path, mode in traced["sampler"].passfile_modes.items():
        assert stat.S_IMODE(mode) == 0o600, (path, oct(mode))


def test_no_password_in_the_product_schema(traced):
    server, db = traced["server"], traced["db"]
    tables = server.execute(db, "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE n.nspname IN ('pgsafe', 'pgsafe_quarantine') AND c.relkind IN ('r', 'p')")
    assert len(tables) >= 8
    for schema, table in tables:
        hits = server.execute(db, sql.SQL("SELECT count(*) FROM {}.{} AS t WHERE strpos(t::text, %s) > 0").format(
            sql.Identifier(schema), sql.Identifier(table)), (traced["password"],))[0][0]
        assert hits == 0, f"{schema}.{table} holds the password in {hits} row(s)"


def test_secret_scan_would_catch_a_leak(traced, tmp_path):
    """The scanner is not blind: a planted leak in each channel is found."""
    password = traced["password"]
    assert secrets_in(f"login postgresql://postgres:{password}@127.0.0.1/x", password)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(8)", password])
    try:
        with fl.PsSampler() as sampler:
            fl.wait_for(lambda: any(password in a for a in sampler.args), timeout=10)
    finally:
        proc.kill()
        proc.wait()
