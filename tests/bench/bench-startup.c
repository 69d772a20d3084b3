/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekbench's start-up measurements (see bench-startup.h). The raw floor runs
 * as its own process (startup-raw), so its C_Initialize is a real first one,
 * as kekd's is; both are measured from inside what they time (startup-raw
 * from module load to its last listing, kekd from exec to READY=1).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-startup.h"

extern char **environ;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

double startup_raw_run(const char *bin, const char *module, const char *uri, const char *pin_file,
                       size_t *ret_records, size_t *ret_keys, double *ret_cpu_us) {
        char *argv[] = { (char *) bin, (char *) module, (char *) uri, (char *) pin_file, NULL };
        posix_spawn_file_actions_t fa;
        unsigned long long us = 0, cpu = 0;
        int fds[2], status = 0, got = 0;
        FILE *f;
        pid_t p;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -1;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        if (posix_spawn(&p, bin, &fa, NULL, argv, environ) != 0)
                p = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        f = fdopen(fds[0], "re");
        if (f) {
                got = fscanf(f, "%llu %zu %zu %llu", &us, ret_records, ret_keys, &cpu);
                fclose(f);
        } else
                close(fds[0]);
        if (p < 0 || waitpid(p, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != 4)
                return -1;
        *ret_cpu_us = (double) cpu;
        return (double) us;
}

double startup_kekd_ready(const char *kekd, const char *conf, const char *dir, double (*cpu_us)(pid_t pid),
                          pid_t *ret_pid, double *ret_cpu_us) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char *argv[] = { (char *) kekd, "-c", (char *) conf, NULL };
        char env_notify[sizeof(sa.sun_path) + 16], buf[4096], **envp;
        posix_spawn_file_actions_t fa;
        size_t n_env = 0;
        double us = -1;
        pid_t pid = -1;
        uint64_t t0;
        int fd;

        *ret_pid = -1;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/notify.sock", dir);
        (void) unlink(sa.sun_path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        while (environ[n_env])
                n_env++;
        envp = calloc(n_env + 2, sizeof(*envp));
        if (!envp) {
                close(fd);
                return -1;
        }
        snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", sa.sun_path);
        n_env = 0;
        for (size_t i = 0; environ[i]; i++)
                if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0)
                        envp[n_env++] = environ[i];
        envp[n_env] = env_notify;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        t0 = now_ns();
        if (posix_spawn(&pid, kekd, &fa, NULL, argv, envp) != 0)
                pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        free(envp);
        /* Bounded: 120 waits of at most a second each, and kekd's exit ends it at once. */
        for (int i = 0; pid > 0 && i < 120 && us < 0; i++) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t len;

                if (waitpid(pid, NULL, WNOHANG) == pid) {
                        pid = -1;
                        break;
                }
                if (poll(&pfd, 1, 1000) <= 0)
                        continue;
                len = recv(fd, buf, sizeof(buf) - 1, 0);
                if (len <= 0)
                        continue;
                buf[len] = 0;
                if (strncmp(buf, "READY=1", 7) == 0 || strstr(buf, "\nREADY=1")) {
                        us = (double) (now_ns() - t0) / 1e3;
                        *ret_cpu_us = cpu_us(pid);
                }
        }
        close(fd);
        (void) unlink(sa.sun_path);
        *ret_pid = pid;
        return us;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

double startup_median(double *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_double);
        return n ? v[n / 2] : 0;
}
