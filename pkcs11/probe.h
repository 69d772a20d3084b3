/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The capability probe (issue 16): what a token offers kekd, measured rather
 * than assumed. It reads the mechanisms kekd could use (C_GetMechanismList,
 * C_GetMechanismInfo: flags and key sizes) and the token flags, stores and
 * destroys a private token data object (kekd's records are such objects;
 * if the token refuses it, a public one, then a generic-secret key object:
 * records are then kept so, with an in-token HMAC tag, hsm_set_record_mode()),
 * generates a throwaway session key with the KEK template and runs a real
 * encrypt/decrypt self-test under each mechanism profile with it, then
 * destroys it. It then asks the token to copy throwaway KEK-template keys
 * (plain, as extractable, as non-sensitive: ProbeCopy below); a token whose
 * copy can leave it is "unsafe" and kekd starts on it only with [hsm]
 * allow_unsafe_token. kekd probes once at start (and refuses to start when
 * no profile works) and again on `kekctl check`; status shows the cached result, so the data path
 * never waits for a probe. A further token ([hsm.NAME], daemon/tokenset.h)
 * gets the same probe on the token set's probe thread, pinned to the profile
 * the preferred token chose, when it is first opened and after each reopen;
 * it is refused (kept unavailable) on the same grounds.
 *
 * The result holds only static strings and fixed buffers (no secrets, no
 * peer bytes): it can be copied by value. probe_run() uses the Hsm like any
 * other call: on the owner's thread only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pkcs11/hsm.h"

#define PROBE_MECHANISMS 11u
#define PROBE_ERROR_MAX 96u

typedef struct ProbeMechanism {
        const char *name;              /* "CKM_AES_GCM", static */
        unsigned long type;
        bool offered;                  /* in C_GetMechanismList and C_GetMechanismInfo answered */
        HsmMechanismInfo info;
} ProbeMechanism;

/*
 * A mechanism profile (pkcs11/hsm.h, HsmProfile) as the self-test sees it:
 * the mechanisms it needs and a round trip under a key generated with the
 * KEK template (session object; a profile with a MAC key makes a throwaway
 * session MAC key too). selftest returns 0 when it encrypted, decrypted
 * back and refused a tampered ciphertext.
 */
typedef struct ProbeProfile {
        const char *name;              /* "gcm" */
        const char *needs;             /* "AES-GCM (CKM_AES_GCM)", for the refusal message */
        int profile;                   /* the HsmProfile */
        unsigned long mechanisms[5];   /* all needed, 0-terminated */
        int (*selftest)(Hsm *h, const struct ProbeProfile *pp, HsmObject key);
} ProbeProfile;

typedef enum ProbeAnswer {
        PROBE_UNKNOWN,                 /* not tried: an earlier step failed, or the token was unreachable */
        PROBE_YES,
        PROBE_NO,
} ProbeAnswer;

/*
 * What C_CopyObject does with a key made with the KEK template as the token
 * accepted it (a throwaway session key per try, made after the template is
 * settled), asked for a session copy three ways: plain {CKA_TOKEN=FALSE},
 * {CKA_TOKEN=FALSE, CKA_EXTRACTABLE=TRUE} and {CKA_TOKEN=FALSE,
 * CKA_SENSITIVE=FALSE}. PKCS#11 (C_CopyObject, section 4.4) lets a copy
 * change CKA_SENSITIVE only to TRUE and CKA_EXTRACTABLE only to FALSE, and
 * CKA_COPYABLE=FALSE forbids copies altogether. Whatever was made is
 * destroyed: the copy, and the source too (NSS softokn answers with the
 * source's own handle, changed in place).
 */
typedef enum ProbeCopy {
        PROBE_COPY_UNKNOWN,            /* not tried: an earlier step failed */
        PROBE_COPY_REFUSED,            /* every copy refused: keys stay single */
        PROBE_COPY_KEPT,               /* a copy was made, sensitive and unextractable: it outlives purge */
        PROBE_COPY_UNSAFE,             /* a copy read back extractable or not sensitive: a PIN holder can take keys out */
} ProbeCopy;
#define PROBE_COPY_TRIES 3u

