/* The scanner: nested folders, hidden entries, links, loops, FIFOs, unreadable folders (with
 * root's permission bypass dropped), 20,000 files, output-relative paths and file lists. */
#define _GNU_SOURCE
#include "internal.h"
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <glib.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct record {
    GHashTable *sources; /* path -> count */
    GHashTable *rels;    /* out_rel -> path */
    GString *events;     /* "TYPE status errno path\n" */
    GHashTable *passed;  /* path -> why, entries the walk did not take */
    int n_sources;
    int n_regular_stat; /* sources that came with a stat of a regular file */
    int n_misplaced;    /* sources whose pm__where does not lead to the file met */
} record;

/* Does where (the physical folder, the name in it, the root) lead to the file met? Checked
 * with a plain lstat of the joined path and realpath: another route than the scan's. */
static int where_leads_to(const pm__where *w, const char *path)
{
    char *joined = strcmp(w->dir, "/") == 0 ? g_strconcat("/", w->name, NULL)
                                            : g_strconcat(w->dir, "/", w->name, NULL);
    char *real_dir = realpath(w->dir, NULL);
    struct stat a, b, d;
    int ok = lstat(joined, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
             a.st_ino == b.st_ino && S_ISREG(a.st_mode) && real_dir &&
             strcmp(real_dir, w->dir) == 0 && stat(w->dir, &d) == 0 && d.st_dev == w->dir_dev &&
             d.st_ino == w->dir_ino && w->root_len <= strlen(w->dir) &&
             (w->dir[w->root_len] == '\0' || w->dir[w->root_len] == '/');
    if (!ok)
        fprintf(stderr, "misplaced: %s -> %s (root %.*s)\n", path, joined, (int)w->root_len,
                w->dir);
    free(real_dir);
    g_free(joined);
    return ok;
}

static int rec_source(const char *path, const char *out_rel, int explicit_file,
                      const struct stat *st, const pm__where *where, int place, void *ud)
{
    record *r = ud;
    (void)explicit_file, (void)place;
    r->n_regular_stat += st && S_ISREG(st->st_mode);
    r->n_misplaced += !where_leads_to(where, path);
    gpointer old = g_hash_table_lookup(r->sources, path);
    g_hash_table_insert(r->sources, g_strdup(path), GINT_TO_POINTER(GPOINTER_TO_INT(old) + 1));
    g_hash_table_insert(r->rels, g_strdup(out_rel), g_strdup(path));
    r->n_sources++;
    return 0;
}

static void rec_event(pm_event_type type, const char *path, int status, int err, void *ud)
{
    record *r = ud;
    g_string_append_printf(r->events, "%d %s %d %s\n", (int)type, pm_status_name(status), err,
                           path);
}

static void rec_passed(const char *path, const char *why, void *ud)
{
    record *r = ud;
    ck_assert_ptr_null(g_hash_table_lookup(r->passed, path)); /* once */
    g_hash_table_insert(r->passed, g_strdup(path), g_strdup(why));
}

static record *rec_new(void)
{
    record *r = g_new0(record, 1);
    r->sources = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    r->rels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    r->events = g_string_new(NULL);
    r->passed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return r;
}

static void rec_free(record *r)
{
    g_hash_table_destroy(r->sources);
    g_hash_table_destroy(r->rels);
    g_string_free(r->events, TRUE);
    g_hash_table_destroy(r->passed);
    g_free(r);
}

static record *scan(const char *path, const char *rel_prefix, int hidden)
{
    record *r = rec_new();
    pm__scan_config cfg = {0};
    cfg.include_hidden = hidden;
    pm__scan_sink sink = {rec_source, rec_event, r, rec_passed};
    pm__scan_path(&cfg, path, rel_prefix, &sink);
    return r;
}

static int seen(record *r, const char *dir, const char *name)
{
    char *p = pmt_path(dir, name);
    int n = GPOINTER_TO_INT(g_hash_table_lookup(r->sources, p));
    free(p);
    return n;
}

static void touch(const char *dir, const char *name)
{
    char *p = pmt_path(dir, name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    pmt_mkdirs(p);
    *slash = '/';
    ck_assert_int_eq(pmt_write_file(p, "x", 1), 0);
    free(p);
}

static char *tmp;

static void setup(void)
{
    tmp = pmt_mkdtemp();
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    pmt_rmtree(tmp);
    free(tmp);
}

START_TEST(test_nested_and_rel_paths)
{
    touch(tmp, "a.jpg");
    touch(tmp, "sub/b.PNG");
    touch(tmp, "sub/deeper/c.webp");
    touch(tmp, "sub/deeper/d.tar.gz.jpeg");
    touch(tmp, "notes.txt"); /* not an image name: not a candidate */
    touch(tmp, "noext");
    record *r = scan(tmp, NULL, 0);
    ck_assert_int_eq(r->n_sources, 4);
    ck_assert_int_eq(r->n_regular_stat, 4); /* each with its lstat (link counts) */
    ck_assert_int_eq(seen(r, tmp, "a.jpg"), 1);
    ck_assert_int_eq(seen(r, tmp, "sub/b.PNG"), 1);
    ck_assert_int_eq(seen(r, tmp, "sub/deeper/c.webp"), 1);
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "a"));
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "sub/b"));
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "sub/deeper/c"));
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "sub/deeper/d.tar.gz"));
    ck_assert_uint_eq(r->events->len, 0);
    rec_free(r);
}
END_TEST

