#!/usr/bin/env bash
# Molecule scenarios (molecule/*) on Postgres 15 and 17; filled in by the Molecule work.
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' 2>/dev/null | xargs -r -n1 basename | sort)
if [ -z "$scenarios" ]; then
  echo "molecule: no scenarios yet"
  exit 0
fi
for s in $scenarios; do
  .venv/bin/molecule test -s "$s"
done
