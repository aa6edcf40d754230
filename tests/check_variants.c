/* Many outputs from one decode, through the built binary: every output format decodes with a
 * library or tool that is not libvips; sizes x formats are named and sized right; one decode per
 * source (bytes read, counted by strace); derived sizes match the separate path; EXIF
 * orientation comes out upright at every size; camera metadata never reaches an output. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

static char *tmp, *in, *out;

static void setup(void)
{
    pmt_vips_init();
    ck_assert_int_eq(pmt_io_make(&tmp, &in, &out), 0);
}

static void teardown(void)
{
    pmt_io_free(&tmp, &in, &out);
}

static char *sample(const char *rel)
{
    const char *s = getenv("PM_SAMPLES");
    ck_assert_ptr_nonnull(s);
    return pmt_path(s, rel);
}

/* gifsicle --info prints "logical screen WxH". */
static int gif_size(const char *path, int *w, int *h)
{
    const char *argv[] = {"/usr/bin/gifsicle", "--info", path, NULL};
    char *o = NULL;
    int rc = pmt_run((char *const *)argv, &o, NULL, NULL);
    const char *p = o ? strstr(o, "logical screen ") : NULL;
    int ok = rc == 0 && p && sscanf(p, "logical screen %dx%d", w, h) == 2;
    free(o);
    return ok ? 0 : -1;
}

START_TEST(test_every_format_decodes_independently)
{
    char *src = pmt_path(in, "g.png");
    ck_assert_int_eq(pmt_write_image(src, 400, 300, 3), 0);
    char *err;
    int rc = pmt_pixmill_run(&err, "-s", "100", "-f", "jpeg", "-f", "png", "-f", "webp", "-f",
                             "avif", "-f", "heif", "-f", "gif", "-f", "tiff", "-o", out, src, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    int w, h, c, a;
    char *p;
    p = pmt_path(out, "g.jpg");
    ck_assert_int_eq(pmt_jpeg_decode(p, &w, &h, &c, NULL), 0);
    ck_assert(w == 100 && h == 75);
    free(p);
    p = pmt_path(out, "g.png");
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert(w == 100 && h == 75);
    free(p);
    p = pmt_path(out, "g.webp");
    ck_assert_int_eq(pmt_webp_decode(p, &w, &h, &a), 0);
    ck_assert(w == 100 && h == 75);
    free(p);
    p = pmt_path(out, "g.avif");
    ck_assert_msg(pmt_heif_decode(p, &w, &h) == 0, "libheif cannot decode %s", p);
    ck_assert(w == 100 && h == 75);
    ck_assert(pmt_file_contains(p, "avif", 4)); /* ftyp brand: AV1, not HEVC */
    free(p);
    p = pmt_path(out, "g.heic");
    ck_assert_msg(pmt_heif_decode(p, &w, &h) == 0, "libheif cannot decode %s", p);
    ck_assert(w == 100 && h == 75);
    ck_assert(pmt_file_contains(p, "heic", 4));
    free(p);
    p = pmt_path(out, "g.gif");
    ck_assert_msg(gif_size(p, &w, &h) == 0, "gifsicle cannot read %s", p);
    ck_assert(w == 100 && h == 75);
    free(p);
    p = pmt_path(out, "g.tif");
    ck_assert_msg(pmt_tiff_decode(p, &w, &h) == 0, "libtiff cannot decode %s", p);
    ck_assert(w == 100 && h == 75);
    free(p);
    free(src);
}
END_TEST

START_TEST(test_sizes_times_formats_named_and_sized)
{
    char *src = pmt_path(in, "wide.jpg");
    ck_assert_int_eq(pmt_write_image(src, 800, 400, 3), 0);
    char *err;
    int rc = pmt_pixmill_run(&err, "-s", "200", "-s", "100x", "-s", "x40", "-s", "90x30", "-f",
                             "png", "-f", "webp", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "1 processed, 0 up to date, 0 skipped, 0 failed, 8 outputs"), "%s",
                  err);
    free(err);
    static const struct {
        const char *png, *webp;
        int w, h;
    } want[] = {{"wide-200.png", "wide-200.webp", 200, 100},
                {"wide-100.png", "wide-100.webp", 100, 50},
                {"wide-x40.png", "wide-x40.webp", 80, 40},
                {"wide-90x30.png", "wide-90x30.webp", 60, 30}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int w, h, c, a;
        char *p = pmt_path(out, want[i].png);
        ck_assert_msg(pmt_png_decode(p, &w, &h, &c) == 0, "%s", p);
        ck_assert_msg(w == want[i].w && h == want[i].h, "%s: %dx%d", p, w, h);
        free(p);
        p = pmt_path(out, want[i].webp);
        ck_assert_msg(pmt_webp_decode(p, &w, &h, &a) == 0, "%s", p);
        ck_assert_msg(w == want[i].w && h == want[i].h, "%s: %dx%d", p, w, h);
        free(p);
    }
    ck_assert_int_eq(pmt_count_files(out, "wide"), 8);
    /* same + jpeg on a JPEG source is one output, made once */
    char *out2 = pmt_path(tmp, "o2");
    rc = pmt_pixmill_run(&err, "-f", "same", "-f", "jpeg", "-o", out2, src, NULL);
    ck_assert_msg(rc == 0 && strstr(err, "1 processed, 0 up to date, 0 skipped, 0 failed,"), "%s",
                  err);
    ck_assert_int_eq(pmt_count_files(out2, "."), 1);
    free(err);
    /* two sizes that name one file: usage error, nothing made */
    char *out3 = pmt_path(tmp, "o3");
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "320", "-s", "320x", "-o", out3, src, NULL), 2);
    ck_assert_int_ne(access(out3, F_OK), 0);
    free(err);
    free(out2), free(out3), free(src);
}
END_TEST

/* Bytes read from one file by a traced process tree: follows the file's descriptors through
 * openat, dup and fcntl(F_DUPFD) and close, so reads of anything else (a sanitizer runtime
 * reading /proc, libraries, locale files) are not counted. strace splits a call that another
 * thread interrupts into "<unfinished ...>" and "<... resumed>": the fd is kept per pid. */
/* Bytes read from file's descriptors by read/readv (the decoder), and by pread64 into *hashed
 * (pixmill's content hash for the build state, one pass). */