typedef struct ProbeResult {
        ProbeMechanism mechanisms[PROBE_MECHANISMS];
        unsigned long token_flags;     /* CK_TOKEN_INFO.flags */
        ProbeAnswer private_data;      /* a private token CKO_DATA object can be stored */
        ProbeAnswer public_data;       /* tried only when private_data is PROBE_NO: a public one can */
        ProbeAnswer key_objects;       /* tried only when public_data is PROBE_NO: a record in a key object can */
        HsmRecordMode records;         /* how kekd keeps its records on this token (hsm_record_mode()) */
        ProbeAnswer key_template;      /* C_GenerateKey accepted the KEK template */
        HsmTemplateAttr attrs[HSM_OPTIONAL_ATTRS];
        ProbeAnswer wrap_with_trusted; /* a key with CKA_WRAP_WITH_TRUSTED can be made (backup mode trusted-wrap) */
        ProbeCopy copy;                /* the worst answer of the three C_CopyObject tries */
        const char *copy_ckr[PROBE_COPY_TRIES]; /* plain, extractable, sensitive: "CKR_OK", static; NULL not tried */
        char copy_text[192];           /* "plain CKR_ACTION_PROHIBITED, extractable CKR_OK (read back extractable), ..." */
        const char *profile;           /* the first profile whose self-test passed, or NULL */
        int profile_id;                /* its HsmProfile, -1 if none */
        char error[PROBE_ERROR_MAX];   /* the failing call of the first step that failed: "C_Encrypt: CKR_..." */
        char message[512];             /* empty when usable, else the one sentence to log and show */
} ProbeResult;

/*
 * The profiles to try: pin (an HsmProfile, from [hsm] profile) alone, or
 * for auto (-1) those auto may choose, in its order of preference (gcm,
 * cbc-hmac, ctr-hmac; gcm-token-iv only when pinned). *ret_n is their number.
 */
const ProbeProfile *probe_profiles(int pin, size_t *ret_n);
/* The self-test of any profile: encrypt, decrypt, a tampered tag refused (hsm_profile_encrypt/decrypt). */
int probe_selftest(Hsm *h, const ProbeProfile *pp, HsmObject key);

/*
 * Probes the token behind h. 0: usable (ret->profile set); -KEKERR_UNSUPPORTED:
 * the token cannot serve kekd, ret->message says why and what would work;
 * -KEKERR_HSM_UNAVAILABLE (or another -errno): the probe could not finish,
 * ret->message says where. ret is written in every case.
 */
int probe_run(Hsm *h, const ProbeProfile *profiles, size_t n_profiles, ProbeResult *ret);

/* "refused", "kept", "unsafe", "unknown": the copy classification's name (metrics, status). */
const char *probe_copy_name(ProbeCopy c);

/*
 * The sentence for a token whose keys can be copied (PROBE_COPY_UNSAFE: the
 * refusal or warning at start, a `kekctl check` problem; PROBE_COPY_KEPT: a
 * property of the token), naming the tries and their CKRs; empty otherwise.
 */
void probe_copy_problem(const ProbeResult *p, const char *token, char *buf, size_t size);
/* The same for the token of kekd.conf section section ("hsm.b"), whose allow_unsafe_token it names. */
void probe_copy_problem_in(const ProbeResult *p, const char *token, const char *section, char *buf, size_t size);

/* "encrypt,decrypt,generate"-style names of CKF_ flags (mechanism: mechanism flags, else token flags). */
void probe_flags_text(unsigned long flags, bool mechanism, char *buf, size_t size);

/*
 * The health probe of a token that serves (daemon/tokenset.h): a real round
 * trip, cheap enough to repeat every few seconds. A throwaway session key
 * with the KEK template, the self-test of profile (an HsmProfile) under it
 * (encrypt, decrypt, a tampered tag refused), the key destroyed. 0: the token
 * works; else the error of the first call that failed (hsm_last_error()).
 */
int probe_health(Hsm *h, int profile);
