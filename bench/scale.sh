#!/usr/bin/env bash
# Metadata at scale: how long `status`, `points`, `snapshots` and the planning of `restore --point latest`
# take, and how many requests they make, as the history grows, on a fresh host (cache off) and a warm one,
# against moto's S3 behind a proxy that adds a fixed latency to every request (a distant endpoint).
#
#   bench/scale.sh                              # 200 / 2,000 / 20,000 run records, 20 ms a request
#   BENCH_SIZES="200 2000" BENCH_LATENCY_MS=5 bench/scale.sh
#   BENCH_PREBUILT=1 bench/scale.sh             # the release binaries in target/ as they are
#   BENCH_PHASES=folded bench/scale.sh          # only after prune folded the catalog (no loose phase)
#   BENCH_KEEP=1 bench/scale.sh                 # keep the work directory and its request log
#
# Each size is measured twice: as written (loose records, as older versions left them), then after
# `bunker prune` folded the catalog into segments. Snapshots are a quarter of the records, across 10
# targets. Goals (issue "Metadata at scale"): folded, each command ≤ 3 s cold and ≤ 0.3 s warm, with
# requests in the tens; a backup's cost at the largest size within 1.5× of its cost at 10 snapshots.
# It reports, it does not fail: exit 0 when a goal is missed, non-zero only when a command errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
SIZES=${BENCH_SIZES:-200 2000 20000}
LATENCY=${BENCH_LATENCY_MS:-20}

"$ROOT/scripts/ensure-moto.sh" >/dev/null
# BENCH_PREBUILT=1 measures the release binaries already in target/ (e.g. while the tree is being edited).
[ -n "${BENCH_PREBUILT:-}" ] ||
    (cd "$ROOT" && cargo build --release -q -p bunker && cargo build --release -q -p bunker-engine --example catalog_fill)
BUNKER=$ROOT/target/release/bunker
FILL=$ROOT/target/release/examples/catalog_fill

WORK=$(mktemp -d /tmp/bunker-scale-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # BENCH_KEEP=1 keeps the work directory (the proxy's request log: requests.json.log).
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
MOTO=$(free_port)
"$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
PROXY=$(free_port)
python3 "$HERE/latency-proxy.py" "$PROXY" "$MOTO" "$LATENCY" "$WORK/requests.json" 2>"$WORK/proxy.log" &
PIDS+=($!)
for p in "$MOTO" "$PROXY"; do
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $p))" 2>/dev/null; do sleep 0.1; done
done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1
python3 - "$MOTO" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
c.request("PUT", "/scale")
assert c.getresponse().status == 200
EOF

REPO="s3://scale/repo?endpoint=http://127.0.0.1:$PROXY&region=us-east-1"
# A password file, as a deployed host keeps it (the daemon's unit, a cron job): a warm host then skips the
# key derivation through its session-key cache, as it does in production.
printf 'bench\n' >"$WORK/password"
chmod 600 "$WORK/password"
export BUNKER_PASSWORD_FILE=$WORK/password BUNKER_CONFIG=$WORK/bunker.toml BUNKER_KDF_MEMORY_KIB=65536
{
    echo "[repository]"
    echo "url = \"$REPO\""
    for t in $(seq 0 9); do
        printf '\n[targets.app%d]\ntype = "command"\nbackup = "printf %%s app%d-data"\nrestore = "cat >/dev/null"\n' "$t" "$t"
    done
} >"$BUNKER_CONFIG"

ms() { awk -v a="$1" 'BEGIN { printf "%.1f", a * 1000 }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
requests() { python3 -c "import json; print(json.load(open('$WORK/requests.json'))['total'])"; }

# one LABEL CACHE CMD...: seconds and requests of one run.
# and bunker's own CPU time (user + system), to tell its work from the endpoint's.
declare -A REQS CPU
one() {
    local label=$1 cache=$2; shift 2
    local before; before=$(requests)
    BUNKER_CACHE_DIR=$cache measure "$label" /usr/bin/time -q -f "%U %S" -o "$WORK/cpu.$label" "$BUNKER" "$@"
    REQS[$label]=$(( $(requests) - before ))
    CPU[$label]=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/cpu.$label")
}

BUNKER_CACHE_DIR=off "$BUNKER" -q init
BUNKER_CACHE_DIR=off "$BUNKER" -q backup --all >/dev/null
# A backup's fixed cost with 10 snapshots (warm cache, as on the backup host): median of three.
backup_cost() {
    local label=$1 t=()
    BUNKER_CACHE_DIR=$WORK/cache-backup "$BUNKER" -q backup app0 >/dev/null
    for i in 1 2 3; do one "$label$i" "$WORK/cache-backup" -q backup app0; t+=("${SECS[$label$i]}"); done
    printf '%s\n' "${t[@]}" | sort -n | sed -n 2p
}
BACKUP_SMALL=$(backup_cost backup-small-)

COMMANDS=(status points snapshots plan)
run_all() {  # run_all SUFFIX CACHE
    one "status$1" "$2" status
    one "points$1" "$2" points
    one "snapshots$1" "$2" snapshots
    one "plan$1" "$2" restore --point latest --dry-run
}

have_runs=11
declare -a ROWS
for size in $SIZES; do
    add=$(( size - have_runs ))
    if [ "$add" -gt 0 ]; then
        log "filling to $size run records"
        BUNKER_PASSWORD=bench "$FILL" "$REPO" "$add" $(( add / 4 )) 2>"$WORK/fill.log" || { tail "$WORK/fill.log" >&2; exit 1; }
        have_runs=$size
    fi
    for phase in ${BENCH_PHASES:-loose folded}; do
        if [ "$phase" = folded ]; then
            BUNKER_CACHE_DIR=off measure "prune-$size" "$BUNKER" prune
            log "$(grep catalog "$WORK/out.prune-$size" || true)"
        fi
        rm -rf "$WORK/cache"
        run_all "-$size-$phase-cold" off
        run_all "-$size-$phase-warm0" "$WORK/cache"   # fills the cache
        run_all "-$size-$phase-warm" "$WORK/cache"
        row="$size $phase"
        for c in "${COMMANDS[@]}"; do
            row+=" ${SECS[$c-$size-$phase-cold]} ${REQS[$c-$size-$phase-cold]} ${SECS[$c-$size-$phase-warm]} ${REQS[$c-$size-$phase-warm]}"
        done
        ROWS+=("$row")
    done
done
BACKUP_LARGE=$(backup_cost backup-large-)

# The daemon's refresh at the largest size: its own figure (bunker_daemon_refresh_cpu_seconds), read
# over a few one-second refreshes with nothing new, and at the refresh after another host's backup.
metric() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
except Exception:
    sys.exit(0)
for line in text.splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(line.split()[1])
PY
}
LISTEN=$(free_port)
{ cat "$BUNKER_CONFIG"; printf '\n[schedules]\nstatus = "0 0 4 1 1 *"\n'; } >"$WORK/daemon.toml"
BUNKER_CACHE_DIR=$WORK/cache-daemon "$BUNKER" --config "$WORK/daemon.toml" daemon --listen "127.0.0.1:$LISTEN" \
    --refresh 1s >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
