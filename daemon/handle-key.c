/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Control-plane handlers (see handlers.h): key lifecycle (create, rotate,
 * policy, enable/disable, delete, recover, purge), reading keys (get, list),
 * the vault policy, grants and check. Each re-reads what it changes from the
 * token through the keystore (keystore.h); the table in dispatch.c decided
 * the peer's role before any of these runs. Dual control's gate
 * (needs_approval()) is asked here, where the operation knows what it would
 * change; submitting and approving are handle-approval.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/handlers.h"
#include "daemon/metrics.h"
#include "daemon/tokens-check.h"
#include "pkcs11/probe.h"

/* Names the key (and version) in the message of a key-related refusal. */
int key_error(Dispatcher *d, Request *req, int r, uint32_t version) {
        const char *key = req->outcome.key;
        const Key *k;

        /* KEY_DISABLED covers a disabled key and a disabled version: say which. */
        if (r == -KEKERR_KEY_DISABLED && d && keystore_find(d->keystore, key, &k) >= 0 && k->state == KEY_DISABLED)
                version = 0;
        switch (r) {
        case -KEKERR_UNKNOWN_KEY:
                return request_error(req, r, "unknown key '%s'", key);
        case -KEKERR_UNKNOWN_VERSION:
                return request_error(req, r, "key '%s' has no version %u", key, version);
        case -KEKERR_KEY_DISABLED:
                return version ? request_error(req, r, "key '%s' version %u is disabled", key, version)
                               : request_error(req, r, "key '%s' is disabled", key);
        case -KEKERR_KEY_DELETED:
                return request_error(req, r, "key '%s' is deleted", key);
        case -KEKERR_KEY_EXISTS:
                return request_error(req, r, "key '%s' already exists (a deleted key keeps its name until purged)", key);
        case -KEKERR_KEY_NOT_RECOVERABLE:
                return request_error(req, r, "key '%s' isn't recoverable: the vault must have purge protection on", key);
        case -KEKERR_CONFLICT:
                return request_error(req, r, "another change to key '%s' is in progress; retry", key);
        default:
                return r;
        }
}

/* Dual control: whether this operation must go through submit/approve. */
bool needs_approval(Dispatcher *d, Request *req, uint32_t bit) {
        if (req->approved)
                return false;
        /* The vault policy as the token has it now, within a second: another node may have just set it. */
        (void) keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        return (keystore_vault(d->keystore)->dual_control & bit) != 0;
}

int approval_required(Request *req, const char *op) {
        const char *key = req->outcome.key;

        return request_error(req, -KEKERR_APPROVAL_REQUIRED,
                           "%s%s%s%s is under dual control: submit it with 'kekctl request' and have another officer approve it",
                           op, key && key[0] ? " of key '" : "", key ? key : "", key && key[0] ? "'" : "");
}

int reply_empty(Request *req) {
        Kek__Empty *e = request_alloc(req, sizeof(*e));

        if (!e)
                return -ENOMEM;
        kek__empty__init(e);
        req->resp.body_case = KEK__RESPONSE__BODY_EMPTY;
        req->resp.empty = e;
        return 0;
}

static Kek__KeyInfo *key_info(Dispatcher *d, Request *req, const Key *k) {
        Kek__KeyInfo *ki = request_alloc(req, sizeof(*ki));
        Kek__VersionInfo *vi = request_alloc(req, k->n_versions * sizeof(*vi));
        Kek__VersionInfo **vp = request_alloc(req, k->n_versions * sizeof(*vp));
        Kek__RotationPolicy *pol = request_alloc(req, sizeof(*pol));
        char *name = request_alloc(req, strlen(k->name) + 1);

        if (!ki || !vi || !vp || !pol || !name)
                return NULL;
        strcpy(name, k->name);
        kek__key_info__init(ki);
        kek__rotation_policy__init(pol);
        ki->name = name;
        ki->current_version = k->current_version;
        ki->state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                    : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                              : KEK__KEY_STATE__ENABLED;
        ki->created_usec = k->created_usec;
        ki->deleted_usec = k->deleted_usec;
        ki->scheduled_purge_usec = k->scheduled_purge_usec;
        ki->recoverable = keystore_recoverable(d->keystore);
        pol->rotate_after_seconds = k->policy.rotate_after_sec;
        pol->max_wraps = key_max_wraps(k);
        ki->policy = pol;
        for (size_t j = 0; j < k->n_versions; j++) {
                const KeyVersion *v = &k->versions[j];

                kek__version_info__init(&vi[j]);
                vi[j].id = v->id;
                vi[j].created_usec = v->created_usec;
                vi[j].enabled = v->enabled;
                vi[j].profile = (uint32_t) v->profile;
                vi[j].wrap_with_trusted = v->wrap_with_trusted;
                vi[j].restored = v->restored;
                vi[j].wraps = v->wraps_reserved - MIN(v->wraps_reserved, v->lease_left);
                vi[j].unwraps = v->unwraps + v->unwraps_pending;
                vi[j].last_use_usec = MAX(v->last_use_usec, v->last_use_pending);
                vp[j] = &vi[j];
        }
        ki->n_versions = k->n_versions;
        ki->versions = vp;
        /* Who may use a key is the officers' business, not its users'. */
        if (k->n_grants > 0 && peer_has_role(req->peer, ROLE_OFFICER)) {
                Kek__Grant *gi = request_alloc(req, k->n_grants * sizeof(*gi));
                Kek__Grant **gp = request_alloc(req, k->n_grants * sizeof(*gp));

                if (!gi || !gp)
                        return NULL;
                for (size_t j = 0; j < k->n_grants; j++) {
                        kek__grant__init(&gi[j]);
                        gi[j].group = k->grants[j].group;
                        gi[j].id = k->grants[j].id;
                        gi[j].ops = k->grants[j].ops;
                        gp[j] = &gi[j];
                }
                ki->n_grants = k->n_grants;
                ki->grants = gp;
        }
        return ki;
}

