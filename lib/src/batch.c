/* The public entry point: one scanner thread feeds a bounded job queue, N workers process,
 * and the caller's thread serialises events, keeps the summary and calls back. A wait group
 * counts jobs from before each push until its event is posted; the summary waits on it. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct input {
    char *path; /* NULL for a file list */
    int list_fd;
    char delim;
    int same_as;    /* a folder given earlier under another name: its index + 1, else 0 */
    int list_after; /* a file list comes after it: its walked files are remembered */
} input;

struct pm_batch {
    pm_options opts;
    char *output_dir;
    char *profile_file;
    char *manifest_path;
    pm__variant variants[PM_MAX_VARIANTS];
    int n_variants;
    char profile_hash[PM__HASH_HEX];
    uint64_t next_seq;      /* scanner thread only */
    GHashTable *skip_files; /* fixed once run starts: identity keys (identity_key) */
    uint64_t check_below;   /* pm_batch_check_replay: entries below it are checked */
    uint64_t check_digest;
    uint64_t replay_digest; /* scanner thread only: mixed so far */
    GHashTable *seen;       /* scanner thread only (set up before it starts): (dev, ino) ->
                               first path, of named files and files with several links, and of
                               walked files a file list may name again; "" for a named file not
                               met yet */
    guint scan_input;       /* scanner thread only: the input being scanned */
    GArray *places;         /* of pm__place (see pm__process_ctx) */
    pthread_mutex_t journal_mu;
    GArray *inputs; /* of input; fixed once run starts */
    int ran;
    int cancel;      /* atomic */
    int list_failed; /* atomic: a file list could not be read to its end (its errno) */
    pm__queue *jobs;
    pm__queue *events;
    pm__waitgroup wg;
    pthread_mutex_t live_mu;
    int live_threads; /* guarded by live_mu: producers of events still running */
    pm__process_ctx ctx;
    pm__decode_gate gate;
    pm__scan_config scan_cfg;
};

#define WHY(...) (why && why_size ? (void)g_snprintf(why, (gulong)why_size, __VA_ARGS__) : (void)0)

static int check_formats(const pm_format *f, int n, char *why, size_t why_size)
{
    if (n < 1 || n > PM_MAX_FORMATS) {
        WHY("between 1 and %d formats", PM_MAX_FORMATS);
        return PM_ERR_USAGE;
    }
    for (int i = 0; i < n; i++) {
        if ((unsigned)f[i] > PM_FORMAT_LAST) {
            WHY("unknown format");
            return PM_ERR_USAGE;
        }
        for (int k = 0; k < i; k++) {
            if (f[k] == f[i]) {
                WHY("format %s given twice", pm_format_extension(f[i]));
                return PM_ERR_USAGE;
            }
        }
    }
    return PM_OK;
}

static int check_size(const pm_size *z)
{
    int box = !z->percent && !z->area;
    return !(z->width < 0 || z->height < 0 || z->width > PM_SIZE_MAX || z->height > PM_SIZE_MAX ||
             (box && z->width == 0 && z->height == 0) || z->percent < 0 || z->percent > 1000 ||
             (unsigned)z->fit > PM_FIT_LAST || (unsigned)z->enlarge > PM_ENLARGE_ALLOW);
}

void pm__variants_free(pm__variant *v, int n)
{
    for (int i = 0; i < n; i++) {
        g_free(v[i].name);
        g_free(v[i].name_template);
    }
}

