/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KMS v2 Status/Encrypt/Decrypt over a KmsBackend (see service.h). A
 * request that breaks an API limit is refused before the backend is asked;
 * a backend refusal maps to one gRPC status (kms_status_from_backend). No
 * state is kept between calls: Status asks kekd every time, so a disabled,
 * deleted or no longer granted key turns it unhealthy at once, and Encrypt
 * and Decrypt are refused by kekd itself.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client/libkek.h"
#include "kms/api.pb-c.h"
#include "kms/service.h"
#include "proto/blob.h"

static const char *const method_names[_KMS_METHOD_MAX] = {
        [KMS_METHOD_STATUS] = "Status",
        [KMS_METHOD_ENCRYPT] = "Encrypt",
        [KMS_METHOD_DECRYPT] = "Decrypt",
};

const char *kms_method_name(KmsMethod m) {
        if (m < 0 || m >= _KMS_METHOD_MAX)
                return "unknown";
        return method_names[m];
}

KmsMethod kms_method_from_path(const char *path, size_t len) {
        static const char prefix[] = "/v2.KeyManagementService/";
        const size_t pl = sizeof(prefix) - 1;

        if (len <= pl || memcmp(path, prefix, pl) != 0)
                return KMS_METHOD_INVALID;
        for (int m = 0; m < _KMS_METHOD_MAX; m++)
                if (len - pl == strlen(method_names[m]) && memcmp(path + pl, method_names[m], len - pl) == 0)
                        return (KmsMethod) m;
        return KMS_METHOD_INVALID;
}

void kms_reply_done(KmsReply *r) {
        if (!r)
                return;
        r->body = secret_free(r->body);
}

_printf_(3, 4) static int refuse(KmsReply *r, GrpcStatus s, const char *fmt, ...) {
        va_list ap;

        r->status = s;
        va_start(ap, fmt);
        (void) vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
        return 0;
}

GrpcStatus kms_status_from_backend(int r) {
        switch (r) {
        case 0:
                return GRPC_OK;
        case -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED):
        case -(KEK_ERROR_BASE + KEK_E_KEY_DELETED):
        case -(KEK_ERROR_BASE + KEK_E_KEY_NOT_RECOVERABLE):
        case -(KEK_ERROR_BASE + KEK_E_UNKNOWN_KEY):
        case -(KEK_ERROR_BASE + KEK_E_UNKNOWN_VERSION):
        case -(KEK_ERROR_BASE + KEK_E_APPROVAL_REQUIRED):
        case -(KEK_ERROR_BASE + KEK_E_PURGE_PROTECTED):
                return GRPC_FAILED_PRECONDITION;
        case -(KEK_ERROR_BASE + KEK_E_PERMISSION_DENIED):
        case -EACCES:
        case -EPERM:
                return GRPC_PERMISSION_DENIED;
        case -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID):
        case -(KEK_ERROR_BASE + KEK_E_INVALID_ARGUMENT):
        case -EBADMSG:
                return GRPC_INVALID_ARGUMENT;
        case -(KEK_ERROR_BASE + KEK_E_LIMIT_EXCEEDED):
                return GRPC_RESOURCE_EXHAUSTED;
        case -ETIMEDOUT:
                return GRPC_DEADLINE_EXCEEDED;
        case -(KEK_ERROR_BASE + KEK_E_HSM_UNAVAILABLE):
        case -ECONNREFUSED:
        case -ENOENT:
        case -ECONNRESET:
        case -EPIPE:
        case -ENOTCONN:
        case -EAGAIN:
                return GRPC_UNAVAILABLE;
        default:
                /* a local condition (-errno) reaching kekd is worth a retry; a kekd code is not */
                return r > -KEK_ERROR_BASE ? GRPC_UNAVAILABLE : GRPC_INTERNAL;
        }
}

static const char *backend_strerror(const KmsService *s, int r) {
        return s->backend->strerror ? s->backend->strerror(r) : "backend error";
}

/* RFC 1123 label: 1..63 of [a-z0-9-], starting and ending alphanumeric */
static bool label_valid(const char *p, size_t n) {
        if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
                        return false;
        return true;
}

/* k8s.io/apimachinery IsFullyQualifiedDomainName: at least two labels, at most 253 bytes */
bool kms_annotation_key_valid(const char *key) {
        size_t len = strlen(key), labels = 0, start = 0;

        if (len == 0 || len > 253)
                return false;
        if (key[len - 1] == '.')
                len--;
        for (size_t i = 0; i <= len; i++) {
                if (i == len || key[i] == '.') {
                        if (!label_valid(key + start, i - start))
                                return false;
                        labels++;
                        start = i + 1;
                }
        }
        return labels >= 2;
}

int kms_key_id_format(const char *key, uint32_t version, char *out, size_t n) {
        int k = snprintf(out, n, "%s:v%u", key, version);
        if (k < 0 || (size_t) k >= n)
                return -ENAMETOOLONG;
        return 0;
}

