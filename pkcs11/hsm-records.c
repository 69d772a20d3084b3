/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd's records in the token (see hsm.h, hsm_list_data()): the key records,
 * the vault policy and approvals, each an immutable token object written
 * whole in one C_CreateObject and replaced by "create new, destroy old".
 * Three record modes, chosen by the capability probe (hsm_set_record_mode()):
 * private CKO_DATA objects (every token that stores them); public CKO_DATA
 * objects whose value ends in an HMAC tag made in the token (records-mac.h);
 * and, for a token that stores no token data objects at all (NSS softokn),
 * private generic-secret key objects usable for nothing, carrying the record
 * and its tag in CKA_ID, labelled RECORD_OBJECT_ID_PREFIX, application, ':'
 * and the record's label. Callers see the same values in every mode.
 * Invariants: calls on token objects go through store_call(); a create is
 * never repeated after a failure; listings search again after a lost
 * session and when an object vanished between search and read.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/log.h"
#include "hsm-internal.h"
#include "records-mac.h"

#define LIST_ATTEMPTS 5              /* listings of records racing their replacement */

static Hsm *root(Hsm *h) {
        return h->parent ? h->parent : h;
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
#define ID_PREFIX_LEN (sizeof(RECORD_OBJECT_ID_PREFIX) - 1)

static bool key_objects(const Hsm *h) {
        return hsm_record_mode(h) == HSM_RECORDS_KEY_OBJECTS;
}

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
 * Key-object mode: the record object's CKA_LABEL is RECORD_OBJECT_ID_PREFIX,
 * the application, ':' and the record's label ("kekd-record:kekd:acct"),
 * its CKA_ID the record and tag. Both are attributes every token returns
 * (a token may make any secret key sensitive, as NSS does: CKA_VALUE is not
 * used). Sizes first, then values. -EBADMSG: not one of ours.
 */
static int key_object_read(Hsm *h, CK_OBJECT_HANDLE o, const char *const *apps, size_t n_apps, HsmDataObject *d,
                           uint8_t app[APP_MAX], size_t *ret_app_len) {
        char name[ID_PREFIX_LEN + APP_MAX + 1 + HSM_KEY_LABEL_MAX];
        CK_ATTRIBUTE a[] = {
                { CKA_LABEL, NULL, 0 },
                { CKA_ID, NULL, 0 },
        };
        const char *colon;
        size_t app_len;
        CK_RV rv;
        int r;

        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID)
                return -EBADMSG;
        if (rv != CKR_OK)
                return hsm_read_failed(h, rv);
        if (a[0].ulValueLen > sizeof(name) || a[0].ulValueLen <= ID_PREFIX_LEN || a[1].ulValueLen > 1024 * 1024)
                return -EBADMSG;
        d->value = malloc(a[1].ulValueLen ? a[1].ulValueLen : 1);
        if (!d->value)
                return -ENOMEM;
        a[0].pValue = name;
        a[1].pValue = d->value;
        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        r = rv == CKR_OK ? 0 : rv == CKR_BUFFER_TOO_SMALL ? -ENOENT /* replaced meanwhile */ : hsm_read_failed(h, rv);
        if (r >= 0 && (a[0].ulValueLen > sizeof(name) - 1 || memchr(name, 0, a[0].ulValueLen) ||
                       !record_object_label(name, a[0].ulValueLen)))
                r = -EBADMSG;
        if (r >= 0) {
                name[a[0].ulValueLen] = 0;
                colon = memchr(name + ID_PREFIX_LEN, ':', a[0].ulValueLen - ID_PREFIX_LEN);
                app_len = colon ? (size_t) (colon - name) - ID_PREFIX_LEN : 0;
                if (!colon || app_len > APP_MAX || strlen(colon + 1) > HSM_KEY_LABEL_MAX)
                        r = -EBADMSG;
        }
        if (r >= 0) {
                memcpy(app, name + ID_PREFIX_LEN, app_len);
                r = app_index(apps, n_apps, app, app_len, &d->app);
        }
        if (r < 0) {
                free(d->value);
                d->value = NULL;
                return r;
        }
        strcpy(d->label, colon + 1);
        d->value_len = a[1].ulValueLen;
        d->handle = o;
        *ret_app_len = app_len;
        return 0;
}

/*
 * Reads label, application and value of one record object: one
 * C_GetAttributeValue into buffers that fit every record kekd writes, two
 * (sizes, then values) for anything bigger. -EBADMSG: not one of ours.
 */