static long long traced_file_read_bytes(const char *log, const char *file, long long *hashed)
{
    *hashed = 0;
    char *text = pmt_read_file(log, NULL);
    ck_assert_ptr_nonnull(text);
    GHashTable *fds = g_hash_table_new(g_direct_hash, g_direct_equal);          /* fd of the file */
    GHashTable *pending = g_hash_table_new(g_direct_hash, g_direct_equal);      /* pid -> fd+1 */
    GHashTable *pending_open = g_hash_table_new(g_direct_hash, g_direct_equal); /* pids */
    long long total = 0;
    int root_pid = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int pid = 0, fd = -1;
        long long ret = -1;
        char call[16] = "";
        char *paren = strchr(line, '(');
        if (paren && paren[1] >= '0' && paren[1] <= '9')
            fd = atoi(paren + 1); /* openat's first argument is AT_FDCWD: no fd */
        /* The first process is pixmill's supervisor: it never opens a source, and its own
         * descriptors (a close(7) of its own) must not be mistaken for the engine's. */
        if (root_pid == 0)
            sscanf(line, "%d", &root_pid);
        if (sscanf(line, "%d", &pid) == 1 && pid == root_pid)
            continue;
        if (sscanf(line, "%d %15[a-z0-9_](", &pid, call) < 2) {
            /* "PID <... read resumed>..., = ret" */
            char *res = strstr(line, " resumed>");
            if (!res || sscanf(line, "%d", &pid) != 1)
                continue;
            gpointer p = g_hash_table_lookup(pending, GINT_TO_POINTER(pid));
            g_hash_table_remove(pending, GINT_TO_POINTER(pid));
            char *eq = strrchr(line, '=');
            if (strstr(line, "openat resumed") &&
                g_hash_table_remove(pending_open, GINT_TO_POINTER(pid))) {
                if (eq && sscanf(eq + 1, "%lld", &ret) == 1 && ret >= 0)
                    g_hash_table_add(fds, GINT_TO_POINTER((int)ret));
                continue;
            }
            int was = GPOINTER_TO_INT(p) - 1,
                tracked = p && g_hash_table_contains(fds, GINT_TO_POINTER(was));
            int got = eq && sscanf(eq + 1, "%lld", &ret) == 1;
            /* a call split by another thread's: reads count, dups and closes still track */
            if (tracked && got && ret > 0 &&
                (strstr(line, "read resumed") || strstr(line, "readv resumed")))
                total += ret;
            else if (tracked && got && ret > 0 && strstr(line, "pread64 resumed"))
                *hashed += ret;
            else if (tracked && got && ret >= 0 &&
                     (strstr(line, "dup resumed") || strstr(line, "dup2 resumed") ||
                      strstr(line, "dup3 resumed")))
                g_hash_table_add(fds, GINT_TO_POINTER((int)ret));
            else if (tracked && strstr(line, "close resumed"))
                g_hash_table_remove(fds, GINT_TO_POINTER(was));
            continue;
        }
        if (strstr(line, "<unfinished ...>") && strcmp(call, "openat") == 0) {
            if (strstr(line, file)) /* its descriptor comes on the "resumed" line */
                g_hash_table_add(pending_open, GINT_TO_POINTER(pid));
            continue;
        }
        if (strstr(line, "<unfinished ...>")) {
            g_hash_table_insert(pending, GINT_TO_POINTER(pid), GINT_TO_POINTER(fd + 1));
            continue;
        }
        char *eq = strrchr(line, '=');
        if (!eq || sscanf(eq + 1, "%lld", &ret) != 1)
            continue;
        if (strcmp(call, "openat") == 0) {
            if (ret >= 0 && strstr(line, file))
                g_hash_table_add(fds, GINT_TO_POINTER((int)ret));
            else if (ret >= 0)
                g_hash_table_remove(fds, GINT_TO_POINTER((int)ret));
        } else if (strcmp(call, "dup") == 0 || strcmp(call, "dup2") == 0 ||
                   strcmp(call, "dup3") == 0 ||
                   (strcmp(call, "fcntl") == 0 && strstr(line, "F_DUPFD"))) {
            if (ret >= 0 && g_hash_table_contains(fds, GINT_TO_POINTER(fd)))
                g_hash_table_add(fds, GINT_TO_POINTER((int)ret));
        } else if (strcmp(call, "close") == 0) {
            g_hash_table_remove(fds, GINT_TO_POINTER(fd));
        } else if (strncmp(call, "read", 4) == 0) {
            if (ret > 0 && g_hash_table_contains(fds, GINT_TO_POINTER(fd)))
                total += ret;
        } else if (strcmp(call, "pread64") == 0) {
            if (ret > 0 && g_hash_table_contains(fds, GINT_TO_POINTER(fd)))
                *hashed += ret;
        }
    }
    g_hash_table_destroy(fds);
    g_hash_table_destroy(pending);
    g_hash_table_destroy(pending_open);
    free(text);
    return total;
}

static long long read_bytes_for(const char *src, const char *outdir, const char *const *sizes,
                                int nsizes, long long *hashed)
{
    char *log = pmt_path(tmp, "strace.log");
    const char *argv[64];
    int n = 0;
    argv[n++] = "/usr/bin/strace";
    argv[n++] = "-f";
    argv[n++] = "-qq";
    argv[n++] = "-s256";
    argv[n++] = "-e";
    argv[n++] = "trace=openat,read,pread64,readv,dup,dup2,dup3,fcntl,close";
    argv[n++] = "-o";
    argv[n++] = log;
    argv[n++] = pmt_pixmill();
    argv[n++] = "-j1";
    for (int i = 0; i < nsizes; i++) {
        argv[n++] = "-s";
        argv[n++] = sizes[i];
    }
    argv[n++] = "-f";
    argv[n++] = "jpeg";
    argv[n++] = "-f";
    argv[n++] = "webp";
    argv[n++] = "-o";
    argv[n++] = outdir;
    argv[n++] = src;
    argv[n] = NULL;
    pmt_no_leak_check_when_traced();
    char *err;
    int rc = pmt_run_argv(argv, &err);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    long long bytes = traced_file_read_bytes(log, "noise.jpg", hashed);
    free(log);
    return bytes;
}

