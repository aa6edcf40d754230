/* BAD-INPUT cases through the built binary, fixtures made here: pixel bombs rejected from the
 * header, fast and in bounded memory (3); a JPEG with a ZIP appended (7); --max-file-size and
 * --max-pages; stdout closed early (30); one file named twice, and a hard link beside it (19).
 * Each also checks the "nothing lost" rules: inputs byte-identical, no temp, no partial output. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <pixmill/pixmill.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#include <zlib.h>

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

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void png_chunk(GByteArray *b, const char *type, const unsigned char *data, uint32_t len)
{
    unsigned char hdr[8];
    put_be32(hdr, len);
    memcpy(hdr + 4, type, 4);
    g_byte_array_append(b, hdr, 8);
    if (len)
        g_byte_array_append(b, data, len);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    crc = crc32(crc, data, len);
    unsigned char c[4];
    put_be32(c, (uint32_t)crc);
    g_byte_array_append(b, c, 4);
}

/* A 1-bit grey PNG of w x h whose rows are all zero: rows compressed for real when
 * rows_for_real, else one short IDAT (the header alone makes the claim). */
static char *png_bomb(const char *name, uint32_t w, uint32_t h, int rows_for_real)
{
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, (const guint8 *)"\x89PNG\r\n\x1a\n", 8);
    unsigned char ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 1; /* bit depth */
    png_chunk(b, "IHDR", ihdr, 13);
    z_stream z = {0};
    ck_assert_int_eq(deflateInit(&z, 9), Z_OK);
    size_t row = 1 + (w + 7) / 8;
    unsigned char *zeros = g_malloc0(row);
    GByteArray *idat = g_byte_array_new();
    unsigned char outbuf[65536];
    uint32_t rows = rows_for_real ? h : 1;
    for (uint32_t y = 0; y <= rows; y++) {
        z.next_in = zeros;
        z.avail_in = y < rows ? (uInt)row : 0;
        int flush = y < rows ? Z_NO_FLUSH : Z_FINISH;
        do {
            z.next_out = outbuf;
            z.avail_out = sizeof(outbuf);
            deflate(&z, flush);
            g_byte_array_append(idat, outbuf, (guint)(sizeof(outbuf) - z.avail_out));
        } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    png_chunk(b, "IDAT", idat->data, idat->len);
    png_chunk(b, "IEND", NULL, 0);
    char *p = pmt_path(in, name);
    ck_assert_int_eq(pmt_write_file(p, b->data, b->len), 0);
    g_byte_array_free(idat, TRUE);
    g_byte_array_free(b, TRUE);
    g_free(zeros);
    return p;
}

/* A small real JPEG whose SOF0 is patched to claim w x h (176-byte-class bomb). */
static char *jpeg_claiming(const char *name, int w, int h)
{
    size_t len;
    void *data = pmt_encode_image(".jpg", 8, 8, 3, &len);
    ck_assert_ptr_nonnull(data);
    unsigned char *j = data;
    size_t i = 2;
    while (i + 9 < len && !(j[i] == 0xFF && j[i + 1] == 0xC0))
        i++;
    ck_assert_msg(i + 9 < len, "no SOF0");
    j[i + 5] = (unsigned char)(h >> 8), j[i + 6] = (unsigned char)h;
    j[i + 7] = (unsigned char)(w >> 8), j[i + 8] = (unsigned char)w;
    char *p = pmt_path(in, name);
    ck_assert_int_eq(pmt_write_file(p, data, len), 0);
    g_free(data);
    return p;
}

static int run_with_rss(char **err, long *maxrss_kib, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = pmt_pixmill();
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct rusage ru;
    int rc = pmt_run((char *const *)argv, NULL, err, &ru);
    *maxrss_kib = ru.ru_maxrss;
    return rc;
}

START_TEST(test_pixel_bombs_rejected_from_the_header)
{
    char *a = png_bomb("zero-rows.png", 20000, 20000, 1);   /* 400 MP of zero rows */
    char *b = png_bomb("million.png", 1000000, 1000000, 0); /* 10^12 px in ~100 bytes */
    char *c = jpeg_claiming("sof.jpg", 65500, 65500);
    free(pmt_make_image(in, "fine.png", 64, 48, 3));
    GTimer *t = g_timer_new();
    char *e = NULL;
    long rss;
    const char *args[] = {"-j", "2", "-o", out, in, NULL};
    int rc = run_with_rss(&e, &rss, args);
    double secs = g_timer_elapsed(t, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "zero-rows.png: image exceeds the pixel limit"), "%s", e);
    ck_assert_msg(strstr(e, "sof.jpg: image exceeds the pixel limit"), "%s", e);
    /* libpng itself refuses more than 1,000,000 per axis: a decode error, from the header */
    ck_assert_msg(strstr(e, "million.png: "), "%s", e);
    ck_assert_msg(strstr(e, "1 processed") && strstr(e, "3 failed"), "%s", e);
    fprintf(stderr, "pixel bombs: %.2f s, peak RSS %ld KiB\n", secs, rss);
    ck_assert_msg(secs < 5, "took %.2f s", secs);
    ck_assert_msg(rss < 200 * 1024, "peak RSS %ld KiB", rss);
    ck_assert_int_eq(pmt_count_files(out, "."), 1);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    g_timer_destroy(t);
    free(e), free(a), free(b), free(c);
}
END_TEST

START_TEST(test_many_frames_capped)
{
    /* a 1000-frame 300x300 GIF: 90 MP; with --max-pixels 50M the pages count it out */
    VipsImage *frame, *strip;
    ck_assert_int_eq(vips_black(&frame, 300, 300 * 1000, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(frame, &strip, NULL), 0);
    vips_image_set_int(strip, "page-height", 300);
    char *gif = pmt_path(in, "frames.gif");
    ck_assert_int_eq(vips_gifsave(strip, gif, NULL), 0);
    g_object_unref(strip), g_object_unref(frame);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "--max-pixels", "50000000", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "frames.gif: image exceeds the pixel limit (300x300 x 1000 page(s)"),
                  "%s", e);
    free(e);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--max-pages", "999", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "1000 pages or frames is more than --max-pages 999"), "%s", e);
    free(e);
    ck_assert_int_eq(pmt_pixmill_run(&e, "-o", out, in, NULL), 0); /* within both defaults */
    free(e);
    free(gif);
}
END_TEST

