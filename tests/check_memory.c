/* Memory stays flat, and long runs do not crash: peak RSS of pixmill over 20,000 tiny images is
 * within 15 % of its peak over 2,000, and over one folder of 200,000 failing files within 10 %
 * of 2,000's (from wait4's rusage of the child, which covers the engine it waited for). Only
 * in the plain build: sanitizers change memory use entirely. */
#define _GNU_SOURCE
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <sys/resource.h>
#include <vips/vips.h>
#include <zlib.h>
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

/* ---- tiny files that declare huge lengths (issue 19.3) ---- */

static void put32be(GByteArray *b, guint32 v)
{
    guint8 x[4] = {(guint8)(v >> 24), (guint8)(v >> 16), (guint8)(v >> 8), (guint8)v};
    g_byte_array_append(b, x, 4);
}

static void put32le(GByteArray *b, guint32 v)
{
    guint8 x[4] = {(guint8)v, (guint8)(v >> 8), (guint8)(v >> 16), (guint8)(v >> 24)};
    g_byte_array_append(b, x, 4);
}

static void put(GByteArray *b, const char *s, size_t n)
{
    g_byte_array_append(b, (const guint8 *)s, (guint)n);
}

/* A PNG signature and a valid 16x16 RGB IHDR, then a chunk of this type that declares
 * 0x3FFFFFFF bytes and holds five. */
static GByteArray *png_declaring(const char *type)
{
    GByteArray *b = g_byte_array_new();
    put(b, "\x89PNG\r\n\x1a\n", 8);
    const char ihdr[] = "IHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0";
    put32be(b, 13);
    put(b, ihdr, 17);
    put32be(b, (guint32)crc32(0, (const Bytef *)ihdr, 17));
    put32be(b, 0x3FFFFFFF);
    put(b, type, 4);
    put(b, "k\0\0x\x9c", 5);
    return b;
}

static void write_bytes(const char *dir, const char *name, GByteArray *b)
{
    char *p = pmt_path(dir, name);
    ck_assert_int_eq(pmt_write_file(p, b->data, b->len), 0);
    free(p);
    g_byte_array_free(b, TRUE);
}

/* Every kind: PNG chunks (the five the issue found and others), a RIFF and a WebP chunk, an
 * ISOBMFF box with a 32-bit and a 64-bit size, and one inside meta. */
static int make_hostile(const char *dir)
{
    const char *png_types[] = {"zTXt", "iTXt", "tEXt", "pCAL", "sPLT",
                               "iCCP", "eXIf", "IDAT", "PLTE", "abCd"};
    int n = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(png_types); i++) {
        char name[32];
        g_snprintf(name, sizeof(name), "png-%s.png", png_types[i]);
        write_bytes(dir, name, png_declaring(png_types[i]));
        n++;
    }
    GByteArray *b = g_byte_array_new();
    put(b, "RIFF", 4), put32le(b, 0x7FFFFFF0), put(b, "WEBPVP8X", 8), put32le(b, 10);
    put(b, "\0\0\0\0\0\0\0\0\0\0", 10);
    write_bytes(dir, "riff.webp", b);
    b = g_byte_array_new();
    put(b, "RIFF", 4), put32le(b, 30), put(b, "WEBPVP8 ", 8), put32le(b, 0x3FFFFFF0);
    put(b, "\0\0\0\0\0\0\0\0\0\0", 10);
    write_bytes(dir, "webp-chunk.webp", b);
    const char ftyp[] = "ftypheic\0\0\0\0mif1heic";
    b = g_byte_array_new();
    put32be(b, 24), put(b, ftyp, 20), put32be(b, 0x3FFFFFF0), put(b, "meta", 4);
    put(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    write_bytes(dir, "box.heic", b);
    b = g_byte_array_new();
    put32be(b, 24), put(b, "ftypavif\0\0\0\0mif1avif", 20), put32be(b, 1), put(b, "meta", 4);
    put32be(b, 1 << 8), put32be(b, 0), put(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    write_bytes(dir, "box64.avif", b);
    b = g_byte_array_new(); /* meta of 40 bytes holding an iinf that claims 1 GB */
    put32be(b, 24), put(b, ftyp, 20), put32be(b, 40), put(b, "meta", 4), put32be(b, 0);
    put32be(b, 0x3FFFFFF0), put(b, "iinf", 4), put(b, "\0\0\0\0\0\x01", 6);
    put(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 18);
    write_bytes(dir, "inner-box.heic", b);
    return n + 5;
}

/* Files whose headers claim images that a decoder holds whole, with few bytes: a progressive
 * JPEG of 64x64 whose SOF says 16000x16000 (468 bytes: libjpeg allocates every coefficient
 * from the SOF, 534 MB), and a GIF of 8000x8000 in one colour (libvips' GIF loader holds
 * 4.5 bytes a pixel). Named claim-*. */
static int make_claims(const char *dir)
{
    char *made = pmt_make_image(dir, "claim-prog.jpg[interlace]", 64, 64, 3);
    ck_assert_ptr_nonnull(made);
    free(made); /* its name carries the save options; the file is claim-prog.jpg */
    char *p = pmt_path(dir, "claim-prog.jpg");
    size_t len;
    unsigned char *d = (unsigned char *)pmt_read_file(p, &len);
    ck_assert_msg(d != NULL, "cannot read %s", p);
    int patched = 0;
    for (size_t i = 2; i + 9 < len && !patched;) {
        ck_assert_int_eq(d[i], 0xFF);
        if (d[i + 1] == 0xC2) {
            d[i + 5] = d[i + 7] = 16000 >> 8;
            d[i + 6] = d[i + 8] = 16000 & 0xFF;
            patched = 1;
        }
        i += 2 + ((size_t)d[i + 2] << 8 | d[i + 3]);
    }
    ck_assert(patched);
    ck_assert_int_eq(pmt_write_file(p, d, len), 0);
    free(d), free(p);
    VipsImage *flat;
    ck_assert_int_eq(vips_black(&flat, 8000, 8000, NULL), 0);
    char *gif = pmt_path(dir, "claim-flat.gif");
    ck_assert_int_eq(vips_gifsave(flat, gif, NULL), 0);
    g_object_unref(flat);
    free(gif);
    return 2;
}

/* Each alone: refused as truncated (or, the claims, as over the decode budget), naming the
 * file, with the engine's peak (wait4: the largest process of the tree) within --decode-budget
 * 16M + 64 MB. Before the checks, five of the PNGs took it to 1.06 GB, the JPEG to 534 MB. */
START_TEST(test_tiny_files_declaring_huge_lengths)
{
    char *dir = pmt_path(tmp, "hostile");
    pmt_mkdirs(dir);
    int n = make_hostile(dir) + make_claims(dir);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int seen = 0;
    long worst = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *src = pmt_path(dir, e->d_name), *out = pmt_path(tmp, "out-hostile");
        const char *argv[] = {pmt_pixmill(), "-q", "--decode-budget", "16M", "-s", "64", "-o", out,
                              src,           NULL};
        struct rusage ru;
        char *err = NULL;
        int rc = pmt_run((char *const *)argv, NULL, &err, &ru);
        ck_assert_msg(rc == 1, "%s: exit %d: %s", e->d_name, rc, err);
        const char *why = g_str_has_prefix(e->d_name, "claim-")
                              ? "over a configured limit (decoding it would hold about"
                              : "truncated: ";
        ck_assert_msg(err && strstr(err, src) && strstr(err, why), "%s: not refused (%s): %s",
                      e->d_name, why, err);
        ck_assert_msg(ru.ru_maxrss < (16 + 64) * 1024, "%s: peak %ld KiB", e->d_name, ru.ru_maxrss);
        worst = MAX(worst, ru.ru_maxrss);
        seen++;
        free(err), free(src), free(out);
    }
    closedir(d);
    ck_assert_int_eq(seen, n);
    fprintf(stderr, "%d files declaring huge lengths or images: worst engine peak %ld KiB\n", seen,
            worst);
    free(dir);
}
END_TEST

