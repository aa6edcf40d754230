/* Progressive JPEGs at 1/8 from their DC coefficients (lib/src/jpegdc.c): the pixels against
 * libjpeg's own 1/8 decode (exact where no chroma is subsampled), what the decoder declines
 * (anything but a whole, well-formed progressive grey or YCbCr file), and through the binary:
 * orientation, an embedded profile, a truncated file's failure, and the outputs against the
 * libvips decode they replace. */
#define _GNU_SOURCE
#include "internal.h"
#include "support.h"

#include <check.h>
#include <math.h>
#include <fcntl.h>
#include <glib.h>
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

/* Something like a photo for the coder: colour ramps, grain (a fixed seed) and a hard-edged
 * block, so that values change within blocks and the chroma has edges. */
static VipsImage *photo_like(int w, int h, int bands)
{
    VipsImage *xyz, *ramps, *noise, *grainy, *u8, *res;
    ck_assert_int_eq(vips_xyz(&xyz, w, h, NULL), 0);
    double a[3] = {200.0 / w, 200.0 / h, 0}, c[3] = {20, 30, 120};
    VipsImage *x, *y, *parts[3];
    vips_extract_band(xyz, &x, 0, NULL);
    vips_extract_band(xyz, &y, 1, NULL);
    vips_linear1(x, &parts[0], a[0], c[0], NULL);
    vips_linear1(y, &parts[1], a[1], c[1], NULL);
    vips_linear1(x, &parts[2], -a[0] / 2, c[2] + 80, NULL);
    ck_assert_int_eq(vips_bandjoin(parts, &ramps, 3, NULL), 0);
    ck_assert_int_eq(vips_gaussnoise(&noise, w, h, "sigma", 18.0, "mean", 0.0, "seed", 7, NULL), 0);
    ck_assert_int_eq(vips_add(ramps, noise, &grainy, NULL), 0);
    /* the hard edge: a block of saturated red a fifth of the way in */
    VipsImage *block, *framed;
    double red[3] = {230, 20, 40};
    ck_assert_int_eq(vips_black(&block, w / 4, h / 4, "bands", 3, NULL), 0);
    VipsImage *redblock;
    double one[3] = {1, 1, 1};
    ck_assert_int_eq(vips_linear(block, &redblock, one, red, 3, NULL), 0);
    ck_assert_int_eq(vips_insert(grainy, redblock, &framed, w / 5, h / 5, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(framed, &u8, NULL), 0);
    if (bands == 1) {
        ck_assert_int_eq(vips_extract_band(u8, &res, 1, NULL), 0);
        res->Type = VIPS_INTERPRETATION_B_W;
    } else {
        ck_assert_int_eq(vips_copy(u8, &res, NULL), 0);
        res->Type = VIPS_INTERPRETATION_sRGB;
    }
    VipsImage *drop[] = {xyz,   x,      y,     parts[0], parts[1], parts[2], ramps,
                         noise, grainy, block, redblock, framed,   u8};
    for (size_t i = 0; i < G_N_ELEMENTS(drop); i++)
        g_object_unref(drop[i]);
    return res;
}

/* Saves img as a progressive JPEG (unless baseline) and checks libjpeg sees it so. */
static char *save_jpeg(VipsImage *img, const char *name, int subsample, int restart,
                       int progressive)
{
    char *p = pmt_path(in, name);
    ck_assert_int_eq(
        vips_jpegsave(img, p, "Q", 85, "interlace", progressive, "subsample_mode",
                      subsample ? VIPS_FOREIGN_SUBSAMPLE_ON : VIPS_FOREIGN_SUBSAMPLE_OFF,
                      "restart_interval", restart, NULL),
        0);
    int prog = -1, hs = 0, vs = 0;
    ck_assert_int_eq(pmt_jpeg_header(p, &prog, &hs, &vs), 0);
    ck_assert_int_eq(prog, progressive);
    if (img->Bands == 3)
        ck_assert_int_eq(hs, subsample ? 2 : 1);
    return p;
}

static int dc_decode_file(const char *path, pm__dc_image *im)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    int rc = pm__jpeg_dc_decode(fd, im);
    close(fd);
    return rc;
}

