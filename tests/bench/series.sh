#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kekbench in a series: the same rows N times, from one or more build trees
# taken in turn (run 1 of each tree, then run 2 of each ...), then the
# median and range of every row's ops/s and of its ratio column per tree.
# Why: on a shared VM the raw row alone moves by a third from one minute to
# the next (docs/performance.md), so one run's ratio says little and two
# builds compared in separate minutes say less; interleaving puts both under
# the same drift, and the medians are the figures to quote.
#
#   tests/bench/series.sh [-n RUNS] [-r ROWS] [-o OPS] [TREE...]
#
# TREE: a built checkout (default: this one), e.g. a worktree of the
# previous commit: git worktree add /tmp/old HEAD~1 && (cd /tmp/old &&
# scripts/build.sh). The environment (KEKBENCH_MODULE, P11_FAULT, ...) is
# passed to every run. Prints figures; asserts nothing.
set -euo pipefail

runs=6 rows=raw1,s16,s16-alone ops=20000
while getopts n:r:o: opt; do
        case $opt in
        n) runs=$OPTARG ;;
        r) rows=$OPTARG ;;
        o) ops=$OPTARG ;;
        *) echo "usage: $0 [-n RUNS] [-r ROWS] [-o OPS] [TREE...]" >&2; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- "$(cd "$(dirname "$0")/../.." && pwd)"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((i = 1; i <= runs; i++)); do
        for tree in "$@"; do
                # Each table row "| name | ops/s | p50 | ... | ratio |" becomes "tree<TAB>name<TAB>ops<TAB>ratio".
                (cd "$tree" && KEKD=daemon/kekd KEKCTL=kekctl/kekctl tests/bench/kekbench --ops "$ops" --only "$rows" 2>/dev/null) |
                        awk -F'|' -v t="$tree" -v i="$i" '
                                $2 ~ /^ (raw|kekd)/ {
                                        name = $2; gsub(/^ +| +$/, "", name)
                                        ops = $3; gsub(/ /, "", ops)
                                        ratio = $8; gsub(/^ +| +$/, "", ratio); sub(/ x .*/, "", ratio)
                                        printf "%s\t%s\t%s\t%s\n", t, name, ops, ratio
                                        printf "run %d %s: %s %s ops/s %s\n", i, t, name, ops, ratio > "/dev/stderr"
                                }' >>"$out"
        done
done

# Median and range per tree and row, in the order first seen.
awk -F'\t' '
        function median(list,    a, n, m, i, j, v) {
                n = split(list, a, " ")
                for (i = 2; i <= n; i++) { # insertion sort: mawk has no asort()
                        v = a[i] + 0
                        for (j = i - 1; j >= 1 && a[j] + 0 > v; j--)
                                a[j + 1] = a[j]
                        a[j + 1] = v
                }
                m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                return sprintf("%g (%g-%g, %d runs)", m, a[1], a[n], n)
        }
        {
                k = $1 SUBSEP $2
                if (!(k in ops)) order[++n] = k
                ops[k] = ops[k] " " $3
                if ($4 ~ /^[0-9.]+$/) ratio[k] = ratio[k] " " $4
        }
        END {
                for (j = 1; j <= n; j++) {
                        split(order[j], p, SUBSEP)
                        printf "%s | %s | ops/s %s", p[1], p[2], median(ops[order[j]])
                        if (order[j] in ratio) printf " | ratio %s", median(ratio[order[j]])
                        printf "\n"
                }
        }' "$out"
