/* Faults on the output side (BAD-INPUT 25): write, fsync and rename failures injected on
 * pixmill's temp files through an LD_PRELOAD shim (tests/fault/pmfault.c), a real full disk (a
 * 1 MiB tmpfs in a private mount namespace) and a file-size limit (ulimit -f). Each time: the
 * file is failed by name with the call's error, its temp is removed, its final name is absent or
 * holds the old complete output, the others are done; a disk that stays full stops the batch
 * early (exit 3) with one clear message. Plain builds only (a preload beside ASan/TSan runtimes
 * is not supported). */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp, *in, *out;

static void setup(void)
{
    pmt_vips_init();
    ck_assert_int_eq(pmt_io_make(&tmp, &in, &out), 0);
    unsetenv("PM_FAULT");
    unsetenv("PM_FAULT_ERRNO");
    unsetenv("PM_FAULT_MATCH");
    unsetenv("PM_FAULT_AFTER");
    unsetenv("PM_FAULT_LOG");
}

static void teardown(void)
{
    unsetenv("LD_PRELOAD");
    pmt_io_free(&tmp, &in, &out);
}

static void sources(int n, int w)
{
    for (int i = 0; i < n; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "p%02d.png", i);
        free(pmt_make_image(in, rel, w, w * 3 / 4, 3));
    }
}

/* The end of a long stderr: Check refuses messages over a few KB. */
static const char *tail(const char *e)
{
    size_t n = e ? strlen(e) : 0;
    return n > 600 ? e + n - 600 : (e ? e : "");
}

static void preload(void)
{
    const char *lib = getenv("PM_FAULT_LIB");
    ck_assert_msg(lib && access(lib, R_OK) == 0, "PM_FAULT_LIB not set");
    setenv("LD_PRELOAD", lib, 1);
}

/* No temp below out, and every output there decodes with libpng. */
static int outputs_whole(const char *root)
{
    ck_assert_int_eq(pmt_count_files(root, ".tmp"), 0);
    int n = 0;
    for (int i = 0; i < 100; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "p%02d.png", i);
        char *p = pmt_path(root, rel);
        int w, h, c;
        if (access(p, F_OK) == 0) {
            ck_assert_msg(pmt_png_decode(p, &w, &h, &c) == 0, "%s is not whole", p);
            n++;
        }
        free(p);
    }
    return n;
}

START_TEST(test_fsync_fails)
{
    sources(5, 80);
    preload();
    setenv("PM_FAULT", "fsync", 1);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "p00.png: output could not be written: Input/output error"), "%s", e);
    ck_assert_msg(strstr(e, "5 failed"), "%s", e);
    ck_assert_int_eq(outputs_whole(out), 0);
    free(e);
}
END_TEST

START_TEST(test_workers_never_wait_for_fsync)
{
    /* Publishing (fsync, rename) and the build record happen on the reporter, the engine's
     * first thread, while the workers decode the next files: the shim logs which thread calls
     * each fsync of a temp. 8 outputs, 8 fsyncs, all on the first thread (records are a cache,
     * not synced: check_build damaged_record_is_never_trusted). */
    sources(8, 80);
    preload();
    char *log = pmt_path(tmp, "fsync.log");
    setenv("PM_FAULT_LOG", log, 1);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-j", "2", "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    unsetenv("PM_FAULT_LOG");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tail(e));
    free(e);
    ck_assert_int_eq(outputs_whole(out), 8);
    gchar *text = NULL;
    ck_assert(g_file_get_contents(log, &text, NULL, NULL));
    int main_thread = 0, other = 0;
    gchar **lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        main_thread += strcmp(lines[i], "main") == 0;
        other += strcmp(lines[i], "thread") == 0;
    }
    g_strfreev(lines);
    g_free(text);
    free(log);
    ck_assert_int_eq(other, 0);
    ck_assert_int_eq(main_thread, 8);
}
END_TEST

