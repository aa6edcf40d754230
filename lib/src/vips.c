/* libvips, started once and policed: start-up (one thread a job, no cache, vector paths off),
 * shutdown, the loader policy (which loaders are blocked, and how --allow lets one in), the
 * loader a source's 'same' format follows, and libvips' error text made one line. The only
 * room that sets libvips' global state; it knows nothing of jobs or batches. */
#define _GNU_SOURCE
#include "job.h"

#include <glib.h>
#include <string.h>
#include <vips/vips.h>
/* after vips.h: vector.h relies on its macros */
#include <vips/vector.h>

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
char *pm__vips_error(void)
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

/* "TIFF: open it with --allow=tiff": which format, and how to let it in. */
char *pm__loader_blocked_why(const char *loader, const char *nickname)
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
int pm__loader_is_blocked(const char *loader, const char **nickname)
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

/* The format 'same' writes for a source: its own where we can write it, else PNG (lossless,
 * keeps alpha). */
pm_format pm__format_for_loader(const char *nickname, VipsImage *header)
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

int pm_global_init(const char *argv0)
{
    return pm__vips_init(argv0);
}

void pm_global_shutdown(void)
{
    pm__vips_shutdown();
}