START_TEST(test_explicit_file_keeps_own_name)
{
    touch(tmp, "x/y/photo.jpeg");
    char *p = pmt_path(tmp, "x/y/photo.jpeg");
    record *r = scan(p, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "photo"));
    rec_free(r);
    /* a listed file keeps its listed folders */
    r = scan(p, "x/y/photo.jpeg", 0);
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, "x/y/photo"));
    rec_free(r);
    free(p);
}
END_TEST

START_TEST(test_hidden_skipped_unless_asked)
{
    touch(tmp, "visible.jpg");
    touch(tmp, ".hidden.jpg");
    touch(tmp, ".dir/inside.jpg");
    touch(tmp, ".pixmill-0123456789abcdef.tmp");
    record *r = scan(tmp, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_int_eq(seen(r, tmp, "visible.jpg"), 1);
    rec_free(r);
    r = scan(tmp, NULL, 1);
    ck_assert_int_eq(r->n_sources, 3);
    ck_assert_int_eq(seen(r, tmp, ".hidden.jpg"), 1);
    ck_assert_int_eq(seen(r, tmp, ".dir/inside.jpg"), 1);
    rec_free(r); /* our own temp files are never sources, even with hidden */
}
END_TEST

START_TEST(test_symlinks_loop_and_dangling)
{
    touch(tmp, "a/b/one.jpg");
    touch(tmp, "a/two.jpg");
    char *up = pmt_path(tmp, "a/b/up");
    ck_assert_int_eq(symlink("..", up), 0);
    char *dang = pmt_path(tmp, "a/dangling.jpg");
    ck_assert_int_eq(symlink("/nonexistent/nowhere.jpg", dang), 0);
    char *to_file = pmt_path(tmp, "a/link-to-one.jpg");
    ck_assert_int_eq(symlink("b/one.jpg", to_file), 0);
    record *r = scan(tmp, NULL, 0);
    /* physical walk: each real file once, links not followed, no hang */
    ck_assert_int_eq(r->n_sources, 2);
    ck_assert_int_eq(seen(r, tmp, "a/b/one.jpg"), 1);
    ck_assert_int_eq(seen(r, tmp, "a/two.jpg"), 1);
    ck_assert_ptr_nonnull(strstr(r->events->str, "PM_ERR_SYMLINK 0"));
    ck_assert_ptr_nonnull(strstr(r->events->str, "dangling.jpg"));
    ck_assert_ptr_nonnull(strstr(r->events->str, "link-to-one.jpg"));
    rec_free(r);
    free(up);
    free(dang);
    free(to_file);
}
END_TEST

START_TEST(test_symlinked_root_is_followed)
{
    touch(tmp, "real/p.png");
    char *link = pmt_path(tmp, "alias");
    ck_assert_int_eq(symlink("real", link), 0);
    record *r = scan(link, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);   /* a path the user names is followed, as find -H */
    ck_assert_int_eq(r->n_misplaced, 0); /* and known by its physical place */
    rec_free(r);
    /* a named file through a link to a folder, and a named link to a file */
    char *via = pmt_path(link, "p.png"), *flink = pmt_path(tmp, "f.png");
    ck_assert_int_eq(symlink("real/p.png", flink), 0);
    r = scan(via, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_int_eq(r->n_misplaced, 0);
    rec_free(r);
    r = scan(flink, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_int_eq(r->n_misplaced, 0);
    rec_free(r);
    free(via), free(flink);
    free(link);
}
END_TEST

START_TEST(test_fifo_skipped_without_blocking)
{
    touch(tmp, "ok.jpg");
    char *fifo = pmt_path(tmp, "x.jpg");
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    record *r = scan(tmp, NULL, 0);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_ptr_nonnull(strstr(r->events->str, "PM_ERR_NOT_REGULAR"));
    ck_assert_ptr_nonnull(strstr(r->events->str, "x.jpg"));
    rec_free(r);
    /* named directly, too: skipped, not opened for reading */
    r = scan(fifo, NULL, 0);
    ck_assert_int_eq(r->n_sources, 0);
    ck_assert_ptr_nonnull(strstr(r->events->str, "PM_ERR_NOT_REGULAR"));
    rec_free(r);
    free(fifo);
}
END_TEST

/* Root reads anything: a child drops to nobody, proves the drop took effect with a probe
 * (LIBVIPS-NOTES), scans, and reports through its exit code: 0 pass, 1 fail, 77 cannot drop.
 * The parent asserts; the fixture, still root, cleans up. */
static char *closed_dir;

static int scan_as_nobody(void)
{
    const char *closed = closed_dir;
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
                           setresuid(65534, 65534, 65534) != 0))
        return PMT_CANNOT_RUN;
    int fd = open(closed, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        close(fd);
        return PMT_CANNOT_RUN;
    }
    record *r = scan(tmp, NULL, 0);
    char *expect = g_strdup_printf("%d PM_ERR_SCAN %d %s\n", PM_EVENT_SCAN_ERROR, EACCES, closed);
    int ok = r->n_sources == 2 && seen(r, tmp, "open/a.jpg") == 1 && seen(r, tmp, "z.jpg") == 1 &&
             strstr(r->events->str, expect) != NULL;
    if (!ok)
        fprintf(stderr, "sources %d, events:\n%s", r->n_sources, r->events->str);
    g_free(expect);
    rec_free(r);
    return ok ? 0 : 1;
}

START_TEST(test_unreadable_folder_reported_siblings_seen)
{
    touch(tmp, "open/a.jpg");
    touch(tmp, "closed/secret.jpg");
    touch(tmp, "z.jpg");
    char *closed = pmt_path(tmp, "closed");
    ck_assert_int_eq(chmod(tmp, 0755), 0);
    ck_assert_int_eq(chmod(closed, 0), 0);
    closed_dir = closed;
    int rc = pmt_in_child(scan_as_nobody);
    if (rc == PMT_CANNOT_RUN)
        fprintf(stderr, "SKIP: the permission bypass cannot be dropped here\n");
    else
        ck_assert_int_eq(rc, 0);
    free(closed);
}
END_TEST

/* A real directory loop under a physical walk needs a bind mount: a child makes one in its own
 * mount namespace (exit 77 when this machine does not allow that). */
static int scan_bind_loop(void)
{
    char *inner = pmt_path(tmp, "a/b");
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(tmp, inner, NULL, MS_BIND, NULL) != 0)
        return PMT_CANNOT_RUN;
    record *r = scan(tmp, NULL, 0);
    char *expect = g_strdup_printf("%d PM_ERR_LOOP 0 %s\n", PM_EVENT_SKIPPED, inner);
    int ok = r->n_sources == 2 && seen(r, tmp, "a/x.jpg") == 1 && seen(r, tmp, "top.jpg") == 1 &&
             strstr(r->events->str, expect) != NULL;
    if (!ok)
        fprintf(stderr, "sources %d, events:\n%s", r->n_sources, r->events->str);
    g_free(expect);
    rec_free(r);
    free(inner);
    return ok ? 0 : 1;
}

