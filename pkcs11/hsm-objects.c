/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd's key objects in the token (see hsm.h): KEK versions and MAC keys,
 * generated inside the token, either never extractable or (backup mode
 * trusted-wrap, docs/backup.md) sensitive and extractable only wrapped under
 * a key the SO marked CKA_TRUSTED (the records are in hsm-records.c). Invariants: calls on token objects go through
 * store_call() (one at a time per token); nothing that creates or
 * destroys an object is ever repeated after a failure (it may have been
 * done); listings search once more after a lost session, since a search
 * changes nothing.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/log.h"
#include "ckr.h"
#include "hsm-internal.h"
#include "records-mac.h"


static void version_to_id(uint32_t version, uint8_t id[4]) {
        id[0] = (uint8_t) (version >> 24);
        id[1] = (uint8_t) (version >> 16);
        id[2] = (uint8_t) (version >> 8);
        id[3] = (uint8_t) version;
}

/*
 * Attributes of the KEK template that a token may not know (PKCS#11 2.40
 * added CKA_COPYABLE; openCryptoki 3.8 and NSS answer
 * CKR_ATTRIBUTE_TYPE_INVALID). They are dropped when refused. The security
 * attributes (CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, the
 * usage flags) are never optional: a token that refuses one of them is
 * refused. Without CKA_COPYABLE=FALSE a copy could be made, but only with
 * CKA_SENSITIVE and CKA_EXTRACTABLE=FALSE kept (CKA_MODIFIABLE=FALSE and
 * the spec's rule that a copy can never become extractable again).
 */
static const CK_ATTRIBUTE_TYPE optional_attrs[HSM_OPTIONAL_ATTRS] = { CKA_COPYABLE };
static const char *const optional_names[HSM_OPTIONAL_ATTRS] = { "CKA_COPYABLE" };

static Hsm *root(Hsm *h) {
        return h->parent ? h->parent : h;
}

/* A CK_BBOOL the token gave (not CK_UNAVAILABLE_INFORMATION) and equal to v. */
static bool bool_is(const CK_ATTRIBUTE *a, CK_BBOOL v) {
        return a->ulValueLen == sizeof(CK_BBOOL) && *(const CK_BBOOL *) a->pValue == v;
}

/*
 * Learns from a key kekd has just generated whether the token reports
 * CKA_LOCAL: PKCS#11 (2.40 section 4.4, table 21 footnote) sets it TRUE only
 * on keys made by C_GenerateKey or C_GenerateKeyPair, or copied from one;
 * NSS softokn leaves it FALSE on the keys it generates. The first answer is
 * kept (read once per token: the health probe generates a key every few
 * seconds); a failed read teaches nothing.
 */
