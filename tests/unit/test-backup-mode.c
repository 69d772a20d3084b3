/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backup mode trusted-wrap (docs/backup.md): the vault rule (one-way, a
 * weakening for dual control), the record of a version's form (format 3,
 * VersionInfo.wrap_with_trusted), and on a SoftHSM2 token the keys made in
 * each form, how the searches adopt them and what the unclassified report
 * says of them.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "common/secret.h"
#include "daemon/record.h"
#include "daemon/vault.h"
#include "pkcs11/hsm.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

static void test_weakens(void) {
        VaultPolicy none = { .retention_days = 90, .approval_window_sec = 3600 }, tw = none;
        VaultChange on = { .purge_protection = -1, .trusted_wrap = 1 }, off = { .purge_protection = -1, .trusted_wrap = 0 },
                    same = { .purge_protection = -1, .trusted_wrap = -1 };

        tw.trusted_wrap = true;
        ok(vault_change_weakens(&none, &on), "switching trusted-wrap on weakens the policy (dual control applies)");
        ok(!vault_change_weakens(&tw, &on), "asking for trusted-wrap again weakens nothing");
        ok(!vault_change_weakens(&none, &same), "leaving the mode unchanged weakens nothing");
        ok(!vault_change_weakens(&none, &off), "none on a none vault weakens nothing");
}

static void test_record(void) {
        KeyVersion vs[2] = {
                { .id = 1, .enabled = true, .profile = HSM_PROFILE_GCM },
                { .id = 2, .enabled = true, .profile = HSM_PROFILE_GCM, .wrap_with_trusted = true },
        };
        Key k = { .name = "bk", .current_version = 2, .state = KEY_ENABLED, .versions = vs, .n_versions = 2 };
        HsmDataObject d = { .label = "bk" };
        _cleanup_(key_freep) Key *back = NULL, *future = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Kek__KeyRecord *r;
        size_t len = 0;

        ok(key_to_record(&k, &buf, &len) == 0, "a record with a trusted-wrap version serialised");
        r = kek__key_record__unpack(NULL, len, buf);
        ok(r && r->format == 3, "... as format 3 (a kekd that predates backup modes refuses it whole)");
        ok(r && r->n_versions == 2 && !r->versions[0]->wrap_with_trusted && r->versions[1]->wrap_with_trusted,
           "... with VersionInfo.wrap_with_trusted on version 2 only");
        d.value = buf;
        d.value_len = len;
        ok(key_from_record(&d, &back) == 0 && back->n_versions == 2 && !back->versions[0].wrap_with_trusted &&
                   back->versions[1].wrap_with_trusted,
           "read back, each version keeps its form");
        if (r) {
                r->format = 5;
                len = kek__key_record__pack(r, buf);
                d.value_len = len;
                is_int(key_from_record(&d, &future), -EBADMSG, "a record of format 5 (a future kekd's) is refused");
                kek__key_record__free_unpacked(r, NULL);
        }
}

/* A restored version (docs/backup.md): format 4, which a kekd of format 3 refuses whole. */
static void test_record_restored(void) {
        KeyVersion vs[2] = {
                { .id = 1, .enabled = true, .profile = HSM_PROFILE_GCM, .restored = true },
                { .id = 2, .enabled = false, .profile = HSM_PROFILE_CTR_HMAC, .wrap_with_trusted = true, .restored = true },
        };
        Key k = { .name = "rs", .current_version = 1, .state = KEY_ENABLED, .versions = vs, .n_versions = 2 };
        HsmDataObject d = { .label = "rs" };
        _cleanup_(key_freep) Key *back = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Kek__KeyRecord *r;
        size_t len = 0;

        ok(key_to_record(&k, &buf, &len) == 0, "a record with restored versions serialised");
        r = kek__key_record__unpack(NULL, len, buf);
        ok(r && r->format == 4 && r->n_versions == 2 && r->versions[0]->restored && r->versions[1]->restored,
           "... as format 4, VersionInfo.restored on both");
        if (r)
                kek__key_record__free_unpacked(r, NULL);
        d.value = buf;
        d.value_len = len;
        ok(key_from_record(&d, &back) == 0 && back->versions[0].restored && back->versions[1].restored &&
                   back->versions[1].wrap_with_trusted && !back->versions[0].wrap_with_trusted,
           "read back: restored, each with its form");
}

static bool listed(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version, bool wrap_with_trusted) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(refs[i].label, label) == 0 && refs[i].version == version)
                        return refs[i].wrap_with_trusted == wrap_with_trusted;
        return false;
}

