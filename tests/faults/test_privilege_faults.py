"""Least privilege (fault-cases.md 24): the logins of docs/least-privilege.md, created with the SQL of that
document, each run the playbooks they are meant for; a read-only or under-privileged login is refused by
the preflight, naming the missing privilege, before anything changes."""
from __future__ import annotations

import json
import re
import uuid

import pytest
from psycopg2 import sql

from tests.faults import faultlib as fl

# Whole playbook runs per case: part of `make faults`, not of `make test` (CI time).
pytestmark = pytest.mark.slow

DOC = fl.ROOT / "docs" / "least-privilege.md"
DOC_NAMES = ("bazaar_owner", "pgsafe_migration", "pgsafe_backup_reader", "pgsafe_validation")


def doc_sql(section: str) -> str:
    match = re.search(r"<!-- sql:" + re.escape(section) + r" -->\s*```sql\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/least-privilege.md has no sql:{section} block"
    return match.group(1)


class Logins:
    """The documented roles under unique names (the test cluster is shared by concurrent sessions)."""

    def __init__(self, server):
        self.server = server
        suffix = uuid.uuid4().hex[:6]
        self.names = {name: f"{name}_{suffix}" for name in DOC_NAMES}
        self.extra: list[str] = []

    def render(self, text: str, db: str) -> str:
        for doc_name, name in self.names.items():
            text = re.sub(rf"\b{doc_name}\b", name, text)
        return re.sub(r"\bbazaar_vid\b", '"' + db.replace('"', '""') + '"', text)

    def run_doc(self, section: str, db: str, dbname: str = "postgres") -> None:
        self.server.execute(dbname, self.render(doc_sql(section), db))

    def login(self, doc_name: str) -> str:
        return self.names[doc_name]

    def create_login(self, base: str, *options: str) -> str:
        name = f"{base}_{uuid.uuid4().hex[:6]}"
        self.server.execute("postgres", sql.SQL("CREATE ROLE {} LOGIN " + " ".join(options)).format(sql.Identifier(name)))
        self.extra.append(name)
        self.set_password(name)
        return name

    def set_password(self, name: str) -> None:
        self.server.execute("postgres", sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(name)),
                            (self.server.libpq["password"],))

    def drop(self) -> None:
        """Drop the roles (the databases they had rights in are dropped before: nothing else refers to them)."""
        for name in self.extra + list(reversed(list(self.names.values()))):
            self.server.execute("postgres", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def logins(pg_server):
    roles = Logins(pg_server)
    roles.run_doc("cluster", db="unused")
    for doc_name in DOC_NAMES[1:]:
        roles.set_password(roles.names[doc_name])
    yield roles
    roles.drop()


@pytest.fixture(scope="module")
def granted_prod(pg_server, logins):
    """A prod-like database set up exactly as the document says."""
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        logins.run_doc("database", prod, dbname=prod)
        yield {"prod": prod, "staging": staging}


def env_as(tmp_path, server, hosts, logins_for: dict) -> fl.Env:
    """An Env whose hosts log in as given (host_vars pg_user), the scratch host stays the superuser."""
    env = fl.Env(tmp_path, hosts)
    for host, user in logins_for.items():
        (env.inv_dir / "host_vars" / host).mkdir(parents=True, exist_ok=True)
        target = env.inv_dir / "host_vars" / host
        if target.is_symlink():
            continue
        (target / "zz_login.yml").write_text(f"pg_user: {user}\n")
    return env


def product_schema_exists(server, db) -> bool:
    return server.execute(db, "SELECT to_regnamespace('pgsafe') IS NOT NULL")[0][0]


# ---------------------------------------------------------------------------- least privilege, positive
def test_documented_logins_run_the_playbooks_they_are_meant_for(pg_server, logins, granted_prod, tmp_path, rows_lost):
    prod, staging = granted_prod["prod"], granted_prod["staging"]
    before = fl.fingerprint(pg_server, prod)
    mig = env_as(tmp_path / "mig", pg_server, {"prod": (pg_server, prod), "staging": (pg_server, staging)},
                 {"prod": logins.login("pgsafe_migration")})
    result = mig.run("sprint90_prod.yml", {**fl.NO_REHEARSAL, "confirm_database": prod})
    assert result.returncode == 0, result.flat[-4000:]
    report = json.loads((mig.artifacts / "prod/sprint90_prod/latest/report.json").read_text())
    preflight = report["sections"]["preflight"]
    assert preflight["current_user"] == logins.login("pgsafe_migration"), preflight
    assert f"as {logins.login('pgsafe_migration')} (not superuser)" in " ".join(preflight["summary"].split())
    assert fl.column_type(pg_server, prod, fl.EXPORTS, "id") == "uuid"
    lost = fl.rows_lost_between(before, pg_server, prod)
    assert lost == 0

    logins.run_doc("after-install", prod, dbname=prod)
    bak = env_as(tmp_path / "bak", pg_server, {"prod": (pg_server, prod), "staging": (pg_server, staging)},
                 {"prod": logins.login("pgsafe_backup_reader")})
    verified = pg_server.execute(prod, "SELECT count(*) FROM pgsafe.backup WHERE verified")[0][0]
    result = bak.run("backup.yml", extra_args=("--limit", "prod"))
    assert result.returncode == 0, result.flat[-4000:]
    assert pg_server.execute(prod, "SELECT count(*) FROM pgsafe.backup WHERE verified")[0][0] == verified + 1

    after = fl.fingerprint(pg_server, prod)
    val = env_as(tmp_path / "val", pg_server, {"prod": (pg_server, prod), "staging": (pg_server, staging)},
                 {"prod": logins.login("pgsafe_validation")})
    # the validation job of the release: judges the prod run (its before snapshot, kept in the product schema
    # by the migration login, is read by the validation login from another job's directory)
    result = val.run("validate.yml", {"validate_checks": ["foreign_keys", "invalid_indexes", "conformance"],
                                      "pgsafe_migration_run_id": report["run_id"]},
                     extra_args=("--limit", "prod"))
    assert result.returncode == 0, result.flat[-4000:]
    judged = json.loads((val.artifacts / "prod/validate/latest/report.json").read_text())["sections"]["validate"]
    conformance = next(c for c in judged["checks"] if c["check"] == "conformance")
    assert "run {0}'s snapshot in pgsafe.schema_snapshot".format(report["run_id"]) in conformance["summary"]
    assert fl.fingerprint(pg_server, prod) == after
    rows_lost(lost)


# ---------------------------------------------------------------------------- refused before any change
def test_read_only_login_is_refused_by_the_preflight_before_any_change(pg_server, logins, prod_db, tmp_path,
                                                                  rows_lost):
    """The validation login (default_transaction_read_only) pointed at the prod playbook."""
    logins.run_doc("database", prod_db, dbname=prod_db)
    before = fl.fingerprint(pg_server, prod_db)
    ro = logins.create_login("pgsafe_t_ro", "IN ROLE", logins.login("bazaar_owner"))
    pg_server.execute("postgres", sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
        sql.Identifier(ro)))
    pg_server.execute(prod_db, sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(prod_db), sql.Identifier(ro)))
    env = env_as(tmp_path, pg_server, {"prod": (pg_server, prod_db), "staging": (pg_server, "postgres")},
                 {"prod": ro})
    result = env.run("sprint90_prod.yml", {**fl.NO_REHEARSAL, "confirm_database": prod_db},
                     extra_args=("--limit", "prod"))
    assert result.returncode != 0
    assert "failed in phase preflight" in result.flat, result.flat[-3000:]
    assert "read-only" in result.flat or "default_transaction_read_only" in result.flat
    assert not product_schema_exists(pg_server, prod_db)
    assert fl.fingerprint(pg_server, prod_db) == before
    rows_lost(fl.rows_lost_between(before, pg_server, prod_db))


