/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit records (see audit.h). Data-plane counts live in a fixed-size
 * open-addressing table; when it is three quarters full it is flushed early,
 * so memory is bounded whatever the mix of keys and peers, and no count is
 * dropped.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/audit.h"
#include "daemon/log.h"
#include "proto/blob.h"

#define AUDIT_SLOTS 1024u
#define AUDIT_FLUSH_AT (AUDIT_SLOTS * 3 / 4)

typedef struct AuditEntry {
        const char *op;          /* static string from the dispatch table; NULL: free slot */
        char key[KEY_NAME_MAX + 1];
        uint32_t version;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int result;
        uint64_t count;
} AuditEntry;

struct Audit {
        AuditEntry *slots;
        unsigned used;
        uint64_t pending;
};

int audit_new(Audit **ret) {
        Audit *a = calloc(1, sizeof(*a));

        if (!a || !(a->slots = calloc(AUDIT_SLOTS, sizeof(AuditEntry)))) {
                free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

Audit *audit_free(Audit *a) {
        if (!a)
                return NULL;
        free(a->slots);
        free(a);
        return NULL;
}

static const char *result_text(int result) {
        return result == 0 ? "OK" : error_text(result);
}

static bool is_refusal(int result) {
        return result == -KEKERR_PERMISSION_DENIED || result == -KEKERR_APPROVAL_REQUIRED ||
               result == -KEKERR_LIMIT_EXCEEDED;
}

static void audit_write(const char *message_id, int level, const Peer *p, const char *op, const char *key,
                        uint32_t version, int result, uint64_t count, const AuditApproval *approval) {
        char mid[64], f_op[64], f_key[32 + KEY_NAME_MAX], f_ver[32], f_uid[32], f_gid[32], f_pid[32], f_res[64],
                f_count[48], f_appr[96], f_req[48];
        const char *fields[12] = { mid, f_op, f_key, f_ver, f_uid, f_gid, f_pid, f_res };
        size_t n = 8;

        snprintf(mid, sizeof(mid), "MESSAGE_ID=%s", message_id);
        snprintf(f_op, sizeof(f_op), "KEK_OP=%s", op);
        snprintf(f_key, sizeof(f_key), "KEK_KEY=%s", key ? key : "");
        snprintf(f_ver, sizeof(f_ver), "KEK_VERSION=%u", version);
        snprintf(f_uid, sizeof(f_uid), "PEER_UID=%u", (unsigned) p->uid);
        snprintf(f_gid, sizeof(f_gid), "PEER_GID=%u", (unsigned) p->gid);
        snprintf(f_pid, sizeof(f_pid), "PEER_PID=%d", (int) p->pid);
        snprintf(f_res, sizeof(f_res), "RESULT=%s", result_text(result));
        if (count > 0) {
                snprintf(f_count, sizeof(f_count), "KEK_COUNT=%llu", (unsigned long long) count);
                fields[n++] = f_count;
        }
        if (approval && approval->id) {
                snprintf(f_appr, sizeof(f_appr), "KEK_APPROVAL_ID=%s", approval->id);
                snprintf(f_req, sizeof(f_req), "KEK_REQUESTER_UID=%u", approval->requester_uid);
                fields[n++] = f_appr;
                fields[n++] = f_req;
        }
        fields[n] = NULL;
        if (count > 0)
                log_full(level | LOG_FORCE, 0, fields, "audit: %s of key '%s' by uid %u: %s x%llu", op, key ? key : "",
                         (unsigned) p->uid, result_text(result), (unsigned long long) count);
        else
                log_full(level | LOG_FORCE, 0, fields, "audit: %s%s%s%s by uid %u: %s", op, key && key[0] ? " of key '" : "",
                         key ? key : "", key && key[0] ? "'" : "", (unsigned) p->uid, result_text(result));
}

void audit_control(Audit *a, const Peer *p, const char *op, const char *key, uint32_t version, int result,
                   const AuditApproval *approval) {
        if (!a || !p)
                return;
        audit_write(is_refusal(result) ? AUDIT_MESSAGE_ID_REFUSAL : AUDIT_MESSAGE_ID_CONTROL,
                    is_refusal(result) || result < 0 ? LOG_WARNING : LOG_NOTICE, p, op, key, version, result, 0,
                    approval);
}

static uint32_t entry_hash(const char *op, const char *key, uint32_t version, const Peer *p, int result) {
        uint32_t h = 2166136261u; /* FNV-1a: the fields are short; this only spreads slots */

        for (const char *c = key; *c; c++)
                h = (h ^ (uint8_t) *c) * 16777619u;
        h = (h ^ (uint32_t) (uintptr_t) op) * 16777619u;
        h = (h ^ version) * 16777619u;
        h = (h ^ (uint32_t) p->uid) * 16777619u;
        h = (h ^ (uint32_t) p->pid) * 16777619u;
        h = (h ^ (uint32_t) result) * 16777619u;
        return h;
}

void audit_data(Audit *a, const Peer *p, const char *op, const char *key, uint32_t version, int result) {
        uint32_t i;

        if (!a || !p)
                return;
        if (is_refusal(result)) {
                audit_control(a, p, op, key, version, result, NULL);
                return;
        }
        if (a->used >= AUDIT_FLUSH_AT)
                (void) audit_flush(a);
        for (i = entry_hash(op, key, version, p, result) % AUDIT_SLOTS;; i = (i + 1) % AUDIT_SLOTS) {
                AuditEntry *e = &a->slots[i];

                if (!e->op) {
                        *e = (AuditEntry) { .op = op, .version = version, .uid = p->uid, .gid = p->gid, .pid = p->pid,
                                            .result = result };
                        snprintf(e->key, sizeof(e->key), "%s", key);
                        a->used++;
                }
                if (e->op == op && e->version == version && e->uid == p->uid && e->pid == p->pid &&
                    e->result == result && strcmp(e->key, key) == 0) {
                        e->count++;
                        a->pending++;
                        return;
                }
        }
}

int audit_flush(Audit *a) {
        int n = 0;

        if (!a || a->used == 0)
                return 0;
        for (uint32_t i = 0; i < AUDIT_SLOTS; i++) {
                AuditEntry *e = &a->slots[i];
                Peer p;

                if (!e->op)
                        continue;
                p = (Peer) { .uid = e->uid, .gid = e->gid, .pid = e->pid };
                audit_write(AUDIT_MESSAGE_ID_DATA, e->result == 0 ? LOG_INFO : LOG_WARNING, &p, e->op, e->key,
                            e->version, e->result, e->count, NULL);
                *e = (AuditEntry) {};
                n++;
        }
        a->used = 0;
        a->pending = 0;
        return n;
}

uint64_t audit_pending(const Audit *a) {
        return a ? a->pending : 0;
}
