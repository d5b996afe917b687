#!/usr/bin/env bash
# make bench [BENCH=<name>]: run bench/<name>.py, or every benchmark. Each prints BENCH lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
if [ -n "${1:-}" ]; then
  [ -f "bench/$1.py" ] || { echo "no benchmark named $1 (have: $(ls bench/*.py 2>/dev/null | xargs -r -n1 basename | sed 's/\.py$//' | tr '\n' ' '))" >&2; exit 2; }
  exec .venv/bin/python "bench/$1.py"
fi
for b in bench/*.py; do
  [ -e "$b" ] || { echo "no benchmarks yet"; exit 0; }
  .venv/bin/python "$b"
done
