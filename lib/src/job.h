/* The rooms of one job, and what they share (pm__ prefix; not installed). One source goes
 * through them in this order, process.c telling the story:
 *
 *   decode.c  open the source where the scan found it, its size limit, sniff it and read its
 *             header (the loader policy and the pixel caps), and later the one decode
 *             (through the decode gate, or from the DC coefficients)
 *   plan.c    its outputs: variants x formats, geometry, digests, names, the clash checks
 *             against other sources, and which outputs are current (no pixels decoded here)
 *   encode.c  each output derived from the one decode (resize, crop, pad, flatten,
 *             metadata) and saved into a temp in its folder through a checked target
 *   process.c the worker's half (the story above) and the reporter's half: publish the
 *             temps, write the build record, complete the event
 *   job.c     the state they pass along, and how a job or one output fails
 *
 * The calls go one way: process.c -> plan.c -> decode.c, process.c -> encode.c, and all of
 * them -> job.c and vips.c. */
#ifndef PM_JOB_H
#define PM_JOB_H

#include "internal.h"

#include <vips/vips.h>

/* One output of a source: a variant x a resolved format, and what became of it. */
typedef struct pm__planned {
    int vi; /* into ctx->variants */
    pm_format format;
    pm_geometry g;
    char digest[17];   /* of everything that decides this output's bytes */
    char *name;        /* below the output root */
    int current;       /* up to date: left as it is */
    int ours;          /* a file at name is one pixmill made from this source */
    uint64_t ours_ino; /* that file, the only one a publish there may replace */
    int alias;         /* same name and digest as an earlier output: made once, reported once */
    pm_output out;
    pm__state_out rec; /* what the state records once it is written */
    pm__temp temp;     /* written, closed, waiting to be published (name[0] set) */
} pm__planned;

typedef struct pm__job_state {
    int fd;
    int srcdir; /* the source's folder (O_PATH), where the scan found it */
    VipsSource *source;
    VipsImage *header;
    VipsImage *decoded;       /* the one decode, in memory, at the largest size needed */
    int upright_w, upright_h; /* source dimensions after EXIF orientation */
    int has_profile;          /* a usable ICC profile is embedded */
    int pages;                /* frames or pages in the source */
    pm_format same;           /* what "same" means for this source */
    char hash[PM__HASH_HEX];  /* of the source's bytes */
    int decode_w, decode_h;   /* the one decode's size */
    int all_pages;            /* decode every frame */
    int dc_source;            /* as pm__state.dc_source: from the header or the record */
    int dc;                   /* a progressive JPEG wanted at 1/8 or less: from its DC alone */
    pm__planned *v;           /* n of them, as many as this source's outputs (a job waiting to be
                               * published holds no more) */
    int n;
    pm__state old; /* the record from the last run, if any */
    int have_old;
    char *state_dir, *state_name;
    const char *path; /* the job's (owned by the result), for messages and test hooks */
    char *src;        /* the file read, by its physical path; and the scan's root below */
    size_t root_len;
    uint64_t root_dev;
    pm__worker *w;
    int dirfd;     /* the output folder last opened */
    char *dir_rel; /* and its path below the root */
    /* what the publishing half needs (pm__process_finish, on the reporter's thread) */
    struct stat st; /* the source's, when opened */
    int need_save;  /* the record changes */
    double seconds; /* the worker's half */
    const struct pm__process_ctx *ctx;
} pm__job_state;

static inline int pm__is_animated_format(pm_format f)
{
    return f == PM_FORMAT_GIF || f == PM_FORMAT_WEBP;
}

/* ---- job.c ---- */
/* The job failed as a whole (takes text). */
void pm__job_fail(pm__result *r, int status, int err, char *text);
/* One output failed (takes text). */
void pm__output_fail(pm__planned *v, int status, int err, char *text);
/* The output folder of a name, opened (and created unless dry_run), cached across outputs. */
int pm__job_output_dir(const pm__process_ctx *ctx, pm__job_state *s, const char *name, int *err);
/* What only the worker's half needs goes: the images and every descriptor. */
void pm__job_state_drop_work(pm__job_state *s);
/* All of it, and the temps never published (a failed job). s itself stays. */
void pm__job_state_release(pm__job_state *s);

