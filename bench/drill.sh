#!/usr/bin/env bash
# Drill benchmark: `bunker drill` of a three-target stack (PostgreSQL, Redis, an S3 bucket) restored
# into scratch servers and a scratch directory on this host and verified, against the stack's 2-minute
# RTO objective; then, as the peer reference, the plain manual restore a runbook would do for the same
# data (pg_restore -j2 of a pg_dump -Fc, redis-server loading an RDB, `rclone copy` or `aws s3 sync` of
# the bucket), the three run in parallel as the drill runs its targets.
#
#   bench/drill.sh                                   # pgbench scale 70 (~1 GiB), ~100 MiB Redis, ~1 GiB S3
#   PG_SCALE=5 REDIS_MIB=10 S3_MIB=50 bench/drill.sh  # a quick small run
#   BENCH_KEEP=1 bench/drill.sh                      # keep the scratch directory (repository, report)
#
# Servers are throwaway, on loopback, free ports: a PostgreSQL 15 cluster (as the postgres user), a
# redis-server, moto's S3 server (in .venv, from scripts/ensure-moto.sh); all stopped and removed on
# exit. S3 objects are S3_OBJECT_MIB (default 5) MiB each, half random bytes, half text. Times are wall
# clock. It reports, it does not fail: exit 0 when the objective is missed, non-zero only when a tool
# errors before the report.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
PG_SCALE=${PG_SCALE:-70}
REDIS_MIB=${REDIS_MIB:-100}
S3_MIB=${S3_MIB:-1024}
S3_OBJECT_MIB=${S3_OBJECT_MIB:-5}
PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=127.0.0.1

# 1. Tools: only what is missing (Debian packages); moto in .venv; build bunker.
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
"$ROOT/scripts/ensure-moto.sh" >/dev/null
PY=$ROOT/.venv/bin/python
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

# Scratch space; everything the script started is stopped and all of it removed on exit. The drill's
# own scratch servers and directories go under $WORK/tmp too (TMPDIR), so nothing can be left elsewhere.
WORK=$(mktemp -d /tmp/bunker-drill-bench.XXXXXX) && chmod 755 "$WORK"
mkdir -m 1777 "$WORK/tmp"
PIDS=()
cleanup() {
    local p d
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    # The source cluster, and any drill cluster an interrupted drill left behind.
    while IFS= read -r d; do
        runuser -u postgres -- pg_ctl -D "$(dirname "$d")" -m immediate stop >/dev/null 2>&1 || true
    done < <(find "$WORK" -name postmaster.pid 2>/dev/null)
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
LOAD0=$(cut -d' ' -f1 /proc/loadavg)   # other work on the machine skews wall-clock times
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# 2. The stack's servers (each started here, in this shell, never in a command substitution).
# PostgreSQL: a cluster as the postgres user in a directory it owns.
PG_PORT=$(free_port)
mkdir "$WORK/pg" && chown postgres:postgres "$WORK/pg"
runuser -u postgres -- initdb -D "$WORK/pg/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/pg/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/pg'
fsync = off
synchronous_commit = off
shared_buffers = '256MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
autovacuum = off
EOF
runuser -u postgres -- pg_ctl -D "$WORK/pg/data" -l "$WORK/pg/log" -w start >/dev/null

# Redis: no saving; repl-diskless-sync-delay 0, or every snapshot bunker fetches waits 5 s for replicas.
REDIS_PORT=$(free_port)
mkdir "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis" \
    --daemonize no --repl-diskless-sync-delay 0 --logfile "$WORK/redis/log" >/dev/null 2>&1 &
PIDS+=($!)

# moto's S3 server.
S3_PORT=$(free_port)
"$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
ENDPOINT=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
until redis-cli -p "$REDIS_PORT" PING 2>/dev/null | grep -q PONG; do sleep 0.05; done
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $S3_PORT))" 2>/dev/null; do sleep 0.1; done

