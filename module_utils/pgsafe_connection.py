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
CONNECTION_ARGUMENT_SPEC = dict(
    login_host=dict(type="str", default=""),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str", default="postgres"),
    login_password=dict(type="str", default="", no_log=True),
    login_db=dict(type="str", default="postgres", aliases=["db"]),
    login_unix_socket=dict(type="str", default=""),
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
        conn = psycopg2.connect(**libpq_params(params, dbname))
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
