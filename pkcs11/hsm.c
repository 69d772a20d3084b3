/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PKCS#11 access for kekd (see hsm.h for the contract). Every C_* call in the
 * project is in this file. Invariants:
 *  - KEK versions are created by C_GenerateKey inside the token with
 *    CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE, CKA_PRIVATE=TRUE,
 *    CKA_TOKEN=TRUE, CKA_MODIFIABLE=FALSE, CKA_COPYABLE=FALSE and only
 *    CKA_ENCRYPT/CKA_DECRYPT usage, so no call here or anywhere can export them.
 *  - The PIN is kept (in secure memory) only to log in again after the token
 *    or session went away.
 *  - A failed call that looks like a lost session marks the session dead; the
 *    next call (and one retry of the failing call) reopens it.
 *  - A lost session or login alone (CKR_SESSION_HANDLE_INVALID,
 *    CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN: the token itself answered)
 *    is reopened and logged in on the spot, outside the backoff, which only
 *    failed reopens start. Calls that only read are then made once more; the
 *    GCM calls return -ESTALE so that their caller finds the key again first.
 *    Nothing that writes is ever repeated here.
 *  - Calls that create, destroy, find or read token objects are made one at a
 *    time in the process, whichever session or thread makes them (store_call()).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "ckr.h"
#include "common/kekerr.h"
#include "daemon/log.h"
#include "hsm.h"

/* The PKCS#11 functions this file calls, for the per-function error record (hsm_call_errors()). */
#define CALLS(X)                                                                        \
        X(C_Initialize) X(C_GetSlotList) X(C_GetSlotInfo) X(C_GetTokenInfo)             \
        X(C_OpenSession) X(C_Login) X(C_GenerateKey) X(C_DestroyObject)                 \
        X(C_CreateObject) X(C_EncryptInit) X(C_Encrypt) X(C_DecryptInit) X(C_Decrypt)   \
        X(C_FindObjectsInit) X(C_FindObjects) X(C_FindObjectsFinal) X(C_GetAttributeValue)

typedef enum Call {
#define CALL_ENUM(f) CALL_##f,
        CALLS(CALL_ENUM)
#undef CALL_ENUM
        _CALL_MAX,
} Call;

static const char *const call_names[] = {
#define CALL_NAME(f) #f,
        CALLS(CALL_NAME)
#undef CALL_NAME
};

_Static_assert(_CALL_MAX == HSM_CALLS, "HSM_CALLS counts the functions of CALLS()");

typedef struct CallRecord {
        CK_RV rv;                 /* the last failure's return value */
        uint64_t realtime_usec;
        uint64_t count;
} CallRecord;

/*
 * Every reported call goes through P11(): it notes which function is being
 * called, so that the failure, mapped a few lines later by rv_to_errno(),
 * names it. Cleanup calls whose result is ignored call the module directly
 * and leave the note alone.
 */
#define P11(h, fn, ...) ((h)->call = CALL_##fn, (h)->module->fn(__VA_ARGS__))

struct Hsm {
        CK_FUNCTION_LIST *module;
        P11KitUri *uri;
        Secret *pin;
        Hsm *parent;              /* hsm_open_session(): module, URI and PIN belong to the parent */
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE session;
        bool session_open;
        bool login_refused;       /* the token rejected the PIN: never retry, it could lock the user */
        bool detached;            /* its losses move its own generation, not the parent's: hsm_set_detached() */
        uint64_t generation;      /* the parent's counts for all its sessions: see generation_bump() */
        uint64_t writes;          /* the parent's: objects created or destroyed through any session, tried or done */
        uint64_t next_open_usec;  /* backoff for reopening a lost session */
        uint64_t backoff_usec;
        CK_RV last_rv;
        Call call;                /* the function called last through P11() */
        Call last_call;           /* the function that last failed */
        CallRecord calls[_CALL_MAX];
        char last_error[96];      /* hsm_last_error() */
        char token_label[33];
        uint64_t reopens;          /* sessions opened again after a loss */
        HsmErrorCount errors[HSM_ERROR_KINDS];   /* non-OK return values, by value */
        unsigned n_errors;
};

/*
 * Held around every call that creates, destroys, finds or reads token objects,
 * in every session of the process: a module may not keep its object store
 * consistent while two threads use it at once. SoftHSM2 2.6's file store does
 * not: its re-index of the token directory (C_FindObjectsInit, on the refresh
 * thread's session) racing a C_CreateObject on the main session wrote the new
 * record's file empty or torn after the call had succeeded and the record had
 * been read back, so the superseded record was destroyed and the key was gone
 * from the token (tests/integration/store-race.sh). Held for one call only,
 * never across a listing: the main loop waits for at most one call of the
 * refresh thread. Encrypt and decrypt do not take it.
 */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;

#define store_call(expr)                                \
        ({                                              \
                CK_RV _rv;                              \
                pthread_mutex_lock(&store_lock);        \
                _rv = (expr);                           \
                pthread_mutex_unlock(&store_lock);      \
                _rv;                                    \
        })

