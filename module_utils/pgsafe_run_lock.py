# -*- coding: utf-8 -*-
"""One writing run at a time per database: a session-level advisory lock held for the run's whole life.

Ansible runs every task in a process of its own, so no task's connection lives as long as a run. The
lock is held instead by a small *holder* process started at preflight: it connects, takes
``pg_try_advisory_lock`` (advisory locks are scoped to the database, so one key serves every target),
names itself in ``application_name`` (``pgsafe run <run id>``) and then only waits. It lets go when

* the run releases it (``release``: the holder is sent SIGTERM),
* the controller process it watches is gone (a crashed or killed ``ansible-playbook``): its session
  closes and the server drops the lock with it,
* its maximum life is over (a safety net for runs whose controller cannot be watched).

A second run that finds the lock taken is refused, naming the holder: run id, playbook, operator and
since when (from ``pg_stat_activity`` and the product's run record).

Plain Python; psycopg2 only inside the holder and ``describe_holder``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

# (classid, objid) of the advisory lock: 'pgsf' and 'run!' as two int4 (advisory locks are per database).
LOCK_KEY = (0x70677366, 0x72756E21)
APPLICATION_PREFIX = "pgsafe run "


class RunLockError(Exception):
    """The lock could not be taken; the message says who holds it and what to do."""


def application_name(run_id):
    return (APPLICATION_PREFIX + run_id)[:63]


def controller_pid(start=None, names=("ansible-playbook",)):
    """The outermost ansible-playbook process above ``start`` (default this process), or None.

    Outermost: Ansible's workers are forks of the controller with the same command line, and each lives
    only as long as one task.
    """
    pid, found = start or os.getppid(), None
    for _ in range(64):
        stat = _proc_stat(pid) if pid > 1 else None
        if stat is None:
            break
        try:
            with open("/proc/{0}/cmdline".format(pid), "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            break
        if any(os.path.basename(arg.decode("utf-8", "replace")) in names for arg in argv[:3]):
            found = pid
        pid = stat[1]
    return found


def _proc_stat(pid):
    """(state, parent pid) of a process from /proc/<pid>/stat, or None when there is no such process."""
    try:
        with open("/proc/{0}/stat".format(pid), "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "(comm)", which may hold spaces: state, ppid, ...
    return fields[0].decode("ascii"), int(fields[1])


def pid_alive(pid):
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The holder runs as ``python -c`` (no module_utils on its path): pid_alive is sent along as source.
HOLDER = r'''
import json, os, signal, sys, time
import psycopg2
spec = json.loads(sys.stdin.readline())
out = sys.stdout
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
signal.signal(signal.SIGHUP, signal.SIG_IGN)
try:
    conn = psycopg2.connect(**spec["dsn"])
    conn.autocommit = True
    cur = conn.cursor()
    # A run whose controller just died lets go within a poll interval: wait that long before refusing.
    give_up = time.monotonic() + spec["wait_seconds"]
    while True:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", spec["key"])
        taken = cur.fetchone()[0]
        if taken or time.monotonic() >= give_up:
            break
        time.sleep(0.25)
except Exception as exc:
    out.write(json.dumps({"taken": False, "error": " ".join(str(exc).split())}) + "\n")
    out.flush()
    sys.exit(1)
out.write(json.dumps({"taken": bool(taken), "backend_pid": conn.get_backend_pid(), "pid": os.getpid()}) + "\n")
out.flush()
if not taken:
    sys.exit(0)
os.close(0); os.close(1); os.close(2)
deadline = time.monotonic() + spec["max_seconds"]
while time.monotonic() < deadline and pid_alive(spec["controller_pid"]):
    time.sleep(spec["poll_seconds"])
    try:
        cur.execute("SELECT 1")
    except Exception:
        break
conn.close()
'''


def _holder_program():
    import inspect

    return inspect.getsource(pid_alive) + HOLDER


def acquire(dsn, run_id, controller=None, max_seconds=12 * 3600, poll_seconds=1.0, timeout=30, wait_seconds=None):
    """Start the holder; its {pid, backend_pid} when it holds the lock, else ``{"taken": False, ...}``.

    ``dsn``: psycopg2.connect keyword arguments (sent to the holder on its stdin, never on a command
    line). ``controller``: the pid whose end releases the lock (None: only release() and max_seconds).
    A lock held by another session is waited for ``wait_seconds`` (default three polls: a holder whose
    controller just died is gone by then) before the answer is no.
    """
    spec = {"dsn": dict(dsn, application_name=application_name(run_id)), "key": list(LOCK_KEY),
            "controller_pid": controller, "max_seconds": max_seconds, "poll_seconds": poll_seconds,
            "wait_seconds": 3 * poll_seconds if wait_seconds is None else wait_seconds}
    proc = subprocess.Popen([sys.executable, "-c", _holder_program()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    proc.stdin.write((json.dumps(spec) + "\n").encode("utf-8"))
    proc.stdin.close()
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    proc.stdout.close()
    try:
        answer = json.loads(line.decode("utf-8"))
    except ValueError:
        proc.kill()
        raise RunLockError("the run lock holder did not answer in {0} s".format(timeout)) from None
    if answer.get("error"):
        raise RunLockError("the run lock holder could not connect: {0}".format(answer["error"]))
    return answer


def release(pid, wait_seconds=10.0):
    """Stop a holder and wait until it is gone (its session ends, the lock goes); True when it was running."""
    try:
        os.kill(int(pid), signal.SIGTERM)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and (_proc_stat(int(pid)) or ("Z",))[0] != "Z":  # gone, or exited unreaped
        time.sleep(0.05)
    return True


def describe_holder(cur):
    """Who holds the run lock on the connected database: {pid, run_id, application_name, since, ...} or None."""
    cur.execute(
        "SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start "
        "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
        "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 2",
        LOCK_KEY)
    row = cur.fetchone()
    if row is None:
        return None
    holder = {"pid": row[0], "application_name": row[1], "login": row[2], "client_addr": row[3],
              "since": row[4].isoformat() if row[4] else None, "run_id": None, "playbook": None,
              "operator": None}
    if (row[1] or "").startswith(APPLICATION_PREFIX):
        holder["run_id"] = row[1][len(APPLICATION_PREFIX):]
        cur.execute("SELECT to_regclass('pgsafe.run') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT playbook, operator, started_at FROM pgsafe.run WHERE run_id = %s",
                        (holder["run_id"],))
            found = cur.fetchone()
            if found:
                holder.update(playbook=found[0], operator=found[1],
                              since=found[2].isoformat() if found[2] else holder["since"])
    return holder


def current_holder(module):
    """Who holds the run lock on ``module``'s target (a PgsafeModule), read in its own autocommit session."""
    conn = module.connect(read_only=True, autocommit=True)
    try:
        with conn.cursor() as cur:
            return describe_holder(cur)
    finally:
        conn.close()


