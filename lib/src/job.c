/* One job's state as it passes from room to room (job.h), and the ways a job or one of its
 * outputs fails. Owns the lifetime of pm__job_state and pm__result; decides nothing. */
#define _GNU_SOURCE
#include "job.h"

#include <glib.h>
#include <string.h>
#include <unistd.h>

/* What only the worker's half needs: the images and every descriptor. */
void pm__job_state_drop_work(pm__job_state *s)
{
    VIPS_UNREF(s->decoded);
    VIPS_UNREF(s->header);
    VIPS_UNREF(s->source);
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->dirfd = -1;
    g_free(s->dir_rel);
    s->dir_rel = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->srcdir >= 0)
        close(s->srcdir);
    s->srcdir = -1;
}

void pm__job_state_release(pm__job_state *s)
{
    const pm__process_ctx *ctx = s->ctx;
    for (int i = 0; i < s->n; i++) { /* temps never published (a failed job) */
        pm__planned *v = &s->v[i];
        int err;
        if (v->temp.name[0] && pm__job_output_dir(ctx, s, v->name, &err) == PM_OK) {
            v->temp.dirfd = s->dirfd;
            v->temp.fd = -1;
            pm__publish_abort(&v->temp);
        }
        v->temp.name[0] = '\0';
    }
    pm__job_state_drop_work(s);
    for (int i = 0; i < s->n; i++) {
        g_free(s->v[i].name);
        g_free((char *)s->v[i].out.message);
    }
    g_free(s->v);
    s->v = NULL;
    s->n = 0;
    pm__state_clear(&s->old);
    g_free(s->state_dir);
    g_free(s->state_name);
    g_free(s->src);
}

void pm__result_link(pm__result *r)
{
    r->ev.source = r->source;
    r->ev.message = r->message;
    r->ev.outputs = r->outputs;
    r->ev.output = r->ev.n_outputs > 0 ? r->outputs[0].path : NULL;
}

void pm__result_free(pm__result *r)
{
    if (!r)
        return;
    if (r->tail) { /* dropped unfinished (not expected): its temps go, nothing is published */
        pm__job_state *s = r->tail;
        pm__job_state_release(s);
        g_free(s);
    }
    for (int i = 0; i < r->ev.n_outputs; i++) {
        g_free((char *)r->outputs[i].path);
        g_free((char *)r->outputs[i].name);
        g_free((char *)r->outputs[i].variant);
        g_free((char *)r->outputs[i].message);
    }
    g_free(r->outputs);
    g_free(r->source);
    g_free(r->message);
    g_free(r);
}

void pm__job_fail(pm__result *r, int status, int err, char *text)
{
    r->ev.type = PM_EVENT_FAILED;
    r->ev.status = status;
    r->ev.sys_errno = err;
    g_free(r->message);
    r->message = text;
}

void pm__output_fail(pm__planned *v, int status, int err, char *text)
{
    v->out.status = status;
    v->out.sys_errno = err;
    g_free((char *)v->out.message);
    v->out.message = text;
}

/* The output folder of a name, opened (and created unless dry_run), cached across outputs. */
int pm__job_output_dir(const pm__process_ctx *ctx, pm__job_state *s, const char *name, int *err)
{
    const char *slash = strrchr(name, '/');
    char *rel = slash ? g_strndup(name, (gsize)(slash - name)) : g_strdup("");
    if (s->dirfd >= 0 && strcmp(rel, s->dir_rel) == 0) {
        g_free(rel);
        return PM_OK;
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->dirfd = -1;
    g_free(s->dir_rel);
    s->dir_rel = rel;
    return pm__publish_open_dir(ctx->out_rootfd, rel, &s->dirfd, err);
}
