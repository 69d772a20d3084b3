/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd check (keystore_check()): repairs what can be repaired, then compares
 * the token with the records and reports what is wrong (unreadable records,
 * duplicates, unfinished purges and intents, missing, weak or orphaned key
 * objects, and in backup mode trusted-wrap the versions that have no backup
 * path). Reads only; built on the keystore's public interface.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/keystore.h"
#include "daemon/keystore-profile.h"
#include "daemon/keystore-records.h"
#include "daemon/vault.h"

_printf_(2, 3) int check_report_add(CheckReport *rep, const char *fmt, ...) {
        char **p, *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        p = reallocarray(rep->problems, rep->n_problems + 1, sizeof(*p));
        if (!p) {
                free(s);
                return -ENOMEM;
        }
        rep->problems = p;
        rep->problems[rep->n_problems++] = s;
        return 0;
}

void check_report_done(CheckReport *r) {
        for (size_t i = 0; r && i < r->n_problems; i++)
                free(r->problems[i]);
        if (r)
                free(r->problems);
}

/* profile_mac_orphans()'s view of the index and of the report. */
typedef struct CheckOrphans {
        Keystore *ks;
        CheckReport *rep;
} CheckOrphans;

static const Key *orphans_find(void *userdata, const char *name) {
        CheckOrphans *o = userdata;

        return keystore_key_runtime(o->ks, name);
}

static int orphans_add(void *userdata, const char *name, uint32_t version) {
        CheckOrphans *o = userdata;

        return check_report_add(o->rep, "key '%s': MAC key for version %u is not in its record, or its version has no MAC key "
                          "(orphan)", name, version);
}