START_TEST(test_max_file_size)
{
    free(pmt_make_image(in, "small.png", 16, 16, 3));
    char *big = pmt_make_image(in, "big.png", 600, 600, 3);
    size_t len;
    free(pmt_read_file(big, &len));
    char limit[32];
    g_snprintf(limit, sizeof(limit), "%zu", len - 1);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "--max-file-size", limit, "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "big.png: over a configured limit") &&
                      strstr(e, "is more than --max-file-size"),
                  "%s", e);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, "."), 1);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--max-file-size", "1M", "-o", out, in, NULL), 0);
    free(e);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--max-file-size", "1X", "-o", out, in, NULL), 2);
    free(e);
    free(big);
}
END_TEST

START_TEST(test_polyglot_payload_not_carried)
{
    size_t len;
    void *jpg = pmt_encode_image(".jpg", 300, 200, 3, &len);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, jpg, (guint)len);
    const char *zip = "PK\x03\x04payload-marker-7f3a";
    g_byte_array_append(b, (const guint8 *)zip, (guint)strlen(zip));
    char *p = pmt_path(in, "poly.jpg");
    ck_assert_int_eq(pmt_write_file(p, b->data, b->len), 0);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-s", "100", "-o", out, in, NULL), 0);
    char *o = pmt_path(out, "poly.jpg");
    int w, h, c;
    unsigned char rgb[3];
    ck_assert_int_eq(pmt_jpeg_decode(o, &w, &h, &c, rgb), 0);
    ck_assert_int_eq(w, 100);
    ck_assert(!pmt_file_contains(o, "payload-marker-7f3a", 19));
    ck_assert(pmt_file_contains(p, "payload-marker-7f3a", 19)); /* the input is untouched */
    g_byte_array_free(b, TRUE);
    g_free(jpg);
    free(e), free(p), free(o);
}
END_TEST

START_TEST(test_stdout_closed_early)
{
    for (int i = 0; i < 8; i++) {
        char rel[16];
        g_snprintf(rel, sizeof(rel), "p%d.png", i);
        free(pmt_make_image(in, rel, 120, 90, 3));
    }
    char *cmd = g_strdup_printf("'%s' --json -j 2 -o '%s' '%s' | head -c 1 >/dev/null; "
                                "exit ${PIPESTATUS[0]}",
                                pmt_pixmill(), out, in);
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    char *e = NULL;
    int rc = pmt_run_argv(argv, &e);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 8);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    free(e);
    g_free(cmd);
}
END_TEST

START_TEST(test_same_file_twice)
{
    char *a = pmt_make_image(in, "a.png", 120, 90, 3);
    char *e = NULL;
    /* named twice, and through a symlink: one source, one writer, one output */
    char *link = pmt_path(tmp, "link.png");
    ck_assert_int_eq(symlink(a, link), 0);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--json", "-j", "4", "-o", out, a, a, link, NULL), 0);
    ck_assert_msg(strstr(e, "1 processed") && strstr(e, "2 skipped"), "%s", e);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 1);
    free(a), free(link);
}
END_TEST

START_TEST(test_tiff_blocked_until_allowed)
{
    char *t = pmt_make_image(in, "scan.tif", 64, 48, 3);
    ck_assert_ptr_nonnull(t);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "scan.tif: image format is blocked (TIFF: open it with --allow=tiff)"),
                  "%s", e);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 0);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--allow", "tiff", "-f", "png", "-o", out, in, NULL), 0);
    free(e);
    char *p = pmt_path(out, "scan.png");
    int w, h, c;
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    free(p), free(t);
}
END_TEST

/* libvips 8.14 leaves its text matrix loader open: a text file beginning "W H" under an image
 * name was decoded as an image. Blocked like the untrusted loaders, --allow=matrix opens it. */
START_TEST(test_text_matrix_blocked)
{
    char *p = pmt_path(in, "notes.png");
    ck_assert_int_eq(pmt_write_file(p, "2 2\n0 255\n255 0\n", 16), 0);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL), 1);
    ck_assert_msg(
        strstr(e, "notes.png: image format is blocked (MATRIX: open it with --allow=matrix)"), "%s",
        e);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, "notes"), 0);
    ck_assert_int_eq(pmt_pixmill_run(&e, "--allow", "matrix", "-f", "png", "-o", out, in, NULL), 0);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, "notes.png"), 1);
    free(p);
}
END_TEST

static gint by_text(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The (source, event, status) lines of a --json stream, sorted. */
static char *outcomes(const char *stream)
{
    gchar **lines = g_strsplit(stream ? stream : "", "\n", -1);
    GPtrArray *keys = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; lines[i]; i++) {
        const char *src = strstr(lines[i], "\"source_url\":\"");
        const char *ev = strstr(lines[i], "\"event\":\"");
        const char *st = strstr(lines[i], "\"status\":\"");
        if (!src || !ev)
            continue;
        char *k = g_strdup_printf("%.*s %.*s %.*s", (int)strcspn(src + 14, "\""), src + 14,
                                  (int)strcspn(ev + 9, "\""), ev + 9,
                                  st ? (int)strcspn(st + 10, "\"") : 2, st ? st + 10 : "ok");
        g_ptr_array_add(keys, k);
    }
    g_ptr_array_sort(keys, by_text);
    GString *all = g_string_new(NULL);
    for (guint i = 0; i < keys->len; i++) {
        const char *k = g_ptr_array_index(keys, i);
        g_string_append_printf(all, "%s\n", k);
    }
    g_ptr_array_free(keys, TRUE);
    g_strfreev(lines);
    return g_string_free(all, FALSE);
}

