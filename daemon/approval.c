/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Token storage of dual-control requests (see approval.h).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/kekerr.h"
#include "daemon/approval.h"
#include "proto/kek.pb-c.h"

#define APP_APPROVAL "kekd-approval"

void approval_done(Approval *a) {
        if (!a)
                return;
        free(a->request);
        a->request = NULL;
        a->request_len = 0;
}

void approvals_free(Approval *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                approval_done(&a[i]);
        free(a);
}

static bool id_valid(const char *id) {
        if (!id || strlen(id) != APPROVAL_ID_LEN)
                return false;
        for (const char *c = id; *c; c++)
                if (!strchr("0123456789abcdef", *c))
                        return false;
        return true;
}

/* Decodes one record; -EBADMSG if it is not a sound one. */
static int approval_from_object(const HsmDataObject *d, Approval *ret) {
        Kek__ApprovalRecord *rec = kek__approval_record__unpack(NULL, d->value_len, d->value);
        Approval a = { .handle = d->handle };
        int r = -EBADMSG;

        if (!rec)
                return -EBADMSG;
        if (rec->format != 1 || !rec->info || !id_valid(rec->info->id) || strcmp(rec->info->id, d->label) != 0 ||
            rec->request.len == 0)
                goto finish;
        snprintf(a.id, sizeof(a.id), "%s", rec->info->id);
        snprintf(a.op, sizeof(a.op), "%s", rec->info->op ?: "");
        snprintf(a.key, sizeof(a.key), "%s", rec->info->key ?: "");
        a.requester_uid = rec->info->requester_uid;
        a.requester_pid = rec->info->requester_pid;
        a.created_usec = rec->info->created_usec;
        a.expires_usec = rec->info->expires_usec;
        a.request = malloc(rec->request.len);
        if (!a.request) {
                r = -ENOMEM;
                goto finish;
        }
        memcpy(a.request, rec->request.data, rec->request.len);
        a.request_len = rec->request.len;
        *ret = a;
        r = 0;
finish:
        kek__approval_record__free_unpacked(rec, NULL);
        return r;
}

static int approval_cmp(const void *x, const void *y) {
        const Approval *a = x, *b = y;

        return a->created_usec < b->created_usec ? -1 : a->created_usec > b->created_usec ? 1 : strcmp(a->id, b->id);
}

/* Reads the records with label (NULL: all); destroys expired and unreadable ones. */
static int approvals_read(Hsm *h, const char *label, uint64_t now, Approval **ret, size_t *ret_n) {
        HsmDataObject *d = NULL;
        Approval *list;
        size_t n = 0, m = 0;
        uint64_t gen;
        int r;

        r = hsm_list_data(h, APP_APPROVAL, label, &d, &n);
        if (r < 0)
                return r;
        gen = hsm_generation(h);
        list = calloc(n ? n : 1, sizeof(*list));
        if (!list) {
                hsm_data_objects_free(d, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = approval_from_object(&d[i], &list[m]);
                if (r == -ENOMEM) {
                        approvals_free(list, m);
                        hsm_data_objects_free(d, n);
                        return r;
                }
                if (r < 0 || now >= list[m].expires_usec) {
                        /* Expired or unreadable: nobody can approve it any more. */
                        (void) hsm_destroy_listed(h, d[i].handle, gen);
                        if (r >= 0)
                                approval_done(&list[m]);
                        continue;
                }
                list[m].generation = gen;
                m++;
        }
        hsm_data_objects_free(d, n);
        qsort(list, m, sizeof(*list), approval_cmp);
        *ret = list;
        *ret_n = m;
        return 0;
}

int approval_list(Hsm *h, uint64_t now, Approval **ret, size_t *ret_n) {
        return approvals_read(h, NULL, now, ret, ret_n);
}

int approval_submit(Hsm *h, uint64_t now, Approval *a) {
        Kek__ApprovalRecord rec = KEK__APPROVAL_RECORD__INIT;
        Kek__ApprovalInfo info = KEK__APPROVAL_INFO__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        Approval *pending = NULL;
        uint8_t rnd[APPROVAL_ID_LEN / 2];
        size_t n = 0, len;
        int r;

        r = approval_list(h, now, &pending, &n);
        if (r < 0)
                return r;
        approvals_free(pending, n);
        if (n >= APPROVALS_MAX)
                return -KEKERR_LIMIT_EXCEEDED;
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                return -EIO;
        for (size_t i = 0; i < sizeof(rnd); i++)
                snprintf(a->id + 2 * i, 3, "%02x", rnd[i]);

        info.id = a->id;
        info.op = a->op;
        info.key = a->key;
        info.requester_uid = a->requester_uid;
        info.requester_pid = a->requester_pid;
        info.created_usec = a->created_usec;
        info.expires_usec = a->expires_usec;
        rec.format = 1;
        rec.info = &info;
        rec.request = (ProtobufCBinaryData) { a->request_len, a->request };
        len = kek__approval_record__get_packed_size(&rec);
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        kek__approval_record__pack(&rec, buf);
        r = hsm_create_data(h, APP_APPROVAL, a->id, buf, len, &a->handle);
        if (r >= 0)
                a->generation = hsm_generation(h);
        return r;
}

int approval_get(Hsm *h, const char *id, uint64_t now, Approval *ret) {
        Approval *list = NULL;
        size_t n = 0;
        int r;

        if (!id_valid(id))
                return -ENOENT;
        r = approvals_read(h, id, now, &list, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                approvals_free(list, n);
                return -ENOENT;
        }
        *ret = list[0];
        list[0] = (Approval) {};
        approvals_free(list, n);
        return 0;
}

int approval_claim(Hsm *h, const Approval *a) {
        return hsm_destroy_listed(h, a->handle, a->generation);
}
