#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Replication to a further token (issue 17 item 3; docs/tokens-ha.md): the
# preferred token A ([hsm], SoftHSM2) is the only writer; kekd copies its
# state to token B ([hsm.b], SoftHSM2 behind tests/p11-fault) on the probe
# thread, versions by trusted wrapping under the [backup] ceremony's keys.
#  1. 10 keys with 3 versions each on A (backup mode trusted-wrap): B becomes
#     in sync, kekctl check is clean, and a kekd on B alone unwraps the 100
#     blobs made on A (under all three versions);
#  2. a version disabled, a rotation, a key deleted and purged, a grant: B
#     follows each (the lag is printed); a kekd on B alone shows each;
#  3. every call to B fails (CKR_DEVICE_ERROR) while A changes (a key
#     disabled; a key purged and made again under the same name): B is
#     stale; lifted: B is resynchronised (the new key's versions, not the
#     old key's objects), in sync, check clean;
#  4. B's C_UnwrapKey made slow so a sync takes seconds: kekd killed (-9)
#     in the middle of a replication, and again in the middle of the
#     resync after restart; each time a kekd on B alone serves no half
#     key (check clean there, every key it lists unwraps its blobs); after
#     the last restart B gets in sync and check is clean; a copy that
#     takes 12 s pauses for the probes, so A is shown active all along;
#  5. without [backup] wrapping_key, replication is off: B stays stale and
#     status, the log and check say why.
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key
SO_PIN=87654321

p11_fault_setup
token_init kekd-b
token_init kekd-a
backup_ceremony kekd-a kekd-b

kekd_config
conf_tokens name a 1 hsm.b "$P11_FAULT_LIB" kekd-b backup "$TESTDIR"
# A kekd on B alone: its own socket and log, SoftHSM2 directly, no [hsm.b].
CONF_ALONE="$TESTDIR/alone.conf"
SOCK_ALONE="$TESTDIR/alone.sock"
sed -e "s|^token = pkcs11:token=kekd-a$|token = pkcs11:token=kekd-b|" -e "s|^socket = .*|socket = $SOCK_ALONE|" \
        -e '/^\[hsm\.b\]$/,$d' -e '/^name = a$/d' -e '/^probe_interval = 1$/d' "$CONF" >"$CONF_ALONE"

ok "kekd starts with A preferred and B" kekd_start

field() { token_field "$@"; }
is_stale() {
        [ "$(field b stale)" = true ]
}
now_ms() {
        echo $(($(date +%s%N) / 1000000))
}
# alone_start / alone_stop: a kekd on B alone (the main kekd must be stopped: one writer per token here)
alone_start() {
        "$KEKD" -c "$CONF_ALONE" 2>>"$TESTDIR/alone.log" &
        PID_B=$!
        i=0
        until "$KEKCTL" -s "$SOCK_ALONE" list >/dev/null 2>&1 || [ $i -ge 150 ]; do
                kill -0 "$PID_B" 2>/dev/null || break
                sleep 0.1
                i=$((i + 1))
        done
        "$KEKCTL" -s "$SOCK_ALONE" list >/dev/null 2>&1
}
alone_stop() {
        kill -TERM "$PID_B" 2>/dev/null
        pid_reap "$PID_B" 20
        PID_B=""
}
# ka ARGS...: kekctl against the kekd on B alone
ka() {
        KEKD_SOCKET=$SOCK_ALONE kc "$@"
}
# changed_to_sync DESCRIPTION KEKCTL-ARGS...: a change on A, then B in sync again (60 s); prints the lag
changed_to_sync() {
        desc=$1
        shift
        t0=$(now_ms)
        succeeds "$desc" "$@"
        ok "... B in sync again within 60 s" wait_for 60 token_in_sync b
        diag "lag from '$*' on A to B in sync (status polled every 0.1 s): $(($(now_ms) - t0)) ms"
}

