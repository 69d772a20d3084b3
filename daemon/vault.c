/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Vault policy storage and rules (see vault.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/vault.h"
#include "proto/kek.pb-c.h"

#define APP_VAULT VAULT_APP
#define VAULT_LABEL "vault"

int vault_apply(Vault *vault, const HsmDataObject *d, size_t n) {
        bool found = false;

        for (size_t i = 0; i < n; i++) {
                Kek__VaultRecord *v;

                if (strcmp(d[i].label, VAULT_LABEL) != 0)
                        continue;
                v = kek__vault_record__unpack(NULL, d[i].value_len, d[i].value);

                if (v && v->format == 1 && v->retention_days >= RETENTION_DAYS_MIN &&
                    v->retention_days <= RETENTION_DAYS_MAX && (!found || v->generation > vault->generation)) {
                        vault->policy = (VaultPolicy) {
                                .retention_days = v->retention_days,
                                .purge_protection = v->purge_protection,
                                .dual_control = v->dual_control & DUAL_CONTROL_ALL,
                                .approval_window_sec = v->approval_window_seconds >= APPROVAL_WINDOW_MIN &&
                                                                       v->approval_window_seconds <= APPROVAL_WINDOW_MAX
                                                               ? v->approval_window_seconds
                                                               : APPROVAL_WINDOW_DEFAULT,
                                .trusted_wrap = v->trusted_wrap,
                        };
                        vault->generation = v->generation;
                        found = true;
                }
                if (v)
                        kek__vault_record__free_unpacked(v, NULL);
        }
        if (!found) {
                if (vault->generation > 0)
                        return -KEKERR_HSM_UNAVAILABLE; /* we saw a vault record before: it cannot have gone */
                vault->policy = (VaultPolicy) { RETENTION_DAYS_DEFAULT, false, 0, APPROVAL_WINDOW_DEFAULT, false };
        }
        /* One-way: once seen on, purge protection stays on for this kekd whatever a listing says. */
        vault->policy.purge_protection = vault->policy.purge_protection || vault->purge_protection_seen;
        vault->purge_protection_seen = vault->policy.purge_protection;
        vault->policy.trusted_wrap = vault->policy.trusted_wrap || vault->trusted_wrap_seen;
        vault->trusted_wrap_seen = vault->policy.trusted_wrap;
        return 0;
}

int vault_load(Vault *vault, Hsm *hsm) {
        HsmDataObject *d = NULL;
        size_t n = 0;
        int r;

        r = hsm_list_data(hsm, APP_VAULT, VAULT_LABEL, &d, &n);
        if (r < 0)
                return r;
        r = vault_apply(vault, d, n);
        hsm_data_objects_free(d, n);
        return r;
}

bool vault_change_weakens(const VaultPolicy *cur, const VaultChange *c) {
        return (c->retention_days != 0 && c->retention_days < cur->retention_days) ||
               (c->set_dual_control && (cur->dual_control & ~c->dual_control) != 0) ||
               (c->approval_window_sec != 0 && c->approval_window_sec > cur->approval_window_sec) ||
               (c->trusted_wrap == 1 && !cur->trusted_wrap);
}

int vault_set(Vault *vault, Hsm *hsm, const VaultChange *c) {
        Kek__VaultRecord rec = KEK__VAULT_RECORD__INIT;
        HsmDataObject *d = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        VaultPolicy v;
        HsmObject h;
        size_t n = 0, len;
        uint64_t gen;
        int r;

        r = vault_load(vault, hsm);
        if (r < 0)
                return r;
        v = vault->policy;
        if (c->retention_days != 0) {
                if (c->retention_days < RETENTION_DAYS_MIN || c->retention_days > RETENTION_DAYS_MAX)
                        return -KEKERR_INVALID_ARGUMENT;
                if (v.purge_protection && c->retention_days < v.retention_days)
                        return -KEKERR_PERMISSION_DENIED; /* would shorten the protection */
                v.retention_days = c->retention_days;
        }
        if (c->purge_protection == 0 && v.purge_protection)
                return -KEKERR_PERMISSION_DENIED; /* one-way */
        if (c->purge_protection == 1)
                v.purge_protection = true;
        if (c->trusted_wrap == 0 && v.trusted_wrap)
                return -KEKERR_PERMISSION_DENIED; /* one-way: the wrappable versions stay wrappable */
        if (c->trusted_wrap == 1)
                v.trusted_wrap = true;
        if (c->set_dual_control) {
                if (c->dual_control & ~(uint32_t) DUAL_CONTROL_ALL)
                        return -KEKERR_INVALID_ARGUMENT;
                v.dual_control = c->dual_control;
        }
        if (c->approval_window_sec != 0) {
                if (c->approval_window_sec < APPROVAL_WINDOW_MIN || c->approval_window_sec > APPROVAL_WINDOW_MAX)
                        return -KEKERR_INVALID_ARGUMENT;
                v.approval_window_sec = c->approval_window_sec;
        }
        if (v.retention_days == vault->policy.retention_days && v.purge_protection == vault->policy.purge_protection &&
            v.dual_control == vault->policy.dual_control && v.approval_window_sec == vault->policy.approval_window_sec &&
            v.trusted_wrap == vault->policy.trusted_wrap && vault->generation > 0)
                return 0; /* nothing to change: no rewrite, no window */

        rec.format = 1;
        rec.retention_days = v.retention_days;
        rec.purge_protection = v.purge_protection;
        rec.dual_control = v.dual_control;
        rec.approval_window_seconds = v.approval_window_sec;
        rec.trusted_wrap = v.trusted_wrap;
        rec.generation = vault->generation + 1;
        len = kek__vault_record__get_packed_size(&rec);
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        kek__vault_record__pack(&rec, buf);
        r = hsm_list_data(hsm, APP_VAULT, VAULT_LABEL, &d, &n);
        if (r < 0)
                return r;
        gen = hsm_generation(hsm);
        r = hsm_create_data(hsm, APP_VAULT, VAULT_LABEL, buf, len, &h);
        if (r >= 0) {
                /* Listed before the create: after a reopen their handles may name ours; left for the next write. */
                for (size_t i = 0; i < n; i++)
                        (void) hsm_destroy_listed(hsm, d[i].handle, gen);
                vault->policy = v;
                vault->generation = rec.generation;
                vault->purge_protection_seen = v.purge_protection;
                vault->trusted_wrap_seen = v.trusted_wrap;
        }
        hsm_data_objects_free(d, n);
        return r;
}
