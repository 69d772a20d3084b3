#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# "make memcheck": valgrind memcheck over our own C code, in four parts:
#   unit     tests/unit/test-{frame,blob,config,dispatch,cryptopool}, each under valgrind;
#   kekd     integration tests with kekd under valgrind (lib.sh's KEKD_WRAPPER);
#   kekctl   errors.sh with kekctl (all its commands) under valgrind as well;
#   libkek   integration/libkek.sh with tests/libkek-test (libkek) under
#            valgrind against a kekd under valgrind.
# Every process writes its own log (--log-file=...%p), because lib.sh's
# kekd_stop and the tests swallow exit statuses. A part fails when its test
# fails or any log reports an error: an error marker (written as soon as
# valgrind sees the error, so a kekd killed with -9 still counts), an
# "ERROR SUMMARY" above 0 or a "definitely lost" above 0. Timing checks of
# the tests run as they are, so only tests that pass under valgrind's
# slowdown are chosen (tests/load/memcheck.sh --help lists them).
#
#   memcheck.sh SRCDIR BUILDDIR SOFTHSM2_MODULE
#
# Environment: MEMCHECK_DIR (the logs; default a temp dir, removed after a
# clean run, kept after a failure), MEMCHECK_PARTS (default "unit kekd kekctl
# libkek"), MEMCHECK_TESTS and MEMCHECK_KEKCTL_TESTS (integration tests of
# the kekd and kekctl parts, names without .sh), MEMCHECK_TIMEOUT (seconds per
# test, default 600), VALGRIND (default valgrind; valgrind itself also reads
# VALGRIND_OPTS). A suppressions file tests/load/valgrind.supp is used if it
# exists; none is needed today.
set -u

MEMCHECK_TESTS_DEFAULT="roundtrip sessions-roundtrip lifecycle multinode crash limits kekstore systemd fault"
MEMCHECK_KEKCTL_TESTS_DEFAULT="errors"

if [ $# -ne 3 ] || [ "$1" = --help ]; then
        echo "usage: memcheck.sh SRCDIR BUILDDIR SOFTHSM2_MODULE" >&2
        echo "  kekd part: $MEMCHECK_TESTS_DEFAULT; kekctl part: $MEMCHECK_KEKCTL_TESTS_DEFAULT" >&2
        exit 2
fi
srcdir=$1
builddir=$2
SOFTHSM2_MODULE=$3
parts=${MEMCHECK_PARTS:-unit kekd kekctl libkek}
kekd_tests=${MEMCHECK_TESTS:-$MEMCHECK_TESTS_DEFAULT}
kekctl_tests=${MEMCHECK_KEKCTL_TESTS:-$MEMCHECK_KEKCTL_TESTS_DEFAULT}
test_timeout=${MEMCHECK_TIMEOUT:-600}
valgrind=${VALGRIND:-valgrind}

# plain_path PATH: fails for what cannot go unquoted into KEKD_WRAPPER (split
# by lib.sh) and into the generated wrapper scripts
plain_path() {
        case $1 in
        *[!A-Za-z0-9_./+,:=@%-]*)
                echo "memcheck: paths with spaces, quotes or glob characters are not supported: '$1'" >&2
                return 1
                ;;
        esac
        return 0
}
plain_path "$srcdir" && plain_path "$builddir" && plain_path "${MEMCHECK_DIR:-}" || exit 2
if ! command -v "$valgrind" >/dev/null 2>&1; then
        echo "memcheck: $valgrind not found (apt-get install valgrind)" >&2
        exit 1
fi
for f in daemon/kekd kekctl/kekctl tests/kek-raw tests/test-attrs tests/libkek-test \
        tests/unit/test-frame tests/unit/test-blob tests/unit/test-config tests/unit/test-dispatch \
        tests/unit/test-cryptopool; do
        if [ ! -x "$builddir/$f" ]; then
                echo "memcheck: $builddir/$f is missing: run make memcheck (it builds the test programs)" >&2
                exit 1
        fi
done

if [ -n "${MEMCHECK_DIR:-}" ]; then
        dir=$MEMCHECK_DIR
        keep=yes
        mkdir -p "$dir" || exit 1
else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/kekd-memcheck.XXXXXX") || exit 1
        keep=""
