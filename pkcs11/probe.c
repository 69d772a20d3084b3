/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The capability probe (see probe.h). Invariants: every object it makes is
 * a throwaway, destroyed before it returns (the KEK-template key is a
 * session object, gone with the session even if the destroy fails; the
 * record objects must be token objects, since that is what kekd stores, and
 * carry application "kekd-probe", which no listing of kekd reads; the
 * token KEK that settles optional attributes is labelled "kekd probe", a
 * name no key can have); the record key is not made here but by the first
 * record written;
 * the copy tries (probe.h, ProbeCopy) copy throwaway session keys and
 * destroy source and copy, which may be one handle;
 * no step is skipped silently: a step not tried stays PROBE_UNKNOWN; the
 * refusal message names the PKCS#11 function and CKR that failed and what
 * the token offers instead.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "ckr.h"
#include "hsm-internal.h"
#include "probe.h"
#include "records-mac.h"

static const struct {
        const char *name;
        CK_MECHANISM_TYPE type;
} wanted[PROBE_MECHANISMS] = {
        { "CKM_AES_KEY_GEN", CKM_AES_KEY_GEN },
        { "CKM_AES_GCM", CKM_AES_GCM },
        { "CKM_AES_CBC_PAD", CKM_AES_CBC_PAD },
        { "CKM_AES_CTR", CKM_AES_CTR },
        { "CKM_AES_ECB", CKM_AES_ECB },
        { "CKM_AES_CMAC", CKM_AES_CMAC },
        { "CKM_AES_KEY_WRAP", CKM_AES_KEY_WRAP },
        { "CKM_AES_KEY_WRAP_PAD", CKM_AES_KEY_WRAP_PAD },
        { "CKM_SHA256_HMAC", CKM_SHA256_HMAC },
        { "CKM_GENERIC_SECRET_KEY_GEN", CKM_GENERIC_SECRET_KEY_GEN },
        { "CKM_SHA256", CKM_SHA256 },
};

/* Auto's order of preference first (daemon/keystore-profile.c), then what only a pin selects. */
static const ProbeProfile profiles[] = {
        { "gcm", "AES-GCM (CKM_AES_GCM)", HSM_PROFILE_GCM, { CKM_AES_GCM, 0 }, probe_selftest },
        { "cbc-hmac", "AES-CBC-PAD and HMAC-SHA256 (CKM_AES_CBC_PAD, CKM_SHA256_HMAC)", HSM_PROFILE_CBC_HMAC,
          { CKM_AES_CBC_PAD, CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC, 0 }, probe_selftest },
        { "ctr-hmac", "AES-ECB and HMAC-SHA256 (CKM_AES_ECB, CKM_SHA256_HMAC)", HSM_PROFILE_CTR_HMAC,
          { CKM_AES_ECB, CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC, 0 }, probe_selftest },
        { "gcm-token-iv", "AES-GCM with an IV the token generates (CKM_AES_GCM)", HSM_PROFILE_GCM_TOKEN_IV,
          { CKM_AES_GCM, 0 }, probe_selftest },
};
#define AUTO_PROFILES 3u

const ProbeProfile *probe_profiles(int pin, size_t *ret_n) {
        for (size_t i = 0; pin >= 0 && i < ELEMENTSOF(profiles); i++)
                if (profiles[i].profile == pin) {
                        *ret_n = 1;
                        return &profiles[i];
                }
        *ret_n = AUTO_PROFILES;
        return profiles;
}

