#!/usr/bin/env bash
# make molecule: every Molecule scenario (molecule/*/molecule.yml) on each PostgreSQL version.
#
#   tools/molecule.sh [scenario ...]            default: every scenario
#   PGSAFE_PG_VERSIONS="15 17"                  versions, one after the other (default "15 17")
#   PGSAFE_ENGINE=podman|docker                 container engine (default: podman, installed when missing)
#   PGSAFE_PG_IMAGE=docker.io/library/postgres:{version}
#                                               image ({version} replaced); default: build
#                                               localhost/pgsafe-postgres:<version> offline (tools/build_pg_image.sh)
#   PGSAFE_MOLECULE_SCALE=1                     fixture scale
#   PGSAFE_MOLECULE_ACTION=test                 molecule command (test, converge, verify, destroy, ...)
#   PGSAFE_MOLECULE_DESTROY=always              never: keep the containers and state after `test` (debugging)
#   PGSAFE_MOLECULE_PARALLEL=0                  1: run the versions of a scenario side by side (output to
#                                               <workdir>/<scenario>-pg<v>.log, printed when done)
#
# Each (scenario, version) gets its own Molecule ephemeral directory (inventory, secrets, state, the
# runs' artifacts) under PGSAFE_MOLECULE_WORKDIR (default ~/.cache/pgsafe-molecule/<checkout>/, out of
# the tree so linters never see generated files), its own containers and its own loopback ports,
# so versions can also run side by side.  Prints one timing line per run and a summary; exits non-zero
# when any run failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PATH="$root/.venv/bin:$PATH"

if (($#)); then
  scenarios="$*"
else
  scenarios=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -r -n1 basename | sort)
fi
[ -n "$scenarios" ] || { echo "molecule: no scenarios"; exit 0; }
versions=${PGSAFE_PG_VERSIONS:-15 17}
action=${PGSAFE_MOLECULE_ACTION:-test}

eval "$(tools/container_engine.sh ensure)"
echo "molecule: engine $PGSAFE_ENGINE, PostgreSQL $versions, scenarios $(echo $scenarios)"

if [ -z "${PGSAFE_PG_IMAGE:-}" ]; then
  for v in $versions; do
    tools/build_pg_image.sh "$v"
  done
fi

# The scenarios link the Sprint 90 plans (inventories/local/host_vars) into their inventory.
mkdir -p inventories/local/host_vars

workdir=${PGSAFE_MOLECULE_WORKDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pgsafe-molecule/$(basename "$root")-$(printf %s "$root" | sha256sum | cut -c1-8)}

summary=()
failed=0
one() {  # scenario version -> runs molecule, prints the timing line last
  local s=$1 v=$2 start status
  export PGSAFE_PG_VERSION=$v
  export MOLECULE_EPHEMERAL_DIRECTORY="$workdir/$s-pg$v"
  mkdir -p "$MOLECULE_EPHEMERAL_DIRECTORY"
  start=$(date +%s)
  echo "== molecule $action -s $s (PostgreSQL $v)"
  local extra=()
  [ "$action" = test ] && extra=(--destroy="${PGSAFE_MOLECULE_DESTROY:-always}")
  if molecule "$action" -s "$s" "${extra[@]}"; then status=passed; else status=FAILED; fi
  echo "molecule $s pg$v: $status in $(( $(date +%s) - start ))s (work directory: $MOLECULE_EPHEMERAL_DIRECTORY)"
  [ "$status" = passed ]
}
mkdir -p "$workdir"
for s in $scenarios; do
  if [ "${PGSAFE_MOLECULE_PARALLEL:-0}" = 1 ]; then
    pids=()
    for v in $versions; do
      one "$s" "$v" > "$workdir/$s-pg$v.log" 2>&1 &
      pids+=($!)
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed=1; done
    for v in $versions; do
      cat "$workdir/$s-pg$v.log"
      summary+=("$(tail -n1 "$workdir/$s-pg$v.log")")
    done
  else
    for v in $versions; do
      one "$s" "$v" 2>&1 | tee "$workdir/$s-pg$v.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
      summary+=("$(tail -n1 "$workdir/$s-pg$v.log")")
    done
  fi
done
printf '%s\n' "${summary[@]}"
exit $failed
