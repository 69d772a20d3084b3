#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Metrics: kekd writes the Prometheus textfile at its interval (atomically,
# mode 0644) with requests by op/key/result, latency histograms, HSM
# session state and clients; `kekctl status` shows the same figures live as
# a table, JSON and the raw text. Counts are checked against the operations
# this test performs.
. "$TESTLIB"

token_init metrics
kekd_config
cat >>"$CONF" <<EOF2

[metrics]
file = $TESTDIR/kekd.prom
interval = 1
EOF2
ok "kekd starts with a metrics file" kekd_start
succeeds "create m1" create m1
head -c 32 /dev/urandom >"$TESTDIR/aek"
i=0
while [ $i -lt 7 ]; do
        "$KEKCTL" wrap m1 --context c <"$TESTDIR/aek" >"$TESTDIR/blob" || break
        i=$((i + 1))
done
is "7 wraps" "$i" 7
"$KEKCTL" unwrap --context c <"$TESTDIR/blob" >/dev/null
"$KEKCTL" unwrap --context wrong <"$TESTDIR/blob" >/dev/null 2>&1
refused UNKNOWN_KEY "a wrap with an unknown key" version nokey

i=0
until grep -q 'kekd_requests_total{op="get-key-version",key="nokey",result="UNKNOWN_KEY"} 1' "$TESTDIR/kekd.prom" 2>/dev/null ||
        [ $i -ge 40 ]; do
        sleep 0.1
        i=$((i + 1))
done
P=$TESTDIR/kekd.prom
contains "the file counts the 7 wraps" "$P" 'kekd_requests_total{op="wrap",key="m1",result="OK"} 7'
contains "... the good unwrap" "$P" 'kekd_requests_total{op="unwrap",key="m1",result="OK"} 1'
contains "... the unwrap with the wrong context" "$P" 'kekd_requests_total{op="unwrap",key="m1",result="BLOB_INVALID"} 1'
contains "... the refusal for an unknown key" "$P" 'kekd_requests_total{op="get-key-version",key="nokey",result="UNKNOWN_KEY"} 1'
contains "a latency histogram per operation" "$P" 'kekd_request_duration_seconds_count{op="wrap"} 7'
contains "... with an +Inf bucket" "$P" 'kekd_request_duration_seconds_bucket{op="wrap",le="+Inf"} 7'
contains "the HSM session is open" "$P" "kekd_hsm_session_open 1"
contains "... and kekd says how many sessions it uses ([hsm] sessions)" "$P" "kekd_hsm_sessions ${KEKD_SESSIONS:-1}"
contains "keys by state" "$P" 'kekd_keys{state="enabled"} 1'
contains "types are declared" "$P" "# TYPE kekd_request_duration_seconds histogram"
is "the file is readable by a collector (0644)" "$(stat -c %a "$P")" 644
ok "no temporary files are left beside it" sh -c "[ \$(ls '$TESTDIR' | grep -c 'kekd.prom.') -eq 0 ]"
ok "every sample line is NAME{labels} VALUE or NAME VALUE" \
        sh -c "grep -v '^#' '$P' | grep -Evq '^[a-z_]+(\{[a-z_]+=\"[^\"]*\"(,[a-z_]+=\"[^\"]*\")*\})? [0-9.e+-]+$' && exit 1 || exit 0"

succeeds "kekctl status" status
contains "... shows the token" "$TESTDIR/out" "on token 'metrics'"
contains "... the HSM session" "$TESTDIR/out" "HSM session:  open"
contains "... keys" "$TESTDIR/out" "Keys:         1 (1 versions)"
ok "... and a wrap row with 7 ok, 0 errors" grep -Eq '^wrap +7 +0 ' "$TESTDIR/out"
succeeds "kekctl status --json" status --json
ok "... counts wraps" sh -c "tr -d ' \n' <'$TESTDIR/out' | grep -q '\"wrap\":{\"ok\":7,\"errors\":0'"
succeeds "kekctl status --prometheus" status --prometheus
contains "... is the metrics text" "$TESTDIR/out" 'kekd_requests_total{op="wrap",key="m1",result="OK"} 7'
kekd_stop
ok "kekd stops cleanly" [ "$KEKD_STATUS" -eq 0 ]
done_testing
