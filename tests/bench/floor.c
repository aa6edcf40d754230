/* The floor for any libvips tool on many small files: one process, one libvips thread, and per
 * file only what vipsthumbnail itself does (vips_thumbnail, then vips_jpegsave), with no
 * process start, no temp file, no fsync, no record, no scan. Used by floor.sh.
 *
 *   floor OUTDIR BOX < NUL-separated paths
 *
 * Each output is OUTDIR/<index>.jpg (Q80, stripped). Exit 1 if any file fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

int main(int argc, char **argv)
{
    if (argc != 3 || VIPS_INIT(argv[0]) != 0) {
        fprintf(stderr, "usage: floor OUTDIR BOX < NUL-separated paths\n");
        return 2;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    int box = atoi(argv[2]), failed = 0;
    char *line = NULL;
    size_t cap = 0;
    long k = 0;
    while (getdelim(&line, &cap, '\0', stdin) > 0) {
        VipsImage *t = NULL;
        char *out = g_strdup_printf("%s/%ld.jpg", argv[1], k++);
        if (vips_thumbnail(line, &t, box, "height", box, NULL) != 0 ||
            vips_jpegsave(t, out, "Q", 80, "strip", TRUE, NULL) != 0) {
            fprintf(stderr, "%s: %s", line, vips_error_buffer());
            vips_error_clear();
            failed = 1;
        }
        if (t)
            g_object_unref(t);
        g_free(out);
    }
    free(line);
    vips_shutdown();
    return failed;
}
