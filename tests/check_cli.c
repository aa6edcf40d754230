/* End to end through the built pixmill binary: outputs exist, decode with libraries other than
 * libvips and fit the box; bad files fail alone and by name; inputs are never touched; outputs
 * are not re-ingested; bad options exit 2 and touch nothing; exit codes 0/1/2/3/130. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

static void image(const char *rel, int w, int h, int bands)
{
    char *p = pmt_make_image(in, rel, w, h, bands);
    ck_assert_msg(p != NULL, "cannot make %s", rel);
    free(p);
}

/* The expected fit of w x h into a box (only shrinking), as libvips rounds. */
static void check_fit(int w, int h, int bw, int bh, int got_w, int got_h)
{
    ck_assert_int_le(got_w, bw);
    ck_assert_int_le(got_h, bh);
    ck_assert_msg(got_w == bw || got_h == bh, "%dx%d does not touch the %dx%d box", got_w, got_h,
                  bw, bh);
    double want = (double)w / h, have = (double)got_w / got_h;
    ck_assert_msg(have / want > 0.95 && have / want < 1.05, "aspect %f vs %f", have, want);
}

static void expect_png(const char *rel, int w, int h, int box, int channels)
{
    char *p = pmt_path(out, rel);
    int gw, gh, gc;
    ck_assert_msg(pmt_png_decode(p, &gw, &gh, &gc) == 0, "libpng cannot decode %s", p);
    check_fit(w, h, box, box, gw, gh);
    ck_assert_int_eq(gc, channels);
    free(p);
}

static void expect_jpeg(const char *rel, int w, int h, int box, unsigned char *corner)
{
    char *p = pmt_path(out, rel);
    int gw, gh, gc;
    ck_assert_msg(pmt_jpeg_decode(p, &gw, &gh, &gc, corner) == 0, "libjpeg cannot decode %s", p);
    check_fit(w, h, box, box, gw, gh);
    ck_assert_int_eq(gc, 3);
    free(p);
}

static void expect_webp(const char *rel, int w, int h, int box, int alpha)
{
    char *p = pmt_path(out, rel);
    int gw, gh, ga;
    ck_assert_msg(pmt_webp_decode(p, &gw, &gh, &ga) == 0, "libwebp cannot decode %s", p);
    check_fit(w, h, box, box, gw, gh);
    ck_assert_int_eq(ga, alpha);
    free(p);
}

static void make_mixed_tree(void)
{
    image("a.jpg", 400, 300, 3);
    image("b.png", 300, 400, 3);
    image("c-alpha.png", 200, 160, 4);
    image("d.webp", 500, 250, 3);
    image("e-alpha.webp", 240, 240, 4);
    image("nested/deeper/f.jpg", 640, 480, 3);
    image("nested/g.png", 90, 60, 3); /* smaller than the box: never enlarged */
}

START_TEST(test_mixed_tree_same_format)
{
    make_mixed_tree();
    char *err;
    int rc = pmt_pixmill_run(&err, "-s", "100", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_ptr_nonnull(strstr(err, "7 processed, 0 up to date, 0 skipped, 0 failed"));
    expect_jpeg("a.jpg", 400, 300, 100, NULL);
    expect_png("b.png", 300, 400, 100, 3);
    expect_png("c-alpha.png", 200, 160, 100, 4);
    expect_webp("d.webp", 500, 250, 100, 0);
    expect_webp("e-alpha.webp", 240, 240, 100, 1);
    expect_jpeg("nested/deeper/f.jpg", 640, 480, 100, NULL);
    int gw, gh, gc;
    char *g = pmt_path(out, "nested/g.png");
    ck_assert_int_eq(pmt_png_decode(g, &gw, &gh, &gc), 0);
    ck_assert_int_eq(gw, 90);
    ck_assert_int_eq(gh, 60);
    free(g);
    ck_assert_int_eq(pmt_count_files(out, ".pixmill-"), 0);
    free(err);
}
END_TEST

START_TEST(test_to_png_checked_with_libpng)
{
    make_mixed_tree();
    char *err;
    int rc = pmt_pixmill_run(&err, "-f", "png", "-s", "64x64", "-j", "2", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    expect_png("a.png", 400, 300, 64, 3);
    expect_png("b.png", 300, 400, 64, 3);
    expect_png("c-alpha.png", 200, 160, 64, 4); /* alpha kept */
    expect_png("d.png", 500, 250, 64, 3);
    expect_png("e-alpha.png", 240, 240, 64, 4);
    expect_png("nested/deeper/f.png", 640, 480, 64, 3);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 7);
    free(err);
}
END_TEST

START_TEST(test_alpha_to_jpeg_flattened_on_white)
{
    image("c-alpha.png", 200, 160, 4); /* left half fully transparent */
    char *err;
    int rc = pmt_pixmill_run(&err, "-f", "jpeg", "-s", "100", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    unsigned char corner[3];
    expect_jpeg("c-alpha.jpg", 200, 160, 100, corner);
    for (int i = 0; i < 3; i++)
        ck_assert_int_ge(corner[i], 245);
    free(err);
}
END_TEST

START_TEST(test_size_forms)
{
    image("wide.png", 800, 400, 3);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "200x", "-o", out, in, NULL), 0);
    free(err);
    char *p = pmt_path(out, "wide.png");
    int w, h, c;
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert_int_eq(w, 200);
    ck_assert_int_eq(h, 100);
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "x50", "-o", out, in, NULL), 0);
    free(err);
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert_int_eq(w, 100);
    ck_assert_int_eq(h, 50);
    ck_assert_int_eq(pmt_pixmill_run(&err, "-f", "png", "-s", "300x20", "-o", out, in, NULL), 0);
    free(err);
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert_int_eq(w, 40);
    ck_assert_int_eq(h, 20);
    free(p);
}
END_TEST

