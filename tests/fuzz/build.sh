#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# into BUILDDIR/tests/fuzz, and with "run SECONDS" runs each for that long on
# its seed corpus, failing on the first crash. Used by "make fuzz" and CI.
#   tests/fuzz/build.sh SRCDIR BUILDDIR [run SECONDS | corpus]
# fuzz-dispatch runs the daemon's own sources, compiled here with the fuzzer's
# instrumentation, on the mock HSM tests/mock-p11 (built as mock-p11.so next
# to it, with ASan and UBSan, no coverage). Which daemon sources, compiler
# flags and libraries: "make fuzz" passes libkekd's and libkekproto's from
# Makefile.am in FUZZ_DAEMON_SOURCES, FUZZ_DAEMON_CFLAGS and FUZZ_DAEMON_LIBS,
# so files added there are picked up; run by hand, every .c of pkcs11/,
# daemon/ (but kekd.c), common/ and proto/ with the packages' pkg-config flags.
# FUZZ_DISPATCH_SECONDS, if set, is how long fuzz-dispatch runs instead of SECONDS
# (it does 15-150x fewer inputs a second than the others). "corpus" rewrites
# SRCDIR/tests/fuzz/corpus-dispatch with gen-corpus-dispatch.
set -eu
src=$1
build=$2
out="$build/tests/fuzz"
mkdir -p "$out"
CLANG=${CLANG:-clang}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$src -I$build -I$build/proto"
libs="$(pkg-config --libs libprotobuf-c libcrypto inih)"
common="$src/proto/blob.c $src/proto/frame.c $src/proto/wirecheck.c $src/common/kekerr.c $src/common/secret.c $build/proto/kek.pb-c.c"
for t in blob frame; do
        # shellcheck disable=SC2086
        $CLANG $flags -o "$out/fuzz-$t" "$src/tests/fuzz/fuzz-$t.c" $common $libs
done

# The mock HSM: a plain shared object p11-kit can load; ASan-instrumented (the
# fuzzer provides the runtime) so its copies into kekd's buffers are checked.
# shellcheck disable=SC2046,SC2086
$CLANG -g -O1 -fPIC -shared -fvisibility=hidden $san -Wall -Wextra -Wno-unused-parameter \
        $(pkg-config --cflags p11-kit-1 libcrypto) -o "$out/mock-p11.so" "$src/tests/mock-p11/mock-p11.c" \
        $(pkg-config --libs libcrypto) -lpthread

# The daemon's sources; a generated file (proto/kek.pb-c.c) is taken from the build tree.
daemon_srcs=""
if [ -n "${FUZZ_DAEMON_SOURCES:-}" ]; then
        for f in $FUZZ_DAEMON_SOURCES; do
                case $f in
                *.c) if [ -f "$build/$f" ]; then daemon_srcs="$daemon_srcs $build/$f"; else daemon_srcs="$daemon_srcs $src/$f"; fi ;;
                esac
        done
        daemon_cflags=${FUZZ_DAEMON_CFLAGS:-}
        daemon_libs=${FUZZ_DAEMON_LIBS:-}
else
        for f in "$src"/pkcs11/*.c "$src"/daemon/*.c "$src"/common/*.c "$src"/proto/*.c; do
                case $f in
                */daemon/kekd.c | */proto/kek.pb-c.c) ;;
                *) daemon_srcs="$daemon_srcs $f" ;;
                esac
        done
        daemon_srcs="$daemon_srcs $build/proto/kek.pb-c.c"
        daemon_cflags=$(pkg-config --cflags p11-kit-1 libsystemd libprotobuf-c libcrypto inih)
        daemon_libs=$(pkg-config --libs p11-kit-1 libsystemd libprotobuf-c libcrypto inih)
fi
# conf.c names the mechanism profiles (pkcs11/hsm-crypt.c), so fuzz-config links the daemon's sources too.
# shellcheck disable=SC2086
$CLANG $flags $daemon_cflags -o "$out/fuzz-config" "$src/tests/fuzz/fuzz-config.c" $daemon_srcs $daemon_libs -ldl
# The backup file's parser (daemon/backup-file.c) needs record.c and what it links.
# shellcheck disable=SC2086
$CLANG $flags $daemon_cflags -o "$out/fuzz-backup" "$src/tests/fuzz/fuzz-backup.c" $daemon_srcs $daemon_libs -ldl
# shellcheck disable=SC2086
$CLANG $flags $daemon_cflags -DMOCK_P11_MODULE="\"$out/mock-p11.so\"" -o "$out/fuzz-dispatch" \
        "$src/tests/fuzz/fuzz-dispatch.c" $daemon_srcs $daemon_libs -ldl
# kek-kms-plugin (issue 19): HTTP/2 + gRPC input, when libnghttp2 is there and make built kms/api.pb-c.c
kms_targets=""
if pkg-config --exists libnghttp2 && [ -f "$build/kms/api.pb-c.c" ]; then
        # shellcheck disable=SC2086
        $CLANG $flags -o "$out/fuzz-kms" "$src/tests/fuzz/fuzz-kms.c" "$src"/kms/grpc.c "$src"/kms/service.c \
                "$src"/kms/h2.c "$src"/kms/pool.c "$build/kms/api.pb-c.c" "$src/common/secret.c" "$src/proto/blob.c" \
                $(pkg-config --cflags --libs libnghttp2 libprotobuf-c libcrypto) -lpthread
        kms_targets=kms
fi
echo "fuzz targets in $out"

if [ "${3:-}" = corpus ]; then
        # The same harness without libFuzzer, plus a main() that writes the seeds and replays them.
        # shellcheck disable=SC2086
        $CLANG -g -O1 $san -I$src -I$build -I$build/proto $daemon_cflags -DMOCK_P11_MODULE="\"$out/mock-p11.so\"" \
                -o "$out/gen-corpus-dispatch" "$src/tests/fuzz/gen-corpus-dispatch.c" $daemon_srcs $daemon_libs -ldl
        rm -rf "$src/tests/fuzz/corpus-dispatch"
        mkdir -p "$src/tests/fuzz/corpus-dispatch"
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$out/gen-corpus-dispatch" "$src/tests/fuzz/corpus-dispatch"
        exit 0
fi
[ "${3:-}" = run ] || exit 0
for t in blob config frame backup dispatch $kms_targets; do
        secs=$4
        [ "$t" = dispatch ] && secs=${FUZZ_DISPATCH_SECONDS:-$4}
        work="$out/work-$t"
        rm -rf "$work"
        cp -r "$src/tests/fuzz/corpus-$t" "$work"
        chmod -R u+w "$work"
        echo "==> fuzz-$t for $secs s"
        rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*
        status=0
        # Inputs up to kekd's default max_frame, so nesting as deep as a frame allows is reachable;
        # the dictionary has the Request's field tags (tests/fuzz/request.dict).
        len=4096 dict=""
        case $t in frame | dispatch) len=65536 dict="-dict=$src/tests/fuzz/request.dict" ;; esac
        # shellcheck disable=SC2086
        "$out/fuzz-$t" -max_total_time="$secs" -max_len=$len $dict -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$out/" "$work" >"$out/fuzz-$t.log" 2>&1 || status=$?
        grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+[[:space:]]+DONE|ERROR|SUMMARY" "$out/fuzz-$t.log" || true
        if [ $status -ne 0 ] || ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* >/dev/null 2>&1; then
                echo "fuzz-$t failed (exit $status); failing input and log in $out"
                tail -30 "$out/fuzz-$t.log"
                exit 1
        fi
done
