#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Key lifecycle with Managed-HSM semantics through a real kekd: rotation (old
# versions keep unwrapping), rewrap, disable/enable of keys and versions,
# the recoverable-vault rule, soft delete, recover, purge before and after the
# purge date (moved clock), one-way purge protection, usage counters, and
# wrap-budget rotation. Every refusal is checked with its error code.
. "$TESTLIB"

if ! "$KEKD" --version | grep -q test-clock; then
        echo "1..0 # SKIP kekd built without --enable-test-clock"
        exit 0
fi
KEKD_TEST_CLOCK_FILE="$TESTDIR/clock"
export KEKD_TEST_CLOCK_FILE
echo 0 >"$KEKD_TEST_CLOCK_FILE"

ALLOW_UNRECOVERABLE=no
# Manual operations first, with kekd's own timer out of the way (it would purge
# and rotate by itself when the clock moves); the timer is tested further down.
REFRESH_INTERVAL=3600
token_init lifecycle
kekd_config
ok "kekd starts" kekd_start

# jget KEY: a top-level scalar from kekctl --json output in $TESTDIR/out
jget() {
        sed -n "s/^  \"$1\":\(.*\)$/\1/p" "$TESTDIR/out" | head -1 | tr -d ' ",'
}
aek() {
        head -c 32 /dev/urandom >"$TESTDIR/$1"
}
wrap_to() {
        "$KEKCTL" wrap "$1" --context "$2" <"$TESTDIR/$3" >"$TESTDIR/$4" 2>"$TESTDIR/err"
}
unwraps_to() {
        "$KEKCTL" unwrap --context "$1" <"$TESTDIR/$2" 2>"$TESTDIR/err" | cmp -s - "$TESTDIR/$3"
}

succeeds "create acct" create acct
aek a1

# --- the vault must be recoverable before keys are served for wrap ---------------
kc --json vault
is "a new vault has soft delete with 90 days retention" "$(jget retention_days)" 90
is "a new vault has no purge protection" "$(jget purge_protection)" false
refused KEY_NOT_RECOVERABLE "wrap while the vault is not recoverable" wrap acct <"$TESTDIR/a1"
kc --json version acct
is "get-key-version says not recoverable" "$(jget recoverable)" false
kc vault --retention-days 5
is "kekctl refuses a retention below 7 days" "$KC_STATUS" 2
succeeds "purge protection switched on" vault --purge-protection on --retention-days 30
kc --json vault
is "retention is now 30 days" "$(jget retention_days)" 30
refused PERMISSION_DENIED "purge protection cannot be switched off" vault --purge-protection off
refused PERMISSION_DENIED "retention cannot be shortened under purge protection" vault --retention-days 10
kc --json vault
is "purge protection is still on" "$(jget purge_protection)" true
kc --json version acct
is "get-key-version now says recoverable" "$(jget recoverable)" true

# --- rotation ----------------------------------------------------------------------
ok "wrap under version 1" wrap_to acct c1 a1 b1
for i in 1 2 3; do
        succeeds "rotation $i" rotate acct
done
kc --json version acct
is "after 3 rotations the current version is 4" "$(jget current_version)" 4
aek a4
ok "wrap follows the current version" wrap_to acct c4 a4 b4
is "the new blob names version 4" "$(od -An -tu1 -j 9 -N1 "$TESTDIR/b4" | tr -d ' ')" 4
ok "the version 1 blob still unwraps after 3 rotations" unwraps_to c1 b1 a1
ok "the version 4 blob unwraps" unwraps_to c4 b4 a4
"$KEKCTL" wrap acct --key-version 2 --context c2 <"$TESTDIR/a1" >"$TESTDIR/b2"
is "a pinned wrap uses the pinned version" "$(od -An -tu1 -j 9 -N1 "$TESTDIR/b2" | tr -d ' ')" 2

# --- rewrap ------------------------------------------------------------------------
"$KEKCTL" rewrap --context c1 <"$TESTDIR/b1" >"$TESTDIR/b1r" 2>"$TESTDIR/err"
is "rewrap of a version 1 blob succeeds" "$?" 0
is "the rewrapped blob names the current version" "$(od -An -tu1 -j 9 -N1 "$TESTDIR/b1r" | tr -d ' ')" 4
ok "the rewrapped blob unwraps to the same AEK" unwraps_to c1 b1r a1
refused BLOB_INVALID "rewrap with the wrong context" rewrap --context c9 <"$TESTDIR/b1"

# --- usage -------------------------------------------------------------------------
kc --json show acct
ok "show reports wraps of version 4" grep -q '"wraps":1' "$TESTDIR/out"
ok "show reports unwraps of version 1" grep -q '"unwraps":2' "$TESTDIR/out"
kc show acct
contains "show prints the usage table" "$TESTDIR/out" "LAST USE"

# --- revocation --------------------------------------------------------------------
succeeds "disable version 1" disable acct --key-version 1
refused KEY_DISABLED "unwrap of a blob under a disabled version" unwrap --context c1 <"$TESTDIR/b1"
refused KEY_DISABLED "rewrap of a blob under a disabled version" rewrap --context c1 <"$TESTDIR/b1"
ok "other versions keep working" unwraps_to c4 b4 a4
succeeds "enable version 1" enable acct --key-version 1
ok "enable restores version 1 at once" unwraps_to c1 b1 a1
succeeds "disable the key" disable acct
refused KEY_DISABLED "wrap with a disabled key" wrap acct <"$TESTDIR/a1"
refused KEY_DISABLED "unwrap with a disabled key" unwrap --context c4 <"$TESTDIR/b4"
kc --json version acct
is "get-key-version reports disabled" "$(jget state)" disabled
succeeds "enable the key" enable acct
ok "enable restores service at once" unwraps_to c4 b4 a4
refused UNKNOWN_VERSION "disable of a version that does not exist" disable acct --key-version 9

