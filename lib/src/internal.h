/* Cross-file internals of libpixmill (pm__ prefix). Not installed; tests may include it. The
 * rooms of one job share job.h besides, and those of a batch batch.h (see lib/README.md). */
#ifndef PM_INTERNAL_H
#define PM_INTERNAL_H

#include "pixmill/pixmill.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ---- queue.c: bounded multi-producer multi-consumer queue of pointers ---- */
typedef struct pm__queue pm__queue;

int pm__queue_create(pm__queue **out, size_t capacity);
void pm__queue_destroy(pm__queue *q); /* items still inside are not freed */
/* Finding it full, blocks until half is free (one wake-up per half a queue, not per item).
 * 0 on success (ownership passes), PM_ERR_CANCELLED once closed. */
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
/* Where the scan met a source: the physical path of its folder (no link on it when the scan
 * opened that folder) and the folder's identity, the source's name there, and the folder the
 * scan started from (the first root_len bytes of dir: an input folder, or a named file's own
 * folder), which the build record keeps so that prune can prove a source gone. The worker
 * opens the source there and nowhere else: dir without following a link, the folder checked
 * to be the one the scan saw, then name with O_NOFOLLOW. */
typedef struct pm__where {
    const char *dir;
    const char *name;
    size_t root_len;
    dev_t root_dev;
    dev_t dir_dev;
    ino_t dir_ino;
} pm__where;

