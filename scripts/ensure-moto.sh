#!/usr/bin/env bash
# Idempotently provides moto's S3-compatible test server in <workspace>/.venv for crates/cli/tests/s3.rs.
# Quiet on success; prints the moto_server path at the end. Safe to run repeatedly (a no-op once installed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MOTO="$VENV/bin/moto_server"
LOG="$(mktemp -t ensure-moto.XXXXXX.log)"
trap 'rm -f "$LOG"' EXIT

fail() {
    echo "ensure-moto: $*" >&2
    cat "$LOG" >&2 || true
    exit 1
}

if [[ ! -x "$MOTO" ]]; then
    PY="${PYTHON:-python3}"
    command -v "$PY" >/dev/null 2>&1 || fail "python3 not found"
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! "$PY" -m venv "$VENV" >"$LOG" 2>&1; then
            # Debian/Ubuntu ship venv (and ensurepip) separately.
            rm -rf "$VENV"
            command -v apt-get >/dev/null 2>&1 || fail "python3 -m venv failed and apt-get is unavailable"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >"$LOG" 2>&1 || fail "apt-get update failed"
            apt-get install -y -qq python3-venv >"$LOG" 2>&1 || fail "apt-get install python3-venv failed"
            "$PY" -m venv "$VENV" >"$LOG" 2>&1 || fail "python3 -m venv still fails after installing python3-venv"
        fi
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]' >"$LOG" 2>&1 \
        || fail "pip install 'moto[server]' failed"
    [[ -x "$MOTO" ]] || fail "moto installed but $MOTO is missing"
fi

echo "$MOTO"
