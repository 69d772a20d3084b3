#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Losing a token (issue 17 item 2, docs/backup.md): 1000 AEKs wrapped across
# 3 versions of 10 keys on token A (backup mode trusted-wrap), one more key
# disabled; the SO's ceremony puts the shared AES backup key in A (public,
# wrap only, CKA_TRUSTED) and in B (private, unwrap only); kekctl backup;
# A's token directory deleted and its kekd stopped; a tampered, a truncated
# and a foreign-token (C: another backup key) restore are refused with their
# error and leave the target unchanged; kekctl restore on a fresh token B
# with a new kekd; 1000 of 1000 unwrap there, states, grants and versions as
# before, kekctl check clean. Then a version disabled after the backup: the
# restore over it is refused and names the difference; --replace restores
# and says so. Wrapping a KEK under a key that is not trusted is refused by
# the token (CKR_KEY_NOT_WRAPPABLE). Under dual control, backup and restore
# wait for a second officer (when the test runs as root with setpriv).
. "$TESTLIB"

TW=$(dirname "$KEK_TEST_ATTRS")/test-trusted-wrap
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key
SO_PIN=87654321
BK=$TESTDIR/backups
mkdir -p "$BK"
printf '%s\n' "$SO_PIN" >"$TESTDIR/so-pin"
chmod 0600 "$TESTDIR/so-pin"
head -c 32 /dev/urandom >"$TESTDIR/backup-key"     # the ceremony's shared key
head -c 32 /dev/urandom >"$TESTDIR/other-key"      # another ceremony's (token C)

