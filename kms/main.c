/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek-kms-plugin: a Kubernetes KMS v2 provider on a Unix socket
 * (kek-kms-plugin(8)). An unprivileged process: it reaches kekd through
 * libkek with its own grant, so the HTTP/2 parser never runs in the process
 * that holds the PIN. One thread runs the event loop (accept, nghttp2,
 * deadlines, metrics); a worker pool runs the libkek calls (pool.h).
 *
 * Shutdown: on SIGTERM or SIGINT the listener closes (new connections are
 * refused), every connection gets GOAWAY, calls in flight finish, and the
 * process exits when every connection has been answered and closed (each
 * lingers up to 2 s for its peer's close, see h2.c), or after drain_timeout
 * seconds.
 *
 * libkek's AEK cache is off: kube-apiserver caches its DEKs itself, and
 * without a cache every Decrypt asks kekd, so a disabled key is refused at
 * the next call rather than within the cache's revocation bound.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "client/libkek.h"
#include "common/macro.h"
#include "kms/h2.h"
#include "kms/metrics.h"
#include "kms/pool.h"
#include "kms/service.h"

typedef struct Config {
        char *listen;
        char *key;
        char *kekd_socket;
        char *metrics_file;
        unsigned workers, max_conns, max_streams, drain_sec, kekd_timeout_ms, metrics_sec, idle_sec;
        unsigned socket_mode;
} Config;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        (void) sig;
        stop_requested = 1;
}

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *ret) {
        char *end;
        unsigned long n;

        errno = 0;
        n = strtoul(v, &end, 0);
        if (errno || end == v || *end || n < lo || n > hi)
                return -EINVAL;
        *ret = (unsigned) n;
        return 0;
}

static int set_str(char **p, const char *v) {
        free(*p);
        *p = strdup(v);
        return *p ? 0 : -ENOMEM;
}

static int config_set(Config *c, const char *name, const char *v) {
        if (!strcmp(name, "listen"))
                return set_str(&c->listen, v);
        if (!strcmp(name, "key"))
                return set_str(&c->key, v);
        if (!strcmp(name, "kekd_socket"))
                return set_str(&c->kekd_socket, v);
        if (!strcmp(name, "metrics_file"))
                return set_str(&c->metrics_file, v);
        if (!strcmp(name, "workers"))
                return parse_uint(v, 1, 256, &c->workers);
        if (!strcmp(name, "max_connections"))
                return parse_uint(v, 1, 4096, &c->max_conns);
        if (!strcmp(name, "max_streams"))
                return parse_uint(v, 1, 1024, &c->max_streams);
        if (!strcmp(name, "drain_timeout"))
                return parse_uint(v, 1, 3600, &c->drain_sec);
        if (!strcmp(name, "kekd_timeout_ms"))
                return parse_uint(v, 100, 600000, &c->kekd_timeout_ms);
        if (!strcmp(name, "metrics_interval"))
                return parse_uint(v, 1, 3600, &c->metrics_sec);
        if (!strcmp(name, "idle_timeout"))
                return parse_uint(v, 1, 86400, &c->idle_sec);
        if (!strcmp(name, "socket_mode"))
                return parse_uint(v, 0, 0777, &c->socket_mode);
        return -ENOENT;
}

static int on_ini(void *user, const char *section, const char *name, const char *value) {
        if (strcmp(section, "plugin") != 0) {
                fprintf(stderr, "kek-kms-plugin: unknown section [%s]\n", section);
                return 0;
        }
        if (config_set(user, name, value) < 0) {
                fprintf(stderr, "kek-kms-plugin: bad setting %s = %s\n", name, value);
                return 0;
        }
        return 1;
}

static void usage(void) {
        fputs("Usage: kek-kms-plugin [-c FILE] [--key NAME] [--listen PATH] [--kekd-socket PATH]\n"
              "                      [--workers N] [--max-connections N] [--max-streams N]\n"
              "                      [--drain-timeout SEC] [--kekd-timeout-ms MS]\n"
              "                      [--metrics-file PATH] [--metrics-interval SEC] [--socket-mode MODE]\n"
              "                      [--idle-timeout SEC]\n"
              "See kek-kms-plugin(8).\n", stdout);
}

