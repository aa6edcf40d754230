/* "Nothing lost" and "nothing outside what pixmill owns", end to end through the built binary:
 * the manifest never replaces a file that is not a pixmill manifest; prune removes only outputs
 * whose source is proved gone, only below the output root, only what pixmill wrote; no two
 * sources share an output name, whatever their extensions' case or the inputs they come from;
 * a folder swapped for a symbolic link between the scan and the open is not read through; the
 * state folder is never reached through a link; file lists are read whole or not at all; an
 * interrupt while a list is read stops the run; long names keep their build state. Each test
 * was seen to fail on the code before its fix (issue 18). */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static char *tmp, *in, *out;

static void setup(void)
{
    pmt_vips_init();
    ck_assert_int_eq(pmt_io_make(&tmp, &in, &out), 0);
    unsetenv("PIXMILL_TEST_PAUSE");
    unsetenv("PIXMILL_TEST_PAUSE_DIR");
    unsetenv("PIXMILL_TEST_CRASH");
}

static void teardown(void)
{
    pmt_io_free(&tmp, &in, &out);
}

static char *image(const char *dir, const char *rel, int w, int h)
{
    char *p = pmt_make_image(dir, rel, w, h, 3);
    ck_assert_msg(p != NULL, "cannot make %s/%s", dir, rel);
    return p;
}

static int exists(const char *dir, const char *rel)
{
    char *p = pmt_path(dir, rel);
    struct stat st;
    int ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

/* Runs a bash command line (printf-style); stdout and stderr into *o and *e (may be NULL). */
__attribute__((format(printf, 3, 4))) static int sh(char **o, char **e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    char *so = NULL, *se = NULL;
    int rc = pmt_run((char *const *)argv, &so, &se, NULL);
    if (o)
        *o = so;
    else
        free(so);
    if (e)
        *e = se;
    else
        free(se);
    g_free(cmd);
    return rc;
}

/* ---- 1. the manifest never replaces what is not a pixmill manifest ---- */

START_TEST(test_manifest_never_replaces_an_input)
{
    char *c = image(in, "c.jpg", 64, 48);
    char *notes = pmt_path(in, "notes.json");
    ck_assert_int_eq(pmt_write_file(notes, "{\"mine\": true}\n", 15), 0);
    char *before = pmt_tree_digest(in);
    /* an input photo, a file of the user's below an input folder, a file given as input */
    const char *victims[] = {c, notes};
    for (int i = 0; i < 2; i++) {
        char *e = NULL;
        int rc = pmt_pixmill_run(&e, "-o", out, "--manifest", victims[i], in, NULL);
        ck_assert_msg(rc == 2, "--manifest %s: exit %d: %s", victims[i], rc, e);
        ck_assert_msg(strstr(e, "--manifest"), "%s", e);
        free(e);
        ck_assert_msg(!exists(tmp, "out"), "a refused manifest still ran the batch");
    }
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-o", out, "--manifest", notes, notes, c, NULL);
    ck_assert_msg(rc == 2, "exit %d: %s", rc, e);
    free(e);
    char *after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    /* a manifest named like an image would be walked as a source next time */
    char *as_image = pmt_path(tmp, "m.png");
    rc = pmt_pixmill_run(&e, "-o", out, "--manifest", as_image, in, NULL);
    ck_assert_msg(rc == 2 && !exists(tmp, "m.png"), "exit %d: %s", rc, e);
    free(e);
    /* a symbolic link at the manifest's name is not followed nor replaced */
    char *link = pmt_path(tmp, "m.json");
    ck_assert_int_eq(symlink(notes, link), 0);
    rc = pmt_pixmill_run(&e, "-o", out, "--manifest", link, in, NULL);
    ck_assert_msg(rc == 2, "exit %d: %s", rc, e);
    free(e);
    struct stat st;
    ck_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    /* its own manifest from the run before is replaced, and is the only thing replaced */
    char *m = pmt_path(out, "manifest.json");
    ck_assert_int_eq(pmt_pixmill_run(&e, "-o", out, "--manifest", m, in, NULL), 0);
    free(e);
    ck_assert_int_eq(pmt_pixmill_run(&e, "-f", "png", "-o", out, "--manifest", m, in, NULL), 0);
    free(e);
    char *text = pmt_read_file(m, NULL);
    ck_assert_msg(text && strstr(text, "c.png"), "%s", text);
    free(text);
    free(after);
    after = pmt_tree_digest(in);
    ck_assert_str_eq(before, after);
    free(before), free(after), free(c), free(notes), free(as_image), free(link), free(m);
}
END_TEST

static pid_t spawn_paused(const char *ctl, const char *pause, char *const argv[],
                          const char *errfile);
static int wait_for_file(const char *path, double seconds);

START_TEST(test_manifest_never_replaces_an_output)
{
    /* A template may name an output anything: one that would take the manifest's name is
     * refused, by name, and the manifest is written */
    free(image(in, "m.png", 64, 48));
    free(image(in, "n.png", 64, 48));
    char *m = pmt_path(out, "m-1.json");
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "--name", "{stem}-1.json", "-f", "png", "-o", out, "--manifest", m,
                             in, NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "m.png: output name is not usable") && strstr(e, "--manifest"), "%s",
                  e);
    free(e);
    char *text = pmt_read_file(m, NULL);
    ck_assert_msg(text && g_str_has_prefix(text, "{\n  \"generator\" : \"pixmill "), "%s", text);
    free(text);
    ck_assert(exists(out, "n-1.json"));
    /* the manifest there at the start is replaced at the end only if it is still that file: a
     * file put there meanwhile stays, and the build is told (exit 3) */
    char *ctl = pmt_path(tmp, "ctl"), *paused = pmt_path(tmp, "ctl/paused"),
         *go = pmt_path(tmp, "ctl/go"), *errfile = pmt_path(tmp, "err");
    pmt_mkdirs(ctl);
    free(image(in, "sub/p.png", 64, 48));
    char *argv[] = {(char *)pmt_pixmill(), "--force", "-f", "png", "-o", out,
                    "--manifest",          m,         in,   NULL};
    pid_t pid = spawn_paused(ctl, "sub/p.", argv, errfile);
    ck_assert_msg(wait_for_file(paused, 60) == 0, "the worker never paused");
    char *theirs = pmt_path(tmp, "theirs.json");
    ck_assert_int_eq(pmt_write_file(theirs, "{\"theirs\": 1}\n", 14), 0);
    ck_assert_int_eq(rename(theirs, m), 0);
    ck_assert_int_eq(pmt_write_file(go, "", 0), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    e = pmt_read_file(errfile, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 3, "status 0x%x: %s", status, e);
    ck_assert_msg(strstr(e, "manifest could not be written"), "%s", e);
    free(e);
    text = pmt_read_file(m, NULL);
    ck_assert_msg(text && strcmp(text, "{\"theirs\": 1}\n") == 0, "%s", text);
    free(text);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    free(m), free(ctl), free(paused), free(go), free(errfile), free(theirs);
}
END_TEST

