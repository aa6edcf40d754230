/* The supervisor: pixmill runs its batch in a child process (the engine: this program again,
 * with --engine-* options) and watches it through a journal pipe. A decoder that crashes takes
 * only the engine down; one that hangs past --timeout is killed. The files at fault are
 * reported (crashed / timed out), the rest of the batch is resumed in a new engine, and the
 * summary and exit status cover every engine. The supervisor never starts libvips.
 *
 * Journal lines from the engine (see pm_options.journal_fd):
 *   S <seq> <dev> <ino> <escaped path>  a worker started a source
 *   E <seq> <type> <status> <outputs> <bytes in> <bytes out> <dev> <ino> <json>
 *                                        its event was delivered
 *   K <seq> <dev> <ino>                  a file at fault passed over (pm_batch_skip_file)
 *   X                                    the replay does not match what was shown before
 *   Z <pruned> <temps swept> <cpu seconds> <jobs>   the engine finished
 * The engine prints nothing itself: the supervisor shows each event from its E line, so an
 * event is shown exactly when it is counted, whatever the moment of a crash. Restarting: the
 * sources already shown are replayed (they are up to date now, so this is cheap, and the
 * manifest stays complete) without being shown again; the files at fault are passed over by
 * identity (device, inode), wherever the new scan meets them. Shown events are known by seq
 * (memory stays flat), so the new engine checks that its entries below the last one shown are
 * the same files in the same order (a digest of seq, device and inode, pm_journal_mix); when
 * the tree changed between the engines it says so ("X"), and the run warns and exits 1 rather
 * than trust counts that may be off. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void report_condemned(const sup_config *cfg, uint64_t seq, const char *path, int status,
                             const char *why)
{
    pm_event ev = {0};
    ev.type = PM_EVENT_FAILED;
    ev.source = path;
    ev.status = status;
    ev.message = why;
    ev.seq = seq;
    cli_print_event(&cfg->view, &ev, NULL);
}

static void add_summary(pm_summary *to, const pm_summary *s)
{
    to->processed += s->processed;
    to->outputs += s->outputs;
    to->up_to_date += s->up_to_date;
    to->skipped += s->skipped;
    to->failed += s->failed;
    to->scan_errors += s->scan_errors;
    to->passed_over += s->passed_over;
    to->bytes_in += s->bytes_in;
    to->bytes_out += s->bytes_out;
    to->pruned += s->pruned;
    to->temps_swept += s->temps_swept;
    if (s->jobs > to->jobs)
        to->jobs = s->jobs;
}

static char *death_text(int status)
{
    if (WIFSIGNALED(status))
        return g_strdup_printf("killed by SIG%s", sigabbrev_np(WTERMSIG(status))
                                                      ? sigabbrev_np(WTERMSIG(status))
                                                      : "a signal");
    return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
}

/* The files an interrupted engine was still working on when it was killed: named, not
 * counted (the run was interrupted; they are done again next time). */
static void abandon(const sup_config *cfg, const engine_run *er, uint64_t quiet_below,
                    GHashTable *quiet)
{
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, er->flight);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        uint64_t seq = (uint64_t) * (gint64 *)k;
        if (seq < quiet_below || cli_seq_has(quiet, seq))
            continue;
        char *why = er->abandoned ? g_strdup_printf("still working %g s after the interrupt; "
                                                    "abandoned",
                                                    DRAIN_GRACE)
                                  : g_strdup("interrupted twice; abandoned");
        report_condemned(cfg, seq, ((inflight *)v)->path, PM_ERR_CANCELLED, why);
        g_free(why);
    }
}

/* Did this engine end without finishing its batch (a crash, or our kill)? */
static int engine_died(const engine_run *er)
{
    return WIFSIGNALED(er->status) ||
           (WIFEXITED(er->status) && !er->got_z && WEXITSTATUS(er->status) != 2 &&
            WEXITSTATUS(er->status) != 3 && !er->signo);
}

