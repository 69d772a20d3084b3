/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pkcs11/hsm.c's error reporting, on a SoftHSM2 token behind tests/p11-fault
 * (no socket, no kekd): a failed call is named by PKCS#11 function and CKR in
 * hsm_open()'s description, in hsm_last_error(), in the per-function record
 * and in the debug log; a token's permanent refusal (template, attribute,
 * mechanism, function not supported) is -KEKERR_UNSUPPORTED, not the
 * transient HSM_UNAVAILABLE; C_Initialize's CKR_ARGUMENTS_BAD carries the
 * hint about init parameters and p11-kit's x-init-reserved.
 *
 * Faults come from a rule file ($P11_FAULT_FILE), which p11-fault re-reads
 * whenever it changes, so one process can load the module several times.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "common/secret.h"
#include "daemon/log.h"
#include "pkcs11/ckr.h"
#include "pkcs11/hsm.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

static char rules_path[PATH_MAX], log_path[PATH_MAX];

/* Replaces the rule file: write aside, then rename, so p11-fault never reads half a file. */
static void rules(const char *text) {
        char tmp[PATH_MAX + 8];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", rules_path);
        f = fopen(tmp, "we");
        if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0 || rename(tmp, rules_path) < 0) {
                printf("Bail out! cannot write %s\n", rules_path);
                exit(99);
        }
}

static bool file_contains(const char *path, const char *needle) {
        char buf[64 * 1024];
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return false;
        buf[n] = 0;
        return strstr(buf, needle) != NULL;
}

static bool has_record(const Hsm *h, const char *function, const char *error, uint64_t min_count) {
        HsmCallError e[HSM_CALLS];
        size_t n = hsm_call_errors(h, e);

        for (size_t i = 0; i < n; i++)
                if (strcmp(e[i].function, function) == 0)
                        return strcmp(e[i].error, error) == 0 && e[i].count >= min_count && e[i].realtime_usec > 0;
        return false;
}

static void test_names(void) {
        is_int(strcmp(ckr_name(CKR_MECHANISM_INVALID), "CKR_MECHANISM_INVALID"), 0, "CKR_MECHANISM_INVALID by name");
        is_int(strcmp(ckr_name(CKR_FUNCTION_NOT_SUPPORTED), "CKR_FUNCTION_NOT_SUPPORTED"), 0,
               "CKR_FUNCTION_NOT_SUPPORTED by name");
        is_int(strcmp(ckr_name(CKR_ATTRIBUTE_VALUE_INVALID), "CKR_ATTRIBUTE_VALUE_INVALID"), 0,
               "CKR_ATTRIBUTE_VALUE_INVALID by name");
        is_int(strcmp(ckr_name(CKR_VENDOR_DEFINED | 0x42), "CKR_VENDOR_DEFINED"), 0, "a vendor code is CKR_VENDOR_DEFINED");
        is_int(strcmp(ckr_name(0x7fff), "CKR_UNKNOWN"), 0, "an unassigned code is CKR_UNKNOWN");
        ok(ckr_is_refusal(CKR_TEMPLATE_INCONSISTENT) && ckr_is_refusal(CKR_KEY_TYPE_INCONSISTENT) &&
                   !ckr_is_refusal(CKR_DEVICE_ERROR) && !ckr_is_refusal(CKR_SESSION_HANDLE_INVALID),
           "refusals and transient failures are told apart");
}

/* hsm_open() fails in C_Initialize with CKR_ARGUMENTS_BAD: the text names the call and hints at x-init-reserved. */
static void test_initialize(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        const char *why = NULL;
        int r;

        rules("C_Initialize:rv=0x7:count=1"); /* CKR_ARGUMENTS_BAD */
        r = hsm_open(lib, t->uri, pin, &h, &why);
        ok(r < 0 && !h, "hsm_open fails when C_Initialize does (%d)", r);
        diag("why: %s", why ?: "(null)");
        ok(why && strstr(why, "C_Initialize failed: CKR_ARGUMENTS_BAD"), "the error names C_Initialize and CKR_ARGUMENTS_BAD");
        ok(why && strstr(why, "x-init-reserved"), "the error hints at p11-kit's x-init-reserved");

        rules("C_OpenSession:rv=CKR_TOKEN_NOT_PRESENT:count=1");
        r = hsm_open(lib, t->uri, pin, &h, &why);
        ok(r < 0 && !h, "hsm_open fails when C_OpenSession does (%d)", r);
        diag("why: %s", why ?: "(null)");
        ok(why && strstr(why, "C_OpenSession failed: CKR_TOKEN_NOT_PRESENT"),
           "the error names C_OpenSession and CKR_TOKEN_NOT_PRESENT");
        ok(why && !strstr(why, "x-init-reserved"), "no init-parameter hint for other failures");
}