START_TEST(test_one_decode_per_source)
{
    /* A large, incompressible JPEG: its bytes dominate everything else the process reads. */
    VipsImage *noise, *cast;
    ck_assert_int_eq(vips_gaussnoise(&noise, 1600, 1200, "sigma", 60.0, "mean", 128.0, NULL), 0);
    VipsImage *bands[3] = {noise, noise, noise};
    VipsImage *rgb;
    ck_assert_int_eq(vips_bandjoin(bands, &rgb, 3, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(rgb, &cast, NULL), 0);
    char *src = pmt_path(in, "noise.jpg");
    ck_assert_int_eq(vips_jpegsave(cast, src, "Q", 95, NULL), 0);
    g_object_unref(cast), g_object_unref(rgb), g_object_unref(noise);
    size_t size;
    free(pmt_read_file(src, &size));

    const char *three[] = {"800", "400", "200"};
    char *o1 = pmt_path(tmp, "one");
    long long hashed = 0;
    long long one = read_bytes_for(src, o1, three, 3, &hashed);
    /* the build state hashes the source once, with pread: no more (besides the 12 bytes of
     * its head that the container check reads the same way) */
    ck_assert_msg(hashed == (long long)size + 12, "pread %lld bytes of a %zu-byte source", hashed,
                  size);
    ck_assert_int_eq(pmt_count_files(o1, "noise-"), 6);
    /* control: the same six outputs made one size at a time read the source three times */
    long long separate = 0;
    for (int i = 0; i < 3; i++) {
        char *oi = pmt_path(tmp, three[i]);
        separate += read_bytes_for(src, oi, &three[i], 1, &hashed);
        free(oi);
    }
    fprintf(stderr,
            "source %zu bytes; 3 sizes x 2 formats read %lld bytes in one run, %lld in "
            "three single-size runs\n",
            size, one, separate);
    ck_assert_msg(one < (long long)size * 3 / 2, "read %lld bytes of a %zu-byte source", one, size);
    ck_assert_msg(separate > (long long)size * 3 - (long long)size / 2,
                  "control: separate runs read only %lld", separate);
    free(o1), free(src);
}
END_TEST

/* A reference for one output size: the full-resolution decode resized with the exact scale
 * to w x h, written as PNG for the same reader. */
static unsigned char *reference_rgba(const char *src, int w, int h)
{
    VipsImage *full = vips_image_new_from_file(src, NULL), *r = NULL;
    ck_assert_ptr_nonnull(full);
    ck_assert_int_eq(
        vips_resize(full, &r, (double)w / full->Xsize, "vscale", (double)h / full->Ysize, NULL), 0);
    char *p = pmt_path(tmp, "reference.png");
    ck_assert_int_eq(vips_pngsave(r, p, NULL), 0);
    g_object_unref(r), g_object_unref(full);
    int rw, rh;
    unsigned char *px = pmt_png_rgba(p, &rw, &rh);
    ck_assert(px && rw == w && rh == h);
    free(p);
    return px;
}

/* Each size derived from one decode is as good as that size made on its own, both measured
 * against the exact-scale reference (comparing the two directly would mostly measure the
 * half-pixel offset between two roundings). */
START_TEST(test_derived_sizes_match_separate_path)
{
    char *src = sample("photos/places/castle-maintenon.jpg");
    char *both = pmt_path(tmp, "both");
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "600", "-s", "240", "-s", "96", "-o",
                                     both, src, NULL),
                     0);
    free(err);
    const char *sizes[] = {"240", "96"};
    for (int i = 0; i < 2; i++) {
        char *alone = pmt_path(tmp, sizes[i]);
        ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", sizes[i], "-o", alone, src, NULL),
                         0);
        free(err);
        char name[64];
        snprintf(name, sizeof(name), "castle-maintenon-%s.png", sizes[i]);
        char *pa = pmt_path(both, name), *pb = pmt_path(alone, "castle-maintenon.png");
        int wa, ha, wb, hb;
        unsigned char *a = pmt_png_rgba(pa, &wa, &ha), *b = pmt_png_rgba(pb, &wb, &hb);
        ck_assert(a && b);
        /* pixmill decides the dimensions (nearest, from the source): both paths agree */
        ck_assert_int_eq(wa, wb);
        ck_assert_int_eq(ha, hb);
        unsigned char *ref = reference_rgba(src, wa, ha);
        size_t n = (size_t)wa * ha;
        double mad_derived = pmt_mad_rgb(a, ref, n), mad_alone = pmt_mad_rgb(b, ref, n);
        fprintf(stderr,
                "size %s (%dx%d) against the exact-scale reference: derived from one decode "
                "MAD %.3f / PSNR %.1f dB; made alone MAD %.3f / PSNR %.1f dB\n",
                sizes[i], wa, ha, mad_derived, pmt_psnr_rgb(a, ref, n), mad_alone,
                pmt_psnr_rgb(b, ref, n));
        ck_assert_msg(mad_derived <= mad_alone + 1.0, "derived MAD %.3f, alone %.3f", mad_derived,
                      mad_alone);
        free(a), free(b), free(ref), free(pa), free(pb), free(alone);
    }
    free(both), free(src);
}
END_TEST

/* Stored pixels S for EXIF orientation o such that displaying S as o gives upright U. */
static VipsImage *stored_for_orientation(VipsImage *u, int o)
{
    VipsImage *a = NULL, *b = NULL;
    switch (o) {
    case 2:
        vips_flip(u, &a, VIPS_DIRECTION_HORIZONTAL, NULL);
        return a;
    case 3:
        vips_rot(u, &a, VIPS_ANGLE_D180, NULL);
        return a;
    case 4:
        vips_flip(u, &a, VIPS_DIRECTION_VERTICAL, NULL);
        return a;
    case 5: /* transpose */
        vips_rot(u, &a, VIPS_ANGLE_D90, NULL);
        vips_flip(a, &b, VIPS_DIRECTION_HORIZONTAL, NULL);
        g_object_unref(a);
        return b;
    case 6: /* shown rotated 90 clockwise: stored 90 anticlockwise */
        vips_rot(u, &a, VIPS_ANGLE_D270, NULL);
        return a;
    case 7: /* transverse */
        vips_rot(u, &a, VIPS_ANGLE_D90, NULL);
        vips_flip(a, &b, VIPS_DIRECTION_VERTICAL, NULL);
        g_object_unref(a);
        return b;
    case 8:
        vips_rot(u, &a, VIPS_ANGLE_D90, NULL);
        return a;
    default:
        g_object_ref(u);
        return u;
    }
}

START_TEST(test_exif_orientation_upright_at_every_size)
{
    char *upright = pmt_path(tmp, "upright.png");
    ck_assert_int_eq(pmt_write_image(upright, 240, 160, 3), 0);
    VipsImage *u = vips_image_new_from_file(upright, NULL);
    ck_assert_ptr_nonnull(u);
    for (int o = 1; o <= 8; o++) {
        VipsImage *s = stored_for_orientation(u, o), *c;
        ck_assert_int_eq(vips_copy(s, &c, NULL), 0);
        vips_image_set_int(c, VIPS_META_ORIENTATION, o);
        char name[32];
        snprintf(name, sizeof(name), "o%d.jpg", o);
        char *p = pmt_path(in, name);
        ck_assert_int_eq(vips_jpegsave(c, p, "Q", 98, NULL), 0);
        g_object_unref(c), g_object_unref(s);
        VipsImage *check = vips_image_new_from_file(p, NULL); /* fixture sanity */
        int got = 0;
        vips_image_get_int(check, VIPS_META_ORIENTATION, &got);
        ck_assert_int_eq(got, o);
        g_object_unref(check);
        free(p);
    }
    g_object_unref(u);
    char *err;
    /* two sizes: the derived one must not be rotated a second time */
    ck_assert_int_eq(
        pmt_pixmill_run(&err, "-f", "png", "-s", "120", "-s", "60", "-o", out, in, NULL), 0);
    free(err);
    const char *sizes[] = {"120", "60"};
    for (int k = 0; k < 2; k++) {
        char ref_name[32];
        snprintf(ref_name, sizeof(ref_name), "o1-%s.png", sizes[k]);
        char *rp = pmt_path(out, ref_name);
        int rw, rh;
        unsigned char *ref = pmt_png_rgba(rp, &rw, &rh);
        ck_assert_ptr_nonnull(ref);
        ck_assert_int_eq(rw, k == 0 ? 120 : 60);
        for (int o = 2; o <= 8; o++) {
            char name[32];
            snprintf(name, sizeof(name), "o%d-%s.png", o, sizes[k]);
            char *p = pmt_path(out, name);
            int w, h;
            unsigned char *px = pmt_png_rgba(p, &w, &h);
            ck_assert_ptr_nonnull(px);
            ck_assert_msg(w == rw && h == rh, "%s is %dx%d, want %dx%d", name, w, h, rw, rh);
            double mad = pmt_mad_rgb(ref, px, (size_t)w * h);
            ck_assert_msg(mad < 4.0, "%s differs from orientation 1: MAD %.2f", name, mad);
            free(px), free(p);
        }
        free(ref), free(rp);
    }
    free(upright);
}
END_TEST

