#!/usr/bin/env bash
# Builds the minimal FFmpeg that `--features static-ffmpeg` links: static libraries with only
# what aiom4b uses, from Debian's source package of FFmpeg, checked against a pinned SHA-256.
#
#   vendor/ffmpeg/build.sh            # → target/ffmpeg/<version>/ (prints the FFMPEG_DIR to use)
#   vendor/ffmpeg/build.sh --tests    # the same plus libmp3lame and the mp3 muxer (see below)
#
# Then: FFMPEG_DIR=$PWD/target/ffmpeg/7.1.5 cargo build --release --features static-ffmpeg
# (docs/static-build.md). Idempotent: a finished prefix with the same recipe is kept.
#
# Where the source comes from, in this order: $AIOM4B_FFMPEG_TARBALL (a local copy of the
# orig tarball, for offline builds); `apt-get source --download-only` from a private apt
# configuration (no change to the system's sources; trixie's deb-src); the same file from the
# Debian pool over HTTPS. Whatever the way, the tarball must match FFMPEG_SHA256 or nothing is
# built. The Debian patches are not applied: this is FFmpeg's own release tarball.
#
# The `--tests` profile exists because the test suite writes its MP3 fixtures with libmp3lame
# through FFmpeg (crates/aiom4b-testkit/src/mp3_writer.rs), its cover images with the mjpeg and
# png encoders, and decodes the M4B it checks with FFmpeg's AAC decoder and mov demuxer; the
# product does none of that. It adds those components (libmp3lame and zlib linked statically
# from Debian's libmp3lame-dev and zlib1g-dev) to the same configuration; the
# components aiom4b itself uses are compiled from the same code with the same flags.
set -euo pipefail

FFMPEG_VERSION=7.1.5
FFMPEG_DEBIAN_VERSION=7:7.1.5-0+deb13u1
FFMPEG_DEBIAN_SUITE=trixie
FFMPEG_SHA256=de668509caf9e35e3cd162473441fdb29538c6d96ed080292b3cf9e6fc5d558f
TARBALL=ffmpeg_${FFMPEG_VERSION}.orig.tar.xz

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
profile=minimal
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) profile=tests ;;
    --prefix) prefix=$2; shift ;;
    --print-prefix) print_only=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$prefix" ]; then
  prefix="$root/target/ffmpeg/$FFMPEG_VERSION"
  [ "$profile" = tests ] && prefix="$prefix-tests"
fi
if [ "${print_only:-}" = 1 ]; then echo "$prefix"; exit 0; fi
work="$root/target/ffmpeg/work"
mkdir -p "$work"

# The configuration: everything off, then what aiom4b uses (src/av/):
#  - decoders mp3float (what FFmpeg picks for MP3) and mp3 (fixed point, kept so a decoder
#    chosen by id works the same), the mp3 demuxer and the mpegaudio parser it asks for;
#  - the other input formats (src/av/input.rs): AAC/ALAC in MP4 (mov), ADTS AAC, FLAC, Ogg
#    Vorbis/Opus and WAV PCM — FFmpeg's own decoders, no external library;
#  - the native aac encoder; the ipod muxer (.m4b) and its mov/mp4 siblings; aac_adtstoasc,
#    which movenc inserts by itself should a packet ever start like an ADTS header;
#  - swresample; the file protocol (outputs; inputs come through aiom4b's own AVIOContext).
#  Cover art is passed through as an attached picture (src/av/mux.rs): no image codec is
#  decoded or encoded, so none is compiled in. No network, no devices, no filters, no swscale,
#  no programs, no docs, and no library found on the build machine by autodetection (so the
#  archive needs nothing at run time but libc and libm).
common_flags=(
  --prefix="$prefix"
  --enable-static --disable-shared --enable-pic
  --disable-programs --disable-doc --disable-network --disable-autodetect
  --disable-everything
  --disable-avdevice --disable-avfilter --disable-swscale
  --enable-avcodec --enable-avformat --enable-avutil --enable-swresample
  --enable-decoder=mp3float,mp3
  --enable-demuxer=mp3
  --enable-parser=mpegaudio
  --enable-decoder=aac,alac,flac,vorbis,opus
  --enable-decoder=pcm_u8,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le,pcm_f64le
  --enable-demuxer=mov,aac,flac,ogg,wav
  --enable-parser=aac,flac,vorbis,opus
  --enable-encoder=aac
  --enable-muxer=ipod,mp4,mov
  --enable-bsf=aac_adtstoasc
  --enable-protocol=file
  --extra-version=aiom4b
)
tests_flags=(
  --enable-libmp3lame --enable-encoder=libmp3lame --enable-muxer=mp3
  # the other input formats' fixtures (tests/integration/formats.rs); libvorbis, libogg and
  # libopus are linked statically (Debian's -dev packages ship the .a)
  --enable-libvorbis --enable-libopus
  --enable-encoder=libvorbis,libopus,flac,pcm_s16le,alac --enable-muxer=flac,wav,ogg,adts
  # the test covers (JPEG and PNG); png needs zlib (Debian's zlib1g-dev, linked statically)
  --enable-encoder=mjpeg,png --enable-zlib
  # libmp3lame is linked statically (Debian's libmp3lame-dev ships the .a)
  --pkg-config-flags=--static
)
flags=("${common_flags[@]}")
[ "$profile" = tests ] && flags+=("${tests_flags[@]}")
case "$(uname -m)" in
  x86_64|i?86)
    if ! command -v nasm >/dev/null 2>&1; then
      echo "build.sh: nasm is missing (FFmpeg's x86 assembly; without it decoding and encoding are" >&2
      echo "several times slower). Install it: apt-get install nasm (scripts/setup.sh does)." >&2
      exit 1
    fi ;;
