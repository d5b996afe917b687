#!/usr/bin/env bash
# Container engine for the Molecule scenarios and the image builds: podman or docker.
#
#   eval "$(tools/container_engine.sh ensure)"   # choose (and on Debian install) the engine, print exports
#   tools/container_engine.sh show               # print the choice, change nothing
#
# PGSAFE_ENGINE=podman|docker picks the engine.  Unset: podman when installed, else docker when its
# daemon answers, else podman is installed (Debian/Ubuntu, as root or with sudo: podman + runc).
# For podman, CONTAINERS_CONF points at molecule/containers.conf (runtime runc: crun fails on
# hybrid cgroup hosts; modest default ulimits).  Prints shell `export` lines on stdout, messages on
# stderr.  Idempotent: installs only what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
conf="$root/molecule/containers.conf"

say() { echo "container_engine: $*" >&2; }

apt_install() {
  command -v apt-get >/dev/null 2>&1 || { say "cannot install $* (no apt-get): install it yourself"; return 1; }
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "cannot install $* (not root, no sudo)"; return 1; }
    sudo=sudo
  fi
  say "installing $*"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

docker_works() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

choose() {
  local engine=${PGSAFE_ENGINE:-}
  case "$engine" in
    podman|docker) ;;
    "" | auto)
      if command -v podman >/dev/null 2>&1; then engine=podman
      elif docker_works; then engine=docker
      else engine=podman
      fi ;;
    *) say "PGSAFE_ENGINE=$engine: use podman or docker"; exit 2 ;;
  esac
  echo "$engine"
}

ensure() {
  local engine
  engine=$(choose)
  if [ "$engine" = docker ]; then
    docker_works || { say "PGSAFE_ENGINE=docker but the docker daemon does not answer (docker info): start it or use PGSAFE_ENGINE=podman"; exit 1; }
  else
    local need=()
    command -v podman >/dev/null 2>&1 || need+=(podman)
    command -v runc >/dev/null 2>&1 || need+=(runc)
    if ((${#need[@]})); then
      apt_install "${need[@]}" || { command -v podman >/dev/null 2>&1 || exit 1; }
    fi
  fi
  emit "$engine"
}

emit() {
  local engine=$1
  echo "export PGSAFE_ENGINE=$engine"
  if [ "$engine" = podman ]; then
    if command -v runc >/dev/null 2>&1; then
      echo "export CONTAINERS_CONF=$(printf %q "$conf")"
    else
      say "runc is missing: keeping podman's default runtime and ulimits"
    fi
  fi
}

case "${1:-ensure}" in
  ensure) ensure ;;
  show) emit "$(choose)" ;;
  *) echo "usage: $0 [ensure|show]" >&2; exit 2 ;;
esac
