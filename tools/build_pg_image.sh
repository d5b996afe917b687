#!/usr/bin/env bash
# Build the Postgres image the Molecule scenarios use when there is no registry:
#
#   tools/build_pg_image.sh 15|17 [--force]     -> localhost/pgsafe-postgres:15 | :17
#
# A minimal Debian root (debootstrap --variant=minbase: bookworm gives postgresql-15, trixie gives
# postgresql-17; contrib, hence pg_stat_statements, is in the server package) imported into the
# container engine with an entrypoint that behaves like the official postgres image for what the
# project uses (tools/pg_image/entrypoint.sh).  Where a registry is reachable, set
# PGSAFE_PG_IMAGE=docker.io/library/postgres:<major> instead and skip this.
#
# Cached and idempotent: an image whose pgsafe.recipe label matches this recipe is kept as is; the
# debootstrapped root is kept in .cache/pg-images/ (git-ignored), so rebuilding after an entrypoint
# change or an image prune takes seconds.  Needs root (debootstrap); installs debootstrap when missing.
# Env: PGSAFE_ENGINE (podman|docker), PGSAFE_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
major=${1:-}
force=${2:-}
case "$major" in
  15) suite=bookworm ;;
  17) suite=trixie ;;
  *) echo "usage: $0 15|17 [--force]" >&2; exit 2 ;;
esac
image="localhost/pgsafe-postgres:$major"
mirror=${PGSAFE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages="postgresql-$major"
say() { echo "build_pg_image[$major]: $*" >&2; }

eval "$("$root/tools/container_engine.sh" ensure)"
engine=$PGSAFE_ENGINE

# The root filesystem depends on the suite and packages; the image also on the entrypoint and this script.
rootfs_key=$(printf '%s\n' "rootfs-v1" "$suite" "$packages" | sha256sum | cut -c1-16)
recipe=$(cat "$0" "$root/tools/pg_image/entrypoint.sh" | sha256sum | cut -c1-16)-$rootfs_key

cache="$root/.cache/pg-images"
mkdir -p "$cache"
[ -e "$root/.cache/.gitignore" ] || printf '# build caches (tools/build_pg_image.sh)\n*\n' > "$root/.cache/.gitignore"
exec 9>"$cache/$major.lock"
flock 9

label=$("$engine" image inspect --format '{{ index .Config.Labels "pgsafe.recipe" }}' "$image" 2>/dev/null || true)
if [ "$label" = "$recipe" ] && [ "$force" != --force ]; then
  say "$image is up to date"
  exit 0
fi

rootfs_tar="$cache/$suite-postgresql-$major-$rootfs_key.tar"
if [ ! -s "$rootfs_tar" ] || [ "$force" = --force ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    say "installing debootstrap"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  [ "$(id -u)" -eq 0 ] || { say "debootstrap needs root"; exit 1; }
  dir=$(mktemp -d "$cache/rootfs-$major.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  say "debootstrap $suite with $packages (about a minute)"
  start=$(date +%s)
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" > "$cache/debootstrap-$major.log" 2>&1; then
    tail -20 "$cache/debootstrap-$major.log" >&2
    say "debootstrap failed (full log: $cache/debootstrap-$major.log)"
    exit 1
  fi
  # Debian creates a default cluster on install; the entrypoint makes its own in PGDATA.
  rm -rf "$dir/var/lib/postgresql/$major/main" "$dir/etc/postgresql/$major/main" \
         "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
         "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/var/log/*.log
  [ -x "$dir/usr/lib/postgresql/$major/bin/postgres" ] || { say "postgres $major missing from the root"; exit 1; }
  [ -f "$dir/usr/lib/postgresql/$major/lib/pg_stat_statements.so" ] || { say "pg_stat_statements missing"; exit 1; }
  rm -f "$cache/$suite-postgresql-$major-"*.tar
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -C "$dir" -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$dir"
  trap - EXIT
  say "root filesystem cached in ${rootfs_tar#"$root"/} ($(( $(date +%s) - start ))s)"
fi

# Root + entrypoint -> image.
work=$(mktemp "$cache/import-$major.XXXXXX.tar")
trap 'rm -f "$work"' EXIT
cp "$rootfs_tar" "$work"
tar --append -f "$work" --owner=0 --group=0 --mode=0755 \
    --transform 's,^entrypoint\.sh$,./usr/local/bin/docker-entrypoint.sh,' \
    -C "$root/tools/pg_image" entrypoint.sh
old_id=$("$engine" image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
"$engine" import \
  --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV PGDATA=/var/lib/postgresql/data" \
  --change "ENV LANG=C.UTF-8" \
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  --change "STOPSIGNAL SIGINT" \
  --change "EXPOSE 5432" \
  --change "LABEL pgsafe.recipe=$recipe" \
  --change "LABEL org.opencontainers.image.description=PostgreSQL-$major-on-Debian-$suite-for-pgsafe-tests" \
  "$work" "$image" > "$cache/import-$major.log" 2>&1 || { cat "$cache/import-$major.log" >&2; exit 1; }
rm -f "$work"
trap - EXIT
# Drop the image this one replaces (untagged now), unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$("$engine" image inspect --format '{{ .Id }}' "$image")" ]; then
  "$engine" rmi "$old_id" >/dev/null 2>&1 || true
fi
say "built $image ($("$engine" run --rm --entrypoint postgres "$image" --version))"
