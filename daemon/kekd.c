/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd: the key-encryption-key daemon. Start-up order matters for secrets:
 * the process is made non-dumpable and the secure heap is set up before the
 * PIN is read; the PIN is read from its file (or from the systemd credential
 * kekd-pin) into secure memory and never appears in argv, the environment or
 * a log line. Then the HSM is opened, the key index loaded from the token,
 * the socket opened (or taken from systemd), and READY=1 sent.
 *
 * The service manager protocol (kekd(8), NOTIFICATIONS and SIGNALS):
 *  - READY=1 once serving; STATUS= with keys, versions and clients, renewed
 *    at every refresh;
 *  - SIGHUP: RELOADING=1, the configuration file is read again and what can
 *    change without a restart (log level, refresh_interval,
 *    allow_unrecoverable) is applied, then READY=1; a file that does not
 *    parse leaves the running configuration in place;
 *  - SIGTERM/SIGINT: STOPPING=1, then the event loop keeps running until
 *    every connected client is done or DRAIN_TIMEOUT_USEC has passed, so
 *    requests already sent get their replies; a second signal stops at once;
 *  - WATCHDOG=1 every half WATCHDOG_USEC from a timer of the event loop, so
 *    a loop stuck in the HSM stops the pings.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "common/kekerr.h"
#include "daemon/audit.h"
#include "daemon/clock.h"
#include "daemon/conf.h"
#include "daemon/cryptopool.h"
#include "daemon/failover.h"
#include "daemon/hsmtask.h"
#include "daemon/tokenset.h"
#include "daemon/dispatch.h"
#include "daemon/keystore.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/pin.h"
#include "daemon/refresh.h"
#include "daemon/server.h"
#include "pkcs11/hsm.h"
#include "pkcs11/probe.h"

#define DEFAULT_CONFIG SYSCONFDIR "/kekd/kekd.conf"
#define SECURE_HEAP_SIZE (1024u * 1024u)
/* After SIGTERM: how long connected clients may take to send their last requests and read the replies. */
#define DRAIN_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* FileDescriptorName= of the socket kekd serves (contrib/kekd.socket). */
#define LISTEN_FD_NAME "kekd"
/* LoadCredential= name of the token PIN (contrib/kekd.service). */
#define PIN_CREDENTIAL "kekd-pin"

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

typedef struct Daemon {
        sd_event *event;
        Config *config;            /* the running configuration; reloadable settings are updated in place */
        Keystore *keystore;
        Server *server;
        Dispatcher dispatcher;
        Audit *audit;
        Metrics *metrics;
        bool socket_from_systemd;
        bool metrics_failed;       /* the last write of the metrics file failed (logged once per failure streak) */
        bool last_refresh_failed;
        bool last_reload_failed;   /* shown in STATUS= until a reload succeeds */
        bool draining;
        Refresh *refresh;          /* re-reads the token every refresh_interval (daemon/refresh.h) */
        uint64_t watchdog_ping_usec;
        sd_event_source *audit_source;
        sd_event_source *metrics_source;
        sd_event_source *watchdog_source;
        sd_event_source *drain_timeout_source;
        sd_event_source *drain_check_source;
} Daemon;

static void daemon_done(Daemon *d) {
        d->audit_source = sd_event_source_disable_unref(d->audit_source);
        d->metrics_source = sd_event_source_disable_unref(d->metrics_source);
        d->watchdog_source = sd_event_source_disable_unref(d->watchdog_source);
        d->drain_timeout_source = sd_event_source_disable_unref(d->drain_timeout_source);
        d->drain_check_source = sd_event_source_disable_unref(d->drain_check_source);
}

static const char *plural(size_t n, const char *one, const char *many) {
        return n == 1 ? one : many;
}

static unsigned n_clients(const Daemon *d) {
        return d->server ? server_n_connections(d->server) : 0;
}

