#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kek-kms-plugin against a real kekd on a fresh SoftHSM2 token, with clients
# nobody on the project wrote the gRPC side of: tests/kms/client.go (grpc-go)
# and tests/kms/client.py (python3-grpcio). The plugin runs as an unprivileged
# uid with a grant, like any crypto user; a revoked grant turns it unhealthy.
# Its drain on SIGTERM is bounded. Every process is ours, killed by PID.
. "$TESTLIB"

if [ ! -x "${KEK_KMS_PLUGIN:-}" ]; then
        echo "1..0 # SKIP kek-kms-plugin not built (libnghttp2-dev missing: tests/kms/install.sh)"
        exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! getent group users >/dev/null; then
        echo "1..0 # SKIP needs root, setpriv and the group users to run the plugin as another uid"
        exit 0
fi
PLUGIN_UID=1191
USERS=$(getent group users | cut -d: -f3)
KEY=k8s-secrets
PLUGIN_PID=""

kms_cleanup() {
        if [ -n "$PLUGIN_PID" ] && kill -0 "$PLUGIN_PID" 2>/dev/null; then
                kill -KILL "$PLUGIN_PID" 2>/dev/null
                wait "$PLUGIN_PID" 2>/dev/null
        fi
        cleanup
}
trap kms_cleanup EXIT

chmod 0711 "$TESTDIR"
token_init kms
ALLOW_UNRECOVERABLE=no
kekd_config
sed -i "s/^socket_mode = 0600$/socket_mode = 0660\nsocket_group = users/" "$CONF"
ok "kekd starts" kekd_start
succeeds "create $KEY" create "$KEY"
succeeds "grant $KEY to the plugin's uid" grant "$KEY" "user:$PLUGIN_UID" --ops get,wrap,unwrap

mkdir "$TESTDIR/kms"
chown "$PLUGIN_UID:$USERS" "$TESTDIR/kms"
SOCK="$TESTDIR/kms/kms.sock"
METRICS="$TESTDIR/kms/metrics.prom"

plugin_start() {
        setpriv --reuid=$PLUGIN_UID --regid="$USERS" --clear-groups \
                "$KEK_KMS_PLUGIN" --key "$KEY" --listen "$SOCK" --kekd-socket "$SOCKET" --socket-mode 0666 \
                --metrics-file "$METRICS" --metrics-interval 1 --drain-timeout 30 --kekd-timeout-ms 40000 \
                2>>"$TESTDIR/kms.log" &
        PLUGIN_PID=$!
        wait_for 10 test -S "$SOCK"
}
ok "kek-kms-plugin starts as uid $PLUGIN_UID" plugin_start

# client output: PASS/FAIL lines become TAP, comments pass through
as_tap() {
        while IFS= read -r line; do
                case $line in
                "PASS "*) tap_n=$((tap_n + 1)); echo "ok $tap_n - $1: ${line#PASS }" ;;
                "FAIL "*) tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1)); echo "not ok $tap_n - $1: ${line#FAIL }" ;;
                *) echo "# $line" ;;
                esac
        done <"$2"
}

# probe: the plugin's healthz, then an Encrypt's gRPC status (Python; HAVE_PY)
HAVE_PY=""
/usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null && HAVE_PY=1
# The stubs are generated once: a loaded machine stretches each probe's start,
# and the drain below has to fit two of them inside its bounds.
# A proto that does not compile fails here (the probes below fail too), never skips them.
if [ -n "$HAVE_PY" ]; then
        mkdir "$TESTDIR/pygen"
        ok "the plugin's proto compiles to Python stubs" /usr/bin/python3 -m grpc_tools.protoc \
                -I"$(dirname "$KEK_KMS_PROTO")" --python_out="$TESTDIR/pygen" --grpc_python_out="$TESTDIR/pygen" \
                "$KEK_KMS_PROTO"
fi
cat >"$TESTDIR/probe.py" <<EOF2
import sys, grpc
sys.path.insert(0, "$TESTDIR/pygen")
import api_pb2 as pb, api_pb2_grpc as pbg
s = pbg.KeyManagementServiceStub(grpc.insecure_channel("unix://$SOCK"))
if len(sys.argv) > 1:
    # a deadline: the Status call's gRPC status
    try:
        s.Status(pb.StatusRequest(), timeout=float(sys.argv[1]))
        print("OK")
    except grpc.RpcError as e:
        print(e.code().name)
    sys.exit(0)