# --- 1. ten keys of three versions, 100 blobs --------------------------------------
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
KEYS="k0 k1 k2 k3 k4 k5 k6 k7 k8 k9"
for k in $KEYS; do kc create "$k"; done
# shellcheck disable=SC2086 # the key names are split on purpose
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 34 $KEYS >"$TESTDIR/w1" 2>&1
for k in $KEYS; do kc rotate "$k"; done
# shellcheck disable=SC2086
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 33 $KEYS >"$TESTDIR/w2" 2>&1
for k in $KEYS; do kc rotate "$k"; done
# shellcheck disable=SC2086
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/blobs" 33 $KEYS >"$TESTDIR/w3" 2>&1
is "100 blobs under 3 versions of 10 keys on A" "$(wc -l <"$TESTDIR/blobs")" 100
t0=$(now_ms)
ok "B becomes in sync within 90 s" wait_for 90 token_in_sync b
diag "10 keys / 30 versions made -> B in sync seen after $(($(now_ms) - t0)) ms"
ok "the log says B is in sync" grep -q "Token 'b' is in sync with 'a'" "$TESTDIR/kekd.log"
ok "... having copied versions" grep -q "Replica: copied key 'k9' version 3" "$TESTDIR/kekd.log"
ok "A is never stale" test "$(field a stale)" = false
ok "B's synced_usec is set" test "$(field b synced_usec)" -gt 0
succeeds "kekctl check is clean" check
contains "... consistent" "$TESTDIR/out" "consistent"
kc status
contains "human status says B is in sync" "$TESTDIR/out" ", in sync since "
kc status --prometheus
contains "metrics: B not stale" "$TESTDIR/out" 'kekd_token_stale{token="b"} 0'
ok "metrics: syncs counted" grep -q 'kekd_token_syncs_total{token="b"} [1-9]' "$TESTDIR/out"
contains "metrics: sync failures" "$TESTDIR/out" 'kekd_token_sync_failures_total{token="b"} 0'

kekd_stop
is "kekd stops cleanly" "$KEKD_STATUS" 0
ok "a kekd on B alone starts" alone_start
"$KEK_DR" "$SOCK_ALONE" unwrap "$TESTDIR/blobs" >"$TESTDIR/u1" 2>&1
contains "100 of 100 blobs made on A unwrap on B alone" "$TESTDIR/u1" "unwrapped 100 of 100"
ka check
is "check on B alone is clean" "$KC_STATUS" 0
ka show k2 --json
contains "B's k2: version 3 current" "$TESTDIR/out" '"current_version":3'
ok "... its versions restored, trusted-wrap kept" sh -c \
        "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"wrap_with_trusted\":true,\"restored\":true'"
ka vault
contains "B has A's vault policy (backup mode trusted-wrap)" "$TESTDIR/out" "trusted-wrap"
alone_stop
ok "kekd starts again" kekd_start
ok "B in sync again after the restart (60 s)" wait_for 60 token_in_sync b

# --- 2. changes on A, B follows ------------------------------------------------------
changed_to_sync "k1 version 1 disabled" disable k1 --key-version 1
changed_to_sync "k2 rotated" rotate k2
changed_to_sync "k3 deleted" delete k3
changed_to_sync "k3 purged" purge k3
changed_to_sync "a grant on k4 (uid 4242 may unwrap)" grant k4 user:4242 --ops unwrap
ok "the preferred token was never stale" test "$(field a stale)" = false
succeeds "check clean" check
kekd_stop
ok "a kekd on B alone starts" alone_start
ka show k1 --json
ok "B: k1 version 1 disabled" sh -c "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"id\":1,\"enabled\":false'"
ka show k2 --json
contains "B: k2 version 4 current" "$TESTDIR/out" '"current_version":4'
ka show k3 --json
ok "B: k3 is gone (purged)" sh -c "[ $KC_STATUS -ne 0 ] && grep -q UNKNOWN_KEY '$TESTDIR/err'"
ka grants k4 --json
contains "B: k4's grant to uid 4242" "$TESTDIR/out" "4242"
ka check
is "check on B alone is clean" "$KC_STATUS" 0
alone_stop
ok "kekd starts again" kekd_start
ok "B in sync (60 s)" wait_for 60 token_in_sync b

