/* One job: open the source by descriptor, sniff and check the header, decode with
 * shrink-on-load, encode to a temp file in the destination folder, publish atomically.
 * libvips never sees a path: it reads from our descriptor and writes to our temp descriptor. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>
/* after vips.h: vector.h relies on its macros */
#include <vips/vector.h>
#include <xxhash.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void silence_vips_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
                             gpointer user_data)
{
    /* libvips warnings come from its own threads and cannot be tied to a file; the per-file
     * outcome is decided from return codes. */
    (void)domain, (void)level, (void)message, (void)user_data;
}

int pm__vips_init(const char *argv0)
{
    if (VIPS_INIT(argv0 ? argv0 : "pixmill") != 0)
        return PM_ERR_INIT;
    vips_concurrency_set(1); /* parallelism is across images; see LIBVIPS-NOTES */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_block_untrusted_set(TRUE);
    /* TIFF too, though libvips counts it trusted: Debian 12's 8.14.1 lacks the TIFF loader
     * fixes of 8.14.2. --allow=tiff opens it. */
    vips_operation_block_set("VipsForeignLoadTiff", TRUE);
    /* And libvips' text matrix format, which 8.14 leaves open: any text file starting "W H"
     * under an image name was decoded as an image (found by listing every open loader). */
    vips_operation_block_set("VipsForeignLoadMatrix", TRUE);
    /* liborc (Debian 12: 0.4.33) is not safe when our workers compile vector programs at the
     * same time: libvips compiles one for each resize it builds, and two workers doing so
     * corrupted the heap ("malloc_consolidate(): unaligned fastbin chunk", SIGSEGV in
     * orc_code_allocate_codemem under ASan) about once in 5 runs of 3,000 tiny PNGs at -j2.
     * libvips' C paths are used instead. */
    vips_vector_set_enabled(FALSE);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      silence_vips_log, NULL);
    return PM_OK;
}

/* The loaders pixmill blocks unless --allow names them, by that name. */
static const struct {
    const char *name, *klass;
} allowable[] = {{"svg", "VipsForeignLoadSvg"},
                 {"pdf", "VipsForeignLoadPdf"},
                 {"magick", "VipsForeignLoadMagick"},
                 {"jp2k", "VipsForeignLoadJp2k"},
                 {"jxl", "VipsForeignLoadJxl"},
                 {"ppm", "VipsForeignLoadPpm"},
                 {"fits", "VipsForeignLoadFits"},
                 {"openexr", "VipsForeignLoadOpenexr"},
                 {"openslide", "VipsForeignLoadOpenslide"},
                 {"mat", "VipsForeignLoadMat"},
                 {"rad", "VipsForeignLoadRad"},
                 {"analyze", "VipsForeignLoadAnalyze"},
                 {"csv", "VipsForeignLoadCsv"},
                 {"matrix", "VipsForeignLoadMatrix"},
                 {"raw", "VipsForeignLoadRaw"},
                 {"vips", "VipsForeignLoadVips"},
                 {"tiff", "VipsForeignLoadTiff"}};

int pm_loader_allow(const char *format)
{
    for (size_t i = 0; format && i < G_N_ELEMENTS(allowable); i++) {
        if (strcmp(format, allowable[i].name) != 0)
            continue;
        /* A name libvips does not know is ignored silently by vips_operation_block_set: check */
        if (!g_type_from_name(allowable[i].klass))
            return PM_ERR_USAGE;
        vips_operation_block_set(allowable[i].klass, FALSE);
        return PM_OK;
    }
    return PM_ERR_USAGE;
}

void pm__vips_shutdown(void)
{
    vips_shutdown();
}

void pm__vips_thread_shutdown(void)
{
    vips_thread_shutdown();
}

/* The libvips error text, best effort (the buffer is shared by all threads), on one line, each
 * line once (a loader that fails in its header and again in its load says the same twice). */
static char *take_vips_error(void)
{
    char *text = vips_error_buffer_copy();
    if (!text)
        return NULL;
    gchar **lines = g_strsplit(text, "\n", -1);
    g_free(text);
    GString *one = g_string_new(NULL);
    for (int i = 0; lines[i]; i++) {
        g_strstrip(lines[i]);
        int seen = !*lines[i];
        for (int k = 0; k < i && !seen; k++)
            seen = strcmp(lines[k], lines[i]) == 0;
        if (!seen)
            g_string_append_printf(one, "%s%s", one->len ? ";" : "", lines[i]);
    }
    g_strfreev(lines);
    if (!one->len) {
        g_string_free(one, TRUE);
        return NULL;
    }
    return g_string_free(one, FALSE);
}

static const char *fail_on_string(pm_fail_on f)
{
    switch (f) {
    case PM_FAIL_ON_NONE:
        return "fail_on=none";
    case PM_FAIL_ON_TRUNCATED:
        return "fail_on=truncated";
    case PM_FAIL_ON_WARNING:
        return "fail_on=warning";
    case PM_FAIL_ON_ERROR:
    default:
        return "fail_on=error";
    }
}

/* "TIFF: open it with --allow=tiff": which format, and how to let it in. */
static char *blocked_why(const char *loader, const char *nickname)
{
    GType type = g_type_from_name(loader);
    for (size_t i = 0; type && i < G_N_ELEMENTS(allowable); i++) {
        GType k = g_type_from_name(allowable[i].klass);
        if (k && g_type_is_a(type, k)) {
            char *up = g_ascii_strup(allowable[i].name, -1);
            char *why = g_strdup_printf("%s: open it with --allow=%s", up, allowable[i].name);
            g_free(up);
            return why;
        }
    }
    return g_strdup_printf("loader %s", nickname);
}

/* The class behind a loader name, and whether vips_block_untrusted_set() blocked it: the
 * sniffer still returns blocked loaders (measured on 8.14.1). */
static int loader_is_blocked(const char *loader, const char **nickname)
{
    GType type = g_type_from_name(loader);
    *nickname = loader;
    if (!type)
        return 0;
    VipsOperationClass *klass = g_type_class_ref(type);
    int blocked = (klass->flags & VIPS_OPERATION_BLOCKED) != 0;
    *nickname = VIPS_OBJECT_CLASS(klass)->nickname;
    g_type_class_unref(klass);
    return blocked;
}

/* An embedded ICC profile that libvips can apply to this image. A corrupt one (a 7-byte
 * "profile" in the corpus) made the sRGB conversion fail the whole file; it is ignored instead
 * and the pixels taken as sRGB, as libvips does without export_profile. */
static int usable_profile(VipsImage *header)
{
    const void *data;
    size_t length;
    if (!vips_image_get_typeof(header, VIPS_META_ICC_NAME) ||
        vips_image_get_blob(header, VIPS_META_ICC_NAME, &data, &length) != 0)
        return 0;
    int ok = length >= 128 && vips_icc_is_compatible_profile(header, data, length);
    vips_error_clear(); /* the check reports why not; for us that is not a failure */
    return ok;
}

/* The format 'same' writes for a source: its own where we can write it, else PNG (lossless,
 * keeps alpha). */
static pm_format format_for_loader(const char *nickname, VipsImage *header)
{
    static const struct {
        const char *prefix;
        pm_format format;
    } map[] = {{"jpegload", PM_FORMAT_JPEG},
               {"webpload", PM_FORMAT_WEBP},
               {"gifload", PM_FORMAT_GIF},
               {"tiffload", PM_FORMAT_TIFF},
               {"pngload", PM_FORMAT_PNG}};
    for (size_t i = 0; i < G_N_ELEMENTS(map); i++)
        if (g_str_has_prefix(nickname, map[i].prefix))
            return map[i].format;
    if (g_str_has_prefix(nickname, "heifload")) {
        const char *compression = NULL;
        if (vips_image_get_typeof(header, "heif-compression") &&
            vips_image_get_string(header, "heif-compression", &compression) == 0 && compression &&
            strcmp(compression, "av1") == 0)
            return PM_FORMAT_AVIF;
        return PM_FORMAT_HEIF;
    }
    return PM_FORMAT_PNG;
}

/* --effort 1..10 onto a format's own range lo..hi; 0 keeps the format's default. */
static int effort_for(int effort, int lo, int hi, int dflt)
{
    if (effort == 0)
        return dflt;
    return lo + (effort - 1) * (hi - lo) / 9;
}