@pytest.mark.parametrize("playbook,needle", [
    ("sprint90_prod.yml", 'must be owner of table "public"."bazaar-vid_exports"'),
    ("sprint90_dev.yml", 'must be owner of table "public"."bazaar-vid_export_analytics"'),
    ("backup.yml", "bazaar-vid_"),
    ("validate.yml", "bazaar-vid_"),
])
def test_under_privileged_login_each_playbook_names_the_missing_privilege(pg_server, logins, tmp_path, playbook,
                                                                         needle, rows_lost):
    host = "dev" if "dev" in playbook else "prod"
    with pg_server.sprint90_database(host) as db:
        weak = logins.create_login("pgsafe_t_weak")
        pg_server.execute(db, sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(db), sql.Identifier(weak)))
        before = fl.fingerprint(pg_server, db)
        env = env_as(tmp_path, pg_server, {host: (pg_server, db), "staging": (pg_server, "postgres")}, {host: weak})
        result = env.run(playbook, {**fl.NO_REHEARSAL, "confirm_database": db},
                         extra_args=("--limit", host))
        assert result.returncode != 0
        text = result.flat
        assert needle in text, text[-3000:]
        assert re.search(r"must be owner|permission denied|privilege|GRANT|pg_read_all_data", text), text[-3000:]
        assert "Start phase schema_fix]" not in result.stdout
        assert fl.fingerprint(pg_server, db) == before
        rows_lost(fl.rows_lost_between(before, pg_server, db))


def test_backup_login_without_bypassrls_on_a_row_security_table_is_refused(pg_server, logins, prod_db, tmp_path,
                                                                          rows_lost):
    pg_server.execute(prod_db, 'ALTER TABLE "bazaar-vid_user" ENABLE ROW LEVEL SECURITY; '
                               'CREATE POLICY nobody ON "bazaar-vid_user" USING (false)')
    reader = logins.create_login("pgsafe_t_reader", "IN ROLE pg_read_all_data")
    pg_server.execute(prod_db, sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(prod_db), sql.Identifier(reader)))
    before = fl.fingerprint(pg_server, prod_db)
    env = env_as(tmp_path, pg_server, {"prod": (pg_server, prod_db), "staging": (pg_server, "postgres")},
                 {"prod": reader})
    result = env.run("backup.yml", extra_args=("--limit", "prod"))
    assert result.returncode != 0
    assert 'row-level security is enabled on "public"."bazaar-vid_user"' in result.flat, result.flat[-3000:]
    assert "BYPASSRLS" in result.flat
    assert not [p for d in env.backups if d.exists() for p in d.iterdir() if not p.name.startswith(".")]
    assert fl.fingerprint(pg_server, prod_db) == before
    rows_lost(fl.rows_lost_between(before, pg_server, prod_db))