START_TEST(test_mixed_corpus_same_outcomes_at_any_jobs)
{
    /* good ones, and one of each kind of trouble that needs no root or hook */
    for (int i = 0; i < 6; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), i % 2 ? "good%d.jpg" : "good%d.png", i);
        free(pmt_make_image(in, rel, 150 + 10 * i, 100, i % 2 ? 3 : 4));
    }
    size_t len;
    char *whole = pmt_make_image(in, "whole.jpg", 400, 300, 3);
    char *jpg = pmt_read_file(whole, &len);
    free(whole);
    char *p = pmt_path(in, "truncated.jpg");
    ck_assert_int_eq(pmt_write_file(p, jpg, len / 2), 0);
    free(p);
    whole = pmt_make_image(in, "whole.png", 300, 200, 3);
    char *png = pmt_read_file(whole, &len);
    free(whole);
    p = pmt_path(in, "truncated.png");
    ck_assert_int_eq(pmt_write_file(p, png, len * 2 / 3), 0);
    free(p);
    p = pmt_path(in, "empty.png");
    ck_assert_int_eq(pmt_write_file(p, "", 0), 0);
    free(p);
    p = pmt_path(in, "random.jpg");
    const char *random = "\x13\x37random bytes, not an image";
    ck_assert_int_eq(pmt_write_file(p, random, strlen(random)), 0);
    free(p);
    p = pmt_path(in, "vector.jpg");
    const char *svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
    ck_assert_int_eq(pmt_write_file(p, svg, strlen(svg)), 0);
    free(p);
    free(png_bomb("bomb.png", 20000, 20000, 0));
    free(jpeg_claiming("sof.jpg", 65500, 65500));
    free(jpg);
    free(png);
    int reps = 10 / pmt_scale_divisor();
    reps = reps < 2 ? 2 : reps;
    const char *jobs[] = {"1", "2", "8", "64"};
    char *first = NULL;
    for (int r = 0; r < reps; r++) {
        for (size_t j = 0; j < G_N_ELEMENTS(jobs); j++) {
            char *o = NULL;
            int rc = pmt_pixmill_run_out(&o, NULL, "--json", "--force", "-j", jobs[j], "-s", "64",
                                         "-o", out, in, NULL);
            ck_assert_int_eq(rc, 1);
            char *got = outcomes(o);
            if (!first) {
                first = got;
                fprintf(stderr, "mixed corpus outcomes:\n%s", first);
                ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
            } else {
                ck_assert_msg(strcmp(first, got) == 0, "-j %s run %d differs:\n%s", jobs[j], r,
                              got);
                g_free(got);
            }
            free(o);
        }
    }
    /* 8 made, 7 failed, each for its own reason */
    ck_assert_ptr_nonnull(strstr(first, "truncated.jpg failed PM_ERR_DECODE"));
    ck_assert_ptr_nonnull(strstr(first, "vector.jpg failed PM_ERR_BLOCKED"));
    ck_assert_ptr_nonnull(strstr(first, "bomb.png failed PM_ERR_TOO_MANY_PIXELS"));
    ck_assert_ptr_nonnull(strstr(first, "good0.png done ok"));
    g_free(first);
}
END_TEST

/* libvips' reason once: a cut JPEG said "(VipsJpeg: Premature end of JPEG file;VipsJpeg:
 * Premature end of JPEG file)", the header's failure and the load's (issue 19). */
START_TEST(test_decoder_reason_given_once)
{
    /* a camera photo cut at a twentieth: inside its first scan */
    char *photo =
        g_build_filename(getenv("PM_SAMPLES"), "photos", "places", "cincinnati-bridge.jpg", NULL);
    size_t len;
    char *jpg = pmt_read_file(photo, &len);
    ck_assert_msg(jpg != NULL, "cannot read %s", photo);
    char *p = pmt_path(in, "cut.jpg");
    ck_assert_int_eq(pmt_write_file(p, jpg, len / 20), 0);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-j", "1", "-s", "64", "-o", out, p, NULL), 1);
    const char *first = strstr(e, "Premature end of JPEG file");
    ck_assert_msg(first && strstr(e, "cut.jpg: image could not be decoded"), "%s", e);
    ck_assert_msg(!strstr(first + 1, "Premature end of JPEG file"), "said twice: %s", e);
    free(e), free(p), free(jpg), g_free(photo);
}
END_TEST

START_TEST(test_enlarging_to_a_monster_refused)
{
    /* a 1x5000 strip made to cover a 100x100 box by enlarging: 100x500000 */
    free(pmt_make_image(in, "strip.png", 1, 5000, 3));
    free(pmt_make_image(in, "fine.png", 50, 40, 3));
    char *e = NULL;
    long rss;
    const char *args[] = {"-s", "100x100<", "--fit", "outside", "-f", "png", "-o", out, in, NULL};
    int rc = run_with_rss(&e, &rss, args);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "strip.png: over a configured limit") &&
                      strstr(e, "would be 100x500000 pixels"),
                  "%s", e);
    ck_assert_msg(rss < 200 * 1024, "peak RSS %ld KiB", rss);
    ck_assert_int_eq(pmt_count_files(out, "fine."), 1);
    ck_assert_int_eq(pmt_count_files(out, "strip."), 0);
    free(e);
}
END_TEST

START_TEST(test_few_descriptors_throttle)
{
    /* BAD-INPUT 26: ulimit -n 16, 8 workers asked, 200 files: fewer workers, every file done */
    size_t len;
    void *png = pmt_encode_image(".png", 40, 30, 3, &len);
    for (int i = 0; i < 200; i++) {
        char name[32];
        g_snprintf(name, sizeof(name), "f%03d.png", i);
        char *p = pmt_path(in, name);
        ck_assert_int_eq(pmt_write_file(p, png, len), 0);
        free(p);
    }
    g_free(png);
    char *cmd =
        g_strdup_printf("ulimit -n 16; exec '%s' -j 8 -o '%s' '%s'", pmt_pixmill(), out, in);
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    char *e = NULL;
    int rc = pmt_run_argv(argv, &e);
    size_t n = strlen(e);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, n > 500 ? e + n - 500 : e);
    /* each engine process fits its workers to its own descriptors: one each */
    int lanes = pm_default_jobs() < 8 ? pm_default_jobs() : 8;
    char *want = g_strdup_printf("(%d jobs)", lanes);
    ck_assert_msg(strstr(e, "200 processed") && strstr(e, want), "want %s: %s", want,
                  n > 500 ? e + n - 500 : e);
    g_free(want);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 200);
    free(e);
    g_free(cmd);
}
END_TEST

START_TEST(test_odd_names_kept_byte_for_byte)
{
    /* BAD-INPUT 14 */
    const char *names[] = {"new\nline", "sp ace", "-dash", "[0]", "%s", "{}", "caf\xe9"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        char *rel = g_strconcat(names[i], ".png", NULL);
        free(pmt_make_image(in, rel, 30, 20, 3));
        g_free(rel);
    }
    char *o = NULL, *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run_out(&o, &e, "-v", "-o", out, in, NULL), 0);
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        char *rel = g_strconcat(names[i], ".png", NULL);
        char *p = pmt_path(out, rel);
        int w, h, c;
        ck_assert_msg(pmt_png_decode(p, &w, &h, &c) == 0, "%s", p);
        free(p);
        g_free(rel);
    }
    /* one line per output: the newline in a name is printed escaped, never raw */
    int lines = 0;
    for (const char *p = o; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, (int)G_N_ELEMENTS(names));
    ck_assert_ptr_nonnull(strstr(o, "new\\nline.png"));
    ck_assert_ptr_nonnull(strstr(o, "caf\\xe9.png"));
    free(o), free(e);
}
END_TEST

