#!/usr/bin/env bash
# PostgreSQL physical backup benchmark: bunker vs pgBackRest (local repo, process-max 2, zst) and
# pg_basebackup -Ft, side by side on one cluster.
#
#   bench/pg-physical.sh                         # pgbench scale 50 + 540k events rows (~1.1 GB)
#   BENCH_SCALE=5 BENCH_EVENTS=60000 bench/pg-physical.sh   # a quick small run
#   BENCH_KEEP=1 bench/pg-physical.sh            # keep the scratch directory
#
# One throwaway cluster on loopback with archive_mode = on; its archive_command feeds both tools'
# archives (bunker wal-push, then pgbackrest archive-push) and keeps a copy of the first 100 segments
# for the push benchmark. Measured: base backup time (after the archiver has caught up, so neither tool
# waits for the other's backlog), restore time (files laid down, recovery configured, server not
# started), day-2 stored bytes after one day of activity (bunker's second base backup vs pgbackrest
# --type=incr), and pushing 100 segments one process per segment as PostgreSQL does (bunker wal-push
# vs pgbackrest archive-push, each into a fresh archive). It reports, it does not fail: exit 0 when a
# goal is missed, non-zero only when a tool errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# Every measurement starts settled: the cluster checkpointed and dirty pages written.
settle() { psql -X -q -p "$PORT" -d postgres -c CHECKPOINT && sync; }
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
# shellcheck source=bench/pg-data.sh
. "$HERE/pg-data.sh"
SCALE=${BENCH_SCALE:-50}
EVENTS=${BENCH_EVENTS:-540000}
PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=127.0.0.1

# 1. Tools: install only what is missing (Debian packages); build bunker.
missing=()
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