static void note_local(Hsm *h, CK_OBJECT_HANDLE o) {
        CK_BBOOL local = CK_FALSE;
        CK_ATTRIBUTE a = { CKA_LOCAL, &local, sizeof(local) };
        Hsm *rt = root(h);
        int unknown = 0;
        CK_RV rv;

        if (__atomic_load_n(&rt->local_reported, __ATOMIC_ACQUIRE) != 0)
                return;
        /* Not through P11(): kekd's answer does not depend on it, it is no failed call to report. */
        rv = store_call(h, h->module->C_GetAttributeValue(h->session, o, &a, 1));
        if (rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID)
                (void) __atomic_compare_exchange_n(&rt->local_reported, &unknown, bool_is(&a, CK_TRUE) ? 1 : -1, false,
                                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/*
 * 1 if the token reports CKA_LOCAL TRUE on keys it generates, 0 if not, or
 * -errno. Known from the first key kekd generated on it (the capability
 * probe's, at start); before that, a throwaway session key is made to learn it.
 */
static int token_reports_local(Hsm *h) {
        Hsm *rt = root(h);
        HsmObject o;
        int r, v = __atomic_load_n(&rt->local_reported, __ATOMIC_ACQUIRE);

        if (v != 0)
                return v > 0;
        r = hsm_generate_kek(h, "kekd probe", 0, false, &o);
        if (r < 0)
                return r;
        (void) hsm_destroy_session_object(h, o); /* a session object: gone with the session anyway */
        v = __atomic_load_n(&rt->local_reported, __ATOMIC_ACQUIRE);
        /* The read back failed: no key is trusted in a generated form until it is known. */
        return v == 0 ? -KEKERR_HSM_UNAVAILABLE : v > 0;
}

/*
 * probing: the probe's throwaway token key (hsm_generate_probe_token_kek()),
 * which may also retry without the optional attributes after
 * CKR_GENERAL_ERROR: NSS softokn 3.87 answers so for a token key with
 * CKA_COPYABLE (its database has no column for it) while it takes a
 * session key with it. A KEK is never retried on that answer: only an
 * answer about the template says nothing was created.
 */
static int generate_kek(Hsm *h, const char *label, uint32_t version, bool token_object, bool probing,
                        bool wrap_trusted, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG value_len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE, token = token_object ? CK_TRUE : CK_FALSE;
        CK_BBOOL extractable = wrap_trusted ? CK_TRUE : CK_FALSE;
        CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE o;
        uint8_t id[4];
        const CK_ATTRIBUTE required[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
                { CKA_TOKEN, &token, sizeof(token) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
                { CKA_MODIFIABLE, &no, sizeof(no) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_SIGN, &no, sizeof(no) },
                { CKA_VERIFY, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },
                /* Last: only with wrap_trusted, never optional (without it an extractable key could leave in clear). */
                { CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE tmpl[ELEMENTSOF(required) + HSM_OPTIONAL_ATTRS];
        CK_ULONG n = ELEMENTSOF(required) - !wrap_trusted, n_required = n;
        Hsm *rt = root(h);
        CK_RV rv;
        int r;

        if (strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        memcpy(tmpl, required, n_required * sizeof(required[0]));
        for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                if (!__atomic_load_n(&rt->optional_refused[i], __ATOMIC_ACQUIRE))
                        tmpl[n++] = (CK_ATTRIBUTE) { optional_attrs[i], &no, sizeof(no) };
        version_to_id(version, id);
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        /*
         * No blind retry: a call that failed in transit may have created the object (written intents cover it).
         * A session object is no write to the token: no listing (token objects only) can see it.
         */
        if (token_object)
                hsm_write_bump(h);
        rv = store_call(h, P11(h, C_GenerateKey, h->session, &mech, tmpl, n, &o));
        /* Never for a trusted-wrap key: its refusal may be about CKA_WRAP_WITH_TRUSTED, not the optional ones. */
        if ((rv == CKR_ATTRIBUTE_TYPE_INVALID || (probing && rv == CKR_GENERAL_ERROR)) && n > n_required &&
            !wrap_trusted) {
                /*
                 * The token does not know an optional attribute: an answer
                 * about the template, so nothing was created and asking once
                 * more without them repeats no write. Remembered for the
                 * token (every session), so the next KEK does not ask again.
                 */
                log_debug("PKCS#11 C_GenerateKey: %s; again without the optional attributes", ckr_name(rv));
                for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                        __atomic_store_n(&rt->optional_refused[i], true, __ATOMIC_RELEASE);
                if (token_object)
                        hsm_write_bump(h);
                rv = store_call(h, P11(h, C_GenerateKey, h->session, &mech, tmpl, n_required, &o));
        }
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                if (!__atomic_load_n(&rt->optional_refused[i], __ATOMIC_ACQUIRE))
                        __atomic_store_n(&rt->optional_accepted[i], true, __ATOMIC_RELEASE);
        note_local(h, o);
        *ret = o;
        return 0;
}

int hsm_generate_kek(Hsm *h, const char *label, uint32_t version, bool token_object, HsmObject *ret) {
        return generate_kek(h, label, version, token_object, false, false, ret);
}

int hsm_generate_probe_token_kek(Hsm *h, HsmObject *ret) {
        return generate_kek(h, "kekd probe", 0, true, true, false, ret);
}

int hsm_generate_probe_trusted_kek(Hsm *h, HsmObject *ret) {
        return generate_kek(h, "kekd probe", 0, false, false, true, ret);
}

int hsm_generate_aes_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        return hsm_generate_kek(h, label, version, true, ret);
}

int hsm_generate_version_key(Hsm *h, const char *label, uint32_t version, bool wrap_trusted, HsmObject *ret) {
        return generate_kek(h, label, version, true, false, wrap_trusted, ret);
}

size_t hsm_template_attrs(const Hsm *h, HsmTemplateAttr ret[HSM_OPTIONAL_ATTRS]) {
        const Hsm *rt = h->parent ? h->parent : h;

        for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                ret[i] = (HsmTemplateAttr) {
                        .name = optional_names[i],
                        .state = __atomic_load_n(&rt->optional_refused[i], __ATOMIC_ACQUIRE)    ? HSM_ATTR_DROPPED
                                 : __atomic_load_n(&rt->optional_accepted[i], __ATOMIC_ACQUIRE) ? HSM_ATTR_ACCEPTED
                                                                                                : HSM_ATTR_UNTRIED,
                };
        return HSM_OPTIONAL_ATTRS;
}

int hsm_destroy_object(Hsm *h, HsmObject o) {
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        hsm_write_bump(h);
        rv = store_call(h, P11(h, C_DestroyObject, h->session, o));
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        return 0;
}

int hsm_destroy_session_object(Hsm *h, HsmObject o) {
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = store_call(h, P11(h, C_DestroyObject, h->session, o));
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        return 0;
}

int hsm_destroy_listed(Hsm *h, HsmObject o, uint64_t generation) {
        int r = hsm_ensure_session(h); /* a reopen here moves the generation too */

        if (r < 0)
                return r;
        if (hsm_generation(h) != generation)
                return -KEKERR_HSM_UNAVAILABLE;
        return hsm_destroy_object(h, o);
}

/* Collects all handles matching tmpl; -ESTALE: the session or login was lost after the search began. */
static int find_all_once(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0, cap = 0;
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = store_call(h, P11(h, C_FindObjectsInit, h->session, tmpl, n_tmpl));
        if (rv != CKR_OK && hsm_recover(h, rv))
                rv = store_call(h, P11(h, C_FindObjectsInit, h->session, tmpl, n_tmpl));
        if (rv != CKR_OK)
                return hsm_rv_to_errno(h, rv);
        for (;;) {
                CK_ULONG got = 0;

                if (cap - n < 256) {
                        CK_OBJECT_HANDLE *p = reallocarray(objs, cap + 1024, sizeof(*objs));

                        if (!p) {
                                (void) store_call(h, h->module->C_FindObjectsFinal(h->session));
                                return -ENOMEM;
                        }
                        objs = p;
                        cap += 1024;
                }
                rv = store_call(h, P11(h, C_FindObjects, h->session, objs + n, cap - n, &got));
                if (rv != CKR_OK) {
                        (void) store_call(h, h->module->C_FindObjectsFinal(h->session));
                        return hsm_read_failed(h, rv);
                }
                if (got == 0)
                        break;
                n += got;
        }
        rv = store_call(h, P11(h, C_FindObjectsFinal, h->session));
        if (rv != CKR_OK)
                return hsm_read_failed(h, rv);
        *ret = TAKE_PTR(objs);
        *ret_n = n;
        return 0;
}

/* The same, searching once more in a new session after a lost session or login (a search changes nothing). */
int hsm_find_all(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        int r = find_all_once(h, tmpl, n_tmpl, ret, ret_n);

        if (r == -ESTALE)
                r = find_all_once(h, tmpl, n_tmpl, ret, ret_n);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

/* What every KEK form has in common: a private, sensitive token key of the type. */
#define KEK_SEARCH_COMMON(cls, type, yes)                            \
        { CKA_CLASS, &(cls), sizeof(cls) },                          \
        { CKA_TOKEN, &(yes), sizeof(yes) },                          \
        { CKA_PRIVATE, &(yes), sizeof(yes) },                        \
        { CKA_KEY_TYPE, &(type), sizeof(type) },                     \
        { CKA_SENSITIVE, &(yes), sizeof(yes) }

/*
 * Only keys that were sensitive and unextractable from their creation on are
 * KEKs: an extractable or imported object planted under a key's label and ID
 * by another application on the same token is never adopted (an imported
 * key has CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE, PKCS#11
 * 2.40 section 4.10). These four are what every token reports. CKA_LOCAL
 * is not in the template, since NSS softokn does not set it on generated
 * keys; on a token that does (token_reports_local()), a key found in this
 * form must also read it TRUE (find_form(), list_version_keys_once()): a key
 * made by C_DeriveKey inherits CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE
 * from its base key (PKCS#11 2.40 section 4.10), so a holder of the PIN can
 * derive one whose value they know (CKM_ECDH1_DERIVE with their own peer key)
 * that matches it, but never with CKA_LOCAL TRUE.
 * Token objects only: the capability probe's throwaway key is a session
 * object of this process. Private objects only: a public key can be
 * generated and then used (C_Encrypt, C_Decrypt, C_Sign) in a session
 * that never logged in, so one planted under a key's label and ID would
 * be a KEK anyone with access to the token can use.
 */
#define KEK_SEARCH_TEMPLATE(cls, type, yes, no)                      \
        KEK_SEARCH_COMMON(cls, type, yes),                           \
        { CKA_EXTRACTABLE, &(no), sizeof(no) },                      \
        { CKA_ALWAYS_SENSITIVE, &(yes), sizeof(yes) },               \
        { CKA_NEVER_EXTRACTABLE, &(yes), sizeof(yes) }

/*
 * The other form a KEK may have (backup mode trusted-wrap): sensitive from
 * its creation on and extractable, but only wrapped under a key the SO
 * marked CKA_TRUSTED (CKA_WRAP_WITH_TRUSTED, which can never be switched
 * off). A plainly extractable key, or one imported or unwrapped
 * (CKA_ALWAYS_SENSITIVE FALSE), is never adopted: its value may be known.
 * Private only, for the reason given above.
 */
#define KEK_SEARCH_TEMPLATE_TRUSTED(cls, type, yes)                  \
        KEK_SEARCH_COMMON(cls, type, yes),                           \
        { CKA_EXTRACTABLE, &(yes), sizeof(yes) },                    \
        { CKA_ALWAYS_SENSITIVE, &(yes), sizeof(yes) },               \
        { CKA_WRAP_WITH_TRUSTED, &(yes), sizeof(yes) }

/*
 * The restored form (a version unwrapped by a restore, pkcs11/hsm-transfer.h):
 * PKCS#11 makes an unwrapped key CKA_ALWAYS_SENSITIVE and
 * CKA_NEVER_EXTRACTABLE FALSE, so it is sensitive but was not always.
 * Either not extractable, or extractable under trusted keys only. Adopted
 * only for a version whose record says "restored" (daemon/keystore-index.c):
 * the lookups below take the form as an argument, never fall back to it.
 * Private only, as the others.
 */
#define KEK_SEARCH_TEMPLATE_RESTORED(cls, type, yes, no)             \
        KEK_SEARCH_COMMON(cls, type, yes),                           \
        { CKA_ALWAYS_SENSITIVE, &(no), sizeof(no) },                 \
        { CKA_EXTRACTABLE, &(no), sizeof(no) }
#define KEK_SEARCH_TEMPLATE_RESTORED_TRUSTED(cls, type, yes, no)     \
        KEK_SEARCH_COMMON(cls, type, yes),                           \
        { CKA_ALWAYS_SENSITIVE, &(no), sizeof(no) },                 \
        { CKA_EXTRACTABLE, &(yes), sizeof(yes) },                    \
        { CKA_WRAP_WITH_TRUSTED, &(yes), sizeof(yes) }

/*
 * The object the searches a and b find (a key's two forms: plain, then
 * trusted-wrap); -ENOENT if neither finds one. With any, the first found.
 * Without, the only one, or -ENOTUNIQ: a version has one key object of a
 * type on a token, and a second one in its forms is not kekd's. A holder of
 * the PIN can import a key under a version's label and ID; in the restored
 * forms it matches, and its maker knows its value. Nothing here tells which
 * of the two is the version's, so neither is used, and check names them.
 * With generated (the generated forms) and without any, the one object must
 * read CKA_LOCAL TRUE on a token that reports it, else -ENOTUNIQ as well: a
 * derived key matches those forms (see KEK_SEARCH_TEMPLATE). With any (a
 * destruction), whatever answers is taken.
 */
static int find_form_once(Hsm *h, CK_ATTRIBUTE *a, CK_ULONG n_a, CK_ATTRIBUTE *b, CK_ULONG n_b, bool generated,
                          bool any, HsmObject *ret) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL, *more = NULL;
        size_t n = 0, n_more = 0;
        int r;

        if (generated && !any) {
                r = token_reports_local(h);
                if (r < 0)
                        return r;
                generated = r > 0;
        }

        r = hsm_find_all(h, a, n_a, &objs, &n);
        if (r >= 0 && (n == 0 || !any))
                r = hsm_find_all(h, b, n_b, &more, &n_more);
        if (r < 0)
                return r;
        if (n + n_more == 0)
                return -ENOENT;
        /* Distinct handles: one object a token lists twice is still one. */
        for (size_t i = 0; i < n + n_more && !any; i++) {
                CK_OBJECT_HANDLE o = i < n ? objs[i] : more[i - n];

                if (o != (n ? objs[0] : more[0]))
                        return -ENOTUNIQ;
        }
        if (generated && !any) {
                CK_BBOOL local = CK_FALSE;
                CK_ATTRIBUTE l = { CKA_LOCAL, &local, sizeof(local) };
                CK_RV rv = store_call(h, P11(h, C_GetAttributeValue, h->session, n ? objs[0] : more[0], &l, 1));

                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        return -EAGAIN; /* gone since the search, or the token renumbered its handles */
                if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
                        return hsm_handle_failed(h, rv); /* a lost session is marked so, for the reopen */
                if (!bool_is(&l, CK_TRUE))
                        return -ENOTUNIQ;
        }
        *ret = n ? objs[0] : more[0];
        return 0;
}

bool hsm_key_refs_not_local(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version) {
        for (size_t i = 0; i < n; i++)
                if (refs[i].not_local && refs[i].version == version && strcmp(refs[i].label, label) == 0)
                        return true;
        return false;
}

/*
 * find_form_once(), searched again once if the object found is gone by the
 * time its CKA_LOCAL is read. Never -ENOENT for that: the version may still
 * be there (a token that renumbers handles), and -ENOENT reads as a version
 * that does not exist, which a client takes for a revocation.
 */
static int find_form(Hsm *h, CK_ATTRIBUTE *a, CK_ULONG n_a, CK_ATTRIBUTE *b, CK_ULONG n_b, bool generated, bool any,
                     HsmObject *ret) {
        int r = find_form_once(h, a, n_a, b, n_b, generated, any, ret);

        if (r == -EAGAIN)
                r = find_form_once(h, a, n_a, b, n_b, generated, any, ret);
        return r == -EAGAIN ? -KEKERR_HSM_UNAVAILABLE : r;
}

/* The key object (label, version) of type in the restored form; -ENOENT if absent. */
static int find_restored_key(Hsm *h, CK_KEY_TYPE type, const char *label, uint32_t version, bool any,
                             HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t id[4];
        CK_ATTRIBUTE plain[] = {
                KEK_SEARCH_TEMPLATE_RESTORED(cls, type, yes, no),
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
        };
        CK_ATTRIBUTE trusted[] = {
                KEK_SEARCH_TEMPLATE_RESTORED_TRUSTED(cls, type, yes, no),
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
        };

        version_to_id(version, id);
        return find_form(h, plain, ELEMENTSOF(plain), trusted, ELEMENTSOF(trusted), false, any, ret);
}

/*
 * The key object (label, version) of type (CKK_AES: a KEK; CKK_GENERIC_SECRET:
 * its MAC key), by the KEK search rules; -ENOENT if absent.
 */
static int find_version_key(Hsm *h, CK_KEY_TYPE type, const char *label, uint32_t version, bool any,
                            HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t id[4];
        CK_ATTRIBUTE tmpl[] = {
                KEK_SEARCH_TEMPLATE(cls, type, yes, no),
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
        };
        CK_ATTRIBUTE trusted[] = {
                KEK_SEARCH_TEMPLATE_TRUSTED(cls, type, yes),
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
        };

        version_to_id(version, id);
        return find_form(h, tmpl, ELEMENTSOF(tmpl), trusted, ELEMENTSOF(trusted), true, any, ret);
}

/*
 * Which of the four forms (KEK_SEARCH_TEMPLATE and its _TRUSTED, _RESTORED and
 * _RESTORED_TRUSTED kin) an object that matched their common part (class,
 * token, private, key type, sensitive) is in: 0..3, or -1 for none. Exactly
 * the templates' rules, applied to the values read back; a value the token
 * did not give matches nothing.
 */
static int key_form(const CK_ATTRIBUTE *extr, const CK_ATTRIBUTE *asens, const CK_ATTRIBUTE *nextr,
                    const CK_ATTRIBUTE *wwt) {
        if (bool_is(asens, CK_TRUE)) {
                if (bool_is(extr, CK_FALSE) && bool_is(nextr, CK_TRUE))
                        return 0;
                if (bool_is(extr, CK_TRUE) && bool_is(wwt, CK_TRUE))
                        return 1;
        } else if (bool_is(asens, CK_FALSE)) {
                if (bool_is(extr, CK_FALSE))
                        return 2;
                if (bool_is(extr, CK_TRUE) && bool_is(wwt, CK_TRUE))
                        return 3;
        }
        return -1;
}

/*
 * Key objects of type in every KEK form, from one search: the forms' common
 * part is searched and each object's form is read back with its label and ID
 * (one search instead of one per form: a search costs a scan of the token's
 * objects, the largest part of kekd's start on SoftHSM2). Returned grouped by
 * form, in the order of the former searches (never extractable, trusted-wrap,
 * restored, restored trusted-wrap), so a version's first object is chosen as
 * before. On a token that reports CKA_LOCAL, an object in a generated form
 * that does not read it TRUE is listed with not_local (find_form()).
 */
static int list_version_keys_once(Hsm *h, CK_KEY_TYPE type, HsmKeyRef **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tmpl[] = { KEK_SEARCH_COMMON(cls, type, yes) };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_free_ HsmKeyRef *keys = NULL, *sorted = NULL;
        _cleanup_free_ int8_t *form = NULL;
        size_t n = 0, k = 0, m = 0;
        bool local_reported;
        int r;

        r = token_reports_local(h);
        if (r < 0)
                return r;
        local_reported = r > 0;
        r = hsm_find_all(h, tmpl, ELEMENTSOF(tmpl), &objs, &n);
        if (r < 0)
                return r;
        keys = calloc(n ? n : 1, sizeof(*keys));
        sorted = calloc(n ? n : 1, sizeof(*sorted));
        form = calloc(n ? n : 1, sizeof(*form));
        if (!keys || !sorted || !form)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint8_t id[4];
                CK_BBOOL extr = CK_FALSE, asens = CK_FALSE, nextr = CK_FALSE, wwt = CK_FALSE, local = CK_FALSE;
                CK_ATTRIBUTE a[] = {
                        { CKA_LABEL, keys[k].label, HSM_KEY_LABEL_MAX },
                        { CKA_ID, id, sizeof(id) },
                        { CKA_EXTRACTABLE, &extr, sizeof(extr) },
                        { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
                        { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
                        { CKA_WRAP_WITH_TRUSTED, &wwt, sizeof(wwt) },
                        /* Last, and only where the token reports it: NSS is asked what it was asked before. */
                        { CKA_LOCAL, &local, sizeof(local) },
                };
                CK_RV rv = store_call(h, P11(h, C_GetAttributeValue, h->session, objs[i], a,
                                             ELEMENTSOF(a) - !local_reported));
                int f;

                /*
                 * A token without CKA_WRAP_WITH_TRUSTED answers ATTRIBUTE_TYPE_INVALID and, as
                 * PKCS#11 requires, still fills the others, marking it unavailable.
                 */
                if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_BUFFER_TOO_SMALL)
                        continue; /* destroyed by another node meanwhile, or not ours */
                if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
                        return hsm_read_failed(h, rv);
                if (a[0].ulValueLen > HSM_KEY_LABEL_MAX || a[1].ulValueLen != sizeof(id))
                        continue;
                f = key_form(&a[2], &a[3], &a[4], &a[5]);
                if (f < 0)
                        continue; /* not a KEK form: hsm_list_unclassified() says why */
                keys[k].label[a[0].ulValueLen] = 0;
                keys[k].version = (uint32_t) id[0] << 24 | (uint32_t) id[1] << 16 | (uint32_t) id[2] << 8 | id[3];
                keys[k].handle = objs[i];
                keys[k].wrap_with_trusted = f == 1 || f == 3;
                keys[k].restored = f >= 2;
                /* The restored forms are unwrapped copies: CKA_LOCAL FALSE by definition. */
                keys[k].not_local = local_reported && f <= 1 && !bool_is(&a[6], CK_TRUE);
                form[k] = (int8_t) f;
                k++;
        }
        for (int f = 0; f < 4; f++)
                for (size_t i = 0; i < k; i++)
                        if (form[i] == f)
                                sorted[m++] = keys[i];
        *ret = TAKE_PTR(sorted);
        *ret_n = m;
        return 0;
}

static int list_version_keys(Hsm *h, CK_KEY_TYPE type, HsmKeyRef **ret, size_t *ret_n) {
        int r = list_version_keys_once(h, type, ret, ret_n);

        /* After a lost session or login, list again: the handles found belong to the old session. */
        if (r == -ESTALE)
                r = list_version_keys_once(h, type, ret, ret_n);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

int hsm_list_keys(Hsm *h, HsmKeyRef **ret, size_t *ret_n) {
        return list_version_keys(h, CKK_AES, ret, ret_n);
}

/*
 * Why a secret key object is not a key kekd can use; NULL if it is one: a
 * KEK (what KEK_SEARCH_TEMPLATE and list_keys_once() accept) or, with the
 * same attributes but CKK_GENERIC_SECRET, the MAC key an encrypt-then-MAC
 * profile keeps beside a version's AES key under the same label and ID.
 * Values a token did not give (CK_UNAVAILABLE_INFORMATION) count as the
 * unsafe answer.
 */
static const char *unclassified_reason(const CK_ATTRIBUTE *a, CK_KEY_TYPE type, CK_BBOOL sens, CK_BBOOL extr,
                                       CK_BBOOL asens, CK_BBOOL nextr, CK_BBOOL priv, CK_BBOOL wwt) {
        bool trusted_only = a[8].ulValueLen == sizeof(CK_BBOOL) && wwt; /* the trusted-wrap form */
        /* The restored form: private, kekd's ID, sensitive but never always sensitive (see below). */
        bool restored_form = a[3].ulValueLen == sizeof(CK_BBOOL) && !asens && a[7].ulValueLen == sizeof(CK_BBOOL) &&
                             priv && a[6].ulValueLen == 4;

        if (a[0].ulValueLen != sizeof(type) || (type != CKK_AES && type != CKK_GENERIC_SECRET))
                return "not an AES key";
        if (a[1].ulValueLen != sizeof(CK_BBOOL) || !sens)
                return "not sensitive";
        if (a[2].ulValueLen != sizeof(CK_BBOOL) || (extr && !trusted_only))
                return "extractable (without CKA_WRAP_WITH_TRUSTED)";
        /*
         * The trusted-wrap form is extractable by design: CKA_NEVER_EXTRACTABLE is asked of the other only.
         * The restored form (unwrapped by a restore: never ALWAYS_SENSITIVE) is listed with its flag and
         * adopted only where the record says so; kekctl check compares the two (keystore-check.c).
         */
        if (!restored_form &&
            (a[3].ulValueLen != sizeof(CK_BBOOL) || !asens || (!extr && (a[4].ulValueLen != sizeof(CK_BBOOL) || !nextr))))
                return "imported or once extractable (CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE not TRUE)";
        if (a[7].ulValueLen != sizeof(CK_BBOOL) || !priv)
                return "public (CKA_PRIVATE not TRUE: usable without login)";
        if (a[6].ulValueLen != 4)
                return "CKA_ID is not 4 bytes (kekd's version number)";
        return NULL;
}

static int list_unclassified_once(Hsm *h, HsmKeyIssue **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_TOKEN, &yes, sizeof(yes) },
        };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_free_ HsmKeyIssue *out = NULL;
        size_t n = 0, k = 0;
        int r;

        r = hsm_find_all(h, tmpl, ELEMENTSOF(tmpl), &objs, &n);
        if (r < 0)
                return r;
        out = calloc(n ? n : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                CK_KEY_TYPE type = 0;
                CK_BBOOL sens = 0, extr = 1, asens = 0, nextr = 0, priv = 0, wwt = 0;
                uint8_t id[64];
                CK_ATTRIBUTE a[] = {
                        { CKA_KEY_TYPE, &type, sizeof(type) },
                        { CKA_SENSITIVE, &sens, sizeof(sens) },
                        { CKA_EXTRACTABLE, &extr, sizeof(extr) },
                        { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
                        { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
                        { CKA_LABEL, out[k].label, HSM_KEY_LABEL_MAX },
                        { CKA_ID, id, sizeof(id) },
                        { CKA_PRIVATE, &priv, sizeof(priv) },
                        { CKA_WRAP_WITH_TRUSTED, &wwt, sizeof(wwt) },
                };
                const char *why;
                CK_RV rv = store_call(h, P11(h, C_GetAttributeValue, h->session, objs[i], a, ELEMENTSOF(a)));

                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        continue; /* destroyed by another node meanwhile */
                /* Attributes it does not have or will not show come back as CK_UNAVAILABLE_INFORMATION. */
                if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE &&
                    rv != CKR_BUFFER_TOO_SMALL)
                        return hsm_read_failed(h, rv);
                /* No label, or longer than any key name: not kekd's label scheme. */
                if (a[5].ulValueLen == CK_UNAVAILABLE_INFORMATION || a[5].ulValueLen == 0 ||
                    a[5].ulValueLen > HSM_KEY_LABEL_MAX)
                        continue;
                /* The record key and record objects of hsm-records.c (records-mac.h): kekd's, not KEKs. */
                if (record_object_label(out[k].label, a[5].ulValueLen) ||
                    (a[6].ulValueLen != CK_UNAVAILABLE_INFORMATION &&
                     record_key_ids(out[k].label, a[5].ulValueLen, id, a[6].ulValueLen)))
                        continue;
                why = unclassified_reason(a, type, sens, extr, asens, nextr, priv, wwt);
                if (!why)
                        continue;
                out[k].label[a[5].ulValueLen] = 0;
                out[k].reason = why;
                out[k].handle = objs[i];
                k++;
        }
        *ret = TAKE_PTR(out);
        *ret_n = k;
        return 0;
}

int hsm_list_unclassified(Hsm *h, HsmKeyIssue **ret, size_t *ret_n) {
        int r = list_unclassified_once(h, ret, ret_n);

        if (r == -ESTALE)
                r = list_unclassified_once(h, ret, ret_n);
        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
}

int hsm_key_attributes(Hsm *h, HsmObject key, HsmKeyAttrs *ret) {
        CK_BBOOL token = 0, priv = 0, sens = 0, asens = 0, extr = 1, nextr = 0, wwt = 0;
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
        CK_ATTRIBUTE w = { CKA_WRAP_WITH_TRUSTED, &wwt, sizeof(wwt) };
        CK_ATTRIBUTE v = { CKA_VALUE, value, sizeof(value) };
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, key, a, ELEMENTSOF(a)));
        if (rv != CKR_OK)
                return hsm_rv_to_errno(h, rv);
        /* Asked alone: a token that does not know it answers for it only (then FALSE). */
        if (store_call(h, P11(h, C_GetAttributeValue, h->session, key, &w, 1)) != CKR_OK || w.ulValueLen != sizeof(wwt))
                wwt = CK_FALSE;
        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, key, &v, 1));
        secret_cleanse(value, sizeof(value));
        *ret = (HsmKeyAttrs) {
                .token = token,
                .private_ = priv,
                .sensitive = sens,
                .always_sensitive = asens,
                .extractable = extr,
                .never_extractable = nextr,
                .wrap_with_trusted = wwt,
                .value_len = vlen,
                .value_readable = rv == CKR_OK && v.ulValueLen != CK_UNAVAILABLE_INFORMATION,
        };
        return 0;
}

int hsm_find_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        return find_version_key(h, CKK_AES, label, version, false, ret);
}