/* ---- 2. prune: a source is gone only when that is proved ---- */

START_TEST(test_prune_from_a_symlinked_folder)
{
    char *real = pmt_path(tmp, "real"), *proj = pmt_path(tmp, "real/proj");
    pmt_mkdirs(proj);
    char *photos = pmt_path(tmp, "real/photos");
    free(image(photos, "x.jpg", 80, 60));
    free(image(photos, "sub/y.png", 80, 60));
    char *lnk = pmt_path(tmp, "lnk");
    ck_assert_int_eq(symlink("real/proj", lnk), 0);
    char *o = NULL, *e = NULL;
    for (int run = 0; run < 2; run++) {
        int rc = sh(&o, &e, "cd '%s' && exec '%s' --prune -o ../out ../photos", lnk, pmt_pixmill());
        ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
        ck_assert_msg(!strstr(o, "removed:") && !strstr(e, "pruned"), "run %d: %s\n%s", run, o, e);
        ck_assert_msg(exists(real, "out/x.jpg") && exists(real, "out/sub/y.png"), "run %d: %s", run,
                      e);
        free(o), free(e);
    }
    /* a source that is really gone takes its output with it */
    char *y = pmt_path(photos, "sub/y.png");
    ck_assert_int_eq(unlink(y), 0);
    int rc = sh(&o, &e, "cd '%s' && exec '%s' --prune -o ../out ../photos", lnk, pmt_pixmill());
    ck_assert_msg(rc == 0 && strstr(o, "removed:") && strstr(e, "1 pruned"), "%s\n%s", o, e);
    ck_assert(exists(real, "out/x.jpg") && !exists(real, "out/sub/y.png"));
    free(o), free(e);
    free(real), free(proj), free(photos), free(lnk), free(y);
}
END_TEST

/* An input folder on a file system that is later unmounted: its sources are not proved gone
 * (the folder is not there, or is another one), so prune keeps their outputs. */
static int unmounted_input(void)
{
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return PMT_CANNOT_RUN;
    char *mnt = pmt_path(tmp, "mnt");
    pmt_mkdirs(mnt);
    if (mount("pmtest", mnt, "tmpfs", 0, "size=4m") != 0)
        return PMT_CANNOT_RUN;
    char *photos = pmt_path(mnt, "photos");
    free(pmt_make_image(photos, "x.png", 40, 30, 3));
    free(pmt_make_image(in, "other.png", 40, 30, 3));
    char *e = NULL;
    int ok = pmt_pixmill_run(&e, "-o", out, photos, in, NULL) == 0;
    free(e);
    umount(mnt);
    /* the folder missing, then a folder of the same name on another file system */
    for (int i = 0; ok && i < 2; i++) {
        if (i == 1)
            pmt_mkdirs(photos);
        char *o = NULL;
        int rc = pmt_pixmill_run_out(&o, &e, "--prune", "-o", out, in, NULL);
        ok = rc == 0 && exists(out, "x.png") && exists(out, "other.png") && !strstr(o, "removed");
        if (!ok)
            fprintf(stderr, "unmounted input, case %d: exit %d: %s%s\n", i, rc, o, e);
        free(o), free(e);
    }
    free(mnt), free(photos);
    return ok ? 0 : 1;
}

START_TEST(test_prune_keeps_an_unmounted_input)
{
    int rc = pmt_in_child(unmounted_input);
    if (rc == PMT_CANNOT_RUN)
        fprintf(stderr, "SKIP: no mount namespace or tmpfs here\n");
    else
        ck_assert_int_eq(rc, 0);
}
END_TEST

/* ---- 3. prune never reaches outside the output root ---- */

