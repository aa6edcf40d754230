/* LD_PRELOAD fault injection for tests: makes write(), fsync() or rename calls fail on
 * pixmill's own temp files (".pixmill-*.tmp") only, so that journal pipes, spooled lists and
 * everything libvips reads are untouched.
 *   PM_FAULT=write|fsync|rename|reopen   the call to fail (reopen: opening a temp read-only,
 *                                 as the reporter does to publish it)
 *   PM_FAULT_ERRNO=N              errno to fail with (default EIO)
 *   PM_FAULT_MATCH=TEXT           rename: only when the final name contains TEXT
 *   PM_FAULT_AFTER=N              write: let N bytes through per file first (a disk filling up)
 *   PM_FAULT=write-once           the write crossing byte PM_FAULT_AFTER is short, the next one
 *                                 fails, later ones succeed (once per process)
 *   PM_FAULT_LOG=FILE             fsync of a temp: append "main" or "thread" to FILE, as the
 *                                 caller is the process's first thread or another one
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int want(const char *call)
{
    const char *f = getenv("PM_FAULT");
    return f && strcmp(f, call) == 0;
}

static int fault_errno(void)
{
    const char *e = getenv("PM_FAULT_ERRNO");
    return e ? atoi(e) : EIO;
}

/* A path whose last part is one of pixmill's temp names (".pixmill-<hex>.tmp"). */
static int is_temp_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, ".pixmill-", 9) == 0 && strstr(base, ".tmp");
}

static int is_temp_fd(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    return is_temp_name(target);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (want("write") && is_temp_fd(fd)) {
        const char *after = getenv("PM_FAULT_AFTER");
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (!after || pos >= atoll(after)) {
            errno = fault_errno();
            return -1;
        }
    }
    /* write-once: the write that crosses PM_FAULT_AFTER writes part of its bytes, the next
     * fails, and every later write succeeds, as on a full disk where another file's space is
     * freed meanwhile. Once per process. */
    static int fired; /* 0, 1 after the short write, 2 after the failure */
    if (want("write-once") && fired < 2 && is_temp_fd(fd)) {
        const char *after = getenv("PM_FAULT_AFTER");
        off_t pos = lseek(fd, 0, SEEK_CUR), at = after ? atoll(after) : 0;
        if (fired == 1) {
            fired = 2;
            errno = fault_errno();
            return -1;
        }
        if (pos + (off_t)n > at && n > 1) {
            fired = 1;
            size_t part = at > pos ? (size_t)(at - pos) : n / 2;
            return real(fd, buf, part < n ? part : n / 2);
        }
    }
    return real(fd, buf, n);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *log = getenv("PM_FAULT_LOG");
    if (log && *log && is_temp_fd(fd)) {
        FILE *f = fopen(log, "ae");
        if (f) {
            fputs(gettid() == getpid() ? "main\n" : "thread\n", f);
            fclose(f);
        }
    }
    if (want("fsync") && is_temp_fd(fd)) {
        errno = fault_errno();
        return -1;
    }
    return real(fd);
}

static int rename_fails(const char *from, const char *to)
{
    const char *m = getenv("PM_FAULT_MATCH");
    return want("rename") && is_temp_name(from) && (!m || strstr(to, m));
}

int renameat(int olddirfd, const char *from, int newdirfd, const char *to)
{
    static int (*real)(int, const char *, int, const char *);
    if (!real)
        real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    if (rename_fails(from, to)) {
        errno = fault_errno();
        return -1;
    }
    return real(olddirfd, from, newdirfd, to);
}

int renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned flags)
{
    static int (*real)(int, const char *, int, const char *, unsigned);
    if (!real)
        real =
            (int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT, "renameat2");
    if (rename_fails(from, to)) {
        errno = fault_errno();
        return -1;
    }
    return real(olddirfd, from, newdirfd, to, flags);
}

static int reopen_fails(const char *path, int flags)
{
    return want("reopen") && (flags & (O_ACCMODE | O_CREAT)) == O_RDONLY && is_temp_name(path);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*real)(int, const char *, int, ...);
    if (!real)
        real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (reopen_fails(path, flags)) {
        errno = fault_errno();
        return -1;
    }
    return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
