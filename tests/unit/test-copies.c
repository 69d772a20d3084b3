/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * In-HSM copies of KEK versions (issue 18 item 3, docs/session-copies.md),
 * on a fresh SoftHSM2 token: the facts the decision not to ship session
 * copies rests on, measured rather than assumed.
 *
 *  - kekd's KEK template (CKA_COPYABLE FALSE, CKA_MODIFIABLE FALSE) admits no
 *    copy at all, to a session or to the token, and CKA_COPYABLE cannot be
 *    turned back on: purge destroys every copy there can be.
 *  - on SoftHSM2 2.6 a copyable key stays copyable: C_SetAttributeValue of
 *    CKA_COPYABLE is refused both ways, so switching copies off later could
 *    not take the right back from versions made while they were on.
 *  - copyable but not modifiable (what the spec would need): SoftHSM2 2.6
 *    refuses the session copy; a token copy with the same label and ID is
 *    possible, adopted by kekd's search as a second object of the version,
 *    and destroyed by the purge of the label.
 *  - copyable and modifiable (what session copies need on SoftHSM2): the
 *    session copy works and stays sensitive and never extractable, but a
 *    token copy under another label outlives the purge of the key, and
 *    kekctl check's unclassified-key listing does not report it (it is a
 *    well-formed KEK under a name no record has).
 *  - tests/p11-fault's prototype ($P11_FAULT_SESSION_COPIES, kekbench's
 *    "copies" row through kekd): one session copy serves every operation.
 *
 * PKCS#11 calls are made directly (p11-kit), since pkcs11/hsm.c has no
 * C_CopyObject; hsm.c and the direct module never have the token open at the
 * same time (each finalizes before the other initializes).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <p11-kit/p11-kit.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "pkcs11/ckr.h"
#include "pkcs11/hsm.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

typedef struct Direct {
        CK_FUNCTION_LIST *f;
        CK_SESSION_HANDLE s;
} Direct;

static int direct_open(const TestToken *t, Direct *d) {
        CK_SLOT_ID slots[16];
        CK_ULONG n = ELEMENTSOF(slots);
        CK_TOKEN_INFO ti;

        *d = (Direct) {};
        d->f = p11_kit_module_load(t->module, 0);
        if (!d->f || p11_kit_module_initialize(d->f) != CKR_OK)
                return -1;
        if (d->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                return -1;
        for (CK_ULONG i = 0; i < n; i++)
                if (d->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
                    strncmp((const char *) ti.label, t->label, strlen(t->label)) == 0 &&
                    d->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &d->s) == CKR_OK)
                        return d->f->C_Login(d->s, CKU_USER, (CK_UTF8CHAR_PTR) t->pin, strlen(t->pin)) == CKR_OK ? 0
                                                                                                                : -1;
        return -1;
}

static void direct_close(Direct *d) {
        if (!d->f)
                return;
        if (d->s)
                (void) d->f->C_CloseSession(d->s);
        (void) p11_kit_module_finalize(d->f);
        p11_kit_module_release(d->f);
        *d = (Direct) {};
}

/* The one secret key object labelled label; 0 if there is not exactly one. */
static CK_OBJECT_HANDLE find_one(Direct *d, const char *label) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *) label, strlen(label) } };
        CK_OBJECT_HANDLE o[2] = {};
        CK_ULONG n = 0;

        if (d->f->C_FindObjectsInit(d->s, tmpl, ELEMENTSOF(tmpl)) != CKR_OK)
                return 0;
        (void) d->f->C_FindObjects(d->s, o, 2, &n);
        (void) d->f->C_FindObjectsFinal(d->s);
        return n == 1 ? o[0] : 0;
}

/* An AES-256 token key as kekd makes it (version 1), but with the given CKA_COPYABLE and CKA_MODIFIABLE. */
static CK_OBJECT_HANDLE generate(Direct *d, const char *label, CK_BBOOL copyable, CK_BBOOL modifiable) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_BYTE id[4] = { 0, 0, 0, 1 };
        CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },   { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &len, sizeof(len) }, { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },         { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) }, { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) }, { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) }, { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },    { CKA_DERIVE, &no, sizeof(no) },
                { CKA_COPYABLE, &copyable, sizeof(copyable) }, { CKA_MODIFIABLE, &modifiable, sizeof(modifiable) },
        };
        CK_OBJECT_HANDLE o = 0;

        return d->f->C_GenerateKey(d->s, &m, tmpl, ELEMENTSOF(tmpl), &o) == CKR_OK ? o : 0;
}

