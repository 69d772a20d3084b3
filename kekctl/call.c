/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's requests to kekd (see call.h), over the client transport of
 * client/transport.h: one connection per command.
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/transport.h"
#include "common/kekerr.h"
#include "kekctl/call.h"
#include "kekctl/options.h"
#include "kekctl/print.h"

const char *arg_socket;
int arg_timeout_ms = 30000;
bool arg_request;

/* Reports a failed call and maps it to the exit status. */
static int report(KekConn *c, int r, const char *what) {
        const char *name = kekerr_name(r);

        if (name) {
                const char *msg = c ? kek_conn_error_message(c) : "";

                fprintf(stderr, "kekctl: %s: %s%s%s\n", what, name, msg[0] ? ": " : "", msg);
                return EXIT_REFUSED;
        }
        fprintf(stderr, "kekctl: %s: %s\n", what, strerror(-r));
        return EXIT_UNREACHABLE;
}

int call(Kek__Request *req, const char *what, Kek__Response__BodyCase want, Kek__Response **ret) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        const char *path = arg_socket ?: getenv("KEKD_SOCKET") ?: KEK_DEFAULT_SOCKET;
        Kek__Response *resp;
        int r;

        r = kek_conn_open(path, arg_timeout_ms, &c);
        if (r < 0) {
                fprintf(stderr, "kekctl: cannot connect to kekd at %s: %s\n", path, strerror(-r));
                return EXIT_UNREACHABLE;
        }
        if (arg_request && req->body_case != KEK__REQUEST__BODY_GET_KEY) {
                Kek__Request sub = KEK__REQUEST__INIT;
                Kek__SubmitApprovalRequest sr = KEK__SUBMIT_APPROVAL_REQUEST__INIT;

                sr.request = req;
                sub.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
                sub.submit_approval = &sr;
                r = kek_conn_call(c, &sub, &resp);
                if (r < 0)
                        return report(c, r, "request");
                if (resp->body_case != KEK__RESPONSE__BODY_APPROVAL) {
                        kek_response_free(resp);
                        return report(c, -EBADMSG, "request");
                }
                print_approvals(&resp->approval, 1, true);
                kek_response_free(resp);
                return EXIT_SUBMITTED;
        }
        r = kek_conn_call(c, req, &resp);
        if (r < 0)
                return report(c, r, what);
        if (want != KEK__RESPONSE__BODY__NOT_SET && resp->body_case != want) {
                kek_response_free(resp);
                return report(c, -EBADMSG, what);
        }
        *ret = resp;
        return 0;
}

/* Prints the key of a KeyInfo answer and frees it. */
static int print_key_info_response(Kek__Response *resp) {
        if (resp->key_info->key)
                print_key_info(resp->key_info->key);
        kek_response_free(resp);
        return 0;
}

int call_key_info(Kek__Request *req, const char *what) {
        Kek__Response *resp;
        int r;

        r = call(req, what, KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        return print_key_info_response(resp);
}

/* Room for the message of any request call_simple() sends: all begin with their ProtobufCMessage. */
typedef union SimpleRequest {
        ProtobufCMessage base;
        Kek__GetKeyRequest get_key;
        Kek__GetKeyVersionRequest get_key_version;
        Kek__RotateKeyRequest rotate_key;
        Kek__DeleteKeyRequest delete_key;
        Kek__RecoverKeyRequest recover_key;
        Kek__PurgeKeyRequest purge_key;
        Kek__ApproveRequest approve;
        Kek__CancelApprovalRequest cancel_approval;
        Kek__ListApprovalsRequest list_approvals;
        Kek__CheckRequest check;
        Kek__StatusRequest status;
} SimpleRequest;

int call_simple(CmdOpts *o, int argc, char *argv[], Kek__Request__BodyCase body, Kek__Response__BodyCase want,
                const char **ret_arg, Kek__Response **ret) {
        /* The request's oneof member for body (body cases are its field numbers) and that member's message type:
         * protobuf-c describes both, so one function builds them all. */
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(&kek__request__descriptor, body);
        const ProtobufCMessageDescriptor *d;
        Kek__Request req = KEK__REQUEST__INIT;
        SimpleRequest m;
        const char *arg = NULL;
        int r;

        assert(f && f->type == PROTOBUF_C_TYPE_MESSAGE);
        d = f->descriptor;
        assert(d->sizeof_message <= sizeof(m));
        assert(d->n_fields == 0 || (d->n_fields == 1 && d->fields[0].type == PROTOBUF_C_TYPE_STRING));
        if (d->n_fields == 0)
                r = parse_no_args_cmd(argc, argv, o);
        else if (strcmp(d->fields[0].name, "id") == 0)
                r = parse_id_cmd(argc, argv, o, &arg);
        else {
                assert(strcmp(d->fields[0].name, "key") == 0);
                r = parse_name_cmd(argc, argv, o, &arg);
        }
        if (r != 0)
                return r;
        protobuf_c_message_init(d, &m);
        if (arg)
                *(const char **) ((uint8_t *) &m + d->fields[0].offset) = arg;
        req.body_case = body;
        *(ProtobufCMessage **) ((uint8_t *) &req + f->offset) = &m.base;
        r = call(&req, argv[0], want, ret);
        if (r != 0)
                return r;
        if (ret_arg)
                *ret_arg = arg;
        return 0;
}

int call_simple_key_info(CmdOpts *o, int argc, char *argv[], Kek__Request__BodyCase body) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, body, KEK__RESPONSE__BODY_KEY_INFO, NULL, &resp);
        if (r != 0)
                return r;
        return print_key_info_response(resp);
}