#define REOPEN_BACKOFF_MIN_USEC (100 * 1000ULL)
#define REOPEN_BACKOFF_MAX_USEC (5 * 1000 * 1000ULL)   /* a recovered HSM is used again within 5 s */
#define LIST_ATTEMPTS 5

/* Counted before the call: one that fails in transit may still have changed the token. */
static void write_bump(Hsm *h) {
        Hsm *root = h->parent ? h->parent : h;

        (void) __atomic_add_fetch(&root->writes, 1, __ATOMIC_ACQ_REL);
}

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/*
 * One counter for the parent and all its sessions (hsm_open_session()): a
 * session lost anywhere may mean the token was reset and handles renumbered,
 * so every holder of handles must see it, whichever session noticed.
 */
static void generation_bump(Hsm *h) {
        Hsm *root = h->parent && !h->detached ? h->parent : h;

        (void) __atomic_add_fetch(&root->generation, 1, __ATOMIC_ACQ_REL);
}

static bool rv_is_session_loss(CK_RV rv) {
        switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_DEVICE_REMOVED:
        case CKR_DEVICE_ERROR:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
        /* An operation left active by a failed call blocks the session; a fresh one clears it. */
        case CKR_OPERATION_ACTIVE:
                return true;
        default:
                return false;
        }
}

/*
 * The token answered, but our session or its login is gone: a new session (and
 * login) on the spot should serve the same call. Other losses (device errors,
 * token removed) may last; they wait for the next call and its backoff.
 */
static bool rv_is_relogin(CK_RV rv) {
        return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN;
}

/* Counts a non-OK return value for metrics; the table keeps the first HSM_ERROR_KINDS names seen. */
static void count_error(Hsm *h, CK_RV rv) {
        const char *name = ckr_name(rv);

        for (unsigned i = 0; i < h->n_errors; i++)
                if (h->errors[i].name == name) {
                        h->errors[i].count++;
                        return;
                }
        if (h->n_errors < HSM_ERROR_KINDS)
                h->errors[h->n_errors++] = (HsmErrorCount) { name, 1 };
}

void hsm_stats(const Hsm *h, HsmStats *ret) {
        *ret = (HsmStats) { .session_open = h->session_open, .reopens = h->reopens, .n_errors = h->n_errors };
        memcpy(ret->errors, h->errors, sizeof(ret->errors));
}

void hsm_stats_add(const HsmStats *s, HsmStats *acc) {
        acc->session_open = acc->session_open && s->session_open;
        acc->reopens += s->reopens;
        for (unsigned i = 0; i < s->n_errors; i++) {
                unsigned j;

                for (j = 0; j < acc->n_errors; j++)
                        if (acc->errors[j].name == s->errors[i].name)
                                break;
                if (j < acc->n_errors)
                        acc->errors[j].count += s->errors[i].count;
                else if (acc->n_errors < HSM_ERROR_KINDS)
                        acc->errors[acc->n_errors++] = s->errors[i];
        }
}

