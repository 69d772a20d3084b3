/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Role and grant decisions (see access.h). Grants are a short list (at most
 * GRANTS_MAX per key) searched linearly: a key with more principals than
 * that should use a group.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/kekerr.h"
#include "daemon/access.h"
#include "daemon/record.h"

void peer_init(Peer *ret, const AccessConfig *a, uid_t uid, gid_t gid, pid_t pid, const gid_t *groups, size_t n) {
        Peer p = { .uid = uid, .gid = gid, .pid = pid };

        for (size_t i = 0; i < n && p.n_groups < PEER_GROUPS_MAX; i++)
                p.groups[p.n_groups++] = groups[i];
        p.superuser = uid == 0 || uid == a->self_uid;
        /* The primary group counts as much as the supplementary ones (i == n). */
        for (size_t i = 0; i <= n; i++) {
                gid_t g = i < n ? groups[i] : gid;

                if (a->admin_gid != (gid_t) -1 && g == a->admin_gid)
                        p.admin = true;
                if (a->officer_gid != (gid_t) -1 && g == a->officer_gid)
                        p.officer = true;
        }
        *ret = p;
}

bool peer_has_role(const Peer *p, Role role) {
        if (!p)
                return false;
        if (p->superuser)
                return true;
        switch (role) {
        case ROLE_CRYPTO_USER:
                return true; /* per key: grants_allow() decides */
        case ROLE_OFFICER:
                return p->officer || p->admin;
        case ROLE_ADMIN:
                return p->admin;
        }
        return false;
}

bool peer_in_group(const Peer *p, gid_t gid) {
        if (p->gid == gid)
                return true;
        for (unsigned i = 0; i < p->n_groups && i < PEER_GROUPS_MAX; i++)
                if (p->groups[i] == gid)
                        return true;
        return false;
}

bool grants_allow(const Grant *grants, size_t n, const Peer *p, uint32_t op) {
        if (!p)
                return false;
        if (p->superuser)
                return true;
        for (size_t i = 0; i < n; i++) {
                if (!(grants[i].ops & op))
                        continue;
                if (grants[i].group ? peer_in_group(p, (gid_t) grants[i].id) : grants[i].id == (uint32_t) p->uid)
                        return true;
        }
        return false;
}

int grants_apply(Grant **grants, size_t *n, const Grant *change, bool revoke) {
        Grant *g = *grants;
        size_t i;

        if (change->ops == 0 || (change->ops & ~(uint32_t) GRANT_ALL))
                return -EINVAL;
        for (i = 0; i < *n; i++)
                if (g[i].group == change->group && g[i].id == change->id)
                        break;
        if (revoke) {
                if (i == *n)
                        return -ENOENT;
                g[i].ops &= ~change->ops;
                if (g[i].ops == 0) {
                        memmove(&g[i], &g[i + 1], (*n - i - 1) * sizeof(*g));
                        (*n)--;
                }
                return 0;
        }
        if (i < *n) {
                g[i].ops |= change->ops;
                return 0;
        }
        if (*n >= GRANTS_MAX)
                return -E2BIG;
        g = reallocarray(g, *n + 1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g[*n] = *change;
        *grants = g;
        (*n)++;
        return 0;
}

bool access_may(const Peer *p, const struct Key *k, uint32_t ops) {
        if (peer_has_role(p, ROLE_OFFICER) && ops == GRANT_GET)
                return true; /* officers see every key's metadata, not its use */
        return k && grants_allow(k->grants, k->n_grants, p, ops);
}

bool access_sees(const Peer *p, const struct Key *k) {
        return k && (peer_has_role(p, ROLE_OFFICER) || access_may(p, k, GRANT_ALL));
}

int access_check_key(const Peer *p, const struct Key *k, uint32_t op) {
        if (p && p->superuser)
                return 0;
        return access_may(p, k, op) ? 0 : -KEKERR_PERMISSION_DENIED;
}

const char *access_role_text(Role role) {
        return role == ROLE_ADMIN ? "an administrator: root, kekd's user or a member of [access] admin_group"
                                  : "a key officer: root, kekd's user, or a member of [access] officer_group or admin_group";
}

const char *access_op_name(uint32_t op) {
        return op == GRANT_WRAP ? "wrap" : op == GRANT_UNWRAP ? "unwrap" : op == GRANT_REWRAP ? "rewrap" : op == GRANT_GET ? "get" : "";
}
