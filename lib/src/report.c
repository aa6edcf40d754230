/* JSON for the --json event stream and the manifest, with json-glib. File names are bytes,
 * JSON strings are UTF-8: every name is given readably ("source", "path": invalid bytes become
 * U+FFFD) and exactly ("source_url", "url": percent-escaped bytes). */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *event_name(const pm_event *ev)
{
    switch (ev->type) {
    case PM_EVENT_DONE:
        return "done";
    case PM_EVENT_FAILED:
        return "failed";
    case PM_EVENT_SKIPPED:
        return ev->status == PM_OK ? "up-to-date" : "skipped";
    case PM_EVENT_SCAN_ERROR:
        return "scan-error";
    case PM_EVENT_PLANNED:
        return "planned";
    case PM_EVENT_PRUNED:
        return "pruned";
    case PM_EVENT_PASSED_OVER:
        return "passed-over";
    }
    return "unknown";
}

static const char *format_name(pm_format f)
{
    static const char *const names[] = {"same", "jpeg", "png", "webp",
                                        "avif", "heif", "gif", "tiff"};
    return (unsigned)f <= PM_FORMAT_LAST ? names[f] : "unknown";
}

static void add_name(JsonBuilder *jb, const char *key, const char *url_key, const char *name)
{
    char *text = g_utf8_make_valid(name ? name : "", -1);
    json_builder_set_member_name(jb, key);
    json_builder_add_string_value(jb, text);
    g_free(text);
    if (url_key) {
        char *url = g_uri_escape_string(name ? name : "", "/", FALSE);
        json_builder_set_member_name(jb, url_key);
        json_builder_add_string_value(jb, url);
        g_free(url);
    }
}

static void add_int(JsonBuilder *jb, const char *key, gint64 v)
{
    json_builder_set_member_name(jb, key);
    json_builder_add_int_value(jb, v);
}

static void add_string(JsonBuilder *jb, const char *key, const char *v)
{
    char *text = g_utf8_make_valid(v, -1);
    json_builder_set_member_name(jb, key);
    json_builder_add_string_value(jb, text);
    g_free(text);
}

static void add_error(JsonBuilder *jb, int status, int sys_errno, const char *message)
{
    if (status == PM_OK)
        return;
    add_string(jb, "status", pm_status_name(status));
    GString *e = g_string_new(pm_strerror(status));
    if (sys_errno)
        g_string_append_printf(e, ": %s", g_strerror(sys_errno));
    if (message)
        g_string_append_printf(e, " (%s)", message);
    add_string(jb, "error", e->str);
    g_string_free(e, TRUE);
}

static void add_output(JsonBuilder *jb, const pm_output *o, int for_manifest)
{
    json_builder_begin_object(jb);
    add_name(jb, "path", for_manifest ? NULL : "path_url", o->path);
    add_name(jb, "name", "url", o->name);
    add_string(jb, "variant", o->variant ? o->variant : "");
    add_string(jb, "format", format_name(o->format));
    add_int(jb, "width", o->width);
    add_int(jb, "height", o->height);
    add_int(jb, "bytes", (gint64)o->bytes);
    if (!for_manifest) { /* a manifest is the same whether this run made the file or not */
        json_builder_set_member_name(jb, "current");
        json_builder_add_boolean_value(jb, o->current);
    }
    add_error(jb, o->status, o->sys_errno, o->message);
    json_builder_end_object(jb);
}

/* Is this output the whole source, only scaled (not cropped, padded or stretched)? Each axis
 * rounds by at most half a pixel, so w/h may differ from sw/sh by that much. */
static int whole_image(const pm_output *o, int sw, int sh)
{
    long long d = (long long)o->width * sh - (long long)o->height * sw;
    return sw > 0 && sh > 0 && 2 * llabs(d) <= (long long)sw + sh;
}

/* "a-320.webp 320w, a-640.webp 640w" per format, narrowest first: outputs made, each the whole
 * image (a srcset offers one picture at several widths: a crop such as a 1200x630 card is not
 * a candidate), one per width. */
