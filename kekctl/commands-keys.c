/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's key lifecycle commands: create, list, show, version, rotate,
 * policy, disable, enable, delete, recover, purge. Each builds one request
 * (policy reads the key first, to change only what is given) and prints the
 * answer as print.h does.
 */
#include "config.h"

#include <stdio.h>

#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "kekctl/print.h"

int cmd_create(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest cr = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, o, &name);
        if (r != 0)
                return r;
        cr.key = (char *) name;
        if (o->has_rotate_after || o->has_max_wraps) {
                pol.rotate_after_seconds = o->rotate_after;
                pol.max_wraps = o->max_wraps;
                cr.policy = &pol;
        }
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &cr;
        return call_key_info(&req, "create");
}

int cmd_list(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListKeysRequest lr = KEK__LIST_KEYS_REQUEST__INIT;
        Kek__Response *resp;
        json_object *a = NULL;
        int r;

        r = parse_no_args_cmd(argc, argv, o);
        if (r != 0)
                return r;
        lr.include_deleted = o->deleted;
        req.body_case = KEK__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &lr;
        r = call(&req, "list", KEK__RESPONSE__BODY_LIST_KEYS, &resp);
        if (r != 0)
                return r;
        if (arg_json)
                a = json_object_new_array();
        else if (o->deleted)
                printf("%-32s %-23s %s\n", "NAME", "DELETED", "PURGE DATE");
        else
                printf("%-32s %-9s %-8s %-9s %s\n", "NAME", "STATE", "CURRENT", "VERSIONS", "CREATED");
        for (size_t i = 0; i < resp->list_keys->n_keys; i++) {
                const Kek__KeyInfo *k = resp->list_keys->keys[i];
                char t[64], u[64];

                /* --deleted lists the recycle bin only, as the cloud service's "list deleted" does */
                if (o->deleted != (k->state == KEK__KEY_STATE__DELETED))
                        continue;
                if (a)
                        json_object_array_add(a, key_info_json(k));
                else if (o->deleted) {
                        format_time(k->deleted_usec, t, sizeof(t));
                        format_time(k->scheduled_purge_usec, u, sizeof(u));
                        printf("%-32s %-23s %s\n", k->name, t, u);
                } else {
                        format_time(k->created_usec, t, sizeof(t));
                        printf("%-32s %-9s %-8u %-9zu %s\n", k->name, state_name(k->state), k->current_version,
                               k->n_versions, t);
                }
        }
        if (a)
                print_json(a);
        kek_response_free(resp);
        return 0;
}

int cmd_show(CmdOpts *o, int argc, char *argv[]) {
        return call_simple_key_info(o, argc, argv, KEK__REQUEST__BODY_GET_KEY);
}

int cmd_version(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_GET_KEY_VERSION, KEK__RESPONSE__BODY_GET_KEY_VERSION, NULL, &resp);
        if (r != 0)
                return r;
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "name", json_object_new_string(resp->get_key_version->key));
                json_object_object_add(j, "current_version", json_object_new_int64(resp->get_key_version->current_version));
                json_object_object_add(j, "state", json_object_new_string(state_name(resp->get_key_version->state)));
                json_object_object_add(j, "recoverable", json_object_new_boolean(resp->get_key_version->recoverable));
                print_json(j);
        } else
                printf("Key:         %s\nCurrent:     %u\nState:       %s\nRecoverable: %s\n", resp->get_key_version->key,
                       resp->get_key_version->current_version, state_name(resp->get_key_version->state),
                       resp->get_key_version->recoverable ? "yes" : "no");
        kek_response_free(resp);
        return 0;
}

int cmd_rotate(CmdOpts *o, int argc, char *argv[]) {
        return call_simple_key_info(o, argc, argv, KEK__REQUEST__BODY_ROTATE_KEY);
}

int cmd_policy(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT, get = KEK__REQUEST__INIT;
        Kek__SetRotationPolicyRequest pr = KEK__SET_ROTATION_POLICY_REQUEST__INIT;
        Kek__GetKeyRequest gr = KEK__GET_KEY_REQUEST__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        Kek__Response *resp;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, o, &name);
        if (r != 0)
                return r;
        if (!o->has_rotate_after && !o->has_max_wraps)
                return usage_error("policy needs --rotate-after and/or --max-wraps");
        /* Change only what was given: start from the key's current policy. */
        gr.key = (char *) name;
        get.body_case = KEK__REQUEST__BODY_GET_KEY;
        get.get_key = &gr;
        r = call(&get, "policy", KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        if (resp->key_info->key && resp->key_info->key->policy) {
                pol.rotate_after_seconds = resp->key_info->key->policy->rotate_after_seconds;
                pol.max_wraps = resp->key_info->key->policy->max_wraps;
        }
        kek_response_free(resp);
        if (o->has_rotate_after)
                pol.rotate_after_seconds = o->rotate_after;
        if (o->has_max_wraps)
                pol.max_wraps = o->max_wraps;
        pr.key = (char *) name;
        pr.policy = &pol;
        req.body_case = KEK__REQUEST__BODY_SET_ROTATION_POLICY;
        req.set_rotation_policy = &pr;
        return call_key_info(&req, "policy");
}

static int set_enabled(CmdOpts *o, int argc, char *argv[], bool enabled) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetEnabledRequest sr = KEK__SET_ENABLED_REQUEST__INIT;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, o, &name);
        if (r != 0)
                return r;
        sr.key = (char *) name;
        sr.version = o->version;
        sr.enabled = enabled;
        req.body_case = KEK__REQUEST__BODY_SET_ENABLED;
        req.set_enabled = &sr;
        return call_key_info(&req, argv[0]);
}

int cmd_disable(CmdOpts *o, int argc, char *argv[]) {
        return set_enabled(o, argc, argv, false);
}

int cmd_enable(CmdOpts *o, int argc, char *argv[]) {
        return set_enabled(o, argc, argv, true);
}

int cmd_delete(CmdOpts *o, int argc, char *argv[]) {
        return call_simple_key_info(o, argc, argv, KEK__REQUEST__BODY_DELETE_KEY);
}

int cmd_recover(CmdOpts *o, int argc, char *argv[]) {
        return call_simple_key_info(o, argc, argv, KEK__REQUEST__BODY_RECOVER_KEY);
}

int cmd_purge(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        const char *name;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_PURGE_KEY, KEK__RESPONSE__BODY_EMPTY, &name, &resp);
        if (r != 0)
                return r;
        kek_response_free(resp);
        if (arg_json)
                printf("{ \"purged\": \"%s\" }\n", name);
        else
                printf("Purged key '%s': its HSM objects are destroyed.\n", name);
        return 0;
}
