/* Crash and hang isolation through the built binary, using the test-only hooks
 * (PIXMILL_TEST_CRASH / PIXMILL_TEST_HANG, compiled in with PM_TEST_HOOKS): a source that
 * kills its process (SIGABRT, as a codec's failed assertion) or never finishes is reported by name
 * (crashed / timed out), every other source is done and decodes, inputs are unchanged, no temp is
 * left, exit 1. Without the supervisor (--no-isolate) the same crash takes the whole run down: the
 * hook is real. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *tmp, *in, *out;

static void setup(void)
{
    pmt_vips_init();
    ck_assert_int_eq(pmt_io_make(&tmp, &in, &out), 0);
    unsetenv("PIXMILL_TEST_CRASH");
    unsetenv("PIXMILL_TEST_HANG");
    unsetenv("PIXMILL_TEST_HANG_WRITING");
}

static void teardown(void)
{
    pmt_io_free(&tmp, &in, &out);
}

/* n sources p00.png.. plus the named ones; returns the number of sources */
static int make_sources(int n, const char *const *special, int n_special)
{
    for (int i = 0; i < n; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "d%d/p%02d.png", i % 3, i);
        char *p = pmt_make_image(in, rel, 200 + i, 150, 3);
        ck_assert_ptr_nonnull(p);
        free(p);
    }
    for (int i = 0; i < n_special; i++) {
        char *p = pmt_make_image(in, special[i], 120, 90, 3);
        ck_assert_ptr_nonnull(p);
        free(p);
    }
    return n + n_special;
}

/* Every p*.png source has a decodable 64 px WebP; none of the named ones has. */
static void check_outputs(int n)
{
    for (int i = 0; i < n; i++) {
        char rel[48];
        g_snprintf(rel, sizeof(rel), "d%d/p%02d.webp", i % 3, i);
        char *p = pmt_path(out, rel);
        int w, h, a;
        ck_assert_msg(pmt_webp_decode(p, &w, &h, &a) == 0, "%s missing or broken", p);
        ck_assert_int_eq(w, 64);
        free(p);
    }
    ck_assert_int_eq(pmt_count_files(out, ".webp"), n);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_crash_is_isolated)
{
    const char *bad[] = {"d1/crash-me.png"};
    make_sources(20, bad, 1);
    setenv("PIXMILL_TEST_CRASH", "crash-me", 1);
    char *o = NULL, *e = NULL;
    int rc = pmt_pixmill_run_out(&o, &e, "--json", "-j", "2", "-s", "64", "-f", "webp", "-o", out,
                                 in, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "crash-me.png: the process died while working on this file") &&
                      strstr(e, "SIGABRT"),
                  "%s", e);
    ck_assert_msg(strstr(e, ", 1 failed"), "%s", e);
    ck_assert_msg(!strstr(e, "inputs changed"), "a replay of an unchanged tree was doubted: %s", e);
    ck_assert_msg(strstr(o, "\"status\":\"PM_ERR_CRASHED\""), "%s", o);
    /* every other source reported exactly once: done, or up to date when the crashed engine
     * had finished it but died before saying so */
    int done = 0, current = 0;
    for (const char *p = o; (p = strstr(p, "\"event\":\"done\"")); p++)
        done++;
    for (const char *p = o; (p = strstr(p, "\"event\":\"up-to-date\"")); p++)
        current++;
    ck_assert_msg(done + current == 20, "%d done + %d up to date", done, current);
    for (int i = 0; i < 21; i++) {
        char needle[32];
        g_snprintf(needle, sizeof(needle), "\"seq\":%d,", i + 1);
        const char *first = strstr(o, needle);
        ck_assert_msg(first && !strstr(first + 1, needle), "seq %d shown %s", i + 1,
                      first ? "twice" : "never");
    }
    check_outputs(20);
    free(o);
    free(e);
}
END_TEST

START_TEST(test_two_crashes_many_workers)
{
    const char *bad[] = {"d0/crash-me-a.png", "d2/crash-me-b.png"};
    make_sources(30, bad, 2);
    setenv("PIXMILL_TEST_CRASH", "crash-me", 1);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-j", "4", "-s", "64", "-f", "webp", "-o", out, in, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "crash-me-a.png: the process died") &&
                      strstr(e, "crash-me-b.png: the process died"),
                  "%s", e);
    ck_assert_msg(strstr(e, ", 2 failed"), "%s", e);
    check_outputs(30);
    free(e);
    /* the next run does only what is left: nothing, and the crashers again */
    rc = pmt_pixmill_run(&e, "-j", "4", "-s", "64", "-f", "webp", "-o", out, in, NULL);
    ck_assert_msg(rc == 1 && strstr(e, "0 processed, 30 up to date"), "%s", e);
    free(e);
}
END_TEST

START_TEST(test_hang_times_out)
{
    const char *bad[] = {"d0/hang-me.png"};
    make_sources(12, bad, 1);
    setenv("PIXMILL_TEST_HANG", "hang-me", 1);
    char *e = NULL;
    double t0 = now();
    int rc = pmt_pixmill_run(&e, "--timeout", "1", "-j", "2", "-s", "64", "-f", "webp", "-o", out,
                             in, NULL);
    double took = now() - t0;
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "hang-me.png: timed out (still working after --timeout=1 s"), "%s", e);
    ck_assert_msg(strstr(e, ", 1 failed"), "%s", e);
    ck_assert_msg(took < 60, "took %.1f s", took);
    check_outputs(12);
    free(e);
}
END_TEST

/* BAD-INPUT 28 with a file that never finishes: the first SIGTERM drains, but a file still
 * working DRAIN_GRACE (10 s) later is abandoned: the engine is killed, its temp swept, the
 * file named, exit 143, well before --timeout. */
