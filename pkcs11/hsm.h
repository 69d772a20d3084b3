/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HSM: the only module that calls PKCS#11 (C_*) functions. It loads a
 * module through p11-kit, selects exactly one token by RFC 7512 URI, logs in as
 * CKU_USER and offers the handful of operations kekd needs: generate an AES-256
 * KEK version that can never leave the token, AES-256-GCM encrypt/decrypt with
 * it, and CRUD of kekd's CKO_DATA metadata objects.
 *
 * CK_RV never leaves this module. Failures map to -errno or -KEKERR_*:
 *   device, token and session failures  -> -KEKERR_HSM_UNAVAILABLE (transient)
 *   the token refuses what was asked: a template or attribute
 *   (CKR_ATTRIBUTE_*, CKR_TEMPLATE_*), a mechanism (CKR_MECHANISM_*,
 *   CKR_KEY_TYPE_INCONSISTENT, ...) or a function it does not implement
 *   (CKR_FUNCTION_NOT_SUPPORTED)         -> -KEKERR_UNSUPPORTED (not transient:
 *                                           asking again gets the same answer)
 *   GCM tag mismatch / bad ciphertext    -> -KEKERR_BLOB_INVALID
 *   object handle no longer valid        -> -ENOENT
 *   encrypt/decrypt: session or login lost, and open again -> -ESTALE
 *   any other CKR                        -> -EIO
 * Each failure is logged at debug level with the PKCS#11 function and the CKR
 * name, and kept per function (hsm_call_errors()) and as the last one
 * (hsm_last_error(), hsm_last_call_error()) for the caller's log line,
 * status and metrics.
 *
 * After a device or session failure the next call reopens the session and logs
 * in again, then retries once. Object handles may change across such a reopen
 * on real HSMs, so hsm_generation() increments and holders of handles re-read
 * them. A lost session or login alone (CKR_SESSION_HANDLE_INVALID,
 * CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN) is reopened within the failing
 * call, outside the reopen backoff (only failed reopens back off): listings
 * then search again once; encrypt and decrypt return -ESTALE (see there).
 * Calls that create or destroy objects are never repeated: one that failed in
 * transit may have been done. Not thread-safe: one Hsm per thread;
 * hsm_open_session() gives another thread its own session on the same token.
 * Calls on token objects (create, destroy, generate, find, read attributes)
 * are made one at a time across all sessions and threads of the process;
 * encrypt and decrypt run in parallel.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "common/secret.h"

#define HSM_GCM_IV_SIZE 12u
#define HSM_GCM_TAG_SIZE 16u
#define HSM_KEY_LABEL_MAX 64u

typedef struct Hsm Hsm;
typedef unsigned long HsmObject;

#define HSM_ERROR_KINDS 24u
#define HSM_CALLS 25u                  /* PKCS#11 functions this module calls */

typedef struct HsmErrorCount {
        const char *name;              /* "CKR_DEVICE_ERROR", static */
        uint64_t count;
} HsmErrorCount;

/* The last failure of one PKCS#11 function on one Hsm (session). */
typedef struct HsmCallError {
        const char *function;          /* "C_EncryptInit", static */
        const char *error;             /* "CKR_MECHANISM_INVALID", static */
        uint64_t realtime_usec;        /* CLOCK_REALTIME when it last failed */
        uint64_t count;                /* how often this function failed */
} HsmCallError;

typedef struct HsmStats {
        bool session_open;
        uint64_t reopens;              /* sessions reopened after a loss */
        HsmErrorCount errors[HSM_ERROR_KINDS];
        unsigned n_errors;
        /* Per function (hsm_call_errors()); merged: counts add up, the latest failure's CKR is kept. */
        HsmCallError calls[HSM_CALLS];
        unsigned n_calls;
} HsmStats;