# --- soft delete, recover, purge ---------------------------------------------------
succeeds "delete acct" delete acct
refused KEY_DELETED "wrap with a deleted key" wrap acct <"$TESTDIR/a1"
refused KEY_DELETED "unwrap with a deleted key" unwrap --context c4 <"$TESTDIR/b4"
refused KEY_DELETED "rotate a deleted key" rotate acct
refused KEY_DELETED "delete it again" delete acct
refused KEY_EXISTS "create under the name of a deleted key" create acct
kc --json version acct
is "get-key-version reports deleted" "$(jget state)" deleted
kc list
ok "list hides deleted keys" sh -c "! grep -q '^acct ' '$TESTDIR/out'"
kc list --deleted
contains "list --deleted shows it" "$TESTDIR/out" "acct "
kc --json list --deleted
ok "list --deleted gives its purge date" grep -q '"scheduled_purge_usec":[1-9]' "$TESTDIR/out"
succeeds "recover acct" recover acct
ok "all versions are back after recover" unwraps_to c1 b1 a1
kc --json version acct
is "recovered key is enabled and current version 4" "$(jget state):$(jget current_version)" enabled:4
refused INVALID_ARGUMENT "recover of a key that is not deleted" recover acct
refused INVALID_ARGUMENT "purge of a key that is not deleted" purge acct

succeeds "delete acct again" delete acct
refused PURGE_PROTECTED "purge before the scheduled date under purge protection" purge acct
echo $((29 * 86400)) >"$KEKD_TEST_CLOCK_FILE"
sleep 0.3
refused PURGE_PROTECTED "purge after 29 of 30 days" purge acct
echo $((30 * 86400 + 60)) >"$KEKD_TEST_CLOCK_FILE"
sleep 0.3
succeeds "purge after the scheduled date" purge acct
refused UNKNOWN_KEY "the purged key is gone" show acct
refused UNKNOWN_KEY "its blobs no longer unwrap" unwrap --context c4 <"$TESTDIR/b4"
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" acct >"$TESTDIR/attrs" 2>&1
contains "no key object of acct is left in the token" "$TESTDIR/attrs" "acct: no key object in the token"
succeeds "the name can be used again" create acct

# kekd purges expired deleted keys by itself: restart it with a 1 s timer
kekd_stop
REFRESH_INTERVAL=1
kekd_config
ok "kekd restarts with a 1 s refresh interval" kekd_start
succeeds "create gone" create gone
succeeds "delete gone" delete gone
echo $((61 * 86400)) >"$KEKD_TEST_CLOCK_FILE"
i=0
while [ $i -lt 50 ]; do
        kc --json list --deleted
        grep -q '"name":"gone"' "$TESTDIR/out" || break
        sleep 0.1
        i=$((i + 1))
done
ok "kekd purged the expired deleted key within its refresh interval" sh -c "! grep -q '\"name\":\"gone\"' '$TESTDIR/out'"

# --- rotation policy -----------------------------------------------------------------
succeeds "create budget with at most 10 wraps per version" create budget --max-wraps 10
fail=0
i=1
while [ $i -le 25 ]; do
        "$KEKCTL" wrap budget --context "n$i" <"$TESTDIR/a1" >"$TESTDIR/bb$i" 2>>"$TESTDIR/err" || fail=$((fail + 1))
        i=$((i + 1))
done
is "25 wraps succeed across rotations" "$fail" 0
kc --json show budget
cur=$(jget current_version)
ok "the wrap budget rotated the key (current version $cur >= 3)" test "$cur" -ge 3
over=$(grep -o '"wraps":[0-9]*' "$TESTDIR/out" | cut -d: -f2 | awk '$1 > 10' | wc -l)
is "no version did more than 10 wraps" "$over" 0
ok "a blob of the first version still unwraps" unwraps_to n1 bb1 a1
refused INVALID_ARGUMENT "a wrap pinned to a version past its budget" wrap budget --key-version 1 <"$TESTDIR/a1"
contains "... says the budget is used, not that the version is disabled" "$TESTDIR/err" "used its wrap budget"

succeeds "create aged with rotation after 1 day" create aged --rotate-after 1d
kc --json version aged
is "aged starts at version 1" "$(jget current_version)" 1
echo $((63 * 86400)) >"$KEKD_TEST_CLOCK_FILE"
i=0
while [ $i -lt 50 ]; do
        kc --json version aged
        [ "$(jget current_version)" = 2 ] && break
        sleep 0.1
        i=$((i + 1))
done
is "kekd rotated aged by itself after a day" "$(jget current_version)" 2
kc policy aged --rotate-after 36600d
is "kekctl refuses a rotation age beyond 100 years" "$KC_STATUS" 2
succeeds "policy: set a wrap budget only" policy aged --max-wraps 5000
kc --json show aged
is "... keeps the rotation age" "$(jget rotate_after_seconds):$(jget max_wraps)" 86400:5000
succeeds "policy switched to manual" policy aged --rotate-after 0

kc check
is "check finds the token consistent" "$KC_STATUS" 0
contains "check says so" "$TESTDIR/out" "consistent"
kekd_stop
done_testing
