/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Operation names (see opnames.h). One generic parser and formatter walk a
 * name table; the tables are the only place the names are written.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/macro.h"
#include "common/opnames.h"
#include "proto/kek.pb-c.h"

typedef struct OpName {
        uint32_t bit;
        const char *name;
} OpName;

static const OpName grant_ops[] = {
        { GRANT_GET, "get" },
        { GRANT_WRAP, "wrap" },
        { GRANT_UNWRAP, "unwrap" },
        { GRANT_REWRAP, "rewrap" },
};

static const OpName dual_control_ops[] = {
        { KEK__DUAL_CONTROL__DUAL_CONTROL_PURGE, "purge" },
        { KEK__DUAL_CONTROL__DUAL_CONTROL_DELETE, "delete" },
        { KEK__DUAL_CONTROL__DUAL_CONTROL_LAST_GRANT, "last-grant" },
        { KEK__DUAL_CONTROL__DUAL_CONTROL_VAULT_POLICY, "vault-policy" },
        { KEK__DUAL_CONTROL__DUAL_CONTROL_BACKUP, "backup" },
        { KEK__DUAL_CONTROL__DUAL_CONTROL_RESTORE, "restore" },
};

/* buf holds OP_NAMES_MAX bytes at least: every name of a table fits (checked by the unit test). */
static const char *bits_to_string(const OpName *t, size_t n, uint32_t bits, char *buf) {
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n; i++)
                if (bits & t[i].bit) {
                        size_t l = strlen(t[i].name);

                        if (len)
                                buf[len++] = ',';
                        memcpy(buf + len, t[i].name, l + 1);
                        len += l;
                }
        return buf;
}

static int bits_from_string(const OpName *t, size_t n, const char *s, uint32_t *ret) {
        uint32_t bits = 0;

        if (!s || !*s)
                return -EINVAL;
        while (*s) {
                size_t l = strcspn(s, ","), i;

                for (i = 0; i < n; i++)
                        if (strlen(t[i].name) == l && strncmp(s, t[i].name, l) == 0)
                                break;
                if (i == n)
                        return -EINVAL;
                bits |= t[i].bit;
                s += l;
                if (*s == ',' && *++s == 0)
                        return -EINVAL;
        }
        *ret = bits;
        return 0;
}

const char *grant_ops_to_string(uint32_t ops, char buf[static 32]) {
        return bits_to_string(grant_ops, ELEMENTSOF(grant_ops), ops, buf);
}

int grant_ops_from_string(const char *s, uint32_t *ret) {
        if (s && strcmp(s, "all") == 0) {
                *ret = GRANT_ALL;
                return 0;
        }
        return bits_from_string(grant_ops, ELEMENTSOF(grant_ops), s, ret);
}

const char *dual_control_to_string(uint32_t bits, char buf[static OP_NAMES_MAX]) {
        bits_to_string(dual_control_ops, ELEMENTSOF(dual_control_ops), bits, buf);
        return buf[0] ? buf : "none";
}

int dual_control_from_string(const char *s, uint32_t *ret) {
        if (s && strcmp(s, "none") == 0) {
                *ret = 0;
                return 0;
        }
        return bits_from_string(dual_control_ops, ELEMENTSOF(dual_control_ops), s, ret);
}

const char *grant_op_name_at(size_t i) {
        return i < ELEMENTSOF(grant_ops) ? grant_ops[i].name : NULL;
}

const char *dual_control_name_at(size_t i) {
        return i < ELEMENTSOF(dual_control_ops) ? dual_control_ops[i].name : NULL;
}
