/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's requests to kekd (see call.h), over the client transport of
 * client/transport.h: one connection per command.
 */
#include "config.h"

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

int call_key_info(Kek__Request *req, const char *what) {
        Kek__Response *resp;
        int r;

        r = call(req, what, KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        if (resp->key_info->key)
                print_key_info(resp->key_info->key);
        kek_response_free(resp);
        return 0;
}
