/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kms/service.c over the in-memory backend: the KMS v2 semantics (fixed
 * context, key_id per version, Status health) and every API limit, each
 * refused with its gRPC status before the backend is asked.
 */
#include "config.h"

#include <stdio.h>

#include "kms/api.pb-c.h"
#include "kms/h2.h"
#include "kms/pool.h"
#include "tests/kms/mock-backend.h"
#include "tests/lib/tap.h"

static MockKek mk;
static const KmsBackend be = { mock_wrap, mock_unwrap, mock_key_state, mock_strerror, &mk };
static const KmsService svc = { .key = "k8s", .backend = &be };

static void reset(void) {
        memset(&mk, 0, sizeof(mk));
        mk.st = (KmsKeyState){ .current_version = 3, .state = 1, .recoverable = true };
}

static KmsReply call_msg(KmsMethod m, const ProtobufCMessage *msg) {
        uint8_t buf[65536];
        size_t n = protobuf_c_message_pack(msg, buf);
        KmsReply r;
        kms_service_call(&svc, m, buf, n, &r);
        return r;
}

static V2__StatusResponse *status(void) {
        V2__StatusRequest q = V2__STATUS_REQUEST__INIT;
        KmsReply r = call_msg(KMS_METHOD_STATUS, &q.base);
        V2__StatusResponse *s = r.status == GRPC_OK ? v2__status_response__unpack(NULL, r.body->len, r.body->data) : NULL;
        kms_reply_done(&r);
        return s;
}

static GrpcStatus encrypt(const uint8_t *pt, size_t len, const char *uid, V2__EncryptResponse **ret) {
        V2__EncryptRequest q = V2__ENCRYPT_REQUEST__INIT;
        q.plaintext.data = (uint8_t *) pt;
        q.plaintext.len = len;
        q.uid = (char *) uid;
        KmsReply r = call_msg(KMS_METHOD_ENCRYPT, &q.base);
        GrpcStatus s = r.status;
        if (ret)
                *ret = s == GRPC_OK ? v2__encrypt_response__unpack(NULL, r.body->len, r.body->data) : NULL;
        kms_reply_done(&r);
        return s;
}

static GrpcStatus decrypt(const uint8_t *ct, size_t len, const char *key_id, size_t n_ann,
                          V2__DecryptRequest__AnnotationsEntry **ann, V2__DecryptResponse **ret) {
        V2__DecryptRequest q = V2__DECRYPT_REQUEST__INIT;
        q.ciphertext.data = (uint8_t *) ct;
        q.ciphertext.len = len;
        q.key_id = (char *) key_id;
        q.uid = (char *) "another-uid";
        q.n_annotations = n_ann;
        q.annotations = ann;
        KmsReply r = call_msg(KMS_METHOD_DECRYPT, &q.base);
        GrpcStatus s = r.status;
        if (ret)
                *ret = s == GRPC_OK ? v2__decrypt_response__unpack(NULL, r.body->len, r.body->data) : NULL;
        kms_reply_done(&r);
        return s;
}