START_TEST(test_matches_libjpeg_at_an_eighth)
{
    static const struct {
        int w, h, bands, subsample, restart;
        double most_mad; /* mean absolute difference allowed: 0 means the same bytes */
    } cases[] = {
        {1600, 1200, 3, 0, 0, 0},   /* 4:4:4 */
        {1001, 667, 3, 0, 5, 0},    /* odd size, restart markers */
        {999, 701, 1, 0, 3, 0},     /* grey */
        {1600, 1200, 3, 1, 0, 1.5}, /* 4:2:0: libjpeg makes chroma with a 2x2 inverse DCT */
        {1001, 667, 3, 1, 7, 1.5},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        VipsImage *img = photo_like(cases[i].w, cases[i].h, cases[i].bands);
        char name[32];
        snprintf(name, sizeof(name), "case%zu.jpg", i);
        char *p = save_jpeg(img, name, cases[i].subsample, cases[i].restart, 1);
        g_object_unref(img);
        pm__dc_image dc;
        ck_assert_msg(dc_decode_file(p, &dc) == 0, "case %zu declined", i);
        int w, h, ch;
        unsigned char *ref = pmt_jpeg_eighth(p, &w, &h, &ch);
        ck_assert_ptr_nonnull(ref);
        ck_assert_int_eq(dc.width, w);
        ck_assert_int_eq(dc.height, h);
        ck_assert_int_eq(dc.bands, ch);
        ck_assert_int_eq(w, (cases[i].w + 7) / 8);
        size_t n = (size_t)w * (size_t)h * (size_t)ch;
        double sum = 0;
        int most = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs((int)dc.pixels[k] - (int)ref[k]);
            sum += d;
            most = MAX(most, d);
        }
        double mad = sum / (double)n;
        fprintf(stderr, "case %zu (%dx%d, %d bands, %s, restart %d): MAD %.3f, largest %d\n", i,
                cases[i].w, cases[i].h, ch, cases[i].subsample ? "4:2:0" : "4:4:4",
                cases[i].restart, mad, most);
        if (cases[i].most_mad == 0)
            ck_assert_msg(most == 0, "case %zu: differs from libjpeg by up to %d", i, most);
        else
            ck_assert_msg(mad <= cases[i].most_mad, "case %zu: MAD %.3f", i, mad);
        pm__dc_image_free(&dc);
        free(ref), free(p);
    }
}
END_TEST

static char *write_bytes(const char *name, const void *data, size_t len)
{
    char *p = pmt_path(in, name);
    ck_assert_int_eq(pmt_write_file(p, data, len), 0);
    return p;
}

