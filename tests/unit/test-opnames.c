/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of common/opnames.c, the one table of grant operation names and
 * the one of dual-control names that kekd and kekctl share: formatting in
 * table order, parsing of comma lists with "all" and "none", the refusals
 * (unknown or empty items, empty input, NULL) that leave the output alone,
 * the wire values of the bits, and that every name of a table fits the
 * documented buffers.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/opnames.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"

static void test_grant_ops(void) {
        char buf[32];
        uint32_t ops = 0;
        size_t total = 0, n;

        is_int(GRANT_GET, KEK__GRANT_OP__GRANT_GET, "GRANT_GET is the wire's GrantOp value");
        is_int(GRANT_REWRAP, KEK__GRANT_OP__GRANT_REWRAP, "GRANT_REWRAP is the wire's GrantOp value");
        for (n = 0; grant_op_name_at(n); n++)
                total += strlen(grant_op_name_at(n)) + 1;
        is_int(n, 4, "four grant ops have a name");
        ok(total <= 32, "every grant op name, comma-separated, fits 32 bytes (%zu)", total);

        ok(strcmp(grant_ops_to_string(GRANT_ALL, buf), "get,wrap,unwrap,rewrap") == 0, "all ops: %s", buf);
        ok(strcmp(grant_ops_to_string(GRANT_UNWRAP | GRANT_WRAP, buf), "wrap,unwrap") == 0, "table order: %s", buf);
        ok(strcmp(grant_ops_to_string(0, buf), "") == 0, "no ops: empty");
        ok(strcmp(grant_ops_to_string(GRANT_GET | 0x100, buf), "get") == 0, "bits without a name are left out");

        is_int(grant_ops_from_string("all", &ops), 0, "'all' parses");
        is_int(ops, GRANT_ALL, "... to every op");
        is_int(grant_ops_from_string("rewrap,get", &ops), 0, "'rewrap,get' parses");
        is_int(ops, GRANT_REWRAP | GRANT_GET, "... to rewrap and get");
        for (n = 0; grant_op_name_at(n); n++) {
                is_int(grant_ops_from_string(grant_op_name_at(n), &ops), 0, "'%s' parses", grant_op_name_at(n));
                ok(strcmp(grant_ops_to_string(ops, buf), grant_op_name_at(n)) == 0, "... and formats back: %s", buf);
        }
        ops = 99;
        is_int(grant_ops_from_string("wrap,", &ops), -EINVAL, "a trailing comma: -EINVAL");
        is_int(grant_ops_from_string(",wrap", &ops), -EINVAL, "a leading comma: -EINVAL");
        is_int(grant_ops_from_string("wrap,,get", &ops), -EINVAL, "an empty item: -EINVAL");
        is_int(grant_ops_from_string("wrapx", &ops), -EINVAL, "an unknown name: -EINVAL");
        is_int(grant_ops_from_string("wra", &ops), -EINVAL, "a prefix of a name: -EINVAL");
        is_int(grant_ops_from_string("all,get", &ops), -EINVAL, "'all' only alone");
        is_int(grant_ops_from_string("none", &ops), -EINVAL, "'none' is no grant op");
        is_int(grant_ops_from_string("", &ops), -EINVAL, "empty: -EINVAL");
        is_int(grant_ops_from_string(NULL, &ops), -EINVAL, "NULL: -EINVAL");
        is_int(ops, 99, "... failures leave the output alone");
}

static void test_dual_control(void) {
        char buf[OP_NAMES_MAX];
        uint32_t bits = 0, all = KEK__DUAL_CONTROL__DUAL_CONTROL_PURGE | KEK__DUAL_CONTROL__DUAL_CONTROL_DELETE |
                                  KEK__DUAL_CONTROL__DUAL_CONTROL_LAST_GRANT | KEK__DUAL_CONTROL__DUAL_CONTROL_VAULT_POLICY |
                                  KEK__DUAL_CONTROL__DUAL_CONTROL_BACKUP | KEK__DUAL_CONTROL__DUAL_CONTROL_RESTORE;
        size_t total = 0, n;

        for (n = 0; dual_control_name_at(n); n++)
                total += strlen(dual_control_name_at(n)) + 1;
        is_int(n, 6, "six dual-control ops have a name (backup and restore: docs/backup.md)");
        ok(total <= OP_NAMES_MAX, "every dual-control name, comma-separated, fits OP_NAMES_MAX (%zu)", total);

        ok(strcmp(dual_control_to_string(all, buf), "purge,delete,last-grant,vault-policy,backup,restore") == 0, "all: %s",
           buf);
        is_int(dual_control_from_string("restore,backup", &bits), 0, "'restore,backup' parses");
        is_int(bits, KEK__DUAL_CONTROL__DUAL_CONTROL_BACKUP | KEK__DUAL_CONTROL__DUAL_CONTROL_RESTORE, "... to 16 | 32");
        ok(strcmp(dual_control_to_string(0, buf), "none") == 0, "0 shows as 'none'");
        ok(strcmp(dual_control_to_string(KEK__DUAL_CONTROL__DUAL_CONTROL_LAST_GRANT, buf), "last-grant") == 0,
           "one: %s", buf);

        is_int(dual_control_from_string("none", &bits), 0, "'none' parses");
        is_int(bits, 0, "... to 0");
        is_int(dual_control_from_string("vault-policy,purge", &bits), 0, "'vault-policy,purge' parses");
        is_int(bits, KEK__DUAL_CONTROL__DUAL_CONTROL_VAULT_POLICY | KEK__DUAL_CONTROL__DUAL_CONTROL_PURGE, "... to both bits");
        bits = 77;
        is_int(dual_control_from_string("", &bits), -EINVAL, "empty: -EINVAL");
        is_int(dual_control_from_string("purge,", &bits), -EINVAL, "a trailing comma: -EINVAL");
        is_int(dual_control_from_string("all", &bits), -EINVAL, "'all' is no dual-control name");
        is_int(dual_control_from_string("none,purge", &bits), -EINVAL, "'none' only alone");
        is_int(dual_control_from_string("wrap", &bits), -EINVAL, "a grant op is no dual-control op");
        is_int(bits, 77, "... failures leave the output alone");
}

int main(void) {
        test_grant_ops();
        test_dual_control();
        return tap_done();
}