# 3. Data, the three generated in parallel.
log "generating: pgbench scale $PG_SCALE, ~$REDIS_MIB MiB of Redis values, ~$S3_MIB MiB of S3 objects"
createdb -p "$PG_PORT" bench
pgbench -p "$PG_PORT" -i -q -s "$PG_SCALE" bench >"$WORK/pgbench.log" 2>&1 & PGB=$!
# Redis: 1 KiB values (half random, half text), 9 in 10 strings (a third with a TTL), 1 in 10 hashes.
python3 - "$REDIS_MIB" <<'EOF' 2>"$WORK/redis-gen.log" | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/redis-pipe.log" 2>&1 & RGEN=$!
import os, random, sys
n = int(sys.argv[1]) * 1024; out = sys.stdout.buffer; random.seed(11)
words = [b"user", b"cart", b"item", b"price", b"view", b"page", b"token", b"flag", b"note", b"queue"]
def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
buf = []
for i in range(n):
    text = b" ".join(random.choice(words) for _ in range(100))[:512]
    if i % 10 == 9:
        c = cmd(b"HSET", b"h:%d" % i, b"name", b"user-%d" % i, b"visits", b"%d" % (i % 977), b"blob", os.urandom(480), b"bio", text)
    elif i % 3 == 0:
        c = cmd(b"SET", b"s:%d" % i, os.urandom(512) + text, b"EX", b"86400")
    else:
        c = cmd(b"SET", b"s:%d" % i, os.urandom(512) + text)
    buf.append(c)
    if len(buf) >= 5000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