static void test_refusals(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        uint8_t iv[HSM_GCM_IV_SIZE] = { 1 }, pt[32] = { 2 }, ct[sizeof(pt) + HSM_GCM_TAG_SIZE];
        _cleanup_secret_ Secret *out = NULL;
        const char *why = NULL;
        HsmCallError last;
        HsmObject key, o;
        int r;

        rules("");
        if (!ok(hsm_open(lib, t->uri, pin, &h, &why) == 0, "HSM opened through p11-fault")) {
                diag("why: %s", why ?: "(null)");
                return;
        }
        is_int(hsm_last_call_error(h, &last), -ENODATA, "no call has failed yet");
        if (!ok(hsm_generate_aes_key(h, "k", 1, &key) == 0, "a key is generated"))
                return;

        {
                HsmTemplateAttr at[HSM_OPTIONAL_ATTRS];
                HsmKeyAttrs ka;

                hsm_template_attrs(h, at);
                ok(strcmp(at[0].name, "CKA_COPYABLE") == 0 && at[0].state == HSM_ATTR_ACCEPTED,
                   "SoftHSM2 accepts CKA_COPYABLE");
                /* openCryptoki 3.8: CKA_COPYABLE unknown. The first template has it: dropped, and asked again. */
                rules("C_GenerateKey:rv=0x12:count=1"); /* CKR_ATTRIBUTE_TYPE_INVALID */
                r = hsm_generate_aes_key(h, "k", 2, &o);
                is_int(r, 0, "C_GenerateKey CKR_ATTRIBUTE_TYPE_INVALID: generated again without the optional attribute");
                hsm_template_attrs(h, at);
                ok(at[0].state == HSM_ATTR_DROPPED, "CKA_COPYABLE is recorded as dropped");
                is_int(hsm_last_call_error(h, &last), -ENODATA, "the answer about the template is not a failure");
                ok(r == 0 && hsm_key_attributes(h, o, &ka) == 0 && ka.sensitive && !ka.extractable &&
                           ka.never_extractable && ka.always_sensitive && ka.private_ && ka.token && !ka.value_readable,
                   "the key is still sensitive, never extractable, private, a token object");
        }
        /* Without optional attributes left, the same answer is a refusal. */
        rules("C_GenerateKey:rv=0x12:count=1"); /* CKR_ATTRIBUTE_TYPE_INVALID */
        r = hsm_generate_aes_key(h, "k", 3, &o);
        is_int(r, -KEKERR_UNSUPPORTED, "C_GenerateKey CKR_ATTRIBUTE_TYPE_INVALID without optional attributes: UNSUPPORTED");
        ok(!kekerr_is_transient(r), "and that is not transient");
        is_int(strcmp(hsm_last_error(h), "C_GenerateKey: CKR_ATTRIBUTE_TYPE_INVALID"), 0, "hsm_last_error: %s",
               hsm_last_error(h));
        ok(hsm_last_call_error(h, &last) == 0 && strcmp(last.function, "C_GenerateKey") == 0 &&
                   strcmp(last.error, "CKR_ATTRIBUTE_TYPE_INVALID") == 0 && last.count == 1 && last.realtime_usec > 0,
           "hsm_last_call_error names C_GenerateKey, CKR_ATTRIBUTE_TYPE_INVALID, once, with a time");

        /* tpm2-pkcs11: no AES key generation. */
        rules("C_GenerateKey:rv=0x54:count=1"); /* CKR_FUNCTION_NOT_SUPPORTED */
        is_int(hsm_generate_aes_key(h, "k", 2, &o), -KEKERR_UNSUPPORTED, "C_GenerateKey CKR_FUNCTION_NOT_SUPPORTED: UNSUPPORTED");

        /* NSS: private token data objects refused. */
        rules("C_CreateObject:rv=0x13:count=1"); /* CKR_ATTRIBUTE_VALUE_INVALID */
        is_int(hsm_create_data(h, "kekd-test", "r", (const uint8_t *) "x", 1, &o), -KEKERR_UNSUPPORTED,
               "C_CreateObject CKR_ATTRIBUTE_VALUE_INVALID: UNSUPPORTED");
        ok(has_record(h, "C_CreateObject", "CKR_ATTRIBUTE_VALUE_INVALID", 1), "per-function record of C_CreateObject");

        /* openCryptoki, p11-kit remoting: no GCM. */
        rules("C_EncryptInit:rv=0x70:count=1"); /* CKR_MECHANISM_INVALID */
        is_int(hsm_encrypt_gcm(h, key, iv, NULL, 0, pt, sizeof(pt), ct), -KEKERR_UNSUPPORTED,
               "C_EncryptInit CKR_MECHANISM_INVALID: UNSUPPORTED");
        is_int(strcmp(hsm_last_error(h), "C_EncryptInit: CKR_MECHANISM_INVALID"), 0, "hsm_last_error: %s", hsm_last_error(h));
        rules("C_DecryptInit:rv=0x71:count=1"); /* CKR_MECHANISM_PARAM_INVALID */
        ok(hsm_encrypt_gcm(h, key, iv, NULL, 0, pt, sizeof(pt), ct) == 0, "encrypt works again without the fault");
        is_int(hsm_decrypt_gcm(h, key, iv, NULL, 0, ct, sizeof(ct), &out), -KEKERR_UNSUPPORTED,
               "C_DecryptInit CKR_MECHANISM_PARAM_INVALID: UNSUPPORTED");
        rules("C_EncryptInit:rv=0x63:count=1"); /* CKR_KEY_TYPE_INCONSISTENT */
        is_int(hsm_encrypt_gcm(h, key, iv, NULL, 0, pt, sizeof(pt), ct), -KEKERR_UNSUPPORTED,
               "C_EncryptInit CKR_KEY_TYPE_INCONSISTENT: UNSUPPORTED");

        /* A device failure stays transient, and is named too. */
        rules("C_Encrypt:rv=CKR_DEVICE_ERROR:count=1");
        r = hsm_encrypt_gcm(h, key, iv, NULL, 0, pt, sizeof(pt), ct);
        is_int(r, -KEKERR_HSM_UNAVAILABLE, "C_Encrypt CKR_DEVICE_ERROR: still HSM_UNAVAILABLE");
        is_int(strcmp(hsm_last_error(h), "C_Encrypt: CKR_DEVICE_ERROR"), 0, "hsm_last_error: %s", hsm_last_error(h));

        ok(has_record(h, "C_GenerateKey", "CKR_FUNCTION_NOT_SUPPORTED", 2), "C_GenerateKey: last error kept, 2 failures");
        ok(has_record(h, "C_EncryptInit", "CKR_KEY_TYPE_INCONSISTENT", 2), "C_EncryptInit: last error kept, 2 failures");
        ok(has_record(h, "C_DecryptInit", "CKR_MECHANISM_PARAM_INVALID", 1), "C_DecryptInit: its own record");
        ok(has_record(h, "C_Encrypt", "CKR_DEVICE_ERROR", 1), "C_Encrypt: its own record");
        ok(!has_record(h, "C_Decrypt", "CKR_OK", 0), "no record for a function that never failed");

        {
                HsmStats s;
                bool named = false, other = false;

                hsm_stats(h, &s);
                for (unsigned i = 0; i < s.n_errors; i++) {
                        named = named || strcmp(s.errors[i].name, "CKR_MECHANISM_INVALID") == 0;
                        other = other || strcmp(s.errors[i].name, "CKR_OTHER") == 0;
                }
                ok(named && !other, "metrics count CKR_MECHANISM_INVALID by name, nothing as CKR_OTHER");
        }
        rules("");
}