/* A flat sRGB patch, converted into another colour space whose profile the file embeds. */
static void patch_in_profile(const char *path, const char *profile)
{
    VipsImage *black, *lin, *cast, *t;
    double a[3] = {1, 1, 1}, c[3] = {200, 30, 30};
    ck_assert_int_eq(vips_black(&black, 64, 48, "bands", 3, NULL), 0);
    ck_assert_int_eq(vips_linear(black, &lin, a, c, 3, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(lin, &cast, NULL), 0);
    cast->Type = VIPS_INTERPRETATION_sRGB;
    ck_assert_int_eq(vips_icc_transform(cast, &t, profile, "input_profile", "srgb", NULL), 0);
    VipsImage *u8;
    ck_assert_int_eq(vips_cast_uchar(t, &u8, NULL), 0);
    ck_assert_int_eq(vips_image_write_to_file(u8, path, NULL), 0);
    g_object_unref(u8), g_object_unref(t), g_object_unref(cast), g_object_unref(lin);
    g_object_unref(black);
}

static void mean_rgb(const char *png, double m[3])
{
    int w, h;
    unsigned char *px = pmt_png_rgba(png, &w, &h);
    ck_assert_ptr_nonnull(px);
    m[0] = m[1] = m[2] = 0;
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++)
            m[c] += px[i * 4 + c];
    for (int c = 0; c < 3; c++)
        m[c] /= (double)(w * h);
    free(px);
}

/* Outputs carry no profile, so they must be converted to sRGB: a Display P3 PNG and a CMYK
 * JPEG of the same red come out as that red (without the conversion P3 gave 184,50,41). */
START_TEST(test_wide_gamut_and_cmyk_come_out_srgb)
{
    char *p3 = pmt_path(in, "p3.png"), *cmyk = pmt_path(in, "cmyk.jpg");
    patch_in_profile(p3, "p3");
    patch_in_profile(cmyk, "cmyk");
    /* the same CMYK JPEG without its profile: libvips' fallback CMYK profile applies */
    char *bare = pmt_path(in, "cmyk-bare.jpg");
    VipsImage *withp = vips_image_new_from_file(cmyk, NULL), *nop;
    ck_assert_int_eq(vips_copy(withp, &nop, NULL), 0);
    vips_image_remove(nop, VIPS_META_ICC_NAME);
    ck_assert_int_eq(vips_jpegsave(nop, bare, "Q", 95, NULL), 0);
    g_object_unref(nop), g_object_unref(withp);
    ck_assert(!pmt_file_contains(bare, "ICC_PROFILE", 11));
    VipsImage *check = vips_image_new_from_file(cmyk, NULL);
    ck_assert_int_eq(check->Bands, 4); /* a real CMYK JPEG */
    g_object_unref(check);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "32", "-o", out, in, NULL), 0);
    free(err);
    static const struct {
        const char *name;
        double tolerance;
    } want[] = {{"p3.png", 3.0}, {"cmyk.png", 15.0}, {"cmyk-bare.png", 15.0}};
    /* (a CMYK round trip loses some gamut) */
    const double red[3] = {200, 30, 30};
    for (int i = 0; i < 3; i++) {
        char *p = pmt_path(out, want[i].name);
        double m[3];
        mean_rgb(p, m);
        fprintf(stderr, "%s: mean %.1f %.1f %.1f (sRGB source 200 30 30)\n", want[i].name, m[0],
                m[1], m[2]);
        for (int c = 0; c < 3; c++)
            ck_assert_msg(m[c] > red[c] - want[i].tolerance && m[c] < red[c] + want[i].tolerance,
                          "%s channel %d: %.1f", want[i].name, c, m[c]);
        free(p);
    }
    free(p3), free(cmyk), free(bare);
}
END_TEST

/* Pixel (x, y) of a PNG through libpng: RGBA. */
static void png_pixel(const char *path, int x, int y, unsigned char rgba[4], int *w, int *h)
{
    unsigned char *px = pmt_png_rgba(path, w, h);
    ck_assert_msg(px != NULL, "cannot decode %s", path);
    memcpy(rgba, px + ((size_t)y * *w + x) * 4, 4);
    free(px);
}

static char *run_one(const char *src, const char *name, const char *const *args)
{
    char *o = pmt_path(tmp, name);
    const char *argv[32];
    int n = 0;
    argv[n++] = pmt_pixmill();
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n++] = "-f";
    argv[n++] = "png";
    argv[n++] = "-o";
    argv[n++] = o;
    argv[n++] = src;
    argv[n] = NULL;
    char *err;
    int rc = pmt_run_argv(argv, &err);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", name, rc, err);
    free(err);
    char *p = pmt_path(o, "g.png");
    free(o);
    return p;
}

/* The fixture's red grows left to right and its green top to bottom, so a pixel says where in
 * the source it came from. */
START_TEST(test_fit_modes_through_the_binary)
{
    char *src = pmt_path(in, "g.png");
    ck_assert_int_eq(pmt_write_image(src, 400, 300, 3), 0);
    unsigned char px[4];
    int w, h;
    const char *north[] = {"-s", "200x200", "--fit", "cover", "--crop", "north", NULL};
    char *p = run_one(src, "north", north);
    png_pixel(p, 100, 0, px, &w, &h);
    ck_assert(w == 200 && h == 200);
    ck_assert_int_le(px[1], 3); /* the top row kept: green ~0 */
    free(p);
    const char *south[] = {"-s", "200x200", "--fit", "cover", "--crop", "south", NULL};
    p = run_one(src, "south", south);
    png_pixel(p, 100, 199, px, &w, &h);
    ck_assert(w == 200 && h == 200);
    ck_assert_int_ge(px[1], 252); /* the bottom row kept */
    free(p);
    const char *west[] = {"-s", "100x200", "--fit", "cover", "--crop", "west", NULL};
    p = run_one(src, "west", west);
    png_pixel(p, 0, 100, px, &w, &h);
    ck_assert(w == 100 && h == 200);
    ck_assert_int_le(px[0], 3); /* the left column kept: red ~0 */
    free(p);
    const char *contain[] = {"-s", "200x200", "--fit", "contain", "--background", "#00ff00", NULL};
    p = run_one(src, "contain", contain);
    png_pixel(p, 100, 2, px, &w, &h); /* 200x150 image centred: rows 0..24 are padding */
    ck_assert(w == 200 && h == 200);
    ck_assert(px[0] == 0 && px[1] == 255 && px[2] == 0 && px[3] == 255);
    free(p);
    const char *clear[] = {"-s",           "200x200",     "--fit", "contain",
                           "--background", "transparent", NULL};
    p = run_one(src, "clear", clear);
    png_pixel(p, 100, 2, px, &w, &h);
    ck_assert_int_eq(px[3], 0); /* padding is transparent */
    png_pixel(p, 100, 100, px, &w, &h);
    ck_assert_int_eq(px[3], 255); /* the image is not */
    free(p);
    const char *fill[] = {"-s", "123x45!", NULL};
    p = run_one(src, "fill", fill);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 123 && h == 45);
    free(p);
    const char *outside[] = {"-s", "200x200^", NULL};
    p = run_one(src, "outside", outside);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 267 && h == 200);
    free(p);
    const char *twice[] = {"-s", "200%", NULL};
    p = run_one(src, "twice", twice);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 800 && h == 600);
    free(p);
    const char *area[] = {"-s", "30000@", NULL};
    p = run_one(src, "area", area);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 200 && h == 150);
    free(p);
    free(src);
}
END_TEST