START_TEST(test_bad_files_fail_alone)
{
    image("good1.jpg", 300, 200, 3);
    image("sub/good2.png", 200, 300, 3);
    image("whole.jpg", 800, 600, 3);
    char *whole = pmt_path(in, "whole.jpg"), *trunc = pmt_path(in, "truncated.jpg");
    size_t len;
    char *bytes = pmt_read_file(whole, &len);
    ck_assert_int_eq(pmt_write_file(trunc, bytes, len / 2), 0);
    unlink(whole);
    free(bytes);
    char *empty = pmt_path(in, "zero.png");
    ck_assert_int_eq(pmt_write_file(empty, "", 0), 0);
    char *err;
    int rc = pmt_pixmill_run(&err, "-o", out, in, NULL);
    ck_assert_int_eq(rc, 1);
    /* one line per failed file, naming it */
    ck_assert_msg(strstr(err, trunc) && strstr(err, "could not be decoded"), "%s", err);
    ck_assert_msg(strstr(err, empty) && strstr(err, "not a known image format"), "%s", err);
    ck_assert_ptr_nonnull(strstr(err, "2 processed, 0 up to date, 0 skipped, 2 failed"));
    expect_jpeg("good1.jpg", 300, 200, 256, NULL);
    expect_png("sub/good2.png", 200, 300, 256, 3);
    char *no1 = pmt_path(out, "truncated.jpg"), *no2 = pmt_path(out, "zero.png");
    ck_assert_int_ne(access(no1, F_OK), 0); /* no partial or empty output */
    ck_assert_int_ne(access(no2, F_OK), 0);
    ck_assert_int_eq(pmt_count_files(out, ".pixmill-"), 0);
    free(no1);
    free(no2);
    free(err);
    free(whole);
    free(trunc);
    free(empty);
}
END_TEST

START_TEST(test_hostile_name_printed_escaped)
{
    /* a newline and an invalid UTF-8 byte in a failing file's name */
    char *p = pmt_path(in, "line1\nline2-\xff.jpg");
    ck_assert_int_eq(pmt_write_file(p, "", 0), 0);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(err, "/line1\\nline2-\\xff.jpg: not a known image format"), "%s", err);
    ck_assert_ptr_null(strstr(err, "line1\n"));
    free(err);
    free(p);
}
END_TEST

/* Each failure line on stderr goes out in one write: stderr is unbuffered by default, and a
 * write per character had kept the supervisor busy for seconds after 50,000 failures. */
START_TEST(test_failure_lines_written_whole)
{
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof(name), "empty-%02d.png", i);
        char *p = pmt_path(in, name);
        ck_assert_int_eq(pmt_write_file(p, "", 0), 0);
        free(p);
    }
    char *log = pmt_path(tmp, "writes.log");
    char *err = NULL;
    ck_assert_int_eq(pmt_pixmill_traced("write", log, &err, "-j", "1", "-o", out, in, NULL), 1);
    ck_assert_msg(strstr(err, "40 failed"), "%s", err);
    int writes = pmt_count_lines(log, " write(2, ");
    /* 40 failure lines and the summary: one write each */
    ck_assert_msg(writes == 41, "%d writes to stderr for 41 lines", writes);
    free(log), free(err);
}
END_TEST