START_TEST(test_declines_what_it_does_not_read)
{
    pm__dc_image dc;
    VipsImage *img = photo_like(640, 480, 3);
    /* baseline: libjpeg streams those at 1/8 anyway */
    char *base = save_jpeg(img, "baseline.jpg", 1, 0, 0);
    ck_assert_int_eq(dc_decode_file(base, &dc), -1);
    /* CMYK, four components */
    VipsImage *cmyk, *four;
    ck_assert_int_eq(vips_bandjoin_const1(img, &four, 40, NULL), 0);
    ck_assert_int_eq(vips_copy(four, &cmyk, "interpretation", VIPS_INTERPRETATION_CMYK, NULL), 0);
    char *cm = pmt_path(in, "cmyk.jpg");
    ck_assert_int_eq(vips_jpegsave(cmyk, cm, "interlace", TRUE, NULL), 0);
    VipsImage *check = vips_image_new_from_file(cm, NULL);
    ck_assert_int_eq(check->Bands, 4);
    g_object_unref(check), g_object_unref(cmyk), g_object_unref(four);
    ck_assert_int_eq(dc_decode_file(cm, &dc), -1);
    /* not a JPEG */
    char *png = pmt_path(in, "x.png");
    ck_assert_int_eq(vips_pngsave(img, png, NULL), 0);
    ck_assert_int_eq(dc_decode_file(png, &dc), -1);

    /* cut anywhere: no EOI, declined (libvips then reports the truncation) */
    char *whole = save_jpeg(img, "whole.jpg", 1, 4, 1);
    g_object_unref(img);
    size_t len;
    unsigned char *bytes = (unsigned char *)pmt_read_file(whole, &len);
    ck_assert_ptr_nonnull(bytes);
    pm__dc_image ref;
    ck_assert_int_eq(dc_decode_file(whole, &ref), 0);
    for (int k = 1; k <= 40; k++) {
        char *p = write_bytes("cut.jpg", bytes, len * (size_t)k / 41);
        ck_assert_msg(dc_decode_file(p, &dc) == -1, "cut at %zu of %zu decoded", len * k / 41, len);
        free(p);
    }
    /* bytes after the EOI (a polyglot's payload) are not the image's business */
    unsigned char *more = malloc(len + 64);
    memcpy(more, bytes, len);
    memset(more + len, 0xFF, 64);
    memcpy(more + len, "PK\x03\x04 a zip after the image", 27);
    char *poly = write_bytes("poly.jpg", more, len + 64);
    ck_assert_int_eq(dc_decode_file(poly, &dc), 0);
    ck_assert_int_eq(memcmp(dc.pixels, ref.pixels, (size_t)ref.width * ref.height * 3), 0);
    pm__dc_image_free(&dc);

    /* damage: 1-4 bytes changed at random places (fixed seed), 400 times. Whatever the bytes,
     * no crash and no read or write out of bounds (the sanitizer builds run this); damage in
     * the headers and DC scans must be seen (declined), damage in the AC scans it never
     * reads is not. */
    GRand *rand = g_rand_new_with_seed(1);
    int declined = 0, decoded = 0;
    for (int t = 0; t < 400; t++) {
        memcpy(more, bytes, len);
        int flips = g_rand_int_range(rand, 1, 5);
        for (int f = 0; f < flips; f++)
            more[g_rand_int_range(rand, 2, (gint32)len)] = (unsigned char)g_rand_int(rand);
        char *p = write_bytes("damaged.jpg", more, len);
        if (dc_decode_file(p, &dc) == 0) {
            decoded++;
            ck_assert(dc.width > 0 && dc.height > 0 && dc.pixels);
            pm__dc_image_free(&dc);
        } else {
            declined++;
        }
        free(p);
    }
    fprintf(stderr, "damaged: %d declined, %d decoded\n", declined, decoded);
    ck_assert_int_gt(declined, 0);
    ck_assert_int_gt(decoded, 0);
    g_rand_free(rand);
    pm__dc_image_free(&ref);
    free(more), free(bytes), free(poly), free(whole), free(png), free(cm), free(base);
}
END_TEST

/* ---- the DC decoder agrees with libjpeg on what is a JPEG (issue 19) ---- */

/* Offset of the first marker m after SOI (walking the segments before the first scan), or
 * -1. */
static long find_segment(const unsigned char *b, size_t len, int m)
{
    size_t at = 2;
    while (at + 4 <= len && b[at] == 0xFF) {
        if (b[at + 1] == m)
            return (long)at;
        if (b[at + 1] == 0xDA)
            return -1;
        at += 2 + ((size_t)b[at + 2] << 8 | b[at + 3]);
    }
    return -1;
}

/* Where the first scan's entropy-coded data ends: the first marker after it that is not a
 * stuffed byte or a restart. */
static size_t end_of_first_scan(const unsigned char *b, size_t len)
{
    long sos = find_segment(b, len, 0xDA);
    ck_assert_int_ge(sos, 0);
    size_t at = (size_t)sos + 2 + ((size_t)b[sos + 2] << 8 | b[sos + 3]);
    while (at + 1 < len &&
           !(b[at] == 0xFF && b[at + 1] != 0 && (b[at + 1] < 0xD0 || b[at + 1] > 0xD7)))
        at++;
    return at;
}

/* bytes with [cut_at, cut_at + cut_len) replaced by ins */
static unsigned char *splice_bytes(const unsigned char *b, size_t len, size_t cut_at,
                                   size_t cut_len, const void *ins, size_t ins_len, size_t *out_len)
{
    *out_len = len - cut_len + ins_len;
    unsigned char *o = malloc(*out_len);
    memcpy(o, b, cut_at);
    memcpy(o + cut_at, ins, ins_len);
    memcpy(o + cut_at + ins_len, b + cut_at + cut_len, len - cut_at - cut_len);
    return o;
}

static const unsigned char app0_jfif[] = {0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0,
                                          1,    1,    0, 0,  1,   0,   1,   0,   0};
static const unsigned char app14_rgb[] = {0xFF, 0xEE, 0,   14, 'A', 'd', 'o', 'b',
                                          'e',  0,    100, 0,  0,   0,   0,   0};