typedef struct HsmKeyRef {
        char label[HSM_KEY_LABEL_MAX + 1];
        uint32_t version;              /* from CKA_ID (4 bytes big-endian) */
        HsmObject handle;
        bool wrap_with_trusted;        /* found in the trusted-wrap form (hsm-objects.c), not never-extractable */
        bool restored;                 /* found in the restored form (unwrapped by a restore, hsm-transfer.h) */
        bool not_local;                /* generated form, but CKA_LOCAL not TRUE on a token that reports it: never used */
} HsmKeyRef;

/* Whether refs lists an object of (label, version) with not_local set. */
bool hsm_key_refs_not_local(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version);

typedef struct HsmDataObject {
        char label[HSM_KEY_LABEL_MAX + 1];
        unsigned app;                  /* hsm_list_data_multi(): index of its application */
        uint8_t *value;
        size_t value_len;
        HsmObject handle;
} HsmDataObject;

typedef struct HsmKeyAttrs {
        bool token, private_, sensitive, always_sensitive, extractable, never_extractable;
        bool wrap_with_trusted;        /* CKA_WRAP_WITH_TRUSTED (FALSE if the token does not know it) */
        bool value_readable;           /* true would be a breach: CKA_VALUE was returned */
        unsigned long value_len;
} HsmKeyAttrs;

/*
 * module: an absolute path to a PKCS#11 module, or the name of a module
 * registered with p11-kit. token_uri: "pkcs11:token=...;serial=..." (no
 * pin-value; a PIN inside a URI is refused). On failure *ret_error (if given)
 * receives a description of what went wrong, naming the PKCS#11 function and
 * CKR if a call failed ("C_Initialize failed: CKR_ARGUMENTS_BAD (...); hint").
 * It is static or in a per-thread buffer: valid until this thread's next
 * hsm_open() or hsm_open_session().
 */
int hsm_open(const char *module, const char *token_uri, const Secret *pin, Hsm **ret, const char **ret_error);
/*
 * A second session on parent's token, for another thread (daemon/cryptopool.h):
 * PKCS#11 object handles belong to the application, so handles found through
 * parent are valid here. Shares parent's module, URI and PIN: free it before
 * parent. Its own errors, reopens and backoff (hsm_stats() reports them), but
 * parent's hsm_generation(): a session lost in any of them bumps it, so the
 * holder of handles re-reads them whichever session noticed.
 */
int hsm_open_session(Hsm *parent, Hsm **ret, const char **ret_error);
Hsm *hsm_free(Hsm *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Hsm, hsm_free);

/*
 * Reopens the session now if it was lost (with the usual backoff), so that the
 * generation moves before handles are taken, not in the middle of using them.
 * -KEKERR_HSM_UNAVAILABLE while the token cannot be reached.
 */
int hsm_ready(Hsm *h);
/*
 * For a session of hsm_open_session() that only reads and keeps no handle
 * between its jobs (daemon/hsmtask.h): from now on its losses and reopens
 * move its own hsm_generation(), not the parent's, so a hiccup of that
 * session neither fails the requests in flight on the others nor makes
 * their holder read the token again. A real reset of the token closes the
 * other sessions too, and they move the parent's generation themselves.
 */
void hsm_set_detached(Hsm *h);
/* Whether the session is open (the owner's thread only). */
bool hsm_is_open(const Hsm *h);
/* Incremented each time a session had to be reopened (handles may have changed); safe from any thread. */
uint64_t hsm_generation(const Hsm *h);
/*
 * Objects created or destroyed (or attempted) through h's token by any of the
 * parent's sessions; safe from any thread. A reader that saw the same count
 * before and after its listing knows this process changed nothing meanwhile.
 */
uint64_t hsm_writes(const Hsm *h);
/*
 * The last failed PKCS#11 call and its return value ("C_Encrypt: CKR_DEVICE_ERROR"),
 * for logs; valid until the next call on h.
 */
const char *hsm_last_error(const Hsm *h);
/*
 * The last refusal (-KEKERR_UNSUPPORTED) of any session of the process,
 * "C_EncryptInit: CKR_MECHANISM_INVALID", copied into buf; NULL if none yet.
 * Safe from any thread: for the wire message of a permanent refusal.
 */