START_TEST(test_temp_cannot_be_reopened)
{
    /* The reporter reopens each temp by name to publish it. When it cannot (here: out of
     * descriptors), the output fails with the reason, and the temp, still pixmill's, is
     * removed with the job, not left behind. */
    sources(3, 80);
    preload();
    setenv("PM_FAULT", "reopen", 1);
    g_setenv("PM_FAULT_ERRNO", "24", TRUE); /* EMFILE */
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, tail(e));
    ck_assert_msg(strstr(e, "p01.png: output could not be written") &&
                      strstr(e, "cannot reopen the temporary file to publish it") &&
                      strstr(e, "Too many open files"),
                  "%s", tail(e));
    ck_assert_msg(strstr(e, "3 failed"), "%s", tail(e));
    ck_assert_int_eq(outputs_whole(out), 0); /* and no temp left */
    free(e);
    /* removed behind pixmill's back: told as such */
    g_setenv("PM_FAULT_ERRNO", "2", TRUE); /* ENOENT */
    preload();
    rc = pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, tail(e));
    ck_assert_msg(strstr(e, "the temporary file was removed before it was published"), "%s",
                  tail(e));
    free(e);
}
END_TEST

START_TEST(test_write_fails_once_midway)
{
    /* One write near the end of the output is short and the next fails (ENOSPC), then the disk
     * has room again. libvips 8.14 retried its buffer and called the save done, and the output
     * was published with bytes doubled inside. The output must fail, and nothing be left. */
    sources(1, 700);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-s", "2000", "-f", "png", "-o", out, in, NULL), 0);
    free(e);
    char *made = pmt_path(out, "p00.png");
    struct stat st;
    ck_assert_int_eq(stat(made, &st), 0);
    ck_assert_int_eq(unlink(made), 0);
    char *st_dir = pmt_path(out, ".pixmill");
    char *cmd = g_strdup_printf("rm -rf '%s'", st_dir);
    ck_assert_int_eq(system(cmd), 0);
    g_free(cmd);
    free(st_dir);
    const double at[] = {0.5, 0.9, 0.95, 0.99};
    for (size_t i = 0; i < G_N_ELEMENTS(at); i++) {
        char after[32];
        g_snprintf(after, sizeof(after), "%lld", (long long)((double)st.st_size * at[i]));
        preload();
        setenv("PM_FAULT", "write-once", 1);
        setenv("PM_FAULT_AFTER", after, 1);
        g_setenv("PM_FAULT_ERRNO", "28", TRUE); /* ENOSPC */
        int rc = pmt_pixmill_run(&e, "-s", "2000", "-f", "png", "-o", out, in, NULL);
        unsetenv("LD_PRELOAD");
        ck_assert_msg(rc != 0 && strstr(e, "p00.png: output could not be written: No space left"),
                      "fault at byte %s of %lld: exit %d: %s", after, (long long)st.st_size, rc,
                      tail(e));
        ck_assert_msg(access(made, F_OK) != 0, "fault at byte %s: %s was published", after, made);
        ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
        free(e);
    }
    free(made);
}
END_TEST

START_TEST(test_rename_fails_for_one_source)
{
    sources(6, 80);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL), 0);
    free(e);
    char *p3 = pmt_path(out, "p03.png");
    size_t before_len;
    char *before = pmt_read_file(p3, &before_len);
    /* a second run that must replace p03 (new source bytes) and cannot rename it into place */
    char *src = pmt_path(in, "p03.png");
    ck_assert_int_eq(pmt_write_image(src, 90, 60, 3), 0);
    preload();
    setenv("PM_FAULT", "rename", 1);
    setenv("PM_FAULT_MATCH", "p03", 1);
    g_setenv("PM_FAULT_ERRNO", "18", TRUE); /* EXDEV */
    int rc = pmt_pixmill_run(&e, "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "p03.png: output could not be written: Invalid cross-device link"),
                  "%s", e);
    ck_assert_msg(strstr(e, "5 up to date") && strstr(e, "1 failed"), "%s", e);
    /* the old output is still there, whole and unchanged */
    size_t after_len;
    char *after = pmt_read_file(p3, &after_len);
    ck_assert(after_len == before_len && memcmp(before, after, before_len) == 0);
    ck_assert_int_eq(outputs_whole(out), 6);
    free(e), free(p3), free(before), free(after), free(src);
}
END_TEST

