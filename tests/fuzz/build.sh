#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# into BUILDDIR/tests/fuzz, and with "run SECONDS" runs each for that long on
# its seed corpus, failing on the first crash. Used by "make fuzz" and CI.
#   tests/fuzz/build.sh SRCDIR BUILDDIR [run SECONDS]
set -eu
src=$1
build=$2
out="$build/tests/fuzz"
mkdir -p "$out"
CLANG=${CLANG:-clang}
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$src -I$build -I$build/proto"
libs="$(pkg-config --libs libprotobuf-c libcrypto inih)"
common="$src/proto/blob.c $src/proto/frame.c $src/common/kekerr.c $src/common/secret.c $build/proto/kek.pb-c.c"
for t in blob config frame; do
        extra=""
        [ "$t" = config ] && extra="$src/daemon/conf.c"
        # shellcheck disable=SC2086
        $CLANG $flags -o "$out/fuzz-$t" "$src/tests/fuzz/fuzz-$t.c" $common $extra $libs
done
echo "fuzz targets in $out"
[ "${3:-}" = run ] || exit 0
for t in blob config frame; do
        work="$out/work-$t"
        rm -rf "$work"
        cp -r "$src/tests/fuzz/corpus-$t" "$work"
        echo "==> fuzz-$t for $4 s"
        rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*
        status=0
        "$out/fuzz-$t" -max_total_time="$4" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$out/" "$work" >"$out/fuzz-$t.log" 2>&1 || status=$?
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|SUMMARY" "$out/fuzz-$t.log" || true
        if [ $status -ne 0 ] || ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* >/dev/null 2>&1; then
                echo "fuzz-$t failed (exit $status); failing input and log in $out"
                tail -30 "$out/fuzz-$t.log"
                exit 1
        fi
done