/*
 * One lost session moves the generation once, not once at the loss and again
 * at the reopen: an operation on another session that found its key again
 * between the two would otherwise fail on the second move (sessions-fault.sh,
 * eight unwraps in flight on four sessions, one meets CKR_SESSION_HANDLE_INVALID).
 */
static void test_one_move_per_loss(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        _cleanup_(hsm_freep) Hsm *s = NULL;
        uint8_t iv[HSM_GCM_IV_SIZE] = { 1 }, aad[4] = { 3 }, pt[32] = { 2 }, ct[sizeof(pt) + HSM_GCM_TAG_SIZE];
        _cleanup_secret_ Secret *out = NULL;
        const char *why = NULL;
        uint64_t gen;
        HsmObject key;
        int r;

        rules("");
        if (!ok(hsm_open(lib, t->uri, pin, &h, &why) == 0 && hsm_open_session(h, &s, &why) == 0,
                "loss: a parent and a second session opened through p11-fault"))
                return;
        if (!ok(hsm_generate_aes_key(h, "gen", 1, &key) == 0 &&
                        hsm_encrypt_gcm(s, key, iv, aad, sizeof(aad), pt, sizeof(pt), ct) == 0,
                "loss: a key, and a wrap under it on the second session"))
                return;
        gen = hsm_generation(h);
        rules("C_Decrypt:rv=CKR_SESSION_HANDLE_INVALID:count=1");
        r = hsm_decrypt_gcm(s, key, iv, aad, sizeof(aad), ct, sizeof(ct), &out);
        rules("");
        is_int(r, -ESTALE, "loss: the unwrap that met the lost session says 'open again, find the key again'");
        ok(hsm_is_open(s), "loss: the session is open again");
        is_int((int) (hsm_generation(h) - gen), 1, "loss: the generation moved once for the loss and its reopen");
        out = secret_free(out);
        is_int(hsm_decrypt_gcm(s, key, iv, aad, sizeof(aad), ct, sizeof(ct), &out), 0, "loss: the retry unwraps");
        is_int((int) (hsm_generation(h) - gen), 1, "loss: and moves nothing more");
}

