/* Reaching a file by a path pixmill did not choose, never through a symbolic link: below a
 * folder descriptor (the output root, a walked folder) or along a physical path (one the
 * kernel gave for a folder the scan opened). openat2 with RESOLVE_NO_SYMLINKS does it in one
 * call where the kernel has it (Linux 5.6); elsewhere, and for paths over PATH_MAX, one openat
 * per component with O_NOFOLLOW. Names and paths here are bytes, never trusted as text. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int have_openat2 = 1; /* atomic: cleared once the kernel says it has none */

static int sys_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
    if (!__atomic_load_n(&have_openat2, __ATOMIC_RELAXED)) {
        errno = ENOSYS;
        return -1;
    }
    struct open_how how = {0};
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = resolve;
    int fd;
    do
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ENOSYS)
        __atomic_store_n(&have_openat2, 0, __ATOMIC_RELAXED);
    return fd;
}

/* A component that is a symbolic link reports ELOOP, whatever open said (O_DIRECTORY gives
 * ENOTDIR): "a link was not followed" is what the user needs to hear. */
static int why_not(int dirfd, const char *name, int err)
{
    struct stat st;
    if ((err == ENOTDIR || err == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        return ELOOP;
    return err;
}

/* One openat(O_NOFOLLOW) per component below dirfd; ".." refused, "." and empty parts
 * skipped. */
static int open_by_parts(int dirfd, const char *rel, int flags, mode_t mode)
{
    int cur = dirfd;
    const char *p = rel;
    char part[NAME_MAX + 1];
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *next = p + len;
        while (*next == '/')
            next++;
        int last = *next == '\0';
        if (len > NAME_MAX) {
            if (cur != dirfd)
                close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(part, p, len);
        part[len] = '\0';
        if (len == 2 && part[0] == '.' && part[1] == '.') {
            if (cur != dirfd)
                close(cur);
            errno = EXDEV;
            return -1;
        }
        int skip = len == 0 || (len == 1 && part[0] == '.');
        int fd;
        if (last) {
            fd = skip ? openat(cur, ".", (flags & ~(O_CREAT | O_EXCL)) | O_CLOEXEC)
                      : openat(cur, part, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        } else if (skip) {
            p = next;
            continue;
        } else {
            fd = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int err = fd < 0 ? why_not(cur, part, errno) : 0;
        if (cur != dirfd)
            close(cur);
        if (fd < 0) {
            errno = err;
            return -1;
        }
        struct stat st;
        if (last && (flags & O_PATH) && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
            close(fd); /* O_PATH|O_NOFOLLOW opens a link itself: as openat2, refuse it */
            errno = ELOOP;
            return -1;
        }
        if (last)
            return fd;
        cur = fd;
        p = next;
    }
}

int pm__open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
    if (!rel || rel[0] == '/') {
        errno = EXDEV;
        return -1;
    }
    if (!*rel)
        rel = ".";
    int fd = sys_openat2(dirfd, rel, flags, mode,
                         RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd >= 0 || (errno != ENOSYS && errno != ENAMETOOLONG))
        return fd;
    return open_by_parts(dirfd, rel, flags, mode);
}

int pm__open_physical(const char *path, int flags)
{
    if (!path || path[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    int fd = sys_openat2(AT_FDCWD, path, flags, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd >= 0 || (errno != ENOSYS && errno != ENAMETOOLONG))
        return fd;
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    fd = path[1] ? open_by_parts(root, path + 1, flags, 0) : openat(root, ".", flags | O_CLOEXEC);
    int err = errno;
    close(root);
    errno = err;
    return fd;
}

int pm__open_parent(int rootfd, const char *rel, const char **base)
{
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    if (!slash)
        return fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    char *dir = g_strndup(rel, (gsize)(slash - rel));
    int fd = pm__open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY, 0);
    int err = errno;
    g_free(dir);
    errno = err;
    return fd;
}

/* Does the absolute path lead, without a link, to the very file fd is? */
static int leads_to(const char *path, int fd)
{
    struct stat want, got;
    int check = pm__open_physical(path, O_PATH);
    int same = check >= 0 && fstat(check, &got) == 0 && fstat(fd, &want) == 0 &&
               got.st_dev == want.st_dev && got.st_ino == want.st_ino;
    if (check >= 0)
        close(check);
    return same;
}

char *pm__fd_path(int fd, const char *opened_as)
{
    /* A name the kernel or realpath gives is only a claim (the folder may have moved or gone
     * since): it must lead, without a link, to the very same file. */
    char link[64], buf[PATH_MAX + 1];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, sizeof(buf) - 1);
    if (n > 0 && n < (ssize_t)sizeof(buf) - 1 && buf[0] == '/') {
        buf[n] = '\0';
        if (leads_to(buf, fd))
            return g_strdup(buf);
    }
    /* no /proc: what realpath makes of the path it was opened by */
    char *real = opened_as ? realpath(opened_as, NULL) : NULL;
    char *phys = real && leads_to(real, fd) ? g_strdup(real) : NULL;
    free(real);
    return phys;
}