int keystore_check(Keystore *ks, uint64_t now, CheckReport *ret) {
        CheckReport rep = {};
        HsmDataObject *d = NULL;
        _cleanup_free_ HsmKeyRef *refs = NULL;
        _cleanup_free_ HsmKeyIssue *issues = NULL, *bad = NULL;
        size_t n = 0, n_refs = 0, n_issues = 0, n_bad = 0;
        int r;

        r = keystore_repair(ks, now);
        if (r < 0)
                return r;
        rep.repaired = (unsigned) r;

        r = hsm_list_data(keystore_hsm(ks), RECORDS_APP, NULL, &d, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                Key *k = NULL;

                if (key_from_record(&d[i], &k) < 0)
                        r = check_report_add(&rep, "metadata object labelled '%s' is unreadable", d[i].label);
                key_free(k);
                if (r < 0)
                        goto finish;
        }
        r = hsm_list_keys(keystore_hsm(ks), &refs, &n_refs);
        if (r < 0)
                goto finish;

        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);
                unsigned records = 0;

                rep.keys++;
                for (size_t j = 0; j < n; j++)
                        records += strcmp(d[j].label, k->name) == 0;
                if (records > 1 && (r = check_report_add(&rep, "key '%s' has %u metadata records", k->name, records)) < 0)
                        goto finish;
                if (k->purging && (r = check_report_add(&rep, "key '%s': purge not finished", k->name)) < 0)
                        goto finish;
                if (k->pending_version && keystore_intent_stale(ks, k, now) &&
                    (r = check_report_add(&rep, "key '%s': interrupted change to version %u not repaired", k->name,
                                    k->pending_version)) < 0)
                        goto finish;
                for (size_t j = 0; j < k->n_versions; j++) {
                        const KeyVersion *v = &k->versions[j];
                        HsmKeyAttrs a;
                        char why[160];

                        rep.versions++;
                        if (v->ambiguous && hsm_key_refs_not_local(refs, n_refs, k->name, v->id)) {
                                r = check_report_add(&rep, "key '%s' version %u: a key object that answers to it was not "
                                                     "generated on the token (CKA_LOCAL FALSE: derived, its value may be "
                                                     "known), so none is used and the version does not serve "
                                                     "(docs/tokens.md)", k->name, v->id);
                                if (r < 0)
                                        goto finish;
                                continue;
                        }
                        if (v->ambiguous) {
                                r = check_report_add(&rep, "key '%s' version %u: more than one key object answers to it, so "
                                                     "none is used and the version does not serve (one is not kekd's: "
                                                     "docs/tokens-ha.md)", k->name, v->id);
                                if (r < 0)
                                        goto finish;
                                continue;
                        }
                        if (!v->present) {
                                r = check_report_add(&rep, "key '%s' version %u is named in its record but missing from the token",
                                               k->name, v->id);
                                if (r < 0)
                                        goto finish;
                                continue;
                        }
                        r = hsm_key_attributes(keystore_hsm(ks), v->handle, &a);
                        /* Recorded trusted-wrap: extractable, but only under SO-trusted keys (vault.h). */
                        /* Recorded restored (docs/backup.md): unwrapped here, so never ALWAYS_SENSITIVE. */
                        if (r >= 0 && !(a.sensitive && a.private_ && a.token && !a.value_readable &&
                                        (v->restored ? !a.always_sensitive && (v->wrap_with_trusted
                                                                                       ? a.extractable && a.wrap_with_trusted
                                                                                       : !a.extractable)
                                         : v->wrap_with_trusted ? a.always_sensitive && a.wrap_with_trusted
                                                                : !a.extractable && a.never_extractable)))
                                r = check_report_add(&rep, "key '%s' version %u is not a sensitive, %s%s token key", k->name,
                                                     v->id, v->restored ? "restored " : "",
                                                     v->wrap_with_trusted ? "trusted-wrap-only" : "never-extractable");
                        if (r >= 0 && !v->wrap_with_trusted) {
                                rep.without_backup++;
                                if (keystore_vault(ks)->trusted_wrap)
                                        r = check_report_add(&rep, "key '%s' version %u is never extractable: it would be lost "
                                                       "with the token; rotate it after enabling backup", k->name, v->id);
                        }
                        /* The MAC key is looked up afresh: its handle is runtime state of the version. */
                        if (r >= 0 && (r = profile_version_problem(keystore_hsm(ks), k, (KeyVersion *) v, why,
                                                                   sizeof(why))) > 0)
                                r = check_report_add(&rep, "%s", why);
                        if (r < 0)
                                goto finish;
                }
        }
        for (size_t i = 0; i < n_refs; i++) {
                const Key *k = keystore_key_runtime(ks, refs[i].label);
                const KeyVersion *v = k ? key_find_version(k, refs[i].version) : NULL;

                /* Unwrapped or imported (never ALWAYS_SENSITIVE) where the record does not say "restored". */
                if (k && refs[i].restored && !(v && v->restored) &&
                    (r = check_report_add(&rep, "key object labelled '%s' is not used as a KEK: imported or once extractable "
                                    "(CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE not TRUE)", refs[i].label)) < 0)
                        goto finish;

                if (k && !key_find_version(k, refs[i].version) && refs[i].version != k->pending_version &&
                    (r = check_report_add(&rep, "key '%s': object for version %u is not in its record (orphan)",
                                    refs[i].label, refs[i].version)) < 0)
                        goto finish;
        }
        /* A key object under a key's name that no search adopts would be a version lost in silence. */
        r = hsm_list_unclassified(keystore_hsm(ks), &issues, &n_issues);
        for (size_t i = 0; r >= 0 && i < n_issues; i++)
                if (keystore_key_runtime(ks, issues[i].label))
                        r = check_report_add(&rep, "key object labelled '%s' is not used as a KEK: %s", issues[i].label,
                                       issues[i].reason);
        /* Tokens without private data objects: a record whose tag does not verify is not used (hsm-records.c). */
        if (r >= 0)
                r = hsm_list_bad_records(keystore_hsm(ks), (const char *const[]) { RECORDS_APP, VAULT_APP }, 2, &bad,
                                         &n_bad);
        for (size_t i = 0; r >= 0 && i < n_bad; i++)
                r = check_report_add(&rep, "record object '%s' fails its MAC and is not used", bad[i].label);
        if (r >= 0) {
                CheckOrphans o = { .ks = ks, .rep = &rep };

                r = profile_mac_orphans(keystore_hsm(ks), orphans_find, orphans_add, &o);
        }
        if (r < 0)
                goto finish;
        r = 0;
        *ret = rep;
        rep = (CheckReport) {};
finish:
        hsm_data_objects_free(d, n);
        check_report_done(&rep);
        return r;
}
