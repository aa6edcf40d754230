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
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      silence_vips_log, NULL);
    return PM_OK;
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

static pm_format format_for_loader(const char *nickname)
{
    if (g_str_has_prefix(nickname, "jpegload"))
        return PM_FORMAT_JPEG;
    if (g_str_has_prefix(nickname, "webpload"))
        return PM_FORMAT_WEBP;
    return PM_FORMAT_PNG; /* png itself, and a lossless home for everything else */
}

static int save(VipsImage *image, VipsTarget *target, pm_format format, int quality)
{
    switch (format) {
    case PM_FORMAT_JPEG:
        return vips_jpegsave_target(image, target, "Q", quality ? quality : 80, "strip", TRUE,
                                    "optimize_coding", TRUE, NULL);
    case PM_FORMAT_WEBP:
        return vips_webpsave_target(image, target, "Q", quality ? quality : 80, "strip", TRUE,
                                    NULL);
    case PM_FORMAT_PNG:
    default:
        return vips_pngsave_target(image, target, "strip", TRUE, NULL);
    }
}

/* JPEG has no alpha: flatten on white rather than let the saver drop it (transparent areas
 * would come out as whatever colour they hold, often black). */
static int flatten_if_needed(VipsImage **image, pm_format format)
{
    if (format != PM_FORMAT_JPEG || !vips_image_hasalpha(*image))
        return 0;
    VipsImage *flat = NULL;
    double max_alpha = ((*image)->BandFmt == VIPS_FORMAT_USHORT) ? 65535.0 : 255.0;
    VipsArrayDouble *white = vips_array_double_newv(1, max_alpha);
    int rc = vips_flatten(*image, &flat, "background", white, "max_alpha", max_alpha, NULL);
    vips_area_unref(VIPS_AREA(white));
    if (rc != 0)
        return -1;
    g_object_unref(*image);
    *image = flat;
    return 0;
}

typedef struct job_state {
    int fd;
    int dirfd;
    VipsSource *source;
    VipsImage *header;
    VipsImage *thumb;
    VipsTarget *target;
    pm__temp temp;
} job_state;

static void job_state_release(job_state *s)
{
    VIPS_UNREF(s->target);
    if (s->temp.fd >= 0 || s->temp.name[0])
        pm__publish_abort(&s->temp);
    VIPS_UNREF(s->thumb);
    VIPS_UNREF(s->header);
    VIPS_UNREF(s->source);
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->fd >= 0)
        close(s->fd);
}

static void fail(pm_event *ev, int status, int err, char **message, char *text)
{
    ev->type = PM_EVENT_FAILED;
    ev->status = status;
    ev->sys_errno = err;
    g_free(*message);
    *message = text;
}