int hsm_find_version_key(Hsm *h, const char *label, uint32_t version, bool restored, HsmObject *ret) {
        return restored ? find_restored_key(h, CKK_AES, label, version, false, ret)
                        : find_version_key(h, CKK_AES, label, version, false, ret);
}

int hsm_find_version_mac_key(Hsm *h, const char *label, uint32_t version, bool restored, HsmObject *ret) {
        return restored ? find_restored_key(h, CKK_GENERIC_SECRET, label, version, false, ret)
                        : find_version_key(h, CKK_GENERIC_SECRET, label, version, false, ret);
}

/* --- MAC keys of the encrypt-then-MAC profiles (hsm.h) ----------------------- */

/*
 * A 256-bit HMAC key generated in the token: sensitive, never extractable,
 * sign and verify only. The MAC keys of the encrypt-then-MAC profiles, the
 * probe's throwaway one (token_object false: a session object) and the
 * record key of records-mac.c. No blind retry, as for the AES key: a call
 * that failed in transit may have made the object.
 */
static int generate_hmac_key(Hsm *h, const char *label, const uint8_t *id, size_t id_len, bool token_object,
                             bool wrap_trusted, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_ULONG value_len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE, token = token_object ? CK_TRUE : CK_FALSE;
        CK_BBOOL extractable = wrap_trusted ? CK_TRUE : CK_FALSE;
        CK_MECHANISM mech = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE o;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, (void *) id, id_len },
                { CKA_TOKEN, &token, sizeof(token) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
                { CKA_MODIFIABLE, &no, sizeof(no) },
                { CKA_ENCRYPT, &no, sizeof(no) },
                { CKA_DECRYPT, &no, sizeof(no) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_VERIFY, &yes, sizeof(yes) },
                { CKA_DERIVE, &no, sizeof(no) },
                { CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) }, /* last: only with wrap_trusted */
        };
        CK_RV rv;
        int r;

        if (strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        if (token_object)
                hsm_write_bump(h);
        rv = store_call(h, P11(h, C_GenerateKey, h->session, &mech, tmpl, ELEMENTSOF(tmpl) - !wrap_trusted, &o));
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        *ret = o;
        return 0;
}

