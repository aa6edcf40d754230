/* Lanes: one scan feeding the workers of several engine processes (pm_options.lanes). The
 * job socket (a SOCK_SEQPACKET pair the supervisor made) carries one job a message; a worker
 * takes its next job only when it is free, so no job waits in one lane behind a slow file
 * while another lane is idle. And the lanes' share of the decode budget: a lock file below the
 * output root. Knows jobs as bytes on a socket; nothing of batches or images. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A job on the lane socket: this head, then the job's strings (source, out_rel, dir, name:
 * their lengths in len[], no NULs). */
typedef struct lane_head {
    uint64_t seq;
    uint64_t root_len, root_dev, dir_dev, dir_ino, dev, ino;
    int32_t input, origin, explicit_file, place;
    uint32_t len[4];
} lane_head;

#define LANE_WAIT_MS 100 /* how often a blocked lane looks for a cancel */

int pm__lane_send(int fd, const pm__job *job, const int *cancel)
{
    const char *parts[4] = {job->source, job->out_rel, job->dir, job->name};
    lane_head h = {job->seq,           job->root_len,       job->root_dev,
                   job->dir_dev,       job->dir_ino,        job->dev,
                   job->ino,           (int32_t)job->input, (int32_t)job->origin,
                   job->explicit_file, job->place,          {0}};
    size_t total = sizeof(h);
    for (int i = 0; i < 4; i++) {
        h.len[i] = (uint32_t)strlen(parts[i]);
        total += h.len[i];
    }
    if (total > PM__LANE_MSG_MAX)
        return -1;
    char *msg = g_malloc(total), *at = msg + sizeof(h);
    memcpy(msg, &h, sizeof(h));
    for (int i = 0; i < 4; i++) {
        memcpy(at, parts[i], h.len[i]);
        at += h.len[i];
    }
    int stop = 0;
    for (;;) {
        if (send(fd, msg, total, MSG_NOSIGNAL) >= 0)
            break;
        if (errno == EINTR)
            continue;
        stop = errno != EAGAIN || __atomic_load_n(cancel, __ATOMIC_ACQUIRE);
        if (stop)
            break;
    }
    g_free(msg);
    return stop;
}

void pm__lane_timeouts(int fd)
{
    struct timeval tv = {0, LANE_WAIT_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

pm__job *pm__lane_take(int fd, char *msg, const int *cancel)
{
    while (!__atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
        ssize_t n = recv(fd, msg, PM__LANE_MSG_MAX, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return NULL;
        lane_head h;
        if ((size_t)n < sizeof(h))
            continue;
        memcpy(&h, msg, sizeof(h));
        uint64_t total = sizeof(h);
        for (int i = 0; i < 4; i++)
            total += h.len[i];
        if (total != (uint64_t)n)
            continue;
        pm__job *job = g_new0(pm__job, 1);
        job->seq = h.seq;
        job->input = h.input;
        job->origin = (pm__origin)h.origin;
        job->explicit_file = h.explicit_file;
        job->place = h.place;
        job->root_len = h.root_len;
        job->root_dev = h.root_dev;
        job->dir_dev = h.dir_dev;
        job->dir_ino = h.dir_ino;
        job->dev = h.dev;
        job->ino = h.ino;
        char **parts[4] = {&job->source, &job->out_rel, &job->dir, &job->name};
        const char *at = msg + sizeof(h);
        for (int i = 0; i < 4; i++) {
            *parts[i] = g_strndup(at, h.len[i]);
            at += h.len[i];
        }
        return job;
    }
    return NULL;
}

void pm__job_free(pm__job *job)
{
    g_free(job->source);
    g_free(job->out_rel);
    g_free(job->dir);
    g_free(job->name);
    g_free(job);
}

/* A decode within budget / lanes holds the lock shared, a larger one alone. */
int pm__lanes_decode_lock(int rootfd, uint64_t budget, int lanes, uint64_t bytes)
{
    if (lanes < 2 || budget == 0 || rootfd < 0)
        return -1;
    int fd = pm__open_beneath(rootfd, PM__STATE_DIR "/decode-lock", O_RDWR | O_CREAT, 0666);
    if (fd < 0)
        return -1; /* no lock: the decode goes ahead, as without lanes */
    int how = bytes > budget / (uint64_t)lanes ? LOCK_EX : LOCK_SH;
    while (flock(fd, how) != 0 && errno == EINTR)
        ;
    return fd;
}