int pm__variants_resolve(const pm_options *o, pm__variant *out, int *n_out, char *why,
                         size_t why_size)
{
    int n = o->n_variants > 0 ? o->n_variants : o->n_sizes;
    int max = o->n_variants > 0 ? PM_MAX_VARIANTS : PM_MAX_SIZES;
    *n_out = 0;
    if (n < 1 || n > max) {
        WHY("between 1 and %d sizes", max);
        return PM_ERR_USAGE;
    }
    if (o->name_template && pm__template_check(o->name_template, NULL, why, why_size) != PM_OK)
        return PM_ERR_USAGE;
    if (check_formats(o->formats, o->n_formats, why, why_size) != PM_OK)
        return PM_ERR_USAGE;
    for (int i = 0; i < n; i++) {
        const pm_variant *src = o->n_variants > 0 ? &o->variants[i] : NULL;
        pm__variant *v = &out[i];
        memset(v, 0, sizeof(*v));
        v->size = src ? src->size : o->sizes[i];
        if (!check_size(&v->size)) {
            WHY("invalid size");
            goto fail;
        }
        char label[32];
        pm_size_label(&v->size, label, sizeof(label));
        v->name = g_strdup(src && src->name && *src->name ? src->name : label);
        *n_out = i + 1;
        if (strchr(v->name, '/') || strcmp(v->name, ".") == 0 || strcmp(v->name, "..") == 0) {
            WHY("variant name '%s' cannot be a path", v->name);
            goto fail;
        }
        v->crop = src && src->crop != PM_INHERIT ? (pm_crop)src->crop : o->crop;
        if ((unsigned)v->crop > PM_CROP_LAST) {
            WHY("variant %s: invalid crop", v->name);
            goto fail;
        }
        const pm_format *f = src && src->n_formats ? src->formats : o->formats;
        v->n_formats = src && src->n_formats ? src->n_formats : o->n_formats;
        if (check_formats(f, v->n_formats, why, why_size) != PM_OK)
            goto fail;
        memcpy(v->formats, f, sizeof(pm_format) * (size_t)v->n_formats);
        v->quality = src && src->quality ? src->quality : o->quality;
        if (v->quality < 0 || v->quality > 100) {
            WHY("variant %s: quality must be 1..100", v->name);
            goto fail;
        }
        const char *t = src && src->name_template ? src->name_template : o->name_template;
        v->name_template = g_strdup(t ? t : n == 1 ? "{stem}.{ext}" : "{stem}-{variant}.{ext}");
        if (pm__template_check(v->name_template, NULL, why, why_size) != PM_OK)
            goto fail;
        for (int k = 0; k < i; k++) {
            if (strcmp(out[k].name, v->name) == 0) {
                WHY("two sizes or variants are both named '%s' (such as 320 and 320x)", v->name);
                goto fail;
            }
        }
    }
    /* Two outputs that would always get one name: expand every template with stand-ins that
     * differ wherever outputs can differ (the size's own box for {w} and {h}). */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < out[i].n_formats; j++) {
            for (int k = 0; k <= i; k++) {
                for (int l = 0; l < (k == i ? j : out[k].n_formats); l++) {
                    char *a = NULL, *b = NULL;
                    for (int side = 0; side < 2; side++) {
                        const pm__variant *v = side ? &out[k] : &out[i];
                        int vi = side ? k : i, fi = side ? l : j;
                        char hash[32];
                        g_snprintf(hash, sizeof(hash), "h%d.%d", vi, fi);
                        int w = v->size.percent || v->size.area ? -1000 - vi : v->size.width;
                        int h = v->size.percent || v->size.area ? -1000 - vi : v->size.height;
                        pm__name_vars vars = {
                            "s", pm_format_extension(v->formats[fi]), v->name, "d", hash, w, h};
                        char *name = pm__template_expand(v->name_template, &vars);
                        *(side ? &b : &a) = name;
                    }
                    int clash = a && b && strcmp(a, b) == 0;
                    if (clash)
                        WHY("variants %s (%s) and %s (%s) would write the same name; use "
                            "{variant}, {w}, {ext} or {hash} in --name",
                            out[i].name, pm_format_extension(out[i].formats[j]), out[k].name,
                            pm_format_extension(out[k].formats[l]));
                    g_free(a);
                    g_free(b);
                    if (clash)
                        goto fail;
                }
            }
        }
    }
    return PM_OK;
fail:
    pm__variants_free(out, *n_out);
    *n_out = 0;
    return PM_ERR_USAGE;
}

