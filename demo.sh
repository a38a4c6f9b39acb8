#!/usr/bin/env bash
# The main job on an embedded default: build bunker, back up a sample directory and a stream into
# ./bunker-repo, restore both, verify every byte, and print a summary.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -q -p bunker
bunker() { ./target/release/bunker "$@"; }

export BUNKER_REPO="${BUNKER_REPO:-$PWD/bunker-repo}"
if [ -z "${BUNKER_PASSWORD:-}${BUNKER_PASSWORD_FILE:-}" ]; then
  export BUNKER_PASSWORD=demo-only-password
  echo "demo: using a throwaway password; set BUNKER_PASSWORD for a real repository" >&2
fi
work="$PWD/demo-work"
rm -rf "$work" && mkdir -p "$work/sample/config" "$work/sample/terraform"

# A sample stack: config files, Terraform state, an env file, and a database-dump-like stream.
printf 'listen = ":8080"\nworkers = 4\n' > "$work/sample/config/app.toml"
printf 'DATABASE_URL=postgres://app@db/app\n' > "$work/sample/config/.env"
chmod 600 "$work/sample/config/.env"
python3 -c 'import json; print(json.dumps({"version": 4, "resources": [{"type": "aws_s3_bucket", "name": f"b{i}"} for i in range(500)]}))' \
  > "$work/sample/terraform/terraform.tfstate"
ln -sf app.toml "$work/sample/config/current.toml"
python3 - > "$work/dump.sql" <<'PY'
import random
random.seed(1)
print("COPY public.users (id, email, created_at) FROM stdin;")
for i in range(300000):
    print(f"{i}\tuser{i}@example.com\t2026-{random.randint(1,12):02d}-{random.randint(1,28):02d}")
print("\\.")
PY

[ -f "$BUNKER_REPO/config" ] || bunker init
bunker backup --path "$work/sample" --name files
bunker backup --stdin --name app-db < "$work/dump.sql"
bunker backup --stdin --name app-db < "$work/dump.sql"   # unchanged: stores nothing new

bunker restore files:latest --to "$work/restored"
diff -r "$work/sample" "$work/restored/sample"
bunker dump app-db:latest | cmp - "$work/dump.sql"
bunker check --read-data

echo
echo "== summary =="
bunker snapshots
bunker stats
echo "restored files and stream are identical to the originals; repository: $BUNKER_REPO"