/* "Serving 3 keys (5 versions) to 2 clients": what systemctl status shows. */
static void format_status(const Daemon *d, char *buf, size_t size) {
        size_t keys, versions;
        unsigned clients = n_clients(d);

        keystore_count(d->keystore, &keys, &versions);
        snprintf(buf, size, "Serving %zu %s (%zu %s) to %u %s%s%s", keys, plural(keys, "key", "keys"), versions,
                 plural(versions, "version", "versions"), clients, plural(clients, "client", "clients"),
                 d->last_refresh_failed ? "; the last refresh from the token failed" : "",
                 d->last_reload_failed ? "; the configuration file did not load, see the log" : "");
}

static void notify_status(const Daemon *d, bool ready) {
        char status[256];

        format_status(d, status, sizeof(status));
        (void) sd_notifyf(false, "%sSTATUS=%s", ready ? "READY=1\n" : "", status);
}

/* The metrics' view of the HSM sessions besides the keystore's (daemon/metrics.h). */
static unsigned on_hsm_stats(HsmStats *acc, void *userdata) {
        Daemon *d = userdata;

        crypto_pool_stats(d->dispatcher.pool, acc);
        hsm_task_stats(refresh_task(d->refresh), acc);
        return crypto_pool_sessions(d->dispatcher.pool);
}

/* The refresh's report after each round (daemon/refresh.h): STATUS= says whether the last one failed. */
static void on_refresh_report(bool failed, void *userdata) {
        Daemon *d = userdata;

        d->last_refresh_failed = failed;
        notify_status(d, false);
}

/* Every audit_interval: one audit record per (op, key, version, peer, result) of the data plane. */
static int on_audit(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;

        (void) audit_flush(d->audit);
        clock_reschedule(s, usec, (uint64_t) d->config->audit_interval * USEC_PER_SEC);
        return 0;
}

/* Every [metrics] interval: the Prometheus textfile. A failure is logged when it starts and when it ends. */
static int on_metrics(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        int r;

        r = metrics_write_file(d->metrics, d->keystore, d->config->metrics_file);
        if (r < 0 && !d->metrics_failed)
                log_warning_errno(r, "Cannot write the metrics file %s; retrying every %u s", d->config->metrics_file,
                                  d->config->metrics_interval);
        else if (r >= 0 && d->metrics_failed)
                log_notice("Writing the metrics file %s again", d->config->metrics_file);
        d->metrics_failed = r < 0;
        clock_reschedule(s, usec, (uint64_t) d->config->metrics_interval * USEC_PER_SEC);
        return 0;
}

/*
 * How old an index Confirm still vouches from: two refresh intervals and 2 s, so that one
 * reading late on a busy machine does not send every client to unwrap, while a kekd whose
 * readings fail (HSM away) stops confirming within that bound and its clients meet the
 * unwrap's transient error and grace rules, as without Confirm.
 */
static uint64_t confirm_max_age(unsigned refresh_interval) {
        return (2 * (uint64_t) refresh_interval + 2) * USEC_PER_SEC;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;

        (void) sd_notify(false, "WATCHDOG=1");
        clock_reschedule(s, usec, d->watchdog_ping_usec);
        return 0;
}

static const char *log_level_name(int level) {
        switch (level) {
        case LOG_ERR:
                return "error";
        case LOG_WARNING:
                return "warning";
        case LOG_NOTICE:
                return "notice";
        case LOG_INFO:
                return "info";
        case LOG_DEBUG:
                return "debug";
        default:
                return "?";
        }
}

/*
 * Keys that only a restart applies (conf.h, config_keys[]): a changed one is
 * reported, and the running value stays. reload_config() applies the rest.
 */
static void warn_restart_needed(const Daemon *d, const Config *old, const Config *new) {
        for (size_t i = 0; i < config_n_keys; i++) {
                const ConfigKey *k = &config_keys[i];

                if (k->reload == CONFIG_RELOAD_APPLY || !config_key_changed(k, old, new))
                        continue;
                if (k->reload == CONFIG_RELOAD_SOCKET && d->socket_from_systemd)
                        log_info("'%s' in [%s] changed; it does not apply while systemd passes the socket",
                                 k->name, k->section);
                else
                        log_warning("'%s' in [%s] changed; the change takes effect only when kekd is restarted",
                                    k->name, k->section);
        }
        if (config_tokens_changed(old, new))
                log_warning("The [hsm.NAME] sections changed; the change takes effect only when kekd is restarted");
}

