/* Between the supervisor's two rooms: engine.c (one engine run: start the engine or its lanes,
 * read their journals, kill on a timeout, forward signals) and supervise.c (the run across
 * engines: who is at fault when one dies, what the next one replays, the summary). */
#ifndef PM_CLI_ENGINE_H
#define PM_CLI_ENGINE_H

#include "cli.h"

#include <glib.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

static inline double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* After the user's first SIGINT/SIGTERM the engine drains: files in flight may finish. One
 * that is still working this long after (a hung decoder, a huge encode) is abandoned: the
 * engine is killed, and a short engine sweeps its temps. */
#define DRAIN_GRACE 10.0

typedef struct inflight {
    char *path;
    uint64_t dev, ino; /* the source as its engine's scan saw it */
    double start;
    int lane;      /* the engine working on it (its index among the lanes) */
    int timed_out; /* its engine was killed for it */
} inflight;

/* What one engine was asked to do and what it did. */
typedef struct engine_run {
    /* in */
    uint64_t quiet_below; /* events below this seq were shown by an earlier engine */
    uint64_t digest;      /* pm_journal_mix over those (and, out, over all below done_below) */
    GHashTable *quiet;    /* and these (seq_map): replayed for the manifest, not shown */
    GHashTable *skip;     /* seq_map of the files at fault, passed over by identity */
    uint64_t only;        /* 0, or run just this seq (one worker) */
    int sweep_only;       /* process nothing: only sweep the temps of a killed engine */
    int lanes;            /* > 1: that many engines at once, fed by the first one's scan */
    /* out */
    GHashTable *flight;  /* seq -> inflight, still open when the engine ended */
    uint64_t done_below; /* every seq below was reported (by this engine or earlier ones) */
    GHashTable *done;    /* and these above it (seq_map), reported by this engine: a few, since
                            events arrive nearly in order, so memory does not grow with the
                            files */
    int tree_changed;    /* an engine said "X" */
    pm_summary sum;      /* from its E lines (and Z) */
    int got_z;           /* from every lane */
    int status;          /* waitpid status: of the first lane that died, or else of the
                            first that failed, or else of the first */
    GPtrArray *held;     /* lanes' events without a seq (fatal errors), shown at the end */
    GHashTable *said;    /* and those shown: each is said once, not once a lane */
    uint64_t timed_out;  /* the seq the supervisor killed it for, or 0 */
    int abandoned;       /* killed: still working DRAIN_GRACE s after the user's signal */
    int signo;           /* a signal the user sent, or 0 */
} engine_run;

/* A set of seqs, each with the identity (device, inode) of its entry: 0 0 where it is not a
 * source. */
typedef struct ident {
    uint64_t dev, ino;
} ident;

GHashTable *cli_seq_map(void);
void cli_seq_put(GHashTable *map, uint64_t seq, uint64_t dev, uint64_t ino);
const ident *cli_seq_get(GHashTable *map, uint64_t seq);
int cli_seq_has(GHashTable *map, uint64_t seq);
void cli_seq_remove(GHashTable *map, uint64_t seq);

/* Runs one engine, or a run's lanes, to the end: reads their journals, kills an engine whose
 * source passes the timeout (the other lanes go on), or all when the drain passes its grace,
 * and forwards signals sent to the supervisor (*user_signal: the first). */
void cli_engine_run(const sup_config *cfg, engine_run *er, int sigfd, int *user_signal);
void cli_engine_run_free(engine_run *er);
/* Was seq reported, by this engine or an earlier one? */
int cli_engine_did_report(const engine_run *er, uint64_t seq);

#endif