const char *hsm_last_refusal(char *buf, size_t size);
/* The same as a record; -ENODATA if no call on h has failed yet. */
int hsm_last_call_error(const Hsm *h, HsmCallError *ret);
/*
 * The last failure of each PKCS#11 function that has failed on h, in a fixed
 * order (not by time); returns how many were written to ret. The owner's
 * thread only, like hsm_stats(): a daemon collects them where it collects
 * the stats (see docs/tokens.md for kekctl status and metrics).
 */
size_t hsm_call_errors(const Hsm *h, HsmCallError ret[HSM_CALLS]);
/* Counters for metrics: whether a session is open, reopens, non-OK return values by name. */
void hsm_stats(const Hsm *h, HsmStats *ret);
/* Adds another session's counters to acc (from hsm_stats()); open only if all are. */
void hsm_stats_merge(const Hsm *h, HsmStats *acc);
/* The same from counters taken earlier with hsm_stats(). */
void hsm_stats_add(const HsmStats *s, HsmStats *acc);
/* What C_GetMechanismInfo says of one mechanism (CKM_* value); key sizes as the token counts them. */
typedef struct HsmMechanismInfo {
        unsigned long min_key_size, max_key_size;
        unsigned long flags;           /* CKF_ENCRYPT, CKF_DECRYPT, CKF_SIGN, CKF_GENERATE, ... */
} HsmMechanismInfo;

/* The token's answer for mechanism (a CKM_* value); -ENOENT if it does not offer it. */
int hsm_mechanism_info(Hsm *h, unsigned long mechanism, HsmMechanismInfo *ret);
/*
 * Whether the token answers now (C_GetTokenInfo on a session that is open, or reopened): no
 * object and no cryptographic operation, the cheapest call that meets an HSM outage.
 */
int hsm_token_answers(Hsm *h);

/* Token label and serial, for status output. */
const char *hsm_token_label(const Hsm *h);

int hsm_generate_aes_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret);
/*
 * The same, or with wrap_trusted (backup mode trusted-wrap, docs/backup.md)
 * CKA_EXTRACTABLE=TRUE and CKA_WRAP_WITH_TRUSTED=TRUE: still sensitive, it
 * can leave the token only wrapped under a key the SO marked CKA_TRUSTED.
 */
int hsm_generate_version_key(Hsm *h, const char *label, uint32_t version, bool wrap_trusted, HsmObject *ret);

/*
 * Optional attributes of the KEK template (CKA_COPYABLE): a token that
 * answers CKR_ATTRIBUTE_TYPE_INVALID gets the template again without them,
 * and is not asked again (for any session). The security attributes are
 * never dropped. What happened to each, for the capability probe's report.
 */
#define HSM_OPTIONAL_ATTRS 1u
typedef enum HsmAttrState {
        HSM_ATTR_UNTRIED,              /* no KEK generated yet */
        HSM_ATTR_ACCEPTED,
        HSM_ATTR_DROPPED,              /* the token refused it: left out */
} HsmAttrState;
typedef struct HsmTemplateAttr {
        const char *name;              /* "CKA_COPYABLE", static */
        HsmAttrState state;
} HsmTemplateAttr;
size_t hsm_template_attrs(const Hsm *h, HsmTemplateAttr ret[HSM_OPTIONAL_ATTRS]);

/*
 * Token secret-key objects with a label of at most HSM_KEY_LABEL_MAX bytes
 * that kekd does not take for a KEK, and why ("extractable", "not an AES
 * key", ...): `kekctl check` reports those whose label names a key, so a
 * key version that no search finds is never silently lost. Free with free().
 */
