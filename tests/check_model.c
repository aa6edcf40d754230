/* The reference for build-step mode: a seeded, model-based differential test. A small tree of
 * tiny sources (nested folders, PNG/JPEG/WebP content under .png/.jpg/.webp names, a corrupt
 * one now and then) and a set of options are edited at random, one edit a step; after each
 * step an incremental run (--prune, into the output folder every earlier step used) must leave
 * exactly what a clean run into an empty folder leaves: the same files with the same bytes and
 * no others, the same folders, the same manifest bytes and the same exit code. The clean run is
 * the oracle; nothing here knows how pixmill decides what is current.
 *
 * $PMT_MODEL_STEPS sets the steps of each seed (default 60, 4 seeds: 240 steps), $PMT_MODEL_SEEDS
 * the number of seeds, $PMT_MODEL_SEED one seed to replay; a failure prints its seed, step and
 * the edits that led there. The long sweep: tests/model-sweep.sh. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#define MAX_SOURCES 12

typedef struct source {
    char rel[96]; /* below src/ */
    int kind;     /* the bytes' format: 0 PNG, 1 JPEG, 2 WebP */
    int w, h;
    guint32 seed;
    int corrupt;
} source;

typedef struct model {
    source src[MAX_SOURCES];
    int n;
    int sizes;   /* bit i: size_values[i] */
    int formats; /* bit i: format_values[i] */
    int quality, name, fit;
    GRand *rng;
    GString *log; /* the edits so far, for the failure message */
    char *top, *srcdir, *outdir, *keepdir, *manifest;
} model;

static const int size_values[] = {12, 20, 32};
static const char *const format_values[] = {"webp", "png", "jpeg", "same"};
static const char *const name_values[] = {
    NULL, "{stem}-{variant}.{ext}", "{variant}/{dir}/{stem}.{ext}", "{dir}/{stem}-{hash}.{ext}"};
static const char *const fit_values[] = {"inside", "cover", "contain", "fill"};
static const char *const folders[] = {"", "a", "a/b", "c", "c/d e"};
static const char *const stems[] = {"x", "y", "IMG_1", "p q", "z"};
static const char *const exts[] = {"png", "jpg", "webp", "PNG"};

static int rnd(model *m, int n)
{
    return g_rand_int_range(m->rng, 0, n);
}

static char *src_path(const model *m, const char *rel)
{
    return g_build_filename(m->srcdir, rel, NULL);
}

/* A source's bytes: random pixels from its seed, encoded as its kind. PNGs are stored
 * uncompressed and unfiltered, so that new pixels at the same size give a file of the same
 * length. A corrupt source is a valid one cut in half. */
static void write_source(model *m, const source *s)
{
    size_t n = (size_t)s->w * (size_t)s->h * 3;
    unsigned char *px = g_malloc(n);
    GRand *r = g_rand_new_with_seed(s->seed);
    for (size_t i = 0; i < n; i++)
        px[i] = (unsigned char)g_rand_int_range(r, 0, 256);
    g_rand_free(r);
    VipsImage *im = vips_image_new_from_memory(px, n, s->w, s->h, 3, VIPS_FORMAT_UCHAR);
    ck_assert_ptr_nonnull(im);
    void *buf = NULL;
    size_t len = 0;
    int rc = s->kind == 0   ? vips_pngsave_buffer(im, &buf, &len, "compression", 0, "filter",
                                                  VIPS_FOREIGN_PNG_FILTER_NONE, NULL)
             : s->kind == 1 ? vips_jpegsave_buffer(im, &buf, &len, "Q", 90, NULL)
                            : vips_webpsave_buffer(im, &buf, &len, "Q", 80, NULL);
    ck_assert_msg(rc == 0, "encode: %s", vips_error_buffer());
    g_object_unref(im);
    g_free(px);
    char *p = src_path(m, s->rel);
    char *dir = g_path_get_dirname(p);
    pmt_mkdirs(dir);
    ck_assert_int_eq(pmt_write_file(p, buf, s->corrupt ? len / 2 : len), 0);
    g_free(buf), g_free(dir), g_free(p);
}

static int find_source(const model *m, const char *rel)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->src[i].rel, rel) == 0)
            return i;
    return -1;
}

static void random_rel(model *m, char *rel, size_t size)
{
    const char *f = folders[rnd(m, G_N_ELEMENTS(folders))];
    g_snprintf(rel, size, "%s%s%s.%s", f, *f ? "/" : "", stems[rnd(m, G_N_ELEMENTS(stems))],
               exts[rnd(m, G_N_ELEMENTS(exts))]);
}