static CK_RV copy(Direct *d, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, const void *value, size_t len,
                  CK_OBJECT_HANDLE *ret) {
        CK_ATTRIBUTE a = { type, (void *) value, len };

        /* type 0: an empty template (not NULL: SoftHSM2 answers CKR_ARGUMENTS_BAD to a NULL one). */
        *ret = 0;
        return d->f->C_CopyObject(d->s, o, &a, type ? 1 : 0, ret);
}

static bool attr_bool(Direct *d, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_BBOOL want) {
        CK_BBOOL v = !want;
        CK_ATTRIBUTE a = { type, &v, sizeof(v) };

        return d->f->C_GetAttributeValue(d->s, o, &a, 1) == CKR_OK && v == want;
}

/* How many KEK objects hsm_list_keys() finds labelled label. */
static int count_keys(Hsm *h, const char *label) {
        _cleanup_free_ HsmKeyRef *refs = NULL;
        size_t n = 0;
        int c = 0;

        if (hsm_list_keys(h, &refs, &n) < 0)
                return -1;
        for (size_t i = 0; i < n; i++)
                c += strcmp(refs[i].label, label) == 0;
        return c;
}

static void test_token(const TestToken *t, const Secret *pin) {
        static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        _cleanup_(hsm_freep) Hsm *h = NULL;
        HsmKeyIssue *issues = NULL;
        size_t n_issues = 0;
        bool reported = false;
        HsmObject kek;
        CK_OBJECT_HANDLE o, c, m, cp;
        Direct d;
        CK_RV rv;

        if (!ok(hsm_open(t->module, t->uri, pin, &h, NULL) == 0 && hsm_generate_version_key(h, "k", 1, false, &kek) == 0,
                "kekd's KEK generated on SoftHSM2"))
                return;
        h = hsm_free(h);

        if (!ok(direct_open(t, &d) == 0 && (o = find_one(&d, "k")), "the KEK found through the module itself")) {
                direct_close(&d);
                return;
        }
        ok(attr_bool(&d, o, CKA_COPYABLE, CK_FALSE) && attr_bool(&d, o, CKA_MODIFIABLE, CK_FALSE),
           "kekd's KEK: CKA_COPYABLE and CKA_MODIFIABLE FALSE");
        rv = copy(&d, o, CKA_TOKEN, &no, sizeof(no), &cp);
        ok(rv != CKR_OK, "kekd's KEK: no session copy (%s)", ckr_name(rv));
        rv = copy(&d, o, 0, NULL, 0, &cp);
        ok(rv != CKR_OK, "kekd's KEK: no token copy either (%s)", ckr_name(rv));
        rv = d.f->C_SetAttributeValue(d.s, o, &(CK_ATTRIBUTE) { CKA_COPYABLE, (void *) &yes, sizeof(yes) }, 1);
        ok(rv != CKR_OK && attr_bool(&d, o, CKA_COPYABLE, CK_FALSE), "kekd's KEK: CKA_COPYABLE cannot be set TRUE (%s)",
           ckr_name(rv));

        /* Copyable, not modifiable: the smallest change the spec would need. */
        c = generate(&d, "c", CK_TRUE, CK_FALSE);
        rv = copy(&d, c, CKA_TOKEN, &no, sizeof(no), &cp);
        ok(c && rv != CKR_OK, "copyable, not modifiable: SoftHSM2 refuses the session copy (%s)", ckr_name(rv));
        rv = copy(&d, c, 0, NULL, 0, &cp);
        ok(c && rv == CKR_OK && attr_bool(&d, cp, CKA_TOKEN, CK_TRUE),
           "copyable, not modifiable: a token copy with the same label and ID is made (%s)", ckr_name(rv));

        /* Copyable and modifiable: what session copies need on SoftHSM2. */
        m = generate(&d, "m", CK_TRUE, CK_TRUE);
        rv = copy(&d, m, CKA_TOKEN, &no, sizeof(no), &cp);
        ok(m && rv == CKR_OK && attr_bool(&d, cp, CKA_TOKEN, CK_FALSE) && attr_bool(&d, cp, CKA_SENSITIVE, CK_TRUE) &&
                   attr_bool(&d, cp, CKA_ALWAYS_SENSITIVE, CK_TRUE) && attr_bool(&d, cp, CKA_NEVER_EXTRACTABLE, CK_TRUE),
           "copyable and modifiable: the session copy is made, sensitive and never extractable (%s)", ckr_name(rv));
        rv = copy(&d, m, CKA_EXTRACTABLE, &yes, sizeof(yes), &cp);
        ok(rv != CKR_OK, "no copy can be made extractable (%s)", ckr_name(rv));
        rv = copy(&d, m, CKA_SENSITIVE, &no, sizeof(no), &cp);
        ok(rv != CKR_OK, "no copy can be made non-sensitive (%s)", ckr_name(rv));
        rv = copy(&d, m, CKA_LABEL, "stray", 5, &cp);
        ok(rv == CKR_OK && attr_bool(&d, cp, CKA_TOKEN, CK_TRUE), "a token copy under another label is made (%s)",
           ckr_name(rv));
        /* The spec lets CKA_COPYABLE go from TRUE to FALSE only; SoftHSM2 2.6 lets it change neither way. */
        rv = d.f->C_SetAttributeValue(d.s, m, &(CK_ATTRIBUTE) { CKA_COPYABLE, (void *) &no, sizeof(no) }, 1);
        ok(rv != CKR_OK && attr_bool(&d, m, CKA_COPYABLE, CK_TRUE),
           "SoftHSM2: a copyable key cannot be made uncopyable later, even while modifiable (%s)", ckr_name(rv));
        direct_close(&d);

        /* kekd's own view: the search, the purge of a label (hsm_destroy_label_keys()), check's listing. */
        if (!ok(hsm_open(t->module, t->uri, pin, &h, NULL) == 0, "hsm.c opens the token again"))
                return;
        is_int(count_keys(h, "c"), 2, "the same-label token copy is adopted as a second object of version 1");
        ok(hsm_destroy_label_keys(h, "c") == 0 && count_keys(h, "c") == 0, "the purge of 'c' destroys the copy too");
        ok(hsm_destroy_label_keys(h, "m") == 0 && count_keys(h, "m") == 0, "the purge of 'm' destroys its label's objects");
        is_int(count_keys(h, "stray"), 1, "the copy under another label outlives the purge, a usable KEK object");
        ok(hsm_list_unclassified(h, &issues, &n_issues) == 0, "the unclassified-key listing runs");
        for (size_t i = 0; i < n_issues; i++)
                reported |= strcmp(issues[i].label, "stray") == 0;
        ok(!reported, "and does not report it: a well-formed KEK (docs/session-copies.md)");
        free(issues);
}

