/* The public entry point and the run's wiring: one scanner thread (feed.c) feeds a bounded job
 * queue (or the lanes), N workers process (process.c), and the caller's thread is the
 * reporter: it publishes each job's outputs, serialises events, keeps the summary and calls
 * back, then prunes and writes the manifest. A wait group counts jobs from before each push
 * until its event is posted; the summary waits on it. The output root is set up by outroot.c,
 * the variants resolved by variants.c. */
#define _GNU_SOURCE
#include "batch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int pm_batch_create(pm_batch **out, const pm_options *opts)
{
    if (!out || pm_options_check(opts, NULL, 0) != PM_OK)
        return PM_ERR_USAGE;
    pm_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return PM_ERR_NOMEM;
    b->opts = *opts;
    if (pm__variants_resolve(opts, b->variants, &b->n_variants, NULL, 0) != PM_OK) {
        free(b);
        return PM_ERR_USAGE;
    }
    b->output_dir = g_strdup(opts->output_dir);
    size_t n = strlen(b->output_dir);
    while (n > 1 && b->output_dir[n - 1] == '/')
        b->output_dir[--n] = '\0';
    b->opts.output_dir = b->output_dir;
    b->profile_file = g_strdup(opts->profile == PM_PROFILE_FILE ? opts->profile_file : NULL);
    b->opts.profile_file = b->profile_file;
    b->manifest_path = g_strdup(opts->manifest_path);
    b->opts.manifest_path = b->manifest_path;
    /* Strings inside opts are the caller's: only the resolved copies are used from here. */
    b->opts.name_template = NULL;
    b->opts.n_variants = 0;
    memset(b->opts.variants, 0, sizeof(b->opts.variants));
    b->inputs = g_array_new(FALSE, TRUE, sizeof(input));
    pthread_mutex_init(&b->journal_mu, NULL); /* cannot fail for a default mutex on Linux */
    *out = b;
    return PM_OK;
}

int pm_batch_skip_file(pm_batch *batch, uint64_t dev, uint64_t ino)
{
    if (!batch || batch->ran || (dev == 0 && ino == 0))
        return PM_ERR_USAGE;
    if (!batch->skip_files)
        batch->skip_files =
            g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, NULL);
    g_hash_table_add(batch->skip_files, pm__identity_key(dev, ino));
    return PM_OK;
}

int pm_batch_check_replay(pm_batch *batch, uint64_t below, uint64_t digest)
{
    if (!batch || batch->ran)
        return PM_ERR_USAGE;
    batch->check_below = below;
    batch->check_digest = digest;
    return PM_OK;
}

int pm_batch_add_input(pm_batch *batch, const char *path)
{
    if (!batch || !path || !*path || batch->ran)
        return PM_ERR_USAGE;
    input in = {g_strdup(path), -1, 0, 0, 0};
    g_array_append_val(batch->inputs, in);
    return PM_OK;
}

int pm_batch_add_file_list(pm_batch *batch, int fd, char delim)
{
    if (!batch || fd < 0 || batch->ran)
        return PM_ERR_USAGE;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return PM_ERR_IO;
    input in = {NULL, copy, delim, 0, 0};
    g_array_append_val(batch->inputs, in);
    for (guint i = 0; i + 1 < batch->inputs->len; i++)
        g_array_index(batch->inputs, input, i).list_after = 1;
    return PM_OK;
}

void pm_batch_cancel(pm_batch *batch)
{
    if (batch)
        pm__batch_cancel(batch);
}