START_TEST(test_no_rotate_and_auto_swap)
{
    /* stored 160x240 with orientation 6: upright it is 240x160 */
    char *upright = pmt_path(tmp, "u.png");
    ck_assert_int_eq(pmt_write_image(upright, 240, 160, 3), 0);
    VipsImage *u = vips_image_new_from_file(upright, NULL), *s = stored_for_orientation(u, 6), *c;
    ck_assert_int_eq(vips_copy(s, &c, NULL), 0);
    vips_image_set_int(c, VIPS_META_ORIENTATION, 6);
    char *src = pmt_path(in, "g.jpg");
    ck_assert_int_eq(vips_jpegsave(c, src, "Q", 95, NULL), 0);
    g_object_unref(c), g_object_unref(s), g_object_unref(u);
    unsigned char px[4];
    int w, h;
    const char *plain[] = {"-s", "120", NULL};
    char *p = run_one(src, "plain", plain);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 120 && h == 80); /* upright */
    free(p);
    const char *norot[] = {"-s", "120", "--no-rotate", NULL};
    p = run_one(src, "norot", norot);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 80 && h == 120); /* as stored */
    free(p);
    /* a portrait 60x120 box turned to 120x60 for a landscape photo: 240x160 x 0.375 */
    const char *swap[] = {"-s", "60x120", "--auto-swap", NULL};
    p = run_one(src, "swap", swap);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert_msg(w == 90 && h == 60, "%dx%d", w, h);
    free(p);
    const char *noswap[] = {"-s", "60x120", NULL};
    p = run_one(src, "noswap", noswap);
    png_pixel(p, 0, 0, px, &w, &h);
    ck_assert(w == 60 && h == 40);
    free(p);
    free(src), free(upright);
}
END_TEST

START_TEST(test_jpeg_flattens_on_background)
{
    char *src = pmt_path(in, "g.png");
    ck_assert_int_eq(pmt_write_image(src, 200, 160, 4), 0); /* left half transparent */
    char *o = pmt_path(tmp, "black");
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "jpeg", "-s", "100", "--background", "#000000",
                                     "-o", o, src, NULL),
                     0);
    free(err);
    char *p = pmt_path(o, "g.jpg");
    int w, h, c;
    unsigned char corner[3];
    ck_assert_int_eq(pmt_jpeg_decode(p, &w, &h, &c, corner), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_le(corner[i], 10);
    free(p), free(o), free(src);
}
END_TEST

/* --profile: srgb converts (no profile needed), p3 and keep attach the profile the numbers are
 * in; --keep carries EXIF (orientation rewritten to 1) and the ICC profile when asked. */
START_TEST(test_profile_and_keep)
{
    char *p3 = pmt_path(in, "p3.png");
    patch_in_profile(p3, "p3");
    static const struct {
        const char *profile;
        double r, g, b;
        int icc;
    } want[] = {{"srgb", 200, 30, 30, 0}, {"p3", 184, 50, 41, 1}, {"keep", 184, 50, 41, 1}};
    for (int i = 0; i < 3; i++) {
        char *o = pmt_path(tmp, want[i].profile);
        char *err;
        ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "32", "--profile",
                                         want[i].profile, "-o", o, p3, NULL),
                         0);
        free(err);
        char *p = pmt_path(o, "p3.png");
        double m[3];
        mean_rgb(p, m);
        ck_assert_msg(fabs(m[0] - want[i].r) < 3 && fabs(m[1] - want[i].g) < 3 &&
                          fabs(m[2] - want[i].b) < 3,
                      "--profile %s: %.1f %.1f %.1f", want[i].profile, m[0], m[1], m[2]);
        ck_assert_int_eq(pmt_file_contains(p, "iCCP", 4), want[i].icc);
        free(p), free(o);
    }
    char *src = sample("photos/places/castle-maintenon.jpg");
    char *o = pmt_path(tmp, "kept");
    char *err;
    ck_assert_int_eq(
        pmt_pixmill_run(&err, "-f", "jpeg", "-s", "100", "--keep", "icc,exif", "-o", o, src, NULL),
        0);
    free(err);
    char *p = pmt_path(o, "castle-maintenon.jpg");
    ck_assert(pmt_file_contains(p, "NIKON", 5));
    ck_assert(pmt_file_contains(p, "ICC_PROFILE", 11));
    VipsImage *im = vips_image_new_from_file(p, NULL);
    int orientation = 0;
    ck_assert_ptr_nonnull(im);
    vips_image_get_int(im, VIPS_META_ORIENTATION, &orientation);
    ck_assert_int_eq(orientation, 1);
    g_object_unref(im);
    free(p), free(o), free(src), free(p3);
}
END_TEST

/* An SVG named .jpg goes to the (untrusted) SVG loader: blocked unless --allow=svg. */
START_TEST(test_allow_unblocks_one_loader)
{
    char *svg = pmt_path(in, "logo.jpg");
    const char *text = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"20\">"
                       "<rect width=\"40\" height=\"20\" fill=\"red\"/></svg>";
    ck_assert_int_eq(pmt_write_file(svg, text, strlen(text)), 0);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(err, "blocked"), "%s", err);
    free(err);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--allow", "svg", "-f", "png", "-o", out, in, NULL), 0);
    free(err);
    char *p = pmt_path(out, "logo.png");
    int w, h, c;
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert(w == 40 && h == 20);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--allow", "bogus", "-o", out, in, NULL), 2);
    free(err), free(p), free(svg);
}
END_TEST