/* Starts pixmill on in/ with a source hung while writing, waits until the other n are done
 * and its temp exists; stderr goes to errpath. */
static pid_t start_with_hung_writer(int n, const char *errpath)
{
    setenv("PIXMILL_TEST_HANG_WRITING", "stuck", 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        (void)e;
        execl(pmt_pixmill(), pmt_pixmill(), "-j", "2", "-s", "64", "-f", "webp", "-o", out, in,
              (char *)NULL);
        _exit(127);
    }
    int status, ended = 0;
    double t0 = now();
    while (!ended && (pmt_count_files(out, ".webp") < n || pmt_count_files(out, ".tmp") < 1) &&
           now() - t0 < 60) {
        ended = waitpid(pid, &status, WNOHANG) == pid;
        usleep(5000);
    }
    ck_assert_msg(!ended, "pixmill ended before the interrupt");
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 1);
    return pid;
}

START_TEST(test_interrupt_abandons_a_hung_file)
{
    const char *bad[] = {"d0/stuck.png"};
    make_sources(6, bad, 1);
    char *before = pmt_tree_digest(in);
    char *errpath = pmt_path(tmp, "stderr");
    int status;
    pid_t pid = start_with_hung_writer(6, errpath);
    double t1 = now();
    kill(pid, SIGTERM);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    double took = now() - t1;
    char *e = pmt_read_file(errpath, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 143, "status %d: %s", status, e);
    ck_assert_msg(took >= 9 && took < 30, "took %.1f s", took);
    ck_assert_msg(strstr(e, "stuck.png: cancelled (still working 10 s after the interrupt; "
                            "abandoned)") &&
                      strstr(e, "6 processed") && strstr(e, "1 stale temps removed"),
                  "%s", e);
    free(e);
    check_outputs(6); /* and no temp */
    /* the next run makes it */
    unsetenv("PIXMILL_TEST_HANG_WRITING");
    ck_assert_int_eq(pmt_pixmill_run(&e, "-j", "2", "-s", "64", "-f", "webp", "-o", out, in, NULL),
                     0);
    ck_assert_msg(strstr(e, "1 processed, 6 up to date"), "%s", e);
    free(e);
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    free(before), free(after), free(errpath);
}
END_TEST

/* BAD-INPUT 28: a second signal ends the run at once, and still no temp is left. */
START_TEST(test_second_signal_ends_at_once)
{
    const char *bad[] = {"d0/stuck.png"};
    make_sources(4, bad, 1);
    char *errpath = pmt_path(tmp, "stderr");
    pid_t pid = start_with_hung_writer(4, errpath);
    double t1 = now();
    kill(pid, SIGINT);
    usleep(300 * 1000);
    kill(pid, SIGINT);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    double took = now() - t1;
    char *e = pmt_read_file(errpath, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status %d: %s", status, e);
    ck_assert_msg(took < 5, "took %.1f s", took);
    ck_assert_msg(strstr(e, "stuck.png: cancelled (interrupted twice; abandoned)") &&
                      strstr(e, "1 stale temps removed"),
                  "%s", e);
    free(e);
    check_outputs(4); /* and no temp */
    free(errpath);
}
END_TEST

START_TEST(test_crash_keeps_manifest_and_file_list)
{
    const char *bad[] = {"d1/crash-me.png"};
    make_sources(15, bad, 1);
    setenv("PIXMILL_TEST_CRASH", "crash-me", 1);
    /* the list comes through a pipe: every engine must see all of it */
    char *list = pmt_path(tmp, "list");
    GString *l = g_string_new(NULL);
    for (int i = 0; i < 15; i++) {
        g_string_append_printf(l, "d%d/p%02d.png\n", i % 3, i);
        if (i == 4)
            g_string_append(l, "d1/crash-me.png\n");
    }
    ck_assert_int_eq(pmt_write_file(list, l->str, l->len), 0);
    g_string_free(l, TRUE);
    char *m = pmt_path(tmp, "m.json");
    char *cmd = g_strdup_printf("cd '%s' && cat '%s' | '%s' --files-from=- --manifest '%s' -j 2 -s "
                                "64 -f webp -o '%s'",
                                in, list, pmt_pixmill(), m, out);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *e = NULL;
    int rc = pmt_run_argv(argv, &e);
    ck_assert_msg(rc == 1 && strstr(e, "crash-me.png: the process died"), "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, ", 1 failed"), "%s", e);
    check_outputs(15);
    /* the manifest lists all 15: those done before the crash too */
    const char *jq[] = {"/usr/bin/jq", "-e",
                        "[.sources[] | select(.status == \"ok\")] | length == 15", m, NULL};
    ck_assert_int_eq(pmt_run_argv(jq, NULL), 0);
    free(e);
    g_free(cmd);
    free(m);
    free(list);
}
END_TEST

START_TEST(test_without_supervisor_the_crash_is_fatal)
{
    const char *bad[] = {"d1/crash-me.png"};
    make_sources(4, bad, 1);
    setenv("PIXMILL_TEST_CRASH", "crash-me", 1);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "--no-isolate", "-j", "1", "-s", "64", "-f", "webp", "-o", out, in,
                             NULL);
    ck_assert_msg(rc == 128 + 6, "exit %d: %s", rc, e); /* SIGABRT */
    free(e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("isolate");
    TCase *tc = tcase_create("isolate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_crash_is_isolated);
    tcase_add_test(tc, test_two_crashes_many_workers);
    tcase_add_test(tc, test_hang_times_out);
    tcase_add_test(tc, test_interrupt_abandons_a_hung_file);
    tcase_add_test(tc, test_second_signal_ends_at_once);
    tcase_add_test(tc, test_crash_keeps_manifest_and_file_list);
    tcase_add_test(tc, test_without_supervisor_the_crash_is_fatal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