/* tests/p11-fault's prototype: kekd's KEK made copyable, one session copy for every operation. */
static void test_prototype(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        uint8_t iv[HSM_GCM_IV_SIZE] = { 1 }, pt[32] = { 2 }, ct[sizeof(pt) + HSM_GCM_TAG_SIZE];
        char log_path[PATH_MAX + 16], buf[4096];
        HsmObject key;
        bool round = true;
        ssize_t n;
        int fd, made = 0;

        snprintf(log_path, sizeof(log_path), "%s/fault.log", t->dir);
        setenv("P11_FAULT_LOG", log_path, 1);
        setenv("P11_FAULT_SESSION_COPIES", "1", 1);
        setenv("P11_FAULT_MODULE", t->module, 0);
        if (!ok(hsm_open(lib, t->uri, pin, &h, NULL) == 0 && hsm_generate_version_key(h, "p", 1, false, &key) == 0,
                "a KEK generated through p11-fault with P11_FAULT_SESSION_COPIES=1"))
                return;
        for (int i = 0; i < 3; i++) {
                _cleanup_secret_ Secret *out = NULL;

                iv[0] = (uint8_t) i;
                round &= hsm_encrypt_gcm(h, key, iv, NULL, 0, pt, sizeof(pt), ct) == 0 &&
                         hsm_decrypt_gcm(h, key, iv, NULL, 0, ct, sizeof(ct), &out) == 0 && out->len == sizeof(pt) &&
                         memcmp(out->data, pt, sizeof(pt)) == 0;
        }
        ok(round, "three encrypt+decrypt round trips");
        fd = open(log_path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
                close(fd);
        buf[n > 0 ? n : 0] = 0;
        for (const char *p = buf; (p = strstr(p, "session-copy made")); p++)
                made++;
        is_int(made, 1, "through one session copy, made once");
}

int main(void) {
        _cleanup_secret_ Secret *pin = NULL;
        const char *lib = getenv("P11_FAULT_LIB");
        TestToken t;
        int r;

        if (token_setup(&t, "copies") < 0) {
                printf("Bail out! no SoftHSM2 token\n");
                return 99;
        }
        if (secret_heap_init(1 << 20) < 0 || secret_new_copy(t.pin, strlen(t.pin), &pin) < 0) {
                printf("Bail out! no memory for the PIN\n");
                return 99;
        }
        test_token(&t, pin);
        if (lib && access(lib, R_OK) == 0)
                test_prototype(&t, lib, pin);
        else
                tap_skip("P11_FAULT_LIB not built (run through make check)");
        r = tap_done();
        token_done(&t);
        return r;
}
