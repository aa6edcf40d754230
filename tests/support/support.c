/* Test helpers; see support.h. */
#define _GNU_SOURCE
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <stdio.h>
#include <jpeglib.h>
#include <libheif/heif.h>
#include <math.h>
#include <tiffio.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vips/vips.h>
#include <webp/decode.h>

char *pmt_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = g_strdup_printf("%s/pixmill-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        g_free(tmpl);
        return NULL;
    }
    char *out = strdup(tmpl);
    g_free(tmpl);
    return out;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (flag == FTW_DP || flag == FTW_DNR)
        chmod(path, 0700);
    return remove(path);
}

void pmt_rmtree(const char *path)
{
    if (path && getenv("PM_TEST_KEEP")) { /* debugging: keep fixtures and outputs */
        fprintf(stderr, "kept %s\n", path);
        return;
    }
    if (path)
        nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS);
}

int pmt_io_make(char **tmp, char **in, char **out)
{
    *tmp = pmt_mkdtemp();
    if (!*tmp)
        return -1;
    *in = pmt_path(*tmp, "in");
    *out = pmt_path(*tmp, "out");
    pmt_mkdirs(*in);
    return 0;
}

void pmt_io_free(char **tmp, char **in, char **out)
{
    pmt_rmtree(*tmp);
    free(*tmp);
    free(*in);
    free(*out);
    *tmp = *in = *out = NULL;
}

char *pmt_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void pmt_mkdirs(const char *path)
{
    g_mkdir_with_parents(path, 0755);
}

int pmt_write_file(const char *path, const void *data, size_t len)
{
    return g_file_set_contents(path, data, (gssize)len, NULL) ? 0 : -1;
}

char *pmt_read_file(const char *path, size_t *len)
{
    gchar *data;
    gsize n;
    if (!g_file_get_contents(path, &data, &n, NULL))
        return NULL;
    char *out = malloc(n + 1);
    memcpy(out, data, n);
    out[n] = '\0';
    g_free(data);
    if (len)
        *len = n;
    return out;
}

int pmt_same_file_bytes(const char *a, const char *b)
{
    size_t la, lb;
    char *da = pmt_read_file(a, &la), *db = pmt_read_file(b, &lb);
    int same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

void pmt_vips_init(void)
{
    if (VIPS_INIT("pixmill-tests") != 0)
        abort();
    vips_concurrency_set(1);
    vips_cache_set_max(0);
}

static VipsImage *gradient(int width, int height, int bands)
{
    VipsImage *xyz, *scaled, *r, *g, *b, *rgb, *out = NULL;
    if (vips_xyz(&xyz, width, height, NULL))
        return NULL;
    double a[2] = {255.0 / (width > 1 ? width - 1 : 1), 255.0 / (height > 1 ? height - 1 : 1)};
    double c[2] = {0, 0};
    vips_linear(xyz, &scaled, a, c, 2, NULL);
    vips_extract_band(scaled, &r, 0, NULL);
    vips_extract_band(scaled, &g, 1, NULL);
    vips_linear1(r, &b, -1.0, 255.0, NULL);
    VipsImage *parts[4] = {r, g, b, NULL};
    int n = 3;
    if (bands == 4) { /* alpha 0 on the left half, opaque on the right */
        VipsImage *mask;
        vips_more_const1(xyz, &mask, width / 2.0, NULL);
        vips_extract_band(mask, &parts[3], 0, NULL);
        g_object_unref(mask);
        n = 4;
    }
    vips_bandjoin(parts, &rgb, n, NULL);
    vips_cast_uchar(rgb, &out, NULL);
    out->Type = VIPS_INTERPRETATION_sRGB;
    for (int i = 0; i < n; i++)
        g_object_unref(parts[i]);
    g_object_unref(rgb);
    g_object_unref(scaled);
    g_object_unref(xyz);
    return out;
}

int pmt_write_image(const char *path, int width, int height, int bands)
{
    VipsImage *im = gradient(width, height, bands);
    if (!im)
        return -1;
    int rc = vips_image_write_to_file(im, path, NULL);
    g_object_unref(im);
    return rc;
}

void *pmt_encode_image(const char *suffix, int width, int height, int bands, size_t *len)
{
    VipsImage *im = gradient(width, height, bands);
    void *buf = NULL;
    if (im && vips_image_write_to_buffer(im, suffix, &buf, len, NULL) != 0)
        buf = NULL;
    if (im)
        g_object_unref(im);
    return buf;
}

int pmt_png_decode(const char *path, int *w, int *h, int *channels)
{
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return -1;
    *w = (int)img.width;
    *h = (int)img.height;
    *channels = (int)PNG_IMAGE_SAMPLE_CHANNELS(img.format);
    img.format = PNG_FORMAT_RGBA;
    png_bytep buf = malloc(PNG_IMAGE_SIZE(img));
    int ok = buf && png_image_finish_read(&img, NULL, buf, 0, NULL);
    free(buf);
    png_image_free(&img);
    return ok ? 0 : -1;
}

struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
};