void probe_flags_text(unsigned long flags, bool mechanism, char *buf, size_t size) {
        static const struct {
                unsigned long flag;
                const char *name;
        } mech[] = {
                { CKF_HW, "hw" }, { CKF_ENCRYPT, "encrypt" }, { CKF_DECRYPT, "decrypt" },
                { CKF_DIGEST, "digest" }, { CKF_SIGN, "sign" }, { CKF_VERIFY, "verify" },
                { CKF_GENERATE, "generate" }, { CKF_WRAP, "wrap" }, { CKF_UNWRAP, "unwrap" },
                { CKF_DERIVE, "derive" },
        }, token[] = {
                { CKF_RNG, "rng" }, { CKF_WRITE_PROTECTED, "write_protected" },
                { CKF_LOGIN_REQUIRED, "login_required" }, { CKF_USER_PIN_INITIALIZED, "user_pin_initialized" },
                { CKF_PROTECTED_AUTHENTICATION_PATH, "protected_authentication_path" },
                { CKF_TOKEN_INITIALIZED, "token_initialized" }, { CKF_USER_PIN_LOCKED, "user_pin_locked" },
                { CKF_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed" },
        };
        size_t n = mechanism ? ELEMENTSOF(mech) : ELEMENTSOF(token), len = 0;

        if (size == 0)
                return;
        buf[0] = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned long f = mechanism ? mech[i].flag : token[i].flag;
                const char *name = mechanism ? mech[i].name : token[i].name;

                if ((flags & f) && len < size)
                        len += (size_t) snprintf(buf + len, size - len, "%s%s", len ? "," : "", name);
        }
}

int probe_selftest(Hsm *h, const ProbeProfile *pp, HsmObject key) {
        static const uint8_t aad[] = "kekd capability probe";
        static const uint8_t pt[32] = "a known test value, not a secret";
        HsmProfile p = (HsmProfile) pp->profile;
        uint8_t iv[HSM_PROFILE_IV_MAX] = {}, ct[sizeof(pt) + 64];
        size_t ct_len = hsm_profile_ct_size(p, sizeof(pt));
        _cleanup_(secret_freep) Secret *back = NULL;
        HsmObject mac = 0;
        int r;

        if (ct_len > sizeof(ct))
                return -EINVAL;
        if (p != HSM_PROFILE_GCM_TOKEN_IV)
                memcpy(iv, "kekd-probe-iv!!!", hsm_profile_iv_size(p)); /* one encryption per throwaway key */
        if (hsm_profile_has_mac_key(p)) {
                r = hsm_generate_probe_mac_key(h, &mac);
                if (r < 0)
                        return r;
        }
        r = hsm_profile_encrypt(h, p, key, mac, iv, aad, sizeof(aad), pt, sizeof(pt), ct);
        if (r >= 0)
                r = hsm_profile_decrypt(h, p, key, mac, iv, aad, sizeof(aad), ct, ct_len, &back);
        if (r >= 0 && (back->len != sizeof(pt) || memcmp(back->data, pt, sizeof(pt)) != 0))
                r = -KEKERR_BLOB_INVALID; /* decrypted to something else: not a working profile */
        if (r >= 0) {
                back = secret_free(back);
                ct[ct_len - 1] ^= 1;
                r = hsm_profile_decrypt(h, p, key, mac, iv, aad, sizeof(aad), ct, ct_len, &back);
                /* A tampered tag accepted: never use it. */
                r = r >= 0 ? -KEKERR_BLOB_INVALID : r == -KEKERR_BLOB_INVALID ? 0 : r;
        }
        if (mac)
                (void) hsm_destroy_session_object(h, mac); /* gone with the session anyway */
        return r;
}

static bool offered(const ProbeResult *p, CK_MECHANISM_TYPE type) {
        for (unsigned i = 0; i < PROBE_MECHANISMS; i++)
                if (p->mechanisms[i].type == type)
                        return p->mechanisms[i].offered;
        return false;
}

/* "CKM_AES_ECB, CKM_SHA256_HMAC": the probed mechanisms the token offers. */
static void offered_text(const ProbeResult *p, char *buf, size_t size) {
        size_t len = 0;

        buf[0] = 0;
        for (unsigned i = 0; i < PROBE_MECHANISMS; i++)
                if (p->mechanisms[i].offered && len < size)
                        len += (size_t) snprintf(buf + len, size - len, "%s%s", len ? ", " : "", p->mechanisms[i].name);
        if (!buf[0])
                snprintf(buf, size, "none of them");
}

