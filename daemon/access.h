/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may do what. A peer is identified by its Unix socket credentials
 * (SO_PEERCRED, SO_PEERGROUPS), read by the transport when it connects; the
 * roles below are decided then (peer_init), from kekd's [access] configuration. Per-key
 * grants decide the data plane. Everything here is pure, so the decisions
 * are unit tested without a socket.
 *
 * Roles (kekd.conf(5), kekctl(8)):
 *   superuser   root and kekd's own user: every operation on every key.
 *               They can read the PIN and the token anyway; refusing them
 *               would be theatre, not protection.
 *   admin       [access] admin_group: vault policy, grants, and everything
 *               an officer may do.
 *   officer     [access] officer_group: key lifecycle (create, rotate,
 *               disable, delete, recover, purge), check, status, approvals.
 *   crypto user anyone the socket lets in: get, wrap, unwrap and rewrap,
 *               only on keys with a matching grant. Officers and admins
 *               are crypto users of a key only through a grant too:
 *               managing keys and using them are separate duties.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/opnames.h"   /* GRANT_* bits and their names */

#define PEER_GROUPS_MAX 64u
#define GRANTS_MAX 64u

typedef struct Grant {
        bool group;
        uint32_t id;       /* uid, or gid when group */
        uint32_t ops;      /* GRANT_* bits, never 0 in a stored grant */
} Grant;

typedef struct Peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t groups[PEER_GROUPS_MAX];   /* supplementary groups, as far as they fit */
        unsigned n_groups;
        bool superuser;
        bool admin;
        bool officer;
} Peer;

typedef enum Role {
        ROLE_CRYPTO_USER,  /* data plane; per key through grants */
        ROLE_OFFICER,      /* key lifecycle */
        ROLE_ADMIN,        /* vault policy, grants */
} Role;

/* Who kekd itself is, and its [access] groups ((gid_t) -1: none configured). */
typedef struct AccessConfig {
        uid_t self_uid;
        gid_t admin_gid;
        gid_t officer_gid;
} AccessConfig;

/*
 * A peer from its socket credentials: superuser for uid 0 and kekd's own
 * user; admin or officer when its primary group or any of its supplementary
 * groups is the configured one. All n groups count for the roles; the first
 * PEER_GROUPS_MAX are kept for group grants.
 */
void peer_init(Peer *ret, const AccessConfig *a, uid_t uid, gid_t gid, pid_t pid, const gid_t *groups, size_t n);

bool peer_has_role(const Peer *p, Role role);
bool peer_in_group(const Peer *p, gid_t gid);

/* Whether the grants let p do op (one GRANT_* bit). Superusers need no grant. */
bool grants_allow(const Grant *grants, size_t n, const Peer *p, uint32_t op);

/*
 * Adds change->ops to the grant of change's principal (creating it), or with
 * revoke removes them (deleting a grant left with no ops). *grants is
 * reallocated as needed. -EINVAL for no ops or bits outside GRANT_ALL,
 * -E2BIG past GRANTS_MAX, -ENOENT when revoking from a principal without a
 * grant.
 */
int grants_apply(Grant **grants, size_t *n, const Grant *change, bool revoke);

/*
 * Decisions on one key (k NULL: no such key). All of kekd's access rules on
 * keys are these three; the dispatcher and the Watch stream only ask.
 */
struct Key;
/* Whether p may see (GRANT_GET) or use (other GRANT_* bits, any of them) k; officers see every key's metadata. */
bool access_may(const Peer *p, const struct Key *k, uint32_t ops);
/* Whether p hears of k on the Watch stream: officers of every key, others of keys they hold any grant on. */
bool access_sees(const Peer *p, const struct Key *k);
/*
 * The data-plane and read check of a request: superusers always, else
 * access_may(). A key that does not exist is refused like one without a
 * grant, so a peer cannot probe which names exist. 0 or -KEKERR_PERMISSION_DENIED.
 */
int access_check_key(const Peer *p, const struct Key *k, uint32_t op);

/* Who has role, for a refusal's message. */
const char *access_role_text(Role role);
/* "wrap", "unwrap", "rewrap" or "get" for one GRANT_* bit, "" for several. */
const char *access_op_name(uint32_t op);