START_TEST(test_long_names_and_paths)
{
    /* BAD-INPUT 15: a 251-byte stem gets a size suffix over NAME_MAX; a path over PATH_MAX */
    char *stem = g_strnfill(251, 'L');
    char *rel = g_strconcat(stem, ".png", NULL);
    free(pmt_make_image(in, rel, 30, 20, 3));
    free(pmt_make_image(in, "short.png", 30, 20, 3));
    int dfd = open(in, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 25; i++) {
        char name[256];
        g_snprintf(name, sizeof(name), "d%02d%0200d", i, 0);
        ck_assert_int_eq(mkdirat(dfd, name, 0777), 0);
        int next = openat(dfd, name, O_RDONLY | O_DIRECTORY);
        close(dfd);
        dfd = next;
    }
    size_t len;
    void *png = pmt_encode_image(".png", 30, 20, 3, &len);
    int fd = openat(dfd, "deep.png", O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(write(fd, png, len), (ssize_t)len);
    close(fd);
    close(dfd);
    g_free(png);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-s", "64", "-s", "32", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "LLLL.png: output name is not usable") &&
                      strstr(e, "a part over 255 bytes"),
                  "%s", e);
    /* deep.png is reached component by component (*at calls), so it opens; its output's
     * name, over 4000 bytes, is the clear per-file error */
    ck_assert_msg(strstr(e, "deep.png: output name is not usable"), "%.2000s", e);
    ck_assert_msg(strstr(e, "1 processed") && strstr(e, "2 failed"), "%s", e);
    ck_assert_int_eq(pmt_count_files(out, "short-"), 2);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    free(e);
    g_free(rel), g_free(stem);
}
END_TEST

START_TEST(test_listed_file_gone)
{
    /* BAD-INPUT 17: listed (scanned) but gone before its decode */
    free(pmt_make_image(in, "here.png", 30, 20, 3));
    char *list = pmt_path(tmp, "list");
    char *text = g_strdup_printf("%s/here.png\n%s/gone.png\n", in, in);
    ck_assert_int_eq(pmt_write_file(list, text, strlen(text)), 0);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "--files-from", list, "-o", out, NULL), 1);
    /* the scan of a list finds it gone (a race with the worker would say "input/output error:
     * No such file or directory"): either way that file, by name, and the rest done */
    ck_assert_msg(strstr(e, "gone.png: ") && strstr(e, "No such file or directory"), "%s", e);
    ck_assert_msg(strstr(e, "1 processed"), "%s", e);
    free(e), free(list);
    g_free(text);
}
END_TEST

START_TEST(test_no_subprocess_for_untrusted_formats)
{
    /* BAD-INPUT 6: SVG, PDF and PostScript under image names are refused, and nothing but
     * pixmill itself (its engine) is ever executed */
    char *p = pmt_path(in, "photo.jpg");
    const char *svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
    ck_assert_int_eq(pmt_write_file(p, svg, strlen(svg)), 0);
    free(p);
    p = pmt_path(in, "doc.png");
    const char *pdf = "%PDF-1.4\n1 0 obj<<>>endobj\n";
    ck_assert_int_eq(pmt_write_file(p, pdf, strlen(pdf)), 0);
    free(p);
    p = pmt_path(in, "print.png");
    const char *ps = "%!PS-Adobe-3.0\nshowpage\n";
    ck_assert_int_eq(pmt_write_file(p, ps, strlen(ps)), 0);
    free(p);
    char *log = pmt_path(tmp, "execve.log");
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_traced("execve", log, &e, "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(e, "photo.jpg: image format is blocked"), "%s", e);
    ck_assert_msg(strstr(e, "3 failed"), "%s", e);
    char *text = pmt_read_file(log, NULL);
    int execs = 0;
    gchar **lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        if (!strstr(lines[i], "execve("))
            continue;
        execs++;
        ck_assert_msg(strstr(lines[i], pmt_pixmill()) || strstr(lines[i], "/proc/self/exe"),
                      "a subprocess: %s", lines[i]);
    }
    /* the supervisor, then its engines: one a core (lanes) */
    ck_assert_int_eq(execs, 1 + (pm_default_jobs() > 1 ? pm_default_jobs() : 1));
    g_strfreev(lines);
    free(text), free(log), free(e);
}
END_TEST

START_TEST(test_deep_tree_bounded_descriptors)
{
    /* BAD-INPUT 16: 2,000 levels, three images every 100, walked with ulimit -n 64 (the walk
     * used to hold one descriptor a level and stopped at about 40 with EMFILE) */
    size_t len;
    void *png = pmt_encode_image(".png", 20, 10, 3, &len);
    int dfd = open(in, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 2000; i++) {
        for (int k = 0; i % 100 == 0 && k < 3; k++) {
            char name[32];
            g_snprintf(name, sizeof(name), "f%d_%d.png", i, k);
            int fd = openat(dfd, name, O_WRONLY | O_CREAT, 0644);
            ck_assert_int_eq(write(fd, png, len), (ssize_t)len);
            close(fd);
        }
        ck_assert_int_eq(mkdirat(dfd, "d", 0777), 0);
        int next = openat(dfd, "d", O_RDONLY | O_DIRECTORY);
        close(dfd);
        dfd = next;
    }
    close(dfd);
    g_free(png);
    char *cmd =
        g_strdup_printf("ulimit -n 64; exec '%s' -j 2 -o '%s' '%s'", pmt_pixmill(), out, in);
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    char *e = NULL;
    int rc = pmt_run_argv(argv, &e);
    size_t n = strlen(e);
    const char *tail = n > 400 ? e + n - 400 : e;
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tail);
    ck_assert_msg(strstr(e, "60 processed") && !strstr(e, "Too many open files"), "%s", tail);
    free(e);
    g_free(cmd);
}
END_TEST