static bool any_optional_left(const ProbeResult *p) {
        for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                if (p->attrs[i].state != HSM_ATTR_DROPPED)
                        return true;
        return false;
}

static void note_error(Hsm *h, ProbeResult *p) {
        if (!p->error[0])
                snprintf(p->error, sizeof(p->error), "%s", hsm_last_error(h));
}

static int read_mechanisms(Hsm *h, ProbeResult *p) {
        _cleanup_free_ CK_MECHANISM_TYPE *list = NULL;
        CK_ULONG n = 0;
        CK_RV rv;

        rv = P11(h, C_GetMechanismList, h->slot, NULL, &n);
        if (rv == CKR_OK) {
                list = calloc(n ? n : 1, sizeof(*list));
                if (!list)
                        return -ENOMEM;
                rv = P11(h, C_GetMechanismList, h->slot, list, &n);
        }
        if (rv != CKR_OK)
                return hsm_rv_to_errno(h, rv);
        for (unsigned i = 0; i < PROBE_MECHANISMS; i++) {
                ProbeMechanism *m = &p->mechanisms[i];
                bool listed = false;
                int r;

                *m = (ProbeMechanism) { .name = wanted[i].name, .type = wanted[i].type };
                for (CK_ULONG j = 0; j < n && !listed; j++)
                        listed = list[j] == wanted[i].type;
                if (!listed)
                        continue;
                r = hsm_mechanism_info(h, wanted[i].type, &m->info);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                m->offered = true;
        }
        return 0;
}

/* Stores and destroys a throwaway record object as mode keeps them; -KEKERR_UNSUPPORTED: refused. */
static int try_record_object(Hsm *h, HsmRecordMode mode) {
        static const uint8_t value[] = "probe";
        HsmObject o;
        int r;

        r = hsm_create_record_object(h, mode, "kekd-probe", "probe", value, sizeof(value), &o);
        if (r >= 0)
                (void) hsm_destroy_object(h, o); /* a leftover is harmless: no listing of kekd reads "kekd-probe" */
        return r;
}

/*
 * Where records can live (hsm-records.c): a private token data object, as
 * on every token that stores them; if the token refuses it, a public one;
 * if it refuses that too (NSS softokn stores no token data objects), a
 * private generic-secret key object carrying the record. The last two need
 * HMAC-SHA256 in the token under a generated key (the records' tag), tried
 * with a throwaway session key; the record key itself is made by the first
 * record written, not here (every object the probe makes is a throwaway).
 */
static int try_data_objects(Hsm *h, ProbeResult *p) {
        static const uint8_t value[] = "probe";
        uint8_t tag[RECORD_TAG_SIZE];
        HsmRecordMode mode;
        HsmObject mac;
        int r;

        r = try_record_object(h, HSM_RECORDS_PRIVATE);
        p->private_data = r >= 0 ? PROBE_YES : r == -KEKERR_UNSUPPORTED ? PROBE_NO : PROBE_UNKNOWN;
        if (r >= 0) {
                p->records = HSM_RECORDS_PRIVATE;
                hsm_set_record_mode(h, HSM_RECORDS_PRIVATE);
                return 0;
        }
        if (r != -KEKERR_UNSUPPORTED)
                return r;
        note_error(h, p);

        r = try_record_object(h, HSM_RECORDS_PUBLIC_MAC);
        p->public_data = r >= 0 ? PROBE_YES : r == -KEKERR_UNSUPPORTED ? PROBE_NO : PROBE_UNKNOWN;
        mode = HSM_RECORDS_PUBLIC_MAC;
        if (r == -KEKERR_UNSUPPORTED) {
                r = try_record_object(h, HSM_RECORDS_KEY_OBJECTS);
                p->key_objects = r >= 0 ? PROBE_YES : r == -KEKERR_UNSUPPORTED ? PROBE_NO : PROBE_UNKNOWN;
                mode = HSM_RECORDS_KEY_OBJECTS;
        }
        if (r < 0)
                return r;
        r = hsm_generate_probe_mac_key(h, &mac);
        if (r >= 0) {
                r = record_tag(h, mac, "kekd-probe", 10, "probe", value, sizeof(value), tag);
                (void) hsm_destroy_object(h, mac); /* a session object: gone with the session anyway */
        }
        if (r < 0) {
                snprintf(p->error, sizeof(p->error), "%s", hsm_last_error(h));
                return r == -KEKERR_UNSUPPORTED ? -EPROTO : r; /* EPROTO: no record MAC, told apart below */
        }
        p->records = mode;
        hsm_set_record_mode(h, mode);
        p->error[0] = 0; /* the refusal of private data objects is answered: not the first failure */
        return 0;
}

