# -*- coding: utf-8 -*-
"""Connections for pgsafe modules, with community.postgresql's option names.

Every pgsafe module takes the same connection options as community.postgresql
(``login_host``, ``login_port``, ``login_user``, ``login_password``, ``login_db``,
``ssl_mode``, ``ca_cert``, ``ssl_cert``, ``ssl_key``, ``login_unix_socket``,
``connect_params``), so one ``module_defaults`` group fed from the inventory's
``pg_*`` variables serves both collections.

Plain Python: no Ansible import here, so the helpers are unit-testable on their own.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

APPLICATION_NAME = "pgsafe"

# Options shared by every pgsafe module (Ansible argument_spec syntax).
# The aliases are community.postgresql's (host, port, login, unix_socket, db/database).
CONNECTION_ARGUMENT_SPEC = dict(
    login_host=dict(type="str", default="", aliases=["host"]),
    login_port=dict(type="int", default=5432, aliases=["port"]),
    login_user=dict(type="str", default="postgres", aliases=["login"]),
    login_password=dict(type="str", default="", no_log=True),
    login_db=dict(type="str", default="postgres", aliases=["db", "database"]),
    login_unix_socket=dict(type="str", default="", aliases=["unix_socket"]),
    ssl_mode=dict(type="str", default="prefer",
                  choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
    ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
    ssl_cert=dict(type="path"),
    ssl_key=dict(type="path"),
    connect_params=dict(type="dict", default={}),
    session_role=dict(type="str"),
)

CONNECTION_OPTION_NAMES = tuple(CONNECTION_ARGUMENT_SPEC)


def connection_argument_spec(**extra):
    """A copy of the connection options, extended with a module's own options."""
    spec = {name: dict(option) for name, option in CONNECTION_ARGUMENT_SPEC.items()}
    spec.update(extra)
    return spec


def second_connection_option(description=None):
    """The option for a second database: a dict with exactly the first connection's option names.

    Roles fill it with ``hostvars[<host>] | pgsafe_connection`` (the same builder as the first
    connection's), so nothing of the first host (session_role, connect_params) leaks into it.
    """
    suboptions = {name: {k: v for k, v in option.items() if k != "aliases"}
                  for name, option in CONNECTION_ARGUMENT_SPEC.items()}
    return dict(type="dict", options=suboptions)


# Inventory variables -> connection options: the one place the pg_* vocabulary is read.
HOST_VARIABLES = (
    ("login_host", "pg_host", ""),
    ("login_port", "pg_port", 5432),
    ("login_user", "pg_user", "postgres"),
    ("login_password", "pg_password", ""),
    ("login_db", "pg_database", "postgres"),
    ("ssl_mode", "pg_sslmode", "prefer"),
    ("ca_cert", "pg_ca_cert", None),
    ("ssl_cert", "pg_ssl_cert", None),
    ("ssl_key", "pg_ssl_key", None),
    ("session_role", "pg_session_role", None),
)


def connection_from_host_vars(host_vars, lock_timeout=None, statement_timeout=None):
    """The connection options of one inventory host, built from that host's own ``pg_*`` variables.

    ``lock_timeout``/``statement_timeout`` default to the host's ``pgsafe_lock_timeout`` and
    ``pgsafe_statement_timeout``; they become libpq ``options`` so that every session of the run
    is bounded.  ``pg_connect_params`` (a dict) is merged last.
    """
    def get(name, default=None):
        try:
            value = host_vars.get(name, default)
        except Exception:  # noqa: BLE001 - an undefined variable of that host reads as unset
            value = default
        return default if value in (None, "") and default is not None else value

    options = {option: get(var, default) for option, var, default in HOST_VARIABLES}
    options["login_port"] = int(options["login_port"] or 5432)
    options["login_password"] = options["login_password"] or ""
    connect_params = {}
    lock = lock_timeout or get("pgsafe_lock_timeout")
    statement = statement_timeout or get("pgsafe_statement_timeout")
    libpq_options = " ".join(
        "-c {0}={1}".format(name, value) for name, value in (("lock_timeout", lock), ("statement_timeout", statement))
        if value not in (None, ""))
    if libpq_options:
        connect_params["options"] = libpq_options
    connect_params.update(get("pg_connect_params") or {})
    options["connect_params"] = connect_params
    return {key: value for key, value in options.items() if value is not None}


# Every statement a module's connections ran, in order (what community.postgresql returns as
# ``queries``).  One module run is one process, so one list serves all its connections.
MAX_RECORDED_QUERIES = 1000
MAX_QUERY_LENGTH = 4000
_EXECUTED = []
_NOT_RECORDED = [0]


def record_query(text):
    """Note one executed statement (long ones shortened, the list bounded)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text is None:
        return
    if len(_EXECUTED) >= MAX_RECORDED_QUERIES:
        _NOT_RECORDED[0] += 1
        return
    if len(text) > MAX_QUERY_LENGTH:
        text = text[:MAX_QUERY_LENGTH] + " ... ({0} characters)".format(len(text))
    _EXECUTED.append(text)


def executed_queries():
    """The statements run so far by this process's connections (plus a line for any not listed)."""
    queries = list(_EXECUTED)
    if _NOT_RECORDED[0]:
        queries.append("-- {0} further statements ran and are not listed".format(_NOT_RECORDED[0]))
    return queries