static int save(VipsImage *image, VipsTarget *target, pm_format format, const pm_options *o,
                int quality, int strip)
{
    static const VipsForeignSubsample subsample[] = {
        VIPS_FOREIGN_SUBSAMPLE_AUTO, VIPS_FOREIGN_SUBSAMPLE_ON, VIPS_FOREIGN_SUBSAMPLE_OFF};
    int q = quality;
    switch (format) {
    case PM_FORMAT_JPEG:
        return vips_jpegsave_target(image, target, "Q", q ? q : 80, "strip", strip,
                                    "optimize_coding", TRUE, "interlace", o->progressive,
                                    "subsample_mode", subsample[o->subsample], NULL);
    case PM_FORMAT_WEBP:
        return vips_webpsave_target(image, target, "Q", q ? q : 80, "strip", strip, "lossless",
                                    o->lossless, "effort", effort_for(o->effort, 0, 6, 4),
                                    "smart_subsample", o->subsample == PM_SUBSAMPLE_OFF, NULL);
    case PM_FORMAT_AVIF:
    case PM_FORMAT_HEIF:
        return vips_heifsave_target(image, target, "Q", q ? q : 50, "compression",
                                    format == PM_FORMAT_AVIF ? VIPS_FOREIGN_HEIF_COMPRESSION_AV1
                                                             : VIPS_FOREIGN_HEIF_COMPRESSION_HEVC,
                                    "strip", strip, "lossless", o->lossless, "effort",
                                    effort_for(o->effort, 0, 9, 4), "subsample_mode",
                                    subsample[o->subsample], NULL);
    case PM_FORMAT_GIF:
        return vips_gifsave_target(image, target, "strip", strip, "effort",
                                   effort_for(o->effort, 1, 10, 7), "interlace", o->progressive,
                                   NULL);
    case PM_FORMAT_TIFF:
        return vips_tiffsave_target(image, target, "compression",
                                    VIPS_FOREIGN_TIFF_COMPRESSION_DEFLATE, "strip", strip, NULL);
    case PM_FORMAT_PNG:
    default:
        return vips_pngsave_target(image, target, "strip", strip, "interlace", o->progressive,
                                   "palette", o->palette, "effort", effort_for(o->effort, 1, 10, 7),
                                   NULL);
    }
}

/* Metadata goes before any saver sees the image: "strip" is not enough, since webpsave in
 * libvips 8.14.1 ignores it and wrote the camera's EXIF and ICC profile into every WebP, and
 * rebuilds an EXIF block from the exif-* fields even without the exif-data blob. */
/* Which metadata bits a field belongs to; 0 for a field that is not metadata. */
static unsigned metadata_kind(const char *name)
{
    if (strcmp(name, VIPS_META_ICC_NAME) == 0)
        return PM_KEEP_ICC;
    if (strcmp(name, VIPS_META_EXIF_NAME) == 0 || g_str_has_prefix(name, "exif-") ||
        strcmp(name, VIPS_META_ORIENTATION) == 0)
        return PM_KEEP_EXIF;
    if (strcmp(name, VIPS_META_XMP_NAME) == 0)
        return PM_KEEP_XMP;
    if (strcmp(name, VIPS_META_IPTC_NAME) == 0 || strcmp(name, VIPS_META_PHOTOSHOP_NAME) == 0)
        return PM_KEEP_ALL & ~(PM_KEEP_ICC | PM_KEEP_EXIF | PM_KEEP_XMP);
    return 0;
}

/* Keep only the metadata asked for. The orientation field goes, or becomes 1 with kept EXIF:
 * the pixels are already upright. */
static int drop_metadata(VipsImage **image, unsigned keep)
{
    VipsImage *copy = NULL;
    if (vips_copy(*image, &copy, NULL) != 0)
        return -1;
    gchar **names = vips_image_get_fields(copy);
    for (int i = 0; names[i]; i++) {
        unsigned kind = metadata_kind(names[i]);
        if (kind && !(kind & keep))
            vips_image_remove(copy, names[i]);
    }
    g_strfreev(names);
    if (keep & PM_KEEP_EXIF)
        vips_image_set_int(copy, VIPS_META_ORIENTATION, 1);
    g_object_unref(*image);
    *image = copy;
    return 0;
}

/* JPEG has no alpha: flatten on white rather than let the saver drop it (transparent areas
 * would come out as whatever colour they hold, often black). */
static int flatten_if_needed(VipsImage **image, pm_format format, const unsigned char bg[4])
{
    if (format != PM_FORMAT_JPEG || !vips_image_hasalpha(*image))
        return 0;
    VipsImage *flat = NULL;
    VipsArrayDouble *background =
        (*image)->Bands == 2
            ? vips_array_double_newv(1, (double)bg[0])
            : vips_array_double_newv(3, (double)bg[0], (double)bg[1], (double)bg[2]);
    int rc = vips_flatten(*image, &flat, "background", background, NULL);
    vips_area_unref(VIPS_AREA(background));
    if (rc != 0)
        return -1;
    g_object_unref(*image);
    *image = flat;
    return 0;
}

/* One output of a source: a variant x a resolved format, and what became of it. */
typedef struct variant {
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
} variant;

#ifdef PM_TEST_HOOKS
/* Test builds only: a source whose path contains $PIXMILL_TEST_HANG_WRITING hangs with its
 * first output written to a temp, not yet renamed (proves temps of a killed engine go). */
static void test_hang_writing(const char *source)
{
    const char *hang = getenv("PIXMILL_TEST_HANG_WRITING"); // NOLINT(concurrency-mt-unsafe)
    while (source && hang && *hang && strstr(source, hang))
        sleep(60);
}
#endif

typedef struct job_state {
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
    variant *v; /* n of them, as many as this source's outputs (a job waiting to be published
                 * holds no more) */
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
} job_state;

/* What only the worker's half needs: the images and every descriptor. */
static void job_state_drop_work(job_state *s)
{
    VIPS_UNREF(s->decoded);
    VIPS_UNREF(s->header);
    VIPS_UNREF(s->source);
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->dirfd = -1;
    g_free(s->dir_rel);
    s->dir_rel = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->srcdir >= 0)
        close(s->srcdir);
    s->srcdir = -1;
}

static int output_dir(const pm__process_ctx *ctx, job_state *s, const char *name, int *err);

static void job_state_release(job_state *s)
{
    const pm__process_ctx *ctx = s->ctx;
    for (int i = 0; i < s->n; i++) { /* temps never published (a failed job) */
        variant *v = &s->v[i];
        int err;
        if (v->temp.name[0] && output_dir(ctx, s, v->name, &err) == PM_OK) {
            v->temp.dirfd = s->dirfd;
            v->temp.fd = -1;
            pm__publish_abort(&v->temp);
        }
        v->temp.name[0] = '\0';
    }
    job_state_drop_work(s);
    for (int i = 0; i < s->n; i++) {
        g_free(s->v[i].name);
        g_free((char *)s->v[i].out.message);
    }
    g_free(s->v);
    s->v = NULL;
    s->n = 0;
    pm__state_clear(&s->old);
    g_free(s->state_dir);
    g_free(s->state_name);
    g_free(s->src);
}

void pm__result_link(pm__result *r)
{
    r->ev.source = r->source;
    r->ev.message = r->message;
    r->ev.outputs = r->outputs;
    r->ev.output = r->ev.n_outputs > 0 ? r->outputs[0].path : NULL;
}

static void job_state_release(job_state *s);

void pm__result_free(pm__result *r)
{
    if (!r)
        return;
    if (r->tail) { /* dropped unfinished (not expected): its temps go, nothing is published */
        job_state *s = r->tail;
        job_state_release(s);
        g_free(s);
    }
    for (int i = 0; i < r->ev.n_outputs; i++) {
        g_free((char *)r->outputs[i].path);
        g_free((char *)r->outputs[i].name);
        g_free((char *)r->outputs[i].variant);
        g_free((char *)r->outputs[i].message);
    }
    g_free(r->outputs);
    g_free(r->source);
    g_free(r->message);
    g_free(r);
}

static void fail(pm__result *r, int status, int err, char *text)
{
    r->ev.type = PM_EVENT_FAILED;
    r->ev.status = status;
    r->ev.sys_errno = err;
    g_free(r->message);
    r->message = text;
}

static void fail_output(variant *v, int status, int err, char *text)
{
    v->out.status = status;
    v->out.sys_errno = err;
    g_free((char *)v->out.message);
    v->out.message = text;
}

