/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/backup-file.c, no token: a framed file parses back
 * with its keys, records and wrapped versions; every truncation, a byte
 * appended, bad magic, a length that lies, an unknown format or mechanism,
 * a record that is not sound, a wrapped version its record does not name or
 * names twice, a MAC key on a profile without one, a wrapped key too long,
 * and a key twice are each refused with a reason. A byte flipped anywhere in
 * the body either is refused here or parses to different content (the tag,
 * checked in the token, catches the rest: tests/unit/test-hsm-transfer.c
 * and tests/integration/dr.sh).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backup-file.h"
#include "tests/lib/tap.h"

static uint8_t wrapped[40] = { 0xa6, 0x59, 0x59, 0xa6 };
static uint8_t mac_wrapped[40] = { 0x11 };

/* A packed record of key name with versions 1..n (profile p), current n. */
static ProtobufCBinaryData record(const char *name, uint32_t n, HsmProfile p) {
        KeyVersion vs[4] = {};
        Key k = { .current_version = n, .state = KEY_ENABLED, .versions = vs, .n_versions = n };
        uint8_t *buf = NULL;
        size_t len = 0;

        snprintf(k.name, sizeof(k.name), "%s", name);
        for (uint32_t i = 0; i < n; i++)
                vs[i] = (KeyVersion) { .id = i + 1, .enabled = true, .profile = p, .wrap_with_trusted = true };
        (void) key_to_record(&k, &buf, &len);
        return (ProtobufCBinaryData) { .len = len, .data = buf };
}

typedef struct Fixture {
        Kek__BackupFile b;
        Kek__BackupKey keys[2], *kp[2];
        Kek__BackupVersion vers[4], *vp0[2], *vp1[2];
        Kek__VaultRecord vault;
} Fixture;

static void fixture(Fixture *f) {
        kek__backup_file__init(&f->b);
        kek__vault_record__init(&f->vault);
        f->b.format = BACKUP_FORMAT;
        f->b.mechanism = BACKUP_MECHANISM_AES_KWP;
        f->b.mac_key = (ProtobufCBinaryData) { sizeof(wrapped), wrapped };
        f->b.vault = &f->vault;
        for (int i = 0; i < 4; i++) {
                kek__backup_version__init(&f->vers[i]);
                f->vers[i].id = (uint32_t) (i % 2) + 1;
                f->vers[i].aes_key = (ProtobufCBinaryData) { sizeof(wrapped), wrapped };
        }
        /* Key "a": gcm, versions 1 and 2. Key "b": ctr-hmac, versions 1 and 2, with MAC keys. */
        f->vers[2].mac_key = f->vers[3].mac_key = (ProtobufCBinaryData) { sizeof(mac_wrapped), mac_wrapped };
        for (int i = 0; i < 2; i++) {
                kek__backup_key__init(&f->keys[i]);
                f->kp[i] = &f->keys[i];
        }
        f->vp0[0] = &f->vers[0];
        f->vp0[1] = &f->vers[1];
        f->vp1[0] = &f->vers[2];
        f->vp1[1] = &f->vers[3];
        f->keys[0].record = record("a", 2, HSM_PROFILE_GCM);
        f->keys[0].versions = f->vp0;
        f->keys[0].n_versions = 2;
        f->keys[1].record = record("b", 2, HSM_PROFILE_CTR_HMAC);
        f->keys[1].versions = f->vp1;
        f->keys[1].n_versions = 2;
        f->b.keys = f->kp;
        f->b.n_keys = 2;
}

static void fixture_done(Fixture *f) {
        free(f->keys[0].record.data);
        free(f->keys[1].record.data);
}

/* The file of f with a tag of 0x5a bytes. */
static uint8_t *file_of(const Fixture *f, size_t *ret_len) {
        uint8_t *buf = NULL;
        size_t len = 0;

        if (backup_file_frame(&f->b, &buf, &len) < 0)
                return NULL;
        memset(buf + len, 0x5a, HSM_TRANSFER_TAG_SIZE);
        *ret_len = len + HSM_TRANSFER_TAG_SIZE;
        return buf;
}

/* Parses buf; on success frees the contents; returns the result, *why the reason. */
static int parse(const uint8_t *buf, size_t len, const char **why) {
        BackupContents c = {};
        int r;

        *why = "";
        r = backup_file_parse(buf, len, &c, why);
        backup_contents_done(&c);
        return r;
}

static void test_round_trip(void) {
        Fixture f;
        _cleanup_free_ uint8_t *buf = NULL;
        BackupContents c = {};
        const char *why = NULL;
        size_t len = 0;

        fixture(&f);
        buf = file_of(&f, &len);
        if (!ok(buf != NULL, "a file framed"))
                return;
        ok(memcmp(buf, BACKUP_MAGIC, BACKUP_MAGIC_LEN) == 0, "it starts with the magic");
        /* The fuzzer's seed (tests/fuzz/corpus-backup/two-keys) is this file: BACKUP_FILE_SEED=PATH writes it. */
        if (getenv("BACKUP_FILE_SEED")) {
                FILE *s = fopen(getenv("BACKUP_FILE_SEED"), "we");

                if (s) {
                        fwrite(buf, 1, len, s);
                        fclose(s);
                }
        }
        if (ok(backup_file_parse(buf, len, &c, &why) == 0, "and parses back")) {
                ok(c.n_keys == 2 && strcmp(c.keys[0].key->name, "a") == 0 && strcmp(c.keys[1].key->name, "b") == 0,
                   "two keys, sorted by name");
                ok(c.keys[1].n_versions == 2 && c.keys[1].versions[0].mac_key != NULL &&
                           c.keys[1].versions[0].aes_key_len == sizeof(wrapped),
                   "key b's versions carry their AES and MAC keys");
                ok(backup_entry_version(&c.keys[0], 2) != NULL && backup_entry_version(&c.keys[0], 3) == NULL,
                   "versions are looked up by id");
                ok(c.signed_len == len - HSM_TRANSFER_TAG_SIZE && c.tag == buf + c.signed_len,
                   "the tag covers magic, length and body");
        }
        backup_contents_done(&c);
        fixture_done(&f);
}