/* Count warnings (a truncated file warns) without printing them. */
static void jerr_emit(j_common_ptr cinfo, int level)
{
    if (level < 0)
        cinfo->err->num_warnings++;
}

static void jerr_exit(j_common_ptr cinfo)
{
    longjmp(((struct jerr *)cinfo->err)->jb, 1);
}

/* Every pixel through libjpeg at 1/denom, RGB or grey: malloc'd, or NULL when libjpeg fails
 * or (unless lenient) warns (a truncated file warns). */
static unsigned char *jpeg_pixels(const char *path, int denom, int *w, int *h, int *channels,
                                  int lenient)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct jpeg_decompress_struct cinfo;
    struct jerr je;
    unsigned char *volatile px = NULL;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jerr_exit;
    je.mgr.emit_message = jerr_emit;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(px);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned)denom;
    jpeg_start_decompress(&cinfo);
    *w = (int)cinfo.output_width;
    *h = (int)cinfo.output_height;
    *channels = cinfo.output_components;
    size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    px = malloc(stride * cinfo.output_height);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[1] = {px + stride * cinfo.output_scanline};
        jpeg_read_scanlines(&cinfo, rows, 1);
    }
    int warnings = (int)je.mgr.num_warnings;
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    if (warnings && !lenient) {
        free(px);
        return NULL;
    }
    return px;
}

unsigned char *pmt_jpeg_eighth(const char *path, int *w, int *h, int *channels)
{
    return jpeg_pixels(path, 8, w, h, channels, 0);
}

unsigned char *pmt_jpeg_eighth_lenient(const char *path, int *w, int *h, int *channels)
{
    return jpeg_pixels(path, 8, w, h, channels, 1);
}

int pmt_jpeg_decode(const char *path, int *w, int *h, int *channels, unsigned char *corner_rgb)
{
    unsigned char *px = jpeg_pixels(path, 1, w, h, channels, 0);
    if (!px)
        return -1;
    for (int i = 0; corner_rgb && i < 3; i++) /* top-left pixel */
        corner_rgb[i] = px[*channels == 3 ? i : 0];
    free(px);
    return 0;
}

int pmt_jpeg_header(const char *path, int *progressive, int *h_samp, int *v_samp)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct jpeg_decompress_struct cinfo;
    struct jerr je;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jerr_exit;
    je.mgr.emit_message = jerr_emit;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    *progressive = cinfo.progressive_mode;
    *h_samp = cinfo.comp_info[0].h_samp_factor;
    *v_samp = cinfo.comp_info[0].v_samp_factor;
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return 0;
}

int pmt_webp_decode(const char *path, int *w, int *h, int *has_alpha)
{
    size_t len;
    char *data = pmt_read_file(path, &len);
    if (!data)
        return -1;
    WebPBitstreamFeatures feat;
    int rc = -1;
    if (WebPGetFeatures((const uint8_t *)data, len, &feat) == VP8_STATUS_OK) {
        uint8_t *px = WebPDecodeRGBA((const uint8_t *)data, len, w, h);
        if (px) {
            *has_alpha = feat.has_alpha;
            WebPFree(px);
            rc = 0;
        }
    }
    free(data);
    return rc;
}

