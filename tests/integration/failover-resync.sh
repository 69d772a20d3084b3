#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Failover after a resync that replaced key objects on the further token
# (review of issue 17): the loop caches B's key handles per session, and a
# sync runs in another session (the probe thread's), so a handle found in
# the first outage may name a destroyed object in the second one. A key
# purged and made again on A (same name, new material) makes the sync
# destroy B's old objects and copy the new ones; the next failover must use
# the new ones (tokenset_objects_epoch() clears the cache). A is on
# tests/p11-fault, B on SoftHSM2, replication on ([backup] keys).
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
KEY=r

p11_fault_setup
token_init fr-b
token_init fr-a
backup_ceremony fr-a fr-b

kekd_config
conf_tokens module "$P11_FAULT_LIB" name a 1 backup "$TESTDIR" hsm.b "$SOFTHSM2_MODULE" fr-b
ok "kekd starts with A preferred and B" kekd_start

field() { token_field "$@"; }
is_field() { token_field_is "$@"; }
# outage: A fails every call until it is seen unavailable
outage() {
        fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
        wait_for 30 is_field a state unavailable
}
# recover: A answers again, and a wrap after that is served by A
recover() {
        fault_set ""
        wait_for 30 is_field a state active &&
                "$KEKCTL" wrap "$KEY" <"$TESTDIR/aek" >/dev/null 2>&1 && is_field a serving true
}

succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key $KEY created on A" create "$KEY"
ok "B in sync within 60 s" wait_for 60 token_in_sync b
head -c 32 /dev/urandom >"$TESTDIR/aek"

# A wrap on A first: it takes the version's lease of wrap budget, which needs the writer (tokens-ha.md, Limits).
KC_IN="$TESTDIR/aek" succeeds "a wrap on A (takes a lease)" wrap "$KEY"
ok "first outage: A is unavailable" outage
KC_IN="$TESTDIR/aek" succeeds "a wrap served by B (its handle of $KEY version 1 is cached)" wrap "$KEY"
cp "$TESTDIR/out" "$TESTDIR/blob1"
KC_IN="$TESTDIR/blob1" succeeds "... and its unwrap" unwrap
ok "B served them" test "$(field b failover_ops)" -ge 2
ok "A is back and serves" recover

succeeds "$KEY deleted on A" delete "$KEY"
succeeds "... purged" purge "$KEY"
succeeds "... and made again (new material, same name and version)" create "$KEY"
ok "B in sync again within 60 s (its old objects of $KEY replaced)" wait_for 60 token_in_sync b
before=$(field b failover_ops)
KC_IN="$TESTDIR/aek" succeeds "a wrap of the new $KEY on A (takes a lease)" wrap "$KEY"

ok "second outage: A is unavailable" outage
KC_IN="$TESTDIR/aek" succeeds "the first wrap of the new $KEY is served by B" wrap "$KEY"
cp "$TESTDIR/out" "$TESTDIR/blob2"
KC_IN="$TESTDIR/blob2" succeeds "... and its unwrap" unwrap
cmp -s "$TESTDIR/out" "$TESTDIR/aek"
is "... gives the AEK back" "$?" 0
ok "B served them" test "$(field b failover_ops)" -ge $((before + 2))
ok "A is back and serves" recover
KC_IN="$TESTDIR/blob2" succeeds "A unwraps what B wrapped under the new $KEY" unwrap
KC_IN="$TESTDIR/blob1" kc unwrap
ok "A refuses the purged key's blob" test "$KC_STATUS" -ne 0

# A key object generated on B by a holder of its PIN under a version's label and ID, in the
# generated form A's record names, beside B's restored copy. Failover looks in the record's
# form first, so it would take that object before the copy (and wrap AEKs that A cannot
# unwrap, or whose key a derive made known). The version must be refused there instead, or,
# if a sync removed the object first, served by the copy: no blob is ever made under it.
succeeds "key q created on A" create q
ok "B in sync within 60 s (it has q's restored copy)" wait_for 60 token_in_sync b
KC_IN="$TESTDIR/aek" succeeds "a wrap of q on A (takes a lease)" wrap q
pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label fr-b --login --pin "$(cat "$TESTDIR/pin")" \
        --keygen --key-type AES:32 --label q --id 00000001 --sensitive --private >"$TESTDIR/planted" 2>&1
is "a key is generated on B under q version 1, in the generated form" "$?" 0
kc check
contains "check names the two key objects of q version 1 on B" "$TESTDIR/out" \
        "token 'b': 2 key objects answer to key 'q' version 1"
ok "third outage: A is unavailable" outage
KC_IN="$TESTDIR/aek" kc wrap q
cp "$TESTDIR/out" "$TESTDIR/blob3"
q_status=$KC_STATUS
if [ "$q_status" -ne 0 ]; then
        contains "B refuses q version 1: HSM_UNAVAILABLE" "$TESTDIR/err" HSM_UNAVAILABLE
        ok "... without B being marked degraded for it" is_field b state active
else
        echo "# B served q: a sync removed the planted object before the outage, or B used it (A's unwrap below tells)"
fi
ok "A is back and serves" recover
if [ "$q_status" -eq 0 ]; then
        KC_IN="$TESTDIR/blob3" kc unwrap
        ok "A unwraps the blob B made of q: it is under the copy, not the planted key" cmp -s "$TESTDIR/out" "$TESTDIR/aek"
fi
kekd_stop
is "kekd stops cleanly" "$KEKD_STATUS" 0
done_testing