START_TEST(test_two_sources_one_output)
{
    /* BAD-INPUT 23: a.png and a.jpg would both write a.webp */
    free(pmt_make_image(in, "a.png", 40, 30, 3));
    free(pmt_make_image(in, "a.jpg", 60, 45, 3));
    free(pmt_make_image(in, "b.png", 40, 30, 3));
    for (int j = 1; j <= 8; j *= 8) { /* the same answer whichever finishes first */
        char jobs[4], *e = NULL;
        g_snprintf(jobs, sizeof(jobs), "%d", j);
        ck_assert_int_eq(pmt_pixmill_run(&e, "-j", jobs, "-f", "webp", "-o", out, in, NULL), 1);
        ck_assert_msg(strstr(e, "a.png: output name is not usable") &&
                          strstr(e, "a.jpg would write a.webp too") &&
                          strstr(e, "a.jpg: output name is not usable") &&
                          strstr(e, "a.png would write a.webp too"),
                      "%s", e);
        free(e);
        ck_assert_int_eq(pmt_count_files(out, "a."), 0);
        ck_assert_int_eq(pmt_count_files(out, "b.webp"), 1);
    }
    /* names that differ: the sources' own formats, or {hash} */
    char *o2 = pmt_path(tmp, "o2"), *o3 = pmt_path(tmp, "o3");
    ck_assert_int_eq(pmt_pixmill_run(NULL, "-o", o2, in, NULL), 0);
    ck_assert_int_eq(pmt_count_files(o2, "a."), 2);
    ck_assert_int_eq(
        pmt_pixmill_run(NULL, "--name", "{stem}.{hash}.{ext}", "-f", "webp", "-o", o3, in, NULL),
        0);
    ck_assert_int_eq(pmt_count_files(o3, "a."), 2);
    /* a sibling that will never write (TIFF blocked; not an image) does not clash */
    char *o4 = pmt_path(tmp, "o4");
    free(pmt_make_image(in, "master.tif", 40, 30, 3));
    free(pmt_make_image(in, "master.jpg", 40, 30, 3));
    char *junk = pmt_path(in, "b.jpg");
    ck_assert_int_eq(pmt_write_file(junk, "not an image at all", 19), 0);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "webp", "-o", o4, in, NULL), 1);
    ck_assert_msg(strstr(e, "master.tif: image format is blocked") &&
                      strstr(e, "b.jpg: not a known image format") && !strstr(e, "master.jpg:") &&
                      !strstr(e, "b.png:"),
                  "%s", e);
    free(e);
    ck_assert_int_eq(pmt_count_files(o4, "master.webp") + pmt_count_files(o4, "b.webp"), 2);
    /* with TIFF allowed, the master clashes */
    ck_assert_int_eq(pmt_pixmill_run(&e, "--allow", "tiff", "-f", "webp", "-o", o3, in, NULL), 1);
    ck_assert_msg(strstr(e, "master.tif would write master.webp too"), "%s", e);
    free(e);
    free(o2), free(o3), free(o4), free(junk);
}
END_TEST

static int exists_in(const char *dir, const char *rel)
{
    char *p = pmt_path(dir, rel);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

START_TEST(test_one_file_under_many_names)
{
    /* BAD-INPUT 19 in a walk: hard links to one file (and a symlink, which a walk skips) make
     * one output, under the name met first; a file whose other link is outside the walk is
     * made as usual. */
    char *a = pmt_make_image(in, "a.png", 80, 60, 3);
    char *sub = pmt_path(in, "sub");
    pmt_mkdirs(sub);
    char *b = pmt_path(sub, "b.png"), *c = pmt_path(in, "c.png");
    ck_assert_int_eq(link(a, b), 0);
    ck_assert_int_eq(symlink(a, c), 0);
    char *solo = pmt_make_image(in, "solo.png", 30, 20, 3);
    char *elsewhere = pmt_path(tmp, "elsewhere.png");
    ck_assert_int_eq(link(solo, elsewhere), 0);
    char *before = pmt_tree_digest(in);
    int first_a = -1;
    for (int j = 1; j <= 8; j *= 8) {
        char jobs[4], *e = NULL, dir[16];
        g_snprintf(jobs, sizeof(jobs), "%d", j);
        g_snprintf(dir, sizeof(dir), "o%d", j);
        char *o = pmt_path(tmp, dir);
        ck_assert_int_eq(pmt_pixmill_run(&e, "-v", "-j", jobs, "-f", "webp", "-o", o, in, NULL), 0);
        ck_assert_msg(strstr(e, "2 processed") && strstr(e, "2 skipped") &&
                          strstr(e, ": skipped: already met under another name (the same file as "),
                      "%s", e);
        free(e);
        int got_a = exists_in(o, "a.webp"), got_b = exists_in(o, "sub/b.webp");
        ck_assert_msg(got_a + got_b == 1, "a.webp %d, sub/b.webp %d", got_a, got_b);
        if (first_a < 0)
            first_a = got_a;
        ck_assert_int_eq(got_a, first_a); /* the same name wins at any -j */
        ck_assert(exists_in(o, "solo.webp") && !exists_in(o, "c.webp"));
        ck_assert_int_eq(pmt_count_files(o, ".tmp"), 0);
        /* a rerun: up to date, still one output */
        ck_assert_int_eq(pmt_pixmill_run(&e, "-j", jobs, "-f", "webp", "-o", o, in, NULL), 0);
        ck_assert_msg(strstr(e, "2 up to date") && strstr(e, "2 skipped"), "%s", e);
        ck_assert_int_eq(pmt_count_files(o, ".webp"), 2);
        free(e), free(o);
    }
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    free(before), free(after);
    free(a), free(b), free(c), free(sub), free(solo), free(elsewhere);
}
END_TEST

START_TEST(test_two_inputs_one_output)
{
    /* BAD-INPUT 23 across inputs: two folders (or named files) with x.png each would both
     * write out/x.webp. Both are refused, each naming the other, whatever runs first. */
    char *A = pmt_path(in, "A"), *B = pmt_path(in, "B");
    char *ax = pmt_make_image(A, "x.png", 40, 30, 3), *bx = pmt_make_image(B, "x.png", 60, 30, 3);
    char *as = pmt_make_image(A, "s/deep.jpg", 40, 30, 3);
    char *bs = pmt_make_image(B, "s/deep.png", 50, 30, 3);
    free(pmt_make_image(A, "only-a.png", 20, 20, 3));
    free(pmt_make_image(B, "only-b.png", 20, 20, 3));
    char *before = pmt_tree_digest(in);
    for (int j = 1; j <= 8; j *= 8) {
        char jobs[4], *e = NULL;
        g_snprintf(jobs, sizeof(jobs), "%d", j);
        ck_assert_int_eq(
            pmt_pixmill_run(&e, "--force", "-j", jobs, "-f", "webp", "-o", out, A, B, NULL), 1);
        char *want[4];
        want[0] = g_strdup_printf("%s: output name is not usable", ax);
        want[1] = g_strdup_printf("%s would write x.webp too", bx);
        want[2] = g_strdup_printf("%s would write x.webp too", ax);
        want[3] = g_strdup_printf("%s would write s/deep.webp too", as);
        for (int i = 0; i < 4; i++) {
            ck_assert_msg(strstr(e, want[i]), "no '%s' in: %s", want[i], e);
            g_free(want[i]);
        }
        ck_assert_msg(strstr(e, "2 processed") && strstr(e, "4 failed"), "%s", e);
        free(e);
        ck_assert(!exists_in(out, "x.webp") && !exists_in(out, "s/deep.webp"));
        ck_assert(exists_in(out, "only-a.webp") && exists_in(out, "only-b.webp"));
        ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    }
    /* named files from two folders; a named file and a folder */
    char *e = NULL;
    char *o2 = pmt_path(tmp, "o2"), *o3 = pmt_path(tmp, "o3");
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "webp", "-o", o2, ax, bx, NULL), 1);
    ck_assert_msg(strstr(e, "0 processed") && strstr(e, "2 failed"), "%s", e);
    free(e);
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "webp", "-o", o3, ax, B, NULL), 1);
    ck_assert_msg(strstr(e, "2 processed") && strstr(e, "2 failed"), "%s", e);
    free(e);
    ck_assert(!exists_in(o2, "x.webp") && !exists_in(o3, "x.webp"));
    /* a folder given twice is walked once */
    char *o4 = pmt_path(tmp, "o4"), *A2 = g_strconcat(A, "/", NULL);
    ck_assert_int_eq(pmt_pixmill_run(&e, "-v", "-f", "webp", "-o", o4, A, A2, NULL), 0);
    ck_assert_msg(strstr(e, "3 processed") && strstr(e, "1 skipped") &&
                      strstr(e, "(the same folder as "),
                  "%s", e);
    free(e);
    /* names that differ: {hash} */
    char *o5 = pmt_path(tmp, "o5");
    ck_assert_int_eq(
        pmt_pixmill_run(NULL, "--name", "{stem}.{hash}.{ext}", "-f", "webp", "-o", o5, A, B, NULL),
        0);
    ck_assert_int_eq(pmt_count_files(o5, "x."), 2);
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    free(before), free(after);
    free(o2), free(o3), free(o4), free(o5);
    g_free(A2);
    free(A), free(B), free(ax), free(bx), free(as), free(bs);
}
END_TEST

