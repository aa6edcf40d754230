/* One job: open the source by descriptor, sniff and check the header, decode with
 * shrink-on-load, encode to a temp file in the destination folder, publish atomically.
 * libvips never sees a path: it reads from our descriptor and writes to our temp descriptor. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>
/* after vips.h: vector.h relies on its macros */
#include <vips/vector.h>

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

int pm_loader_allow(const char *format)
{
    static const struct {
        const char *name, *klass;
    } map[] = {{"svg", "VipsForeignLoadSvg"},
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
               {"vips", "VipsForeignLoadVips"}};
    for (size_t i = 0; format && i < G_N_ELEMENTS(map); i++) {
        if (strcmp(format, map[i].name) != 0)
            continue;
        /* A name libvips does not know is ignored silently by vips_operation_block_set: check */
        if (!g_type_from_name(map[i].klass))
            return PM_ERR_USAGE;
        vips_operation_block_set(map[i].klass, FALSE);
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

/* The libvips error text, best effort (the buffer is shared by all threads), on one line. */
static char *take_vips_error(void)
{
    char *text = vips_error_buffer_copy();
    if (!text)
        return NULL;
    g_strstrip(text);
    for (char *p = text; *p; p++)
        if (*p == '\n')
            *p = ';';
    if (!*text) {
        g_free(text);
        return NULL;
    }
    return text;
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
                int strip)
{
    static const VipsForeignSubsample subsample[] = {
        VIPS_FOREIGN_SUBSAMPLE_AUTO, VIPS_FOREIGN_SUBSAMPLE_ON, VIPS_FOREIGN_SUBSAMPLE_OFF};
    int q = o->quality;
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

/* One variant: a size x a resolved format, and what became of it. */
typedef struct variant {
    int size_index;
    pm_format format;
    char *final_name;
    pm_output out;
} variant;

typedef struct job_state {
    int fd;
    int dirfd;
    VipsSource *source;
    VipsImage *header;
    VipsImage *decoded;       /* the one decode, in memory, at the largest size needed */
    int upright_w, upright_h; /* source dimensions after EXIF orientation */
    int has_profile;          /* an ICC profile is embedded */
    int pages;                /* frames or pages in the source */
    variant v[PM_MAX_SIZES * PM_MAX_FORMATS];
    int n;
} job_state;

static void job_state_release(job_state *s)
{
    VIPS_UNREF(s->decoded);
    VIPS_UNREF(s->header);
    VIPS_UNREF(s->source);
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->fd >= 0)
        close(s->fd);
    for (int i = 0; i < s->n; i++)
        g_free(s->v[i].final_name);
}

void pm__result_link(pm__result *r)
{
    r->ev.source = r->source;
    r->ev.message = r->message;
    r->ev.outputs = r->outputs;
    r->ev.output = r->ev.n_outputs > 0 ? r->outputs[0].path : NULL;
}

void pm__result_free(pm__result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->ev.n_outputs; i++) {
        g_free((char *)r->outputs[i].path);
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

/* Every size x format, with 'same' resolved for this source; a pair that resolves to one we
 * already have (say -f same -f jpeg on a JPEG) is made once. */
static void plan_variants(const pm_options *o, pm_format same, const char *out_rel, job_state *s)
{
    const char *slash = strrchr(out_rel, '/');
    const char *stem = slash ? slash + 1 : out_rel;
    for (int i = 0; i < o->n_sizes; i++) {
        char label[32] = "";
        if (o->n_sizes > 1) {
            label[0] = '-';
            pm_size_label(&o->sizes[i], label + 1, sizeof(label) - 1);
        }
        for (int j = 0; j < o->n_formats; j++) {
            pm_format f = o->formats[j] == PM_FORMAT_SAME ? same : o->formats[j];
            int dup = 0;
            for (int k = 0; k < s->n && !dup; k++)
                dup = s->v[k].size_index == i && s->v[k].format == f;
            if (dup)
                continue;
            variant *v = &s->v[s->n++];
            v->size_index = i;
            v->format = f;
            v->final_name = g_strdup_printf("%s%s.%s", stem, label, pm_format_extension(f));
            v->out.format = f;
            v->out.size_index = i;
        }
    }
}

/* Encode one image into one variant's temp file and publish it. */
static void write_variant(const pm__process_ctx *ctx, job_state *s, variant *v, VipsImage *image)
{
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
    int rc = pm__publish_begin(&temp, s->dirfd, &err);
    if (rc != PM_OK) {
        fail_output(v, rc, err, g_strdup("cannot create a temporary file"));
        goto out;
    }
    target = vips_target_new_to_descriptor(temp.fd); /* dups the descriptor */
    if (!target || save(img, target, v->format, ctx->opts, keep == PM_KEEP_NONE) != 0) {
        fail_output(v, PM_ERR_ENCODE, 0, take_vips_error());
        goto out;
    }
    VIPS_UNREF(target);
    struct stat tst;
    if (fstat(temp.fd, &tst) != 0 || tst.st_size == 0) {
        fail_output(v, PM_ERR_ENCODE, errno, g_strdup("encoder wrote nothing"));
        goto out;
    }
    rc = pm__publish_commit(&temp, v->final_name, ctx->overlap, &err);
    if (rc != PM_OK) {
        fail_output(v, rc, err, NULL);
        goto out;
    }
    v->out.bytes = (uint64_t)tst.st_size;
    v->out.width = img->Xsize;
    v->out.height = img->Ysize;
out:
    VIPS_UNREF(target);
    if (temp.fd >= 0 || temp.name[0])
        pm__publish_abort(&temp);
    g_object_unref(img);
}

/* Refuse up front, before decoding: an existing output that is this very input (same inode,
 * any name), or any existing file where the output folder overlaps the inputs. Returns the
 * number of variants still to make. */
static int refuse_existing(const pm__process_ctx *ctx, job_state *s, const struct stat *src)
{
    int todo = 0;
    for (int i = 0; i < s->n; i++) {
        struct stat ost;
        variant *v = &s->v[i];
        if (fstatat(s->dirfd, v->final_name, &ost, AT_SYMLINK_NOFOLLOW) == 0) {
            if (ost.st_dev == src->st_dev && ost.st_ino == src->st_ino) {
                fail_output(v, PM_ERR_OUTPUT_IS_INPUT, 0, NULL);
                continue;
            }
            if (ctx->overlap) {
                fail_output(v, PM_ERR_OUTPUT_EXISTS, 0, NULL);
                continue;
            }
        }
        todo++;
    }
    return todo;
}

/* Open, check the header, decode once into memory at the largest size needed. */
static int open_and_decode(const pm__process_ctx *ctx, const pm__job *job, job_state *s,
                           pm__result *r, struct stat *st, pm_format *same)
{
    const pm_options *o = ctx->opts;
    int flags =
        O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (job->explicit_file ? 0 : O_NOFOLLOW);
    s->fd = open(job->source, flags);
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
        fail(r, PM_ERR_BLOCKED, 0, g_strdup_printf("loader %s", nickname));
        return -1;
    }
    /* Header only (lazy): the pixel cap is checked before any pixel is decoded. */
    s->header = vips_image_new_from_source(s->source, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!s->header) {
        fail(r, PM_ERR_DECODE, 0, take_vips_error());
        return -1;
    }
    uint64_t w = (uint64_t)s->header->Xsize, h = (uint64_t)s->header->Ysize;
    uint64_t pages = (uint64_t)vips_image_get_n_pages(s->header);
    s->pages = (int)MIN(pages, (uint64_t)INT_MAX);
    r->ev.source_width = s->header->Xsize;
    r->ev.source_height = s->header->Ysize;
    if (o->max_pixels && (w * h > o->max_pixels / pages || w * h * pages > o->max_pixels)) {
        fail(r, PM_ERR_TOO_MANY_PIXELS, 0,
             g_strdup_printf("%" G_GUINT64_FORMAT "x%" G_GUINT64_FORMAT " x %" G_GUINT64_FORMAT
                             " page(s) is more than --max-pixels %" G_GUINT64_FORMAT,
                             w, h, pages, o->max_pixels));
        return -1;
    }
    *same = format_for_loader(nickname, s->header);
    s->has_profile = usable_profile(s->header);
    int swap = !o->no_rotate && vips_image_get_orientation_swap(s->header);
    s->upright_w = swap ? s->header->Ysize : s->header->Xsize;
    s->upright_h = swap ? s->header->Xsize : s->header->Ysize;
    return 0;
}

static void geometry_for(const pm_options *o, const job_state *s, int size_index, pm_geometry *g)
{
    pm_geometry_compute(&o->sizes[size_index], o->fit, o->auto_swap, s->upright_w, s->upright_h, g);
}

static int is_animated_format(pm_format f)
{
    return f == PM_FORMAT_GIF || f == PM_FORMAT_WEBP;
}

static int decode_once(const pm__process_ctx *ctx, job_state *s, pm__result *r)
{
    /* One decode at the largest scale any output needs, straight to exact dimensions
     * (size=force: the shrink is worked out per axis, so no later one-pixel stretch shifts the
     * image); every output is derived from it. */
    const pm_options *o = ctx->opts;
    double scale = 0;
    for (int i = 0; i < o->n_sizes; i++) {
        pm_geometry g;
        geometry_for(o, s, i, &g);
        scale = MAX(scale, MAX((double)g.resize_width / s->upright_w,
                               (double)g.resize_height / s->upright_h));
    }
    int width = MAX(1, (int)(s->upright_w * scale + 0.5));
    int height = MAX(1, (int)(s->upright_h * scale + 0.5));
    VipsImage *thumb = NULL;
    /* Every frame only when an animated output wants them (the pixel cap counted them all). */
    int all_pages = 0;
    for (int k = 0; k < s->n && o->animated && s->pages > 1; k++)
        all_pages |= is_animated_format(s->v[k].format);
    /* fail_on is ignored by vips_thumbnail_source() itself (libvips #5195): pass it to the
     * loader through the option string. */
    char *load_options =
        g_strdup_printf("%s%s", all_pages ? "n=-1," : "", fail_on_string(o->fail_on));
    /* export_profile: an embedded profile (Display P3, Adobe RGB, CMYK) is used to convert to
     * the output space. Without it libvips 8.14 only relabels the numbers, and since sRGB
     * outputs carry no profile a P3 photo came out desaturated: 200,30,30 red became 184,50,41.
     * It costs about 15 ms an image even with no profile to apply, so for sRGB output only when
     * one is embedded. */
    const char *export_profile = NULL;
    switch (o->profile) {
    case PM_PROFILE_SRGB:
        export_profile = s->has_profile ? "srgb" : NULL;
        break;
    case PM_PROFILE_P3:
        export_profile = "p3";
        break;
    case PM_PROFILE_FILE:
        export_profile = o->profile_file;
        break;
    case PM_PROFILE_KEEP:
        break;
    }
    static const VipsIntent intents[] = {VIPS_INTENT_RELATIVE, VIPS_INTENT_PERCEPTUAL,
                                         VIPS_INTENT_SATURATION, VIPS_INTENT_ABSOLUTE};
    int rc;
    if (export_profile)
        rc = vips_thumbnail_source(s->source, &thumb, width, "height", height, "size",
                                   VIPS_SIZE_FORCE, "no_rotate", o->no_rotate, "intent",
                                   intents[o->intent], "export_profile", export_profile,
                                   "option_string", load_options, NULL);
    else
        rc = vips_thumbnail_source(s->source, &thumb, width, "height", height, "size",
                                   VIPS_SIZE_FORCE, "no_rotate", o->no_rotate, "intent",
                                   intents[o->intent], "option_string", load_options, NULL);
    g_free(load_options);
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
    s->decoded = vips_image_copy_memory(thumb);
    g_object_unref(thumb);
    r->ev.decodes = 1;
    if (!s->decoded) {
        fail(r, PM_ERR_DECODE, 0, take_vips_error());
        return -1;
    }
    return 0;
}

/* What fit=cover keeps of a resized image. */
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
static VipsImage *image_for(const pm_options *o, job_state *s, int size_index, pm_format format)
{
    pm_geometry g;
    geometry_for(o, s, size_index, &g);
    VipsImage *base = s->decoded, *img = NULL, *t = NULL;
    g_object_ref(base);
    /* An animated decode is a strip of frames: GIF and WebP outputs keep them all (resized
     * frame by frame through page-height); everything else, and any crop or pad, takes the
     * first frame. */
    int page_h = vips_image_get_page_height(base);
    int crop_or_pad = g.width != g.resize_width || g.height != g.resize_height;
    if (page_h < base->Ysize && (!is_animated_format(format) || crop_or_pad)) {
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
                 ? crop_to(img, &t, g.width, g.height, o->crop)
                 : pad_to(img, &t, g.width, g.height, o->background, format);
    g_object_unref(img);
    return rc == 0 ? t : NULL;
}

static void collect(const pm__process_ctx *ctx, const pm__job *job, job_state *s, pm__result *r)
{
    const char *slash = strrchr(job->out_rel, '/');
    int dir_len = slash ? (int)(slash - job->out_rel) : 0;
    r->outputs = g_new0(pm_output, s->n ? s->n : 1);
    r->ev.n_outputs = s->n;
    int failed = -1;
    for (int i = 0; i < s->n; i++) {
        variant *v = &s->v[i];
        r->outputs[i] = v->out;
        r->outputs[i].path = g_strdup_printf("%s/%.*s%s%s", ctx->out_root, dir_len, job->out_rel,
                                             dir_len ? "/" : "", v->final_name);
        v->out.message = NULL; /* moved */
        if (r->ev.type == PM_EVENT_FAILED && v->out.status == PM_OK) {
            r->outputs[i].status = r->ev.status; /* the source failed: nothing was written */
            r->outputs[i].sys_errno = r->ev.sys_errno;
        }
        r->ev.bytes_out += v->out.bytes;
        if (v->out.status != PM_OK && failed < 0)
            failed = i;
    }
    if (s->n > 0) {
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
    } else {
        r->ev.type = PM_EVENT_DONE;
        r->ev.status = PM_OK;
    }
}

void pm__process_job(const pm__process_ctx *ctx, const pm__job *job, pm__result *r)
{
    const pm_options *o = ctx->opts;
    double t0 = now_seconds();
    job_state s = {.fd = -1, .dirfd = -1};
    struct stat st;
    pm_format same = PM_FORMAT_PNG;
    int err = 0;

    memset(r, 0, sizeof(*r));
    r->source = g_strdup(job->source);
    r->ev.type = PM_EVENT_DONE;
    if (open_and_decode(ctx, job, &s, r, &st, &same) != 0)
        goto out;
    plan_variants(o, same, job->out_rel, &s);
    const char *slash = strrchr(job->out_rel, '/');
    char *dir_rel = slash ? g_strndup(job->out_rel, (gsize)(slash - job->out_rel)) : g_strdup("");
    int rc = pm__publish_open_dir(ctx->out_rootfd, dir_rel, &s.dirfd, &err);
    g_free(dir_rel);
    if (rc != PM_OK) {
        fail(r, rc, err, g_strdup("cannot create the output folder"));
        goto out;
    }
    if (refuse_existing(ctx, &s, &st) == 0 || decode_once(ctx, &s, r) != 0)
        goto out;
    for (int k = 0; k < s.n; k++) {
        variant *v = &s.v[k];
        if (v->out.status != PM_OK)
            continue;
        VipsImage *img = image_for(o, &s, v->size_index, v->format);
        if (!img) {
            fail_output(v, PM_ERR_ENCODE, 0, take_vips_error());
            continue;
        }
        write_variant(ctx, &s, v, img);
        g_object_unref(img);
    }
out:
    collect(ctx, job, &s, r);
    job_state_release(&s);
    r->ev.seconds = now_seconds() - t0;
    pm__result_link(r);
}