/* The output folder of a name, opened (and created unless dry_run), cached across outputs. */
static int output_dir(const pm__process_ctx *ctx, job_state *s, const char *name, int *err)
{
    const char *slash = strrchr(name, '/');
    char *rel = slash ? g_strndup(name, (gsize)(slash - name)) : g_strdup("");
    if (s->dirfd >= 0 && strcmp(rel, s->dir_rel) == 0) {
        g_free(rel);
        return PM_OK;
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->dirfd = -1;
    g_free(s->dir_rel);
    s->dir_rel = rel;
    return pm__publish_open_dir(ctx->out_rootfd, rel, &s->dirfd, err);
}

static const char *base_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

/* The temp's bytes go through pixmill's own writes, not libvips' descriptor target: libvips
 * 8.14 can call a save done after one of its writes failed. A PNG's write of 8,204 bytes wrote
 * 3,278 (the disk was full), the rest failed with ENOSPC, another temp was removed meanwhile,
 * and the final flush wrote the whole buffer again: pngsave returned success for a file with
 * 3,278 bytes doubled inside, and pixmill published it (check_fault real_full_disk, about one
 * run in ten; write_fails_once_midway every time). Here the first failure sticks: each later
 * write fails too, and the output fails whatever the saver returns, with that errno. */
typedef struct checked_fd {
    int fd;
    int err;            /* the first failed write's errno, 0 while all went well */
    unsigned long sync; /* bumped after each call */
} checked_fd;

/* libvips calls these from its own threads and the worker reads err after the save; libvips
 * orders them with GLib locks ThreadSanitizer cannot see, so the order is also made explicit:
 * each call ends with a release, the worker begins with an acquire (checked_error). */
static void checked_done(checked_fd *c)
{
    __atomic_fetch_add(&c->sync, 1, __ATOMIC_RELEASE);
}

static int checked_error(checked_fd *c)
{
    (void)__atomic_load_n(&c->sync, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&c->err, __ATOMIC_RELAXED);
}

static gint64 checked_write(VipsTargetCustom *t, const void *data, gint64 length, void *user)
{
    (void)t;
    checked_fd *c = user;
    int err = __atomic_load_n(&c->err, __ATOMIC_RELAXED);
    if (!err)
        err = pm__write_all(c->fd, data, (size_t)length);
    if (err)
        __atomic_store_n(&c->err, err, __ATOMIC_RELAXED);
    checked_done(c);
    if (err) {
        errno = err;
        return -1;
    }
    return length;
}

static gint64 checked_read(VipsTargetCustom *t, void *buf, gint64 length, void *user)
{
    (void)t;
    checked_fd *c = user;
    ssize_t n;
    do
        n = read(c->fd, buf, (size_t)length);
    while (n < 0 && errno == EINTR);
    int e = errno;
    checked_done(c);
    errno = e;
    return n;
}

static gint64 checked_seek(VipsTargetCustom *t, gint64 offset, int whence, void *user)
{
    (void)t;
    checked_fd *c = user;
    off_t at = lseek(c->fd, (off_t)offset, whence);
    int e = errno;
    checked_done(c);
    errno = e;
    return at;
}

static int checked_end(VipsTargetCustom *t, void *user)
{
    (void)t;
    return checked_error(user) ? -1 : 0;
}

static VipsTarget *checked_target(checked_fd *c)
{
    VipsTargetCustom *t = vips_target_custom_new();
    g_signal_connect(t, "write", G_CALLBACK(checked_write), c);
    g_signal_connect(t, "read", G_CALLBACK(checked_read), c);
    g_signal_connect(t, "seek", G_CALLBACK(checked_seek), c);
    g_signal_connect(t, "end", G_CALLBACK(checked_end), c);
    return VIPS_TARGET(t);
}

/* Encode one image into one variant's temp file and publish it. */
static void write_variant(const pm__process_ctx *ctx, job_state *s, variant *v, VipsImage *image)
{
    const pm__variant *pv = &ctx->variants[v->vi];
    int err = 0;
    VipsImage *img = image;
    g_object_ref(img);
    pm__temp temp = {.fd = -1};
    VipsTarget *target = NULL;
    /* Outputs not in plain sRGB need their profile to be read right. */
    unsigned keep = ctx->opts->keep | (ctx->opts->profile != PM_PROFILE_SRGB ? PM_KEEP_ICC : 0);
    if (flatten_if_needed(&img, v->format, ctx->opts->background) != 0 ||
        drop_metadata(&img, keep) != 0) {
        fail_output(v, PM_ERR_ENCODE, 0, take_vips_error());
        goto out;
    }
    int rc = output_dir(ctx, s, v->name, &err);
    if (rc != PM_OK) {
        fail_output(v, rc, err, g_strdup("cannot create the output folder"));
        goto out;
    }
    rc = pm__publish_begin(&temp, s->dirfd, &err);
    if (rc != PM_OK) {
        fail_output(v, rc, err, g_strdup("cannot create a temporary file"));
        goto out;
    }
    checked_fd cfd = {.fd = temp.fd};
    target = checked_target(&cfd);
    rc = save(img, target, v->format, ctx->opts, pv->quality, keep == PM_KEEP_NONE);
    int werr = checked_error(&cfd);
    if (rc != 0 || werr) { /* a failed write fails the output, even when the saver says not */
        char *text = rc != 0 ? take_vips_error() : g_strdup("the encoder went on after it");
        fail_output(v, werr ? PM_ERR_WRITE : PM_ERR_ENCODE, werr, text);
        goto out;
    }
    VIPS_UNREF(target);
#ifdef PM_TEST_HOOKS
    test_hang_writing(s->path);
#endif
    struct stat tst;
    if (fstat(temp.fd, &tst) != 0 || tst.st_size == 0) {
        fail_output(v, PM_ERR_ENCODE, errno, g_strdup("encoder wrote nothing"));
        goto out;
    }
    if (pm__hash_fd(temp.fd, v->rec.hash) != 0) {
        fail_output(v, PM_ERR_WRITE, errno, NULL);
        goto out;
    }
    v->out.bytes = (uint64_t)tst.st_size;
    v->out.width = img->Xsize;
    v->out.height = img->Ysize;
    v->rec.bytes = v->out.bytes;
    v->rec.mtime_ns = pm__mtime_ns(&tst); /* fsync and rename keep it */
    v->rec.ino = (uint64_t)tst.st_ino;
    /* Published later, off this thread (pm__process_finish): the temp is closed now, so a
     * job waiting to be published holds no descriptor. */
    close(temp.fd);
    temp.fd = -1;
    v->temp = temp;
    temp.name[0] = '\0';
out:
    VIPS_UNREF(target);
    if (temp.fd >= 0 || temp.name[0])
        pm__publish_abort(&temp);
    g_object_unref(img);
}

/* lstat of a name below the output root, never through a link on the way. */
static int stat_below(int rootfd, const char *name, struct stat *st)
{
    const char *base;
    int dirfd = pm__open_parent(rootfd, name, &base);
    if (dirfd < 0)
        return -1;
    int rc = fstatat(dirfd, base, st, AT_SYMLINK_NOFOLLOW);
    int err = errno;
    close(dirfd);
    errno = err;
    return rc;
}

/* Refuse up front, before decoding: an existing output that is this very input (same inode,
 * any name), or, where the output folder overlaps the inputs, any existing file this source
 * did not make. Returns the number of outputs still to make. */
static int refuse_existing(const pm__process_ctx *ctx, job_state *s, const struct stat *src)
{
    int todo = 0;
    for (int i = 0; i < s->n; i++) {
        struct stat ost;
        variant *v = &s->v[i];
        if (v->current || v->alias || v->out.status != PM_OK)
            continue;
        if (stat_below(ctx->out_rootfd, v->name, &ost) == 0) {
            if (ost.st_dev == src->st_dev && ost.st_ino == src->st_ino) {
                fail_output(v, PM_ERR_OUTPUT_IS_INPUT, 0, NULL);
                continue;
            }
            if (ctx->overlap && !v->ours) {
                fail_output(v, PM_ERR_OUTPUT_EXISTS, 0, NULL);
                continue;
            }
        }
        todo++;
    }
    return todo;
}

/* Open the source where the scan found it, and check it is a non-empty regular file: its
 * folder by its physical path with no link on the way (a folder swapped for a link since the
 * scan is not followed), that folder checked to be the one the scan saw, then the file in it
 * with O_NOFOLLOW. */
static int open_source(const pm__job *job, job_state *s, pm__result *r, struct stat *st)
{
    s->srcdir = pm__open_physical(job->dir, O_PATH | O_DIRECTORY);
    if (s->srcdir < 0) {
        int err = errno;
        fail(r, err == ELOOP ? PM_ERR_SYMLINK : PM_ERR_IO, err,
             err == ELOOP ? g_strdup("a folder on its way is a symbolic link now") : NULL);
        return -1;
    }
    struct stat dst;
    if (fstat(s->srcdir, &dst) != 0 || (uint64_t)dst.st_dev != job->dir_dev ||
        (uint64_t)dst.st_ino != job->dir_ino) {
        fail(r, PM_ERR_IO, ESTALE, g_strdup("its folder was replaced after the scan found it"));
        return -1;
    }
    s->fd = openat(s->srcdir, job->name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (s->fd < 0) {
        int err = errno;
        fail(r, err == ELOOP ? PM_ERR_SYMLINK : PM_ERR_IO, err, NULL);
        return -1;
    }
    if (fstat(s->fd, st) != 0) {
        fail(r, PM_ERR_IO, errno, NULL);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        fail(r, PM_ERR_NOT_REGULAR, 0, NULL);
        return -1;
    }
    r->ev.bytes_in = (uint64_t)st->st_size;
    if (st->st_size == 0) {
        fail(r, PM_ERR_UNKNOWN_FORMAT, 0, g_strdup("empty file"));
        return -1;
    }
    return 0;
}

/* --max-file-size: checked on the open descriptor, before a byte is read. */
static int check_file_size(const pm_options *o, const struct stat *st, pm__result *r)
{
    if (o->max_file_size && (uint64_t)st->st_size > o->max_file_size) {
        fail(r, PM_ERR_LIMIT, 0,
             g_strdup_printf("%" G_GUINT64_FORMAT
                             " bytes is more than --max-file-size %" G_GUINT64_FORMAT,
                             (guint64)st->st_size, o->max_file_size));
        return -1;
    }
    return 0;
}

/* A loader's integer field (jpeg-multiscan, interlaced), 0 when it did not set one. */
static int int_field(VipsImage *h, const char *name)
{
    int v = 0;
    if (vips_image_get_typeof(h, name))
        vips_image_get_int(h, name, &v);
    return v;
}

/* Can jpegdc.c read this source (a progressive grey or YCbCr JPEG), and is it stored on its
 * side (swap: the orientation the outputs use turns it)? Kept in the build record, so that a
 * source whose record is current decides its decode, and so its digest, without its header. */
static int dc_source_of(VipsImage *h, int swap)
{
    if (!int_field(h, "jpeg-multiscan") || (h->Bands != 1 && h->Bands != 3) ||
        h->Type == VIPS_INTERPRETATION_CMYK)
        return 0;
    return swap ? 2 : 1;
}

/* Sniff the format and read the header (lazy: no pixel decoded); the pixel cap is checked
 * here, before any decoding. */
static int read_header(const pm__process_ctx *ctx, job_state *s, pm__result *r)
{
    const pm_options *o = ctx->opts;
    char *declared = pm__container_check(s->fd, (uint64_t)s->st.st_size);
    if (declared) {
        fail(r, PM_ERR_DECODE, 0, declared);
        return -1;
    }
    s->source = vips_source_new_from_descriptor(s->fd); /* dups the descriptor */
    if (!s->source) {
        fail(r, PM_ERR_IO, 0, take_vips_error());
        return -1;
    }
    const char *loader = vips_foreign_find_load_source(s->source);
    if (!loader) {
        vips_error_clear();
        fail(r, PM_ERR_UNKNOWN_FORMAT, 0, NULL);
        return -1;
    }
    const char *nickname;
    if (loader_is_blocked(loader, &nickname)) {
        fail(r, PM_ERR_BLOCKED, 0, blocked_why(loader, nickname));
        return -1;
    }
    s->header = vips_image_new_from_source(s->source, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!s->header) {
        fail(r, PM_ERR_DECODE, 0, take_vips_error());
        return -1;
    }
    uint64_t w = (uint64_t)s->header->Xsize, h = (uint64_t)s->header->Ysize;
    uint64_t pages = (uint64_t)vips_image_get_n_pages(s->header);
    s->pages = (int)MIN(pages, (uint64_t)INT_MAX);
    if (o->max_pages && pages > (uint64_t)o->max_pages) {
        fail(r, PM_ERR_LIMIT, 0,
             g_strdup_printf("%" G_GUINT64_FORMAT " pages or frames is more than --max-pages %d",
                             pages, o->max_pages));
        return -1;
    }
    if (o->max_pixels && (w * h > o->max_pixels / pages || w * h * pages > o->max_pixels)) {
        fail(r, PM_ERR_TOO_MANY_PIXELS, 0,
             g_strdup_printf("%" G_GUINT64_FORMAT "x%" G_GUINT64_FORMAT " x %" G_GUINT64_FORMAT
                             " page(s) is more than --max-pixels %" G_GUINT64_FORMAT,
                             w, h, pages, o->max_pixels));
        return -1;
    }
    /* Grey, RGB and CMYK, each with or without alpha. More bands (a multispectral TIFF, extra
     * channels) have no one right way into the output space: refused, the same for every
     * output format (BAD-INPUT 9), rather than some formats keeping four of them. */
    int bands = s->header->Bands, cmyk = s->header->Type == VIPS_INTERPRETATION_CMYK;
    if (bands > (cmyk ? 5 : 4)) {
        fail(r, PM_ERR_UNSUPPORTED, 0,
             g_strdup_printf("%d bands (%s): pixmill converts grey, RGB and CMYK images, with or "
                             "without alpha",
                             bands, vips_enum_nick(VIPS_TYPE_INTERPRETATION, s->header->Type)));
        return -1;
    }
    s->same = format_for_loader(nickname, s->header);
    s->has_profile = usable_profile(s->header);
    int swap = !o->no_rotate && vips_image_get_orientation_swap(s->header);
    s->dc_source = dc_source_of(s->header, swap);
    s->upright_w = swap ? s->header->Ysize : s->header->Xsize;
    s->upright_h = swap ? s->header->Xsize : s->header->Ysize;
    r->ev.source_width = s->upright_w;
    r->ev.source_height = s->upright_h;
    return 0;
}

static int is_animated_format(pm_format f)
{
    return f == PM_FORMAT_GIF || f == PM_FORMAT_WEBP;
}

static const char *export_profile_for(const pm_options *o, int has_profile)
{
    switch (o->profile) {
    case PM_PROFILE_SRGB:
        return has_profile ? "srgb" : NULL;
    case PM_PROFILE_P3:
        return "p3";
    case PM_PROFILE_FILE:
        return o->profile_file;
    case PM_PROFILE_KEEP:
    default:
        return NULL;
    }
}

/* Everything that decides one output's bytes, hashed: versions, the source's content, the
 * decode, the geometry and the encoder settings this format uses (a new JPEG quality does not
 * rebuild PNGs). Not the variant's name or size spec: two sizes that come out alike (1280 and 640
 * of a 500-pixel source) are one output. */
static void digest_for(const pm__process_ctx *ctx, const job_state *s, variant *v)
{
    const pm_options *o = ctx->opts;
    const pm__variant *pv = &ctx->variants[v->vi];
    const char *ep = export_profile_for(o, s->has_profile);
    pm_format f = v->format;
    int lossy =
        f == PM_FORMAT_JPEG || f == PM_FORMAT_WEBP || f == PM_FORMAT_AVIF || f == PM_FORMAT_HEIF;
    int heif = f == PM_FORMAT_AVIF || f == PM_FORMAT_HEIF;
    int pads = v->g.width > v->g.resize_width || v->g.height > v->g.resize_height;
    int crops = v->g.width < v->g.resize_width || v->g.height < v->g.resize_height;
    GString *t = g_string_new(NULL);
    g_string_append_printf(
        t, "pixmill %s|vips %s|source %s|decode %dx%d pages %d fail_on %d rotate %d",
        PM_VERSION_STRING, vips_version_string(), s->hash, s->decode_w, s->decode_h, s->all_pages,
        (int)o->fail_on, !o->no_rotate);
    if (s->dc)
        g_string_append(t, "|dc"); /* pixels a little different from libjpeg's at 1/4 */
    g_string_append_printf(
        t, "|profile %d %s %s intent %d|geometry %d %d %d %d|format %d keep %u", (int)o->profile,
        ep ? ep : "-", o->profile == PM_PROFILE_FILE ? ctx->profile_hash : "-", (int)o->intent,
        v->g.resize_width, v->g.resize_height, v->g.width, v->g.height, (int)f, o->keep);
    if (crops)
        g_string_append_printf(t, "|crop %d", (int)pv->crop);
    if (pads || f == PM_FORMAT_JPEG)
        g_string_append_printf(t, "|bg %02x%02x%02x%02x", o->background[0], o->background[1],
                               o->background[2], o->background[3]);
    if (lossy)
        g_string_append_printf(t, "|q %d", pv->quality);
    if (f != PM_FORMAT_JPEG && f != PM_FORMAT_TIFF)
        g_string_append_printf(t, "|effort %d", o->effort);
    if (f == PM_FORMAT_WEBP || heif)
        g_string_append_printf(t, "|lossless %d", o->lossless);
    if (f == PM_FORMAT_JPEG || f == PM_FORMAT_PNG || f == PM_FORMAT_GIF)
        g_string_append_printf(t, "|progressive %d", o->progressive);
    if (f == PM_FORMAT_JPEG || f == PM_FORMAT_WEBP || heif)
        g_string_append_printf(t, "|subsample %d", (int)o->subsample);
    if (f == PM_FORMAT_PNG)
        g_string_append_printf(t, "|palette %d", o->palette);
    if (is_animated_format(f))
        g_string_append_printf(t, "|animated %d", o->animated);
    g_snprintf(v->digest, sizeof(v->digest), "%016" G_GINT64_MODIFIER "x",
               (guint64)XXH3_64bits(t->str, t->len));
    g_string_free(t, TRUE);
}

/* A progressive JPEG whose one decode is no larger than an eighth of it (in each axis, as
 * stored): decoded from its DC coefficients alone (jpegdc.c), as libjpeg's 1/8 scale would,
 * without holding every coefficient of the image. libvips' own thumbnail would stop at 1/4
 * until the shrink reaches 16, leaving a factor of two to its resize; sharp's
 * fastShrinkOnLoad, like this, goes to 1/8 as soon as the result is large enough. Not under
 * --fail-on warning: the AC scans are skipped, so their warnings would go unseen. */
static int dc_wanted(const pm_options *o, const job_state *s)
{
    if (!s->dc_source || o->fail_on == PM_FAIL_ON_WARNING || s->same != PM_FORMAT_JPEG)
        return 0;
    int side = s->dc_source == 2; /* stored on its side: the upright sizes swap back */
    int stored_w = side ? s->upright_h : s->upright_w,
        stored_h = side ? s->upright_w : s->upright_h;
    int want_w = side ? s->decode_h : s->decode_w, want_h = side ? s->decode_w : s->decode_h;
    return (stored_w + 7) / 8 >= want_w && (stored_h + 7) / 8 >= want_h;
}

/* Every variant x format for this source, with 'same' resolved; geometry, the one decode's
 * size, digests and names. Two outputs with one name: the same digest makes them one output,
 * a different digest fails the later one. */
static void plan_outputs(const pm__process_ctx *ctx, const pm__job *job, job_state *s)
{
    const pm_options *o = ctx->opts;
    double scale = 0;
    s->n = 0;
    int most = 0;
    for (int i = 0; i < ctx->n_variants; i++)
        most += ctx->variants[i].n_formats;
    g_free(s->v);
    s->v = g_new0(variant, most ? most : 1);
    for (int i = 0; i < ctx->n_variants; i++) {
        const pm__variant *pv = &ctx->variants[i];
        pm_geometry g;
        pm_geometry_compute(&pv->size, o->fit, o->auto_swap, s->upright_w, s->upright_h, &g);
        /* An enlarging size can ask for a monster (100x100< on a 1x50000 strip covers as
         * 100x5000000; 1000% of a 16000-pixel photo): outputs obey the caps sources do. */
        uint64_t rpx = (uint64_t)g.resize_width * (uint64_t)g.resize_height;
        int too_big = g.resize_width > PM_SIZE_MAX || g.resize_height > PM_SIZE_MAX ||
                      g.width > PM_SIZE_MAX || g.height > PM_SIZE_MAX ||
                      (o->max_pixels && rpx > o->max_pixels);
        if (!too_big)
            scale = MAX(scale, MAX((double)g.resize_width / s->upright_w,
                                   (double)g.resize_height / s->upright_h));
        for (int j = 0; j < pv->n_formats; j++) {
            variant *v = &s->v[s->n++];
            memset(v, 0, sizeof(*v));
            v->vi = i;
            v->format = pv->formats[j] == PM_FORMAT_SAME ? s->same : pv->formats[j];
            v->g = g;
            if (too_big)
                fail_output(v, PM_ERR_LIMIT, 0,
                            g_strdup_printf("variant %s would be %dx%d pixels: more than %d a "
                                            "side or --max-pixels",
                                            pv->name, g.resize_width, g.resize_height,
                                            PM_SIZE_MAX));
        }
    }
    /* One decode at the largest scale any output needs, straight to exact dimensions. */
    if (scale <= 0)
        scale = 1; /* every output refused: nothing will be decoded */
    s->decode_w = MAX(1, (int)(s->upright_w * scale + 0.5));
    s->decode_h = MAX(1, (int)(s->upright_h * scale + 0.5));
    s->all_pages = 0;
    for (int k = 0; k < s->n && o->animated && s->pages > 1; k++)
        s->all_pages |= is_animated_format(s->v[k].format);
    s->dc = dc_wanted(o, s);

    const char *slash = strrchr(job->out_rel, '/');
    char *dir = slash ? g_strndup(job->out_rel, (gsize)(slash - job->out_rel)) : g_strdup("");
    const char *stem = slash ? slash + 1 : job->out_rel;
    for (int k = 0; k < s->n; k++) {
        variant *v = &s->v[k];
        const pm__variant *pv = &ctx->variants[v->vi];
        digest_for(ctx, s, v);
        char hash[16], *both = g_strconcat(s->hash, v->digest, NULL);
        g_snprintf(hash, sizeof(hash), "%010" G_GINT64_MODIFIER "x",
                   (guint64)(XXH3_64bits(both, strlen(both)) & 0xFFFFFFFFFFull));
        g_free(both);
        pm__name_vars vars = {
            stem, pm_format_extension(v->format), pv->name, dir, hash, v->g.width, v->g.height};
        v->name = pm__template_expand(pv->name_template, &vars);
        v->out.format = v->format;
        v->out.size_index = v->vi;
        v->out.width = v->g.width;
        v->out.height = v->g.height;
        if (!v->name) {
            fail_output(v, PM_ERR_NAME, 0,
                        g_strdup_printf("template '%s' gives no usable name for this source: "
                                        "a part over 255 bytes, '.' or '..', or pixmill's own",
                                        pv->name_template));
            continue;
        }
        if (ctx->manifest_rel && strcmp(v->name, ctx->manifest_rel) == 0) {
            fail_output(v, PM_ERR_NAME, 0, g_strdup("that is the --manifest's name"));
            continue;
        }
        for (int e = 0; e < k; e++) {
            variant *w = &s->v[e];
            if (!w->name || w->alias || strcmp(w->name, v->name) != 0)
                continue;
            if (strcmp(w->digest, v->digest) == 0)
                v->alias = 1;
            else
                fail_output(v, PM_ERR_NAME, 0,
                            g_strdup_printf("variant %s gives the same name as variant %s",
                                            pv->name, ctx->variants[w->vi].name));
            break;
        }
    }
    g_free(dir);
}

/* Is name in dfd a regular file other than ours? (Links are not followed: a walk skips
 * them.) */
static int other_file(int dfd, const char *name, const struct stat *ours)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
           !(st.st_dev == ours->st_dev && st.st_ino == ours->st_ino);
}

/* Will this file get as far as writing outputs? A file refused by its content alone (no known
 * image format, a blocked loader) or that cannot be opened never writes, so it does not clash:
 * a photo.tif master beside photo.jpg, with TIFF blocked, leaves photo.jpg alone. Read only
 * when such a file exists (rare): its first bytes, sniffed as its own job will. */
static int may_write_fd(int fd, pm_format *same)
{
    VipsSource *src = vips_source_new_from_descriptor(fd); /* dups the descriptor */
    close(fd);
    if (!src) {
        vips_error_clear();
        return 1;
    }
    const char *loader = vips_foreign_find_load_source(src), *nickname;
    int may = loader && !loader_is_blocked(loader, &nickname);
    if (!loader)
        vips_error_clear();
    if (may) {
        /* its header, as its own job reads it: one that cannot be read never writes; one
         * that can tells what 'same' is for it (the content decides, not the extension: a
         * PNG named x.jpg beside x.png makes x.png too) */
        VipsImage *h = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
        if (h)
            *same = format_for_loader(nickname, h);
        else
            vips_error_clear();
        may = h != NULL;
        VIPS_UNREF(h);
    }
    g_object_unref(src);
    return may;
}

/* fd: the file, opened (or -1 with errno). Unreadable files never write; others may. */
static int may_write_open(int fd, pm_format *same)
{
    *same = PM_FORMAT_PNG;
    if (fd < 0)
        return errno != EACCES && errno != ENOENT && errno != ELOOP;
    return may_write_fd(fd, same);
}

static int may_write_at(int dfd, const char *name, pm_format *same)
{
    return may_write_open(
        openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), same);
}

