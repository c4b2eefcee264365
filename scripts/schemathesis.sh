#!/usr/bin/env bash
# Checks that `aiom4b serve` keeps to its own OpenAPI document (issue 11): starts the release
# binary on a free loopback port with a fresh DATA_DIR and a SOURCE_DIR holding one small book,
# then runs schemathesis (PyPI, installed into a virtualenv under target/) with a bounded number
# of examples per operation. It fails on any server error (5xx) and on any response that does
# not match the document (status code, content type, schema).
#
# The event streams are left out: `/events` never ends by design and `/jobs/{id}/events` lasts
# as long as its job.
#
#   scripts/schemathesis.sh            # needs target/release/aiom4b (cargo build --release)
#   SCHEMATHESIS_EXAMPLES=200 scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${SCHEMATHESIS_EXAMPLES:-25}"
venv="$PWD/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cargo run --quiet --release --example sample_book -- "$work/source/Author/Sample Book" >/dev/null
DATA_DIR="$work/data" SOURCE_DIR="$work/source" MAX_CONCURRENT_JOBS=1 BACKUP_ENABLED=false \
  target/release/aiom4b serve --port 0 >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
base="$(sed -n 's/^listening on //p' "$work/stdout" | head -1)"
if [ -z "$base" ]; then
  echo "schemathesis: the server did not start:" >&2
  cat "$work/stderr" >&2
  exit 1
fi
echo "=== schemathesis against $base (max $examples examples per operation) ==="
# From the temporary folder: schemathesis and hypothesis leave their state in the working directory.
cd "$work"
"$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
  --url "$base/api/v1" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path-regex 'events$' \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed 11 \
  --generation-database none \
  --workers 1 \
  --suppress-health-check all
