/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mock-p11: a small in-memory PKCS#11 module for tests and fuzzers. It stands
 * in for an HSM where SoftHSM2 would be too slow (a fuzzer runs thousands of
 * requests a second) or too hard to reset: one slot holding one initialised
 * token, labelled $MOCK_P11_TOKEN (default "mock"), that accepts any PIN for
 * CKU_USER, or only $MOCK_P11_PIN when that is set. It implements what
 * pkcs11/hsm.c calls, with the semantics of the specification (v2.40) where
 * kekd depends on them: sessions (closing the last one logs out), private
 * objects invisible until login, session objects gone with their session,
 * CKO_DATA and CKO_SECRET_KEY objects with attribute templates and defaults,
 * CKM_AES_KEY_GEN (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE set
 * by the token), C_FindObjects* with exact template matching over a snapshot
 * taken at C_FindObjectsInit, C_GetAttributeValue with CKR_ATTRIBUTE_SENSITIVE,
 * CKR_ATTRIBUTE_TYPE_INVALID and CKR_BUFFER_TOO_SMALL per attribute,
 * C_SetAttributeValue honouring CKA_MODIFIABLE, C_DestroyObject honouring
 * CKA_DESTROYABLE, and single-part CKM_AES_GCM encryption and decryption done
 * for real with OpenSSL EVP, so blobs authenticate and tampering is caught.
 *
 * Everything is deterministic: object and session handles count up from 1,
 * and key values and C_GenerateRandom come from SHA-256 in counter mode over a
 * fixed seed. This is NOT a random generator: never use this module outside
 * tests. The store is process-global and survives C_Finalize (it is the
 * "token"); it is bounded (4096 objects, 1 MiB per attribute, 64 MiB in all:
 * beyond that CKR_DEVICE_MEMORY). mock-p11.h declares hooks to snapshot and
 * reset the store between fuzz iterations.
 *
 * Not implemented (CKR_FUNCTION_NOT_SUPPORTED or refused): other slots and
 * tokens, C_InitToken/C_InitPIN/C_SetPIN, CKU_SO and CKU_CONTEXT_SPECIFIC,
 * object classes other than CKO_DATA and CKO_SECRET_KEY, key types other than
 * CKK_AES, mechanisms other than CKM_AES_KEY_GEN and CKM_AES_GCM, multi-part
 * (Update/Final) operations, digest, sign, verify, wrap, unwrap, derive, key
 * pairs, C_CopyObject, operation state, slot events, attribute arrays
 * (CKA_WRAP_TEMPLATE and friends), application-supplied mutex callbacks (a
 * pthread mutex is always used) and notification callbacks.
 */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <p11-kit/pkcs11.h>

#include "mock-p11.h"

#define EXPORT __attribute__((visibility("default")))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MOCK_SLOT_ID 1UL
#define MOCK_MAX_OBJECTS 4096u
#define MOCK_MAX_SESSIONS 64u
#define MOCK_MAX_ATTR_VALUE (1024u * 1024u)
#define MOCK_MAX_STORE_BYTES (64u * 1024u * 1024u)
#define MOCK_MAX_DATA (16u * 1024u * 1024u)
#define MOCK_MAX_IV 256u
#define MOCK_MAX_AAD (64u * 1024u)

typedef struct MockAttr {
        CK_ATTRIBUTE_TYPE type;
        CK_ULONG len;
        uint8_t *value;
} MockAttr;

typedef struct MockObject {
        CK_OBJECT_HANDLE handle;
        CK_SESSION_HANDLE session;      /* the owning session of a session object; 0 for token objects */
        MockAttr *attrs;
        size_t n_attrs;
} MockObject;

typedef enum MockOp {
        OP_NONE,
        OP_ENCRYPT,
        OP_DECRYPT,
} MockOp;

typedef struct MockSession {
        CK_SESSION_HANDLE handle;       /* 0: this slot of the table is free */
        CK_FLAGS flags;
        bool find_active;
        CK_OBJECT_HANDLE *found;
        size_t n_found, found_pos;
        MockOp op;
        uint8_t key[32];
        size_t key_len;
        uint8_t iv[MOCK_MAX_IV];
        size_t iv_len;
        uint8_t *aad;
        size_t aad_len;
        size_t tag_len;
} MockSession;

static struct {
        pthread_mutex_t lock;
        bool initialized;
        bool logged_in;
        char label[32];                 /* space padded, as in CK_TOKEN_INFO */
        char pin[256];
        bool pin_required;
        MockObject **objects;           /* sorted by handle: handles only grow */
        size_t n_objects;
        size_t store_bytes;
        CK_OBJECT_HANDLE next_handle;
        uint64_t drbg_counter;
        MockSession sessions[MOCK_MAX_SESSIONS];
        CK_SESSION_HANDLE next_session;
        /* mock_p11_snapshot() */
        bool have_snapshot;
        MockObject **snap_objects;
        size_t n_snap_objects;
        CK_OBJECT_HANDLE snap_next_handle;
        uint64_t snap_drbg_counter;
} mock = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .next_handle = 1,
        .next_session = 1,
};

/* --- helpers --------------------------------------------------------------------------- */

static void pad_copy(CK_UTF8CHAR *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size);

        memset(dst, ' ', size);
        memcpy(dst, src, n);
}

/* SHA-256 in counter mode over a fixed seed: deterministic, and for tests only. */
static void drbg_fill(uint8_t *out, size_t n) {
        while (n > 0) {
                uint8_t in[32] = "mock-p11 drbg";  /* then the counter, big-endian, in the last 8 bytes */
                uint8_t block[SHA256_DIGEST_LENGTH];
                size_t k;

                for (int i = 0; i < 8; i++)
                        in[24 + i] = (uint8_t) (mock.drbg_counter >> (56 - 8 * i));
                mock.drbg_counter++;
                SHA256(in, sizeof(in), block);
                k = n < sizeof(block) ? n : sizeof(block);
                memcpy(out, block, k);
                out += k;
                n -= k;
        }
}

static bool attr_is_bool(CK_ATTRIBUTE_TYPE t) {
        switch (t) {
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_SENSITIVE:
        case CKA_EXTRACTABLE:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_SIGN_RECOVER:
        case CKA_VERIFY_RECOVER:
        case CKA_DERIVE:
        case CKA_LOCAL:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_TRUSTED:
        case CKA_WRAP_WITH_TRUSTED:
        case CKA_ALWAYS_AUTHENTICATE:
                return true;
        default:
                return false;
        }
}

static bool attr_is_ulong(CK_ATTRIBUTE_TYPE t) {
        return t == CKA_CLASS || t == CKA_KEY_TYPE || t == CKA_VALUE_LEN || t == CKA_KEY_GEN_MECHANISM;
}

/* Attributes only the token sets. */
static bool attr_is_token_set(CK_ATTRIBUTE_TYPE t) {
        return t == CKA_LOCAL || t == CKA_ALWAYS_SENSITIVE || t == CKA_NEVER_EXTRACTABLE || t == CKA_KEY_GEN_MECHANISM;
}

static bool attr_valid_for_data(CK_ATTRIBUTE_TYPE t) {
        switch (t) {
        case CKA_CLASS:
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_LABEL:
        case CKA_APPLICATION:
        case CKA_OBJECT_ID:
        case CKA_VALUE:
                return true;
        default:
                return false;
        }
}

