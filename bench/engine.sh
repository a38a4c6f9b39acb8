#!/usr/bin/env bash
# Engine benchmark: bunker vs zstd vs restic on ~2 GiB of mixed data (stdin mode), and a recipients
# repository (content sealed for an age recipient, written with a write-only key) against a password one.
#
#   bench/engine.sh                 # BENCH_DIR=/tmp/bunker-bench BENCH_SIZE_MIB=2048
#   BENCH_SIZE_MIB=256 bench/engine.sh
#   BENCH_CLEAN=1 bench/engine.sh   # also delete the generated input at the end
#
# Reports throughput (MB/s, 1 MB = 10^6 bytes, wall clock from /usr/bin/time -v),
# peak RSS and repository sizes, and checks the goals. It reports, it does not
# fail: it exits 0 when a goal is missed (but not when a tool errors).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bunker-bench}
SIZE_MIB=${BENCH_SIZE_MIB:-2048}
DATA=$BENCH_DIR/mixed-${SIZE_MIB}MiB.bin

# 1. Tools: install only what is missing (Debian packages).
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v zstd >/dev/null || missing+=(zstd)
command -v age-keygen >/dev/null || missing+=(age)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Build bunker.
(cd "$ROOT" && cargo build --release -q -p bunker)
BUNKER=$ROOT/target/release/bunker

# 3. Input, generated once and kept for reruns.
mkdir -p "$BENCH_DIR"
if [ ! -s "$DATA" ]; then
    echo "generating $DATA (${SIZE_MIB} MiB)..." >&2
    python3 "$HERE/gen-mixed.py" "$DATA.tmp" "$SIZE_MIB" && mv "$DATA.tmp" "$DATA"
fi
BYTES=$(stat -c %s "$DATA")

# Scratch space: repos, caches, /usr/bin/time reports; removed on exit.
WORK=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
cleanup() { rm -rf "$WORK"; if [ "${BENCH_CLEAN:-0}" = 1 ]; then rm -f "$DATA"; rmdir "$BENCH_DIR" 2>/dev/null || true; fi; }
trap cleanup EXIT
export BUNKER_REPO=$WORK/bunker-repo BUNKER_PASSWORD=pw BUNKER_CACHE_DIR=$WORK/bunker-cache
export RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_PASSWORD=pw RESTIC_CACHE_DIR=$WORK/restic-cache

# measure LABEL CMD...: run CMD with stdin < $DATA (or IN=file), stdout to /dev/null;
# sets SECS[LABEL], CPU[LABEL] (user+sys s), RSS[LABEL] (KiB) and MBS[LABEL].
declare -A SECS CPU RSS MBS
measure() {
    local label=$1; shift
    local rep=$WORK/time.$label
    if ! /usr/bin/time -v -o "$rep" "$@" < "${IN:-$DATA}" > /dev/null 2> "$WORK/err.$label"; then
        echo "FAILED: $label: $*" >&2; tail -n 20 "$WORK/err.$label" >&2; exit 1
    fi
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:12.34" -> seconds
    SECS[$label]=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
        for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$rep")
    CPU[$label]=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$rep")
    RSS[$label]=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$rep")
    MBS[$label]=$(awk -v b="$BYTES" -v s="${SECS[$label]}" 'BEGIN { printf "%.1f", b / 1e6 / (s > 0 ? s : 0.01) }')
    printf '  %-16s %7.2f s wall %7.2f s cpu %8.1f MB/s %7.1f MiB RSS\n' "$label" "${SECS[$label]}" "${CPU[$label]}" "${MBS[$label]}" \
        "$(awk -v k="${RSS[$label]}" 'BEGIN { print k / 1024 }')" >&2
}

# 4. Measurements, into fresh repositories. Warm the page cache once so every tool reads from memory.
"$BUNKER" -q init > /dev/null
restic init -q
# Other processes skew wall-clock numbers: count the machine's busy CPU time (from /proc/stat)
# during the measurements, to report how much of it was not ours; report CPU seconds too.
busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
cat "$DATA" > /dev/null
BUSY0=$(busy); T0=$(date +%s.%N)
echo "measuring on $BYTES bytes ($(nproc) cores)..." >&2
measure zstd zstd -T0 -3 -c

measure bunker_backup "$BUNKER" -q backup --stdin --name bench
measure bunker_rebackup "$BUNKER" -q backup --stdin --name bench
IN=/dev/null measure bunker_dump "$BUNKER" -q dump bench:latest

# The same data into a recipients repository: backed up with its write-only key, dumped with the identity.
age-keygen -o "$WORK/identity.txt" 2>/dev/null
RCPT_REPO=$WORK/bunker-recipients
BUNKER_REPO=$RCPT_REPO "$BUNKER" -q init --recipient "$(age-keygen -y "$WORK/identity.txt")" > /dev/null
measure rcpt_backup env BUNKER_REPO="$RCPT_REPO" "$BUNKER" -q backup --stdin --name bench
measure rcpt_rebackup env BUNKER_REPO="$RCPT_REPO" "$BUNKER" -q backup --stdin --name bench
IN=/dev/null measure rcpt_dump env BUNKER_REPO="$RCPT_REPO" BUNKER_IDENTITY_FILE="$WORK/identity.txt" "$BUNKER" -q dump bench:latest

measure restic_backup restic -q backup --stdin --stdin-filename data
IN=/dev/null measure restic_dump restic -q dump latest data

