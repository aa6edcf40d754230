/* --preset, through the built binary, from what the issue and the man page promise: small,
 * medium and large are boxes of 800, 1280 and 1920 pixels on the long side, each image in its
 * own format; email 1024 px JPEG at quality 75; web 1600 px WebP and JPEG; square exactly
 * 1080x1080 cropped to fill. None but square enlarges. The expected sizes are computed here
 * from those words; every output is read by a decoder that is not libvips (libjpeg, libwebp,
 * libpng). Options given beside a preset override it; a preset and a recipe cannot both be
 * given; an unknown name is a usage error that touches nothing. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *tmp, *in, *out;

/* Real photos from samples/, copied in: a landscape, a portrait and one smaller than most
 * boxes. */
static const struct {
    const char *sample, *name;
    int w, h;
} photos[] = {
    {"photos/animals/LadyBird.jpg", "LadyBird", 2560, 1600},
    {"photos/landscapes/friends_by_Aitzol_Berasategi.jpg", "friends_by_Aitzol_Berasategi", 2056,
     3088},
    {"photos/places/castle-maintenon.jpg", "castle-maintenon", 1024, 681},
};
#define N_PHOTOS (sizeof(photos) / sizeof(photos[0]))

static void setup(void)
{
    ck_assert_int_eq(pmt_io_make(&tmp, &in, &out), 0);
    const char *samples = getenv("PM_SAMPLES");
    ck_assert_msg(samples != NULL, "PM_SAMPLES is not set");
    for (size_t i = 0; i < N_PHOTOS; i++) {
        char *from = pmt_path(samples, photos[i].sample);
        char *base = g_path_get_basename(from);
        char *to = pmt_path(in, base);
        size_t len;
        char *bytes = pmt_read_file(from, &len);
        ck_assert_msg(bytes != NULL, "cannot read %s", from);
        ck_assert_int_eq(pmt_write_file(to, bytes, len), 0);
        free(bytes);
        free(to);
        g_free(base);
        free(from);
    }
}

static void teardown(void)
{
    pmt_io_free(&tmp, &in, &out);
}

/* A box of `box` on the long side, only shrinking, each axis rounded to nearest. */
static void boxed(int w, int h, int box, int *bw, int *bh)
{
    double scale = (double)box / (w > h ? w : h);
    if (scale > 1)
        scale = 1;
    *bw = (int)lround(w * scale);
    *bh = (int)lround(h * scale);
    if (*bw < 1)
        *bw = 1;
    if (*bh < 1)
        *bh = 1;
}

static void expect_jpeg(const char *name, int w, int h, off_t *bytes)
{
    char *rel = g_strdup_printf("%s.jpg", name);
    char *p = pmt_path(out, rel);
    int gw = 0, gh = 0, gc = 0;
    ck_assert_msg(pmt_jpeg_decode(p, &gw, &gh, &gc, NULL) == 0, "libjpeg cannot read %s", p);
    ck_assert_msg(gw == w && gh == h, "%s is %dx%d, want %dx%d", p, gw, gh, w, h);
    ck_assert_int_eq(gc, 3);
    if (bytes) {
        struct stat st;
        ck_assert_int_eq(stat(p, &st), 0);
        *bytes = st.st_size;
    }
    free(p);
    g_free(rel);
}

static void expect_webp(const char *name, int w, int h)
{
    char *rel = g_strdup_printf("%s.webp", name);
    char *p = pmt_path(out, rel);
    int gw = 0, gh = 0, ga = 0;
    ck_assert_msg(pmt_webp_decode(p, &gw, &gh, &ga) == 0, "libwebp cannot read %s", p);
    ck_assert_msg(gw == w && gh == h, "%s is %dx%d, want %dx%d", p, gw, gh, w, h);
    free(p);
    g_free(rel);
}

static void run_ok(const char *preset, const char *extra1, const char *extra2)
{
    char *err = NULL;
    int rc = pmt_pixmill_run(&err, "-q", "--preset", preset, "-o", out, in, extra1, extra2, NULL);
    ck_assert_msg(rc == 0, "--preset %s: exit %d: %s", preset, rc, err ? err : "");
    free(err);
}

START_TEST(test_help_lists_every_preset)
{
    static const char *const names[] = {"small", "medium", "large", "email", "web", "square"};
    char *sout = NULL, *err = NULL;
    int rc = pmt_pixmill_run_out(&sout, &err, "--preset", "help", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err ? err : "");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *line = g_strdup_printf("\n  %s ", names[i]);
        ck_assert_msg(strstr(sout, line) != NULL, "--preset help does not list %s:\n%s", names[i],
                      sout);
        g_free(line);
    }
    int lines = 0;
    for (const char *c = sout; *c; c++)
        lines += *c == '\n';
    ck_assert_int_eq(lines, 7); /* a heading and one line a preset, no more */
    struct stat st;
    ck_assert_int_ne(stat(out, &st), 0); /* nothing made */
    free(sout);
    free(err);
}
END_TEST

/* small, medium, large: the box on the long side, in each photo's own format (JPEG here). */
static const struct {
    const char *name;
    int box;
} boxes[] = {{"small", 800}, {"medium", 1280}, {"large", 1920}};

START_TEST(test_boxes_on_the_long_side)
{
    run_ok(boxes[_i].name, NULL, NULL);
    for (size_t k = 0; k < N_PHOTOS; k++) {
        int w, h;
        boxed(photos[k].w, photos[k].h, boxes[_i].box, &w, &h);
        expect_jpeg(photos[k].name, w, h, NULL);
    }
    ck_assert_int_eq(pmt_count_files(out, ".jpg"), (int)N_PHOTOS);
}
END_TEST