int pm_options_check(const pm_options *opts, char *why, size_t why_size)
{
    if (!opts || opts->version != PM_OPTIONS_VERSION) {
        WHY("options of another version");
        return PM_ERR_USAGE;
    }
    if (!opts->output_dir || !*opts->output_dir) {
        WHY("no output folder");
        return PM_ERR_USAGE;
    }
    if (opts->quality < 0 || opts->quality > 100 || opts->jobs < 0 || opts->jobs > 1024 ||
        opts->queue_capacity < 0 || opts->queue_capacity > 1000000 || opts->effort < 0 ||
        opts->effort > 10 || (unsigned)opts->subsample > PM_SUBSAMPLE_OFF ||
        (unsigned)opts->fit > PM_FIT_LAST || (unsigned)opts->crop > PM_CROP_LAST ||
        (unsigned)opts->intent > PM_INTENT_ABSOLUTE ||
        (unsigned)opts->fail_on > PM_FAIL_ON_WARNING || opts->n_variants < 0 ||
        opts->n_variants > PM_MAX_VARIANTS) {
        WHY("a value is out of range");
        return PM_ERR_USAGE;
    }
    if ((unsigned)opts->profile > PM_PROFILE_FILE ||
        (opts->profile == PM_PROFILE_FILE && (!opts->profile_file || !*opts->profile_file))) {
        WHY("invalid profile");
        return PM_ERR_USAGE;
    }
    if (opts->manifest_path && !*opts->manifest_path) {
        WHY("empty manifest path");
        return PM_ERR_USAGE;
    }
    pm__variant v[PM_MAX_VARIANTS];
    int n = 0;
    int rc = pm__variants_resolve(opts, v, &n, why, why_size);
    pm__variants_free(v, n);
    return rc;
}

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

static GBytes *identity_key_of(uint64_t dev, uint64_t ino)
{
    uint64_t key[2] = {dev, ino};
    return g_bytes_new(key, sizeof(key));
}

int pm_batch_skip_file(pm_batch *batch, uint64_t dev, uint64_t ino)
{
    if (!batch || batch->ran || (dev == 0 && ino == 0))
        return PM_ERR_USAGE;
    if (!batch->skip_files)
        batch->skip_files =
            g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, NULL);
    g_hash_table_add(batch->skip_files, identity_key_of(dev, ino));
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