# --- 3. B unavailable while A changes ---------------------------------------------------
fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
ok "B becomes unavailable within 30 s" wait_for 30 sh -c "[ \"\$($KEKCTL status --json | jq -r '.tokens[1].state')\" = unavailable ]"
ok "... and stale" is_stale
succeeds "k5 disabled on A meanwhile" disable k5
# k6 purged and made again under its name while B cannot follow: B holds the old k6's objects
succeeds "k6 deleted meanwhile" delete k6
succeeds "k6 purged" purge k6
succeeds "k6 made again, a new key of the same name" create k6
"$KEK_DR" "$SOCKET" wrap "$TESTDIR/k6blobs" 4 k6 >"$TESTDIR/w6" 2>&1
contains "4 blobs under the new k6" "$TESTDIR/w6" "wrapped 4"
ok "B is still stale" is_stale
kc status --prometheus
contains "metrics: B stale" "$TESTDIR/out" 'kekd_token_stale{token="b"} 1'
kc status
contains "human status says B is STALE" "$TESTDIR/out" "STALE"
fault_set ""
t0=$(now_ms)
ok "B resynchronised and in sync within 60 s" wait_for 60 token_in_sync b
diag "fault lifted -> B in sync: $(($(now_ms) - t0)) ms"
succeeds "check clean after the resync" check

# --- 4. kill -9 during a replication and during the resync -------------------------------
JKEYS="j0 j1 j2 j3 j4 j5"
fault_set 'C_UnwrapKey:delay_ms=400'
for k in $JKEYS; do
        kc create "$k"
        "$KEK_DR" "$SOCKET" wrap "$TESTDIR/jblobs-$k" 2 "$k" >/dev/null 2>&1
        kc rotate "$k"
        "$KEK_DR" "$SOCKET" wrap "$TESTDIR/jblobs-$k" 2 "$k" >/dev/null 2>&1
done
ok "a copy of a j key began" wait_for 60 grep -q "Replica: copied key 'j" "$TESTDIR/kekd.log"
ok "the delay really fired" grep -q "delay_ms=400" "$FLOG"
ok "B is stale meanwhile" is_stale
kekd_stop KILL
diag "j versions copied before kill -9: $(grep -c "Replica: copied key 'j" "$TESTDIR/kekd.log") of 12"

# alone_whole ROUND: a kekd on B alone serves no half key
alone_whole() {
        ok "$1: a kekd on B alone starts" alone_start
        ka check
        is "$1: check on B alone is clean (no record names a missing version)" "$KC_STATUS" 0
        [ "$KC_STATUS" -eq 0 ] || sed 's/^/#   /' "$TESTDIR/out"
        ka list --json
        served=0
        for k in $JKEYS; do
                grep -q "\"$k\"" "$TESTDIR/out" || continue
                served=$((served + 1))
                "$KEK_DR" "$SOCK_ALONE" unwrap "$TESTDIR/jblobs-$k" >"$TESTDIR/ju" 2>&1
                # B may lag (its record of $k may predate the rotation): a version it does not name yet is
                # UNKNOWN_VERSION there; every version it names must unwrap (no BLOB_INVALID, no HSM error).
                ok "$1: B alone serves $k whole: version 1's blobs unwrap, a later one only if named" \
                        sh -c "grep -Eq 'unwrapped (2|4) of 4' '$TESTDIR/ju' && ! grep '^failed' '$TESTDIR/ju' | grep -vq UNKNOWN_VERSION"
                [ $? -eq 0 ] || sed 's/^/#   /' "$TESTDIR/ju"
        done
        diag "$1: j keys B alone serves: $served of 6"
        alone_stop
}
alone_whole "after kill -9 in a replication"