void hsm_stats_merge(const Hsm *h, HsmStats *acc) {
        HsmStats s;

        hsm_stats(h, &s);
        hsm_stats_add(&s, acc);
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/*
 * Records a failed call of h->call: counters for metrics, the per-function
 * record, and one debug line naming function and CKR (library code logs
 * only at debug; the daemon logs the error where it handles it).
 */
static void note_failure(Hsm *h, CK_RV rv) {
        CallRecord *c = &h->calls[h->call];

        h->last_rv = rv;
        h->last_call = h->call;
        count_error(h, rv);
        c->rv = rv;
        c->realtime_usec = realtime_usec();
        c->count++;
        log_debug("PKCS#11 %s failed: %s (0x%lx, %s)", call_names[h->call], ckr_name(rv), (unsigned long) rv,
                  p11_kit_strerror(rv));
}

static int rv_to_errno(Hsm *h, CK_RV rv) {
        if (rv == CKR_OK)
                return 0;
        note_failure(h, rv);
        /* The token will not do this, whenever asked: not transient, so never "retry". */
        if (ckr_is_refusal(rv))
                return -KEKERR_UNSUPPORTED;
        switch (rv) {
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY:
                return -ENOMEM;
        case CKR_ENCRYPTED_DATA_INVALID:
        case CKR_ENCRYPTED_DATA_LEN_RANGE:
                return -KEKERR_BLOB_INVALID;
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
                return -ENOENT;
        case CKR_ARGUMENTS_BAD:
        case CKR_DATA_LEN_RANGE:
                return -EINVAL;
        case CKR_FUNCTION_FAILED:
        case CKR_GENERAL_ERROR:
        case CKR_SESSION_COUNT:
        case CKR_OPERATION_ACTIVE:
                return -KEKERR_HSM_UNAVAILABLE;
        default:
                if (rv_is_session_loss(rv))
                        return -KEKERR_HSM_UNAVAILABLE;
                return -EIO;
        }
}

/*
 * hsm_open()'s description of a failed call: "C_OpenSession failed:
 * CKR_TOKEN_NOT_PRESENT (message)", and a hint if there is one. In a
 * per-thread buffer, valid until the next hsm_open() or hsm_open_session()
 * of this thread: the caller logs it at once. Returns rv_to_errno(rv).
 */
static int call_error(Hsm *h, CK_RV rv, const char *hint, const char **ret_error) {
        static __thread char text[512];
        const char *fn = call_names[h->call];
        int r = rv_to_errno(h, rv);

        snprintf(text, sizeof(text), "%s failed: %s (%s)%s%s", fn, ckr_name(rv), p11_kit_strerror(rv),
                 hint ? "; " : "", hint ?: "");
        *ret_error = text;
        return r;
}

static void session_close(Hsm *h) {
        if (h->session_open)
                (void) h->module->C_CloseSession(h->session);
        h->session_open = false;
}

static int find_slot(Hsm *h, const char **ret_error) {
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0, matches = 0;
        CK_RV rv;

        rv = P11(h, C_GetSlotList, CK_TRUE, NULL, &n);
        if (rv != CKR_OK)
                return call_error(h, rv, NULL, ret_error);
        slots = calloc(n ? n : 1, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        rv = P11(h, C_GetSlotList, CK_TRUE, slots, &n);
        if (rv != CKR_OK)
                return call_error(h, rv, NULL, ret_error);
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                CK_SLOT_INFO si;

                if (P11(h, C_GetSlotInfo, slots[i], &si) != CKR_OK ||
                    !p11_kit_uri_match_slot_info(h->uri, &si))
                        continue;
                if (P11(h, C_GetTokenInfo, slots[i], &ti) != CKR_OK ||
                    !p11_kit_uri_match_token_info(h->uri, &ti))
                        continue;
                /* Uninitialised tokens match an empty URI but cannot hold keys. */
                if (!(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (matches++ == 0) {
                        h->slot = slots[i];
                        memcpy(h->token_label, ti.label, sizeof(ti.label));
                        h->token_label[sizeof(ti.label)] = 0;
                        for (int j = (int) sizeof(ti.label) - 1; j >= 0 && h->token_label[j] == ' '; j--)
                                h->token_label[j] = 0;
                }
        }
        if (matches == 0) {
                *ret_error = "no initialised token matches the token URI";
                return -KEKERR_HSM_UNAVAILABLE;
        }
        if (matches > 1) {
                *ret_error = "the token URI matches more than one token; add serial= or token=";
                return -EINVAL;
        }
        return 0;
}

static int session_open(Hsm *h, const char **ret_error) {
        const char *dummy;
        CK_RV rv;
        int r;

        if (!ret_error)
                ret_error = &dummy;
        if (h->session_open)
                return 0;

        r = find_slot(h, ret_error);
        if (r < 0)
                return r;
        rv = P11(h, C_OpenSession, h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->session);
        if (rv != CKR_OK)
                return call_error(h, rv, NULL, ret_error);
        h->session_open = true;
        rv = P11(h, C_Login, h->session, CKU_USER, h->pin->data, h->pin->len);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                session_close(h);
                if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED) {
                        h->login_refused = true;
                        note_failure(h, rv);
                        *ret_error = rv == CKR_PIN_INCORRECT ? "login refused: PIN incorrect" : "login refused: PIN locked or expired";
                        return -EACCES;
                }
                return call_error(h, rv, NULL, ret_error);
        }
        return 0;
}

/*
 * Opens the session if it is not open, with exponential backoff between
 * attempts so a dead HSM is not hammered, and never again after the token
 * refused the PIN (real HSMs lock or wipe after a few wrong logins).
 */
static int ensure_session(Hsm *h) {
        uint64_t now;
        int r;

        if (h->session_open)
                return 0;
        if (h->login_refused)
                return -KEKERR_HSM_UNAVAILABLE;
        now = mono_usec();
        if (now < h->next_open_usec)
                return -KEKERR_HSM_UNAVAILABLE;
        r = session_open(h, NULL);
        if (r < 0) {
                h->backoff_usec = MIN(MAX(h->backoff_usec * 2, REOPEN_BACKOFF_MIN_USEC), REOPEN_BACKOFF_MAX_USEC);
                h->next_open_usec = now + h->backoff_usec;
                return -KEKERR_HSM_UNAVAILABLE;
        }
        h->backoff_usec = 0;
        h->reopens++;
        generation_bump(h); /* handles from before may not be valid in the new session */
        return 0;
}

int hsm_ready(Hsm *h) {
        return ensure_session(h);
}

void hsm_set_detached(Hsm *h) {
        h->detached = true;
}

bool hsm_is_open(const Hsm *h) {
        return h->session_open;
}

/*
 * Called after a failed C_* call: if the failure means the session is gone,
 * drop it and try to reopen it. Returns true when a call that names no
 * object handle may be retried once. Calls that use a handle never retry:
 * after a reopen the handle may be stale, or on some HSMs name another object.
 */
static bool recover(Hsm *h, CK_RV rv) {
        Call failed = h->call;
        bool reopened;

        if (!rv_is_session_loss(rv))
                return false;
        session_close(h);
        generation_bump(h);
        reopened = ensure_session(h) >= 0;
        h->call = failed; /* rv, if it is reported after all, is the failed call's */
        return reopened;
}

/* Maps a failed call that used an object handle; a lost session becomes transient. */
static int handle_call_failed(Hsm *h, CK_RV rv) {
        int r = rv_to_errno(h, rv);

        if (rv_is_session_loss(rv)) {
                session_close(h);
                generation_bump(h);
        }
        return r;
}

/*
 * The same for a call that changed nothing in the token (encrypt, decrypt),
 * which its caller may therefore make again: after a lost session or login
 * (rv_is_relogin()) the session is reopened now and -ESTALE says "open again,
 * but the handle you passed may be stale: find the object again, then retry
 * once". The generation moved, so the caller can tell the two reopens apart.
 */
static int idempotent_call_failed(Hsm *h, CK_RV rv) {
        int r = handle_call_failed(h, rv);

        if (rv_is_relogin(rv) && ensure_session(h) >= 0)
                return -ESTALE;
        return r;
}

/*
 * A read in the middle of a listing failed. After a lost session or login
 * the session is dropped and -ESTALE asks the listing to start again (once):
 * the handles it found belong to the session that is gone.
 */
static int read_failed(Hsm *h, CK_RV rv) {
        int r = rv_to_errno(h, rv);

        if (!rv_is_relogin(rv))
                return r;
        session_close(h);
        generation_bump(h);
        return -ESTALE;
}

int hsm_open(const char *module, const char *token_uri, const Secret *pin, Hsm **ret, const char **ret_error) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        const char *dummy;
        CK_RV rv;
        int r;

        if (!ret_error)
                ret_error = &dummy;
        if (!module || !token_uri || !pin)
                return -EINVAL;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;

        h->uri = p11_kit_uri_new();
        if (!h->uri)
                return -ENOMEM;
        r = p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT | P11_KIT_URI_FOR_MODULE, h->uri);
        if (r != P11_KIT_URI_OK) {
                *ret_error = "token URI is not a valid PKCS#11 URI (RFC 7512)";
                return -EINVAL;
        }
        if (p11_kit_uri_get_pin_value(h->uri)) {
                *ret_error = "token URI carries pin-value; put the PIN in the PIN file instead";
                return -EINVAL;
        }
        r = secret_new_copy(pin->data, pin->len, &h->pin);
        if (r < 0)
                return r;

        if (strchr(module, '/')) {
                h->module = p11_kit_module_load(module, P11_KIT_MODULE_CRITICAL);
                if (!h->module) {
                        *ret_error = "cannot load PKCS#11 module";
                        return -ENOENT;
                }
        } else {
                CK_FUNCTION_LIST **all = p11_kit_modules_load(NULL, P11_KIT_MODULE_CRITICAL);

                for (size_t i = 0; all && all[i]; i++) {
                        _cleanup_free_ char *name = p11_kit_module_get_name(all[i]);

                        if (!h->module && name && strcmp(name, module) == 0)
                                h->module = all[i];
                        else
                                p11_kit_module_release(all[i]);
                }
                free(all);
                if (!h->module) {
                        *ret_error = "no PKCS#11 module of that name is registered with p11-kit";
                        return -ENOENT;
                }
        }

        h->call = CALL_C_Initialize;
        rv = p11_kit_module_initialize(h->module);
        if (rv != CKR_OK) {
                p11_kit_module_release(h->module);
                h->module = NULL;
                /* NSS softokn and a few others cannot start without C_Initialize parameters. */
                return call_error(h, rv,
                                  rv == CKR_ARGUMENTS_BAD
                                          ? "the module may need C_Initialize parameters (NSS softokn does: "
                                            "configdir=...); register it with p11-kit in a module file with "
                                            "x-init-reserved: and set module = to its name, not its path"
                                          : NULL,
                                  ret_error);
        }

        r = session_open(h, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(h);
        return 0;
}