static int parse_args(int argc, char **argv, Config *c) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },
                { "listen", required_argument, NULL, 'l' },
                { "kekd-socket", required_argument, NULL, 's' },
                { "workers", required_argument, NULL, 1 },
                { "max-connections", required_argument, NULL, 2 },
                { "max-streams", required_argument, NULL, 3 },
                { "drain-timeout", required_argument, NULL, 4 },
                { "kekd-timeout-ms", required_argument, NULL, 5 },
                { "metrics-file", required_argument, NULL, 6 },
                { "metrics-interval", required_argument, NULL, 7 },
                { "socket-mode", required_argument, NULL, 8 },
                { "idle-timeout", required_argument, NULL, 9 },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        static const char *const names[] = { NULL, "workers", "max_connections", "max_streams", "drain_timeout",
                                             "kekd_timeout_ms", "metrics_file", "metrics_interval", "socket_mode", "idle_timeout" };
        int o;

        /* the file first, so options override it */
        for (int i = 1; i + 1 < argc; i++)
                if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
                        int r = ini_parse(argv[i + 1], on_ini, c);
                        if (r != 0) {
                                fprintf(stderr, "kek-kms-plugin: %s: %s (line %d)\n", argv[i + 1],
                                        r < 0 ? "cannot read" : "bad setting", r);
                                return -EINVAL;
                        }
                }
        while ((o = getopt_long(argc, argv, "c:k:l:s:h", opts, NULL)) >= 0) {
                int r = 0;
                switch (o) {
                case 'c':
                        break;
                case 'k':
                        r = config_set(c, "key", optarg);
                        break;
                case 'l':
                        r = config_set(c, "listen", optarg);
                        break;
                case 's':
                        r = config_set(c, "kekd_socket", optarg);
                        break;
                case 'h':
                        usage();
                        exit(EXIT_SUCCESS);
                default:
                        if (o >= 1 && o <= 9) {
                                r = config_set(c, names[o], optarg);
                                break;
                        }
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "kek-kms-plugin: bad value for --%s: %s\n", opts[o >= 1 && o <= 8 ? o + 3 : 0].name,
                                optarg);
                        return -EINVAL;
                }
        }
        if (optind < argc || !c->key) {
                fprintf(stderr, "kek-kms-plugin: %s\n", c->key ? "unexpected arguments" : "no key (--key or key =)");
                return -EINVAL;
        }
        return 0;
}

/* libkek as the service's backend */
static int be_wrap(void *ud, const char *key, const uint8_t *pt, size_t len, const uint8_t *ctx, size_t ctx_len,
                   uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version) {
        return kek_wrap(ud, key, 0, pt, len, ctx, ctx_len, ret_blob, ret_blob_len, ret_version);
}

static int be_unwrap(void *ud, const uint8_t *blob, size_t len, const uint8_t *ctx, size_t ctx_len, Secret **ret) {
        kek_aek *a = NULL;
        int r = kek_unwrap(ud, blob, len, ctx, ctx_len, &a);
        if (r < 0)
                return r;
        r = secret_new_copy(kek_aek_data(a), kek_aek_size(a), ret);
        kek_aek_unref(a);
        return r;
}

static int be_key_state(void *ud, const char *key, KmsKeyState *ret) {
        kek_key_version v;
        int r = kek_get_key_version(ud, key, &v);
        if (r < 0)
                return r;
        *ret = (KmsKeyState){ .current_version = v.current_version, .state = v.state, .recoverable = v.recoverable };
        return 0;
}

typedef struct Loop {
        KmsServer *server;
        KmsPool *pool;
        KmsMetrics *metrics;
} Loop;

static void hook_submit(void *ud, KmsJob *j) {
        kms_pool_submit(((Loop *) ud)->pool, j);
}

static void hook_observe(void *ud, KmsMethod m, GrpcStatus s, uint64_t usec) {
        kms_metrics_observe(((Loop *) ud)->metrics, m, s, usec);
}

static bool activated;

