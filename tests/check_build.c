/* Build-step mode end to end through the built binary: up-to-date skipping proved by the --json
 * event stream and by output inodes, rebuilding only what an option change affects, --prune
 * touching only pixmill's own outputs, a SIGKILLed run never leaving a truncated output taken as
 * current, the manifest against the disk (jq, json-glib, independent decoders), byte-identical
 * outputs at -j1 and -j2, --dry-run writing nothing, name templates and recipes. */
#define _GNU_SOURCE
#include "internal.h"
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

static char *image(const char *rel, int w, int h, int bands)
{
    char *p = pmt_make_image(in, rel, w, h, bands);
    ck_assert_msg(p != NULL, "cannot make %s", rel);
    return p;
}

#define run pmt_pixmill_run_out

/* What a --json stream says happened. */
typedef struct tally {
    int done, up_to_date, failed, planned, pruned, other;
    int written, current, decodes;
} tally;

static tally count_events(const char *stream)
{
    tally t = {0};
    gchar **lines = g_strsplit(stream ? stream : "", "\n", -1);
    for (int i = 0; lines[i]; i++) {
        if (!*lines[i])
            continue;
        JsonParser *p = json_parser_new();
        ck_assert_msg(json_parser_load_from_data(p, lines[i], -1, NULL), "not JSON: %s", lines[i]);
        JsonObject *o = json_node_get_object(json_parser_get_root(p));
        const char *ev = json_object_get_string_member(o, "event");
        if (strcmp(ev, "done") == 0)
            t.done++;
        else if (strcmp(ev, "up-to-date") == 0)
            t.up_to_date++;
        else if (strcmp(ev, "failed") == 0)
            t.failed++;
        else if (strcmp(ev, "planned") == 0)
            t.planned++;
        else if (strcmp(ev, "pruned") == 0)
            t.pruned++;
        else
            t.other++;
        if (json_object_has_member(o, "decodes"))
            t.decodes += (int)json_object_get_int_member(o, "decodes");
        JsonArray *outs = json_object_get_array_member(o, "outputs");
        for (guint k = 0; outs && k < json_array_get_length(outs); k++) {
            JsonObject *x = json_array_get_object_element(outs, k);
            if (json_object_has_member(x, "current") &&
                json_object_get_boolean_member(x, "current"))
                t.current++;
            else
                t.written++;
        }
        g_object_unref(p);
    }
    g_strfreev(lines);
    return t;
}

/* Every file below root (relative path -> "inode size mtime"), pixmill's state included. */
static GHashTable *snap;
static const char *snap_root;

static int snap_one(const char *path, const struct stat *sb, int type, struct FTW *f)
{
    (void)f;
    if (type == FTW_F)
        g_hash_table_insert(snap, g_strdup(path + strlen(snap_root)),
                            g_strdup_printf("%lu %ld %ld.%09ld", (unsigned long)sb->st_ino,
                                            (long)sb->st_size, (long)sb->st_mtim.tv_sec,
                                            sb->st_mtim.tv_nsec));
    return 0;
}

static GHashTable *snapshot(const char *root)
{
    snap = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    snap_root = root;
    nftw(root, snap_one, 16, FTW_PHYS);
    return snap;
}

/* Files that differ between two snapshots (added, removed or rewritten); with a filter, only
 * outputs (not pixmill's state) whose path contains it. */
static int snapshot_changes(GHashTable *a, GHashTable *b, const char *filter)
{
    int n = 0;
#define only_containing(k) (filter && (strstr(k, filter) && !strstr(k, "/.pixmill")))
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, a);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const char *w = g_hash_table_lookup(b, k);
        if ((!w || strcmp(w, v) != 0) && (!filter || only_containing((const char *)k)))
            n++;
    }
    g_hash_table_iter_init(&it, b);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (!g_hash_table_contains(a, k) && (!filter || only_containing((const char *)k)))
            n++;
    return n;
}

