/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PIN file reading (see pin.h). The file is opened with O_NOFOLLOW and checked
 * with fstat() on the descriptor actually read, so the checked file is the one
 * read. One trailing newline (and CR) is stripped, as editors add them.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pin.h"

/*
 * Whether the POSIX ACL of fd grants nothing beyond its owner and our own
 * user: no named group, no access for the owning group or others, and named
 * user entries only for our uid, read-only.
 */
static bool acl_only_owner_and_us(int fd) {
        enum { ACL_XATTR_VERSION = 2, TAG_USER_OBJ = 0x01, TAG_USER = 0x02, TAG_GROUP_OBJ = 0x04, TAG_GROUP = 0x08,
               TAG_MASK = 0x10, TAG_OTHER = 0x20, PERM_WRITE = 0x02 };
        uint8_t buf[4 + 8 * 32];
        uint32_t version;
        ssize_t n;

        n = fgetxattr(fd, "system.posix_acl_access", buf, sizeof(buf));
        if (n < 4 || (n - 4) % 8 != 0)
                return false;
        memcpy(&version, buf, 4);
        if (le32toh(version) != ACL_XATTR_VERSION)
                return false;
        for (size_t off = 4; off < (size_t) n; off += 8) {
                uint16_t tag, perm;
                uint32_t id;

                memcpy(&tag, buf + off, 2);
                memcpy(&perm, buf + off + 2, 2);
                memcpy(&id, buf + off + 4, 4);
                tag = le16toh(tag);
                perm = le16toh(perm);
                switch (tag) {
                case TAG_USER_OBJ:
                case TAG_MASK:
                        break;
                case TAG_USER:
                        if (le32toh(id) != (uint32_t) geteuid() || (perm & PERM_WRITE))
                                return false;
                        break;
                case TAG_GROUP_OBJ:
                case TAG_OTHER:
                        if (perm != 0)
                                return false;
                        break;
                case TAG_GROUP:
                default:
                        return false;
                }
        }
        return true;
}

/*
 * The checks and the read shared by PIN files and credentials. A credential
 * may show group read bits that are only the mask of an ACL granting our own
 * user read access (systemd's LoadCredential= on file systems with ACLs).
 */
static int pin_read_fd(int fd, bool credential, Secret **ret, const char **ret_error) {
        _cleanup_secret_ Secret *pin = NULL;
        struct stat st;
        size_t len = 0;
        int r;

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
        if ((st.st_mode & 0007) || ((st.st_mode & 0070) && !(credential && !(st.st_mode & 0020) && acl_only_owner_and_us(fd)))) {
                *ret_error = credential ? "credential is accessible by group or others"
                                        : "PIN file is accessible by group or others; it must be mode 0400 or 0600";
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

int pin_read(const char *path, Secret **ret, const char **ret_error) {
        _cleanup_close_ int fd = -1;
        const char *dummy;

        if (!ret_error)
                ret_error = &dummy;
        /* O_NONBLOCK: a FIFO planted at the path must not hang kekd's start. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                *ret_error = errno == ELOOP ? "PIN file is a symbolic link" : "cannot open PIN file";
                return -errno;
        }
        return pin_read_fd(fd, false, ret, ret_error);
}

int pin_read_credential(const char *dir, const char *name, Secret **ret, const char **ret_error) {
        _cleanup_close_ int dfd = -1, fd = -1;
        const char *dummy;
        int r;

        if (!ret_error)
                ret_error = &dummy;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                *ret_error = "cannot open $CREDENTIALS_DIRECTORY";
                return -errno;
        }
        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                *ret_error = errno == ELOOP ? "credential is a symbolic link" : "cannot open credential";
                return -errno;
        }
        r = pin_read_fd(fd, true, ret, ret_error);
        return r < 0 ? r : 1;
}
