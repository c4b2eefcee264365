#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests (issue 14), from Debian's `postgresql` package
# (scripts/setup.sh installs it): initdb in a temporary folder, the server on 127.0.0.1 with a
# free port, its socket in that folder, trust authentication for the user `aiom4b`, no fsync.
# Run as root, the cluster belongs to `nobody` and the server runs as it (PostgreSQL refuses
# root), as the test kit does (crates/aiom4b-testkit/src/postgres.rs).
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # exports AIOM4B_TEST_DATABASE_URL and
#                                                # AIOM4B_PG_CLUSTER_DIR
#   scripts/pg-test-cluster.sh stop "$AIOM4B_PG_CLUSTER_DIR"   # fast shutdown, folder removed
#
# `start` prints only the two `export` lines on stdout (progress goes to stderr); it fails,
# with the server's log, if the server does not come up.
set -euo pipefail

# The newest /usr/lib/postgresql/<version>/bin with initdb, else the PATH's.
bin_dir() {
  local best="" v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] || continue
    v="$(basename "$(dirname "$d")")"
    if [[ -z "$best" ]] || ((v > $(basename "$(dirname "$best")"))); then
      best="$d"
    fi
  done
  if [[ -n "$best" ]]; then
    echo "$best"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
  else
    echo "pg-test-cluster: PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)" >&2
    return 1
  fi
}

# Runs a command as the cluster's owner: nobody when we are root, else ourselves.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- "$@"
  else
    "$@"
  fi
}

# A free loopback port: bind port 0 and read what the kernel gave. The server binds it a
# moment later; another process taking it in between makes `pg_ctl start` fail loudly.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin dir port
  bin="$(bin_dir)"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/aiom4b-pgci.XXXXXX")"
  if [[ "$(id -u)" == 0 ]]; then
    chown nobody: "$dir"
  fi
  as_owner "$bin/initdb" -U aiom4b --auth=trust --encoding=UTF8 --no-sync -D "$dir/data" >/dev/null
  port="$(free_port)"
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2; then
    cat "$dir/server.log" >&2 || true
    rm -rf "$dir"
    return 1
  fi
  echo "pg-test-cluster: PostgreSQL on 127.0.0.1:$port (folder $dir)" >&2
  echo "export AIOM4B_TEST_DATABASE_URL=postgres://aiom4b@127.0.0.1:$port/postgres"
  echo "export AIOM4B_PG_CLUSTER_DIR=$dir"
}

stop() {
  local dir="${1:-${AIOM4B_PG_CLUSTER_DIR:-}}" bin
  if [[ -z "$dir" || ! -d "$dir/data" ]]; then
    echo "pg-test-cluster: no cluster folder to stop (${dir:-none given})" >&2
    return 1
  fi
  bin="$(bin_dir)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
