/* pixmill: the command. Parses arguments, runs one batch through the public API, prints
 * per-file errors and a summary, and turns the outcome into an exit code. */
#define _GNU_SOURCE
#include "cli.h"
#include <pixmill/pixmill.h>

#include <errno.h>
#include <glib.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_FILES_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_FATAL = 3,
};

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
    "      --low-memory        hold less memory (photos at -j 2: about 150 MB instead of\n"
    "                          230-300) for 25-40 % more time: one engine process, heavy\n"
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
    "Exit status: 0 every requested output exists and is current; 1 some files failed (each named "
    "on stderr), the rest done;\n"
    "2 usage error, nothing touched; 3 fatal before processing (e.g. output folder not\n"
    "writable); 130/143 interrupted by SIGINT/SIGTERM.\n";

typedef cli_view cli;

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

/* Prints a path with control characters, backslashes and invalid UTF-8 escaped, so that a
 * name holding a newline cannot forge a line of output. */
void cli_print_escaped(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        int len = c < 0x80             ? 1
                  : (c & 0xE0) == 0xC0 ? 2
                  : (c & 0xF0) == 0xE0 ? 3
                  : (c & 0xF8) == 0xF0 ? 4
                                       : 0;
        int valid = len > 0;
        for (int i = 1; valid && i < len; i++)
            valid = (p[i] & 0xC0) == 0x80;
        if (len == 2 && c < 0xC2)
            valid = 0; /* overlong */
        int control = len == 1 && (c < 0x20 || c == 0x7f) && c != '\n' && c != '\t';
        if (!valid || control) {
            fprintf(f, "\\x%02x", c);
            p++;
        } else if (len > 1) {
            fwrite(p, 1, (size_t)len, f);
            p += len;
        } else if (c == '\\') {
            fputs("\\\\", f);
            p++;
        } else if (c == '\n') {
            fputs("\\n", f);
            p++;
        } else if (c == '\t') {
            fputs("\\t", f);
            p++;
        } else {
            fputc(c, f);
            p++;
        }
    }
}

static void print_reason(FILE *f, const pm_event *ev)
{
    char buf[256];
    if (ev->status == PM_ERR_SCAN && ev->sys_errno) {
        fputs(strerror_r(ev->sys_errno, buf, sizeof(buf)), f);
        return;
    }
    fputs(pm_strerror(ev->status), f);
    if (ev->sys_errno)
        fprintf(f, ": %s", strerror_r(ev->sys_errno, buf, sizeof(buf)));
    if (ev->message) {
        fputs(" (", f);
        cli_print_escaped(f, ev->message);
        fputc(')', f);
    }
}

static void print_output_line(const char *verb, const pm_event *ev, const pm_output *o)
{
    fputs(verb, stdout);
    cli_print_escaped(stdout, ev->source);
    fputs(" -> ", stdout);
    cli_print_escaped(stdout, o->path);
    printf(" (%dx%d", o->width, o->height);
    if (o->bytes)
        printf(", %" PRIu64 " bytes", o->bytes);
    fputs(")\n", stdout);
}

