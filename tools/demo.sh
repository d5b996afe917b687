#!/usr/bin/env bash
# make demo: throwaway clusters seeded like Sprint 90 -> the Sprint 90 runs -> the report path, last.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
PY=.venv/bin/python
PLAYBOOK=.venv/bin/ansible-playbook

echo "== throwaway clusters (prod, dev, staging), freshly seeded like Sprint 90"
"$PY" tools/pgclusters.py up --reseed

run() {
  echo "== ansible-playbook -i inventories/local playbooks/$1 ${*:2}"
  "$PLAYBOOK" -i inventories/local "playbooks/$1" "${@:2}"
}

run sprint90_rehearsal.yml

report=$(readlink -f artifacts/staging/sprint90_rehearsal/latest)/report.md
echo "$report"
