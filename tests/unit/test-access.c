/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/access.c, without a socket: roles from a peer's uid,
 * primary and supplementary groups (peer_init), what each role may do
 * (peer_has_role), grants_allow() for each operation and each kind of
 * principal (user, group through the primary or a supplementary group),
 * superusers, and the refusals: no grant, a grant of another operation, to
 * another principal, a uid that equals a granted gid. Then grants_apply()
 * (merge, revoke, limits) and the ops names.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/kekerr.h"
#include "daemon/access.h"
#include "daemon/record.h"
#include "tests/lib/tap.h"

#define SELF_UID 990u
#define ADMIN_GID 2000u
#define OFFICER_GID 2001u
#define USERS_GID 3000u

static const AccessConfig cfg = { .self_uid = SELF_UID, .admin_gid = ADMIN_GID, .officer_gid = OFFICER_GID };

static const uint32_t all_ops[] = { GRANT_GET, GRANT_WRAP, GRANT_UNWRAP, GRANT_REWRAP };

static Peer peer(uid_t uid, gid_t gid, const gid_t *groups, size_t n) {
        Peer p;

        memset(&p, 0xaa, sizeof(p)); /* peer_init must set every field it uses */
        peer_init(&p, &cfg, uid, gid, 4242, groups, n);
        return p;
}

static void test_roles(void) {
        const gid_t officer_groups[] = { 100, OFFICER_GID };
        const gid_t admin_groups[] = { ADMIN_GID };
        const gid_t other_groups[] = { 100, 101, USERS_GID };
        gid_t many[PEER_GROUPS_MAX + 8];
        Peer p;

        p = peer(1000, 1000, NULL, 0);
        is_int(p.uid, 1000, "uid is kept");
        is_int(p.gid, 1000, "gid is kept");
        is_int(p.pid, 4242, "pid is kept");
        is_int(p.n_groups, 0, "no supplementary groups");
        ok(!p.superuser && !p.admin && !p.officer, "a plain user has no role flag");
        ok(peer_has_role(&p, ROLE_CRYPTO_USER), "a plain user is a crypto user");
        ok(!peer_has_role(&p, ROLE_OFFICER), "a plain user is no officer");
        ok(!peer_has_role(&p, ROLE_ADMIN), "a plain user is no admin");

        p = peer(0, 0, NULL, 0);
        ok(p.superuser, "uid 0 is a superuser");
        ok(!p.admin && !p.officer, "... without the group flags");
        ok(peer_has_role(&p, ROLE_OFFICER) && peer_has_role(&p, ROLE_ADMIN), "... and has every role");

        p = peer(SELF_UID, SELF_UID, NULL, 0);
        ok(p.superuser, "kekd's own uid is a superuser");
        ok(peer_has_role(&p, ROLE_ADMIN), "... and an admin");
        p = peer(SELF_UID + 1, SELF_UID, NULL, 0);
        ok(!p.superuser, "kekd's gid with another uid is no superuser");

        p = peer(1001, 1001, officer_groups, ELEMENTSOF(officer_groups));
        ok(p.officer && !p.admin, "officer_group as a supplementary group: officer");
        is_int(p.n_groups, 2, "... both supplementary groups are kept");
        ok(peer_has_role(&p, ROLE_OFFICER), "... has the officer role");
        ok(!peer_has_role(&p, ROLE_ADMIN), "... not the admin role");

        p = peer(1002, OFFICER_GID, NULL, 0);
        ok(p.officer, "officer_group as the primary group: officer");

        p = peer(1003, 1003, admin_groups, ELEMENTSOF(admin_groups));
        ok(p.admin && !p.officer, "admin_group as a supplementary group: admin");
        ok(peer_has_role(&p, ROLE_ADMIN) && peer_has_role(&p, ROLE_OFFICER), "... an admin is an officer too");
        p = peer(1004, ADMIN_GID, NULL, 0);
        ok(p.admin, "admin_group as the primary group: admin");

        p = peer(1005, 1005, other_groups, ELEMENTSOF(other_groups));
        ok(!p.admin && !p.officer && !p.superuser, "other groups give no role");
        p = peer(ADMIN_GID, OFFICER_GID - 100, NULL, 0);
        ok(!p.admin, "a uid equal to admin_group's gid is no admin");

        /* Beyond what Peer keeps: the role still counts, the kept list stops at PEER_GROUPS_MAX. */
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = 5000 + (gid_t) i;
        many[ELEMENTSOF(many) - 1] = OFFICER_GID;
        p = peer(1006, 1006, many, ELEMENTSOF(many));
        is_int(p.n_groups, PEER_GROUPS_MAX, "more groups than kept: %u kept", PEER_GROUPS_MAX);
        ok(p.officer, "... officer_group past the kept ones still makes an officer");
        ok(peer_in_group(&p, 5000) && peer_in_group(&p, 5000 + PEER_GROUPS_MAX - 1), "... the first ones are kept");
        ok(!peer_in_group(&p, OFFICER_GID), "... the one past the limit is not kept for grants");

        /* No [access] groups configured: (gid_t) -1 matches nobody, not even gid -1. */
        {
                const AccessConfig none = { .self_uid = SELF_UID, .admin_gid = (gid_t) -1, .officer_gid = (gid_t) -1 };
                const gid_t g[] = { (gid_t) -1 };

                peer_init(&p, &none, 1007, (gid_t) -1, 1, g, 1);
                ok(!p.admin && !p.officer, "unconfigured groups give no role, even to gid -1");
        }

        ok(!peer_has_role(NULL, ROLE_CRYPTO_USER), "no peer has no role");
}