/* A named file: followed if it is a link, as its own job is. */
static int may_write(const char *path, pm_format *same)
{
    return may_write_open(open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), same);
}

/* Another source, `other`, whose outputs land in the same folder under the same stem: the
 * outputs of ours whose names its outputs would take too fail, here and (symmetrically) in
 * its own job, so neither overwrites the other whatever the order. */
static void refuse_names_shared_with(const pm__process_ctx *ctx, job_state *s, const char *out_rel,
                                     const char *other, pm_format other_same)
{
    const char *dir_end = strrchr(out_rel, '/');
    char *dir = dir_end ? g_strndup(out_rel, (gsize)(dir_end - out_rel)) : g_strdup("");
    const char *stem = dir_end ? dir_end + 1 : out_rel;
    for (int k = 0; k < s->n; k++) {
        variant *v = &s->v[k];
        const pm__variant *pv = &ctx->variants[v->vi];
        if (!v->name || v->alias || v->out.status != PM_OK)
            continue;
        pm_format sf = v->format;
        for (int j = 0; j < pv->n_formats; j++)
            if (pv->formats[j] == PM_FORMAT_SAME && s->same == v->format)
                sf = other_same;
        char hash[16] = "other";
        pm__name_vars vars = {stem,       pm_format_extension(sf), pv->name, dir, hash, v->g.width,
                              v->g.height};
        char *theirs = pm__template_expand(pv->name_template, &vars);
        if (theirs && strcmp(theirs, v->name) == 0)
            fail_output(v, PM_ERR_NAME, 0,
                        g_strdup_printf("%s would write %s too: rename one, or put {hash} in "
                                        "--name",
                                        other, v->name));
        g_free(theirs);
    }
    g_free(dir);
}

