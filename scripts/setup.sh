#!/usr/bin/env bash
# Installs what aiom4b needs to build, test and benchmark on Debian/Ubuntu. Idempotent.
# Other systems: see the messages below (macOS with Homebrew: `brew install ffmpeg pkg-config llvm`).
set -euo pipefail

need_pkgs=(
  # build: ffmpeg-sys-next runs bindgen (clang) against the libav* headers found by pkg-config
  pkg-config clang libclang-dev build-essential
  libavcodec-dev libavformat-dev libavutil-dev libswresample-dev
  libavfilter-dev libavdevice-dev libswscale-dev
  # the self-contained build (vendor/ffmpeg/build.sh, docs/static-build.md): FFmpeg's x86
  # assembly, its tarball's xz, and for the test profile Debian's static libmp3lame; the
  # Dockerfile check runs its steps in debootstrap roots (scripts/docker-check.py)
  nasm xz-utils libmp3lame-dev zlib1g-dev debootstrap
  # ... and its test fixtures of the other input formats (libvorbis, libopus, linked statically)
  libvorbis-dev libopus-dev libogg-dev
  # tests and benchmarks: ffprobe/ffmpeg as an independent reader and a speed baseline,
  # espeak-ng for the synthetic spoken corpus, mediainfo/AtomicParsley to inspect output by hand
  ffmpeg espeak-ng mediainfo atomicparsley hyperfine
  # the service's conformance check runs schemathesis from PyPI in a virtualenv; the tag tests
  # read the written tags back with mutagen (an independent reader)
  python3 python3-venv python3-mutagen
  # the web page's browser tests (tests/integration/web.rs): headless Chromium via WebDriver
  chromium chromium-driver
  # the PostgreSQL job store's tests start a throw-away server from these binaries
  # (crates/aiom4b-testkit/src/postgres.rs); nothing uses the package's own cluster
  postgresql
  # `aiom4b completions` and `aiom4b man` are checked by the shells themselves (bash -n,
  # zsh -n, fish --no-execute, real completions) and by groff rendering every page
  # (tests/integration/cli_docs.rs); systemd-analyze verifies docs/aiom4b*.service
  zsh fish groff-base systemd
)

os=$(uname -s)
if [ "$os" = Darwin ]; then
  echo "macOS: install Homebrew (https://brew.sh), then run:" >&2
  echo "  brew install ffmpeg pkg-config llvm espeak-ng hyperfine" >&2
  echo "  export LIBCLANG_PATH=\"\$(brew --prefix llvm)/lib\"" >&2
  echo "and build with 'cargo build --release'." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "This script knows Debian/Ubuntu (apt-get). On other systems install: FFmpeg >= 4.4 development" >&2
  echo "libraries (libavcodec, libavformat, libavutil, libswresample), pkg-config, clang/libclang," >&2
  echo "and for the tests the ffmpeg and ffprobe programs; then run 'cargo test'." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages already installed" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first: https://rustup.rs" >&2
  exit 1
fi