static int data_object_read(Hsm *h, CK_OBJECT_HANDLE o, const char *const *apps, size_t n_apps, HsmDataObject *d,
                            uint8_t app[APP_MAX], size_t *ret_app_len) {
        uint8_t value[VALUE_INLINE];
        CK_ATTRIBUTE a[] = {
                { CKA_LABEL, d->label, HSM_KEY_LABEL_MAX },
                { CKA_APPLICATION, app, APP_MAX },
                { CKA_VALUE, value, sizeof(value) },
        };
        CK_RV rv;
        int r;

        if (key_objects(h))
                return key_object_read(h, o, apps, n_apps, d, app, ret_app_len);

        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        if (rv == CKR_OK) {
                /* A NUL inside the label would make it read as a shorter one, whose tag it would carry. */
                r = memchr(d->label, 0, a[0].ulValueLen) ? -EBADMSG : app_index(apps, n_apps, app, a[1].ulValueLen, &d->app);
                if (r >= 0) {
                        d->value = malloc(a[2].ulValueLen ? a[2].ulValueLen : 1);
                        r = d->value ? 0 : -ENOMEM;
                }
                if (r >= 0) {
                        memcpy(d->value, value, a[2].ulValueLen);
                        d->label[a[0].ulValueLen] = 0;
                        d->value_len = a[2].ulValueLen;
                        d->handle = o;
                        *ret_app_len = a[1].ulValueLen;
                }
                secret_cleanse(value, sizeof(value)); /* a foreign object's value is none of our business */
                return r;
        }
        secret_cleanse(value, sizeof(value));
        if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID)
                return -EBADMSG; /* a value that cannot be read: not a record of kekd's */
        if (rv != CKR_BUFFER_TOO_SMALL)
                return hsm_read_failed(h, rv);

        /* Something is bigger than our buffers: sizes first. */
        for (size_t i = 0; i < ELEMENTSOF(a); i++) {
                a[i].pValue = NULL;
                a[i].ulValueLen = 0;
        }
        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        if (rv != CKR_OK)
                return hsm_read_failed(h, rv);
        if (a[0].ulValueLen > HSM_KEY_LABEL_MAX || a[1].ulValueLen > APP_MAX || a[2].ulValueLen > 1024 * 1024)
                return -EBADMSG;
        d->value = malloc(a[2].ulValueLen ? a[2].ulValueLen : 1);
        if (!d->value)
                return -ENOMEM;
        a[0].pValue = d->label;
        a[1].pValue = app;
        a[2].pValue = d->value;
        rv = store_call(h, P11(h, C_GetAttributeValue, h->session, o, a, ELEMENTSOF(a)));
        r = rv != CKR_OK                                                          ? hsm_read_failed(h, rv)
            : a[0].ulValueLen > HSM_KEY_LABEL_MAX || memchr(d->label, 0, a[0].ulValueLen) ? -EBADMSG
                                                                                   : app_index(apps, n_apps, app, a[1].ulValueLen, &d->app);
        if (r < 0) {
                free(d->value);
                d->value = NULL;
                return r;
        }
        d->label[a[0].ulValueLen] = 0;
        d->value_len = a[2].ulValueLen;
        d->handle = o;
        *ret_app_len = a[1].ulValueLen;
        return 0;
}

/*
 * Modes with a tag: whether d carries a record key's tag over its
 * application, label and value; if so the tag is stripped (0), if not d is
 * freed and counted (-EBADMSG: not a record). -ENOENT: a record key went
 * away meanwhile, list again.
 */
static int data_object_verify(Hsm *h, const RecordKeys *keys, const uint8_t *app, size_t app_len, HsmDataObject *d) {
        int r = record_verify(h, keys, app, app_len, d->label, d->value, d->value_len);

        if (r >= 0) {
                d->value_len -= RECORD_TAG_SIZE;
                return 0;
        }
        free(d->value);
        d->value = NULL;
        if (r == -EBADMSG) {
                log_debug("Record object '%s' fails its record MAC: not used as a record", d->label);
                __atomic_add_fetch(&root(h)->record_mac_failures, 1, __ATOMIC_RELAXED);
        }
        return r;
}

/*
 * The search template of the record objects of one application (NULL: of
 * any), with label (NULL: any). Key-object mode finds the objects of one
 * record by their whole CKA_LABEL; other listings take every generic-secret
 * key and keep those whose label has the record prefix.
 */
typedef struct RecordSearch {
        CK_OBJECT_CLASS cls;
        CK_KEY_TYPE type;
        CK_BBOOL yes;
        char name[ID_PREFIX_LEN + APP_MAX + 1 + HSM_KEY_LABEL_MAX + 1];
        CK_ATTRIBUTE tmpl[5];
        CK_ULONG n;
} RecordSearch;

