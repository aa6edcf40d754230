/* Memory stays flat, and long runs do not crash: peak RSS of pixmill over 20,000 tiny images is
 * within 15 % of its peak over 2,000, and over one folder of 200,000 failing files within 10 %
 * of 2,000's (from wait4's rusage of the child, which covers the engine it waited for). Only
 * in the plain build: sanitizers change memory use entirely. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmp;

static void setup(void)
{
    pmt_vips_init();
    tmp = pmt_mkdtemp();
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    pmt_rmtree(tmp);
    free(tmp);
}

/* n copies of one image (suffix: ".png", ".jpg"), 500 per folder. */
static char *make_tree(const char *name, int n, const void *bytes, size_t len, const char *suffix)
{
    char *root = pmt_path(tmp, name);
    for (int i = 0; i < n; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "d%03d", i / 500);
        char *dir = pmt_path(root, rel);
        if (i % 500 == 0)
            pmt_mkdirs(dir);
        snprintf(rel, sizeof(rel), "img%06d%s", i, suffix);
        char *p = pmt_path(dir, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
        close(fd);
        free(p);
        free(dir);
    }
    return root;
}

/* n copies of a w x h image encoded as pmt_encode_image() takes its suffix (".png",
 * ".jpg[interlace]"), in a tree made by make_tree(). */
static char *image_tree(const char *name, int n, const char *encode_as, int w, int h)
{
    size_t len;
    void *bytes = pmt_encode_image(encode_as, w, h, 3, &len);
    ck_assert_ptr_nonnull(bytes);
    char *root =
        make_tree(name, n, bytes, len, g_str_has_prefix(encode_as, ".png") ? ".png" : ".jpg");
    g_free(bytes);
    return root;
}

/* Runs argv (pixmill writing into out): it must succeed with n outputs ending in suffix. The
 * peak RSS of the largest process it waited for (the engine), from wait4's rusage. */
static long run_peak_kib(const char *const *argv, const char *out, const char *suffix, int n)
{
    struct rusage ru;
    char *err;
    int rc = pmt_run((char *const *)argv, NULL, &err, &ru);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_int_eq(pmt_count_files(out, suffix), n);
    free(err);
    return ru.ru_maxrss;
}

static long peak_kib(const char *src, const char *outname, int n)
{
    char *out = pmt_path(tmp, outname);
    const char *argv[] = {pmt_pixmill(), "-q", "-j", "2", "-s", "16", "-o", out, src, NULL};
    long kib = run_peak_kib(argv, out, ".png", n);
    free(out);
    return kib;
}

START_TEST(test_peak_rss_flat)
{
    char *small = image_tree("small", 2000, ".png", 24, 24);
    char *large = image_tree("large", 20000, ".png", 24, 24);
    long rss_small = peak_kib(small, "out-small", 2000);
    long rss_large = peak_kib(large, "out-large", 20000);
    fprintf(stderr, "peak RSS: 2,000 files %ld KiB, 20,000 files %ld KiB (%.1f %%)\n", rss_small,
            rss_large, 100.0 * (double)(rss_large - rss_small) / (double)rss_small);
    ck_assert_msg(rss_large <= rss_small * 115 / 100,
                  "peak RSS grew with the file count: %ld KiB -> %ld KiB", rss_small, rss_large);
    free(small);
    free(large);
}
END_TEST

/* n empty files named .png in one folder, made fast (no libvips). */
static char *make_flat_folder(const char *name, int n)
{
    char *root = pmt_path(tmp, name);
    pmt_mkdirs(root);
    int dfd = open(root, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    for (int i = 0; i < n; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "f%06d.png", i);
        int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ck_assert_int_ge(fd, 0);
        close(fd);
    }
    close(dfd);
    return root;
}

