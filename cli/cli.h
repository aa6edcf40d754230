/* The command's rooms, and what they share. One run passes them in this order:
 *   args.c       argv -> cli_args (pm_options, the view, the supervisor's settings)
 *   main.c       wires them: hands the run to the supervisor, or (in an engine, or with
 *                --no-isolate) runs the batch through the public API and its signal thread
 *   supervise.c  the run across engines: who is at fault when one dies, what the next replays
 *   engine.c     one engine run: start it or its lanes, read their journals, time out
 *   spool.c      the --files-from lists, copied once for every engine
 *   print.c      every line the user sees: events, failures, the summary
 * Calls go one way: main -> args, supervise, print; supervise -> engine, spool, print;
 * engine -> print. The command uses only the public header. */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <pixmill/pixmill.h>

#include <stdint.h>
#include <stdio.h>

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FILES_FAILED = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_FATAL = 3,
};

#define CLI_MAX_LISTS 64 /* --files-from */
#define CLI_MAX_ALLOW 16 /* --allow */

/* How events are shown. */
typedef struct cli_view {
    int quiet;
    int verbose;
    int json;
    int dry_run;
    int engine; /* an engine under a supervisor: it prints nothing itself */
} cli_view;

/* ---- args.c ---- */
typedef struct cli_args {
    pm_options opts; /* its strings point into argv and the recipe */
    cli_view view;
    double timeout; /* --timeout, seconds (0: none) */
    int isolate;    /* run under a supervisor (not --no-isolate) */
    int low_memory;
    const char *allow[CLI_MAX_ALLOW];
    int n_allow;
    const char *files_from[CLI_MAX_LISTS];
    int n_files_from;
    char delim;    /* of the lists' paths */
    char **inputs; /* the INPUT arguments, in argv */
    int n_inputs;
    char **given; /* argv as given (getopt permutes argv), for the engine */
    pm_recipe *recipe;
    int recipe_is_preset; /* the recipe is a --preset */
    /* --engine-*: from a supervisor to its engine */
    int engine_fd; /* the journal; -1: not an engine */
    uint64_t engine_only;
    int engine_sweep, engine_lane_jobs;
    struct _GArray *skip_ids; /* (dev, ino) pairs of guint64 */
    uint64_t check_below, check_digest;
    int engine_lists[CLI_MAX_LISTS], n_engine_lists;
} cli_args;

#define CLI_GO_ON (-1)
/* Parses argv into a (cli_args_free it whatever the outcome). CLI_GO_ON, or the exit status
 * to end with at once: 0 after --help or --version, CLI_EXIT_USAGE after a usage error (said
 * on stderr). stdin_closed: descriptor 0 was closed when the command started. */
int cli_parse_args(int argc, char **argv, int stdin_closed, cli_args *a);
/* The recipe's strings are used by opts until the batch copies them. */
void cli_args_drop_recipe(cli_args *a);
void cli_args_free(cli_args *a);
/* "pixmill: ..." and the --help hint on stderr; returns CLI_EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) int cli_usage_error(const char *fmt, ...);

/* ---- print.c ---- */
/* One event, as the command shows it: a JSON line on stdout with --json (json_line when
 * given, else made from ev), and human lines (outputs on stdout with -v, failures on stderr). */
void cli_print_event(const cli_view *view, const pm_event *ev, const char *json_line);

/* Prints a path with control characters, backslashes and invalid UTF-8 escaped. */
void cli_print_escaped(FILE *f, const char *s);
/* "pixmill: PATH: reason" on stderr, as for any failed file. */
void cli_print_failure(const pm_event *ev, int dry_run);
void cli_print_summary(const pm_summary *s, int dry_run);
/* An engine's journalled event (its E line's type, status and JSON), shown as the engine
 * itself would have shown it. */
void cli_print_journal_event(const cli_view *v, int type, int status, const char *json);

/* ---- spool.c ---- */
/* Copies each list (a path, or "-" for stdin) whole into an unlinked temp file, into fds (*n_fds
 * of them; the caller closes them). 0; 2 when a list cannot be opened (a usage error, nothing
 * touched); 3 when one cannot be copied whole; 128 + the signal when one arrived on sigfd. */
int cli_spool_lists(const char *const *lists, int n_lists, int sigfd, int *fds, int *n_fds);

/* ---- supervise.c ---- */

/* The value a supervisor's forwarded first signal carries (sigqueue): an engine that had the
 * same signal already (a terminal's Ctrl-C reaches both) takes it for the same one, not a
 * second. */
#define CLI_SIGNAL_FORWARDED 0x706d6631

typedef struct sup_config {
    char **argv; /* the command line as given (argv[0] excluded), options and inputs */
    int argc;
    double timeout; /* per source, seconds; 0: none */
    cli_view view;
    int force;
    const char **lists; /* --files-from values, in order */
    int n_lists;
    int lanes; /* > 1: that many engines at once, sharing one scan (the lanes) */
    int jobs;  /* with lanes: workers in all, shared out among them */
    /* set by the supervisor: the lists spooled (spool.c), which every engine reads */
    const int *list_fds;
    int n_list_fds;
} sup_config;

/* Runs the batch in an engine process (this program again, with --engine-* options) and
 * returns the exit status. */
int cli_supervise(const sup_config *cfg);

#endif
