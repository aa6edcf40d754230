/* Each output from the one decode: resized to the geometry plan.c computed (already upright:
 * never rotated again), cropped or padded, flattened where the format has no alpha, its
 * metadata cut to what --keep asks, and saved by the format's encoder into an O_EXCL temp in
 * the output's folder through pixmill's own checked writes. Publishing the temp is not done
 * here (process.c, on the reporter's thread). */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

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
void pm__encode_write(const pm__process_ctx *ctx, pm__job_state *s, pm__planned *v,
                      VipsImage *image)
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
        pm__output_fail(v, PM_ERR_ENCODE, 0, pm__vips_error());
        goto out;
    }
    int rc = pm__job_output_dir(ctx, s, v->name, &err);
    if (rc != PM_OK) {
        pm__output_fail(v, rc, err, g_strdup("cannot create the output folder"));
        goto out;
    }
    rc = pm__publish_begin(&temp, s->dirfd, &err);
    if (rc != PM_OK) {
        pm__output_fail(v, rc, err, g_strdup("cannot create a temporary file"));
        goto out;
    }
    checked_fd cfd = {.fd = temp.fd};
    target = checked_target(&cfd);
    rc = save(img, target, v->format, ctx->opts, pv->quality, keep == PM_KEEP_NONE);
    int werr = checked_error(&cfd);
    if (rc != 0 || werr) { /* a failed write fails the output, even when the saver says not */
        char *text = rc != 0 ? pm__vips_error() : g_strdup("the encoder went on after it");
        pm__output_fail(v, werr ? PM_ERR_WRITE : PM_ERR_ENCODE, werr, text);
        goto out;
    }
    VIPS_UNREF(target);
#ifdef PM_TEST_HOOKS
    test_hang_writing(s->path);
#endif
    struct stat tst;
    if (fstat(temp.fd, &tst) != 0 || tst.st_size == 0) {
        pm__output_fail(v, PM_ERR_ENCODE, errno, g_strdup("encoder wrote nothing"));
        goto out;
    }
    if (pm__hash_fd(temp.fd, v->rec.hash) != 0) {
        pm__output_fail(v, PM_ERR_WRITE, errno, NULL);
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

/* The image for one output, derived from the one decode (already upright: never rotate
 * again): resized to the geometry pixmill computed (the decode itself when it already has
 * that size), then cropped or padded. */
VipsImage *pm__encode_image_for(const pm__process_ctx *ctx, pm__job_state *s, const pm__planned *v)
{
    const pm_geometry g = v->g;
    VipsImage *base = s->decoded, *img = NULL, *t = NULL;
    g_object_ref(base);
    /* An animated decode is a strip of frames: GIF and WebP outputs keep them all (resized
     * frame by frame through page-height); everything else, and any crop or pad, takes the
     * first frame. */
    int page_h = vips_image_get_page_height(base);
    int crop_or_pad = g.width != g.resize_width || g.height != g.resize_height;
    if (page_h < base->Ysize && (!pm__is_animated_format(v->format) || crop_or_pad)) {
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
