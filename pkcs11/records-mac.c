/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Record mode "public + MAC" (see records-mac.h). Invariants: the record key
 * is generated in the token and never leaves it (every tag is computed by
 * C_Sign in the token, compared in constant time); a record key is never
 * destroyed by kekd (a record signed by it would stop verifying); nothing
 * here modifies a record: hsm-objects.c writes value || tag in one
 * C_CreateObject, so crash consistency is that of private records.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "common/kekerr.h"
#include "records-mac.h"

static const char tag_domain[] = "kekd record mac v1"; /* with its NUL */

bool record_key_ids(const char *label, size_t label_len, const uint8_t *id, size_t id_len) {
        return label_len == strlen(RECORD_KEY_LABEL) && memcmp(label, RECORD_KEY_LABEL, label_len) == 0 &&
               id_len == RECORD_KEY_ID_SIZE &&
               memcmp(id, RECORD_KEY_ID_PREFIX, sizeof(RECORD_KEY_ID_PREFIX) - 1) == 0;
}

bool record_object_label(const char *label, size_t label_len) {
        size_t n = sizeof(RECORD_OBJECT_ID_PREFIX) - 1;

        return label_len != (size_t) CK_UNAVAILABLE_INFORMATION && label_len >= n &&
               memcmp(label, RECORD_OBJECT_ID_PREFIX, n) == 0;
}

void record_keys_done(RecordKeys *k) {
        free(k->handles);
        *k = (RecordKeys) {};
}

typedef struct KeyId {
        uint8_t id[RECORD_KEY_ID_SIZE];
        CK_OBJECT_HANDLE handle;
} KeyId;

static int keyid_cmp(const void *a, const void *b) {
        return memcmp(((const KeyId *) a)->id, ((const KeyId *) b)->id, RECORD_KEY_ID_SIZE);
}

/*
 * Not KEK_SEARCH_TEMPLATE's CKA_ALWAYS_SENSITIVE/CKA_LOCAL: the search must
 * work on NSS (no CKA_LOCAL; NSS does not report CKA_SIGN of the generated
 * key either). Still only a key that never was extractable, and a private
 * one: a public key can be generated and used in a session that never
 * logged in, by the very writers of public records the tag is against (with
 * the lowest ID it would even sign kekd's records). A private record key can
 * only be planted by someone logged in, who could sign with kekd's anyway.
 */
static int record_keys_find_once(Hsm *h, RecordKeys *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_NEVER_EXTRACTABLE, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) RECORD_KEY_LABEL, strlen(RECORD_KEY_LABEL) },
        };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_free_ KeyId *ids = NULL;
        size_t n = 0, k = 0;
        int r;

        r = hsm_find_all(h, tmpl, ELEMENTSOF(tmpl), &objs, &n);
        if (r < 0)
                return r;
        ids = calloc(n ? n : 1, sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                CK_ATTRIBUTE a = { CKA_ID, ids[k].id, RECORD_KEY_ID_SIZE };
                CK_RV rv = store_call(h, P11(h, C_GetAttributeValue, h->session, objs[i], &a, 1));

                if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
                        continue; /* another ID scheme, or destroyed meanwhile */
                if (rv != CKR_OK)
                        return hsm_read_failed(h, rv);
                if (!record_key_ids(RECORD_KEY_LABEL, strlen(RECORD_KEY_LABEL), ids[k].id, a.ulValueLen))
                        continue;
                ids[k++].handle = objs[i];
        }
        qsort(ids, k, sizeof(*ids), keyid_cmp);
        *ret = (RecordKeys) { .handles = calloc(k ? k : 1, sizeof(CK_OBJECT_HANDLE)), .n = k };
        if (!ret->handles)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++)
                ret->handles[i] = ids[i].handle;
        return 0;
}