_RECORDING_CONNECTION = []


def _recording_connection_class(psycopg2):
    """The connection class that hands out cursors recording what they run (built once per process)."""
    if not _RECORDING_CONNECTION:
        _RECORDING_CONNECTION.append(_recording_factories(psycopg2))
    return _RECORDING_CONNECTION[0]


def _recording_factories(psycopg2):
    """A cursor class that records what it runs, and a connection class that hands it out."""
    base_cursor = psycopg2.extensions.cursor

    class RecordingCursor(base_cursor):
        def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
            try:
                return super().execute(query, vars)
            finally:
                record_query(self.query if self.query is not None else _as_text(query, self))

        def executemany(self, query, vars_list):
            try:
                return super().executemany(query, vars_list)
            finally:
                record_query(_as_text(query, self))

        def copy_expert(self, sql, file, size=8192):
            record_query(_as_text(sql, self))
            return super().copy_expert(sql, file, size)

    class RecordingConnection(psycopg2.extensions.connection):
        def cursor(self, *args, **kwargs):
            kwargs.setdefault("cursor_factory", RecordingCursor)
            return super().cursor(*args, **kwargs)

    return RecordingConnection


def _as_text(query, cursor):
    try:
        return query.as_string(cursor)
    except AttributeError:
        return query


def libpq_params(params, dbname=None):
    """libpq keyword arguments from module parameters (password included: never log the result)."""
    kwargs = {
        "host": params.get("login_unix_socket") or params.get("login_host") or None,
        "port": params.get("login_port"),
        "user": params.get("login_user"),
        "password": params.get("login_password") or None,
        "dbname": dbname or params.get("login_db") or "postgres",
        "sslmode": params.get("ssl_mode") or "prefer",
        "sslrootcert": params.get("ca_cert"),
        "sslcert": params.get("ssl_cert"),
        "sslkey": params.get("ssl_key"),
        "application_name": APPLICATION_NAME,
        "connect_timeout": 10,
    }
    kwargs.update(params.get("connect_params") or {})
    return {key: value for key, value in kwargs.items() if value not in (None, "")}


def describe_target(params, dbname=None):
    """Where a connection goes, for messages: never contains the password."""
    host = params.get("login_unix_socket") or params.get("login_host") or "local socket"
    return "{0}@{1}:{2}/{3}".format(params.get("login_user"), host, params.get("login_port"),
                                     dbname or params.get("login_db"))


class ConnectionFailure(Exception):
    """The database could not be reached; the message names the target and never the password."""


def connect(params, dbname=None, autocommit=False, read_only=False, settings=None):
    """Open a psycopg2 connection.

    ``read_only`` opens every transaction READ ONLY (check mode plans this way, so a
    bug cannot write).  ``settings`` are session settings (e.g. lock_timeout) applied
    with set_config, values passed as parameters.
    """
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - depends on the runner host
        raise ConnectionFailure("psycopg2 is required on the host that runs the task: pip install "
                                "psycopg2-binary (or use the project's execution environment)") from exc
    try:
        conn = psycopg2.connect(connection_factory=_recording_connection_class(psycopg2), **libpq_params(params, dbname))
    except psycopg2.OperationalError as exc:
        message = " ".join(str(exc).split()).replace(str(params.get("login_password") or "\0"), "********")
        raise ConnectionFailure(
            "cannot connect to {0}: {1}. Check the inventory's pg_host, pg_port, pg_user and pg_password for "
            "this host (for the local inventory: start the throwaway clusters with `make db-up`)".format(
                describe_target(params, dbname), message)) from None
    # readonly=None keeps the server's default: a login configured read-only stays read-only.
    conn.set_session(readonly=True if read_only else None, autocommit=autocommit)
    role = params.get("session_role")
    settings = dict(settings or {})
    with conn.cursor() as cur:
        if role:
            from psycopg2 import sql
            cur.execute(sql.SQL("SET ROLE {0}").format(sql.Identifier(role)))
        for name, value in settings.items():
            if value is not None:
                cur.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
    if not autocommit:
        conn.commit()
    return conn


@contextlib.contextmanager
def libpq_environment(params, dbname=None):
    """Environment for pg_dump/pg_restore/psql: the password goes to a 0600 passfile.

    Nothing secret is put on a command line or in PGPASSWORD; the passfile is removed on exit.
    """
    env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
    kw = libpq_params(params, dbname)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE"),
                     ("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT"), ("sslcert", "PGSSLCERT"),
                     ("sslkey", "PGSSLKEY"), ("application_name", "PGAPPNAME"),
                     ("connect_timeout", "PGCONNECT_TIMEOUT")):
        if key in kw:
            env[var] = str(kw[key])
    role = params.get("session_role")
    if role:  # the client tools act as session_role too (startup option; spaces and backslashes escaped)
        escaped = role.replace("\\", "\\\\").replace(" ", "\\ ")
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c role=" + escaped).strip()
    password = kw.get("password")
    path = None
    try:
        if password:
            fd, path = tempfile.mkstemp(prefix="pgsafe-", suffix=".pgpass")
            os.chmod(path, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write("*:*:*:*:{0}\n".format(password.replace("\\", "\\\\").replace(":", "\\:")))
            env["PGPASSFILE"] = path
        yield env
    finally:
        if path and os.path.exists(path):
            os.unlink(path)