static const char *const copy_tries[PROBE_COPY_TRIES] = { "plain", "extractable", "sensitive" };

const char *probe_copy_name(ProbeCopy c) {
        static const char *const names[] = { "unknown", "refused", "kept", "unsafe" };

        return (unsigned) c < ELEMENTSOF(names) ? names[c] : "unknown";
}

/* A copy (or its source, changed in place) that can leave the token: extractable, not sensitive, or readable. */
static bool key_out(const HsmKeyAttrs *a) {
        return a->extractable || !a->sensitive || a->value_readable;
}

/*
 * Copy try i (copy_tries[]) on a fresh throwaway session key with the KEK
 * template as the token accepted it: *ret is what it shows, the CKR and a
 * note go into p. The token's refusal is the good answer, not an error: it
 * is not recorded as a failed call.
 */
static int try_copy(Hsm *h, unsigned i, ProbeResult *p, ProbeCopy *ret) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[2] = { { CKA_TOKEN, &no, sizeof(no) } };
        CK_ULONG n = 1;
        HsmObject key, copy = CK_INVALID_HANDLE;
        HsmKeyAttrs a = {}, src = {};
        const char *seen = "";
        size_t len = strlen(p->copy_text);
        CK_RV rv;
        int r;

        if (i == 1)
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_EXTRACTABLE, &yes, sizeof(yes) };
        else if (i == 2)
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_SENSITIVE, &no, sizeof(no) };
        r = hsm_generate_kek(h, "kekd probe", 0, false, &key);
        if (r < 0)
                return r;
        hsm_write_bump(h);
        /* Not through P11(): a refusal is the answer wanted, not a failed call to record. */
        rv = store_call(h, h->module->C_CopyObject(h->session, key, tmpl, n, &copy));
        p->copy_ckr[i] = ckr_name(rv);
        *ret = PROBE_COPY_REFUSED;
        if (rv == CKR_OK) {
                /* Both: NSS softokn answers with the source's handle and changes the source itself. */
                bool unreadable = hsm_key_attributes(h, copy, &a) < 0 || hsm_key_attributes(h, key, &src) < 0;

                *ret = unreadable || key_out(&a) || key_out(&src) ? PROBE_COPY_UNSAFE : PROBE_COPY_KEPT;
                seen = unreadable                   ? " (attributes unreadable)"
                       : a.value_readable           ? " (value readable)"
                       : a.extractable || src.extractable ? " (read back extractable)"
                       : !a.sensitive || !src.sensitive   ? " (read back not sensitive)"
                                                          : " (sensitive, unextractable)";
                if (copy != key && copy != CK_INVALID_HANDLE)
                        (void) hsm_destroy_object(h, copy); /* a session object: gone with the session anyway */
        }
        (void) hsm_destroy_object(h, key);
        if (len < sizeof(p->copy_text))
                snprintf(p->copy_text + len, sizeof(p->copy_text) - len, "%s%s %s%s", len ? ", " : "", copy_tries[i],
                         p->copy_ckr[i], seen);
        return 0;
}

