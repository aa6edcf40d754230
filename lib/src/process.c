/* One job, start to finish: the story of a source told by calling the rooms of job.h in
 * order (open and header, plan, decode once, encode each output), then, on the reporter's
 * thread, the publishing half: each temp fsynced and renamed into place, the build record
 * written, the event completed. The only room that decides when a job stops. */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *base_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

/* The event: every output but aliases, with the outcome of the source. */
static void collect(const pm__process_ctx *ctx, pm__job_state *s, pm__result *r)
{
    r->outputs = g_new0(pm_output, s->n ? s->n : 1);
    int n = 0, failed = -1, all_current = s->n > 0;
    for (int i = 0; i < s->n; i++) {
        pm__planned *v = &s->v[i];
        if (v->alias)
            continue;
        pm_output *out = &r->outputs[n];
        *out = v->out;
        out->name = g_strdup(v->name ? v->name : "");
        out->path = g_strdup_printf("%s/%s", ctx->out_root, out->name);
        out->variant = g_strdup(ctx->variants[v->vi].name);
        out->current = v->current;
        v->out.message = NULL; /* moved */
        if (r->ev.type == PM_EVENT_FAILED && out->status == PM_OK && !v->current) {
            out->status = r->ev.status; /* the source failed: nothing was written */
            out->sys_errno = r->ev.sys_errno;
        }
        if (!v->current)
            r->ev.bytes_out += out->bytes;
        all_current &= v->current;
        if (out->status != PM_OK && failed < 0)
            failed = n;
        n++;
    }
    r->ev.n_outputs = n;
    if (n > 0) {
        r->ev.width = r->outputs[0].width;
        r->ev.height = r->outputs[0].height;
    }
    if (r->ev.type == PM_EVENT_FAILED)
        return;
    if (failed >= 0) {
        r->ev.type = PM_EVENT_FAILED;
        r->ev.status = r->outputs[failed].status;
        r->ev.sys_errno = r->outputs[failed].sys_errno;
        r->message = g_strdup_printf("%s%s%s", r->outputs[failed].path,
                                     r->outputs[failed].message ? ": " : "",
                                     r->outputs[failed].message ? r->outputs[failed].message : "");
    } else if (all_current) {
        r->ev.type = PM_EVENT_SKIPPED; /* status PM_OK: up to date */
        r->ev.status = PM_OK;
    } else {
        r->ev.type = ctx->opts->dry_run ? PM_EVENT_PLANNED : PM_EVENT_DONE;
        r->ev.status = PM_OK;
    }
}

/* Writes this source's record: what it is (the file read, by its physical path, below the
 * folder the scan started from), and every output that holds what pixmill wrote (made now,
 * current, or made earlier for an option set no longer asked for). */
static int save_state(const pm__process_ctx *ctx, pm__job_state *s, const struct stat *st, int *err)
{
    pm__state ns = {0};
    ns.source = g_strdup(s->src);
    ns.root = g_strndup(s->src, s->root_len);
    ns.root_dev = s->root_dev;
    ns.size = (uint64_t)st->st_size;
    ns.mtime_ns = pm__mtime_ns(st);
    ns.ctime_ns = pm__ctime_ns(st);
    ns.ino = (uint64_t)st->st_ino;
    g_strlcpy(ns.hash, s->hash, sizeof(ns.hash));
    ns.width = s->upright_w;
    ns.height = s->upright_h;
    ns.pages = s->pages;
    ns.same = s->same;
    ns.has_profile = s->has_profile;
    ns.dc_source = s->dc_source;
    ns.outs = g_new0(pm__state_out, (gsize)s->n + (gsize)s->old.n_outs + 1);
    for (int i = 0; i < s->n; i++) {
        pm__planned *v = &s->v[i];
        if (v->alias || v->out.status != PM_OK || !v->name)
            continue;
        pm__state_out *o = &ns.outs[ns.n_outs++];
        *o = v->rec;
        o->left = 0; /* made now, or current again (a format dropped and given back) */
        o->name = v->name;
        o->variant = ctx->variants[v->vi].name;
        g_strlcpy(o->digest, v->digest, sizeof(o->digest));
        o->format = v->format;
        o->width = v->out.width;
        o->height = v->out.height;
    }
    int made = ns.n_outs;
    for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
        pm__state_out *rec = &s->old.outs[i];
        int taken = 0, refreshed;
        for (int k = 0; k < made && !taken; k++)
            taken = strcmp(ns.outs[k].name, rec->name) == 0;
        if (!taken && pm__state_output_matches(ctx->out_rootfd, rec, 0, &refreshed, NULL)) {
            ns.outs[ns.n_outs] = *rec;
            ns.outs[ns.n_outs++].left = 1; /* ours, not made now: --prune removes it */
        }
    }
    int rc = pm__state_save(ctx->out_rootfd, s->state_dir, s->state_name, &ns, err);
    g_free(ns.outs); /* the strings are borrowed */
    g_free(ns.source);
    g_free(ns.root);
    return rc;
}