void pm_batch_destroy(pm_batch *batch)
{
    if (!batch)
        return;
    for (guint i = 0; i < batch->inputs->len; i++) {
        input *in = &g_array_index(batch->inputs, input, i);
        g_free(in->path);
        if (in->list_fd >= 0)
            close(in->list_fd);
    }
    g_array_free(batch->inputs, TRUE);
    pm__queue_destroy(batch->events);
    pm__queue_destroy(batch->jobs);
    g_free(batch->output_dir);
    g_free(batch->profile_file);
    g_free(batch->manifest_path);
    if (batch->skip_files)
        g_hash_table_destroy(batch->skip_files);
    pm__variants_free(batch->variants, batch->n_variants);
    if (batch->seen)
        g_hash_table_destroy(batch->seen);
    pthread_mutex_destroy(&batch->journal_mu);
    free(batch);
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
    pm_batch *b = arg;
    char *msg = b->opts.lane_recv_fd >= 0 ? g_malloc(PM__LANE_MSG_MAX) : NULL;
    pm__worker *w = pm__worker_new();
    for (;;) {
        pm__job *job;
        if (msg) {
            if (!(job = pm__lane_take(b->opts.lane_recv_fd, msg, &b->cancel)))
                break;
            pm__waitgroup_add(&b->wg, 1);
        } else {
            void *item;
            if (pm__queue_pop(b->jobs, &item) != PM_OK)
                break;
            job = item;
        }
        if (!__atomic_load_n(&b->cancel, __ATOMIC_ACQUIRE)) {
            if (b->opts.journal_fd >= 0) {
                char *esc = g_strescape(job->source, NULL);
                char *line = g_strdup_printf("S %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                             " %" G_GUINT64_FORMAT " %s\n",
                                             job->seq, job->dev, job->ino, esc);
                pm__batch_journal(b, line);
                g_free(line);
                g_free(esc);
            }
            pm__result *r = g_new0(pm__result, 1);
            pm__process_job(&b->ctx, w, job, r);
            r->ev.seq = job->seq;
            r->dev = job->dev;
            r->ino = job->ino;
            pm__batch_post(b, r);
        }
        pm__job_free(job);
        pm__waitgroup_done(&b->wg);
    }
    pm__worker_free(w);
    g_free(msg);
    pm__vips_thread_shutdown();
    pm__batch_thread_finished(b);
    return NULL;
}

/* ---- setup ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int is_full(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

static int any_output_full(const pm_event *ev)
{
    for (int i = 0; i < ev->n_outputs; i++)
        if (ev->outputs[i].status != PM_OK && is_full(ev->outputs[i].sys_errno))
            return 1;
    return 0;
}

/* Hands an event to the caller, then to the journal (a supervisor shows and counts from
 * there). On the reporter thread only. */
static void deliver_from(pm_batch *b, const pm_event *ev, uint64_t dev, uint64_t ino,
                         pm_event_cb cb, void *ud);

static void deliver(pm_batch *b, const pm_event *ev, pm_event_cb cb, void *ud)
{
    deliver_from(b, ev, 0, 0, cb, ud);
}

/* ... dev, ino: the source as the scan saw it (the journal's E line carries it). */
static void deliver_from(pm_batch *b, const pm_event *ev, uint64_t dev, uint64_t ino,
                         pm_event_cb cb, void *ud)
{
    if (cb && cb(ev, ud) != 0)
        pm_batch_cancel(b);
    if (b->opts.journal_fd < 0)
        return;
    int written = 0;
    for (int i = 0; i < ev->n_outputs; i++)
        written += ev->outputs[i].status == PM_OK && !ev->outputs[i].current &&
                   ev->type != PM_EVENT_PLANNED && ev->type != PM_EVENT_PRUNED;
    char *json = pm_event_to_json(ev);
    char *line =
        g_strdup_printf("E %" G_GUINT64_FORMAT " %d %d %d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                        " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %s\n",
                        ev->seq, (int)ev->type, ev->status, written, ev->bytes_in, ev->bytes_out,
                        dev, ino, json ? json : "{}");
    pm__batch_journal(b, line);
    g_free(line);
    pm_free(json);
}

static void post_fatal_path(pm_batch *b, const char *path, pm_event_cb cb, void *ud, int status,
                            int err)
{
    pm_event ev = {0};
    ev.type = PM_EVENT_SCAN_ERROR;
    ev.source = path;
    ev.status = status;
    ev.sys_errno = err;
    deliver(b, &ev, cb, ud);
}

static void post_fatal(pm_batch *b, pm_event_cb cb, void *ud, int status, int err)
{
    post_fatal_path(b, b->output_dir, cb, ud, status, err);
}

/* The content of --profile FILE goes into every output's digest: a changed profile rebuilds. */
static void hash_profile_file(pm_batch *b)
{
    g_strlcpy(b->profile_hash, "-", sizeof(b->profile_hash));
    if (b->opts.profile != PM_PROFILE_FILE)
        return;
    int fd = open(b->profile_file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && pm__hash_fd(fd, b->profile_hash) != 0)
        g_strlcpy(b->profile_hash, "-", sizeof(b->profile_hash));
    if (fd >= 0)
        close(fd);
}