/* The image files in folder dfd (shown as shown_dir) with stem, other than ours (self: its
 * own name there, when dfd is its own folder): each that will write refuses the outputs whose
 * names it would take too. The folder is listed once per worker (siblings.c), so extensions
 * compare in any case without a probe per spelling. */
static void refuse_clashes_in(const pm__process_ctx *ctx, job_state *s, const char *out_rel,
                              int dfd, const char *shown_dir, const char *stem, const char *self,
                              const struct stat *ours)
{
    GPtrArray *names = pm__siblings(s->w, dfd, stem, self);
    for (guint i = 0; names && i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        pm_format same;
        if (!other_file(dfd, name, ours) || !may_write_at(dfd, name, &same))
            continue;
        size_t n = strlen(shown_dir);
        char *shown = g_strconcat(shown_dir, n && shown_dir[n - 1] != '/' ? "/" : "", name, NULL);
        refuse_names_shared_with(ctx, s, out_rel, shown, same);
        g_free(shown);
    }
    if (names)
        g_ptr_array_free(names, TRUE);
}

/* Is this place the source's own (its input folder, or its list's root)? */
static int own_place(const pm__job *job, const pm__place *p)
{
    return job->origin == PM__FROM_LIST ? p->input == job->place
                                        : job->origin == PM__FROM_WALK && p->input == job->input;
}

/* Other sources that map to our output names (BAD-INPUT 23): files with our stem and another
 * image extension, in any case, in our own folder when it is walked or listed (a.png and a.JPG
 * both make a.webp); then the same place below every other folder whose tree lands on the
 * output root (other input folders; for file lists, "/" and the current folder, where /a/x.jpg
 * and a/x.jpg meet); and named files with our stem. Checked from the file system, not from what was
 * seen (memory stays flat), so both sides refuse, whichever runs first. */