static void add_srcset(JsonBuilder *jb, const pm_event *ev)
{
    json_builder_set_member_name(jb, "srcset");
    json_builder_begin_object(jb);
    for (int f = PM_FORMAT_JPEG; f <= PM_FORMAT_LAST; f++) {
        GArray *idx = g_array_new(FALSE, FALSE, sizeof(int));
        for (int i = 0; i < ev->n_outputs; i++)
            if ((int)ev->outputs[i].format == f && ev->outputs[i].status == PM_OK &&
                whole_image(&ev->outputs[i], ev->source_width, ev->source_height)) {
                int dup = 0;
                for (guint a = 0; a < idx->len && !dup; a++)
                    dup = ev->outputs[g_array_index(idx, int, a)].width == ev->outputs[i].width;
                if (!dup)
                    g_array_append_val(idx, i);
            }
        if (idx->len > 0) {
            /* insertion sort by width: a handful of entries */
            for (guint a = 1; a < idx->len; a++)
                for (guint c = a; c > 0 && ev->outputs[g_array_index(idx, int, c - 1)].width >
                                               ev->outputs[g_array_index(idx, int, c)].width;
                     c--) {
                    int t = g_array_index(idx, int, c);
                    g_array_index(idx, int, c) = g_array_index(idx, int, c - 1);
                    g_array_index(idx, int, c - 1) = t;
                }
            GString *set = g_string_new(NULL);
            for (guint a = 0; a < idx->len; a++) {
                const pm_output *o = &ev->outputs[g_array_index(idx, int, a)];
                char *url = g_uri_escape_string(o->name ? o->name : "", "/", FALSE);
                g_string_append_printf(set, "%s%s %dw", a ? ", " : "", url, o->width);
                g_free(url);
            }
            json_builder_set_member_name(jb, format_name((pm_format)f));
            json_builder_add_string_value(jb, set->str);
            g_string_free(set, TRUE);
        }
        g_array_free(idx, TRUE);
    }
    json_builder_end_object(jb);
}

static JsonNode *event_node(const pm_event *ev, int for_manifest)
{
    JsonBuilder *jb = json_builder_new();
    json_builder_begin_object(jb);
    if (!for_manifest) {
        add_string(jb, "event", event_name(ev));
    } else {
        add_string(jb, "status", ev->type == PM_EVENT_FAILED ? "failed" : "ok");
    }
    add_name(jb, "source", "source_url", ev->source);
    if (ev->source_width > 0) {
        add_int(jb, "source_width", ev->source_width);
        add_int(jb, "source_height", ev->source_height);
    }
    if (for_manifest) {
        if (ev->status != PM_OK) {
            GString *e = g_string_new(pm_strerror(ev->status));
            if (ev->sys_errno)
                g_string_append_printf(e, ": %s", g_strerror(ev->sys_errno));
            if (ev->message)
                g_string_append_printf(e, " (%s)", ev->message);
            add_string(jb, "error", e->str);
            g_string_free(e, TRUE);
        }
    } else {
        add_error(jb, ev->status, ev->sys_errno, ev->message);
        if (ev->sys_errno)
            add_int(jb, "errno", ev->sys_errno);
        if (ev->message)
            add_string(jb, "message", ev->message);
        if (ev->seq)
            add_int(jb, "seq", (gint64)ev->seq);
        if (ev->type == PM_EVENT_DONE || ev->type == PM_EVENT_FAILED) {
            add_int(jb, "decodes", ev->decodes);
            json_builder_set_member_name(jb, "seconds");
            json_builder_add_double_value(jb, ev->seconds);
        }
    }
    json_builder_set_member_name(jb, "outputs");
    json_builder_begin_array(jb);
    for (int i = 0; i < ev->n_outputs; i++)
        add_output(jb, &ev->outputs[i], for_manifest);
    json_builder_end_array(jb);
    if (for_manifest)
        add_srcset(jb, ev);
    json_builder_end_object(jb);
    JsonNode *node = json_builder_get_root(jb);
    g_object_unref(jb);
    return node;
}

static char *node_to_string(JsonNode *node, int pretty)
{
    JsonGenerator *gen = json_generator_new();
    json_generator_set_pretty(gen, pretty);
    json_generator_set_root(gen, node);
    char *text = json_generator_to_data(gen, NULL);
    g_object_unref(gen);
    return text;
}

char *pm_event_to_json(const pm_event *event)
{
    if (!event)
        return NULL;
    JsonNode *node = event_node(event, 0);
    char *text = node_to_string(node, 0);
    json_node_unref(node);
    /* g_malloc and malloc are one allocator since GLib 2.46: pm_free is free(). */
    return text;
}

void pm_free(void *p)
{
    g_free(p);
}

/* ---- the manifest ---- */

typedef struct entry {
    char *key; /* the source path's bytes: the sort order */
    JsonNode *node;
} entry;

struct pm__manifest {
    char *output_root;
    GArray *entries; /* of entry */
};

pm__manifest *pm__manifest_new(const char *output_root)
{
    pm__manifest *m = g_new0(pm__manifest, 1);
    m->output_root = g_strdup(output_root);
    m->entries = g_array_new(FALSE, FALSE, sizeof(entry));
    return m;
}