int hsm_generate_hmac_key(Hsm *h, const char *label, const uint8_t *id, size_t id_len, bool token_object,
                          HsmObject *ret) {
        return generate_hmac_key(h, label, id, id_len, token_object, false, ret);
}

int hsm_generate_mac_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        return hsm_generate_version_mac_key(h, label, version, false, ret);
}

int hsm_generate_version_mac_key(Hsm *h, const char *label, uint32_t version, bool wrap_trusted, HsmObject *ret) {
        uint8_t id[4];

        version_to_id(version, id);
        return generate_hmac_key(h, label, id, sizeof(id), true, wrap_trusted, ret);
}

int hsm_generate_probe_mac_key(Hsm *h, HsmObject *ret) {
        static const uint8_t id[4];

        return hsm_generate_hmac_key(h, "kekd probe", id, sizeof(id), false, ret);
}


int hsm_find_mac_key(Hsm *h, const char *label, uint32_t version, HsmObject *ret) {
        return find_version_key(h, CKK_GENERIC_SECRET, label, version, false, ret);
}

int hsm_list_mac_keys(Hsm *h, HsmKeyRef **ret, size_t *ret_n) {
        /*
         * As for KEKs: a MAC key was sensitive from its creation on, and never extractable or
         * wrappable under trusted keys only. Neither CKA_LOCAL nor CKA_SIGN is asked for: NSS
         * softokn reports neither on keys it generates.
         */
        return list_version_keys(h, CKK_GENERIC_SECRET, ret, ret_n);
}