int hsm_open_session(Hsm *parent, Hsm **ret, const char **ret_error) {
        _cleanup_free_ Hsm *h = NULL;
        const char *dummy;
        int r;

        if (!ret_error)
                ret_error = &dummy;

        if (!parent || parent->parent)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->parent = parent;
        h->module = parent->module;
        h->uri = parent->uri;
        h->pin = parent->pin;
        memcpy(h->token_label, parent->token_label, sizeof(h->token_label));
        /* The token is already logged in through the parent: C_Login answers CKR_USER_ALREADY_LOGGED_IN. */
        r = session_open(h, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

Hsm *hsm_free(Hsm *h) {
        if (!h)
                return NULL;
        if (h->parent) {
                /* Module, URI and PIN are the parent's; it is freed after its sessions. */
                session_close(h);
                free(h);
                return NULL;
        }
        if (h->module) {
                session_close(h);
                (void) p11_kit_module_finalize(h->module);
                p11_kit_module_release(h->module);
        }
        if (h->uri)
                p11_kit_uri_free(h->uri);
        secret_free(h->pin);
        free(h);
        return NULL;
}

uint64_t hsm_generation(const Hsm *h) {
        const Hsm *root = h->parent && !h->detached ? h->parent : h;

        return __atomic_load_n(&root->generation, __ATOMIC_ACQUIRE);
}

uint64_t hsm_writes(const Hsm *h) {
        const Hsm *root = h->parent ? h->parent : h;

        return __atomic_load_n(&root->writes, __ATOMIC_ACQUIRE);
}

const char *hsm_last_error(const Hsm *h) {
        Hsm *m = (Hsm *) h; /* the text is a cache of last_call and last_rv */

        if (h->last_rv == CKR_OK)
                return "no PKCS#11 error";
        snprintf(m->last_error, sizeof(m->last_error), "%s: %s", call_names[h->last_call], ckr_name(h->last_rv));
        return m->last_error;
}

size_t hsm_call_errors(const Hsm *h, HsmCallError ret[HSM_CALLS]) {
        size_t n = 0;

        for (unsigned i = 0; i < _CALL_MAX; i++)
                if (h->calls[i].count > 0)
                        ret[n++] = (HsmCallError) {
                                .function = call_names[i],
                                .error = ckr_name(h->calls[i].rv),
                                .realtime_usec = h->calls[i].realtime_usec,
                                .count = h->calls[i].count,
                        };
        return n;
}

int hsm_last_call_error(const Hsm *h, HsmCallError *ret) {
        const CallRecord *c = &h->calls[h->last_call];

        if (h->last_rv == CKR_OK)
                return -ENODATA;
        *ret = (HsmCallError) {
                .function = call_names[h->last_call],
                .error = ckr_name(h->last_rv),
                .realtime_usec = c->realtime_usec,
                .count = c->count,
        };
        return 0;
}

const char *hsm_token_label(const Hsm *h) {
        return h->token_label;
}

static void version_to_id(uint32_t version, uint8_t id[4]) {
        id[0] = (uint8_t) (version >> 24);
        id[1] = (uint8_t) (version >> 16);
        id[2] = (uint8_t) (version >> 8);
        id[3] = (uint8_t) version;
}

int hsm_generate_aes_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG value_len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE o;
        uint8_t id[4];
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_MODIFIABLE, &no, sizeof(no) },
                { CKA_COPYABLE, &no, sizeof(no) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_SIGN, &no, sizeof(no) },
                { CKA_VERIFY, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },
        };
        CK_RV rv;
        int r;

        if (strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        version_to_id(version, id);
        r = ensure_session(h);
        if (r < 0)
                return r;
        /* No blind retry: a call that failed in transit may have created the object (written intents cover it). */
        write_bump(h);
        rv = store_call(P11(h, C_GenerateKey, h->session, &mech, tmpl, ELEMENTSOF(tmpl), &o));
        if (rv != CKR_OK)
                return handle_call_failed(h, rv);
        *ret = o;
        return 0;
}