esac

recipe=$(printf '%s\n' "$FFMPEG_VERSION" "$FFMPEG_SHA256" "${flags[@]}" "$(cc --version | head -1)")
if [ -f "$prefix/aiom4b-recipe" ] && [ "$(cat "$prefix/aiom4b-recipe")" = "$recipe" ] \
  && [ -f "$prefix/lib/libavcodec.a" ]; then
  echo "build.sh: $prefix is up to date" >&2
  echo "FFMPEG_DIR=$prefix"
  exit 0
fi

check_sha() {
  echo "$FFMPEG_SHA256  $1" | sha256sum --check --status
}

fetch_source() {
  local dest="$work/$TARBALL"
  if [ -n "${AIOM4B_FFMPEG_TARBALL:-}" ]; then
    cp "$AIOM4B_FFMPEG_TARBALL" "$dest.tmp" && mv "$dest.tmp" "$dest"
  fi
  if [ -f "$dest" ] && check_sha "$dest"; then return 0; fi
  rm -f "$dest"
  # Debian's source package through apt, from a private configuration under target/.
  if command -v apt-get >/dev/null 2>&1; then
    local apt="$work/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
    local signed=""
    if [ -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
      signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    fi
    echo "deb-src ${signed}http://deb.debian.org/debian $FFMPEG_DEBIAN_SUITE main" >"$apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=-"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1"
      -o "APT::Sandbox::User=$(id -un)")
    if apt-get "${o[@]}" -qq update >&2 \
      && (cd "$apt/download" && apt-get "${o[@]}" -qq source --download-only \
        "ffmpeg=$FFMPEG_DEBIAN_VERSION" >&2) \
      && [ -f "$apt/download/$TARBALL" ]; then
      mv "$apt/download/$TARBALL" "$dest"
    else
      echo "build.sh: apt-get source ffmpeg=$FFMPEG_DEBIAN_VERSION did not work; trying the pool" >&2
    fi
  fi
  # The same file from the Debian pool (also where it stays after the suite moves on).
  if [ ! -f "$dest" ]; then
    for url in "https://deb.debian.org/debian/pool/main/f/ffmpeg/$TARBALL" \
      "https://snapshot.debian.org/archive/debian/20260101T000000Z/pool/main/f/ffmpeg/$TARBALL"; do
      if curl -fsSL --retry 3 -o "$dest.tmp" "$url"; then mv "$dest.tmp" "$dest"; break; fi
      rm -f "$dest.tmp"
    done
  fi
  if [ ! -f "$dest" ]; then
    echo "build.sh: could not download $TARBALL (Debian's source package of FFmpeg $FFMPEG_VERSION)." >&2
    echo "  Put a copy next to this machine and run: AIOM4B_FFMPEG_TARBALL=/path/$TARBALL $0" >&2
    exit 1
  fi
  if ! check_sha "$dest"; then
    echo "build.sh: $TARBALL does not match the pinned SHA-256 $FFMPEG_SHA256" >&2
    echo "  (got $(sha256sum "$dest" | cut -d' ' -f1)); refusing to build it. Removed." >&2
    rm -f "$dest"
    exit 1
  fi
}

fetch_source
src="$work/ffmpeg-$FFMPEG_VERSION-$profile"
rm -rf "$src"
mkdir -p "$src"
tar -xf "$work/$TARBALL" -C "$src" --strip-components=1
rm -rf "$prefix"
jobs=$(nproc 2>/dev/null || echo 2)
echo "build.sh: configuring FFmpeg $FFMPEG_VERSION ($profile) into $prefix" >&2
(cd "$src" && ./configure "${flags[@]}" >"$work/configure-$profile.log" 2>&1) || {
  echo "build.sh: configure failed; the end of $work/configure-$profile.log and ffbuild/config.log:" >&2
  tail -20 "$work/configure-$profile.log" >&2
  tail -20 "$src/ffbuild/config.log" >&2
  exit 1
}
echo "build.sh: compiling with $jobs jobs" >&2
make -C "$src" -j"$jobs" >"$work/make-$profile.log" 2>&1 || {
  echo "build.sh: make failed; the end of $work/make-$profile.log:" >&2
  tail -30 "$work/make-$profile.log" >&2
  exit 1
}
make -C "$src" install >>"$work/make-$profile.log" 2>&1
# What build.rs reads (the version, and the profile from the flags) and what makes a second run
# a no-op.
printf '%s\n' "$recipe" >"$prefix/aiom4b-recipe"
rm -rf "$src"
echo "build.sh: done" >&2
echo "FFMPEG_DIR=$prefix"