void pm__process_job(const pm__process_ctx *ctx, const pm__job *job, pm_event *ev, char **output,
                     char **message)
{
    const pm_options *o = ctx->opts;
    double t0 = now_seconds();
    job_state s = {.fd = -1, .dirfd = -1, .temp = {.fd = -1}};
    int err = 0;

    memset(ev, 0, sizeof(*ev));
    ev->source = job->source;
    *output = NULL;
    *message = NULL;

    int flags =
        O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (job->explicit_file ? 0 : O_NOFOLLOW);
    s.fd = open(job->source, flags);
    if (s.fd < 0) {
        err = errno;
        fail(ev, err == ELOOP ? PM_ERR_SYMLINK : PM_ERR_IO, err, message, NULL);
        goto out;
    }
    struct stat st;
    if (fstat(s.fd, &st) != 0) {
        fail(ev, PM_ERR_IO, errno, message, NULL);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(ev, PM_ERR_NOT_REGULAR, 0, message, NULL);
        goto out;
    }
    ev->bytes_in = (uint64_t)st.st_size;
    if (st.st_size == 0) {
        fail(ev, PM_ERR_UNKNOWN_FORMAT, 0, message, g_strdup("empty file"));
        goto out;
    }

    s.source = vips_source_new_from_descriptor(s.fd); /* dups the descriptor */
    if (!s.source) {
        fail(ev, PM_ERR_IO, 0, message, take_vips_error());
        goto out;
    }
    const char *loader = vips_foreign_find_load_source(s.source);
    if (!loader) {
        vips_error_clear();
        fail(ev, PM_ERR_UNKNOWN_FORMAT, 0, message, NULL);
        goto out;
    }
    const char *nickname;
    if (loader_is_blocked(loader, &nickname)) {
        fail(ev, PM_ERR_BLOCKED, 0, message, g_strdup_printf("loader %s", nickname));
        goto out;
    }

    /* Header only (lazy): the pixel cap is checked before any pixel is decoded. */
    s.header = vips_image_new_from_source(s.source, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!s.header) {
        fail(ev, PM_ERR_DECODE, 0, message, take_vips_error());
        goto out;
    }
    uint64_t w = (uint64_t)s.header->Xsize, h = (uint64_t)s.header->Ysize;
    uint64_t pages = (uint64_t)vips_image_get_n_pages(s.header);
    ev->source_width = s.header->Xsize;
    ev->source_height = s.header->Ysize;
    VIPS_UNREF(s.header);
    if (o->max_pixels && (w * h > o->max_pixels / pages || w * h * pages > o->max_pixels)) {
        fail(ev, PM_ERR_TOO_MANY_PIXELS, 0, message,
             g_strdup_printf("%" G_GUINT64_FORMAT "x%" G_GUINT64_FORMAT " x %" G_GUINT64_FORMAT
                             " page(s) is more than --max-pixels %" G_GUINT64_FORMAT,
                             w, h, pages, o->max_pixels));
        goto out;
    }

    pm_format format = o->format == PM_FORMAT_SAME ? format_for_loader(nickname) : o->format;
    const char *slash = strrchr(job->out_rel, '/');
    char *dir_rel = slash ? g_strndup(job->out_rel, (gsize)(slash - job->out_rel)) : g_strdup("");
    char *final_name =
        g_strdup_printf("%s.%s", slash ? slash + 1 : job->out_rel, pm_format_extension(format));
    *output = g_strdup_printf("%s/%s%s%s", ctx->out_root, dir_rel, *dir_rel ? "/" : "", final_name);
    int rc = pm__publish_open_dir(ctx->out_rootfd, dir_rel, &s.dirfd, &err);
    g_free(dir_rel);
    if (rc != PM_OK) {
        fail(ev, rc, err, message, g_strdup("cannot create the output folder"));
        goto out_name;
    }
    /* Refuse up front, before decoding: an existing output that is this very input (same
     * inode, any name), or any existing file where the output folder overlaps the inputs. */
    struct stat ost;
    if (fstatat(s.dirfd, final_name, &ost, AT_SYMLINK_NOFOLLOW) == 0) {
        if (ost.st_dev == st.st_dev && ost.st_ino == st.st_ino) {
            fail(ev, PM_ERR_OUTPUT_IS_INPUT, 0, message, NULL);
            goto out_name;
        }
        if (ctx->overlap) {
            fail(ev, PM_ERR_OUTPUT_EXISTS, 0, message, NULL);
            goto out_name;
        }
    }

    int width = o->size.width ? o->size.width : VIPS_MAX_COORD;
    int height = o->size.height ? o->size.height : VIPS_MAX_COORD;
    /* fail_on is ignored by vips_thumbnail_source() itself (libvips #5195): pass it to the
     * loader through the option string. */
    if (vips_thumbnail_source(s.source, &s.thumb, width, "height", height, "size", VIPS_SIZE_DOWN,
                              "option_string", fail_on_string(o->fail_on), NULL) != 0) {
        fail(ev, PM_ERR_DECODE, 0, message, take_vips_error());
        goto out_name;
    }
    /* Decode now, into memory (the output is small): decoding is lazy, so without this a
     * truncated source would only fail inside the saver and look like an encoding error. It
     * is also the one decode that later variants will be derived from. */
    VipsImage *decoded = vips_image_copy_memory(s.thumb);
    if (!decoded) {
        fail(ev, PM_ERR_DECODE, 0, message, take_vips_error());
        goto out_name;
    }
    g_object_unref(s.thumb);
    s.thumb = decoded;
    if (flatten_if_needed(&s.thumb, format) != 0) {
        fail(ev, PM_ERR_ENCODE, 0, message, take_vips_error());
        goto out_name;
    }
    rc = pm__publish_begin(&s.temp, s.dirfd, &err);
    if (rc != PM_OK) {
        fail(ev, rc, err, message, g_strdup("cannot create a temporary file"));
        goto out_name;
    }
    s.target = vips_target_new_to_descriptor(s.temp.fd); /* dups the descriptor */
    if (!s.target || save(s.thumb, s.target, format, o->quality) != 0) {
        fail(ev, PM_ERR_ENCODE, 0, message, take_vips_error());
        goto out_name;
    }
    VIPS_UNREF(s.target);
    struct stat tst;
    if (fstat(s.temp.fd, &tst) != 0 || tst.st_size == 0) {
        fail(ev, PM_ERR_ENCODE, errno, message, g_strdup("encoder wrote nothing"));
        goto out_name;
    }
    rc = pm__publish_commit(&s.temp, final_name, ctx->overlap, &err);
    if (rc != PM_OK) {
        fail(ev, rc, err, message, NULL);
        goto out_name;
    }
    ev->type = PM_EVENT_DONE;
    ev->status = PM_OK;
    ev->bytes_out = (uint64_t)tst.st_size;
    ev->width = s.thumb->Xsize;
    ev->height = s.thumb->Ysize;
out_name:
    g_free(final_name);
out:
    job_state_release(&s);
    ev->seconds = now_seconds() - t0;
}