static void set_mtime(const char *path, time_t when)
{
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

#define SIZES "-s", "64", "-s", "32", "-f", "webp", "-f", "png"

START_TEST(test_incremental)
{
    char *a = image("a.png", 200, 150, 3);
    char *b = image("sub/b.jpg", 120, 90, 3);
    char *c = image("sub/deep/c.png", 90, 120, 4);
    char *o = NULL, *e = NULL;
    /* first build: 3 sources x 2 sizes x 2 formats */
    ck_assert_int_eq(run(&o, &e, "--json", "-j", "2", "-o", out, SIZES, in, NULL), 0);
    tally t = count_events(o);
    ck_assert_int_eq(t.done, 3);
    ck_assert_int_eq(t.written, 12);
    ck_assert_int_eq(t.decodes, 3);
    free(o);
    free(e);
    GHashTable *s1 = snapshot(out);
    /* rebuild: nothing done, nothing decoded, not one file in the output tree touched */
    ck_assert_int_eq(run(&o, &e, "--json", "-o", out, SIZES, in, NULL), 0);
    t = count_events(o);
    ck_assert_msg(t.done == 0 && t.up_to_date == 3 && t.current == 12 && t.decodes == 0,
                  "rerun: %d done, %d up to date, %d current, %d decodes\n%s", t.done, t.up_to_date,
                  t.current, t.decodes, o);
    ck_assert_msg(strstr(e, "3 up to date"), "summary: %s", e);
    free(o);
    free(e);
    GHashTable *s2 = snapshot(out);
    ck_assert_int_eq(snapshot_changes(s1, s2, NULL), 0);
    /* one source changed: only it is rebuilt */
    ck_assert_int_eq(pmt_write_image(a, 210, 150, 3), 0);
    ck_assert_int_eq(run(&o, &e, "--json", "-o", out, SIZES, in, NULL), 0);
    t = count_events(o);
    ck_assert_int_eq(t.done, 1);
    ck_assert_int_eq(t.up_to_date, 2);
    ck_assert_msg(strstr(o, "\"source\":\"") && strstr(o, "a.png\",\"source_url\""), "%s", o);
    free(o);
    free(e);
    GHashTable *s3 = snapshot(out);
    ck_assert_int_eq(snapshot_changes(s2, s3, "/sub/"), 0); /* b and c left alone */
    ck_assert_int_gt(snapshot_changes(s2, s3, "/a-"), 0);
    /* every source touched, bytes unchanged (a fresh clone): nothing rebuilt */
    time_t later = time(NULL) + 3600;
    set_mtime(a, later);
    set_mtime(b, later);
    set_mtime(c, later);
    ck_assert_int_eq(run(&o, &e, "--json", "-o", out, SIZES, in, NULL), 0);
    t = count_events(o);
    ck_assert_msg(t.done == 0 && t.up_to_date == 3 && t.decodes == 0, "after touch: %s", o);
    free(o);
    free(e);
    GHashTable *s4 = snapshot(out);
    ck_assert_int_eq(snapshot_changes(s3, s4, ".webp"), 0);
    ck_assert_int_eq(snapshot_changes(s3, s4, ".png"), 0);
    /* one option changed (WebP quality): only WebP outputs are rebuilt, PNGs stay */
    ck_assert_int_eq(run(&o, &e, "--json", "-Q", "55", "-o", out, SIZES, in, NULL), 0);
    t = count_events(o);
    ck_assert_int_eq(t.done, 3);
    ck_assert_int_eq(t.written, 6);
    ck_assert_int_eq(t.current, 6);
    ck_assert_int_eq(t.decodes, 3);
    free(o);
    free(e);
    GHashTable *s5 = snapshot(out);
    ck_assert_int_eq(snapshot_changes(s4, s5, ".png"), 0);
    ck_assert_int_eq(snapshot_changes(s4, s5, ".webp"), 6);
    /* a size added: the others keep their bytes (the decode is at the largest size, so a larger
     * new size would rebuild them all; a smaller one does not) */
    ck_assert_int_eq(run(&o, &e, "--json", "-Q", "55", "-o", out, SIZES, "-s", "16", in, NULL), 0);
    t = count_events(o);
    ck_assert_int_eq(t.written, 6);
    ck_assert_int_eq(t.current, 12);
    free(o);
    free(e);
    /* --force rebuilds everything */
    ck_assert_int_eq(run(&o, &e, "--json", "--force", "-Q", "55", "-o", out, SIZES, in, NULL), 0);
    t = count_events(o);
    ck_assert_int_eq(t.done, 3);
    ck_assert_int_eq(t.written, 12);
    free(o);
    free(e);
    g_hash_table_destroy(s1);
    g_hash_table_destroy(s2);
    g_hash_table_destroy(s3);
    g_hash_table_destroy(s4);
    g_hash_table_destroy(s5);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(test_output_damaged_or_replaced_is_rebuilt)
{
    free(image("a.png", 200, 150, 3));
    free(image("b.png", 150, 200, 3));
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    /* a truncated output (as a killed copy would leave) and an emptied one */
    char *a64 = pmt_path(out, "a-64.webp"), *b32 = pmt_path(out, "b-32.png");
    ck_assert_int_eq(truncate(a64, 20), 0);
    ck_assert_int_eq(truncate(b32, 0), 0);
    char *o = NULL;
    ck_assert_int_eq(run(&o, NULL, "--json", "-o", out, SIZES, in, NULL), 0);
    tally t = count_events(o);
    ck_assert_int_eq(t.done, 2);
    ck_assert_int_eq(t.written, 2);
    ck_assert_int_eq(t.current, 6);
    free(o);
    int w, h, alpha, ch;
    ck_assert_int_eq(pmt_webp_decode(a64, &w, &h, &alpha), 0);
    ck_assert_int_eq(w, 64);
    ck_assert_int_eq(pmt_png_decode(b32, &w, &h, &ch), 0);
    ck_assert_int_eq(h, 32);
    free(a64);
    free(b32);
}
END_TEST

/* Build records are written without fsync (a cache, unlike outputs): after a power cut one
 * may be missing, cut short, zeroed, or an older run's. Each is refused or found not to
 * match, and the source is made again, never taken as current. */
START_TEST(test_damaged_record_is_never_trusted)
{
    free(image("a.png", 200, 150, 3));
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    char *record = pmt_path(out, ".pixmill/state/a.png.st");
    size_t old_len, len;
    char *old = pmt_read_file(record, &old_len);
    ck_assert_ptr_nonnull(old);
    free(image("a.png", 180, 150, 3)); /* new content: the old record is an older run's */
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    char *good = pmt_read_file(record, &len);
    ck_assert_ptr_nonnull(good);
    char *zeros = g_malloc0(len);
    struct {
        const char *what;
        const char *bytes;
        size_t n;
    } damage[] = {{"empty", "", 0},
                  {"cut short", good, len / 2},
                  {"zeroed", zeros, len},
                  {"an older run's", old, old_len}};
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        ck_assert_int_eq(pmt_write_file(record, damage[i].bytes, damage[i].n), 0);
        char *o = NULL;
        ck_assert_int_eq(run(&o, NULL, "--json", "-o", out, SIZES, in, NULL), 0);
        tally t = count_events(o);
        ck_assert_msg(t.done == 1 && t.up_to_date == 0, "record %s: %d done, %d up to date",
                      damage[i].what, t.done, t.up_to_date);
        free(o);
        char *a64 = pmt_path(out, "a-64.webp");
        int w, h, alpha;
        ck_assert_int_eq(pmt_webp_decode(a64, &w, &h, &alpha), 0);
        ck_assert_int_eq(w, 64);
        ck_assert_int_eq(h, 53); /* from the new 180x150 source */
        free(a64);
    }
    /* and the record written last is whole again: the next run does nothing */
    char *o = NULL;
    ck_assert_int_eq(run(&o, NULL, "--json", "-o", out, SIZES, in, NULL), 0);
    tally t = count_events(o);
    ck_assert_int_eq(t.up_to_date, 1);
    ck_assert_int_eq(t.current, 4);
    free(o);
    g_free(zeros);
    free(old), free(good), free(record);
}
END_TEST

/* Every name a record holds is held to what pixmill writes before it is used: a record
 * naming an output above the root, by an absolute path, through "." or "..", or among
 * pixmill's own names, or a source outside its root, is not one of pixmill's (issue 18, 3). */
START_TEST(test_record_names_held_to_templates)
{
    int root = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(root, 0);
    pmt_mkdirs(tmp); /* records in tmp/r */
    const char *head = "pixmill-state 1\nsize\t10\nmtime\t1\nhash\t"
                       "0123456789abcdef0123456789abcdef\ndims\t20\t10\t1\t1\t0\t0\n";
#define OUT_LINE                                                                                   \
    "out\t0123456789abcdef\t3\t20\t10\t5\t1\t0123456789abcdef0123456789abcdef\t7\t20\t%s\n"
    struct {
        const char *source, *root, *name;
        int ok;
    } cases[] = {
        {"/in/a.png", "/in", "a.webp", 1},
        {"/in/sub/a.png", "/in", "sub/a.webp", 1},
        {"/a.png", "/", "x/a.webp", 1},
        {"/in/a.png", NULL, "a.webp", 1}, /* an older record: loads, never pruned */
        {"/in/a.png", "/in", "../victim.txt", 0},
        {"/in/a.png", "/in", "/tmp/victim.txt", 0},
        {"/in/a.png", "/in", "sub/../../victim.txt", 0},
        {"/in/a.png", "/in", "sub/./a.webp", 0},
        {"/in/a.png", "/in", "sub//a.webp", 0},
        {"/in/a.png", "/in", "sub/", 0},
        {"/in/a.png", "/in", ".pixmill/state/x", 0},
        {"/in/a.png", "/in", ".pixmill-0123456789abcdef.tmp", 0},
        {"in/a.png", "in", "a.webp", 0},       /* a relative source */
        {"/other/a.png", "/in", "a.webp", 0},  /* not below its root */
        {"/inside/a.png", "/in", "a.webp", 0}, /* a prefix, not a folder */
        {"/in/../etc/a.png", "/in", "a.webp", 0},
    };
    char *dir = pmt_path(tmp, "r");
    pmt_mkdirs(dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        GString *text = g_string_new(head);
        g_string_append_printf(text, "source\t%s\n", cases[i].source);
        if (cases[i].root)
            g_string_append_printf(text, "root\t%s\t1\n", cases[i].root);
        g_string_append_printf(text, OUT_LINE, cases[i].name);
        char *path = pmt_path(dir, "x.st");
        ck_assert_int_eq(pmt_write_file(path, text->str, text->len), 0);
        pm__state st;
        int rc = pm__state_load(root, "r", "x.st", &st);
        ck_assert_msg((rc == 0) == cases[i].ok, "record %zu (source %s, root %s, out %s): %s", i,
                      cases[i].source, cases[i].root ? cases[i].root : "-", cases[i].name,
                      rc == 0 ? "loaded" : "refused");
        if (rc == 0)
            pm__state_clear(&st);
        g_string_free(text, TRUE);
        free(path);
    }
    free(dir);
    close(root);
}
END_TEST

START_TEST(test_prune_only_ours)
{
    char *a = image("a.png", 100, 80, 3);
    free(image("keep/b.png", 100, 80, 3));
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    /* foreign files: one beside the outputs, one at an output's name of the doomed source */
    char *foreign = pmt_path(out, "notes.txt");
    ck_assert_int_eq(pmt_write_file(foreign, "mine", 4), 0);
    char *a32 = pmt_path(out, "a-32.png");
    ck_assert_int_eq(unlink(a32), 0);
    ck_assert_int_eq(pmt_write_file(a32, "user's own file", 15), 0);
    ck_assert_int_eq(unlink(a), 0);
    /* without --prune nothing is removed */
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    ck_assert_int_eq(pmt_count_files(out, "a-"), 4);
    /* a dry run says what would go and removes nothing */
    char *o = NULL, *e = NULL;
    ck_assert_int_eq(run(&o, &e, "--dry-run", "--prune", "-o", out, SIZES, in, NULL), 0);
    ck_assert_msg(strstr(o, "would remove: ") && strstr(e, "3 outputs to prune"), "%s%s", o, e);
    ck_assert_int_eq(pmt_count_files(out, "a-"), 4);
    free(o);
    free(e);
    ck_assert_int_eq(run(&o, &e, "--json", "--prune", "-o", out, SIZES, in, NULL), 0);
    tally t = count_events(o);
    ck_assert_int_eq(t.pruned, 1);
    ck_assert_int_eq(t.up_to_date, 1);
    ck_assert_msg(strstr(e, "3 pruned"), "%s", e);
    free(o);
    free(e);
    ck_assert_int_eq(pmt_count_files(out, "a-"), 1); /* the user's file at a-32.png stays */
    size_t len;
    char *kept = pmt_read_file(a32, &len);
    ck_assert_ptr_nonnull(kept);
    ck_assert_int_eq(len, 15);
    free(kept);
    ck_assert_int_eq(access(foreign, F_OK), 0);
    ck_assert_int_eq(pmt_count_files(out, "b-"), 4);
    char *record = pmt_path(out, ".pixmill/state/a.png.st");
    ck_assert_int_ne(access(record, F_OK), 0); /* its record went with it */
    free(record);
    free(foreign);
    free(a32);
    free(a);
}
END_TEST

static int decodes_fully(const char *path)
{
    int w, h, x;
    if (g_str_has_suffix(path, ".webp"))
        return pmt_webp_decode(path, &w, &h, &x) == 0;
    if (g_str_has_suffix(path, ".png"))
        return pmt_png_decode(path, &w, &h, &x) == 0;
    return 0;
}

/* Every output (not temps, not state) below out decodes with libpng/libwebp; returns count. */
static int check_all_outputs(const char *root)
{
    GHashTable *s = snapshot(root);
    GHashTableIter it;
    gpointer k, v;
    int n = 0;
    g_hash_table_iter_init(&it, s);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const char *rel = k;
        if (strstr(rel, "/.pixmill"))
            continue;
        char *p = g_strconcat(root, rel, NULL);
        ck_assert_msg(decodes_fully(p), "%s does not decode (%s)", p, (char *)v);
        g_free(p);
        n++;
    }
    g_hash_table_destroy(s);
    return n;
}

