# Helpers shared by the benchmark scripts (sourced). They define WORK before measuring; a script may
# define `settle` (run before every measurement, e.g. a CHECKPOINT) — by default it syncs.

T_START=$(date +%s)
log() { echo "[$(( $(date +%s) - T_START ))s] $*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -F settle >/dev/null || settle() { sync; }

# measure LABEL CMD...: wall seconds into SECS[LABEL], output in $WORK/out.LABEL; any failure stops the run.
declare -A SECS
measure() {
    local label=$1; shift
    settle
    local t0; t0=$(date +%s.%N)
    if ! "$@" > "$WORK/out.$label" 2>&1; then
        echo "FAILED: $label: $*" >&2; tail -n 20 "$WORK/out.$label" >&2; exit 1
    fi
    SECS[$label]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    log "$label: ${SECS[$label]} s"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
# verdict A B GOAL: PASS when A / B <= GOAL, on the exact values.
verdict() { awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN { print (b > 0 && a / b <= g) ? "PASS" : "MISS" }'; }