fi
case $dir in
/*) ;;
*) dir=$(cd "$dir" && pwd) ;;
esac
plain_path "$dir" || exit 2

MARK_BEGIN=MEMCHECK-ERROR-BEGIN
vg="$valgrind --error-exitcode=99 --leak-check=full --track-origins=yes --num-callers=30"
vg="$vg --error-markers=$MARK_BEGIN,MEMCHECK-ERROR-END"
if [ -f "$srcdir/tests/load/valgrind.supp" ]; then
        vg="$vg --suppressions=$srcdir/tests/load/valgrind.supp"
fi

# As Makefile.am's AM_TESTS_ENVIRONMENT.
KEKD=$builddir/daemon/kekd
KEKCTL=$builddir/kekctl/kekctl
KEK_RAW=$builddir/tests/kek-raw
KEK_TEST_ATTRS=$builddir/tests/test-attrs
LIBKEK_TEST=$builddir/tests/libkek-test
KEKSTORE=$builddir/contrib/examples/kekstore
TESTLIB=$srcdir/tests/lib/lib.sh
MANDIR=$srcdir/man
KEKD_START_TIMEOUT=60
export KEKD KEKCTL KEK_RAW KEK_TEST_ATTRS LIBKEK_TEST KEKSTORE SOFTHSM2_MODULE TESTLIB MANDIR KEKD_START_TIMEOUT
# As tests/p11-fault/local.mk's (fault.sh).
P11_FAULT_LIB=$builddir/tests/p11-fault/.libs/p11-fault.so
P11_FAULT_MODULE=$SOFTHSM2_MODULE
P11_FAULT_CLIENT=$builddir/tests/p11-fault/fault-client
# fault.sh reports the kekd bugs it knows as TODO instead of failures: whether
# its random faults hit them depends on timing, and make check covers them.
FAULT_STRICT=${FAULT_STRICT:-0}
export P11_FAULT_LIB P11_FAULT_MODULE P11_FAULT_CLIENT FAULT_STRICT

failed=0
summary="$dir/summary"
: >"$summary"

# wrapper NAME LOGDIR PROGRAM [LIBTOOL]: an executable $dir/bin/NAME that execs PROGRAM under valgrind
wrapper() {
        mkdir -p "$dir/bin" "$2"
        {
                echo '#!/bin/sh'
                echo "exec ${4:+$4 --mode=execute} $vg --log-file=$2/$1.%p.log $3 \"\$@\""
        } >"$dir/bin/$1"
        chmod +x "$dir/bin/$1"
        echo "$dir/bin/$1"
}

# check_logs LABEL DIR PATTERN: scans DIR/PATTERN; adds a summary line; fails on any error
check_logs() {
        label=$1
        # shellcheck disable=SC2086 # PATTERN is a glob
        logs=$(ls "$2"/$3 2>/dev/null)
        n=0
        complete=0
        errors=0
        bad=""
        for f in $logs; do
                n=$((n + 1))
                e=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | head -1)
                m=$(grep -c "$MARK_BEGIN" "$f")
                if [ -n "$e" ]; then
                        complete=$((complete + 1))
                else
                        e=0
                fi
                # the summary counts the marked errors; without a summary only the markers tell
                [ "$m" -gt "$e" ] && e=$m
                if grep -q 'definitely lost: [1-9]' "$f" && [ "$e" -eq 0 ]; then
                        e=1
                fi
                if [ "$e" -gt 0 ]; then
                        errors=$((errors + e))
                        bad="$bad $f"
                fi
        done
        printf '%-34s %4d logs, %4d complete, %4d errors\n' "$label" "$n" "$complete" "$errors" >>"$summary"
        if [ "$n" -eq 0 ] || [ "$complete" -eq 0 ]; then
                echo "memcheck: FAIL: $label: no complete valgrind log in $2" >&2
                return 1
        fi
        if [ "$errors" -gt 0 ]; then
                echo "memcheck: FAIL: $label: $errors valgrind errors; logs:$bad" >&2
                for f in $bad; do
                        echo "memcheck: --- $f" >&2
                        grep -v '^--[0-9]*-- \|^==[0-9]*== *$' "$f" | head -60 >&2
                done
                return 1
        fi
        return 0
}

# tap_passed FILE STATUS: the test exited 0 with a plan and no failures (TODO ones are expected)
tap_passed() {
        [ "$2" -eq 0 ] && grep -q '^1\.\.[0-9]' "$1" && ! grep -v '^not ok.*# TODO' "$1" | grep -q '^not ok\|^Bail out!'
}

# run_tap LABEL TAPFILE COMMAND...: runs a TAP producer under a time limit
run_tap() {
        label=$1
        tap=$2
        shift 2
        t0=$(date +%s)
        timeout -k 10 "$test_timeout" "$@" >"$tap" 2>&1
        st=$?
        t1=$(date +%s)
        if grep -q '^1\.\.0 # SKIP' "$tap"; then
                echo "memcheck: $label: skipped: $(sed -n 's/^1\.\.0 # SKIP *//p' "$tap") ($((t1 - t0)) s)"
                return 2
        fi
        if tap_passed "$tap" "$st"; then
                echo "memcheck: $label: $(grep -c '^ok' "$tap") checks passed ($((t1 - t0)) s)"
                return 0
        fi
        [ "$st" -eq 124 ] && echo "memcheck: $label: timed out after $test_timeout s" >&2
        echo "memcheck: FAIL: $label: exit $st ($((t1 - t0)) s); failed checks:" >&2
        grep -v '^not ok.*# TODO' "$tap" | grep -A4 '^not ok\|^Bail out!' | head -40 >&2
        tail -5 "$tap" | sed 's/^/memcheck:   | /' >&2
        return 1
}