START_TEST(test_bind_mount_loop_detected)
{
    touch(tmp, "a/x.jpg");
    touch(tmp, "top.jpg");
    char *inner = pmt_path(tmp, "a/b");
    pmt_mkdirs(inner);
    free(inner);
    int rc = pmt_in_child(scan_bind_loop);
    if (rc == PMT_CANNOT_RUN)
        fprintf(stderr, "SKIP: no mount namespace here\n");
    else
        ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(test_twenty_thousand_files_each_once)
{
    int n = 20000;
    char *big = pmt_path(tmp, "big");
    pmt_mkdirs(big);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%05d.jpg", i);
        char *p = pmt_path(big, name);
        FILE *f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
        free(p);
    }
    record *r = scan(tmp, NULL, 0);
    ck_assert_int_eq(r->n_sources, n);
    ck_assert_int_eq(r->n_misplaced, 0);
    ck_assert_uint_eq(g_hash_table_size(r->sources), (guint)n);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, r->sources);
    while (g_hash_table_iter_next(&it, &k, &v))
        ck_assert_int_eq(GPOINTER_TO_INT(v), 1);
    rec_free(r);
    free(big);
}
END_TEST

START_TEST(test_output_root_not_entered)
{
    touch(tmp, "in.jpg");
    touch(tmp, "thumbs/in.jpg");
    char *thumbs = pmt_path(tmp, "thumbs");
    struct stat st;
    ck_assert_int_eq(stat(thumbs, &st), 0);
    record *r = rec_new();
    pm__scan_config cfg = {0};
    cfg.have_exclude = 1;
    cfg.exclude_dev = st.st_dev;
    cfg.exclude_ino = st.st_ino;
    pm__scan_sink sink = {rec_source, rec_event, r, rec_passed};
    pm__scan_path(&cfg, tmp, NULL, &sink);
    ck_assert_int_eq(r->n_sources, 1);
    ck_assert_int_eq(seen(r, tmp, "in.jpg"), 1);
    rec_free(r);
    free(thumbs);
}
END_TEST