START_TEST(test_sigkill_then_rerun)
{
    enum { N = 60 };
    for (int i = 0; i < N; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "d%d/p%02d.png", i % 3, i);
        free(image(rel, 500, 400, 3));
    }
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execl(pmt_pixmill(), "pixmill", "-j", "2", "-o", out, "-s", "300", "-s", "200", "-s", "100",
              "-f", "webp", "-f", "png", in, (char *)NULL);
        _exit(127);
    }
    /* Kill it once some outputs exist and well before all 360 do. */
    int seen = 0;
    for (int tries = 0; tries < 2000 && seen < 40; tries++) {
        usleep(5000);
        seen = pmt_count_files(out, ".webp");
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFSIGNALED(status), "pixmill finished before it could be killed");
    int after_kill = check_all_outputs(out);
    ck_assert_int_lt(after_kill, N * 6);
    char *o = NULL, *e = NULL;
    ck_assert_int_eq(run(&o, &e, "--json", "-j", "2", "-o", out, "-s", "300", "-s", "200", "-s",
                         "100", "-f", "webp", "-f", "png", in, NULL),
                     0);
    tally t = count_events(o);
    ck_assert_int_eq(t.done + t.up_to_date, N);
    ck_assert_int_gt(t.done, 0);
    free(o);
    free(e);
    ck_assert_int_eq(check_all_outputs(out), N * 6);
    ck_assert_int_eq(pmt_count_files(out, ".tmp"), 0);
    ck_assert_int_eq(run(&o, &e, "--json", "-o", out, "-s", "300", "-s", "200", "-s", "100", "-f",
                         "webp", "-f", "png", in, NULL),
                     0);
    t = count_events(o);
    ck_assert_int_eq(t.up_to_date, N);
    ck_assert_int_eq(t.decodes, 0);
    free(o);
    free(e);
}
END_TEST