static void refuse_clashes(const pm__process_ctx *ctx, const pm__job *job, job_state *s,
                           const struct stat *ours)
{
    const char *cut = strrchr(job->out_rel, '/');
    const char *stem = cut ? cut + 1 : job->out_rel;
    char *dir_rel = cut ? g_strndup(job->out_rel, (gsize)(cut - job->out_rel)) : g_strdup("");
    /* its own folder as met: a walked file's is where it was opened; a named or listed path's
     * is the one the user's path names */
    const char *base = strrchr(job->source, '/');
    char *shown = !base                 ? g_strdup("")
                  : base == job->source ? g_strdup("/") /* "/x.jpg" */
                                        : g_strndup(job->source, (gsize)(base - job->source));
    base = base ? base + 1 : job->source;
    const char *dot = strrchr(base, '.');
    /* A named file's siblings are no sources unless named too (named_by_stem, below) or below
     * an input folder (the places): IMG_1.JPG named beside IMG_1.HEIC converts. A listed
     * file's are checked here, as the list is not held in memory. */
    if (dot && dot != base && job->origin != PM__FROM_NAMED) {
        int dfd = job->explicit_file ? open(*shown ? shown : ".", O_PATH | O_DIRECTORY | O_CLOEXEC)
                                     : s->srcdir;
        char *own_stem = g_strndup(base, (gsize)(dot - base));
        refuse_clashes_in(ctx, s, job->out_rel, dfd, shown, own_stem, base, ours);
        g_free(own_stem);
        if (dfd >= 0 && dfd != s->srcdir)
            close(dfd);
    }
    g_free(shown);
    for (int i = 0; i < ctx->n_places; i++) {
        const pm__place *p = &ctx->places[i];
        if (own_place(job, p))
            continue;
        char *there = *dir_rel ? g_strconcat(p->phys, p->phys[1] ? "/" : "", dir_rel, NULL)
                               : g_strdup(p->phys);
        /* an input folder is walked without following links; a listed path is followed */
        int dfd = p->input >= 0 ? pm__open_physical(there, O_PATH | O_DIRECTORY)
                                : open(there, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            /* shown as the user would name that folder */
            char *shown_dir = p->input == PM__PLACE_LIST_ABS ? g_strconcat("/", dir_rel, NULL)
                              : !*dir_rel || !*p->path       ? g_strconcat(p->path, dir_rel, NULL)
                                                       : g_strconcat(p->path, "/", dir_rel, NULL);
            refuse_clashes_in(ctx, s, job->out_rel, dfd, shown_dir, stem, NULL, ours);
            g_free(shown_dir);
            close(dfd);
        }
        g_free(there);
    }
    GPtrArray *named =
        ctx->named_by_stem && !*dir_rel ? g_hash_table_lookup(ctx->named_by_stem, stem) : NULL;
    for (guint i = 0; named && i < named->len; i++) {
        const pm__place *p = g_ptr_array_index(named, i);
        struct stat st;
        pm_format same;
        if (p->input != job->input && stat(p->path, &st) == 0 && S_ISREG(st.st_mode) &&
            !(st.st_dev == ours->st_dev && st.st_ino == ours->st_ino) && may_write(p->path, &same))
            refuse_names_shared_with(ctx, s, job->out_rel, p->path, same);
    }
    g_free(dir_rel);
}

/* Which outputs are current: recorded for this source with the same digest, and the file
 * still holds what was written. Returns how many outputs still need making. Also marks files
 * the record says are ours (they may be replaced even where outputs overlap inputs). */
static int mark_current(const pm__process_ctx *ctx, job_state *s, int *refreshed_any)
{
    int todo = 0;
    for (int k = 0; k < s->n; k++) {
        variant *v = &s->v[k];
        if (v->alias || v->out.status != PM_OK)
            continue;
        for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
            pm__state_out *rec = &s->old.outs[i];
            if (strcmp(rec->name, v->name) != 0)
                continue;
            int refreshed = 0;
            v->ours = pm__state_output_matches(ctx->out_rootfd, rec, 0, &refreshed, &v->ours_ino);
            if (v->ours && strcmp(rec->digest, v->digest) == 0 && !ctx->opts->force) {
                v->current = 1;
                v->rec = *rec; /* borrowed strings: only scalars are used */
                v->out.bytes = rec->bytes;
                v->out.width = rec->width;
                v->out.height = rec->height;
                if (refreshed) {
                    struct stat sb;
                    if (stat_below(ctx->out_rootfd, rec->name, &sb) == 0) {
                        v->rec.mtime_ns = pm__mtime_ns(&sb);
                        v->rec.ino = (uint64_t)sb.st_ino;
                    }
                    *refreshed_any = 1;
                }
            }
            break;
        }
        todo += !v->current;
    }
    return todo;
}

/* Does the record hold an output this plan no longer makes (a format, size or name gone from
 * the options)? Then the record is written again, with it marked left over for --prune. */
static int drops_outputs(const job_state *s)
{
    for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
        const pm__state_out *rec = &s->old.outs[i];
        int planned = 0;
        for (int k = 0; k < s->n && !planned; k++)
            planned = s->v[k].name && !s->v[k].alias && s->v[k].out.status == PM_OK &&
                      strcmp(s->v[k].name, rec->name) == 0;
        if (!rec->left && !planned)
            return 1;
    }
    return 0;
}

/* Below this a whole-image decode is not worth queueing for. */
#define WHOLE_DECODE_MIN (8ULL << 20)

/* What the decode holds at once when its decoder cannot stream, estimated from the header
 * (measured at 20 MP: progressive JPEG 4:4:4 +119 MB, interlaced PNG +66 MB, HEIC +162 MB,
 * AVIF +148 MB over the libraries' 33 MB); 0 for decoders that stream. */
static uint64_t whole_decode_bytes(const job_state *s)
{
    VipsImage *h = s->header;
    uint64_t px = (uint64_t)h->Xsize * (uint64_t)h->Ysize, bands = (uint64_t)h->Bands;
    int multiscan = int_field(h, "jpeg-multiscan"), interlaced = int_field(h, "interlaced");
    if (multiscan) {
        /* 2 bytes a coefficient, one coefficient a pixel in each full-size component;
         * subsampled chroma holds a quarter (4:2:0) or a half (4:2:2) of that */
        const char *sub = NULL;
        uint64_t quarters = bands * 4;
        if (bands > 1 && vips_image_get_typeof(h, "jpeg-chroma-subsample") &&
            vips_image_get_string(h, "jpeg-chroma-subsample", &sub) == 0 && sub)
            quarters = !strcmp(sub, "4:2:0")   ? 4 + (bands - 1)
                       : !strcmp(sub, "4:2:2") ? 4 + (bands - 1) * 2
                                               : bands * 4;
        return px * quarters / 2;
    }
    if (interlaced)
        return px * VIPS_IMAGE_SIZEOF_PEL(h);
    if (s->same == PM_FORMAT_GIF) /* measured: 12000x12000 of one colour, 98 KB, +650 MB */
        return px * 9 / 2;
    if (s->same == PM_FORMAT_HEIF || s->same == PM_FORMAT_AVIF)
        return px * (bands + 1) * 2;
    return 0;
}

static void gate_enter(pm__decode_gate *g, uint64_t bytes)
{
    pthread_mutex_lock(&g->mu);
    uint64_t ticket = g->next_ticket++;
    while (g->serving != ticket || (g->in_use > 0 && g->in_use + bytes > g->budget))
        pthread_cond_wait(&g->cv, &g->mu);
    g->serving++;
    g->in_use += bytes;
    pthread_cond_broadcast(&g->cv); /* the next in line may fit too */
    pthread_mutex_unlock(&g->mu);
}

static void gate_leave(pm__decode_gate *g, uint64_t bytes)
{
    pthread_mutex_lock(&g->mu);
    g->in_use -= bytes;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static VipsImage *dc_image(const job_state *s);
static int decode_in_memory(const pm__process_ctx *ctx, job_state *s, VipsImage *dc, pm__result *r);

/* The one decode, through the gate when it holds the whole image: the decoder's peak is
 * behind the gate, the small decoded image is not. */
#ifdef PM_TEST_HOOKS
/* Test builds only: with $PIXMILL_TEST_HEAVY_LOG, each whole-image decode appends "+ PID"
 * when it starts and "- PID" when it ends (one write each, O_APPEND, so the lines of several
 * processes keep their order): a test can see how many ran at once, in how many processes. */
static void test_note_heavy(int delta)
{
    const char *log = getenv("PIXMILL_TEST_HEAVY_LOG"); // NOLINT(concurrency-mt-unsafe)
    int fd = log && *log ? open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        char line[32];
        int len = snprintf(line, sizeof(line), "%c %d\n", delta > 0 ? '+' : '-', (int)getpid());
        if (write(fd, line, (size_t)len) != len) { /* a test will see the line missing */
        }
        close(fd);
    }
}
#endif

/* The budget's share across lanes (processes): a lock file below the output root, held
 * shared by a decode within budget / lanes, alone by a larger one. A lane that dies lets go
 * of it with its descriptors. Returns the descriptor to close after the decode, or -1. */
