/* pixmill: batch image processing on libvips.
 * The one public header: options, batch lifecycle, events, summary, status codes.
 * No libvips or GLib types appear here. */
#ifndef PIXMILL_H
#define PIXMILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PM_BUILDING_LIBRARY) && defined(__GNUC__)
#define PM_EXTERN __attribute__((visibility("default")))
#else
#define PM_EXTERN
#endif

#define PM_VERSION_MAJOR 0
#define PM_VERSION_MINOR 1
#define PM_VERSION_PATCH 0
#define PM_VERSION_STRING "0.1.0"

/* Thread-safe: returns a static string. */
PM_EXTERN const char *pm_version_string(void);

/* Status codes. Zero is success, errors are negative and never renumbered.
 * X(name, value, description) */
#define PM_STATUS_LIST(X)                                                                          \
    X(PM_OK, 0, "success")                                                                         \
    X(PM_ERR_NOMEM, -1, "out of memory")                                                           \
    X(PM_ERR_USAGE, -2, "invalid argument")                                                        \
    X(PM_ERR_IO, -3, "input/output error")                                                         \
    X(PM_ERR_NOT_REGULAR, -4, "not a regular file")                                                \
    X(PM_ERR_UNKNOWN_FORMAT, -5, "not a known image format")                                       \
    X(PM_ERR_BLOCKED, -6, "image format is blocked")                                               \
    X(PM_ERR_DECODE, -7, "image could not be decoded")                                             \
    X(PM_ERR_TOO_MANY_PIXELS, -8, "image exceeds the pixel limit")                                 \
    X(PM_ERR_ENCODE, -9, "image could not be encoded")                                             \
    X(PM_ERR_OUTPUT_IS_INPUT, -10, "output would overwrite an input")                              \
    X(PM_ERR_OUTPUT_EXISTS, -11, "output exists and the output folder overlaps an input folder")   \
    X(PM_ERR_WRITE, -12, "output could not be written")                                            \
    X(PM_ERR_SCAN, -13, "cannot read")                                                             \
    X(PM_ERR_CANCELLED, -14, "cancelled")                                                          \
    X(PM_ERR_INIT, -15, "libvips initialisation failed")                                           \
    X(PM_ERR_OUTPUT_DIR, -16, "output folder is not usable")                                       \
    X(PM_ERR_THREAD, -17, "could not start a thread")                                              \
    X(PM_ERR_SYMLINK, -18, "symbolic link not followed")                                           \
    X(PM_ERR_LOOP, -19, "directory loop")                                                          \
    X(PM_ERR_NAME, -20, "output name is not usable")                                               \
    X(PM_ERR_STATE, -21, "build state could not be written")                                       \
    X(PM_ERR_MANIFEST, -22, "manifest could not be written")                                       \
    X(PM_ERR_CRASHED, -23, "the process died while working on this file")                          \
    X(PM_ERR_TIMEOUT, -24, "timed out")                                                            \
    X(PM_ERR_LIMIT, -25, "over a configured limit")                                                \
    X(PM_ERR_DUPLICATE, -26, "already met under another name")                                     \
    X(PM_ERR_DISK_FULL, -27, "the output file system is full; stopped")                            \
    X(PM_ERR_UNSUPPORTED, -28, "image layout is not supported")

typedef enum pm_status {
#define PM__STATUS_ENUM(name, value, text) name = value,
    PM_STATUS_LIST(PM__STATUS_ENUM)
#undef PM__STATUS_ENUM
} pm_status;

/* Thread-safe: static strings; unknown codes give "unknown status". */
PM_EXTERN const char *pm_strerror(int status);
PM_EXTERN const char *pm_status_name(int status);

typedef enum pm_format {
    PM_FORMAT_SAME = 0, /* the source's format where we can write it, else PNG */
    PM_FORMAT_JPEG,
    PM_FORMAT_PNG,
    PM_FORMAT_WEBP,
    PM_FORMAT_AVIF,
    PM_FORMAT_HEIF, /* HEVC-coded HEIF, written as .heic */
    PM_FORMAT_GIF,
    PM_FORMAT_TIFF
} pm_format;
#define PM_FORMAT_LAST PM_FORMAT_TIFF

/* Parses "jpeg", "jpg", "png", "webp", "avif", "heif", "heic", "gif", "tiff", "tif", "same".
 * Thread-safe. */
