#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A stale further token serves nothing (docs/tokens-ha.md, "Stale"): it may
# hold an older state of a key, so serving from it could undo a change made
# on the preferred token. Token A (preferred) runs on tests/p11-fault, token B
# on SoftHSM2 holds A's keys (kekctl backup, then restore on a kekd of B
# alone), but the kekd of both has no [backup] wrapping keys: replication is
# off and B stays stale. Then every call to A fails with CKR_DEVICE_ERROR:
# a wrap must fail (HSM_UNAVAILABLE), never be run on B, although B is
# active and holds the key object. failover.sh shows the same setup, with
# replication on, serving from B.
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key
BK=$TESTDIR/backups
mkdir -p "$BK"
KEY=s0

p11_fault_setup
token_init fs-b
token_init fs-a
backup_ceremony fs-a fs-b

# config MODULE URI [KEYS]: kekd.conf for one token; with KEYS, the [backup] wrapping keys
config() {
        TOKEN_URI=$2
        kekd_config
        sed -i "s|^module = .*|module = $1|" "$CONF"
        printf '\n[backup]\ndirectory = %s\n' "$BK" >>"$CONF"
        [ -z "${3:-}" ] || printf 'wrapping_key = kekd backup\nunwrapping_key = kekd backup\n' >>"$CONF"
}

config "$P11_FAULT_LIB" pkcs11:token=fs-a keys
ok "kekd on A alone starts" kekd_start
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key $KEY created on A" create "$KEY"
succeeds "kekctl backup of A" backup --to a1
kekd_stop
config "$SOFTHSM2_MODULE" pkcs11:token=fs-b keys
ok "kekd on B alone starts" kekd_start
succeeds "kekctl restore on B" restore --from a1
contains "... the key and its version" "$TESTDIR/out" "Restored 1 keys, 1 versions."
kekd_stop

# One kekd, A preferred, B further, no wrapping keys: B is never synced.
config "$P11_FAULT_LIB" pkcs11:token=fs-a
conf_tokens name a 1 hsm.b "$SOFTHSM2_MODULE" fs-b
ok "kekd starts with A preferred and B" kekd_start

field() { token_field "$@"; }
is_field() { token_field_is "$@"; }
ok "B becomes active within 30 s" wait_for 30 is_field b state active
ok "... and is stale (replication is off)" is_field b stale true
head -c 32 /dev/urandom >"$TESTDIR/aek"
KC_IN="$TESTDIR/aek" succeeds "a wrap on A" wrap "$KEY"

fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
ok "A is unavailable within 30 s" wait_for 30 is_field a state unavailable
ok "B is still active" is_field b state active
served=0
for i in 1 2 3 4 5; do
        KC_IN="$TESTDIR/aek" kc wrap "$KEY"
        [ "$KC_STATUS" -ne 0 ] || served=$((served + 1))
done
is "no wrap served while A is down and B is stale" "$served" 0
contains "... they fail HSM_UNAVAILABLE" "$TESTDIR/err" "HSM_UNAVAILABLE"
is "B served no call for A" "$(field b failover_ops)" 0
ok "A serves (no token can)" is_field a serving true
ok "the fault really fired" grep -q "CKR_DEVICE_ERROR" "$FLOG"
fault_set ""
ok "A is active again within 30 s" wait_for 30 is_field a state active
KC_IN="$TESTDIR/aek" succeeds "a wrap on A again" wrap "$KEY"
kekd_stop
is "kekd stops cleanly" "$KEKD_STATUS" 0
done_testing