static int reply_key_info(Dispatcher *d, Request *req, const Key *k) {
        Kek__KeyInfoResponse *resp = request_alloc(req, sizeof(*resp));

        if (!resp)
                return -ENOMEM;
        kek__key_info_response__init(resp);
        resp->key = key_info(d, req, k);
        if (!resp->key)
                return -ENOMEM;
        req->outcome.version = k->current_version;
        req->resp.body_case = KEK__RESPONSE__BODY_KEY_INFO;
        req->resp.key_info = resp;
        return 0;
}

static bool policy_from_wire(const Kek__RotationPolicy *p, RotationPolicy *ret) {
        if (!p)
                return false;
        *ret = (RotationPolicy) { p->rotate_after_seconds, p->max_wraps };
        return true;
}

int handle_create_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const char *name = m->create_key->key;
        RotationPolicy pol;
        const Key *k;
        int r;

        request_show_key(req->outcome.key, name);
        if (!key_name_valid(name))
                return request_error(req, -KEKERR_INVALID_ARGUMENT,
                                   "key name must be 1..%u of [A-Za-z0-9._-], not starting with '.' or '-'", KEY_NAME_MAX);
        r = keystore_create(d->keystore, name, policy_from_wire(m->create_key->policy, &pol) ? &pol : NULL,
                            d->now_usec(), &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, "rotation age must be at most 100 years and the wrap budget at most 2^32");
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_get_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Key *k;
        int r;

        /* Authorized by the table (access_check_key(), GRANT_GET): officers see every key. */
        r = keystore_refind(d->keystore, &req->found, m->get_key->key, &k);
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_list_keys(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__ListKeysResponse *l;
        Kek__KeyInfo **infos;
        size_t n, shown = 0;
        int r;

        /* The operator's view of the token: fresh to within a second, so changes through other nodes show. */
        r = keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        if (r < 0)
                return r;
        n = keystore_n_keys(d->keystore);
        l = request_alloc(req, sizeof(*l));
        infos = request_alloc(req, n * sizeof(*infos));
        if (!l || !infos)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Key *k = keystore_key_at(d->keystore, i);

                if (!key_exists(k))
                        continue; /* being purged or being created */
                if (k->state == KEY_DELETED && !m->list_keys->include_deleted)
                        continue;
                if (!access_may(req->peer, k, GRANT_GET))
                        continue; /* crypto users see the keys they may get */
                infos[shown] = key_info(d, req, k);
                if (!infos[shown++])
                        return -ENOMEM;
        }
        kek__list_keys_response__init(l);
        l->n_keys = shown;
        l->keys = infos;
        req->resp.body_case = KEK__RESPONSE__BODY_LIST_KEYS;
        req->resp.list_keys = l;
        return 0;
}

