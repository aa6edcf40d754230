/* One engine run, seen from the supervisor: the engine (this program again, with --engine-*
 * options), or the run's lanes, started with the journal pipe and the spooled lists; their
 * journals read (see supervise.c for the lines), each event shown exactly when it is counted;
 * a source past --timeout gets its engine killed; signals sent to the supervisor are passed
 * on. What to do when an engine dies is supervise.c's. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* One engine process of a run: the run's only one, or one of its lanes. */
typedef struct lane {
    pid_t pid;
    int fd; /* its journal; -1 once read to its end */
    GString *buf;
    int killed;
    int got_z;
    int status;
} lane;

GHashTable *cli_seq_map(void)
{
    return g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

void cli_seq_put(GHashTable *map, uint64_t seq, uint64_t dev, uint64_t ino)
{
    gint64 *k = g_new(gint64, 1);
    *k = (gint64)seq;
    ident *v = g_new(ident, 1);
    *v = (ident){dev, ino};
    g_hash_table_replace(map, k, v);
}

const ident *cli_seq_get(GHashTable *map, uint64_t seq)
{
    gint64 k = (gint64)seq;
    return map ? g_hash_table_lookup(map, &k) : NULL;
}

int cli_seq_has(GHashTable *map, uint64_t seq)
{
    return cli_seq_get(map, seq) != NULL;
}

void cli_seq_remove(GHashTable *map, uint64_t seq)
{
    gint64 k = (gint64)seq;
    g_hash_table_remove(map, &k);
}

/* "DEV:INO,..." of the files in map, for --engine-skip. */
static char *id_list(GHashTable *map)
{
    GString *s = g_string_new(NULL);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, map);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        const ident *id = v;
        if (id->dev || id->ino)
            g_string_append_printf(s, "%s%" PRIu64 ":%" PRIu64, s->len ? "," : "", id->dev,
                                   id->ino);
    }
    return g_string_free(s, FALSE);
}

/* Lane k of er's lanes (0: the one that scans, sending on send_fd) receiving on recv_fd; or
 * with recv_fd -1, the run's only engine. */
static pid_t spawn_engine(const sup_config *cfg, const engine_run *er, int journal_w, int k,
                          int recv_fd, int send_fd)
{
    GPtrArray *args = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(args, g_strdup("pixmill"));
    g_ptr_array_add(args, g_strdup_printf("--engine-fd=%d", journal_w));
    if (recv_fd >= 0) {
        int jobs = cfg->jobs / er->lanes + (k < cfg->jobs % er->lanes);
        g_ptr_array_add(
            args, g_strdup_printf("--engine-lane=%d,%d,%d,%d", er->lanes, jobs, recv_fd, send_fd));
    }
    char *skip = er->skip ? id_list(er->skip) : NULL;
    if (skip && *skip)
        g_ptr_array_add(args, g_strdup_printf("--engine-skip=%s", skip));
    g_free(skip);
    if (er->quiet_below > 1 && er->quiet_below != UINT64_MAX && !er->sweep_only)
        g_ptr_array_add(args, g_strdup_printf("--engine-check=%" PRIu64 ":%" PRIx64,
                                              er->quiet_below, er->digest));
    if (er->only)
        g_ptr_array_add(args, g_strdup_printf("--engine-only=%" PRIu64, er->only));
    if (er->sweep_only)
        g_ptr_array_add(args, g_strdup("--engine-sweep"));
    if (cfg->n_list_fds) {
        GString *l = g_string_new("--engine-lists=");
        for (int i = 0; i < cfg->n_list_fds; i++)
            g_string_append_printf(l, "%s%d", i ? "," : "", cfg->list_fds[i]);
        g_ptr_array_add(args, g_string_free(l, FALSE));
    }
    /* The user's arguments last: after a "--" everything is an input. */
    for (int i = 0; i < cfg->argc; i++)
        g_ptr_array_add(args, g_strdup(cfg->argv[i]));
    g_ptr_array_add(args, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* The journal and the spooled lists are the engine's; signals are unblocked by the
         * engine's own setup (it blocks them again for its signal thread). */
        int keep[67], n_keep = 0;
        keep[n_keep++] = journal_w;
        for (int i = 0; i < cfg->n_list_fds; i++)
            keep[n_keep++] = cfg->list_fds[i];
        if (recv_fd >= 0)
            keep[n_keep++] = recv_fd;
        if (send_fd >= 0)
            keep[n_keep++] = send_fd;
        for (int i = 0; i < n_keep; i++)
            fcntl(keep[i], F_SETFD, 0);
        execv("/proc/self/exe", (char **)args->pdata);
        _exit(127);
    }
    g_ptr_array_free(args, TRUE);
    return pid;
}

