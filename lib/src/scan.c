/* The single producer: a streaming, iterative, physical directory walk and file lists.
 * Memory is O(depth): one open DIR and one path segment per level, never a list of files. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct frame {
    DIR *dir; /* NULL while spilled */
    dev_t dev;
    ino_t ino;
    size_t path_len; /* length of the path string for this folder */
    size_t rel_len;  /* length of the output-relative string for this folder */
    size_t phys_len; /* length of its physical path */
    GPtrArray *rest; /* spilled: the entries still to visit, "<d_type><name>" */
    guint next;      /* into rest */
} frame;

/* At most this many folders are open at once, whatever the depth (a 2,000-level tree must not
 * need 2,000 descriptors): deeper, the oldest open ancestor is spilled. */
#define MAX_OPEN_DIRS 32

static const char *const candidate_exts[] = {"jpg", "jpeg", "jpe",  "jfif", "png",  "webp",
                                             "gif", "tif",  "tiff", "heic", "heif", "avif"};

const char *const *pm__scan_candidate_exts(size_t *n)
{
    *n = G_N_ELEMENTS(candidate_exts);
    return candidate_exts;
}

int pm__scan_is_candidate_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return 0;
    for (size_t i = 0; i < G_N_ELEMENTS(candidate_exts); i++)
        if (strcasecmp(dot + 1, candidate_exts[i]) == 0)
            return 1;
    return 0;
}

static int cancelled(const pm__scan_config *cfg)
{
    return cfg->cancel && __atomic_load_n(cfg->cancel, __ATOMIC_ACQUIRE);
}

/* "dir/name.ext" -> "dir/name": the stem keeps everything up to the last dot of the name. */
static void append_stem(GString *rel, const char *name)
{
    const char *dot = strrchr(name, '.');
    size_t len = (dot && dot != name) ? (size_t)(dot - name) : strlen(name);
    g_string_append_len(rel, name, (gssize)len);
}

static void join(GString *s, const char *name)
{
    if (s->len > 0 && s->str[s->len - 1] != '/')
        g_string_append_c(s, '/');
    g_string_append(s, name);
}

static int emit_source(const pm__scan_sink *sink, const char *path, const char *rel, int expl,
                       const struct stat *st, const pm__where *where, int place)
{
    return sink->on_source(path, rel, expl, st, where, place, sink->user_data);
}

static void emit_event(const pm__scan_sink *sink, pm_event_type type, const char *path, int status,
                       int err)
{
    if (sink->on_event)
        sink->on_event(type, path, status, err, sink->user_data);
}

static void emit_passed(const pm__scan_sink *sink, const char *path, const char *why)
{
    if (sink->on_passed)
        sink->on_passed(path, why, sink->user_data);
}

static int on_stack(const GArray *stack, dev_t dev, ino_t ino)
{
    for (guint i = 0; i < stack->len; i++) {
        const frame *f = &g_array_index(stack, frame, i);
        if (f->dev == dev && f->ino == ino)
            return 1;
    }
    return 0;
}

/* Reads what is left of a frame's folder into memory and closes it: names and types only, one
 * folder's worth. */
static void spill(frame *f)
{
    if (f->rest) { /* spilled before, open again only for its descriptor */
        closedir(f->dir);
        f->dir = NULL;
        return;
    }
    f->rest = g_ptr_array_new_with_free_func(g_free);
    f->next = 0;
    struct dirent *e;
    while ((e = readdir(f->dir)) != NULL) { // NOLINT(concurrency-mt-unsafe)
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *item = g_malloc(strlen(e->d_name) + 2);
        item[0] = (char)(e->d_type ? e->d_type : DT_UNKNOWN);
        strcpy(item + 1, e->d_name);
        g_ptr_array_add(f->rest, item);
    }
    closedir(f->dir);
    f->dir = NULL;
}

