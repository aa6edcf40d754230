/* The output root a run works in: made (not in a dry run) and opened, the run's hold on it
 * taken (state.c: its lock, a dead run's temps swept), a probe proving files can be made
 * there; and where it sits against the inputs (overlap: then outputs never replace anything)
 * and against the --manifest's path. Opens the root once; everything after goes through its
 * descriptor. */
#define _GNU_SOURCE
#include "batch.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int path_is_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    if (strcmp(outer, "/") == 0)
        return 1;
    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* path's place below the output root (out_real, physical), when it is there: its folder
 * resolved where it exists, else by the text of the path. g_free; NULL when not below. */
char *pm__outroot_below(const char *path, const char *out_real)
{
    char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
    char *real = realpath(dir, NULL), *cwd = real ? NULL : realpath(".", NULL);
    /* a folder not made yet: by text, from the physical current folder (not $PWD) */
    char *abs = real ? g_strdup(real) : cwd ? g_canonicalize_filename(dir, cwd) : g_strdup("");
    free(cwd);
    size_t n = strlen(out_real);
    char *rel = NULL;
    if (path_is_within(abs, out_real)) {
        const char *rest = abs + (strcmp(out_real, "/") == 0 ? 1 : n);
        while (*rest == '/')
            rest++;
        rel = *rest ? g_strconcat(rest, "/", base, NULL) : g_strdup(base);
    }
    free(real);
    g_free(abs), g_free(dir), g_free(base);
    return rel;
}

/* Does the output root overlap what the inputs cover, so that an existing file at an output
 * name may be an input? Then outputs never replace anything. An output root strictly inside
 * an input folder does not count: the walk never enters it. */
int pm__outroot_overlaps_inputs(const GArray *inputs, const char *out_real)
{
    for (guint i = 0; i < inputs->len; i++) {
        const input *in = &g_array_index(inputs, input, i);
        char *real = NULL;
        if (!in->path) {
            real = realpath(".", NULL); /* listed paths are relative to here */
        } else {
            struct stat st;
            if (stat(in->path, &st) == 0 && !S_ISDIR(st.st_mode)) {
                char *dir = g_path_get_dirname(in->path);
                real = realpath(dir, NULL);
                g_free(dir);
            } else {
                real = realpath(in->path, NULL);
            }
        }
        int hit = real && path_is_within(real, out_real);
        free(real);
        if (hit)
            return 1;
    }
    return 0;
}

/* Create the output root if needed and open it. A dry run creates nothing: a missing root is a
 * root with nothing in it yet (*out_fd -1). */
static int open_output_root(const char *dir, int dry_run, int *out_fd, int *sys_errno)
{
    *out_fd = -1;
    if (dry_run) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT) {
            *sys_errno = errno;
            return PM_ERR_OUTPUT_DIR;
        }
        *out_fd = fd;
        return PM_OK;
    }
    if (g_mkdir_with_parents(dir, 0777) != 0) {
        *sys_errno = errno;
        return PM_ERR_OUTPUT_DIR;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        *sys_errno = errno;
        return PM_ERR_OUTPUT_DIR;
    }
    *out_fd = fd;
    return PM_OK;
}

/* Proves that files can be created in the root: a temp, at once removed. Made under the root's
 * lock (after pm__root_begin): a run sweeping a dead run's temps holds that lock alone, so it
 * never takes a live probe for one of them. */
static int probe_output_root(int rootfd, int *sys_errno)
{
    pm__temp probe;
    if (pm__publish_begin(&probe, rootfd, sys_errno) != PM_OK)
        return PM_ERR_OUTPUT_DIR;
    pm__publish_abort(&probe);
    return PM_OK;
}

int pm__outroot_open(const char *dir, int dry_run, pm__outroot *o, int *sys_errno, char **what)
{
    *o = (pm__outroot){.fd = -1, .root = {-1, ""}};
    *what = NULL;
    int rc = open_output_root(dir, dry_run, &o->fd, sys_errno);
    if (rc != PM_OK)
        return rc;
    o->real = o->fd >= 0 ? realpath(dir, NULL) : NULL;
    if (o->fd >= 0 && (fstat(o->fd, &o->st) != 0 || !o->real)) {
        *sys_errno = errno;
        pm__outroot_close(o);
        return PM_ERR_OUTPUT_DIR;
    }
    if (o->fd < 0 || dry_run)
        return PM_OK;
    if (pm__root_begin(o->fd, &o->root, &o->swept) != 0) {
        /* no state folder of its own (DIR/.pixmill a link, not a folder, no room): what was
         * built could not be told from what was not */
        *sys_errno = errno;
        *what = g_strdup_printf("%s/%s", dir, PM__STATE_DIR);
        pm__outroot_close(o);
        return PM_ERR_OUTPUT_DIR;
    }
    rc = probe_output_root(o->fd, sys_errno);
    if (rc != PM_OK)
        pm__outroot_close(o);
    return rc;
}

void pm__outroot_close(pm__outroot *o)
{
    if (o->fd >= 0) {
        pm__root_end(o->fd, &o->root); /* nothing when the run took no hold */
        close(o->fd);
    }
    o->fd = -1;
    free(o->real);
    o->real = NULL;
}