/* The "out" lines of a record rewritten by fn; the record of source name in out's root. */
static void edit_record(const char *name, char *(*fn)(const char *line, void *ud), void *ud)
{
    char *rel = g_strdup_printf(".pixmill/state/%s.st", name);
    char *path = pmt_path(out, rel);
    char *text = pmt_read_file(path, NULL);
    ck_assert_msg(text != NULL, "no record %s", path);
    gchar **lines = g_strsplit(text, "\n", -1);
    GString *s = g_string_new(NULL);
    for (int i = 0; lines[i]; i++) {
        if (!*lines[i])
            continue;
        char *line = g_str_has_prefix(lines[i], "out\t") ? fn(lines[i], ud) : g_strdup(lines[i]);
        g_string_append_printf(s, "%s\n", line);
        g_free(line);
    }
    ck_assert_int_eq(pmt_write_file(path, s->str, s->len), 0);
    g_string_free(s, TRUE);
    g_strfreev(lines);
    free(text), free(path);
    g_free(rel);
}

/* An out line naming another file, with that file's size, mtime and inode. */
static char *out_line_for(const char *line, const char *name, const char *file, int left)
{
    struct stat st;
    ck_assert_int_eq(lstat(file, &st), 0);
    gchar **f = g_strsplit(line, "\t", -1);
    ck_assert_int_eq(g_strv_length(f), 12);
    char *esc = g_strescape(name, NULL);
    char *s = g_strdup_printf(
        "out\t%s\t%s\t%s\t%s\t%lld\t%lld\t%s\t%llu\t%s\t%s\t%s", f[1], f[2], f[3], f[4],
        (long long)st.st_size, (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
        f[7], (unsigned long long)st.st_ino, f[9], esc, left ? "left" : f[11]);
    g_free(esc);
    g_strfreev(f);
    return s;
}

typedef struct victim {
    const char *name, *file;
    int left; /* the entry marked left over (pruned with its source still there) */
} victim;

static char *point_at_victim(const char *line, void *ud)
{
    const victim *v = ud;
    return out_line_for(line, v->name, v->file, v->left);
}

START_TEST(test_prune_stays_below_the_root)
{
    char *victim_file = pmt_path(tmp, "victim.txt");
    ck_assert_int_eq(pmt_write_file(victim_file, "precious", 8), 0);
    /* a record naming a file above the root, then one by an absolute path; the source gone,
     * then (i >= 3) the source there and the entry marked left over */
    const char *names[] = {"../victim.txt", victim_file, "sub/../../victim.txt"};
    for (int i = 0; i < 6; i++) {
        char *a = image(in, "a.png", 40, 30);
        char *e = NULL;
        ck_assert_int_eq(pmt_pixmill_run(&e, "-o", out, in, NULL), 0);
        free(e);
        victim v = {names[i % 3], victim_file, i >= 3};
        edit_record("a.png", point_at_victim, &v);
        if (i < 3)
            ck_assert_int_eq(unlink(a), 0);
        char *o = NULL;
        int rc = pmt_pixmill_run_out(&o, &e, "--prune", "-o", out, in, NULL);
        ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
        ck_assert_msg(access(victim_file, F_OK) == 0, "prune removed %s (record said %s): %s",
                      victim_file, names[i % 3], o);
        free(o), free(e), free(a);
    }
    /* a record naming sub/a.png where out/sub is a link to a folder outside, holding the very
     * file pixmill wrote (moved there): not reached through the link */
    char *a = image(in, "a.png", 40, 30);
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_run(&e, "-o", out, in, NULL), 0);
    free(e);
    char *elsewhere = pmt_path(tmp, "elsewhere"), *made = pmt_path(out, "a.png");
    pmt_mkdirs(elsewhere);
    char *moved = pmt_path(elsewhere, "a.png"), *sub = pmt_path(out, "sub");
    ck_assert_int_eq(rename(made, moved), 0);
    ck_assert_int_eq(symlink(elsewhere, sub), 0);
    victim v = {"sub/a.png", moved, 0};
    edit_record("a.png", point_at_victim, &v);
    ck_assert_int_eq(unlink(a), 0);
    char *o = NULL;
    int rc = pmt_pixmill_run_out(&o, &e, "--prune", "-o", out, in, NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, e);
    ck_assert_msg(access(moved, F_OK) == 0, "prune went through out/sub: %s", o);
    free(o), free(e);
    free(a), free(elsewhere), free(made), free(moved), free(sub), free(victim_file);
}
END_TEST

/* ---- 4 and 5. no two sources share an output name ---- */

/* Only the sources of this run can clash (issue 19): a named a/x.jpg converts to PNG though
 * a/x.webp and a/x.PNG lie beside it; named both, they fail naming each other; the folder
 * walked, they fail too. */
START_TEST(test_sibling_not_named_is_no_clash)
{
    char *x = image(in, "a/x.jpg", 40, 30), *w = image(in, "a/x.webp", 40, 30);
    char *p = image(in, "a/x.PNG", 40, 30);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-f", "png", "-o", out, x, NULL);
    ck_assert_msg(rc == 0 && exists(out, "x.png"), "exit %d: %s", rc, e);
    free(e);
    char *o2 = pmt_path(tmp, "out2");
    rc = pmt_pixmill_run(&e, "-f", "png", "-o", o2, x, w, NULL);
    ck_assert_msg(rc == 1 && strstr(e, "would write x.png too") && !exists(o2, "x.png"),
                  "exit %d: %s", rc, e);
    free(e);
    char *o3 = pmt_path(tmp, "out3"), *a = pmt_path(in, "a");
    rc = pmt_pixmill_run(&e, "-f", "png", "-o", o3, a, NULL);
    ck_assert_msg(rc == 1 && strstr(e, "would write x.png too"), "exit %d: %s", rc, e);
    free(e), free(x), free(w), free(p), free(o2), free(o3), free(a);
}
END_TEST