int hsm_destroy_object(Hsm *h, HsmObject o) {
        CK_RV rv;
        int r;

        r = ensure_session(h);
        if (r < 0)
                return r;
        write_bump(h);
        rv = store_call(P11(h, C_DestroyObject, h->session, o));
        if (rv != CKR_OK)
                return handle_call_failed(h, rv);
        return 0;
}

int hsm_destroy_listed(Hsm *h, HsmObject o, uint64_t generation) {
        int r = ensure_session(h); /* a reopen here moves the generation too */

        if (r < 0)
                return r;
        if (hsm_generation(h) != generation)
                return -KEKERR_HSM_UNAVAILABLE;
        return hsm_destroy_object(h, o);
}

static CK_RV gcm_encrypt_once(Hsm *h, CK_MECHANISM *mech, HsmObject key, const uint8_t *pt, size_t pt_len,
                              uint8_t *out) {
        CK_ULONG out_len = pt_len + HSM_GCM_TAG_SIZE;
        CK_RV rv;

        rv = P11(h, C_EncryptInit, h->session, mech, key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Encrypt, h->session, (CK_BYTE_PTR) pt, pt_len, out, &out_len);
        if (rv == CKR_OK && out_len != pt_len + HSM_GCM_TAG_SIZE)
                rv = CKR_GENERAL_ERROR;
        return rv;
}

int hsm_encrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        CK_GCM_PARAMS params = {
                .pIv = (CK_BYTE_PTR) iv,
                .ulIvLen = HSM_GCM_IV_SIZE,
                .ulIvBits = HSM_GCM_IV_SIZE * 8,
                .pAAD = (CK_BYTE_PTR) aad,
                .ulAADLen = aad_len,
                .ulTagBits = HSM_GCM_TAG_SIZE * 8,
        };
        CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof(params) };
        CK_RV rv;
        int r;

        r = ensure_session(h);
        if (r < 0)
                return r;
        rv = gcm_encrypt_once(h, &mech, key, pt, pt_len, out);
        if (rv != CKR_OK)
                return idempotent_call_failed(h, rv);
        return 0;
}

