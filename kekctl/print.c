/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rendering of keys, grants and approval requests (see print.h). Principals
 * are shown by name where the local user and group databases know them.
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <time.h>

#include "common/opnames.h"
#include "kekctl/options.h"
#include "kekctl/print.h"

const char *state_name(Kek__KeyState s) {
        switch (s) {
        case KEK__KEY_STATE__ENABLED:
                return "enabled";
        case KEK__KEY_STATE__DISABLED:
                return "disabled";
        case KEK__KEY_STATE__DELETED:
                return "deleted";
        default:
                return "unknown";
        }
}

void format_time(uint64_t usec, char *buf, size_t size) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, size, "-");
}

/* "user:alice" / "group:1234": how a grant's principal is shown. */
static const char *principal_string(const Kek__Grant *g, char buf[static 96]) {
        if (g->group) {
                struct group *gr = getgrgid((gid_t) g->id);

                if (gr)
                        snprintf(buf, 96, "group:%s", gr->gr_name);
                else
                        snprintf(buf, 96, "group:%u", g->id);
        } else {
                struct passwd *pw = getpwuid((uid_t) g->id);

                if (pw)
                        snprintf(buf, 96, "user:%s", pw->pw_name);
                else
                        snprintf(buf, 96, "user:%u", g->id);
        }
        return buf;
}

json_object *grants_json(Kek__Grant *const *grants, size_t n) {
        json_object *a = json_object_new_array();
        char p[96], ops[32];

        for (size_t i = 0; i < n; i++) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "principal", json_object_new_string(principal_string(grants[i], p)));
                json_object_object_add(j, grants[i]->group ? "gid" : "uid", json_object_new_int64(grants[i]->id));
                json_object_object_add(j, "ops", json_object_new_string(grant_ops_to_string(grants[i]->ops, ops)));
                json_object_array_add(a, j);
        }
        return a;
}

void print_grants(Kek__Grant *const *grants, size_t n) {
        char p[96], ops[32];

        printf("%-32s %-8s %s\n", "PRINCIPAL", "ID", "OPERATIONS");
        for (size_t i = 0; i < n; i++)
                printf("%-32s %-8u %s\n", principal_string(grants[i], p), grants[i]->id,
                       grant_ops_to_string(grants[i]->ops, ops));
}

json_object *key_info_json(const Kek__KeyInfo *k) {
        json_object *o = json_object_new_object(), *vs = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(k->name));
        json_object_object_add(o, "state", json_object_new_string(state_name(k->state)));
        json_object_object_add(o, "current_version", json_object_new_int64(k->current_version));
        json_object_object_add(o, "created_usec", json_object_new_uint64(k->created_usec));
        json_object_object_add(o, "recoverable", json_object_new_boolean(k->recoverable));
        if (k->policy) {
                json_object_object_add(o, "rotate_after_seconds", json_object_new_uint64(k->policy->rotate_after_seconds));
                json_object_object_add(o, "max_wraps", json_object_new_uint64(k->policy->max_wraps));
        }
        if (k->state == KEK__KEY_STATE__DELETED) {
                json_object_object_add(o, "deleted_usec", json_object_new_uint64(k->deleted_usec));
                json_object_object_add(o, "scheduled_purge_usec", json_object_new_uint64(k->scheduled_purge_usec));
        }
        for (size_t i = 0; i < k->n_versions; i++) {
                const Kek__VersionInfo *v = k->versions[i];
                json_object *j = json_object_new_object();

                json_object_object_add(j, "id", json_object_new_int64(v->id));
                json_object_object_add(j, "enabled", json_object_new_boolean(v->enabled));
                json_object_object_add(j, "profile", json_object_new_int((int) v->profile)); /* 0 gcm, 1 ctr-hmac, 2 gcm-token-iv, 3 cbc-hmac */
                /* Backup mode trusted-wrap (docs/backup.md): false = never extractable, lost with the token. */
                json_object_object_add(j, "wrap_with_trusted", json_object_new_boolean(v->wrap_with_trusted));
                /* Unwrapped here by kekctl restore (docs/backup.md); only shown when true. */
                if (v->restored)
                        json_object_object_add(j, "restored", json_object_new_boolean(true));
                json_object_object_add(j, "created_usec", json_object_new_uint64(v->created_usec));
                json_object_object_add(j, "wraps", json_object_new_uint64(v->wraps));
                json_object_object_add(j, "unwraps", json_object_new_uint64(v->unwraps));
                json_object_object_add(j, "last_use_usec", json_object_new_uint64(v->last_use_usec));
                json_object_array_add(vs, j);
        }
        json_object_object_add(o, "versions", vs);
        json_object_object_add(o, "grants", grants_json(k->grants, k->n_grants));
        return o;
}

