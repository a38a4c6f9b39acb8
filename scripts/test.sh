#!/usr/bin/env bash
# Runs bunker's whole test suite: unit tests beside the code, integration tests that drive the real binary
# against real repositories, and the S3 tests against a moto server on loopback (installed into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-moto.sh >/dev/null
export BUNKER_MOTO_SERVER="$PWD/.venv/bin/moto_server"
exec cargo test --workspace --locked "$@"
