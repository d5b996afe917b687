"""Least privilege (fault-cases.md 24), at the preflight module: before anything changes, it names a planned
table the login cannot read, a schema it cannot CREATE in (retire, restore, merge need it), and the
session_role the client tools must act as."""
from __future__ import annotations

import uuid

import pytest
from psycopg2 import sql

from tests.cleanup_helpers import run_module

EXPORTS = "public.bazaar-vid_exports"


@pytest.fixture
def login(pg_server, prod_db):
    """A login that owns the planned table through a role, but may neither read analytics nor CREATE in public."""
    suffix = uuid.uuid4().hex[:6]
    owner, name = f"owner {suffix}", f"migr_{suffix}"
    pg_server.execute(prod_db, sql.SQL("CREATE ROLE {0}; CREATE ROLE {1} LOGIN IN ROLE {0} PASSWORD %s; "
                                       "GRANT CONNECT ON DATABASE {2} TO {1}; "
                                       "ALTER TABLE {3} OWNER TO {0}; REVOKE CREATE ON SCHEMA public FROM {0}, PUBLIC").format(
        sql.Identifier(owner), sql.Identifier(name), sql.Identifier(prod_db),
        sql.Identifier("bazaar-vid_exports")), (pg_server.libpq["password"],))
    yield {"login": name, "owner": owner}
    pg_server.execute(prod_db, sql.SQL("ALTER TABLE {0} OWNER TO postgres; DROP OWNED BY {1}, {2}").format(
        sql.Identifier("bazaar-vid_exports"), sql.Identifier(name), sql.Identifier(owner)))
    pg_server.execute("postgres", sql.SQL("DROP ROLE {0}; DROP ROLE {1}").format(sql.Identifier(name),
                                                                                 sql.Identifier(owner)))


def preflight(pg_server, db, login, **options):
    params = dict(pg_server.module_params(db), login_user=login, **options)
    return run_module("pgsafe_preflight", params)


def test_missing_create_on_the_schema_and_missing_select_are_named(pg_server, prod_db, login):
    result = preflight(pg_server, prod_db, login["login"], tables=[EXPORTS, "public.bazaar-vid_export_analytics"],
                       require_owner=True)
    assert result["rc"] != 0
    assert f'login {login["login"]} lacks CREATE on schema "public"' in result["msg"]
    assert f'login {login["login"]} cannot read table "public"."bazaar-vid_export_analytics"' in result["msg"]
    assert 'cannot read table "public"."bazaar-vid_exports"' not in result["msg"]  # the owner reads its table


def test_readable_tables_name_only_existing_unreadable_ones(pg_server, prod_db, login):
    result = preflight(pg_server, prod_db, login["login"],
                       readable_tables=[EXPORTS, "public.bazaar-vid_export_analytics", "public.retired_meanwhile"])
    assert result["rc"] != 0 and result["msg"].count("cannot read table") == 1
    assert '"public"."bazaar-vid_export_analytics"' in result["msg"] and "retired_meanwhile" not in result["msg"]
    pg_server.execute(prod_db, sql.SQL("GRANT SELECT ON {0} TO {1}").format(
        sql.Identifier("bazaar-vid_export_analytics"), sql.Identifier(login["login"])))
    assert preflight(pg_server, prod_db, login["login"], readable_tables=["public.bazaar-vid_export_analytics"])["rc"] == 0


def test_session_role_reaches_the_server_and_the_client_tools(pg_server, prod_db, login):
    """As session_role the login owns what it creates as the owning role; pg_dump runs as that role too."""
    from ansible.module_utils.pgsafe_connection import libpq_environment  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    params = dict(pg_server.module_params(prod_db), login_user=login["login"], session_role=login["owner"])
    with libpq_environment(params, prod_db) as env:
        out = subprocess.run(["psql", "-X", "-Atc", "SELECT current_user"], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
    assert out == login["owner"]
    result = run_module("pgsafe_preflight", dict(params, tables=[EXPORTS], require_owner=True))
    assert result["rc"] != 0 and result["current_user"] == login["owner"]
    assert "lacks CREATE on schema" in result["msg"] and "must be owner" not in result["msg"]