void cli_print_event(const cli_view *c, const pm_event *ev, const char *json_line)
{
    if (c->json) {
        char *made = json_line ? NULL : pm_event_to_json(ev);
        const char *line = json_line ? json_line : made;
        if (line) {
            fputs(line, stdout);
            fputc('\n', stdout);
            fflush(stdout); /* a stream: each event as it happens, even into a pipe */
        }
        pm_free(made);
    }
    int human_out = !c->json && !c->quiet; /* stdout belongs to JSON with --json */
    switch (ev->type) {
    case PM_EVENT_DONE:
        for (int i = 0; human_out && c->verbose && i < ev->n_outputs; i++)
            if (!ev->outputs[i].current)
                print_output_line("", ev, &ev->outputs[i]);
        break;
    case PM_EVENT_PLANNED:
        for (int i = 0; human_out && i < ev->n_outputs; i++)
            if (!ev->outputs[i].current || c->verbose)
                print_output_line(ev->outputs[i].current ? "up to date: " : "would write: ", ev,
                                  &ev->outputs[i]);
        break;
    case PM_EVENT_PRUNED:
        for (int i = 0; human_out && i < ev->n_outputs; i++) {
            fputs(c->dry_run ? "would remove: " : "removed: ", stdout);
            cli_print_escaped(stdout, ev->outputs[i].path);
            fprintf(stdout, " (%s: ", ev->message ? ev->message : "source gone");
            cli_print_escaped(stdout, ev->source);
            fputs(")\n", stdout);
        }
        break;
    case PM_EVENT_PASSED_OVER:
        if (human_out && c->verbose) {
            fputs("passed over: ", stdout);
            cli_print_escaped(stdout, ev->source);
            fprintf(stdout, " (%s)\n", ev->message ? ev->message : "not taken");
        }
        break;
    case PM_EVENT_SKIPPED:
        if (ev->status == PM_OK) {
            if (human_out && (c->verbose || c->dry_run)) {
                fputs("up to date: ", stdout);
                cli_print_escaped(stdout, ev->source);
                fputc('\n', stdout);
            }
            break;
        }
        if (!c->verbose)
            break;
        /* fall through */
    case PM_EVENT_FAILED:
    case PM_EVENT_SCAN_ERROR:
        cli_print_failure(ev, c->dry_run);
        break;
    }
}

static int on_event(const pm_event *ev, void *user_data)
{
    const cli *c = user_data;
    if (c->engine) /* under a supervisor, which prints from the journal */
        return 0;
    cli_print_event(c, ev, NULL);
    return 0;
}

void cli_print_failure(const pm_event *ev, int dry_run)
{
    fputs("pixmill: ", stderr);
    cli_print_escaped(stderr, ev->source);
    fputs(ev->type == PM_EVENT_SKIPPED             ? ": skipped: "
          : dry_run && ev->type == PM_EVENT_FAILED ? ": would be rejected: "
                                                   : ": ",
          stderr);
    print_reason(stderr, ev);
    fputc('\n', stderr);
}

static void format_bytes(char *buf, size_t n, uint64_t bytes)
{
    if (bytes >= 1000000)
        snprintf(buf, n, "%.1f MB", (double)bytes / 1e6);
    else if (bytes >= 1000)
        snprintf(buf, n, "%.1f kB", (double)bytes / 1e3);
    else
        snprintf(buf, n, "%" PRIu64 " B", bytes);
}

void cli_print_summary(const pm_summary *s, int dry_run)
{
    char in[32], out[32];
    if (dry_run) {
        fprintf(stderr,
                "pixmill: dry run: %" PRIu64 " to make, %" PRIu64 " up to date, %" PRIu64
                " would be rejected, %" PRIu64 " skipped",
                s->processed, s->up_to_date, s->failed + s->scan_errors, s->skipped);
        if (s->pruned)
            fprintf(stderr, ", %" PRIu64 " outputs to prune", s->pruned);
        if (s->passed_over)
            fprintf(stderr, ", %" PRIu64 " other file%s passed over", s->passed_over,
                    s->passed_over == 1 ? "" : "s");
        fputs("; nothing written\n", stderr);
        return;
    }
    format_bytes(in, sizeof(in), s->bytes_in);
    format_bytes(out, sizeof(out), s->bytes_out);
    double rate = s->wall_seconds > 0 ? (double)s->processed / s->wall_seconds : 0.0;
    fprintf(stderr,
            "pixmill: %" PRIu64 " processed, %" PRIu64 " up to date, %" PRIu64 " skipped, %" PRIu64
            " failed",
            s->processed, s->up_to_date, s->skipped, s->failed + s->scan_errors);
    if (s->pruned)
        fprintf(stderr, ", %" PRIu64 " pruned", s->pruned);
    if (s->passed_over)
        fprintf(stderr, ", %" PRIu64 " other file%s passed over", s->passed_over,
                s->passed_over == 1 ? "" : "s");
    if (s->temps_swept)
        fprintf(stderr, ", %" PRIu64 " stale temps removed", s->temps_swept);
    if (s->outputs != s->processed)
        fprintf(stderr, ", %" PRIu64 " outputs", s->outputs);
    fprintf(stderr, ", %s in, %s out, %.2f s, %.1f images/s", in, out, s->wall_seconds, rate);
    if (s->jobs > 0) /* unknown when the only engine was killed before its summary */
        fprintf(stderr, " (%d jobs)", s->jobs);
    fputc('\n', stderr);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pixmill: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'pixmill --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

/* Whole-string decimal in [lo, hi]. */
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

/* ---- signals: one thread turns SIGINT/SIGTERM into a cancel ---- */

typedef struct sig_state {
    pm_batch *batch;
    int signo; /* first signal received; written by the signal thread, read after join */
} sig_state;

static void *signal_main(void *arg)
{
    sig_state *st = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1); /* our own "stop listening" */
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig == SIGUSR1)
            return NULL;
        /* the supervisor passes its first signal on, marked: the same Ctrl-C may have come
         * from the terminal already, and is not a second one */
        int forwarded = si.si_code == SI_QUEUE && si.si_value.sival_int == CLI_SIGNAL_FORWARDED;
        if (st->signo && forwarded)
            continue;
        if (st->signo) /* second signal: leave at once */
            _exit(128 + sig);
        st->signo = sig;
        pm_batch_cancel(st->batch);
    }
}