static int listen_socket(const Config *c) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int n = sd_listen_fds(1);

        if (n > 1)
                return -E2BIG;
        if (n == 1) {
                activated = true;
                return SD_LISTEN_FDS_START;
        }
        if (strlen(c->listen) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, c->listen);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void) unlink(c->listen);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(c->listen, c->socket_mode) < 0 ||
            listen(fd, 64) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int run(const Config *cfg, Loop *L, int lfd) {
        enum { SLOTS = 4096 + 2 };
        static struct pollfd pfd[SLOTS];
        static KmsConn *pc[SLOTS];
        uint64_t drain_until = 0, next_metrics = 0;
        uint8_t buf[16384];

        for (;;) {
                uint64_t now = kms_now_ms(), next = kms_server_expire(L->server, now);
                int timeout = 1000;
                size_t n = 0;

                if (stop_requested && !drain_until) {
                        fprintf(stderr, "kek-kms-plugin: draining %u call(s) in flight\n",
                                kms_server_in_flight(L->server));
                        (void) sd_notify(0, "STOPPING=1");
                        lfd = safe_close(lfd);
                        kms_server_drain(L->server);
                        drain_until = now + cfg->drain_sec * 1000u;
                }
                /* done when every connection has answered and lingered to its close (see h2.c) */
                if (drain_until && (kms_server_conns(L->server) == 0 || now >= drain_until))
                        return kms_server_in_flight(L->server) == 0 ? 0 : -ETIMEDOUT;
                if (cfg->metrics_file && now >= next_metrics) {
                        int r = kms_metrics_write(L->metrics, cfg->metrics_file, kms_server_conns(L->server),
                                                  kms_server_in_flight(L->server));
                        if (r < 0)
                                fprintf(stderr, "kek-kms-plugin: metrics %s: %s\n", cfg->metrics_file, strerror(-r));
                        next_metrics = now + cfg->metrics_sec * 1000u;
                }
                if (next && next - now < (uint64_t) timeout)
                        timeout = (int) (next - now) + 1;

                pfd[n++] = (struct pollfd){ .fd = kms_pool_fd(L->pool), .events = POLLIN };
                if (lfd >= 0 && kms_server_can_admit(L->server))
                        pfd[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
                size_t first_conn = n;
                for (KmsConn *c = kms_server_first_conn(L->server); c && n < SLOTS; c = kms_conn_next(c)) {
                        pc[n] = c;
                        pfd[n++] = (struct pollfd){ .fd = kms_conn_fd(c),
                                                    .events = (short) ((kms_conn_wants_read(c) ? POLLIN : 0) |
                                                                       (kms_conn_wants_write(c) ? POLLOUT : 0)) };
                }
                if (poll(pfd, n, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (pfd[0].revents & POLLIN)
                        for (KmsJob *j = kms_pool_take_done(L->pool), *next_j; j; j = next_j) {
                                next_j = j->next;
                                kms_server_complete(L->server, j);
                        }
                for (size_t i = first_conn; i < n; i++) {
                        KmsConn *c = pc[i];
                        if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                                ssize_t k = recv(kms_conn_fd(c), buf, sizeof(buf), MSG_DONTWAIT);
                                if (k > 0)
                                        (void) kms_conn_feed(c, buf, (size_t) k);
                                else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                                        kms_conn_free(c);
                                        continue;
                                }
                        }
                }
                /* after the reads: at max_connections, kms_conn_new() frees an idle connection pc[] names */
                if (lfd >= 0 && first_conn == 2 && (pfd[1].revents & POLLIN)) {
                        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                        KmsConn *c;
                        if (fd >= 0 && kms_conn_new(L->server, fd, &c) < 0)
                                safe_close(fd);
                }
                /* answers of completed jobs and of the feed go out on every connection */
                for (KmsConn *c = kms_server_first_conn(L->server), *nc; c; c = nc) {
                        nc = kms_conn_next(c);
                        (void) kms_conn_flush(c);
                        if (kms_conn_finished(c) && kms_conn_linger(c, kms_now_ms()))
                                kms_conn_free(c);
                }
        }
}

int main(int argc, char **argv) {
        Config cfg = { .workers = 8, .max_conns = 64, .max_streams = 32, .drain_sec = 10, .kekd_timeout_ms = 5000,
                       .metrics_sec = 15, .socket_mode = 0660, .idle_sec = 120 };
        kek_options ko = { .cache_disabled = true };
        kek_client *kc = NULL;
        KmsBackend be = { be_wrap, be_unwrap, be_key_state, kek_strerror, NULL };
        KmsService svc;
        Loop L = {};
        int lfd, r;

        if (parse_args(argc, argv, &cfg) < 0)
                return 2;
        if (!cfg.listen && set_str(&cfg.listen, "/run/kek-kms-plugin/kms.sock") < 0)
                return 1;
        r = secret_heap_init(1u << 20);
        if (r < 0) {
                fprintf(stderr, "kek-kms-plugin: secure heap: %s\n", strerror(-r));
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        ko.socket_path = cfg.kekd_socket;
        ko.timeout_ms = cfg.kekd_timeout_ms;
        r = kek_client_new(&ko, &kc);
        if (r < 0) {
                fprintf(stderr, "kek-kms-plugin: libkek: %s\n", kek_strerror(r));
                return 1;
        }
        be.userdata = kc;
        svc = (KmsService){ .key = cfg.key, .backend = &be };

        KmsServerLimits lim = { .max_conns = cfg.max_conns, .max_streams = cfg.max_streams,
                                .idle_ms = cfg.idle_sec * 1000u };
        KmsServerHooks hooks = { hook_submit, hook_observe, &L };
        if (kms_metrics_new(&L.metrics) < 0 || kms_server_new(&lim, &hooks, &L.server) < 0 ||
            kms_pool_new(cfg.workers, &svc, &L.pool) < 0) {
                fprintf(stderr, "kek-kms-plugin: out of memory\n");
                return 1;
        }
        lfd = listen_socket(&cfg);
        if (lfd < 0) {
                fprintf(stderr, "kek-kms-plugin: listen on %s: %s\n", cfg.listen, strerror(-lfd));
                return 1;
        }
        fprintf(stderr, "kek-kms-plugin: serving key %s on %s (%u workers)\n", cfg.key, cfg.listen, cfg.workers);
        (void) sd_notify(0, "READY=1");
        r = run(&cfg, &L, lfd);
        if (r < 0)
                fprintf(stderr, "kek-kms-plugin: %s\n", r == -ETIMEDOUT ? "drain timeout: calls still in flight dropped"
                                                                        : strerror(-r));
        if (cfg.metrics_file)
                (void) kms_metrics_write(L.metrics, cfg.metrics_file, 0, 0);
        if (!activated)
                (void) unlink(cfg.listen);
        /* the server first: it detaches the streams from jobs the workers may still hold */
        L.server = kms_server_free(L.server);
        L.pool = kms_pool_free(L.pool);
        kms_metrics_free(L.metrics);
        kek_client_free(kc);
        free(cfg.listen);
        free(cfg.key);
        free(cfg.kekd_socket);
        free(cfg.metrics_file);
        return r < 0 ? 1 : 0;
}