int cli_supervise(const sup_config *given)
{
    sup_config run = *given; /* with the spooled lists, for every engine */
    const sup_config *cfg = &run;
    int list_fds[CLI_MAX_LISTS], n_list_fds = 0;
    double t0 = cli_now();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sigfd < 0)
        return 3;
    int spooled = cli_spool_lists(cfg->lists, cfg->n_lists, sigfd, list_fds, &n_list_fds);
    run.list_fds = list_fds;
    run.n_list_fds = n_list_fds;
    if (spooled != 0) {
        if (spooled > 128 && !cfg->view.quiet) {
            pm_summary none = {0};
            cli_print_summary(&none, cfg->view.dry_run);
        }
        for (int i = 0; i < n_list_fds; i++)
            close(list_fds[i]);
        close(sigfd);
        return spooled;
    }

    pm_summary total = {0};
    uint64_t quiet_below = 1; /* every seq below has been reported */
    uint64_t digest = 0;      /* pm_journal_mix over the seqs below quiet_below */
    GHashTable *quiet = cli_seq_map(), *condemned = cli_seq_map();
    int tree_changed = 0;
    uint64_t n_condemned = 0;
    int user_signal = 0, exit_code = -1, restarts_without_culprit = 0;
    for (;;) {
        engine_run er = {0};
        er.quiet_below = quiet_below;
        er.digest = digest;
        er.quiet = quiet;
        er.skip = condemned;
        er.lanes = cfg->lanes;
        cli_engine_run(cfg, &er, sigfd, &user_signal);
        add_summary(&total, &er.sum);
        tree_changed |= er.tree_changed;
        /* everything this engine reported is replayed quietly next time */
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, er.done);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (!cli_seq_has(quiet, (uint64_t) * (gint64 *)k))
                cli_seq_put(quiet, (uint64_t) * (gint64 *)k, ((ident *)v)->dev, ((ident *)v)->ino);
        for (; quiet_below < er.done_below; quiet_below++)
            cli_seq_remove(quiet, quiet_below);
        digest = er.digest;
        for (;;) {
            const ident *id = cli_seq_get(quiet, quiet_below);
            if (!id)
                id = cli_seq_get(condemned, quiet_below);
            if (!id)
                break;
            digest = pm_journal_mix(digest, quiet_below, id->dev, id->ino);
            cli_seq_remove(quiet, quiet_below);
            quiet_below++;
        }
        if (er.abandoned || (user_signal && !er.got_z)) {
            /* killed after the grace, or left at once on a second signal: name what was in
             * flight, and sweep the temps it left */
            abandon(cfg, &er, quiet_below, quiet);
            engine_run sweep = {0};
            sweep.sweep_only = 1;
            sweep.quiet_below = UINT64_MAX;
            cli_engine_run(cfg, &sweep, sigfd, &user_signal);
            total.temps_swept += sweep.sum.temps_swept;
            cli_engine_run_free(&sweep);
        }
        if (user_signal || !engine_died(&er)) {
            if (!user_signal && WIFEXITED(er.status) && WEXITSTATUS(er.status) >= 2)
                exit_code = WEXITSTATUS(er.status); /* usage or fatal: as the engine said */
            cli_engine_run_free(&er);
            break;
        }
        /* The engine died. A timeout names its file; a crash names the only file in flight,
         * or each suspect is tried alone. Files merely in flight beside a timed-out one are
         * innocent: the next engine does them again. */
        char *death = death_text(er.status);
        int culprits = 0;
        GHashTableIter fi;
        gpointer fk, fv;
        g_hash_table_iter_init(&fi, er.flight);
        int n_flight = (int)g_hash_table_size(er.flight);
        while (g_hash_table_iter_next(&fi, &fk, &fv)) {
            uint64_t seq = (uint64_t) * (gint64 *)fk;
            inflight *f = fv;
            int guilty = 0, status = PM_ERR_CRASHED;
            char *why = NULL;
            if (seq < quiet_below || cli_seq_has(quiet, seq)) {
                /* shown by an earlier engine, only replayed here: not the culprit */
            } else if (er.timed_out) {
                guilty = f->timed_out;
                status = PM_ERR_TIMEOUT;
                why = g_strdup_printf("still working after --timeout=%g s; stopped", cfg->timeout);
            } else if (n_flight == 1) {
                guilty = 1;
                why = g_strdup_printf("the decoding process was %s", death);
            } else {
                /* several suspects: this one alone, in its own engine */
                engine_run alone = {0};
                alone.only = seq;
                alone.quiet_below = quiet_below;
                alone.digest = digest;
                alone.quiet = quiet;
                alone.skip = condemned;
                cli_engine_run(cfg, &alone, sigfd, &user_signal);
                add_summary(&total, &alone.sum);
                tree_changed |= alone.tree_changed;
                if (engine_died(&alone) && !user_signal) {
                    guilty = 1;
                    status = alone.timed_out ? PM_ERR_TIMEOUT : PM_ERR_CRASHED;
                    char *d = death_text(alone.status);
                    why = alone.timed_out
                              ? g_strdup_printf("still working after --timeout=%g s; stopped",
                                                cfg->timeout)
                              : g_strdup_printf("the decoding process was %s (alone)", d);
                    g_free(d);
                } else if (cli_engine_did_report(&alone, seq)) {
                    cli_seq_put(quiet, seq, f->dev, f->ino); /* reported by its own engine */
                }
                cli_engine_run_free(&alone);
            }
            if (guilty) {
                report_condemned(cfg, seq, f->path, status, why);
                cli_seq_put(condemned, seq, f->dev, f->ino);
                n_condemned++;
                culprits++;
            }
            g_free(why);
        }
        g_free(death);
        cli_engine_run_free(&er);
        if (user_signal)
            break;
        /* A death outside any file (or one no file reproduces) may happen once more; then
         * give up rather than loop. */
        if (culprits == 0 && ++restarts_without_culprit > 1) {
            fputs("pixmill: the engine keeps dying outside any one file; stopping\n", stderr);
            exit_code = 3;
            break;
        }
    }
    total.failed += n_condemned;
    if (tree_changed) /* counts may be off: never an exit 0 on them */
        fputs("pixmill: the inputs changed while the run was restarted after a crash: some files "
              "may be shown twice or not at all; run again to be sure\n",
              stderr);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    total.wall_seconds = cli_now() - t0;
    total.cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (exit_code != 2 && (!cfg->view.quiet || user_signal))
        cli_print_summary(&total, cfg->view.dry_run);
    g_hash_table_destroy(quiet);
    g_hash_table_destroy(condemned);
    for (int i = 0; i < n_list_fds; i++)
        close(list_fds[i]);
    close(sigfd);
    if (user_signal)
        return 128 + user_signal;
    if (exit_code >= 0)
        return exit_code;
    return (total.failed + total.scan_errors || tree_changed) ? 1 : 0;
}
