"""Modules return the SQL they ran as `queries` (community.postgresql's return value), on a real server."""
from __future__ import annotations

from tests.cleanup_helpers import run_module


def test_a_module_returns_the_statements_its_connections_ran(pg_server, prod_db):
    server, dbname = pg_server, prod_db
    params = dict(server.module_params(dbname), run_id="queries-test")
    result = run_module("pgsafe_run_lock", params, check=True)
    assert result["rc"] == 0, result
    assert result["queries"], "a module that ran SQL returns it"
    assert any("pg_locks" in q for q in result["queries"]), result["queries"]


def test_connection_aliases_of_community_postgresql_are_accepted(pg_server, prod_db):
    server, dbname = pg_server, prod_db
    params = server.module_params(dbname)
    aliased = {"host": params["login_host"], "port": params["login_port"], "login": params["login_user"],
               "login_password": params["login_password"], "database": dbname, "run_id": "aliases-test"}
    if "ssl_mode" in params:
        aliased["ssl_mode"] = params["ssl_mode"]
    result = run_module("pgsafe_run_lock", aliased, check=True)
    assert result["rc"] == 0, result