static int push_dir(GArray *stack, int fd, const struct stat *st, size_t path_len, size_t rel_len,
                    size_t phys_len)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = errno;
        close(fd);
        return err;
    }
    frame f = {d, st->st_dev, st->st_ino, path_len, rel_len, phys_len, NULL, 0};
    g_array_append_val(stack, f);
    /* the oldest still open, when too many are */
    guint open = 0;
    for (guint i = 0; i < stack->len; i++)
        open += g_array_index(stack, frame, i).dir != NULL;
    for (guint i = 0; open > MAX_OPEN_DIRS && i + 1 < stack->len; i++) {
        frame *old = &g_array_index(stack, frame, i);
        if (old->dir) {
            spill(old);
            open--;
        }
    }
    return 0;
}

/* A spilled folder on top again: reopened by its physical path, never through a link, and only
 * if it is still the same folder (a folder swapped in meanwhile is not walked). */
static int reopen(frame *f, const char *phys)
{
    int fd = pm__open_physical(phys, O_RDONLY | O_DIRECTORY);
    struct stat st;
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
        close(fd);
        return ESTALE;
    }
    f->dir = fdopendir(fd);
    if (!f->dir) {
        int err = errno;
        close(fd);
        return err;
    }
    return 0;
}

static void pop_frame(GArray *stack)
{
    frame *top = &g_array_index(stack, frame, stack->len - 1);
    if (top->dir)
        closedir(top->dir);
    if (top->rest)
        g_ptr_array_free(top->rest, TRUE);
    g_array_set_size(stack, stack->len - 1);
}

/* Classify one directory entry without following links. */
static unsigned char entry_type(DIR *d, const struct dirent *e)
{
    if (e->d_type != DT_UNKNOWN)
        return e->d_type;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return DT_UNKNOWN;
    if (S_ISDIR(st.st_mode))
        return DT_DIR;
    if (S_ISREG(st.st_mode))
        return DT_REG;
    if (S_ISLNK(st.st_mode))
        return DT_LNK;
    return DT_FIFO; /* some other non-regular kind: treated alike */
}

static void join_phys(GString *phys, const char *name)
{
    if (phys->len > 1)
        g_string_append_c(phys, '/');
    g_string_append(phys, name);
}