/* The recipe's strings are used by opts until the batch copies them; freed at exit, so that
 * every early usage error returns without a leak report under ASan. */
static pm_recipe *recipe;

static char **given;     /* argv as given, for the engine; freed at exit like the recipe */
static GArray *skip_ids; /* --engine-skip: (dev, ino) pairs; freed at exit like the recipe */

/* The user set glibc's mmap or trim threshold (environment or tunables): theirs wins. */
static int user_set_malloc_thresholds(void)
{
    const char *tunables = getenv("GLIBC_TUNABLES"); // NOLINT(concurrency-mt-unsafe)
    return getenv("MALLOC_TRIM_THRESHOLD_") ||       // NOLINT(concurrency-mt-unsafe)
           getenv("MALLOC_MMAP_THRESHOLD_") ||       // NOLINT(concurrency-mt-unsafe)
           (tunables && (strstr(tunables, "malloc.trim_threshold") ||
                         strstr(tunables, "malloc.mmap_threshold")));
}

/* glibc gives the free top of a heap back to the kernel once more than M_TRIM_THRESHOLD is free
 * there, and that threshold starts at 128 KiB; it rises only when a block malloc had mmap-ed is
 * freed (to twice its size, with M_MMAP_THRESHOLD at its size). Photos free such a block with
 * their first decode; a run of small images never does, so each file's buffers went back to
 * the kernel and were faulted in again (200 small files: 231 madvise and 83 brk calls; 1,000:
 * 17 % of the run's CPU). Freeing one 4 MiB block that malloc mmaps starts the run where glibc
 * would be after a large image (mmap above 4 MiB, trim above 8 MiB) and leaves both adaptive;
 * fixing them with mallopt would stop the adapting (photos 40-60 % slower, issue 6 note).
 * Skipped when the user set either threshold. */
static void malloc_start_warm(void)
{
    if (user_set_malloc_thresholds())
        return;
    void *volatile block = malloc((size_t)4 << 20); /* volatile: not elided with its free */
    free(block);
}

/* --low-memory (issue 6 note, README "Performance"): glibc keeps 60-75 MB of freed decode
 * buffers for the next photo at -j 2, and lanes add a second libvips. So: one engine, heavy
 * decodes within 64 MiB (one progressive 18 MP JPEG's coefficients are 72 MB: such files go
 * one at a time), and mmap and trim thresholds fixed at 4 MiB, so large buffers go back to the
 * kernel when freed. Faulting them in again is what costs the time; transparent huge pages for
 * malloc make it cheaper, through the engine's GLIBC_TUNABLES (read by glibc at exec, so set
 * by the supervisor before it starts the engine). The user's own settings win. */
