#!/usr/bin/env bash
# bench/run.sh BUILD [--quick] — runs ckey's benchmarks (make bench [QUICK=1]).
#
# Builds nothing: `make bench` builds first. Each program starts its own
# `ckey server --dev` on a free loopback port with a temporary data dir
# (/tmp/ckey-bench-srv-*) and stops and removes it at the end; baselines
# that need files use /tmp/ckey-bench-* and remove them too. JSON lines
# {"name","value","unit","baseline","ratio"} go to stdout and to
# BUILD/bench-results.jsonl; a table goes to stderr. See bench/README.md.
set -euo pipefail

BUILD=${1:?usage: bench/run.sh BUILD [--quick]}
QUICK=${2:-}
BUILD=$(cd "$BUILD" && pwd)
export CK_BIN="$BUILD/ckey"
[ -x "$CK_BIN" ] || { echo "bench: $CK_BIN not built (run make bench)" >&2; exit 1; }
OUT="$BUILD/bench-results.jsonl"
: >"$OUT"

status=0
for b in bench_unwrap bench_mail bench_reencrypt bench_files; do
    exe="$BUILD/bench/$b"
    if [ ! -x "$exe" ]; then
        echo "bench: $exe not built" >&2
        status=1
        continue
    fi
    echo "== $b $QUICK" >&2
    start=$SECONDS
    if ! "$exe" $QUICK | tee -a "$OUT"; then
        echo "bench: $b failed" >&2
        status=1
    fi
    echo "   ($((SECONDS - start)) s)" >&2
done

# The table of everything, from the JSON lines.
{
    echo
    printf '%-34s %12s %-8s %12s %8s\n' name value unit baseline ratio
    sed -E 's/^\{"name":"([^"]*)","value":([^,]*),"unit":"([^"]*)","baseline":([^,]*),"ratio":([^}]*)\}$/\1 \2 \3 \4 \5/' "$OUT" |
        while read -r n v u bl r; do
            printf '%-34s %12s %-8s %12s %8s\n' "$n" "$v" "$u" "$bl" "$r"
        done
    echo "results: $OUT ($SECONDS s in all)"
} >&2
exit $status
