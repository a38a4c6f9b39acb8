#!/usr/bin/env bash
# The main job on an embedded default: build bunker; start a sample stack on this host (a scratch
# PostgreSQL with a shop database, a scratch Redis, a directory of files, and a loopback S3 server when
# moto is installed); back it all up as one recovery point into ./bunker-repo; drill it (restore every
# target into scratch instances, verify, run a smoke test, measure RTO and RPO); print the summary and
# the path of the HTML report. Everything the demo starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -q -p bunker
bin="$PWD/target/release/bunker"
bunker() { "$bin" "$@"; }

export BUNKER_REPO="${BUNKER_REPO:-$PWD/bunker-repo}"
if [ -z "${BUNKER_PASSWORD:-}${BUNKER_PASSWORD_FILE:-}" ]; then
  export BUNKER_PASSWORD=demo-only-password
  echo "demo: using a throwaway password; set BUNKER_PASSWORD for a real repository" >&2
fi
work="$PWD/demo-work"
rm -rf "$work" && mkdir -p "$work"
scratch=$(mktemp -d /tmp/bunker-demo-XXXXXX)
chmod 755 "$scratch"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || { echo "demo: no PostgreSQL server binaries in /usr/lib/postgresql: install postgresql" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "demo: no redis-server: install redis-server" >&2; exit 1; }
pg_port=$(free_port)
redis_port=$(free_port)
redis_pid=""
moto_pid=""
cleanup() {
  [ -f "$scratch/pg/postmaster.pid" ] && (cd / && as_pg "$pgbin/pg_ctl" -D "$scratch/pg" -m immediate -w stop >/dev/null 2>&1 || true)
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# A sample stack. PostgreSQL: a shop with customers and orders (a foreign key between them).
[ "$(id -u)" = 0 ] && chown postgres: "$scratch"
(cd / && as_pg "$pgbin/initdb" -D "$scratch/pg" -U postgres --auth=trust --no-instructions >/dev/null)
(cd / && as_pg "$pgbin/pg_ctl" -D "$scratch/pg" -l "$scratch/pg.log" -w \
  -o "-p $pg_port -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null)
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE shop"
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d shop <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, total numeric(10,2), placed_at timestamptz);
INSERT INTO customers SELECT g, 'customer' || g || '@example.com' FROM generate_series(1, 20000) g;
INSERT INTO orders SELECT g, 1 + g % 20000, (g % 997) / 3.0, now() - g * interval '1 minute' FROM generate_series(1, 200000) g;
SQL

# Redis: sessions and a cart.
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$scratch" --daemonize no \
  --logfile "$scratch/redis.log" &
redis_pid=$!
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
python3 -c 'import sys
for i in range(20000):
    sys.stdout.write(f"SET session:{i} user-{i % 5000}\n")
sys.stdout.write("HSET cart:42 sku-1 2 sku-7 1\n")' | redis-cli -p "$redis_port" >/dev/null

# Files: config, Terraform state and an env file.
mkdir -p "$work/sample/config" "$work/sample/terraform"
printf 'listen = ":8080"\nworkers = 4\n' > "$work/sample/config/app.toml"
printf 'DATABASE_URL=postgres://app@db/shop\n' > "$work/sample/config/.env"
chmod 600 "$work/sample/config/.env"
python3 -c 'import json; print(json.dumps({"version": 4, "resources": [{"type": "aws_s3_bucket", "name": f"b{i}"} for i in range(500)]}))' \
  > "$work/sample/terraform/terraform.tfstate"

cat > "$work/bunker.toml" <<EOF
[targets.shop]
type = "postgres"
url = "postgresql://postgres@127.0.0.1:$pg_port/shop"

[[targets.shop.assert]]
name = "every order has a customer"
sql = "SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL"
expect = "0"

[targets.sessions]
type = "redis"
url = "redis://127.0.0.1:$redis_port"

[targets.config]
type = "files"
paths = ["$work/sample"]

[drill]
rto_objective = "5m"
rpo_objective = "1h"
# The application's own smoke test, run against the restored stack.
after_restore = "psql \"\$\${BUNKER_DRILL_PG_URL}shop\" -tAc 'SELECT count(*) FROM orders' | grep -qx 200000"
EOF

# S3 (media uploads) on a loopback moto server, when scripts/ensure-moto.sh has installed one.
if [ -x .venv/bin/moto_server ]; then
  s3_port=$(free_port)
  .venv/bin/moto_server -H 127.0.0.1 -p "$s3_port" >"$scratch/moto.log" 2>&1 &
  moto_pid=$!
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
  until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port/')" 2>/dev/null; do sleep 0.2; done
  .venv/bin/python - "$s3_port" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
s3.create_bucket(Bucket="media")
for i in range(40):
    s3.put_object(Bucket="media", Key=f"uploads/{i:03d}.jpg", Body=os.urandom(64 * 1024), ContentType="image/jpeg")
PY
  printf '\n[targets.media]\ntype = "s3"\nbucket = "media"\nendpoint = "http://127.0.0.1:%s"\n' "$s3_port" >> "$work/bunker.toml"
else
  echo "demo: no moto server (.venv/bin/moto_server; scripts/ensure-moto.sh installs it): the stack has no S3 target" >&2
fi
export BUNKER_CONFIG="$work/bunker.toml"

[ -f "$BUNKER_REPO/config" ] || bunker init
bunker backup --all
echo
echo "== drill =="
status=0
bunker drill --report "$work/drill-report.html" || status=$?
echo
echo "== summary =="
bunker points
bunker drills
bunker stats
echo "repository: $BUNKER_REPO; drill report: $work/drill-report.html"
exit "$status"