/* A source that failed made none of its outputs: under --prune, what its record holds is
 * left over, as a clean run would have none of it. The record is kept as it was (it does not
 * take the failed source as its new content), with every output marked left for the prune. */
static void leave_all(const pm__process_ctx *ctx, pm__job_state *s)
{
    int any = 0, err = 0;
    for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
        any |= !s->old.outs[i].left;
        s->old.outs[i].left = 1;
    }
    if (any)
        pm__state_save(ctx->out_rootfd, s->state_dir, s->state_name, &s->old, &err);
}

#ifdef PM_TEST_HOOKS
/* Test builds only (cmake -DPM_TEST_HOOKS=ON, the default with tests): a source whose path
 * contains $PIXMILL_TEST_CRASH dies as a codec's failed assertion would (SIGABRT: the
 * sanitizers catch SIGSEGV and exit instead, SIGABRT they let through); one containing
 * $PIXMILL_TEST_HANG never finishes. They prove the supervisor's crash and timeout isolation. */
static void test_hooks(const char *source)
{
    /* $PIXMILL_TEST_PAUSE: a source whose path contains it waits between the scan and its
     * open (before the crash and hang hooks): the worker creates $PIXMILL_TEST_PAUSE_DIR/paused,
     * then waits (at most 60 s) for $PIXMILL_TEST_PAUSE_DIR/go, so that a test can change the
     * tree at that moment. */
    const char *pause = getenv("PIXMILL_TEST_PAUSE");   // NOLINT(concurrency-mt-unsafe)
    const char *dir = getenv("PIXMILL_TEST_PAUSE_DIR"); // NOLINT(concurrency-mt-unsafe)
    if (pause && *pause && dir && *dir && strstr(source, pause)) {
        char *paused = g_strdup_printf("%s/paused", dir), *go = g_strdup_printf("%s/go", dir);
        int fd = open(paused, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        for (int i = 0; i < 6000 && access(go, F_OK) != 0; i++)
            g_usleep(10000);
        g_free(paused);
        g_free(go);
    }
    const char *crash = getenv("PIXMILL_TEST_CRASH"); // NOLINT(concurrency-mt-unsafe)
    const char *hang = getenv("PIXMILL_TEST_HANG");   // NOLINT(concurrency-mt-unsafe)
    if (crash && *crash && strstr(source, crash))
        abort();
    while (hang && *hang && strstr(source, hang))
        sleep(60);
}
#endif

/* fsync the temp (reopened by name: it must still be the file written), then rename it into
 * place. Where the output folder overlaps the inputs, only a file this source made before may
 * be replaced. */
static void publish_variant(const pm__process_ctx *ctx, pm__job_state *s, pm__planned *v)
{
    int err = 0, rc = pm__job_output_dir(ctx, s, v->name, &err);
    if (rc != PM_OK) {
        pm__output_fail(v, rc, err, g_strdup("cannot open the output folder"));
        return;
    }
    v->temp.dirfd = s->dirfd;
    v->temp.fd = openat(s->dirfd, v->temp.name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (v->temp.fd < 0) {
        int e = errno;
        pm__output_fail(v, PM_ERR_WRITE, e,
                        g_strdup(e == ENOENT
                                     ? "the temporary file was removed before it was published"
                                     : "cannot reopen the temporary file to publish it"));
        if (e == ENOENT)
            v->temp.name[0] = '\0';
        return; /* otherwise still ours: removed with the job */
    }
    struct stat tst;
    if (fstat(v->temp.fd, &tst) != 0 || (uint64_t)tst.st_ino != v->rec.ino ||
        (uint64_t)tst.st_size != v->rec.bytes) {
        pm__output_fail(v, PM_ERR_WRITE, 0,
                        g_strdup("the temporary file was changed before it was published"));
        close(v->temp.fd);
        v->temp.fd = -1;
        v->temp.name[0] = '\0'; /* not ours to remove any more */
        return;
    }
    /* Where outputs overlap inputs, nothing is replaced but the very file this source made
     * before (checked at plan time, replaced only if it is still that file). */
    if (ctx->overlap && v->ours)
        rc = pm__publish_commit_over(&v->temp, base_name(v->name), v->ours_ino, 0, &err);
    else
        rc = pm__publish_commit(&v->temp, base_name(v->name),
                                ctx->overlap ? PM__PUBLISH_NOREPLACE : 0, &err);
    if (rc != PM_OK)
        pm__output_fail(v, rc, err, NULL);
    v->temp.name[0] = '\0';
}

/* The worker's half: everything up to the outputs written to temps (decode, encode). What is
 * left, publishing (fsync, rename), the record and the event, waits in r->tail for
 * pm__process_finish, which the reporter runs: a worker never waits for the disk. */
void pm__process_job(const pm__process_ctx *ctx, pm__worker *w, const pm__job *job, pm__result *r)
{
#ifdef PM_TEST_HOOKS
    test_hooks(job->source);
#endif
    const pm_options *o = ctx->opts;
    double t0 = now_seconds();
    memset(r, 0, sizeof(*r));
    r->source = g_strdup(job->source);
    r->ev.type = PM_EVENT_DONE;
    pm__job_state *s = g_new0(pm__job_state, 1);
    s->fd = -1;
    s->srcdir = -1;
    s->dirfd = -1;
    s->same = PM_FORMAT_PNG;
    s->path = r->source;
    s->ctx = ctx;
    s->w = w;
    s->src = strcmp(job->dir, "/") == 0 ? g_strconcat("/", job->name, NULL)
                                        : g_strconcat(job->dir, "/", job->name, NULL);
    s->root_len = (size_t)job->root_len;
    s->root_dev = job->root_dev;
    r->tail = s;
    struct stat *st = &s->st;
    int have_header = 0, refreshed = 0;

    if (pm__source_open(o, job, s, r, st) != 0)
        goto out;
    pm__state_location(job->out_rel, job->source, &s->state_dir, &s->state_name);
    s->have_old = pm__state_load(ctx->out_rootfd, s->state_dir, s->state_name, &s->old) == 0;
    int have_hash = 0;
    if (!pm__plan_source_is_recorded(s, st, r, &have_hash)) {
        if (pm__source_read_header(ctx, s, r) != 0)
            goto out;
        have_header = 1;
        if (!have_hash && pm__hash_fd(s->fd, s->hash) != 0) {
            pm__job_fail(r, PM_ERR_IO, errno, g_strdup("cannot read the whole file"));
            goto out;
        }
        s->need_save = 1;
    }
    pm__plan_outputs(ctx, job, s);
    pm__plan_refuse_clashes(ctx, job, s, st);
    close(s->srcdir); /* the file is open: its folder is not needed again */
    s->srcdir = -1;
    int todo = pm__plan_mark_current(ctx, s, &refreshed);
    s->need_save |= refreshed || pm__plan_drops_outputs(s);
    if (o->dry_run)
        goto out;
    if (todo > 0) {
        if (!have_header && pm__source_read_header(ctx, s, r) != 0)
            goto out;
        if (pm__plan_refuse_existing(ctx, s, st) > 0 && pm__decode_once(ctx, s, r) == 0) {
            for (int k = 0; k < s->n; k++) {
                pm__planned *v = &s->v[k];
                if (v->current || v->alias || v->out.status != PM_OK)
                    continue;
                VipsImage *img = pm__encode_image_for(ctx, s, v);
                if (!img) {
                    pm__output_fail(v, PM_ERR_ENCODE, 0, pm__vips_error());
                    continue;
                }
                pm__encode_write(ctx, s, v, img);
                g_object_unref(img);
                s->need_save |= v->out.status == PM_OK;
            }
        }
    }
out:
    pm__job_state_drop_work(s);
    s->seconds = now_seconds() - t0;
}

void pm__process_finish(const pm__process_ctx *ctx, pm__result *r)
{
    pm__job_state *s = r->tail;
    if (!s)
        return;
    double t0 = now_seconds();
    int err = 0;
    for (int k = 0; k < s->n; k++)
        if (s->v[k].temp.name[0] && s->v[k].out.status == PM_OK && r->ev.type != PM_EVENT_FAILED)
            publish_variant(ctx, s, &s->v[k]);
    /* The first failure is the one to tell: an output's before the record's. A source none
     * of whose outputs was made or is current gets no record (one of old stays as it was):
     * a source that fails is never recorded. */
    int output_failed = 0, held = 0;
    for (int k = 0; k < s->n; k++) {
        output_failed |= !s->v[k].alias && s->v[k].out.status != PM_OK;
        held |= !s->v[k].alias && s->v[k].out.status == PM_OK;
    }
    if (s->need_save && held && !ctx->opts->dry_run && r->ev.type != PM_EVENT_FAILED &&
        save_state(ctx, s, &s->st, &err) != PM_OK && !output_failed)
        pm__job_fail(r, PM_ERR_STATE, err,
                     g_strdup("the output is made but will be rebuilt next time"));
    else if ((!held || r->ev.type == PM_EVENT_FAILED) && ctx->opts->prune && !ctx->opts->dry_run)
        leave_all(ctx, s);
    collect(ctx, s, r);
    r->ev.seconds = s->seconds + (now_seconds() - t0);
    pm__job_state_release(s);
    g_free(s);
    r->tail = NULL;
    pm__result_link(r);
}