int kms_key_id_parse(const char *key_id, const char *key, uint32_t *ret_version) {
        const char *colon = strrchr(key_id, ':');
        uint64_t v = 0;

        if (!colon || colon == key_id || colon[1] != 'v' || colon[2] == 0 || colon[2] == '0')
                return -EINVAL;
        for (const char *p = colon + 2; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > UINT32_MAX)
                        return -EINVAL;
        }
        if ((size_t) (colon - key_id) != strlen(key) || memcmp(key_id, key, strlen(key)) != 0)
                return -ENOKEY;
        *ret_version = (uint32_t) v;
        return 0;
}

static int pack_reply(KmsReply *r, const ProtobufCMessage *m) {
        size_t n = protobuf_c_message_get_packed_size(m);
        int k;

        /* secret_new refuses 0 bytes: an empty message gets one spare byte, trimmed below */
        k = secret_new(n ? n : 1, &r->body);
        if (k < 0)
                return k;
        protobuf_c_message_pack(m, r->body->data);
        secret_truncate(r->body, n);
        r->status = GRPC_OK;
        r->message[0] = 0;
        return 0;
}

static void context_of(const char *key, char *out, size_t n) {
        (void) snprintf(out, n, KMS_CONTEXT_PREFIX "%s", key);
}

static int do_status(const KmsService *s, const uint8_t *req, size_t len, KmsReply *r) {
        V2__StatusRequest *in = v2__status_request__unpack(NULL, len, req);
        V2__StatusResponse out = V2__STATUS_RESPONSE__INIT;
        char key_id[KMS_KEY_ID_MAX + 1] = "", healthz[160];
        KmsKeyState st;
        int k;

        if (!in)
                return refuse(r, GRPC_INVALID_ARGUMENT, "StatusRequest does not parse");
        v2__status_request__free_unpacked(in, NULL);

        k = s->backend->key_state(s->backend->userdata, s->key, &st);
        if (k < 0)
                (void) snprintf(healthz, sizeof(healthz), "kekd: %s", backend_strerror(s, k));
        else {
                if (kms_key_id_format(s->key, st.current_version, key_id, sizeof(key_id)) < 0)
                        return refuse(r, GRPC_INTERNAL, "key_id longer than 1 KiB");
                if (st.state == 2)
                        snprintf(healthz, sizeof(healthz), "key %s is disabled", s->key);
                else if (st.state == 3)
                        snprintf(healthz, sizeof(healthz), "key %s is deleted", s->key);
                else if (st.state != 1)
                        snprintf(healthz, sizeof(healthz), "key %s is in state %d", s->key, st.state);
                else if (!st.recoverable)
                        snprintf(healthz, sizeof(healthz), "key %s is not recoverable", s->key);
                else
                        snprintf(healthz, sizeof(healthz), "ok");
        }
        out.version = (char *) KMS_API_VERSION;
        out.healthz = healthz;
        out.key_id = key_id;
        return pack_reply(r, &out.base);
}

static int do_encrypt(const KmsService *s, const uint8_t *req, size_t len, KmsReply *r) {
        V2__EncryptRequest *in = v2__encrypt_request__unpack(NULL, len, req);
        V2__EncryptResponse out = V2__ENCRYPT_RESPONSE__INIT;
        char key_id[KMS_KEY_ID_MAX + 1], ctx[KMS_KEY_ID_MAX];
        _cleanup_free_ uint8_t *blob = NULL;
        size_t blob_len = 0;
        uint32_t version = 0;
        int k;

        if (!in)
                return refuse(r, GRPC_INVALID_ARGUMENT, "EncryptRequest does not parse");
        if (in->plaintext.len == 0 || in->plaintext.len > KMS_PLAINTEXT_MAX) {
                size_t n = in->plaintext.len;
                secret_cleanse(in->plaintext.data, n);
                v2__encrypt_request__free_unpacked(in, NULL);
                return refuse(r, GRPC_INVALID_ARGUMENT, "plaintext of %zu bytes (1..%u)", n, KMS_PLAINTEXT_MAX);
        }
        context_of(s->key, ctx, sizeof(ctx));
        k = s->backend->wrap(s->backend->userdata, s->key, in->plaintext.data, in->plaintext.len,
                             (const uint8_t *) ctx, strlen(ctx), &blob, &blob_len, &version);
        secret_cleanse(in->plaintext.data, in->plaintext.len);
        v2__encrypt_request__free_unpacked(in, NULL);
        if (k < 0)
                return refuse(r, kms_status_from_backend(k), "wrap under %s: %s", s->key, backend_strerror(s, k));
        if (blob_len == 0 || blob_len > KMS_CIPHERTEXT_MAX)
                return refuse(r, GRPC_INTERNAL, "ciphertext of %zu bytes exceeds 1 KiB", blob_len);
        if (kms_key_id_format(s->key, version, key_id, sizeof(key_id)) < 0)
                return refuse(r, GRPC_INTERNAL, "key_id longer than 1 KiB");
        out.ciphertext.data = blob;
        out.ciphertext.len = blob_len;
        out.key_id = key_id;
        return pack_reply(r, &out.base);
}

