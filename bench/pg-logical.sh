#!/usr/bin/env bash
# PostgreSQL logical backup benchmark: bunker vs pg_dump -Fc, pg_dump | gzip, pg_restore -j2, restic.
#
#   bench/pg-logical.sh                       # pgbench scale 50 + 540k events rows (~300 MB)
#   BENCH_SCALE=5 BENCH_EVENTS=60000 bench/pg-logical.sh   # a quick small run
#   BENCH_KEEP=1 bench/pg-logical.sh          # keep the scratch directory (dumps, repositories)
#
# Two throwaway clusters (source, restore target) on loopback, removed on exit. Data that packs
# like an application's: pgbench plus events rows of words, jsonb and bytea (pg-logical-data.sql).
# Times are wall clock (1 MB = 10^6 bytes; MB/s are of pg_database_size). Then one day of activity
# and the day-2 repository growth of bunker vs restic on the same dumps. It reports, it does not
# fail: exit 0 when a goal is missed, non-zero only when a tool errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/pg-data.sh
. "$HERE/pg-data.sh"
SCALE=${BENCH_SCALE:-50}
EVENTS=${BENCH_EVENTS:-540000}
PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=127.0.0.1

# 1. Tools: install only what is missing (Debian packages); build bunker.
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v jq >/dev/null || missing+=(jq)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