START_TEST(test_email_is_a_small_jpeg)
{
    run_ok("email", NULL, NULL);
    for (size_t k = 0; k < N_PHOTOS; k++) {
        int w, h;
        off_t bytes = 0;
        boxed(photos[k].w, photos[k].h, 1024, &w, &h);
        expect_jpeg(photos[k].name, w, h, &bytes);
        /* what the man page measured: at most about 200 KB a photo */
        ck_assert_msg(bytes < 250 * 1000, "%s.jpg is %lld bytes", photos[k].name, (long long)bytes);
    }
    /* quality 75, not the default 80: the same run at -Q 80 makes larger files */
    off_t q75 = 0, q80 = 0;
    expect_jpeg(photos[0].name, 1024, 640, &q75);
    pmt_rmtree(out);
    run_ok("email", "-Q", "80");
    expect_jpeg(photos[0].name, 1024, 640, &q80);
    ck_assert_msg(q75 < q80, "quality 75 made %lld bytes, 80 made %lld", (long long)q75,
                  (long long)q80);
}
END_TEST

START_TEST(test_web_is_webp_and_jpeg)
{
    run_ok("web", NULL, NULL);
    for (size_t k = 0; k < N_PHOTOS; k++) {
        int w, h;
        boxed(photos[k].w, photos[k].h, 1600, &w, &h);
        expect_webp(photos[k].name, w, h);
        expect_jpeg(photos[k].name, w, h, NULL);
    }
    ck_assert_int_eq(pmt_count_files(out, ".webp"), (int)N_PHOTOS);
    ck_assert_int_eq(pmt_count_files(out, ".jpg"), (int)N_PHOTOS);
}
END_TEST

START_TEST(test_square_is_exactly_1080)
{
    run_ok("square", NULL, NULL);
    for (size_t k = 0; k < N_PHOTOS; k++) /* the small castle too: its size is the point */
        expect_jpeg(photos[k].name, 1080, 1080, NULL);
    ck_assert_int_eq(pmt_count_files(out, ".jpg"), (int)N_PHOTOS);
}
END_TEST

START_TEST(test_options_beside_override)
{
    run_ok("web", "-f", "png"); /* the format replaced, the size kept */
    for (size_t k = 0; k < N_PHOTOS; k++) {
        int w, h, gw = 0, gh = 0, gc = 0;
        boxed(photos[k].w, photos[k].h, 1600, &w, &h);
        char *rel = g_strdup_printf("%s.png", photos[k].name);
        char *p = pmt_path(out, rel);
        ck_assert_msg(pmt_png_decode(p, &gw, &gh, &gc) == 0, "libpng cannot read %s", p);
        ck_assert_msg(gw == w && gh == h, "%s is %dx%d, want %dx%d", p, gw, gh, w, h);
        free(p);
        g_free(rel);
    }
    ck_assert_int_eq(pmt_count_files(out, ".webp"), 0);
    ck_assert_int_eq(pmt_count_files(out, ".jpg"), 0);
    pmt_rmtree(out);
    run_ok("email", "-s", "500"); /* the size replaced, JPEG kept */
    for (size_t k = 0; k < N_PHOTOS; k++) {
        int w, h;
        boxed(photos[k].w, photos[k].h, 500, &w, &h);
        expect_jpeg(photos[k].name, w, h, NULL);
    }
}
END_TEST

START_TEST(test_refused_before_anything_is_made)
{
    char *digest = pmt_tree_digest(in);
    char *recipe = pmt_path(tmp, "r.ini");
    ck_assert_int_eq(pmt_write_file(recipe, "[defaults]\nsize = 300\n", 22), 0);
    const char *cases[][4] = {
        {"--preset", "small", "--recipe", recipe},
        {"--recipe", recipe, "--preset", "small"},
        {"--preset", "huge", NULL, NULL},
        {"--preset", "", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        int rc = pmt_pixmill_run(&err, cases[i][0], cases[i][1], "-o", out, in, cases[i][2],
                                 cases[i][3], NULL);
        ck_assert_msg(rc == 2, "%s %s %s: exit %d, want 2", cases[i][0], cases[i][1],
                      cases[i][2] ? cases[i][2] : "", rc);
        ck_assert_msg(strstr(err, cases[i][2] ? "give one of them" : "unknown preset") != NULL,
                      "%s", err);
        if (!cases[i][2]) /* the names, so that a typo can be put right */
            ck_assert_msg(strstr(err, "small, medium, large, email, web, square"), "%s", err);
        struct stat st;
        ck_assert_msg(stat(out, &st) != 0, "the output folder was made");
        free(err);
    }
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(digest, after);
    free(after);
    free(digest);
    free(recipe);
}
END_TEST

static Suite *presets_suite(void)
{
    Suite *s = suite_create("presets");
    TCase *tc = tcase_create("presets");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_help_lists_every_preset);
    tcase_add_loop_test(tc, test_boxes_on_the_long_side, 0, 3);
    tcase_add_test(tc, test_email_is_a_small_jpeg);
    tcase_add_test(tc, test_web_is_webp_and_jpeg);
    tcase_add_test(tc, test_square_is_exactly_1080);
    tcase_add_test(tc, test_options_beside_override);
    tcase_add_test(tc, test_refused_before_anything_is_made);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(presets_suite());
}