static void test_token(Hsm *h) {
        _cleanup_free_ HsmKeyRef *keys = NULL, *macs = NULL;
        _cleanup_free_ HsmKeyIssue *issues = NULL;
        size_t n_keys = 0, n_macs = 0, n_issues = 0;
        HsmObject plain, tw, mac, found;
        HsmKeyAttrs a;

        ok(hsm_generate_version_key(h, "k", 1, false, &plain) == 0, "a never-extractable version key");
        ok(hsm_generate_version_key(h, "k", 2, true, &tw) == 0, "a trusted-wrap version key");
        ok(hsm_generate_version_mac_key(h, "k", 2, true, &mac) == 0, "a trusted-wrap MAC key");
        ok(hsm_key_attributes(h, plain, &a) == 0 && a.sensitive && !a.extractable && a.never_extractable &&
                   !a.wrap_with_trusted && !a.value_readable,
           "mode none: sensitive, never extractable, no CKA_WRAP_WITH_TRUSTED");
        ok(hsm_key_attributes(h, tw, &a) == 0 && a.sensitive && a.always_sensitive && a.extractable &&
                   !a.never_extractable && a.wrap_with_trusted && !a.value_readable,
           "trusted-wrap: sensitive, always sensitive, extractable only with CKA_WRAP_WITH_TRUSTED, value unreadable");
        ok(hsm_key_attributes(h, mac, &a) == 0 && a.sensitive && a.always_sensitive && a.extractable &&
                   a.wrap_with_trusted && !a.value_readable,
           "the MAC key likewise");
        ok(hsm_find_key(h, "k", 2, &found) == 0 && found == tw, "hsm_find_key() adopts the trusted-wrap key");
        ok(hsm_find_key(h, "k", 1, &found) == 0 && found == plain, "... and still the never-extractable one");
        ok(hsm_find_mac_key(h, "k", 2, &found) == 0 && found == mac, "hsm_find_mac_key() adopts the trusted-wrap MAC key");
        ok(hsm_list_keys(h, &keys, &n_keys) == 0 && n_keys == 2 && listed(keys, n_keys, "k", 1, false) &&
                   listed(keys, n_keys, "k", 2, true),
           "hsm_list_keys() lists both forms, each marked");
        ok(hsm_list_mac_keys(h, &macs, &n_macs) == 0 && n_macs == 1 && listed(macs, n_macs, "k", 2, true),
           "hsm_list_mac_keys() lists the trusted-wrap MAC key");
        ok(hsm_list_unclassified(h, &issues, &n_issues) == 0 && n_issues == 0,
           "neither form is reported as unclassified");
        ok(hsm_destroy_version_keys(h, "k", 2) == 0 && hsm_find_key(h, "k", 2, &found) == -ENOENT &&
                   hsm_find_mac_key(h, "k", 2, &found) == -ENOENT,
           "hsm_destroy_version_keys() destroys trusted-wrap keys too");
}

static void test_vault(Hsm *h) {
        Vault v = {};
        VaultChange on = { .purge_protection = -1, .trusted_wrap = 1 }, off = { .purge_protection = -1, .trusted_wrap = 0 };
        Vault fresh = {};

        ok(vault_load(&v, h) == 0 && !v.policy.trusted_wrap, "a new vault is in mode none");
        ok(vault_set(&v, h, &on) == 0 && v.policy.trusted_wrap, "trusted-wrap switched on");
        is_int(vault_set(&v, h, &off), -KEKERR_PERMISSION_DENIED, "and never off again");
        ok(vault_load(&fresh, h) == 0 && fresh.policy.trusted_wrap, "another kekd reads trusted-wrap from the token");
}

int main(void) {
        _cleanup_secret_ Secret *pin = NULL;
        _cleanup_(hsm_freep) Hsm *h = NULL;
        const char *why = NULL;
        TestToken t;

        test_weakens();
        test_record();
        test_record_restored();
        if (token_setup(&t, "backup") < 0) {
                printf("Bail out! no SoftHSM2 token\n");
                return 99;
        }
        if (secret_heap_init(1 << 20) < 0 || secret_new_copy(t.pin, strlen(t.pin), &pin) < 0 ||
            hsm_open(t.module, t.uri, pin, &h, &why) < 0) {
                printf("Bail out! cannot open the token: %s\n", why ?: "?");
                return 99;
        }
        test_token(h);
        test_vault(h);
        h = hsm_free(h);
        token_done(&t);
        return tap_done();
}