/* A hostile folder: those files, the decode fuzzer's corpus and damaged copies of it
 * (truncated at every eighth, bytes flipped), at -j 2, supervised: the RSS of the whole
 * process tree, summed (tests/bench/treepeak.c, $PMT_TREEPEAK), stays under 300 MB. */
START_TEST(test_hostile_folder_tree_peak)
{
    const char *treepeak = getenv("PMT_TREEPEAK"), *corpus = getenv("PMT_DECODE_CORPUS");
    ck_assert_msg(treepeak && corpus, "PMT_TREEPEAK and PMT_DECODE_CORPUS are set by ctest");
    char *dir = pmt_path(tmp, "hostile");
    pmt_mkdirs(dir);
    make_hostile(dir);
    make_claims(dir);
    GDir *cd = g_dir_open(corpus, 0, NULL);
    ck_assert_ptr_nonnull(cd);
    const char *name;
    GRand *r = g_rand_new_with_seed(19);
    while ((name = g_dir_read_name(cd)) != NULL) {
        char *p = pmt_path(corpus, name);
        size_t len;
        char *data = pmt_read_file(p, &len);
        ck_assert_ptr_nonnull(data);
        for (int k = 0; k < 8; k++) {
            char out_name[300];
            g_snprintf(out_name, sizeof(out_name), "cut%d-%s", k, name);
            char *q = pmt_path(dir, out_name);
            ck_assert_int_eq(pmt_write_file(q, data, len * (size_t)k / 8), 0);
            free(q);
            g_snprintf(out_name, sizeof(out_name), "flip%d-%s", k, name);
            q = pmt_path(dir, out_name);
            for (int f = 0; f < 4 && len; f++)
                data[g_rand_int_range(r, 0, (gint32)len)] ^=
                    (char)(1 + g_rand_int_range(r, 0, 255));
            ck_assert_int_eq(pmt_write_file(q, data, len), 0);
            free(q);
        }
        free(data), free(p);
    }
    g_dir_close(cd);
    g_rand_free(r);
    char *res = pmt_path(tmp, "treepeak.txt"), *out = pmt_path(tmp, "out-folder");
    const char *argv[] = {treepeak, res,  pmt_pixmill(), "-q", "-j", "2", "-s",
                          "64",     "-f", "webp",        "-o", out,  dir, NULL};
    char *err = NULL;
    int rc = pmt_run((char *const *)argv, NULL, &err, NULL);
    ck_assert_msg(rc == 1, "exit %d (1: some files failed): %.300s", rc, err);
    size_t len;
    char *text = pmt_read_file(res, &len);
    double wall, cpu;
    long kib;
    int status;
    ck_assert_msg(text && sscanf(text, "%lf %lf %ld %d", &wall, &cpu, &kib, &status) == 4,
                  "treepeak wrote %s", text);
    ck_assert_msg(status == 1, "pixmill exit %d on the hostile folder", status);
    fprintf(stderr, "hostile folder at -j 2: tree peak %ld KiB, %.2f s\n", kib, wall);
    ck_assert_msg(kib < 300 * 1024, "hostile folder: tree peak %ld KiB", kib);
    free(text), free(res), free(out), free(err), free(dir);
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
    tcase_add_test(tc, test_tiny_files_declaring_huge_lengths);
    tcase_add_test(tc, test_hostile_folder_tree_peak);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