START_TEST(test_manifest_matches_disk)
{
    free(image("a.png", 300, 200, 3));
    free(image("sub/caf\xe9.jpg", 200, 300, 3));    /* Latin-1: not UTF-8 */
    free(image("sub/\xe6\x97\xa5.png", 50, 40, 4)); /* UTF-8, and smaller than one size */
    char *m = pmt_path(tmp, "manifest.json");
    ck_assert_int_eq(run(NULL, NULL, "--manifest", m, "--name", "{stem}-{w}.{ext}", "-o", out, "-s",
                         "128", "-s", "64", "-f", "webp", "-f", "png", in, NULL),
                     0);
    /* one text file: it ends with a newline, and only one */
    size_t mlen;
    char *mtext = pmt_read_file(m, &mlen);
    ck_assert_msg(mtext && mlen > 2 && mtext[mlen - 1] == '\n' && mtext[mlen - 2] != '\n',
                  "manifest does not end with exactly one newline");
    free(mtext);
    /* jq agrees it is JSON */
    const char *jq[] = {"/usr/bin/jq", "-e", ".sources | length == 3", m, NULL};
    ck_assert_int_eq(pmt_run_argv(jq, NULL), 0);
    JsonParser *p = json_parser_new();
    GError *err = NULL;
    ck_assert_msg(json_parser_load_from_file(p, m, &err), "%s", err ? err->message : "");
    JsonArray *sources =
        json_object_get_array_member(json_node_get_object(json_parser_get_root(p)), "sources");
    int checked = 0;
    for (guint i = 0; i < json_array_get_length(sources); i++) {
        JsonObject *s = json_array_get_object_element(sources, i);
        ck_assert_str_eq(json_object_get_string_member(s, "status"), "ok");
        JsonArray *outs = json_object_get_array_member(s, "outputs");
        for (guint k = 0; k < json_array_get_length(outs); k++) {
            JsonObject *x = json_array_get_object_element(outs, k);
            /* the url holds the exact bytes of the name */
            char *name = g_uri_unescape_string(json_object_get_string_member(x, "url"), NULL);
            char *path = pmt_path(out, name);
            struct stat sb;
            ck_assert_msg(stat(path, &sb) == 0, "%s not on disk", path);
            ck_assert_int_eq(sb.st_size, json_object_get_int_member(x, "bytes"));
            int w, h, c;
            if (g_str_has_suffix(path, ".png"))
                ck_assert_int_eq(pmt_png_decode(path, &w, &h, &c), 0);
            else
                ck_assert_int_eq(pmt_webp_decode(path, &w, &h, &c), 0);
            ck_assert_int_eq(w, json_object_get_int_member(x, "width"));
            ck_assert_int_eq(h, json_object_get_int_member(x, "height"));
            checked++;
            free(path);
            g_free(name);
        }
        JsonObject *srcset = json_object_get_object_member(s, "srcset");
        ck_assert(json_object_has_member(srcset, "webp"));
        ck_assert(json_object_has_member(srcset, "png"));
    }
    /* 2 sizes x 2 formats, but 64 and 128 make the 50x40 source alike, and {w} names them
     * alike: one output per format */
    ck_assert_int_eq(checked, 4 + 4 + 2);
    ck_assert_int_eq(pmt_count_files(out, "-"), 10);
    g_object_unref(p);
    char *text = pmt_read_file(m, NULL);
    ck_assert_msg(strstr(text, "\"sub/caf%E9-43.webp 43w, sub/caf%E9-85.webp 85w\""),
                  "srcset of caf\\xe9.jpg not found in the manifest");
    free(text);
    /* a no-op rerun writes the same manifest, byte for byte (nothing downstream re-runs) */
    char *m2 = pmt_path(tmp, "manifest2.json");
    ck_assert_int_eq(run(NULL, NULL, "--manifest", m2, "--name", "{stem}-{w}.{ext}", "-o", out,
                         "-s", "128", "-s", "64", "-f", "webp", "-f", "png", in, NULL),
                     0);
    ck_assert_int_eq(pmt_same_file_bytes(m, m2), 1);
    free(m);
    free(m2);
}
END_TEST

