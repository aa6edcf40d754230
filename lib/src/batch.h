/* A batch's insides, shared by its rooms: batch.c (the public calls, the run's wiring, the
 * workers and the reporter), feed.c (the scanner thread and where the inputs' files land) and
 * outroot.c (the output root's set-up). Not installed. */
#ifndef PM_BATCH_H
#define PM_BATCH_H

#include "internal.h"

#include <glib.h>

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

/* Hands a result to the caller's thread; ownership passes. */
static inline void pm__batch_post(pm_batch *b, pm__result *r)
{
    if (pm__queue_push(b->events, r) != PM_OK)
        pm__result_free(r); /* cannot happen: events close only after every producer */
}

/* A producer of events (the scanner, a worker) is done; the last one closes the events. */
static inline void pm__batch_thread_finished(pm_batch *b)
{
    pthread_mutex_lock(&b->live_mu);
    int last = --b->live_threads == 0;
    pthread_mutex_unlock(&b->live_mu);
    if (last)
        pm__queue_close(b->events);
}

/* pm_batch_cancel's work, callable from the batch's own threads. */
static inline void pm__batch_cancel(pm_batch *b)
{
    __atomic_store_n(&b->cancel, 1, __ATOMIC_RELEASE);
    /* jobs is published once, before any thread starts, and freed only by destroy. */
    pm__queue *jobs = __atomic_load_n(&b->jobs, __ATOMIC_ACQUIRE);
    if (jobs)
        pm__queue_close(jobs); /* wakes the scanner if it is blocked on a full queue */
}

/* ---- feed.c ---- */
/* The key of a file's identity in the batch's hash sets (skip_files, seen). */
GBytes *pm__identity_key(uint64_t dev, uint64_t ino);
/* One journal line, whole (the pipe reader sees lines, never parts of two); any thread. */
void pm__batch_journal(pm_batch *b, const char *line);
/* The scanner thread: walks every input in order, gives each entry its seq, and hands each
 * source to the job queue or the lanes. */
void *pm__batch_scanner_main(void *arg);
/* With several inputs or a file list, where each input's files land (b->places, the ctx's
 * named_by_stem), folders given twice, and named files known before the scan. */
void pm__batch_note_places(pm_batch *b);
void pm__batch_forget_places(pm_batch *b);

/* ---- outroot.c ---- */
/* The output root a run works in. */
typedef struct pm__outroot {
    int fd;         /* -1: none (a dry run whose root does not exist yet) */
    struct stat st; /* its identity, the folder the walk never enters */
    char *real;     /* its physical path (free) */
    pm__root root;  /* the run's hold on it (not in a dry run) */
    int swept;      /* temps of a dead run removed */
} pm__outroot;
/* Creates (unless dry_run) and opens the root, takes the run's hold on it and proves files can
 * be made there. PM_OK, or an error with *sys_errno and *what (NULL: the root itself; else
 * the path at fault, g_free). */
int pm__outroot_open(const char *dir, int dry_run, pm__outroot *out, int *sys_errno, char **what);
void pm__outroot_close(pm__outroot *o);
/* path's place below the output root (real), when it is there (g_free), else NULL. */
char *pm__outroot_below(const char *path, const char *real);
/* Does the root overlap what the inputs (GArray of input) cover? Then outputs never replace
 * anything. */
int pm__outroot_overlaps_inputs(const GArray *inputs, const char *real);

#endif
