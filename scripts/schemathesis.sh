#!/usr/bin/env bash
# Checks that `aiom4b serve` keeps to its own OpenAPI document (issue 11): starts the release
# binary on a free loopback port with a fresh DATA_DIR and a SOURCE_DIR holding one small book,
# then runs schemathesis (PyPI, installed into a virtualenv under target/) with a bounded number
# of examples per operation. It fails on any server error (5xx) and on any response that does
# not match the document (status code, content type, schema).
#
# Real objects first: the sample book is converted once through the API (with backups on), and
# two more jobs of it are cancelled, so that the operations that take an id get ids that exist.
# A schemathesis.toml written next to the run fixes those path parameters per operation:
#   completed job  → GET /jobs/{id}, /jobs/{id}/verify, /download/{id}, POST cancel (409)
#   cancelled job  → POST /jobs/{id}/retry (201; MAX_PENDING_JOBS=2 bounds the conversions that
#                    starts, beyond it 429)
#   another cancelled job → DELETE /jobs/{id} (the only operation that may remove a seeded job)
#   the backup     → POST /backups/{name}/verify, /backups/{name}/restore (to fuzzed new folders)
#   the book folder → GET /folders/{path}/plan, /folders/{path}/cover
#   completed job  → POST /jobs/{id}/tag, GET /match?job= (Audible answered by a local stub)
# POST /jobs/clear gets an age no seeded job reaches, so it archives nothing the rest needs.
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
stub_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$stub_pid" ]; then kill "$stub_pid" 2>/dev/null || true; wait "$stub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cargo run --quiet --release --example sample_book -- "$work/source/Author/Sample Book" >/dev/null
# GET /match and POST /jobs/{id}/tag ask Audnexus and Audible: a local stub answers them from
# the recorded responses (scripts/metadata-stub.py), so the run needs no network and a provider
# is never the 5xx.
python3 scripts/metadata-stub.py >"$work/stub" &
stub_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/stub" 2>/dev/null && break
  sleep 0.1
done
stub="$(sed -n 's/^listening on //p' "$work/stub" | head -1)"
[ -n "$stub" ] || { echo "schemathesis: the metadata stub did not start" >&2; exit 1; }
DATA_DIR="$work/data" SOURCE_DIR="$work/source" MAX_CONCURRENT_JOBS=1 BACKUP_ENABLED=true MAX_PENDING_JOBS=2 \
  AIOM4B_AUDNEXUS_URL="$stub" AIOM4B_AUDIBLE_URL="$stub/{tld}" \
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
api="$base/api/v1"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
convert() {
  curl -sf -X POST "$api/convert" -H 'content-type: application/json' \
    -d '{"folders":[{"path":"Author/Sample Book"}]}' | json 'd["jobs"][0]["id"]'
}
# A second image in the book folder and an uploaded cover, for the image and upload routes.
python3 - "$work/source/Author/Sample Book/back.png" <<'PY'
import struct, sys, zlib
w = h = 8
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + b"".join(bytes([x * 30, y * 30, 128]) for x in range(w)) for y in range(h))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
upload="$(curl -sf -X POST "$api/covers" -H 'content-type: image/png' --data-binary @"$work/source/Author/Sample Book/back.png" | json 'd["id"]')"
completed="$(convert)"
for _ in $(seq 600); do
  status="$(curl -sf "$api/jobs/$completed" | json 'd["status"]')"
  [ "$status" = completed ] && break
  case "$status" in failed|cancelled) echo "schemathesis: seeding conversion $status" >&2; exit 1;; esac
  sleep 0.2
done
[ "$status" = completed ] || { echo "schemathesis: seeding conversion did not finish" >&2; exit 1; }
cancelled=()
for _ in 1 2; do
  id="$(convert)"
  curl -sf -X POST "$api/jobs/$id/cancel" >/dev/null
  cancelled+=("$id")