static void test_bounds(void) {
        Fixture f;
        _cleanup_free_ uint8_t *buf = NULL, *longer = NULL;
        const char *why;
        size_t len = 0;
        bool all = true;

        fixture(&f);
        buf = file_of(&f, &len);
        if (!buf)
                return;
        for (size_t n = 0; n < len; n++)
                if (parse(buf, n, &why) != -EBADMSG)
                        all = false;
        ok(all, "every truncation (0 .. %zu bytes) is refused", len - 1);
        ok(parse(buf, len - 1, &why) == -EBADMSG && strcmp(why, "truncated") == 0, "... as truncated (%s)", why);
        longer = malloc(len + 1);
        memcpy(longer, buf, len);
        longer[len] = 0;
        is_int(parse(longer, len + 1, &why), -EBADMSG, "a byte appended is refused");
        ok(strcmp(why, "trailing bytes after the tag") == 0, "... with its reason (%s)", why);
        buf[0] ^= 1;
        is_int(parse(buf, len, &why), -EBADMSG, "bad magic is refused");
        buf[0] ^= 1;
        buf[11] ^= 1;
        is_int(parse(buf, len, &why), -EBADMSG, "a length field that lies is refused");
        buf[11] ^= 1;
        is_int(parse(buf, len, &why), 0, "the file untouched still parses");
        fixture_done(&f);
}

/* Refusals of content: each made from a fresh fixture changed by one field. */
static void test_content(void) {
        static const struct {
                const char *what;
                int change;
        } cases[] = {
                { "an unknown format", 0 },
                { "an unknown mechanism", 1 },
                { "no transfer MAC key", 2 },
                { "a wrapped version its record does not name", 3 },
                { "a version carried twice", 4 },
                { "a MAC key on a gcm version", 5 },
                { "a ctr-hmac version without its MAC key", 6 },
                { "a wrapped key longer than any", 7 },
                { "a key twice", 8 },
                { "a record that does not decode", 9 },
                { "an empty wrapped key", 10 },
        };
        static uint8_t big[HSM_TRANSFER_WRAPPED_MAX + 1];
        static uint8_t junk[] = { 0xff, 0xff, 0xff };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Fixture f;
                _cleanup_free_ uint8_t *buf = NULL;
                ProtobufCBinaryData saved;
                const char *why;
                size_t len = 0;
                int r;

                fixture(&f);
                saved = f.keys[1].record;
                switch (cases[i].change) {
                case 0: f.b.format = 2; break;
                case 1: f.b.mechanism = 2; break;
                case 2: f.b.mac_key.len = 0; break;
                case 3: f.vers[1].id = 7; break;
                case 4: f.vers[1].id = 1; break;
                case 5: f.vers[0].mac_key = (ProtobufCBinaryData) { sizeof(mac_wrapped), mac_wrapped }; break;
                case 6: f.vers[3].mac_key.len = 0; break;
                case 7: f.vers[0].aes_key = (ProtobufCBinaryData) { sizeof(big), big }; break;
                case 8: f.keys[1].record = f.keys[0].record; f.vp1[0] = &f.vers[0]; f.vp1[1] = &f.vers[1]; break;
                case 9: f.keys[1].record = (ProtobufCBinaryData) { sizeof(junk), junk }; break;
                case 10: f.vers[0].aes_key.len = 0; break;
                }
                buf = file_of(&f, &len);
                r = buf ? parse(buf, len, &why) : -ENOMEM;
                is_int(r, -EBADMSG, "%s is refused", cases[i].what);
                if (r == -EBADMSG)
                        diag("reason: %s", why);
                f.keys[1].record = saved;
                fixture_done(&f);
        }
}

/* A flipped body byte: refused here, or content that differs (and a tag that would not verify). */
static void test_flips(void) {
        Fixture f;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0, refused = 0, parsed = 0;
        const char *why;

        fixture(&f);
        buf = file_of(&f, &len);
        if (!buf)
                return;
        for (size_t i = BACKUP_HEADER_LEN; i < len - HSM_TRANSFER_TAG_SIZE; i++) {
                buf[i] ^= 0x01;
                if (parse(buf, len, &why) < 0)
                        refused++;
                else
                        parsed++;
                buf[i] ^= 0x01;
        }
        ok(refused + parsed == len - HSM_TRANSFER_TAG_SIZE - BACKUP_HEADER_LEN && refused > 0,
           "every body byte flipped: no crash; %zu refused by the parser, %zu left to the tag", refused, parsed);
        fixture_done(&f);
}

int main(void) {
        test_round_trip();
        test_bounds();
        test_content();
        test_flips();
        return tap_done();
}