static bool attr_valid_for_secret_key(CK_ATTRIBUTE_TYPE t) {
        switch (t) {
        case CKA_CLASS:
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_LABEL:
        case CKA_ID:
        case CKA_KEY_TYPE:
        case CKA_START_DATE:
        case CKA_END_DATE:
        case CKA_DERIVE:
        case CKA_LOCAL:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_SENSITIVE:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_EXTRACTABLE:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_WRAP_WITH_TRUSTED:
        case CKA_TRUSTED:
        case CKA_VALUE:
        case CKA_VALUE_LEN:
                return true;
        default:
                return false;
        }
}

/* Shape checks common to every template that creates or changes objects. */
static CK_RV template_check(const CK_ATTRIBUTE *t, CK_ULONG n) {
        if (n > 0 && !t)
                return CKR_ARGUMENTS_BAD;
        for (CK_ULONG i = 0; i < n; i++) {
                if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION || (t[i].ulValueLen > 0 && !t[i].pValue))
                        return CKR_ATTRIBUTE_VALUE_INVALID;
                if (t[i].ulValueLen > MOCK_MAX_ATTR_VALUE)
                        return CKR_DEVICE_MEMORY;
                if (attr_is_bool(t[i].type) &&
                    (t[i].ulValueLen != sizeof(CK_BBOOL) || *(const CK_BBOOL *) t[i].pValue > CK_TRUE))
                        return CKR_ATTRIBUTE_VALUE_INVALID;
                if (attr_is_ulong(t[i].type) && t[i].ulValueLen != sizeof(CK_ULONG))
                        return CKR_ATTRIBUTE_VALUE_INVALID;
                for (CK_ULONG j = 0; j < i; j++)
                        if (t[j].type == t[i].type)
                                return CKR_TEMPLATE_INCONSISTENT;
        }
        return CKR_OK;
}

static const CK_ATTRIBUTE *template_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type) {
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].type == type)
                        return &t[i];
        return NULL;
}

static MockAttr *obj_attr(const MockObject *o, CK_ATTRIBUTE_TYPE type) {
        for (size_t i = 0; i < o->n_attrs; i++)
                if (o->attrs[i].type == type)
                        return &o->attrs[i];
        return NULL;
}

static bool obj_bool(const MockObject *o, CK_ATTRIBUTE_TYPE type, bool dflt) {
        const MockAttr *a = obj_attr(o, type);

        if (!a || a->len != sizeof(CK_BBOOL))
                return dflt;
        return *a->value != CK_FALSE;
}

static CK_ULONG obj_ulong(const MockObject *o, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt) {
        const MockAttr *a = obj_attr(o, type);
        CK_ULONG v;

        if (!a || a->len != sizeof(CK_ULONG))
                return dflt;
        memcpy(&v, a->value, sizeof(v));
        return v;
}

/* Sets (or replaces) an attribute; accounts the bytes against the store's cap. */
static CK_RV obj_set(MockObject *o, CK_ATTRIBUTE_TYPE type, const void *value, CK_ULONG len) {
        MockAttr *a = obj_attr(o, type);
        uint8_t *copy;

        if (len > MOCK_MAX_ATTR_VALUE || mock.store_bytes + len > MOCK_MAX_STORE_BYTES)
                return CKR_DEVICE_MEMORY;
        copy = malloc(len ? len : 1);
        if (!copy)
                return CKR_HOST_MEMORY;
        if (len)
                memcpy(copy, value, len);
        if (!a) {
                MockAttr *attrs = realloc(o->attrs, (o->n_attrs + 1) * sizeof(*attrs));

                if (!attrs) {
                        free(copy);
                        return CKR_HOST_MEMORY;
                }
                o->attrs = attrs;
                a = &o->attrs[o->n_attrs++];
                *a = (MockAttr) { .type = type };
        } else {
                mock.store_bytes -= a->len;
                OPENSSL_cleanse(a->value, a->len);
                free(a->value);
        }
        a->value = copy;
        a->len = len;
        mock.store_bytes += len;
        return CKR_OK;
}

static CK_RV obj_set_bool(MockObject *o, CK_ATTRIBUTE_TYPE type, bool v) {
        CK_BBOOL b = v ? CK_TRUE : CK_FALSE;

        return obj_set(o, type, &b, sizeof(b));
}

static CK_RV obj_set_ulong(MockObject *o, CK_ATTRIBUTE_TYPE type, CK_ULONG v) {
        return obj_set(o, type, &v, sizeof(v));
}

static MockObject *obj_free(MockObject *o) {
        if (!o)
                return NULL;
        for (size_t i = 0; i < o->n_attrs; i++) {
                mock.store_bytes -= o->attrs[i].len;
                OPENSSL_cleanse(o->attrs[i].value, o->attrs[i].len);
                free(o->attrs[i].value);
        }
        free(o->attrs);
        free(o);
        return NULL;
}

/* A deep copy outside the store's accounting (for snapshots). */
static MockObject *obj_copy(const MockObject *o) {
        MockObject *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->handle = o->handle;
        c->session = o->session;
        c->attrs = calloc(o->n_attrs ? o->n_attrs : 1, sizeof(*c->attrs));
        if (!c->attrs) {
                free(c);
                return NULL;
        }
        for (size_t i = 0; i < o->n_attrs; i++) {
                c->attrs[i].type = o->attrs[i].type;
                c->attrs[i].len = o->attrs[i].len;
                c->attrs[i].value = malloc(o->attrs[i].len ? o->attrs[i].len : 1);
                if (!c->attrs[i].value) {
                        for (size_t j = 0; j < i; j++)
                                free(c->attrs[j].value);
                        free(c->attrs);
                        free(c);
                        return NULL;
                }
                memcpy(c->attrs[i].value, o->attrs[i].value, o->attrs[i].len);
                c->n_attrs++;
        }
        return c;
}

static size_t obj_bytes(const MockObject *o) {
        size_t n = 0;

        for (size_t i = 0; i < o->n_attrs; i++)
                n += o->attrs[i].len;
        return n;
}

static bool obj_visible(const MockObject *o) {
        return mock.logged_in || !obj_bool(o, CKA_PRIVATE, true);
}