uint64_t pm_journal_mix(uint64_t digest, uint64_t seq, uint64_t dev, uint64_t ino)
{
    uint64_t v[3] = {seq, dev, ino};
    return (uint64_t)XXH64(v, sizeof(v), (XXH64_hash_t)digest);
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
    if (!batch)
        return;
    __atomic_store_n(&batch->cancel, 1, __ATOMIC_RELEASE);
    /* jobs is published once, before any thread starts, and freed only by destroy. */
    pm__queue *jobs = __atomic_load_n(&batch->jobs, __ATOMIC_ACQUIRE);
    if (jobs)
        pm__queue_close(jobs); /* wakes the scanner if it is blocked on a full queue */
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

/* Hands a result to the caller's thread; ownership passes. */
static void post_result(pm_batch *b, pm__result *r)
{
    if (pm__queue_push(b->events, r) != PM_OK)
        pm__result_free(r); /* cannot happen: events close only after every producer */
}

static void thread_finished(pm_batch *b)
{
    pthread_mutex_lock(&b->live_mu);
    int last = --b->live_threads == 0;
    pthread_mutex_unlock(&b->live_mu);
    if (last)
        pm__queue_close(b->events);
}

/* ---- scanner thread ---- */

static void journal(pm_batch *b, const char *line);

/* A restart's replay is checked against what the earlier engine met: an entry that differs
 * (the tree changed between the engines) means seqs no longer name the same entries. */
static void replay_mismatch(pm_batch *b)
{
    b->check_below = 0; /* said once */
    journal(b, "X\n");
}

/* The next entry's seq (dev, ino: the source as the scan saw it, 0 for other entries), and
 * whether to pass it over (an engine asked to run one seq only). */
static int take_seq(pm_batch *b, uint64_t *seq, int *stop, uint64_t dev, uint64_t ino)
{
    *seq = ++b->next_seq;
    *stop = b->opts.stop_after && *seq >= b->opts.stop_after;
    if (*seq < b->check_below) {
        b->replay_digest = pm_journal_mix(b->replay_digest, *seq, dev, ino);
        if (*seq + 1 == b->check_below && b->replay_digest != b->check_digest)
            replay_mismatch(b);
    }
    return *stop || *seq < b->opts.skip_below;
}

/* One journal line, whole (the pipe reader sees lines, never parts of two). */
static void journal(pm_batch *b, const char *line)
{
    if (b->opts.journal_fd < 0)
        return;
    pthread_mutex_lock(&b->journal_mu);
    size_t left = strlen(line);
    while (left > 0) {
        ssize_t n = write(b->opts.journal_fd, line, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the supervisor is gone: carry on, it cannot be told */
        line += n;
        left -= (size_t)n;
    }
    pthread_mutex_unlock(&b->journal_mu);
}

/* An event about a scanned entry (no job), to the reporter. */
static void post_entry_event(pm_batch *b, pm_event_type type, const char *path, int status,
                             int sys_errno, uint64_t seq, char *message, uint64_t dev, uint64_t ino)
{
    pm__result *r = g_new0(pm__result, 1);
    r->dev = dev;
    r->ino = ino;
    r->ev.type = type;
    r->ev.status = status;
    r->ev.sys_errno = sys_errno;
    r->ev.seq = seq;
    r->source = g_strdup(path);
    r->message = message;
    pm__result_link(r);
    post_result(b, r);
}

static GBytes *identity_key(const struct stat *st)
{
    dev_t key[2] = {st->st_dev, (dev_t)st->st_ino};
    return g_bytes_new(key, sizeof(key));
}

static void seen_create(pm_batch *b)
{
    if (!b->seen)
        b->seen = g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref,
                                        g_free);
}

/* The path a file was first met under in this run, or NULL (and, when keep, it is remembered
 * now, at most 100,000 files). A named file is known before the scan starts (""): whichever of
 * its names the scan meets first is the one made. */
static const char *seen_before(pm_batch *b, const struct stat *st, const char *path, int keep)
{
    seen_create(b);
    GBytes *k = identity_key(st);
    char *first = g_hash_table_lookup(b->seen, k);
    if (first && !*first) {
        g_hash_table_replace(b->seen, k, g_strdup(path)); /* a named file, met now */
        return NULL;
    }
    if (first || !keep || g_hash_table_size(b->seen) >= 100000)
        g_bytes_unref(k);
    else
        g_hash_table_insert(b->seen, k, g_strdup(path));
    return first;
}

/* ---- jobs: to the queue, or to the lanes (lanes.c) ---- */

static pm__origin origin_of(pm_batch *b, int explicit_file)
{
    input *in = &g_array_index(b->inputs, input, b->scan_input);
    return !in->path ? PM__FROM_LIST : explicit_file ? PM__FROM_NAMED : PM__FROM_WALK;
}

static int scan_on_source(const char *path, const char *out_rel, int explicit_file,
                          const struct stat *st, const pm__where *where, int place, void *ud)
{
    pm_batch *b = ud;
    uint64_t seq;
    int stop;
    uint64_t dev = st ? (uint64_t)st->st_dev : 0, ino = st ? (uint64_t)st->st_ino : 0;
    if (take_seq(b, &seq, &stop, dev, ino))
        return stop;
    /* A file that crashed an earlier engine, wherever the scan meets it now. */
    if (b->skip_files && (dev || ino)) {
        GBytes *k = identity_key_of(dev, ino);
        int skip = g_hash_table_contains(b->skip_files, k);
        g_bytes_unref(k);
        if (skip) {
            char *line = g_strdup_printf("K %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                         " %" G_GUINT64_FORMAT "\n",
                                         seq, dev, ino);
            journal(b, line);
            g_free(line);
            return 0;
        }
    }
    /* One file under several names is one source, made once, under the name met first
     * (BAD-INPUT 19): a file named twice, or named and met in a walk, or by a link and its
     * name, a hard link met in a walk. Remembered: named files and files with more than one
     * link, and walked files when a file list comes later (a walk meets every other file
     * once), at most 100,000, so memory stays bounded. */
    const input *in = &g_array_index(b->inputs, input, b->scan_input);
    int keep = st && (explicit_file || st->st_nlink > 1 || in->list_after);
    if (st && S_ISREG(st->st_mode) && (keep || (b->seen && g_hash_table_size(b->seen) > 0))) {
        const char *first = seen_before(b, st, path, keep);
        if (first) {
            post_entry_event(b, PM_EVENT_SKIPPED, path, PM_ERR_DUPLICATE, 0, seq,
                             g_strdup_printf("the same file as %s", first), dev, ino);
            return 0;
        }
    }
    pm__job *job = g_new0(pm__job, 1);
    job->source = g_strdup(path);
    job->out_rel = g_strdup(out_rel);
    job->dir = g_strdup(where->dir);
    job->name = g_strdup(where->name);
    job->root_len = where->root_len;
    job->root_dev = (uint64_t)where->root_dev;
    job->dir_dev = (uint64_t)where->dir_dev;
    job->dir_ino = (uint64_t)where->dir_ino;
    job->explicit_file = explicit_file;
    job->input = (int)b->scan_input;
    job->origin = origin_of(b, explicit_file);
    job->place = place;
    job->seq = seq;
    job->dev = dev;
    job->ino = ino;
    if (b->opts.lane_send_fd >= 0) {
        stop = pm__lane_send(b->opts.lane_send_fd, job, &b->cancel);
        if (stop < 0) /* its paths are too long for one message */
            post_entry_event(b, PM_EVENT_SCAN_ERROR, job->source, PM_ERR_SCAN, ENAMETOOLONG,
                             job->seq, NULL, job->dev, job->ino);
        pm__job_free(job);
        return stop > 0;
    }
    pm__waitgroup_add(&b->wg, 1); /* before the push: a worker may finish it at once */
    if (pm__queue_push(b->jobs, job) != PM_OK) {
        pm__waitgroup_done(&b->wg);
        pm__job_free(job);
        return 1; /* closed: cancelled */
    }
    return 0;
}

static void scan_on_event(pm_event_type type, const char *path, int status, int sys_errno, void *ud)
{
    pm_batch *b = ud;
    uint64_t seq = 0;
    int stop;
    if (type != PM_EVENT_SCAN_ERROR || path[0] != '(') { /* not a list that cannot be read */
        if (take_seq(b, &seq, &stop, 0, 0))
            return;
    }
    post_entry_event(b, type, path, status, sys_errno, seq, NULL, 0, 0);
}

static void scan_on_passed(const char *path, const char *why, void *ud)
{
    pm_batch *b = ud;
    uint64_t seq = 0;
    int stop;
    if (!take_seq(b, &seq, &stop, 0, 0))
        post_entry_event(b, PM_EVENT_PASSED_OVER, path, PM_OK, 0, seq, g_strdup(why), 0, 0);
}

static void *scanner_main(void *arg)
{
    pm_batch *b = arg;
    pm__scan_sink sink = {scan_on_source, scan_on_event, b, scan_on_passed};
    for (guint i = 0; i < b->inputs->len; i++) {
        input *in = &g_array_index(b->inputs, input, i);
        int stop;
        b->scan_input = i;
        if (in->same_as) {
            uint64_t seq;
            if (!take_seq(b, &seq, &stop, 0, 0)) {
                input *first = &g_array_index(b->inputs, input, in->same_as - 1);
                post_entry_event(b, PM_EVENT_SKIPPED, in->path, PM_ERR_DUPLICATE, 0, seq,
                                 g_strdup_printf("the same folder as %s", first->path), 0, 0);
            }
        } else if (in->path) {
            stop = pm__scan_path(&b->scan_cfg, in->path, NULL, &sink);
        } else {
            FILE *f = fdopen(in->list_fd, "r");
            if (!f) {
                scan_on_event(PM_EVENT_SCAN_ERROR, "(file list)", PM_ERR_SCAN, errno, b);
                continue;
            }
            in->list_fd = -1; /* the FILE owns it now */
            stop = pm__scan_list(&b->scan_cfg, f, in->delim, &sink);
            if (stop < 0) { /* read in part: fatal, never a shorter batch (pm_batch_run) */
                __atomic_store_n(&b->list_failed, errno ? errno : EIO, __ATOMIC_RELEASE);
                pm_batch_cancel(b);
            }
            fclose(f);
        }
        if (stop)
            break;
    }
    /* fewer entries than the earlier engine met: the tree changed (not when told to stop) */
    if (b->check_below > 1 && b->next_seq + 1 < b->check_below && !b->opts.stop_after &&
        !__atomic_load_n(&b->cancel, __ATOMIC_ACQUIRE))
        replay_mismatch(b);
    if (b->opts.lane_send_fd >= 0)
        shutdown(b->opts.lane_send_fd, SHUT_WR); /* the lanes take what is sent, then end */
    pm__queue_close(b->jobs);
    if (b->seen)
        g_hash_table_destroy(b->seen);
    b->seen = NULL;
    thread_finished(b);
    return NULL;
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
                journal(b, line);
                g_free(line);
                g_free(esc);
            }
            pm__result *r = g_new0(pm__result, 1);
            pm__process_job(&b->ctx, w, job, r);
            r->ev.seq = job->seq;
            r->dev = job->dev;
            r->ino = job->ino;
            post_result(b, r);
        }
        pm__job_free(job);
        pm__waitgroup_done(&b->wg);
    }
    pm__worker_free(w);
    g_free(msg);
    pm__vips_thread_shutdown();
    thread_finished(b);
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