PM_EXTERN int pm_format_parse(const char *text, pm_format *out);
/* The file extension written for a format ("jpg", "png", "webp", "avif", "heic", "gif", "tif";
 * "same" for SAME). */
PM_EXTERN const char *pm_format_extension(pm_format format);

typedef enum pm_fail_on {
    PM_FAIL_ON_NONE = 0,  /* decode whatever can be decoded */
    PM_FAIL_ON_TRUNCATED, /* fail on truncated data */
    PM_FAIL_ON_ERROR,     /* fail on truncated data and decoder errors (default) */
    PM_FAIL_ON_WARNING    /* fail on anything the decoder complains about */
} pm_fail_on;

PM_EXTERN int pm_fail_on_parse(const char *text, pm_fail_on *out);

/* How an image meets a box (sharp's meanings). */
typedef enum pm_fit {
    PM_FIT_DEFAULT = 0, /* in a pm_size: use pm_options.fit */
    PM_FIT_INSIDE,      /* within the box, aspect kept (the default) */
    PM_FIT_COVER,       /* covers the box, aspect kept, overflow cropped (pm_options.crop) */
    PM_FIT_CONTAIN,     /* within the box, then padded to it with pm_options.background */
    PM_FIT_FILL,        /* exactly the box, aspect ignored ("WxH!") */
    PM_FIT_OUTSIDE      /* covers the box, aspect kept, nothing cropped ("WxH^") */
} pm_fit;
#define PM_FIT_LAST PM_FIT_OUTSIDE

/* Whether a size may shrink or enlarge the source. */
typedef enum pm_enlarge {
    PM_ENLARGE_NEVER = 0, /* only shrink ("WxH>", the default for boxes and areas) */
    PM_ENLARGE_ONLY,      /* only enlarge ("WxH<"): larger sources are left as they are */
    PM_ENLARGE_ALLOW      /* both ("N%") */
} pm_enlarge;

/* Which part of an image fit=cover keeps. */
typedef enum pm_crop {
    PM_CROP_CENTRE = 0,
    PM_CROP_NORTH,
    PM_CROP_SOUTH,
    PM_CROP_EAST,
    PM_CROP_WEST,
    PM_CROP_NORTHEAST,
    PM_CROP_NORTHWEST,
    PM_CROP_SOUTHEAST,
    PM_CROP_SOUTHWEST,
    PM_CROP_ATTENTION, /* libvips' smartcrop: most interesting region */
    PM_CROP_ENTROPY
} pm_crop;
#define PM_CROP_LAST PM_CROP_ENTROPY

/* One requested size: a box, a percentage or a pixel area. */
typedef struct pm_size {
    int width; /* box; 0 leaves an axis free (never both, for a box) */
    int height;
    int percent;        /* "N%": scale by N/100, 1..1000; the box is unused */
    uint64_t area;      /* "N@": at most N pixels, aspect kept; the box is unused */
    pm_fit fit;         /* set by a modifier ('!' FILL, '^' OUTSIDE), else DEFAULT */
    pm_enlarge enlarge; /* set by '>' and '<'; "N%" allows both */
} pm_size;

#define PM_SIZE_MAX 100000

/* Parses "N" (NxN box), "WxH", "Wx", "xH", each number 1..PM_SIZE_MAX, optionally followed by
 * one modifier: '>' only shrink (the default), '<' only enlarge, '!' exactly the box, '^' cover
 * the box; or "N%" (1..1000) or "N@" (a pixel area). *out is written only on success.
 * Thread-safe. */
PM_EXTERN int pm_size_parse(const char *text, pm_size *out);
/* The label a size gives output names when there are several: "N" for NxN and Nx, "xH", "WxH",
 * "Npct", "Npx". Modifiers do not change it. Writes at most n bytes (NUL included). */
PM_EXTERN void pm_size_label(const pm_size *size, char *buf, size_t n);

/* Where a size takes a source of src_w x src_h (after EXIF orientation): it is resized to
 * resize_width x resize_height, then cropped (cover) or padded (contain) to width x height. */
typedef struct pm_geometry {
    int resize_width, resize_height;
    int width, height;
} pm_geometry;

/* fit is used where the size has none of its own (PM_FIT_DEFAULT means INSIDE); auto_swap turns
 * a box to match the source's orientation (a 1280x720 box takes a portrait photo as 720x1280).
 * Scales round to nearest; every dimension is at least 1. Thread-safe. */
PM_EXTERN void pm_geometry_compute(const pm_size *size, pm_fit fit, int auto_swap, int src_w,
                                   int src_h, pm_geometry *out);