typedef struct prune_ctx {
    pm_batch *b;
    pm_event_cb cb;
    void *user_data;
    pm_summary *sum;
} prune_ctx;

static void on_pruned(const pm__state *st, const int *removed, int source_gone, void *ud)
{
    prune_ctx *pc = ud;
    pm_output *outs = g_new0(pm_output, st->n_outs ? st->n_outs : 1);
    int n = 0;
    for (int i = 0; i < st->n_outs; i++) {
        if (!removed[i])
            continue;
        pm_output *o = &outs[n++];
        o->name = st->outs[i].name;
        o->path = g_strdup_printf("%s/%s", pc->b->output_dir, st->outs[i].name);
        o->variant = st->outs[i].variant;
        o->format = st->outs[i].format;
        o->width = st->outs[i].width;
        o->height = st->outs[i].height;
        o->bytes = st->outs[i].bytes;
    }
    pc->sum->pruned += (uint64_t)n;
    if (!n && !source_gone) {
        g_free(outs); /* left-over entries whose files are no longer pixmill's: dropped quietly */
        return;
    }
    pm_event ev = {0};
    ev.type = PM_EVENT_PRUNED;
    ev.source = st->source;
    ev.message = source_gone ? "source gone" : "no longer made from";
    ev.n_outputs = n;
    ev.outputs = outs;
    ev.output = n ? outs[0].path : NULL;
    deliver(pc->b, &ev, pc->cb, pc->user_data);
    for (int i = 0; i < n; i++)
        g_free((char *)outs[i].path);
    g_free(outs);
}

/* Each worker holds about ten descriptors at once (source, libvips' dup, output folder, temp
 * and its dup, record folder, record temp, header reads) besides what the process already has
 * open: with a low RLIMIT_NOFILE (ulimit -n 32) eight workers failed 194 files of 200 with
 * EMFILE. Fewer workers then, down to one; below that, files fail with "Too many open files". */
static int fd_budget_jobs(int jobs)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return jobs;
    int open_now = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return jobs;
    while (readdir(d))
        open_now++;
    closedir(d);
    long spare = (long)rl.rlim_cur - open_now - 16; /* scanner, queue, manifest, root lock */
    long fit = spare / 10;
    if (fit < 1)
        fit = 1;
    return jobs < fit ? jobs : (int)fit;
}

/* Named inputs none of which exists (a typo, a path not mounted): each is reported as the
 * walk would report it, and nothing is created, not even DIR. Not with a file list. */