/* out has room for ct_len bytes: some tokens (SoftHSM2) size a GCM decrypt by its input. */
static CK_RV gcm_decrypt_once(Hsm *h, CK_MECHANISM *mech, HsmObject key, const uint8_t *ct, size_t ct_len,
                              Secret *out) {
        CK_ULONG out_len = out->len;
        CK_RV rv;

        rv = P11(h, C_DecryptInit, h->session, mech, key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Decrypt, h->session, (CK_BYTE_PTR) ct, ct_len, out->data, &out_len);
        /* SoftHSM2 2.6 reports a GCM tag mismatch from C_Decrypt as CKR_GENERAL_ERROR (newer
         * tokens say CKR_ENCRYPTED_DATA_INVALID). Only this call's error means "does not
         * authenticate"; the same code from C_DecryptInit is an HSM failure. */
        if (rv == CKR_GENERAL_ERROR)
                return CKR_ENCRYPTED_DATA_INVALID;
        if (rv == CKR_OK) {
                if (out_len != ct_len - HSM_GCM_TAG_SIZE)
                        return CKR_GENERAL_ERROR;
                secret_truncate(out, out_len);
        }
        return rv;
}

int hsm_decrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret) {
        CK_GCM_PARAMS params = {
                .pIv = (CK_BYTE_PTR) iv,
                .ulIvLen = HSM_GCM_IV_SIZE,
                .ulIvBits = HSM_GCM_IV_SIZE * 8,
                .pAAD = (CK_BYTE_PTR) aad,
                .ulAADLen = aad_len,
                .ulTagBits = HSM_GCM_TAG_SIZE * 8,
        };
        CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof(params) };
        _cleanup_secret_ Secret *pt = NULL;
        CK_RV rv;
        int r;

        if (ct_len <= HSM_GCM_TAG_SIZE)
                return -KEKERR_BLOB_INVALID;
        r = secret_new(ct_len, &pt);
        if (r < 0)
                return r;
        r = ensure_session(h);
        if (r < 0)
                return r;
        rv = gcm_decrypt_once(h, &mech, key, ct, ct_len, pt);
        if (rv != CKR_OK)
                return idempotent_call_failed(h, rv);
        *ret = TAKE_PTR(pt);
        return 0;
}

/* Collects all handles matching tmpl; -ESTALE: the session or login was lost after the search began. */
static int find_all_once(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0, cap = 0;
        CK_RV rv;
        int r;

        r = ensure_session(h);
        if (r < 0)
                return r;
        rv = store_call(P11(h, C_FindObjectsInit, h->session, tmpl, n_tmpl));
        if (rv != CKR_OK && recover(h, rv))
                rv = store_call(P11(h, C_FindObjectsInit, h->session, tmpl, n_tmpl));
        if (rv != CKR_OK)
                return rv_to_errno(h, rv);
        for (;;) {
                CK_ULONG got = 0;

                if (cap - n < 256) {
                        CK_OBJECT_HANDLE *p = reallocarray(objs, cap + 1024, sizeof(*objs));

                        if (!p) {
                                (void) store_call(h->module->C_FindObjectsFinal(h->session));
                                return -ENOMEM;
                        }
                        objs = p;
                        cap += 1024;
                }
                rv = store_call(P11(h, C_FindObjects, h->session, objs + n, cap - n, &got));
                if (rv != CKR_OK) {
                        (void) store_call(h->module->C_FindObjectsFinal(h->session));
                        return read_failed(h, rv);
                }
                if (got == 0)
                        break;
                n += got;
        }
        rv = store_call(P11(h, C_FindObjectsFinal, h->session));
        if (rv != CKR_OK)
                return read_failed(h, rv);
        *ret = TAKE_PTR(objs);
        *ret_n = n;
        return 0;
}