/* Encoder options, read back from the files by other decoders and from the bytes. */
START_TEST(test_encoder_options)
{
    char *src = sample("photos/places/castle-maintenon.jpg");
    char *plain = pmt_path(tmp, "plain"), *tuned = pmt_path(tmp, "tuned");
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "200", "-f", "jpeg", "-f", "png", "-f", "webp",
                                     "-o", plain, src, NULL),
                     0);
    free(err);
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "200", "-f", "jpeg", "-f", "png", "-f", "webp",
                                     "--progressive", "--palette", "--lossless", "--subsample",
                                     "off", "--effort", "10", "-o", tuned, src, NULL),
                     0);
    free(err);
    int prog, hs, vs;
    char *p = pmt_path(plain, "castle-maintenon.jpg");
    ck_assert_int_eq(pmt_jpeg_header(p, &prog, &hs, &vs), 0);
    ck_assert(!prog && hs == 2 && vs == 2); /* baseline, 4:2:0 at Q80 */
    free(p);
    p = pmt_path(tuned, "castle-maintenon.jpg");
    ck_assert_int_eq(pmt_jpeg_header(p, &prog, &hs, &vs), 0);
    ck_assert(prog && hs == 1 && vs == 1); /* progressive, 4:4:4 */
    int w, h, c;
    ck_assert_int_eq(pmt_jpeg_decode(p, &w, &h, &c, NULL), 0);
    free(p);
    size_t n;
    p = pmt_path(plain, "castle-maintenon.png");
    unsigned char *d = (unsigned char *)pmt_read_file(p, &n);
    ck_assert(n > 28 && d[25] == 2 && d[28] == 0); /* IHDR: truecolour, not interlaced */
    free(d), free(p);
    p = pmt_path(tuned, "castle-maintenon.png");
    d = (unsigned char *)pmt_read_file(p, &n);
    ck_assert(n > 28 && d[25] == 3 && d[28] == 1); /* palette, Adam7 */
    free(d);
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    free(p);
    p = pmt_path(plain, "castle-maintenon.webp");
    ck_assert(pmt_file_contains(p, "VP8 ", 4) && !pmt_file_contains(p, "VP8L", 4));
    free(p);
    p = pmt_path(tuned, "castle-maintenon.webp");
    ck_assert(pmt_file_contains(p, "VP8L", 4)); /* lossless bitstream */
    ck_assert_int_eq(pmt_webp_decode(p, &w, &h, &c), 0);
    free(p);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--effort", "11", "-o", tuned, src, NULL), 2);
    free(err);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--subsample", "maybe", "-o", tuned, src, NULL), 2);
    free(err);
    free(plain), free(tuned), free(src);
}
END_TEST

static int count_bytes(const char *path, const char *needle)
{
    size_t n, k = strlen(needle);
    char *d = pmt_read_file(path, &n);
    int count = 0;
    for (char *p = d; p && (p = memmem(p, n - (size_t)(p - d), needle, k)); p += k)
        count++;
    free(d);
    return count;
}

/* gifsicle --info prints "* FILE N images". */
static int gif_frames(const char *path)
{
    const char *argv[] = {"/usr/bin/gifsicle", "--info", path, NULL};
    char *o = NULL;
    int frames = -1;
    if (pmt_run((char *const *)argv, &o, NULL, NULL) == 0 && o) {
        char *p = strstr(o, path);
        if (p && sscanf(p + strlen(path), " %d image", &frames) != 1)
            frames = -1;
    }
    free(o);
    return frames;
}

START_TEST(test_animated_keeps_frames)
{
    /* three 60x40 frames, stacked as libvips keeps animations */
    VipsImage *frames[3];
    for (int i = 0; i < 3; i++) {
        VipsImage *black, *lin;
        double a[3] = {1, 1, 1}, c[3] = {80.0 * i, 255 - 80.0 * i, 128};
        ck_assert_int_eq(vips_black(&black, 60, 40, "bands", 3, NULL), 0);
        ck_assert_int_eq(vips_linear(black, &lin, a, c, 3, NULL), 0);
        ck_assert_int_eq(vips_cast_uchar(lin, &frames[i], NULL), 0);
        g_object_unref(lin), g_object_unref(black);
    }
    VipsImage *strip, *anim;
    ck_assert_int_eq(vips_arrayjoin(frames, &strip, 3, "across", 1, NULL), 0);
    ck_assert_int_eq(vips_copy(strip, &anim, NULL), 0);
    vips_image_set_int(anim, "page-height", 40);
    anim->Type = VIPS_INTERPRETATION_sRGB;
    char *src = pmt_path(in, "anim.gif");
    ck_assert_int_eq(vips_image_write_to_file(anim, src, NULL), 0);
    g_object_unref(anim), g_object_unref(strip);
    for (int i = 0; i < 3; i++)
        g_object_unref(frames[i]);
    ck_assert_int_eq(gif_frames(src), 3); /* fixture sanity, by gifsicle */

    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "--animated", "-s", "30", "-f", "gif", "-f", "webp",
                                     "-f", "png", "-o", out, src, NULL),
                     0);
    free(err);
    char *g = pmt_path(out, "anim.gif"), *w = pmt_path(out, "anim.webp"),
         *p = pmt_path(out, "anim.png");
    ck_assert_int_eq(gif_frames(g), 3);
    int fw, fh;
    ck_assert_int_eq(gif_size(g, &fw, &fh), 0);
    ck_assert(fw == 30 && fh == 20); /* each frame resized, not the strip */
    ck_assert_int_eq(count_bytes(w, "ANMF"), 3);
    int c;
    ck_assert_int_eq(pmt_png_decode(p, &fw, &fh, &c), 0);
    ck_assert(fw == 30 && fh == 20); /* PNG: the first frame */
    /* without --animated: the first frame only */
    char *o2 = pmt_path(tmp, "still");
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "30", "-f", "gif", "-o", o2, src, NULL), 0);
    free(err);
    char *g2 = pmt_path(o2, "anim.gif");
    ck_assert_int_eq(gif_frames(g2), 1);
    /* frames count toward the pixel cap: 60x40 x 3 = 7200 */
    ck_assert_int_eq(pmt_pixmill_run(&err, "--max-pixels", "5000", "-o", o2, src, NULL), 1);
    ck_assert_msg(strstr(err, "pixel limit"), "%s", err);
    free(err);
    free(g), free(w), free(p), free(o2), free(g2), free(src);
}
END_TEST

