#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Quick start, command 2: install packages, build, run the whole test suite
# (unit tests and integration tests against SoftHSM2). Ends with one line
# "N passed, N failed" counted from the TAP results.
set -u
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
scripts/build.sh || exit 1

make -j"$(nproc)" check >test-output.log 2>&1
status=$?
cat test-output.log
if [ $status -ne 0 ]; then
        for f in $(grep -l '^not ok\|^Bail out' tests/*.log tests/*/*.log 2>/dev/null); do
                echo "==== $f"
                cat "$f"
        done
fi
pass=$(sed -n 's/^# PASS: *\([0-9]*\)$/\1/p' test-output.log | tail -1)
fail=$(sed -n 's/^# FAIL: *\([0-9]*\)$/\1/p' test-output.log | tail -1)
error=$(sed -n 's/^# ERROR: *\([0-9]*\)$/\1/p' test-output.log | tail -1)
rm -f test-output.log
echo "${pass:-0} passed, $((${fail:-0} + ${error:-0})) failed"
exit $status