static void add_source(model *m)
{
    if (m->n >= MAX_SOURCES)
        return;
    source *s = &m->src[m->n];
    random_rel(m, s->rel, sizeof(s->rel));
    if (find_source(m, s->rel) >= 0)
        return;
    s->kind = rnd(m, 3);
    s->w = 8 + rnd(m, 40);
    s->h = 8 + rnd(m, 40);
    s->seed = g_rand_int(m->rng);
    s->corrupt = 0;
    m->n++;
    write_source(m, s);
    g_string_append_printf(m->log, " add(%s %dx%d)", s->rel, s->w, s->h);
}

static void remove_at(model *m, int i)
{
    m->src[i] = m->src[--m->n];
}

/* Sets a file's times back to what they were (a tool that keeps mtimes: cp -p, rsync -t). */
static void restore_times(const char *path, const struct stat *before)
{
    struct timespec ts[2] = {before->st_atim, before->st_mtim};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* One random edit of the tree or the options. */
static void edit(model *m)
{
    int what = rnd(m, 17);
    if (m->n == 0 && what < 10)
        what = 10;
    int i = m->n ? rnd(m, m->n) : 0;
    source *s = &m->src[i];
    char *p = m->n ? src_path(m, s->rel) : NULL;
    struct stat st;
    switch (what) {
    case 0: /* new pixels, same dimensions */
        s->seed = g_rand_int(m->rng);
        write_source(m, s);
        g_string_append_printf(m->log, " pixels(%s)", s->rel);
        break;
    case 1: /* new pixels, same byte size, the mtime put back */
        ck_assert_int_eq(stat(p, &st), 0);
        s->seed = g_rand_int(m->rng);
        write_source(m, s);
        restore_times(p, &st);
        g_string_append_printf(m->log, " same-size-and-mtime(%s)", s->rel);
        break;
    case 2: /* new dimensions */
        s->w = 8 + rnd(m, 40);
        s->h = 8 + rnd(m, 40);
        write_source(m, s);
        g_string_append_printf(m->log, " dims(%s %dx%d)", s->rel, s->w, s->h);
        break;
    case 3: /* another format under the same name */
        s->kind = (s->kind + 1 + rnd(m, 2)) % 3;
        write_source(m, s);
        g_string_append_printf(m->log, " kind(%s %d)", s->rel, s->kind);
        break;
    case 4: /* touch */
        ck_assert_int_eq(utimensat(AT_FDCWD, p, NULL, 0), 0);
        g_string_append_printf(m->log, " touch(%s)", s->rel);
        break;
    case 5: /* delete */
        ck_assert_int_eq(unlink(p), 0);
        g_string_append_printf(m->log, " delete(%s)", s->rel);
        remove_at(m, i);
        break;
    case 6: { /* rename a file, maybe into another folder */
        char rel[96];
        random_rel(m, rel, sizeof(rel));
        if (find_source(m, rel) >= 0)
            break;
        char *q = src_path(m, rel), *dir = g_path_get_dirname(q);
        pmt_mkdirs(dir);
        ck_assert_int_eq(rename(p, q), 0);
        g_string_append_printf(m->log, " rename(%s -> %s)", s->rel, rel);
        g_strlcpy(s->rel, rel, sizeof(s->rel));
        g_free(q), g_free(dir);
        break;
    }
    case 7: { /* rename or move a folder that holds this source */
        char *slash = strrchr(s->rel, '/');
        if (!slash)
            break;
        char *from = g_strndup(s->rel, (gsize)(slash - s->rel));
        const char *to_names[] = {"moved", "a/moved", "c/d e/deep"};
        const char *to = to_names[rnd(m, G_N_ELEMENTS(to_names))];
        size_t fl = strlen(from);
        char *fp = src_path(m, from), *tp = src_path(m, to);
        struct stat ts;
        /* not into itself, not onto a folder that exists */
        if ((strncmp(to, from, fl) == 0 && (to[fl] == '/' || to[fl] == '\0')) ||
            lstat(tp, &ts) == 0) {
            g_free(from), g_free(fp), g_free(tp);
            break;
        }
        char *tdir = g_path_get_dirname(tp);
        pmt_mkdirs(tdir);
        ck_assert_int_eq(rename(fp, tp), 0);
        for (int k = 0; k < m->n; k++) {
            char *r = m->src[k].rel;
            if (strncmp(r, from, fl) == 0 && r[fl] == '/') {
                char *nr = g_strconcat(to, r + fl, NULL);
                g_strlcpy(m->src[k].rel, nr, sizeof(m->src[k].rel));
                g_free(nr);
            }
        }
        g_string_append_printf(m->log, " move-folder(%s -> %s)", from, to);
        g_free(from), g_free(fp), g_free(tp), g_free(tdir);
        break;
    }
    case 8: /* a corrupt source appears, or is fixed */
    case 9:
        s->corrupt = !s->corrupt;
        if (!s->corrupt)
            s->seed = g_rand_int(m->rng);
        write_source(m, s);
        g_string_append_printf(m->log, " %s(%s)", s->corrupt ? "corrupt" : "fix", s->rel);
        break;
    case 10:
    case 11:
        add_source(m);
        break;
    case 12:
        m->quality = m->quality == 60 ? 85 : 60;
        g_string_append_printf(m->log, " -Q %d", m->quality);
        break;
    case 13: { /* a size added or dropped (never the last) */
        int b = 1 << rnd(m, G_N_ELEMENTS(size_values));
        if (m->sizes != b)
            m->sizes ^= b;
        g_string_append_printf(m->log, " sizes=%x", m->sizes);
        break;
    }
    case 14: { /* a format added or dropped (never the last) */
        int b = 1 << rnd(m, G_N_ELEMENTS(format_values));
        if (m->formats != b)
            m->formats ^= b;
        g_string_append_printf(m->log, " formats=%x", m->formats);
        break;
    }
    case 15:
        m->name = rnd(m, G_N_ELEMENTS(name_values));
        g_string_append_printf(m->log, " name=%s",
                               name_values[m->name] ? name_values[m->name] : "-");
        break;
    case 16:
        m->fit = rnd(m, G_N_ELEMENTS(fit_values));
        g_string_append_printf(m->log, " fit=%s", fit_values[m->fit]);
        break;
    }
    g_free(p);
}

/* Runs pixmill on src/ into outdir with the model's options; returns the exit status. */
static int run(model *m, int prune, char **err)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(a, g_strdup(pmt_pixmill()));
    for (int i = 0; i < (int)G_N_ELEMENTS(size_values); i++)
        if (m->sizes & (1 << i))
            g_ptr_array_add(a, g_strdup_printf("-s%d", size_values[i]));
    for (int i = 0; i < (int)G_N_ELEMENTS(format_values); i++)
        if (m->formats & (1 << i))
            g_ptr_array_add(a, g_strdup_printf("-f%s", format_values[i]));
    g_ptr_array_add(a, g_strdup_printf("-Q%d", m->quality));
    g_ptr_array_add(a, g_strdup_printf("--fit=%s", fit_values[m->fit]));
    if (name_values[m->name])
        g_ptr_array_add(a, g_strdup_printf("--name=%s", name_values[m->name]));
    if (prune)
        g_ptr_array_add(a, g_strdup("--prune"));
    g_ptr_array_add(a, g_strdup_printf("--manifest=%s", m->manifest));
    g_ptr_array_add(a, g_strdup("-q"));
    g_ptr_array_add(a, g_strdup("-o"));
    g_ptr_array_add(a, g_strdup(m->outdir));
    g_ptr_array_add(a, g_strdup(m->srcdir));
    g_ptr_array_add(a, NULL);
    unlink(m->manifest);
    int rc = pmt_run((char *const *)a->pdata, NULL, err, NULL);
    g_ptr_array_free(a, TRUE);
    return rc;
}