typedef struct HsmKeyIssue {
        char label[HSM_KEY_LABEL_MAX + 1];
        const char *reason;            /* static */
        HsmObject handle;
} HsmKeyIssue;
int hsm_list_unclassified(Hsm *h, HsmKeyIssue **ret, size_t *ret_n);
int hsm_destroy_object(Hsm *h, HsmObject o);
/*
 * The same for a session object this session made (a probe's throwaway
 * key): not counted by hsm_writes(), since no listing of token objects can
 * have missed it. Never for a token object.
 */
int hsm_destroy_session_object(Hsm *h, HsmObject o);
/*
 * Destroys an object found by a listing or search made when hsm_generation()
 * was generation. If a session was reopened since, the handle may name
 * another object now (some HSMs renumber): nothing is destroyed and
 * -KEKERR_HSM_UNAVAILABLE is returned; list again.
 */
int hsm_destroy_listed(Hsm *h, HsmObject o, uint64_t generation);

/*
 * -ESTALE: the session or its login was lost in this call and is open again
 * (hsm_generation() moved). Encrypt and decrypt change nothing in the token,
 * so the caller may find the key again (hsm_find_key(): key may be stale) and
 * make the call once more; a second -ESTALE is to be taken as transient.
 * out must have room for pt_len + HSM_GCM_TAG_SIZE bytes (ciphertext || tag).
 */
int hsm_encrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
/* ct is ciphertext || tag; the plaintext lands in a new Secret. -ESTALE as for hsm_encrypt_gcm(). */
int hsm_decrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret);

/*
 * Mechanism profiles: how a key version encrypts, chosen when the version is
 * created and kept in its record (daemon/record.h) and, as the blob format
 * byte, in every blob (proto/blob.h). docs/profiles.md gives each one's
 * security argument. The values are stored in records: never renumber.
 *   gcm           CKM_AES_GCM, 96-bit IV drawn by kekd, 128-bit tag.
 *   ctr-hmac      encrypt-then-MAC: AES-256-CTR whose counter blocks the
 *                 token encrypts with CKM_AES_ECB under the version's AES
 *                 key (kekd XORs the keystream in secure memory), then
 *                 CKM_SHA256_HMAC under a second key of the version, a
 *                 CKK_GENERIC_SECRET generated in the token
 *                 (hsm_generate_mac_key()), over
 *                 be32(aad_len) || aad || iv || ciphertext. 128-bit IV
 *                 drawn by kekd (the initial counter block, incremented as
 *                 one 128-bit big-endian number, as OpenSSL's AES-CTR does).
 *   gcm-token-iv  CKM_AES_GCM whose 96-bit IV the token generates (FIPS-mode
 *                 HSMs): kekd passes a zeroed IV buffer and reads the IV back.
 *   cbc-hmac      encrypt-then-MAC as ctr-hmac, with AES-256-CBC and PKCS#7
 *                 padding done whole in the token (CKM_AES_CBC_PAD, 128-bit
 *                 IV drawn by kekd): the ciphertext is the plaintext padded
 *                 to the next multiple of 16 bytes (hsm_profile_ct_size()).
 */
typedef enum HsmProfile {
        HSM_PROFILE_GCM = 0,           /* a record without a profile means this */
        HSM_PROFILE_CTR_HMAC = 1,
        HSM_PROFILE_GCM_TOKEN_IV = 2,
        HSM_PROFILE_CBC_HMAC = 3,
        _HSM_PROFILE_MAX,
} HsmProfile;

#define HSM_CTR_IV_SIZE 16u
#define HSM_HMAC_TAG_SIZE 32u
#define HSM_PROFILE_IV_MAX 16u