void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

void print_key_info(const Kek__KeyInfo *k) {
        char t[64], u[64];

        if (arg_json) {
                print_json(key_info_json(k));
                return;
        }
        format_time(k->created_usec, t, sizeof(t));
        printf("Key:         %s\nState:       %s\nCurrent:     %u\nCreated:     %s\nRecoverable: %s\n", k->name,
               state_name(k->state), k->current_version, t, k->recoverable ? "yes" : "no");
        if (k->policy) {
                if (k->policy->rotate_after_seconds)
                        printf("Rotation:    every %llu s", (unsigned long long) k->policy->rotate_after_seconds);
                else
                        printf("Rotation:    manual");
                printf(", at most %llu wraps per version\n", (unsigned long long) k->policy->max_wraps);
        }
        if (k->state == KEK__KEY_STATE__DELETED) {
                format_time(k->deleted_usec, t, sizeof(t));
                format_time(k->scheduled_purge_usec, u, sizeof(u));
                printf("Deleted:     %s\nPurge date:  %s\n", t, u);
        }
        printf("\n%-9s %-9s %-23s %12s %12s  %s\n", "VERSION", "STATE", "CREATED", "WRAPS", "UNWRAPS", "LAST USE");
        for (size_t i = 0; i < k->n_versions; i++) {
                const Kek__VersionInfo *v = k->versions[i];

                format_time(v->created_usec, t, sizeof(t));
                format_time(v->last_use_usec, u, sizeof(u));
                printf("%-9u %-9s %-23s %12llu %12llu  %s%s%s\n", v->id, v->enabled ? "enabled" : "disabled", t,
                       (unsigned long long) v->wraps, (unsigned long long) v->unwraps, u,
                       v->id == k->current_version ? "  (current)" : "", v->restored ? "  (restored)" : "");
        }
        if (k->n_grants > 0) {
                printf("\n");
                print_grants(k->grants, k->n_grants);
        }
}

void print_approvals(Kek__ApprovalInfo *const *a, size_t n, bool submitted) {
        char t[64], u[64];

        if (arg_json) {
                json_object *arr = json_object_new_array();

                for (size_t i = 0; i < n; i++) {
                        json_object *j = json_object_new_object();

                        json_object_object_add(j, "id", json_object_new_string(a[i]->id));
                        json_object_object_add(j, "op", json_object_new_string(a[i]->op));
                        json_object_object_add(j, "key", json_object_new_string(a[i]->key));
                        json_object_object_add(j, "requester_uid", json_object_new_int64(a[i]->requester_uid));
                        json_object_object_add(j, "requester_pid", json_object_new_int64(a[i]->requester_pid));
                        json_object_object_add(j, "created_usec", json_object_new_uint64(a[i]->created_usec));
                        json_object_object_add(j, "expires_usec", json_object_new_uint64(a[i]->expires_usec));
                        if (submitted) {
                                print_json(j);
                                json_object_put(arr);
                                return;
                        }
                        json_object_array_add(arr, j);
                }
                print_json(arr);
                return;
        }
        if (submitted) {
                format_time(a[0]->expires_usec, u, sizeof(u));
                printf("Submitted %s%s%s%s for approval.\nRequest:  %s\nExpires:  %s\n"
                       "Another officer approves it with: kekctl approve %s\n",
                       a[0]->op, a[0]->key[0] ? " of key '" : "", a[0]->key, a[0]->key[0] ? "'" : "", a[0]->id, u,
                       a[0]->id);
                return;
        }
        printf("%-32s  %-16s %-20s %9s  %-23s  %s\n", "ID", "OP", "KEY", "REQUESTER", "SUBMITTED", "EXPIRES");
        for (size_t i = 0; i < n; i++) {
                format_time(a[i]->created_usec, t, sizeof(t));
                format_time(a[i]->expires_usec, u, sizeof(u));
                printf("%-32s  %-16s %-20s %9u  %-23s  %s\n", a[i]->id, a[i]->op, a[i]->key[0] ? a[i]->key : "-",
                       a[i]->requester_uid, t, u);
        }
}