/* What a run leaves: every folder and file below dir outside .pixmill, files with a checksum
 * of their bytes, sorted; then the manifest's bytes. */
static GPtrArray *listing_lines;
static size_t listing_root;

static int list_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    const char *rel = path + listing_root;
    if (strstr(path, "/.pixmill") || !*rel)
        return 0;
    if (type == FTW_D) {
        g_ptr_array_add(listing_lines, g_strdup_printf("%s/", rel));
    } else if (S_ISREG(st->st_mode)) {
        size_t n = 0;
        char *data = pmt_read_file(path, &n);
        char *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, n);
        g_ptr_array_add(listing_lines, g_strdup_printf("%s %zu %.16s", rel, n, sum));
        free(data), g_free(sum);
    } else {
        g_ptr_array_add(listing_lines, g_strdup_printf("%s (not a file)", rel));
    }
    return 0;
}

static int cmp_lines(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The manifest, with libvips' detail of each error cut off: that text is best effort (its
 * buffer is shared by the workers, so a line can come from another file's failure at -j 2);
 * pixmill's own reason before it must agree. */
static void cut_error_detail(char *man)
{
    for (char *e = man; (e = strstr(e, "\"error\" : \"")) != NULL;) {
        char *end = strchr(e, '\n'), *paren = strstr(e, " (");
        if (end && paren && paren < end)
            memmove(paren, end - 2, strlen(end - 2) + 1); /* keep the closing quote and comma */
        e += 10;
    }
}

static char *what_is_left(const model *m)
{
    listing_lines = g_ptr_array_new_with_free_func(g_free);
    listing_root = strlen(m->outdir);
    nftw(m->outdir, list_one, 32, FTW_PHYS);
    g_ptr_array_sort(listing_lines, cmp_lines);
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < listing_lines->len; i++)
        g_string_append_printf(s, "%s\n", (char *)g_ptr_array_index(listing_lines, i));
    g_ptr_array_free(listing_lines, TRUE);
    size_t n = 0;
    char *man = pmt_read_file(m->manifest, &n);
    if (man)
        cut_error_detail(man);
    g_string_append_printf(s, "--- manifest ---\n%s", man ? man : "(none)\n");
    free(man);
    return g_string_free(s, FALSE);
}