/* A real PNG (or JPEG) of w x h with extra bytes spliced in: a chunk after IHDR (PNG: the
 * signature and IHDR are always 33 bytes), or marker segments after SOI (JPEG). */
static void write_spliced(const char *name, const char *suffix, size_t at, const GByteArray *extra)
{
    size_t len;
    unsigned char *img = pmt_encode_image(suffix, 64, 48, 3, &len);
    ck_assert_ptr_nonnull(img);
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, img, (guint)at);
    g_byte_array_append(b, extra->data, extra->len);
    g_byte_array_append(b, img + at, (guint)(len - at));
    char *p = pmt_path(in, name);
    ck_assert_int_eq(pmt_write_file(p, b->data, b->len), 0);
    free(p);
    g_byte_array_free(b, TRUE);
    g_free(img);
}

static void png_with_chunk(const char *name, const char *type, const GByteArray *data)
{
    GByteArray *c = g_byte_array_new();
    png_chunk(c, type, data->data, data->len);
    write_spliced(name, ".png", 33, c);
    g_byte_array_free(c, TRUE);
}

static GByteArray *filled(const char *head, size_t head_len, int byte, size_t n)
{
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, (const guint8 *)head, (guint)head_len);
    guint8 *fill = g_malloc(n);
    memset(fill, byte, n);
    g_byte_array_append(b, fill, (guint)n);
    g_free(fill);
    return b;
}