int record_keys_find(Hsm *h, RecordKeys *ret) {
        int r = record_keys_find_once(h, ret);

        if (r == -ESTALE)
                r = record_keys_find_once(h, ret);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

static int record_key_generate(Hsm *h) {
        uint8_t id[RECORD_KEY_ID_SIZE];
        size_t prefix = sizeof(RECORD_KEY_ID_PREFIX) - 1;
        HsmObject o;

        /* Random, not a counter: two kekd generating at once get distinct IDs, and the lowest one signs. */
        memcpy(id, RECORD_KEY_ID_PREFIX, prefix);
        if (getrandom(id + prefix, sizeof(id) - prefix, 0) != (ssize_t) (sizeof(id) - prefix))
                return -EIO;
        /* A failure in transit may have made it all the same: then it is simply found and used. */
        return hsm_generate_hmac_key(h, RECORD_KEY_LABEL, id, sizeof(id), true, &o);
}

int record_key_for_signing(Hsm *h, CK_OBJECT_HANDLE *ret) {
        RecordKeys keys = {};
        int r;

        r = record_keys_find(h, &keys);
        if (r >= 0 && keys.n == 0) {
                r = record_key_generate(h);
                if (r >= 0) {
                        record_keys_done(&keys);
                        r = record_keys_find(h, &keys);
                }
                if (r >= 0 && keys.n == 0)
                        r = -KEKERR_HSM_UNAVAILABLE; /* generated, yet not found: the token lost it */
        }
        if (r >= 0)
                *ret = keys.handles[0];
        record_keys_done(&keys);
        return r;
}

static void put_be32(uint8_t **p, size_t v) {
        (*p)[0] = (uint8_t) (v >> 24);
        (*p)[1] = (uint8_t) (v >> 16);
        (*p)[2] = (uint8_t) (v >> 8);
        (*p)[3] = (uint8_t) v;
        *p += 4;
}

static void put_field(uint8_t **p, const void *v, size_t len) {
        put_be32(p, len);
        if (len)
                memcpy(*p, v, len);
        *p += len;
}

/* CK_RV, with *ret_errno set for failures before any call. */
static CK_RV tag_rv(Hsm *h, CK_OBJECT_HANDLE key, const void *app, size_t app_len, const char *label,
                    const uint8_t *value, size_t len, uint8_t tag[RECORD_TAG_SIZE], int *ret_errno) {
        CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
        size_t label_len = strlen(label), total;
        _cleanup_free_ uint8_t *buf = NULL;
        CK_ULONG tag_len = RECORD_TAG_SIZE;
        uint8_t *p;
        CK_RV rv;

        if (app_len > UINT32_MAX || label_len > UINT32_MAX || len > UINT32_MAX - 64 - app_len - label_len) {
                *ret_errno = -EINVAL;
                return CKR_ARGUMENTS_BAD;
        }
        total = sizeof(tag_domain) + 12 + app_len + label_len + len;
        buf = malloc(total);
        if (!buf) {
                *ret_errno = -ENOMEM;
                return CKR_HOST_MEMORY;
        }
        p = buf;
        memcpy(p, tag_domain, sizeof(tag_domain));
        p += sizeof(tag_domain);
        put_field(&p, app, app_len);
        put_field(&p, label, label_len);
        put_field(&p, value, len);
        rv = P11(h, C_SignInit, h->session, &mech, key);
        if (rv == CKR_OK)
                rv = P11(h, C_Sign, h->session, buf, total, tag, &tag_len);
        if (rv == CKR_OK && tag_len != RECORD_TAG_SIZE)
                rv = CKR_GENERAL_ERROR;
        return rv;
}

int record_tag(Hsm *h, CK_OBJECT_HANDLE key, const char *app, size_t app_len, const char *label, const uint8_t *value,
               size_t len, uint8_t tag[RECORD_TAG_SIZE]) {
        int err = 0, r;
        CK_RV rv;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = tag_rv(h, key, app, app_len, label, value, len, tag, &err);
        if (err < 0)
                return err;
        return rv == CKR_OK ? 0 : hsm_handle_failed(h, rv);
}

int record_verify(Hsm *h, const RecordKeys *keys, const uint8_t *app, size_t app_len, const char *label,
                  const uint8_t *value, size_t len) {
        uint8_t tag[RECORD_TAG_SIZE];

        if (len < RECORD_TAG_SIZE)
                return -EBADMSG;
        for (size_t i = 0; i < keys->n; i++) {
                int err = 0;
                CK_RV rv = tag_rv(h, keys->handles[i], app, app_len, label, value, len - RECORD_TAG_SIZE, tag, &err);

                if (err < 0)
                        return err;
                if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
                        return -ENOENT; /* the key list is stale: list again */
                if (rv != CKR_OK)
                        return hsm_read_failed(h, rv);
                if (CRYPTO_memcmp(tag, value + len - RECORD_TAG_SIZE, RECORD_TAG_SIZE) == 0)
                        return 0;
        }
        return -EBADMSG;
}