static int no_input_exists(pm_batch *b, pm_event_cb on_event, void *user_data, pm_summary *sum)
{
    for (guint i = 0; i < b->inputs->len; i++) {
        const input *in = &g_array_index(b->inputs, input, i);
        struct stat st;
        if (!in->path || lstat(in->path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
            return 0;
    }
    for (guint i = 0; i < b->inputs->len; i++) {
        const input *in = &g_array_index(b->inputs, input, i);
        pm_event ev = {0};
        ev.type = PM_EVENT_SCAN_ERROR;
        ev.source = in->path;
        ev.status = PM_ERR_SCAN;
        ev.sys_errno = lstat(in->path, &(struct stat){0}) == 0 ? 0 : errno;
        deliver(b, &ev, on_event, user_data);
        sum->scan_errors++;
    }
    return b->inputs->len > 0;
}

int pm_batch_run(pm_batch *b, pm_event_cb on_event, void *user_data, pm_summary *summary)
{
    if (!b || b->ran)
        return PM_ERR_USAGE;
    b->ran = 1;
    pm_summary sum = {0};
    double wall0 = wall_now(), cpu0 = cpu_now();
    int jobs = fd_budget_jobs(b->opts.jobs ? b->opts.jobs : pm_default_jobs());
    sum.jobs = jobs;
    int err = 0;
    int rootfd = -1;
    pm__outroot out = {.fd = -1, .root = {-1, ""}};
    pm__manifest *manifest = NULL;
    pm__manifest_spot spot = {0};
    const char *why = NULL;
    char *manifest_rel = NULL;
    /* The manifest replaces nothing but an earlier manifest: refused before anything is
     * touched (a usage error: the command names the wrong file). */
    int rc = b->manifest_path ? pm__manifest_check(b->manifest_path, &spot, &why, &err) : PM_OK;
    if (rc != PM_OK) {
        pm_event ev = {0};
        ev.type = PM_EVENT_SCAN_ERROR;
        ev.source = b->manifest_path;
        ev.status = PM_ERR_MANIFEST;
        ev.sys_errno = err;
        char *text = g_strdup_printf("--manifest refused: %s", why);
        ev.message = text;
        deliver(b, &ev, on_event, user_data);
        g_free(text);
        rc = PM_ERR_USAGE;
        goto done;
    }
    if (no_input_exists(b, on_event, user_data, &sum))
        goto done;
    char *what = NULL;
    rc = pm__outroot_open(b->output_dir, b->opts.dry_run, &out, &err, &what);
    if (rc != PM_OK) {
        post_fatal_path(b, what ? what : b->output_dir, on_event, user_data, rc, err);
        g_free(what);
        goto done;
    }
    rootfd = out.fd;
    sum.temps_swept = (uint64_t)out.swept;
    hash_profile_file(b);
    b->ctx.opts = &b->opts;
    b->ctx.variants = b->variants;
    b->ctx.n_variants = b->n_variants;
    b->ctx.profile_hash = b->profile_hash;
    b->ctx.out_rootfd = rootfd;
    b->ctx.out_root = b->output_dir;
    b->ctx.overlap = out.real && pm__outroot_overlaps_inputs(b->inputs, out.real);
    manifest_rel =
        b->manifest_path && out.real ? pm__outroot_below(b->manifest_path, out.real) : NULL;
    b->ctx.manifest_rel = manifest_rel;
    b->ctx.cancel = &b->cancel;
    pm__batch_note_places(b);
    b->ctx.gate = NULL;
    b->ctx.lanes = b->opts.dry_run ? 0 : b->opts.lanes;
    if (b->opts.decode_budget > 0 && jobs > 1) {
        memset(&b->gate, 0, sizeof(b->gate));
        pthread_mutex_init(&b->gate.mu, NULL);
        pthread_cond_init(&b->gate.cv, NULL);
        b->gate.budget = b->opts.decode_budget / (uint64_t)(b->ctx.lanes > 1 ? b->ctx.lanes : 1);
        b->ctx.gate = &b->gate;
    }
    b->scan_cfg.include_hidden = b->opts.include_hidden;
    b->scan_cfg.have_exclude = rootfd >= 0;
    b->scan_cfg.exclude_dev = out.st.st_dev;
    b->scan_cfg.exclude_ino = out.st.st_ino;
    b->scan_cfg.cancel = &b->cancel;
    if (b->manifest_path && !b->opts.dry_run)
        manifest = pm__manifest_new(b->output_dir);

    size_t capacity = b->opts.queue_capacity ? (size_t)b->opts.queue_capacity
                                             : (size_t)(jobs * 4 > 16 ? jobs * 4 : 16);
    pm__queue *jobq = NULL;
    rc = pm__queue_create(&jobq, capacity);
    __atomic_store_n(&b->jobs, jobq, __ATOMIC_RELEASE);
    if (rc == PM_OK)
        rc = pm__queue_create(&b->events, 256);
    if (rc == PM_OK)
        rc = pm__waitgroup_init(&b->wg);
    if (rc != PM_OK || pthread_mutex_init(&b->live_mu, NULL) != 0) {
        rc = rc != PM_OK ? rc : PM_ERR_THREAD;
        post_fatal(b, on_event, user_data, rc, 0);
        goto done;
    }

    /* The scanner first, but not in a lane that takes its jobs from another's scan. */
    int n_producers = b->opts.lane_recv_fd < 0 || b->opts.lane_send_fd >= 0;
    for (int i = 0; i < 2; i++) {
        int fd = i ? b->opts.lane_send_fd : b->opts.lane_recv_fd;
        if (fd >= 0)
            pm__lane_timeouts(fd);
    }
    int n_threads = n_producers + jobs;
    pthread_t *threads = g_new0(pthread_t, (gsize)n_threads);
    int started = 0;
    b->live_threads = n_threads;
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&threads[i], NULL,
                           i < n_producers ? pm__batch_scanner_main : worker_main, b) != 0) {
            /* Those that never started will not finish: account for them, then stop. */
            for (int k = i; k < n_threads; k++)
                pm__batch_thread_finished(b);
            if (i < n_producers)
                pm__queue_close(b->jobs);
            pm_batch_cancel(b);
            rc = PM_ERR_THREAD;
            break;
        }
        started++;
    }

    /* This thread is the reporter: it alone touches the summary and calls back. */
    void *item;
    int full_in_a_row = 0, disk_full = 0;
    while (pm__queue_pop(b->events, &item) == PM_OK) {
        pm__result *r = item;
        pm__process_finish(&b->ctx, r);
        for (int i = 0; i < r->ev.n_outputs; i++)
            sum.outputs += r->outputs[i].status == PM_OK && !r->outputs[i].current &&
                           r->ev.type != PM_EVENT_PLANNED;
        sum.bytes_out += r->ev.bytes_out;
        switch (r->ev.type) {
        case PM_EVENT_DONE:
            sum.processed++;
            sum.bytes_in += r->ev.bytes_in;
            break;
        case PM_EVENT_FAILED:
            sum.failed++;
            break;
        case PM_EVENT_SKIPPED:
            if (r->ev.status == PM_OK)
                sum.up_to_date++;
            else
                sum.skipped++;
            break;
        case PM_EVENT_PLANNED:
            sum.processed++;
            break;
        case PM_EVENT_SCAN_ERROR:
            sum.scan_errors++;
            break;
        case PM_EVENT_PASSED_OVER:
            sum.passed_over++;
            break;
        case PM_EVENT_PRUNED:
            break;
        }
        if (manifest)
            pm__manifest_add(manifest, &r->ev);
        /* A full disk fails every file after it: after a run of them, stop and say so. */
        if (r->ev.type == PM_EVENT_FAILED && (is_full(r->ev.sys_errno) || any_output_full(&r->ev)))
            full_in_a_row++;
        else if (r->ev.type == PM_EVENT_DONE)
            full_in_a_row = 0;
        if (!disk_full && full_in_a_row >= (jobs + 2 > 4 ? jobs + 2 : 4)) {
            disk_full = 1;
            pm_batch_cancel(b);
        }
        deliver_from(b, &r->ev, r->dev, r->ino, on_event, user_data);
        pm__result_free(r);
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    g_free(threads);
    pm__waitgroup_wait(&b->wg); /* every job handed out has been accounted for */

    pm__waitgroup_destroy(&b->wg);
    pthread_mutex_destroy(&b->live_mu);
    if (b->ctx.gate) {
        pthread_cond_destroy(&b->gate.cv);
        pthread_mutex_destroy(&b->gate.mu);
        b->ctx.gate = NULL;
    }
    /* Prune once every source has been seen: a record whose source is gone takes its outputs
     * with it. Not after a cancel or a fatal error: the run did not see everything. */
    if (rc == PM_OK && b->opts.prune && rootfd >= 0 &&
        !__atomic_load_n(&b->cancel, __ATOMIC_ACQUIRE)) {
        prune_ctx pc = {b, on_event, user_data, &sum};
        pm__state_prune(rootfd, b->opts.dry_run, &b->cancel, on_pruned, &pc);
    }
    pm__outroot_close(&out);
    int list_err = __atomic_load_n(&b->list_failed, __ATOMIC_ACQUIRE);
    if (rc == PM_OK && list_err) {
        rc = PM_ERR_SCAN;
        post_fatal_path(b, "(file list)", on_event, user_data, rc, list_err);
    } else if (rc == PM_OK && disk_full) {
        rc = PM_ERR_DISK_FULL;
        post_fatal(b, on_event, user_data, rc, ENOSPC);
    } else if (rc == PM_OK && __atomic_load_n(&b->cancel, __ATOMIC_ACQUIRE)) {
        rc = PM_ERR_CANCELLED;
    }
    if (manifest && rc == PM_OK) {
        rc = pm__manifest_write(manifest, b->manifest_path, &spot, &err);
        if (rc != PM_OK)
            post_fatal_path(b, b->manifest_path, on_event, user_data, rc, err);
    }
done:
    pm__outroot_close(&out);
    g_free(manifest_rel);
    b->ctx.manifest_rel = NULL;
    pm__batch_forget_places(b);
    pm__manifest_free(manifest);
    sum.wall_seconds = wall_now() - wall0;
    sum.cpu_seconds = cpu_now() - cpu0;
    if (summary)
        *summary = sum;
    return rc;
}