/* Every file below a equals the same file below b; returns how many were compared. */
static int same_trees(const char *a, const char *b)
{
    GHashTable *sa = snapshot(a);
    GHashTable *sb = snapshot(b);
    ck_assert_int_eq(g_hash_table_size(sa), g_hash_table_size(sb));
    GHashTableIter it;
    gpointer k, v;
    int n = 0;
    g_hash_table_iter_init(&it, sa);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (strstr(k, "/.pixmill"))
            continue;
        char *pa = g_strconcat(a, k, NULL), *pb = g_strconcat(b, k, NULL);
        ck_assert_msg(pmt_same_file_bytes(pa, pb) == 1, "%s and %s differ", pa, pb);
        g_free(pa);
        g_free(pb);
        n++;
    }
    g_hash_table_destroy(sa);
    g_hash_table_destroy(sb);
    return n;
}

START_TEST(test_deterministic_bytes)
{
    for (int i = 0; i < 6; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), i % 2 ? "s%d.png" : "s%d.jpg", i);
        free(image(rel, 160 + 10 * i, 120, i % 2 ? 4 : 3));
    }
    char *o1 = pmt_path(tmp, "o1"), *o2 = pmt_path(tmp, "o2");
#define ALL                                                                                        \
    "-s", "64", "-s", "32", "-f", "jpeg", "-f", "png", "-f", "webp", "-f", "avif", "-f", "heif",   \
        "-f", "gif", "-f", "tiff"
    ck_assert_int_eq(run(NULL, NULL, "-j", "1", "-o", o1, ALL, in, NULL), 0);
    sleep(1); /* another second on the clock */
    ck_assert_int_eq(run(NULL, NULL, "-j", "2", "-o", o2, ALL, in, NULL), 0);
    ck_assert_int_eq(same_trees(o1, o2), 6 * 2 * 7);
    free(o1);
    free(o2);
}
END_TEST

