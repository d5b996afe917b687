import os
import stat

from ansible.module_utils.pgsafe_connection import (CONNECTION_ARGUMENT_SPEC, describe_target, libpq_environment,
                                                    libpq_params)

PARAMS = {"login_host": "db.example.com", "login_port": 6543, "login_user": "migrator",
          "login_password": "s3cr:et\\pw", "login_db": "bazaar_vid", "ssl_mode": "require",
          "connect_params": {"options": "-c lock_timeout=5s"}}


def test_same_option_names_as_community_postgresql():
    for name in ("login_host", "login_port", "login_user", "login_password", "login_db", "ssl_mode", "ca_cert",
                 "login_unix_socket", "connect_params", "session_role"):
        assert name in CONNECTION_ARGUMENT_SPEC
    assert CONNECTION_ARGUMENT_SPEC["login_password"]["no_log"] is True


def test_libpq_params_maps_options():
    kw = libpq_params(PARAMS)
    assert kw["host"] == "db.example.com" and kw["port"] == 6543 and kw["sslmode"] == "require"
    assert kw["options"] == "-c lock_timeout=5s" and kw["dbname"] == "bazaar_vid"


def test_describe_target_never_shows_password():
    assert "s3cr" not in describe_target(PARAMS)


def test_passfile_is_private_and_removed(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "leaked")
    with libpq_environment(PARAMS) as env:
        path = env["PGPASSFILE"]
        assert "PGPASSWORD" not in env
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as handle:
            assert handle.read() == "*:*:*:*:s3cr\\:et\\\\pw\n"
        assert "s3cr" not in " ".join(f"{k}={v}" for k, v in env.items() if k != "PGPASSFILE")
    assert not os.path.exists(path)


def test_session_role_goes_to_the_client_tools_as_a_startup_option(monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=8MB")
    with libpq_environment({"login_host": "h", "login_user": "u", "session_role": "app owner\\x"}) as env:
        assert env["PGOPTIONS"] == "-c work_mem=8MB -c role=app\\ owner\\\\x"
    monkeypatch.delenv("PGOPTIONS")
    with libpq_environment({"login_host": "h", "login_user": "u"}) as env:
        assert "PGOPTIONS" not in env


def test_connection_from_host_vars_reads_only_that_hosts_variables():
    from ansible.module_utils.pgsafe_connection import connection_from_host_vars
    staging = {"pg_host": "staging.db", "pg_port": "6432", "pg_user": "migrator", "pg_password": "pw",
               "pg_database": "app", "pgsafe_lock_timeout": "3s", "pg_connect_params": {"target_session_attrs": "rw"}}
    options = connection_from_host_vars(staging)
    assert options["login_host"] == "staging.db" and options["login_port"] == 6432
    assert options["login_db"] == "app" and options["ssl_mode"] == "prefer"
    assert options["connect_params"] == {"options": "-c lock_timeout=3s", "target_session_attrs": "rw"}
    assert "session_role" not in options  # none of another host's session_role can leak in
    assert connection_from_host_vars(dict(staging, pg_session_role="app_owner"))["session_role"] == "app_owner"
    assert set(options) <= set(CONNECTION_ARGUMENT_SPEC)


def test_second_connection_option_has_the_first_connections_names():
    from ansible.module_utils.pgsafe_connection import second_connection_option
    option = second_connection_option()
    assert option["type"] == "dict" and set(option["options"]) == set(CONNECTION_ARGUMENT_SPEC)
    assert option["options"]["login_password"]["no_log"] is True


def test_recorded_queries_are_bounded(monkeypatch):
    from ansible.module_utils import pgsafe_connection as pc
    monkeypatch.setattr(pc, "_EXECUTED", [])
    monkeypatch.setattr(pc, "_NOT_RECORDED", [0])
    monkeypatch.setattr(pc, "MAX_RECORDED_QUERIES", 3)
    for n in range(5):
        pc.record_query(b"SELECT %d" % n)
    pc.record_query("x" * (pc.MAX_QUERY_LENGTH + 10))
    assert pc.executed_queries() == ["SELECT 0", "SELECT 1", "SELECT 2",
                                     "-- 3 further statements ran and are not listed"]