static char *slurp_fd(int fd)
{
    GString *s = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        g_string_append_len(s, buf, n);
    char *out = strdup(s->str);
    g_string_free(s, TRUE);
    return out;
}

int pmt_run(char *const argv[], char **out, char **err, struct rusage *ru)
{
    FILE *fo = tmpfile(), *fe = tmpfile();
    if (!fo || !fe)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        /* as from a shell: nothing of the test process beyond 0, 1 and 2 */
        close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
    }
    if (ru)
        *ru = usage;
    if (out)
        *out = slurp_fd(fileno(fo));
    if (err)
        *err = slurp_fd(fileno(fe));
    fclose(fo);
    fclose(fe);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

void pmt_no_leak_check_when_traced(void)
{
    const char *asan = getenv("ASAN_OPTIONS");
    if (asan && !strstr(asan, "detect_leaks=0")) {
        char *opts = g_strdup_printf("%s:detect_leaks=0", asan);
        setenv("ASAN_OPTIONS", opts, 1);
        g_free(opts);
    }
}

int pmt_run_argv(const char **argv, char **err)
{
    char *e = NULL;
    int rc = pmt_run((char *const *)argv, NULL, &e, NULL);
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

static int pixmill_runv(const char *const *prefix, char **out, char **err, const char *first,
                        va_list ap)
{
    const char *argv[64];
    int n = 0;
    for (; prefix && prefix[n]; n++)
        argv[n] = prefix[n];
    argv[n++] = pmt_pixmill();
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    argv[n] = NULL;
    char *o = NULL, *e = NULL;
    int rc = pmt_run((char *const *)argv, out ? &o : NULL, &e, NULL);
    if (out)
        *out = o;
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

int pmt_pixmill_run(char **err, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = pixmill_runv(NULL, NULL, err, first, ap);
    va_end(ap);
    return rc;
}

int pmt_pixmill_run_out(char **out, char **err, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = pixmill_runv(NULL, out, err, first, ap);
    va_end(ap);
    return rc;
}

int pmt_pixmill_traced(const char *calls, const char *log, char **err, const char *first, ...)
{
    char *trace = g_strdup_printf("trace=%s", calls);
    const char *prefix[] = {"/usr/bin/strace", "-f", "-qq", "-s256", "-e", trace, "-o", log, NULL};
    pmt_no_leak_check_when_traced();
    va_list ap;
    va_start(ap, first);
    int rc = pixmill_runv(prefix, NULL, err, first, ap);
    va_end(ap);
    g_free(trace);
    return rc;
}

int pmt_count_lines(const char *path, const char *needle)
{
    char *text = pmt_read_file(path, NULL);
    int n = 0;
    gchar **lines = g_strsplit(text ? text : "", "\n", -1);
    for (int i = 0; lines[i]; i++)
        n += strstr(lines[i], needle) != NULL;
    g_strfreev(lines);
    free(text);
    return n;
}

char *pmt_make_image(const char *dir, const char *rel, int width, int height, int bands)
{
    char *p = pmt_path(dir, rel);
    char *parent = g_path_get_dirname(p);
    pmt_mkdirs(parent);
    g_free(parent);
    if (pmt_write_image(p, width, height, bands) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

const char *pmt_pixmill(void)
{
    const char *p = getenv("PIXMILL_BIN");
    return p ? p : "pixmill";
}

static const char *count_needle;
static int count_hits;

static int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    /* pixmill's own build state (.pixmill/) is not an output */
    if (flag == FTW_F && strstr(path + ftw->base, count_needle) && !strstr(path, "/.pixmill/"))
        count_hits++;
    return 0;
}

int pmt_count_files(const char *dir, const char *needle)
{
    count_needle = needle;
    count_hits = 0;
    nftw(dir, count_one, 64, FTW_PHYS);
    return count_hits;
}

static GPtrArray *digest_lines;
static size_t digest_root_len;

static int digest_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)flag, (void)ftw;
    GString *line = g_string_new(path + digest_root_len);
    g_string_append_printf(line, "\t%o\t%lu\t", (unsigned)sb->st_mode, (unsigned long)sb->st_nlink);
    if (S_ISREG(sb->st_mode)) {
        size_t len = 0;
        char *data = pmt_read_file(path, &len);
        char *sum = data ? g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, len)
                         : g_strdup("unreadable");
        g_string_append(line, sum);
        g_free(sum);
        free(data);
    } else if (S_ISLNK(sb->st_mode)) {
        char target[4096];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        g_string_append_len(line, target, n > 0 ? n : 0);
    }
    g_ptr_array_add(digest_lines, g_string_free(line, FALSE));
    return 0;
}