typedef struct pm__scan_sink {
    /* A candidate source. out_rel: output path relative to the output root, without extension.
     * explicit_file: named by the user (a symlink there is followed, once, by the scan). st:
     * the file as the scan saw it (lstat in a walk, stat for a named file), or NULL when it
     * could not be read (the worker will tell). place: which of the lists' mirror roots a
     * listed path is below (PM__PLACE_*), else -1. Non-zero return stops. */
    int (*on_source)(const char *path, const char *out_rel, int explicit_file,
                     const struct stat *st, const pm__where *where, int place, void *user_data);
    /* A skipped entry or a scan error. */
    void (*on_event)(pm_event_type type, const char *path, int status, int sys_errno,
                     void *user_data);
    void *user_data;
    /* An entry a walk does not take, and why (may be NULL). */
    void (*on_passed)(const char *path, const char *why, void *user_data);
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
/* Reads delim-separated paths from f and scans each, mirroring the path as listed. 0, 1 when
 * stopped, or -1 when the list could not be read to its end (errno). */
int pm__scan_list(const pm__scan_config *cfg, FILE *f, int delim, const pm__scan_sink *sink);
/* The mirror roots of listed paths: an absolute path mirrors below "/", a relative one below
 * the current folder (so /a/x.jpg and a/x.jpg land on one name). */
enum { PM__PLACE_LIST_ABS = -3, PM__PLACE_LIST_REL = -2 };
/* The image extensions the walk takes (lower case; any case matches). */
const char *const *pm__scan_candidate_exts(size_t *n);
/* Is this file name one the walk takes as an image candidate? */
int pm__scan_is_candidate_name(const char *name);
/* Normalise a listed path into an output-relative one: strips "/" and "./", refuses "..". */
int pm__scan_rel_from_listed(const char *path, char **out);

/* ---- beneath.c: reaching files without following links ---- */
/* Opens rel (relative; never "..") below dirfd, no component a symbolic link; openat flags
 * (O_CLOEXEC added). -1 with errno (ELOOP: a link on the way). */
int pm__open_beneath(int dirfd, const char *rel, int flags, mode_t mode);
/* Opens an absolute path none of whose components is a symbolic link (a physical path). */
int pm__open_physical(const char *path, int flags);
/* The folder holding rel below rootfd, as pm__open_beneath (never created); *base points at
 * rel's last component. */
int pm__open_parent(int rootfd, const char *rel, const char **base);
/* The physical path of an open file or folder (g_free): the kernel's name for it, or where
 * /proc is missing realpath of opened_as (the path it was opened by; may be NULL), checked to
 * lead back to it without a link; NULL when neither does (moved, deleted). */
char *pm__fd_path(int fd, const char *opened_as);

/* ---- publish.c: atomic outputs ---- */
typedef struct pm__temp {
    int dirfd;     /* borrowed */
    int fd;        /* the temp file, open for writing */
    char name[64]; /* temp name inside dirfd */
} pm__temp;

#define PM__TEMP_PREFIX ".pixmill-"
#define PM__TEMP_SUFFIX ".tmp"

/* Exactly a name pm__publish_begin makes: ".pixmill-" + 16 hex digits + ".tmp". */
int pm__publish_is_temp_name(const char *name);
/* Opens (creating as needed, never through a symlink) the folder rel below rootfd. */
int pm__publish_open_dir(int rootfd, const char *rel, int *out_fd, int *sys_errno);
/* Is name one pixmill may have written below an output root: relative, no empty, "." or ".."
 * part, no part over 255 bytes or one of pixmill's own (.pixmill*), under 4000 bytes? Names
 * read from disk (build records) are held to this before they are used. */
int pm__name_is_safe(const char *name);
int pm__publish_begin(pm__temp *t, int dirfd, int *sys_errno);
/* fsync (not with PM__PUBLISH_CACHE), close, then rename to final. On any failure the temp is
 * removed. */
enum {
    PM__PUBLISH_NOREPLACE = 1, /* refuse an existing final name */
    PM__PUBLISH_CACHE = 2      /* no fsync: a build record, whose every claim is checked
                                  against the files when read (state.c) */
};
int pm__publish_commit(pm__temp *t, const char *final_name, int flags, int *sys_errno);
/* As pm__publish_commit, but final_name may be replaced only while it is the file ino (that
 * the caller checked is one it may replace): exchanged atomically and the file that came out
 * checked, put back if it is another (PM_ERR_OUTPUT_EXISTS). A name that is free is taken
 * without replacing anything. */
int pm__publish_commit_over(pm__temp *t, const char *final_name, uint64_t ino, int flags,
                            int *sys_errno);
void pm__publish_abort(pm__temp *t);
/* write(2) all of buf, through short writes and EINTR: 0, or the errno (EIO for a write of 0). */
int pm__write_all(int fd, const void *buf, size_t len);

/* ---- template.c: output names ---- */
#define PM__TEMPLATE_MAX 1024
#define PM__STATE_DIR ".pixmill" /* below the output root; with the temps, pixmill's own names */
enum {
    PM__TOKEN_STEM = 1u << 0,
    PM__TOKEN_EXT = 1u << 1,
    PM__TOKEN_W = 1u << 2,
    PM__TOKEN_H = 1u << 3,
    PM__TOKEN_VARIANT = 1u << 4,
    PM__TOKEN_DIR = 1u << 5,
    PM__TOKEN_HASH = 1u << 6,
};
typedef struct pm__name_vars {
    const char *stem, *ext, *variant, *dir, *hash;
    int w, h;
} pm__name_vars;

/* PM_OK, with the tokens used (PM__TOKEN_* bits) in *tokens when not NULL; or PM_ERR_USAGE
 * with a reason. */
int pm__template_check(const char *tmpl, unsigned *tokens, char *why, size_t why_size);
/* The path below the output root (g_free), or NULL when the result is not a usable name
 * (it would leave the root, or a component is too long or one of pixmill's own). */
char *pm__template_expand(const char *tmpl, const pm__name_vars *vars);

/* ---- state.c: what was built from what (one small record per source) ---- */
#define PM__HASH_HEX 33 /* XXH3-128 in hex, NUL included */
typedef struct pm__state_out {
    char *name;    /* below the output root */
    char *variant; /* its variant's name */
    char digest[17];
    pm_format format;
    int width, height;
    uint64_t bytes;
    int64_t mtime_ns;
    uint64_t ino;
    char hash[PM__HASH_HEX];
    int left; /* left over: the source's last run no longer made it (another format, size or
               * name); prune removes it while it is still the file written */
} pm__state_out;

typedef struct pm__state {
    char *source;      /* the file read, by its physical path */
    char *root;        /* the folder the scan started from (a prefix of source), or NULL in a
                        * record older than it: then prune cannot prove the source gone */
    uint64_t root_dev; /* that folder's device when recorded */
    uint64_t size;
    int64_t mtime_ns;
    int64_t ctime_ns; /* with ino: a source whose size, mtime, ctime and inode are as recorded
                       * is taken as unchanged without reading it; 0 in older records */
    uint64_t ino;
    char hash[PM__HASH_HEX];
    int width, height; /* upright */
    int pages;
    pm_format same;
    int has_profile; /* a usable ICC profile is embedded */
    int dc_source;   /* a progressive grey or YCbCr JPEG (jpegdc.c can read it): 1 stored as
                      * width x height, 2 stored on its side; 0 not one (or an older record) */
    pm__state_out *outs;
    int n_outs;
} pm__state;

/* The record's folder below the root and its file name, for a source at out_rel. */
void pm__state_location(const char *out_rel, const char *source, char **dir_rel, char **name);
/* 0 and *st filled; -1 when there is none or it cannot be read (then *st is empty). */
int pm__state_load(int rootfd, const char *dir_rel, const char *name, pm__state *st);
int pm__state_load_at(int dirfd, const char *name, pm__state *st);
/* Atomically (temp, fsync, rename). PM_OK or an error with *sys_errno. */
int pm__state_save(int rootfd, const char *dir_rel, const char *name, const pm__state *st,
                   int *sys_errno);
void pm__state_clear(pm__state *st);
/* XXH3-128 of a whole file, read with pread (the offset does not move). 0 or -1. */
int pm__hash_fd(int fd, char out[PM__HASH_HEX]);
int64_t pm__mtime_ns(const struct stat *st);
int64_t pm__ctime_ns(const struct stat *st);
/* container.c: NULL when what a PNG, WebP or ISOBMFF (HEIF, AVIF) source's chunks or boxes
 * declare fits in its size bytes (or it is none of those); else why not (g_free it). */
char *pm__container_check(int fd, uint64_t size);
/* Does the file at name (below rootfd, never through a link) still hold what o records? Size
 * must match, then mtime, else the content hash (*refreshed: the mtime moved). strict: only
 * the very file written (size, mtime, inode), no hash fallback. *ino (may be NULL): the inode
 * of the file that matched. */
int pm__state_output_matches(int rootfd, const pm__state_out *o, int strict, int *refreshed,
                             uint64_t *ino);

/* Prune: every record whose source is gone loses its outputs (only files that still match
 * the record) and itself; a record whose source is there loses its left-over outputs. cb gets each
 * such source; dry_run removes nothing. */
typedef void (*pm__prune_cb)(const pm__state *st, const int *removed, int source_gone,
                             void *user_data);
/* Calls cb for every entry that is not a folder below start ("" for the root), iteratively,
 * never through a link. */
typedef void (*pm__walk_cb)(int dirfd, const char *rel_dir, const char *name, const struct stat *st,
                            void *user_data);
void pm__walk_files(int rootfd, const char *start, const int *cancel, pm__walk_cb cb,
                    void *user_data);
/* A run's hold on its output root: the root's lock, and the run's own marker. */
typedef struct pm__root {
    int lockfd;      /* held shared while the run lasts; -1 when there is none */
    char marker[48]; /* in DIR/.pixmill: there until the run finishes cleanly; "" if none */
} pm__root;
/* A run on an output root: opens (making them) DIR/.pixmill and its state/ folder, never
 * through a link, and takes the root's lock (shared while running); when no other run holds it
 * and a run did not finish (its marker is there), removes every pixmill temp below the root
 * (*swept of them) and the dead runs' markers; then leaves its own marker. 0, or -1 with errno
 * when the state folder cannot be used (a link, not a folder, no room): the run must not go
 * on. */
int pm__root_begin(int rootfd, pm__root *root, int *swept);
/* The run finished: its marker goes, and the lock. */
void pm__root_end(int rootfd, pm__root *root);
int pm__state_prune(int rootfd, int dry_run, const int *cancel, pm__prune_cb cb, void *user_data);

/* ---- a batch's variants, resolved (every field set) ---- */
typedef struct pm__variant {
    char *name;
    pm_size size;
    pm_crop crop;
    pm_format formats[PM_MAX_FORMATS];
    int n_formats;
    int quality;
    char *name_template;
} pm__variant;

/* ---- jpegdc.c: a progressive JPEG at 1/8 from its DC coefficients ---- */
typedef struct pm__dc_image {
    int width, height, bands; /* ceil(w / 8) x ceil(h / 8); 1 (grey) or 3 (RGB) bands */
    unsigned char *pixels;    /* malloc'd, rows top to bottom, bands interleaved */
} pm__dc_image;

/* Reads the file behind fd with pread (its offset is left alone). 0 with *out filled, or -1
 * when the file is anything but a well-formed 8-bit progressive Huffman JPEG in grey or YCbCr,
 * read to its EOI: the caller then decodes it the usual way, which reports what is wrong. */
int pm__jpeg_dc_decode(int fd, pm__dc_image *out);
void pm__dc_image_free(pm__dc_image *img);

/* ---- process.c: one source, start to finish (its rooms: job.h) ---- */
/* The gate of whole-image decodes (pm_options.decode_budget): admits them in arrival order
 * while their estimated bytes fit the budget (or nothing else is running). */
typedef struct pm__decode_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t budget;
    uint64_t in_use;               /* guarded by mu */
    uint64_t next_ticket, serving; /* guarded by mu */
} pm__decode_gate;