int handle_rotate_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Key *k;
        int r;

        request_show_key(req->outcome.key, m->rotate_key->key);
        r = keystore_rotate(d->keystore, m->rotate_key->key, d->now_usec(), &k);
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_set_rotation_policy(Dispatcher *d, const Kek__Request *m, Request *req) {
        RotationPolicy pol = {};
        const Key *k;
        int r;

        request_show_key(req->outcome.key, m->set_rotation_policy->key);
        (void) policy_from_wire(m->set_rotation_policy->policy, &pol);
        r = keystore_set_policy(d->keystore, m->set_rotation_policy->key, &pol, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, "rotation age must be at most 100 years and the wrap budget at most 2^32");
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_set_enabled(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__SetEnabledRequest *s = m->set_enabled;
        const Key *k;
        int r;

        request_show_key(req->outcome.key, s->key);
        req->outcome.version = s->version;
        req->outcome.op = s->enabled ? (s->version ? "enable-version" : "enable-key") : (s->version ? "disable-version" : "disable-key");
        r = keystore_set_enabled(d->keystore, s->key, s->version, s->enabled, &k);
        if (r < 0)
                return key_error(d, req, r, s->version);
        return reply_key_info(d, req, k);
}

int handle_delete_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Key *k;
        int r;

        request_show_key(req->outcome.key, m->delete_key->key);
        if (needs_approval(d, req, DUAL_CONTROL_DELETE))
                return approval_required(req, "delete-key");
        r = keystore_delete(d->keystore, m->delete_key->key, d->now_usec(), &k);
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_recover_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Key *k;
        int r;

        request_show_key(req->outcome.key, m->recover_key->key);
        r = keystore_recover(d->keystore, m->recover_key->key, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, "key '%s' is not deleted; nothing to recover", req->outcome.key);
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_purge_key(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Key *k = NULL;
        uint64_t purge_at = 0;
        int r;

        request_show_key(req->outcome.key, m->purge_key->key);
        if (needs_approval(d, req, DUAL_CONTROL_PURGE))
                return approval_required(req, "purge-key");
        if (keystore_find(d->keystore, m->purge_key->key, &k) >= 0)
                purge_at = k->scheduled_purge_usec;
        r = keystore_purge(d->keystore, m->purge_key->key, d->now_usec());
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, "key '%s' is not deleted; delete it before purging", req->outcome.key);
        if (r == -KEKERR_PURGE_PROTECTED)
                return request_error(req, r, "key '%s' is purge protected until its scheduled purge date (%llu s after the epoch)",
                                   req->outcome.key, (unsigned long long) (purge_at / 1000000));
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_empty(req);
}

static int reply_vault(Dispatcher *d, Request *req) {
        Kek__VaultPolicyResponse *resp = request_alloc(req, sizeof(*resp));
        Kek__VaultPolicy *p = request_alloc(req, sizeof(*p));
        const VaultPolicy *v = keystore_vault(d->keystore);

        if (!resp || !p)
                return -ENOMEM;
        kek__vault_policy_response__init(resp);
        kek__vault_policy__init(p);
        p->retention_days = v->retention_days;
        p->purge_protection = v->purge_protection;
        p->dual_control = v->dual_control;
        p->approval_window_seconds = v->approval_window_sec;
        p->backup = v->trusted_wrap ? KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP : KEK__BACKUP_MODE__BACKUP_NONE;
        resp->policy = p;
        resp->allow_unrecoverable = keystore_allow_unrecoverable(d->keystore);
        req->resp.body_case = KEK__RESPONSE__BODY_VAULT_POLICY;
        req->resp.vault_policy = resp;
        return 0;
}

int handle_get_vault_policy(Dispatcher *d, const Kek__Request *m, Request *req) {
        int r = keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);

        if (r < 0)
                return r;
        tokenset_note_change(d->tokens); /* further tokens are stale until they have the new policy */
        return reply_vault(d, req);
}

int handle_set_vault_policy(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__SetVaultPolicyRequest *s = m->set_vault_policy;
        VaultChange c = {
                .retention_days = s->retention_days,
                .purge_protection = s->purge_protection == KEK__SWITCH__ON ? 1 : s->purge_protection == KEK__SWITCH__OFF ? 0 : -1,
                .set_dual_control = s->set_dual_control,
                .dual_control = s->dual_control,
                .approval_window_sec = s->approval_window_seconds,
                .trusted_wrap = s->trusted_wrap == KEK__SWITCH__ON ? 1 : s->trusted_wrap == KEK__SWITCH__OFF ? 0 : -1,
        };
        int r;

        if (needs_approval(d, req, DUAL_CONTROL_VAULT_POLICY) && vault_change_weakens(keystore_vault(d->keystore), &c))
                return approval_required(req, "a weaker vault policy");
        r = keystore_set_vault(d->keystore, &c);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, "retention must be %u..%u days, the approval window %u..%u s, dual control a set of purge, delete, last-grant, vault-policy, backup, restore",
                                   RETENTION_DAYS_MIN, RETENTION_DAYS_MAX, APPROVAL_WINDOW_MIN, APPROVAL_WINDOW_MAX);
        if (r == -KEKERR_PERMISSION_DENIED)
                return request_error(req, r, c.purge_protection == 0 && keystore_vault(d->keystore)->purge_protection
                                                     ? "purge protection cannot be switched off once on"
                                             : c.trusted_wrap == 0 && keystore_vault(d->keystore)->trusted_wrap
                                                     ? "backup mode trusted-wrap cannot be switched off: the versions "
                                                       "made wrappable stay so"
                                                     : "with purge protection on, retention can only be raised");
        if (r < 0)
                return r;
        tokenset_note_change(d->tokens); /* further tokens are stale until they have the new policy */
        return reply_vault(d, req);
}

