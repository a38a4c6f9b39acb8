#!/usr/bin/env bash
# S3 bucket benchmark: bunker backing up a bucket vs `rclone sync` of it to a local directory, on moto's
# S3 server on loopback: the first run, then an unchanged second run.
#
#   bench/s3.sh                                   # ~10k objects, ~2 GiB
#   BENCH_OBJECTS=1000 BENCH_MB=200 bench/s3.sh   # a quick small run
#
# Objects like a web app's uploads: many small images and documents, a few large videos; half of the bytes
# incompressible. Both tools use 8 transfers at once. It reports, it does not fail: exit 0 when a goal is
# missed, non-zero only when a tool errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
OBJECTS=${BENCH_OBJECTS:-10000}
MB=${BENCH_MB:-2048}

command -v rclone >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null; }
"$ROOT/scripts/ensure-moto.sh" >/dev/null
PY=$ROOT/.venv/bin/python
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

WORK=$(mktemp -d /tmp/bunker-s3-bench.XXXXXX)
MOTO_PID=
cleanup() {
    [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null; do sleep 0.1; done
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

log "generating $OBJECTS objects, ~$MB MB"
"$PY" - "$ENDPOINT" "$OBJECTS" "$MB" <<'EOF'
import boto3, os, random, sys
from concurrent.futures import ThreadPoolExecutor
endpoint, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket="media")
random.seed(3)
videos = max(1, n // 1000)
small_total = mb * (1 << 20) // 2
sizes = [max(1024, int(random.expovariate(1.0) * small_total / (n - videos))) for _ in range(n - videos)]
big = mb * (1 << 20) // 2 // videos
text = b" ".join(random.choice([b"lorem", b"ipsum", b"upload", b"avatar", b"invoice", b"report"]) for _ in range(200000))
def put(i):
    if i < videos:
        key, size, ctype = "videos/v-%d.mp4" % i, big, "video/mp4"
    else:
        key, size, ctype = "uploads/%02d/f-%06d.jpg" % (i % 97, i), sizes[i - videos], "image/jpeg"
    half = size // 2
    body = os.urandom(half) + (text * (1 + (size - half) // len(text)))[: size - half]
    s3.put_object(Bucket="media", Key=key, Body=body, ContentType=ctype, Metadata={"owner": "u%d" % (i % 50)})
with ThreadPoolExecutor(16) as ex:
    list(ex.map(put, range(n)))
EOF

export BUNKER_PASSWORD=bench BUNKER_CACHE_DIR=$WORK/cache BUNKER_CONFIG=$WORK/bunker.toml
cat > "$BUNKER_CONFIG" <<EOF
[repository]
url = "$WORK/repo"

[targets.media]
type = "s3"
bucket = "media"
endpoint = "$ENDPOINT"
concurrency = 8
EOF
"$BUNKER" -q init
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$ENDPOINT \
    RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=testing RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=testing RCLONE_CONFIG_MOTO_REGION=us-east-1

# rclone 1.60's S3 backend fails on AWS_CA_BUNDLE ("unsupported transport"); loopback needs no CA.
rclone() { env -u AWS_CA_BUNDLE rclone "$@"; }
measure rclone1 rclone sync moto:media "$WORK/rclone-copy" --transfers 8 --checkers 8
measure bunker1 "$BUNKER" backup media
measure rclone2 rclone sync moto:media "$WORK/rclone-copy" --transfers 8 --checkers 8
measure bunker2 "$BUNKER" backup media
read -r OBJS BYTES DL REUSED < <("$BUNKER" snapshots --json | python3 -c 'import json, sys; m = json.load(sys.stdin)[-1]["meta"]; print(m["objects"], m["bytes"], m["downloaded"], m["reused"])')
STORED=$(du -sb "$WORK/repo" | cut -f1)

echo
echo "bunker S3 benchmark: $OBJS objects, $(( BYTES / 1000000 )) MB, moto on loopback, $(nproc) cores, $(rclone version | head -1)"
printf '%-44s %10s   %s\n' "measurement" "seconds" "note"
printf '%-44s %10s   %s\n' "rclone sync to a directory, first" "${SECS[rclone1]}" ""
printf '%-44s %10s   %s\n' "bunker backup, first" "${SECS[bunker1]}" "repository $(( STORED / 1000000 )) MB"
printf '%-44s %10s   %s\n' "  first run bunker / rclone" "$(ratio "${SECS[bunker1]}" "${SECS[rclone1]}")" "$(verdict "${SECS[bunker1]}" "${SECS[rclone1]}" 1.0) <= 1.00"
printf '%-44s %10s   %s\n' "rclone sync, unchanged" "${SECS[rclone2]}" ""
printf '%-44s %10s   %s\n' "bunker backup, unchanged" "${SECS[bunker2]}" "$DL downloaded, $REUSED reused"
printf '%-44s %10s   %s\n' "  unchanged run bunker / rclone" "$(ratio "${SECS[bunker2]}" "${SECS[rclone2]}")" "$(verdict "${SECS[bunker2]}" "${SECS[rclone2]}" 0.5) <= 0.50"
log "done"
