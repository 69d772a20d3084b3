/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of the HSM module share, and nothing outside pkcs11/
 * includes: the Hsm object, the P11() call wrapper that records which
 * function failed, the process-wide lock for token-object calls and the
 * failure mappings of hsm.c. hsm.c owns sessions, login, errors and stats;
 * hsm-objects.c the key objects; hsm-records.c the records (records-mac.c
 * their tags); hsm-crypt.c encrypt and decrypt.
 * Every C_* call of the project is in these files.
 */
#pragma once

#include <pthread.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "hsm.h"

/* The PKCS#11 functions pkcs11/ calls, for the per-function error record (hsm_call_errors()). */
#define CALLS(X)                                                                        \
        X(C_Initialize) X(C_GetSlotList) X(C_GetSlotInfo) X(C_GetTokenInfo)             \
        X(C_OpenSession) X(C_Login) X(C_GenerateKey) X(C_DestroyObject)                 \
        X(C_CreateObject) X(C_EncryptInit) X(C_Encrypt) X(C_DecryptInit) X(C_Decrypt)   \
        X(C_FindObjectsInit) X(C_FindObjects) X(C_FindObjectsFinal) X(C_GetAttributeValue) \
        X(C_GetMechanismList) X(C_GetMechanismInfo) X(C_SignInit) X(C_Sign) X(C_VerifyInit) X(C_Verify) \
        X(C_WrapKey) X(C_UnwrapKey)

typedef enum Call {
#define CALL_ENUM(f) CALL_##f,
        CALLS(CALL_ENUM)
#undef CALL_ENUM
        _CALL_MAX,
} Call;



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
        pthread_mutex_t store_lock;   /* the parent's serves all its sessions: store_call() */
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE session;
        bool session_open;
        bool login_refused;       /* the token rejected the PIN: never retry, it could lock the user */
        bool detached;            /* its losses move its own generation, not the parent's: hsm_set_detached() */
        bool lost_counted;        /* closed by session_lost(), which moved the generation for the reopen to come */
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
        /* The parent's, for all its sessions (atomics): optional template attributes (hsm_template_attrs()). */
        bool optional_refused[HSM_OPTIONAL_ATTRS];
        bool optional_accepted[HSM_OPTIONAL_ATTRS];
        /*
         * The parent's (atomic): whether the token reports CKA_LOCAL TRUE on keys it generates, read back
         * from the first key kekd generates there (hsm-objects.c): 0 not known yet, 1 it does, -1 it does not
         * (NSS softokn). Set once.
         */
        int local_reported;
        /* The parent's (atomics): how records are stored (hsm_set_record_mode()), public ones refused. */
        int record_mode;
        uint64_t record_mac_failures;
};

/*
 * A token's store lock (the parent's store_lock) is held around every call
 * that creates, destroys, finds or reads token objects, in every session of
 * that Hsm: a module may not keep its object store consistent while two
 * threads use it at once. SoftHSM2 2.6's file store does
 * not: its re-index of the token directory (C_FindObjectsInit, on the refresh
 * thread's session) racing a C_CreateObject on the main session wrote the new
 * record's file empty or torn after the call had succeeded and the record had
 * been read back, so the superseded record was destroyed and the key was gone
 * from the token (tests/integration/store-race.sh). Held for one call only,
 * never across a listing: the main loop waits for at most one call of the
 * refresh thread. Encrypt and decrypt do not take it.
 * One lock per hsm_open() (the preferred token and its sessions; each further
 * token's), not one per process: a further token whose call hangs must not
 * hold up the preferred token's calls, hence kekd's loop (tests/integration/
 * tokens.sh 7).
 */
#define store_call(h, expr)                                                              \
        ({                                                                              \
                pthread_mutex_t *_l = &((h)->parent ? (h)->parent : (h))->store_lock;   \
                CK_RV _rv;                                                              \
                pthread_mutex_lock(_l);                                                 \
                _rv = (expr);                                                           \
                pthread_mutex_unlock(_l);                                               \
                _rv;                                                                    \
        })

/*
 * Generates an AES-256 KEK with kekd's template (hsm-objects.c); a session
 * object (token_object false) for the capability probe's throwaway key.
 */
int hsm_generate_kek(Hsm *h, const char *label, uint32_t version, bool token_object, HsmObject *ret);
/*
 * The KEK template as a token object labelled "kekd probe", version 0 (the
 * probe destroys it at once): settles the optional attributes for token
 * objects, which a token may refuse where it took them for a session key.
 */
int hsm_generate_probe_token_kek(Hsm *h, HsmObject *ret);
/* A throwaway session key with the trusted-wrap KEK template (backup mode trusted-wrap), for the probe. */
int hsm_generate_probe_trusted_kek(Hsm *h, HsmObject *ret);
/*
 * A 256-bit HMAC key generated in the token (sensitive, never extractable,
 * sign/verify only) under label and id; a session object if !token_object.
 */
int hsm_generate_hmac_key(Hsm *h, const char *label, const uint8_t *id, size_t id_len, bool token_object,
                          HsmObject *ret);
/* A MAC key with the template of hsm_generate_mac_key(), as a session object, for the probe's self-test. */
int hsm_generate_probe_mac_key(Hsm *h, HsmObject *ret);

/*
 * Collects all handles matching tmpl (hsm-objects.c), searching once more in
 * a new session after a lost session or login (a search changes nothing).
 */
int hsm_find_all(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n);
/*
 * Creates a record object the way mode stores them (hsm-records.c), value
 * as given (no tag added): a private or a public CKO_DATA object, or a
 * private generic-secret key object. For the probe's throwaway objects.
 */
int hsm_create_record_object(Hsm *h, HsmRecordMode mode, const char *application, const char *label,
                             const uint8_t *value, size_t len, HsmObject *ret);

/* Counted before the call: one that fails in transit may still have changed the token. */
void hsm_write_bump(Hsm *h);
/* Maps a failed call's CK_RV to -errno / -KEKERR_* (see hsm.h), recording it for hsm_call_errors(). */
int hsm_rv_to_errno(Hsm *h, CK_RV rv);
/* Opens the session if it is not open, with backoff; -KEKERR_HSM_UNAVAILABLE while it cannot. */
int hsm_ensure_session(Hsm *h);
/* After a failed call that names no handle: reopens a lost session; true if the call may be made once more. */
bool hsm_recover(Hsm *h, CK_RV rv);
/* Maps a failed call that used an object handle; a lost session becomes transient. */
int hsm_handle_failed(Hsm *h, CK_RV rv);
/* The same for encrypt/decrypt, which change nothing: -ESTALE after a lost session or login reopened now. */
int hsm_idempotent_failed(Hsm *h, CK_RV rv);
/* A read in the middle of a listing failed: -ESTALE asks the listing to start again (once). */
int hsm_read_failed(Hsm *h, CK_RV rv);