START_TEST(test_dry_run_writes_nothing)
{
    free(image("a.png", 100, 80, 3));
    char *b = image("b.png", 100, 80, 3);
    char *bad = pmt_path(in, "bad.png");
    ck_assert_int_eq(pmt_write_file(bad, "\x89PNG\r\n\x1a\nnot really", 18), 0);
    char *o = NULL, *e = NULL;
    /* nothing exists yet: every output would be written, the bad file would be rejected */
    ck_assert_int_eq(run(&o, &e, "--dry-run", "-o", out, SIZES, in, NULL), 1);
    ck_assert_msg(strstr(o, "would write: ") && strstr(e, "bad.png: would be rejected"), "%s%s", o,
                  e);
    ck_assert_msg(strstr(e, "2 to make") && strstr(e, "1 would be rejected"), "%s", e);
    ck_assert_int_eq(access(out, F_OK), -1); /* not even the output folder */
    free(o);
    free(e);
    ck_assert_int_eq(unlink(bad), 0);
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    ck_assert_int_eq(pmt_write_image(b, 120, 80, 3), 0);
    GHashTable *before = snapshot(out);
    ck_assert_int_eq(run(&o, &e, "--json", "--dry-run", "-o", out, SIZES, in, NULL), 0);
    tally t = count_events(o);
    ck_assert_int_eq(t.planned, 1);
    ck_assert_int_eq(t.up_to_date, 1);
    ck_assert_int_eq(t.decodes, 0);
    free(o);
    free(e);
    GHashTable *after = snapshot(out);
    ck_assert_int_eq(snapshot_changes(before, after, NULL), 0);
    g_hash_table_destroy(before);
    g_hash_table_destroy(after);
    free(b);
    free(bad);
}
END_TEST

START_TEST(test_name_templates)
{
    free(image("top.png", 200, 100, 3));
    free(image("x/y/deep.png", 100, 200, 3));
    char *e = NULL;
    /* refused before anything is made, with a reason: exit 2 */
    const char *bad[] = {"{stem}.{ext}", "../{stem}-{w}.{ext}", "{nope}-{w}.{ext}",
                         "/tmp/{stem}-{w}.{ext}", "{w}.{ext}"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        ck_assert_int_eq(run(NULL, &e, "--name", bad[i], "-o", out, SIZES, in, NULL), 2);
        ck_assert_msg(strstr(e, "name template") || strstr(e, "same name"), "%s: %s", bad[i], e);
        free(e);
        ck_assert_int_eq(access(out, F_OK), -1);
    }
    ck_assert_int_eq(
        run(NULL, &e, "--name", "{variant}/{dir}/{stem}_{w}x{h}.{ext}", "-o", out, SIZES, in, NULL),
        0);
    free(e);
    const char *want[] = {"64/top_64x32.webp", "64/top_64x32.png", "32/top_32x16.png",
                          "64/x/y/deep_32x64.webp", "32/x/y/deep_16x32.png"};
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        char *p = pmt_path(out, want[i]);
        ck_assert_msg(decodes_fully(p), "%s missing", p);
        free(p);
    }
    /* {hash}: another option, another name; the same run again, the same name */
    ck_assert_int_eq(
        run(NULL, NULL, "--name", "h/{stem}.{hash}.{ext}", "-o", out, "-f", "webp", in, NULL), 0);
    ck_assert_int_eq(run(NULL, NULL, "--name", "h/{stem}.{hash}.{ext}", "-Q", "40", "-o", out, "-f",
                         "webp", in, NULL),
                     0);
    char *h = pmt_path(out, "h");
    ck_assert_int_eq(pmt_count_files(h, "top."), 2);
    free(h);
}
END_TEST

