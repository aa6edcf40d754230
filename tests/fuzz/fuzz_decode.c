/* libFuzzer target: one source through pixmill's own job (header checks, limits, the one
 * decode, two sizes x PNG and WebP, publish), libvips at concurrency 1. The input is written to
 * a file and processed as a user's photo would be. Whatever the bytes: no crash, no leak, a
 * result that says done or failed, and when done every output is a complete file. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir, *src, *outdir;
static int outfd = -1;
static pm_options opts;
static pm__variant variants[PM_MAX_VARIANTS];
static int n_variants;

static void must(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    if (pm_global_init(argv && *argv ? (*argv)[0] : "fuzz") != PM_OK)
        abort();
    dir = g_dir_make_tmp("pm-fuzz-XXXXXX", NULL);
    src = g_build_filename(dir, "source.img", NULL);
    outdir = g_build_filename(dir, "out", NULL);
    mkdir(outdir, 0700);
    outfd = open(outdir, O_RDONLY | O_DIRECTORY);
    pm_options_init(&opts);
    opts.output_dir = outdir;
    opts.n_sizes = 2;
    pm_size_parse("64", &opts.sizes[0]);
    pm_size_parse("16x", &opts.sizes[1]);
    opts.formats[0] = PM_FORMAT_PNG;
    opts.formats[1] = PM_FORMAT_WEBP;
    opts.n_formats = 2;
    opts.max_pixels = 4000000; /* small inputs: keep each run fast */
    opts.force = 1;
    must(pm__variants_resolve(&opts, variants, &n_variants, NULL, 0) == PM_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(src, "wb");
    must(f != NULL);
    if (size)
        must(fwrite(data, 1, size, f) == size);
    fclose(f);
    pm__process_ctx ctx = {0};
    ctx.opts = &opts;
    ctx.variants = variants;
    ctx.n_variants = n_variants;
    ctx.profile_hash = "-";
    ctx.out_rootfd = outfd;
    ctx.out_root = outdir;
    char *phys = realpath(dir, NULL);
    must(phys != NULL);
    struct stat dst;
    must(stat(phys, &dst) == 0);
    pm__job job = {.source = src,
                   .out_rel = (char *)"source",
                   .dir = phys,
                   .name = (char *)"source.img",
                   .root_len = strlen(phys),
                   .root_dev = dst.st_dev,
                   .dir_dev = dst.st_dev,
                   .dir_ino = dst.st_ino,
                   .explicit_file = 1,
                   .origin = PM__FROM_NAMED,
                   .input = 0,
                   .place = -1,
                   .seq = 1};
    pm__result *r = g_new0(pm__result, 1);
    pm__worker *w = pm__worker_new();
    pm__process_job(&ctx, w, &job, r);
    pm__worker_free(w);
    free(phys);
    pm__process_finish(&ctx, r);
    must(r->ev.type == PM_EVENT_DONE || r->ev.type == PM_EVENT_FAILED ||
         r->ev.type == PM_EVENT_SKIPPED);
    if (r->ev.type == PM_EVENT_DONE) {
        must(r->ev.n_outputs >= 1);
        for (int i = 0; i < r->ev.n_outputs; i++) {
            struct stat st;
            must(stat(r->outputs[i].path, &st) == 0 &&
                 (uint64_t)st.st_size == r->outputs[i].bytes && st.st_size > 0);
        }
    }
    pm__result_free(r);
    return 0;
}
