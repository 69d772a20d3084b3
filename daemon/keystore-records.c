/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A key's objects in the token (see keystore-records.h, and keystore.h for
 * the invariants): reading the freshest record of a key, writing the next
 * generation with the contest rule that keeps concurrent kekd on one token
 * from overwriting each other's changes or applying one twice, and
 * destroying what a failed operation, a purge or a crash left behind. Records are never modified in place:
 * a write creates generation N+1, lists the token again, and only then
 * destroys what it replaced, through handles taken at a known session
 * generation (hsm_destroy_listed()).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/keystore-records.h"
#include "daemon/log.h"

/*
 * Reads every record of one key from the token: the highest readable
 * generation in *ret, the handles of all of them (to destroy after the next
 * write) in *ret_old. -KEKERR_UNKNOWN_KEY if there is none.
 */
int records_fetch(Hsm *hsm, const char *name, Key **ret, HsmObject **ret_old, size_t *ret_n_old) {
        HsmDataObject *d = NULL;
        _cleanup_free_ HsmObject *old = NULL;
        Key *best = NULL;
        size_t n = 0, n_old = 0;
        int r;

        r = hsm_list_data(hsm, RECORDS_APP, name, &d, &n);
        if (r < 0)
                return r;
        old = calloc(n ? n : 1, sizeof(*old));
        if (!old) {
                hsm_data_objects_free(d, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                Key *k;

                if (key_from_record(&d[i], &k) < 0)
                        continue; /* unreadable (torn write): never chosen, left for check to report */
                old[n_old++] = d[i].handle;
                if (!best || k->generation > best->generation) {
                        key_free(best);
                        best = k;
                } else
                        key_free(k);
        }
        hsm_data_objects_free(d, n);
        if (!best)
                return -KEKERR_UNKNOWN_KEY;
        *ret = best;
        if (ret_old) {
                *ret_old = TAKE_PTR(old);
                *ret_n_old = n_old;
        }
        return 0;
}

uint64_t records_writer_nonce(void) {
        uint64_t w = 0;

        while (w == 0)
                if (RAND_bytes((uint8_t *) &w, sizeof(w)) != 1)
                        w = clock_mono_usec() ^ ((uint64_t) getpid() << 32);
        return w;
}


/*
 * Whether other, built from a record of generation >= gen, holds the change
 * of the write with nonce mine (whose record has generation gen). Its
 * ancestors name the writers of generations other-1, other-2, ... as far as
 * they go: mine among them is proof; their reaching down to gen without it
 * is proof of the contrary. A record without ancestry (an older kekd's)
 * counts as a rival, as it did before records had one.
 */
static int record_verdict(const Key *other, uint64_t mine, uint64_t gen) {
        for (size_t i = 0; i < other->n_ancestors; i++)
                if (other->ancestors[i] == mine)
                        return RECORDS_CONTEST_INCLUDED;
        if (other->n_ancestors == 0 || other->generation <= gen || other->generation - gen <= other->n_ancestors)
                return RECORDS_CONTEST_RIVAL;
        return RECORDS_CONTEST_UNKNOWN;
}

/*
 * Lists this key's records after we wrote ours (nonce mine, generation gen)
 * and says whether another kekd wrote concurrently: RECORDS_CONTEST_NONE if no other
 * record has generation >= gen; otherwise the verdict on the newest of them
 * (the ones the next reader picks): RECORDS_CONTEST_INCLUDED if every one of those
 * was built on ours (directly or through others: our change is in it and
 * must not be applied again), RECORDS_CONTEST_RIVAL if none was, RECORDS_CONTEST_UNKNOWN if
 * they disagree or their ancestry is too short to tell. Ours is told by its
 * nonce, not its handle: handles may change when the listing itself has to
 * reopen the session. The handle our record has now goes to *ret_mine (0 if
 * it is not found: a writer that built on it may have destroyed it), valid
 * while hsm_generation() is *ret_handle_gen (see hsm_destroy_listed()).
 */
int records_contested(Hsm *hsm, const char *name, uint64_t mine, uint64_t gen, HsmObject *ret_mine,
                      uint64_t *ret_handle_gen) {
        HsmDataObject *d = NULL;
        size_t n = 0, seen[4] = {};
        uint64_t top = 0;
        bool any = false;
        int r;

        *ret_mine = 0;
        r = hsm_list_data(hsm, RECORDS_APP, name, &d, &n);
        if (r < 0)
                return r;
        *ret_handle_gen = hsm_generation(hsm);
        for (size_t i = 0; i < n; i++) {
                Key *k;

                if (key_from_record(&d[i], &k) < 0)
                        continue;
                if (k->writer == mine)
                        *ret_mine = d[i].handle;
                else if (k->generation >= gen) {
                        if (!any || k->generation > top) {
                                any = true;
                                top = k->generation;
                                memset(seen, 0, sizeof(seen));
                        }
                        if (k->generation == top)
                                seen[record_verdict(k, mine, gen)]++;
                }
                key_free(k);
        }
        hsm_data_objects_free(d, n);
        if (!any)
                return RECORDS_CONTEST_NONE;
        if (seen[RECORDS_CONTEST_UNKNOWN] == 0 && seen[RECORDS_CONTEST_RIVAL] == 0)
                return RECORDS_CONTEST_INCLUDED;
        if (seen[RECORDS_CONTEST_UNKNOWN] == 0 && seen[RECORDS_CONTEST_INCLUDED] == 0)
                return RECORDS_CONTEST_RIVAL;
        return RECORDS_CONTEST_UNKNOWN;
}

/*
 * Writes k as the next generation, naming the record it was built on (and
 * that one's ancestors) as its ancestors. Before the records it replaces are
 * destroyed, the token is listed again (records_contested()):
 *  - no other record as new as ours: ours stands;
 *  - a newer record of another kekd was built on ours (it read ours before
 *    we finished): our change is in it, so this write succeeded; applying it
 *    again (a lease given back twice) would under-count. The index is
 *    re-read before the next answer: ours is no longer the newest and may
 *    already be destroyed by that writer;
 *  - another kekd wrote the same or a later generation not built on ours:
 *    ours is withdrawn and -EAGAIN tells the caller to re-read and re-apply
 *    its change, so no acknowledged change (a disable, a delete) is ever
 *    silently overwritten by a concurrent one;
 *  - cannot tell (more than ANCESTORS_MAX writes since ours, or the newest
 *    records disagree): ours is withdrawn and -KEKERR_CONFLICT returned
 *    without re-applying: the change may be in force or not, and a change
 *    applied twice could under-count where one lost only over-counts.
 * old_gen is hsm_generation() when old was listed: after a reopen since, those
 * handles may name other objects (our new record, another key's) and are left
 * alone.
 */
int records_write(Hsm *hsm, Key *k, const HsmObject *old, size_t n_old, uint64_t old_gen, bool *reload_needed) {
        _cleanup_free_ uint8_t *buf = NULL;
        HsmObject h;
        uint64_t h_gen = 0;
        size_t len;
        int r, q;

        /* The record we read becomes our parent; a parent without a writer ends the known chain. */
        if (k->writer == 0)
                k->n_ancestors = 0;
        else {
                size_t n = MIN(k->n_ancestors, (size_t) ANCESTORS_MAX - 1);

                memmove(k->ancestors + 1, k->ancestors, n * sizeof(uint64_t));
                k->ancestors[0] = k->writer;
                k->n_ancestors = n + 1;
        }
        k->generation++;
        k->writer = records_writer_nonce();
        r = key_to_record(k, &buf, &len);
        if (r < 0)
                return r;
        r = hsm_create_data(hsm, RECORDS_APP, k->name, buf, len, &h);
        if (r < 0) {
                /* The object may exist all the same (a reply lost on the way): what we serve must be re-read. */
                *reload_needed = true;
                return r;
        }
        r = records_contested(hsm, k->name, k->writer, k->generation, &h, &h_gen);
        if (r < 0) {
                *reload_needed = true;
                return r;
        }
        if (r == RECORDS_CONTEST_RIVAL || r == RECORDS_CONTEST_UNKNOWN) {
                *reload_needed = true;
                /*
                 * Withdrawn, the caller may re-apply its change to the other writer's record. Not
                 * withdrawn, ours may still be the record read next, and a change applied twice
                 * (a lease given back twice) could under-count: the outcome is unknown.
                 */
                if (h && (q = hsm_destroy_listed(hsm, h, h_gen)) < 0 && q != -ENOENT)
                        return -KEKERR_HSM_UNAVAILABLE;
                return r == RECORDS_CONTEST_RIVAL ? -EAGAIN : -KEKERR_CONFLICT;
        }
        if (r == RECORDS_CONTEST_INCLUDED) {
                log_debug("Record of key '%s' generation %" PRIu64 " was built on by another kekd: written",
                          k->name, k->generation);
                *reload_needed = true;
        } else if (!h) {
                /* Our record is not there after all. */
                *reload_needed = true;
                return -KEKERR_HSM_UNAVAILABLE;
        }
        k->meta_handle = h;
        for (size_t i = 0; i < n_old; i++) {
                q = hsm_destroy_listed(hsm, old[i], old_gen);
                /* A leftover lower generation is harmless: readers pick the highest, repair removes it. */
                if (q < 0 && q != -ENOENT)
                        log_debug("Could not destroy superseded record of key '%s': %s", k->name, error_text(q));
        }
        return 0;
}

/*
 * Destroys every key object (name, version): an unrecorded version, of an
 * operation that failed. Looked up afresh, never by a remembered handle.
 * Returns 0 once none is left, <0 if that cannot be confirmed.
 */
int records_destroy_version(Hsm *hsm, const char *name, uint32_t version) {
        return hsm_destroy_version_keys(hsm, name, version); /* its AES key and its MAC key, if it has one */
}

int records_destroy_all(Hsm *hsm, const char *name) {
        HsmDataObject *d = NULL;
        size_t n = 0;
        uint64_t gen;
        int r;

        /* Key objects first: while any remain, the record (saying "purging") stays to finish the job. */
        r = hsm_destroy_label_keys(hsm, name);
        if (r < 0)
                return r;
        r = hsm_list_data(hsm, RECORDS_APP, name, &d, &n);
        if (r < 0)
                return r;
        gen = hsm_generation(hsm);
        for (size_t i = 0; i < n; i++) {
                int q = hsm_destroy_listed(hsm, d[i].handle, gen);

                if (q < 0 && q != -ENOENT && r >= 0)
                        r = q;
        }
        hsm_data_objects_free(d, n);
        return r;
}

int records_drop_superseded(Hsm *hsm, const char *name) {
        _cleanup_free_ uint64_t *gen = NULL;
        HsmDataObject *d = NULL;
        size_t n = 0, readable = 0;
        uint64_t max = 0, listed_gen;
        int r;

        r = hsm_list_data(hsm, RECORDS_APP, name, &d, &n);
        if (r < 0)
                return r;
        listed_gen = hsm_generation(hsm);
        gen = calloc(n ? n : 1, sizeof(*gen));
        if (!gen) {
                hsm_data_objects_free(d, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                Key *k;

                gen[i] = UINT64_MAX; /* unreadable: never destroyed here, check reports it */
                if (key_from_record(&d[i], &k) < 0)
                        continue;
                gen[i] = k->generation;
                max = MAX(max, gen[i]);
                readable++;
                key_free(k);
        }
        /* Only strictly older generations: an equal one belongs to a writer that is still deciding. */
        for (size_t i = 0; i < n; i++)
                if (gen[i] < max)
                        (void) hsm_destroy_listed(hsm, d[i].handle, listed_gen);
        hsm_data_objects_free(d, n);
        return readable > 1;
}