#define LOW_MEMORY_BUDGET ((uint64_t)64 << 20)
#define LOW_MEMORY_THRESHOLD (4 << 20)

static void low_memory_malloc(void)
{
    if (user_set_malloc_thresholds())
        return;
    mallopt(M_MMAP_THRESHOLD, LOW_MEMORY_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, LOW_MEMORY_THRESHOLD);
}

static void low_memory_engine_tunables(void)
{
    const char *t = getenv("GLIBC_TUNABLES"); // NOLINT(concurrency-mt-unsafe)
    if (t && strstr(t, "malloc.hugetlb"))
        return;
    char *v = t && *t ? g_strdup_printf("%s:glibc.malloc.hugetlb=1", t)
                      : g_strdup("glibc.malloc.hugetlb=1");
    setenv("GLIBC_TUNABLES", v, 1); // NOLINT(concurrency-mt-unsafe)
    g_free(v);
}

static void free_recipe(void)
{
    pm_recipe_free(recipe);
    recipe = NULL;
}

static void free_at_exit(void)
{
    free_recipe();
    g_strfreev(given);
    given = NULL;
    if (skip_ids)
        g_array_free(skip_ids, TRUE);
    skip_ids = NULL;
}

/* Descriptors 0-2 that were closed get /dev/null, before anything else opens a file: a
 * signalfd or an output taking descriptor 0 was read as the file list (it hung, and a SIGINT
 * became list data). Whether stdin was closed is kept: "--files-from -" then has no list. */
static int stdin_was_closed;

static void reserve_standard_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        stdin_was_closed |= fd == 0;
        int got = open("/dev/null", O_RDWR);
        if (got >= 0 && got != fd) { /* cannot happen: fd is the lowest free */
            dup2(got, fd);
            close(got);
        }
    }
}