int cli_engine_did_report(const engine_run *er, uint64_t seq)
{
    return seq < er->done_below || cli_seq_has(er->done, seq);
}

/* seq is reported; the run's watermark moves past every seq reported by now, each mixed
 * into the digest with the identity it was first reported with. */
static void mark_done(engine_run *er, uint64_t seq, uint64_t dev, uint64_t ino)
{
    if (seq < er->done_below)
        return;
    cli_seq_put(er->done, seq, dev, ino);
    for (;;) {
        const ident *id = cli_seq_get(er->done, er->done_below);
        int mine = id != NULL;
        if (!id)
            id = cli_seq_get(er->quiet, er->done_below);
        if (!id)
            id = cli_seq_get(er->skip, er->done_below);
        if (!id)
            break;
        er->digest = pm_journal_mix(er->digest, er->done_below, id->dev, id->ino);
        if (mine)
            cli_seq_remove(er->done, er->done_below);
        er->done_below++;
    }
}

/* One journal line into er. */
static void take_line(const sup_config *cfg, engine_run *er, char *line, double t, lane *ln,
                      int lane_k)
{
    uint64_t seq, dev, ino;
    int at = 0;
    if (line[0] == 'S' &&
        sscanf(line, "S %" SCNu64 " %" SCNu64 " %" SCNu64 " %n", &seq, &dev, &ino, &at) == 3 &&
        at > 0) {
        inflight *f = g_new0(inflight, 1);
        f->path = g_strcompress(line + at);
        f->dev = dev;
        f->ino = ino;
        f->start = t;
        f->lane = lane_k;
        gint64 *k = g_new(gint64, 1);
        *k = (gint64)seq;
        g_hash_table_replace(er->flight, k, f);
        return;
    }
    if (line[0] == 'K' &&
        sscanf(line, "K %" SCNu64 " %" SCNu64 " %" SCNu64, &seq, &dev, &ino) == 3) {
        if (!(seq < er->quiet_below || cli_seq_has(er->quiet, seq)))
            mark_done(er, seq, dev, ino); /* reported already, as the file at fault */
        return;
    }
    if (line[0] == 'X' && (line[1] == '\0' || line[1] == ' ')) {
        er->tree_changed = 1;
        return;
    }
    int type, status, outputs;
    uint64_t in, out;
    if (line[0] == 'E' &&
        sscanf(line, "E %" SCNu64 " %d %d %d %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %n",
               &seq, &type, &status, &outputs, &in, &out, &dev, &ino, &at) == 8 &&
        at > 0) {
        if (seq == 0 && er->lanes > 1) {
            /* every lane may say the same (an output folder it cannot write): the first
             * lane's at once, the others' at the end unless already said */
            if (lane_k > 0) {
                if (!g_hash_table_contains(er->said, line))
                    g_ptr_array_add(er->held, g_strdup(line));
                return;
            }
            g_hash_table_add(er->said, g_strdup(line));
        }
        gint64 key = (gint64)seq;
        g_hash_table_remove(er->flight, &key);
        int quiet = seq && (seq < er->quiet_below || cli_seq_has(er->quiet, seq));
        if (seq && !quiet)
            mark_done(er, seq, dev, ino);
        if (quiet)
            return; /* reported by an earlier engine: replayed for the manifest only */
        cli_print_journal_event(&cfg->view, type, status, line + at);
        pm_summary *s = &er->sum;
        s->outputs += (uint64_t)outputs;
        s->bytes_out += out;
        switch ((pm_event_type)type) {
        case PM_EVENT_DONE:
            s->processed++;
            s->bytes_in += in;
            break;
        case PM_EVENT_PLANNED:
            s->processed++;
            break;
        case PM_EVENT_FAILED:
            s->failed++;
            break;
        case PM_EVENT_SKIPPED:
            if (status == PM_OK)
                s->up_to_date++;
            else
                s->skipped++;
            break;
        case PM_EVENT_SCAN_ERROR:
            s->scan_errors++;
            break;
        case PM_EVENT_PASSED_OVER:
            s->passed_over++;
            break;
        case PM_EVENT_PRUNED:
            break;
        }
        return;
    }
    double cpu;
    uint64_t pruned, swept;
    int jobs;
    if (line[0] == 'Z' && ln &&
        sscanf(line, "Z %" SCNu64 " %" SCNu64 " %lf %d", &pruned, &swept, &cpu, &jobs) == 4) {
        er->sum.pruned += pruned;
        er->sum.temps_swept += swept;
        er->sum.jobs += jobs; /* the lanes' workers run at once */
        ln->got_z = 1;
    }
}

