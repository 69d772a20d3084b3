/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `kekctl check` across tokens: see tokens-check.h. Only the existence of
 * records and version key objects is compared, by label and ID; the
 * records' contents and the MAC keys of the HMAC profiles are the
 * replication's to compare and copy (daemon/replica.h), whose stale mark
 * says whether a token holds them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/keystore-records.h"
#include "daemon/log.h"
#include "daemon/tokens-check.h"

/* The distinct key objects refs lists for (label, version), in any form: a copy has one. */
static size_t version_objects(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version) {
        size_t count = 0;

        for (size_t i = 0; i < n; i++) {
                bool seen = false;

                if (refs[i].version != version || strcmp(refs[i].label, label) != 0)
                        continue;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = refs[j].handle == refs[i].handle;
                count += !seen;
        }
        return count;
}

static bool has_record(const HsmDataObject *d, size_t n, const char *label) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(d[i].label, label) == 0)
                        return true;
        return false;
}

/* Why a further token lacks a version that could be copied, from its replication state. */
static void not_copied_why(const TokenStatus *st, char *buf, size_t len) {
        if (strncmp(st->sync_note, "not copied: ", 12) == 0)
                snprintf(buf, len, "%s", st->sync_note);
        else if (st->health.stale)
                snprintf(buf, len, "not copied yet: the token is stale (%s)", st->sync_note[0] ? st->sync_note : "not synchronised yet");
        else
                snprintf(buf, len, "not copied, although the token is in sync");
}

/* One further token against the index; -ENOMEM only. */
static int check_token(Keystore *ks, const TokenStatus *st, Hsm *h, CheckReport *rep) {
        const char *name = st->name;
        char why[sizeof(st->sync_note) + 64];
        _cleanup_free_ HsmKeyRef *refs = NULL;
        HsmDataObject *d = NULL;
        size_t n_refs = 0, n = 0;
        int r;

        r = hsm_list_keys(h, &refs, &n_refs);
        if (r >= 0)
                r = hsm_list_data(h, RECORDS_APP, NULL, &d, &n);
        if (r < 0)
                return check_report_add(rep, "token '%s' cannot be read: %s", name, hsm_last_error(h));
        not_copied_why(st, why, sizeof(why));

        for (size_t i = 0; r >= 0 && i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);

                if (!key_exists(k))
                        continue;
                if (!has_record(d, n, k->name))
                        r = check_report_add(rep, "token '%s' lacks the record of key '%s'", name, k->name);
                for (size_t j = 0; r >= 0 && j < k->n_versions; j++) {
                        const KeyVersion *v = &k->versions[j];

                        size_t objects = version_objects(refs, n_refs, k->name, v->id);

                        if (v->present && objects == 1 && hsm_key_refs_not_local(refs, n_refs, k->name, v->id))
                                /* its only object there was derived: failover refuses it (pkcs11/hsm.h) */
                                r = check_report_add(rep, "token '%s': the key object that answers to key '%s' version "
                                                     "%u was not generated on that token (CKA_LOCAL FALSE: derived, its "
                                                     "value may be known), so it is not used there (docs/tokens.md)",
                                                     name, k->name, v->id);
                        if (!v->present || objects == 1)
                                continue;
                        if (objects > 1)
                                /* failover refuses it there (pkcs11/hsm.h, daemon/keystore-data.c) */
                                r = check_report_add(rep, "token '%s': %zu key objects answer to key '%s' version %u, so "
                                                     "none is used there (one is not kekd's: docs/tokens-ha.md)",
                                                     name, objects, k->name, v->id);
                        else
                                r = check_report_add(rep, "token '%s' lacks key '%s' version %u (%s)", name, k->name,
                                                     v->id, v->wrap_with_trusted ? why : "never extractable: it cannot be copied");
                }
        }
        /* A version object in the further token of a key the preferred token does not hold. */
        for (size_t i = 0; r >= 0 && i < n_refs; i++) {
                const Key *k = keystore_key_runtime(ks, refs[i].label);

                if (!k || !key_exists(k))
                        r = check_report_add(rep, "token '%s' holds key '%s' version %u, unknown to the preferred token",
                                             name, refs[i].label, refs[i].version);
        }
        hsm_data_objects_free(d, n);
        return r < 0 ? r : 0;
}

int tokens_check(Keystore *ks, TokenSet *ts, CheckReport *rep) {
        for (size_t i = 1; i < tokenset_count(ts); i++) {
                _cleanup_(hsm_freep) Hsm *h = NULL;
                const char *why = NULL;
                char text[640];
                TokenStatus st;
                bool probing = false;
                uint64_t usec = 0;
                int r;

                r = tokenset_status(ts, i, &st);
                if (r < 0)
                        return r;
                /* Refused by its capability probe, or used although its copies can leave it: like [hsm]'s. */
                if (tokenset_capability_problem(ts, i, text, sizeof(text)) == 1) {
                        r = check_report_add(rep, "%s", text);
                        if (r < 0)
                                return r;
                }
                /* Opening a token whose probe hangs would hang the loop, and every client with it. */
                r = tokenset_probe_overdue(ts, i, &probing, &usec);
                if (r < 0)
                        return r;
                if (r > 0) {
                        r = check_report_add(rep, probing ? "token '%s' not checked: its health probe has not returned "
                                                            "for %llu s"
                                                          : "token '%s' not checked: it was not probed for %llu s "
                                                            "(another token's probe has not returned)",
                                             st.name, (unsigned long long) (usec / 1000000));
                        if (r < 0)
                                return r;
                        continue;
                }
                r = tokenset_open(ts, i, &h, &why);
                if (r < 0)
                        r = check_report_add(rep, "token '%s' cannot be opened (%s): it holds no copy that could be "
                                             "checked", st.name, why ? why : error_text(r));
                else
                        r = check_token(ks, &st, h, rep);
                if (r < 0)
                        return r;
        }
        return 0;
}