/* ---- vips.c: libvips ---- */
/* The libvips error text, best effort (the buffer is shared by all threads), on one line, each
 * line once (g_free; NULL when there is none). */
char *pm__vips_error(void);
/* The nickname behind a loader's class name (*nickname), and whether it is blocked. */
int pm__loader_is_blocked(const char *loader, const char **nickname);
/* Why a blocked loader is, and how to let it in: "TIFF: open it with --allow=tiff" (g_free). */
char *pm__loader_blocked_why(const char *loader, const char *nickname);
/* The format 'same' writes for a source read by that loader (nickname). */
pm_format pm__format_for_loader(const char *nickname, VipsImage *header);

/* ---- decode.c ---- */
/* Opens job's source where the scan found it (s->srcdir, s->fd, *st): a non-empty regular
 * file, within --max-file-size. 0, or -1 with r failed. */
int pm__source_open(const pm_options *o, const pm__job *job, pm__job_state *s, pm__result *r,
                    struct stat *st);
/* Sniffs and reads the header (no pixel decoded): the loader policy, the pixel and page caps,
 * the bands; sets the source's facts in s (same, profile, upright size, dc_source). */
int pm__source_read_header(const pm__process_ctx *ctx, pm__job_state *s, pm__result *r);
/* Will the file open at fd (closed here; -1 with errno: it could not be opened) get as far as
 * writing outputs, as its own job would see it? *same: what 'same' is for it. */
int pm__source_may_write(int fd, pm_format *same);
/* The profile libvips converts to for these options (NULL: none). */
const char *pm__export_profile(const pm_options *o, int has_profile);
/* The one decode, into s->decoded, at s->decode_w x s->decode_h. 0, or -1 with r failed. */
int pm__decode_once(const pm__process_ctx *ctx, pm__job_state *s, pm__result *r);

/* ---- plan.c ---- */
/* Is the source as its record says (size, mtime, ctime and inode; or its size and content)?
 * Then s takes the recorded facts and its header need not be read. *have_hash: s->hash is the
 * content's now. */
int pm__plan_source_is_recorded(pm__job_state *s, const struct stat *st, pm__result *r,
                                int *have_hash);
/* Every variant x format for this source, with geometry, the one decode's size, digests and
 * names; two outputs with one name are one (same digest) or the later fails. */
void pm__plan_outputs(const pm__process_ctx *ctx, const pm__job *job, pm__job_state *s);
/* Outputs whose names another source would write too fail (BAD-INPUT 23). */
void pm__plan_refuse_clashes(const pm__process_ctx *ctx, const pm__job *job, pm__job_state *s,
                             const struct stat *ours);
/* Marks the outputs current and those the record says are ours; how many are still to make.
 * *refreshed_any: a current output's mtime moved (the record changes). */
int pm__plan_mark_current(const pm__process_ctx *ctx, pm__job_state *s, int *refreshed_any);
/* Does the record hold an output this plan no longer makes? */
int pm__plan_drops_outputs(const pm__job_state *s);
/* Refuses, before decoding, outputs that would replace this very input or (outputs overlapping
 * inputs) a file this source did not make. How many are still to make. */
int pm__plan_refuse_existing(const pm__process_ctx *ctx, pm__job_state *s, const struct stat *src);

/* ---- encode.c ---- */
/* The image for one output, derived from the one decode; NULL with a libvips error. */
VipsImage *pm__encode_image_for(const pm__process_ctx *ctx, pm__job_state *s, const pm__planned *v);
/* Encodes image into v's temp in its folder (closed, waiting to be published), or fails v. */
void pm__encode_write(const pm__process_ctx *ctx, pm__job_state *s, pm__planned *v,
                      VipsImage *image);

#endif
