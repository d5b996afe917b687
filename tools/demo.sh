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
# Validation on its own, as a later job would run it: it judges the dev run by its id (the schema the
# run found is kept in dev's product schema), so dev's drift that the plan does not touch is reported
# as pre-existing instead of failing it.
artifacts=${PGSAFE_ARTIFACTS_ROOT:-$PWD/artifacts}
dev_run=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["run_id"])' \
  "$artifacts/dev/sprint90_dev/latest/report.json")
run validate.yml --limit dev -e pgsafe_migration_run_id="$dev_run"

"$PY" tools/demo_report.py staging/sprint90_rehearsal dev/sprint90_dev dev/validate