/* The same, searching once more in a new session after a lost session or login (a search changes nothing). */
static int find_all(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        int r = find_all_once(h, tmpl, n_tmpl, ret, ret_n);

        if (r == -ESTALE)
                r = find_all_once(h, tmpl, n_tmpl, ret, ret_n);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

/*
 * Only keys that were generated on the token and can never leave it are KEKs:
 * an extractable or imported object planted under a key's label and ID by
 * another application on the same token is never adopted.
 */
#define KEK_SEARCH_TEMPLATE(cls, type, yes, no)                      \
        { CKA_CLASS, &(cls), sizeof(cls) },                          \
        { CKA_KEY_TYPE, &(type), sizeof(type) },                     \
        { CKA_SENSITIVE, &(yes), sizeof(yes) },                      \
        { CKA_EXTRACTABLE, &(no), sizeof(no) },                      \
        { CKA_NEVER_EXTRACTABLE, &(yes), sizeof(yes) },              \
        { CKA_LOCAL, &(yes), sizeof(yes) }

static int list_keys_once(Hsm *h, HsmKeyRef **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = { KEK_SEARCH_TEMPLATE(cls, type, yes, no) };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_free_ HsmKeyRef *keys = NULL;
        size_t n = 0, k = 0;
        int r;

        r = find_all(h, tmpl, ELEMENTSOF(tmpl), &objs, &n);
        if (r < 0)
                return r;
        keys = calloc(n ? n : 1, sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint8_t id[4];
                CK_ATTRIBUTE a[] = {
                        { CKA_LABEL, keys[k].label, HSM_KEY_LABEL_MAX },
                        { CKA_ID, id, sizeof(id) },
                };
                CK_RV rv = store_call(P11(h, C_GetAttributeValue, h->session, objs[i], a, ELEMENTSOF(a)));

                /* Foreign objects (longer labels, other ID schemes) are not ours. */
                if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID)
                        continue;
                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        continue; /* destroyed by another node meanwhile */
                if (rv != CKR_OK)
                        return read_failed(h, rv);
                if (a[1].ulValueLen != sizeof(id) || a[0].ulValueLen > HSM_KEY_LABEL_MAX)
                        continue;
                keys[k].label[a[0].ulValueLen] = 0;
                keys[k].version = (uint32_t) id[0] << 24 | (uint32_t) id[1] << 16 | (uint32_t) id[2] << 8 | id[3];
                keys[k].handle = objs[i];
                k++;
        }
        *ret = TAKE_PTR(keys);
        *ret_n = k;
        return 0;
}

