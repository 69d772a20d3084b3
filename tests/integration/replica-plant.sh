#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A key object planted on a further token by a holder of its user PIN, under
# a key's label and the ID of a version that token does not record yet, must
# not become that version there (docs/tokens-ha.md, "Replicated"). Copies on
# a further token are in the restored form, which a key imported with
# C_CreateObject (value known to whoever imported it) matches too, so a sync
# must not adopt an object it did not copy itself: it copies every version
# that token's record does not name yet, replacing whatever is there. Shown
# end to end: a kekd on B alone wraps under version 2 after the sync, and the
# blob unwraps on A (under the planted key it would not).
. "$TESTLIB"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plays the PIN holder with it)"
        exit 0
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key

token_init rp-b
token_init rp-a
backup_ceremony rp-a rp-b

# conf_for URI [further]: kekd.conf on that token, with [hsm.b] on rp-b when asked
conf_for() {
        TOKEN_URI=$1
        kekd_config
        conf_tokens backup "$TESTDIR"
        [ -z "${2:-}" ] || conf_tokens name a 1 hsm.b "$SOFTHSM2_MODULE" rp-b
}
# plant FILE: the PIN holder imports FILE as an AES key under r's label and version 2's ID on B
plant() {
        pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label rp-b --login --pin "$(cat "$TESTDIR/pin")" \
                --write-object "$1" --type secrkey --key-type AES:32 --label r --id 00000002 \
                --private --sensitive --usage-decrypt >"$TESTDIR/planted" 2>&1
}
# r2_objects: how many key objects B holds under r version 2
r2_objects() {
        pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label rp-b --login --pin "$(cat "$TESTDIR/pin")" \
                --list-objects --type secrkey 2>/dev/null | grep -A1 "label: *r$" | grep -c "ID: *00000002"
}
# sync_b WHAT: a kekd on A with B further runs until B is in sync (WHAT: what the sync brings), then stops
sync_b() {
        conf_for pkcs11:token=rp-a further
        ok "kekd starts with A and B again" kekd_start
        ok "B in sync within 60 s ($1)" wait_for 60 token_in_sync b
        kekd_stop
}

conf_for pkcs11:token=rp-a further
ok "kekd starts with A preferred and B" kekd_start
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key r created" create r
ok "B in sync within 60 s (it records r version 1)" wait_for 60 token_in_sync b
kekd_stop

conf_for pkcs11:token=rp-a
ok "kekd on A alone starts" kekd_start
succeeds "r rotated to version 2 on A (B does not record it yet)" rotate r
kekd_stop

# The PIN holder imports a key of known value under r's label and version 2's ID on B.
head -c 32 /dev/urandom >"$TESTDIR/known"
plant "$TESTDIR/known"
is "a key of known value is planted on B as r version 2" "$?" 0
sync_b "it now records version 2"
is "B holds one key object of r version 2: the planted one was replaced, not kept beside the copy" "$(r2_objects)" 1

conf_for pkcs11:token=rp-b
ok "kekd on B alone starts" kekd_start
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap r --context c <"$TESTDIR/aek" >"$TESTDIR/blob"
is "B wraps under r" "$?" 0
is "... under version 2" "$(od -An -tu1 -j 6 -N1 "$TESTDIR/blob" | tr -d ' ')" 2
kekd_stop

conf_for pkcs11:token=rp-a
ok "kekd on A alone starts" kekd_start
"$KEKCTL" unwrap --context c <"$TESTDIR/blob" >"$TESTDIR/out" 2>"$TESTDIR/err"
is "A unwraps B's version-2 blob: B's version 2 is A's key material, not the planted key" "$?" 0
ok "... to the same AEK" cmp -s "$TESTDIR/aek" "$TESTDIR/out"
kekd_stop

# A second key of known value planted beside the version B records: nothing tells which of the
# two is version 2, so neither is used (fail closed: wraps under a key whose value the PIN holder
# knows, or that the PIN holder later destroys, would be AEKs exposed or lost), and check names it.
head -c 32 /dev/urandom >"$TESTDIR/known2"
plant "$TESTDIR/known2"
is "a second key of known value is planted on B beside its recorded version 2" "$?" 0
conf_for pkcs11:token=rp-b
ok "kekd on B alone starts" kekd_start
KC_IN="$TESTDIR/aek" refused HSM_UNAVAILABLE "B does not wrap under version 2 with two objects answering to it" \
        wrap r --context c
KC_IN="$TESTDIR/blob" refused HSM_UNAVAILABLE "B does not unwrap version 2 either (transient, not a revocation)" \
        unwrap --context c
kc check
ok "check fails on B" test "$KC_STATUS" -ne 0
contains "check names the version with two key objects" "$TESTDIR/out" "key 'r' version 2: more than one key object"
kekd_stop

# With B preferred and A further, the refusals are the version's, not B's: B is not marked degraded
# (which sends every key's requests to A, or to no token, until a probe) each time a client asks.
TOKEN_URI=pkcs11:token=rp-b
kekd_config
conf_tokens name b 1 hsm.a "$SOFTHSM2_MODULE" rp-a
: >"$TESTDIR/kekd.log"
ok "kekd starts with B preferred and A" kekd_start
KC_IN="$TESTDIR/aek" refused HSM_UNAVAILABLE "B still does not wrap under version 2" wrap r --context c
KC_IN="$TESTDIR/blob" refused HSM_UNAVAILABLE "... nor unwrap" unwrap --context c
grep "degraded" "$TESTDIR/kekd.log" | sed 's/^/#   /'
grep -q "Token 'b' is degraded" "$TESTDIR/kekd.log"
is "the refusals do not mark B degraded: its other versions and keys serve on as before" "$?" 1
kekd_stop

# The next sync from A copies version 2 over both (a duplicate beside a recorded copy is not a whole
# copy), so B serves it again without anyone having to find the planted object by hand.
sync_b "version 2 copied again over both"
is "the sync left B one key object of r version 2, not two" "$(r2_objects)" 1
conf_for pkcs11:token=rp-b
ok "kekd on B alone starts" kekd_start
"$KEKCTL" unwrap --context c <"$TESTDIR/blob" >"$TESTDIR/out" 2>"$TESTDIR/err"
is "B unwraps the version-2 blob again" "$?" 0
ok "... to the same AEK" cmp -s "$TESTDIR/aek" "$TESTDIR/out"
kekd_stop
done_testing