START_TEST(test_mixed_case_siblings_refused)
{
    free(image(in, "a.Png", 40, 30));
    free(image(in, "a.Jpg", 60, 45));
    free(image(in, "b.pNg", 40, 30));
    free(image(in, "b.JpEG", 60, 45));
    free(image(in, "c.png", 40, 30));
    for (int j = 1; j <= 2; j++) {
        char jobs[4], *e = NULL;
        g_snprintf(jobs, sizeof(jobs), "%d", j);
        int rc = pmt_pixmill_run(&e, "-j", jobs, "-f", "webp", "-o", out, in, NULL);
        ck_assert_msg(rc == 1, "exit %d: %s", rc, e);
        ck_assert_msg(strstr(e, "a.Png: output name is not usable") &&
                          strstr(e, "a.Jpg would write a.webp too") &&
                          strstr(e, "a.Jpg: output name is not usable") &&
                          strstr(e, "b.pNg would write b.webp too") &&
                          strstr(e, "b.JpEG would write b.webp too"),
                      "%s", e);
        free(e);
        ck_assert(!exists(out, "a.webp") && !exists(out, "b.webp") && exists(out, "c.webp"));
        /* every output failed: no record claims anything for them (issue 18, 12) */
        ck_assert(!exists(out, ".pixmill/state/a.Png.st") &&
                  !exists(out, ".pixmill/state/a.Jpg.st"));
    }
    /* across two input folders: A/x.png and B/x.PNG */
    char *A = pmt_path(tmp, "A"), *B = pmt_path(tmp, "B"), *o2 = pmt_path(tmp, "o2");
    free(image(A, "x.png", 40, 30));
    free(image(B, "x.pNg", 50, 30));
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-f", "webp", "-o", o2, A, B, NULL);
    ck_assert_msg(rc == 1 && strstr(e, "x.pNg would write x.webp too") &&
                      strstr(e, "x.png would write x.webp too"),
                  "exit %d: %s", rc, e);
    ck_assert(!exists(o2, "x.webp"));
    free(e), free(A), free(B), free(o2);
}
END_TEST

START_TEST(test_list_entries_never_share_an_output)
{
    /* /ABS/d/x.jpg and ABS/d/x.jpg (relative to the current folder: another file) both mirror
     * to out/ABS/d/x.jpg */
    char *abs_file = image(tmp, "d/x.jpg", 40, 30);
    char *cwd = pmt_path(tmp, "cwd");
    char *rel = g_strdup(abs_file + 1);
    free(image(cwd, rel, 60, 45));
    char *list = pmt_path(tmp, "list");
    char *text = g_strdup_printf("%s\n%s\n", abs_file, rel);
    ck_assert_int_eq(pmt_write_file(list, text, strlen(text)), 0);
    for (int isolate = 0; isolate < 2; isolate++) {
        char *e = NULL;
        int rc = sh(NULL, &e, "cd '%s' && exec '%s' %s --files-from '%s' -o '%s'", cwd,
                    pmt_pixmill(), isolate ? "" : "--no-isolate", list, out);
        ck_assert_msg(rc == 1 && strstr(e, "would write") && strstr(e, ", 2 failed"), "exit %d: %s",
                      rc, e);
        char *outname = g_strdup_printf("%s.jpg", rel);
        ck_assert_msg(!exists(out, outname), "%s was made", outname);
        g_free(outname);
        free(e);
    }
    /* a list entry against a folder input: x.png walked in in/, ./x.jpg listed, both -> x.* */
    free(image(in, "p.png", 40, 30));
    free(image(cwd, "p.jpg", 40, 30));
    char *list2 = pmt_path(tmp, "list2");
    ck_assert_int_eq(pmt_write_file(list2, "p.jpg\n", 6), 0);
    char *e = NULL;
    char *o2 = pmt_path(tmp, "o2");
    int rc = sh(NULL, &e, "cd '%s' && exec '%s' -f webp --files-from '%s' -o '%s' '%s'", cwd,
                pmt_pixmill(), list2, o2, in);
    ck_assert_msg(rc == 1 && strstr(e, "p.jpg would write p.webp too") &&
                      strstr(e, "p.png would write p.webp too"),
                  "exit %d: %s", rc, e);
    ck_assert(!exists(o2, "p.webp"));
    free(e), free(o2), free(list2);
    free(abs_file), free(cwd), free(list), free(text);
    g_free(rel);
}
END_TEST

/* The promise, on generated trees: whatever the stems, extensions (in any case), contents and
 * folders of two inputs, every output name that one source alone maps to is made, and every
 * name two or more sources map to is made by none, each of them failing by name. The oracle is
 * a model of the names (stem + the output format's extension, in the source's folder below its
 * input), not pixmill's code. $PMT_SEEDS runs more seeds; a failure prints its seed. */