BUSY1=$(busy); T1=$(date +%s.%N)
# Round trip check (not timed): bunker must give back the input byte for byte.
if "$BUNKER" -q dump bench:latest | cmp -s - "$DATA"; then ROUNDTRIP=ok; else ROUNDTRIP=MISMATCH; fi
if BUNKER_REPO=$RCPT_REPO BUNKER_IDENTITY_FILE=$WORK/identity.txt "$BUNKER" -q dump bench:latest | cmp -s - "$DATA"; then
    RCPT_ROUNDTRIP=ok
else
    RCPT_ROUNDTRIP=MISMATCH
fi
RCPT_DU=$(du -sb "$RCPT_REPO" | cut -f1)
BUNKER_DU=$(du -sb "$BUNKER_REPO" | cut -f1)
RESTIC_DU=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
ZSTD_SIZE=$(zstd -T0 -3 -c < "$DATA" | wc -c)

# 5. Report.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v v="$1" -v g="$2" -v d="$3" 'BEGIN { ok = (d == "ge") ? v >= g : v <= g; print ok ? "PASS" : "MISS" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
PEAK=$(printf '%s\n' "${RSS[bunker_backup]}" "${RSS[bunker_rebackup]}" "${RSS[bunker_dump]}" | sort -n | tail -n 1)
OURS=$(printf '%s\n' "${CPU[@]}" | awk '{ s += $1 } END { print s }')
OTHER=$(awk -v a="$BUSY0" -v b="$BUSY1" -v o="$OURS" 'BEGIN { x = b - a - o; printf "%.1f", (x > 0 ? x : 0) }')
AVAIL=$(awk -v a="$T0" -v b="$T1" -v n="$(nproc)" 'BEGIN { printf "%.1f", (b - a) * n }')
PEAK_MIB=$(awk -v k="$PEAK" 'BEGIN { printf "%.1f", k / 1024 }')
R_BACKUP=$(ratio "${MBS[bunker_backup]}" "${MBS[restic_backup]}")
R_ZSTD=$(ratio "${MBS[bunker_backup]}" "${MBS[zstd]}")
R_DUMP=$(ratio "${MBS[bunker_dump]}" "${MBS[restic_dump]}")

# row MEASUREMENT VALUE [CPU-SECONDS] [GOAL]
row() { printf '%-34s %16s %9s   %s\n' "$1" "$2" "${3:-}" "${4:-}"; }
tp() { row "$1 (MB/s)" "${MBS[$2]}" "${CPU[$2]}" "${3:-}"; }
echo
echo "bunker engine benchmark: $(mib "$BYTES") mixed input (1/2 dump text, 1/4 random, 1/4 zeros), $(nproc) cores"
row "measurement" "value" "cpu s" "goal"
row "----------------------------------" "----------------" "---------" "--------------------"
tp "zstd -T0 -3" zstd
tp "bunker backup, first" bunker_backup
tp "restic backup, first" restic_backup
tp "bunker backup, unchanged" bunker_rebackup "$(verdict "${MBS[bunker_rebackup]}" 1000 ge) >= 1000"
tp "bunker dump" bunker_dump
tp "restic dump" restic_dump
row "ratio backup bunker/restic" "$R_BACKUP" "" "$(verdict "$R_BACKUP" 2.0 ge) >= 2.0"
row "ratio backup bunker/zstd" "$R_ZSTD" "" "$(verdict "$R_ZSTD" 0.75 ge) >= 0.75"
row "ratio dump bunker/restic" "$R_DUMP" "" "$(verdict "$R_DUMP" 2.0 ge) >= 2.0"
tp "recipients backup, first" rcpt_backup
tp "recipients backup, unchanged" rcpt_rebackup
tp "recipients dump (identity)" rcpt_dump
row "ratio backup recipients/password" "$(ratio "${MBS[rcpt_backup]}" "${MBS[bunker_backup]}")"
row "ratio dump recipients/password" "$(ratio "${MBS[rcpt_dump]}" "${MBS[bunker_dump]}")"
row "repo size recipients (du -sb)" "$(mib "$RCPT_DU")"
row "recipients dump round trip" "$RCPT_ROUNDTRIP"
for l in bunker_backup bunker_rebackup bunker_dump; do
    row "peak RSS $l" "$(awk -v k="${RSS[$l]}" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
done
row "peak RSS bunker (max)" "$PEAK_MIB MiB" "" "$(verdict "$PEAK_MIB" 256 le) <= 256 MiB"
row "peak RSS restic backup / zstd" "$(awk -v a="${RSS[restic_backup]}" -v b="${RSS[zstd]}" 'BEGIN { printf "%.0f / %.0f MiB", a / 1024, b / 1024 }')"
row "repo size bunker (du -sb)" "$(mib "$BUNKER_DU")"
row "repo size restic (du -sb)" "$(mib "$RESTIC_DU")"
row "zstd -3 output size" "$(mib "$ZSTD_SIZE")"
row "bunker dump round trip" "$ROUNDTRIP"
# Kernel writeback of the repositories counts here too (~10% on an idle machine).
row "CPU s not ours (others, kernel)" "$OTHER of $AVAIL" "" "$(awk -v o="$OTHER" -v a="$AVAIL" 'BEGIN { if (o > 0.15 * a) print "busy machine? wall-clock numbers may be skewed" }')"
exit 0