print(s.Status(pb.StatusRequest(), timeout=10).healthz)
try:
    s.Encrypt(pb.EncryptRequest(plaintext=b"x" * 32, uid="u"), timeout=10)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name)
EOF2
probe() {
        /usr/bin/python3 "$TESTDIR/probe.py" "$@"
}

# A vault without purge protection is not recoverable: unhealthy, wraps refused
if [ -n "$HAVE_PY" ]; then
        probe >"$TESTDIR/probe.out" 2>&1
        contains "an unrecoverable vault: Status names it" "$TESTDIR/probe.out" "is not recoverable"
        contains "an unrecoverable vault: Encrypt refused FAILED_PRECONDITION" "$TESTDIR/probe.out" FAILED_PRECONDITION
fi
succeeds "purge protection on: the vault is recoverable" vault --purge-protection on --retention-days 30

# Go: the grpc-go client kube-apiserver uses, built offline from Debian's packages

if command -v go >/dev/null && [ -d /usr/share/gocode/src/google.golang.org/grpc ] &&
        [ -d /usr/share/gocode/src/google.golang.org/protobuf ]; then
        mkdir -p "$TESTDIR/go/src/kmsclient"
        cp "$KEK_KMS_SRC/client.go" "$TESTDIR/go/src/kmsclient/main.go"
        (cd "$TESTDIR/go/src/kmsclient" && GOPATH="$TESTDIR/go:/usr/share/gocode" GO111MODULE=off \
                GOCACHE="$TESTDIR/go/cache" GOPROXY=off go build -o "$TESTDIR/kms-go" . ) >"$TESTDIR/go.log" 2>&1
        ok "client.go builds offline (GOPATH mode, /usr/share/gocode)" test -x "$TESTDIR/kms-go" ||
                sed 's/^/#   /' "$TESTDIR/go.log" | tail -20
        if [ -x "$TESTDIR/kms-go" ]; then
                timeout 120 "$TESTDIR/kms-go" "$SOCK" "$KEY" "$KEKCTL" >"$TESTDIR/go.out" 2>&1
                is "client.go exits 0" "$?" 0
                as_tap go "$TESTDIR/go.out"
        fi
else
        echo "ok $((tap_n = tap_n + 1)) # SKIP go, golang-google-grpc-dev or golang-github-golang-protobuf-1-5-dev missing (tests/kms/install.sh)"
fi


# Python: python3-grpcio with stubs generated by python3-grpc-tools
if [ -n "$HAVE_PY" ]; then
        timeout 180 /usr/bin/python3 "$KEK_KMS_SRC/client.py" "$KEK_KMS_PROTO" "$SOCK" "$KEY" "$KEKCTL" \
                >"$TESTDIR/py.out" 2>&1
        is "client.py exits 0" "$?" 0
        as_tap python "$TESTDIR/py.out"
else
        echo "ok $((tap_n = tap_n + 1)) # SKIP python3-grpcio or python3-grpc-tools missing (tests/kms/install.sh)"
fi

# Deadlines: with kekd stopped, a call with a 1 s deadline ends DEADLINE_EXCEEDED
# (the plugin's own expiry is shown by tests/unit/test-kms-grpc: the client cancels first here)
if [ -n "$HAVE_PY" ]; then
        kill -STOP "$KEKD_PID"
        probe 1 >"$TESTDIR/deadline.out" 2>&1
        kill -CONT "$KEKD_PID"
        contains "kekd stopped: a 1 s deadline ends DEADLINE_EXCEEDED" "$TESTDIR/deadline.out" DEADLINE_EXCEEDED
        wait_for 10 sh -c "probe_ok=\$(/usr/bin/python3 '$TESTDIR/probe.py' 5); [ \"\$probe_ok\" = OK ]"
        ok "kekd continued: Status answers again" sh -c "[ \"\$(/usr/bin/python3 '$TESTDIR/probe.py' 5)\" = OK ]"
fi