/* "inside", "cover", "contain", "fill", "outside"; and crop gravities "centre" ("center"),
 * "north", ..., "southwest", "attention", "entropy". Thread-safe. */
PM_EXTERN int pm_fit_parse(const char *text, pm_fit *out);
PM_EXTERN int pm_crop_parse(const char *text, pm_crop *out);
/* "#rgb", "#rrggbb", "#rrggbbaa", "white", "black", "transparent" into RGBA. Thread-safe. */
PM_EXTERN int pm_color_parse(const char *text, unsigned char rgba[4]);

/* Metadata to carry into outputs (bit set). */
#define PM_KEEP_NONE 0u
#define PM_KEEP_ICC 1u  /* the output's colour profile */
#define PM_KEEP_EXIF 2u /* camera EXIF (orientation rewritten to 1: the pixels are upright) */
#define PM_KEEP_XMP 4u
#define PM_KEEP_ALL 0xFFu /* also IPTC and Photoshop blocks */
/* "none", "icc", "exif", "xmp", "all", or a comma-separated list. Thread-safe. */
PM_EXTERN int pm_keep_parse(const char *text, unsigned *out);

/* The colour space outputs are written in. */
typedef enum pm_profile {
    PM_PROFILE_SRGB = 0, /* convert through the embedded profile to sRGB (default) */
    PM_PROFILE_P3,       /* convert to Display P3 and attach it */
    PM_PROFILE_KEEP,     /* leave the pixels in the source's space and attach its profile */
    PM_PROFILE_FILE      /* convert to pm_options.profile_file and attach it */
} pm_profile;

typedef enum pm_intent {
    PM_INTENT_RELATIVE = 0, /* default */
    PM_INTENT_PERCEPTUAL,
    PM_INTENT_SATURATION,
    PM_INTENT_ABSOLUTE
} pm_intent;
/* "srgb", "p3", "keep", or a path (PM_PROFILE_FILE, *file set to text); and intents
 * "relative", "perceptual", "saturation", "absolute". Thread-safe. */
PM_EXTERN int pm_profile_parse(const char *text, pm_profile *out, const char **file);
PM_EXTERN int pm_intent_parse(const char *text, pm_intent *out);

/* Chroma subsampling for JPEG, AVIF and HEIC. */
typedef enum pm_subsample {
    PM_SUBSAMPLE_AUTO = 0, /* 4:2:0 below quality 90, else 4:4:4 (libvips' rule) */
    PM_SUBSAMPLE_ON,
    PM_SUBSAMPLE_OFF
} pm_subsample;
/* "auto", "on", "off". Thread-safe. */
PM_EXTERN int pm_subsample_parse(const char *text, pm_subsample *out);

#define PM_MAX_SIZES 16
#define PM_MAX_VARIANTS PM_MAX_SIZES
#define PM_MAX_FORMATS 8
#define PM_INHERIT (-1)

/* One named output size with its own settings (a recipe's [variant NAME]); unset fields take
 * the batch's. */
typedef struct pm_variant {
    const char *name;                  /* the {variant} token; NULL: the size's label; copied */
    pm_size size;                      /* size.fit DEFAULT: pm_options.fit */
    int crop;                          /* a pm_crop, or PM_INHERIT: pm_options.crop */
    pm_format formats[PM_MAX_FORMATS]; /* n_formats 0: pm_options.formats */
    int n_formats;
    int quality;               /* 0: pm_options.quality */
    const char *name_template; /* NULL: pm_options.name_template; copied at create */
} pm_variant;

#define PM_OPTIONS_VERSION 2
#define PM_DEFAULT_MAX_PIXELS 268402689ULL /* 0x3FFF squared, as sharp */
#define PM_DEFAULT_SIZE 256
#define PM_DEFAULT_MAX_PAGES 10000
#define PM_DEFAULT_DECODE_BUDGET (256ULL << 20) /* bytes */