static void test_paths(void) {
        static const struct {
                const char *p;
                KmsMethod m;
        } t[] = {
                { "/v2.KeyManagementService/Status", KMS_METHOD_STATUS },
                { "/v2.KeyManagementService/Encrypt", KMS_METHOD_ENCRYPT },
                { "/v2.KeyManagementService/Decrypt", KMS_METHOD_DECRYPT },
                { "/v2.KeyManagementService/Decrypt2", KMS_METHOD_INVALID },
                { "/v2.KeyManagementService/", KMS_METHOD_INVALID },
                { "/v1beta1.KeyManagementService/Encrypt", KMS_METHOD_INVALID },
                { "/v2.KeyManagementService/encrypt", KMS_METHOD_INVALID },
                { "", KMS_METHOD_INVALID },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                is_int(kms_method_from_path(t[i].p, strlen(t[i].p)), t[i].m, "path '%s'", t[i].p);
}

static void test_status(void) {
        V2__StatusResponse *s;

        reset();
        s = status();
        ok(s && !strcmp(s->version, "v2") && !strcmp(s->healthz, "ok") && !strcmp(s->key_id, "k8s:v3"),
           "Status: v2, ok, k8s:v3");
        v2__status_response__free_unpacked(s, NULL);
        static const struct {
                int state;
                bool rec;
                int fail;
                const char *want;
        } t[] = {
                { 2, true, 0, "disabled" },
                { 3, true, 0, "deleted" },
                { 1, false, 0, "not recoverable" },
                { 1, true, -ECONNREFUSED, "kekd: connection refused" },
                { 1, true, -(KEK_ERROR_BASE + KEK_E_PERMISSION_DENIED), "kekd:" },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                reset();
                mk.st.state = t[i].state;
                mk.st.recoverable = t[i].rec;
                mk.fail = t[i].fail;
                s = status();
                ok(s && strcmp(s->healthz, "ok") != 0 && strstr(s->healthz, t[i].want), "Status unhealthy: '%s'",
                   s ? s->healthz : "(none)");
                v2__status_response__free_unpacked(s, NULL);
        }
        reset();
        mk.st.current_version = 4;
        s = status();
        ok(s && !strcmp(s->key_id, "k8s:v4"), "a rotation changes Status's key_id");
        v2__status_response__free_unpacked(s, NULL);
}

static void test_roundtrip(void) {
        uint8_t seed[32];
        V2__EncryptResponse *e = NULL;
        V2__DecryptResponse *d = NULL;

        for (size_t i = 0; i < sizeof(seed); i++)
                seed[i] = (uint8_t) (i * 7 + 1);
        reset();
        is_int(encrypt(seed, sizeof(seed), "uid-1", &e), GRPC_OK, "Encrypt of a 32-byte seed");
        if (!e)
                return;
        ok(!strcmp(e->key_id, "k8s:v3"), "Encrypt's key_id names the version: %s", e->key_id);
        ok(!strcmp(mk.last_ctx, "kms-v2:k8s"), "the context is kms-v2:KEY, not the uid: %s", mk.last_ctx);
        is_int(e->n_annotations, 0, "no annotations (the blob is self-describing)");
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 0, NULL, &d), GRPC_OK,
               "Decrypt with another uid");
        ok(d && d->plaintext.len == 32 && !memcmp(d->plaintext.data, seed, 32), "Decrypt returns the seed");
        v2__decrypt_response__free_unpacked(d, NULL);

        /* rotation: the old ciphertext names its version and still decrypts */
        mk.st.current_version = 4;
        V2__EncryptResponse *e2 = NULL;
        is_int(encrypt(seed, sizeof(seed), "uid-2", &e2), GRPC_OK, "Encrypt after a rotation");
        ok(e2 && !strcmp(e2->key_id, "k8s:v4"), "the new key_id is k8s:v4");
        v2__encrypt_response__free_unpacked(e2, NULL);
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 0, NULL, NULL), GRPC_OK,
               "the old ciphertext decrypts after a rotation");

        /* revocation: kekd's refusals */
        mk.st.state = 2;
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 0, NULL, NULL), GRPC_FAILED_PRECONDITION,
               "a disabled key: Decrypt FAILED_PRECONDITION");
        is_int(encrypt(seed, sizeof(seed), "u", NULL), GRPC_FAILED_PRECONDITION,
               "a disabled key: Encrypt FAILED_PRECONDITION");
        reset();
        mk.fail = -(KEK_ERROR_BASE + KEK_E_PERMISSION_DENIED);
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 0, NULL, NULL), GRPC_PERMISSION_DENIED,
               "a lost grant: PERMISSION_DENIED");
        mk.fail = -ECONNREFUSED;
        is_int(encrypt(seed, sizeof(seed), "u", NULL), GRPC_UNAVAILABLE, "kekd unreachable: UNAVAILABLE");
        mk.fail = -ETIMEDOUT;
        is_int(encrypt(seed, sizeof(seed), "u", NULL), GRPC_DEADLINE_EXCEEDED, "kekd timeout: DEADLINE_EXCEEDED");
        reset();
        uint8_t bad[256];
        memcpy(bad, e->ciphertext.data, e->ciphertext.len);
        bad[2 + 3 + 4 + BLOB_IV_SIZE + 1] ^= 1;   /* a byte of the mock's ciphertext, past kekd's header */
        is_int(decrypt(bad, e->ciphertext.len, e->key_id, 0, NULL, NULL), GRPC_INVALID_ARGUMENT,
               "a changed ciphertext: INVALID_ARGUMENT");

        /* limits, refused before the backend is asked */
        uint8_t big[1100] = { 1 };
        reset();
        is_int(decrypt(big, 1025, e->key_id, 0, NULL, NULL), GRPC_INVALID_ARGUMENT, "ciphertext of 1025 bytes");
        is_int(decrypt(big, 0, e->key_id, 0, NULL, NULL), GRPC_INVALID_ARGUMENT, "empty ciphertext");
        char kid[1100];
        memset(kid, 'a', sizeof(kid));
        snprintf(kid + 1021, sizeof(kid) - 1021, ":v12");
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, kid, 0, NULL, NULL), GRPC_INVALID_ARGUMENT,
               "key_id of 1025 bytes: INVALID_ARGUMENT");
        static const char *const bad_ids[] = { "", "k8s", "k8s:", "k8s:v", "k8s:3", "k8s:v0", "k8s:v1x", "k8s:v99999999999", ":v1" };
        for (size_t i = 0; i < ELEMENTSOF(bad_ids); i++)
                is_int(decrypt(e->ciphertext.data, e->ciphertext.len, bad_ids[i], 0, NULL, NULL),
                       GRPC_INVALID_ARGUMENT, "key_id '%s': INVALID_ARGUMENT", bad_ids[i]);
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, "other:v3", 0, NULL, NULL), GRPC_FAILED_PRECONDITION,
               "key_id of another key: FAILED_PRECONDITION");
        /*
         * A blob under ANOTHER kekd key the plugin's uid may unwrap, made with the plugin's context
         * (anyone granted wrap on that key can make one): named with the plugin's key_id it must
         * not be unwrapped, nor one whose version is not key_id's.
         */
        uint8_t *ob = NULL;
        size_t ob_len = 0;
        uint32_t ov = 0;
        ok(mock_wrap(&mk, "other", seed, sizeof(seed), (const uint8_t *) "kms-v2:k8s", 10, &ob, &ob_len, &ov) == 0,
           "a blob under another key, with the plugin's context");
        mk.calls = 0;
        is_int(decrypt(ob, ob_len, "k8s:v3", 0, NULL, NULL), GRPC_FAILED_PRECONDITION,
               "a blob under another key named k8s:v3: FAILED_PRECONDITION");
        free(ob);
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, "k8s:v4", 0, NULL, NULL), GRPC_INVALID_ARGUMENT,
               "a v3 blob named k8s:v4: INVALID_ARGUMENT");
        is_int(mk.calls, 0, "no limit refusal asked the backend");
        is_int(encrypt(big, 0, "u", NULL), GRPC_INVALID_ARGUMENT, "empty plaintext");
        is_int(encrypt(big, KMS_PLAINTEXT_MAX + 1, "u", NULL), GRPC_INVALID_ARGUMENT, "plaintext over 512 bytes");
        is_int(mk.calls, 0, "nor did the plaintext refusals");
        mk.pad = 1100;
        is_int(encrypt(seed, 32, "u", NULL), GRPC_INTERNAL, "a ciphertext over 1 KiB is never returned");

        /* annotations */
        reset();
        V2__DecryptRequest__AnnotationsEntry a = V2__DECRYPT_REQUEST__ANNOTATIONS_ENTRY__INIT, *ap = &a;
        static const struct {
                const char *k;
                bool valid;
        } an[] = {
                { "version.kms.k8s.io", true },  { "a.b", true },           { "a.b.", true },
                { "nodots", false },             { "Upper.example.com", false }, { "a_b.example.com", false },
                { "-a.example.com", false },     { "a-.example.com", false },  { "a..b", false },
                { "", false },                   { "a/b.example.com", false }, { ".a.b", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(an); i++) {
                is_int(kms_annotation_key_valid(an[i].k), an[i].valid, "annotation key '%s' valid: %d", an[i].k,
                       an[i].valid);
                a.key = (char *) an[i].k;
                is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 1, &ap, NULL),
                       an[i].valid ? GRPC_OK : GRPC_INVALID_ARGUMENT, "Decrypt with annotation '%s'", an[i].k);
        }
        char label[70];
        memset(label, 'a', 64);
        strcpy(label + 64, ".io");
        is_int(kms_annotation_key_valid(label), false, "a 64-byte label is refused");
        static uint8_t val[32 * 1024];
        a.key = (char *) "a.kms.example.com";
        a.value.data = val;
        a.value.len = sizeof(val) - strlen(a.key);
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 1, &ap, NULL), GRPC_OK,
               "annotations of exactly 32 KiB are accepted");
        a.value.len++;
        is_int(decrypt(e->ciphertext.data, e->ciphertext.len, e->key_id, 1, &ap, NULL), GRPC_INVALID_ARGUMENT,
               "annotations of 32 KiB + 1 are refused");
        v2__encrypt_response__free_unpacked(e, NULL);
}