/* A 16-bit PNG comes out 8-bit with the same colours; a grey one stays grey. */
START_TEST(test_sixteen_bit_to_eight)
{
    VipsImage *black, *lin, *u16;
    double a[3] = {1, 1, 1}, c[3] = {200 * 257.0, 30 * 257.0, 30 * 257.0};
    ck_assert_int_eq(vips_black(&black, 64, 48, "bands", 3, NULL), 0);
    ck_assert_int_eq(vips_linear(black, &lin, a, c, 3, NULL), 0);
    ck_assert_int_eq(vips_cast_ushort(lin, &u16, NULL), 0);
    u16->Type = VIPS_INTERPRETATION_RGB16;
    char *src = pmt_path(in, "deep.png");
    ck_assert_int_eq(vips_image_write_to_file(u16, src, NULL), 0);
    g_object_unref(u16), g_object_unref(lin), g_object_unref(black);
    size_t n;
    unsigned char *d = (unsigned char *)pmt_read_file(src, &n);
    ck_assert_int_eq(d[24], 16); /* fixture: IHDR bit depth 16 */
    free(d);
    char *err;
    ck_assert_int_eq(
        pmt_pixmill_run(&err, "-f", "png", "-f", "jpeg", "-s", "32", "-o", out, src, NULL), 0);
    free(err);
    char *p = pmt_path(out, "deep.png");
    d = (unsigned char *)pmt_read_file(p, &n);
    ck_assert_int_eq(d[24], 8); /* 8-bit output */
    free(d);
    double m[3];
    mean_rgb(p, m);
    ck_assert_msg(fabs(m[0] - 200) < 2 && fabs(m[1] - 30) < 2 && fabs(m[2] - 30) < 2,
                  "%.1f %.1f %.1f", m[0], m[1], m[2]);
    free(p);
    p = pmt_path(out, "deep.jpg");
    int w, h, ch;
    ck_assert_int_eq(pmt_jpeg_decode(p, &w, &h, &ch, NULL), 0);
    free(p), free(src);
}
END_TEST

/* The content decides the decoder and 'same' follows it: a PNG named .jpg becomes a .png. */
START_TEST(test_content_decides_format)
{
    char *src = pmt_path(in, "really-png.jpg");
    ck_assert_int_eq(pmt_write_image(src, 80, 60, 3), 0);
    size_t n;
    char *tmpname = pmt_path(tmp, "x.png");
    ck_assert_int_eq(pmt_write_image(tmpname, 80, 60, 3), 0);
    char *bytes = pmt_read_file(tmpname, &n);
    ck_assert_int_eq(pmt_write_file(src, bytes, n), 0); /* PNG bytes under a .jpg name */
    free(bytes), free(tmpname);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "40", "-o", out, src, NULL), 0);
    free(err);
    char *p = pmt_path(out, "really-png.png");
    int w, h, c;
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert(w == 40 && h == 30);
    free(p), free(src);
}
END_TEST

/* Resizing premultiplies alpha: the colour of fully transparent pixels (green here) must not
 * bleed into the edge of the opaque part (red). Alpha survives into WebP. */
START_TEST(test_alpha_edges_do_not_fringe)
{
    VipsImage *xyz, *x, *mask, *r, *g, *zero, *rgba, *u8;
    ck_assert_int_eq(vips_xyz(&xyz, 101, 60, NULL), 0);
    ck_assert_int_eq(vips_extract_band(xyz, &x, 0, NULL), 0);
    ck_assert_int_eq(vips_more_const1(x, &mask, 50.0, NULL), 0); /* 255 right, 0 left */
    ck_assert_int_eq(vips_linear1(mask, &g, -1.0, 255.0, NULL), 0);
    ck_assert_int_eq(vips_copy(mask, &r, NULL), 0);
    ck_assert_int_eq(vips_linear1(mask, &zero, 0.0, 0.0, NULL), 0);
    VipsImage *bands[4] = {r, g, zero, mask};
    ck_assert_int_eq(vips_bandjoin(bands, &rgba, 4, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(rgba, &u8, NULL), 0);
    u8->Type = VIPS_INTERPRETATION_sRGB;
    char *src = pmt_path(in, "edge.png");
    ck_assert_int_eq(vips_image_write_to_file(u8, src, NULL), 0);
    g_object_unref(u8), g_object_unref(rgba), g_object_unref(zero), g_object_unref(r);
    g_object_unref(g), g_object_unref(mask), g_object_unref(x), g_object_unref(xyz);
    char *err;
    ck_assert_int_eq(
        pmt_pixmill_run(&err, "-s", "25", "-f", "png", "-f", "webp", "-o", out, src, NULL), 0);
    free(err);
    char *p = pmt_path(out, "edge.png");
    int w, h;
    unsigned char *px = pmt_png_rgba(p, &w, &h);
    ck_assert_ptr_nonnull(px);
    int partial = 0;
    for (int i = 0; i < w * h; i++) {
        unsigned char *q = px + i * 4;
        if (q[3] == 0)
            continue;
        partial += q[3] < 255;
        ck_assert_msg(q[1] <= 12, "pixel %d: green %d bled into alpha %d", i, q[1], q[3]);
    }
    ck_assert_int_gt(partial, 0); /* the edge really was resampled */
    free(px), free(p);
    p = pmt_path(out, "edge.webp");
    int alpha;
    ck_assert_int_eq(pmt_webp_decode(p, &w, &h, &alpha), 0);
    ck_assert_int_eq(alpha, 1);
    free(p), free(src);
}
END_TEST

/* Rewrites the EXIF orientation value in place (libvips normalises 0 and 9 to 1 on write). */
static int patch_orientation(const char *path, int value)
{
    size_t n;
    unsigned char *d = (unsigned char *)pmt_read_file(path, &n);
    int done = 0;
    for (size_t i = 0; d && i + 10 <= n && !done; i++) {
        /* IFD entry: tag 0x0112, type SHORT (3), count 1, value 1; big or little endian */
        static const unsigned char be[] = {0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 1};
        static const unsigned char le[] = {0x12, 0x01, 3, 0, 1, 0, 0, 0, 1, 0};
        if (memcmp(d + i, be, 10) == 0) {
            d[i + 8] = (unsigned char)(value >> 8);
            d[i + 9] = (unsigned char)value;
            done = 1;
        } else if (memcmp(d + i, le, 10) == 0) {
            d[i + 8] = (unsigned char)value;
            d[i + 9] = (unsigned char)(value >> 8);
            done = 1;
        }
    }
    if (done)
        pmt_write_file(path, d, n);
    free(d);
    return done ? 0 : -1;
}

START_TEST(test_orientation_out_of_range_is_upright)
{
    char *up = pmt_path(tmp, "up.png");
    ck_assert_int_eq(pmt_write_image(up, 120, 80, 3), 0);
    VipsImage *u = vips_image_new_from_file(up, NULL), *c;
    const int values[] = {1, 0, 9, 255, 65535}; /* BAD-INPUT 8: 0, 9, 65535 are taken as 1 */
    const int n_values = (int)G_N_ELEMENTS(values);
    for (int i = 0; i < n_values; i++) {
        ck_assert_int_eq(vips_copy(u, &c, NULL), 0);
        vips_image_set_int(c, VIPS_META_ORIENTATION, 1);
        char name[32];
        snprintf(name, sizeof(name), "v%d.jpg", values[i]);
        char *p = pmt_path(in, name);
        ck_assert_int_eq(vips_jpegsave(c, p, "Q", 98, NULL), 0);
        g_object_unref(c);
        ck_assert_msg(patch_orientation(p, values[i]) == 0, "no orientation tag in %s", p);
        free(p);
    }
    g_object_unref(u);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "60", "-o", out, in, NULL), 0);
    free(err);
    char *rp = pmt_path(out, "v1.png");
    int rw, rh;
    unsigned char *ref = pmt_png_rgba(rp, &rw, &rh);
    ck_assert(ref && rw == 60 && rh == 40);
    for (int i = 1; i < n_values; i++) {
        char name[32];
        snprintf(name, sizeof(name), "v%d.png", values[i]);
        char *p = pmt_path(out, name);
        int w, h;
        unsigned char *px = pmt_png_rgba(p, &w, &h);
        ck_assert_msg(px && w == 60 && h == 40, "%s", name);
        ck_assert_msg(pmt_mad_rgb(ref, px, (size_t)w * h) < 1.0, "%s", name);
        free(px), free(p);
    }
    free(ref), free(rp), free(up);
}
END_TEST