START_TEST(test_big_metadata_and_odd_layouts)
{
    /* BAD-INPUT 9: metadata far larger than the picture, grey+alpha, six bands. Outputs are
     * in the output space without the metadata; what cannot be is refused by name. */
    size_t mb = 1 << 20;
    GByteArray *d = filled("Comment\0", 8, 'A', 8 * mb);
    png_with_chunk("text-8mb.png", "tEXt", d);
    g_byte_array_free(d, TRUE);
    d = filled("XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><!--", 61, 'X',
               8 * mb);
    g_byte_array_append(d, (const guint8 *)"--></x:xmpmeta>", 15);
    png_with_chunk("xmp-8mb.png", "iTXt", d);
    g_byte_array_free(d, TRUE);
    /* 256 MB of text and a 16 MB profile, each deflated into a few hundred KB */
    GByteArray *zeros = filled("", 0, 0, 256 * mb);
    uLongf zlen = compressBound(zeros->len);
    GByteArray *z = filled("Comment\0\0", 9, 0, zlen);
    ck_assert_int_eq(compress2(z->data + 9, &zlen, zeros->data, zeros->len, 9), Z_OK);
    g_byte_array_set_size(z, (guint)(9 + zlen));
    png_with_chunk("ztxt-256mb.png", "zTXt", z);
    g_byte_array_free(z, TRUE);
    zlen = compressBound(16 * mb);
    z = filled("big\0\0", 5, 0, zlen);
    ck_assert_int_eq(compress2(z->data + 5, &zlen, zeros->data, 16 * mb, 9), Z_OK);
    g_byte_array_set_size(z, (guint)(5 + zlen));
    png_with_chunk("iccp-16mb.png", "iCCP", z);
    g_byte_array_free(z, TRUE);
    g_byte_array_free(zeros, TRUE);
    /* a JPEG whose ICC profile is 100 APP2 segments (6.5 MB of garbage), and a full APP1 XMP */
    GByteArray *segs = g_byte_array_new();
    for (int i = 0; i < 100; i++) {
        unsigned char hdr[18] = {0xff, 0xe2, 0xff, 0xff, 'I', 'C', 'C', '_', 'P',
                                 'R',  'O',  'F',  'I',  'L', 'E', 0,   0,   100};
        hdr[16] = (unsigned char)(i + 1);
        guint8 body[65519];
        memset(body, 'I', sizeof(body));
        g_byte_array_append(segs, hdr, sizeof(hdr));
        g_byte_array_append(segs, body, sizeof(body));
    }
    const char xmp_ns[] = "http://ns.adobe.com/xap/1.0/";
    unsigned char app1[4] = {0xff, 0xe1, 0xff, 0xff};
    g_byte_array_append(segs, app1, 4);
    g_byte_array_append(segs, (const guint8 *)xmp_ns, sizeof(xmp_ns));
    guint8 xbody[65533 - sizeof(xmp_ns)];
    memset(xbody, 'X', sizeof(xbody));
    g_byte_array_append(segs, xbody, sizeof(xbody));
    write_spliced("icc-6mb.jpg", ".jpg", 2, segs);
    g_byte_array_free(segs, TRUE);
    /* grey + alpha (alpha 0 on the left half), and six bands */
    VipsImage *rgba = NULL, *ga = NULL, *black = NULL, *six = NULL;
    size_t len;
    void *buf = pmt_encode_image(".png", 64, 48, 4, &len);
    ck_assert_ptr_nonnull(buf);
    rgba = vips_image_new_from_buffer(buf, len, "", NULL);
    ck_assert_int_eq(vips_colourspace(rgba, &ga, VIPS_INTERPRETATION_B_W, NULL), 0);
    char *p = pmt_path(in, "grey-alpha.png");
    ck_assert_int_eq(vips_image_write_to_file(ga, p, NULL), 0);
    free(p);
    ck_assert_int_eq(ga->Bands, 2);
    ck_assert_int_eq(vips_black(&black, 64, 48, "bands", 6, NULL), 0);
    ck_assert_int_eq(vips_cast_uchar(black, &six, NULL), 0);
    p = pmt_path(in, "six.tif");
    ck_assert_int_eq(vips_image_write_to_file(six, p, NULL), 0);
    free(p);
    g_object_unref(rgba), g_object_unref(ga), g_object_unref(black), g_object_unref(six);
    g_free(buf);

    char *before = pmt_tree_digest(in);
    const char *argv[] = {pmt_pixmill(), "--allow=tiff", "-j",  "2",  "-f", "webp", "-f",
                          "jpeg",        "-f",           "png", "-o", out,  in,     NULL};
    char *e = NULL;
    struct rusage ru;
    ck_assert_int_eq(pmt_run((char *const *)argv, NULL, &e, &ru), 1);
    ck_assert_msg(strstr(e, "six.tif: image layout is not supported (6 bands (") &&
                      strstr(e, "6 processed") && strstr(e, "1 failed"),
                  "%s", e);
    free(e);
    /* bounded: the biggest chunk is 8 MB (libvips copies text metadata along its pipeline:
     * 129 MB measured), far from the 256 MB the zTXt would inflate to; sanitizers triple it */
    int sanitized =
        getenv("ASAN_OPTIONS") || getenv("TSAN_OPTIONS"); // NOLINT(concurrency-mt-unsafe)
    fprintf(stderr, "big metadata: peak RSS %ld MB\n", ru.ru_maxrss / 1024);
    ck_assert_int_lt(ru.ru_maxrss / 1024, sanitized ? 750 : 250);
    const char *stems[] = {"text-8mb",  "xmp-8mb", "ztxt-256mb",
                           "iccp-16mb", "icc-6mb", "grey-alpha"};
    for (size_t i = 0; i < G_N_ELEMENTS(stems); i++) {
        int w, h, c, alpha;
        char name[64];
        g_snprintf(name, sizeof(name), "%s.png", stems[i]);
        char *o = pmt_path(out, name);
        ck_assert_msg(pmt_png_decode(o, &w, &h, &c) == 0 && w == 64 && h == 48, "%s", name);
        int grey = strcmp(stems[i], "grey-alpha") == 0;
        ck_assert_int_eq(c, grey ? 2 : 3);
        struct stat st;
        ck_assert(stat(o, &st) == 0 && st.st_size < 65536); /* no metadata carried */
        free(o);
        g_snprintf(name, sizeof(name), "%s.webp", stems[i]);
        o = pmt_path(out, name);
        ck_assert_msg(pmt_webp_decode(o, &w, &h, &alpha) == 0 && w == 64 && h == 48, "%s", name);
        ck_assert_int_eq(alpha, grey);
        ck_assert(stat(o, &st) == 0 && st.st_size < 65536);
        free(o);
        g_snprintf(name, sizeof(name), "%s.jpg", stems[i]);
        o = pmt_path(out, name);
        ck_assert_msg(pmt_jpeg_decode(o, &w, &h, &c, NULL) == 0 && w == 64 && h == 48, "%s", name);
        ck_assert_int_eq(c, grey ? 1 : 3);
        ck_assert(stat(o, &st) == 0 && st.st_size < 65536);
        ck_assert(!pmt_file_contains(o, "IIIIIIIIIIIIIIII", 16));
        free(o);
    }
    ck_assert_int_eq(pmt_count_files(out, "six."), 0);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    free(before), free(after);
}
END_TEST