typedef struct pm_options {
    unsigned version;                  /* PM_OPTIONS_VERSION */
    const char *output_dir;            /* required; created if missing; copied at create */
    pm_size sizes[PM_MAX_SIZES];       /* boxes to fit in; every size x every format */
    int n_sizes;                       /* 1..PM_MAX_SIZES */
    pm_format formats[PM_MAX_FORMATS]; /* output formats */
    int n_formats;                     /* 1..PM_MAX_FORMATS */
    int quality;                       /* 1..100; 0 = the format's default */
    int effort;                        /* 1 (fastest)..10; 0 = each format's default */
    int lossless;                      /* WebP, AVIF, HEIC lossless */
    int progressive;                   /* progressive JPEG, interlaced PNG and GIF */
    pm_subsample subsample;            /* chroma subsampling */
    int palette;                       /* PNG quantised to an 8-bit palette */
    int animated;                      /* keep every frame in GIF and WebP outputs */
    int jobs;                          /* worker threads; 0 = usable cores */
    int queue_capacity;                /* bounded queue size; 0 = auto */
    pm_fit fit;                        /* for sizes without a modifier; default INSIDE */
    pm_crop crop;                      /* what fit=cover keeps; default CENTRE */
    unsigned char background[4];       /* RGBA: JPEG flattening, fit=contain padding */
    int auto_swap;                     /* turn boxes to the source's orientation */
    unsigned keep;                     /* PM_KEEP_* bits; default NONE */
    pm_profile profile;                /* output colour space; default SRGB */
    const char *profile_file;          /* ICC file for PM_PROFILE_FILE; copied at create */
    pm_intent intent;                  /* rendering intent of conversions */
    int no_rotate;                     /* ignore EXIF orientation */
    uint64_t max_pixels;               /* width x height x pages cap; 0 = no cap */
    uint64_t max_file_size;            /* bytes; larger sources are refused unread; 0 = none */
    int max_pages;                     /* frames or pages; more are refused; 0 = none */
    /* Some decodes hold the whole image before it shrinks: progressive JPEG (libjpeg keeps
     * every coefficient, 2 bytes each: 3 bytes a pixel at 4:2:0, 6 at 4:4:4), interlaced PNG
     * (the image), HEIC/AVIF (libheif: about 8 bytes a pixel). Their estimated sizes, summed
     * over the decodes running at once, stay within this many bytes; one larger than the
     * budget runs alone. First come, first served. 0 = no limit; default
     * PM_DEFAULT_DECODE_BUDGET. */
    uint64_t decode_budget;
    pm_fail_on fail_on; /* decoder strictness */
    int include_hidden; /* walk dot files and dot folders */
    /* version 2: build-step mode */
    pm_variant variants[PM_MAX_VARIANTS]; /* when n_variants > 0 they replace sizes */
    int n_variants;
    /* Output path below output_dir. Tokens {stem} {ext} {w} {h} {variant} {dir} {hash}; without
     * {dir} the name is placed in the source's mirrored folder. NULL: "{stem}.{ext}", or
     * "{stem}-{variant}.{ext}" with several variants. Copied at create. */
    const char *name_template;
    int force;                 /* rebuild outputs that are up to date */
    int dry_run;               /* read headers, decide, report; write nothing */
    int prune;                 /* after the run, remove outputs whose source is gone */
    const char *manifest_path; /* JSON manifest written at the end; NULL: none; copied */
    /* Supervision (see pm_event.seq). Every entry the scan meets (a source, a skipped entry, a
     * scan error) gets a sequence number from 1, in scan order. */
    int journal_fd;      /* -1 (default): none. Else one line per event, written whole:
                            "S <seq> <dev> <ino> <escaped path>" when a worker starts a
                            source, "E <seq> <type> <status> <outputs> <bytes_in> <bytes_out>
                            <dev> <ino> <json>" after its event is delivered (scan events too;
                            json as pm_event_to_json), "K <seq> <dev> <ino>" for a source
                            passed over by pm_batch_skip_file, and "X" when
                            pm_batch_check_replay finds the entries changed. dev and ino: the
                            source as the scan saw it, 0 0 for entries that are not sources */
    uint64_t skip_below; /* entries with seq below this are passed over unreported */
    uint64_t stop_after; /* 0: none; else the scan stops before this seq */
    /* Lanes: batches in several processes sharing one scan (pixmill's supervisor runs one
     * engine process a core this way). Both ends are of one AF_UNIX SOCK_SEQPACKET pair;
     * -1 (default): none. */
    int lane_send_fd; /* the scan sends each job here instead of to this batch's workers, and
                         shuts it down for writing when it ends (so do the receivers learn) */
    int lane_recv_fd; /* this batch's workers take their jobs from here, each when it is
                         free; it scans nothing itself unless lane_send_fd is set too */
    int lanes;        /* processes sharing decode_budget (through a lock file below
                         output_dir): each may hold budget / lanes, a larger decode holds it
                         all. 0 or 1: this batch alone */
} pm_options;