until [ -n "$(metric "$LISTEN" bunker_catalog_records)" ]; do
    kill -0 "$DAEMON" 2>/dev/null || { tail "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.5
done
DAEMON_RECORDS=$(metric "$LISTEN" bunker_catalog_records)
steady=()
for _ in 1 2 3 4 5; do sleep 1.2; steady+=("$(metric "$LISTEN" bunker_daemon_refresh_cpu_seconds)"); done
DAEMON_STEADY=$(printf '%s\n' "${steady[@]}" | sort -n | sed -n 3p)
BUNKER_CACHE_DIR=$WORK/cache-backup "$BUNKER" -q backup app1 >/dev/null
want=$(( ${DAEMON_RECORDS%.*} + 1 ))
until [ "$(metric "$LISTEN" bunker_catalog_records)" = "$want" ]; do sleep 0.2; done
DAEMON_CHANGED=$(metric "$LISTEN" bunker_daemon_refresh_cpu_seconds)
kill "$DAEMON" 2>/dev/null || true

echo
echo "bunker metadata-at-scale benchmark: moto S3 behind a ${LATENCY} ms-per-request proxy, $(nproc) cores"
echo "seconds (requests) per command; cold = BUNKER_CACHE_DIR=off, warm = second run with a cache"
printf '%-8s %-7s' records catalog
for c in "${COMMANDS[@]}"; do printf ' %-24s' "$c cold / warm"; done
echo
for row in "${ROWS[@]}"; do
    read -r -a f <<<"$row"
    printf '%-8s %-7s' "${f[0]}" "${f[1]}"
    i=2
    for _ in "${COMMANDS[@]}"; do
        printf ' %-24s' "${f[$i]} (${f[$((i + 1))]}) / ${f[$((i + 2))]} (${f[$((i + 3))]})"
        i=$((i + 4))
    done
    echo
done
echo
last=$(echo "$SIZES" | awk '{print $NF}')
echo "goals at $last records, folded:"
for c in "${COMMANDS[@]}"; do
    cold=${SECS[$c-$last-folded-cold]} warm=${SECS[$c-$last-folded-warm]}
    echo "  $c: cold $cold s ($(verdict "$cold" 3 1)), warm $warm s ($(verdict "$warm" 0.3 1)), requests cold ${REQS[$c-$last-folded-cold]}, bunker's CPU ${CPU[$c-$last-folded-cold]} s cold / ${CPU[$c-$last-folded-warm]} s warm"
done
echo "  daemon refresh at $DAEMON_RECORDS records: $(ms "$DAEMON_STEADY") ms CPU with nothing new (median of 5), $(ms "$DAEMON_CHANGED") ms at the refresh that read a new run ($(verdict "$(max "$DAEMON_STEADY" "$DAEMON_CHANGED")" 0.05 1))"
# What the endpoint itself spends listing the snapshots (moto lists about 3,000 keys a second).
LIST_SECS=$(python3 - "$MOTO" <<'PY'
import http.client, re, sys, time
t, token, n = time.time(), None, 0
while True:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
    q = "/scale?list-type=2&prefix=repo/snapshots/" + ("&continuation-token=" + token if token else "")
    c.request("GET", q)
    body = c.getresponse().read().decode()
    n += body.count("<Key>")
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
    if not m:
        break
    import urllib.parse
    token = urllib.parse.quote(m.group(1), safe="")
print("%.2f s for %d keys" % (time.time() - t, n))
PY
)
echo "  (the endpoint alone, without the proxy, lists snapshots/ in $LIST_SECS: every command that lists the snapshots pays it)"
echo "  backup fixed cost: $BACKUP_SMALL s at 10 snapshots, $BACKUP_LARGE s at $last records: $(ratio "$BACKUP_LARGE" "$BACKUP_SMALL")× ($(verdict "$BACKUP_LARGE" "$BACKUP_SMALL" 1.5))"