done
backup="$(curl -sf "$api/backups" | json 'd["backups"][0]["name"]')"
cat >"$work/schemathesis.toml" <<TOML
[[operations]]
include-operation-id = ["get_job_h", "verify_job", "download", "cancel_job"]
parameters = { "path.id" = "$completed" }
[[operations]]
include-operation-id = "retry_job"
parameters = { "path.id" = "${cancelled[0]}" }
[[operations]]
include-operation-id = "delete_job"
parameters = { "path.id" = "${cancelled[1]}" }
[[operations]]
include-operation-id = ["verify_backup", "restore_backup"]
parameters = { "path.name" = "$backup" }
[[operations]]
include-operation-id = ["plan", "cover"]
parameters = { "path.path" = "Author/Sample Book" }
[[operations]]
include-operation-id = "list_images"
parameters = { "path.path" = "Author/Sample Book" }
[[operations]]
include-operation-id = "image"
parameters = { "path.path" = "Author/Sample Book", "path.name" = "back.png" }
[[operations]]
include-operation-id = ["uploaded"]
parameters = { "path.id" = "$upload" }
[[operations]]
include-operation-id = ["job_log"]
parameters = { "path.id" = "$completed" }
[[operations]]
include-operation-id = ["tag"]
parameters = { "path.id" = "$completed" }
[[operations]]
include-operation-id = ["find"]
parameters = { "query.job" = "$completed" }
[[operations]]
include-operation-id = "clear_jobs"
parameters = { "query.older_than" = "3650d" }
TOML
echo "=== schemathesis against $base (max $examples examples per operation; seeded: job $completed, backup $backup) ==="
# From the temporary folder: schemathesis and hypothesis leave their state in the working directory.
cd "$work"
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --url "$base/api/v1" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path-regex 'events$' \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed 11 \
  --generation-database none \
  --workers 1 \
  --suppress-health-check all \
  --report har --report-har-path "$work/run.har" || rc=$?
# Which operations got a success (informational): the recorded exchanges by status class.
curl -sf "$api/openapi.json" >"$work/openapi.json"
python3 - "$work/openapi.json" "$work/run.har" "$completed" "${cancelled[0]}" "${cancelled[1]}" "$backup" "$upload" <<'PY' || true
import collections, json, re, sys, urllib.parse
doc, har, *seeded = sys.argv[1:]
documented = {f"{m.upper()} {p}" for p, ops in json.load(open(doc))["paths"].items() for m in ops}
names = dict(zip(seeded, ["{id}", "{id}", "{id}", "{name}", "{id}"]))
seen = collections.defaultdict(collections.Counter)
for e in json.load(open(har))["log"]["entries"]:
    path = urllib.parse.unquote(urllib.parse.urlsplit(e["request"]["url"]).path)
    path = re.sub(r"^/api/v1", "", path)
    for value, name in names.items():
        path = path.replace(value, name)
    path = path.replace("Author/Sample Book", "{path}")
    path = re.sub(r"^/(jobs|download)/(?!clear$)[^/]+", lambda m: f"/{m[1]}/{{id}}", path)
    path = re.sub(r"^/(backups)/[^/]+/", r"/\1/{name}/", path)
    path = re.sub(r"^/folders/.+/images/[^/]+$", "/folders/{path}/images/{name}", path)
    path = re.sub(r"^/folders/.+/(plan|cover|images)$", r"/folders/{path}/\1", path)
    path = re.sub(r"^/covers/[^/]+$", "/covers/{id}", path)
    seen[f'{e["request"]["method"]} {path}'][f'{e["response"]["status"] // 100}xx'] += 1
seen = {op: c for op, c in seen.items() if op in documented}
ok = [op for op, c in seen.items() if c["2xx"]]
for op in sorted(seen):
    print(f"  {op:40} " + " ".join(f"{k}:{v}" for k, v in sorted(seen[op].items())))
print(f"{len(ok)} of {len(documented)} documented operations answered 2xx at least once")
PY
exit "${rc:-0}"