/* "gcm", "ctr-hmac", "gcm-token-iv", "cbc-hmac"; NULL for an unknown value. */
const char *hsm_profile_name(HsmProfile p);
/* The profile named s; -EINVAL if none is. */
int hsm_profile_from_name(const char *s, HsmProfile *ret);
/* Whether a version of profile p has a MAC key besides its AES key. */
bool hsm_profile_has_mac_key(HsmProfile p);
/* Bytes of IV in a blob of profile p. */
size_t hsm_profile_iv_size(HsmProfile p);
/* Bytes a ciphertext of profile p adds to the plaintext at most (the tag, and cbc-hmac's padding). */
size_t hsm_profile_overhead(HsmProfile p);
/* Bytes of ciphertext || tag of profile p for a pt_len-byte plaintext. */
size_t hsm_profile_ct_size(HsmProfile p, size_t pt_len);
/*
 * Whether the token offers every mechanism p needs, with the flags it needs
 * (C_GetMechanismInfo): 1 yes, 0 no (*ret_missing, if given, names the first
 * mechanism missing: "CKM_AES_GCM"), <0 if the token could not be asked.
 * gcm-token-iv is never chosen from mechanism information alone (a token
 * that offers GCM does not say whether it generates IVs): it is 1 when GCM is
 * offered, and is used only when pinned by configuration.
 */
int hsm_profile_available(Hsm *h, HsmProfile p, const char **ret_missing);
/*
 * One encryption under profile p with the version's AES key (and MAC key,
 * for profiles that have one; otherwise ignored). iv holds
 * hsm_profile_iv_size(p) bytes: the caller's random IV, or for gcm-token-iv
 * receives the token's. out has room for hsm_profile_ct_size(p, pt_len)
 * bytes (ciphertext || tag). -ESTALE as for hsm_encrypt_gcm().
 */
int hsm_profile_encrypt(Hsm *h, HsmProfile p, HsmObject key, HsmObject mac_key, uint8_t *iv, const uint8_t *aad,
                        size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
/* The inverse; -KEKERR_BLOB_INVALID when the tag does not authenticate. */
int hsm_profile_decrypt(Hsm *h, HsmProfile p, HsmObject key, HsmObject mac_key, const uint8_t *iv,
                        const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret);
/* ctr-hmac (see above); out: pt_len + HSM_HMAC_TAG_SIZE bytes. */
int hsm_encrypt_ctr_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
int hsm_decrypt_ctr_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret);
/* cbc-hmac (see above); out: hsm_profile_ct_size(HSM_PROFILE_CBC_HMAC, pt_len) bytes. */
int hsm_encrypt_cbc_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
int hsm_decrypt_cbc_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret);

/*
 * The MAC key of a version: CKK_GENERIC_SECRET, 32 bytes, generated in the
 * token (CKM_GENERIC_SECRET_KEY_GEN), sensitive, never extractable, usable
 * for sign and verify only. It carries the same CKA_LABEL and CKA_ID as the
 * version's AES key; its key type tells them apart, so hsm_list_keys() and
 * hsm_find_key() (CKK_AES) never see it.
 */
int hsm_generate_mac_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret);
/* The same, wrappable under trusted keys only with wrap_trusted (as hsm_generate_version_key()). */
int hsm_generate_version_mac_key(Hsm *h, const char *label, uint32_t version, bool wrap_trusted, HsmObject *ret);
/*
 * Destroys every key object of (label, version), its AES key and its MAC key
 * if it has one, looked up afresh (never by a remembered handle); 0 once none
 * is left, <0 if that cannot be confirmed.
 */
int hsm_destroy_version_keys(Hsm *h, const char *label, uint32_t version);
/* Destroys every key object (AES and MAC) under label: a purge. 0 once the listing found none left. */
int hsm_destroy_label_keys(Hsm *h, const char *label);
/* Finds the MAC key (label, version); -ENOENT if absent, -ENOTUNIQ if several (as hsm_find_key()). */
int hsm_find_mac_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret);
/* All MAC keys (as hsm_list_keys() for AES keys). Free with free(). */
int hsm_list_mac_keys(Hsm *h, HsmKeyRef **ret, size_t *ret_n);

/* All AES secret keys on the token with a 4-byte CKA_ID. Free with free(). */
int hsm_list_keys(Hsm *h, HsmKeyRef **ret, size_t *ret_n);
int hsm_key_attributes(Hsm *h, HsmObject key, HsmKeyAttrs *ret);