static size_t obj_index(CK_OBJECT_HANDLE h, bool *found) {
        size_t lo = 0, hi = mock.n_objects;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (mock.objects[mid]->handle == h) {
                        *found = true;
                        return mid;
                }
                if (mock.objects[mid]->handle < h)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

/* The object behind a handle, if it exists and the caller may see it. */
static MockObject *obj_get(CK_OBJECT_HANDLE h) {
        bool found;
        size_t i = obj_index(h, &found);

        if (!found || !obj_visible(mock.objects[i]))
                return NULL;
        return mock.objects[i];
}

/* Adds a new object to the store (handles only grow, so it goes last); takes ownership. */
static CK_RV obj_insert(MockObject *o, CK_OBJECT_HANDLE *ret) {
        MockObject **objects;

        if (mock.n_objects >= MOCK_MAX_OBJECTS) {
                obj_free(o);
                return CKR_DEVICE_MEMORY;
        }
        objects = realloc(mock.objects, (mock.n_objects + 1) * sizeof(*objects));
        if (!objects) {
                obj_free(o);
                return CKR_HOST_MEMORY;
        }
        mock.objects = objects;
        o->handle = mock.next_handle++;
        mock.objects[mock.n_objects++] = o;
        *ret = o->handle;
        return CKR_OK;
}

static void obj_remove_at(size_t i) {
        obj_free(mock.objects[i]);
        memmove(mock.objects + i, mock.objects + i + 1, (mock.n_objects - i - 1) * sizeof(*mock.objects));
        mock.n_objects--;
}

static MockSession *session_get(CK_SESSION_HANDLE h) {
        if (h == CK_INVALID_HANDLE)
                return NULL;
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                if (mock.sessions[i].handle == h)
                        return &mock.sessions[i];
        return NULL;
}

static size_t sessions_open(void) {
        size_t n = 0;

        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                n += mock.sessions[i].handle != 0;
        return n;
}

static void session_find_done(MockSession *s) {
        free(s->found);
        s->found = NULL;
        s->n_found = s->found_pos = 0;
        s->find_active = false;
}

static void session_op_done(MockSession *s) {
        OPENSSL_cleanse(s->key, sizeof(s->key));
        free(s->aad);
        s->aad = NULL;
        s->aad_len = s->iv_len = s->key_len = s->tag_len = 0;
        s->op = OP_NONE;
}

static void session_close(MockSession *s) {
        CK_SESSION_HANDLE h = s->handle;

        session_find_done(s);
        session_op_done(s);
        *s = (MockSession) {};
        /* Session objects die with their session. */
        for (size_t i = mock.n_objects; i > 0; i--)
                if (mock.objects[i - 1]->session == h)
                        obj_remove_at(i - 1);
        /* Closing the last session logs the token out. */
        if (sessions_open() == 0)
                mock.logged_in = false;
}

/* Entry and exit of every call: the lock, and the checks every session call makes. */
#define LOCK() pthread_mutex_lock(&mock.lock)
#define UNLOCK_RETURN(rv)                               \
        do {                                            \
                CK_RV _rv = (rv);                       \
                pthread_mutex_unlock(&mock.lock);       \
                return _rv;                             \
        } while (0)

#define ENTER_SESSION(h, s)                                             \
        MockSession *s;                                                 \
        LOCK();                                                         \
        if (!mock.initialized)                                          \
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);            \
        s = session_get(h);                                             \
        if (!s)                                                         \
                UNLOCK_RETURN(CKR_SESSION_HANDLE_INVALID)

/* --- general, slot and token ----------------------------------------------------------- */

static CK_RV mock_Initialize(void *init_args) {
        const CK_C_INITIALIZE_ARGS *args = init_args;
        const char *label, *pin;

        LOCK();
        if (mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        if (args && args->pReserved)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        label = getenv("MOCK_P11_TOKEN");
        memset(mock.label, ' ', sizeof(mock.label));
        memcpy(mock.label, label && *label ? label : "mock", strnlen(label && *label ? label : "mock", sizeof(mock.label)));
        pin = getenv("MOCK_P11_PIN");
        mock.pin_required = pin != NULL;
        snprintf(mock.pin, sizeof(mock.pin), "%s", pin ? pin : "");
        mock.initialized = true;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_Finalize(void *reserved) {
        LOCK();
        if (reserved)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                if (mock.sessions[i].handle)
                        session_close(&mock.sessions[i]);
        mock.logged_in = false;
        mock.initialized = false;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetInfo(CK_INFO *info) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (!info)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        memset(info, 0, sizeof(*info));
        info->cryptokiVersion = (CK_VERSION) { 2, 40 };
        pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "kekd tests");
        pad_copy(info->libraryDescription, sizeof(info->libraryDescription), "kekd mock-p11 (tests only)");
        info->libraryVersion = (CK_VERSION) { 1, 0 };
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID *list, CK_ULONG *count) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (!count)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (!list) {
                *count = 1;
                UNLOCK_RETURN(CKR_OK);
        }
        if (*count < 1) {
                *count = 1;
                UNLOCK_RETURN(CKR_BUFFER_TOO_SMALL);
        }
        list[0] = MOCK_SLOT_ID;
        *count = 1;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO *info) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        if (!info)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        memset(info, 0, sizeof(*info));
        pad_copy(info->slotDescription, sizeof(info->slotDescription), "kekd mock-p11 slot");
        pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "kekd tests");
        info->flags = CKF_TOKEN_PRESENT;
        info->hardwareVersion = (CK_VERSION) { 1, 0 };
        info->firmwareVersion = (CK_VERSION) { 1, 0 };
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO *info) {
        size_t rw = 0, all = 0;

        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        if (!info)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                if (mock.sessions[i].handle) {
                        all++;
                        rw += !!(mock.sessions[i].flags & CKF_RW_SESSION);
                }
        memset(info, 0, sizeof(*info));
        memcpy(info->label, mock.label, sizeof(info->label));
        pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "kekd tests");
        pad_copy(info->model, sizeof(info->model), "mock-p11");
        pad_copy(info->serialNumber, sizeof(info->serialNumber), "0000000000000001");
        info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
        info->ulMaxSessionCount = MOCK_MAX_SESSIONS;
        info->ulSessionCount = all;
        info->ulMaxRwSessionCount = MOCK_MAX_SESSIONS;
        info->ulRwSessionCount = rw;
        info->ulMaxPinLen = sizeof(mock.pin) - 1;
        info->ulMinPinLen = 1;
        info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->hardwareVersion = (CK_VERSION) { 1, 0 };
        info->firmwareVersion = (CK_VERSION) { 1, 0 };
        memset(info->utcTime, ' ', sizeof(info->utcTime));
        UNLOCK_RETURN(CKR_OK);
}

static const CK_MECHANISM_TYPE mechanisms[] = { CKM_AES_KEY_GEN, CKM_AES_GCM };

static CK_RV mock_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE *list, CK_ULONG *count) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        if (!count)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (!list) {
                *count = ELEMENTSOF(mechanisms);
                UNLOCK_RETURN(CKR_OK);
        }
        if (*count < ELEMENTSOF(mechanisms)) {
                *count = ELEMENTSOF(mechanisms);
                UNLOCK_RETURN(CKR_BUFFER_TOO_SMALL);
        }
        memcpy(list, mechanisms, sizeof(mechanisms));
        *count = ELEMENTSOF(mechanisms);
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *info) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        if (!info)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        switch (type) {
        case CKM_AES_KEY_GEN:
                *info = (CK_MECHANISM_INFO) { 16, 32, CKF_HW | CKF_GENERATE };
                break;
        case CKM_AES_GCM:
                *info = (CK_MECHANISM_INFO) { 16, 32, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT };
                break;
        default:
                UNLOCK_RETURN(CKR_MECHANISM_INVALID);
        }
        UNLOCK_RETURN(CKR_OK);
}

/* --- sessions and login -------------------------------------------------------------- */

static CK_RV mock_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *application, CK_NOTIFY notify,
                              CK_SESSION_HANDLE *ret) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        if (!ret)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (!(flags & CKF_SERIAL_SESSION))
                UNLOCK_RETURN(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                if (mock.sessions[i].handle == 0) {
                        mock.sessions[i] = (MockSession) { .handle = mock.next_session++, .flags = flags };
                        *ret = mock.sessions[i].handle;
                        UNLOCK_RETURN(CKR_OK);
                }
        UNLOCK_RETURN(CKR_SESSION_COUNT);
}