/* SIGHUP: reads the configuration file again and applies what can change while running. */
static void reload_config(Daemon *d) {
        _cleanup_(config_freep) Config *new = NULL;
        _cleanup_free_ char *error = NULL;
        Config *old = d->config;
        int r;

        r = config_load(arg_config, &new, &error);
        d->last_reload_failed = r < 0;
        if (r < 0) {
                if (error)
                        log_error("%s; configuration not reloaded, the running one stays in effect", error);
                else
                        log_error_errno(r, "Cannot load %s; configuration not reloaded, the running one stays in effect",
                                        arg_config);
                return;
        }

        if (new->log_level != old->log_level) {
                int from = old->log_level;

                log_setup(new->log_level);
                old->log_level = new->log_level;
                log_notice("Log level changed from %s to %s", log_level_name(from), log_level_name(new->log_level));
        }
        if (new->refresh_interval != old->refresh_interval) {
                log_notice("refresh_interval changed from %u s to %u s", old->refresh_interval, new->refresh_interval);
                old->refresh_interval = new->refresh_interval;
                refresh_set_interval(d->refresh, (uint64_t) new->refresh_interval * USEC_PER_SEC);
                d->dispatcher.confirm_max_age_usec = confirm_max_age(new->refresh_interval);
        }
        if (new->allow_unrecoverable != old->allow_unrecoverable) {
                old->allow_unrecoverable = new->allow_unrecoverable;
                keystore_set_allow_unrecoverable(d->keystore, new->allow_unrecoverable);
                if (new->allow_unrecoverable)
                        log_warning("allow_unrecoverable is now set: keys are served for wrap although the vault has "
                                    "no purge protection. For development only; a deleted key could be purged at once.");
                else
                        log_notice("allow_unrecoverable is now off: wraps need a vault with purge protection");
        }
        warn_restart_needed(d, old, new);
        log_info("Reloaded configuration from %s", arg_config);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;

        if (d->draining) {
                log_info("Ignoring SIGHUP: kekd is stopping");
                return 0;
        }
        /* MONOTONIC_USEC lets systemd (Type=notify-reload) tell this reload from an earlier one. */
        (void) sd_notifyf(false, "RELOADING=1\nSTATUS=Reloading the configuration\nMONOTONIC_USEC=%" PRIu64,
                          clock_mono_usec());
        log_info("SIGHUP: reloading the configuration from %s", arg_config);
        reload_config(d);
        notify_status(d, true);
        return 0;
}

static int on_drain_check(sd_event_source *s, void *userdata) {
        Daemon *d = userdata;

        if (n_clients(d) > 0)
                return 0;
        log_debug("All clients are done");
        return sd_event_exit(d->event, 0);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        unsigned n = n_clients(d);

        log_warning("%u %s still connected after %llu s; closing their connections", n, plural(n, "client", "clients"),
                    (unsigned long long) (DRAIN_TIMEOUT_USEC / USEC_PER_SEC));
        return sd_event_exit(d->event, 0);
}

/*
 * SIGTERM/SIGINT. Requests are served synchronously in this loop, so the
 * loop itself is the drain: server_drain() stops accepting and closes each
 * connection once idle, while the loop keeps reading the requests clients
 * have already sent and flushing the replies, until every connection is
 * closed or for at most DRAIN_TIMEOUT_USEC. The refresh timer stops; the
 * watchdog keeps pinging.
 */
static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        const char *sig = si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
        unsigned n = n_clients(d);
        int r;

        if (d->draining) {
                log_notice("%s again: stopping without waiting for clients", sig);
                return sd_event_exit(d->event, 0);
        }
        d->draining = true;
        refresh_stop(d->refresh);
        (void) sd_notifyf(false, "STOPPING=1\nSTATUS=Stopping: finishing the requests of %u %s", n,
                          plural(n, "client", "clients"));
        server_drain(d->server);
        n = n_clients(d);
        if (n == 0) {
                log_info("%s: stopping", sig);
                return sd_event_exit(d->event, 0);
        }
        log_info("%s: stopping once the %u connected %s done (at most %llu s)", sig, n,
                 plural(n, "client is", "clients are"), (unsigned long long) (DRAIN_TIMEOUT_USEC / USEC_PER_SEC));
        r = sd_event_add_time_relative(d->event, &d->drain_timeout_source, CLOCK_MONOTONIC, DRAIN_TIMEOUT_USEC,
                                       100 * 1000, on_drain_timeout, d);
        if (r >= 0)
                /* Post sources run after any other source was dispatched: each close is noticed at once. */
                r = sd_event_add_post(d->event, &d->drain_check_source, on_drain_check, d);
        if (r < 0) {
                log_warning_errno(r, "Cannot wait for the clients; stopping now");
                return sd_event_exit(d->event, 0);
        }
        return 0;
}