# token LABEL: a fresh SoftHSM2 token in its own directory $TESTDIR/LABEL
token() {
        softhsm2_token "$TESTDIR/$1" "$1" "$TEST_PIN" "$SO_PIN" || { echo "Bail out! softhsm2-util failed"; exit 99; }
        printf '%s\n' "$TEST_PIN" >"$TESTDIR/pin"
        chmod 0600 "$TESTDIR/pin"
        TOKEN_URI="pkcs11:token=$1"
}
# serve: kekd on the current token, with the [backup] section
serve() {
        kekd_config
        conf_tokens backup "$BK"
        [ -z "${SERVE_MODULE:-}" ] || conf_tokens module "$SERVE_MODULE"
        kekd_start
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# keys_state: one line per key and version: name, key state, version, enabled, grants
keys_state() {
        for k in $(seq 0 10); do
                "$KEKCTL" show "k$k" --json | tr ',' '\n' | grep -E '"(state|id|enabled|current_version)"' | tr '\n' ' '
                "$KEKCTL" grants "k$k" --json | tr -d ' \n'
                echo
        done
}

# --- token A: the ceremony, keys, 1000 AEKs ----------------------------------------
token dra
KEKD_TRUST_KEY=$TRUST_KEY "$TRUST_KEY" "$SOFTHSM2_MODULE" dra "$TESTDIR/so-pin" --import-aes "kekd backup" \
        "$TESTDIR/backup-key" >"$TESTDIR/trust" 2>&1
is "the SO imports A's half of the backup key, trusted" "$?" 0
contains "... and the token reports it trusted" "$TESTDIR/trust" "'kekd backup' is trusted"
ok "kekd A starts" serve
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
for k in $(seq 0 10); do kc create "k$k"; done
succeeds "11 keys created" show k10
succeeds "a grant on k1 (uid 4242 may unwrap)" grant k1 user:4242 --ops unwrap
succeeds "k10 disabled" disable k10
KEYS="k0 k1 k2 k3 k4 k5 k6 k7 k8 k9"
t0=$(now)
# shellcheck disable=SC2086 # the key names are split on purpose
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 333 $KEYS >"$TESTDIR/w1" 2>&1
for k in $KEYS; do kc rotate "$k"; done
# shellcheck disable=SC2086
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 333 $KEYS >"$TESTDIR/w2" 2>&1
for k in $KEYS; do kc rotate "$k"; done
# shellcheck disable=SC2086
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 334 $KEYS >"$TESTDIR/w3" 2>&1
t1=$(now)
is "1000 AEKs wrapped under 3 versions of 10 keys" "$(wc -l <"$TESTDIR/blobs")" 1000
diag "wrapping 1000 AEKs with 2 rotations took $(elapsed "$t0" "$t1") s"
succeeds "version 3 of k2 is current" show k2 --json
contains "... current_version 3" "$TESTDIR/out" '"current_version":3'

# Exfiltration: a thief with the user PIN wraps a trusted-wrap KEK under a key of their own.
"$TW" "$SOFTHSM2_MODULE" dra "$TESTDIR/pin" k0 3 >"$TESTDIR/tw" 2>&1
contains "the token refuses to wrap a KEK under an untrusted key: CKR_KEY_NOT_WRAPPABLE" "$TESTDIR/tw" \
        "wrap-untrusted-aes CKR_KEY_NOT_WRAPPABLE"

# --- the backup -----------------------------------------------------------------------
kc backup --to ../x
is "a backup file outside the [backup] directory is refused (usage)" "$KC_STATUS" 2
"$KEK_RAW" "$SOCKET" frame:"$(printf '\272\002\006\012\004\056\056\057\170' | od -An -tx1 | tr -d ' \n')" \
        >"$TESTDIR/raw" 2>&1
contains "... and by kekd itself (a path with '/')" "$TESTDIR/raw" "error=INVALID_ARGUMENT"
t0=$(now)
succeeds "kekctl backup --to dr1" backup --to dr1
t1=$(now)
contains "... 11 keys, 30 versions of k0..k9 + 1 of k10" "$TESTDIR/out" "Backed up 11 keys, 31 versions to 'dr1'"
SIZE=$(stat -c %s "$BK/dr1")
diag "backup of 11 keys / 31 versions: $(elapsed "$t0" "$t1") s, $SIZE bytes"
ok "the file is mode 0600" [ "$(stat -c %a "$BK/dr1")" = 600 ]
refused INVALID_ARGUMENT "a backup never overwrites a file" backup --to dr1
keys_state >"$TESTDIR/state-a"
kc show k1 --json
cp "$TESTDIR/out" "$TESTDIR/k1-a"

# --- A is lost ------------------------------------------------------------------------
kekd_stop
rm -rf "$TESTDIR/dra/tokens"
ok "A's token directory is gone" [ ! -e "$TESTDIR/dra/tokens" ]

# Forged copies of the backup.
SIGNED=$((SIZE - 32))
cp "$BK/dr1" "$BK/tampered"
MID=$((SIZE / 2))
b=$(od -An -tu1 -j "$MID" -N1 "$BK/tampered" | tr -d ' ')
printf "$(printf '\\%03o' $(((b + 1) % 256)))" | dd of="$BK/tampered" bs=1 seek="$MID" conv=notrunc 2>/dev/null
ok "one byte flipped in the middle" sh -c "! cmp -s '$BK/dr1' '$BK/tampered'"
head -c "$SIGNED" "$BK/dr1" >"$BK/truncated"

# --- token C: another ceremony's key: the backup does not open there ---------------
token drc
"$TRUST_KEY" "$SOFTHSM2_MODULE" drc "$TESTDIR/pin" --import-aes-unwrap "kekd backup" "$TESTDIR/other-key" >/dev/null 2>&1
is "token C gets another backup key" "$?" 0
ok "kekd C starts" serve
refused BLOB_INVALID "restore on a token with another backup key is refused" restore --from dr1
contains "... saying it does not open there" "$TESTDIR/err" "does not open with this token's key 'kekd backup'"
succeeds "C is unchanged" list --json
is "... no keys" "$(grep -c '"name"' "$TESTDIR/out")" 0
kekd_stop

# --- token B: the DR token ------------------------------------------------------------
token drb
"$TRUST_KEY" "$SOFTHSM2_MODULE" drb "$TESTDIR/pin" --import-aes-unwrap "kekd backup" "$TESTDIR/backup-key" \
        >"$TESTDIR/trust-b" 2>&1
is "B's half of the backup key imported (private, unwrap only)" "$?" 0
ok "a new kekd on B starts" serve
refused BLOB_INVALID "a tampered backup (one byte) is refused" restore --from tampered
cat "$TESTDIR/err" | sed 's/^/#   /'
succeeds "B is unchanged" list --json
is "... no keys" "$(grep -c '"name"' "$TESTDIR/out")" 0
refused BLOB_INVALID "a truncated backup (no tag) is refused" restore --from truncated
contains "... as truncated" "$TESTDIR/err" "truncated"
succeeds "B is still unchanged" list --json
is "... no keys" "$(grep -c '"name"' "$TESTDIR/out")" 0
succeeds "B's check is clean before the restore" check

t0=$(now)
succeeds "kekctl restore --from dr1 on B" restore --from dr1
t1=$(now)
diag "restore of 11 keys / 31 versions: $(elapsed "$t0" "$t1") s"
contains "... 11 keys, 31 versions" "$TESTDIR/out" "Restored 11 keys, 31 versions."
"$KEK_DR" "$SOCKET" unwrap "$TESTDIR/blobs" >"$TESTDIR/u" 2>&1
contains "1000 of 1000 AEKs unwrap on B" "$TESTDIR/u" "unwrapped 1000 of 1000"
keys_state >"$TESTDIR/state-b"
ok "states, versions and grants as on A" cmp -s "$TESTDIR/state-a" "$TESTDIR/state-b"
succeeds "kekctl check on B is clean" check
contains "... consistent" "$TESTDIR/out" "The token is consistent with the key records."
succeeds "status on B" status
succeeds "show k2 on B" show k2 --json
ok "... its versions are marked restored, trusted-wrap kept" sh -c \
        "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"wrap_with_trusted\":true,\"restored\":true'"
succeeds "a new version on B" rotate k0
KC_IN=/dev/null kc show k0 --json
contains "... k0 version 4 is current" "$TESTDIR/out" '"current_version":4'

# --- a version disabled after the backup ------------------------------------------------
succeeds "k3 version 2 disabled after the backup" disable k3 --key-version 2
refused KEY_EXISTS "restore over existing keys is refused without --replace" restore --from dr1
contains "... and names the disabled version" "$TESTDIR/out" \
        "DIFFERENCE: key 'k3' version 2: disabled here, enabled in the backup"
contains "... and k0's version made since" "$TESTDIR/out" "DIFFERENCE: key 'k0' version 4: exists here, not in the backup (kept)"
succeeds "k3 version 2 is still disabled" show k3 --json
ok "... disabled" sh -c "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"id\":2,\"enabled\":false'"
succeeds "restore --replace" restore --from dr1 --replace
contains "... names the rollback" "$TESTDIR/out" "DIFFERENCE: key 'k3' version 2: disabled here, enabled in the backup"
contains "... restored" "$TESTDIR/out" "Restored 11 keys"
"$KEK_DR" "$SOCKET" unwrap "$TESTDIR/blobs" >"$TESTDIR/u2" 2>&1
contains "1000 of 1000 still unwrap" "$TESTDIR/u2" "unwrapped 1000 of 1000"
succeeds "check after --replace is clean" check
succeeds "k0 kept its version 4" show k0 --json
contains "... version 4 kept" "$TESTDIR/out" '"id":4'
succeeds "k3 version 2 enabled again, as in the backup" show k3 --json
ok "... enabled" sh -c "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"id\":2,\"enabled\":true'"

# --- B's restored versions can be backed up again (trusted-wrap kept) -----------------
"$TRUST_KEY" "$SOFTHSM2_MODULE" drb "$TESTDIR/so-pin" --import-aes "kekd backup" "$TESTDIR/backup-key" >/dev/null 2>&1
is "B gets the wrapping half too (the SO)" "$?" 0
kc backup --to dr2
is "a backup of B exits 1: k0's version 4, made on B in backup mode none, cannot leave" "$KC_STATUS" 1
contains "... it names that version" "$TESTDIR/out" \
        "NOT BACKED UP: key 'k0' version 4: never extractable (no backup path: rotate it in backup mode trusted-wrap)"
contains "... and B's 31 restored versions are in it (trusted-wrap kept)" "$TESTDIR/out" "Backed up 11 keys, 31 versions to 'dr2'"

# --- dual control -----------------------------------------------------------------------
succeeds "backup and restore under dual control" vault --dual-control backup,restore
contains "... shown by vault" "$TESTDIR/out" "backup,restore"
refused APPROVAL_REQUIRED "backup directly is refused" backup --to dr3
ok "... and wrote nothing" [ ! -e "$BK/dr3" ]
refused APPROVAL_REQUIRED "restore --replace directly is refused" restore --from dr1 --replace
succeeds "restore --dry-run needs no approval (it writes nothing)" restore --from dr1 --dry-run
succeeds "backup submitted for approval" request backup --to dr3
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
ok "... a request id" sh -c "echo '$ID' | grep -Eq '^[0-9a-f]{32}$'"
refused PERMISSION_DENIED "the submitter cannot approve its own backup" approve "$ID"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && getent group staff >/dev/null; then
        kekd_stop
        chmod 0711 "$TESTDIR"
        chmod 0777 "$BK"
        sed -i "s/^socket_mode = 0600$/socket_mode = 0660\nsocket_group = staff/" "$CONF"
        printf '\n[access]\nofficer_group = staff\n' >>"$CONF"
        ok "kekd B restarts with an officer group" kekd_start
        STAFF=$(getent group staff | cut -d: -f3)
        KC_AS="setpriv --reuid=1202 --regid=$STAFF --groups=$STAFF" kc approve "$ID"
        is "a second officer (uid 1202) approves it (exit 1: k0 version 4 is named as not backed up)" "$KC_STATUS" 1
        contains "... and kekd wrote the backup" "$TESTDIR/out" "Backed up 11 keys, 31 versions to 'dr3'"
        ok "... the file exists" [ -s "$BK/dr3" ]
else
        tap_n=$((tap_n + 1))
        echo "ok $tap_n # SKIP a second officer needs root and setpriv"
fi
kekd_stop

# --- a restore cut short after a key's objects, before its record: check clean, then again --
token dre
"$TRUST_KEY" "$SOFTHSM2_MODULE" dre "$TESTDIR/pin" --import-aes-unwrap "kekd backup" "$TESTDIR/backup-key" >/dev/null 2>&1
is "token E gets B's half of the backup key" "$?" 0
p11_fault_setup
SERVE_MODULE=$P11_FAULT_LIB
ok "kekd on E (through p11-fault) starts" serve
fault_set 'C_CreateObject:rv=CKR_DEVICE_ERROR:nth=4'
kc restore --from dr1
is "the restore fails when the 4th record cannot be written" "$KC_STATUS" 1
contains "... the fault fired" "$FLOG" "C_CreateObject CKR_DEVICE_ERROR"
sed 's/^/#   /' "$TESTDIR/err"
fault_set ""
succeeds "check after the cut-short restore is clean (objects without a record are no key)" check
contains "... consistent" "$TESTDIR/out" "The token is consistent with the key records."
kc list --json
is "... 3 keys were restored whole, the 4th not at all" "$(grep -c '"name"' "$TESTDIR/out")" 3
refused KEY_EXISTS "restoring again without --replace names the 3 keys there" restore --from dr1
succeeds "restore again with --replace" restore --from dr1 --replace
contains "... all 11 keys" "$TESTDIR/out" "Restored 11 keys, 31 versions."
"$KEK_DR" "$SOCKET" unwrap "$TESTDIR/blobs" >"$TESTDIR/u3" 2>&1
contains "1000 of 1000 unwrap on E" "$TESTDIR/u3" "unwrapped 1000 of 1000"
succeeds "check on E is clean" check
kekd_stop
done_testing