static void test_messages(void) {
        KmsReply r;
        static uint8_t junk[KMS_MESSAGE_MAX + 1];

        reset();
        memset(junk, 0xff, sizeof(junk));
        kms_service_call(&svc, KMS_METHOD_ENCRYPT, junk, 3, &r);
        is_int(r.status, GRPC_INVALID_ARGUMENT, "an unparsable message: INVALID_ARGUMENT");
        kms_reply_done(&r);
        kms_service_call(&svc, KMS_METHOD_DECRYPT, junk, sizeof(junk), &r);
        is_int(r.status, GRPC_RESOURCE_EXHAUSTED, "a message over %u bytes: RESOURCE_EXHAUSTED", KMS_MESSAGE_MAX);
        kms_reply_done(&r);
        kms_service_call(&svc, KMS_METHOD_INVALID, junk, 0, &r);
        is_int(r.status, GRPC_UNIMPLEMENTED, "an unknown method: UNIMPLEMENTED");
        kms_reply_done(&r);
        is_int(mk.calls, 0, "none of them reached the backend");

        /* a job whose deadline passed while queued does not reach kekd */
        KmsJob j = { .method = KMS_METHOD_STATUS, .deadline_ms = kms_now_ms() - 1 };
        kms_job_run(&svc, &j);
        is_int(j.reply.status, GRPC_DEADLINE_EXCEEDED, "an expired job: DEADLINE_EXCEEDED");
        is_int(mk.calls, 0, "an expired job does not ask kekd");
        kms_reply_done(&j.reply);
        KmsJob j2 = { .method = KMS_METHOD_STATUS, .deadline_ms = kms_now_ms() + 60000 };
        kms_job_run(&svc, &j2);
        is_int(j2.reply.status, GRPC_OK, "a job within its deadline runs");
        kms_reply_done(&j2.reply);
}

int main(void) {
        if (secret_heap_init(1u << 20) < 0)
                return 99;
        test_paths();
        test_status();
        test_roundtrip();
        test_messages();
        return tap_done();
}