static int record_search(const Hsm *h, const char *application, const char *label, RecordSearch *s) {
        size_t app_len = application ? strlen(application) : 0;

        if (app_len > APP_MAX || (label && strlen(label) > HSM_KEY_LABEL_MAX))
                return -EINVAL;
        s->n = 0;
        if (!key_objects(h)) {
                s->cls = CKO_DATA;
                s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_CLASS, &s->cls, sizeof(s->cls) };
                /*
                 * Without a tag, only a private object is a record: a public one can be written
                 * by anyone who opens the token, without login (the tag modes verify instead).
                 */
                s->yes = CK_TRUE;
                if (hsm_record_mode(h) == HSM_RECORDS_PRIVATE)
                        s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_PRIVATE, &s->yes, sizeof(s->yes) };
                if (application)
                        s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_APPLICATION, (void *) application, app_len };
                if (label)
                        s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_LABEL, (void *) label, strlen(label) };
                return 0;
        }
        s->cls = CKO_SECRET_KEY;
        s->type = CKK_GENERIC_SECRET;
        s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_CLASS, &s->cls, sizeof(s->cls) };
        s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_KEY_TYPE, &s->type, sizeof(s->type) };
        if (application && label) {
                snprintf(s->name, sizeof(s->name), "%s%s:%s", RECORD_OBJECT_ID_PREFIX, application, label);
                s->tmpl[s->n++] = (CK_ATTRIBUTE) { CKA_LABEL, s->name, strlen(s->name) };
        }
        return 0;
}

/* Lists the record objects matching tmpl, keeping those of apps (NULL: all). */
static int list_data(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, const char *const *apps, size_t n_apps,
                     HsmDataObject **ret, size_t *ret_n) {
        /*
         * Records are replaced by "create new, destroy old". A listing that
         * races such a replacement can find the old object and then not read
         * it; the key must not look absent then, so list again.
         */
        bool relogged = false, tagged = hsm_record_mode(h) != HSM_RECORDS_PRIVATE;

        for (unsigned attempt = 0; attempt < LIST_ATTEMPTS; attempt++) {
                _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
                HsmDataObject *d;
                size_t n = 0, k = 0;
                bool vanished = false;
                int r;
                _cleanup_(record_keys_done) RecordKeys keys = {};
                uint8_t app[APP_MAX];
                size_t app_len = 0;

                r = hsm_find_all(h, tmpl, n_tmpl, &objs, &n);
                if (r >= 0 && tagged)
                        r = record_keys_find(h, &keys); /* after the objects: a record found has its key found */
                if (r < 0)
                        return r;
                d = calloc(n ? n : 1, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        r = data_object_read(h, objs[i], apps, n_apps, &d[k], app, &app_len);
                        if (r >= 0 && tagged)
                                r = data_object_verify(h, &keys, app, app_len, &d[k]);
                        if (r == -ENOENT) {
                                vanished = true;
                                continue;
                        }
                        if (r == -EBADMSG)
                                continue; /* not one of ours, or fails its record MAC */
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
        RecordSearch s;
        int r = record_search(h, application, label, &s);

        if (r < 0)
                return r;
        return list_data(h, s.tmpl, s.n, &application, 1, ret, ret_n);
}

int hsm_list_data_multi(Hsm *h, const char *const *apps, size_t n_apps, HsmDataObject **ret, size_t *ret_n) {
        RecordSearch s;
        int r = record_search(h, NULL, NULL, &s);

        if (r < 0)
                return r;
        return list_data(h, s.tmpl, s.n, apps, n_apps, ret, ret_n);
}

int hsm_create_record_object(Hsm *h, HsmRecordMode mode, const char *application, const char *label,
                             const uint8_t *value, size_t len, HsmObject *ret) {
        CK_OBJECT_CLASS cls = mode == HSM_RECORDS_KEY_OBJECTS ? CKO_SECRET_KEY : CKO_DATA;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE, priv = mode == HSM_RECORDS_PUBLIC_MAC ? CK_FALSE : CK_TRUE;
        static const uint8_t filler[32] = {}; /* a key object's value: a container, never used as a key */
        size_t app_len = strlen(application);
        char name[ID_PREFIX_LEN + APP_MAX + 1 + HSM_KEY_LABEL_MAX + 1];
        CK_ATTRIBUTE tmpl[20] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &priv, sizeof(priv) },
                /* records are immutable: a change is a new object, then the old one is destroyed */
                { CKA_MODIFIABLE, &no, sizeof(no) },
        };
        CK_ULONG n = 4;
        CK_OBJECT_HANDLE o;
        CK_RV rv;
        int r;

        if (app_len > APP_MAX || strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        if (mode != HSM_RECORDS_KEY_OBJECTS) {
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_APPLICATION, (void *) application, app_len };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_LABEL, (void *) label, strlen(label) };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_VALUE, (void *) value, len };
        } else {
                /*
                 * A key object only as a container: the record in CKA_ID,
                 * usable for nothing, so no mechanism can ever take it for
                 * a key, and its label is no key name (':' never is in one).
                 */
                static const CK_ATTRIBUTE_TYPE uses[] = { CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN,  CKA_VERIFY,
                                                          CKA_WRAP,    CKA_UNWRAP,  CKA_DERIVE };

                snprintf(name, sizeof(name), "%s%s:%s", RECORD_OBJECT_ID_PREFIX, application, label);
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_KEY_TYPE, &type, sizeof(type) };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_LABEL, name, strlen(name) };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_ID, (void *) value, len };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_VALUE, (void *) filler, sizeof(filler) };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_SENSITIVE, &yes, sizeof(yes) };
                tmpl[n++] = (CK_ATTRIBUTE) { CKA_EXTRACTABLE, &no, sizeof(no) };
                for (size_t i = 0; i < ELEMENTSOF(uses); i++)
                        tmpl[n++] = (CK_ATTRIBUTE) { uses[i], &no, sizeof(no) };
        }
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        hsm_write_bump(h);
        rv = store_call(h, P11(h, C_CreateObject, h->session, tmpl, n, &o));
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        *ret = o;
        return 0;
}