int main(void) {
        _cleanup_secret_ Secret *pin = NULL;
        const char *lib = getenv("P11_FAULT_LIB");
        TestToken t;
        int log_fd, saved_err;

        if (!lib || access(lib, R_OK) < 0) {
                tap_skip_all("P11_FAULT_LIB not built (run through make check)");
                return 0;
        }
        test_names();
        if (token_setup(&t, "hsm-errors") < 0) {
                printf("Bail out! no SoftHSM2 token\n");
                return 99;
        }
        snprintf(rules_path, sizeof(rules_path), "%s/faults", t.dir);
        snprintf(log_path, sizeof(log_path), "%s/debug.log", t.dir);
        rules("");
        setenv("P11_FAULT_FILE", rules_path, 1);
        if (!getenv("P11_FAULT_MODULE"))
                setenv("P11_FAULT_MODULE", t.module, 1);
        if (secret_heap_init(1 << 20) < 0 || secret_new_copy(t.pin, strlen(t.pin), &pin) < 0) {
                printf("Bail out! no memory for the PIN\n");
                return 99;
        }

        /* The debug log goes to stderr: catch it in a file for the checks below. */
        log_setup(LOG_DEBUG);
        fflush(stderr);
        saved_err = dup(STDERR_FILENO);
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (saved_err < 0 || log_fd < 0 || dup2(log_fd, STDERR_FILENO) < 0) {
                printf("Bail out! cannot redirect stderr\n");
                return 99;
        }
        close(log_fd);

        test_initialize(&t, lib, pin);
        test_refusals(&t, lib, pin);
        test_one_move_per_loss(&t, lib, pin);

        fflush(stderr);
        (void) dup2(saved_err, STDERR_FILENO);
        close(saved_err);
        ok(file_contains(log_path, "C_EncryptInit failed: CKR_MECHANISM_INVALID"),
           "the debug log names C_EncryptInit and CKR_MECHANISM_INVALID");
        ok(file_contains(log_path, "C_CreateObject failed: CKR_ATTRIBUTE_VALUE_INVALID"),
           "the debug log names C_CreateObject and CKR_ATTRIBUTE_VALUE_INVALID");
        ok(!file_contains(log_path, t.pin), "the debug log holds no PIN");

        token_done(&t);
        return tap_done();
}
