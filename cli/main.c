/* pixmill: the command. main() wires the rooms of cli.h: the arguments parsed (args.c), then
 * the run handed to the supervisor (supervise.c), or, in an engine or with --no-isolate, one
 * batch run here through the public API, with a signal thread turning SIGINT/SIGTERM into a
 * cancel, and its outcome turned into an exit code. Also the process set-up libvips' memory
 * behaviour asks for (malloc arenas and thresholds) and descriptors 0-2. */
#define _GNU_SOURCE
#include "cli.h"
#include <pixmill/pixmill.h>

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int on_event(const pm_event *ev, void *user_data)
{
    const cli_view *c = user_data;
    if (c->engine) /* under a supervisor, which prints from the journal */
        return 0;
    cli_print_event(c, ev, NULL);
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

/* --low-memory (issue 6 note, tests/bench/README.md): glibc keeps 60-75 MB of freed decode
 * buffers for the next photo at -j 2, and lanes add a second libvips. So: one engine, heavy
 * decodes within 64 MiB (one progressive 18 MP JPEG's coefficients are 72 MB: such files go
 * one at a time), and mmap and trim thresholds fixed at 4 MiB, so large buffers go back to the
 * kernel when freed. Faulting them in again is what costs the time; transparent huge pages for
 * malloc make it cheaper, through the engine's GLIBC_TUNABLES (read by glibc at exec, so set
 * by the supervisor before it starts the engine). The user's own settings win. The budget is
 * set with the options (args.c). */
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

/* Freed at exit, so that every early return leaves nothing for ASan's leak report. */
static cli_args a;

static void free_at_exit(void)
{
    cli_args_free(&a);
}

int main(int argc, char **argv)
{
    reserve_standard_fds();
    /* stderr is unbuffered: every character of a message was its own write, and 200,000
     * failures kept the supervisor busy writing long after the engine was done. One write a
     * line; each line is whole when stdout and stderr share a terminal. */
    static char stderr_buf[BUFSIZ];
    setvbuf(stderr, stderr_buf, _IOLBF, sizeof(stderr_buf));
    atexit(free_at_exit);
    int rc = cli_parse_args(argc, argv, stdin_was_closed, &a);
    if (rc != CLI_GO_ON)
        return rc;
    signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill the run */
    signal(SIGXFSZ, SIG_IGN); /* over ulimit -f: that file fails with EFBIG, the run goes on */
    if (a.isolate && a.engine_fd < 0) {
        /* The batch runs in a child; this process survives its crashes (supervise.c). */
        sup_config sc = {
            a.given + 1, argc - 1, a.timeout, a.view, a.opts.force, a.files_from, a.n_files_from,
            0,           0,        NULL,      0};
        /* One engine process a core, each with its share of the workers: libvips in one
         * process ran 2 workers ~35 % slower than 2 processes on small files (lib/README.md,
         * lanes). Not with a manifest or --prune yet: both need every source's event in one engine.
         */
        int jobs = a.opts.jobs ? a.opts.jobs : pm_default_jobs(), cores = pm_default_jobs();
        if (jobs > 1 && !a.opts.manifest_path && !a.opts.prune && !a.low_memory) {
            sc.lanes = jobs < cores ? jobs : cores;
            sc.jobs = jobs;
        }
        if (a.low_memory)
            low_memory_engine_tunables();
        return cli_supervise(&sc);
    }
    if (a.engine_fd >= 0) {
        if (a.engine_only) {
            a.opts.skip_below = a.engine_only;
            a.opts.stop_after = a.engine_only + 1;
            a.opts.jobs = 1;
        }
        if (a.engine_lane_jobs) /* one of several, its workers taking jobs from the lane socket */
            a.opts.jobs = a.engine_lane_jobs;
        if (a.engine_sweep) { /* the run starts (the root's temps are swept), then stops */
            a.opts.stop_after = 1;
            a.opts.manifest_path = NULL;
            a.opts.prune = 0;
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
    if (a.low_memory)
        low_memory_malloc();
    else
        malloc_start_warm();
    if (pm_global_init(argv[0]) != PM_OK) {
        fputs("pixmill: libvips initialisation failed\n", stderr);
        return CLI_EXIT_FATAL;
    }
    for (int i = 0; i < a.n_allow; i++) {
        if (pm_loader_allow(a.allow[i]) != PM_OK) {
            pm_global_shutdown();
            return cli_usage_error("unknown or unavailable format for --allow: '%s'", a.allow[i]);
        }
    }
    pm_batch *batch;
    if (pm_batch_create(&batch, &a.opts) != PM_OK) {
        pm_global_shutdown();
        return cli_usage_error("these options cannot go together");
    }
    cli_args_drop_recipe(&a); /* the batch has its own copies now */
    for (int i = 0; i < a.n_inputs; i++)
        pm_batch_add_input(batch, a.inputs[i]);
    for (guint i = 0; i + 1 < a.skip_ids->len; i += 2)
        pm_batch_skip_file(batch, g_array_index(a.skip_ids, guint64, i),
                           g_array_index(a.skip_ids, guint64, i + 1));
    if (a.check_below > 1)
        pm_batch_check_replay(batch, a.check_below, a.check_digest);
    for (int i = 0; i < a.n_files_from; i++) {
        int fd;
        if (i < a.n_engine_lists) { /* the supervisor's copy, read from its start */
            char path[64];
            snprintf(path, sizeof(path), "/proc/self/fd/%d", a.engine_lists[i]);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            close(a.engine_lists[i]);
        } else {
            fd = strcmp(a.files_from[i], "-") == 0 ? STDIN_FILENO
                                                   : open(a.files_from[i], O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0) {
            char buf[256];
            fprintf(stderr, "pixmill: %s: %s\n", a.files_from[i],
                    strerror_r(errno, buf, sizeof(buf)));
            pm_batch_destroy(batch);
            return CLI_EXIT_USAGE;
        }
        int added = pm_batch_add_file_list(batch, fd, a.delim);
        int err = errno;
        if (fd != STDIN_FILENO)
            close(fd);
        if (added != PM_OK) { /* never a batch without its list */
            char buf[256];
            fprintf(stderr, "pixmill: %s: %s\n", a.files_from[i],
                    strerror_r(err, buf, sizeof(buf)));
            pm_batch_destroy(batch);
            pm_global_shutdown();
            return CLI_EXIT_FATAL;
        }
    }

    sig_state sst = {batch, 0};
    pthread_t sig_thread;
    int have_sig_thread = pthread_create(&sig_thread, NULL, signal_main, &sst) == 0;

    pm_summary sum;
    rc = pm_batch_run(batch, on_event, &a.view, &sum);

    if (have_sig_thread) {
        pthread_kill(sig_thread, SIGUSR1);
        pthread_join(sig_thread, NULL);
    }
    pm_batch_destroy(batch);
    if (a.engine_fd >= 0) { /* the supervisor prints the summary of every engine */
        char z[128];
        int n = snprintf(z, sizeof(z), "Z %" PRIu64 " %" PRIu64 " %.3f %d\n", sum.pruned,
                         sum.temps_swept, sum.cpu_seconds, sum.jobs);
        if (write(a.engine_fd, z, (size_t)n) != n)
            fputs("pixmill: the supervisor is gone\n", stderr);
    } else if (!a.view.quiet || rc == PM_ERR_CANCELLED) {
        cli_print_summary(&sum, a.view.dry_run);
    }

    fflush(stdout);
    pm_global_shutdown();

    if (sst.signo)
        return 128 + sst.signo;
    if (rc == PM_ERR_USAGE)
        return CLI_EXIT_USAGE;
    if (rc != PM_OK && rc != PM_ERR_CANCELLED)
        return CLI_EXIT_FATAL;
    return (sum.failed + sum.scan_errors) ? CLI_EXIT_FILES_FAILED : CLI_EXIT_OK;
}
