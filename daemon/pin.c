/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PIN file reading (see pin.h). The file is opened with O_NOFOLLOW and checked
 * with fstat() on the descriptor actually read, so the checked file is the one
 * read. One trailing newline (and CR) is stripped, as editors add them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pin.h"

int pin_read(const char *path, Secret **ret, const char **ret_error) {
        _cleanup_secret_ Secret *pin = NULL;
        _cleanup_close_ int fd = -1;
        const char *dummy;
        struct stat st;
        size_t len = 0;
        int r;

        if (!ret_error)
                ret_error = &dummy;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                *ret_error = errno == ELOOP ? "PIN file is a symbolic link" : "cannot open PIN file";
                return -errno;
        }
        if (fstat(fd, &st) < 0) {
                *ret_error = "cannot stat PIN file";
                return -errno;
        }
        if (!S_ISREG(st.st_mode)) {
                *ret_error = "PIN file is not a regular file";
                return -EINVAL;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                *ret_error = "PIN file must be owned by root or by the user kekd runs as";
                return -EPERM;
        }
        if (st.st_mode & 0077) {
                *ret_error = "PIN file is accessible by group or others; it must be mode 0400 or 0600";
                return -EPERM;
        }
        if (st.st_size > (off_t) PIN_MAX_SIZE + 2) {
                *ret_error = "PIN file is larger than a PIN can be";
                return -EFBIG;
        }

        r = secret_new(PIN_MAX_SIZE + 2, &pin);
        if (r < 0) {
                *ret_error = "cannot allocate secure memory for the PIN";
                return r;
        }
        while (len < pin->len) {
                ssize_t n = read(fd, pin->data + len, pin->len - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        *ret_error = "cannot read PIN file";
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > 0 && pin->data[len - 1] == '\n')
                len--;
        if (len > 0 && pin->data[len - 1] == '\r')
                len--;
        if (len == 0) {
                *ret_error = "PIN file is empty";
                return -EINVAL;
        }
        if (len > PIN_MAX_SIZE) {
                *ret_error = "PIN file is larger than a PIN can be";
                return -EFBIG;
        }
        secret_truncate(pin, len);
        *ret = TAKE_PTR(pin);
        return 0;
}