/* --- destroying a version's or a key's objects -------------------------------- */

#define VERSION_OBJECTS_MAX 8  /* copies of one (label, version, type) destroyed before giving up */

/* Destroys every key object (label, version) of type; 0 once none is left. Looked up afresh each time. */
static int destroy_version_type(Hsm *h, CK_KEY_TYPE type, const char *label, uint32_t version) {
        for (unsigned i = 0; i < VERSION_OBJECTS_MAX; i++) {
                HsmObject obj;
                /* any: a planted duplicate goes too */
                int r = find_version_key(h, type, label, version, true, &obj);

                if (r == -ENOENT) /* then a restored one (a restore's objects, hsm-transfer.h) */
                        r = find_restored_key(h, type, label, version, true, &obj);
                uint64_t gen = hsm_generation(h); /* the generation obj was found at */

                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                r = hsm_destroy_listed(h, obj, gen);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return -KEKERR_HSM_UNAVAILABLE;
}

int hsm_destroy_version_keys(Hsm *h, const char *label, uint32_t version) {
        int r = destroy_version_type(h, CKK_AES, label, version);

        /* The AES key first: a listing takes an AES key for a version, and it must never lack its MAC key. */
        return r < 0 ? r : destroy_version_type(h, CKK_GENERIC_SECRET, label, version);
}

/* Destroys every object list finds under label. */
static int destroy_listed_label(Hsm *h, int (*list)(Hsm *h, HsmKeyRef **ret, size_t *ret_n), const char *label) {
        _cleanup_free_ HsmKeyRef *refs = NULL;
        size_t n = 0;
        uint64_t gen;
        int r;

        r = list(h, &refs, &n);
        if (r < 0)
                return r;
        gen = hsm_generation(h);
        for (size_t i = 0; i < n; i++)
                if (strcmp(refs[i].label, label) == 0) {
                        r = hsm_destroy_listed(h, refs[i].handle, gen);
                        if (r < 0 && r != -ENOENT)
                                return r;
                }
        return 0;
}

int hsm_destroy_label_keys(Hsm *h, const char *label) {
        int r = destroy_listed_label(h, hsm_list_keys, label);

        /* As for one version: no AES key outlives its MAC key (creation makes the MAC key first). */
        return r < 0 ? r : destroy_listed_label(h, hsm_list_mac_keys, label);
}