EOF
"$PY" - "$ENDPOINT" "$S3_MIB" "$S3_OBJECT_MIB" >"$WORK/s3-gen.log" 2>&1 <<'EOF' & SGEN=$!
import boto3, os, random, sys
from concurrent.futures import ThreadPoolExecutor
endpoint, mib, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket="media")
random.seed(3)
size = each << 20
n = max(1, mib // each)
text = b" ".join(random.choice([b"lorem", b"ipsum", b"upload", b"avatar", b"invoice", b"report"]) for _ in range(400000))
def put(i):
    half = size // 2
    body = os.urandom(half) + (text * (1 + (size - half) // len(text)))[: size - half]
    s3.put_object(Bucket="media", Key="uploads/%02d/f-%05d.bin" % (i % 16, i), Body=body, ContentType="application/octet-stream")
with ThreadPoolExecutor(8) as ex:
    list(ex.map(put, range(n)))
EOF
wait $PGB || { echo "FAILED: pgbench -i" >&2; tail "$WORK/pgbench.log" >&2; exit 1; }
wait $RGEN || { echo "FAILED: filling Redis" >&2; tail "$WORK/redis-gen.log" "$WORK/redis-pipe.log" >&2; exit 1; }
wait $SGEN || { echo "FAILED: filling the bucket" >&2; tail "$WORK/s3-gen.log" >&2; exit 1; }
psql -X -q -p "$PG_PORT" -d bench -c CHECKPOINT
PG_BYTES=$(psql -X -Atq -p "$PG_PORT" -d bench -c "SELECT pg_database_size('bench')")
REDIS_KEYS=$(redis-cli -p "$REDIS_PORT" DBSIZE)
REDIS_USED=$(redis-cli -p "$REDIS_PORT" INFO memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r')
read -r S3_OBJS S3_BYTES < <("$PY" - "$ENDPOINT" <<'EOF'
import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
n = b = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="media"):
    for o in page.get("Contents", []):
        n += 1; b += o["Size"]
print(n, b)
EOF
)
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
log "data: PostgreSQL $(mib "$PG_BYTES"), Redis $REDIS_KEYS keys ($(mib "$REDIS_USED") used_memory), S3 $S3_OBJS objects ($(mib "$S3_BYTES"))"

# 4. bunker: the stack file, init, one backup of the whole stack (a recovery point).
export BUNKER_PASSWORD=bench BUNKER_CACHE_DIR=$WORK/bunker-cache BUNKER_CONFIG=$WORK/bunker.toml
cat > "$BUNKER_CONFIG" <<EOF
[repository]
url = "$WORK/repo"

[targets.db]
type = "postgres"
url = "postgresql://postgres@127.0.0.1:$PG_PORT/bench"

[targets.cache]
type = "redis"
url = "redis://127.0.0.1:$REDIS_PORT"

[targets.media]
type = "s3"
bucket = "media"
endpoint = "$ENDPOINT"
region = "us-east-1"

[drill]
rto_objective = "2m"
EOF
"$BUNKER" -q init >/dev/null
measure backup "$BUNKER" backup --all
REPO_BYTES=$(du -sb "$WORK/repo" | cut -f1)

# 5. The drill. Its exit status is 1 when it fails (a check, or the objective missed): reported below.
settle() { psql -X -q -p "$PG_PORT" -d postgres -c CHECKPOINT; sync; }
settle
log "drill"
T0=$(now)
DRILL_RC=0
TMPDIR=$WORK/tmp "$BUNKER" --json drill --report "$WORK/drill.html" >"$WORK/drill.json" 2>"$WORK/drill.err" || DRILL_RC=$?
DRILL_WALL=$(since "$T0")
log "drill: $DRILL_WALL s (exit $DRILL_RC)"
if ! jq -e .rto_seconds "$WORK/drill.json" >/dev/null 2>&1; then
    echo "FAILED: bunker drill gave no record (exit $DRILL_RC)" >&2; cat "$WORK/drill.err" >&2; exit 1
fi
[ -s "$WORK/drill.html" ] && REPORT_SIZE=$(stat -c %s "$WORK/drill.html") || REPORT_SIZE=0

# 6. The peer reference: the manual restore of the same data, the three in parallel. Its inputs are made
# first, untimed: a pg_dump -Fc file, the RDB (redis-cli --rdb), and an empty database to restore into.
pg_dump -Fc -p "$PG_PORT" -f "$WORK/bench.Fc" bench
redis-cli -p "$REDIS_PORT" --rdb "$WORK/dump.rdb" >"$WORK/out.rdb" 2>&1
createdb -p "$PG_PORT" manual
S3_TOOL=
if command -v rclone >/dev/null; then
    S3_TOOL="rclone copy --transfers 8"
    export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$ENDPOINT \
        RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=test RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=test RCLONE_CONFIG_MOTO_REGION=us-east-1
elif command -v aws >/dev/null; then
    S3_TOOL="aws s3 sync"
fi
settle
log "manual restore (pg_restore -j2, redis-server loading the RDB${S3_TOOL:+, $S3_TOOL})"
T0=$(now)
( t=$(now); pg_restore -j2 -p "$PG_PORT" -d manual "$WORK/bench.Fc" && since "$t" >"$WORK/secs.pg" ) >"$WORK/out.manual-pg" 2>&1 & MPG=$!
MS3=
if [ -n "$S3_TOOL" ]; then
    (
        t=$(now)
        # rclone 1.60's S3 backend fails on AWS_CA_BUNDLE ("unsupported transport"); loopback needs no CA.
        case $S3_TOOL in
            rclone*) env -u AWS_CA_BUNDLE rclone copy moto:media "$WORK/manual-s3" --transfers 8 --checkers 8 ;;
            aws*) aws --endpoint-url "$ENDPOINT" s3 sync --only-show-errors s3://media "$WORK/manual-s3" ;;
        esac && since "$t" >"$WORK/secs.s3"
    ) >"$WORK/out.manual-s3" 2>&1 & MS3=$!
fi
# Redis here, in this shell: the server must be one of PIDS. The runbook's copy of the RDB into the data
# directory is timed; the server answers PING only once the RDB is loaded.
t=$(now)
MANUAL_REDIS_PORT=$(free_port)
mkdir "$WORK/manual-redis" && cp "$WORK/dump.rdb" "$WORK/manual-redis/dump.rdb"
redis-server --port "$MANUAL_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/manual-redis" \
    --dbfilename dump.rdb --daemonize no --logfile "$WORK/manual-redis/log" >/dev/null 2>&1 &
PIDS+=($!)
until redis-cli -p "$MANUAL_REDIS_PORT" PING 2>/dev/null | grep -q PONG; do sleep 0.02; done
since "$t" >"$WORK/secs.redis"
wait $MPG || { echo "FAILED: pg_restore" >&2; tail "$WORK/out.manual-pg" >&2; exit 1; }
if [ -n "$MS3" ]; then
    wait "$MS3" || { echo "FAILED: $S3_TOOL" >&2; tail "$WORK/out.manual-s3" >&2; exit 1; }
fi
MANUAL_WALL=$(since "$T0")
M_PG=$(cat "$WORK/secs.pg")
M_REDIS=$(cat "$WORK/secs.redis")
M_S3=$(cat "$WORK/secs.s3" 2>/dev/null || echo "")
M_PG_ROWS=$(psql -X -Atq -p "$PG_PORT" -d manual -c "SELECT count(*) FROM pgbench_accounts")
M_REDIS_KEYS=$(redis-cli -p "$MANUAL_REDIS_PORT" DBSIZE)
M_S3_FILES=$(find "$WORK/manual-s3" -type f 2>/dev/null | wc -l)
log "manual restore: $MANUAL_WALL s"

# 7. Report.
J=$WORK/drill.json
RTO=$(jq -r '.rto_seconds' "$J")
row() { printf '%-8s %-18s %8s %10s %9s %8s %8s %10s %9s  %s\n' "$@"; }
echo
echo "bunker drill benchmark: $(nproc) cores, PostgreSQL $(psql -X -Atq -p "$PG_PORT" -d bench -c 'SHOW server_version' | cut -d' ' -f1), Redis $(redis-server --version | cut -d' ' -f3 | cut -d= -f2), moto $("$PY" -c 'import moto; print(moto.__version__)'); load average at start $LOAD0, at end $(cut -d' ' -f1 /proc/loadavg)"
echo "stack: PostgreSQL pgbench scale $PG_SCALE, database $(mib "$PG_BYTES"); Redis $REDIS_KEYS keys, used_memory $(mib "$REDIS_USED"), RDB $(mib "$(stat -c %s "$WORK/dump.rdb")"); S3 $S3_OBJS objects, $(mib "$S3_BYTES")"
echo "backup --all: ${SECS[backup]} s, repository $(mib "$REPO_BYTES")"
echo
echo "bunker --json drill (exit $DRILL_RC): $(jq -r 'if .passed then "PASSED" else "FAILED" end' "$J"), wall $DRILL_WALL s (teardown and report included), report $REPORT_SIZE bytes"
row target kind "RTO s" "provision" "restore" "verify" "other" "restored" "MiB/s" "checks"
row ------ ------------------ -------- ---------- --------- -------- -------- ---------- ---------  ------
jq -r '.targets[] | [.target, .kind, .rto_seconds, .provision_seconds, .restore_seconds, .verify_seconds,
        (.rto_seconds - .provision_seconds - .restore_seconds - .verify_seconds), .bytes,
        .throughput_bytes_per_second, ([.checks[] | select(.passed)] | length), (.checks | length),
        (if .passed then "ok" else "FAILED" end)] | @tsv' "$J" |