START_TEST(test_disk_filling_up_stops_early)
{
    sources(40, 300);
    preload();
    setenv("PM_FAULT", "write", 1);
    g_setenv("PM_FAULT_ERRNO", "28", TRUE); /* ENOSPC */
    setenv("PM_FAULT_AFTER", "1000", 1);    /* each temp gets its first 1000 bytes */
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-j", "2", "-f", "png", "-o", out, in, NULL);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(rc == 3, "exit %d: %s", rc, tail(e));
    ck_assert_msg(strstr(e, "the output file system is full; stopped: No space left on device"),
                  "%s", tail(e));
    /* stopped early: far fewer than 40 were tried */
    const char *f = strstr(e, " failed,");
    ck_assert_ptr_nonnull(f);
    const char *num = f;
    while (num > e && num[-1] >= '0' && num[-1] <= '9')
        num--;
    int failed = atoi(num);
    fprintf(stderr, "ENOSPC from the first file on: stopped after %d failed files of 40\n", failed);
    ck_assert_int_lt(failed, 20);
    ck_assert_int_eq(outputs_whole(out), 0);
    free(e);
}
END_TEST

/* A real full disk: a 1 MiB tmpfs as the output folder, in a private mount namespace. */
static int real_full_disk(void)
{
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return PMT_CANNOT_RUN;
    pmt_mkdirs(out);
    if (mount("pmtest", out, "tmpfs", 0, "size=1m") != 0)
        return PMT_CANNOT_RUN;
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-j", "2", "-s", "2000", "-f", "png", "-o", out, in, NULL);
    int ok = rc == 3 && strstr(e, "No space left on device") &&
             strstr(e, "the output file system is full; stopped");
    if (!ok)
        fprintf(stderr, "exit %d: %s\n", rc, tail(e));
    /* whatever was made is whole, and no temp is left to fill the disk */
    ok = ok && pmt_count_files(out, ".tmp") == 0;
    for (int i = 0; ok && i < 100; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "p%02d.png", i);
        char *p = pmt_path(out, rel);
        int w, h, c;
        if (access(p, F_OK) == 0 && pmt_png_decode(p, &w, &h, &c) != 0) {
            fprintf(stderr, "%s is not whole\n", p);
            ok = 0;
        }
        free(p);
    }
    free(e);
    umount(out);
    return ok ? 0 : 1;
}

START_TEST(test_real_full_disk)
{
    sources(30, 700); /* ~300 KB PNGs each: 1 MiB holds three */
    int rc = pmt_in_child(real_full_disk);
    if (rc == PMT_CANNOT_RUN)
        fprintf(stderr, "SKIP: no mount namespace or tmpfs here\n");
    else
        ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(test_file_size_limit)
{
    free(pmt_make_image(in, "small.png", 20, 15, 3));
    free(pmt_make_image(in, "large.png", 900, 700, 3));
    /* ulimit -f counts 1024-byte blocks; SIGXFSZ would kill by default, pixmill ignores it */
    char *cmd = g_strdup_printf("ulimit -f 40; exec '%s' -s 900 -f png -o '%s' '%s'", pmt_pixmill(),
                                out, in);
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    char *e = NULL;
    int rc = pmt_run_argv(argv, &e);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, tail(e));
    ck_assert_msg(strstr(e, "large.png: output could not be written: File too large"), "%s",
                  tail(e));
    ck_assert_msg(strstr(e, "1 processed") && strstr(e, "1 failed"), "%s", e);
    char *small = pmt_path(out, "small.png");
    int w, h, c;
    ck_assert_int_eq(pmt_png_decode(small, &w, &h, &c), 0);
    ck_assert_int_eq(pmt_count_files(out, "large"), 0);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    free(small), free(e);
    g_free(cmd);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("fault");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_fsync_fails);
    tcase_add_test(tc, test_rename_fails_for_one_source);
    tcase_add_test(tc, test_temp_cannot_be_reopened);
    tcase_add_test(tc, test_write_fails_once_midway);
    tcase_add_test(tc, test_workers_never_wait_for_fsync);
    tcase_add_test(tc, test_disk_filling_up_stops_early);
    tcase_add_test(tc, test_real_full_disk);
    tcase_add_test(tc, test_file_size_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