/* Where an input's sources come from, and so what else may write beside their outputs. */
typedef enum { PM__FROM_WALK, PM__FROM_NAMED, PM__FROM_LIST } pm__origin;

/* A folder whose tree lands on the output root's names: an input folder (mirrored below the
 * root), or for listed paths "/" and the current folder (PM__PLACE_LIST_*). And named files,
 * which land at the root's top, by stem. */
typedef struct pm__place {
    char *path; /* as the user gave it, for messages ("" for the current folder) */
    char *phys; /* its physical path, where pixmill looks */
    int input;  /* the input it is; or PM__PLACE_LIST_* */
} pm__place;

/* ---- siblings.c: a worker's own memory of the folders it looked in ---- */
typedef struct pm__worker pm__worker;
pm__worker *pm__worker_new(void);
void pm__worker_free(pm__worker *w);
/* The names (g_free'd by the GPtrArray) of the image candidates in folder dfd whose stem is
 * exactly stem, the extension in any case, other than self (may be NULL); NULL when none. The
 * folder is listed once while it does not change. */
struct _GPtrArray *pm__siblings(pm__worker *w, int dfd, const char *stem, const char *self);

typedef struct pm__process_ctx {
    const pm_options *opts;
    pm__decode_gate *gate; /* NULL: no limit */
    int lanes;             /* > 1: processes sharing the decode budget (pm_options.lanes) */
    const pm__variant *variants;
    int n_variants;
    const char *profile_hash; /* content of --profile FILE, for the variants' digests */
    int out_rootfd;
    const char *out_root;     /* for display */
    int overlap;              /* output root overlaps an input folder: never replace */
    const char *manifest_rel; /* the --manifest's path below the output root, or NULL */
    /* With several inputs or a file list, the places whose files map to the same output names
     * (BAD-INPUT 23): pm__place above, and the named files by stem (stem -> GPtrArray of
     * pm__place). Empty with one input that is not a list. */
    const pm__place *places;
    int n_places;
    struct _GHashTable *named_by_stem; /* a GHashTable */
    const int *cancel;
} pm__process_ctx;