int main(int argc, char **argv)
{
    reserve_standard_fds();
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
    pm_options opts;
    pm_options_init(&opts);
    cli c = {0};
    int rc;
    int n_sizes = 0, n_formats = 0; /* the first -s / -f replaces the default */
    const char *allow[16];
    int n_allow = 0;
    const char *files_from[64];
    int n_files_from = 0;
    char delim = '\n';
    long long v;
    int ch;
    opterr = 0;
    /* stderr is unbuffered: every character of a message was its own write, and 200,000
     * failures kept the supervisor busy writing long after the engine was done. One write a
     * line; each line is whole when stdout and stderr share a terminal. */
    static char stderr_buf[BUFSIZ];
    setvbuf(stderr, stderr_buf, _IOLBF, sizeof(stderr_buf));
    atexit(free_at_exit);
    /* getopt permutes argv: the supervisor hands its engine the command line as given */
    given = g_strdupv(argv);
    double timeout = 300;
    int isolate = 1, engine_fd = -1, low_memory = 0, budget_given = 0;
    uint64_t engine_only = 0;
    int engine_sweep = 0, engine_lane_jobs = 0;
    skip_ids = g_array_new(FALSE, FALSE, sizeof(guint64));
    uint64_t check_below = 0, check_digest = 0;
    int engine_lists[64], n_engine_lists = 0;
    /* A recipe first, whatever its place: every other option overrides it. getopt_long keeps
     * global state: fine here, before any thread exists. */
    while (
        (ch = getopt_long(argc, argv, ":o:s:f:Q:j:0qvhV", longopts, // NOLINT(concurrency-mt-unsafe)
                          NULL)) != -1) {
        if (ch != 'R' + 256)
            continue;
        char why[512];
        free_recipe();
        if (pm_recipe_load(&recipe, optarg, why, sizeof(why)) != PM_OK)
            return usage_error("%s", why);
    }
    pm_recipe_apply(recipe, &opts);
    optind = 0; /* glibc: a full rescan */
    while (
        (ch = getopt_long(argc, argv, ":o:s:f:Q:j:0qvhV", longopts, // NOLINT(concurrency-mt-unsafe)
                          NULL)) != -1) {
        switch (ch) {
        case 'R' + 256:
            break; /* read above */
        case 'n' + 256:
            opts.name_template = optarg;
            for (int i = 0; i < opts.n_variants; i++)
                opts.variants[i].name_template = NULL;
            break;
        case 'B' + 256:
            opts.force = 1;
            break;
        case 'D' + 256:
            opts.dry_run = 1;
            c.dry_run = 1;
            break;
        case 'X' + 256:
            opts.prune = 1;
            break;
        case 'M' + 256:
            if (!*optarg)
                return usage_error("empty --manifest");
            opts.manifest_path = optarg;
            break;
        case 'J' + 256:
            c.json = 1;
            break;
        case 't' + 256: {
            char *end;
            timeout = g_ascii_strtod(optarg, &end);
            if (!*optarg || *end || !(timeout >= 0) || timeout > 1e6)
                return usage_error("invalid timeout '%s' (want seconds, 0 for none)", optarg);
            break;
        }
        case 'I' + 256:
            isolate = 0;
            break;
        case 'W' + 256:
            low_memory = 1;
            break;
        case 'z' + 256:
            if (parse_bytes(optarg, &opts.max_file_size))
                return usage_error("invalid max-file-size '%s' (want bytes, or N k, M, G)", optarg);
            break;
        case 'y' + 256:
            if (parse_bytes(optarg, &opts.decode_budget))
                return usage_error("invalid decode-budget '%s' (want bytes, or N k, M, G)", optarg);
            budget_given = 1;
            break;
        case 'g' + 256:
            if (parse_long(optarg, 0, INT32_MAX, &v))
                return usage_error("invalid max-pages '%s' (want 0..2147483647)", optarg);
            opts.max_pages = (int)v;
            break;
        case 1000:
            if (parse_long(optarg, 0, 1 << 20, &v))
                return usage_error("invalid --engine-fd");
            engine_fd = (int)v;
            opts.journal_fd = engine_fd;
            c.engine = 1;
            break;
        case 1003:
            if (parse_id_list(optarg, skip_ids) != 0)
                return usage_error("invalid --engine-skip");
            break;
        case 1004:
            if (parse_long(optarg, 1, INT64_MAX - 1, &v))
                return usage_error("invalid --engine-only");
            engine_only = (uint64_t)v;
            break;
        case 1006:
            engine_sweep = 1;
            break;
        case 1008: { /* BELOW:DIGEST (hex) */
            char *end;
            check_below = g_ascii_strtoull(optarg, &end, 10);
            if (end == optarg || *end != ':')
                return usage_error("invalid --engine-check");
            const char *hex = end + 1;
            check_digest = g_ascii_strtoull(hex, &end, 16);
            if (end == hex || *end)
                return usage_error("invalid --engine-check");
            break;
        }
        case 1007: /* LANES,JOBS,RECV_FD,SEND_FD (-1: another lane scans) */
            if (sscanf(optarg, "%d,%d,%d,%d", &opts.lanes, &engine_lane_jobs, &opts.lane_recv_fd,
                       &opts.lane_send_fd) != 4 ||
                opts.lanes < 2 || engine_lane_jobs < 1 || opts.lane_recv_fd < 0)
                return usage_error("invalid --engine-lane");
            break;
        case 1005: {
            gchar **parts = g_strsplit(optarg, ",", 64);
            for (int i = 0; parts[i] && n_engine_lists < 64; i++)
                engine_lists[n_engine_lists++] = atoi(parts[i]);
            g_strfreev(parts);
            break;
        }
        case 'o':
            if (!*optarg)
                return usage_error("empty output folder");
            if (opts.output_dir)
                return usage_error("-o given twice ('%s' and '%s'): one output folder a run",
                                   opts.output_dir, optarg);
            opts.output_dir = optarg;
            break;
        case 's':
            opts.n_variants = 0; /* sizes given here replace a recipe's variants */
            if (n_sizes == PM_MAX_SIZES)
                return usage_error("too many sizes (at most %d)", PM_MAX_SIZES);
            if (pm_size_parse(optarg, &opts.sizes[n_sizes++]) != PM_OK)
                return usage_error("invalid size '%s' (want N, WxH, Wx or xH, 1..100000, and one "
                                   "of > < ! ^; or N%% or N@)",
                                   optarg);
            break;
        case 'f':
            for (int i = 0; i < opts.n_variants; i++)
                opts.variants[i].n_formats = 0;
            if (n_formats == PM_MAX_FORMATS)
                return usage_error("too many formats (at most %d)", PM_MAX_FORMATS);
            if (pm_format_parse(optarg, &opts.formats[n_formats++]) != PM_OK)
                return usage_error("unknown format '%s' (want jpeg, png, webp, avif, heif, gif, "
                                   "tiff or same)",
                                   optarg);
            break;
        case 'Q':
            if (parse_long(optarg, 1, 100, &v))
                return usage_error("invalid quality '%s' (want 1..100)", optarg);
            opts.quality = (int)v;
            for (int i = 0; i < opts.n_variants; i++)
                opts.variants[i].quality = 0;
            break;
        case 'j':
            if (parse_long(optarg, 1, 1024, &v))
                return usage_error("invalid jobs '%s' (want 1..1024)", optarg);
            opts.jobs = (int)v;
            break;
        case 'q' + 256:
            if (parse_long(optarg, 1, 1000000, &v))
                return usage_error("invalid queue capacity '%s' (want 1..1000000)", optarg);
            opts.queue_capacity = (int)v;
            break;
        case 'm' + 256:
            if (parse_long(optarg, 0, INT64_MAX, &v))
                return usage_error("invalid max-pixels '%s'", optarg);
            opts.max_pixels = (uint64_t)v;
            break;
        case 'F' + 256:
            if (pm_fail_on_parse(optarg, &opts.fail_on) != PM_OK)
                return usage_error("invalid fail-on '%s' (want none, truncated, error, warning)",
                                   optarg);
            break;
        case 'H' + 256:
            opts.include_hidden = 1;
            break;
        case 'f' + 256:
            if (pm_fit_parse(optarg, &opts.fit) != PM_OK)
                return usage_error("invalid fit '%s' (want inside, cover, contain, fill, outside)",
                                   optarg);
            for (int i = 0; i < opts.n_variants; i++)
                opts.variants[i].size.fit = PM_FIT_DEFAULT;
            break;
        case 'c' + 256:
            if (pm_crop_parse(optarg, &opts.crop) != PM_OK)
                return usage_error("invalid crop '%s' (want centre, north, ..., southwest, "
                                   "attention, entropy)",
                                   optarg);
            for (int i = 0; i < opts.n_variants; i++)
                opts.variants[i].crop = PM_INHERIT;
            break;
        case 'b' + 256:
            if (pm_color_parse(optarg, opts.background) != PM_OK)
                return usage_error("invalid colour '%s' (want #rgb, #rrggbb, #rrggbbaa, white, "
                                   "black, transparent)",
                                   optarg);
            break;
        case 'a' + 256:
            opts.auto_swap = 1;
            break;
        case 'r' + 256:
            opts.no_rotate = 1;
            break;
        case 'p' + 256:
            if (pm_profile_parse(optarg, &opts.profile, &opts.profile_file) != PM_OK)
                return usage_error("invalid profile '%s'", optarg);
            if (opts.profile == PM_PROFILE_FILE && access(optarg, R_OK) != 0)
                return usage_error("cannot read profile '%s'", optarg);
            break;
        case 'i' + 256:
            if (pm_intent_parse(optarg, &opts.intent) != PM_OK)
                return usage_error("invalid intent '%s' (want relative, perceptual, saturation, "
                                   "absolute)",
                                   optarg);
            break;
        case 'e' + 256:
            if (parse_long(optarg, 1, 10, &v))
                return usage_error("invalid effort '%s' (want 1..10)", optarg);
            opts.effort = (int)v;
            break;
        case 'l' + 256:
            opts.lossless = 1;
            break;
        case 'P' + 256:
            opts.progressive = 1;
            break;
        case 's' + 256:
            if (pm_subsample_parse(optarg, &opts.subsample) != PM_OK)
                return usage_error("invalid subsample '%s' (want auto, on, off)", optarg);
            break;
        case 'T' + 256:
            opts.palette = 1;
            break;
        case 'N' + 256:
            opts.animated = 1;
            break;
        case 'A' + 256:
            if (n_allow == 16)
                return usage_error("too many --allow");
            allow[n_allow++] = optarg;
            break;
        case 'k' + 256:
            if (pm_keep_parse(optarg, &opts.keep) != PM_OK)
                return usage_error("invalid keep '%s' (want none, icc, exif, xmp, all, or a "
                                   "comma-separated list)",
                                   optarg);
            break;
        case 'L' + 256:
            if (!*optarg)
                return usage_error("empty --files-from");
            if (n_files_from == 64)
                return usage_error("too many --files-from");
            files_from[n_files_from++] = optarg;
            break;
        case '0':
            delim = '\0';
            break;
        case 'q':
            c.quiet = 1;
            break;
        case 'v':
            c.verbose = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf("pixmill %s\n", pm_version_string());
            return EXIT_OK;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!opts.output_dir)
        return usage_error("no output folder: give -o DIR");
    if (n_sizes)
        opts.n_sizes = n_sizes;
    if (n_formats)
        opts.n_formats = n_formats;
    if (optind == argc && n_files_from == 0)
        return usage_error("no input: give files or folders, or --files-from");
    for (int i = 0; i < n_files_from; i++)
        if (strcmp(files_from[i], "-") == 0 && stdin_was_closed && engine_fd < 0)
            return usage_error("--files-from -: standard input is closed");
    for (int i = optind; i < argc; i++)
        if (!*argv[i])
            return usage_error("empty input path");

    if (low_memory && !budget_given)
        opts.decode_budget = LOW_MEMORY_BUDGET;
    char why[512] = "";
    if (pm_options_check(&opts, why, sizeof(why)) != PM_OK)
        return usage_error("%s", *why ? why : "these options cannot go together");
    signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill the run */
    signal(SIGXFSZ, SIG_IGN); /* over ulimit -f: that file fails with EFBIG, the run goes on */
    if (isolate && engine_fd < 0) {
        /* The batch runs in a child; this process survives its crashes (supervise.c). */
        sup_config sc = {given + 1,  argc - 1,     timeout, c, opts.force,
                         files_from, n_files_from, 0,       0};
        /* One engine process a core, each with its share of the workers: libvips in one
         * process ran 2 workers ~35 % slower than 2 processes on small files (README). Not
         * with a manifest or --prune yet: both need every source's event in one engine. */
        int jobs = opts.jobs ? opts.jobs : pm_default_jobs(), cores = pm_default_jobs();
        if (jobs > 1 && !opts.manifest_path && !opts.prune && !low_memory) {
            sc.lanes = jobs < cores ? jobs : cores;
            sc.jobs = jobs;
        }
        if (low_memory)
            low_memory_engine_tunables();
        return cli_supervise(&sc);
    }
    if (engine_fd >= 0) {
        if (engine_only) {
            opts.skip_below = engine_only;
            opts.stop_after = engine_only + 1;
            opts.jobs = 1;
        }
        if (engine_lane_jobs) /* one of several, its workers taking jobs from the lane socket */
            opts.jobs = engine_lane_jobs;
        if (engine_sweep) { /* the run starts (the root's temps are swept), then stops */
            opts.stop_after = 1;
            opts.manifest_path = NULL;
            opts.prune = 0;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started from here inherits it */

    /* glibc gives each thread that allocates its own arena (up to 8 per core): libvips'
     * decode buffers freed in one arena are not reused by another, and peak RSS on photos at
     * -j 2 was 366-425 MB. One arena per core: 202-221 MB, no slower (issue 6 note). Before
     * any thread starts; the user's MALLOC_ARENA_MAX wins. */
    if (!getenv("MALLOC_ARENA_MAX")) { // NOLINT(concurrency-mt-unsafe)
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, cores < 2 ? 2 : (int)cores);
    }
    if (low_memory)
        low_memory_malloc();
    else
        malloc_start_warm();
    if (pm_global_init(argv[0]) != PM_OK) {
        fputs("pixmill: libvips initialisation failed\n", stderr);
        return EXIT_FATAL;
    }
    for (int i = 0; i < n_allow; i++) {
        if (pm_loader_allow(allow[i]) != PM_OK) {
            pm_global_shutdown();
            return usage_error("unknown or unavailable format for --allow: '%s'", allow[i]);
        }
    }
    pm_batch *batch;
    if (pm_batch_create(&batch, &opts) != PM_OK) {
        pm_global_shutdown();
        return usage_error("%s", *why ? why : "these options cannot go together");
    }
    free_recipe(); /* the batch has its own copies now */
    for (int i = optind; i < argc; i++)
        pm_batch_add_input(batch, argv[i]);
    for (guint i = 0; i + 1 < skip_ids->len; i += 2)
        pm_batch_skip_file(batch, g_array_index(skip_ids, guint64, i),
                           g_array_index(skip_ids, guint64, i + 1));
    if (check_below > 1)
        pm_batch_check_replay(batch, check_below, check_digest);
    for (int i = 0; i < n_files_from; i++) {
        int fd;
        if (i < n_engine_lists) { /* the supervisor's copy, read from its start */
            char path[64];
            snprintf(path, sizeof(path), "/proc/self/fd/%d", engine_lists[i]);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            close(engine_lists[i]);
        } else {
            fd = strcmp(files_from[i], "-") == 0 ? STDIN_FILENO
                                                 : open(files_from[i], O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0) {
            char buf[256];
            fprintf(stderr, "pixmill: %s: %s\n", files_from[i],
                    strerror_r(errno, buf, sizeof(buf)));
            pm_batch_destroy(batch);
            return EXIT_USAGE;
        }
        int added = pm_batch_add_file_list(batch, fd, delim);
        int err = errno;
        if (fd != STDIN_FILENO)
            close(fd);
        if (added != PM_OK) { /* never a batch without its list */
            char buf[256];
            fprintf(stderr, "pixmill: %s: %s\n", files_from[i], strerror_r(err, buf, sizeof(buf)));
            pm_batch_destroy(batch);
            pm_global_shutdown();
            return EXIT_FATAL;
        }
    }

    sig_state sst = {batch, 0};
    pthread_t sig_thread;
    int have_sig_thread = pthread_create(&sig_thread, NULL, signal_main, &sst) == 0;

    pm_summary sum;
    rc = pm_batch_run(batch, on_event, &c, &sum);

    if (have_sig_thread) {
        pthread_kill(sig_thread, SIGUSR1);
        pthread_join(sig_thread, NULL);
    }
    pm_batch_destroy(batch);
    if (engine_fd >= 0) { /* the supervisor prints the summary of every engine */
        char z[128];
        int n = snprintf(z, sizeof(z), "Z %" PRIu64 " %" PRIu64 " %.3f %d\n", sum.pruned,
                         sum.temps_swept, sum.cpu_seconds, sum.jobs);
        if (write(engine_fd, z, (size_t)n) != n)
            fputs("pixmill: the supervisor is gone\n", stderr);
    } else if (!c.quiet || rc == PM_ERR_CANCELLED) {
        cli_print_summary(&sum, c.dry_run);
    }

    fflush(stdout);
    pm_global_shutdown();

    if (sst.signo)
        return 128 + sst.signo;
    if (rc == PM_ERR_USAGE)
        return EXIT_USAGE;
    if (rc != PM_OK && rc != PM_ERR_CANCELLED)
        return EXIT_FATAL;
    return (sum.failed + sum.scan_errors) ? EXIT_FILES_FAILED : EXIT_OK;
}