static long peak_kib_failing(const char *src, int n)
{
    char *out = pmt_path(tmp, "out-flat");
    const char *argv[] = {pmt_pixmill(), "-j", "2", "-o", out, src, NULL};
    struct rusage ru;
    char *err;
    int rc = pmt_run((char *const *)argv, NULL, &err, &ru);
    char *want = g_strdup_printf("0 processed, 0 up to date, 0 skipped, %d failed", n);
    ck_assert_msg(rc == 1 && strstr(err, want), "exit %d: %.500s", rc,
                  strstr(err, "pixmill: 0 processed") ? strstr(err, "pixmill: 0 processed") : err);
    g_free(want);
    free(err);
    pmt_rmtree(out);
    free(out);
    return ru.ru_maxrss;
}

/* BAD-INPUT 16: one folder with 200,000 entries, each a source that fails (empty), through the
 * supervisor: every one accounted for, peak RSS of the whole tree within 10 % of 2,000's. */
START_TEST(test_one_folder_of_200000)
{
    int n = 200000 / pmt_scale_divisor();
    char *small = make_flat_folder("flat-small", 2000);
    char *large = make_flat_folder("flat-large", n);
    long rss_small = peak_kib_failing(small, 2000);
    long rss_large = peak_kib_failing(large, n);
    fprintf(stderr, "peak RSS: one folder of 2,000 files %ld KiB, of %d files %ld KiB (%.1f %%)\n",
            rss_small, n, rss_large, 100.0 * (double)(rss_large - rss_small) / (double)rss_small);
    ck_assert_msg(rss_large <= rss_small * 110 / 100,
                  "peak RSS grew with the file count: %ld KiB -> %ld KiB", rss_small, rss_large);
    free(small);
    free(large);
}
END_TEST

/* liborc is not safe when two workers compile vector programs at once: with libvips' vector
 * path on, 3,000 tiny PNGs at -j2 corrupted the heap or crashed in about one run in five.
 * Eight runs in a row must all succeed. */
START_TEST(test_repeated_runs_never_crash)
{
    char *tree = image_tree("stress", 2000, ".png", 24, 24);
    for (int i = 0; i < 8; i++) {
        char *out = pmt_path(tmp, "out-stress");
        const char *argv[] = {pmt_pixmill(), "-q", "-j", "2", "-s", "16", "-o", out, tree, NULL};
        char *err;
        int rc = pmt_run((char *const *)argv, NULL, &err, NULL);
        ck_assert_msg(rc == 0, "run %d: exit %d: %s", i, rc, err);
        free(err);
        pmt_rmtree(out);
        free(out);
    }
    free(tree);
}
END_TEST

/* The heap is kept between files: glibc's trim threshold starts at 128 KiB and a run of small
 * images never raised it, so each file's buffers were given back to the kernel (madvise, brk)
 * and faulted in again: 17 % of the CPU on 1,000 small files. pixmill starts malloc as it would
 * be after a large image (cli/main.c). 200 small JPEGs at -j 2: 346 such calls before, about
 * 40 now (library loading and thread stacks). */
START_TEST(test_heap_kept_between_files)
{
    char *src = image_tree("warm", 200, ".jpg", 400, 300);
    char *out = pmt_path(tmp, "out-warm");
    char *log = pmt_path(tmp, "heap.log");
    char *err = NULL;
    ck_assert_int_eq(pmt_pixmill_traced("madvise,brk", log, &err, "-q", "-j", "2", "-s", "128",
                                        "-o", out, src, NULL),
                     0);
    ck_assert_int_eq(pmt_count_files(out, ".jpg"), 200);
    int calls = pmt_count_lines(log, " madvise(") + pmt_count_lines(log, " brk(");
    fprintf(stderr, "heap: %d madvise and brk calls for 200 files\n", calls);
    ck_assert_msg(calls < 100,
                  "%d madvise and brk calls for 200 files: the heap is handed back "
                  "after each one",
                  calls);
    free(log), free(err), free(out), free(src);
}
END_TEST

/* Progressive JPEGs wanted at 1/8 or less come from their DC coefficients (jpegdc.c), where
 * libjpeg holds every coefficient until the last scan: 72 MB for 6000x4000 at 4:2:0. Four of
 * them at -j 2 in one engine (--manifest keeps one): the engine's peak must be under half of
 * what libvips' decode takes (--fail-on warning keeps pixmill on it). */
