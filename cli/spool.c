/* The --files-from lists, copied once into unlinked temp files before the first engine starts,
 * so that every engine (a restart after a crash, each lane) reads the same list from its
 * start: stdin and pipes cannot be read twice. A list is copied whole or not at all. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* One list copied whole into out, or not at all: a read or a write that fails ends it (a list
 * cut short would be a shorter batch that says nothing). A signal while it is read (the user
 * gave up on a slow pipe) ends it too: *signo. 0, or -1 with errno and *what. */
static int spool_one(int in, int out, int sigfd, int *signo, const char **what)
{
    char buf[65536];
    for (;;) {
        struct pollfd p[2] = {{in, POLLIN, 0}, {sigfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            *what = "read";
            return -1;
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                *signo = (int)si.ssi_signo;
                return 0;
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            *what = "read";
            return -1;
        }
        if (n == 0)
            return 0;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                if (w == 0)
                    errno = ENOSPC;
                *what = "spool";
                return -1;
            }
            done += w;
        }
    }
}

/* The file lists are copied once, so that every engine reads the same list from its start
 * (stdin and pipes cannot be read twice), into fds (*n_fds of them, the caller closes them). 0; 2
 * when a list cannot be opened (a usage error, nothing touched); 3 when one cannot be copied whole;
 * 128 + the signal when interrupted. */
int cli_spool_lists(const char *const *lists, int n_lists, int sigfd, int *fds, int *n_fds)
{
    *n_fds = 0;
    for (int i = 0; i < n_lists && i < CLI_MAX_LISTS; i++) {
        int in = strcmp(lists[i], "-") == 0 ? STDIN_FILENO : open(lists[i], O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            fprintf(stderr, "pixmill: %s: %s\n", lists[i], g_strerror(errno));
            return 2;
        }
        const char *tmpdir = g_get_tmp_dir();
        int out = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (out < 0) {
            fprintf(stderr, "pixmill: cannot spool %s in %s: %s\n", lists[i], tmpdir,
                    g_strerror(errno));
            if (in != STDIN_FILENO)
                close(in);
            return 3;
        }
        int signo = 0;
        const char *what = NULL;
        int rc = spool_one(in, out, sigfd, &signo, &what);
        int err = errno;
        if (in != STDIN_FILENO)
            close(in);
        if (rc != 0) {
            if (strcmp(what, "spool") == 0)
                fprintf(stderr, "pixmill: cannot spool %s in %s: %s\n", lists[i], tmpdir,
                        g_strerror(err));
            else
                fprintf(stderr, "pixmill: cannot read %s: %s\n", lists[i], g_strerror(err));
            close(out);
            return 3;
        }
        fds[(*n_fds)++] = out;
        if (signo) {
            fprintf(stderr, "pixmill: interrupted while reading %s\n", lists[i]);
            return 128 + signo;
        }
    }
    return 0;
}