# kekbench row: Encrypt+Decrypt through the plugin against kekd's wrap+unwrap, same run
if [ -x "${KEK_KMS_BENCH:-}" ]; then
        for c in 1 8; do
                "$KEK_KMS_BENCH" "$SOCK" "$KEY" 3 $c >"$TESTDIR/bench.out" 2>&1
                is "kms-bench with concurrency $c runs without a failed call" "$?" 0
                sed 's/^/# bench: /' "$TESTDIR/bench.out"
        done
fi

# A lost grant: unhealthy, Encrypt refused PERMISSION_DENIED
if [ -n "$HAVE_PY" ]; then
        succeeds "revoke the plugin's grant" revoke "$KEY" "user:$PLUGIN_UID"
        probe >"$TESTDIR/lost.out" 2>&1
        ok "a lost grant: Status unhealthy" sh -c "head -1 '$TESTDIR/lost.out' | grep -qv '^ok$'"
        contains "a lost grant: Encrypt refused PERMISSION_DENIED" "$TESTDIR/lost.out" PERMISSION_DENIED
fi

wait_for 5 grep -q 'code="INVALID_ARGUMENT"' "$METRICS"
contains "metrics count Encrypt calls by gRPC status" "$METRICS" 'kek_kms_requests_total{method="Encrypt",code="OK"}'
contains "metrics count refusals by gRPC status" "$METRICS" 'code="INVALID_ARGUMENT"'
contains "metrics have a latency histogram" "$METRICS" 'kek_kms_request_duration_seconds_bucket{method="Decrypt",le="+Inf"}'

# Drain: a call in flight at SIGTERM (kekd stopped) finishes; new connections are refused
if [ -n "$HAVE_PY" ]; then
        succeeds "grant $KEY to the plugin's uid again" grant "$KEY" "user:$PLUGIN_UID" --ops get,wrap,unwrap
        # The metrics first show no call in flight: a line written during an earlier call (the
        # file is rewritten each second) matched the wait below before the probe had called, and
        # the SIGTERM then came with nothing in flight ("draining 0 call(s)", the probe refused).
        wait_for 10 grep -q '^kek_kms_in_flight 0$' "$METRICS"
        contains "before the drain, the metrics show no call in flight" "$METRICS" 'kek_kms_in_flight 0'
        kill -STOP "$KEKD_PID"
        T_STOP=$(date +%s)
        # The call waits for kekd (stopped) through the steps below, each a bounded wait that a
        # loaded machine can stretch: its deadline, kekd's timeout in the plugin (40 s) and the
        # drain's bound (30 s) outlast them all, so it fails only if the drain drops it.
        probe 60 >"$TESTDIR/drain.out" 2>&1 &
        CALL_PID=$!
        wait_for 10 grep -q '^kek_kms_in_flight 1$' "$METRICS"
        contains "a call is in flight while kekd is stopped" "$METRICS" 'kek_kms_in_flight 1'
        kill -TERM "$PLUGIN_PID"
        T_TERM=$(date +%s)
        wait_for 5 sh -c "/usr/bin/python3 '$TESTDIR/probe.py' 2 >'$TESTDIR/refused.out' 2>&1; grep -q UNAVAILABLE '$TESTDIR/refused.out'"
        contains "draining: a new connection is refused (UNAVAILABLE)" "$TESTDIR/refused.out" UNAVAILABLE
        kill -CONT "$KEKD_PID"
        pid_reap "$CALL_PID" 60
        contains "draining: the call in flight finished OK" "$TESTDIR/drain.out" OK
        grep -qF OK "$TESTDIR/drain.out" || {
                echo "# kekd stopped $((T_TERM - T_STOP)) s before the SIGTERM; the drain lasted $(($(date +%s) - T_TERM)) s"
                sed 's/^/# plugin: /' "$TESTDIR/kms.log" | tail -20
        }
else
        kill -TERM "$PLUGIN_PID"
fi
pid_reap "$PLUGIN_PID" 10
is "SIGTERM: the plugin drains and exits 0 within 10 s" "$?" 0
PLUGIN_PID=""
ok "the plugin removed its socket" test ! -e "$SOCK"
ok "the plugin's log holds no PIN" sh -c "! grep -qF '$TEST_PIN' '$TESTDIR/kms.log'"
done_testing