START_TEST(test_truncated_fails_every_time)
{
    image("whole.jpg", 1200, 900, 3);
    image("whole.png", 600, 400, 3);
    const char *names[] = {"whole.jpg", "whole.png"};
    for (int i = 0; i < 2; i++) {
        char *p = pmt_path(in, names[i]);
        size_t len;
        char *bytes = pmt_read_file(p, &len);
        ck_assert_int_eq(pmt_write_file(p, bytes, len * 2 / 3), 0);
        free(bytes);
        free(p);
    }
    const char *jobs[] = {"1", "2", "8"};
    int runs = 20 / pmt_scale_divisor(); /* BAD-INPUT 2: 20 runs at each -j */
    runs = runs < 5 ? 5 : runs;
    for (int r = 0; r < runs; r++) {
        for (int j = 0; j < 3; j++) {
            char *err;
            int rc = pmt_pixmill_run(&err, "-j", jobs[j], "-o", out, in, NULL);
            ck_assert_msg(rc == 1, "run %d -j%s: exit %d: %s", r, jobs[j], rc, err);
            ck_assert_ptr_nonnull(strstr(err, "0 processed, 0 up to date, 0 skipped, 2 failed"));
            free(err);
            ck_assert_int_eq(pmt_count_files(out, "whole"), 0);
        }
    }
}
END_TEST

START_TEST(test_output_inside_input_not_reingested)
{
    image("a.jpg", 300, 200, 3);
    image("sub/b.png", 300, 200, 3);
    char *thumbs = pmt_path(in, "thumbs");
    for (int i = 0; i < 2; i++) {
        char *err;
        int rc = pmt_pixmill_run(&err, "-o", thumbs, in, NULL);
        ck_assert_msg(rc == 0, "run %d: exit %d: %s", i, rc, err);
        ck_assert_msg(strstr(err, i == 0 ? "2 processed" : "0 processed, 2 up to date"),
                      "run %d: %s", i, err);
        free(err);
    }
    char *again = pmt_path(thumbs, "thumbs");
    ck_assert_int_ne(access(again, F_OK), 0);
    ck_assert_int_eq(pmt_count_files(thumbs, "."), 2);
    free(again);
    free(thumbs);
}
END_TEST

START_TEST(test_output_equal_to_input_refuses)
{
    image("a.jpg", 300, 200, 3);
    image("b.png", 300, 200, 3);
    char *a = pmt_path(in, "a.jpg"), *b = pmt_path(in, "b.png");
    char *ca = pmt_path(tmp, "a.copy"), *cb = pmt_path(tmp, "b.copy");
    size_t la, lb;
    char *da = pmt_read_file(a, &la), *db = pmt_read_file(b, &lb);
    pmt_write_file(ca, da, la);
    pmt_write_file(cb, db, lb);
    char *err;
    int rc = pmt_pixmill_run(&err, "-o", in, in, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "output would overwrite an input"), "%s", err);
    ck_assert_msg(strstr(err, a) && strstr(err, b), "%s", err);
    ck_assert(pmt_same_file_bytes(a, ca));
    ck_assert(pmt_same_file_bytes(b, cb));
    ck_assert_int_eq(pmt_count_files(in, ".pixmill-"), 0);
    free(err);
    /* a hard link to an input under the output name is the input too */
    image("c.jpg", 300, 200, 3);
    char *c = pmt_path(in, "c.jpg"), *out_c = pmt_path(tmp, "o2/c.jpg");
    char *o2 = pmt_path(tmp, "o2");
    pmt_mkdirs(o2);
    ck_assert_int_eq(link(c, out_c), 0);
    rc = pmt_pixmill_run(&err, "-o", o2, c, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "output would overwrite an input"), "%s", err);
    free(err);
    free(a), free(b), free(ca), free(cb), free(da), free(db), free(c), free(out_c), free(o2);
}
END_TEST