static CK_RV mock_CloseSession(CK_SESSION_HANDLE h) {
        ENTER_SESSION(h, s);
        session_close(s);
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_CloseAllSessions(CK_SLOT_ID slot) {
        LOCK();
        if (!mock.initialized)
                UNLOCK_RETURN(CKR_CRYPTOKI_NOT_INITIALIZED);
        if (slot != MOCK_SLOT_ID)
                UNLOCK_RETURN(CKR_SLOT_ID_INVALID);
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++)
                if (mock.sessions[i].handle)
                        session_close(&mock.sessions[i]);
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO *info) {
        bool rw;

        ENTER_SESSION(h, s);
        if (!info)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        rw = s->flags & CKF_RW_SESSION;
        *info = (CK_SESSION_INFO) {
                .slotID = MOCK_SLOT_ID,
                .state = mock.logged_in ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS)
                                        : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION),
                .flags = s->flags,
        };
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR *pin, CK_ULONG pin_len) {
        ENTER_SESSION(h, s);
        (void) s;
        if (user != CKU_USER)
                UNLOCK_RETURN(CKR_USER_TYPE_INVALID);
        if (!pin && pin_len > 0)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (mock.logged_in)
                UNLOCK_RETURN(CKR_USER_ALREADY_LOGGED_IN);
        if (mock.pin_required && (pin_len != strlen(mock.pin) || (pin_len > 0 && memcmp(pin, mock.pin, pin_len) != 0)))
                UNLOCK_RETURN(CKR_PIN_INCORRECT);
        mock.logged_in = true;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_Logout(CK_SESSION_HANDLE h) {
        ENTER_SESSION(h, s);
        (void) s;
        if (!mock.logged_in)
                UNLOCK_RETURN(CKR_USER_NOT_LOGGED_IN);
        mock.logged_in = false;
        UNLOCK_RETURN(CKR_OK);
}

/* --- objects ------------------------------------------------------------------------ */

/* Whether a template may create a private and/or token object in this session. */
static CK_RV check_creation_rights(const MockSession *s, const MockObject *o) {
        if (obj_bool(o, CKA_PRIVATE, true) && !mock.logged_in)
                return CKR_USER_NOT_LOGGED_IN;
        if (obj_bool(o, CKA_TOKEN, false) && !(s->flags & CKF_RW_SESSION))
                return CKR_SESSION_READ_ONLY;
        return CKR_OK;
}

/* Copies the template into a new object, after the class's defaults. */
static CK_RV obj_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, MockObject **ret) {
        MockObject *o = calloc(1, sizeof(*o));
        CK_RV rv = CKR_OK;

        if (!o)
                return CKR_HOST_MEMORY;
        for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++)
                rv = obj_set(o, t[i].type, t[i].pValue, t[i].ulValueLen);
        if (rv != CKR_OK) {
                obj_free(o);
                return rv;
        }
        *ret = o;
        return CKR_OK;
}

/* Fills the attributes a template left out with their defaults. */
static CK_RV obj_defaults(MockObject *o, CK_OBJECT_CLASS cls) {
        static const struct {
                CK_ATTRIBUTE_TYPE type;
                bool value;
        } data_bools[] = {
                { CKA_TOKEN, false }, { CKA_PRIVATE, true }, { CKA_MODIFIABLE, true },
                { CKA_COPYABLE, true }, { CKA_DESTROYABLE, true },
        }, key_bools[] = {
                { CKA_TOKEN, false }, { CKA_PRIVATE, true }, { CKA_MODIFIABLE, true },
                { CKA_COPYABLE, true }, { CKA_DESTROYABLE, true }, { CKA_DERIVE, false },
                { CKA_SENSITIVE, false }, { CKA_ENCRYPT, true }, { CKA_DECRYPT, true },
                { CKA_SIGN, true }, { CKA_VERIFY, true }, { CKA_WRAP, true }, { CKA_UNWRAP, true },
                { CKA_EXTRACTABLE, true }, { CKA_WRAP_WITH_TRUSTED, false }, { CKA_TRUSTED, false },
        };
        static const CK_ATTRIBUTE_TYPE data_empty[] = { CKA_LABEL, CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE };
        static const CK_ATTRIBUTE_TYPE key_empty[] = { CKA_LABEL, CKA_ID, CKA_START_DATE, CKA_END_DATE };
        bool data = cls == CKO_DATA;
        CK_RV rv = CKR_OK;

        for (size_t i = 0; i < (data ? ELEMENTSOF(data_bools) : ELEMENTSOF(key_bools)) && rv == CKR_OK; i++) {
                CK_ATTRIBUTE_TYPE type = data ? data_bools[i].type : key_bools[i].type;

                if (!obj_attr(o, type))
                        rv = obj_set_bool(o, type, data ? data_bools[i].value : key_bools[i].value);
        }
        for (size_t i = 0; i < (data ? ELEMENTSOF(data_empty) : ELEMENTSOF(key_empty)) && rv == CKR_OK; i++) {
                CK_ATTRIBUTE_TYPE type = data ? data_empty[i] : key_empty[i];

                if (!obj_attr(o, type))
                        rv = obj_set(o, type, NULL, 0);
        }
        return rv;
}

static CK_RV mock_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *ret) {
        const CK_ATTRIBUTE *a;
        MockObject *o = NULL;
        CK_OBJECT_CLASS cls;
        CK_RV rv;

        ENTER_SESSION(h, s);
        if (!ret)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        rv = template_check(t, n);
        if (rv != CKR_OK)
                UNLOCK_RETURN(rv);
        a = template_find(t, n, CKA_CLASS);
        if (!a)
                UNLOCK_RETURN(CKR_TEMPLATE_INCOMPLETE);
        memcpy(&cls, a->pValue, sizeof(cls));
        for (CK_ULONG i = 0; i < n; i++) {
                if (cls == CKO_DATA && !attr_valid_for_data(t[i].type))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_TYPE_INVALID);
                if (cls == CKO_SECRET_KEY && !attr_valid_for_secret_key(t[i].type))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_TYPE_INVALID);
                if (attr_is_token_set(t[i].type))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
        }
        if (cls == CKO_SECRET_KEY) {
                const CK_ATTRIBUTE *type = template_find(t, n, CKA_KEY_TYPE), *value = template_find(t, n, CKA_VALUE);
                CK_KEY_TYPE kt;

                if (!type || !value)
                        UNLOCK_RETURN(CKR_TEMPLATE_INCOMPLETE);
                memcpy(&kt, type->pValue, sizeof(kt));
                if (kt != CKK_AES)
                        UNLOCK_RETURN(CKR_TEMPLATE_INCONSISTENT);
                if (value->ulValueLen != 16 && value->ulValueLen != 24 && value->ulValueLen != 32)
                        UNLOCK_RETURN(CKR_ATTRIBUTE_VALUE_INVALID);
                if (template_find(t, n, CKA_VALUE_LEN))
                        UNLOCK_RETURN(CKR_TEMPLATE_INCONSISTENT);
        } else if (cls != CKO_DATA)
                UNLOCK_RETURN(CKR_ATTRIBUTE_VALUE_INVALID);

        rv = obj_from_template(t, n, &o);
        if (rv == CKR_OK)
                rv = obj_defaults(o, cls);
        if (rv == CKR_OK && cls == CKO_SECRET_KEY) {
                /* Imported, so never "always sensitive" or "never extractable". */
                rv = obj_set_ulong(o, CKA_VALUE_LEN, obj_attr(o, CKA_VALUE)->len);
                if (rv == CKR_OK)
                        rv = obj_set_bool(o, CKA_LOCAL, false);
                if (rv == CKR_OK)
                        rv = obj_set_bool(o, CKA_ALWAYS_SENSITIVE, false);
                if (rv == CKR_OK)
                        rv = obj_set_bool(o, CKA_NEVER_EXTRACTABLE, false);
                if (rv == CKR_OK)
                        rv = obj_set_ulong(o, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
        }
        if (rv == CKR_OK)
                rv = check_creation_rights(s, o);
        if (rv != CKR_OK) {
                obj_free(o);
                UNLOCK_RETURN(rv);
        }
        o->session = obj_bool(o, CKA_TOKEN, false) ? 0 : s->handle;
        UNLOCK_RETURN(obj_insert(o, ret));
}