static void test_in_group(void) {
        const gid_t groups[] = { 10, 20 };
        Peer p = peer(1000, 30, groups, ELEMENTSOF(groups));

        ok(peer_in_group(&p, 30), "the primary group counts");
        ok(peer_in_group(&p, 10) && peer_in_group(&p, 20), "the supplementary groups count");
        ok(!peer_in_group(&p, 40), "another group does not");
        ok(!peer_in_group(&p, 1000), "the uid is not a group");
}

static void test_grants_allow(void) {
        const gid_t groups[] = { USERS_GID };
        const Grant grants[] = {
                { .group = false, .id = 1000, .ops = GRANT_WRAP },
                { .group = true, .id = USERS_GID, .ops = GRANT_UNWRAP | GRANT_GET },
                { .group = false, .id = 1001, .ops = GRANT_ALL },
                { .group = true, .id = 1002, .ops = GRANT_REWRAP }, /* a gid equal to a uid below */
        };
        Peer user = peer(1000, 1000, NULL, 0);              /* wrap through its uid */
        Peer member = peer(1100, 1100, groups, 1);          /* unwrap, get through a supplementary group */
        Peer primary = peer(1101, USERS_GID, NULL, 0);      /* the same through its primary group */
        Peer both = peer(1000, 1000, groups, 1);            /* user and member: the union */
        Peer everything = peer(1001, 1001, NULL, 0);
        Peer uid_like_gid = peer(1002, 1002 + 1, NULL, 0);  /* uid 1002 is not group 1002 */
        Peer stranger = peer(1200, 1200, NULL, 0);
        Peer root = peer(0, 0, NULL, 0);
        const gid_t officer_groups[] = { OFFICER_GID }, admin_groups[] = { ADMIN_GID };
        Peer officer = peer(1300, 1300, officer_groups, 1);
        Peer admin = peer(1301, 1301, admin_groups, 1);
        const size_t n = ELEMENTSOF(grants);

        ok(grants_allow(grants, n, &user, GRANT_WRAP), "user grant: wrap allowed");
        ok(!grants_allow(grants, n, &user, GRANT_UNWRAP), "user grant: unwrap refused");
        ok(!grants_allow(grants, n, &user, GRANT_GET), "user grant: get refused");
        ok(!grants_allow(grants, n, &user, GRANT_REWRAP), "user grant: rewrap refused");
        ok(grants_allow(grants, n, &user, GRANT_ALL), "user grant: 'any grant' (GRANT_ALL) allowed");

        ok(grants_allow(grants, n, &member, GRANT_UNWRAP), "supplementary group grant: unwrap allowed");
        ok(grants_allow(grants, n, &member, GRANT_GET), "supplementary group grant: get allowed");
        ok(!grants_allow(grants, n, &member, GRANT_WRAP), "supplementary group grant: wrap refused");
        ok(!grants_allow(grants, n, &member, GRANT_REWRAP), "supplementary group grant: rewrap refused");
        ok(grants_allow(grants, n, &primary, GRANT_UNWRAP), "primary group grant: unwrap allowed");
        ok(!grants_allow(grants, n, &primary, GRANT_WRAP), "primary group grant: wrap refused");

        ok(grants_allow(grants, n, &both, GRANT_WRAP) && grants_allow(grants, n, &both, GRANT_UNWRAP),
           "user and group grants add up");
        ok(!grants_allow(grants, n, &both, GRANT_REWRAP), "... to no more than their union");

        for (size_t i = 0; i < ELEMENTSOF(all_ops); i++) {
                char buf[32];

                grant_ops_to_string(all_ops[i], buf);
                ok(grants_allow(grants, n, &everything, all_ops[i]), "grant 'all': %s allowed", buf);
                ok(!grants_allow(grants, n, &stranger, all_ops[i]), "no grant: %s refused", buf);
                ok(grants_allow(grants, n, &root, all_ops[i]), "superuser without grant: %s allowed", buf);
                ok(!grants_allow(NULL, 0, &stranger, all_ops[i]), "a key without grants: %s refused", buf);
                ok(grants_allow(NULL, 0, &root, all_ops[i]), "a key without grants: %s allowed to a superuser", buf);
                ok(!grants_allow(grants, n, &officer, all_ops[i]), "an officer without a grant: %s refused", buf);
                ok(!grants_allow(grants, n, &admin, all_ops[i]), "an admin without a grant: %s refused", buf);
        }
        ok(!grants_allow(grants, n, &stranger, GRANT_ALL), "no grant: 'any grant' refused");
        ok(!grants_allow(grants, n, &uid_like_gid, GRANT_REWRAP), "a group grant does not match a uid of that number");
        ok(!grants_allow(grants, n, NULL, GRANT_WRAP), "no peer: refused");
        ok(!grants_allow(grants, 1, &member, GRANT_UNWRAP), "only the first n grants are searched");
}