start=$(date +%s)
echo "memcheck: logs in $dir"

for part in $parts; do
        case $part in
        unit)
                mkdir -p "$dir/unit"
                for t in test-frame test-blob test-config test-dispatch test-cryptopool; do
                        # shellcheck disable=SC2086 # $vg is a command line
                        run_tap "unit/$t" "$dir/unit/$t.tap" "$builddir/libtool" --mode=execute $vg \
                                --log-file="$dir/unit/$t.%p.log" "$builddir/tests/unit/$t" || failed=1
                        check_logs "unit/$t" "$dir/unit" "$t.*.log" || failed=1
                done
                ;;
        kekd | kekctl)
                if [ "$part" = kekd ]; then tests=$kekd_tests; else tests=$kekctl_tests; fi
                for t in $tests; do
                        d=$dir/$part/$t
                        if [ ! -f "$srcdir/tests/integration/$t.sh" ]; then
                                echo "memcheck: FAIL: $part/$t: no tests/integration/$t.sh" >&2
                                failed=1
                                continue
                        fi
                        if [ "$t" = fault ] && [ ! -f "$P11_FAULT_LIB" ]; then
                                echo "memcheck: FAIL: $part/$t: $P11_FAULT_LIB not built" >&2
                                failed=1
                                continue
                        fi
                        mkdir -p "$d"
                        if [ "$part" = kekctl ]; then
                                kc=$(wrapper "kekctl-$t" "$d" "$builddir/kekctl/kekctl")
                        else
                                kc=$builddir/kekctl/kekctl
                        fi
                        (
                                KEKD_WRAPPER="$vg --log-file=$d/kekd.%p.log"
                                KEKCTL=$kc
                                export KEKD_WRAPPER KEKCTL
                                run_tap "$part/$t" "$d/$t.tap" sh "$srcdir/tests/integration/$t.sh"
                        )
                        case $? in
                        0) ;;
                        2) continue ;;
                        *) failed=1 ;;
                        esac
                        check_logs "$part/$t: kekd" "$d" "kekd.*.log" || failed=1
                        if [ "$part" = kekctl ]; then
                                check_logs "$part/$t: kekctl" "$d" "kekctl-$t.*.log" || failed=1
                        fi
                done
                ;;
        libkek)
                d=$dir/libkek
                mkdir -p "$d"
                kd=$(wrapper kekd "$d" "$builddir/daemon/kekd")
                lt=$(wrapper libkek-test "$d" "$builddir/tests/libkek-test" "$builddir/libtool")
                (
                        KEKD=$kd
                        LIBKEK_TEST=$lt
                        export KEKD LIBKEK_TEST
                        run_tap "libkek/libkek" "$d/libkek.tap" sh "$srcdir/tests/integration/libkek.sh"
                ) || failed=1
                check_logs "libkek: libkek-test" "$d" "libkek-test.*.log" || failed=1
                check_logs "libkek: kekd" "$d" "kekd.*.log" || failed=1
                ;;
        *)
                echo "memcheck: unknown part '$part' (unit, kekd, kekctl, libkek)" >&2
                failed=1
                ;;
        esac
done

end=$(date +%s)
echo "memcheck: valgrind logs (complete: ended with a summary; the others were killed by the test or are forks that exec'd):"
sed 's/^/memcheck:   /' "$summary"
echo "memcheck: $((end - start)) s"
if [ "$failed" -ne 0 ]; then
        echo "memcheck: FAIL; logs kept in $dir" >&2
        exit 1
fi
echo "memcheck: PASS"
if [ -z "$keep" ]; then
        rm -rf -- "$dir"
fi
exit 0