static CK_RV mock_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh) {
        bool found;
        size_t i;

        ENTER_SESSION(h, s);
        i = obj_index(oh, &found);
        if (!found || !obj_visible(mock.objects[i]))
                UNLOCK_RETURN(CKR_OBJECT_HANDLE_INVALID);
        if (mock.objects[i]->session == 0 && !(s->flags & CKF_RW_SESSION))
                UNLOCK_RETURN(CKR_SESSION_READ_ONLY);
        if (!obj_bool(mock.objects[i], CKA_DESTROYABLE, true))
                UNLOCK_RETURN(CKR_ACTION_PROHIBITED);
        obj_remove_at(i);
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ULONG *size) {
        MockObject *o;

        ENTER_SESSION(h, s);
        (void) s;
        if (!size)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        o = obj_get(oh);
        if (!o)
                UNLOCK_RETURN(CKR_OBJECT_HANDLE_INVALID);
        *size = obj_bytes(o);
        UNLOCK_RETURN(CKR_OK);
}

static bool attr_is_sensitive(const MockObject *o, CK_ATTRIBUTE_TYPE type) {
        return type == CKA_VALUE && obj_ulong(o, CKA_CLASS, CKO_DATA) == CKO_SECRET_KEY &&
               (obj_bool(o, CKA_SENSITIVE, false) || !obj_bool(o, CKA_EXTRACTABLE, true));
}

static CK_RV mock_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE *t, CK_ULONG n) {
        CK_RV rv = CKR_OK;
        MockObject *o;

        ENTER_SESSION(h, s);
        (void) s;
        if (n > 0 && !t)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        o = obj_get(oh);
        if (!o)
                UNLOCK_RETURN(CKR_OBJECT_HANDLE_INVALID);
        /* Every attribute gets its answer; the call reports one of the failures. */
        for (CK_ULONG i = 0; i < n; i++) {
                const MockAttr *a = obj_attr(o, t[i].type);
                CK_RV r = CKR_OK;

                if (a && attr_is_sensitive(o, t[i].type)) {
                        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        r = CKR_ATTRIBUTE_SENSITIVE;
                } else if (!a) {
                        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        r = CKR_ATTRIBUTE_TYPE_INVALID;
                } else if (!t[i].pValue)
                        t[i].ulValueLen = a->len;
                else if (t[i].ulValueLen >= a->len) {
                        memcpy(t[i].pValue, a->value, a->len);
                        t[i].ulValueLen = a->len;
                } else {
                        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        r = CKR_BUFFER_TOO_SMALL;
                }
                if (rv == CKR_OK)
                        rv = r;
        }
        UNLOCK_RETURN(rv);
}

static CK_RV mock_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE *t, CK_ULONG n) {
        MockObject *o;
        CK_RV rv;

        ENTER_SESSION(h, s);
        rv = template_check(t, n);
        if (rv != CKR_OK)
                UNLOCK_RETURN(rv);
        o = obj_get(oh);
        if (!o)
                UNLOCK_RETURN(CKR_OBJECT_HANDLE_INVALID);
        if (o->session == 0 && !(s->flags & CKF_RW_SESSION))
                UNLOCK_RETURN(CKR_SESSION_READ_ONLY);
        if (!obj_bool(o, CKA_MODIFIABLE, true))
                UNLOCK_RETURN(CKR_ACTION_PROHIBITED);
        /* All checks first: the change is all or nothing. */
        for (CK_ULONG i = 0; i < n; i++) {
                bool key = obj_ulong(o, CKA_CLASS, CKO_DATA) == CKO_SECRET_KEY;
                bool v = attr_is_bool(t[i].type) && *(const CK_BBOOL *) t[i].pValue;

                if (key ? !attr_valid_for_secret_key(t[i].type) : !attr_valid_for_data(t[i].type))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_TYPE_INVALID);
                switch (t[i].type) {
                case CKA_CLASS:
                case CKA_TOKEN:
                case CKA_PRIVATE:
                case CKA_MODIFIABLE:
                case CKA_COPYABLE:
                case CKA_KEY_TYPE:
                case CKA_VALUE_LEN:
                case CKA_LOCAL:
                case CKA_KEY_GEN_MECHANISM:
                case CKA_ALWAYS_SENSITIVE:
                case CKA_NEVER_EXTRACTABLE:
                        UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
                case CKA_VALUE:
                        if (key)
                                UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
                        break;
                case CKA_SENSITIVE:     /* may only become TRUE */
                        if (!v && obj_bool(o, CKA_SENSITIVE, false))
                                UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
                        break;
                case CKA_EXTRACTABLE:   /* may only become FALSE */
                        if (v && !obj_bool(o, CKA_EXTRACTABLE, true))
                                UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
                        break;
                case CKA_DESTROYABLE:   /* may only become FALSE */
                        if (v && !obj_bool(o, CKA_DESTROYABLE, true))
                                UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
                        break;
                default:
                        break;
                }
        }
        for (CK_ULONG i = 0; i < n; i++) {
                rv = obj_set(o, t[i].type, t[i].pValue, t[i].ulValueLen);
                if (rv != CKR_OK)
                        UNLOCK_RETURN(rv);
        }
        UNLOCK_RETURN(CKR_OK);
}

static bool obj_matches(const MockObject *o, const CK_ATTRIBUTE *t, CK_ULONG n) {
        for (CK_ULONG i = 0; i < n; i++) {
                const MockAttr *a = obj_attr(o, t[i].type);

                if (!a || a->len != t[i].ulValueLen || attr_is_sensitive(o, t[i].type) ||
                    (a->len > 0 && memcmp(a->value, t[i].pValue, a->len) != 0))
                        return false;
        }
        return true;
}