def take(module, run_id, max_hours=12):
    """The run lock on ``module``'s target for ``run_id``: {holder_pid, backend_pid, controller_pid}. Fails the
    task naming the run that holds it (nothing changed) or why the holder could not take it."""
    from ansible.module_utils.pgsafe_connection import libpq_params

    controller = controller_pid()
    try:
        answer = acquire(libpq_params(module.params), run_id, controller=controller, max_seconds=max_hours * 3600)
    except RunLockError as exc:
        module.fail_json(msg=str(exc))
    if not answer["taken"]:
        holder = current_holder(module)
        module.fail_json(msg=refusal_message(module.params["login_db"], holder), holder=holder)
    return dict(holder_pid=answer["pid"], backend_pid=answer["backend_pid"], controller_pid=controller)


def refusal_message(database, holder):
    """What the refused run prints: who holds the database, and what to do."""
    if holder is None:
        return ("database {0} is locked by another pgsafe run that ended while we looked: re-run".format(database))
    who = "run {0}".format(holder["run_id"]) if holder.get("run_id") else "session {0} ({1})".format(
        holder["pid"], holder.get("application_name") or "no application_name")
    details = ", ".join(part for part in (
        "playbook {0}".format(holder["playbook"]) if holder.get("playbook") else "",
        "operator {0}".format(holder["operator"]) if holder.get("operator") else "",
        "login {0}".format(holder["login"]) if holder.get("login") else "",
        "since {0}".format(holder["since"]) if holder.get("since") else "") if part)
    return ("database {0} is being changed by {1} ({2}); one writing run at a time: wait for it to end (its lock "
            "goes with it, also when its controller dies), or, if that run is stuck, end its session "
            "(SELECT pg_terminate_backend({3})) after checking what it was doing. Nothing was changed by this "
            "run.".format(database, who, details, holder["pid"]))
