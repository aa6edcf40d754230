/* A source from its descriptor to its one decode: opened where the scan found it (never
 * through a link), its size limit, sniffed and its header read (the loader policy, the pixel
 * and page caps, what it is), then decoded once, at the largest size any output needs, through
 * the decode gate when its decoder holds the whole image, or from its DC coefficients
 * (jpegdc.c) when an eighth is enough. libvips never sees a path: it reads our descriptor.
 * Decides no output (plan.c) and writes nothing (encode.c). */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

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

/* --max-file-size: checked on the open descriptor, before a byte is read. */
static int check_file_size(const pm_options *o, const struct stat *st, pm__result *r)
{
    if (o->max_file_size && (uint64_t)st->st_size > o->max_file_size) {
        pm__job_fail(r, PM_ERR_LIMIT, 0,
                     g_strdup_printf("%" G_GUINT64_FORMAT
                                     " bytes is more than --max-file-size %" G_GUINT64_FORMAT,
                                     (guint64)st->st_size, o->max_file_size));
        return -1;
    }
    return 0;
}

/* Open the source where the scan found it, and check it is a non-empty regular file: its
 * folder by its physical path with no link on the way (a folder swapped for a link since the
 * scan is not followed), that folder checked to be the one the scan saw, then the file in it
 * with O_NOFOLLOW; and within --max-file-size. */