static int decrypt_check(const KmsService *s, const V2__DecryptRequest *in, KmsReply *r) {
        size_t total = 0;
        BlobView b;
        uint32_t v;
        int k;

        if (in->ciphertext.len == 0 || in->ciphertext.len > KMS_CIPHERTEXT_MAX)
                return refuse(r, GRPC_INVALID_ARGUMENT, "ciphertext of %zu bytes (1..%u)", in->ciphertext.len,
                              KMS_CIPHERTEXT_MAX);
        if (strlen(in->key_id) == 0 || strlen(in->key_id) > KMS_KEY_ID_MAX)
                return refuse(r, GRPC_INVALID_ARGUMENT, "key_id of %zu bytes (1..%u)", strlen(in->key_id),
                              KMS_KEY_ID_MAX);
        k = kms_key_id_parse(in->key_id, s->key, &v);
        if (k == -ENOKEY)
                return refuse(r, GRPC_FAILED_PRECONDITION, "key_id names another key than %s", s->key);
        if (k < 0)
                return refuse(r, GRPC_INVALID_ARGUMENT, "key_id is not NAME:vN");
        /*
         * The blob names its key and version (proto/blob.h). kekd unwraps under whatever key a
         * blob names if the plugin's uid is granted it: a blob under another key, made with this
         * plugin's context by anyone who may wrap under that key, must not be unwrapped here.
         */
        if (blob_parse(in->ciphertext.data, in->ciphertext.len, &b) < 0)
                return refuse(r, GRPC_INVALID_ARGUMENT, "ciphertext is not a kekd blob");
        if (strcmp(b.key, s->key) != 0)
                return refuse(r, GRPC_FAILED_PRECONDITION, "ciphertext is not under key %s", s->key);
        if (b.version != v)
                return refuse(r, GRPC_INVALID_ARGUMENT, "key_id names version %u, the ciphertext version %u", v,
                              b.version);
        for (size_t i = 0; i < in->n_annotations; i++) {
                const V2__DecryptRequest__AnnotationsEntry *a = in->annotations[i];
                if (!kms_annotation_key_valid(a->key))
                        return refuse(r, GRPC_INVALID_ARGUMENT, "annotation %zu: key is not a fully qualified domain name", i);
                total += strlen(a->key) + a->value.len;
        }
        if (total > KMS_ANNOTATIONS_MAX)
                return refuse(r, GRPC_INVALID_ARGUMENT, "annotations of %zu bytes exceed 32 KiB", total);
        return 1;
}

static int do_decrypt(const KmsService *s, const uint8_t *req, size_t len, KmsReply *r) {
        V2__DecryptRequest *in = v2__decrypt_request__unpack(NULL, len, req);
        V2__DecryptResponse out = V2__DECRYPT_RESPONSE__INIT;
        _cleanup_secret_ Secret *pt = NULL;
        char ctx[KMS_KEY_ID_MAX];
        int k;

        if (!in)
                return refuse(r, GRPC_INVALID_ARGUMENT, "DecryptRequest does not parse");
        if (decrypt_check(s, in, r) > 0) {
                context_of(s->key, ctx, sizeof(ctx));
                k = s->backend->unwrap(s->backend->userdata, in->ciphertext.data, in->ciphertext.len,
                                       (const uint8_t *) ctx, strlen(ctx), &pt);
                if (k < 0)
                        refuse(r, kms_status_from_backend(k), "unwrap under %s: %s", s->key, backend_strerror(s, k));
        }
        v2__decrypt_request__free_unpacked(in, NULL);
        if (!pt)
                return 0;
        out.plaintext.data = pt->data;
        out.plaintext.len = pt->len;
        return pack_reply(r, &out.base);
}

int kms_service_call(const KmsService *s, KmsMethod m, const uint8_t *req, size_t len, KmsReply *ret) {
        ret->status = GRPC_INTERNAL;
        ret->message[0] = 0;
        ret->body = NULL;
        if (len > KMS_MESSAGE_MAX)
                return refuse(ret, GRPC_RESOURCE_EXHAUSTED, "message of %zu bytes exceeds %u", len, KMS_MESSAGE_MAX);
        switch (m) {
        case KMS_METHOD_STATUS:
                return do_status(s, req, len, ret);
        case KMS_METHOD_ENCRYPT:
                return do_encrypt(s, req, len, ret);
        case KMS_METHOD_DECRYPT:
                return do_decrypt(s, req, len, ret);
        default:
                return refuse(ret, GRPC_UNIMPLEMENTED, "unknown method");
        }
}