START_TEST(test_generated_trees_never_share_an_output)
{
    const char *more = getenv("PMT_SEEDS");
    int seeds = more && atoi(more) > 0 ? atoi(more) : 12;
    size_t png_len, jpg_len;
    void *png = pmt_encode_image(".png", 24, 16, 3, &png_len);
    void *jpg = pmt_encode_image(".jpg", 24, 16, 3, &jpg_len);
    const char *stems[] = {"a", "b", "Ab"}, *exts[] = {"png", "jpg", "jpeg", "webp", "gif"};
    for (int seed = 1; seed <= seeds; seed++) {
        GRand *rng = g_rand_new_with_seed((guint32)seed);
        char *root = g_strdup_printf("%s/gen-%d", tmp, seed);
        char *dirs[2] = {g_strdup_printf("%s/A", root), g_strdup_printf("%s/B", root)};
        char *o = g_strdup_printf("%s/out", root);
        int same = g_rand_boolean(rng);
        /* model: output name below the root -> the sources that map to it */
        GHashTable *model = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                  (GDestroyNotify)g_ptr_array_unref);
        int n = g_rand_int_range(rng, 6, 13);
        for (int i = 0; i < n; i++) {
            int input = g_rand_int_range(rng, 0, 2), sub = g_rand_boolean(rng);
            const char *stem = stems[g_rand_int_range(rng, 0, 3)];
            char ext[8];
            g_strlcpy(ext, exts[g_rand_int_range(rng, 0, 5)], sizeof(ext));
            for (char *c = ext; *c; c++)
                if (g_rand_boolean(rng))
                    *c = g_ascii_toupper(*c);
            int is_png = g_rand_boolean(rng);
            char *rel = g_strdup_printf("%s%s.%s", sub ? "s/" : "", stem, ext);
            char *path = pmt_path(dirs[input], rel);
            if (access(path, F_OK) == 0) { /* that very name is taken */
                free(path), g_free(rel);
                continue;
            }
            char *folder = g_path_get_dirname(path);
            pmt_mkdirs(folder);
            g_free(folder);
            ck_assert_int_eq(is_png ? pmt_write_file(path, png, png_len)
                                    : pmt_write_file(path, jpg, jpg_len),
                             0);
            char *name = g_strdup_printf("%s%s.%s", sub ? "s/" : "", stem,
                                         !same    ? "webp"
                                         : is_png ? "png"
                                                  : "jpg");
            GPtrArray *who = g_hash_table_lookup(model, name);
            if (!who) {
                who = g_ptr_array_new_with_free_func(free);
                g_hash_table_insert(model, g_strdup(name), who);
            }
            g_ptr_array_add(who, path);
            g_free(name), g_free(rel);
        }
        char *e = NULL;
        const char *jobs = g_rand_boolean(rng) ? "1" : "2";
        int rc = pmt_pixmill_run(&e, "-j", jobs, "-f", same ? "same" : "webp", "-o", o, dirs[0],
                                 dirs[1], NULL);
        int clashes = 0;
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, model);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            GPtrArray *who = v;
            char *made = pmt_path(o, k);
            struct stat st;
            int there = stat(made, &st) == 0 && st.st_size > 0;
            if (who->len == 1) {
                ck_assert_msg(there, "seed %d: %s from %s alone was not made: %s", seed, (char *)k,
                              (char *)g_ptr_array_index(who, 0), e);
            } else {
                clashes++;
                ck_assert_msg(!there, "seed %d: %s made though %u sources map to it: %s", seed,
                              (char *)k, who->len, e);
                for (guint i = 0; i < who->len; i++) {
                    char *said = g_strdup_printf("%s: output name is not usable",
                                                 (char *)g_ptr_array_index(who, i));
                    ck_assert_msg(strstr(e, said), "seed %d: no failure for %s (%u map to %s): %s",
                                  seed, (char *)g_ptr_array_index(who, i), who->len, (char *)k, e);
                    g_free(said);
                }
            }
            free(made);
        }
        ck_assert_msg(rc == (clashes ? 1 : 0), "seed %d: exit %d with %d clashes: %s", seed, rc,
                      clashes, e);
        free(e);
        g_hash_table_destroy(model);
        g_free(dirs[0]), g_free(dirs[1]), g_free(o), g_free(root);
        g_rand_free(rng);
    }
    g_free(png), g_free(jpg);
}
END_TEST

START_TEST(test_named_file_and_its_folder_made_once)
{
    char *a = image(in, "a.png", 40, 30);
    char *o2 = pmt_path(tmp, "o2");
    const char *dirs[] = {out, o2};
    for (int order = 0; order < 2; order++) {
        char *e = NULL;
        int rc = order ? pmt_pixmill_run(&e, "-v", "-o", dirs[order], in, a, NULL)
                       : pmt_pixmill_run(&e, "-v", "-o", dirs[order], a, in, NULL);
        ck_assert_msg(rc == 0 && strstr(e, "1 processed") && strstr(e, "1 skipped") &&
                          strstr(e, "already met under another name"),
                      "order %d: exit %d: %s", order, rc, e);
        free(e);
        ck_assert_int_eq(pmt_count_files(dirs[order], ".png"), 1);
    }
    free(a), free(o2);
}
END_TEST

/* ---- 6. a folder swapped for a link between the scan and the open ---- */

/* Runs argv with the test hook that pauses the worker on a source whose path contains pause
 * (it makes ctl/paused, then waits for ctl/go), stderr into errfile. */
