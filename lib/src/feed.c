/* The feed: the scanner thread, which walks every input in order (scan.c) and turns what it
 * meets into the run's entries: each gets its seq (a restarted engine replays and checks
 * them), a file met twice under two names is made once, a file an earlier engine crashed on is
 * passed over, and each source becomes a job on the bounded queue, or on the lane socket
 * (lanes.c). And, before the scan, where each input's files land (the places a worker checks
 * for clashes). Never processes a file. */
#define _GNU_SOURCE
#include "batch.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* The digest of the entries met so far, as a restarted engine checks them (public: the
 * supervisor mixes the same). */
uint64_t pm_journal_mix(uint64_t digest, uint64_t seq, uint64_t dev, uint64_t ino)
{
    uint64_t v[3] = {seq, dev, ino};
    return (uint64_t)XXH64(v, sizeof(v), (XXH64_hash_t)digest);
}

GBytes *pm__identity_key(uint64_t dev, uint64_t ino)
{
    uint64_t key[2] = {dev, ino};
    return g_bytes_new(key, sizeof(key));
}

/* A restart's replay is checked against what the earlier engine met: an entry that differs
 * (the tree changed between the engines) means seqs no longer name the same entries. */
static void replay_mismatch(pm_batch *b)
{
    b->check_below = 0; /* said once */
    pm__batch_journal(b, "X\n");
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
void pm__batch_journal(pm_batch *b, const char *line)
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
    pm__batch_post(b, r);
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
    GBytes *k = pm__identity_key((uint64_t)st->st_dev, (uint64_t)st->st_ino);
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
        GBytes *k = pm__identity_key(dev, ino);
        int skip = g_hash_table_contains(b->skip_files, k);
        g_bytes_unref(k);
        if (skip) {
            char *line = g_strdup_printf("K %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                         " %" G_GUINT64_FORMAT "\n",
                                         seq, dev, ino);
            pm__batch_journal(b, line);
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

void *pm__batch_scanner_main(void *arg)
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
                pm__batch_cancel(b);
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
    pm__batch_thread_finished(b);
    return NULL;
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

void pm__batch_note_places(pm_batch *b)
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
            GBytes *k = pm__identity_key((uint64_t)st.st_dev, (uint64_t)st.st_ino);
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

void pm__batch_forget_places(pm_batch *b)
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