START_TEST(test_output_symlink_replaced_not_followed)
{
    image("a.png", 300, 200, 3);
    char *victim = pmt_path(tmp, "victim.txt");
    ck_assert_int_eq(pmt_write_file(victim, "precious", 8), 0);
    pmt_mkdirs(out);
    char *link_path = pmt_path(out, "a.png");
    ck_assert_int_eq(symlink(victim, link_path), 0);
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, "-o", out, in, NULL), 0);
    free(err);
    size_t len;
    char *v = pmt_read_file(victim, &len);
    ck_assert_int_eq(len, 8);
    ck_assert_int_eq(memcmp(v, "precious", 8), 0);
    struct stat st;
    ck_assert_int_eq(lstat(link_path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    free(v), free(victim), free(link_path);
}
END_TEST

START_TEST(test_files_from_nul)
{
    image("x/one.jpg", 300, 200, 3);
    image("y/two.png", 300, 200, 3);
    char *list = pmt_path(tmp, "list");
    char *one = pmt_path(in, "x/one.jpg"), *two = pmt_path(in, "y/two.png");
    GString *s = g_string_new(NULL);
    g_string_append(s, one);
    g_string_append_c(s, '\0');
    g_string_append(s, two);
    g_string_append_c(s, '\0');
    pmt_write_file(list, s->str, s->len);
    g_string_free(s, TRUE);
    char *err;
    int rc = pmt_pixmill_run(&err, "--files-from", list, "-0", "-o", out, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    char *rel = g_strdup_printf("%s/x/one.jpg", in + 1); /* listed paths are mirrored */
    expect_jpeg(rel, 300, 200, 256, NULL);
    g_free(rel);
    free(list), free(one), free(two);
}
END_TEST

START_TEST(test_bad_options_exit_2_touch_nothing)
{
    image("a.jpg", 100, 100, 3);
    const char *bad[][4] = {
        {"--size", "0"},
        {"-s", "-1"},
        {"-s", "1e12"},
        {"-s", ""},
        {"-Q", "1000"},
        {"-Q", "0"},
        {"-f", "bmp"},
        {"-f", ""},
        {"-j", "0"},
        {"-j", "x"},
        {"--queue", "0"},
        {"--max-pixels", "-5"},
        {"--fail-on", "x"},
        {"--no-such-option"},
        {"-o", ""},
        {"--files-from", ""},
        {"-o", "elsewhere-out"}, /* -o twice: a usage error, not the last one silently */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *err;
        int rc;
        if (bad[i][1])
            rc = pmt_pixmill_run(&err, bad[i][0], bad[i][1], "-o", out, in, NULL);
        else
            rc = pmt_pixmill_run(&err, bad[i][0], "-o", out, in, NULL);
        ck_assert_msg(rc == 2, "%s %s: exit %d", bad[i][0], bad[i][1] ? bad[i][1] : "", rc);
        ck_assert_msg(strstr(err, "pixmill: "), "no message for %s", bad[i][0]);
        ck_assert_msg(access(out, F_OK) != 0 && access("elsewhere-out", F_OK) != 0,
                      "%s created the output folder", bad[i][0]);
        free(err);
    }
    char *err;
    ck_assert_int_eq(pmt_pixmill_run(&err, in, NULL), 2); /* no -o */
    ck_assert_ptr_nonnull(strstr(err, "-o"));
    free(err);
    ck_assert_int_eq(pmt_pixmill_run(&err, "-o", out, NULL), 2); /* no input */
    free(err);
    ck_assert_int_ne(access(out, F_OK), 0);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--help", NULL), 0);
    free(err);
    ck_assert_int_eq(pmt_pixmill_run(&err, "--version", NULL), 0);
    free(err);
}
END_TEST

/* A named input that does not exist is reported by name; when none exists nothing is made,
 * not even the output folder (it was: out/ and out/.pixmill/). */
START_TEST(test_missing_inputs_make_nothing)
{
    char *gone = pmt_path(in, "nonexist"), *gone2 = pmt_path(in, "no/such.jpg");
    char *err;
    int rc = pmt_pixmill_run(&err, "-o", out, gone, gone2, NULL);
    ck_assert_msg(rc == 1 && strstr(err, gone) && strstr(err, gone2) &&
                      strstr(err, "No such file or directory"),
                  "exit %d: %s", rc, err);
    ck_assert_msg(access(out, F_OK) != 0, "created %s: %s", out, err);
    free(err);
    image("a.jpg", 100, 100, 3);
    char *a = pmt_path(in, "a.jpg");
    rc = pmt_pixmill_run(&err, "-o", out, gone, a, NULL);
    ck_assert_msg(rc == 1 && strstr(err, gone) && pmt_count_files(out, "a.jpg") == 1, "exit %d: %s",
                  rc, err);
    free(err), free(a), free(gone), free(gone2);
}
END_TEST

/* Every file a walk meets is accounted for (issue 19: this folder gave "0 processed, 0
 * skipped" and -v named nothing): counted in the summary, named with the reason by -v, an
 * event each in --json; supervised and in one process. */
START_TEST(test_other_files_passed_over)
{
    const char *names[] = {"a.bmp", "b.ico", "c.jxl", "d.CR2", "notes.txt"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        char *p = pmt_path(in, names[i]);
        ck_assert_int_eq(pmt_write_file(p, "x", 1), 0);
        free(p);
    }
    char *dot = pmt_path(in, ".hidden.jpg");
    ck_assert_int_eq(pmt_write_file(dot, "x", 1), 0);
    const char *modes[] = {"--json", "--no-isolate"};
    for (int m = 0; m < 2; m++) {
        char *o = NULL, *err = NULL;
        int rc = pmt_pixmill_run_out(&o, &err, "-v", modes[m], "-o", out, in, NULL);
        ck_assert_msg(rc == 0 && strstr(err, "6 other files passed over"), "exit %d: %s", rc, err);
        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
            char *p = pmt_path(in, names[i]);
            char *want = m == 0 ? g_strdup_printf("\"event\":\"passed-over\",\"source\":\"%s\"", p)
                                : g_strdup_printf("passed over: %s (not an image name)", p);
            ck_assert_msg(strstr(o, want), "%s not in: %s", want, o);
            g_free(want), free(p);
        }
        char *want = m == 0 ? g_strdup_printf("\"source\":\"%s\"", dot)
                            : g_strdup_printf("passed over: %s (a dot name", dot);
        ck_assert_msg(strstr(o, want), "%s not in: %s", want, o);
        g_free(want), free(o), free(err);
    }
    free(dot);
}
END_TEST

START_TEST(test_output_not_usable_exit_3)
{
    image("a.jpg", 100, 100, 3);
    char *file_as_dir = pmt_path(in, "a.jpg/out");
    char *err;
    int rc = pmt_pixmill_run(&err, "-j", "2", "-o", file_as_dir, in, NULL);
    ck_assert_int_eq(rc, 3);
    /* said once, though with two cores each of two engine processes finds it */
    const char *first = strstr(err, "output folder is not usable");
    ck_assert_msg(first && !strstr(first + 1, "output folder is not usable"), "%s", err);
    free(err);
    free(file_as_dir);
}
END_TEST

/* SIGINT -> 130, SIGTERM -> 143 */
static const int stop_signals[] = {SIGINT, SIGTERM};

START_TEST(test_signal_exit_code_no_temps)
{
    int sig = stop_signals[_i];
    for (int i = 0; i < 60; i++) {
        char name[32];
        snprintf(name, sizeof(name), "p%02d.jpg", i);
        image(name, 1600, 1200, 3);
    }
    fflush(NULL);
    char *errpath = pmt_path(tmp, "stderr");
    pid_t pid = fork();
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        (void)e;
        execl(pmt_pixmill(), pmt_pixmill(), "-j", "1", "-o", out, in, (char *)NULL);
        _exit(127);
    }
    /* Wait until it is working (the first output exists), then interrupt; if it ends first,
     * that is a failure with its stderr to show. */
    int status, ended = 0;
    while (pmt_count_files(out, ".jpg") == 0 && !ended) {
        ended = waitpid(pid, &status, WNOHANG) == pid;
        usleep(2000);
    }
    if (ended) {
        char *e = pmt_read_file(errpath, NULL);
        ck_abort_msg("pixmill ended before any output: %s", e ? e : "");
    }
    kill(pid, sig);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 128 + sig);
    ck_assert_int_lt(pmt_count_files(out, ".jpg"), 60);
    ck_assert_int_eq(pmt_count_files(out, ".pixmill-"), 0);
    char *e = pmt_read_file(errpath, NULL);
    ck_assert_msg(e && strstr(e, "processed"), "no summary: %s", e ? e : "");
    free(e);
    free(errpath);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("e2e");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mixed_tree_same_format);
    tcase_add_test(tc, test_to_png_checked_with_libpng);
    tcase_add_test(tc, test_alpha_to_jpeg_flattened_on_white);
    tcase_add_test(tc, test_size_forms);
    tcase_add_test(tc, test_bad_files_fail_alone);
    tcase_add_test(tc, test_hostile_name_printed_escaped);
    tcase_add_test(tc, test_truncated_fails_every_time);
    tcase_add_test(tc, test_failure_lines_written_whole);
    tcase_add_test(tc, test_output_inside_input_not_reingested);
    tcase_add_test(tc, test_output_equal_to_input_refuses);
    tcase_add_test(tc, test_output_symlink_replaced_not_followed);
    tcase_add_test(tc, test_files_from_nul);
    tcase_add_test(tc, test_bad_options_exit_2_touch_nothing);
    tcase_add_test(tc, test_output_not_usable_exit_3);
    tcase_add_test(tc, test_missing_inputs_make_nothing);
    tcase_add_test(tc, test_other_files_passed_over);
    tcase_add_loop_test(tc, test_signal_exit_code_no_temps, 0, 2);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
