/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/keystore-records.c on a fresh SoftHSM2 token, with no
 * keystore above it: a name without records is UNKNOWN_KEY; a write creates
 * the next generation, names its parent as ancestor and destroys what it
 * replaced; a rival record of another writer (not built on ours) makes the
 * write withdraw and ask to be re-applied (-EAGAIN, reload flagged); a crash
 * between write and destroy (two records) is repaired by dropping the older;
 * a version's key objects and a key's every object are destroyed.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/keystore-records.h"
#include "daemon/pin.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

static Key *key_new(const char *name) {
        Key *k = calloc(1, sizeof(*k));

        snprintf(k->name, sizeof(k->name), "%s", name);
        k->created_usec = 1000;
        k->state = KEY_ENABLED;
        k->state_before_delete = KEY_ENABLED;
        k->versions = calloc(1, sizeof(*k->versions));
        k->versions[0] = (KeyVersion) { .id = 1, .created_usec = 2000, .enabled = true };
        k->n_versions = 1;
        k->current_version = 1;
        return k;
}

/* Creates a record object of k as it is (no contest): what another kekd, or a crash, leaves. */
static int put_raw(Hsm *h, const Key *k) {
        _cleanup_free_ uint8_t *buf = NULL;
        HsmObject o;
        size_t len;
        int r = key_to_record(k, &buf, &len);

        return r < 0 ? r : hsm_create_data(h, RECORDS_APP, k->name, buf, len, &o);
}

static size_t n_records(Hsm *h, const char *name) {
        HsmDataObject *d = NULL;
        size_t n = 0;

        if (hsm_list_data(h, RECORDS_APP, name, &d, &n) < 0)
                return (size_t) -1;
        hsm_data_objects_free(d, n);
        return n;
}

static void test_write_fetch(Hsm *h) {
        _cleanup_free_ HsmObject *old = NULL;
        bool reload = false;
        size_t n_old = 0;
        uint64_t parent;
        Key *k = NULL, *got = NULL;
        int r;

        is_int(records_fetch(h, "acct", &got, NULL, NULL), -KEKERR_UNKNOWN_KEY, "no record: UNKNOWN_KEY");
        ok(records_writer_nonce() != 0, "writer nonces are never 0");

        k = key_new("acct");
        r = records_write(h, k, NULL, 0, hsm_generation(h), &reload);
        ok(r == 0 && k->generation == 1 && k->writer != 0 && !reload, "first write: generation 1, a writer nonce, no doubt");
        parent = k->writer;
        key_free(k);

        r = records_fetch(h, "acct", &k, &old, &n_old);
        ok(r == 0 && k->generation == 1 && k->writer == parent && n_old == 1, "fetch: the record and its handle");
        r = records_write(h, k, old, n_old, hsm_generation(h), &reload);
        ok(r == 0 && k->generation == 2 && k->n_ancestors == 1 && k->ancestors[0] == parent,
           "second write: generation 2, naming its parent as ancestor");
        is_int((int) n_records(h, "acct"), 1, "... and the record it replaced is destroyed");
        key_free(k);
        free(TAKE_PTR(old));

        /* Another kekd writes generation 3, not built on what we are about to write. */
        r = records_fetch(h, "acct", &k, &old, &n_old);
        ok(r == 0 && k->generation == 2, "fetch again: generation 2");
        {
                Key *rival = key_new("acct");

                rival->generation = 3;
                rival->writer = 0x5eed;
                rival->ancestors[0] = 0x1234; /* not ours */
                rival->n_ancestors = 1;
                ok(put_raw(h, rival) >= 0, "a rival writer's generation 3 is in the token");
                key_free(rival);
        }
        reload = false;
        r = records_write(h, k, old, n_old, hsm_generation(h), &reload);
        is_int(r, -EAGAIN, "our generation 3 meets the rival's: withdrawn, re-apply");
        ok(reload, "... and the keystore is told to read the token again");
        key_free(k);
        free(TAKE_PTR(old));
        ok(records_fetch(h, "acct", &got, NULL, NULL) == 0 && got->writer == 0x5eed,
           "the rival's record is the one read next");
        key_free(got);
}

static void test_superseded_and_destroy(Hsm *h) {
        Key *k = key_new("dup");
        HsmObject obj;
        int r;

        k->generation = 1;
        ok(put_raw(h, k) >= 0, "generation 1 written");
        k->generation = 2;
        ok(put_raw(h, k) >= 0, "generation 2 written, 1 not destroyed (a crash in between)");
        r = records_drop_superseded(h, "dup");
        ok(r > 0, "drop_superseded: there were several readable records");
        is_int((int) n_records(h, "dup"), 1, "... one is left");
        {
                Key *got = NULL;

                ok(records_fetch(h, "dup", &got, NULL, NULL) == 0 && got->generation == 2, "... the newest");
                key_free(got);
        }
        is_int(records_drop_superseded(h, "dup"), 0, "drop_superseded with one record: nothing to do");

        ok(hsm_generate_aes_key(h, "dup", 1, &obj) >= 0 && hsm_generate_aes_key(h, "dup", 2, &obj) >= 0,
           "two key objects of dup");
        is_int(records_destroy_version(h, "dup", 2), 0, "destroy_version 2");
        ok(hsm_find_key(h, "dup", 2, &obj) == -ENOENT && hsm_find_key(h, "dup", 1, &obj) >= 0,
           "... version 2's object is gone, version 1's stays");
        is_int(records_destroy_version(h, "dup", 2), 0, "destroy_version of a version without objects: done");
        is_int(records_destroy_all(h, "dup"), 0, "destroy_all");
        ok(hsm_find_key(h, "dup", 1, &obj) == -ENOENT && n_records(h, "dup") == 0, "... no object and no record left");
        is_int(records_destroy_all(h, "dup"), 0, "destroy_all again: idempotent");
        key_free(k);
}

int main(void) {
        TestToken token;
        Secret *pin = NULL;
        const char *why = NULL;
        Hsm *h = NULL;

        if (token_setup(&token, "records") < 0) {
                ok(false, "set up a SoftHSM2 token");
                return tap_done();
        }
        ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised");
        if (ok(pin_read(token.pin_file, &pin, &why) == 0, "PIN read") &&
            ok(hsm_open(token.module, token.uri, pin, &h, &why) >= 0, "HSM opened")) {
                test_write_fetch(h);
                test_superseded_and_destroy(h);
        }
        h = hsm_free(h);
        secret_free(pin);
        token_done(&token);
        return tap_done();
}
