/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * startup-raw: the floor of kekd's start-up (issue 18), for kekbench's
 * "startup" phase. It does with bare PKCS#11 calls only what kekd cannot
 * start without: load and C_Initialize the module, find the token as
 * kekd's hsm_open() does (C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo
 * against the URI), open a session, log in, and list every object kekd
 * lists at start with the attributes kekd reads there, using the same
 * searches and templates (key_index_read(): hsm_list_data_multi() in the
 * private-data-object record mode the probe picks on SoftHSM2, then
 * hsm_list_keys(), one search for the KEK forms' common part with each
 * object's form read back, list_version_keys_once() in
 * pkcs11/hsm-objects.c). No probe, no index, no socket.
 *
 *   startup-raw MODULE TOKEN-URI PIN-FILE
 *
 * Prints "USEC RECORDS KEYS CPU_USEC": microseconds from before the module
 * is loaded to the end of the last listing (C_Finalize follows, untimed:
 * kekd is READY before it ever finalizes), how many record objects of
 * kekd's two applications and key objects it read, and the CPU time (user
 * and system, all threads, from exec) this process had used by then: the
 * figure a busy machine disturbs least. Invariant: kept in step with
 * the pkcs11/ listings named above; a change to what kekd reads at start
 * changes this file in the same commit.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#define LABEL_MAX 64u        /* HSM_KEY_LABEL_MAX */
#define APP_MAX 64u          /* hsm-records.c */
#define VALUE_INLINE 4096u   /* hsm-records.c: one C_GetAttributeValue per record of kekd's size */

static CK_FUNCTION_LIST *m;
static CK_SESSION_HANDLE session;

static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int fail(const char *what, CK_RV rv) {
        fprintf(stderr, "startup-raw: %s failed: 0x%lx\n", what, (unsigned long) rv);
        return -EIO;
}

/* Every handle tmpl finds, as hsm_find_all() collects them. */
static int find_all(CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0, cap = 0;
        CK_RV rv;

        rv = m->C_FindObjectsInit(session, tmpl, n_tmpl);
        if (rv != CKR_OK)
                return fail("C_FindObjectsInit", rv);
        for (;;) {
                CK_ULONG got = 0;

                if (cap - n < 256) {
                        CK_OBJECT_HANDLE *p = reallocarray(objs, cap + 1024, sizeof(*objs));

                        if (!p) {
                                free(objs);
                                return -ENOMEM;
                        }
                        objs = p;
                        cap += 1024;
                }
                rv = m->C_FindObjects(session, objs + n, cap - n, &got);
                if (rv != CKR_OK) {
                        free(objs);
                        return fail("C_FindObjects", rv);
                }
                if (got == 0)
                        break;
                n += got;
        }
        rv = m->C_FindObjectsFinal(session);
        if (rv != CKR_OK) {
                free(objs);
                return fail("C_FindObjectsFinal", rv);
        }
        *ret = objs;
        *ret_n = n;
        return 0;
}

/* hsm_list_data_multi(h, { "kekd", "kekd-vault" }) in the private mode: label, application and value of each. */
static int list_records(size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
        };
        CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0, k = 0;
        int r;

        r = find_all(tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &objs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char label[LABEL_MAX], app[APP_MAX];
                static uint8_t value[VALUE_INLINE];
                CK_ATTRIBUTE a[] = {
                        { CKA_LABEL, label, sizeof(label) },
                        { CKA_APPLICATION, app, sizeof(app) },
                        { CKA_VALUE, value, sizeof(value) },
                };
                CK_RV rv = m->C_GetAttributeValue(session, objs[i], a, 3);

                if (rv != CKR_OK)
                        continue; /* not one of kekd's (the bench token has only kekd's) */
                if ((a[1].ulValueLen == 4 && memcmp(app, "kekd", 4) == 0) ||
                    (a[1].ulValueLen == 10 && memcmp(app, "kekd-vault", 10) == 0))
                        k++;
        }
        free(objs);
        *ret_n = k;
        return 0;
}

static bool is_bool(const CK_ATTRIBUTE *a, CK_BBOOL v) {
        return a->ulValueLen == sizeof(CK_BBOOL) && *(const CK_BBOOL *) a->pValue == v;
}

/*
 * hsm_list_keys() (list_version_keys_once()): one search for the KEK forms'
 * common part, then label, 4-byte CKA_ID and the four attributes that tell
 * the forms apart, read back per object; counted are the objects in a form.
 */