START_TEST(test_file_list_nul_and_mirroring)
{
    touch(tmp, "d1/p.jpg");
    touch(tmp, "d2/q.png");
    touch(tmp, "d2/inner/r.webp");
    char *d1p = pmt_path(tmp, "d1/p.jpg"), *d2 = pmt_path(tmp, "d2");
    GString *list = g_string_new(NULL);
    g_string_append(list, d1p);
    g_string_append_c(list, '\0');
    g_string_append(list, d2);
    g_string_append_c(list, '\0');
    g_string_append(list, "../escape.jpg");
    g_string_append_c(list, '\0');
    FILE *f = fmemopen(list->str, list->len, "r");
    record *r = rec_new();
    pm__scan_config cfg = {0};
    pm__scan_sink sink = {rec_source, rec_event, r, rec_passed};
    pm__scan_list(&cfg, f, '\0', &sink);
    fclose(f);
    ck_assert_int_eq(r->n_sources, 3);
    ck_assert_int_eq(r->n_misplaced, 0);
    /* listed paths are mirrored as listed (leading '/' dropped) */
    char *rel = g_strdup_printf("%s/d1/p", tmp + 1);
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, rel));
    g_free(rel);
    rel = g_strdup_printf("%s/d2/inner/r", tmp + 1);
    ck_assert_ptr_nonnull(g_hash_table_lookup(r->rels, rel));
    g_free(rel);
    ck_assert_ptr_nonnull(strstr(r->events->str, "PM_ERR_USAGE 0 ../escape.jpg"));
    rec_free(r);
    g_string_free(list, TRUE);
    free(d1p);
    free(d2);
}
END_TEST

START_TEST(test_rel_from_listed)
{
    char *out;
    ck_assert_int_eq(pm__scan_rel_from_listed("./a//b/./c.jpg", &out), PM_OK);
    ck_assert_str_eq(out, "a/b/c.jpg");
    g_free(out);
    ck_assert_int_eq(pm__scan_rel_from_listed("/abs/x.png", &out), PM_OK);
    ck_assert_str_eq(out, "abs/x.png");
    g_free(out);
    ck_assert_int_eq(pm__scan_rel_from_listed("a/../../x.png", &out), PM_ERR_USAGE);
    ck_assert_int_eq(pm__scan_rel_from_listed("..", &out), PM_ERR_USAGE);
    ck_assert_int_eq(pm__scan_rel_from_listed("a/..b/x.png", &out), PM_OK);
    g_free(out);
}
END_TEST

START_TEST(test_missing_input_is_scan_error)
{
    char *p = pmt_path(tmp, "nope.jpg");
    record *r = scan(p, NULL, 0);
    ck_assert_int_eq(r->n_sources, 0);
    ck_assert_ptr_nonnull(strstr(r->events->str, "PM_ERR_SCAN 2 "));
    rec_free(r);
    free(p);
}
END_TEST