/*
 * The sockets systemd passed (kekd.socket): the one named LISTEN_FD_NAME,
 * else the first; the others are closed. It must be a listening AF_UNIX
 * stream socket, as peer credentials decide what a client may do. Returns 1
 * and the descriptor, 0 when systemd passed none, or -errno (logged).
 */
static int listen_fd_from_systemd(int *ret_fd) {
        char **names = NULL;
        int n, pick = -1, fd, r;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Cannot take the sockets passed by systemd (LISTEN_FDS, LISTEN_FDNAMES)");
        for (int i = 0; i < n && pick < 0; i++)
                if (names && names[i] && strcmp(names[i], LISTEN_FD_NAME) == 0)
                        pick = i;
        if (pick < 0 && n > 0) {
                pick = 0;
                if (n > 1)
                        log_warning("Got %d sockets from systemd and none named '%s'; serving the first", n,
                                    LISTEN_FD_NAME);
        }
        for (int i = 0; i < n; i++) {
                if (i == pick)
                        continue;
                log_warning("Ignoring socket '%s' passed by systemd; kekd serves only one",
                            names && names[i] ? names[i] : "?");
                safe_close(SD_LISTEN_FDS_START + i);
        }
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        if (n == 0)
                return 0;

        fd = SD_LISTEN_FDS_START + pick;
        r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
        if (r <= 0) {
                safe_close(fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot inspect the socket passed by systemd");
                return log_error_errno(-EINVAL, "The socket passed by systemd is not a listening AF_UNIX stream socket "
                                                "(kekd.socket needs ListenStream= with a path)");
        }
        *ret_fd = fd;
        return 1;
}

/* The path a listening Unix socket is bound to, for the log. */
static void socket_name(int fd, char *buf, size_t size) {
        struct sockaddr_un sa = {};
        socklen_t len = sizeof(sa);

        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0 || len <= offsetof(struct sockaddr_un, sun_path))
                snprintf(buf, size, "an unnamed socket");
        else if (sa.sun_path[0] == 0)
                snprintf(buf, size, "@%.*s", (int) (len - offsetof(struct sockaddr_un, sun_path) - 1), sa.sun_path + 1);
        else
                snprintf(buf, size, "%.*s", (int) sizeof(sa.sun_path), sa.sun_path);
}

/* The credential kekd-pin when systemd passes one, else pin_file. Logs failures. */
static int read_pin(const Config *config, Secret **ret) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY"), *why = "unknown error";
        int r;

        if (dir && dir[0]) {
                r = pin_read_credential(dir, PIN_CREDENTIAL, ret, &why);
                if (r < 0)
                        return log_error_errno(r, "%s/%s: %s", dir, PIN_CREDENTIAL, why);
                if (r > 0) {
                        log_info("Read the token PIN from the systemd credential '%s'", PIN_CREDENTIAL);
                        return 0;
                }
                log_debug("No credential '%s' in %s; reading the PIN from %s", PIN_CREDENTIAL, dir, config->pin_file);
        }
        r = pin_read(config->pin_file, ret, &why);
        if (r < 0)
                return log_error_errno(r, "%s: %s", config->pin_file, why);
        return 0;
}

/*
 * The token set ([hsm] and its [hsm.NAME] sections) and its health probes.
 * A further token without pin_file shares the PIN of [hsm] (pin, which the
 * caller still holds); one with its own is read here. Logs failures.
 */