/* Fills defaults. Thread-safe. */
PM_EXTERN void pm_options_init(pm_options *opts);
/* PM_OK when pm_batch_create would accept opts; otherwise PM_ERR_USAGE and, when why is not
 * NULL, a one-line reason in why (at most why_size bytes). Thread-safe. */
PM_EXTERN int pm_options_check(const pm_options *opts, char *why, size_t why_size);

/* A recipe: an INI file (GLib key file) with a [defaults] group of options and one
 * [variant NAME] group per output size (size, fit, crop, format, quality, name). */
typedef struct pm_recipe pm_recipe;
/* *out is written only on success; on failure why says which file, group and key. */
PM_EXTERN int pm_recipe_load(pm_recipe **out, const char *path, char *why, size_t why_size);
/* Applies the recipe over opts. Strings in opts then point into the recipe: keep it until
 * pm_batch_create has copied them. */
PM_EXTERN void pm_recipe_apply(const pm_recipe *recipe, pm_options *opts);
/* NULL is a no-op. */
PM_EXTERN void pm_recipe_free(pm_recipe *recipe);
/* A built-in preset as a recipe: small, medium, large, email, web, square. An unknown name is
 * PM_ERR_USAGE, with the names in why. */
PM_EXTERN int pm_recipe_preset(pm_recipe **out, const char *name, char *why, size_t why_size);
/* The i-th preset's name and a line saying what it makes; NULL past the last. */
PM_EXTERN const char *pm_preset_name(int i);
PM_EXTERN const char *pm_preset_summary(int i);

/* Once per process, from the main thread, before any batch; argv0 may be NULL.
 * Starts libvips with its own concurrency at 1, the operation cache off and untrusted
 * loaders blocked. Returns PM_OK or PM_ERR_INIT. */
PM_EXTERN int pm_global_init(const char *argv0);
/* Unblocks one untrusted loader for the whole process: "svg", "pdf", "magick", "jp2k", "jxl",
 * "ppm", "fits", "openexr", "openslide", "mat", "rad", "analyze", "csv", "matrix", "raw",
 * "vips", and "tiff" (blocked by pixmill on libvips 8.14.1). After pm_global_init, before any batch
 * runs; not thread-safe. PM_ERR_USAGE for a name that is not one of those or that this libvips
 * lacks. */
PM_EXTERN int pm_loader_allow(const char *format);

/* After every batch is destroyed, from the main thread. */
PM_EXTERN void pm_global_shutdown(void);

typedef struct pm_batch pm_batch;

/* Passes over the source that is this file (device and inode as the scan sees it), with a
 * "K" journal line and no event: a supervisor's restart passing over a file that crashed an
 * engine, whatever its place in the scan. Before run. */
PM_EXTERN int pm_batch_skip_file(pm_batch *batch, uint64_t dev, uint64_t ino);
/* A supervisor's restart replays the entries below seq `below`, which an earlier engine met:
 * digest is pm_journal_mix over each (seq, dev, ino) of them, in order. When the scan's own
 * entries below `below` differ (the tree changed between the engines, so seqs name other
 * entries), the journal says "X". Before run. */
PM_EXTERN int pm_batch_check_replay(pm_batch *batch, uint64_t below, uint64_t digest);
/* The journal's running digest: digest followed by the entry (seq, dev, ino). Thread-safe. */
PM_EXTERN uint64_t pm_journal_mix(uint64_t digest, uint64_t seq, uint64_t dev, uint64_t ino);

/* Validates and copies opts. *out is written only on success. Not thread-safe per batch. */
PM_EXTERN int pm_batch_create(pm_batch **out, const pm_options *opts);
/* A file or a folder (walked). Copied. Call before run. */
PM_EXTERN int pm_batch_add_input(pm_batch *batch, const char *path);
/* A stream of paths separated by delim ('\n' or '\0'), read lazily during the run.
 * The descriptor is duplicated; the caller keeps its own. Call before run. */
PM_EXTERN int pm_batch_add_file_list(pm_batch *batch, int fd, char delim);

