#!/usr/bin/env python3
"""Throwaway PostgreSQL clusters for the demo, the tests and the benchmarks.

    python tools/pgclusters.py up [--engine auto|native|podman|docker] [--reseed] [--scale N]
    python tools/pgclusters.py down
    python tools/pgclusters.py status

Three clusters, ``prod``, ``dev`` and ``staging``, listen on loopback ports (55432, 55433,
55434 by default); each holds the Sprint 90 database ``bazaar_vid`` seeded like its namesake
(staging starts as a copy of prod, as if restored from a prod backup; with
``PGSAFE_PARTITIONED_ANALYTICS=1`` prod and staging get the variant whose analytics table is
partitioned by month).  Data lives in
``.pgdata/`` inside the project (git-ignored).  The superuser password is generated once and
kept in ``.pgdata/password`` (mode 0600): it never appears on a command line.

Engine: ``native`` uses the PostgreSQL server binaries found on this machine (as the
``postgres`` OS user when run as root); ``podman``/``docker`` run one container per cluster
with host networking.  ``auto`` (the default) prefers native binaries and falls back to a
container engine.  ``PGSAFE_ENGINE`` and ``PGSAFE_PG_IMAGE`` set the engine and image.

Only the standard library is needed to start and stop clusters; seeding uses psycopg2.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("PGSAFE_DATA_ROOT", PROJECT_ROOT / ".pgdata"))
PASSWORD_FILE = DATA_ROOT / "password"
STATE_FILE = DATA_ROOT / "state.json"
SUPERUSER = "postgres"
DATABASE = "bazaar_vid"
DEFAULT_IMAGE = os.environ.get("PGSAFE_PG_IMAGE", "docker.io/library/postgres:15")

CLUSTERS = {
    "prod": int(os.environ.get("PGSAFE_PORT_PROD", "55432")),
    "dev": int(os.environ.get("PGSAFE_PORT_DEV", "55433")),
    "staging": int(os.environ.get("PGSAFE_PORT_STAGING", "55434")),
}
# PGSAFE_PARTITIONED_ANALYTICS=1: prod (and staging, its copy) seeded as ``prod_partitioned`` (the analytics
# table range-partitioned by month, tools/sprint90_fixtures.py).
PROD_VARIANT = "prod_partitioned" if os.environ.get("PGSAFE_PARTITIONED_ANALYTICS") == "1" else "prod"
SEED_VARIANT = {"prod": PROD_VARIANT, "dev": "dev", "staging": PROD_VARIANT}

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "off",  # throwaway clusters: speed over durability
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "2GB",
    "shared_preload_libraries": "'pg_stat_statements'",
    "log_line_prefix": "'%m [%p] %u@%d '",
    "log_lock_waits": "on",
}


class ClusterError(RuntimeError):
    """A cluster could not be started or stopped; the message says what to do."""


# --------------------------------------------------------------------------- helpers
def _native_bindir() -> Path | None:
    explicit = os.environ.get("PGSAFE_PG_BINDIR")
    candidates = [explicit] if explicit else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/usr/pgsql-17/bin", "/usr/pgsql-15/bin"]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).parent))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    return None


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _container_engine(preferred: str | None = None) -> str | None:
    names = [preferred] if preferred else ["podman", "docker"]
    for name in names:
        if name and shutil.which(name):
            if name == "docker":
                probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
                if probe.returncode != 0:
                    continue
            return name
    return None


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _as_postgres(cmd: list[str]) -> list[str]:
    """Server binaries refuse to run as root: drop to the postgres OS user when needed."""
    if os.geteuid() == 0:
        return ["runuser", "-u", os.environ.get("PGSAFE_OS_USER", "postgres"), "--", *cmd]
    return cmd


def password() -> str:
    """The superuser password of the throwaway clusters, created on first use (0600)."""
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(DATA_ROOT, 0o755)
    if not PASSWORD_FILE.exists():
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return PASSWORD_FILE.read_text().strip()


def _state() -> dict:
    if STATE_FILE.exists():
        return json.loads(STATE_FILE.read_text())
    return {}


def _save_state(state: dict) -> None:
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2, sort_keys=True))


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            try:
                conn = connect(port, "postgres")
                conn.close()
                return
            except Exception:  # noqa: BLE001, S110 - server still starting
                pass
        time.sleep(0.3)
    raise ClusterError(f"cluster on port {port} did not accept connections within {timeout:.0f}s")


def connect(port: int, dbname: str = DATABASE, **kwargs):
    """psycopg2 connection to a throwaway cluster as its superuser."""
    import psycopg2  # imported lazily: start/stop need only the standard library

    return psycopg2.connect(
        host="127.0.0.1", port=port, user=SUPERUSER, password=password(), dbname=dbname,
        connect_timeout=5, **kwargs,
    )


# --------------------------------------------------------------------------- engines
@dataclass
class Cluster:
    name: str
    port: int

    @property
    def datadir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def container(self) -> str:
        return f"pgsafe-{self.name}"


# A server whose port is held by a client socket is started again every 5 s for up to 75 s: the port
# can stay taken for TIME_WAIT's 60 s after that socket closes.
BIND_RETRY_SECONDS = 75


def native_up(cluster: Cluster, bindir: Path) -> str:
    if _port_open(cluster.port):
        if (cluster.datadir / "postmaster.pid").exists():
            return "already running"
        raise ClusterError(
            f"port {cluster.port} for cluster {cluster.name!r} is taken by another program: "
            f"stop it or set PGSAFE_PORT_{cluster.name.upper()}"
        )
    owner = os.environ.get("PGSAFE_OS_USER", "postgres")
    if not (cluster.datadir / "PG_VERSION").exists():
        if cluster.datadir.exists():
            shutil.rmtree(cluster.datadir)
        cluster.datadir.mkdir(parents=True)
        pwfile = DATA_ROOT / f".pw-{cluster.name}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password())
        if os.geteuid() == 0:
            shutil.chown(cluster.datadir, owner, owner)
            shutil.chown(pwfile, owner, owner)
        try:
            _run(_as_postgres([
                str(bindir / "initdb"), "-D", str(cluster.datadir), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ]))
        finally:
            pwfile.unlink(missing_ok=True)
        with open(cluster.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"port = {cluster.port}\n")
            conf.write(f"unix_socket_directories = '{cluster.datadir}'\n")
    log = cluster.datadir / "server.log"
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        written = log.stat().st_size if log.exists() else 0
        try:
            _run(_as_postgres([
                str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-l", str(log),
                # The port asked for now wins over the one written at initdb (PGSAFE_PORT_* may have changed).
                "-o", f"-p {cluster.port}", "-w", "-t", "60", "start",
            ]))
            break
        except ClusterError:
            # Our loopback ports lie in Linux's ephemeral range: a client socket can hold one for a moment.
            said = ""
            if log.exists():  # pg_ctl can fail before it writes a log: its own error is then raised as is
                with open(log, encoding="utf-8", errors="replace") as handle:
                    handle.seek(written)
                    said = handle.read()
            if "could not bind" not in said or time.monotonic() > deadline:
                raise
            time.sleep(5)
    _wait_ready(cluster.port)
    return "started"


def native_down(cluster: Cluster, bindir: Path | None) -> str:
    pidfile = cluster.datadir / "postmaster.pid"
    if not pidfile.exists():
        return "not running"
    if bindir is None:
        raise ClusterError(f"cluster {cluster.name!r} runs natively but no pg_ctl was found")
    _run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-m", "fast", "-w", "stop"]),
         check=False)
    return "stopped"


def container_up(cluster: Cluster, engine: str, image: str) -> str:
    status = subprocess.run([engine, "inspect", "-f", "{{.State.Running}}", cluster.container],
                            capture_output=True, text=True, check=False)
    if status.returncode == 0 and status.stdout.strip() == "true":
        _wait_ready(cluster.port)
        return "already running"
    if status.returncode == 0:
        _run([engine, "start", cluster.container])
    else:
        if _port_open(cluster.port):
            raise ClusterError(f"port {cluster.port} for cluster {cluster.name!r} is taken by another program")
        env = dict(os.environ, POSTGRES_PASSWORD=password())
        # The password reaches the container through the engine's environment, not its argv.
        _run([engine, "run", "-d", "--name", cluster.container, "--network", "host",
              "-e", "POSTGRES_PASSWORD", "-e", f"PGPORT={cluster.port}",
              "--label", "pgsafe.throwaway=1", image,
              "postgres", "-c", f"port={cluster.port}", "-c", "listen_addresses=127.0.0.1",
              "-c", "fsync=off", "-c", "shared_preload_libraries=pg_stat_statements"], env=env)
    _wait_ready(cluster.port, timeout=120)
    return "started"


def container_down(cluster: Cluster, engine: str) -> str:
    status = subprocess.run([engine, "inspect", cluster.container], capture_output=True, check=False)
    if status.returncode != 0:
        return "not running"
    _run([engine, "rm", "-f", cluster.container])
    return "removed"


def _run(cmd: list[str], check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env,
                          cwd="/" if os.geteuid() == 0 else None)
    if check and proc.returncode != 0:
        raise ClusterError(f"{Path(cmd[0]).name if cmd[0] != 'runuser' else Path(cmd[4]).name} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --------------------------------------------------------------------------- commands
def choose_engine(requested: str) -> tuple[str, Path | None]:
    bindir = _native_bindir()
    if requested in ("auto", "native") and bindir:
        return "native", bindir
    if requested == "native":
        raise ClusterError("no PostgreSQL server binaries found (initdb, pg_ctl): install the postgresql "
                           "server package, set PGSAFE_PG_BINDIR, or use PGSAFE_ENGINE=podman|docker")
    engine = _container_engine(None if requested == "auto" else requested)
    if engine:
        return engine, None
    raise ClusterError(
        "neither PostgreSQL server binaries nor a working container engine were found: install the "
        "postgresql server package (initdb, pg_ctl), or podman, or docker with a running daemon"
    )


def up(engine_request: str = "auto", reseed: bool = False, scale: float = 1.0,
       names: list[str] | None = None) -> dict:
    state = _state()
    engine = state.get("engine")
    if engine is None or engine_request not in ("auto", engine):
        engine, bindir = choose_engine(engine_request)
    else:
        bindir = _native_bindir()
    password()
    result = {}
    for name in names or list(CLUSTERS):
        cluster = Cluster(name, CLUSTERS[name])
        if engine == "native":
            action = native_up(cluster, bindir)
        else:
            action = container_up(cluster, engine, os.environ.get("PGSAFE_PG_IMAGE", DEFAULT_IMAGE))
        seeded = ensure_seeded(cluster, reseed=reseed, scale=scale)
        result[name] = {"port": cluster.port, "engine": engine, "action": action, "seed": seeded}
    state.update(engine=engine, clusters={n: CLUSTERS[n] for n in CLUSTERS})
    _save_state(state)
    return result


def start(name: str, port: int, engine_request: str = "auto") -> dict:
    """Start one unseeded cluster (tests use their own, beside prod/dev/staging); idempotent.

    Returns libpq keyword arguments for its superuser (password included: do not log them).
    """
    engine, bindir = choose_engine(engine_request)
    cluster = Cluster(name, port)
    if engine == "native":
        native_up(cluster, bindir)
    else:
        container_up(cluster, engine, os.environ.get("PGSAFE_PG_IMAGE", DEFAULT_IMAGE))
    return {"host": "127.0.0.1", "port": port, "user": SUPERUSER, "password": password(), "dbname": "postgres"}


def stop(name: str, port: int) -> str:
    """Stop one cluster started by start()."""
    cluster = Cluster(name, port)
    if (cluster.datadir / "postmaster.pid").exists():
        return native_down(cluster, _native_bindir())
    for eng in ("podman", "docker"):
        if shutil.which(eng):
            outcome = container_down(cluster, eng)
            if outcome != "not running":
                return outcome
    return "not running"


def ensure_seeded(cluster: Cluster, reseed: bool, scale: float) -> str:
    sys.path.insert(0, str(PROJECT_ROOT / "tools"))
    import sprint90_fixtures  # noqa: PLC0415 - tools/ is not a package

    variant = SEED_VARIANT[cluster.name]
    admin = connect(cluster.port, "postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            exists = cur.fetchone() is not None
            if exists and not reseed:
                return "kept"
            if exists:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (DATABASE,))
                cur.execute(f'DROP DATABASE "{DATABASE}"')
            cur.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        admin.close()
    conn = connect(cluster.port, DATABASE)
    try:
        sprint90_fixtures.seed(conn, variant, scale=scale)
    finally:
        conn.close()
    return f"seeded {variant} x{scale:g}"


def down() -> dict:
    """Stop prod, dev and staging, and every other throwaway cluster of the project (tests, benchmarks)."""
    state = _state()
    engine = state.get("engine")
    result = {}
    bindir = _native_bindir()
    others = {path.parent.name: 0 for path in DATA_ROOT.glob("*/postmaster.pid")} if DATA_ROOT.exists() else {}
    for name, port in {**others, **CLUSTERS}.items():
        cluster = Cluster(name, port)
        actions = []
        if (cluster.datadir / "postmaster.pid").exists():
            actions.append(native_down(cluster, bindir))
        for eng in {engine, "podman", "docker"} - {None, "native"}:
            if shutil.which(eng):
                outcome = container_down(cluster, eng)
                if outcome != "not running":
                    actions.append(f"{eng}: {outcome}")
        result[name] = ", ".join(actions) or "not running"
    return result


def status() -> dict:
    return {name: {"port": port, "accepting": _port_open(port)} for name, port in CLUSTERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start (and seed) the throwaway clusters; idempotent")
    up_parser.add_argument("--engine", default=os.environ.get("PGSAFE_ENGINE", "auto"),
                           choices=["auto", "native", "podman", "docker"])
    up_parser.add_argument("--reseed", action="store_true", help="drop and re-create the Sprint 90 databases")
    up_parser.add_argument("--scale", type=float, default=float(os.environ.get("PGSAFE_SCALE", "1")))
    up_parser.add_argument("names", nargs="*", choices=[*CLUSTERS, []], default=None)
    sub.add_parser("down", help="stop the throwaway clusters (data stays in .pgdata/)")
    sub.add_parser("status", help="which clusters accept connections")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            result = up(args.engine, reseed=args.reseed, scale=args.scale, names=args.names or None)
        elif args.command == "down":
            result = down()
        else:
            result = status()
    except ClusterError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    for name, info in result.items():
        print(f"{name}: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