START_TEST(test_unreadable_file_and_folder)
{
    /* BAD-INPUT 13 through the binary. Root reads anything, so the run drops the permission
     * bypass (setpriv, as LIBVIPS-NOTES says) and the same probe shows whether that worked. */
    free(pmt_make_image(in, "ok.png", 40, 30, 3));
    free(pmt_make_image(in, "z/ok2.png", 40, 30, 3));
    char *secret = pmt_make_image(in, "secret.png", 40, 30, 3);
    char *hidden = pmt_make_image(in, "closed/x.png", 40, 30, 3);
    char *closed = pmt_path(in, "closed");
    ck_assert_int_eq(chmod(secret, 0), 0);
    ck_assert_int_eq(chmod(closed, 0), 0);
    const char *works[] = {"/usr/bin/setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           "--", "/bin/true", NULL};
    const char *probe[] = {"/usr/bin/setpriv",
                           "--bounding-set=-dac_override,-dac_read_search",
                           "--",
                           "/usr/bin/head",
                           "-c1",
                           secret,
                           NULL};
    int can = pmt_run_argv(works, NULL) == 0 && pmt_run_argv(probe, NULL) != 0;
    if (!can) {
        fprintf(stderr, "SKIP: the permission bypass cannot be dropped here\n");
    } else {
        char *before = pmt_tree_digest(in);
        const char *argv[] = {"/usr/bin/setpriv",
                              "--bounding-set=-dac_override,-dac_read_search",
                              "--",
                              pmt_pixmill(),
                              "-f",
                              "png",
                              "-o",
                              out,
                              in,
                              NULL};
        char *e = NULL;
        ck_assert_int_eq(pmt_run_argv(argv, &e), 1);
        char *want_file = g_strdup_printf("%s: ", secret);
        char *want_dir = g_strdup_printf("%s: ", closed);
        const char *file_line = strstr(e, want_file), *dir_line = strstr(e, want_dir);
        ck_assert_msg(file_line && dir_line, "%s", e);
        ck_assert_msg(strstr(file_line, "Permission denied") &&
                          strstr(dir_line, "Permission denied") && strstr(e, "2 processed"),
                      "%s", e);
        g_free(want_file), g_free(want_dir);
        free(e);
        ck_assert_int_eq(pmt_count_files(out, "ok.png") + pmt_count_files(out, "ok2.png"), 2);
        ck_assert_int_eq(pmt_count_files(out, "secret") + pmt_count_files(out, "x.png"), 0);
        ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
        char *after = pmt_tree_digest(in);
        ck_assert_str_eq(before, after);
        free(before), free(after);
    }
    ck_assert_int_eq(chmod(closed, 0755), 0); /* for the fixture's cleanup */
    free(secret), free(hidden), free(closed);
}
END_TEST

/* From the heavy-decode log ("+ PID" at a start, "- PID" at an end, in order): the most
 * that ran at once, how many ran in all, and in how many processes. */
static int most_at_once(const char *path, int *runs, int *processes)
{
    char *text = pmt_read_file(path, NULL);
    int now_running = 0, most = 0, pids[64], n_pids = 0;
    *runs = 0;
    for (char *p = text, *end; p && *p; p = end + 1) {
        char sign = *p;
        int pid = (int)strtol(p + 1, &end, 10);
        now_running += sign == '+' ? 1 : -1;
        most = now_running > most ? now_running : most;
        *runs += sign == '+';
        int known = 0;
        for (int i = 0; i < n_pids; i++)
            known |= pids[i] == pid;
        if (!known && n_pids < 64)
            pids[n_pids++] = pid;
        if (*end != '\n')
            break;
    }
    free(text);
    *processes = n_pids;
    return most;
}

/* How many times needle occurs in text. */
static int count_in(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

START_TEST(test_heavy_inputs_take_turns)
{
    /* BAD-INPUT 4: progressive JPEGs and interlaced PNGs are decoded whole: 4.25 MP at 4:2:0
     * or RGB is about 12.75 MB each. Under --decode-budget 20M only one fits at a time (seen
     * through a test-build hook that logs each whole-image decode's start and end); under 30M
     * two workers decode two at once; under 5M, smaller than any one of them, each is refused
     * before decoding (issue 19: no source makes an engine hold more than the budget), and the
     * small one is still made. With two cores the two workers are two engine processes (lanes), and
     * the budget is shared between them. At 400 pixels: at 1/8 (313x213) or less the JPEGs would
     * come from their DC coefficients, which is no whole decode. */
    for (int i = 0; i < 4; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "p%d.jpg[interlace]", i);
        free(pmt_make_image(in, rel, 2500, 1700, 3));
    }
    free(pmt_make_image(in, "adam7.png[interlace]", 2500, 1700, 3));
    free(pmt_make_image(in, "small.jpg[interlace]", 800, 600, 3)); /* progressive, not heavy */
    char *log = pmt_path(tmp, "heavy.log");
    setenv("PIXMILL_TEST_HEAVY_LOG", log, 1);
    char *e = NULL;
    const char *budgets[] = {"20M", "5M", "30M"};
    const int most[] = {1, 0, 2};
    for (int k = 0; k < 3; k++) {
        char *outk = g_strdup_printf("%s-%d", out, k);
        int rc = pmt_pixmill_run(&e, "--force", "-j", "2", "--decode-budget", budgets[k], "-s",
                                 "400", "-f", "webp", "-o", outk, in, NULL);
        if (most[k] == 0) {
            ck_assert_msg(rc == 1 && count_in(e, "more than --decode-budget 5 MB") == 5,
                          "exit %d: %s", rc, e);
            ck_assert_int_eq(pmt_count_files(outk, ".webp"), 1); /* the small one */
            free(e), g_free(outk);
            ck_assert_int_eq(access(log, F_OK), -1); /* nothing decoded whole */
            continue;
        }
        ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
        free(e);
        int runs, processes, max = most_at_once(log, &runs, &processes);
        unlink(log);
        ck_assert_int_eq(runs, 5); /* the five large ones, not the small one */
        ck_assert_msg(max == most[k], "--decode-budget %s: %d at once, expected %d", budgets[k],
                      max, most[k]);
        /* one engine a core: with two, the budget holds across the two processes */
        if (pm_default_jobs() >= 2 && most[k] == 2)
            ck_assert_int_eq(processes, 2);
        ck_assert_int_eq(pmt_count_files(outk, ".webp"), 6);
        g_free(outk);
    }
    unsetenv("PIXMILL_TEST_HEAVY_LOG");
    free(log);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bad");
    TCase *tc = tcase_create("bad");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_pixel_bombs_rejected_from_the_header);
    tcase_add_test(tc, test_many_frames_capped);
    tcase_add_test(tc, test_max_file_size);
    tcase_add_test(tc, test_polyglot_payload_not_carried);
    tcase_add_test(tc, test_stdout_closed_early);
    tcase_add_test(tc, test_same_file_twice);
    tcase_add_test(tc, test_tiff_blocked_until_allowed);
    tcase_add_test(tc, test_text_matrix_blocked);
    tcase_add_test(tc, test_mixed_corpus_same_outcomes_at_any_jobs);
    tcase_add_test(tc, test_enlarging_to_a_monster_refused);
    tcase_add_test(tc, test_decoder_reason_given_once);
    tcase_add_test(tc, test_few_descriptors_throttle);
    tcase_add_test(tc, test_odd_names_kept_byte_for_byte);
    tcase_add_test(tc, test_long_names_and_paths);
    tcase_add_test(tc, test_listed_file_gone);
    tcase_add_test(tc, test_no_subprocess_for_untrusted_formats);
    tcase_add_test(tc, test_deep_tree_bounded_descriptors);
    tcase_add_test(tc, test_two_sources_one_output);
    tcase_add_test(tc, test_one_file_under_many_names);
    tcase_add_test(tc, test_two_inputs_one_output);
    tcase_add_test(tc, test_big_metadata_and_odd_layouts);
    tcase_add_test(tc, test_unreadable_file_and_folder);
    tcase_add_test(tc, test_heavy_inputs_take_turns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