typedef enum pm_event_type {
    PM_EVENT_DONE,       /* every output of a source was written */
    PM_EVENT_FAILED,     /* a source, or one of its outputs, failed; status says why */
    PM_EVENT_SKIPPED,    /* passed over: status PM_OK when every output is up to date,
                            otherwise why (not regular, link, ...) */
    PM_EVENT_SCAN_ERROR, /* a folder or list entry could not be read */
    PM_EVENT_PLANNED,    /* dry run: the outputs that would be written (current ones marked) */
    PM_EVENT_PRUNED,     /* prune: outputs of a source that is gone, removed (or would be) */
    PM_EVENT_PASSED_OVER /* a walk met an entry it does not take; message says why (not an
                          * image name, a dot name, pixmill's own temp or output folder) */
} pm_event_type;

/* One output of a source: a size x format variant. */
typedef struct pm_output {
    const char *path;    /* final path */
    const char *name;    /* the same, below the output folder */
    const char *variant; /* the variant's name ({variant}) */
    pm_format format;    /* resolved (never SAME) */
    int size_index;      /* into the variants (pm_options.variants, else .sizes) */
    int current;         /* was up to date and left as it was */
    int width, height;   /* pixels written */
    uint64_t bytes;      /* bytes written */
    int status;          /* PM_OK, or why this output was not written */
    int sys_errno;       /* errno behind the failure, or 0 */
    const char *message; /* detail, or NULL */
} pm_output;

/* Every pointer is borrowed for the duration of the callback only. */
typedef struct pm_event {
    pm_event_type type;
    const char *source;  /* the path as found (not escaped) */
    const char *output;  /* the first output's path, or NULL */
    int status;          /* pm_status */
    int sys_errno;       /* errno behind the failure, or 0 */
    const char *message; /* detail, or NULL; best-effort text from the decoder */
    uint64_t bytes_in;
    uint64_t bytes_out; /* all outputs together */
    int source_width, source_height;
    int width, height;        /* of the first output */
    int n_outputs;            /* DONE and FAILED: the variants of this source */
    const pm_output *outputs; /* n_outputs of them; a FAILED source may have written some */
    int decodes;              /* full decodes this source took: 1 for any number of outputs */
    double seconds;           /* time spent on this source */
    uint64_t seq;             /* scan order, from 1; 0 for events outside the scan */
} pm_event;

/* Called from the thread that runs pm_batch_run, one event at a time. Must not call back into
 * the batch. A non-zero return asks for cancellation. */
typedef int (*pm_event_cb)(const pm_event *event, void *user_data);

typedef struct pm_summary {
    uint64_t processed;   /* sources with every output written */
    uint64_t outputs;     /* outputs written */
    uint64_t skipped;     /* entries passed over */
    uint64_t up_to_date;  /* sources whose every output was current (not counted as skipped) */
    uint64_t pruned;      /* outputs removed by prune */
    uint64_t temps_swept; /* temp files of a run that died (SIGKILL, power) removed at start */
    uint64_t failed;      /* sources that failed */
    uint64_t scan_errors; /* folders or list entries that could not be read */
    uint64_t passed_over; /* other entries a walk met and did not take (PM_EVENT_PASSED_OVER) */
    uint64_t bytes_in, bytes_out;
    double wall_seconds, cpu_seconds;
    int jobs; /* workers used */
} pm_summary;

/* Runs the batch to completion, blocking; events are serialised through on_event (may be NULL).
 * Returns PM_OK when the batch ran (failed files are counted in the summary, not returned),
 * PM_ERR_CANCELLED when cancelled, PM_ERR_DISK_FULL when outputs kept failing with ENOSPC or
 * EDQUOT and the batch stopped early, or a fatal status (PM_ERR_OUTPUT_DIR, PM_ERR_THREAD, ...)
 * when nothing could be processed. summary may be NULL. Once per batch. */
PM_EXTERN int pm_batch_run(pm_batch *batch, pm_event_cb on_event, void *user_data,
                           pm_summary *summary);
/* Any thread, async-signal-unsafe: stops dispatching; in-flight sources finish. */
PM_EXTERN void pm_batch_cancel(pm_batch *batch);
/* NULL is a no-op. Not while run is in progress. */
PM_EXTERN void pm_batch_destroy(pm_batch *batch);

/* One line of JSON (no newline) for an event, as the --json stream prints it; names that are
 * not UTF-8 are given lossily in "path" and exactly, percent-escaped, in "url" / "source_url".
 * Free with pm_free. Thread-safe. */
PM_EXTERN char *pm_event_to_json(const pm_event *event);
PM_EXTERN void pm_free(void *p);

/* Usable CPUs: affinity mask and cgroup v2 quota. Thread-safe. */
PM_EXTERN int pm_default_jobs(void);

#ifdef __cplusplus
}
#endif
#endif