static gint digest_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *pmt_tree_digest(const char *dir)
{
    digest_lines = g_ptr_array_new_with_free_func(g_free);
    digest_root_len = strlen(dir);
    nftw(dir, digest_one, 64, FTW_PHYS);
    g_ptr_array_sort(digest_lines, digest_cmp);
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    for (guint i = 0; i < digest_lines->len; i++) {
        const char *l = g_ptr_array_index(digest_lines, i);
        g_checksum_update(sum, (const guchar *)l, (gssize)strlen(l) + 1);
    }
    char *hex = strdup(g_checksum_get_string(sum));
    g_checksum_free(sum);
    g_ptr_array_free(digest_lines, TRUE);
    digest_lines = NULL;
    return hex;
}

int pmt_scale_divisor(void)
{
    const char *s = getenv("PM_TEST_SCALE");
    int d = s ? atoi(s) : 1;
    return d > 0 ? d : 1;
}

int pmt_heif_decode(const char *path, int *w, int *h)
{
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *handle = NULL;
    struct heif_image *img = NULL;
    int rc = -1;
    if (heif_context_read_from_file(ctx, path, NULL).code == heif_error_Ok &&
        heif_context_get_primary_image_handle(ctx, &handle).code == heif_error_Ok &&
        heif_decode_image(handle, &img, heif_colorspace_RGB, heif_chroma_interleaved_RGB, NULL)
                .code == heif_error_Ok) {
        *w = heif_image_get_width(img, heif_channel_interleaved);
        *h = heif_image_get_height(img, heif_channel_interleaved);
        rc = 0;
    }
    if (img)
        heif_image_release(img);
    if (handle)
        heif_image_handle_release(handle);
    heif_context_free(ctx);
    return rc;
}

int pmt_tiff_decode(const char *path, int *w, int *h)
{
    TIFFSetWarningHandler(NULL);
    TIFF *t = TIFFOpen(path, "r");
    if (!t)
        return -1;
    uint32_t tw = 0, th = 0;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &th);
    uint32_t *raster = malloc((size_t)tw * th * sizeof(uint32_t));
    int ok = raster && TIFFReadRGBAImageOriented(t, tw, th, raster, ORIENTATION_TOPLEFT, 0);
    free(raster);
    TIFFClose(t);
    *w = (int)tw;
    *h = (int)th;
    return ok ? 0 : -1;
}

unsigned char *pmt_png_rgba(const char *path, int *w, int *h)
{
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return NULL;
    img.format = PNG_FORMAT_RGBA;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&img);
        return NULL;
    }
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}

double pmt_mad_rgb(const unsigned char *a, const unsigned char *b, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            sum += fabs((double)a[i * 4 + c] - (double)b[i * 4 + c]);
    return n ? sum / (double)(n * 3) : 0;
}

double pmt_psnr_rgb(const unsigned char *a, const unsigned char *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            double d = (double)a[i * 4 + c] - (double)b[i * 4 + c];
            se += d * d;
        }
    double mse = n ? se / (double)(n * 3) : 0;
    return mse > 0 ? 10.0 * log10(255.0 * 255.0 / mse) : 99.0;
}

int pmt_file_contains(const char *path, const void *needle, size_t len)
{
    size_t n;
    char *data = pmt_read_file(path, &n);
    int found = data && memmem(data, n, needle, len) != NULL;
    free(data);
    return found;
}
