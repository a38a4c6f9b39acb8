#!/usr/bin/env bash
# Recovery from a damaged repository: bunker vs restic on the same data, from a cold cache.
#
#   bench/repair.sh                  # BENCH_DIR=/tmp/bunker-bench BENCH_SIZE_MIB=1024 BENCH_RUNS=3
#
# Each tool backs up the same mixed input in 8 parts (8 snapshots, one index file each), then:
#   1. "rebuild": every index file is deleted and the index rebuilt from the packs
#      (`bunker repair index` vs `restic repair index`, `rebuild-index` before restic 0.16);
#   2. "list":    part0's snapshot file is damaged (a flipped byte) and the snapshots are listed
#      (bunker skips it; restic's `snapshots` is timed as it behaves);
#   3. "restore": part1's snapshot is restored (dumped by name, `latest`) beside the damaged one. restic
#      0.14 cannot resolve `latest` while any snapshot file is damaged: its time is that of the failure,
#      and the last line says whether it restored.
# Every step runs with the local cache off (a fresh host), BENCH_RUNS times on fresh copies; the
# script prints the median and the spread (min..max) and the ratio bunker/restic of the medians.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
source "$HERE/common.sh"
BENCH_DIR=${BENCH_DIR:-/tmp/bunker-bench}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
DATA=$BENCH_DIR/mixed-${SIZE_MIB}MiB.bin

command -v restic >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null; }
# restic 0.16 renamed `rebuild-index` to `repair index`; Debian 12 ships 0.14.
if restic repair index --help >/dev/null 2>&1; then RESTIC_REBUILD=(repair index); else RESTIC_REBUILD=(rebuild-index); fi
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker
mkdir -p "$BENCH_DIR"
if [ ! -s "$DATA" ]; then
    log "generating $DATA (${SIZE_MIB} MiB)"
    python3 "$HERE/gen-mixed.py" "$DATA.tmp" "$SIZE_MIB" && mv "$DATA.tmp" "$DATA"
fi
WORK=$(mktemp -d "$BENCH_DIR/repair.XXXX")
trap 'rm -rf "$WORK"' EXIT
export BUNKER_PASSWORD=bench RESTIC_PASSWORD=bench BUNKER_CACHE_DIR=off BUNKER_KEY_CACHE=off
PART=$(( $(stat -c %s "$DATA") / 8 ))

# The templates: 8 snapshots each.
$BUNKER --repo "$WORK/bunker.tpl" init -q >/dev/null
restic -r "$WORK/restic.tpl" init -q >/dev/null
for i in 0 1 2 3 4 5 6 7; do
    dd if="$DATA" bs=1M iflag=skip_bytes,count_bytes skip=$((i * PART)) count=$PART status=none > "$WORK/part"
    $BUNKER --repo "$WORK/bunker.tpl" -q backup --stdin --name "part$i" < "$WORK/part" >/dev/null
    restic -r "$WORK/restic.tpl" -q backup --stdin --stdin-filename "part$i" < "$WORK/part" >/dev/null
done
sha_part1=$(dd if="$DATA" bs=1M iflag=skip_bytes,count_bytes skip=$PART count=$PART status=none | sha256sum | cut -d' ' -f1)
# The snapshot damaged in step 2 is part0's, for both; step 3 restores part1.
BUNKER_PART0=$($BUNKER --repo "$WORK/bunker.tpl" --json snapshots | python3 -c 'import json, sys; print([s["id"] for s in json.load(sys.stdin) if s["name"] == "part0"][0])')
RESTIC_PART0=$(restic -r "$WORK/restic.tpl" --no-cache --json snapshots | python3 -c 'import json, sys; print([s["id"] for s in json.load(sys.stdin) if s["paths"] == ["/part0"]][0])')
log "templates ready: bunker $(du -sh "$WORK/bunker.tpl" | cut -f1), restic $(du -sh "$WORK/restic.tpl" | cut -f1)"

flip() { python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1; open(p, "wb").write(b)' "$1"; }
fresh() { rm -rf "$WORK/$1"; cp -a "$WORK/$1.tpl" "$WORK/$1"; }
declare -A ALL
record() { ALL[$1]="${ALL[$1]:-} ${SECS[$1]}"; }

for run in $(seq 1 "$RUNS"); do
    # 1. Rebuild the index from the packs.
    fresh bunker; rm -f "$WORK"/bunker/index/*
    measure bunker-rebuild $BUNKER --repo "$WORK/bunker" -q repair index; record bunker-rebuild
    fresh restic; rm -f "$WORK"/restic/index/*
    measure restic-rebuild restic -r "$WORK/restic" --no-cache -q "${RESTIC_REBUILD[@]}"; record restic-rebuild
    # 2. List with one snapshot file damaged; 3. restore another beside it.
    fresh bunker; flip "$WORK/bunker/snapshots/$BUNKER_PART0"
    measure bunker-list sh -c "$BUNKER --repo '$WORK/bunker' snapshots; test \$? -eq 3"; record bunker-list
    measure bunker-restore sh -c "$BUNKER --repo '$WORK/bunker' -q dump part1:latest > '$WORK/out'; test \$? -eq 3"; record bunker-restore
    [ "$(sha256sum < "$WORK/out" | cut -d' ' -f1)" = "$sha_part1" ] || { echo "bunker restored wrong bytes" >&2; exit 1; }
    fresh restic; flip "$WORK/restic/snapshots/$RESTIC_PART0"
    restic_list_ok=yes
    measure restic-list sh -c "restic -r '$WORK/restic' --no-cache snapshots || true"; record restic-list
    grep -q part1 "$WORK/out.restic-list" || restic_list_ok=no
    measure restic-restore sh -c "restic -r '$WORK/restic' --no-cache dump --path /part1 latest /part1 > '$WORK/out' || true"; record restic-restore
    restic_restore_ok=$([ "$(sha256sum < "$WORK/out" | cut -d' ' -f1)" = "$sha_part1" ] && echo yes || echo no)
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s..%s", lo, hi }'; }
echo
echo "repair benchmark: ${SIZE_MIB} MiB in 8 snapshots, cache off, $RUNS runs (median, min..max seconds)"
for step in rebuild list restore; do
    b=$(median "${ALL[bunker-$step]}"); r=$(median "${ALL[restic-$step]}")
    printf "  %-8s bunker %6s s (%s)  restic %6s s (%s)  bunker/restic %s\n" "$step" "$b" "$(spread "${ALL[bunker-$step]}")" \
        "$r" "$(spread "${ALL[restic-$step]}")" "$(ratio "$b" "$r")"
done
echo "  with one snapshot file damaged: restic listed the others: $restic_list_ok; restic restored another: $restic_restore_ok"
