/* The supervisor: pixmill runs its batch in a child process (the engine: this program again,
 * with --engine-* options) and watches it through a journal pipe. A decoder that crashes takes
 * only the engine down; one that hangs past --timeout is killed. The files at fault are
 * reported (crashed / timed out), the rest of the batch is resumed in a new engine, and the
 * summary and exit status cover every engine. The supervisor never starts libvips.
 *
 * Journal lines from the engine (see pm_options.journal_fd):
 *   S <seq> <dev> <ino> <escaped path>  a worker started a source
 *   E <seq> <type> <status> <outputs> <bytes in> <bytes out> <dev> <ino> <json>
 *                                        its event was delivered
 *   K <seq> <dev> <ino>                  a file at fault passed over (pm_batch_skip_file)
 *   X                                    the replay does not match what was shown before
 *   Z <pruned> <temps swept> <cpu seconds> <jobs>   the engine finished
 * The engine prints nothing itself: the supervisor shows each event from its E line, so an
 * event is shown exactly when it is counted, whatever the moment of a crash. Restarting: the
 * sources already shown are replayed (they are up to date now, so this is cheap, and the
 * manifest stays complete) without being shown again; the files at fault are passed over by
 * identity (device, inode), wherever the new scan meets them. Shown events are known by seq
 * (memory stays flat), so the new engine checks that its entries below the last one shown are
 * the same files in the same order (a digest of seq, device and inode, pm_journal_mix); when
 * the tree changed between the engines it says so ("X"), and the run warns and exits 1 rather
 * than trust counts that may be off. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct inflight {
    char *path;
    uint64_t dev, ino; /* the source as its engine's scan saw it */
    double start;
    int lane;      /* the engine working on it (its index among the lanes) */
    int timed_out; /* its engine was killed for it */
} inflight;

/* One engine process of a run: the run's only one, or one of its lanes. */
typedef struct lane {
    pid_t pid;
    int fd; /* its journal; -1 once read to its end */
    GString *buf;
    int killed;
    int got_z;
    int status;
} lane;

/* What one engine was asked to do and what it did. */
typedef struct engine_run {
    /* in */
    uint64_t quiet_below; /* events below this seq were shown by an earlier engine */
    uint64_t digest;      /* pm_journal_mix over those (and, out, over all below done_below) */
    GHashTable *quiet;    /* and these (seq_map): replayed for the manifest, not shown */
    GHashTable *skip;     /* seq_map of the files at fault, passed over by identity */
    uint64_t only;        /* 0, or run just this seq (one worker) */
    int sweep_only;       /* process nothing: only sweep the temps of a killed engine */
    int lanes;            /* > 1: that many engines at once, fed by the first one's scan */
    /* out */
    GHashTable *flight;  /* seq -> inflight, still open when the engine ended */
    uint64_t done_below; /* every seq below was reported (by this engine or earlier ones) */
    GHashTable *done;    /* and these above it (seq_map), reported by this engine: a few, since
                            events arrive nearly in order, so memory does not grow with the
                            files */
    int tree_changed;    /* an engine said "X" */
    pm_summary sum;      /* from its E lines (and Z) */
    int got_z;           /* from every lane */
    int status;          /* waitpid status: of the first lane that died, or else of the
                            first that failed, or else of the first */
    GPtrArray *held;     /* lanes' events without a seq (fatal errors), shown at the end */
    GHashTable *said;    /* and those shown: each is said once, not once a lane */
    uint64_t timed_out;  /* the seq the supervisor killed it for, or 0 */
    int abandoned;       /* killed: still working DRAIN_GRACE s after the user's signal */
    int signo;           /* a signal the user sent, or 0 */
} engine_run;

static int list_fds[64];
static int n_list_fds;

/* A set of seqs, each with the identity (device, inode) of its entry: 0 0 where it is not a
 * source. */
typedef struct ident {
    uint64_t dev, ino;
} ident;