/* The property: where the DC path decodes, libjpeg's own 1/8 decode (warnings allowed) does
 * too, to the same size, and to the same luma within a mean absolute difference of 2. */
static int agrees_with_libjpeg(const char *path, int *decoded)
{
    pm__dc_image dc;
    *decoded = dc_decode_file(path, &dc) == 0;
    if (!*decoded)
        return 1;
    int w, h, ch;
    unsigned char *ref = pmt_jpeg_eighth_lenient(path, &w, &h, &ch);
    int ok = ref && w == dc.width && h == dc.height && ch == dc.bands;
    if (ok) {
        /* on luma: 4:2:0 chroma is interpolated here where libjpeg runs a 2x2 inverse DCT (the
         * colour channels of the corpus's small 4:1:0 frames differ by 7.5 on average), while a
         * wrong colour transform moves luma by tens */
        size_t px = (size_t)w * (size_t)h;
        double sum = 0;
        for (size_t k = 0; k < px; k++) {
            const unsigned char *a = dc.pixels + k * (size_t)ch, *r = ref + k * (size_t)ch;
            double ya = ch == 3 ? 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2] : a[0];
            double yr = ch == 3 ? 0.299 * r[0] + 0.587 * r[1] + 0.114 * r[2] : r[0];
            sum += fabs(ya - yr);
        }
        double most = getenv("PMT_MAD_MAX") ? atof(getenv("PMT_MAD_MAX")) : 2.0;
        ok = sum / (double)px <= most;
        if (!ok || getenv("PMT_SHOW_MAD"))
            fprintf(stderr, "%s: luma MAD %.2f from libjpeg\n", path, sum / (double)px);
    } else {
        fprintf(stderr, "%s: the DC path decoded %dx%d, libjpeg %s\n", path, dc.width, dc.height,
                ref ? "another size" : "refused it");
    }
    free(ref);
    pm__dc_image_free(&dc);
    return ok;
}