static int path_is_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    if (strcmp(outer, "/") == 0)
        return 1;
    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* path's place below the output root (out_real, physical), when it is there: its folder
 * resolved where it exists, else by the text of the path. g_free; NULL when not below. */
static char *below_root(const char *path, const char *out_real)
{
    char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
    char *real = realpath(dir, NULL), *cwd = real ? NULL : realpath(".", NULL);
    /* a folder not made yet: by text, from the physical current folder (not $PWD) */
    char *abs = real ? g_strdup(real) : cwd ? g_canonicalize_filename(dir, cwd) : g_strdup("");
    free(cwd);
    size_t n = strlen(out_real);
    char *rel = NULL;
    if (path_is_within(abs, out_real)) {
        const char *rest = abs + (strcmp(out_real, "/") == 0 ? 1 : n);
        while (*rest == '/')
            rest++;
        rel = *rest ? g_strconcat(rest, "/", base, NULL) : g_strdup(base);
    }
    free(real);
    g_free(abs), g_free(dir), g_free(base);
    return rel;
}

/* Does the output root overlap what the inputs cover, so that an existing file at an output
 * name may be an input? Then outputs never replace anything. An output root strictly inside
 * an input folder does not count: the walk never enters it. */
static int outputs_overlap_inputs(pm_batch *b, const char *out_real)
{
    for (guint i = 0; i < b->inputs->len; i++) {
        input *in = &g_array_index(b->inputs, input, i);
        char *real = NULL;
        if (!in->path) {
            real = realpath(".", NULL); /* listed paths are relative to here */
        } else {
            struct stat st;
            if (stat(in->path, &st) == 0 && !S_ISDIR(st.st_mode)) {
                char *dir = g_path_get_dirname(in->path);
                real = realpath(dir, NULL);
                g_free(dir);
            } else {
                real = realpath(in->path, NULL);
            }
        }
        int hit = real && path_is_within(real, out_real);
        free(real);
        if (hit)
            return 1;
    }
    return 0;
}