static CK_RV mock_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n) {
        ENTER_SESSION(h, s);
        if (n > 0 && !t)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].ulValueLen > 0 && (!t[i].pValue || t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_VALUE_INVALID);
        if (s->find_active)
                UNLOCK_RETURN(CKR_OPERATION_ACTIVE);
        s->found = calloc(mock.n_objects ? mock.n_objects : 1, sizeof(*s->found));
        if (!s->found)
                UNLOCK_RETURN(CKR_HOST_MEMORY);
        /* The result is fixed now: objects created or destroyed later do not change it. */
        for (size_t i = 0; i < mock.n_objects; i++)
                if (obj_visible(mock.objects[i]) && obj_matches(mock.objects[i], t, n))
                        s->found[s->n_found++] = mock.objects[i]->handle;
        s->found_pos = 0;
        s->find_active = true;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count) {
        CK_ULONG k = 0;

        ENTER_SESSION(h, s);
        if (!s->find_active)
                UNLOCK_RETURN(CKR_OPERATION_NOT_INITIALIZED);
        if (!count || (max > 0 && !out))
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        while (k < max && s->found_pos < s->n_found)
                out[k++] = s->found[s->found_pos++];
        *count = k;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_FindObjectsFinal(CK_SESSION_HANDLE h) {
        ENTER_SESSION(h, s);
        if (!s->find_active)
                UNLOCK_RETURN(CKR_OPERATION_NOT_INITIALIZED);
        session_find_done(s);
        UNLOCK_RETURN(CKR_OK);
}

/* --- keys and AES-GCM ------------------------------------------------------------- */

static CK_RV mock_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_HANDLE *ret) {
        const CK_ATTRIBUTE *a;
        MockObject *o = NULL;
        uint8_t value[32];
        CK_ULONG len;
        CK_RV rv;

        ENTER_SESSION(h, s);
        if (!mech || !ret)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (mech->mechanism != CKM_AES_KEY_GEN)
                UNLOCK_RETURN(CKR_MECHANISM_INVALID);
        if (mech->pParameter || mech->ulParameterLen)
                UNLOCK_RETURN(CKR_MECHANISM_PARAM_INVALID);
        rv = template_check(t, n);
        if (rv != CKR_OK)
                UNLOCK_RETURN(rv);
        for (CK_ULONG i = 0; i < n; i++) {
                if (!attr_valid_for_secret_key(t[i].type))
                        UNLOCK_RETURN(CKR_ATTRIBUTE_TYPE_INVALID);
                if (attr_is_token_set(t[i].type) || t[i].type == CKA_VALUE)
                        UNLOCK_RETURN(CKR_ATTRIBUTE_READ_ONLY);
        }
        a = template_find(t, n, CKA_CLASS);
        if (a && (memcpy(&len, a->pValue, sizeof(len)), len != CKO_SECRET_KEY))
                UNLOCK_RETURN(CKR_TEMPLATE_INCONSISTENT);
        a = template_find(t, n, CKA_KEY_TYPE);
        if (a && (memcpy(&len, a->pValue, sizeof(len)), len != CKK_AES))
                UNLOCK_RETURN(CKR_TEMPLATE_INCONSISTENT);
        a = template_find(t, n, CKA_VALUE_LEN);
        if (!a)
                UNLOCK_RETURN(CKR_TEMPLATE_INCOMPLETE);
        memcpy(&len, a->pValue, sizeof(len));
        if (len != 16 && len != 24 && len != 32)
                UNLOCK_RETURN(CKR_ATTRIBUTE_VALUE_INVALID);

        rv = obj_from_template(t, n, &o);
        if (rv == CKR_OK)
                rv = obj_set_ulong(o, CKA_CLASS, CKO_SECRET_KEY);
        if (rv == CKR_OK)
                rv = obj_set_ulong(o, CKA_KEY_TYPE, CKK_AES);
        if (rv == CKR_OK)
                rv = obj_defaults(o, CKO_SECRET_KEY);
        if (rv == CKR_OK)
                rv = check_creation_rights(s, o);
        if (rv == CKR_OK) {
                drbg_fill(value, len);
                rv = obj_set(o, CKA_VALUE, value, len);
                OPENSSL_cleanse(value, sizeof(value));
        }
        if (rv == CKR_OK)
                rv = obj_set_bool(o, CKA_LOCAL, true);
        if (rv == CKR_OK)
                rv = obj_set_ulong(o, CKA_KEY_GEN_MECHANISM, CKM_AES_KEY_GEN);
        if (rv == CKR_OK)
                rv = obj_set_bool(o, CKA_ALWAYS_SENSITIVE, obj_bool(o, CKA_SENSITIVE, false));
        if (rv == CKR_OK)
                rv = obj_set_bool(o, CKA_NEVER_EXTRACTABLE, !obj_bool(o, CKA_EXTRACTABLE, true));
        if (rv != CKR_OK) {
                obj_free(o);
                UNLOCK_RETURN(rv);
        }
        o->session = obj_bool(o, CKA_TOKEN, false) ? 0 : s->handle;
        UNLOCK_RETURN(obj_insert(o, ret));
}

static CK_RV crypt_init(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE kh, MockOp op) {
        const CK_GCM_PARAMS *p;
        const MockAttr *value;
        MockObject *k;

        ENTER_SESSION(h, s);
        if (!mech)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        if (s->op != OP_NONE)
                UNLOCK_RETURN(CKR_OPERATION_ACTIVE);
        if (mech->mechanism != CKM_AES_GCM)
                UNLOCK_RETURN(CKR_MECHANISM_INVALID);
        if (!mech->pParameter || mech->ulParameterLen != sizeof(CK_GCM_PARAMS))
                UNLOCK_RETURN(CKR_MECHANISM_PARAM_INVALID);
        p = mech->pParameter;
        if (p->ulIvLen == 0 || p->ulIvLen > MOCK_MAX_IV || !p->pIv || p->ulAADLen > MOCK_MAX_AAD ||
            (p->ulAADLen > 0 && !p->pAAD) || p->ulTagBits < 32 || p->ulTagBits > 128 || p->ulTagBits % 8 != 0)
                UNLOCK_RETURN(CKR_MECHANISM_PARAM_INVALID);
        k = obj_get(kh);
        if (!k)
                UNLOCK_RETURN(CKR_KEY_HANDLE_INVALID);
        value = obj_attr(k, CKA_VALUE);
        if (obj_ulong(k, CKA_CLASS, CKO_DATA) != CKO_SECRET_KEY || obj_ulong(k, CKA_KEY_TYPE, 0) != CKK_AES ||
            !value || (value->len != 16 && value->len != 24 && value->len != 32))
                UNLOCK_RETURN(CKR_KEY_TYPE_INCONSISTENT);
        if (!obj_bool(k, op == OP_ENCRYPT ? CKA_ENCRYPT : CKA_DECRYPT, false))
                UNLOCK_RETURN(CKR_KEY_FUNCTION_NOT_PERMITTED);
        /* The parameters are the caller's memory: keep copies for the operation. */
        s->aad = malloc(p->ulAADLen ? p->ulAADLen : 1);
        if (!s->aad)
                UNLOCK_RETURN(CKR_HOST_MEMORY);
        if (p->ulAADLen)
                memcpy(s->aad, p->pAAD, p->ulAADLen);
        s->aad_len = p->ulAADLen;
        memcpy(s->iv, p->pIv, p->ulIvLen);
        s->iv_len = p->ulIvLen;
        memcpy(s->key, value->value, value->len);
        s->key_len = value->len;
        s->tag_len = p->ulTagBits / 8;
        s->op = op;
        UNLOCK_RETURN(CKR_OK);
}

static CK_RV mock_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key) {
        return crypt_init(h, mech, key, OP_ENCRYPT);
}

static CK_RV mock_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key) {
        return crypt_init(h, mech, key, OP_DECRYPT);
}