# Scratch space (clusters, repositories, dumps); clusters stopped and all removed on exit.
WORK=$(mktemp -d /tmp/bunker-pgbench.XXXXXX) && chmod 755 "$WORK"
cleanup() {
    for d in "$WORK"/*/data; do
        [ -f "$d/postmaster.pid" ] && runuser -u postgres -- pg_ctl -D "$d" -m fast stop >/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
T_START=$(date +%s)
LOAD0=$(cut -d' ' -f1 /proc/loadavg)   # other work on the machine skews wall-clock times
log() { echo "[$(( $(date +%s) - T_START ))s] $*" >&2; }

# start_cluster NAME: initdb + start as the postgres user on a free loopback port; prints the port.
start_cluster() {
    local dir=$WORK/$1 port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir "$dir" && chown postgres:postgres "$dir"
    runuser -u postgres -- initdb -D "$dir/data" -U postgres --auth=trust --no-sync >/dev/null
    # Same settings on both clusters. Autovacuum off: on the source so the day's changes (and so
    # the dumps' row order) are the same on every run (the activity script vacuums explicitly), on
    # the target so a restored database's vacuum does not run into the next measurement.
    cat >> "$dir/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
shared_buffers = '256MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
autovacuum = off
EOF
    runuser -u postgres -- pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null
    echo "$port"
}
SRC=$(start_cluster source)
DST=$(start_cluster target)
sql() { psql -X -q -v ON_ERROR_STOP=1 -p "$SRC" -d bench "$@"; }

# 2. Day-1 data: pgbench -i and the events rows (two sessions), all in parallel.
log "generating: pgbench scale $SCALE + $EVENTS events rows"
day1_data "$SRC"
DBSIZE=$(sql -Atc "SELECT pg_database_size('bench')")
TABLES=$(sql -Atc "SELECT string_agg(format('%s %s MB', relname, pg_total_relation_size(oid) / 1000000), ', ' ORDER BY relname)
    FROM pg_class WHERE relname IN ('events', 'pgbench_accounts', 'pgbench_history')")
log "database size: $(( DBSIZE / 1000000 )) MB"

# measure LABEL CMD...: wall seconds into SECS[LABEL], peak RSS (KiB) into RSS[LABEL]; output in
# $WORK/out.LABEL. Any failure stops the benchmark. Each starts settled: both clusters checkpointed
# and dirty pages written, so no run pays for the previous one's writeback.
declare -A SECS RSS
measure() {
    local label=$1; shift
    psql -X -q -p "$SRC" -d postgres -c CHECKPOINT && psql -X -q -p "$DST" -d postgres -c CHECKPOINT && sync
    if ! /usr/bin/time -v -o "$WORK/time.$label" "$@" > "$WORK/out.$label" 2>&1; then
        echo "FAILED: $label: $*" >&2; tail -n 20 "$WORK/out.$label" >&2; exit 1
    fi
    SECS[$label]=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
        for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/time.$label")
    RSS[$label]=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.$label")
    log "$label: ${SECS[$label]} s"
}

# 3. Backups, day 1. bunker from its stack file, into a fresh repository.
export BENCH_PW=bench-pw BUNKER_CACHE_DIR=$WORK/bunker-cache BUNKER_CONFIG=$WORK/bunker.toml
export RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_PASSWORD=bench-pw RESTIC_CACHE_DIR=$WORK/restic-cache
cat > "$BUNKER_CONFIG" <<EOF
[repository]
url = "$WORK/bunker-repo"
password = "\${BENCH_PW}"

[targets.bench]
type = "postgres"
url = "postgresql://postgres@127.0.0.1:$SRC/bench"
EOF
"$BUNKER" -q init >/dev/null
restic init -q
SRCURL="postgresql://postgres@127.0.0.1:$SRC/bench"
measure bunker_backup "$BUNKER" backup bench
BUNKER_DU1=$(du -sb "$WORK/bunker-repo" | cut -f1)
B1_STORED=$("$BUNKER" snapshots --json | jq '.[-1].stats.bytes_stored')
measure pg_dump_fc pg_dump -Fc -f "$WORK/bench.Fc" "$SRCURL"
measure pg_dump_gzip bash -c "pg_dump '$SRCURL' | gzip > '$WORK/bench.sql.gz'"
# The day-1 dump for restic, uncompressed as bunker stores it (pg_dump -Fc -Z0).
measure pg_dump_z0_day1 pg_dump -Fc -Z0 -f "$WORK/day1.dump" "$SRCURL"
measure restic_day1 restic backup -q "$WORK/day1.dump"
RESTIC_DU1=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)

# 4. Restores into the target cluster: pg_restore -j2 of the -Fc file vs bunker (without and with
# verification); each into a new database, dropped after its measurement.
createdb -p "$DST" restored
measure pg_restore_j2 pg_restore -j2 -p "$DST" -d restored "$WORK/bench.Fc"
dropdb -p "$DST" restored
measure bunker_restore_noverify "$BUNKER" restore bench --into "postgresql://postgres@127.0.0.1:$DST/restored" --jobs 2 --no-verify
dropdb -p "$DST" restored
measure bunker_restore_verify "$BUNKER" restore bench --into "postgresql://postgres@127.0.0.1:$DST/restored" --jobs 2
dropdb -p "$DST" restored
# For comparison, the two-step way: the stored dump written to a file, then pg_restore -j2 of it (a
# streamed dump's TOC has no data offsets, so pg_restore scans). bunker restores into an empty
# database without the file: each table's data goes from the repository straight to a pg_restore.
measure bunker_dump bash -c "'$BUNKER' dump bench:latest > '$WORK/probe.dump'"
createdb -p "$DST" restored
measure pg_restore_j2_z0 pg_restore -j2 -p "$DST" -d restored "$WORK/probe.dump"
rm -f "$WORK/probe.dump" && dropdb -p "$DST" restored

# 5. One day of activity: pgbench-like scattered account updates (0.1%) with their history rows
# (2%), 0.1% of events deleted at random, a vacuum (autovacuum's pass), then 2% new events rows
# and updates of the 1% most recent ones.
log "day 2 activity"
day2_activity
DBSIZE2=$(sql -Atc "SELECT pg_database_size('bench')")

# 6. Backups, day 2: bunker's second snapshot; restic on the day-2 -Z0 dump.
measure bunker_backup_day2 "$BUNKER" backup bench
BUNKER_DU2=$(du -sb "$WORK/bunker-repo" | cut -f1)
read -r B2_STORED B2_NEW < <("$BUNKER" snapshots --json | jq -r '.[-1].stats | "\(.bytes_stored) \(.bytes_new)"')
measure pg_dump_z0_day2 pg_dump -Fc -Z0 -f "$WORK/day2.dump" "$SRCURL"
measure restic_day2 restic backup -q "$WORK/day2.dump"
RESTIC_DU2=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
"$BUNKER" stats --json > "$WORK/stats.json"

# 7. Report.
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
mbs() { awk -v b="$DBSIZE" -v s="${SECS[$1]}" 'BEGIN { printf "%.1f", b / 1e6 / (s > 0 ? s : 0.01) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
# verdict A B GOAL: PASS when A / B <= GOAL, on the exact values (not the rounded ratio).
verdict() { awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN { print (b > 0 && a / b <= g) ? "PASS" : "MISS" }'; }
rss() { awk -v k="${RSS[$1]}" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
size() { stat -c %s "$1"; }
# row MEASUREMENT SECONDS MB/S SIZE NOTE
row() { printf '%-36s %8s %8s %12s   %s\n' "$@"; }
t() { row "$1" "${SECS[$2]}" "$(mbs "$2")" "${3:-}" "${4:-}"; }
R_BACKUP=$(ratio "${SECS[bunker_backup]}" "${SECS[pg_dump_fc]}")
R_RESTORE=$(ratio "${SECS[bunker_restore_noverify]}" "${SECS[pg_restore_j2]}")
R_RESTORE_V=$(ratio "${SECS[bunker_restore_verify]}" "${SECS[pg_restore_j2]}")
B_GROWTH=$(( BUNKER_DU2 - BUNKER_DU1 ))
R_GROWTH=$(( RESTIC_DU2 - RESTIC_DU1 ))
R_DAY2=$(ratio "$B_GROWTH" "$R_GROWTH")
echo
echo "bunker PostgreSQL logical benchmark: pgbench scale $SCALE + $EVENTS events rows, $(nproc) cores, PostgreSQL $(sql -Atc 'SHOW server_version' | cut -d' ' -f1)"
echo "database size $(mb "$DBSIZE") (day 2: $(mb "$DBSIZE2")); uncompressed dump (-Fc -Z0) $(mb "$(size "$WORK/day1.dump")") (day 2: $(mb "$(size "$WORK/day2.dump")"))"
echo "tables with indexes: $TABLES; load average at start $LOAD0, at end $(cut -d' ' -f1 /proc/loadavg)"
echo
row "measurement" "seconds" "MB/s" "size" "note"
row "------------------------------------" "--------" "--------" "------------" "------------------------------"
t "bunker backup bench (day 1)" bunker_backup "$(mb "$B1_STORED")" "stored; repo $(mb "$BUNKER_DU1"); peak RSS $(rss bunker_backup)"
t "pg_dump -Fc > file" pg_dump_fc "$(mb "$(size "$WORK/bench.Fc")")"
t "pg_dump | gzip > file" pg_dump_gzip "$(mb "$(size "$WORK/bench.sql.gz")")"
t "pg_dump -Fc -Z0 > file (for restic)" pg_dump_z0_day1 "$(mb "$(size "$WORK/day1.dump")")"
t "restic backup day1.dump" restic_day1 "$(mb "$RESTIC_DU1")" "repo"
row "backup time bunker / pg_dump -Fc" "$R_BACKUP" "" "" "$(verdict "${SECS[bunker_backup]}" "${SECS[pg_dump_fc]}" 0.4) <= 0.40"
t "pg_restore -j2 (-Fc file)" pg_restore_j2
t "bunker restore --jobs 2 --no-verify" bunker_restore_noverify "" "peak RSS $(rss bunker_restore_noverify)"
t "bunker restore --jobs 2 (verify)" bunker_restore_verify "" "peak RSS $(rss bunker_restore_verify)"
t "  two-step: bunker dump > file" bunker_dump
t "  two-step: pg_restore -j2 of that file" pg_restore_j2_z0
row "restore time bunker / pg_restore -j2" "$R_RESTORE" "" "" "$(verdict "${SECS[bunker_restore_noverify]}" "${SECS[pg_restore_j2]}" 1.0) <= 1.00 (--no-verify)"
row "  same, with verification" "$R_RESTORE_V" "" "" "$(verdict "${SECS[bunker_restore_verify]}" "${SECS[pg_restore_j2]}" 1.0) <= 1.00"
t "bunker backup bench (day 2)" bunker_backup_day2 "$(mb "$B2_STORED")" "stored (snapshot); new $(mb "$B2_NEW")"
t "restic backup day2.dump" restic_day2
row "day-2 repo growth bunker (du -sb)" "" "" "$(mb "$B_GROWTH")"
row "day-2 repo growth restic (du -sb)" "" "" "$(mb "$R_GROWTH")"
row "day-2 stored bunker / restic" "$R_DAY2" "" "" "$(verdict "$B_GROWTH" "$R_GROWTH" 1.0) <= 1.00"
echo
echo "bunker stats: $(jq -c '{logical_bytes, stored_bytes}' "$WORK/stats.json"); restic repo version $(restic cat config | jq .version)"
log "done"
exit 0
