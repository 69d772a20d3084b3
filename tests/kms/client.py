#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A KMS v2 client on Debian's python3-grpcio (not written with the plugin's
# code): stubs are generated from kms/api.proto with grpc_tools into a temp
# dir. Runs the kube-apiserver flow (Status, Encrypt, Decrypt, rotate,
# disable, enable) and the malformed and oversized cases, checking the API
# server's limits on every response. Prints "PASS what" / "FAIL what" lines
# (tests/integration/kms.sh numbers them as TAP) and "# ..." comments.
#
# client.py PROTO SOCKET KEY KEKCTL [--bench SECONDS]
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import grpc

failed = 0


def check(cond, what, detail=""):
    global failed
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failed += 1
        if detail:
            print("#   " + str(detail), flush=True)
    return cond


LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def fqdn(name):
    # k8s.io/apimachinery IsFullyQualifiedDomainName, as the API server checks annotation keys
    if not name or len(name) > 253:
        return False
    parts = name.rstrip(".").split(".")
    return len(parts) >= 2 and all(len(p) <= 63 and LABEL.match(p) for p in parts)


def api_limits(resp, what):
    # the API server's own checks on a plugin's answers (kmsv2 envelope)
    if hasattr(resp, "ciphertext"):
        check(0 < len(resp.ciphertext) <= 1024, what + ": ciphertext within 1 KiB", len(resp.ciphertext))
        total = 0
        for k, v in resp.annotations.items():
            check(fqdn(k), what + ": annotation key %r is a FQDN" % k)
            total += len(k) + len(v)
        check(total <= 32 * 1024, what + ": annotations within 32 KiB", total)
    if hasattr(resp, "key_id"):
        check(0 < len(resp.key_id.encode()) <= 1024, what + ": key_id within 1 KiB", resp.key_id)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def main():
    proto, sock, key, kekctl = sys.argv[1:5]
    bench = float(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--bench" else 0
    tmp = tempfile.mkdtemp(prefix="kms-py.")
    from grpc_tools import protoc

    r = protoc.main(["protoc", "-I" + os.path.dirname(proto), "--python_out=" + tmp, "--grpc_python_out=" + tmp, proto])
    if r != 0:
        print("FAIL grpc_tools.protoc generates the stubs")
        return 1
    sys.path.insert(0, tmp)
    import api_pb2 as pb
    import api_pb2_grpc as pbg

    ch = grpc.insecure_channel("unix://" + sock)
    stub = pbg.KeyManagementServiceStub(ch)
    T = 10

    if bench:
        seed = os.urandom(32)
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < bench:
            e = stub.Encrypt(pb.EncryptRequest(plaintext=seed, uid="bench"), timeout=T)
            d = stub.Decrypt(pb.DecryptRequest(ciphertext=e.ciphertext, uid="bench", key_id=e.key_id), timeout=T)
            assert d.plaintext == seed
            n += 1
        print("# bench: %.0f Encrypt+Decrypt/s through the plugin" % (n / (time.monotonic() - t0)))
        return 0

    def kekctl_run(*args):
        p = subprocess.run([kekctl] + list(args), capture_output=True, timeout=30)
        return check(p.returncode == 0, "kekctl " + " ".join(args), p.stderr.decode(errors="replace"))

    # 1. Status, Encrypt, Decrypt
    st = stub.Status(pb.StatusRequest(), timeout=T)
    check(st.version == "v2" and st.healthz == "ok", "Status: version v2, healthz ok", st)
    api_limits(st, "Status")
    seed = os.urandom(32)
    enc = stub.Encrypt(pb.EncryptRequest(plaintext=seed, uid="uid-enc-1"), timeout=T)
    api_limits(enc, "Encrypt")
    check(enc.key_id == st.key_id, "Encrypt names Status's key_id", (enc.key_id, st.key_id))
    dec = stub.Decrypt(pb.DecryptRequest(ciphertext=enc.ciphertext, uid="uid-dec-other", key_id=enc.key_id,
                                         annotations=dict(enc.annotations)), timeout=T)
    check(dec.plaintext == seed, "Decrypt (another uid) returns the seed")

    # concurrency: several channels, several threads each, many streams at once
    errors = []

    def worker(i):
        c = grpc.insecure_channel("unix://" + sock)
        s = pbg.KeyManagementServiceStub(c)
        try:
            for j in range(10):
                p = os.urandom(32)
                e = s.Encrypt(pb.EncryptRequest(plaintext=p, uid="c%d-%d" % (i, j)), timeout=T)
                d = s.Decrypt(pb.DecryptRequest(ciphertext=e.ciphertext, uid="x", key_id=e.key_id), timeout=T)
                if d.plaintext != p:
                    errors.append("mismatch")
        except grpc.RpcError as ex:
            errors.append(str(ex.code()))
        c.close()

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    check(not errors and not any(t.is_alive() for t in ths), "8 concurrent channels x 10 Encrypt+Decrypt", errors[:3])
    futs = [stub.Encrypt.future(pb.EncryptRequest(plaintext=seed, uid="f%d" % i), timeout=T) for i in range(24)]
    check(all(f.result().key_id == st.key_id for f in futs), "24 concurrent streams on one channel")

    # malformed and oversized
    def dec_code(**kw):
        kw.setdefault("uid", "u")
        return code_of(lambda: stub.Decrypt(pb.DecryptRequest(**kw), timeout=T))

    INV = grpc.StatusCode.INVALID_ARGUMENT
    check(dec_code(ciphertext=b"x" * 1025, key_id=enc.key_id) == INV, "ciphertext of 1025 bytes: INVALID_ARGUMENT")
    check(dec_code(ciphertext=b"", key_id=enc.key_id) == INV, "empty ciphertext: INVALID_ARGUMENT")
    check(dec_code(ciphertext=enc.ciphertext, key_id="k" * 1025) == INV, "key_id of 1025 bytes: INVALID_ARGUMENT")
    check(dec_code(ciphertext=enc.ciphertext, key_id="") == INV, "empty key_id: INVALID_ARGUMENT")
    check(dec_code(ciphertext=enc.ciphertext, key_id=key + ":vx") == INV, "key_id not NAME:vN: INVALID_ARGUMENT")
    check(dec_code(ciphertext=enc.ciphertext, key_id="other-key:v1") == grpc.StatusCode.FAILED_PRECONDITION,
          "key_id of another key: FAILED_PRECONDITION")
    for bad in ["Upper.example.com", "nodots", "under_score.example.com", "-lead.example.com", "a/b.example.com"]:
        check(dec_code(ciphertext=enc.ciphertext, key_id=enc.key_id, annotations={bad: b"v"}) == INV,
              "annotation key %r: INVALID_ARGUMENT" % bad)
    check(dec_code(ciphertext=enc.ciphertext, key_id=enc.key_id,
                   annotations={"a.kms.example.com": b"v" * (32 * 1024)}) == INV,
          "annotations over 32 KiB: INVALID_ARGUMENT")
    d = stub.Decrypt(pb.DecryptRequest(ciphertext=enc.ciphertext, uid="u", key_id=enc.key_id,
                                       annotations={"version.kms.example.com": b"1"}), timeout=T)
    check(d.plaintext == seed, "a valid foreign annotation is accepted")
    bad_ct = bytearray(enc.ciphertext)
    bad_ct[-1] ^= 1
    check(dec_code(ciphertext=bytes(bad_ct), key_id=enc.key_id) == INV, "a changed ciphertext: INVALID_ARGUMENT")
    check(code_of(lambda: stub.Encrypt(pb.EncryptRequest(plaintext=b"", uid="u"), timeout=T)) == INV,
          "empty plaintext: INVALID_ARGUMENT")
    check(code_of(lambda: stub.Encrypt(pb.EncryptRequest(plaintext=b"p" * 600, uid="u"), timeout=T)) == INV,
          "plaintext of 600 bytes: INVALID_ARGUMENT")
    check(code_of(lambda: stub.Encrypt(pb.EncryptRequest(plaintext=b"p" * (1 << 20), uid="u"), timeout=T)) ==
          grpc.StatusCode.RESOURCE_EXHAUSTED, "a 1 MiB message: RESOURCE_EXHAUSTED")
    unknown = ch.unary_unary("/v2.KeyManagementService/Rotate", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
    check(code_of(lambda: unknown(b"", timeout=T)) == grpc.StatusCode.UNIMPLEMENTED, "unknown method: UNIMPLEMENTED")
    garbage = ch.unary_unary("/v2.KeyManagementService/Encrypt", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
    check(code_of(lambda: garbage(b"\xff\xff\xff", timeout=T)) == INV, "unparsable message: INVALID_ARGUMENT")
    st = stub.Status(pb.StatusRequest(), timeout=T)
    check(st.healthz == "ok", "still healthy after the malformed calls")

    # 2. rotate: a new key_id, the old ciphertext still decrypts
    if kekctl_run("rotate", key):
        st2 = stub.Status(pb.StatusRequest(), timeout=T)
        api_limits(st2, "Status after rotate")
        check(st2.key_id != st.key_id, "rotate: Status names a new key_id", (st.key_id, st2.key_id))
        enc2 = stub.Encrypt(pb.EncryptRequest(plaintext=seed, uid="u2"), timeout=T)
        check(enc2.key_id == st2.key_id, "rotate: Encrypt uses the new key_id")
        d = stub.Decrypt(pb.DecryptRequest(ciphertext=enc.ciphertext, uid="u3", key_id=enc.key_id), timeout=T)
        check(d.plaintext == seed, "rotate: the old ciphertext still decrypts")

    # 3. disable: unhealthy, Decrypt and Encrypt refused
    t0 = time.monotonic()
    if kekctl_run("disable", key):
        refused = None
        for _ in range(100):
            c = dec_code(ciphertext=enc.ciphertext, key_id=enc.key_id)
            if c != grpc.StatusCode.OK:
                refused = c
                break
            time.sleep(0.1)
        print("# disable to first Decrypt refusal: %.0f ms" % ((time.monotonic() - t0) * 1000))
        check(refused == grpc.StatusCode.FAILED_PRECONDITION, "disable: Decrypt refused FAILED_PRECONDITION", refused)
        st3 = stub.Status(pb.StatusRequest(), timeout=T)
        check(st3.healthz != "ok", "disable: Status unhealthy", st3.healthz)
        check(code_of(lambda: stub.Encrypt(pb.EncryptRequest(plaintext=seed, uid="u"), timeout=T)) ==
              grpc.StatusCode.FAILED_PRECONDITION, "disable: Encrypt refused FAILED_PRECONDITION")

    # 4. enable: service resumes
    if kekctl_run("enable", key):
        st4 = stub.Status(pb.StatusRequest(), timeout=T)
        check(st4.healthz == "ok", "enable: Status healthy", st4.healthz)
        d = stub.Decrypt(pb.DecryptRequest(ciphertext=enc.ciphertext, uid="u", key_id=enc.key_id), timeout=T)
        check(d.plaintext == seed, "enable: Decrypt works again")
    ch.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