/* The first line where a and b differ, for the message. */
static char *first_difference(const char *a, const char *b)
{
    gchar **la = g_strsplit(a, "\n", -1), **lb = g_strsplit(b, "\n", -1);
    char *d = NULL;
    for (int i = 0; !d; i++) {
        if (!la[i] || !lb[i] || strcmp(la[i], lb[i]) != 0)
            d = g_strdup_printf("line %d: incremental '%s', clean '%s'", i + 1,
                                la[i] ? la[i] : "(end)", lb[i] ? lb[i] : "(end)");
    }
    g_strfreev(la), g_strfreev(lb);
    return d;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* One seed: the steps, each checked against a clean run. Returns the steps run. */
static int run_seed(guint32 seed, int steps)
{
    model m = {0};
    m.rng = g_rand_new_with_seed(seed);
    m.log = g_string_new(NULL);
    m.top = pmt_mkdtemp();
    m.srcdir = pmt_path(m.top, "src");
    m.outdir = pmt_path(m.top, "out");
    m.keepdir = pmt_path(m.top, "keep");
    m.manifest = pmt_path(m.top, "manifest.json");
    pmt_mkdirs(m.srcdir);
    m.sizes = 1;
    m.formats = 1;
    m.quality = 60;
    for (int i = 0; i < 6; i++)
        add_source(&m);
    int step;
    for (step = 1; step <= steps; step++) {
        g_string_append_printf(m.log, "\n  step %d:", step);
        int edits = 1 + rnd(&m, 2);
        for (int e = 0; e < edits; e++)
            edit(&m);
        char *err_i = NULL, *err_c = NULL;
        int rc_i = run(&m, 1, &err_i);
        char *left_i = what_is_left(&m);
        ck_assert_int_eq(rename(m.outdir, m.keepdir), 0);
        int rc_c = run(&m, 0, &err_c);
        char *left_c = what_is_left(&m);
        pmt_rmtree(m.outdir);
        ck_assert_int_eq(rename(m.keepdir, m.outdir), 0);
        char *diff = strcmp(left_i, left_c) ? first_difference(left_i, left_c) : NULL;
        if (rc_i != rc_c || diff)
            fprintf(stderr,
                    "check_model: seed %u step %d: incremental exit %d, clean exit %d; %s\n"
                    "edits:%s\nincremental stderr: %s\nclean stderr: %s\nincremental:\n%s"
                    "clean:\n%s",
                    seed, step, rc_i, rc_c, diff ? diff : "same files", m.log->str,
                    err_i ? err_i : "", err_c ? err_c : "", left_i, left_c);
        ck_assert_msg(rc_i == rc_c && !diff,
                      "seed %u step %d (replay: PMT_MODEL_SEED=%u PMT_MODEL_STEPS=%d): incremental "
                      "exit %d, clean exit %d; %.300s (details on stderr)",
                      seed, step, seed, step, rc_i, rc_c, diff ? diff : "same files");
        ck_assert_msg(rc_i == 0 || rc_i == 1, "seed %u step %d: exit %d: %.300s", seed, step, rc_i,
                      err_i);
        free(err_i), free(err_c), g_free(left_i), g_free(left_c);
    }
    pmt_rmtree(m.top);
    free(m.top), free(m.srcdir), free(m.outdir), free(m.keepdir), free(m.manifest);
    g_string_free(m.log, TRUE);
    g_rand_free(m.rng);
    return step - 1;
}

START_TEST(test_incremental_equals_clean)
{
    pmt_vips_init();
    int steps = env_int("PMT_MODEL_STEPS", 60) / pmt_scale_divisor();
    const char *one = getenv("PMT_MODEL_SEED");
    if (one) {
        run_seed((guint32)strtoul(one, NULL, 10), steps ? steps : 1);
        return;
    }
    int seeds = env_int("PMT_MODEL_SEEDS", 4), total = 0;
    guint32 base = (guint32)env_int("PMT_MODEL_BASE", 1);
    for (int k = 0; k < seeds; k++)
        total += run_seed(base + (guint32)k, steps ? steps : 1);
    fprintf(stderr, "check_model: %d steps over %d seeds, each against a clean run\n", total,
            seeds);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("differential");
    tcase_set_timeout(tc, 1800);
    tcase_add_test(tc, test_incremental_equals_clean);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return pmt_run_suite(model_suite());
}
