/* The command line -> a cli_args: the options into a pm_options (a --recipe first, whatever
 * its place, every other option overriding it), how to show events, the supervisor's
 * settings, and the --engine-* options a supervisor gives its engine. Every usage error is
 * found here, before anything is touched; --help and --version are answered here. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: pixmill [OPTION]... -o DIR INPUT...\n"
    "Turn images into resized copies, many at a time. INPUT: files and folders (folders are\n"
    "walked; the tree below each is mirrored under DIR). Inputs are never modified; each output\n"
    "appears atomically (temp file, fsync, rename).\n"
    "\n"
    "  -o, --output=DIR        output folder (required; created if missing)\n"
    "      --name=TEMPLATE     output path below DIR from {stem} {ext} {w} {h} {variant}\n"
    "                          {dir} {hash} (a short hash of the source's bytes and the\n"
    "                          output's options); without {dir}, in the source's mirrored\n"
    "                          folder. Default {stem}.{ext}; {stem}-{variant}.{ext} for several\n"
    "      --recipe=FILE       variants and options from an INI file (samples/build/web.ini);\n"
    "                          options given here override it\n"
    "      --preset=NAME       a built-in recipe: small, medium, large (800, 1280, 1920 px),\n"
    "                          email, web, square; '--preset help' says what each makes\n"
    "  -s, --size=GEOMETRY     box: N (NxN), WxH, Wx, xH (default 256), then at most one of\n"
    "                          > only shrink (the default), < only enlarge, ! exactly WxH,\n"
    "                          ^ cover the box; or N% (scale), N@ (at most N pixels).\n"
    "                          Repeatable: every size x every format, all from one decode;\n"
    "                          with several sizes, names get the size: photo-320.jpg\n"
    "  -f, --format=FORMAT     jpeg, png, webp, avif, heif, gif, tiff, or same (default: the\n"
    "                          source's own format, PNG where it cannot be written). Repeatable\n"
    "  -Q, --quality=N         JPEG/WebP quality 1..100 (default 80); AVIF/HEIF (default 50)\n"
    "      --effort=N          1 (fastest) .. 10 (smallest files) for WebP, AVIF, HEIC, and\n"
    "                          PNG/GIF palettes (default: each format's own)\n"
    "      --lossless          lossless WebP, AVIF and HEIC\n"
    "      --progressive       progressive JPEG, interlaced PNG and GIF\n"
    "      --subsample=MODE    chroma subsampling: auto (default), on, off\n"
    "      --palette           PNG quantised to an 8-bit palette (much smaller, lossy)\n"
    "      --animated          keep every frame of animated sources in GIF and WebP outputs\n"
    "                          (default: the first frame)\n"
    "      --fit=MODE          inside (default), cover (crop to the box), contain (pad to the\n"
    "                          box), fill (stretch to the box), outside (cover, no crop)\n"
    "      --crop=GRAVITY      what cover keeps: centre (default), north, south, east, west,\n"
    "                          northeast, northwest, southeast, southwest, attention, entropy\n"
    "      --background=COLOR  #rgb, #rrggbb, #rrggbbaa, white (default), black, transparent:\n"
    "                          behind transparent pixels in JPEG, and contain's padding\n"
    "      --auto-swap         turn the box to the photo's orientation (1280x720 takes a\n"
    "                          portrait photo as 720x1280)\n"
    "      --no-rotate         ignore EXIF orientation (default: upright, tag dropped)\n"
    "      --profile=P         srgb (default: convert through the embedded profile), p3\n"
    "                          (convert and attach Display P3), keep (the source's own space\n"
    "                          and profile), or an ICC file to convert to and attach\n"
    "      --intent=I          relative (default), perceptual, saturation, absolute\n"
    "      --keep=LIST         metadata to keep: none (default), icc, exif, xmp, all, or a\n"
    "                          list like icc,exif (EXIF orientation is rewritten to 1)\n"
    "      --force             rebuild outputs that are up to date (by default a source whose\n"
    "                          outputs are all current is skipped: same bytes, same options)\n"
    "      --dry-run           read headers only; print what would be written, skipped or\n"
    "                          rejected, and why; write nothing\n"
    "      --prune             after the run, remove outputs pixmill made from sources that are\n"
    "                          gone (never a file it did not make)\n"
    "      --manifest=FILE     write a JSON manifest of every source and its outputs (srcset)\n"
    "      --json              print one JSON event per line on stdout\n"
    "      --timeout=SECONDS   stop and report a file still being worked on after this long;\n"
    "                          the batch goes on (default 300; 0: none). A file that crashes\n"
    "                          its decoder is reported too: the batch runs in a child process\n"
    "      --no-isolate        run the batch in this process (a decoder crash ends the run)\n"
    "      --low-memory        hold less memory for more time: one engine process, heavy\n"
    "                          decodes within 64M, freed buffers given back to the system\n"
    "  -j, --jobs=N            worker threads (default: usable cores)\n"
    "      --queue=N           bounded queue capacity (default: 4 x jobs, at least 16)\n"
    "      --max-pixels=N      refuse images whose width x height x pages exceed N, checked\n"
    "                          from the header before decoding (default 268402689; 0: no cap)\n"
    "      --max-file-size=N   refuse sources larger than N bytes (k, M, G suffixes) before\n"
    "                          reading them (default: no limit)\n"
    "      --decode-budget=N   bytes (k, M, G) that decodes holding a whole image (progressive\n"
    "                          JPEG, interlaced PNG, HEIC/AVIF) may take at once, estimated\n"
    "                          from headers; a larger one is refused (default 256M; 0: none)\n"
    "      --max-pages=N       refuse sources with more than N frames or pages, from the\n"
    "                          header (default 10000; 0: no limit)\n"
    "      --fail-on=LEVEL     none, truncated, error (default) or warning: how strict the\n"
    "                          decoder is; a file that fails gets no output\n"
    "      --hidden            also walk dot files and dot folders\n"
    "      --allow=FORMAT      open an untrusted format's loader (blocked by default): svg,\n"
    "                          pdf, magick, jp2k, jxl, ppm, fits, openexr, ..., tiff. Repeatable\n"
    "      --files-from=FILE   read input paths from FILE ('-' for stdin), one per line;\n"
    "                          the listed path is mirrored under DIR\n"
    "  -0, --null              paths in --files-from are separated by NUL, not newline\n"
    "  -q, --quiet             print only errors\n"
    "  -v, --verbose           also print each output and each skipped entry\n"
    "  -h, --help              show this help\n"
    "  -V, --version           show the version\n"
    "\n"
    "Exit status: 0 every requested output exists and is current; 1 some files failed (each\n"
    "named on stderr), the rest done; 2 usage error, nothing touched; 3 fatal (e.g. output\n"
    "folder not writable); 130/143 interrupted by SIGINT/SIGTERM. Full reference: man pixmill\n";

/* "DEV:INO,DEV:INO" (files an earlier engine crashed on) into pairs, appended to ids. */
static int parse_id_list(const char *text, GArray *ids)
{
    gchar **parts = g_strsplit(text, ",", -1);
    int ok = 1;
    for (int i = 0; parts[i] && ok; i++) {
        guint64 id[2];
        char *end;
        id[0] = g_ascii_strtoull(parts[i], &end, 10);
        ok = end != parts[i] && *end == ':';
        if (ok) {
            const char *p = end + 1;
            id[1] = g_ascii_strtoull(p, &end, 10);
            ok = end != p && *end == '\0';
        }
        if (ok)
            g_array_append_vals(ids, id, 2);
    }
    g_strfreev(parts);
    return ok ? 0 : -1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pixmill: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'pixmill --help' for more information.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* Bytes, or with a k/M/G suffix (powers of 1024). 0, or -1 when text is not that. */
static int parse_bytes(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = g_ascii_strtoull(text, &end, 10);
    unsigned long long mult = *end == 'k'   ? 1ull << 10
                              : *end == 'M' ? 1ull << 20
                              : *end == 'G' ? 1ull << 30
                                            : 1;
    if (mult > 1)
        end++;
    if (!*text || *text == '-' || errno || *end || n > UINT64_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

/* Whole-string decimal in [lo, hi]. */
static int parse_long(const char *text, long long lo, long long hi, long long *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < lo || v > hi || text[0] == ' ' || text[0] == '+')
        return -1;
    *out = v;
    return 0;
}

/* --low-memory (tests/bench/README.md): one engine, heavy decodes within 64 MiB (one progressive
 * 18 MP JPEG's coefficients are 72 MB: such files go one at a time); the malloc settings that
 * go with it are main.c's. */
#define LOW_MEMORY_BUDGET ((uint64_t)64 << 20)

void cli_args_drop_recipe(cli_args *a)
{
    pm_recipe_free(a->recipe);
    a->recipe = NULL;
}

void cli_args_free(cli_args *a)
{
    cli_args_drop_recipe(a);
    g_strfreev(a->given);
    a->given = NULL;
    if (a->skip_ids)
        g_array_free(a->skip_ids, TRUE);
    a->skip_ids = NULL;
}

int cli_parse_args(int argc, char **argv, int stdin_closed, cli_args *a)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"size", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'f'},
        {"quality", required_argument, NULL, 'Q'},
        {"jobs", required_argument, NULL, 'j'},
        {"queue", required_argument, NULL, 'q' + 256},
        {"max-pixels", required_argument, NULL, 'm' + 256},
        {"fail-on", required_argument, NULL, 'F' + 256},
        {"hidden", no_argument, NULL, 'H' + 256},
        {"fit", required_argument, NULL, 'f' + 256},
        {"crop", required_argument, NULL, 'c' + 256},
        {"background", required_argument, NULL, 'b' + 256},
        {"auto-swap", no_argument, NULL, 'a' + 256},
        {"no-rotate", no_argument, NULL, 'r' + 256},
        {"profile", required_argument, NULL, 'p' + 256},
        {"intent", required_argument, NULL, 'i' + 256},
        {"keep", required_argument, NULL, 'k' + 256},
        {"allow", required_argument, NULL, 'A' + 256},
        {"effort", required_argument, NULL, 'e' + 256},
        {"lossless", no_argument, NULL, 'l' + 256},
        {"progressive", no_argument, NULL, 'P' + 256},
        {"subsample", required_argument, NULL, 's' + 256},
        {"palette", no_argument, NULL, 'T' + 256},
        {"animated", no_argument, NULL, 'N' + 256},
        {"files-from", required_argument, NULL, 'L' + 256},
        {"null", no_argument, NULL, '0'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"name", required_argument, NULL, 'n' + 256},
        {"recipe", required_argument, NULL, 'R' + 256},
        {"preset", required_argument, NULL, 'E' + 256},
        {"force", no_argument, NULL, 'B' + 256},
        {"dry-run", no_argument, NULL, 'D' + 256},
        {"prune", no_argument, NULL, 'X' + 256},
        {"manifest", required_argument, NULL, 'M' + 256},
        {"json", no_argument, NULL, 'J' + 256},
        {"timeout", required_argument, NULL, 't' + 256},
        {"max-file-size", required_argument, NULL, 'z' + 256},
        {"max-pages", required_argument, NULL, 'g' + 256},
        {"decode-budget", required_argument, NULL, 'y' + 256},
        {"no-isolate", no_argument, NULL, 'I' + 256},
        {"low-memory", no_argument, NULL, 'W' + 256},
        /* between the supervisor and its engine (see supervise.c) */
        {"engine-fd", required_argument, NULL, 1000},
        {"engine-skip", required_argument, NULL, 1003},
        {"engine-only", required_argument, NULL, 1004},
        {"engine-lists", required_argument, NULL, 1005},
        {"engine-sweep", no_argument, NULL, 1006},
        {"engine-lane", required_argument, NULL, 1007},
        {"engine-check", required_argument, NULL, 1008},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof(*a));
    pm_options_init(&a->opts);
    a->timeout = 300;
    a->isolate = 1;
    a->engine_fd = -1;
    a->delim = '\n';
    int n_sizes = 0, n_formats = 0; /* the first -s / -f replaces the default */
    int budget_given = 0;
    long long v;
    int ch;
    opterr = 0;
    /* getopt permutes argv: the supervisor hands its engine the command line as given */
    a->given = g_strdupv(argv);
    a->skip_ids = g_array_new(FALSE, FALSE, sizeof(guint64));
    /* A recipe first, whatever its place: every other option overrides it. getopt_long keeps
     * global state: fine here, before any thread exists. */
    while (
        (ch = getopt_long(argc, argv, ":o:s:f:Q:j:0qvhV", longopts, // NOLINT(concurrency-mt-unsafe)
                          NULL)) != -1) {
        if (ch != 'R' + 256 && ch != 'E' + 256)
            continue;
        int preset = ch == 'E' + 256;
        if (preset && strcmp(optarg, "help") == 0) {
            puts("Presets (--preset NAME; options given beside it override it):");
            for (int i = 0; pm_preset_name(i); i++)
                printf("  %-8s %s\n", pm_preset_name(i), pm_preset_summary(i));
            return CLI_EXIT_OK;
        }
        if (a->recipe && preset != a->recipe_is_preset)
            return cli_usage_error("--preset and --recipe: give one of them (a recipe file can "
                                   "hold what a preset does)");
        char why[512];
        cli_args_drop_recipe(a);
        a->recipe_is_preset = preset;
        if ((preset ? pm_recipe_preset(&a->recipe, optarg, why, sizeof(why))
                    : pm_recipe_load(&a->recipe, optarg, why, sizeof(why))) != PM_OK)
            return cli_usage_error("%s", why);
    }
    pm_recipe_apply(a->recipe, &a->opts);
    optind = 0; /* glibc: a full rescan */
    while (
        (ch = getopt_long(argc, argv, ":o:s:f:Q:j:0qvhV", longopts, // NOLINT(concurrency-mt-unsafe)
                          NULL)) != -1) {
        switch (ch) {
        case 'R' + 256:
        case 'E' + 256:
            break; /* read above */
        case 'n' + 256:
            a->opts.name_template = optarg;
            for (int i = 0; i < a->opts.n_variants; i++)
                a->opts.variants[i].name_template = NULL;
            break;
        case 'B' + 256:
            a->opts.force = 1;
            break;
        case 'D' + 256:
            a->opts.dry_run = 1;
            a->view.dry_run = 1;
            break;
        case 'X' + 256:
            a->opts.prune = 1;
            break;
        case 'M' + 256:
            if (!*optarg)
                return cli_usage_error("empty --manifest");
            a->opts.manifest_path = optarg;
            break;
        case 'J' + 256:
            a->view.json = 1;
            break;
        case 't' + 256: {
            char *end;
            a->timeout = g_ascii_strtod(optarg, &end);
            if (!*optarg || *end || !(a->timeout >= 0) || a->timeout > 1e6)
                return cli_usage_error("invalid timeout '%s' (want seconds, 0 for none)", optarg);
            break;
        }
        case 'I' + 256:
            a->isolate = 0;
            break;
        case 'W' + 256:
            a->low_memory = 1;
            break;
        case 'z' + 256:
            if (parse_bytes(optarg, &a->opts.max_file_size))
                return cli_usage_error("invalid max-file-size '%s' (want bytes, or N k, M, G)",
                                       optarg);
            break;
        case 'y' + 256:
            if (parse_bytes(optarg, &a->opts.decode_budget))
                return cli_usage_error("invalid decode-budget '%s' (want bytes, or N k, M, G)",
                                       optarg);
            budget_given = 1;
            break;
        case 'g' + 256:
            if (parse_long(optarg, 0, INT32_MAX, &v))
                return cli_usage_error("invalid max-pages '%s' (want 0..2147483647)", optarg);
            a->opts.max_pages = (int)v;
            break;
        case 1000:
            if (parse_long(optarg, 0, 1 << 20, &v))
                return cli_usage_error("invalid --engine-fd");
            a->engine_fd = (int)v;
            a->opts.journal_fd = a->engine_fd;
            a->view.engine = 1;
            break;
        case 1003:
            if (parse_id_list(optarg, a->skip_ids) != 0)
                return cli_usage_error("invalid --engine-skip");
            break;
        case 1004:
            if (parse_long(optarg, 1, INT64_MAX - 1, &v))
                return cli_usage_error("invalid --engine-only");
            a->engine_only = (uint64_t)v;
            break;
        case 1006:
            a->engine_sweep = 1;
            break;
        case 1008: { /* BELOW:DIGEST (hex) */
            char *end;
            a->check_below = g_ascii_strtoull(optarg, &end, 10);
            if (end == optarg || *end != ':')
                return cli_usage_error("invalid --engine-check");
            const char *hex = end + 1;
            a->check_digest = g_ascii_strtoull(hex, &end, 16);
            if (end == hex || *end)
                return cli_usage_error("invalid --engine-check");
            break;
        }
        case 1007: /* LANES,JOBS,RECV_FD,SEND_FD (-1: another lane scans) */
            if (sscanf(optarg, "%d,%d,%d,%d", &a->opts.lanes, &a->engine_lane_jobs,
                       &a->opts.lane_recv_fd, &a->opts.lane_send_fd) != 4 ||
                a->opts.lanes < 2 || a->engine_lane_jobs < 1 || a->opts.lane_recv_fd < 0)
                return cli_usage_error("invalid --engine-lane");
            break;
        case 1005: {
            gchar **parts = g_strsplit(optarg, ",", 64);
            for (int i = 0; parts[i] && a->n_engine_lists < CLI_MAX_LISTS; i++)
                a->engine_lists[a->n_engine_lists++] = atoi(parts[i]);
            g_strfreev(parts);
            break;
        }
        case 'o':
            if (!*optarg)
                return cli_usage_error("empty output folder");
            if (a->opts.output_dir)
                return cli_usage_error("-o given twice ('%s' and '%s'): one output folder a run",
                                       a->opts.output_dir, optarg);
            a->opts.output_dir = optarg;
            break;
        case 's':
            a->opts.n_variants = 0; /* sizes given here replace a recipe's variants */
            if (n_sizes == PM_MAX_SIZES)
                return cli_usage_error("too many sizes (at most %d)", PM_MAX_SIZES);
            if (pm_size_parse(optarg, &a->opts.sizes[n_sizes++]) != PM_OK)
                return cli_usage_error(
                    "invalid size '%s' (want N, WxH, Wx or xH, 1..100000, and one "
                    "of > < ! ^; or N%% or N@)",
                    optarg);
            break;
        case 'f':
            for (int i = 0; i < a->opts.n_variants; i++)
                a->opts.variants[i].n_formats = 0;
            if (n_formats == PM_MAX_FORMATS)
                return cli_usage_error("too many formats (at most %d)", PM_MAX_FORMATS);
            if (pm_format_parse(optarg, &a->opts.formats[n_formats++]) != PM_OK)
                return cli_usage_error(
                    "unknown format '%s' (want jpeg, png, webp, avif, heif, gif, "
                    "tiff or same)",
                    optarg);
            break;
        case 'Q':
            if (parse_long(optarg, 1, 100, &v))
                return cli_usage_error("invalid quality '%s' (want 1..100)", optarg);
            a->opts.quality = (int)v;
            for (int i = 0; i < a->opts.n_variants; i++)
                a->opts.variants[i].quality = 0;
            break;
        case 'j':
            if (parse_long(optarg, 1, 1024, &v))
                return cli_usage_error("invalid jobs '%s' (want 1..1024)", optarg);
            a->opts.jobs = (int)v;
            break;
        case 'q' + 256:
            if (parse_long(optarg, 1, 1000000, &v))
                return cli_usage_error("invalid queue capacity '%s' (want 1..1000000)", optarg);
            a->opts.queue_capacity = (int)v;
            break;
        case 'm' + 256:
            if (parse_long(optarg, 0, INT64_MAX, &v))
                return cli_usage_error("invalid max-pixels '%s'", optarg);
            a->opts.max_pixels = (uint64_t)v;
            break;
        case 'F' + 256:
            if (pm_fail_on_parse(optarg, &a->opts.fail_on) != PM_OK)
                return cli_usage_error(
                    "invalid fail-on '%s' (want none, truncated, error, warning)", optarg);
            break;
        case 'H' + 256:
            a->opts.include_hidden = 1;
            break;
        case 'f' + 256:
            if (pm_fit_parse(optarg, &a->opts.fit) != PM_OK)
                return cli_usage_error(
                    "invalid fit '%s' (want inside, cover, contain, fill, outside)", optarg);
            for (int i = 0; i < a->opts.n_variants; i++)
                a->opts.variants[i].size.fit = PM_FIT_DEFAULT;
            break;
        case 'c' + 256:
            if (pm_crop_parse(optarg, &a->opts.crop) != PM_OK)
                return cli_usage_error("invalid crop '%s' (want centre, north, ..., southwest, "
                                       "attention, entropy)",
                                       optarg);
            for (int i = 0; i < a->opts.n_variants; i++)
                a->opts.variants[i].crop = PM_INHERIT;
            break;
        case 'b' + 256:
            if (pm_color_parse(optarg, a->opts.background) != PM_OK)
                return cli_usage_error("invalid colour '%s' (want #rgb, #rrggbb, #rrggbbaa, white, "
                                       "black, transparent)",
                                       optarg);
            break;
        case 'a' + 256:
            a->opts.auto_swap = 1;
            break;
        case 'r' + 256:
            a->opts.no_rotate = 1;
            break;
        case 'p' + 256:
            if (pm_profile_parse(optarg, &a->opts.profile, &a->opts.profile_file) != PM_OK)
                return cli_usage_error("invalid profile '%s'", optarg);
            if (a->opts.profile == PM_PROFILE_FILE && access(optarg, R_OK) != 0)
                return cli_usage_error("cannot read profile '%s'", optarg);
            break;
        case 'i' + 256:
            if (pm_intent_parse(optarg, &a->opts.intent) != PM_OK)
                return cli_usage_error(
                    "invalid intent '%s' (want relative, perceptual, saturation, "
                    "absolute)",
                    optarg);
            break;
        case 'e' + 256:
            if (parse_long(optarg, 1, 10, &v))
                return cli_usage_error("invalid effort '%s' (want 1..10)", optarg);
            a->opts.effort = (int)v;
            break;
        case 'l' + 256:
            a->opts.lossless = 1;
            break;
        case 'P' + 256:
            a->opts.progressive = 1;
            break;
        case 's' + 256:
            if (pm_subsample_parse(optarg, &a->opts.subsample) != PM_OK)
                return cli_usage_error("invalid subsample '%s' (want auto, on, off)", optarg);
            break;
        case 'T' + 256:
            a->opts.palette = 1;
            break;
        case 'N' + 256:
            a->opts.animated = 1;
            break;
        case 'A' + 256:
            if (a->n_allow == CLI_MAX_ALLOW)
                return cli_usage_error("too many --allow");
            a->allow[a->n_allow++] = optarg;
            break;
        case 'k' + 256:
            if (pm_keep_parse(optarg, &a->opts.keep) != PM_OK)
                return cli_usage_error("invalid keep '%s' (want none, icc, exif, xmp, all, or a "
                                       "comma-separated list)",
                                       optarg);
            break;
        case 'L' + 256:
            if (!*optarg)
                return cli_usage_error("empty --files-from");
            if (a->n_files_from == CLI_MAX_LISTS)
                return cli_usage_error("too many --files-from");
            a->files_from[a->n_files_from++] = optarg;
            break;
        case '0':
            a->delim = '\0';
            break;
        case 'q':
            a->view.quiet = 1;
            break;
        case 'v':
            a->view.verbose = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        case 'V':
            printf("pixmill %s\n", pm_version_string());
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!a->opts.output_dir)
        return cli_usage_error("no output folder: give -o DIR");
    if (n_sizes)
        a->opts.n_sizes = n_sizes;
    if (n_formats)
        a->opts.n_formats = n_formats;
    if (optind == argc && a->n_files_from == 0)
        return cli_usage_error("no input: give files or folders, or --files-from");
    for (int i = 0; i < a->n_files_from; i++)
        if (strcmp(a->files_from[i], "-") == 0 && stdin_closed && a->engine_fd < 0)
            return cli_usage_error("--files-from -: standard input is closed");
    for (int i = optind; i < argc; i++)
        if (!*argv[i])
            return cli_usage_error("empty input path");

    if (a->low_memory && !budget_given)
        a->opts.decode_budget = LOW_MEMORY_BUDGET;
    char why[512] = "";
    if (pm_options_check(&a->opts, why, sizeof(why)) != PM_OK)
        return cli_usage_error("%s", *why ? why : "these options cannot go together");
    a->inputs = argv + optind;
    a->n_inputs = argc - optind;
    return CLI_GO_ON;
}