/* One AES-GCM pass: in (in_len) to out; encrypting writes tag, decrypting checks it. */
static CK_RV gcm(const MockSession *s, bool enc, const uint8_t *in, size_t in_len, uint8_t *out, uint8_t *tag) {
        const EVP_CIPHER *cipher = s->key_len == 16 ? EVP_aes_128_gcm() : s->key_len == 24 ? EVP_aes_192_gcm() : EVP_aes_256_gcm();
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        CK_RV rv = CKR_FUNCTION_FAILED;
        int n;

        if (!ctx)
                return CKR_HOST_MEMORY;
        if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, enc) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int) s->iv_len, NULL) != 1 ||
            EVP_CipherInit_ex(ctx, NULL, NULL, s->key, s->iv, enc) != 1)
                goto finish;
        if (s->aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, s->aad, (int) s->aad_len) != 1)
                goto finish;
        if (in_len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int) in_len) != 1)
                goto finish;
        if (enc) {
                if (EVP_CipherFinal_ex(ctx, out + in_len, &n) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, (int) s->tag_len, tag) != 1)
                        goto finish;
        } else {
                if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, (int) s->tag_len, tag) != 1)
                        goto finish;
                if (EVP_CipherFinal_ex(ctx, out + in_len, &n) != 1) {
                        rv = CKR_ENCRYPTED_DATA_INVALID;
                        goto finish;
                }
        }
        rv = CKR_OK;
finish:
        EVP_CIPHER_CTX_free(ctx);
        return rv;
}

static CK_RV mock_Encrypt(CK_SESSION_HANDLE h, CK_BYTE *data, CK_ULONG len, CK_BYTE *out, CK_ULONG *out_len) {
        CK_ULONG need;
        CK_RV rv;

        ENTER_SESSION(h, s);
        if (s->op != OP_ENCRYPT)
                UNLOCK_RETURN(CKR_OPERATION_NOT_INITIALIZED);
        if (!out_len || (len > 0 && !data)) {
                session_op_done(s);
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        }
        if (len > MOCK_MAX_DATA) {
                session_op_done(s);
                UNLOCK_RETURN(CKR_DATA_LEN_RANGE);
        }
        need = len + s->tag_len;
        /* A length query or a short buffer leaves the operation active, as the specification says. */
        if (!out) {
                *out_len = need;
                UNLOCK_RETURN(CKR_OK);
        }
        if (*out_len < need) {
                *out_len = need;
                UNLOCK_RETURN(CKR_BUFFER_TOO_SMALL);
        }
        rv = gcm(s, true, data, len, out, out + len);
        if (rv == CKR_OK)
                *out_len = need;
        session_op_done(s);
        UNLOCK_RETURN(rv);
}

static CK_RV mock_Decrypt(CK_SESSION_HANDLE h, CK_BYTE *ct, CK_ULONG ct_len, CK_BYTE *out, CK_ULONG *out_len) {
        uint8_t *pt;
        CK_ULONG need;
        CK_RV rv;

        ENTER_SESSION(h, s);
        if (s->op != OP_DECRYPT)
                UNLOCK_RETURN(CKR_OPERATION_NOT_INITIALIZED);
        if (!out_len || (ct_len > 0 && !ct)) {
                session_op_done(s);
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        }
        if (ct_len < s->tag_len || ct_len > MOCK_MAX_DATA) {
                session_op_done(s);
                UNLOCK_RETURN(CKR_ENCRYPTED_DATA_LEN_RANGE);
        }
        need = ct_len - s->tag_len;
        if (!out) {
                *out_len = need;
                UNLOCK_RETURN(CKR_OK);
        }
        if (*out_len < need) {
                *out_len = need;
                UNLOCK_RETURN(CKR_BUFFER_TOO_SMALL);
        }
        /* Nothing reaches the caller's buffer unless the tag is right. */
        pt = malloc(need ? need : 1);
        if (!pt) {
                session_op_done(s);
                UNLOCK_RETURN(CKR_HOST_MEMORY);
        }
        rv = gcm(s, false, ct, need, pt, ct + need);
        if (rv == CKR_OK) {
                if (need)
                        memcpy(out, pt, need);
                *out_len = need;
        }
        OPENSSL_cleanse(pt, need);
        free(pt);
        session_op_done(s);
        UNLOCK_RETURN(rv);
}

static CK_RV mock_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE *seed, CK_ULONG len) {
        ENTER_SESSION(h, s);
        (void) s;
        UNLOCK_RETURN(CKR_RANDOM_SEED_NOT_SUPPORTED);
}

static CK_RV mock_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE *out, CK_ULONG len) {
        ENTER_SESSION(h, s);
        (void) s;
        if (len > 0 && !out)
                UNLOCK_RETURN(CKR_ARGUMENTS_BAD);
        drbg_fill(out, len);
        UNLOCK_RETURN(CKR_OK);
}

/* --- not implemented ------------------------------------------------------------------ */

#define UNSUPPORTED(name, args)                                 \
        static CK_RV name args {                                \
                return CKR_FUNCTION_NOT_SUPPORTED;              \
        }

UNSUPPORTED(mock_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID *slot, void *reserved))
UNSUPPORTED(mock_InitToken, (CK_SLOT_ID slot, CK_UTF8CHAR *pin, CK_ULONG pin_len, CK_UTF8CHAR *label))
UNSUPPORTED(mock_InitPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR *pin, CK_ULONG pin_len))
UNSUPPORTED(mock_SetPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR *old_pin, CK_ULONG old_len, CK_UTF8CHAR *new_pin,
                          CK_ULONG new_len))
UNSUPPORTED(mock_GetOperationState, (CK_SESSION_HANDLE h, CK_BYTE *state, CK_ULONG *state_len))
UNSUPPORTED(mock_SetOperationState, (CK_SESSION_HANDLE h, CK_BYTE *state, CK_ULONG state_len,
                                     CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key))
UNSUPPORTED(mock_CopyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_HANDLE *ret))
UNSUPPORTED(mock_EncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_EncryptFinal, (CK_SESSION_HANDLE h, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DecryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DecryptFinal, (CK_SESSION_HANDLE h, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DigestInit, (CK_SESSION_HANDLE h, CK_MECHANISM *mech))
UNSUPPORTED(mock_Digest, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len))
UNSUPPORTED(mock_DigestKey, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key))
UNSUPPORTED(mock_DigestFinal, (CK_SESSION_HANDLE h, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key))
UNSUPPORTED(mock_Sign, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_SignUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len))
UNSUPPORTED(mock_SignFinal, (CK_SESSION_HANDLE h, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_SignRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key))
UNSUPPORTED(mock_SignRecover, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_VerifyInit, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key))
UNSUPPORTED(mock_Verify, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *sig, CK_ULONG sig_len))
UNSUPPORTED(mock_VerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len))
UNSUPPORTED(mock_VerifyFinal, (CK_SESSION_HANDLE h, CK_BYTE *sig, CK_ULONG sig_len))
UNSUPPORTED(mock_VerifyRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key))
UNSUPPORTED(mock_VerifyRecover, (CK_SESSION_HANDLE h, CK_BYTE *sig, CK_ULONG sig_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DigestEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DecryptDigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_SignEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_DecryptVerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_GenerateKeyPair, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_ATTRIBUTE *pub_t, CK_ULONG pub_n,
                                   CK_ATTRIBUTE *priv_t, CK_ULONG priv_n, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv))
UNSUPPORTED(mock_WrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                           CK_BYTE *out, CK_ULONG *out_len))
UNSUPPORTED(mock_UnwrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE unwrapping, CK_BYTE *in,
                             CK_ULONG in_len, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *ret))
UNSUPPORTED(mock_DeriveKey, (CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE base, CK_ATTRIBUTE *t,
                             CK_ULONG n, CK_OBJECT_HANDLE *ret))

static CK_RV mock_GetFunctionStatus(CK_SESSION_HANDLE h) {
        return CKR_FUNCTION_NOT_PARALLEL;
}