# Everything runs as the postgres user (it owns the data directory; so do both tools on a real host).
WORK=$(mktemp -d /tmp/bunker-pgphys.XXXXXX) && chmod 755 "$WORK" && chown postgres:postgres "$WORK"
as_pg() { runuser -u postgres -- env PATH="$PATH" "$@"; }
cleanup() {
    for d in "$WORK"/source/data "$WORK"/check/data; do
        [ -f "$d/postmaster.pid" ] && as_pg pg_ctl -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
LOAD0=$(cut -d' ' -f1 /proc/loadavg)

# Configuration of both tools.
echo bench-pw > "$WORK/password" && chmod 600 "$WORK/password"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/bunker.toml" <<EOF
[repository]
url = "$WORK/bunker-repo"
password_file = "$WORK/password"

[targets.bench]
type = "postgres"
mode = "physical"
url = "postgresql://postgres@127.0.0.1:$PORT/postgres"
archive_timeout = "10m"
EOF
cat > "$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/pgbr-repo
process-max=2
compress-type=zst
start-fast=y
log-level-console=warn
log-level-file=off
lock-path=$WORK/pgbr-lock
spool-path=$WORK/pgbr-spool

[bench]
pg1-path=$WORK/source/data
pg1-port=$PORT
pg1-socket-path=$WORK/source
EOF
sed -e "s#repo1-path=.*#repo1-path=$WORK/pgbr-walbench#" "$WORK/pgbackrest.conf" > "$WORK/pgbackrest-walbench.conf"
BUNKER_ENV="BUNKER_CACHE_DIR=$WORK/bunker-cache"
PGBR="pgbackrest --config=$WORK/pgbackrest.conf --stanza=bench"
mkdir -p "$WORK/walcopy" "$WORK/source"
chown -R postgres:postgres "$WORK"

# 2. The cluster: archiving into both tools, plus a copy of the first 100 segments.
as_pg initdb -D "$WORK/source/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/source/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK/source'
fsync = off
synchronous_commit = off
shared_buffers = '256MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
autovacuum = off
archive_mode = on
archive_command = '$BUNKER_ENV $BUNKER --config $WORK/bunker.toml wal-push --target bench %p && $PGBR archive-push %p && { [ \$(ls $WORK/walcopy | wc -l) -ge 100 ] || cp %p $WORK/walcopy/%f; }'
EOF
as_pg pg_ctl -D "$WORK/source/data" -l "$WORK/source/log" -w start >/dev/null
sql() { psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d bench "$@"; }
as_pg env "$BUNKER_ENV" "$BUNKER" --config "$WORK/bunker.toml" -q init >/dev/null
as_pg $PGBR stanza-create >/dev/null

# 3. Day-1 data (pg-data.sh).
log "generating: pgbench scale $SCALE + $EVENTS events rows"
day1_data "$PORT"
DBSIZE=$(sql -Atc "SELECT sum(pg_database_size(datname)) FROM pg_database")

# wait_archived: until the archiver has nothing ready, so a measured backup waits only for its own WAL.
wait_archived() {
    local seg
    seg=$(psql -X -Atq -p "$PORT" -d postgres -c "SELECT pg_walfile_name(pg_switch_wal())")
    until [ "$(psql -X -Atq -p "$PORT" -d postgres -c "SELECT coalesce(last_archived_wal, '') >= '$seg' FROM pg_stat_archiver")" = t ]; do
        sleep 0.5
    done
}
log "data: $(( DBSIZE / 1000000 )) MB; waiting for the archiver"
wait_archived

bunker() { as_pg env "$BUNKER_ENV" "$BUNKER" --config "$WORK/bunker.toml" "$@"; }
du_b() { du -sb "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
bunker_data() { du_b "$WORK/bunker-repo/data" "$WORK/bunker-repo/index" "$WORK/bunker-repo/snapshots"; }

# 4. Base backups, day 1.
measure bunker_backup bunker backup bench
B1=$(bunker_data)
measure pgbr_full as_pg $PGBR backup --type=full
P1=$(du_b "$WORK/pgbr-repo/backup")
measure pg_basebackup as_pg pg_basebackup -p "$PORT" -h "$WORK/source" -D "$WORK/basebackup" -Ft -c fast
BB=$(du_b "$WORK/basebackup")
rm -rf "$WORK/basebackup"

# 5. Restores: files laid down and recovery configured, server not started.
measure bunker_restore bunker restore bench --pgdata "$WORK/restore-bunker"
measure pgbr_restore as_pg $PGBR restore --pg1-path="$WORK/restore-pgbr" --archive-mode=off
RB=$(du_b "$WORK/restore-bunker"); RP=$(du_b "$WORK/restore-pgbr")
rm -rf "$WORK/restore-bunker" "$WORK/restore-pgbr"

# 6. One day of activity (pg-data.sh), as the issue defines it: appends (2% new events, history rows),
# updates of the 1% most recent events, a thin layer of scattered account updates (0.1%), a vacuum and a
# checkpoint. BENCH_DELETES=1 adds 0.1% of events deleted at random (the logical benchmark's day).
log "day 2 activity"
if [ "${BENCH_DELETES:-0}" = 1 ]; then day2_activity; else day2_activity no-deletes; fi
wait_archived
measure bunker_backup_day2 bunker backup bench
B2=$(bunker_data)
measure pgbr_incr as_pg $PGBR backup --type=incr
P2=$(du_b "$WORK/pgbr-repo/backup")

# 7. Pushing 100 segments, one process each, into fresh archives.
SEGS=$(ls "$WORK/walcopy" | head -n 100)
NSEGS=$(echo "$SEGS" | wc -l)
as_pg pgbackrest --config="$WORK/pgbackrest-walbench.conf" --stanza=bench stanza-create >/dev/null
push_bunker() { for s in $SEGS; do bunker wal-push --target walbench "$WORK/walcopy/$s"; done; }
push_pgbr() { for s in $SEGS; do as_pg pgbackrest --config="$WORK/pgbackrest-walbench.conf" --stanza=bench archive-push "$WORK/walcopy/$s"; done; }
measure bunker_push push_bunker
measure pgbr_push push_pgbr
WB=$(du_b "$WORK/bunker-repo/objects/wal/walbench"); WP=$(du_b "$WORK/pgbr-walbench/archive")
# The fixed cost per call: an already-archived segment pushed again reads 32 bytes and returns.
measure bunker_push_again push_bunker

# 8. Report.
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
row() { printf '%-44s %8s %12s   %s\n' "$@"; }
echo
echo "bunker PostgreSQL physical benchmark: pgbench scale $SCALE + $EVENTS events rows, $(nproc) cores, $(sql -Atc 'SHOW server_version' | cut -d' ' -f1), $(pgbackrest version)"
echo "cluster $(mb "$DBSIZE"); load average at start $LOAD0, at end $(cut -d' ' -f1 /proc/loadavg)"
echo
row "measurement" "seconds" "size" "note"
row "--------------------------------------------" "--------" "------------" "------------------------------"
row "bunker backup (day 1)" "${SECS[bunker_backup]}" "$(mb "$B1")" "stored"
row "pgbackrest backup --type=full" "${SECS[pgbr_full]}" "$(mb "$P1")" "stored"
row "pg_basebackup -Ft" "${SECS[pg_basebackup]}" "$(mb "$BB")" "uncompressed tar"
row "backup time bunker / pgbackrest" "$(ratio "${SECS[bunker_backup]}" "${SECS[pgbr_full]}")" "" "$(verdict "${SECS[bunker_backup]}" "${SECS[pgbr_full]}" 1.0) <= 1.00"
row "bunker restore --pgdata" "${SECS[bunker_restore]}" "$(mb "$RB")" "restored"
row "pgbackrest restore" "${SECS[pgbr_restore]}" "$(mb "$RP")" "restored"
row "restore time bunker / pgbackrest" "$(ratio "${SECS[bunker_restore]}" "${SECS[pgbr_restore]}")" "" "$(verdict "${SECS[bunker_restore]}" "${SECS[pgbr_restore]}" 1.0) <= 1.00"
row "bunker backup (day 2)" "${SECS[bunker_backup_day2]}" "$(mb $(( B2 - B1 )))" "stored on day 2"
row "pgbackrest backup --type=incr" "${SECS[pgbr_incr]}" "$(mb $(( P2 - P1 )))" "stored on day 2 ($(ratio $(( P2 - P1 )) "$P1") of its full)"
row "day-2 stored bunker / pgbackrest incr" "$(ratio $(( B2 - B1 )) $(( P2 - P1 )))" "" "$(verdict $(( B2 - B1 )) $(( P2 - P1 )) 0.3) <= 0.30"
row "bunker wal-push x$NSEGS" "${SECS[bunker_push]}" "$(mb "$WB")" "archived"
row "pgbackrest archive-push x$NSEGS" "${SECS[pgbr_push]}" "$(mb "$WP")" "archived"
row "wal-push time bunker / pgbackrest" "$(ratio "${SECS[bunker_push]}" "${SECS[pgbr_push]}")" "" "$(verdict "${SECS[bunker_push]}" "${SECS[pgbr_push]}" 1.0) <= 1.00"
row "bunker wal-push x$NSEGS, already archived" "${SECS[bunker_push_again]}" "" "$(awk -v s="${SECS[bunker_push_again]}" -v n="$NSEGS" 'BEGIN { printf "%.1f ms per call", s * 1000 / n }')"
log "done"
exit 0
