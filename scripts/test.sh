#!/usr/bin/env bash
# Runs bunker's whole test suite: unit tests beside the code, integration tests that drive the real binary
# against real repositories, and the S3 tests against a moto server on loopback (installed into .venv).
# Ends with one summary line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-moto.sh >/dev/null
export BUNKER_MOTO_SERVER="$PWD/.venv/bin/moto_server"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