int hsm_list_keys(Hsm *h, HsmKeyRef **ret, size_t *ret_n) {
        /* After a lost session or login, list again: the handles found belong to the old session. */
        int r = list_keys_once(h, ret, ret_n);

        if (r == -ESTALE)
                r = list_keys_once(h, ret, ret_n);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

int hsm_key_attributes(Hsm *h, HsmObject key, HsmKeyAttrs *ret) {
        CK_BBOOL token = 0, priv = 0, sens = 0, asens = 0, extr = 1, nextr = 0;
        CK_ULONG vlen = 0;
        uint8_t value[64];
        CK_ATTRIBUTE a[] = {
                { CKA_TOKEN, &token, sizeof(token) },
                { CKA_PRIVATE, &priv, sizeof(priv) },
                { CKA_SENSITIVE, &sens, sizeof(sens) },
                { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
                { CKA_EXTRACTABLE, &extr, sizeof(extr) },
                { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
                { CKA_VALUE_LEN, &vlen, sizeof(vlen) },
        };
        CK_ATTRIBUTE v = { CKA_VALUE, value, sizeof(value) };
        CK_RV rv;
        int r;

        r = ensure_session(h);
        if (r < 0)
                return r;
        rv = store_call(P11(h, C_GetAttributeValue, h->session, key, a, ELEMENTSOF(a)));
        if (rv != CKR_OK)
                return rv_to_errno(h, rv);
        rv = store_call(P11(h, C_GetAttributeValue, h->session, key, &v, 1));
        secret_cleanse(value, sizeof(value));
        *ret = (HsmKeyAttrs) {
                .token = token,
                .private_ = priv,
                .sensitive = sens,
                .always_sensitive = asens,
                .extractable = extr,
                .never_extractable = nextr,
                .value_len = vlen,
                .value_readable = rv == CKR_OK && v.ulValueLen != CK_UNAVAILABLE_INFORMATION,
        };
        return 0;
}

void hsm_data_objects_free(HsmDataObject *d, size_t n) {
        if (!d)
                return;
        for (size_t i = 0; i < n; i++)
                free(d[i].value);
        free(d);
}

#define APP_MAX 64u
#define VALUE_INLINE 4096u

/* Which of apps app_buf (len bytes) names; -EBADMSG if none (apps NULL: any, index 0). */
static int app_index(const char *const *apps, size_t n_apps, const uint8_t *app_buf, CK_ULONG len, unsigned *ret) {
        if (!apps) {
                *ret = 0;
                return 0;
        }
        for (size_t i = 0; i < n_apps; i++)
                if (len == strlen(apps[i]) && memcmp(app_buf, apps[i], len) == 0) {
                        *ret = (unsigned) i;
                        return 0;
                }
        return -EBADMSG;
}

/*
 * Reads label, application and value of one data object: one
 * C_GetAttributeValue into buffers that fit every record kekd writes, two
 * (sizes, then values) for anything bigger. -EBADMSG: not one of ours.
 */
static int data_object_read(Hsm *h, CK_OBJECT_HANDLE o, const char *const *apps, size_t n_apps, HsmDataObject *d) {
        uint8_t app[APP_MAX], value[VALUE_INLINE];
        CK_ATTRIBUTE a[] = {
                { CKA_LABEL, d->label, HSM_KEY_LABEL_MAX },
                { CKA_APPLICATION, app, sizeof(app) },
                { CKA_VALUE, value, sizeof(value) },
        };
        CK_RV rv;
        int r;

        rv = store_call(P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        if (rv == CKR_OK) {
                r = app_index(apps, n_apps, app, a[1].ulValueLen, &d->app);
                if (r >= 0) {
                        d->value = malloc(a[2].ulValueLen ? a[2].ulValueLen : 1);
                        r = d->value ? 0 : -ENOMEM;
                }
                if (r >= 0) {
                        memcpy(d->value, value, a[2].ulValueLen);
                        d->label[a[0].ulValueLen] = 0;
                        d->value_len = a[2].ulValueLen;
                        d->handle = o;
                }
                secret_cleanse(value, sizeof(value)); /* a foreign object's value is none of our business */
                return r;
        }
        secret_cleanse(value, sizeof(value));
        if (rv != CKR_BUFFER_TOO_SMALL)
                return read_failed(h, rv);

        /* Something is bigger than our buffers: sizes first. */
        for (size_t i = 0; i < ELEMENTSOF(a); i++) {
                a[i].pValue = NULL;
                a[i].ulValueLen = 0;
        }
        rv = store_call(P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        if (rv != CKR_OK)
                return read_failed(h, rv);
        if (a[0].ulValueLen > HSM_KEY_LABEL_MAX || a[1].ulValueLen > sizeof(app) || a[2].ulValueLen > 1024 * 1024)
                return -EBADMSG;
        d->value = malloc(a[2].ulValueLen ? a[2].ulValueLen : 1);
        if (!d->value)
                return -ENOMEM;
        a[0].pValue = d->label;
        a[1].pValue = app;
        a[2].pValue = d->value;
        rv = store_call(P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        r = rv != CKR_OK ? read_failed(h, rv) : a[0].ulValueLen > HSM_KEY_LABEL_MAX ? -EBADMSG
                                                 : app_index(apps, n_apps, app, a[1].ulValueLen, &d->app);
        if (r < 0) {
                free(d->value);
                d->value = NULL;
                return r;
        }
        d->label[a[0].ulValueLen] = 0;
        d->value_len = a[2].ulValueLen;
        d->handle = o;
        return 0;
}

/* Lists the data objects matching tmpl, keeping those of apps (NULL: all). */
static int list_data(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, const char *const *apps, size_t n_apps,
                     HsmDataObject **ret, size_t *ret_n) {
        /*
         * Records are replaced by "create new, destroy old". A listing that
         * races such a replacement can find the old object and then not read
         * it; the key must not look absent then, so list again.
         */
        bool relogged = false;

        for (unsigned attempt = 0; attempt < LIST_ATTEMPTS; attempt++) {
                _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
                HsmDataObject *d;
                size_t n = 0, k = 0;
                bool vanished = false;
                int r;

                r = find_all(h, tmpl, n_tmpl, &objs, &n);
                if (r < 0)
                        return r;
                d = calloc(n ? n : 1, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        r = data_object_read(h, objs[i], apps, n_apps, &d[k]);
                        if (r == -ENOENT) {
                                vanished = true;
                                continue;
                        }
                        if (r == -EBADMSG)
                                continue; /* not one of ours */
                        if (r == -ESTALE && !relogged) {
                                /* Session or login lost: list again, once, in the new session. */
                                relogged = vanished = true;
                                break;
                        }
                        if (r < 0) {
                                hsm_data_objects_free(d, k);
                                return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
                        }
                        k++;
                }
                if (!vanished) {
                        *ret = d;
                        *ret_n = k;
                        return 0;
                }
                hsm_data_objects_free(d, k);
        }
        return -KEKERR_HSM_UNAVAILABLE;
}

int hsm_list_data(Hsm *h, const char *application, const char *label, HsmDataObject **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_APPLICATION, (void *) application, strlen(application) },
                { CKA_LABEL, (void *) label, label ? strlen(label) : 0 },
        };

        return list_data(h, tmpl, label ? 3 : 2, &application, 1, ret, ret_n);
}

int hsm_list_data_multi(Hsm *h, const char *const *apps, size_t n_apps, HsmDataObject **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
        };

        return list_data(h, tmpl, ELEMENTSOF(tmpl), apps, n_apps, ret, ret_n);
}

int hsm_find_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t id[4];
        CK_ATTRIBUTE tmpl[] = {
                KEK_SEARCH_TEMPLATE(cls, type, yes, no),
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
        };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0;
        int r;

        version_to_id(version, id);
        r = find_all(h, tmpl, ELEMENTSOF(tmpl), &objs, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        *ret = objs[0];
        return 0;
}

int hsm_create_data(Hsm *h, const char *application, const char *label, const uint8_t *value, size_t len,
                    HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                /* records are immutable: a change is a new object, then the old one is destroyed */
                { CKA_MODIFIABLE, &no, sizeof(no) },
                { CKA_APPLICATION, (void *) application, strlen(application) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_VALUE, (void *) value, len },
        };
        CK_OBJECT_HANDLE o;
        CK_RV rv;
        int r;

        r = ensure_session(h);
        if (r < 0)
                return r;
        write_bump(h);
        rv = store_call(P11(h, C_CreateObject, h->session, tmpl, ELEMENTSOF(tmpl), &o));
        if (rv != CKR_OK)
                return handle_call_failed(h, rv);
        *ret = o;
        return 0;
}