typedef struct pm__job {
    char *source;  /* the path as met: for messages, events and the manifest */
    char *out_rel; /* output path below the root, without extension */
    char *dir;     /* pm__where: the only place the worker opens it */
    char *name;
    uint64_t root_len, root_dev, dir_dev, dir_ino;
    uint64_t dev, ino; /* the source as the scan saw it (lstat in a walk); 0 unknown */
    int explicit_file;
    pm__origin origin;
    int input; /* which of the inputs it came from */
    int place; /* for a listed path, PM__PLACE_LIST_*; else -1 */
    uint64_t seq;
} pm__job;

/* An event with everything it points to owned here (g_free), so it can cross threads. */
typedef struct pm__result {
    pm_event ev; /* ev.source, ev.message, ev.output, ev.outputs point into the fields below */
    char *source;
    char *message;
    pm_output *outputs; /* ev.n_outputs of them; path, name, variant and message owned */
    void *tail;         /* a job's publishing half, until pm__process_finish */
    uint64_t dev, ino;  /* the source as the scan saw it (the journal's); 0 for entries */
} pm__result;

void pm__result_free(pm__result *r);
/* Points ev's borrowed fields at the owned ones (after the struct has moved). */
void pm__result_link(pm__result *r);

/* Processes one source into r (zeroed by the caller), in two halves. The worker's decodes
 * and encodes into temps; pm__process_finish, on the reporter's thread, publishes them (fsync,
 * rename), writes the record and completes the event: type DONE or FAILED. Until then r is
 * not an event (ev's pointers are unset). */
