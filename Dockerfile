# aiom4b as a container: `aiom4b serve` (REST API, web page, job queue) on a static binary that
# carries its own minimal FFmpeg (vendor/ffmpeg/build.sh), so the image needs no FFmpeg.
#
#   docker build -t aiom4b .
#   docker run -d -p 8000:8000 -v aiom4b-data:/data -v ~/Audiobooks:/source:ro aiom4b
#
# The API token is generated on first start into /data/api_token and printed once in the log
# (`docker logs`), or set API_TOKEN. docker-compose.yml has the same with a PostgreSQL +
# worker layout. scripts/docker-check.sh runs these steps in Debian roots (CI has no Docker).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# The git revision for `aiom4b --version` (.git is not in the build context):
#   docker build --build-arg AIOM4B_GIT_REV=$(git rev-parse --short=12 HEAD) .
ARG AIOM4B_GIT_REV=unknown
# bindgen needs libclang; FFmpeg's configure needs make, nasm (x86 assembly) and xz to unpack;
# apt's deb-src fetch needs the Debian archive keyring (in the image) and ca-certificates.
# Not pinned to Debian versions (DL3008): bookworm's point and security releases replace them,
# so a pin breaks the build; what decides the output is pinned instead (FFmpeg's source by
# SHA-256 in vendor/ffmpeg/build.sh, the Rust crates by Cargo.lock, Rust by RUST_VERSION).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      pkg-config clang libclang-dev make nasm xz-utils curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The minimal FFmpeg (checked against its pinned SHA-256), then aiom4b linked against it.
RUN vendor/ffmpeg/build.sh \
 && FFMPEG_DIR="$(vendor/ffmpeg/build.sh --print-prefix)" \
      cargo build --release --locked --features static-ffmpeg --bin aiom4b \
 && install -D -m 0755 target/release/aiom4b /out/aiom4b \
 && /out/aiom4b --version

FROM debian:bookworm-slim AS run
# A fixed non-root user; /data (database, outputs, backups, logs) belongs to it, /source is
# only read (mount it read-only).
RUN groupadd --gid 10001 aiom4b \
 && useradd --no-log-init --uid 10001 --gid aiom4b --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin aiom4b \
 && mkdir -p /data /source \
 && chown aiom4b:aiom4b /data
COPY --from=build /out/aiom4b /usr/local/bin/aiom4b
ENV DATA_DIR=/data \
    SOURCE_DIR=/source \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    LOG_FORMAT=json
VOLUME ["/data", "/source"]
EXPOSE 8000
# Numeric, so runtimes that check runAsNonRoot without reading /etc/passwd see it is not root.
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["aiom4b", "health"]
# serve stops cleanly on SIGTERM (docker stop): running jobs end as cancelled, nothing half
# written is left. 20 s of grace inside; give docker at least that (`--stop-timeout 30`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["aiom4b"]
CMD ["serve", "--generate-token"]