static int list_keys(size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },   { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) }, { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
        };
        CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0, k = 0;
        int r;

        r = find_all(tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &objs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char label[LABEL_MAX];
                uint8_t id[4];
                CK_BBOOL extr = CK_FALSE, asens = CK_FALSE, nextr = CK_FALSE, wwt = CK_FALSE;
                CK_ATTRIBUTE a[] = {
                        { CKA_LABEL, label, sizeof(label) },
                        { CKA_ID, id, sizeof(id) },
                        { CKA_EXTRACTABLE, &extr, sizeof(extr) },
                        { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
                        { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
                        { CKA_WRAP_WITH_TRUSTED, &wwt, sizeof(wwt) },
                };
                CK_RV rv = m->C_GetAttributeValue(session, objs[i], a, 6);
                bool kek;

                if ((rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID) || a[1].ulValueLen != sizeof(id) ||
                    a[0].ulValueLen > sizeof(label))
                        continue;
                if (is_bool(&a[3], CK_TRUE))
                        kek = (is_bool(&a[2], CK_FALSE) && is_bool(&a[4], CK_TRUE)) ||
                              (is_bool(&a[2], CK_TRUE) && is_bool(&a[5], CK_TRUE));
                else
                        kek = is_bool(&a[3], CK_FALSE) &&
                              (is_bool(&a[2], CK_FALSE) || (is_bool(&a[2], CK_TRUE) && is_bool(&a[5], CK_TRUE)));
                k += kek;
        }
        free(objs);
        *ret_n = k;
        return 0;
}

/* hsm_open(): the one initialised token the URI matches; session, login. */
static int open_token(const char *uri_text, const char *pin) {
        P11KitUri *uri = p11_kit_uri_new();
        CK_SLOT_ID slots[64], slot = 0;
        CK_ULONG n = 64, matches = 0;
        CK_RV rv;

        if (!uri || p11_kit_uri_parse(uri_text, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT, uri) != P11_KIT_URI_OK)
                return -EINVAL;
        rv = m->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK)
                return fail("C_GetSlotList", rv);
        for (CK_ULONG i = 0; i < n; i++) {
                CK_SLOT_INFO si;
                CK_TOKEN_INFO ti;

                if (m->C_GetSlotInfo(slots[i], &si) != CKR_OK || !p11_kit_uri_match_slot_info(uri, &si) ||
                    m->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !p11_kit_uri_match_token_info(uri, &ti) ||
                    !(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (matches++ == 0)
                        slot = slots[i];
        }
        p11_kit_uri_free(uri);
        if (matches != 1)
                return -ENODEV;
        rv = m->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session);
        if (rv != CKR_OK)
                return fail("C_OpenSession", rv);
        rv = m->C_Login(session, CKU_USER, (CK_UTF8CHAR *) pin, strlen(pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
                return fail("C_Login", rv);
        return 0;
}

int main(int argc, char *argv[]) {
        char pin[256];
        FILE *f;
        size_t records = 0, keys = 0, len;
        uint64_t t0, t1;
        struct rusage ru;
        CK_RV rv;
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: startup-raw MODULE TOKEN-URI PIN-FILE\n");
                return 2;
        }
        f = fopen(argv[3], "re");
        if (!f || !fgets(pin, sizeof(pin), f)) {
                fprintf(stderr, "startup-raw: cannot read %s\n", argv[3]);
                return 1;
        }
        fclose(f);
        len = strcspn(pin, "\r\n");
        pin[len] = 0;

        t0 = now_us();
        m = p11_kit_module_load(argv[1], P11_KIT_MODULE_CRITICAL);
        if (!m) {
                fprintf(stderr, "startup-raw: cannot load %s\n", argv[1]);
                return 1;
        }
        rv = p11_kit_module_initialize(m);
        if (rv != CKR_OK)
                return fail("C_Initialize", rv) < 0;
        r = open_token(argv[2], pin);
        if (r >= 0)
                r = list_records(&records);
        if (r >= 0)
                r = list_keys(&keys);
        t1 = now_us();
        if (getrusage(RUSAGE_SELF, &ru) < 0)
                r = -errno;
        (void) m->C_CloseSession(session);
        (void) p11_kit_module_finalize(m);
        p11_kit_module_release(m);
        if (r < 0) {
                fprintf(stderr, "startup-raw: cannot list the token: %s\n", strerror(-r));
                return 1;
        }
        printf("%llu %zu %zu %llu\n", (unsigned long long) (t1 - t0), records, keys,
               (unsigned long long) ru.ru_utime.tv_sec * 1000000u + (unsigned long long) ru.ru_utime.tv_usec +
                       (unsigned long long) ru.ru_stime.tv_sec * 1000000u + (unsigned long long) ru.ru_stime.tv_usec);
        return 0;
}
