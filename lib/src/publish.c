/* Atomic outputs: an O_EXCL temp file in the destination folder, fsync, rename into place.
 * Never writes through a symlink: folders are opened with O_NOFOLLOW, and rename replaces a
 * link at the final name instead of following it. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int pm__publish_open_dir(int rootfd, const char *rel, int *out_fd, int *sys_errno)
{
    int cur = dup(rootfd);
    if (cur < 0) {
        *sys_errno = errno;
        return PM_ERR_WRITE;
    }
    const char *p = rel;
    char part[256];
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= sizeof(part)) {
            close(cur);
            *sys_errno = ENAMETOOLONG;
            return PM_ERR_WRITE;
        }
        memcpy(part, p, len);
        part[len] = '\0';
        p += len + (end ? 1 : 0);
        if (len == 0)
            continue;
        int next = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(cur, part, 0777) != 0 && errno != EEXIST) {
                *sys_errno = errno;
                close(cur);
                return PM_ERR_WRITE;
            }
            next = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            struct stat st; /* a link where a folder should be: say so (ENOTDIR otherwise) */
            int err = errno;
            *sys_errno = fstatat(cur, part, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)
                             ? ELOOP
                             : err;
            close(cur);
            return PM_ERR_WRITE;
        }
        close(cur);
        cur = next;
    }
    *out_fd = cur;
    return PM_OK;
}

int pm__publish_is_temp_name(const char *name)
{
    size_t lp = strlen(PM__TEMP_PREFIX), ls = strlen(PM__TEMP_SUFFIX);
    if (strlen(name) != lp + 16 + ls || strncmp(name, PM__TEMP_PREFIX, lp) != 0 ||
        strcmp(name + lp + 16, PM__TEMP_SUFFIX) != 0)
        return 0;
    for (size_t i = lp; i < lp + 16; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return 1;
}

int pm__publish_begin(pm__temp *t, int dirfd, int *sys_errno)
{
    t->dirfd = dirfd;
    t->fd = -1;
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            *sys_errno = errno;
            return PM_ERR_WRITE;
        }
        snprintf(t->name, sizeof(t->name), "%s%02x%02x%02x%02x%02x%02x%02x%02x%s", PM__TEMP_PREFIX,
                 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], PM__TEMP_SUFFIX);
        t->fd = openat(dirfd, t->name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (t->fd >= 0)
            return PM_OK;
        if (errno != EEXIST)
            break;
    }
    *sys_errno = errno;
    t->name[0] = '\0';
    return PM_ERR_WRITE;
}

void pm__publish_abort(pm__temp *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->name[0])
        unlinkat(t->dirfd, t->name, 0);
    t->name[0] = '\0';
}

static int rename_noreplace(int dirfd, const char *from, const char *to)
{
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* File systems without RENAME_NOREPLACE: link refuses an existing name, then unlink. */
    if (linkat(dirfd, from, dirfd, to, 0) != 0)
        return -1;
    unlinkat(dirfd, from, 0);
    return 0;
}

int pm__write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync (unless a cache) and close the temp: 0, or -1 with the temp removed. */
static int flush(pm__temp *t, int flags, int *sys_errno)
{
    if (!(flags & PM__PUBLISH_CACHE) && fsync(t->fd) != 0) {
        *sys_errno = errno;
        pm__publish_abort(t);
        return -1;
    }
    int rc = close(t->fd);
    t->fd = -1;
    if (rc != 0) {
        *sys_errno = errno;
        pm__publish_abort(t);
        return -1;
    }
    return 0;
}

int pm__publish_commit(pm__temp *t, const char *final_name, int flags, int *sys_errno)
{
    if (flush(t, flags, sys_errno) != 0)
        return PM_ERR_WRITE;
    int rc = (flags & PM__PUBLISH_NOREPLACE) ? rename_noreplace(t->dirfd, t->name, final_name)
                                             : renameat(t->dirfd, t->name, t->dirfd, final_name);
    if (rc != 0) {
        *sys_errno = errno;
        pm__publish_abort(t);
        return (*sys_errno == EEXIST) ? PM_ERR_OUTPUT_EXISTS : PM_ERR_WRITE;
    }
    t->name[0] = '\0';
    return PM_OK;
}

/* Exchanges the two names in dirfd: 0, or -1 with errno (EINVAL/ENOSYS: not supported here). */
static int exchange(int dirfd, const char *a, const char *b)
{
    return renameat2(dirfd, a, dirfd, b, RENAME_EXCHANGE);
}

int pm__publish_commit_over(pm__temp *t, const char *final_name, uint64_t ino, int flags,
                            int *sys_errno)
{
    if (flush(t, flags, sys_errno) != 0)
        return PM_ERR_WRITE;
    struct stat st;
    if (exchange(t->dirfd, t->name, final_name) == 0) {
        /* the file that came out must be the one checked; if not, it goes back */
        if (fstatat(t->dirfd, t->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (uint64_t)st.st_ino == ino) {
            unlinkat(t->dirfd, t->name, 0);
            t->name[0] = '\0';
            return PM_OK;
        }
        if (exchange(t->dirfd, t->name, final_name) == 0) {
            *sys_errno = EEXIST;
            pm__publish_abort(t);
            return PM_ERR_OUTPUT_EXISTS;
        }
        *sys_errno = errno; /* two names of one folder exchanged once cannot fail the second
                               time; if they do, neither file is removed */
        t->name[0] = '\0';
        return PM_ERR_WRITE;
    }
    if (errno == ENOENT) { /* nothing there any more: nothing to lose */
        if (rename_noreplace(t->dirfd, t->name, final_name) != 0) {
            *sys_errno = errno;
            pm__publish_abort(t);
            return *sys_errno == EEXIST ? PM_ERR_OUTPUT_EXISTS : PM_ERR_WRITE;
        }
        t->name[0] = '\0';
        return PM_OK;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        *sys_errno = errno;
        pm__publish_abort(t);
        return PM_ERR_WRITE;
    }
    /* no RENAME_EXCHANGE on this file system: checked by name, then replaced */
    if (fstatat(t->dirfd, final_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        (uint64_t)st.st_ino != ino) {
        *sys_errno = EEXIST;
        pm__publish_abort(t);
        return PM_ERR_OUTPUT_EXISTS;
    }
    if (renameat(t->dirfd, t->name, t->dirfd, final_name) != 0) {
        *sys_errno = errno;
        pm__publish_abort(t);
        return PM_ERR_WRITE;
    }
    t->name[0] = '\0';
    return PM_OK;
}