static void test_grants_apply(void) {
        Grant *g = NULL;
        size_t n = 0;
        Grant c;

        c = (Grant) { .group = false, .id = 1000, .ops = GRANT_WRAP };
        is_int(grants_apply(&g, &n, &c, false), 0, "grant wrap to uid 1000");
        is_int(n, 1, "... one grant");
        c.ops = GRANT_UNWRAP;
        is_int(grants_apply(&g, &n, &c, false), 0, "grant unwrap to uid 1000");
        is_int(n, 1, "... merged into the same grant");
        is_int(g[0].ops, GRANT_WRAP | GRANT_UNWRAP, "... with both ops");
        c = (Grant) { .group = true, .id = 1000, .ops = GRANT_GET };
        is_int(grants_apply(&g, &n, &c, false), 0, "grant get to gid 1000");
        is_int(n, 2, "... a group is another principal than the uid of that number");

        c = (Grant) { .group = false, .id = 1000, .ops = GRANT_WRAP };
        is_int(grants_apply(&g, &n, &c, true), 0, "revoke wrap from uid 1000");
        is_int(g[0].ops, GRANT_UNWRAP, "... unwrap stays");
        c.ops = GRANT_UNWRAP;
        is_int(grants_apply(&g, &n, &c, true), 0, "revoke unwrap from uid 1000");
        is_int(n, 1, "... the emptied grant goes");
        ok(g[0].group && g[0].id == 1000, "... the group grant stays");

        c = (Grant) { .group = false, .id = 1234, .ops = GRANT_WRAP };
        is_int(grants_apply(&g, &n, &c, true), -ENOENT, "revoke from a principal without a grant: -ENOENT");
        c.ops = 0;
        is_int(grants_apply(&g, &n, &c, false), -EINVAL, "no ops: -EINVAL");
        c.ops = 1u << 7;
        is_int(grants_apply(&g, &n, &c, false), -EINVAL, "unknown op bits: -EINVAL");
        is_int(n, 1, "... refused changes leave the grants alone");

        for (uint32_t id = 0; n < GRANTS_MAX; id++) {
                c = (Grant) { .group = false, .id = 20000 + id, .ops = GRANT_GET };
                if (grants_apply(&g, &n, &c, false) < 0)
                        break;
        }
        is_int(n, GRANTS_MAX, "grants up to GRANTS_MAX");
        c = (Grant) { .group = false, .id = 30000, .ops = GRANT_GET };
        is_int(grants_apply(&g, &n, &c, false), -E2BIG, "one more principal: -E2BIG");
        c = (Grant) { .group = false, .id = 20000, .ops = GRANT_WRAP };
        is_int(grants_apply(&g, &n, &c, false), 0, "... an existing principal may still get more ops");
        free(g);
}