void pm__manifest_add(pm__manifest *m, const pm_event *ev)
{
    int wanted = ev->type == PM_EVENT_DONE || ev->type == PM_EVENT_FAILED ||
                 (ev->type == PM_EVENT_SKIPPED && ev->status == PM_OK);
    if (!m || !wanted || !ev->source)
        return;
    entry e = {g_strdup(ev->source), event_node(ev, 1)};
    g_array_append_val(m->entries, e);
}

static gint by_key(gconstpointer a, gconstpointer b)
{
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

/* How every manifest pixmill writes begins (json-glib's pretty printer). */
#define MANIFEST_HEAD "{\n  \"generator\" : \"pixmill "

static int is_manifest_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char head[sizeof(MANIFEST_HEAD)];
    ssize_t n = pread(fd, head, sizeof(head) - 1, 0);
    close(fd);
    return n == (ssize_t)sizeof(head) - 1 && memcmp(head, MANIFEST_HEAD, sizeof(head) - 1) == 0;
}

int pm__manifest_check(const char *path, pm__manifest_spot *spot, const char **why, int *sys_errno)
{
    spot->ino = 0;
    *sys_errno = 0;
    char *base = g_path_get_basename(path), *dir = g_path_get_dirname(path);
    gchar **parts = g_strsplit(path, "/", -1);
    int own = 0;
    for (int i = 0; parts[i]; i++)
        own |= g_str_has_prefix(parts[i], PM__STATE_DIR);
    g_strfreev(parts);
    *why = NULL;
    if (pm__scan_is_candidate_name(base))
        *why = "its name is an image's, which a walk would take as a source";
    else if (own)
        *why = "it would be among pixmill's own files (.pixmill)";
    if (!*why) {
        /* the folder as the user named it; one that does not exist yet (inside the output
         * folder, made by this run) holds nothing to protect */
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        if (dfd < 0) {
            if (errno != ENOENT) {
                *sys_errno = errno;
                *why = "its folder cannot be opened";
            }
        } else if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno != ENOENT) {
                *sys_errno = errno;
                *why = "cannot tell what is there";
            }
        } else if (S_ISLNK(st.st_mode)) {
            *why = "it is a symbolic link, which would be replaced";
        } else if (!S_ISREG(st.st_mode) || !is_manifest_at(dfd, base)) {
            *why = "a file that is not a pixmill manifest is there, and would be replaced";
        } else {
            spot->ino = (uint64_t)st.st_ino;
        }
        if (dfd >= 0)
            close(dfd);
    }
    g_free(base);
    g_free(dir);
    return *why ? PM_ERR_USAGE : PM_OK;
}

int pm__manifest_write(pm__manifest *m, const char *path, const pm__manifest_spot *spot,
                       int *sys_errno)
{
    g_array_sort(m->entries, by_key);
    JsonBuilder *jb = json_builder_new();
    json_builder_begin_object(jb);
    add_string(jb, "generator", "pixmill " PM_VERSION_STRING);
    add_name(jb, "output", NULL, m->output_root);
    json_builder_set_member_name(jb, "sources");
    json_builder_begin_array(jb);
    for (guint i = 0; i < m->entries->len; i++)
        json_builder_add_value(jb, json_node_ref(g_array_index(m->entries, entry, i).node));
    json_builder_end_array(jb);
    json_builder_end_object(jb);
    JsonNode *root = json_builder_get_root(jb);
    g_object_unref(jb);
    char *text = node_to_string(root, 1);
    json_node_unref(root);

    /* Atomically, beside its final name. */
    char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
    int rc = PM_ERR_MANIFEST;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    pm__temp t;
    if (dirfd < 0) {
        *sys_errno = errno;
    } else if (pm__publish_begin(&t, dirfd, sys_errno) == PM_OK) {
        int e = pm__write_all(t.fd, text, strlen(text));
        if (!e)
            e = pm__write_all(t.fd, "\n", 1); /* a text file ends with a newline */
        if (e)
            *sys_errno = e;
        /* Only over the manifest found there at the start (anything else that came since,
         * such as an output of this run, stays), or at a name still free. */
        if (!e &&
            (spot->ino ? pm__publish_commit_over(&t, base, spot->ino, 0, sys_errno)
                       : pm__publish_commit(&t, base, PM__PUBLISH_NOREPLACE, sys_errno)) == PM_OK)
            rc = PM_OK;
        else
            pm__publish_abort(&t);
    }
    if (dirfd >= 0)
        close(dirfd);
    g_free(dir);
    g_free(base);
    g_free(text);
    return rc;
}

void pm__manifest_free(pm__manifest *m)
{
    if (!m)
        return;
    for (guint i = 0; i < m->entries->len; i++) {
        g_free(g_array_index(m->entries, entry, i).key);
        json_node_unref(g_array_index(m->entries, entry, i).node);
    }
    g_array_free(m->entries, TRUE);
    g_free(m->output_root);
    g_free(m);
}