static int walk(const pm__scan_config *cfg, int rootfd, const struct stat *rootst,
                const char *root_path, const char *root_phys, const char *rel_prefix, int place,
                const pm__scan_sink *sink)
{
    GArray *stack = g_array_new(FALSE, FALSE, sizeof(frame));
    GString *path = g_string_new(root_path);
    GString *rel = g_string_new(rel_prefix ? rel_prefix : "");
    GString *phys = g_string_new(root_phys);
    size_t root_len = phys->len;
    int stop = 0;

    int err = push_dir(stack, rootfd, rootst, path->len, rel->len, phys->len);
    if (err) {
        emit_event(sink, PM_EVENT_SCAN_ERROR, root_path, PM_ERR_SCAN, err);
        goto out;
    }
    while (stack->len > 0 && !stop) {
        frame *top = &g_array_index(stack, frame, stack->len - 1);
        g_string_truncate(path, top->path_len);
        g_string_truncate(rel, top->rel_len);
        g_string_truncate(phys, top->phys_len);
        if (cancelled(cfg)) {
            stop = 1;
            break;
        }
        struct dirent spilled_entry, *e;
        if (top->rest) {
            /* a spilled folder: its entries from memory, its descriptor opened again */
            if (top->next >= top->rest->len) {
                pop_frame(stack);
                continue;
            }
            if (!top->dir && (err = reopen(top, phys->str)) != 0) {
                emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, err);
                pop_frame(stack);
                continue;
            }
            const char *item = g_ptr_array_index(top->rest, top->next++);
            memset(&spilled_entry, 0, sizeof(spilled_entry));
            spilled_entry.d_type = (unsigned char)item[0];
            g_strlcpy(spilled_entry.d_name, item + 1, sizeof(spilled_entry.d_name));
            e = &spilled_entry;
        } else {
            errno = 0;
            /* readdir is safe across threads for distinct streams (glibc); this one is ours. */
            e = readdir(top->dir); // NOLINT(concurrency-mt-unsafe)
            if (!e) {
                if (errno != 0)
                    emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, errno);
                pop_frame(stack);
                continue;
            }
        }
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        int temp = pm__publish_is_temp_name(name);
        if (temp || (name[0] == '.' && !cfg->include_hidden)) {
            join(path, name);
            emit_passed(sink, path->str,
                        temp ? "pixmill's temporary file" : "a dot name (--hidden takes it)");
            continue;
        }
        join(path, name);
        unsigned char type = entry_type(top->dir, e);
        if (type == DT_DIR) {
            int fd = openat(dirfd(top->dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat st;
            if (fd < 0) {
                if (errno == ELOOP || errno == ENOTDIR) /* replaced by a link meanwhile */
                    emit_event(sink, PM_EVENT_SKIPPED, path->str, PM_ERR_SYMLINK, 0);
                else
                    emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, errno);
                continue;
            }
            if (fstat(fd, &st) != 0) {
                emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, errno);
                close(fd);
                continue;
            }
            if (cfg->have_exclude && st.st_dev == cfg->exclude_dev &&
                st.st_ino == cfg->exclude_ino) {
                close(fd); /* the output root: never re-ingest our own outputs */
                emit_passed(sink, path->str, "the output folder");
                continue;
            }
            if (on_stack(stack, st.st_dev, st.st_ino)) {
                emit_event(sink, PM_EVENT_SKIPPED, path->str, PM_ERR_LOOP, 0);
                close(fd);
                continue;
            }
            join(rel, name);
            join_phys(phys, name);
            err = push_dir(stack, fd, &st, path->len, rel->len, phys->len);
            if (err)
                emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, err);
        } else if (pm__scan_is_candidate_name(name)) {
            if (type == DT_REG) {
                if (rel->len > 0)
                    g_string_append_c(rel, '/');
                append_stem(rel, name);
                /* the link count tells hard links apart (one source, one output: BAD-INPUT 19) */
                struct stat st;
                int ok = fstatat(dirfd(top->dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0;
                pm__where where = {phys->str, name, root_len, rootst->st_dev, top->dev, top->ino};
                stop = emit_source(sink, path->str, rel->str, 0, ok ? &st : NULL, &where, place);
            } else if (type == DT_LNK) {
                emit_event(sink, PM_EVENT_SKIPPED, path->str, PM_ERR_SYMLINK, 0);
            } else if (type == DT_UNKNOWN) {
                emit_event(sink, PM_EVENT_SCAN_ERROR, path->str, PM_ERR_SCAN, errno);
            } else {
                emit_event(sink, PM_EVENT_SKIPPED, path->str, PM_ERR_NOT_REGULAR, 0);
            }
        } else {
            emit_passed(sink, path->str, "not an image name");
        }
    }
out:
    while (stack->len > 0)
        pop_frame(stack);
    g_array_free(stack, TRUE);
    g_string_free(path, TRUE);
    g_string_free(rel, TRUE);
    g_string_free(phys, TRUE);
    return stop;
}

/* A named or listed file: followed once here if it is a link (as find -H), then known by its
 * physical place, so that the worker opens exactly it. */
static int scan_file(const char *path, int fd, const struct stat *st, const char *rel_prefix,
                     int place, const pm__scan_sink *sink)
{
    char *phys = pm__fd_path(fd, path);
    char *slash = phys ? strrchr(phys, '/') : NULL;
    if (!slash || !slash[1]) {
        emit_event(sink, PM_EVENT_SCAN_ERROR, path, PM_ERR_SCAN, phys ? EINVAL : ESTALE);
        g_free(phys);
        return 0;
    }
    char *dir = slash == phys ? g_strdup("/") : g_strndup(phys, (gsize)(slash - phys));
    int dfd = pm__open_physical(dir, O_PATH | O_DIRECTORY);
    struct stat dst;
    if (dfd < 0 || fstat(dfd, &dst) != 0) {
        emit_event(sink, PM_EVENT_SCAN_ERROR, path, PM_ERR_SCAN, errno);
        if (dfd >= 0)
            close(dfd);
        g_free(dir);
        g_free(phys);
        return 0;
    }
    close(dfd);
    GString *rel = g_string_new(NULL);
    if (rel_prefix) {
        g_string_append(rel, rel_prefix);
        const char *cut = strrchr(rel->str, '/');
        size_t keep = cut ? (size_t)(cut - rel->str) + 1 : 0;
        g_string_truncate(rel, keep);
    }
    const char *base = strrchr(path, '/');
    append_stem(rel, base ? base + 1 : path);
    pm__where where = {dir, slash + 1, strlen(dir), dst.st_dev, dst.st_dev, dst.st_ino};
    int stop = emit_source(sink, path, rel->str, 1, st, &where, place);
    g_string_free(rel, TRUE);
    g_free(dir);
    g_free(phys);
    return stop;
}