/*
 * Finds the key object (label, version); -ENOENT if absent, -ENOTUNIQ if more
 * than one answers in its forms: a version has one, so the other is not
 * kekd's (imported by a holder of the PIN, its value known to its maker),
 * and with nothing to tell them apart neither is used (check names them).
 * -ENOTUNIQ too for a lone object in a generated form that the token says it
 * did not generate (CKA_LOCAL not TRUE on a token that sets it on the keys it
 * generates): derived by C_DeriveKey, it inherits CKA_ALWAYS_SENSITIVE and
 * CKA_NEVER_EXTRACTABLE from its base key, yet its maker may know its value.
 */
int hsm_find_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret);
/*
 * The same in the form a version's record names: generated (as
 * hsm_find_key(), hsm_find_mac_key()) or, with restored, only the restored
 * form of a version a restore unwrapped (pkcs11/hsm-transfer.h).
 */
int hsm_find_version_key(Hsm *h, const char *label, uint32_t version, bool restored, HsmObject *ret);
int hsm_find_version_mac_key(Hsm *h, const char *label, uint32_t version, bool restored, HsmObject *ret);

/*
 * Private CKO_DATA objects of one application ("kekd" for key records,
 * "kekd-vault" for the vault policy), all or only those with label. Free
 * with hsm_data_objects_free(). Objects are never modified in place: the
 * caller writes a new object and destroys the old one (see keystore.c).
 */
int hsm_list_data(Hsm *h, const char *application, const char *label, HsmDataObject **ret, size_t *ret_n);
/* The same for several applications in one scan of the token; d[i].app says whose. */
int hsm_list_data_multi(Hsm *h, const char *const *apps, size_t n_apps, HsmDataObject **ret, size_t *ret_n);
void hsm_data_objects_free(HsmDataObject *d, size_t n);
int hsm_create_data(Hsm *h, const char *application, const char *label, const uint8_t *value, size_t len,
                    HsmObject *ret);

/*
 * How records are kept (issue 16). HSM_RECORDS_PRIVATE: private CKO_DATA
 * token objects, readable only after login. HSM_RECORDS_PUBLIC_MAC, for
 * tokens that refuse private data objects (NSS softokn) but store public
 * ones, chosen by the capability probe: public data objects whose value is
 * followed by an HMAC-SHA256 tag computed in the token under a record key
 * (pkcs11/records-mac.h); hsm_create_data() adds the tag, the listings
 * return only objects whose tag verifies, without it.
 * HSM_RECORDS_KEY_OBJECTS, for tokens that store no token data objects at
 * all (NSS softokn: C_CreateObject of any CKO_DATA token object is
 * CKR_ATTRIBUTE_VALUE_INVALID): private CKK_GENERIC_SECRET token objects,
 * not sensitive and extractable, without any usage, whose CKA_VALUE is the
 * record and the same tag. The callers see the same values in every mode.
 */
typedef enum HsmRecordMode {
        HSM_RECORDS_PRIVATE,
        HSM_RECORDS_PUBLIC_MAC,
        HSM_RECORDS_KEY_OBJECTS,
} HsmRecordMode;
void hsm_set_record_mode(Hsm *h, HsmRecordMode mode);
HsmRecordMode hsm_record_mode(const Hsm *h);
/* "private data objects", "public data objects + HMAC", "private key objects + HMAC": for logs and status. */
const char *hsm_record_mode_name(HsmRecordMode mode);
/* Record objects of kekd's applications that listings refused because their tag failed, since hsm_open(). */
uint64_t hsm_record_mac_failures(const Hsm *h);
/*
 * For `kekctl check`: the data objects of apps whose record tag fails, with
 * reason "record object fails its MAC" (none in HSM_RECORDS_PRIVATE). Free
 * with free().
 */
int hsm_list_bad_records(Hsm *h, const char *const *apps, size_t n_apps, HsmKeyIssue **ret, size_t *ret_n);
