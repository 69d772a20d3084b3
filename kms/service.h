/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The KMS v2 service: Status, Encrypt and Decrypt as pure functions from a
 * request message to a reply (a gRPC status, a message for grpc-message and
 * the packed response), over a backend that reaches kekd. The real backend
 * is libkek (kms/main.c); the unit tests and the fuzzer give a mock. Every
 * limit of the KMS v2 API is checked here, before the backend is called.
 *
 * Context: every wrap binds the fixed context "kms-v2:" + key name, not the
 * request's uid. kube-apiserver's uid is a per-call trace id: the Decrypt of
 * a DEK seed carries another uid than its Encrypt did, so binding it would
 * make every ciphertext undecryptable. The fixed context keeps blobs made
 * for this purpose apart from blobs other clients wrap under the same key.
 *
 * key_id is "NAME:vN", N the kekd version the wrap used, so a rotation
 * changes it. No annotations are returned: the blob names its key and
 * version (kekd-protocol(7), BLOB FORMAT) and the context is derived from
 * the key name, so a Decrypt needs nothing else. Decrypt requests' own
 * annotations are checked against the API's rules and otherwise ignored.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"
#include "kms/grpc.h"

/* The KMS v2 API's limits (k8s.io/apiserver .../envelope/kmsv2) */
#define KMS_KEY_ID_MAX 1024u
#define KMS_CIPHERTEXT_MAX 1024u
#define KMS_ANNOTATIONS_MAX (32u * 1024u)
/* The plaintext is a 32-byte DEK seed; the bound keeps every blob profile's ciphertext within 1 KiB. */
#define KMS_PLAINTEXT_MAX 512u
/* A request message: the largest valid one (annotations, ciphertext, key_id, uid) fits. */
#define KMS_MESSAGE_MAX (40u * 1024u)

#define KMS_CONTEXT_PREFIX "kms-v2:"
#define KMS_API_VERSION "v2"

typedef enum KmsMethod {
        KMS_METHOD_STATUS,
        KMS_METHOD_ENCRYPT,
        KMS_METHOD_DECRYPT,
        _KMS_METHOD_MAX,
        KMS_METHOD_INVALID = -EINVAL,
} KmsMethod;

typedef struct KmsKeyState {
        uint32_t current_version;
        int state;          /* 1 enabled, 2 disabled, 3 deleted */
        bool recoverable;
} KmsKeyState;

/* The backend: libkek's calls, return values as libkek's (0, -errno or -(0x10000 + kekd code)). */
typedef struct KmsBackend {
        int (*wrap)(void *userdata, const char *key, const uint8_t *pt, size_t len, const uint8_t *ctx,
                    size_t ctx_len, uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version);
        int (*unwrap)(void *userdata, const uint8_t *blob, size_t len, const uint8_t *ctx, size_t ctx_len,
                      Secret **ret_plaintext);
        int (*key_state)(void *userdata, const char *key, KmsKeyState *ret);
        /* A readable name for a backend error (never secret) */
        const char *(*strerror)(int r);
        void *userdata;
} KmsBackend;

typedef struct KmsService {
        const char *key;        /* the kekd key name */
        const KmsBackend *backend;
} KmsService;

typedef struct KmsReply {
        GrpcStatus status;
        char message[192];      /* for grpc-message; never holds a secret */
        Secret *body;           /* the packed response when status is OK (a Decrypt's holds the plaintext) */
} KmsReply;

void kms_reply_done(KmsReply *r);

const char *kms_method_name(KmsMethod m);
/* The method a :path names ("/v2.KeyManagementService/Encrypt"), or KMS_METHOD_INVALID. */
KmsMethod kms_method_from_path(const char *path, size_t len);

/* Runs one call; always fills *ret (status and message on refusal). Returns -ENOMEM only. */
int kms_service_call(const KmsService *s, KmsMethod m, const uint8_t *req, size_t len, KmsReply *ret);

/* The gRPC status for a backend error */
GrpcStatus kms_status_from_backend(int r);

/* Helpers, exported for the tests */
bool kms_annotation_key_valid(const char *key);
int kms_key_id_format(const char *key, uint32_t version, char *out, size_t n);
/* Parses "NAME:vN": 0 and *ret_version when NAME equals key, -ENOKEY for another name, -EINVAL malformed. */
int kms_key_id_parse(const char *key_id, const char *key, uint32_t *ret_version);