START_TEST(test_recipe_cli)
{
    free(image("a.png", 2000, 1000, 3));
    const char *samples = getenv("PM_SAMPLES");
    char *recipe = g_build_filename(samples, "build", "web.ini", NULL);
    char *e = NULL;
    ck_assert_int_eq(run(NULL, &e, "--recipe", recipe, "-o", out, in, NULL), 0);
    free(e);
    const char *want[] = {"a-480.webp", "a-960.jpg", "a-1600.webp", "cards/a.jpg"};
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        char *p = pmt_path(out, want[i]);
        ck_assert_msg(access(p, F_OK) == 0, "%s missing", p);
        free(p);
    }
    int w, h, c;
    unsigned char rgb[3];
    char *card = pmt_path(out, "cards/a.jpg");
    ck_assert_int_eq(pmt_jpeg_decode(card, &w, &h, &c, rgb), 0);
    ck_assert_int_eq(w, 1200);
    ck_assert_int_eq(h, 630);
    /* the command line overrides the recipe: sizes replace its variants */
    char *o2 = pmt_path(tmp, "o2");
    ck_assert_int_eq(run(NULL, NULL, "--recipe", recipe, "-s", "100", "--name", "{stem}.{ext}",
                         "-f", "png", "-o", o2, in, NULL),
                     0);
    char *p = pmt_path(o2, "a.png");
    ck_assert_int_eq(pmt_png_decode(p, &w, &h, &c), 0);
    ck_assert_int_eq(w, 100);
    ck_assert_int_eq(pmt_count_files(o2, "."), 1);
    /* a broken recipe: usage error naming the key */
    char *broken = pmt_path(tmp, "broken.ini");
    ck_assert_int_eq(pmt_write_file(broken, "[defaults]\nqualty=3\n", 20), 0);
    ck_assert_int_eq(run(NULL, &e, "--recipe", broken, "-o", o2, in, NULL), 2);
    ck_assert_msg(strstr(e, "qualty"), "%s", e);
    free(e);
    free(broken);
    free(p);
    free(o2);
    free(card);
    g_free(recipe);
}
END_TEST

START_TEST(test_failure_is_never_up_to_date)
{
    free(image("good.png", 100, 80, 3));
    char *bad = pmt_path(in, "bad.png");
    ck_assert_int_eq(pmt_write_file(bad, "\x89PNG\r\n\x1a\ntruncated", 17), 0);
    ck_assert_int_eq(run(NULL, NULL, "-o", out, in, NULL), 1);
    char *e = NULL;
    ck_assert_int_eq(run(NULL, &e, "-o", out, in, NULL), 1); /* still failing, still exit 1 */
    ck_assert_msg(strstr(e, "bad.png") && strstr(e, "1 up to date"), "%s", e);
    free(e);
    free(bad);
}
END_TEST

/* Runs' markers left in the output root's state folder (.pixmill/running-<16 hex>). */
static int markers_left(void)
{
    char *dir = pmt_path(out, ".pixmill");
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += g_str_has_prefix(e->d_name, "running");
    if (d)
        closedir(d);
    free(dir);
    return n;
}

START_TEST(test_stale_temps_swept)
{
    free(image("sub/a.png", 100, 80, 3));
    ck_assert_int_eq(run(NULL, NULL, "-o", out, SIZES, in, NULL), 0);
    /* what a SIGKILLed run leaves: its marker and temps (an output's, a record's) */
    char *marker = pmt_path(out, ".pixmill/running-0123456789abcdef");
    char *t1 = pmt_path(out, "sub/.pixmill-0123456789abcdef.tmp");
    char *t2 = pmt_path(out, ".pixmill/state/sub/.pixmill-fedcba9876543210.tmp");
    char *mine = pmt_path(out, "sub/.pixmill-notes.tmp"); /* not pixmill's pattern */
    ck_assert_int_eq(pmt_write_file(marker, "", 0), 0);
    ck_assert_int_eq(pmt_write_file(t1, "half", 4), 0);
    ck_assert_int_eq(pmt_write_file(t2, "half", 4), 0);
    ck_assert_int_eq(pmt_write_file(mine, "keep", 4), 0);
    /* another run on this root (it holds the lock shared): its temps may be live, no sweep */
    char *lock = pmt_path(out, ".pixmill/lock");
    int fd = open(lock, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_SH), 0);
    char *e = NULL;
    ck_assert_int_eq(run(NULL, &e, "-o", out, SIZES, in, NULL), 0);
    ck_assert_int_eq(access(t1, F_OK), 0);
    ck_assert_int_eq(access(t2, F_OK), 0);
    free(e);
    close(fd);
    /* alone: the dead run's temps go, nothing else */
    ck_assert_int_eq(run(NULL, &e, "-o", out, SIZES, in, NULL), 0);
    ck_assert_msg(strstr(e, "2 stale temps removed"), "%s", e);
    free(e);
    ck_assert_int_ne(access(t1, F_OK), 0);
    ck_assert_int_ne(access(t2, F_OK), 0);
    ck_assert_int_eq(access(mine, F_OK), 0);
    ck_assert_int_eq(markers_left(),
                     0); /* the dead run's marker went; a clean finish leaves none */
    ck_assert_int_eq(pmt_count_files(out, "a-"), 4);
    free(marker), free(t1), free(t2), free(mine), free(lock);
}
END_TEST

/* One engine of several (or one shard of several on one root) dies while another goes on: the
 * one that finishes must not take the evidence with it, or the dead one's temps stay for good.
 * They had shared one marker, removed by the last run out. Through the library's calls as the
 * engines make them; a death is the lock's descriptor closed by the kernel, nothing else. */
