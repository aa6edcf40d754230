/* Cross-file internals of libpixmill (pm__ prefix). Not installed; tests may include it. */
#ifndef PM_INTERNAL_H
#define PM_INTERNAL_H

#include "pixmill/pixmill.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- queue.c: bounded multi-producer multi-consumer queue of pointers ---- */
typedef struct pm__queue pm__queue;

int pm__queue_create(pm__queue **out, size_t capacity);
void pm__queue_destroy(pm__queue *q); /* items still inside are not freed */
/* Blocks while full. 0 on success (ownership passes), PM_ERR_CANCELLED once closed. */
int pm__queue_push(pm__queue *q, void *item);
/* Blocks while empty and open. 0 with *item set; PM_ERR_CANCELLED when closed and drained. */
int pm__queue_pop(pm__queue *q, void **item);
/* Wakes every waiter: pushes fail from now on, pops drain what is left. Idempotent. */
void pm__queue_close(pm__queue *q);
size_t pm__queue_length(pm__queue *q);
/* Threads blocked in push / pop right now (for tests that prove blocking without sleeping). */
size_t pm__queue_waiting_pushers(pm__queue *q);
size_t pm__queue_waiting_poppers(pm__queue *q);

/* ---- waitgroup.c ---- */
typedef struct pm__waitgroup {
    pthread_mutex_t mu;
    pthread_cond_t zero;
    long count;   /* guarded by mu */
    long waiters; /* guarded by mu */
} pm__waitgroup;

int pm__waitgroup_init(pm__waitgroup *wg);
void pm__waitgroup_destroy(pm__waitgroup *wg);
void pm__waitgroup_add(pm__waitgroup *wg, long n);
void pm__waitgroup_done(pm__waitgroup *wg);
void pm__waitgroup_wait(pm__waitgroup *wg);
long pm__waitgroup_count(pm__waitgroup *wg);
long pm__waitgroup_waiters(pm__waitgroup *wg);

/* ---- scan.c: the streaming walk ---- */
typedef struct pm__scan_sink {
    /* A candidate source. out_rel: output path relative to the output root, without extension.
     * explicit_file: named by the user (a symlink there is followed). Non-zero return stops. */
    int (*on_source)(const char *path, const char *out_rel, int explicit_file, void *user_data);
    /* A skipped entry or a scan error. */
    void (*on_event)(pm_event_type type, const char *path, int status, int sys_errno,
                     void *user_data);
    void *user_data;
} pm__scan_sink;

typedef struct pm__scan_config {
    int include_hidden;
    int have_exclude; /* a folder never to enter (the output root) */
    dev_t exclude_dev;
    ino_t exclude_ino;
    const int *cancel; /* read with __atomic_load_n; may be NULL */
} pm__scan_config;

/* Walks one input: a file or a folder. rel_prefix: output subfolder for it ("" or NULL: none;
 * a folder mirrors below it; a file keeps only its own name when NULL). Returns 0, or non-zero
 * when stopped by the sink or cancel. */
int pm__scan_path(const pm__scan_config *cfg, const char *path, const char *rel_prefix,
                  const pm__scan_sink *sink);
/* Reads delim-separated paths from f and scans each, mirroring the path as listed. */
int pm__scan_list(const pm__scan_config *cfg, FILE *f, int delim, const pm__scan_sink *sink);
/* Is this file name one the walk takes as an image candidate? */
int pm__scan_is_candidate_name(const char *name);
/* Normalise a listed path into an output-relative one: strips "/" and "./", refuses "..". */
int pm__scan_rel_from_listed(const char *path, char **out);

/* ---- publish.c: atomic outputs ---- */
typedef struct pm__temp {
    int dirfd;     /* borrowed */
    int fd;        /* the temp file, open for writing */
    char name[64]; /* temp name inside dirfd */
} pm__temp;

#define PM__TEMP_PREFIX ".pixmill-"
#define PM__TEMP_SUFFIX ".tmp"

/* Opens (creating as needed, never through a symlink) the folder rel below rootfd. */
int pm__publish_open_dir(int rootfd, const char *rel, int *out_fd, int *sys_errno);
int pm__publish_begin(pm__temp *t, int dirfd, int *sys_errno);
/* fsync, close, then rename to final; noreplace refuses an existing final name. On any
 * failure the temp is removed. */
int pm__publish_commit(pm__temp *t, const char *final_name, int noreplace, int *sys_errno);
void pm__publish_abort(pm__temp *t);

/* ---- process.c: one source, start to finish ---- */
typedef struct pm__process_ctx {
    const pm_options *opts;
    int out_rootfd;
    const char *out_root; /* for display */
    int overlap;          /* output root overlaps an input folder: never replace */
    const int *cancel;
} pm__process_ctx;

typedef struct pm__job {
    char *source;  /* path to open */
    char *out_rel; /* output path below the root, without extension */
    int explicit_file;
} pm__job;

/* An event with everything it points to owned here (g_free), so it can cross threads. */
typedef struct pm__result {
    pm_event ev; /* ev.source, ev.message, ev.output, ev.outputs point into the fields below */
    char *source;
    char *message;
    pm_output *outputs; /* ev.n_outputs of them; path and message owned */
} pm__result;

void pm__result_free(pm__result *r);
/* Points ev's borrowed fields at the owned ones (after the struct has moved). */
void pm__result_link(pm__result *r);

/* Processes one source into r (zeroed by the caller): type DONE or FAILED. */
void pm__process_job(const pm__process_ctx *ctx, const pm__job *job, pm__result *r);

int pm__vips_init(const char *argv0);
void pm__vips_shutdown(void);
void pm__vips_thread_shutdown(void);

#endif
