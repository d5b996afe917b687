#!/usr/bin/env bash
# make demo: throwaway clusters seeded like Sprint 90 -> prod backup + rehearsal on staging ->
# the dev fix -> validation -> a summary report, whose path is the last line printed.
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
run sprint90_dev.yml
run validate.yml --limit dev

"$PY" tools/demo_report.py staging/sprint90_rehearsal dev/sprint90_dev dev/validate
