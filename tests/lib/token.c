/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SoftHSM2 test token set-up (see token.h). softhsm2-util is run through
 * posix_spawnp with an argv, never a shell string.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "token.h"

extern char **environ;

static int run(char *const argv[]) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int status, r;

        posix_spawn_file_actions_init(&fa);
        if (fd >= 0)
                posix_spawn_file_actions_adddup2(&fa, fd, STDOUT_FILENO);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (fd >= 0)
                close(fd);
        if (r != 0)
                return -r;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int token_setup(TestToken *t, const char *label) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        char tokens[PATH_MAX + 16];
        FILE *f;

        memset(t, 0, sizeof(*t));
        t->pin = "1234";
        t->module = getenv("SOFTHSM2_MODULE") ?: SOFTHSM2_MODULE;
        snprintf(t->label, sizeof(t->label), "%s", label);
        snprintf(t->uri, sizeof(t->uri), "pkcs11:token=%s", label);
        snprintf(t->dir, sizeof(t->dir), "%s/kekd-test.XXXXXX", tmp);
        if (!mkdtemp(t->dir)) {
                printf("# mkdtemp: %s\n", strerror(errno));
                return -1;
        }
        snprintf(tokens, sizeof(tokens), "%s/tokens", t->dir);
        snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->dir);
        snprintf(t->pin_file, sizeof(t->pin_file), "%s/pin", t->dir);
        if (mkdir(tokens, 0700) < 0)
                return -1;
        f = fopen(t->conf, "we");
        if (!f)
                return -1;
        fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
        fclose(f);
        f = fopen(t->pin_file, "we");
        if (!f)
                return -1;
        fprintf(f, "%s\n", t->pin);
        fclose(f);
        chmod(t->pin_file, 0600);
        setenv("SOFTHSM2_CONF", t->conf, 1);

        char *argv[] = { "softhsm2-util", "--init-token", "--free", "--label", t->label, "--pin", (char *) t->pin,
                         "--so-pin", "87654321", NULL };
        if (run(argv) < 0) {
                printf("# softhsm2-util --init-token failed\n");
                return -1;
        }
        return 0;
}

void token_done(TestToken *t) {
        char *argv[] = { "rm", "-rf", "--", t->dir, NULL };

        if (t->dir[0] && strstr(t->dir, "/kekd-test."))
                (void) run(argv);
}