void pm__process_job(const pm__process_ctx *ctx, pm__worker *w, const pm__job *job, pm__result *r);
void pm__process_finish(const pm__process_ctx *ctx, pm__result *r);

/* ---- vips.c: libvips' start-up and shutdown (the rest of it is in job.h) ---- */
int pm__vips_init(const char *argv0);
void pm__vips_shutdown(void);
void pm__vips_thread_shutdown(void);

/* ---- lanes.c: the job socket between engines, and their share of the decode budget ---- */
#define PM__LANE_MSG_MAX (64 * 1024)
/* Sends one job to whichever lane takes it first; blocks while every lane is busy. 0 sent,
 * 1 stop the scan (cancelled, or no lane is left to take it), -1 too long for a message. */
int pm__lane_send(int fd, const pm__job *job, const int *cancel);
/* Sends and receives give up every 100 ms, so that a blocked lane sees a cancel. */
void pm__lane_timeouts(int fd);
/* The next job from the socket (msg: a buffer of PM__LANE_MSG_MAX), taken only when a
 * worker is free; NULL at the scan's end (or when its process is gone), or on a cancel. */
pm__job *pm__lane_take(int fd, char *msg, const int *cancel);
void pm__job_free(pm__job *job);
/* The decode budget shared across lanes: a lock file below the output root, held shared by
 * a decode of bytes within budget / lanes, alone by a larger one (a lane that dies lets go
 * with its descriptors). The descriptor to close after the decode, or -1: no lock needed. */
int pm__lanes_decode_lock(int rootfd, uint64_t budget, int lanes, uint64_t bytes);

/* ---- report.c: JSON (json-glib) ---- */
typedef struct pm__manifest pm__manifest;
pm__manifest *pm__manifest_new(const char *output_root);
/* Records a source's event (DONE, SKIPPED up to date, FAILED, PLANNED); others are ignored. */
void pm__manifest_add(pm__manifest *m, const pm_event *ev);
/* What may be at the manifest's name: nothing (ino 0), or the pixmill manifest ino that
 * pm__manifest_check found there. */
typedef struct pm__manifest_spot {
    uint64_t ino;
} pm__manifest_spot;
/* May a manifest be written at path? Refused (PM_ERR_USAGE, *why set): a name the walk takes
 * as an image, a path through pixmill's own .pixmill folders, and anything already there but
 * a pixmill manifest (an input, an output, a file of the user's, a link). */
int pm__manifest_check(const char *path, pm__manifest_spot *spot, const char **why, int *sys_errno);
/* Sorted by source path, written atomically, replacing only what spot says may be there.
 * PM_OK or PM_ERR_MANIFEST with *sys_errno. */
int pm__manifest_write(pm__manifest *m, const char *path, const pm__manifest_spot *spot,
                       int *sys_errno);
void pm__manifest_free(pm__manifest *m);

/* ---- variants.c ---- */
/* Resolves opts' variants (sizes, or variants with inherited fields). */
int pm__variants_resolve(const pm_options *opts, pm__variant *out, int *n, char *why,
                         size_t why_size);
void pm__variants_free(pm__variant *v, int n);

#endif