START_TEST(test_dc_decode_holds_no_coefficients)
{
    char *src = image_tree("dc", 4, ".jpg[interlace]", 6000, 4000);
    char *o1 = pmt_path(tmp, "out-dc"), *o2 = pmt_path(tmp, "out-libvips");
    char *m1 = pmt_path(tmp, "m1.json"), *m2 = pmt_path(tmp, "m2.json");
    const char *dc[] = {pmt_pixmill(), "-q", "-j", "2", "-s", "256",
                        "--manifest",  m1,   "-o", o1,  src,  NULL};
    const char *lib[] = {pmt_pixmill(), "-q",         "-j", "2",  "-s", "256", "--fail-on",
                         "warning",     "--manifest", m2,   "-o", o2,   src,   NULL};
    long kib_dc = run_peak_kib(dc, o1, ".jpg", 4), kib_lib = run_peak_kib(lib, o2, ".jpg", 4);
    fprintf(stderr, "6000x4000 progressive: engine peak %ld KiB from DC, %ld KiB libvips\n", kib_dc,
            kib_lib);
    ck_assert_msg(kib_dc < kib_lib / 2, "DC decode peak %ld KiB, libvips %ld KiB", kib_dc, kib_lib);
    free(src), free(o1), free(o2), free(m1), free(m2);
}
END_TEST

/* --low-memory (issue 6): one engine, heavy decodes within 64 MiB, freed buffers given back.
 * Eight copies of a 4000x3000 progressive JPEG (decoded whole: about 36 MB of coefficients
 * each) at -j 2, to 512 pixels (at 256 they would come from their DC coefficients, whole
 * decodes or not). The default, kept in one engine by --manifest so that both peaks are of one
 * engine process, held 133 MB there; --low-memory 93 MB (at 256, before, 118 and 81). Same output
 * bytes, one engine. */
START_TEST(test_low_memory)
{
    char *src = image_tree("heavy", 8, ".jpg[interlace]", 4000, 3000);
    char *o1 = pmt_path(tmp, "out-default"), *o2 = pmt_path(tmp, "out-low");
    char *m = pmt_path(tmp, "m.json");
    const char *def[] = {pmt_pixmill(), "-q", "-j", "2", "-s", "512",
                         "--manifest",  m,    "-o", o1,  src,  NULL};
    const char *low[] = {pmt_pixmill(),  "-q", "-j", "2", "-s", "512",
                         "--low-memory", "-o", o2,   src, NULL};
    long kib_def = run_peak_kib(def, o1, ".jpg", 8), kib_low = run_peak_kib(low, o2, ".jpg", 8);
    fprintf(stderr, "low-memory: engine peak %ld KiB, default (one engine) %ld KiB\n", kib_low,
            kib_def);
    ck_assert_msg(kib_low < kib_def * 4 / 5, "--low-memory peak %ld KiB, default %ld KiB", kib_low,
                  kib_def);
    for (int i = 0; i < 8; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "d000/img%06d.jpg", i);
        char *a = pmt_path(o1, rel), *b = pmt_path(o2, rel);
        size_t la, lb;
        char *da = pmt_read_file(a, &la), *db = pmt_read_file(b, &lb);
        ck_assert_msg(da && db && la == lb && memcmp(da, db, la) == 0, "%s differs", rel);
        free(da), free(db), free(a), free(b);
    }
    char *log = pmt_path(tmp, "execve.log"), *o3 = pmt_path(tmp, "out-low-traced");
    ck_assert_int_eq(pmt_pixmill_traced("execve", log, NULL, "-q", "-j", "2", "-s", "64",
                                        "--low-memory", "-o", o3, src, NULL),
                     0);
    ck_assert_int_eq(pmt_count_lines(log, "execve("), 2); /* the supervisor, one engine */
    free(src), free(o1), free(o2), free(o3), free(m), free(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("flat");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_peak_rss_flat);
    tcase_add_test(tc, test_repeated_runs_never_crash);
    tcase_add_test(tc, test_one_folder_of_200000);
    tcase_add_test(tc, test_heap_kept_between_files);
    tcase_add_test(tc, test_low_memory);
    tcase_add_test(tc, test_dc_decode_holds_no_coefficients);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