/* With several inputs or a file list, all their outputs share one tree: note where each
 * input's files come from, so that a worker can tell when another input would write the same
 * names (BAD-INPUT 23), so that a folder given twice is walked once, and so that a file named
 * and also met in a walk is made once. */
static void add_place(pm_batch *b, const char *path, char *phys, int which)
{
    pm__place p = {g_strdup(path), phys, which};
    g_array_append_val(b->places, p);
}

static void note_places(pm_batch *b)
{
    int lists = 0;
    for (guint i = 0; i < b->inputs->len; i++)
        lists += !g_array_index(b->inputs, input, i).path;
    if (b->inputs->len < 2 && !lists)
        return;
    b->places = g_array_new(FALSE, FALSE, sizeof(pm__place));
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(struct stat)); /* the folders' */
    GArray *owner = g_array_new(FALSE, FALSE, sizeof(int));
    b->ctx.named_by_stem =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    for (guint i = 0; i < b->inputs->len; i++) {
        input *in = &g_array_index(b->inputs, input, i);
        struct stat st;
        if (!in->path || stat(in->path, &st) != 0)
            continue; /* a list, or what the scan will report */
        if (S_ISDIR(st.st_mode)) {
            for (guint k = 0; k < ids->len && !in->same_as; k++) {
                const struct stat *o = &g_array_index(ids, struct stat, k);
                if (o->st_dev == st.st_dev && o->st_ino == st.st_ino)
                    in->same_as = g_array_index(owner, int, k) + 1;
            }
            if (in->same_as)
                continue;
            char *real = realpath(in->path, NULL);
            if (real)
                add_place(b, in->path, g_strdup(real), (int)i);
            free(real);
            int idx = (int)i;
            g_array_append_val(ids, st);
            g_array_append_val(owner, idx);
        } else if (S_ISREG(st.st_mode)) {
            char *stem = g_path_get_basename(in->path);
            char *dot = strrchr(stem, '.');
            if (dot && dot != stem)
                *dot = '\0';
            GPtrArray *same = g_hash_table_lookup(b->ctx.named_by_stem, stem);
            if (!same) {
                same = g_ptr_array_new_with_free_func(g_free);
                g_hash_table_insert(b->ctx.named_by_stem, g_strdup(stem), same);
            }
            pm__place *p = g_new0(pm__place, 1);
            *p = (pm__place){in->path, NULL, (int)i};
            g_ptr_array_add(same, p);
            g_free(stem);
            /* known before the scan, so that a walk meeting it first makes it once */
            seen_create(b);
            GBytes *k = identity_key(&st);
            if (!g_hash_table_contains(b->seen, k))
                g_hash_table_insert(b->seen, k, g_strdup(""));
            else
                g_bytes_unref(k);
        }
    }
    if (lists) {
        char *cwd = realpath(".", NULL);
        add_place(b, "/", g_strdup("/"), PM__PLACE_LIST_ABS);
        if (cwd)
            add_place(b, "", g_strdup(cwd), PM__PLACE_LIST_REL);
        free(cwd);
    }
    g_array_free(ids, TRUE);
    g_array_free(owner, TRUE);
    b->ctx.places = (const pm__place *)(void *)b->places->data;
    b->ctx.n_places = (int)b->places->len;
}

