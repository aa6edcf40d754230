/* How the command shows what happened: each event as human lines (outputs on stdout with -v,
 * failures on stderr, names escaped so that none can forge a line) or as a JSON line with
 * --json, the summary, and an engine's journalled event rebuilt from its JSON (the supervisor
 * shows what its engines did exactly as an engine would have). Prints; decides nothing. */
#define _GNU_SOURCE
#include "cli.h"

#include <glib.h>
#include <inttypes.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

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

static const char *member_string(JsonObject *o, const char *name)
{
    return json_object_has_member(o, name) ? json_object_get_string_member(o, name) : NULL;
}

static gint64 member_int(JsonObject *o, const char *name)
{
    return json_object_has_member(o, name) ? json_object_get_int_member(o, name) : 0;
}

static int status_from_name(const char *name)
{
    for (int st = 0; st >= -64; st--)
        if (name && strcmp(pm_status_name(st), name) == 0)
            return st;
    return PM_OK;
}

/* The event an engine journalled, rebuilt from its JSON (names from their exact, escaped
 * form), and shown as the engine itself would have. */
void cli_print_journal_event(const cli_view *v, int type, int status, const char *json)
{
    if (!v->json && !v->verbose && !v->dry_run &&
        (type == PM_EVENT_DONE || (type == PM_EVENT_SKIPPED && status == PM_OK)))
        return; /* nothing would be printed: no need to read it */
    JsonParser *p = json_parser_new();
    if (!json_parser_load_from_data(p, json, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
        g_object_unref(p);
        return;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    GPtrArray *owned = g_ptr_array_new_with_free_func(g_free);
    pm_event ev = {0};
    ev.type = (pm_event_type)type;
    ev.status = status;
    ev.source = g_uri_unescape_string(member_string(o, "source_url"), NULL);
    g_ptr_array_add(owned, (char *)ev.source);
    ev.sys_errno = (int)member_int(o, "errno");
    ev.message = member_string(o, "message");
    ev.source_width = (int)member_int(o, "source_width");
    ev.source_height = (int)member_int(o, "source_height");
    ev.seq = (uint64_t)member_int(o, "seq");
    JsonArray *outs =
        json_object_has_member(o, "outputs") ? json_object_get_array_member(o, "outputs") : NULL;
    ev.n_outputs = outs ? (int)json_array_get_length(outs) : 0;
    pm_output *po = g_new0(pm_output, ev.n_outputs ? ev.n_outputs : 1);
    for (int i = 0; i < ev.n_outputs; i++) {
        JsonObject *x = json_array_get_object_element(outs, (guint)i);
        char *path = g_uri_unescape_string(member_string(x, "path_url"), NULL);
        g_ptr_array_add(owned, path);
        po[i].path = path;
        po[i].name = member_string(x, "name");
        po[i].variant = member_string(x, "variant");
        pm_format_parse(member_string(x, "format"), &po[i].format);
        po[i].width = (int)member_int(x, "width");
        po[i].height = (int)member_int(x, "height");
        po[i].bytes = (uint64_t)member_int(x, "bytes");
        po[i].current =
            json_object_has_member(x, "current") && json_object_get_boolean_member(x, "current");
        po[i].status = status_from_name(member_string(x, "status"));
    }
    ev.outputs = po;
    ev.output = ev.n_outputs ? po[0].path : NULL;
    if (ev.source)
        cli_print_event(v, &ev, json);
    g_free(po);
    g_ptr_array_free(owned, TRUE);
    g_object_unref(p);
}