static int start_tokens(const Config *config, Hsm *hsm, const Secret *pin, int profile, TokenSet **ret) {
        TokenSpec specs[1 + CONFIG_TOKENS_MAX] = { { .name = config->token_name } };
        Secret *pins[CONFIG_TOKENS_MAX] = {};
        const char *why = NULL;
        int r = 0;

        /*
         * One token: nothing to choose between, and its health is its session's (status, metrics) as
         * before; probing it would add PKCS#11 calls that the clients' requests did not make.
         */
        if (config->n_tokens == 0) {
                *ret = NULL;
                return 0;
        }
        for (size_t i = 0; i < config->n_tokens && r >= 0; i++) {
                const ConfigToken *t = &config->tokens[i];

                specs[1 + i] = (TokenSpec) { .name = t->name, .module = t->module, .token_uri = t->token_uri, .pin = pin,
                                             .allow_unsafe_token = t->allow_unsafe_token };
                if (!t->pin_file)
                        continue;
                r = pin_read(t->pin_file, &pins[i], &why);
                if (r < 0)
                        log_error_errno(r, "%s (the PIN of [hsm.%s]): %s", t->pin_file, t->name, why ? why : "unreadable");
                else
                        specs[1 + i].pin = pins[i];
        }
        if (r >= 0) {
                r = tokenset_new(hsm, specs, 1 + config->n_tokens, profile, config->probe_interval, ret);
                if (r < 0)
                        log_error_errno(r, "Cannot start the health probes of the tokens");
                else
                        log_info("%zu tokens: '%s' preferred, health probed every %u s", 1 + config->n_tokens,
                                 config->token_name, config->probe_interval);
        }
        for (size_t i = 0; i < config->n_tokens; i++)
                secret_free(pins[i]);
        return r;
}