static int lanes_enter(const pm__process_ctx *ctx, uint64_t bytes)
{
    uint64_t budget = ctx->opts->decode_budget;
    if (ctx->lanes < 2 || budget == 0 || ctx->out_rootfd < 0)
        return -1;
    int fd =
        pm__open_beneath(ctx->out_rootfd, PM__STATE_DIR "/decode-lock", O_RDWR | O_CREAT, 0666);
    if (fd < 0)
        return -1; /* no lock: the decode goes ahead, as without lanes */
    int how = bytes > budget / (uint64_t)ctx->lanes ? LOCK_EX : LOCK_SH;
    while (flock(fd, how) != 0 && errno == EINTR)
        ;
    return fd;
}

static int decode_once(const pm__process_ctx *ctx, job_state *s, pm__result *r)
{
    /* the DC decode holds two bytes a block: never behind the gate */
    VipsImage *dc = s->dc ? dc_image(s) : NULL;
    uint64_t bytes = s->header && !dc ? whole_decode_bytes(s) : 0;
    uint64_t budget = ctx->opts->decode_budget;
    /* A decode that cannot fit the budget alone is refused, not run: what a header declares
     * (a 468-byte progressive JPEG claiming 16000x16000 took 534 MB) never costs more. */
    if (budget && bytes > budget) {
        VIPS_UNREF(dc);
        fail(r, PM_ERR_LIMIT, 0,
             g_strdup_printf("decoding it would hold about %" G_GUINT64_FORMAT
                             " MB at once, more than --decode-budget %" G_GUINT64_FORMAT
                             " MB (raise it, or 0 for no limit)",
                             (bytes + (1 << 20) - 1) >> 20, budget >> 20));
        return -1;
    }
    int heavy = bytes >= WHOLE_DECODE_MIN;
    pm__decode_gate *gate = ctx->gate && heavy ? ctx->gate : NULL;
    if (gate)
        gate_enter(gate, bytes);
    int lane_lock = heavy ? lanes_enter(ctx, bytes) : -1;
#ifdef PM_TEST_HOOKS
    if (heavy)
        test_note_heavy(1);
#endif
    int rc = decode_in_memory(ctx, s, dc, r);
    VIPS_UNREF(dc);
#ifdef PM_TEST_HOOKS
    if (heavy)
        test_note_heavy(-1);
#endif
    if (lane_lock >= 0)
        close(lane_lock); /* and with it the lock */
    if (gate)
        gate_leave(gate, bytes);
    return rc;
}

/* The pipeline computed into a new memory image, on this thread, with its metadata. Not
 * vips_image_copy_memory(): that runs the pipeline on a libvips pool thread while this one
 * waits, and two workers in one process doing so lost about 12 % of their speed on small
 * images to the hand-offs (README, levers table). Strips as high as a libvips sink would ask
 * for, top to bottom, so sequential loaders and the caches between stages work as they do
 * under a sink (one request for the whole image was slower on large outputs). */
static VipsImage *compute_here(VipsImage *in)
{
    int tile_w, tile_h, strip_h;
    vips_get_tile_size(in, &tile_w, &tile_h, &strip_h);
    VipsImage *out = vips_image_new_memory();
    VipsRegion *region = vips_region_new(in);
    int rc = vips_image_pipelinev(out, VIPS_DEMAND_STYLE_THINSTRIP, in, NULL);
    for (int top = 0; !rc && top < in->Ysize; top += strip_h) {
        VipsRect strip = {0, top, in->Xsize, MIN(strip_h, in->Ysize - top)};
        rc = vips_region_prepare(region, &strip);
        for (int y = top; !rc && y < top + strip.height; y++)
            rc = vips_image_write_line(out, y, VIPS_REGION_ADDR(region, 0, y));
    }
    g_object_unref(region);
    if (rc) {
        g_object_unref(out);
        return NULL;
    }
    return out;
}

/* Copies a loader's metadata (profile, EXIF and its orientation, XMP, ...) to the DC image;
 * the fields every image has are its own. */
static void *copy_metadata(VipsImage *from, const char *name, GValue *value, void *to)
{
    (void)from;
    if (!vips_image_get_typeof(to, name))
        vips_image_set(to, name, value);
    return NULL;
}

/* The DC decode as a libvips image that vips_thumbnail_image() takes as it would the loader's
 * 1/8 shrink: the same metadata, the resolution scaled with the pixels. NULL: declined (the
 * file goes through libvips). */
static VipsImage *dc_image(const job_state *s)
{
    pm__dc_image dc;
    if (pm__jpeg_dc_decode(s->fd, &dc) != 0)
        return NULL;
    VipsImage *img = vips_image_new_from_memory_copy(
        dc.pixels, (size_t)dc.width * (size_t)dc.height * (size_t)dc.bands, dc.width, dc.height,
        dc.bands, VIPS_FORMAT_UCHAR);
    pm__dc_image_free(&dc);
    if (!img) {
        vips_error_clear();
        return NULL;
    }
    vips_image_map(s->header, copy_metadata, img);
    img->Xres = s->header->Xres / 8;
    img->Yres = s->header->Yres / 8;
    return img;
}

static int decode_in_memory(const pm__process_ctx *ctx, job_state *s, VipsImage *dc, pm__result *r)
{
    /* One decode at the largest scale any output needs, straight to exact dimensions
     * (size=force: the shrink is worked out per axis, so no later one-pixel stretch shifts the
     * image); every output is derived from it. From the source through libvips' loader, or
     * from the DC image. */
    const pm_options *o = ctx->opts;
    VipsImage *thumb = NULL;
    static const VipsIntent intents[] = {VIPS_INTENT_RELATIVE, VIPS_INTENT_PERCEPTUAL,
                                         VIPS_INTENT_SATURATION, VIPS_INTENT_ABSOLUTE};
    VipsOperation *op = vips_operation_new(dc ? "thumbnail_image" : "thumbnail_source");
    if (dc)
        g_object_set(op, "in", dc, NULL);
    else
        g_object_set(op, "source", s->source, NULL);
    g_object_set(op, "width", s->decode_w, "height", s->decode_h, "size", VIPS_SIZE_FORCE,
                 "no_rotate", o->no_rotate, "intent", intents[o->intent], NULL);
    /* export_profile: an embedded profile (Display P3, Adobe RGB, CMYK) is used to convert to
     * the output space. Without it libvips 8.14 only relabels the numbers, and since sRGB
     * outputs carry no profile a P3 photo came out desaturated: 200,30,30 red became 184,50,41.
     * It costs about 15 ms an image even with no profile to apply, so for sRGB output only when
     * one is embedded. */
    const char *export_profile = export_profile_for(o, s->has_profile);
    if (export_profile)
        g_object_set(op, "export_profile", export_profile, NULL);
    if (!dc) {
        /* Every frame only when an animated output wants them (the pixel cap counted them
         * all). fail_on is ignored by vips_thumbnail_source() itself (libvips #5195): pass it
         * to the loader through the option string. */
        char *load_options =
            g_strdup_printf("%s%s", s->all_pages ? "n=-1," : "", fail_on_string(o->fail_on));
        g_object_set(op, "option_string", load_options, NULL);
        g_free(load_options);
    }
    int rc = vips_cache_operation_buildp(&op);
    if (rc == 0)
        g_object_get(op, "out", &thumb, NULL);
    vips_object_unref_outputs(VIPS_OBJECT(op));
    g_object_unref(op);
    if (rc != 0) {
        fail(r, PM_ERR_DECODE, 0, take_vips_error());
        return -1;
    }
    if (vips_image_get_format(thumb) != VIPS_FORMAT_UCHAR) { /* outputs are 8-bit */
        VipsImage *eight = NULL;
        int grey =
            thumb->Type == VIPS_INTERPRETATION_GREY16 || thumb->Type == VIPS_INTERPRETATION_B_W;
        rc = vips_colourspace(thumb, &eight,
                              grey ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB, NULL);
        g_object_unref(thumb);
        if (rc != 0) {
            fail(r, PM_ERR_DECODE, 0, take_vips_error());
            return -1;
        }
        thumb = eight;
    }
    /* Decode now, into memory (at most the largest output): decoding is lazy, so otherwise a
     * truncated source would fail only inside a saver, and each output would decode again. */
    s->decoded = compute_here(thumb);
    g_object_unref(thumb);
    r->ev.decodes = 1;
    if (!s->decoded) {
        fail(r, PM_ERR_DECODE, 0, take_vips_error());
        return -1;
    }
    return 0;
}

static int crop_to(VipsImage *in, VipsImage **out, int w, int h, pm_crop crop)
{
    if (crop == PM_CROP_ATTENTION || crop == PM_CROP_ENTROPY)
        return vips_smartcrop(in, out, w, h, "interesting",
                              crop == PM_CROP_ATTENTION ? VIPS_INTERESTING_ATTENTION
                                                        : VIPS_INTERESTING_ENTROPY,
                              NULL);
    int dx = in->Xsize - w, dy = in->Ysize - h;
    int left = dx / 2, top = dy / 2;
    switch (crop) {
    case PM_CROP_NORTH:
        top = 0;
        break;
    case PM_CROP_SOUTH:
        top = dy;
        break;
    case PM_CROP_EAST:
        left = dx;
        break;
    case PM_CROP_WEST:
        left = 0;
        break;
    case PM_CROP_NORTHEAST:
        top = 0, left = dx;
        break;
    case PM_CROP_NORTHWEST:
        top = 0, left = 0;
        break;
    case PM_CROP_SOUTHEAST:
        top = dy, left = dx;
        break;
    case PM_CROP_SOUTHWEST:
        top = dy, left = 0;
        break;
    default:
        break;
    }
    return vips_extract_area(in, out, left, top, w, h, NULL);
}

