#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A key object on a further token that the token did not generate (CKA_LOCAL
# FALSE: derived, its value known to its maker) in a generated form, in place
# of the copy of a version that token's record names. kekd refuses such an
# object (pkcs11/hsm.h), so it is no copy: the next sync copies the version
# again over it, as it does over a duplicate (replica-plant.sh), instead of
# keeping it as the version's copy while reporting the token in sync. Shown
# end to end: after the sync a kekd on B alone unwraps a blob A made.
. "$TESTLIB"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plays the PIN holder with it)"
        exit 0
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key

token_init rl-b
token_init rl-a
backup_ceremony rl-a rl-b

# conf_for URI [further]: kekd.conf on that token, with [hsm.b] on rl-b when asked
conf_for() {
        TOKEN_URI=$1
        kekd_config
        conf_tokens backup "$TESTDIR"
        [ -z "${2:-}" ] || conf_tokens name a 1 hsm.b "$SOFTHSM2_MODULE" rl-b
}
p11b() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label rl-b --login --pin "$(cat "$TESTDIR/pin")" "$@"; }
# r1_objects: how many key objects B holds under r version 1
r1_objects() { p11b --list-objects --type secrkey 2>/dev/null | grep -A1 "label: *r$" | grep -c "ID: *00000001"; }

conf_for pkcs11:token=rl-a further
ok "kekd starts with A preferred and B" kekd_start
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key r created" create r
ok "B in sync within 60 s (it records r version 1)" wait_for 60 token_in_sync b
kekd_stop
head -c 32 /dev/urandom >"$TESTDIR/aek"
conf_for pkcs11:token=rl-a
ok "kekd on A alone starts" kekd_start
"$KEKCTL" wrap r --context c <"$TESTDIR/aek" >"$TESTDIR/blob"
is "A wraps under r version 1" "$?" 0
kekd_stop

# The PIN holder of B destroys B's copy of version 1 and derives a key of known value in its place.
p11b --delete-object --type secrkey --label r --id 00000001 >"$TESTDIR/deleted" 2>&1
is "B's copy of r version 1 is destroyed" "$?" 0
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" pkcs11:token=rl-b "$TESTDIR/pin" --plant-derived r 1 >"$TESTDIR/plant" 2>&1
is "a key is derived on B under r version 1's label and ID" "$?" 0
contains "... not local" "$TESTDIR/plant" "always_sensitive=1 never_extractable=1 local=0"

conf_for pkcs11:token=rl-a further
ok "kekd starts with A and B again" kekd_start
ok "B in sync within 60 s" wait_for 60 token_in_sync b
kekd_stop
is "B holds one key object of r version 1" "$(r1_objects)" 1

conf_for pkcs11:token=rl-b
ok "kekd on B alone starts" kekd_start
KC_IN="$TESTDIR/blob"
kc unwrap --context c
is "B unwraps A's version-1 blob: the sync copied the version again over the derived key" "$KC_STATUS" 0
ok "... to the same AEK" cmp -s "$TESTDIR/aek" "$TESTDIR/out"
kc check
is "check finds B consistent" "$KC_STATUS" 0
kekd_stop
done_testing