START_TEST(test_agrees_with_libjpeg_on_what_is_a_jpeg)
{
    VipsImage *img = photo_like(320, 240, 3);
    char *p = save_jpeg(img, "444.jpg", 0, 0, 1);
    g_object_unref(img);
    size_t len, n;
    unsigned char *b = (unsigned char *)pmt_read_file(p, &len);
    int w, h, ch, decoded;
    pm__dc_image dc;

    /* 1. the first scan's components out of frame order (T.81 B.2.3): libjpeg refuses it */
    long sos = find_segment(b, len, 0xDA);
    ck_assert_msg(sos > 0 && b[sos + 4] == 3, "the first scan is not the three DC components");
    unsigned char *swapped = malloc(len);
    memcpy(swapped, b, len);
    swapped[sos + 5] = b[sos + 7]; /* the ids only: the tables stay, so the data decodes */
    swapped[sos + 7] = b[sos + 5];
    char *q = write_bytes("order.jpg", swapped, len);
    unsigned char *ref = pmt_jpeg_eighth_lenient(q, &w, &h, &ch);
    ck_assert_msg(ref == NULL, "libjpeg decoded scan components out of frame order");
    ck_assert_msg(dc_decode_file(q, &dc) == -1, "the DC path decoded components out of order");
    free(q), free(swapped);

    /* 2. no JFIF, Adobe says RGB, and a JFIF marker after the first scan: libjpeg has read the
     * file as RGB by then; the DC path must not turn to YCbCr at the end */
    long app0 = find_segment(b, len, 0xE0); /* libvips writes none: then nothing to cut */
    size_t app0_at = app0 > 0 ? (size_t)app0 : 2,
           app0_len = app0 > 0 ? 2 + ((size_t)b[app0 + 2] << 8 | b[app0 + 3]) : 0;
    unsigned char *rgb = splice_bytes(b, len, app0_at, app0_len, app14_rgb, sizeof(app14_rgb), &n);
    size_t end = end_of_first_scan(rgb, n), n2;
    unsigned char *late = splice_bytes(rgb, n, end, 0, app0_jfif, sizeof(app0_jfif), &n2);
    q = write_bytes("late-jfif.jpg", late, n2);
    ck_assert_msg(agrees_with_libjpeg(q, &decoded), "late JFIF: the DC path disagrees");
    ck_assert_msg(!decoded, "late JFIF: the DC path decoded an RGB file as YCbCr");
    free(q), free(late), free(rgb);

    /* 3. no JFIF (component ids 1, 2, 3: YCbCr), and an Adobe RGB marker after the first scan:
     * still YCbCr for libjpeg, and the DC path decodes it to the same bytes */
    unsigned char *bare = splice_bytes(b, len, app0_at, app0_len, "", 0, &n);
    end = end_of_first_scan(bare, n);
    late = splice_bytes(bare, n, end, 0, app14_rgb, sizeof(app14_rgb), &n2);
    q = write_bytes("late-adobe.jpg", late, n2);
    ck_assert_msg(agrees_with_libjpeg(q, &decoded), "late Adobe: the DC path disagrees");
    ck_assert_msg(decoded, "late Adobe: the DC path declined a YCbCr file");
    free(q), free(late), free(bare);

    /* 4. the property over every JPEG of the corpora, the samples, and 400 damaged copies */
    const char *dirs[] = {getenv("PMT_JPEGDC_CORPUS"), getenv("PMT_DECODE_CORPUS")};
    int files = 0, dc_ok = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
        ck_assert_msg(dirs[i] != NULL, "the corpora's folders are set by ctest");
        GDir *d = g_dir_open(dirs[i], 0, NULL);
        ck_assert_ptr_nonnull(d);
        const char *name;
        while ((name = g_dir_read_name(d)) != NULL) {
            if (!g_str_has_suffix(name, ".jpg"))
                continue;
            char *f = g_build_filename(dirs[i], name, NULL);
            ck_assert_msg(agrees_with_libjpeg(f, &decoded), "%s: the DC path disagrees", f);
            files++, dc_ok += decoded;
            g_free(f);
        }
        g_dir_close(d);
    }
    char *cmd = g_strdup_printf("find '%s' -name '*.jpg'", getenv("PM_SAMPLES"));
    char *list = NULL;
    ck_assert(g_spawn_command_line_sync(cmd, &list, NULL, NULL, NULL));
    gchar **photos = g_strsplit(list, "\n", -1);
    for (int i = 0; photos[i]; i++) {
        if (!*photos[i])
            continue;
        /* as progressive copies, which the DC path reads */
        VipsImage *ph = vips_image_new_from_file(photos[i], NULL);
        ck_assert_ptr_nonnull(ph);
        char *pp = pmt_path(in, "sample-prog.jpg");
        ck_assert_int_eq(vips_jpegsave(ph, pp, "interlace", TRUE, NULL), 0);
        g_object_unref(ph);
        ck_assert_msg(agrees_with_libjpeg(pp, &decoded), "%s: the DC path disagrees", photos[i]);
        ck_assert_msg(decoded, "%s: a whole progressive photo declined", photos[i]);
        files++, dc_ok += decoded;
        free(pp);
    }
    g_strfreev(photos), g_free(list), g_free(cmd);
    /* $PMT_MORE_JPEGS: a folder of more (the shared real-image corpus), each as it is */
    if (getenv("PMT_MORE_JPEGS")) {
        cmd = g_strdup_printf("find '%s' -type f -iname '*.jp*g'", getenv("PMT_MORE_JPEGS"));
        ck_assert(g_spawn_command_line_sync(cmd, &list, NULL, NULL, NULL));
        photos = g_strsplit(list, "\n", -1);
        for (int i = 0; photos[i]; i++) {
            if (!*photos[i])
                continue;
            ck_assert_msg(agrees_with_libjpeg(photos[i], &decoded), "%s: the DC path disagrees",
                          photos[i]);
            files++, dc_ok += decoded;
        }
        g_strfreev(photos), g_free(list), g_free(cmd);
    }
    GRand *rand = g_rand_new_with_seed(19);
    unsigned char *more = malloc(len);
    for (int t = 0; t < 400; t++) {
        memcpy(more, b, len);
        int flips = g_rand_int_range(rand, 1, 5);
        for (int f = 0; f < flips; f++)
            more[g_rand_int_range(rand, 2, (gint32)len)] = (unsigned char)g_rand_int(rand);
        q = write_bytes("damaged.jpg", more, len);
        ck_assert_msg(agrees_with_libjpeg(q, &decoded), "damaged copy %d: the DC path disagrees",
                      t);
        files++, dc_ok += decoded;
        free(q);
    }
    fprintf(stderr, "DC path against libjpeg: %d JPEGs, %d decoded by the DC path, all agreed\n",
            files, dc_ok);
    g_rand_free(rand);
    free(more), free(b), free(p);
}
END_TEST