/* Every entry a walk meets is accounted for exactly once: a source, an event (skipped, scan
 * error), or passed over with a reason (issue 19: a folder of BMP, ICO, JXL, RAW and .txt
 * files gave "0 processed", and -v named nothing). The oracle is a listing of the tree by
 * readdir here, entering every folder that is not a dot folder. Generated trees, 6 seeds. */
static void list_tree(const char *dir, GPtrArray *out)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = g_build_filename(dir, e->d_name, NULL);
        struct stat st;
        ck_assert_int_eq(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode) && e->d_name[0] != '.') {
            list_tree(p, out);
            g_free(p);
        } else {
            g_ptr_array_add(out, p);
        }
    }
    closedir(d);
}

START_TEST(test_every_entry_accounted_for)
{
    const char *names[] = {"a.jpg",  "b.PNG",  "c.bmp", "d.ico", "e.jxl",  "f.CR2",     "notes.txt",
                           "README", "g.webp", "h.tif", "noext", "i.heic", "j.jpeg.bak"};
    for (guint32 seed = 1; seed <= 6; seed++) {
        GRand *rng = g_rand_new_with_seed(seed);
        char *top = pmt_mkdtemp();
        const char *dirs[] = {"", "x", "x/y", ".hidden", "z"};
        for (int i = 0; i < 40; i++) {
            const char *dir = dirs[g_rand_int_range(rng, 0, G_N_ELEMENTS(dirs))];
            char name[64];
            int how = g_rand_int_range(rng, 0, 8);
            if (how == 0) /* one of pixmill's temporary names */
                g_snprintf(name, sizeof(name), ".pixmill-%016x.tmp", (unsigned)i);
            else
                g_snprintf(name, sizeof(name), "%s%d-%s", how == 1 ? "." : "", i,
                           names[g_rand_int_range(rng, 0, G_N_ELEMENTS(names))]);
            char *d = g_build_filename(top, dir, NULL), *p = g_build_filename(d, name, NULL);
            pmt_mkdirs(d);
            int kind = g_rand_int_range(rng, 0, 8);
            if (kind == 0)
                ck_assert_int_eq(symlink("/etc/passwd", p), 0);
            else if (kind == 1)
                ck_assert_int_eq(mkfifo(p, 0644), 0);
            else
                ck_assert_int_eq(pmt_write_file(p, "x", 1), 0);
            g_free(d), g_free(p);
        }
        record *r = scan(top, NULL, 0);
        GPtrArray *met = g_ptr_array_new_with_free_func(g_free);
        list_tree(top, met);
        gchar **ev = g_strsplit(r->events->str, "\n", -1);
        int n_events = 0;
        for (int k = 0; ev[k]; k++)
            n_events += *ev[k] != '\0';
        for (guint i = 0; i < met->len; i++) {
            const char *p = g_ptr_array_index(met, i);
            int n = GPOINTER_TO_INT(g_hash_table_lookup(r->sources, p)) +
                    (g_hash_table_lookup(r->passed, p) != NULL);
            for (int k = 0; ev[k]; k++) {
                const char *sp = strrchr(ev[k], ' ');
                n += sp && strcmp(sp + 1, p) == 0;
            }
            ck_assert_msg(n == 1, "seed %u: %s accounted for %d times", seed, p, n);
        }
        ck_assert_int_eq((int)met->len,
                         r->n_sources + (int)g_hash_table_size(r->passed) + n_events);
        g_strfreev(ev);
        g_ptr_array_free(met, TRUE);
        rec_free(r);
        pmt_rmtree(top);
        free(top);
        g_rand_free(rng);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scan");
    TCase *tc = tcase_create("walk");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nested_and_rel_paths);
    tcase_add_test(tc, test_every_entry_accounted_for);
    tcase_add_test(tc, test_explicit_file_keeps_own_name);
    tcase_add_test(tc, test_hidden_skipped_unless_asked);
    tcase_add_test(tc, test_symlinks_loop_and_dangling);
    tcase_add_test(tc, test_symlinked_root_is_followed);
    tcase_add_test(tc, test_fifo_skipped_without_blocking);
    tcase_add_test(tc, test_unreadable_folder_reported_siblings_seen);
    tcase_add_test(tc, test_bind_mount_loop_detected);
    tcase_add_test(tc, test_twenty_thousand_files_each_once);
    tcase_add_test(tc, test_output_root_not_entered);
    tcase_add_test(tc, test_file_list_nul_and_mirroring);
    tcase_add_test(tc, test_rel_from_listed);
    tcase_add_test(tc, test_missing_input_is_scan_error);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
