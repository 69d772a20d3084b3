#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Load test driver ("make load"): starts kekd on a fresh SoftHSM2 token (the
# helpers of tests/lib/lib.sh: private temp dir, kekd remembered by PID and
# killed on exit), creates the keys, and runs tests/load/kekload against it
# with kekd's PID for the RSS samples and its log for the connection count.
# While kekload runs, one key is rotated every --rotate-every seconds (0: never)
# so wraps, rewraps and Watch events also cross rotations under load.
#
#   load.sh SRCDIR BUILDDIR SOFTHSM2_MODULE [--keys N] [--rotate-every S] [KEKLOAD OPTIONS...]
#
# Everything else is passed to kekload (--threads, --ops, --mix,
# --max-seconds, ...). Exit status: kekload's, or 1 when kekd did not start
# or did not exit cleanly afterwards.
set -u

if [ $# -lt 3 ]; then
        echo "usage: load.sh SRCDIR BUILDDIR SOFTHSM2_MODULE [--keys N] [--rotate-every S] [KEKLOAD OPTIONS...]" >&2
        exit 2
fi
srcdir=$1
builddir=$2
SOFTHSM2_MODULE=$3
shift 3

n_keys=4
rotate_every=30
max_seconds=600
# Options of our own are taken out; the rest is kept, in order, for kekload.
n_args=$#
i=0
while [ $i -lt "$n_args" ]; do
        a=$1
        shift
        i=$((i + 1))
        case $a in
        --keys | --rotate-every)
                if [ $# -eq 0 ]; then
                        echo "load.sh: $a needs a value" >&2
                        exit 2
                fi
                case $1 in
                '' | *[!0-9]*)
                        echo "load.sh: $a needs a number, got '$1'" >&2
                        exit 2
                        ;;
                esac
                if [ "$a" = --keys ]; then n_keys=$1; else rotate_every=$1; fi
                shift
                i=$((i + 1))
                ;;
        *)
                if [ "$a" = --max-seconds ] && [ $# -gt 0 ]; then
                        max_seconds=$1
                fi
                set -- "$@" "$a"
                ;;
        esac
done
if [ "$n_keys" -lt 1 ] || [ "$n_keys" -gt 64 ]; then
        echo "load.sh: --keys must be 1..64" >&2
        exit 2
fi

KEKD=$builddir/daemon/kekd
KEKCTL=$builddir/kekctl/kekctl
KEKLOAD=$builddir/tests/load/kekload
TESTLIB=$srcdir/tests/lib/lib.sh
export KEKD KEKCTL SOFTHSM2_MODULE TESTLIB
for f in "$KEKD" "$KEKCTL" "$KEKLOAD"; do
        if [ ! -x "$f" ]; then
                echo "load.sh: $f is missing; run make first" >&2
                exit 1
        fi
done

# shellcheck source=tests/lib/lib.sh
. "$TESTLIB"

ROTATOR_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
load_cleanup() {
        if [ -n "$ROTATOR_PID" ]; then
                kill "$ROTATOR_PID" 2>/dev/null
                wait "$ROTATOR_PID" 2>/dev/null
        fi
        cleanup
}
trap load_cleanup EXIT

# kekd_config logs at debug level: one line per connection (what kekload counts), none per request.
# kekd's production refresh interval (lib.sh's tests use 1 s): every refresh
# writes the usage counters of the keys in use to the token, and SoftHSM2
# keeps each replaced object in memory, so the interval sets that growth.
REFRESH_INTERVAL=${REFRESH_INTERVAL:-5}
token_init kekload
kekd_config
# kekload's connections (3 per client) all come from one uid: lift the per-uid
# cap (256 by default) to max_connections, when this kekd knows the setting.
cp "$CONF" "$TESTDIR/kekd.conf.base"
sed -i 's/^\[server\]$/[server]\nmax_connections_per_uid = 1024/' "$CONF"
if ! "$KEKD" -c "$CONF" --check-config >/dev/null 2>&1; then
        cp "$TESTDIR/kekd.conf.base" "$CONF"
fi
if ! kekd_start; then
        echo "load.sh: kekd did not start" >&2
        exit 1
fi

keys=""
k=0
while [ $k -lt "$n_keys" ]; do
        if ! "$KEKCTL" create "load-$k" >/dev/null 2>"$TESTDIR/err"; then
                echo "load.sh: kekctl create load-$k failed: $(cat "$TESTDIR/err")" >&2
                exit 1
        fi
        keys=${keys:+$keys,}load-$k
        k=$((k + 1))
done
echo "load.sh: kekd pid $KEKD_PID on a fresh token in $TESTDIR; keys $keys" >&2

# Rotations in the background, bounded in count by the run's own time cap;
# 1 s sleeps, so that nothing of it outlives the kill below by more than 1 s.
if [ "$rotate_every" -gt 0 ]; then
        (
                n=0
                while [ $n -lt $((max_seconds / rotate_every + 1)) ]; do
                        s=0
                        while [ $s -lt "$rotate_every" ]; do
                                sleep 1
                                s=$((s + 1))
                        done
                        "$KEKCTL" rotate "load-$((n % n_keys))" >/dev/null 2>>"$TESTDIR/rotate.err" ||
                                echo "load.sh: rotate load-$((n % n_keys)) failed" >&2
                        n=$((n + 1))
                done
        ) &
        ROTATOR_PID=$!
fi

start=$(date +%s)
"$KEKLOAD" --socket "$SOCKET" --kekd-pid "$KEKD_PID" --kekd-log "$TESTDIR/kekd.log" --keys "$keys" "$@"
status=$?
end=$(date +%s)

if [ -n "$ROTATOR_PID" ]; then
        kill "$ROTATOR_PID" 2>/dev/null
        wait "$ROTATOR_PID" 2>/dev/null
        ROTATOR_PID=""
fi
rotations=$("$KEKCTL" list 2>/dev/null | awk 'NR > 1 { n += $4 - 1 } END { print n + 0 }')
echo "load.sh: kekload exited $status after $((end - start)) s; $rotations rotations during the run"

if ! "$KEKCTL" check >"$TESTDIR/check" 2>&1; then
        echo "load.sh: FAIL: kekctl check after the load:" >&2
        sed 's/^/load.sh:   /' "$TESTDIR/check" >&2
        status=1
fi
kekd_stop TERM
if [ "${KEKD_STATUS:-1}" -ne 0 ]; then
        echo "load.sh: FAIL: kekd exited $KEKD_STATUS on SIGTERM after the load" >&2
        status=1
fi
if grep -q 'kekd\[\(error\|crit\|alert\|emerg\)\]' "$TESTDIR/kekd.log"; then
        echo "load.sh: kekd logged errors:" >&2
        grep 'kekd\[\(error\|crit\|alert\|emerg\)\]' "$TESTDIR/kekd.log" | head -20 | sed 's/^/load.sh:   /' >&2
        status=1
fi
exit $status