static void forget_places(pm_batch *b)
{
    for (guint i = 0; b->places && i < b->places->len; i++) {
        g_free(g_array_index(b->places, pm__place, i).path);
        g_free(g_array_index(b->places, pm__place, i).phys);
    }
    if (b->places)
        g_array_free(b->places, TRUE);
    b->places = NULL;
    if (b->ctx.named_by_stem)
        g_hash_table_destroy(b->ctx.named_by_stem);
    b->ctx.named_by_stem = NULL;
    b->ctx.places = NULL;
    b->ctx.n_places = 0;
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
    journal(b, line);
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

/* Create the output root if needed and open it. A dry run creates nothing: a missing root is a
 * root with nothing in it yet (*out_fd -1). */
static int open_output_root(pm_batch *b, int *out_fd, int *sys_errno)
{
    *out_fd = -1;
    if (b->opts.dry_run) {
        int fd = open(b->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT) {
            *sys_errno = errno;
            return PM_ERR_OUTPUT_DIR;
        }
        *out_fd = fd;
        return PM_OK;
    }
    if (g_mkdir_with_parents(b->output_dir, 0777) != 0) {
        *sys_errno = errno;
        return PM_ERR_OUTPUT_DIR;
    }
    int fd = open(b->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        *sys_errno = errno;
        return PM_ERR_OUTPUT_DIR;
    }
    *out_fd = fd;
    return PM_OK;
}

/* Proves that files can be created in the root: a temp, at once removed. Made under the root's
 * lock (after pm__root_begin): a run sweeping a dead run's temps holds that lock alone, so it
 * never takes a live probe for one of them. */
static int probe_output_root(int rootfd, int *sys_errno)
{
    pm__temp probe;
    if (pm__publish_begin(&probe, rootfd, sys_errno) != PM_OK)
        return PM_ERR_OUTPUT_DIR;
    pm__publish_abort(&probe);
    return PM_OK;
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
    rc = open_output_root(b, &rootfd, &err);
    if (rc != PM_OK) {
        post_fatal(b, on_event, user_data, rc, err);
        goto done;
    }
    struct stat rst = {0};
    char *out_real = rootfd >= 0 ? realpath(b->output_dir, NULL) : NULL;
    if (rootfd >= 0 && (fstat(rootfd, &rst) != 0 || !out_real)) {
        rc = PM_ERR_OUTPUT_DIR;
        post_fatal(b, on_event, user_data, rc, errno);
        free(out_real);
        close(rootfd);
        goto done;
    }
    pm__root root = {-1, ""};
    int swept = 0;
    if (rootfd >= 0 && !b->opts.dry_run) {
        if (pm__root_begin(rootfd, &root, &swept) != 0) {
            /* no state folder of its own (DIR/.pixmill a link, not a folder, no room): what
             * was built could not be told from what was not */
            int e = errno;
            char *state = g_strdup_printf("%s/%s", b->output_dir, PM__STATE_DIR);
            post_fatal_path(b, state, on_event, user_data, PM_ERR_OUTPUT_DIR, e);
            g_free(state);
            rc = PM_ERR_OUTPUT_DIR;
            free(out_real);
            close(rootfd);
            goto done;
        }
        sum.temps_swept = (uint64_t)swept;
        rc = probe_output_root(rootfd, &err);
        if (rc != PM_OK) {
            post_fatal(b, on_event, user_data, rc, err);
            pm__root_end(rootfd, &root);
            free(out_real);
            close(rootfd);
            goto done;
        }
    }
    hash_profile_file(b);
    b->ctx.opts = &b->opts;
    b->ctx.variants = b->variants;
    b->ctx.n_variants = b->n_variants;
    b->ctx.profile_hash = b->profile_hash;
    b->ctx.out_rootfd = rootfd;
    b->ctx.out_root = b->output_dir;
    b->ctx.overlap = out_real && outputs_overlap_inputs(b, out_real);
    manifest_rel = b->manifest_path && out_real ? below_root(b->manifest_path, out_real) : NULL;
    b->ctx.manifest_rel = manifest_rel;
    b->ctx.cancel = &b->cancel;
    note_places(b);
    b->ctx.gate = NULL;
    b->ctx.lanes = b->opts.dry_run ? 0 : b->opts.lanes;
    if (b->opts.decode_budget > 0 && jobs > 1) {
        memset(&b->gate, 0, sizeof(b->gate));
        pthread_mutex_init(&b->gate.mu, NULL);
        pthread_cond_init(&b->gate.cv, NULL);
        b->gate.budget = b->opts.decode_budget / (uint64_t)(b->ctx.lanes > 1 ? b->ctx.lanes : 1);
        b->ctx.gate = &b->gate;
    }
    free(out_real);
    b->scan_cfg.include_hidden = b->opts.include_hidden;
    b->scan_cfg.have_exclude = rootfd >= 0;
    b->scan_cfg.exclude_dev = rst.st_dev;
    b->scan_cfg.exclude_ino = rst.st_ino;
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
        if (rootfd >= 0) {
            pm__root_end(rootfd, &root);
            close(rootfd);
        }
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
        if (pthread_create(&threads[i], NULL, i < n_producers ? scanner_main : worker_main, b) !=
            0) {
            /* Those that never started will not finish: account for them, then stop. */
            for (int k = i; k < n_threads; k++)
                thread_finished(b);
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
    if (rootfd >= 0) {
        pm__root_end(rootfd, &root);
        close(rootfd);
    }
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
    g_free(manifest_rel);
    b->ctx.manifest_rel = NULL;
    forget_places(b);
    pm__manifest_free(manifest);
    sum.wall_seconds = wall_now() - wall0;
    sum.cpu_seconds = cpu_now() - cpu0;
    if (summary)
        *summary = sum;
    return rc;
}