while IFS=$'\t' read -r name kind rto prov rest ver other bytes tput ok all verdict; do
    row "$name" "$kind" "$(printf %.2f "$rto")" "$(printf %.2f "$prov")" "$(printf %.2f "$rest")" "$(printf %.2f "$ver")" \
        "$(printf %.2f "$other")" "$(mib "$bytes")" "$(awk -v t="$tput" 'BEGIN { printf "%.1f", t / 1048576 }')" "$ok/$all passed, $verdict"
done
jq -r '.targets[] | .target as $t | (.checks[] | "    \($t): \(if .passed then "ok  " else "FAIL" end) \(.name): \(.detail)"), (select(.error) | "    \($t): ERROR \(.error)")' "$J"
jq -r '.problems[] | "    PROBLEM: \(.)"' "$J"
echo "  (provision: initdb + start, redis-server start, a directory; cache and media check while they restore (keys"
echo "   sampled, objects hashed as written and read back), so their verify is ~0 and their restore includes it)"
echo "total RTO (drill start to last target verified): $(printf %.2f "$RTO") s, $(mib "$(jq -r .bytes_restored "$J")") restored"
echo "goal: total RTO <= 120 s: $(awk -v r="$RTO" 'BEGIN { print (r <= 120) ? "MET" : "MISSED" }')"
echo
echo "manual restore, the three in parallel (a runbook's restore: no provisioning timed, no verification):"
# vs TARGET MANUAL_SECS: that target's drill RTO over its manual restore time.
vs() { local d; d=$(jq -r --arg t "$1" '.targets[] | select(.target == $t) | .rto_seconds' "$J"); echo "drill $1 $(printf %.2f "$d") s, ratio $(ratio "$d" "$2")"; }
printf '  %-52s %8s   %s\n' "pg_restore -j2 of pg_dump -Fc into an empty database" "$M_PG" "$M_PG_ROWS pgbench_accounts rows; $(vs db "$M_PG")"
printf '  %-52s %8s   %s\n' "cp RDB + redis-server loading it (until PING)" "$M_REDIS" "$M_REDIS_KEYS keys; $(vs cache "$M_REDIS")"
if [ -n "$S3_TOOL" ]; then
    printf '  %-52s %8s   %s\n' "$S3_TOOL of the bucket to a local directory" "$M_S3" "$M_S3_FILES files; $(vs media "$M_S3")"
else
    echo "  S3: skipped (neither rclone nor aws is installed): the manual time below leaves the bucket out"
fi
printf '  %-52s %8s\n' "manual restore, wall (all three)" "$MANUAL_WALL"
echo "drill RTO / manual restore time: $(ratio "$RTO" "$MANUAL_WALL")"
echo "  (not like for like: the drill also provisions fresh servers (initdb, redis-server) and verifies every"
echo "   target against the backup's records (row counts, keys, object hashes read back); the manual restore"
echo "   reuses a running PostgreSQL, loads the RDB natively, and checks nothing)"
log "done"
exit 0