START_TEST(test_dead_beside_live_is_swept)
{
    ck_assert_int_eq(g_mkdir_with_parents(out, 0777), 0);
    int rootfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(rootfd, 0);
    pm__root live, dead, next;
    int swept = -1, err = 0;
    ck_assert_int_eq(pm__root_begin(rootfd, &live, &swept), 0);
    ck_assert_int_eq(swept, 0);
    ck_assert_int_eq(pm__root_begin(rootfd, &dead, &swept), 0);
    ck_assert_int_eq(swept, 0);
    pm__temp t; /* the dying one's output, half written */
    ck_assert_int_eq(pm__publish_begin(&t, rootfd, &err), PM_OK);
    close(t.fd);
    close(dead.lockfd);          /* it dies */
    pm__root_end(rootfd, &live); /* the other finishes after it */
    ck_assert_int_eq(markers_left(), 1);
    ck_assert_int_eq(pm__root_begin(rootfd, &next, &swept), 0); /* the next run, alone */
    ck_assert_int_eq(swept, 1);
    ck_assert_int_ne(faccessat(rootfd, t.name, F_OK, 0), 0);
    pm__root_end(rootfd, &next);
    ck_assert_int_eq(markers_left(), 0);
    ck_assert_int_eq(pm__root_begin(rootfd, &next, &swept), 0); /* a clean finish: no sweep */
    ck_assert_int_eq(swept, 0);
    pm__root_end(rootfd, &next);
    close(rootfd);
}
END_TEST

/* The root's probe (a temp made and removed at the start, to prove files can be created there)
 * is made under the root's lock. Made before it, a run sweeping a dead run's temps (it holds the
 * lock alone) could take another run's live probe for one: it did, with one engine a core
 * ("3 stale temps removed" where the dead run had left 2). The thread of each engine that takes
 * the lock makes the probe: there the shared lock must come before the first temp. (strace -f
 * names threads; the workers make no probe and take no lock.) */
START_TEST(test_root_probe_under_lock)
{
    free(image("a.png", 100, 80, 3));
    char *log = pmt_path(tmp, "probe.log");
    char *e = NULL;
    ck_assert_int_eq(pmt_pixmill_traced("flock,openat", log, &e, "-o", out, SIZES, in, NULL), 0);
    char *text = pmt_read_file(log, NULL);
    ck_assert_ptr_nonnull(text);
    gchar **lines = g_strsplit(text, "\n", -1);
    GHashTable *first_temp = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTable *first_lock = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int i = 0; lines[i]; i++) {
        char *tid = g_strndup(lines[i], strcspn(lines[i], " "));
        GHashTable *t = strstr(lines[i], " flock(") && strstr(lines[i], "LOCK_SH") ? first_lock
                        : strstr(lines[i], " openat(") && strstr(lines[i], "\".pixmill-")
                            ? first_temp
                            : NULL;
        if (t && !g_hash_table_contains(t, tid))
            g_hash_table_insert(t, g_strdup(tid), GINT_TO_POINTER(i + 1));
        g_free(tid);
    }
    int both = 0;
    GHashTableIter it;
    gpointer tid, lock_line;
    g_hash_table_iter_init(&it, first_lock);
    while (g_hash_table_iter_next(&it, &tid, &lock_line)) {
        int temp_line = GPOINTER_TO_INT(g_hash_table_lookup(first_temp, tid));
        if (!temp_line)
            continue;
        both++;
        ck_assert_msg(GPOINTER_TO_INT(lock_line) < temp_line, "a temp before the root's lock: %s",
                      lines[temp_line - 1]);
    }
    ck_assert_int_ge(both, 1);
    g_hash_table_destroy(first_temp);
    g_hash_table_destroy(first_lock);
    g_strfreev(lines);
    free(text), free(log), free(e);
}
END_TEST

START_TEST(test_json_streams_while_running)
{
    /* Four slow sources: their events (~1.7 KB) fit in one stdio buffer, so unless each line is
     * flushed nothing reaches the pipe before pixmill exits. */
    for (int i = 0; i < 4; i++) {
        char rel[32];
        g_snprintf(rel, sizeof(rel), "p%02d.png", i);
        free(image(rel, 1200, 900, 3));
    }
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(pmt_pixmill(), "pixmill", "--json", "-j", "1", "-s", "1000", "-f", "avif", "-o", out,
              in, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[4096];
    /* the first event arrives through the pipe while three sources are still to come */
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    int status;
    ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "pixmill ended before its first event "
                                                       "was read: events are not streamed");
    ck_assert_msg(g_str_has_prefix(line, "{\"event\":\"done\","), "%s", line);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 143);
    fclose(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("build");
    TCase *tc = tcase_create("build");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_incremental);
    tcase_add_test(tc, test_output_damaged_or_replaced_is_rebuilt);
    tcase_add_test(tc, test_damaged_record_is_never_trusted);
    tcase_add_test(tc, test_record_names_held_to_templates);
    tcase_add_test(tc, test_prune_only_ours);
    tcase_add_test(tc, test_sigkill_then_rerun);
    tcase_add_test(tc, test_manifest_matches_disk);
    tcase_add_test(tc, test_deterministic_bytes);
    tcase_add_test(tc, test_dry_run_writes_nothing);
    tcase_add_test(tc, test_name_templates);
    tcase_add_test(tc, test_recipe_cli);
    tcase_add_test(tc, test_failure_is_never_up_to_date);
    tcase_add_test(tc, test_json_streams_while_running);
    tcase_add_test(tc, test_stale_temps_swept);
    tcase_add_test(tc, test_root_probe_under_lock);
    tcase_add_test(tc, test_dead_beside_live_is_swept);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