int handle_set_grant(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__SetGrantRequest *s = m->set_grant;
        Grant g;
        const Key *k;
        int r;

        request_show_key(req->outcome.key, s->key);
        if (!s->grant || s->grant->ops == 0 || (s->grant->ops & ~(uint32_t) GRANT_ALL))
                return request_error(req, -KEKERR_INVALID_ARGUMENT, "a grant names a uid or gid and a non-empty set of get, wrap, unwrap, rewrap");
        g = (Grant) { .group = s->grant->group, .id = s->grant->id, .ops = s->grant->ops };
        r = keystore_find(d->keystore, s->key, &k);
        if (r < 0)
                return key_error(d, req, r, 0);
        if (s->revoke) {
                bool last = true;

                /* Would the key be left with no grant at all? */
                for (size_t i = 0; i < k->n_grants && last; i++)
                        last = k->grants[i].group == g.group && k->grants[i].id == g.id && (k->grants[i].ops & ~g.ops) == 0;
                if (k->n_grants > 0 && last && needs_approval(d, req, DUAL_CONTROL_LAST_GRANT))
                        return approval_required(req, "revoking the last grant");
        }
        r = keystore_set_grant(d->keystore, s->key, &g, s->revoke, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return request_error(req, r, s->revoke ? "%s %u has no grant on key '%s'" : "key '%s' has the maximum of %u grants%s",
                                   s->revoke ? (g.group ? "gid" : "uid") : req->outcome.key, s->revoke ? g.id : GRANTS_MAX,
                                   s->revoke ? req->outcome.key : "; grant a group instead");
        if (r < 0)
                return key_error(d, req, r, 0);
        return reply_key_info(d, req, k);
}

int handle_check(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__CheckResponse *c;
        CheckReport rep = {};
        const ProbeProfile *profiles;
        ProbeResult probe;
        size_t n_profiles;
        bool bad_probe;
        char **problems, **notes;
        int r;

        r = keystore_check(d->keystore, d->now_usec(), &rep);
        if (r < 0)
                return r;
        /* Then every further token against it: what it would lack if it had to serve. */
        r = tokens_check(d->keystore, d->tokens, &rep);
        if (r < 0) {
                check_report_done(&rep);
                return r;
        }
        /* The token is probed again (issue 16); status shows this result from now on. */
        profiles = probe_profiles(keystore_profile(d->keystore), &n_profiles);
        bad_probe = probe_run(keystore_hsm(d->keystore), profiles, n_profiles, &probe) < 0;
        if (d->metrics)
                metrics_set_probe(d->metrics, &probe);
        c = request_alloc(req, sizeof(*c));
        problems = request_alloc(req, (rep.n_problems + 2) * sizeof(*problems));
        notes = request_alloc(req, (1 + tokenset_count(d->tokens)) * sizeof(*notes));
        if (!c || !problems || !notes) {
                check_report_done(&rep);
                return -ENOMEM;
        }
        kek__check_response__init(c);
        c->keys = rep.keys;
        c->versions = rep.versions;
        c->repaired = rep.repaired;
        c->versions_without_backup = rep.without_backup;
        for (size_t i = 0; i < rep.n_problems; i++) {
                problems[i] = TAKE_PTR(rep.problems[i]);
                if (!request_own(req, problems[i])) {
                        check_report_done(&rep);
                        return -ENOMEM;
                }
        }
        c->n_problems = rep.n_problems;
        if (bad_probe && (problems[c->n_problems] = request_strdup(req, probe.message)))
                c->n_problems++;
        if (!bad_probe && probe.copy >= PROBE_COPY_KEPT) {
                /* Unsafe: running only by [hsm] allow_unsafe_token, a problem every time. Kept: a property. */
                char text[640];

                probe_copy_problem(&probe, hsm_token_label(keystore_hsm(d->keystore)), text, sizeof(text));
                if (probe.copy == PROBE_COPY_UNSAFE) {
                        if ((problems[c->n_problems] = request_strdup(req, text)))
                                c->n_problems++;
                } else if ((notes[c->n_notes] = request_strdup(req, text)))
                        c->n_notes++;
        }
        /* A further token whose copies are kept is noted alike (its problems are tokens_check()'s). */
        for (size_t i = 1; i < tokenset_count(d->tokens); i++) {
                char text[640];

                if (tokenset_capability_problem(d->tokens, i, text, sizeof(text)) == 2 &&
                    (notes[c->n_notes] = request_strdup(req, text)))
                        c->n_notes++;
        }
        c->notes = c->n_notes ? notes : NULL;
        c->problems = problems;
        check_report_done(&rep);
        req->resp.body_case = KEK__RESPONSE__BODY_CHECK;
        req->resp.check = c;
        return 0;
}

