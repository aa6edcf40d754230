/* The floor for any libvips tool on many small files: per file only what vipsthumbnail itself
 * does (vips_thumbnail, then vips_jpegsave), one libvips thread per image, with no process
 * start, no temp file, no fsync, no record, no scan. Used by peers.sh (libvips-floor,
 * libvips-floor-threads).
 *
 *   floor OUTDIR BOX [THREADS] < NUL-separated paths
 *
 * Each output is OUTDIR/<index>.jpg (Q80, stripped). With THREADS > 1, that many threads in
 * this one process take the files in turn, with libvips' vector paths off as in pixmill
 * (liborc 0.4.33 corrupts its heap when two threads compile at once); run it beside
 * VIPS_NOVECTOR=1 processes to see what sharing one process costs libvips itself.
 * Exit 1 if any file fails. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>
/* after vips.h: vector.h relies on its macros */
#include <vips/vector.h>

static const char *outdir;
static int box;
static GPtrArray *paths;
static gint next_index, failed;

static void *thumbnail_files(void *unused)
{
    (void)unused;
    for (;;) {
        gint k = g_atomic_int_add(&next_index, 1);
        if (k >= (gint)paths->len)
            break;
        const char *path = g_ptr_array_index(paths, k);
        VipsImage *t = NULL;
        char *out = g_strdup_printf("%s/%d.jpg", outdir, k);
        if (vips_thumbnail(path, &t, box, "height", box, NULL) != 0 ||
            vips_jpegsave(t, out, "Q", 80, "strip", TRUE, NULL) != 0) {
            fprintf(stderr, "%s: %s", path, vips_error_buffer());
            vips_error_clear();
            g_atomic_int_set(&failed, 1);
        }
        if (t)
            g_object_unref(t);
        g_free(out);
    }
    vips_thread_shutdown();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || VIPS_INIT(argv[0]) != 0) {
        fprintf(stderr, "usage: floor OUTDIR BOX [THREADS] < NUL-separated paths\n");
        return 2;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    outdir = argv[1];
    box = atoi(argv[2]);
    int threads = argc == 4 ? atoi(argv[3]) : 1;
    if (threads < 1 || threads > 64)
        return 2;
    if (threads > 1)
        vips_vector_set_enabled(FALSE);
    paths = g_ptr_array_new_with_free_func(g_free);
    char *line = NULL;
    size_t cap = 0;
    while (getdelim(&line, &cap, '\0', stdin) > 0)
        g_ptr_array_add(paths, g_strdup(line));
    free(line);
    pthread_t tid[64];
    for (int i = 1; i < threads; i++)
        pthread_create(&tid[i], NULL, thumbnail_files, NULL);
    thumbnail_files(NULL);
    for (int i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
    g_ptr_array_free(paths, TRUE);
    vips_shutdown();
    return failed;
}
