# Application-like data for the PostgreSQL benchmarks, sourced by pg-logical.sh and pg-physical.sh.
# They define HERE (this directory), SCALE, EVENTS, and `sql` (psql on database bench of the source
# cluster) before calling these.

# day1_data PORT: database bench with pgbench at $SCALE and $EVENTS events rows (two sessions), all
# loaded in parallel, then pgbench_history as a long-running app would have it (10% of accounts).
day1_data() {
    local port=$1
    createdb -p "$port" bench
    sql -v create=1 -f "$HERE/pg-logical-data.sql"
    pgbench -p "$port" -i -q -s "$SCALE" bench 2>/dev/null & local pgb=$!
    sql -v first=1 -v last=$(( EVENTS / 2 )) -f "$HERE/pg-logical-data.sql" >/dev/null & local e1=$!
    sql -v first=$(( EVENTS / 2 + 1 )) -v last="$EVENTS" -f "$HERE/pg-logical-data.sql" >/dev/null & local e2=$!
    wait $pgb; wait $e1; wait $e2
    ACCOUNTS=$(( SCALE * 100000 ))
    sql >/dev/null <<EOF
SELECT setval('events_id_seq', $EVENTS);
SELECT setseed(0.5);
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
    SELECT 1 + g % ($SCALE * 10), 1 + g % $SCALE, 1 + (random() * ($ACCOUNTS - 1))::int, (random() * 10000)::int - 5000,
           timestamp '2024-01-01' + g * interval '7 seconds' FROM generate_series(1, $ACCOUNTS / 10) g;
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
EOF
}

# day2_activity [no-deletes]: one day of activity: pgbench-like scattered account updates (0.1%) with
# their history rows (2%), 0.1% of events deleted at random and a vacuum (autovacuum's pass) unless
# no-deletes, then 2% new events rows and updates of the 1% most recent ones.
day2_activity() {
    ACCOUNTS=$(( SCALE * 100000 ))
    local deletes="DELETE FROM events WHERE id IN (SELECT 1 + (random() * ($EVENTS - 1))::bigint FROM generate_series(1, $EVENTS / 1000));
VACUUM events;"
    [ "${1:-}" = no-deletes ] && deletes=""
    sql >/dev/null <<EOF
SELECT setseed(0.7);
UPDATE pgbench_accounts SET abalance = abalance + (random() * 1000)::int - 500
    WHERE aid IN (SELECT 1 + (random() * ($ACCOUNTS - 1))::int FROM generate_series(1, $ACCOUNTS / 1000));
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
    SELECT 1 + g % ($SCALE * 10), 1 + g % $SCALE, 1 + (random() * ($ACCOUNTS - 1))::int, (random() * 10000)::int - 5000,
           timestamp '2024-06-01' + g * interval '7 seconds' FROM generate_series(1, $ACCOUNTS / 500) g;
$deletes
EOF
    # One session, so the new rows land in the same pages on every run.
    sql -v first=$(( EVENTS + 1 )) -v last=$(( EVENTS + EVENTS / 50 )) -f "$HERE/pg-logical-data.sql" >/dev/null
    sql >/dev/null <<EOF
SELECT setval('events_id_seq', $(( EVENTS + EVENTS / 50 )));
UPDATE events SET payload = payload || '{"status": "processed"}', body = body || ' (edited)'
    WHERE id > $(( EVENTS + EVENTS / 50 - EVENTS / 100 ));
VACUUM ANALYZE;
CHECKPOINT;
EOF
}