static pid_t spawn_paused(const char *ctl, const char *pause, char *const argv[],
                          const char *errfile)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PIXMILL_TEST_PAUSE", pause, 1);
        setenv("PIXMILL_TEST_PAUSE_DIR", ctl, 1);
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 1);
        close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_for_file(const char *path, double seconds)
{
    for (int i = 0; i < (int)(seconds * 100); i++) {
        if (access(path, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

START_TEST(test_folder_swapped_for_a_link_is_not_read_through)
{
    free(image(in, "sub/p.jpg", 80, 60));
    free(image(in, "q.jpg", 80, 60));
    char *secret = pmt_path(tmp, "secret");
    free(image(secret, "p.jpg", 120, 90));
    char *ctl = pmt_path(tmp, "ctl"), *paused = pmt_path(tmp, "ctl/paused"),
         *go = pmt_path(tmp, "ctl/go"), *errfile = pmt_path(tmp, "err");
    pmt_mkdirs(ctl);
    char *sub = pmt_path(in, "sub"), *old = pmt_path(in, "sub-old");
    for (int isolate = 0; isolate < 2; isolate++) {
        char *argv[] = {(char *)pmt_pixmill(),           "-j", "1", "-f", "png", "-o", out, in,
                        isolate ? NULL : "--no-isolate", NULL};
        pid_t pid = spawn_paused(ctl, "sub/p.", argv, errfile);
        ck_assert_msg(wait_for_file(paused, 60) == 0, "the worker never paused");
        /* the walk has handed over in/sub/p.jpg: now in/sub is a link to a folder outside */
        ck_assert_int_eq(rename(sub, old), 0);
        ck_assert_int_eq(symlink(secret, sub), 0);
        ck_assert_int_eq(pmt_write_file(go, "", 0), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        char *e = pmt_read_file(errfile, NULL);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d: %s", status, e);
        ck_assert_msg(strstr(e, "sub/p.jpg: "), "%s", e);
        free(e);
        ck_assert_msg(!exists(out, "sub/p.png"), "out/sub/p.png was made through the link");
        ck_assert(exists(out, "q.png"));
        unlink(paused), unlink(go), unlink(sub);
        ck_assert_int_eq(rename(old, sub), 0);
        pmt_rmtree(out);
    }
    free(secret), free(ctl), free(paused), free(go), free(errfile), free(sub), free(old);
}
END_TEST

/* ---- also: an engine restarted after a crash knows files by identity, not by place ---- */

/* The names in dir, in the order a walk reads them. */
static GPtrArray *walk_order(const char *dir)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            g_ptr_array_add(names, g_strdup(e->d_name));
    if (d)
        closedir(d);
    return names;
}

START_TEST(test_restart_after_a_crash_knows_files_by_identity)
{
    /* The engine crashes on crash-me; while it is paused there, a file the walk met before it
     * is deleted, so the next engine's walk gives every later file another seq. The file at
     * fault must be passed over by what it is (not the file that now has its seq), every
     * other file made, and the change said: counts by seq cannot be trusted now (exit 1). */
    for (int i = 0; i < 16; i++) {
        char rel[16];
        g_snprintf(rel, sizeof(rel), "f%02d.png", i);
        free(image(in, rel, 40, 30));
    }
    GPtrArray *order = NULL;
    int at = -1;
    char crasher[32];
    for (int k = 0; k < 20 && (at <= 0 || at + 1 >= (int)order->len); k++) {
        if (k > 0) {
            char *old = pmt_path(in, crasher);
            unlink(old);
            free(old);
        }
        g_snprintf(crasher, sizeof(crasher), "crash-me-%d.png", k);
        free(image(in, crasher, 40, 30));
        if (order)
            g_ptr_array_free(order, TRUE);
        order = walk_order(in);
        at = -1;
        for (guint i = 0; i < order->len; i++)
            if (strcmp(g_ptr_array_index(order, i), crasher) == 0)
                at = (int)i;
    }
    ck_assert_msg(at > 0 && at + 1 < (int)order->len, "no name falls in the middle of the walk");
    char *ctl = pmt_path(tmp, "ctl"), *paused = pmt_path(tmp, "ctl/paused"),
         *go = pmt_path(tmp, "ctl/go"), *errfile = pmt_path(tmp, "err");
    pmt_mkdirs(ctl);
    setenv("PIXMILL_TEST_CRASH", "crash-me", 1);
    char *argv[] = {(char *)pmt_pixmill(), "-j", "1", "-o", out, in, NULL};
    pid_t pid = spawn_paused(ctl, "crash-me", argv, errfile);
    unsetenv("PIXMILL_TEST_CRASH");
    ck_assert_msg(wait_for_file(paused, 60) == 0, "the worker never paused");
    char *gone = pmt_path(in, g_ptr_array_index(order, 0));
    ck_assert_int_eq(unlink(gone), 0);
    ck_assert_int_eq(pmt_write_file(go, "", 0), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *e = pmt_read_file(errfile, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status 0x%x: %s", status, e);
    ck_assert_msg(strstr(e, "crash-me") && strstr(e, "the process died"), "%s", e);
    ck_assert_msg(strstr(e, "the inputs changed while the run was restarted"), "%s", e);
    for (guint i = 1; i < order->len; i++) {
        const char *name = g_ptr_array_index(order, i);
        if ((int)i != at)
            ck_assert_msg(exists(out, name), "%s (after %s in the walk: %d of %u) was not made: %s",
                          name, crasher, (int)i, order->len, e);
    }
    ck_assert(!exists(out, crasher));
    free(e);
    g_ptr_array_free(order, TRUE);
    free(ctl), free(paused), free(go), free(errfile), free(gone);
}
END_TEST

/* ---- 7. the state folder is never reached through a link ---- */

START_TEST(test_state_folder_link_not_followed)
{
    free(image(in, "a.png", 40, 30));
    char *trap = pmt_path(tmp, "trap");
    pmt_mkdirs(trap);
    char *bait = pmt_path(trap, "bait");
    ck_assert_int_eq(pmt_write_file(bait, "x", 1), 0);
    pmt_mkdirs(out);
    char *state = pmt_path(out, ".pixmill");
    for (int level = 0; level < 2; level++) {
        /* OUT/.pixmill a link; then OUT/.pixmill/state a link */
        char *link = level ? pmt_path(out, ".pixmill/state") : g_strdup(state);
        if (level)
            pmt_mkdirs(state);
        ck_assert_int_eq(symlink(trap, link), 0);
        char *before = pmt_tree_digest(trap);
        for (int dry = 0; dry < 2; dry++) {
            char *e = NULL;
            int rc = dry ? pmt_pixmill_run(&e, "--dry-run", "-o", out, in, NULL)
                         : pmt_pixmill_run(&e, "--prune", "-o", out, in, NULL);
            ck_assert_msg(dry ? rc == 0 : rc == 3, "level %d dry %d: exit %d: %s", level, dry, rc,
                          e);
            if (!dry)
                ck_assert_msg(strstr(e, ".pixmill"), "%s", e);
            free(e);
            char *after = pmt_tree_digest(trap);
            ck_assert_msg(strcmp(before, after) == 0, "level %d: something was written through %s",
                          level, link);
            free(after);
        }
        free(before);
        unlink(link);
        g_free(link);
    }
    free(trap), free(bait), free(state);
}
END_TEST

/* ---- 8, 9, 10, 12d. file lists: whole, or an error ---- */

/* n images in in/, named prefix + a 3-digit number + ".png", and a list of their paths. */
static GString *listed_images(int n, const char *prefix, int w, int h)
{
    GString *list = g_string_new(NULL);
    for (int i = 0; i < n; i++) {
        char *rel = g_strdup_printf("%s%03d.png", prefix, i);
        char *p = image(in, rel, w, h);
        g_string_append_printf(list, "%s\n", p);
        free(p);
        g_free(rel);
    }
    return list;
}

START_TEST(test_list_that_cannot_be_spooled_is_fatal)
{
    GString *list = listed_images(200, "with-a-longer-name-p", 16, 12);
    char *lpath = pmt_path(tmp, "list");
    ck_assert_int_eq(pmt_write_file(lpath, list->str, list->len), 0);
    ck_assert_int_gt(list->len, 8192);
    /* ulimit -f 8: the supervisor's copy of the list cannot pass 8 KiB */
    char *e = NULL;
    int rc =
        sh(NULL, &e, "ulimit -f 8; exec '%s' --files-from '%s' -o '%s'", pmt_pixmill(), lpath, out);
    ck_assert_msg(rc == 3, "exit %d: %s", rc, e);
    ck_assert_msg(strstr(e, "cannot spool"), "%s", e);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 0);
    free(e);
    /* a list that opens but cannot be read (a folder): fatal in both modes, never an empty
     * batch that exits 0 */
    for (int isolate = 0; isolate < 2; isolate++) {
        int rc2 = isolate
                      ? pmt_pixmill_run(&e, "--files-from", in, "-o", out, NULL)
                      : pmt_pixmill_run(&e, "--no-isolate", "--files-from", in, "-o", out, NULL);
        ck_assert_msg(rc2 == 3 && strstr(e, "Is a directory"), "%s: exit %d: %s",
                      isolate ? "supervised" : "--no-isolate", rc2, e);
        free(e);
    }
    ck_assert_int_eq(pmt_count_files(out, ".png"), 0);
    free(lpath);
    g_string_free(list, TRUE);
}
END_TEST

START_TEST(test_list_from_closed_stdin)
{
    free(image(in, "a.png", 40, 30));
    for (int isolate = 0; isolate < 2; isolate++) {
        char *e = NULL;
        int rc = sh(NULL, &e, "exec 0<&-; exec timeout -s KILL 30 '%s' %s --files-from - -o '%s'",
                    pmt_pixmill(), isolate ? "" : "--no-isolate", out);
        ck_assert_msg(rc == 2, "%s: exit %d: %s", isolate ? "supervised" : "--no-isolate", rc, e);
        ck_assert_msg(strstr(e, "standard input"), "%s", e);
        free(e);
    }
    /* a list that does not exist is a usage error either way */
    for (int isolate = 0; isolate < 2; isolate++) {
        char *missing = pmt_path(tmp, "no-such-list"), *e = NULL;
        int rc =
            isolate ? pmt_pixmill_run(&e, "--files-from", missing, "-o", out, NULL)
                    : pmt_pixmill_run(&e, "--no-isolate", "--files-from", missing, "-o", out, NULL);
        ck_assert_msg(rc == 2 && strstr(e, "no-such-list"), "exit %d: %s", rc, e);
        free(e), free(missing);
    }
    ck_assert(!exists(tmp, "out"));
}
END_TEST

/* A terminal's Ctrl-C while the list is still being read: the run stops, nothing is made. The
 * command runs as the session leader of a pseudo-terminal, so the ^C goes through the tty
 * driver (SI_KERNEL) to its process group, as from a real terminal. */
START_TEST(test_ctrl_c_while_reading_the_list)
{
    GString *list = listed_images(20, "p", 40, 30);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert(grantpt(master) == 0 && unlockpt(master) == 0);
    char *slave = g_strdup(ptsname(master));
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    char *errfile = pmt_path(tmp, "err");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int s = open(slave, O_RDWR);
        ioctl(s, TIOCSCTTY, 0);
        dup2(p[0], 0);
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(s, 1);
        close_range(3, ~0U, 0);
        execl(pmt_pixmill(), "pixmill", "--files-from", "-", "-o", out, (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    signal(SIGPIPE, SIG_IGN); /* the supervisor may stop reading */
    /* half of the list; once the supervisor has read it (the pipe is empty), ^C */
    size_t half = list->len / 2;
    while (list->str[half - 1] != '\n')
        half--;
    ck_assert_int_eq(write(p[1], list->str, half), (ssize_t)half);
    for (int i = 0; i < 500; i++) {
        int queued = -1;
        ioctl(p[1], FIONREAD, &queued);
        if (queued == 0)
            break;
        usleep(10000);
    }
    usleep(100000);
    char ctrl_c = 3;
    ck_assert_int_eq(write(master, &ctrl_c, 1), 1);
    usleep(200000);
    ssize_t rest = write(p[1], list->str + half, list->len - half);
    (void)rest; /* the supervisor may be gone already: EPIPE */
    close(p[1]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *e = pmt_read_file(errfile, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x: %s", status, e);
    ck_assert_msg(pmt_count_files(out, ".png") == 0, "%d outputs made after ^C: %s",
                  pmt_count_files(out, ".png"), e);
    free(e);
    close(master);
    g_free(slave);
    free(errfile);
    g_string_free(list, TRUE);
}
END_TEST

/* ---- 11. names of 253-255 bytes keep their build state ---- */

START_TEST(test_longest_names_recorded)
{
    for (int len = 251; len <= 255; len++) {
        char name[256];
        memset(name, 'n', sizeof(name));
        g_snprintf(name + len - 4, 5, ".png");
        free(image(in, name, 20, 15));
    }
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "-o", out, in, NULL);
    ck_assert_msg(rc == 0 && strstr(e, "5 processed"), "exit %d: %s", rc, e);
    free(e);
    rc = pmt_pixmill_run(&e, "-o", out, in, NULL);
    ck_assert_msg(rc == 0 && strstr(e, "5 up to date"), "exit %d: %s", rc, e);
    free(e);
    /* and prune knows them: gone, their outputs go */
    pmt_rmtree(in);
    pmt_mkdirs(in);
    rc = pmt_pixmill_run(&e, "--prune", "-o", out, in, NULL);
    ck_assert_msg(rc == 0 && strstr(e, "5 pruned"), "exit %d: %s", rc, e);
    ck_assert_int_eq(pmt_count_files(out, ".png"), 0);
    free(e);
}
END_TEST

/* ---- 12c. a recipe cannot turn the pixel cap off by a negative number ---- */

START_TEST(test_recipe_negative_max_pixels)
{
    free(image(in, "a.png", 40, 30));
    char *r = pmt_path(tmp, "r.ini");
    const char *text = "[defaults]\nmax-pixels = -1\nsize = 32\n";
    ck_assert_int_eq(pmt_write_file(r, text, strlen(text)), 0);
    char *e = NULL;
    int rc = pmt_pixmill_run(&e, "--recipe", r, "-o", out, in, NULL);
    ck_assert_msg(rc == 2 && strstr(e, "max-pixels"), "exit %d: %s", rc, e);
    ck_assert(!exists(tmp, "out"));
    free(e), free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("safety");
    TCase *tc = tcase_create("safety");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_manifest_never_replaces_an_input);
    tcase_add_test(tc, test_manifest_never_replaces_an_output);
    tcase_add_test(tc, test_prune_from_a_symlinked_folder);
    tcase_add_test(tc, test_prune_keeps_an_unmounted_input);
    tcase_add_test(tc, test_prune_stays_below_the_root);
    tcase_add_test(tc, test_mixed_case_siblings_refused);
    tcase_add_test(tc, test_sibling_not_named_is_no_clash);
    tcase_add_test(tc, test_list_entries_never_share_an_output);
    tcase_add_test(tc, test_generated_trees_never_share_an_output);
    tcase_add_test(tc, test_named_file_and_its_folder_made_once);
    tcase_add_test(tc, test_folder_swapped_for_a_link_is_not_read_through);
    tcase_add_test(tc, test_restart_after_a_crash_knows_files_by_identity);
    tcase_add_test(tc, test_state_folder_link_not_followed);
    tcase_add_test(tc, test_list_that_cannot_be_spooled_is_fatal);
    tcase_add_test(tc, test_list_from_closed_stdin);
    tcase_add_test(tc, test_ctrl_c_while_reading_the_list);
    tcase_add_test(tc, test_longest_names_recorded);
    tcase_add_test(tc, test_recipe_negative_max_pixels);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