/* 1x1 and one-pixel strips through the pipeline: at least 1 px per axis, never 0. */
START_TEST(test_odd_sizes)
{
    static const struct {
        const char *name;
        int sw, sh, w, h;
    } t[] = {{"dot.png", 1, 1, 1, 1},
             {"tall.png", 1, 100000, 1, 256},
             {"wide.png", 100000, 1, 256, 1}}; /* BAD-INPUT 10 */
    for (int i = 0; i < 3; i++) {
        char *p = pmt_path(in, t[i].name);
        ck_assert_int_eq(pmt_write_image(p, t[i].sw, t[i].sh, 3), 0);
        free(p);
    }
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "256", "-o", out, in, NULL), 0);
    free(err);
    for (int i = 0; i < 3; i++) {
        char *p = pmt_path(out, t[i].name);
        int w, h, c;
        ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
        ck_assert_msg(w == t[i].w && h == t[i].h, "%s: %dx%d", t[i].name, w, h);
        free(p);
    }
}
END_TEST

/* A corrupt embedded profile is ignored (pixels taken as sRGB), not a failure of the file. */
START_TEST(test_corrupt_profile_is_ignored)
{
    /* libvips will not write a broken profile: splice an APP2 ICC_PROFILE segment holding 7
     * bytes of garbage in after SOI by hand (as Pillow's icc-after-SOF test file has). */
    /* grey, as that file: for RGB libvips falls back to sRGB, for grey nothing fits */
    char *src = pmt_path(tmp, "good.jpg");
    VipsImage *xyz, *x, *grey;
    ck_assert_int_eq(vips_xyz(&xyz, 40, 30, NULL), 0);
    ck_assert_int_eq(vips_extract_band(xyz, &x, 0, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(x, &grey, NULL), 0);
    grey->Type = VIPS_INTERPRETATION_B_W;
    ck_assert_int_eq(vips_jpegsave(grey, src, NULL), 0);
    g_object_unref(grey), g_object_unref(x), g_object_unref(xyz);
    size_t n;
    unsigned char *jpg = (unsigned char *)pmt_read_file(src, &n);
    ck_assert(jpg && n > 2 && jpg[0] == 0xFF && jpg[1] == 0xD8);
    static const unsigned char app2[] = {0xFF, 0xE2, 0x00, 0x17, 'I', 'C', 'C', '_', 'P',
                                         'R',  'O',  'F',  'I',  'L', 'E', 0,   1,   1,
                                         'g',  'a',  'r',  'b',  'a', 'g', 'e'};
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, jpg, 2);
    g_byte_array_append(b, app2, sizeof(app2));
    g_byte_array_append(b, jpg + 2, (guint)(n - 2));
    char *bad = pmt_path(in, "badicc2.jpg");
    ck_assert_int_eq(pmt_write_file(bad, b->data, b->len), 0);
    g_byte_array_free(b, TRUE);
    free(jpg);
    VipsImage *probe = vips_image_new_from_file(bad, NULL);
    const void *icc;
    size_t icc_len = 0;
    ck_assert_ptr_nonnull(probe);
    ck_assert_int_eq(vips_image_get_blob(probe, VIPS_META_ICC_NAME, &icc, &icc_len), 0);
    ck_assert_int_eq(icc_len, 7); /* fixture: libvips sees the 7-byte profile */
    g_object_unref(probe);
    char *err;
    int rc = pmt_pixmill_run(&err, "-f", "png", "-o", out, bad, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    char *p = pmt_path(out, "badicc2.png");
    int w, h, ch;
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &ch), 0);
    ck_assert(w == 40 && h == 30 && ch == 1); /* still grey */
    free(p), free(bad), free(src);
}
END_TEST

START_TEST(test_camera_metadata_never_in_outputs)
{
    char *src = sample("photos/places/castle-maintenon.jpg"); /* Nikon EXIF + ICC profile */
    ck_assert(pmt_file_contains(src, "NIKON", 5));
    ck_assert(pmt_file_contains(src, "ICC_PROFILE", 11));
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-s", "200", "-f", "jpeg", "-f", "webp", "-f", "png",
                                     "-f", "avif", "-f", "tiff", "-o", out, src, NULL),
                     0);
    free(err);
    const char *outs[] = {"castle-maintenon.jpg", "castle-maintenon.webp", "castle-maintenon.png",
                          "castle-maintenon.avif", "castle-maintenon.tif"};
    for (int i = 0; i < 5; i++) {
        char *p = pmt_path(out, outs[i]);
        ck_assert_msg(!pmt_file_contains(p, "NIKON", 5), "camera make in %s", outs[i]);
        ck_assert_msg(!pmt_file_contains(p, "ICC_PROFILE", 11), "ICC profile in %s", outs[i]);
        ck_assert_msg(!pmt_file_contains(p, "ICCP", 4), "ICC chunk in %s", outs[i]);
        ck_assert_msg(!pmt_file_contains(p, "iCCP", 4), "ICC chunk in %s", outs[i]);
        free(p);
    }
    free(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("variants");
    TCase *tc = tcase_create("e2e");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_every_format_decodes_independently);
    tcase_add_test(tc, test_sizes_times_formats_named_and_sized);
    tcase_add_test(tc, test_one_decode_per_source);
    tcase_add_test(tc, test_derived_sizes_match_separate_path);
    tcase_add_test(tc, test_exif_orientation_upright_at_every_size);
    tcase_add_test(tc, test_wide_gamut_and_cmyk_come_out_srgb);
    tcase_add_test(tc, test_fit_modes_through_the_binary);
    tcase_add_test(tc, test_no_rotate_and_auto_swap);
    tcase_add_test(tc, test_jpeg_flattens_on_background);
    tcase_add_test(tc, test_profile_and_keep);
    tcase_add_test(tc, test_allow_unblocks_one_loader);
    tcase_add_test(tc, test_encoder_options);
    tcase_add_test(tc, test_animated_keeps_frames);
    tcase_add_test(tc, test_sixteen_bit_to_eight);
    tcase_add_test(tc, test_content_decides_format);
    tcase_add_test(tc, test_alpha_edges_do_not_fringe);
    tcase_add_test(tc, test_orientation_out_of_range_is_upright);
    tcase_add_test(tc, test_odd_sizes);
    tcase_add_test(tc, test_corrupt_profile_is_ignored);
    tcase_add_test(tc, test_camera_metadata_never_in_outputs);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