int pm__source_open(const pm_options *o, const pm__job *job, pm__job_state *s, pm__result *r,
                    struct stat *st)
{
    s->srcdir = pm__open_physical(job->dir, O_PATH | O_DIRECTORY);
    if (s->srcdir < 0) {
        int err = errno;
        pm__job_fail(r, err == ELOOP ? PM_ERR_SYMLINK : PM_ERR_IO, err,
                     err == ELOOP ? g_strdup("a folder on its way is a symbolic link now") : NULL);
        return -1;
    }
    struct stat dst;
    if (fstat(s->srcdir, &dst) != 0 || (uint64_t)dst.st_dev != job->dir_dev ||
        (uint64_t)dst.st_ino != job->dir_ino) {
        pm__job_fail(r, PM_ERR_IO, ESTALE,
                     g_strdup("its folder was replaced after the scan found it"));
        return -1;
    }
    s->fd = openat(s->srcdir, job->name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (s->fd < 0) {
        int err = errno;
        pm__job_fail(r, err == ELOOP ? PM_ERR_SYMLINK : PM_ERR_IO, err, NULL);
        return -1;
    }
    if (fstat(s->fd, st) != 0) {
        pm__job_fail(r, PM_ERR_IO, errno, NULL);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        pm__job_fail(r, PM_ERR_NOT_REGULAR, 0, NULL);
        return -1;
    }
    r->ev.bytes_in = (uint64_t)st->st_size;
    if (st->st_size == 0) {
        pm__job_fail(r, PM_ERR_UNKNOWN_FORMAT, 0, g_strdup("empty file"));
        return -1;
    }
    return check_file_size(o, st, r);
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
int pm__source_read_header(const pm__process_ctx *ctx, pm__job_state *s, pm__result *r)
{
    const pm_options *o = ctx->opts;
    char *declared = pm__container_check(s->fd, (uint64_t)s->st.st_size);
    if (declared) {
        pm__job_fail(r, PM_ERR_DECODE, 0, declared);
        return -1;
    }
    s->source = vips_source_new_from_descriptor(s->fd); /* dups the descriptor */
    if (!s->source) {
        pm__job_fail(r, PM_ERR_IO, 0, pm__vips_error());
        return -1;
    }
    const char *loader = vips_foreign_find_load_source(s->source);
    if (!loader) {
        vips_error_clear();
        pm__job_fail(r, PM_ERR_UNKNOWN_FORMAT, 0, NULL);
        return -1;
    }
    const char *nickname;
    if (pm__loader_is_blocked(loader, &nickname)) {
        pm__job_fail(r, PM_ERR_BLOCKED, 0, pm__loader_blocked_why(loader, nickname));
        return -1;
    }
    s->header = vips_image_new_from_source(s->source, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!s->header) {
        pm__job_fail(r, PM_ERR_DECODE, 0, pm__vips_error());
        return -1;
    }
    uint64_t w = (uint64_t)s->header->Xsize, h = (uint64_t)s->header->Ysize;
    uint64_t pages = (uint64_t)vips_image_get_n_pages(s->header);
    s->pages = (int)MIN(pages, (uint64_t)INT_MAX);
    if (o->max_pages && pages > (uint64_t)o->max_pages) {
        pm__job_fail(r, PM_ERR_LIMIT, 0,
                     g_strdup_printf("%" G_GUINT64_FORMAT
                                     " pages or frames is more than --max-pages %d",
                                     pages, o->max_pages));
        return -1;
    }
    if (o->max_pixels && (w * h > o->max_pixels / pages || w * h * pages > o->max_pixels)) {
        pm__job_fail(r, PM_ERR_TOO_MANY_PIXELS, 0,
                     g_strdup_printf("%" G_GUINT64_FORMAT "x%" G_GUINT64_FORMAT
                                     " x %" G_GUINT64_FORMAT
                                     " page(s) is more than --max-pixels %" G_GUINT64_FORMAT,
                                     w, h, pages, o->max_pixels));
        return -1;
    }
    /* Grey, RGB and CMYK, each with or without alpha. More bands (a multispectral TIFF, extra
     * channels) have no one right way into the output space: refused, the same for every
     * output format (BAD-INPUT 9), rather than some formats keeping four of them. */
    int bands = s->header->Bands, cmyk = s->header->Type == VIPS_INTERPRETATION_CMYK;
    if (bands > (cmyk ? 5 : 4)) {
        pm__job_fail(
            r, PM_ERR_UNSUPPORTED, 0,
            g_strdup_printf("%d bands (%s): pixmill converts grey, RGB and CMYK images, with or "
                            "without alpha",
                            bands, vips_enum_nick(VIPS_TYPE_INTERPRETATION, s->header->Type)));
        return -1;
    }
    s->same = pm__format_for_loader(nickname, s->header);
    s->has_profile = usable_profile(s->header);
    int swap = !o->no_rotate && vips_image_get_orientation_swap(s->header);
    s->dc_source = dc_source_of(s->header, swap);
    s->upright_w = swap ? s->header->Ysize : s->header->Xsize;
    s->upright_h = swap ? s->header->Xsize : s->header->Ysize;
    r->ev.source_width = s->upright_w;
    r->ev.source_height = s->upright_h;
    return 0;
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
    int may = loader && !pm__loader_is_blocked(loader, &nickname);
    if (!loader)
        vips_error_clear();
    if (may) {
        /* its header, as its own job reads it: one that cannot be read never writes; one
         * that can tells what 'same' is for it (the content decides, not the extension: a
         * PNG named x.jpg beside x.png makes x.png too) */
        VipsImage *h = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
        if (h)
            *same = pm__format_for_loader(nickname, h);
        else
            vips_error_clear();
        may = h != NULL;
        VIPS_UNREF(h);
    }
    g_object_unref(src);
    return may;
}

/* fd: the file, opened (or -1 with errno). Unreadable files never write; others may. */
int pm__source_may_write(int fd, pm_format *same)
{
    *same = PM_FORMAT_PNG;
    if (fd < 0)
        return errno != EACCES && errno != ENOENT && errno != ELOOP;
    return may_write_fd(fd, same);
}

/* The profile the decode converts to (export_profile); NULL: none. */
const char *pm__export_profile(const pm_options *o, int has_profile)
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

/* Below this a whole-image decode is not worth queueing for. */
#define WHOLE_DECODE_MIN (8ULL << 20)

/* What the decode holds at once when its decoder cannot stream, estimated from the header
 * (measured at 20 MP: progressive JPEG 4:4:4 +119 MB, interlaced PNG +66 MB, HEIC +162 MB,
 * AVIF +148 MB over the libraries' 33 MB); 0 for decoders that stream. */
static uint64_t whole_decode_bytes(const pm__job_state *s)
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

/* The pipeline computed into a new memory image, on this thread, with its metadata. Not
 * vips_image_copy_memory(): that runs the pipeline on a libvips pool thread while this one
 * waits, and two workers in one process doing so lost about 12 % of their speed on small
 * images to the hand-offs (the levers table of README.md at d73a2cb). Strips as high as a libvips
 * sink would ask for, top to bottom, so sequential loaders and the caches between stages work as
 * they do under a sink (one request for the whole image was slower on large outputs). */
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
static VipsImage *dc_image(const pm__job_state *s)
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

static int decode_in_memory(const pm__process_ctx *ctx, pm__job_state *s, VipsImage *dc,
                            pm__result *r)
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
    const char *export_profile = pm__export_profile(o, s->has_profile);
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
        pm__job_fail(r, PM_ERR_DECODE, 0, pm__vips_error());
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
            pm__job_fail(r, PM_ERR_DECODE, 0, pm__vips_error());
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
        pm__job_fail(r, PM_ERR_DECODE, 0, pm__vips_error());
        return -1;
    }
    return 0;
}

/* The one decode, through the gate when it holds the whole image: the decoder's peak is
 * behind the gate, the small decoded image is not. */
int pm__decode_once(const pm__process_ctx *ctx, pm__job_state *s, pm__result *r)
{
    /* the DC decode holds two bytes a block: never behind the gate */
    VipsImage *dc = s->dc ? dc_image(s) : NULL;
    uint64_t bytes = s->header && !dc ? whole_decode_bytes(s) : 0;
    uint64_t budget = ctx->opts->decode_budget;
    /* A decode that cannot fit the budget alone is refused, not run: what a header declares
     * (a 468-byte progressive JPEG claiming 16000x16000 took 534 MB) never costs more. */
    if (budget && bytes > budget) {
        VIPS_UNREF(dc);
        pm__job_fail(r, PM_ERR_LIMIT, 0,
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
    int lane_lock =
        heavy && ctx->out_rootfd >= 0
            ? pm__lanes_decode_lock(ctx->out_rootfd, ctx->opts->decode_budget, ctx->lanes, bytes)
            : -1;
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
