/* Shared by the command's two halves: main.c (options, the engine that runs a batch) and
 * supervise.c (the process that runs the engine, survives its crashes and enforces
 * --timeout). */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <pixmill/pixmill.h>

#include <stdio.h>

/* How events are shown. */
typedef struct cli_view {
    int quiet;
    int verbose;
    int json;
    int dry_run;
    int engine; /* an engine under a supervisor: it prints nothing itself */
} cli_view;

/* One event, as the command shows it: a JSON line on stdout with --json (json_line when
 * given, else made from ev), and human lines (outputs on stdout with -v, failures on stderr). */
void cli_print_event(const cli_view *view, const pm_event *ev, const char *json_line);

/* Prints a path with control characters, backslashes and invalid UTF-8 escaped. */
void cli_print_escaped(FILE *f, const char *s);
/* "pixmill: PATH: reason" on stderr, as for any failed file. */
void cli_print_failure(const pm_event *ev, int dry_run);
void cli_print_summary(const pm_summary *s, int dry_run);

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
} sup_config;

/* Runs the batch in an engine process (this program again, with --engine-* options) and
 * returns the exit status. */
int cli_supervise(const sup_config *cfg);

#endif