/* The three copy tries; p->copy is the worst answer. */
static int try_copies(Hsm *h, ProbeResult *p) {
        ProbeCopy c = PROBE_COPY_REFUSED, one;
        int r;

        for (unsigned i = 0; i < PROBE_COPY_TRIES; i++) {
                r = try_copy(h, i, p, &one);
                if (r < 0)
                        return r;
                if (one > c)
                        c = one;
        }
        p->copy = c;
        return 0;
}

void probe_copy_problem(const ProbeResult *p, const char *token, char *buf, size_t size) {
        probe_copy_problem_in(p, token, "hsm", buf, size);
}

void probe_copy_problem_in(const ProbeResult *p, const char *token, const char *section, char *buf, size_t size) {
        if (p->copy == PROBE_COPY_UNSAFE)
                snprintf(buf, size,
                         "token '%s' does not keep keys in: C_CopyObject of a key made with kekd's KEK template: %s; "
                         "a copy that reads back extractable or not sensitive, against PKCS#11 (C_CopyObject), lets "
                         "anyone with the user PIN wrap a KEK out in clear (docs/tokens.md); a development or test "
                         "token only, with [%s] allow_unsafe_token = yes",
                         token, p->copy_text, section);
        else if (p->copy == PROBE_COPY_KEPT)
                snprintf(buf, size,
                         "token '%s' copies kekd's keys (C_CopyObject: %s): the copies stay sensitive and "
                         "unextractable, but a copy made by anyone with the user PIN outlives kekd's purge "
                         "(docs/tokens.md)",
                         token, p->copy_text);
        else if (size)
                buf[0] = 0;
}

