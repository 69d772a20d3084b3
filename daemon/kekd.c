/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd: the key-encryption-key daemon. Start-up order matters for secrets:
 * the process is made non-dumpable and the secure heap is set up before the
 * PIN is read; the PIN is read from its file into secure memory and never
 * appears in argv, the environment or a log line. Then the HSM is opened, the
 * key index loaded from the token, the socket opened (or taken from systemd),
 * and READY=1 sent. SIGTERM/SIGINT end the loop after the current request.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/conf.h"
#include "daemon/dispatch.h"
#include "daemon/keystore.h"
#include "daemon/log.h"
#include "daemon/pin.h"
#include "daemon/server.h"
#include "pkcs11/hsm.h"

#define DEFAULT_CONFIG SYSCONFDIR "/kekd/kekd.conf"
#define SECURE_HEAP_SIZE (1024u * 1024u)

static const char *arg_config = DEFAULT_CONFIG;
static bool arg_check_config;

static void help(void) {
        printf("Usage: kekd [OPTIONS]\n\n"
               "Serves key wrapping with keys that never leave a PKCS#11 HSM.\n\n"
               "  -c, --config=PATH   configuration file (default: %s)\n"
               "      --check-config  parse the configuration, report errors, and exit\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n\n"
               "See kekd(8) and kekd.conf(5).\n",
               DEFAULT_CONFIG);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_CHECK_CONFIG = 0x100, ARG_VERSION };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kekd %s%s\n", PACKAGE_VERSION, ENABLE_TEST_CLOCK ? " (test-clock)" : "");
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "kekd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

typedef struct Maintenance {
        Keystore *keystore;
        uint64_t interval_usec;
} Maintenance;

/*
 * Every refresh interval: re-read the token (changes made through other
 * kekd instances), repair interrupted operations, purge, rotate by policy and
 * record usage. The interval is the bound on how late another node's
 * disable or delete is honoured here.
 */
static int on_maintenance(sd_event_source *s, uint64_t usec, void *userdata) {
        Maintenance *m = userdata;
        uint64_t now;
        int r;

        r = keystore_maintain(m->keystore, clock_now_usec());
        if (r < 0)
                log_warning_errno(r, "Periodic refresh of the keys failed; serving the last known state");
        /* Count the interval from the end of this run, so a slow HSM cannot make us run back to back. */
        if (sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                now = usec;
        (void) sd_event_source_set_time(s, now + m->interval_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int listen_fd_from_systemd(void) {
        int n = sd_listen_fds(true);

        if (n <= 0)
                return -1;
        if (n > 1)
                log_warning("Got %d sockets from systemd; serving only the first", n);
        return SD_LISTEN_FDS_START;
}

static int run(int argc, char *argv[]) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(secret_freep) Secret *pin = NULL;
        _cleanup_(hsm_freep) Hsm *hsm = NULL;
        _cleanup_(keystore_freep) Keystore *keystore = NULL;
        _cleanup_(server_freep) Server *server = NULL;
        sd_event *event = NULL;
        _cleanup_free_ char *error = NULL;
        const char *why = NULL;
        Dispatcher dispatcher;
        Maintenance maintenance;
        char owner[OWNER_MAX], host[64] = "localhost";
        sigset_t mask;
        int listen_fd, r;

        log_setup(LOG_INFO);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = config_load(arg_config, &config, &error);
        if (r < 0) {
                log_error("%s", error ? error : "cannot load configuration");
                return 1;
        }
        if (arg_check_config) {
                printf("%s: OK\n", arg_config);
                return 0;
        }
        log_setup(config->log_level);

        /* Descriptors: use what the hard limit allows (systemd sets a high one); see FD_RESERVE_MAX. */
        {
                struct rlimit rl;

                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                        rl.rlim_cur = rl.rlim_max;
                        (void) setrlimit(RLIMIT_NOFILE, &rl);
                }
        }

        /* No core dumps or ptrace by other users of our uid: memory holds PIN and AEKs. */
        if (prctl(PR_SET_DUMPABLE, 0) < 0)
                log_warning_errno(-errno, "Cannot make the process non-dumpable");
        r = secret_heap_init(SECURE_HEAP_SIZE);
        if (r < 0) {
                log_error_errno(r, "Cannot set up secure memory");
                return 1;
        }
        if (r == 0)
                log_warning("Secure memory could not be locked (RLIMIT_MEMLOCK); secrets may be swapped");

        r = pin_read(config->pin_file, &pin, &why);
        if (r < 0) {
                log_error_errno(r, "%s: %s", config->pin_file, why);
                return 1;
        }
        r = hsm_open(config->module, config->token_uri, pin, &hsm, &why);
        if (r < 0) {
                log_error_errno(r, "Cannot open token %s with module %s: %s", config->token_uri, config->module,
                                why ? why : "unknown error");
                return 1;
        }
        pin = secret_free(pin); /* the Hsm keeps its own copy for re-login */

        (void) gethostname(host, sizeof(host) - 1);
        snprintf(owner, sizeof(owner), "%s:%d", host, (int) getpid());
        r = keystore_new(hsm, owner, &keystore);
        if (r < 0) {
                log_error_errno(r, "Cannot read keys from token '%s' (%s)", hsm_token_label(hsm), hsm_last_error(hsm));
                return 1;
        }
        keystore_set_allow_unrecoverable(keystore, config->allow_unrecoverable);
        if (config->allow_unrecoverable)
                log_warning("allow_unrecoverable is set: keys are served for wrap although the vault has no purge "
                            "protection. For development only; a deleted key could be purged at once.");
        /* Finish or roll back whatever a previous kekd left half done before serving anyone. */
        r = keystore_maintain(keystore, clock_now_usec());
        if (r < 0)
                log_warning_errno(r, "Repair of interrupted operations failed; will retry");

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGPIPE);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "Cannot create event loop");
                return 1;
        }
        (void) sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);

        maintenance = (Maintenance) { keystore, (uint64_t) config->refresh_interval * USEC_PER_SEC };
        r = sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC, maintenance.interval_usec, 0, on_maintenance,
                                       &maintenance);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the refresh timer");
                sd_event_unref(event);
                return 1;
        }
        dispatcher = (Dispatcher) { .keystore = keystore, .max_frame = config->max_frame, .now_usec = clock_now_usec };
        listen_fd = listen_fd_from_systemd();
        r = server_new(event, config, &dispatcher, listen_fd, &server);
        if (r < 0) {
                sd_event_unref(event);
                return 1;
        }

        log_info("Serving %zu keys from token '%s' on %s", keystore_n_keys(keystore), hsm_token_label(hsm),
                 listen_fd >= 0 ? "the socket passed by systemd" : config->socket_path);
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving %zu keys", keystore_n_keys(keystore));

        r = sd_event_loop(event);
        (void) sd_notify(false, "STOPPING=1");
        /* Unwrap counts and last-use times since the last refresh would be lost otherwise. */
        if (keystore_flush_usage(keystore) < 0)
                log_warning("Could not record the latest key usage in the token");
        server = server_free(server);
        sd_event_unref(event);
        if (r < 0) {
                log_error_errno(r, "Event loop failed");
                return 1;
        }
        log_info("Stopped");
        return 0;
}

int main(int argc, char *argv[]) {
        return run(argc, argv);
}