static int scan_one(const pm__scan_config *cfg, const char *path, const char *rel_prefix, int place,
                    const pm__scan_sink *sink);

int pm__scan_path(const pm__scan_config *cfg, const char *path, const char *rel_prefix,
                  const pm__scan_sink *sink)
{
    return scan_one(cfg, path, rel_prefix, -1, sink);
}

static int scan_one(const pm__scan_config *cfg, const char *path, const char *rel_prefix, int place,
                    const pm__scan_sink *sink)
{
    if (cancelled(cfg))
        return 1;
    /* A path the user named is followed if it is a link, as find -H does. O_PATH: it opens
     * without reading (a FIFO cannot block us, no read permission is needed); the worker
     * opens the file itself, where this found it. */
    int fd = open(path, O_PATH | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        emit_event(sink, PM_EVENT_SCAN_ERROR, path, PM_ERR_SCAN, errno);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int stop = 0;
    if (S_ISDIR(st.st_mode)) {
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char *phys = dfd >= 0 ? pm__fd_path(dfd, path) : NULL;
        if (dfd < 0 || !phys || fstat(dfd, &st) != 0) { /* the folder we opened */
            emit_event(sink, PM_EVENT_SCAN_ERROR, path, PM_ERR_SCAN,
                       dfd < 0 || phys ? errno : ESTALE);
            if (dfd >= 0)
                close(dfd);
        } else {
            stop = walk(cfg, dfd, &st, path, phys, rel_prefix, place, sink);
        }
        g_free(phys);
    } else if (!S_ISREG(st.st_mode)) {
        emit_event(sink, PM_EVENT_SKIPPED, path, PM_ERR_NOT_REGULAR, 0);
    } else {
        stop = scan_file(path, fd, &st, rel_prefix, place, sink);
    }
    close(fd);
    return stop;
}

int pm__scan_rel_from_listed(const char *path, char **out)
{
    GString *rel = g_string_new(NULL);
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            g_string_free(rel, TRUE);
            return PM_ERR_USAGE;
        }
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (rel->len > 0)
                g_string_append_c(rel, '/');
            g_string_append_len(rel, p, (gssize)len);
        }
        p += len;
    }
    *out = g_string_free(rel, FALSE);
    return PM_OK;
}

int pm__scan_list(const pm__scan_config *cfg, FILE *f, int delim, const pm__scan_sink *sink)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int stop = 0;
    errno = 0;
    while (!stop && (n = getdelim(&line, &cap, delim, f)) >= 0) {
        if (n > 0 && line[n - 1] == (char)delim)
            line[--n] = '\0';
        if (n == 0)
            continue;
        char *rel = NULL;
        if (pm__scan_rel_from_listed(line, &rel) != PM_OK || rel[0] == '\0') {
            emit_event(sink, PM_EVENT_SCAN_ERROR, line, PM_ERR_USAGE, 0);
            g_free(rel);
            continue;
        }
        stop = scan_one(cfg, line, rel, line[0] == '/' ? PM__PLACE_LIST_ABS : PM__PLACE_LIST_REL,
                        sink);
        g_free(rel);
        errno = 0;
    }
    int err = errno;
    free(line);
    if (!stop && ferror(f)) {
        errno = err ? err : EIO;
        return -1; /* a list read in part is never taken for the whole list */
    }
    return stop;
}