static void test_names(void) {
        char buf[32];
        uint32_t ops = 0;

        ok(strcmp(grant_ops_to_string(GRANT_ALL, buf), "get,wrap,unwrap,rewrap") == 0, "all ops by name: %s", buf);
        ok(strcmp(grant_ops_to_string(GRANT_WRAP | GRANT_UNWRAP, buf), "wrap,unwrap") == 0, "two ops by name: %s", buf);
        ok(strcmp(grant_ops_to_string(0, buf), "") == 0, "no ops: empty");
        is_int(grant_ops_from_string("all", &ops), 0, "'all' parses");
        is_int(ops, GRANT_ALL, "... to every op");
        is_int(grant_ops_from_string("unwrap,get", &ops), 0, "'unwrap,get' parses");
        is_int(ops, GRANT_UNWRAP | GRANT_GET, "... to unwrap and get");
        ops = 99;
        is_int(grant_ops_from_string("wrap,", &ops), -EINVAL, "a trailing comma: -EINVAL");
        is_int(grant_ops_from_string("wrapx", &ops), -EINVAL, "an unknown name: -EINVAL");
        is_int(grant_ops_from_string("", &ops), -EINVAL, "empty: -EINVAL");
        is_int(grant_ops_from_string(NULL, &ops), -EINVAL, "NULL: -EINVAL");
        is_int(ops, 99, "... failures leave the output alone");
}

/*
 * The decisions on one key that the dispatcher's authorize phase and the
 * Watch stream ask (access_may, access_sees, access_check_key), which used
 * to be spread over dispatch.c and server.c.
 */
static void test_key_decisions(void) {
        Grant grants[] = { { .group = false, .id = 1000, .ops = GRANT_WRAP }, { .group = true, .id = USERS_GID, .ops = GRANT_GET } };
        Key k = { .grants = grants, .n_grants = ELEMENTSOF(grants) };
        const gid_t officer_groups[] = { OFFICER_GID };
        Peer user = peer(1000, 1000, NULL, 0), member = peer(1001, USERS_GID, NULL, 0), stranger = peer(1002, 1002, NULL, 0),
             officer = peer(1003, 1003, officer_groups, 1), root = peer(0, 0, NULL, 0);

        ok(access_may(&user, &k, GRANT_WRAP) && !access_may(&user, &k, GRANT_UNWRAP), "a user grant allows its op only");
        ok(access_may(&member, &k, GRANT_GET) && !access_may(&member, &k, GRANT_WRAP), "a group grant allows its op only");
        ok(!access_may(&stranger, &k, GRANT_ALL), "no grant: nothing");
        ok(access_may(&user, &k, GRANT_ALL), "GRANT_ALL asks for any one of the ops");
        ok(access_may(&officer, &k, GRANT_GET) && access_may(&officer, NULL, GRANT_GET),
           "officers may get any key's metadata, even of a key that is not there");
        ok(!access_may(&officer, &k, GRANT_WRAP) && !access_may(&officer, &k, GRANT_ALL),
           "but may not use a key without a grant");
        ok(!access_may(&user, NULL, GRANT_WRAP) && !access_may(&root, NULL, GRANT_WRAP),
           "access_may() of no key: no use for anyone (Watch: the key is gone)");

        ok(access_sees(&user, &k) && access_sees(&member, &k) && access_sees(&officer, &k) && !access_sees(&stranger, &k),
           "Watch: those with a grant and officers see a key, others do not");
        ok(!access_sees(&officer, NULL) && !access_sees(&root, NULL), "nobody sees a key that is not there");

        is_int(access_check_key(&root, NULL, GRANT_WRAP), 0, "superusers pass without a key lookup");
        is_int(access_check_key(&officer, NULL, GRANT_GET), 0, "officers' reads pass without a key lookup");
        is_int(access_check_key(&user, NULL, GRANT_WRAP), -KEKERR_PERMISSION_DENIED,
               "a key that is not there is refused like one without a grant (no probing)");
        is_int(access_check_key(&user, &k, GRANT_WRAP), 0, "a grant passes");
        is_int(access_check_key(&stranger, &k, GRANT_GET), -KEKERR_PERMISSION_DENIED, "no grant: PERMISSION_DENIED");
        is_int(access_check_key(NULL, &k, GRANT_GET), -KEKERR_PERMISSION_DENIED, "no peer: PERMISSION_DENIED");

        ok(strcmp(access_op_name(GRANT_WRAP), "wrap") == 0 && strcmp(access_op_name(GRANT_GET), "get") == 0 &&
                   strcmp(access_op_name(GRANT_ALL), "") == 0,
           "op names for refusals");
        ok(strstr(access_role_text(ROLE_ADMIN), "admin_group") && strstr(access_role_text(ROLE_OFFICER), "officer_group"),
           "role texts name the [access] setting");
}

int main(void) {
        test_key_decisions();
        test_roles();
        test_in_group();
        test_grants_allow();
        test_grants_apply();
        test_names();
        return tap_done();
}