static CK_RV mock_CancelFunction(CK_SESSION_HANDLE h) {
        return CKR_FUNCTION_NOT_PARALLEL;
}

static CK_FUNCTION_LIST function_list = {
        .version = { 2, 40 },
        .C_Initialize = mock_Initialize,
        .C_Finalize = mock_Finalize,
        .C_GetInfo = mock_GetInfo,
        .C_GetFunctionList = C_GetFunctionList,
        .C_GetSlotList = mock_GetSlotList,
        .C_GetSlotInfo = mock_GetSlotInfo,
        .C_GetTokenInfo = mock_GetTokenInfo,
        .C_GetMechanismList = mock_GetMechanismList,
        .C_GetMechanismInfo = mock_GetMechanismInfo,
        .C_InitToken = mock_InitToken,
        .C_InitPIN = mock_InitPIN,
        .C_SetPIN = mock_SetPIN,
        .C_OpenSession = mock_OpenSession,
        .C_CloseSession = mock_CloseSession,
        .C_CloseAllSessions = mock_CloseAllSessions,
        .C_GetSessionInfo = mock_GetSessionInfo,
        .C_GetOperationState = mock_GetOperationState,
        .C_SetOperationState = mock_SetOperationState,
        .C_Login = mock_Login,
        .C_Logout = mock_Logout,
        .C_CreateObject = mock_CreateObject,
        .C_CopyObject = mock_CopyObject,
        .C_DestroyObject = mock_DestroyObject,
        .C_GetObjectSize = mock_GetObjectSize,
        .C_GetAttributeValue = mock_GetAttributeValue,
        .C_SetAttributeValue = mock_SetAttributeValue,
        .C_FindObjectsInit = mock_FindObjectsInit,
        .C_FindObjects = mock_FindObjects,
        .C_FindObjectsFinal = mock_FindObjectsFinal,
        .C_EncryptInit = mock_EncryptInit,
        .C_Encrypt = mock_Encrypt,
        .C_EncryptUpdate = mock_EncryptUpdate,
        .C_EncryptFinal = mock_EncryptFinal,
        .C_DecryptInit = mock_DecryptInit,
        .C_Decrypt = mock_Decrypt,
        .C_DecryptUpdate = mock_DecryptUpdate,
        .C_DecryptFinal = mock_DecryptFinal,
        .C_DigestInit = mock_DigestInit,
        .C_Digest = mock_Digest,
        .C_DigestUpdate = mock_DigestUpdate,
        .C_DigestKey = mock_DigestKey,
        .C_DigestFinal = mock_DigestFinal,
        .C_SignInit = mock_SignInit,
        .C_Sign = mock_Sign,
        .C_SignUpdate = mock_SignUpdate,
        .C_SignFinal = mock_SignFinal,
        .C_SignRecoverInit = mock_SignRecoverInit,
        .C_SignRecover = mock_SignRecover,
        .C_VerifyInit = mock_VerifyInit,
        .C_Verify = mock_Verify,
        .C_VerifyUpdate = mock_VerifyUpdate,
        .C_VerifyFinal = mock_VerifyFinal,
        .C_VerifyRecoverInit = mock_VerifyRecoverInit,
        .C_VerifyRecover = mock_VerifyRecover,
        .C_DigestEncryptUpdate = mock_DigestEncryptUpdate,
        .C_DecryptDigestUpdate = mock_DecryptDigestUpdate,
        .C_SignEncryptUpdate = mock_SignEncryptUpdate,
        .C_DecryptVerifyUpdate = mock_DecryptVerifyUpdate,
        .C_GenerateKey = mock_GenerateKey,
        .C_GenerateKeyPair = mock_GenerateKeyPair,
        .C_WrapKey = mock_WrapKey,
        .C_UnwrapKey = mock_UnwrapKey,
        .C_DeriveKey = mock_DeriveKey,
        .C_SeedRandom = mock_SeedRandom,
        .C_GenerateRandom = mock_GenerateRandom,
        .C_GetFunctionStatus = mock_GetFunctionStatus,
        .C_CancelFunction = mock_CancelFunction,
        .C_WaitForSlotEvent = mock_WaitForSlotEvent,
};

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST **ret) {
        if (!ret)
                return CKR_ARGUMENTS_BAD;
        *ret = &function_list;
        return CKR_OK;
}

/* --- test hooks (mock-p11.h) --------------------------------------------------------- */

static void snapshot_drop(void) {
        for (size_t i = 0; i < mock.n_snap_objects; i++) {
                MockObject *o = mock.snap_objects[i];

                for (size_t j = 0; j < o->n_attrs; j++) {
                        OPENSSL_cleanse(o->attrs[j].value, o->attrs[j].len);
                        free(o->attrs[j].value);
                }
                free(o->attrs);
                free(o);
        }
        free(mock.snap_objects);
        mock.snap_objects = NULL;
        mock.n_snap_objects = 0;
        mock.have_snapshot = false;
}

static void objects_drop(void) {
        while (mock.n_objects > 0)
                obj_remove_at(mock.n_objects - 1);
        free(mock.objects);
        mock.objects = NULL;
}

EXPORT void mock_p11_snapshot(void) {
        LOCK();
        snapshot_drop();
        mock.snap_objects = calloc(mock.n_objects ? mock.n_objects : 1, sizeof(*mock.snap_objects));
        if (!mock.snap_objects)
                abort();
        /* Token objects only: session objects belong to sessions, not to the token. */
        for (size_t i = 0; i < mock.n_objects; i++) {
                if (mock.objects[i]->session != 0)
                        continue;
                mock.snap_objects[mock.n_snap_objects] = obj_copy(mock.objects[i]);
                if (!mock.snap_objects[mock.n_snap_objects])
                        abort();
                mock.n_snap_objects++;
        }
        mock.snap_next_handle = mock.next_handle;
        mock.snap_drbg_counter = mock.drbg_counter;
        mock.have_snapshot = true;
        pthread_mutex_unlock(&mock.lock);
}

EXPORT void mock_p11_reset(void) {
        LOCK();
        objects_drop();
        for (size_t i = 0; i < MOCK_MAX_SESSIONS; i++) {
                session_find_done(&mock.sessions[i]);
                session_op_done(&mock.sessions[i]);
        }
        if (mock.have_snapshot) {
                mock.objects = calloc(mock.n_snap_objects ? mock.n_snap_objects : 1, sizeof(*mock.objects));
                if (!mock.objects)
                        abort();
                for (size_t i = 0; i < mock.n_snap_objects; i++) {
                        mock.objects[i] = obj_copy(mock.snap_objects[i]);
                        if (!mock.objects[i])
                                abort();
                        mock.store_bytes += obj_bytes(mock.objects[i]);
                        mock.n_objects++;
                }
                mock.next_handle = mock.snap_next_handle;
                mock.drbg_counter = mock.snap_drbg_counter;
        } else {
                mock.next_handle = 1;
                mock.drbg_counter = 0;
        }
        pthread_mutex_unlock(&mock.lock);
}

EXPORT void mock_p11_clear(void) {
        LOCK();
        objects_drop();
        snapshot_drop();
        mock.next_handle = 1;
        mock.drbg_counter = 0;
        pthread_mutex_unlock(&mock.lock);
}

EXPORT size_t mock_p11_object_count(void) {
        size_t n;

        LOCK();
        n = mock.n_objects;
        pthread_mutex_unlock(&mock.lock);
        return n;
}