n_before=$(grep -c "Replica: copied key 'j" "$TESTDIR/kekd.log")
ok "kekd starts again (B still slow)" kekd_start
ok "right after restart B is stale" is_stale
ok "the resync began" wait_for 60 sh -c "[ \$(grep -c \"Replica: copied key 'j\" '$TESTDIR/kekd.log') -gt $n_before ]"
kekd_stop KILL
alone_whole "after kill -9 in the resync"

ok "kekd starts again" kekd_start
t0=$(now_ms)
ok "B in sync within 120 s (still slow)" wait_for 120 token_in_sync b
diag "restart -> B in sync with C_UnwrapKey at 400 ms: $(($(now_ms) - t0)) ms"
succeeds "check clean" check

# A long copy (12 versions at 1 s each) pauses for the probes: A is never shown
# degraded as "not probed" (the bound is 2 intervals + 2 x 0.5 s + 5 s = 8 s).
fault_set 'C_UnwrapKey:delay_ms=1000'
for k in s0 s1 s2 s3 s4 s5; do
        kc create "$k"
        kc rotate "$k"
done
ok "B is stale while the copy runs" is_stale
a_seen=""
watch_sync() {
        i=0
        while [ $i -lt 1800 ]; do
                st=$(field a state)
                [ "$st" = active ] || a_seen="$a_seen [$st: $(field a error)]"
                token_in_sync b && return 0
                sleep 0.1
                i=$((i + 1))
        done
        return 1
}
t0=$(now_ms)
ok "B in sync after the long copy (180 s)" watch_sync
diag "12 versions at 1 s per C_UnwrapKey: in sync after $(($(now_ms) - t0)) ms"
is "A was shown active all along" "$a_seen" ""
ok "the copy paused for the probes" grep -q "sync paused for the probes" "$TESTDIR/kekd.log"
succeeds "check clean" check
fault_set ""
kekd_stop
ok "a kekd on B alone starts" alone_start
for k in $JKEYS; do
        "$KEK_DR" "$SOCK_ALONE" unwrap "$TESTDIR/jblobs-$k" >"$TESTDIR/ju" 2>&1
        contains "B alone: $k's 4 blobs unwrap" "$TESTDIR/ju" "unwrapped 4 of 4"
done
"$KEK_DR" "$SOCK_ALONE" unwrap "$TESTDIR/blobs" >"$TESTDIR/u2" 2>&1
contains "B alone: the 100 blobs of the k keys but k3's and the old k6's 10 and 9 (purged), k1 version 1's 4 and k5's 9 (disabled)" "$TESTDIR/u2" "unwrapped 68 of 100"
"$KEK_DR" "$SOCK_ALONE" unwrap "$TESTDIR/k6blobs" >"$TESTDIR/u6" 2>&1
contains "B alone: the new k6's 4 blobs unwrap (its versions, not the old k6's objects)" "$TESTDIR/u6" "unwrapped 4 of 4"
alone_stop

# --- 5. replication off: no trusted wrapping key configured ---------------------------------
sed -i '/^wrapping_key = /d' "$CONF"
ok "kekd starts without [backup] wrapping_key" kekd_start
ok "B stays stale, saying why (30 s)" wait_for 30 sh -c \
        "$KEKCTL status --json | jq -r '.tokens[1].error' | grep -q 'not copied: no trusted wrapping key configured'"
ok "... stale" is_stale
ok "the log says B is not replicated" grep -q "Token 'b' is not replicated: not copied: no trusted wrapping key" \
        "$TESTDIR/kekd.log"
succeeds "a key made while replication is off" create m0
kc check
is "check fails: B lacks it" "$KC_STATUS" 1
contains "check says why B lacks its version" "$TESTDIR/out" \
        "token 'b' lacks key 'm0' version 1 (not copied: no trusted wrapping key configured"
kekd_stop
done_testing