int probe_run(Hsm *h, const ProbeProfile *profs, size_t n_profiles, ProbeResult *ret) {
        ProbeResult p = { .profile_id = -1 };
        char offers[256];
        const char *token = hsm_token_label(h);
        HsmObject key, tkey;
        CK_TOKEN_INFO ti;
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r >= 0) {
                rv = P11(h, C_GetTokenInfo, h->slot, &ti);
                r = hsm_rv_to_errno(h, rv);
                if (r >= 0)
                        p.token_flags = ti.flags;
        }
        if (r >= 0)
                r = read_mechanisms(h, &p);
        if (r < 0) {
                note_error(h, &p);
                snprintf(p.message, sizeof(p.message), "cannot probe token '%s': %s", token, p.error);
                goto finish;
        }
        offered_text(&p, offers, sizeof(offers));

        r = try_data_objects(h, &p);
        if (r == -KEKERR_UNSUPPORTED || r == -EPROTO) {
                snprintf(p.message, sizeof(p.message),
                         "token '%s' refuses private data objects (%s): kekd keeps its key records in private "
                         "CKO_DATA token objects, or in public ones or private key objects with an HMAC-SHA256 tag "
                         "computed in the token, "
                         "and this token %s (see docs/tokens.md, issue 16)",
                         token, p.error,
                         r == -EPROTO ? "cannot compute HMAC-SHA256 with a generated key"
                                      : "refuses public ones and generic-secret key objects too");
                r = -KEKERR_UNSUPPORTED;
                goto finish;
        }
        if (r < 0) {
                note_error(h, &p);
                snprintf(p.message, sizeof(p.message), "cannot probe token '%s': %s", token, p.error);
                goto finish;
        }
        /* A label no key can have (key names have no spaces), a version none has (they start at 1). */
        r = hsm_generate_kek(h, "kekd probe", 0, false, &key);
        hsm_template_attrs(h, p.attrs);
        if (r < 0) {
                note_error(h, &p);
                if (r == -KEKERR_UNSUPPORTED) {
                        p.key_template = PROBE_NO;
                        snprintf(p.message, sizeof(p.message),
                                 "token '%s' cannot generate kekd's KEK (%s): kekd needs C_GenerateKey with "
                                 "CKM_AES_KEY_GEN to make AES-256 keys in the token, sensitive and never "
                                 "extractable%s (issue 16)",
                                 token, p.error,
                                 offered(&p, CKM_AES_KEY_GEN) ? "; the token lists CKM_AES_KEY_GEN but refuses it"
                                                              : "; the token does not offer CKM_AES_KEY_GEN");
                } else
                        snprintf(p.message, sizeof(p.message), "cannot probe token '%s': %s", token, p.error);
                goto finish;
        }
        p.key_template = PROBE_YES;
        /*
         * The same template as a token object, which KEKs are: a token may refuse an optional attribute
         * there that it took for the session key (NSS). Only while one is still in the template.
         */
        if (any_optional_left(&p) && hsm_generate_probe_token_kek(h, &tkey) >= 0)
                (void) hsm_destroy_object(h, tkey); /* a leftover: label with a space, version 0, never a key's */
        hsm_template_attrs(h, p.attrs);
        /* Backup mode trusted-wrap (docs/backup.md): the token makes such a key and reports the attribute back. */
        if (hsm_generate_probe_trusted_kek(h, &tkey) >= 0) {
                HsmKeyAttrs a;

                p.wrap_with_trusted = hsm_key_attributes(h, tkey, &a) >= 0 && a.wrap_with_trusted && a.sensitive &&
                                                      !a.value_readable
                                              ? PROBE_YES
                                              : PROBE_NO;
                (void) hsm_destroy_object(h, tkey);
        } else
                p.wrap_with_trusted = PROBE_NO;

        for (size_t i = 0; i < n_profiles && !p.profile; i++) {
                bool all = true;

                for (unsigned j = 0; j < ELEMENTSOF(profs[i].mechanisms) && profs[i].mechanisms[j]; j++)
                        all = all && offered(&p, profs[i].mechanisms[j]);
                r = all ? profs[i].selftest(h, &profs[i], key) : -KEKERR_UNSUPPORTED;
                if (r >= 0) {
                        p.profile = profs[i].name;
                        p.profile_id = profs[i].profile;
                }
                else if (all)
                        note_error(h, &p);
                else if (!p.error[0])
                        snprintf(p.error, sizeof(p.error), "not in C_GetMechanismList");
        }
        (void) hsm_destroy_object(h, key); /* a session object: gone with the session anyway */
        if (p.profile) {
                /* After the template is settled (the token KEK above): copies of keys as KEKs are made now. */
                r = try_copies(h, &p);
                if (r < 0) {
                        note_error(h, &p);
                        snprintf(p.message, sizeof(p.message), "cannot probe token '%s': %s", token, p.error);
                        goto finish;
                }
        }
        if (!p.profile) {
                /* One sentence: what is missing, for which profile, and what the token has instead. */
                const ProbeProfile *first = n_profiles ? &profs[0] : NULL;
                bool has = first && offered(&p, first->mechanisms[0]);

                snprintf(p.message, sizeof(p.message),
                         "token '%s' %s %s (%s): kekd needs it for profile %s; the token offers %s; no profile of "
                         "this kekd works with those (issue 16)",
                         token, has ? "fails kekd's self-test with" : "offers no", first ? first->needs : "-",
                         p.error, first ? first->name : "-", offers);
                r = -KEKERR_UNSUPPORTED;
                goto finish;
        }
        r = 0;
finish:
        *ret = p;
        return r;
}

int probe_health(Hsm *h, int profile) {
        const ProbeProfile *pp = NULL;
        HsmObject key;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(profiles); i++)
                if (profiles[i].profile == profile)
                        pp = &profiles[i];
        if (!pp)
                return -EINVAL;
        /* A new key each time: the self-test's fixed IV is then never used twice under one key. */
        r = hsm_generate_kek(h, "kekd health", 0, false, &key);
        if (r < 0)
                return r;
        r = pp->selftest(h, pp, key);
        (void) hsm_destroy_session_object(h, key); /* gone with the session anyway */
        return r;
}