static GHashTable *seq_map(void)
{
    return g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

static void seq_put(GHashTable *map, uint64_t seq, uint64_t dev, uint64_t ino)
{
    gint64 *k = g_new(gint64, 1);
    *k = (gint64)seq;
    ident *v = g_new(ident, 1);
    *v = (ident){dev, ino};
    g_hash_table_replace(map, k, v);
}

static const ident *seq_get(GHashTable *map, uint64_t seq)
{
    gint64 k = (gint64)seq;
    return map ? g_hash_table_lookup(map, &k) : NULL;
}

static int seq_has(GHashTable *map, uint64_t seq)
{
    return seq_get(map, seq) != NULL;
}

static void seq_remove(GHashTable *map, uint64_t seq)
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
 * (stdin and pipes cannot be read twice). 0; 2 when a list cannot be opened (a usage error,
 * nothing touched); 3 when one cannot be copied whole; 128 + the signal when interrupted. */
static int spool_lists(const sup_config *cfg, int sigfd)
{
    for (int i = 0; i < cfg->n_lists && i < 64; i++) {
        int in = strcmp(cfg->lists[i], "-") == 0 ? STDIN_FILENO
                                                 : open(cfg->lists[i], O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            fprintf(stderr, "pixmill: %s: %s\n", cfg->lists[i], g_strerror(errno));
            return 2;
        }
        const char *tmpdir = g_get_tmp_dir();
        int out = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (out < 0) {
            fprintf(stderr, "pixmill: cannot spool %s in %s: %s\n", cfg->lists[i], tmpdir,
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
                fprintf(stderr, "pixmill: cannot spool %s in %s: %s\n", cfg->lists[i], tmpdir,
                        g_strerror(err));
            else
                fprintf(stderr, "pixmill: cannot read %s: %s\n", cfg->lists[i], g_strerror(err));
            close(out);
            return 3;
        }
        list_fds[n_list_fds++] = out;
        if (signo) {
            fprintf(stderr, "pixmill: interrupted while reading %s\n", cfg->lists[i]);
            return 128 + signo;
        }
    }
    return 0;
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
    if (n_list_fds) {
        GString *l = g_string_new("--engine-lists=");
        for (int i = 0; i < n_list_fds; i++)
            g_string_append_printf(l, "%s%d", i ? "," : "", list_fds[i]);
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
        for (int i = 0; i < n_list_fds; i++)
            keep[n_keep++] = list_fds[i];
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

/* One journal line into er. */
static const char *member_string(JsonObject *o, const char *name)
{
    return json_object_has_member(o, name) ? json_object_get_string_member(o, name) : NULL;
}

static gint64 member_int(JsonObject *o, const char *name)
{
    return json_object_has_member(o, name) ? json_object_get_int_member(o, name) : 0;
}

static int status_from_name(const char *name)
{
    for (int st = 0; st >= -64; st--)
        if (name && strcmp(pm_status_name(st), name) == 0)
            return st;
    return PM_OK;
}

/* The event an engine journalled, rebuilt from its JSON (names from their exact, escaped
 * form), and shown as the engine itself would have. */
static void show_event(const sup_config *cfg, int type, int status, const char *json)
{
    const cli_view *v = &cfg->view;
    if (!v->json && !v->verbose && !v->dry_run &&
        (type == PM_EVENT_DONE || (type == PM_EVENT_SKIPPED && status == PM_OK)))
        return; /* nothing would be printed: no need to read it */
    JsonParser *p = json_parser_new();
    if (!json_parser_load_from_data(p, json, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
        g_object_unref(p);
        return;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    GPtrArray *owned = g_ptr_array_new_with_free_func(g_free);
    pm_event ev = {0};
    ev.type = (pm_event_type)type;
    ev.status = status;
    ev.source = g_uri_unescape_string(member_string(o, "source_url"), NULL);
    g_ptr_array_add(owned, (char *)ev.source);
    ev.sys_errno = (int)member_int(o, "errno");
    ev.message = member_string(o, "message");
    ev.source_width = (int)member_int(o, "source_width");
    ev.source_height = (int)member_int(o, "source_height");
    ev.seq = (uint64_t)member_int(o, "seq");
    JsonArray *outs =
        json_object_has_member(o, "outputs") ? json_object_get_array_member(o, "outputs") : NULL;
    ev.n_outputs = outs ? (int)json_array_get_length(outs) : 0;
    pm_output *po = g_new0(pm_output, ev.n_outputs ? ev.n_outputs : 1);
    for (int i = 0; i < ev.n_outputs; i++) {
        JsonObject *x = json_array_get_object_element(outs, (guint)i);
        char *path = g_uri_unescape_string(member_string(x, "path_url"), NULL);
        g_ptr_array_add(owned, path);
        po[i].path = path;
        po[i].name = member_string(x, "name");
        po[i].variant = member_string(x, "variant");
        pm_format_parse(member_string(x, "format"), &po[i].format);
        po[i].width = (int)member_int(x, "width");
        po[i].height = (int)member_int(x, "height");
        po[i].bytes = (uint64_t)member_int(x, "bytes");
        po[i].current =
            json_object_has_member(x, "current") && json_object_get_boolean_member(x, "current");
        po[i].status = status_from_name(member_string(x, "status"));
    }
    ev.outputs = po;
    ev.output = ev.n_outputs ? po[0].path : NULL;
    if (ev.source)
        cli_print_event(&cfg->view, &ev, json);
    g_free(po);
    g_ptr_array_free(owned, TRUE);
    g_object_unref(p);
}

static int did_report(const engine_run *er, uint64_t seq)
{
    return seq < er->done_below || seq_has(er->done, seq);
}

/* seq is reported; the run's watermark moves past every seq reported by now, each mixed
 * into the digest with the identity it was first reported with. */
static void mark_done(engine_run *er, uint64_t seq, uint64_t dev, uint64_t ino)
{
    if (seq < er->done_below)
        return;
    seq_put(er->done, seq, dev, ino);
    for (;;) {
        const ident *id = seq_get(er->done, er->done_below);
        int mine = id != NULL;
        if (!id)
            id = seq_get(er->quiet, er->done_below);
        if (!id)
            id = seq_get(er->skip, er->done_below);
        if (!id)
            break;
        er->digest = pm_journal_mix(er->digest, er->done_below, id->dev, id->ino);
        if (mine)
            seq_remove(er->done, er->done_below);
        er->done_below++;
    }
}

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
        if (!(seq < er->quiet_below || seq_has(er->quiet, seq)))
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
        int quiet = seq && (seq < er->quiet_below || seq_has(er->quiet, seq));
        if (seq && !quiet)
            mark_done(er, seq, dev, ino);
        if (quiet)
            return; /* reported by an earlier engine: replayed for the manifest only */
        show_event(cfg, type, status, line + at);
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

/* After the user's first SIGINT/SIGTERM the engine drains: files in flight may finish. One
 * that is still working this long after (a hung decoder, a huge encode) is abandoned: the
 * engine is killed, and a short engine sweeps its temps. */
#define DRAIN_GRACE 10.0

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
static void run_engine(const sup_config *cfg, engine_run *er, int sigfd, int *user_signal)
{
    er->flight = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, free_inflight);
    er->done = seq_map();
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
    double drain_deadline = *user_signal ? now() + DRAIN_GRACE : 0;
    while (live > 0) {
        /* the next deadline among the sources in flight */
        int wait_ms = -1;
        double t = now();
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
                    drain_deadline = now() + DRAIN_GRACE;
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
                take_line(cfg, er, l->buf->str, now(), l, who[i]);
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
            take_line(cfg, er, line, now(), NULL, 0);
    }
    sum_up_engines(er, ln, n);
    g_free(fds);
    g_free(who);
    g_free(ln);
}

static void report_condemned(const sup_config *cfg, uint64_t seq, const char *path, int status,
                             const char *why)
{
    pm_event ev = {0};
    ev.type = PM_EVENT_FAILED;
    ev.source = path;
    ev.status = status;
    ev.message = why;
    ev.seq = seq;
    cli_print_event(&cfg->view, &ev, NULL);
}

static void add_summary(pm_summary *to, const pm_summary *s)
{
    to->processed += s->processed;
    to->outputs += s->outputs;
    to->up_to_date += s->up_to_date;
    to->skipped += s->skipped;
    to->failed += s->failed;
    to->scan_errors += s->scan_errors;
    to->passed_over += s->passed_over;
    to->bytes_in += s->bytes_in;
    to->bytes_out += s->bytes_out;
    to->pruned += s->pruned;
    to->temps_swept += s->temps_swept;
    if (s->jobs > to->jobs)
        to->jobs = s->jobs;
}

static void engine_run_free(engine_run *er)
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

static char *death_text(int status)
{
    if (WIFSIGNALED(status))
        return g_strdup_printf("killed by SIG%s", sigabbrev_np(WTERMSIG(status))
                                                      ? sigabbrev_np(WTERMSIG(status))
                                                      : "a signal");
    return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
}

/* The files an interrupted engine was still working on when it was killed: named, not
 * counted (the run was interrupted; they are done again next time). */
static void abandon(const sup_config *cfg, const engine_run *er, uint64_t quiet_below,
                    GHashTable *quiet)
{
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, er->flight);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        uint64_t seq = (uint64_t) * (gint64 *)k;
        if (seq < quiet_below || seq_has(quiet, seq))
            continue;
        char *why = er->abandoned ? g_strdup_printf("still working %g s after the interrupt; "
                                                    "abandoned",
                                                    DRAIN_GRACE)
                                  : g_strdup("interrupted twice; abandoned");
        report_condemned(cfg, seq, ((inflight *)v)->path, PM_ERR_CANCELLED, why);
        g_free(why);
    }
}

/* Did this engine end without finishing its batch (a crash, or our kill)? */
static int engine_died(const engine_run *er)
{
    return WIFSIGNALED(er->status) ||
           (WIFEXITED(er->status) && !er->got_z && WEXITSTATUS(er->status) != 2 &&
            WEXITSTATUS(er->status) != 3 && !er->signo);
}

int cli_supervise(const sup_config *cfg)
{
    double t0 = now();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sigfd < 0)
        return 3;
    int spooled = spool_lists(cfg, sigfd);
    if (spooled != 0) {
        if (spooled > 128 && !cfg->view.quiet) {
            pm_summary none = {0};
            cli_print_summary(&none, cfg->view.dry_run);
        }
        for (int i = 0; i < n_list_fds; i++)
            close(list_fds[i]);
        close(sigfd);
        return spooled;
    }

    pm_summary total = {0};
    uint64_t quiet_below = 1; /* every seq below has been reported */
    uint64_t digest = 0;      /* pm_journal_mix over the seqs below quiet_below */
    GHashTable *quiet = seq_map(), *condemned = seq_map();
    int tree_changed = 0;
    uint64_t n_condemned = 0;
    int user_signal = 0, exit_code = -1, restarts_without_culprit = 0;
    for (;;) {
        engine_run er = {0};
        er.quiet_below = quiet_below;
        er.digest = digest;
        er.quiet = quiet;
        er.skip = condemned;
        er.lanes = cfg->lanes;
        run_engine(cfg, &er, sigfd, &user_signal);
        add_summary(&total, &er.sum);
        tree_changed |= er.tree_changed;
        /* everything this engine reported is replayed quietly next time */
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, er.done);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (!seq_has(quiet, (uint64_t) * (gint64 *)k))
                seq_put(quiet, (uint64_t) * (gint64 *)k, ((ident *)v)->dev, ((ident *)v)->ino);
        for (; quiet_below < er.done_below; quiet_below++)
            seq_remove(quiet, quiet_below);
        digest = er.digest;
        for (;;) {
            const ident *id = seq_get(quiet, quiet_below);
            if (!id)
                id = seq_get(condemned, quiet_below);
            if (!id)
                break;
            digest = pm_journal_mix(digest, quiet_below, id->dev, id->ino);
            seq_remove(quiet, quiet_below);
            quiet_below++;
        }
        if (er.abandoned || (user_signal && !er.got_z)) {
            /* killed after the grace, or left at once on a second signal: name what was in
             * flight, and sweep the temps it left */
            abandon(cfg, &er, quiet_below, quiet);
            engine_run sweep = {0};
            sweep.sweep_only = 1;
            sweep.quiet_below = UINT64_MAX;
            run_engine(cfg, &sweep, sigfd, &user_signal);
            total.temps_swept += sweep.sum.temps_swept;
            engine_run_free(&sweep);
        }
        if (user_signal || !engine_died(&er)) {
            if (!user_signal && WIFEXITED(er.status) && WEXITSTATUS(er.status) >= 2)
                exit_code = WEXITSTATUS(er.status); /* usage or fatal: as the engine said */
            engine_run_free(&er);
            break;
        }
        /* The engine died. A timeout names its file; a crash names the only file in flight,
         * or each suspect is tried alone. Files merely in flight beside a timed-out one are
         * innocent: the next engine does them again. */
        char *death = death_text(er.status);
        int culprits = 0;
        GHashTableIter fi;
        gpointer fk, fv;
        g_hash_table_iter_init(&fi, er.flight);
        int n_flight = (int)g_hash_table_size(er.flight);
        while (g_hash_table_iter_next(&fi, &fk, &fv)) {
            uint64_t seq = (uint64_t) * (gint64 *)fk;
            inflight *f = fv;
            int guilty = 0, status = PM_ERR_CRASHED;
            char *why = NULL;
            if (seq < quiet_below || seq_has(quiet, seq)) {
                /* shown by an earlier engine, only replayed here: not the culprit */
            } else if (er.timed_out) {
                guilty = f->timed_out;
                status = PM_ERR_TIMEOUT;
                why = g_strdup_printf("still working after --timeout=%g s; stopped", cfg->timeout);
            } else if (n_flight == 1) {
                guilty = 1;
                why = g_strdup_printf("the decoding process was %s", death);
            } else {
                /* several suspects: this one alone, in its own engine */
                engine_run alone = {0};
                alone.only = seq;
                alone.quiet_below = quiet_below;
                alone.digest = digest;
                alone.quiet = quiet;
                alone.skip = condemned;
                run_engine(cfg, &alone, sigfd, &user_signal);
                add_summary(&total, &alone.sum);
                tree_changed |= alone.tree_changed;
                if (engine_died(&alone) && !user_signal) {
                    guilty = 1;
                    status = alone.timed_out ? PM_ERR_TIMEOUT : PM_ERR_CRASHED;
                    char *d = death_text(alone.status);
                    why = alone.timed_out
                              ? g_strdup_printf("still working after --timeout=%g s; stopped",
                                                cfg->timeout)
                              : g_strdup_printf("the decoding process was %s (alone)", d);
                    g_free(d);
                } else if (did_report(&alone, seq)) {
                    seq_put(quiet, seq, f->dev, f->ino); /* reported by its own engine */
                }
                engine_run_free(&alone);
            }
            if (guilty) {
                report_condemned(cfg, seq, f->path, status, why);
                seq_put(condemned, seq, f->dev, f->ino);
                n_condemned++;
                culprits++;
            }
            g_free(why);
        }
        g_free(death);
        engine_run_free(&er);
        if (user_signal)
            break;
        /* A death outside any file (or one no file reproduces) may happen once more; then
         * give up rather than loop. */
        if (culprits == 0 && ++restarts_without_culprit > 1) {
            fputs("pixmill: the engine keeps dying outside any one file; stopping\n", stderr);
            exit_code = 3;
            break;
        }
    }
    total.failed += n_condemned;
    if (tree_changed) /* counts may be off: never an exit 0 on them */
        fputs("pixmill: the inputs changed while the run was restarted after a crash: some files "
              "may be shown twice or not at all; run again to be sure\n",
              stderr);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    total.wall_seconds = now() - t0;
    total.cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (exit_code != 2 && (!cfg->view.quiet || user_signal))
        cli_print_summary(&total, cfg->view.dry_run);
    g_hash_table_destroy(quiet);
    g_hash_table_destroy(condemned);
    for (int i = 0; i < n_list_fds; i++)
        close(list_fds[i]);
    close(sigfd);
    if (user_signal)
        return 128 + user_signal;
    if (exit_code >= 0)
        return exit_code;
    return (total.failed + total.scan_errors || tree_changed) ? 1 : 0;
}
