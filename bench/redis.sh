#!/usr/bin/env bash
# Redis benchmark: bunker's RDB fetch (replication protocol, into a fresh repository) vs `redis-cli --rdb`
# (the same fetch, to a plain file), then bunker's restore into an empty server.
#
#   bench/redis.sh                       # ~1M keys, ~500 MB in memory
#   BENCH_KEYS=100000 bench/redis.sh     # a quick small run
#
# A throwaway redis-server on loopback, filled with a mix like a web app's cache and queues: strings
# (session blobs, rendered fragments), hashes, lists, sorted sets, a third of them with TTLs. Its
# repl-diskless-sync-delay is 0: by default a server waits 5 s for more replicas before it streams a
# snapshot, which would dominate both tools' times. It reports, it does not fail: exit 0 when a goal is
# missed, non-zero only when a tool errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
KEYS=${BENCH_KEYS:-1000000}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

WORK=$(mktemp -d /tmp/bunker-redis-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
start_server() {  # start_server NAME: sets PORT (not in a subshell: PIDS must keep the server's PID)
    local port dir=$WORK/$1
    port=$(free_port)
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize no \
        --repl-diskless-sync-delay 0 \
        --logfile "$dir/log" >/dev/null 2>&1 &
    PIDS+=($!)
    until redis-cli -p "$port" PING 2>/dev/null | grep -q PONG; do sleep 0.05; done
    PORT=$port
}
start_server source
SRC=$PORT

log "generating $KEYS keys"
python3 - "$KEYS" <<'EOF' | redis-cli -p "$SRC" --pipe >/dev/null
import os, random, sys
n = int(sys.argv[1]); out = sys.stdout.buffer; random.seed(7)
words = [b"user", b"cart", b"item", b"price", b"view", b"page", b"token", b"flag", b"note", b"queue"]
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
buf = []
for i in range(n):
    k = i % 10
    if k < 6:     # session blobs and fragments: half random, half text
        v = os.urandom(200) + b" ".join(random.choice(words) for _ in range(40))
        c = cmd(b"SET", b"s:%d" % i, v) if i % 3 else cmd(b"SET", b"s:%d" % i, v, b"EX", b"86400")
    elif k < 8:
        c = cmd(b"HSET", b"h:%d" % i, b"name", b"user-%d" % i, b"email", b"u%d@example.com" % i, b"visits", b"%d" % (i % 977), b"bio", os.urandom(120))
    elif k == 8:
        c = cmd(b"RPUSH", b"l:%d" % (i % 5000), b"job-%d-" % i + os.urandom(60))
    else:
        c = cmd(b"ZADD", b"z:%d" % (i % 2000), b"%d" % random.randint(0, 10**6), b"m-%d" % i)
    buf.append(c)
    if len(buf) >= 10000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
EOF
USED=$(redis-cli -p "$SRC" INFO memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r')
DBSIZE=$(redis-cli -p "$SRC" DBSIZE)
log "filled: $DBSIZE keys, used_memory $(( USED / 1000000 )) MB"

export BUNKER_PASSWORD=bench BUNKER_CACHE_DIR=$WORK/cache BUNKER_CONFIG=$WORK/bunker.toml
cat > "$BUNKER_CONFIG" <<EOF
[repository]
url = "$WORK/repo"

[targets.cache]
type = "redis"
url = "redis://127.0.0.1:$SRC"
EOF
# Alternating, twice each, and the best of each counted: the server forks for every snapshot, the page
# cache warms up, and on two cores the machine's own noise is of the order of the differences measured.
# Each fresh run gets a new, empty repository.
fresh_repo() { rm -rf "$WORK/repo" "$WORK/cache"; "$BUNKER" -q init; }
measure cli1 redis-cli -p "$SRC" --rdb "$WORK/cli.rdb"
fresh_repo
measure bunker1 "$BUNKER" backup cache
measure cli2 redis-cli -p "$SRC" --rdb "$WORK/cli.rdb"
fresh_repo
measure bunker2 "$BUNKER" backup cache
measure again "$BUNKER" backup cache
RDB=$(stat -c %s "$WORK/cli.rdb")
STORED=$(du -sb "$WORK/repo/data" | cut -f1)
start_server target
DST=$PORT
measure restore "$BUNKER" restore cache --into "redis://127.0.0.1:$DST"
RESTORED=$(redis-cli -p "$DST" DBSIZE)

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }
CLI=$(best "${SECS[cli1]}" "${SECS[cli2]}")
FRESH=$(best "${SECS[bunker1]}" "${SECS[bunker2]}")
echo
echo "bunker Redis benchmark: $DBSIZE keys, used_memory $(( USED / 1000000 )) MB, RDB $(( RDB / 1000000 )) MB, $(nproc) cores, $(redis-server --version | cut -d' ' -f3)"
printf '%-48s %10s   %s\n' "measurement" "seconds" "note"
printf '%-48s %10s   %s\n' "redis-cli --rdb (best of 2)" "$CLI" "${SECS[cli1]}, ${SECS[cli2]}"
printf '%-48s %10s   %s\n' "bunker backup, fresh repository (best of 2)" "$FRESH" "${SECS[bunker1]}, ${SECS[bunker2]}; repository data $(( STORED / 1000000 )) MB"
printf '%-48s %10s   %s\n' "  fetch bunker / redis-cli, fresh repository" "$(ratio "$FRESH" "$CLI")" "$(verdict "$FRESH" "$CLI" 1.1) <= 1.10"
printf '%-48s %10s   %s\n' "bunker backup, again (the daily case: dedup)" "${SECS[again]}" ""
printf '%-48s %10s   %s\n' "  fetch bunker / redis-cli, again" "$(ratio "${SECS[again]}" "$CLI")" "$(verdict "${SECS[again]}" "$CLI" 1.1) <= 1.10"
printf '%-48s %10s   %s\n' "bunker restore --into (empty server)" "${SECS[restore]}" "$RESTORED keys, $(awk -v n="$RESTORED" -v s="${SECS[restore]}" 'BEGIN { printf "%.0f", n / s }') keys/s, checked"
log "done"
