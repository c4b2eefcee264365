#!/usr/bin/env bash
# Fuzz smoke: builds the fuzz targets (nightly + cargo-fuzz) and runs each for SECONDS (default
# 20) from its committed seeds (fuzz/seeds/<target>/) and regression inputs. New inputs go to a
# temporary corpus that is deleted afterwards; a crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script. See docs/fuzzing.md.
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
shift || true

# A smoke needs the seeds' paths covered, not top speed: opt-level 1 without debug info builds
# in about half the time of the profile used for long runs.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false
cargo +nightly fuzz build
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=target/$triple/release

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "artifacts/$t"
  inputs=("seeds/$t")
  [ -d "regressions/$t" ] && inputs+=("regressions/$t")
  # Panics inside Symphonia or mp4ameta are caught by verify (and reported as decode errors or
  # inconsistencies): record them instead of stopping; panics in aiom4b itself stay fatal.
  echo "fuzz smoke: $t for ${secs}s"
  AIOM4B_FUZZ_FOREIGN_PANICS="$work/foreign-$t" "$bin/$t" "$work/$t" "${inputs[@]}" \
    -max_total_time="$secs" -timeout=30 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
    >"$work/$t.log" 2>&1 || {
    tail -n 40 "$work/$t.log"
    echo "fuzz smoke: $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  }
  grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t.log" || tail -n 3 "$work/$t.log"
  if grep -q '^foreign panic' "$work/$t.log"; then
    echo "fuzz smoke: $t: panics inside other readers (caught by verify, issue 10 item 13):"
    grep '^foreign panic' "$work/$t.log"
  fi
done
