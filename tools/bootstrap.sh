#!/usr/bin/env bash
# System packages the test suite needs on a fresh Debian machine (PostgreSQL server binaries,
# client tools); Python packages come from requirements.txt through `make venv`.
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
command -v make >/dev/null 2>&1 || need+=(make)
# Physical backups with WAL archiving (roles/backup with backup_engine=pgbackrest, docs/pitr.md).
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
python3 -c 'import venv' 2>/dev/null || need+=(python3-venv)
# Molecule runs Postgres 15 and 17 in podman containers built offline with debootstrap.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
  echo "bootstrap: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  # Debian starts a default cluster on install; the project runs its own.
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