static int run(int argc, char *argv[]) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(secret_freep) Secret *pin = NULL;
        _cleanup_(hsm_freep) Hsm *hsm = NULL;
        _cleanup_(tokenset_freep) TokenSet *tokens = NULL;     /* freed before hsm: its first session is hsm's */
        _cleanup_(failover_freep) Failover *failover = NULL;   /* freed before tokens: its sessions are theirs */
        _cleanup_(keystore_freep) Keystore *keystore = NULL;
        _cleanup_(crypto_pool_freep) CryptoPool *pool = NULL;   /* freed before hsm: its sessions are hsm's */
        _cleanup_(hsm_task_freep) HsmTask *task = NULL;         /* likewise */
        _cleanup_(refresh_freep) Refresh *refresh = NULL;        /* owns task once made; freed before keystore and hsm */
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(server_freep) Server *server = NULL;
        _cleanup_(audit_freep) Audit *audit = NULL;
        _cleanup_(metrics_freep) Metrics *metrics = NULL;
        _cleanup_(daemon_done) Daemon d = {};
        _cleanup_free_ char *error = NULL;
        const char *why = NULL;
        const ProbeProfile *profiles;
        size_t n_profiles;
        ProbeResult probe;
        char owner[OWNER_MAX], host[64] = "localhost", where[160], copy_note[640];
        uint64_t watchdog_usec;
        sigset_t mask;
        int listen_fd = -1, r;

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

        /*
         * Before anything can start a thread (a PKCS#11 module may): the event loop takes these
         * signals through a signalfd, which sees only signals blocked in every thread, and no
         * thread may take them with their default action (SIGHUP's would end kekd). A signal
         * that arrives during start-up waits until the loop runs.
         */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGPIPE);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error_errno(-errno, "Cannot block signals");
                return 1;
        }

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

        if (read_pin(config, &pin) < 0)
                return 1;
        r = hsm_open(config->module, config->token_uri, pin, &hsm, &why);
        if (r < 0) {
                log_error_errno(r, "Cannot open token %s with module %s: %s", config->token_uri, config->module,
                                why ? why : "unknown error");
                return 1;
        }

        /*
         * Never ready on a token that cannot wrap (issue 16): a real self-test under a throwaway
         * key made with the KEK template, before anything is read or served. One line says why.
         */
        profiles = probe_profiles(config->profile, &n_profiles);
        r = probe_run(hsm, profiles, n_profiles, &probe);
        if (r < 0) {
                log_error("Refusing to start: %s", probe.message);
                return 1;
        }
        log_info("Token '%s' passed the capability probe: profile %s", hsm_token_label(hsm), probe.profile);
        /* A token that lets a copy of a KEK become extractable gives every PIN holder the keys: opt-in only. */
        probe_copy_problem(&probe, hsm_token_label(hsm), copy_note, sizeof(copy_note));
        if (probe.copy == PROBE_COPY_UNSAFE && !config->allow_unsafe_token) {
                log_error("Refusing to start: %s", copy_note);
                return 1;
        }
        if (probe.copy == PROBE_COPY_UNSAFE)
                log_warning("allow_unsafe_token is set, starting anyway: %s", copy_note);
        else if (probe.copy == PROBE_COPY_KEPT)
                log_notice("%s", copy_note);
        if (probe.records == HSM_RECORDS_PUBLIC_MAC)
                log_warning("Token '%s' refuses private data objects: key records are public token objects with an "
                            "HMAC-SHA256 tag computed in the token; names, states and grants are readable without "
                            "login (docs/tokens.md)", hsm_token_label(hsm));
        else if (probe.records == HSM_RECORDS_KEY_OBJECTS)
                log_notice("Token '%s' stores no token data objects: key records are private generic-secret key "
                           "objects with an HMAC-SHA256 tag computed in the token (docs/tokens.md)",
                           hsm_token_label(hsm));

        (void) gethostname(host, sizeof(host) - 1);
        snprintf(owner, sizeof(owner), "%s:%d", host, (int) getpid());
        r = keystore_new(hsm, owner, &keystore);
        if (r < 0) {
                log_error_errno(r, "Cannot read keys from token '%s' (%s)", hsm_token_label(hsm), hsm_last_error(hsm));
                return 1;
        }
        keystore_set_allow_unrecoverable(keystore, config->allow_unrecoverable);
        /* New versions get the profile whose self-test passed (auto: the first of its order that did). */
        keystore_set_profile(keystore, probe.profile_id);
        if (config->allow_unrecoverable)
                log_warning("allow_unrecoverable is set: keys are served for wrap although the vault has no purge "
                            "protection. For development only; a deleted key could be purged at once.");
        /* Finish or roll back whatever a previous kekd left half done before serving anyone. */
        r = keystore_maintain(keystore, clock_now_usec());
        if (r < 0)
                log_warning_errno(r, "Repair of interrupted operations failed; will retry");
        d.last_refresh_failed = r < 0;

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "Cannot create event loop");
                return 1;
        }
        d.event = event;
        d.config = config;
        d.keystore = keystore;

        r = sd_event_add_signal(event, NULL, SIGTERM, on_terminate, &d);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_terminate, &d);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGHUP, on_sighup, &d);
        if (r < 0) {
                log_error_errno(r, "Cannot set up signal handling");
                return 1;
        }
        r = audit_new(&audit);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &d.audit_source, CLOCK_MONOTONIC,
                                               (uint64_t) config->audit_interval * USEC_PER_SEC, 0, on_audit, &d);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the audit trail");
                return 1;
        }
        d.audit = audit;
        r = metrics_new(clock_now_usec(), &metrics);
        if (r >= 0 && config->metrics_file)
                r = sd_event_add_time_relative(event, &d.metrics_source, CLOCK_MONOTONIC,
                                               (uint64_t) config->metrics_interval * USEC_PER_SEC, 0, on_metrics, &d);
        if (r < 0) {
                log_error_errno(r, "Cannot set up metrics");
                return 1;
        }
        d.metrics = metrics;
        metrics_set_probe(metrics, &probe);
        r = sd_watchdog_enabled(false, &watchdog_usec);
        if (r < 0)
                log_warning_errno(r, "Ignoring the watchdog settings passed by systemd (WATCHDOG_USEC, WATCHDOG_PID)");
        else if (r > 0) {
                d.watchdog_ping_usec = MAX(watchdog_usec / 2, 1u);
                /* An explicit accuracy: sd-event's default (250 ms) could miss a short watchdog interval. */
                r = sd_event_add_time_relative(event, &d.watchdog_source, CLOCK_MONOTONIC, d.watchdog_ping_usec,
                                               MAX(d.watchdog_ping_usec / 10, 1u), on_watchdog, &d);
                if (r < 0) {
                        log_error_errno(r, "Cannot set up the watchdog timer");
                        return 1;
                }
                log_info("Watchdog: telling systemd every %" PRIu64 " ms that kekd is alive",
                         d.watchdog_ping_usec / 1000);
        }

        r = listen_fd_from_systemd(&listen_fd);
        if (r < 0)
                return 1;
        d.socket_from_systemd = r > 0;
        why = NULL;
        r = crypto_pool_new(hsm, config->sessions, &pool, &why);
        if (r < 0) {
                log_error_errno(r, "Cannot open %u sessions on token '%s': %s", config->sessions,
                                hsm_token_label(hsm), why ? why : "no worker thread");
                return 1;
        }
        r = hsm_task_new(event, hsm, &task);
        if (r < 0)
                log_warning_errno(r, "Cannot open an HSM session for the background refresh; "
                                     "the token is read on the serving thread");
        r = refresh_new(event, keystore, TAKE_PTR(task), (uint64_t) config->refresh_interval * USEC_PER_SEC,
                        on_refresh_report, &d, &refresh);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the refresh timer");
                return 1;
        }
        d.refresh = refresh;
        metrics_set_hsm_source(metrics, on_hsm_stats, &d);
        r = start_tokens(config, hsm, pin, probe.profile_id, &tokens);
        if (r < 0)
                return 1;
        (void) tokenset_set_capability(tokens, 0, &probe, config->allow_unsafe_token); /* NULL: one token */
        /* Replication uses the [backup] ceremony's trusted keys; without them it is off, and status says so. */
        r = tokenset_set_replication(tokens, config->backup_wrapping_key, config->backup_unwrapping_key);
        if (r < 0) {
                log_error_errno(r, "Cannot set up replication");
                return 1;
        }
        pin = secret_free(pin); /* each Hsm keeps its own copy for re-login */
        metrics_set_tokens(metrics, tokens);
        r = failover_new(tokens, keystore, pool, &failover);
        if (r < 0) {
                log_error_errno(r, "Cannot set up failover across the tokens");
                return 1;
        }
        d.dispatcher = (Dispatcher) { .keystore = keystore, .audit = audit, .metrics = metrics, .pool = pool,
                                      .tokens = tokens, .failover = failover,
                                      .started_usec = clock_now_usec(), .max_frame = config->max_frame,
                                      .now_usec = clock_now_usec, .backup_directory = config->backup_directory,
                                      .backup_wrapping_key = config->backup_wrapping_key,
                                      .backup_unwrapping_key = config->backup_unwrapping_key,
                                      .confirm_max_age_usec = confirm_max_age(config->refresh_interval) };
        r = server_new(event, config, &d.dispatcher, listen_fd, &server);
        if (r < 0)
                return 1;
        d.server = server;

        if (d.socket_from_systemd) {
                socket_name(listen_fd, where, sizeof(where));
                log_info("Serving %zu keys from token '%s' on %s, the socket passed by systemd (%u HSM session%s)",
                         keystore_n_keys(keystore), hsm_token_label(hsm), where, config->sessions,
                         config->sessions == 1 ? "" : "s");
        } else
                log_info("Serving %zu keys from token '%s' on %s (%u HSM session%s)", keystore_n_keys(keystore),
                         hsm_token_label(hsm), config->socket_path, config->sessions, config->sessions == 1 ? "" : "s");
        notify_status(&d, true);

        r = sd_event_loop(event);
        if (!d.draining)
                (void) sd_notify(false, "STOPPING=1");
        /*
         * Unwrap counts and last-use times since the last refresh would be lost otherwise, and
         * the unused part of our wrap leases would stay counted as wraps. After the drain: no
         * wrap follows.
         */
        if (keystore_settle(keystore) < 0)
                log_warning("Could not record the latest key usage and return unused wrap leases in the token");
        (void) audit_flush(audit);
        if (config->metrics_file)
                (void) metrics_write_file(metrics, keystore, config->metrics_file);
        /* Then wait for a reading still under way (its thread uses the reading and hsm). */
        d.refresh = refresh = refresh_free(refresh);
        d.server = NULL;
        server = server_free(server);
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
