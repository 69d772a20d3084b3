#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A key purged and made again under its name by ANOTHER kekd on the preferred
# token A makes this kekd's further token B stale as soon as this kekd reads
# the change (docs/tokens-ha.md, "Stale"). The new key can look the same as
# the old one in state, versions and grants; only its creation time differs.
# B still holds the old key's version objects (same label and ID, other key
# material) until a sync replaces them: while it does, a failover to B would
# wrap under the old material (blobs A cannot open) or unwrap the purged
# key's blobs. B's syncs are slowed (every C_FindObjectsInit on B waits 2 s)
# so that a sync after the change cannot have completed by the time status is
# read; without the mark B stays "in sync" (until its 60 s recheck).
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key

p11_fault_setup
token_init rc-b
token_init rc-a
backup_ceremony rc-a rc-b

TOKEN_URI=pkcs11:token=rc-a
kekd_config
conf_tokens backup "$TESTDIR"
# The other kekd: A alone (no [hsm.b]: it replicates nothing), a socket of its own.
kekd_b_start_conf() {
        CONF_B="$TESTDIR/b.conf"
        SOCK_B="$TESTDIR/b.sock"
        sed "s|^socket = .*|socket = $SOCK_B|" "$CONF" >"$CONF_B"
}
kekd_b_start_conf
conf_tokens name a 1 hsm.b "$P11_FAULT_LIB" rc-b
ok "kekd starts with A preferred and B" kekd_start
"$KEKD" -c "$CONF_B" 2>>"$TESTDIR/kekd-b.log" &
PID_B=$!
i=0
until "$KEKCTL" -s "$SOCK_B" list >/dev/null 2>&1 || [ $i -ge 150 ]; do
        kill -0 "$PID_B" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
done
ok "another kekd on A alone starts" "$KEKCTL" -s "$SOCK_B" list

field() { token_field "$@"; }
created() { # SOCKET: created_usec of key r on that kekd
        "$KEKCTL" -s "$1" show r --json 2>/dev/null | jq -r '.created_usec' 2>/dev/null
}
o() { "$KEKCTL" -s "$SOCK_B" "$@" >"$TESTDIR/out-b" 2>&1; }

succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key r created" create r
ok "B in sync within 60 s" wait_for 60 token_in_sync b
old=$(created "$SOCKET")
ok "this kekd knows r" test -n "$old" -a "$old" != null

fault_set 'C_FindObjectsInit:delay_ms=2000'
ok "the other kekd deletes r" o delete r
ok "... purges it" o purge r
ok "... and makes a new key r" o create r
new=$(created "$SOCK_B")
ok "the new r has another creation time" test -n "$new" -a "$new" != "$old"
# This kekd reads the change (its listing refreshes the index, at most 1 s old).
ok "this kekd sees the new r (30 s)" wait_for 30 sh -c "[ \"\$(\"$KEKCTL\" show r --json | jq -r .created_usec)\" = $new ]"
ok "B is stale at once: it holds the old r's objects" test "$(field b stale)" = true
fault_set ""
ok "B in sync again (90 s)" wait_for 90 token_in_sync b
succeeds "kekctl check clean: B holds the new r" check

kill -TERM "$PID_B" 2>/dev/null
pid_reap "$PID_B" 20
kekd_stop
is "kekd stops cleanly" "$KEKD_STATUS" 0
done_testing