static int format_has_alpha(pm_format f)
{
    return f != PM_FORMAT_JPEG;
}

/* fit=contain: centre the image on a canvas of the background colour (transparent where the
 * colour is and the format can carry alpha). */
static int pad_to(VipsImage *in, VipsImage **out, int w, int h, const unsigned char bg[4],
                  pm_format format)
{
    VipsImage *src = in, *tmp = NULL;
    g_object_ref(src);
    if (!vips_image_hasalpha(src) && bg[3] < 255 && format_has_alpha(format)) {
        if (vips_addalpha(src, &tmp, NULL) != 0) {
            g_object_unref(src);
            return -1;
        }
        g_object_unref(src);
        src = tmp;
    }
    int n = vips_image_hasalpha(src) ? 4 : 3;
    VipsArrayDouble *background =
        vips_array_double_newv(n, (double)bg[0], (double)bg[1], (double)bg[2], (double)bg[3]);
    int rc = vips_gravity(src, out, VIPS_COMPASS_DIRECTION_CENTRE, w, h, "extend",
                          VIPS_EXTEND_BACKGROUND, "background", background, NULL);
    vips_area_unref(VIPS_AREA(background));
    g_object_unref(src);
    return rc;
}

/* The image for one size x format, derived from the one decode (already upright: never rotate
 * again): resized to the geometry pixmill computed (the decode itself when it already has
 * that size), then cropped or padded. */

/* The image for one output, derived from the one decode (already upright: never rotate
 * again): resized to the geometry pixmill computed (the decode itself when it already has
 * that size), then cropped or padded. */
static VipsImage *image_for(const pm__process_ctx *ctx, job_state *s, const variant *v)
{
    const pm_geometry g = v->g;
    VipsImage *base = s->decoded, *img = NULL, *t = NULL;
    g_object_ref(base);
    /* An animated decode is a strip of frames: GIF and WebP outputs keep them all (resized
     * frame by frame through page-height); everything else, and any crop or pad, takes the
     * first frame. */
    int page_h = vips_image_get_page_height(base);
    int crop_or_pad = g.width != g.resize_width || g.height != g.resize_height;
    if (page_h < base->Ysize && (!is_animated_format(v->format) || crop_or_pad)) {
        if (vips_crop(base, &t, 0, 0, base->Xsize, page_h, NULL) != 0) {
            g_object_unref(base);
            return NULL;
        }
        g_object_unref(base);
        base = t;
        page_h = base->Ysize;
    }
    if (base->Xsize == g.resize_width && page_h == g.resize_height) {
        img = base;
    } else {
        int rc = vips_thumbnail_image(base, &img, g.resize_width, "height", g.resize_height, "size",
                                      VIPS_SIZE_FORCE, "no_rotate", TRUE, NULL);
        g_object_unref(base);
        if (rc != 0)
            return NULL;
    }
    if (!crop_or_pad)
        return img;
    int rc = (g.width <= g.resize_width && g.height <= g.resize_height)
                 ? crop_to(img, &t, g.width, g.height, ctx->variants[v->vi].crop)
                 : pad_to(img, &t, g.width, g.height, ctx->opts->background, v->format);
    g_object_unref(img);
    return rc == 0 ? t : NULL;
}

/* The event: every output but aliases, with the outcome of the source. */
static void collect(const pm__process_ctx *ctx, job_state *s, pm__result *r)
{
    r->outputs = g_new0(pm_output, s->n ? s->n : 1);
    int n = 0, failed = -1, all_current = s->n > 0;
    for (int i = 0; i < s->n; i++) {
        variant *v = &s->v[i];
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
static int save_state(const pm__process_ctx *ctx, job_state *s, const struct stat *st, int *err)
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
        variant *v = &s->v[i];
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
static void leave_all(const pm__process_ctx *ctx, job_state *s)
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
static void publish_variant(const pm__process_ctx *ctx, job_state *s, variant *v)
{
    int err = 0, rc = output_dir(ctx, s, v->name, &err);
    if (rc != PM_OK) {
        fail_output(v, rc, err, g_strdup("cannot open the output folder"));
        return;
    }
    v->temp.dirfd = s->dirfd;
    v->temp.fd = openat(s->dirfd, v->temp.name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (v->temp.fd < 0) {
        int e = errno;
        fail_output(v, PM_ERR_WRITE, e,
                    g_strdup(e == ENOENT ? "the temporary file was removed before it was published"
                                         : "cannot reopen the temporary file to publish it"));
        if (e == ENOENT)
            v->temp.name[0] = '\0';
        return; /* otherwise still ours: removed with the job */
    }
    struct stat tst;
    if (fstat(v->temp.fd, &tst) != 0 || (uint64_t)tst.st_ino != v->rec.ino ||
        (uint64_t)tst.st_size != v->rec.bytes) {
        fail_output(v, PM_ERR_WRITE, 0,
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
        fail_output(v, rc, err, NULL);
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
    job_state *s = g_new0(job_state, 1);
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

    if (open_source(job, s, r, st) != 0 || check_file_size(o, st, r) != 0)
        goto out;
    pm__state_location(job->out_rel, job->source, &s->state_dir, &s->state_name);
    s->have_old = pm__state_load(ctx->out_rootfd, s->state_dir, s->state_name, &s->old) == 0;

    /* The source is as recorded when its size, mtime, ctime and inode match (a write that
     * puts the mtime back still moves the ctime, which no one can set), or its size and
     * content (a fresh clone resets the times: the bytes are read and hashed): then its header
     * need not be read to know what it makes. */
    int have_hash = 0, fresh = 0;
    if (s->have_old && s->old.size == (uint64_t)st->st_size) {
        if (s->old.mtime_ns == pm__mtime_ns(st) && s->old.ctime_ns == pm__ctime_ns(st) &&
            s->old.ino == (uint64_t)st->st_ino) {
            fresh = 1;
        } else if (pm__hash_fd(s->fd, s->hash) == 0) {
            have_hash = 1;
            fresh = strcmp(s->hash, s->old.hash) == 0;
            s->need_save = fresh; /* record the new mtime: no hashing next time */
        }
    }
    if (fresh) {
        g_strlcpy(s->hash, s->old.hash, sizeof(s->hash));
        s->upright_w = s->old.width;
        s->upright_h = s->old.height;
        s->pages = s->old.pages;
        s->same = s->old.same;
        s->has_profile = s->old.has_profile;
        s->dc_source = s->old.dc_source;
        r->ev.source_width = s->old.width;
        r->ev.source_height = s->old.height;
        /* the tree moved, or the record is older than roots: prune must know */
        s->need_save |= strcmp(s->src, s->old.source) != 0 || !s->old.root ||
                        strlen(s->old.root) != s->root_len ||
                        strncmp(s->old.root, s->src, s->root_len) != 0 ||
                        s->old.root_dev != s->root_dev;
    } else {
        if (read_header(ctx, s, r) != 0)
            goto out;
        have_header = 1;
        if (!have_hash && pm__hash_fd(s->fd, s->hash) != 0) {
            fail(r, PM_ERR_IO, errno, g_strdup("cannot read the whole file"));
            goto out;
        }
        s->need_save = 1;
    }
    plan_outputs(ctx, job, s);
    refuse_clashes(ctx, job, s, st);
    close(s->srcdir); /* the file is open: its folder is not needed again */
    s->srcdir = -1;
    int todo = mark_current(ctx, s, &refreshed);
    s->need_save |= refreshed || drops_outputs(s);
    if (o->dry_run)
        goto out;
    if (todo > 0) {
        if (!have_header && read_header(ctx, s, r) != 0)
            goto out;
        if (refuse_existing(ctx, s, st) > 0 && decode_once(ctx, s, r) == 0) {
            for (int k = 0; k < s->n; k++) {
                variant *v = &s->v[k];
                if (v->current || v->alias || v->out.status != PM_OK)
                    continue;
                VipsImage *img = image_for(ctx, s, v);
                if (!img) {
                    fail_output(v, PM_ERR_ENCODE, 0, take_vips_error());
                    continue;
                }
                write_variant(ctx, s, v, img);
                g_object_unref(img);
                s->need_save |= v->out.status == PM_OK;
            }
        }
    }
out:
    job_state_drop_work(s);
    s->seconds = now_seconds() - t0;
}

void pm__process_finish(const pm__process_ctx *ctx, pm__result *r)
{
    job_state *s = r->tail;
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
        fail(r, PM_ERR_STATE, err, g_strdup("the output is made but will be rebuilt next time"));
    else if ((!held || r->ev.type == PM_EVENT_FAILED) && ctx->opts->prune && !ctx->opts->dry_run)
        leave_all(ctx, s);
    collect(ctx, s, r);
    r->ev.seconds = s->seconds + (now_seconds() - t0);
    job_state_release(s);
    g_free(s);
    r->tail = NULL;
    pm__result_link(r);
}
