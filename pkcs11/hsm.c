/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PKCS#11 access for kekd (see hsm.h for the contract): loading the module,
 * the token, sessions and login, and how failures are mapped, recorded and
 * recovered from. The key and data objects are in hsm-objects.c, encrypt and
 * decrypt in hsm-crypt.c; every C_* call of the project is in these three
 * files. Invariants:
 *  - KEK versions are created by C_GenerateKey inside the token with
 *    CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE, CKA_PRIVATE=TRUE,
 *    CKA_TOKEN=TRUE, CKA_MODIFIABLE=FALSE, CKA_COPYABLE=FALSE (left out on a
 *    token that does not know it, hsm-objects.c) and only
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
 *    time per token (hsm_open()), whichever session or thread makes them
 *    (store_call()).
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
#include "hsm-internal.h"

static const char *const call_names[] = {
#define CALL_NAME(f) #f,
        CALLS(CALL_NAME)
#undef CALL_NAME
};

_Static_assert(_CALL_MAX == HSM_CALLS, "HSM_CALLS counts the functions of CALLS()");

#define REOPEN_BACKOFF_MIN_USEC (100 * 1000ULL)
#define REOPEN_BACKOFF_MAX_USEC (5 * 1000 * 1000ULL)   /* a recovered HSM is used again within 5 s */

/* Counted before the call: one that fails in transit may still have changed the token. */
void hsm_write_bump(Hsm *h) {
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
        ret->n_calls = (unsigned) hsm_call_errors(h, ret->calls);
}

/* Adds one function's record to acc: one entry per function (static names compare by pointer). */
static void call_error_add(const HsmCallError *c, HsmStats *acc) {
        for (unsigned j = 0; j < acc->n_calls; j++)
                if (acc->calls[j].function == c->function) {
                        acc->calls[j].count += c->count;
                        if (c->realtime_usec > acc->calls[j].realtime_usec) {
                                acc->calls[j].realtime_usec = c->realtime_usec;
                                acc->calls[j].error = c->error;
                        }
                        return;
                }
        if (acc->n_calls < HSM_CALLS)
                acc->calls[acc->n_calls++] = *c;
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
        for (unsigned i = 0; i < s->n_calls; i++)
                call_error_add(&s->calls[i], acc);
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

/*
 * The last refusal of any session of the process, "C_EncryptInit:
 * CKR_MECHANISM_INVALID", for the wire message of -KEKERR_UNSUPPORTED: the
 * crypto runs on worker sessions, the reply is written on the main thread,
 * and a refusal is the token's standing answer, so the latest one is the
 * one that request got (or the same as it).
 */
static pthread_mutex_t refusal_lock = PTHREAD_MUTEX_INITIALIZER;
static char refusal_text[96];

const char *hsm_last_refusal(char *buf, size_t size) {
        pthread_mutex_lock(&refusal_lock);
        snprintf(buf, size, "%s", refusal_text);
        pthread_mutex_unlock(&refusal_lock);
        return buf[0] ? buf : NULL;
}

int hsm_rv_to_errno(Hsm *h, CK_RV rv) {
        if (rv == CKR_OK)
                return 0;
        note_failure(h, rv);
        /* The token will not do this, whenever asked: not transient, so never "retry". */
        if (ckr_is_refusal(rv)) {
                pthread_mutex_lock(&refusal_lock);
                snprintf(refusal_text, sizeof(refusal_text), "%s: %s", call_names[h->call], ckr_name(rv));
                pthread_mutex_unlock(&refusal_lock);
                return -KEKERR_UNSUPPORTED;
        }
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
 * of this thread: the caller logs it at once. Returns hsm_rv_to_errno(rv).
 */
static int call_error(Hsm *h, CK_RV rv, const char *hint, const char **ret_error) {
        static __thread char text[512];
        const char *fn = call_names[h->call];
        int r = hsm_rv_to_errno(h, rv);

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

/*
 * The session was lost: closed, and the generation moved now, once for this
 * loss. The reopen that follows does not move it again: handles another
 * session found in between already belong to the token as it is after the
 * loss, and a second move would make an operation of another session that
 * already found its key again and retried fail for nothing (sessions-fault.sh:
 * eight unwraps in flight, one meets the loss).
 */
static void session_lost(Hsm *h) {
        session_close(h);
        generation_bump(h);
        h->lost_counted = true;
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
int hsm_ensure_session(Hsm *h) {
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
        /* Handles from before may not be valid in the new session: moved at the loss (session_lost()), or now. */
        if (!h->lost_counted)
                generation_bump(h);
        h->lost_counted = false;
        return 0;
}

int hsm_ready(Hsm *h) {
        return hsm_ensure_session(h);
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
bool hsm_recover(Hsm *h, CK_RV rv) {
        Call failed = h->call;
        bool reopened;

        if (!rv_is_session_loss(rv))
                return false;
        session_lost(h);
        reopened = hsm_ensure_session(h) >= 0;
        h->call = failed; /* rv, if it is reported after all, is the failed call's */
        return reopened;
}

/* Maps a failed call that used an object handle; a lost session becomes transient. */
int hsm_handle_failed(Hsm *h, CK_RV rv) {
        int r = hsm_rv_to_errno(h, rv);

        if (rv_is_session_loss(rv))
                session_lost(h);
        return r;
}

/*
 * The same for a call that changed nothing in the token (encrypt, decrypt),
 * which its caller may therefore make again: after a lost session or login
 * (rv_is_relogin()) the session is reopened now and -ESTALE says "open again,
 * but the handle you passed may be stale: find the object again, then retry
 * once". The generation moved, so the caller can tell the two reopens apart.
 */
int hsm_idempotent_failed(Hsm *h, CK_RV rv) {
        int r = hsm_handle_failed(h, rv);

        if (rv_is_relogin(rv) && hsm_ensure_session(h) >= 0)
                return -ESTALE;
        return r;
}

/*
 * A read in the middle of a listing failed. After a lost session or login
 * the session is dropped and -ESTALE asks the listing to start again (once):
 * the handles it found belong to the session that is gone.
 */
int hsm_read_failed(Hsm *h, CK_RV rv) {
        int r = hsm_rv_to_errno(h, rv);

        if (!rv_is_relogin(rv))
                return r;
        session_lost(h);
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
        pthread_mutex_init(&h->store_lock, NULL);

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
        pthread_mutex_destroy(&h->store_lock);
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

int hsm_mechanism_info(Hsm *h, unsigned long mechanism, HsmMechanismInfo *ret) {
        CK_MECHANISM_INFO mi = {};
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = P11(h, C_GetMechanismInfo, h->slot, (CK_MECHANISM_TYPE) mechanism, &mi);
        if (rv == CKR_MECHANISM_INVALID)
                return -ENOENT; /* not offered: an answer, not a failure to record */
        if (rv != CKR_OK)
                return hsm_rv_to_errno(h, rv);
        *ret = (HsmMechanismInfo) {
                .min_key_size = mi.ulMinKeySize,
                .max_key_size = mi.ulMaxKeySize,
                .flags = mi.flags,
        };
        return 0;
}

int hsm_token_answers(Hsm *h) {
        CK_TOKEN_INFO ti;
        int r = hsm_ensure_session(h);

        if (r < 0)
                return r;
        return hsm_rv_to_errno(h, P11(h, C_GetTokenInfo, h->slot, &ti));
}