void hsm_set_record_mode(Hsm *h, HsmRecordMode mode) {
        __atomic_store_n(&root(h)->record_mode, (int) mode, __ATOMIC_RELEASE);
}

HsmRecordMode hsm_record_mode(const Hsm *h) {
        const Hsm *rt = h->parent ? h->parent : h;

        return (HsmRecordMode) __atomic_load_n(&rt->record_mode, __ATOMIC_ACQUIRE);
}

const char *hsm_record_mode_name(HsmRecordMode mode) {
        return mode == HSM_RECORDS_PUBLIC_MAC    ? "public data objects + HMAC"
               : mode == HSM_RECORDS_KEY_OBJECTS ? "private key objects + HMAC"
                                                 : "private data objects";
}

uint64_t hsm_record_mac_failures(const Hsm *h) {
        const Hsm *rt = h->parent ? h->parent : h;

        return __atomic_load_n(&rt->record_mac_failures, __ATOMIC_RELAXED);
}

int hsm_create_data(Hsm *h, const char *application, const char *label, const uint8_t *value, size_t len,
                    HsmObject *ret) {
        HsmRecordMode mode = hsm_record_mode(h);
        _cleanup_free_ uint8_t *buf = NULL;
        CK_OBJECT_HANDLE key;
        int r;

        if (mode == HSM_RECORDS_PRIVATE)
                return hsm_create_record_object(h, mode, application, label, value, len, ret);

        /* value || tag, written in one C_CreateObject: a record is there with its tag or not at all. */
        if (len > SIZE_MAX - RECORD_TAG_SIZE)
                return -EINVAL;
        buf = malloc(len + RECORD_TAG_SIZE);
        if (!buf)
                return -ENOMEM;
        if (len)
                memcpy(buf, value, len);
        r = record_key_for_signing(h, &key);
        if (r >= 0)
                r = record_tag(h, key, application, strlen(application), label, value, len, buf + len);
        if (r >= 0)
                r = hsm_create_record_object(h, mode, application, label, buf, len + RECORD_TAG_SIZE, ret);
        return r;
}

/*
 * The record objects of apps that a listing does not take for records
 * because their tag fails (modes with a tag); none in the other mode.
 */
int hsm_list_bad_records(Hsm *h, const char *const *apps, size_t n_apps, HsmKeyIssue **ret, size_t *ret_n) {
        _cleanup_(record_keys_done) RecordKeys keys = {};
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_free_ HsmKeyIssue *out = NULL;
        RecordSearch s;
        size_t n = 0, k = 0;
        int r;

        if (hsm_record_mode(h) == HSM_RECORDS_PRIVATE) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        r = record_search(h, NULL, NULL, &s);
        if (r >= 0)
                r = hsm_find_all(h, s.tmpl, s.n, &objs, &n);
        if (r >= 0)
                r = record_keys_find(h, &keys);
        if (r < 0)
                return r;
        out = calloc(n ? n : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                HsmDataObject d = {};
                uint8_t app[APP_MAX];
                size_t app_len = 0;

                r = data_object_read(h, objs[i], apps, n_apps, &d, app, &app_len);
                if (r == -EBADMSG || r == -ENOENT)
                        continue; /* not one of ours, or destroyed meanwhile */
                if (r < 0)
                        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
                r = record_verify(h, &keys, app, app_len, d.label, d.value, d.value_len);
                free(d.value);
                if (r >= 0 || r == -ENOENT)
                        continue;
                if (r != -EBADMSG)
                        return r == -ESTALE ? -KEKERR_HSM_UNAVAILABLE : r;
                memcpy(out[k].label, d.label, sizeof(out[k].label));
                out[k].reason = "record object fails its MAC";
                out[k].handle = objs[i];
                k++;
        }
        *ret = TAKE_PTR(out);
        *ret_n = k;
        return 0;
}