static void free_inflight(gpointer p)
{
    inflight *f = p;
    g_free(f->path);
    g_free(f);
}

/* How long the supervisor lets journal lines gather before it reads them: the delay of a line
 * on screen and of a timeout, at most. */
#define JOURNAL_NAP_MS 10

/* Starts er's engines: one, or its lanes, the first scanning for all. Returns how many
 * started; all or none (the others are killed, and er->status says fatal). */
static int start_engines(const sup_config *cfg, engine_run *er, lane *ln, int n)
{
    int sv[2] = {-1, -1};
    if (n > 1 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        n = 0;
    int started = 0;
    for (int k = 0; k < n; k++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            break;
        ln[k].pid = spawn_engine(cfg, er, p[1], k, sv[1], k == 0 ? sv[0] : -1);
        close(p[1]);
        if (ln[k].pid < 0) {
            close(p[0]);
            break;
        }
        ln[k].fd = p[0];
        ln[k].buf = g_string_new(NULL);
        started++;
    }
    /* The scan's end reaches the lanes when the first shuts its end, or dies. */
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    if (started == n && n > 0)
        return n;
    for (int k = 0; k < started; k++) {
        kill(ln[k].pid, SIGKILL);
        close(ln[k].fd);
        ln[k].fd = -1;
        while (waitpid(ln[k].pid, &ln[k].status, 0) < 0 && errno == EINTR)
            ;
    }
    er->status = 3 << 8;
    return 0;
}

/* The run's outcome from its engines': the first that died, else the first that failed. */
static void sum_up_engines(engine_run *er, lane *ln, int n)
{
    int pick = -1, failed = -1;
    er->got_z = 1;
    for (int k = 0; k < n; k++) {
        int st = ln[k].status;
        er->got_z &= ln[k].got_z;
        int died = WIFSIGNALED(st) ||
                   (WIFEXITED(st) && !ln[k].got_z && WEXITSTATUS(st) != 2 && WEXITSTATUS(st) != 3);
        if (died && pick < 0)
            pick = k;
        if (st != 0 && failed < 0)
            failed = k;
    }
    er->status = ln[pick >= 0 ? pick : failed >= 0 ? failed : 0].status;
}

/* Runs one engine, or a run's lanes, to the end: reads their journals, kills an engine whose
 * source passes the timeout (the other lanes go on), or all when the drain passes its grace,
 * and forwards signals sent to the supervisor. */
void cli_engine_run(const sup_config *cfg, engine_run *er, int sigfd, int *user_signal)
{
    er->flight = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, free_inflight);
    er->done = cli_seq_map();
    er->done_below = er->quiet_below;
    er->held = g_ptr_array_new_with_free_func(g_free);
    er->said = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    int n = er->lanes > 1 ? er->lanes : 1;
    lane *ln = g_new0(lane, n);
    int live = start_engines(cfg, er, ln, n);
    if (live == 0) {
        g_free(ln);
        return;
    }
    struct pollfd *fds = g_new0(struct pollfd, (gsize)n + 1);
    int *who = g_new0(int, (gsize)n + 1);
    int all_killed = 0;
    double drain_deadline = *user_signal ? cli_now() + DRAIN_GRACE : 0;
    while (live > 0) {
        /* the next deadline among the sources in flight */
        int wait_ms = -1;
        double t = cli_now();
        if (drain_deadline > 0 && !all_killed) {
            if (t >= drain_deadline) {
                er->abandoned = 1;
                for (int k = 0; k < n; k++)
                    if (!ln[k].killed && kill(ln[k].pid, SIGKILL) == 0)
                        ln[k].killed = 1;
                all_killed = 1;
            } else {
                wait_ms = (int)((drain_deadline - t) * 1000) + 1;
            }
        }
        if (cfg->timeout > 0) {
            GHashTableIter it;
            gpointer key, v;
            g_hash_table_iter_init(&it, er->flight);
            while (g_hash_table_iter_next(&it, &key, &v)) {
                inflight *f = v;
                if (ln[f->lane].killed)
                    continue;
                double left = f->start + cfg->timeout - t;
                if (left <= 0) {
                    f->timed_out = 1;
                    if (!er->timed_out)
                        er->timed_out = (uint64_t) * (gint64 *)key;
                    kill(ln[f->lane].pid, SIGKILL);
                    ln[f->lane].killed = 1;
                    continue;
                }
                int ms = (int)(left * 1000) + 1;
                wait_ms = wait_ms < 0 || ms < wait_ms ? ms : wait_ms;
            }
        }
        int nf = 0;
        fds[nf++] = (struct pollfd){sigfd, POLLIN, 0};
        for (int k = 0; k < n; k++)
            if (ln[k].fd >= 0) {
                who[nf] = k;
                fds[nf++] = (struct pollfd){ln[k].fd, POLLIN, 0};
            }
        int got_n = poll(fds, (nfds_t)nf, wait_ms);
        if (got_n < 0 && errno != EINTR)
            break;
        if (got_n > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                /* Passed on whenever the engines may not have had it: a kill aimed at the
                 * supervisor alone, or a terminal's Ctrl-C from before an engine started
                 * (while a list was read). The first goes marked (CLI_SIGNAL_FORWARDED), so
                 * an engine that had it from the terminal too does not count it twice; a
                 * second signal is passed on as it is: at once. */
                union sigval mark = {.sival_int = CLI_SIGNAL_FORWARDED};
                for (int k = 0; k < n; k++)
                    if (ln[k].fd >= 0) {
                        if (*user_signal)
                            kill(ln[k].pid, (int)si.ssi_signo);
                        else
                            sigqueue(ln[k].pid, (int)si.ssi_signo, mark);
                    }
                if (!*user_signal) {
                    *user_signal = (int)si.ssi_signo;
                    drain_deadline = cli_now() + DRAIN_GRACE;
                }
                er->signo = *user_signal;
            }
        }
        int read_some = 0, read_full = 0;
        for (int i = 1; got_n > 0 && i < nf; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            lane *l = &ln[who[i]];
            char chunk[8192];
            ssize_t got = read(l->fd, chunk, sizeof(chunk));
            if (got <= 0) {
                if (got == 0 || errno != EINTR) {
                    close(l->fd);
                    l->fd = -1;
                    live--;
                }
                continue;
            }
            read_some = 1;
            read_full |= (size_t)got == sizeof(chunk);
            g_string_append_len(l->buf, chunk, got);
            char *nl;
            while ((nl = memchr(l->buf->str, '\n', l->buf->len)) != NULL) {
                *nl = '\0';
                take_line(cfg, er, l->buf->str, cli_now(), l, who[i]);
                g_string_erase(l->buf, 0, (gssize)(nl - l->buf->str) + 1);
            }
        }
        /* An engine writes two lines a file: waking for each cost both processes a context
         * switch per line. Nap a little (a signal ends the nap) and read what came meanwhile
         * in one go. */
        if (read_some && !read_full) {
            struct pollfd sig = {sigfd, POLLIN, 0};
            poll(&sig, 1, wait_ms >= 0 && wait_ms < JOURNAL_NAP_MS ? wait_ms : JOURNAL_NAP_MS);
        }
    }
    for (int k = 0; k < n; k++) {
        if (ln[k].fd >= 0)
            close(ln[k].fd);
        g_string_free(ln[k].buf, TRUE);
        while (waitpid(ln[k].pid, &ln[k].status, 0) < 0 && errno == EINTR)
            ;
    }
    for (guint i = 0; i < er->held->len; i++) {
        char *line = g_ptr_array_index(er->held, i);
        if (!g_hash_table_contains(er->said, line))
            take_line(cfg, er, line, cli_now(), NULL, 0);
    }
    sum_up_engines(er, ln, n);
    g_free(fds);
    g_free(who);
    g_free(ln);
}

void cli_engine_run_free(engine_run *er)
{
    if (er->flight)
        g_hash_table_destroy(er->flight);
    if (er->done)
        g_hash_table_destroy(er->done);
    if (er->said)
        g_hash_table_destroy(er->said);
    if (er->held)
        g_ptr_array_free(er->held, TRUE);
    er->flight = er->done = er->said = NULL;
    er->held = NULL;
}