static unsigned char *png_out(const char *dir, const char *name, int *w, int *h)
{
    char *p = pmt_path(dir, name);
    unsigned char *px = pmt_png_rgba(p, w, h);
    ck_assert_msg(px != NULL, "cannot decode %s", p);
    free(p);
    return px;
}

/* Through the binary: a progressive photo stored on its side (EXIF orientation 6) comes out
 * upright; the thumbnails are close to those libvips' decode makes (--fail-on warning keeps
 * pixmill on libvips' decode: the DC path skips the AC scans, whose warnings that setting
 * must see); a truncated one still fails, naming the file. */
START_TEST(test_through_the_binary)
{
    VipsImage *u = photo_like(2400, 1600, 3), *side;
    char *o1 = save_jpeg(u, "o1.jpg", 1, 0, 1);
    ck_assert_int_eq(vips_rot(u, &side, VIPS_ANGLE_D270, NULL), 0);
    VipsImage *tagged;
    ck_assert_int_eq(vips_copy(side, &tagged, NULL), 0);
    vips_image_set_int(tagged, VIPS_META_ORIENTATION, 6);
    char *o6 = save_jpeg(tagged, "o6.jpg", 1, 0, 1);
    g_object_unref(tagged), g_object_unref(side), g_object_unref(u);
    char *out2 = pmt_path(tmp, "out-libvips");
    char *err = NULL;
    int rc = pmt_pixmill_run(&err, "-f", "png", "-s", "200", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    rc = pmt_pixmill_run(&err, "--fail-on", "warning", "-f", "png", "-s", "200", "-o", out2, in,
                         NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    int w1, h1, w6, h6, wl, hl;
    unsigned char *a = png_out(out, "o1.png", &w1, &h1), *b = png_out(out, "o6.png", &w6, &h6),
                  *l = png_out(out2, "o1.png", &wl, &hl);
    ck_assert_int_eq(w1, 200);
    ck_assert_int_eq(h1, 133);
    ck_assert(w6 == w1 && h6 == h1 && wl == w1 && hl == h1);
    double upright = pmt_mad_rgb(a, b, (size_t)w1 * h1), near = pmt_mad_rgb(a, l, (size_t)w1 * h1);
    fprintf(stderr, "orientation 6 against 1: MAD %.3f; DC against libvips: MAD %.3f, PSNR %.1f\n",
            upright, near, pmt_psnr_rgb(a, l, (size_t)w1 * h1));
    ck_assert_msg(upright < 2.0, "orientation 6 comes out differently: MAD %.3f", upright);
    ck_assert_msg(near < 3.0, "DC decode far from libvips': MAD %.3f", near);
    /* and it was the DC path: libvips' own decode gives other bytes */
    char *pa = pmt_path(out, "o1.png"), *pl = pmt_path(out2, "o1.png");
    ck_assert(!pmt_same_file_bytes(pa, pl));
    /* Run again with one output lost: the other is current from its build record alone (no
     * header read, so the record must say the source takes the DC path, or the digest would
     * change and everything be redone), and the lost one comes back the same bytes. */
    char *kept = pmt_path(tmp, "o1-first.png");
    size_t first_len;
    char *first = pmt_read_file(pa, &first_len);
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(unlink(pa), 0);
    char *events = NULL;
    rc =
        pmt_pixmill_run_out(&events, NULL, "--json", "-f", "png", "-s", "200", "-o", out, in, NULL);
    ck_assert_int_eq(rc, 0);
    int done = 0;
    for (const char *e = events; (e = strstr(e, "\"event\":\"done\"")) != NULL; e++)
        done++;
    ck_assert_msg(done == 1, "%d sources redone, expected the one whose output was lost:\n%s", done,
                  events);
    ck_assert_int_eq(pmt_write_file(kept, first, first_len), 0);
    ck_assert_msg(pmt_same_file_bytes(pa, kept), "o1.png made again is not the same bytes");
    free(events), free(first), free(kept);
    free(a), free(b), free(l), free(pa), free(pl);

    /* a Display P3 progressive photo comes out converted to sRGB */
    size_t len;
    char *bytes = pmt_read_file(o1, &len);
    pmt_rmtree(in);
    pmt_mkdirs(in);
    VipsImage *black, *lin, *cast, *t, *p3;
    double one[3] = {1, 1, 1}, red[3] = {200, 30, 30};
    ck_assert_int_eq(vips_black(&black, 640, 480, "bands", 3, NULL), 0);
    ck_assert_int_eq(vips_linear(black, &lin, one, red, 3, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(lin, &cast, NULL), 0);
    cast->Type = VIPS_INTERPRETATION_sRGB;
    ck_assert_int_eq(vips_icc_transform(cast, &t, "p3", "input_profile", "srgb", NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(t, &p3, NULL), 0);
    char *pp = save_jpeg(p3, "p3.jpg", 0, 0, 1);
    g_object_unref(p3), g_object_unref(t), g_object_unref(cast), g_object_unref(lin);
    g_object_unref(black);
    /* a truncated one beside it */
    char *cut = write_bytes("cut.jpg", bytes, len * 2 / 3);
    char *json = NULL;
    rc = pmt_pixmill_run_out(&json, NULL, "--json", "-f", "png", "-s", "32", "-o", out, in, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(json, "cut.jpg") && strstr(json, "PM_ERR_DECODE"), "%s", json);
    char *cut_out = pmt_path(out, "cut.png");
    ck_assert_int_ne(access(cut_out, F_OK), 0);
    int w, h;
    unsigned char *px = png_out(out, "p3.png", &w, &h);
    double m[3] = {0, 0, 0};
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++)
            m[c] += px[i * 4 + c] / (double)(w * h);
    fprintf(stderr, "p3.jpg: mean %.1f %.1f %.1f (sRGB source 200 30 30)\n", m[0], m[1], m[2]);
    for (int c = 0; c < 3; c++)
        ck_assert_msg(m[c] > red[c] - 3 && m[c] < red[c] + 3, "channel %d: %.1f", c, m[c]);
    free(px), free(cut_out), free(json), free(cut), free(bytes), free(pp);
    free(o1), free(o6), free(out2);
}
END_TEST

/* The build record keeps whether a source takes the DC path (and whether it is stored on its
 * side), so a rerun decides its digest without the header; a record written before the field
 * existed still loads, as a source that does not. */
START_TEST(test_record_keeps_dc_source)
{
    int root = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(root, 0);
    pm__state st = {0}, back = {0};
    st.source = (char *)"/photos/p.jpg";
    g_strlcpy(st.hash, "0123456789abcdef0123456789abcdef", sizeof(st.hash));
    st.width = 2056, st.height = 3088, st.pages = 1, st.same = PM_FORMAT_JPEG, st.dc_source = 2;
    int err = 0;
    ck_assert_int_eq(pm__state_save(root, "r", "p.st", &st, &err), PM_OK);
    ck_assert_int_eq(pm__state_load(root, "r", "p.st", &back), 0);
    ck_assert_int_eq(back.dc_source, 2);
    ck_assert_int_eq(back.width, 2056);
    pm__state_clear(&back);
    char *old = pmt_path(tmp, "r/old.st");
    const char *text = "pixmill-state 1\nsource\t/photos/p.jpg\nsize\t10\nmtime\t1\nhash\t"
                       "0123456789abcdef0123456789abcdef\ndims\t2056\t3088\t1\t1\t0\n";
    ck_assert_int_eq(pmt_write_file(old, text, strlen(text)), 0);
    ck_assert_int_eq(pm__state_load(root, "r", "old.st", &back), 0);
    ck_assert_int_eq(back.dc_source, 0);
    ck_assert_int_eq(back.height, 3088);
    pm__state_clear(&back);
    close(root);
    free(old);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("jpegdc");
    TCase *tc = tcase_create("jpegdc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_matches_libjpeg_at_an_eighth);
    tcase_add_test(tc, test_declines_what_it_does_not_read);
    tcase_add_test(tc, test_through_the_binary);
    tcase_add_test(tc, test_record_keeps_dc_source);
    tcase_add_test(tc, test_agrees_with_libjpeg_on_what_is_a_jpeg);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
