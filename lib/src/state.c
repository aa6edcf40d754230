/* Build state: for each source, one small record below the output root,
 * .pixmill/state/<mirrored folder>/<source name>.st, saying what the source was (size, mtime,
 * content hash, dimensions) and what was made from it (each output's name, the digest of the
 * options that made it, its size, mtime and hash). Records are read and written one source at
 * a time, so memory does not grow with the tree. A record is written after its outputs are
 * published, and atomically: an output without a record is never taken as current. It is not
 * fsynced: a power cut may leave it missing, cut short or an older run's, and every claim in it
 * is checked against the files when it is read, so such a record only costs a rebuild. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define STATE_ROOT PM__STATE_DIR "/state"
#define STATE_MAGIC "pixmill-state 1"
#define STATE_SUFFIX ".st"
/* A source whose name leaves no room for ".st" within NAME_MAX: its first 200 bytes, a hash
 * of the whole name, and this suffix, which no plain record name ends with. */
#define STATE_LONG_SUFFIX ".sth"

int64_t pm__mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + (int64_t)st->st_mtim.tv_nsec;
}

int64_t pm__ctime_ns(const struct stat *st)
{
    return (int64_t)st->st_ctim.tv_sec * 1000000000 + (int64_t)st->st_ctim.tv_nsec;
}

int pm__hash_fd(int fd, char out[PM__HASH_HEX])
{
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        return -1;
    XXH3_128bits_reset(h);
    enum { CHUNK = 1 << 16 };
    char *buf = g_malloc(CHUNK);
    off_t off = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, CHUNK, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        XXH3_128bits_update(h, buf, (size_t)n);
        off += n;
    }
    if (rc == 0) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
        for (int i = 0; i < 16; i++)
            g_snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
    }
    g_free(buf);
    XXH3_freeState(h);
    return rc;
}

void pm__state_location(const char *out_rel, const char *source, char **dir_rel, char **name)
{
    const char *slash = strrchr(out_rel, '/');
    if (slash)
        *dir_rel = g_strdup_printf("%s/%.*s", STATE_ROOT, (int)(slash - out_rel), out_rel);
    else
        *dir_rel = g_strdup(STATE_ROOT);
    char *base = g_path_get_basename(source);
    if (strlen(base) + strlen(STATE_SUFFIX) <= 255)
        *name = g_strconcat(base, STATE_SUFFIX, NULL);
    else
        *name = g_strdup_printf("%.200s-%016" G_GINT64_MODIFIER "x" STATE_LONG_SUFFIX, base,
                                (guint64)XXH3_64bits(base, strlen(base)));
    g_free(base);
}

static int is_record_name(const char *name)
{
    return g_str_has_suffix(name, STATE_SUFFIX) || g_str_has_suffix(name, STATE_LONG_SUFFIX);
}

void pm__state_clear(pm__state *st)
{
    for (int i = 0; i < st->n_outs; i++) {
        g_free(st->outs[i].name);
        g_free(st->outs[i].variant);
    }
    g_free(st->outs);
    g_free(st->source);
    g_free(st->root);
    memset(st, 0, sizeof(*st));
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isxdigit(s[i]))
            return 0;
    return 1;
}

/* One "key<TAB>field..." line into st. 0, or -1 when it does not parse. */
static int parse_line(char *line, pm__state *st, GArray *outs)
{
    gchar **f = g_strsplit(line, "\t", -1);
    guint n = g_strv_length(f);
    int ok = 0;
    if (n == 2 && strcmp(f[0], "source") == 0) {
        g_free(st->source);
        st->source = g_strcompress(f[1]);
        ok = 1;
    } else if (n == 3 && strcmp(f[0], "root") == 0) {
        g_free(st->root);
        st->root = g_strcompress(f[1]);
        st->root_dev = g_ascii_strtoull(f[2], NULL, 10);
        ok = 1;
    } else if (n == 2 && strcmp(f[0], "size") == 0) {
        st->size = g_ascii_strtoull(f[1], NULL, 10);
        ok = 1;
    } else if (n == 2 && strcmp(f[0], "mtime") == 0) {
        st->mtime_ns = g_ascii_strtoll(f[1], NULL, 10);
        ok = 1;
    } else if (n == 3 && strcmp(f[0], "change") == 0) {
        st->ctime_ns = g_ascii_strtoll(f[1], NULL, 10);
        st->ino = g_ascii_strtoull(f[2], NULL, 10);
        ok = 1;
    } else if (n == 2 && strcmp(f[0], "hash") == 0 && is_hex(f[1], PM__HASH_HEX - 1)) {
        g_strlcpy(st->hash, f[1], sizeof(st->hash));
        ok = 1;
    } else if ((n == 6 || n == 7) && strcmp(f[0], "dims") == 0) {
        st->width = atoi(f[1]);
        st->height = atoi(f[2]);
        st->pages = atoi(f[3]);
        st->same = (pm_format)atoi(f[4]);
        st->has_profile = atoi(f[5]);
        st->dc_source = n == 7 ? atoi(f[6]) : 0; /* records before it had six fields */
        ok = st->dc_source >= 0 && st->dc_source <= 2 && st->width > 0 && st->height > 0 &&
             (unsigned)st->same <= PM_FORMAT_LAST;
    } else if ((n == 11 || n == 12) && strcmp(f[0], "out") == 0 && is_hex(f[1], 16) &&
               is_hex(f[7], PM__HASH_HEX - 1)) {
        pm__state_out o = {0};
        g_strlcpy(o.digest, f[1], sizeof(o.digest));
        o.format = (pm_format)atoi(f[2]);
        o.width = atoi(f[3]);
        o.height = atoi(f[4]);
        o.bytes = g_ascii_strtoull(f[5], NULL, 10);
        o.mtime_ns = g_ascii_strtoll(f[6], NULL, 10);
        g_strlcpy(o.hash, f[7], sizeof(o.hash));
        o.ino = g_ascii_strtoull(f[8], NULL, 10);
        o.variant = g_strcompress(f[9]);
        o.name = g_strcompress(f[10]);
        o.left = n == 12 && strcmp(f[11], "left") == 0; /* records before it had 11 fields */
        g_array_append_val(outs, o);
        ok = *o.name != '\0';
    }
    g_strfreev(f);
    return ok ? 0 : -1;
}

/* A path below a folder, as a walk makes them: no empty, "." or ".." part. */
static int rel_ok(const char *rel)
{
    const char *comp = rel;
    if (!*rel)
        return 0;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - comp);
            if (n == 0 || (n == 1 && comp[0] == '.') ||
                (n == 2 && comp[0] == '.' && comp[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            comp = p + 1;
        }
    }
}

/* Every name in a record is read from a folder others may write (a shared output root, a
 * restored cache): held to what pixmill itself would have written, or the record is not one
 * of pixmill's. The source is absolute, below its root; each output's name is one a template
 * could give. */
static int record_is_sane(const pm__state *st)
{
    if (!st->source || st->source[0] != '/')
        return 0;
    if (st->root) {
        size_t n = strlen(st->root);
        int top = n == 1 && st->root[0] == '/';
        if (st->root[0] != '/' || strncmp(st->source, st->root, n) != 0 ||
            (!top && st->source[n] != '/') || !rel_ok(st->source + n + !top))
            return 0;
    }
    for (int i = 0; i < st->n_outs; i++)
        if (!pm__name_is_safe(st->outs[i].name))
            return 0;
    return 1;
}

/* The part of a record's source below its root. */
static const char *source_below_root(const pm__state *st)
{
    size_t n = strlen(st->root);
    return st->source + n + !(n == 1 && st->root[0] == '/');
}

int pm__state_load_at(int dirfd, const char *name, pm__state *st)
{
    memset(st, 0, sizeof(*st));
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (1 << 20)) {
        close(fd);
        return -1;
    }
    GString *text = g_string_sized_new((gsize)sb.st_size + 1);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            g_string_append_len(text, buf, n);
    close(fd);
    GArray *outs = g_array_new(FALSE, TRUE, sizeof(pm__state_out));
    gchar **lines = g_strsplit(text->str, "\n", -1);
    g_string_free(text, TRUE);
    int rc = (n == 0 && lines[0] && strcmp(lines[0], STATE_MAGIC) == 0) ? 0 : -1;
    for (int i = 1; rc == 0 && lines[i]; i++)
        if (*lines[i])
            rc = parse_line(lines[i], st, outs);
    g_strfreev(lines);
    st->n_outs = (int)outs->len;
    st->outs = (pm__state_out *)(void *)g_array_free(outs, FALSE);
    if (rc != 0 || !st->source || st->width <= 0 || !*st->hash || !record_is_sane(st)) {
        pm__state_clear(st);
        return -1;
    }
    return 0;
}

int pm__state_load(int rootfd, const char *dir_rel, const char *name, pm__state *st)
{
    memset(st, 0, sizeof(*st));
    if (rootfd < 0)
        return -1;
    int dirfd = pm__open_beneath(rootfd, dir_rel, O_RDONLY | O_DIRECTORY, 0);
    if (dirfd < 0)
        return -1;
    int rc = pm__state_load_at(dirfd, name, st);
    close(dirfd);
    return rc;
}

int pm__state_save(int rootfd, const char *dir_rel, const char *name, const pm__state *st,
                   int *sys_errno)
{
    GString *text = g_string_new(STATE_MAGIC "\n");
    char *esc = g_strescape(st->source, NULL);
    g_string_append_printf(text,
                           "source\t%s\nsize\t%" G_GUINT64_FORMAT "\nmtime\t%" G_GINT64_FORMAT
                           "\nhash\t%s\ndims\t%d\t%d\t%d\t%d\t%d\t%d\n",
                           esc, st->size, st->mtime_ns, st->hash, st->width, st->height, st->pages,
                           (int)st->same, st->has_profile, st->dc_source);
    g_free(esc);
    if (st->ctime_ns)
        g_string_append_printf(text, "change\t%" G_GINT64_FORMAT "\t%" G_GUINT64_FORMAT "\n",
                               st->ctime_ns, st->ino);
    if (st->root) {
        esc = g_strescape(st->root, NULL);
        g_string_append_printf(text, "root\t%s\t%" G_GUINT64_FORMAT "\n", esc, st->root_dev);
        g_free(esc);
    }
    for (int i = 0; i < st->n_outs; i++) {
        const pm__state_out *o = &st->outs[i];
        char *v = g_strescape(o->variant ? o->variant : "", NULL);
        char *nm = g_strescape(o->name, NULL);
        g_string_append_printf(text,
                               "out\t%s\t%d\t%d\t%d\t%" G_GUINT64_FORMAT "\t%" G_GINT64_FORMAT
                               "\t%s\t%" G_GUINT64_FORMAT "\t%s\t%s\t%s\n",
                               o->digest, (int)o->format, o->width, o->height, o->bytes,
                               o->mtime_ns, o->hash, o->ino, v, nm, o->left ? "left" : "made");
        g_free(v);
        g_free(nm);
    }
    int dirfd = -1;
    int rc = pm__publish_open_dir(rootfd, dir_rel, &dirfd, sys_errno);
    pm__temp t;
    if (rc == PM_OK)
        rc = pm__publish_begin(&t, dirfd, sys_errno);
    if (rc == PM_OK) {
        int e = pm__write_all(t.fd, text->str, text->len);
        if (e) {
            *sys_errno = e;
            pm__publish_abort(&t);
            rc = PM_ERR_STATE;
        }
        if (rc == PM_OK)
            rc = pm__publish_commit(&t, name, PM__PUBLISH_CACHE, sys_errno);
    }
    if (dirfd >= 0)
        close(dirfd);
    g_string_free(text, TRUE);
    return rc == PM_OK ? PM_OK : PM_ERR_STATE;
}

int pm__state_output_matches(int rootfd, const pm__state_out *o, int strict, int *refreshed,
                             uint64_t *ino)
{
    struct stat sb;
    *refreshed = 0;
    const char *base;
    int dirfd = pm__open_parent(rootfd, o->name, &base);
    if (dirfd < 0)
        return 0;
    int same = 0;
    if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
        (uint64_t)sb.st_size != o->bytes) {
        same = 0;
    } else if (pm__mtime_ns(&sb) == o->mtime_ns && (!strict || (uint64_t)sb.st_ino == o->ino)) {
        same = 1;
    } else if (!strict) {
        /* Restored by a tool that does not keep mtimes: the content decides. */
        int fd = openat(dirfd, base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        char hash[PM__HASH_HEX];
        struct stat fs;
        same = fd >= 0 && fstat(fd, &fs) == 0 && fs.st_ino == sb.st_ino &&
               pm__hash_fd(fd, hash) == 0 && strcmp(hash, o->hash) == 0;
        if (fd >= 0)
            close(fd);
        *refreshed = same;
    }
    if (same && ino)
        *ino = (uint64_t)sb.st_ino;
    close(dirfd);
    return same;
}

/* ---- prune ---- */

/* Removes now-empty folders from rel's parent up to (not including) stop ("" for the root),
 * each by a descriptor of its parent, never through a link. */
static void remove_empty_parents(int rootfd, const char *rel, const char *stop)
{
    char *dir = g_strdup(rel);
    size_t keep = strlen(stop);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) <= keep)
            break;
        *slash = '\0';
        const char *base;
        int pfd = pm__open_parent(rootfd, dir, &base);
        if (pfd < 0)
            break;
        int rc = unlinkat(pfd, base, AT_REMOVEDIR);
        close(pfd);
        if (rc != 0)
            break;
    }
    g_free(dir);
}

/* Is the source proved gone? Only when the folder the scan started from is there, is the one
 * it was (same device: not an empty mount point left by an unmounted disk), and below it,
 * without following a link, the source's path ends before the file (ENOENT, ENOTDIR), at a link,
 * or at something that is not a regular file. A folder that cannot be opened, a record from
 * before roots were recorded, any other error: not proved, kept. */
static int source_is_gone(const pm__state *st)
{
    if (!st->root)
        return 0;
    int rootfd = pm__open_physical(st->root, O_PATH | O_DIRECTORY);
    struct stat rs;
    if (rootfd < 0)
        return 0;
    if (fstat(rootfd, &rs) != 0 || (uint64_t)rs.st_dev != st->root_dev) {
        close(rootfd);
        return 0;
    }
    int fd = pm__open_beneath(rootfd, source_below_root(st), O_PATH | O_NOFOLLOW, 0);
    int err = errno;
    close(rootfd);
    if (fd >= 0) {
        struct stat fs;
        int regular = fstat(fd, &fs) != 0 || S_ISREG(fs.st_mode);
        close(fd);
        return !regular;
    }
    return err == ENOENT || err == ENOTDIR || err == ELOOP;
}

/* Removes an output that still is the very file recorded, by a descriptor of its folder. */
static int remove_output(int rootfd, const pm__state_out *o)
{
    int refreshed;
    if (!pm__state_output_matches(rootfd, o, 1, &refreshed, NULL))
        return -1;
    const char *base;
    int dirfd = pm__open_parent(rootfd, o->name, &base);
    if (dirfd < 0)
        return -1;
    struct stat sb;
    int rc = fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) == 0 && (uint64_t)sb.st_ino == o->ino
                 ? unlinkat(dirfd, base, 0)
                 : -1;
    close(dirfd);
    return rc;
}

/* A record whose source is gone: its outputs (those still the very file pixmill wrote) and
 * the record itself. A record whose source is there: its left-over outputs, and the record is
 * written again without them (an entry whose file is no longer ours is dropped too). */
static void prune_record(int rootfd, const char *dir_rel, int dirfd, const char *name, int dry_run,
                         pm__prune_cb cb, void *ud)
{
    pm__state st;
    if (pm__state_load_at(dirfd, name, &st) != 0)
        return; /* not one of ours, or unreadable: left alone */
    int gone = source_is_gone(&st), lefts = 0;
    for (int i = 0; !gone && i < st.n_outs; i++)
        lefts += st.outs[i].left;
    if (!gone && !lefts) {
        pm__state_clear(&st);
        return;
    }
    int *removed = g_new0(int, st.n_outs ? st.n_outs : 1);
    for (int i = 0; i < st.n_outs; i++) {
        int refreshed;
        if (!gone && !st.outs[i].left)
            continue;
        /* Only the very file pixmill wrote (size, mtime and inode): a file replaced since is
         * not ours, even with the same bytes (another source may have made it). */
        if (dry_run) {
            removed[i] = pm__state_output_matches(rootfd, &st.outs[i], 1, &refreshed, NULL);
        } else if (remove_output(rootfd, &st.outs[i]) == 0) {
            removed[i] = 1;
            remove_empty_parents(rootfd, st.outs[i].name, "");
        }
    }
    if (!dry_run && gone) {
        unlinkat(dirfd, name, 0);
        char *rel = g_strdup_printf("%s/%s", dir_rel, name);
        remove_empty_parents(rootfd, rel, STATE_ROOT);
        g_free(rel);
    } else if (!dry_run) {
        pm__state kept = st;
        kept.outs = g_new0(pm__state_out, (gsize)st.n_outs);
        kept.n_outs = 0;
        for (int i = 0; i < st.n_outs; i++)
            if (!st.outs[i].left)
                kept.outs[kept.n_outs++] = st.outs[i];
        int err = 0;
        pm__state_save(rootfd, dir_rel, name, &kept, &err); /* a failure leaves the old one:
                                                                its left entries fail to match */
        g_free(kept.outs);
    }
    cb(&st, removed, gone, ud);
    g_free(removed);
    pm__state_clear(&st);
}

void pm__walk_files(int rootfd, const char *start, const int *cancel, pm__walk_cb cb, void *ud)
{
    /* Iterative: folders still to visit, as paths below the root ("" is the root). Links are
     * never followed. */
    GPtrArray *todo = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(todo, g_strdup(start));
    while (todo->len > 0 && !(cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))) {
        char *rel = g_ptr_array_steal_index(todo, todo->len - 1);
        int dirfd = pm__open_beneath(rootfd, rel, O_RDONLY | O_DIRECTORY, 0);
        DIR *d = dirfd >= 0 ? fdopendir(dirfd) : NULL;
        if (!d) {
            if (dirfd >= 0)
                close(dirfd);
            g_free(rel);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            struct stat sb;
            if (fstatat(dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            if (S_ISDIR(sb.st_mode))
                g_ptr_array_add(todo, *rel ? g_strdup_printf("%s/%s", rel, e->d_name)
                                           : g_strdup(e->d_name));
            else
                cb(dirfd, rel, e->d_name, &sb, ud);
        }
        closedir(d);
        g_free(rel);
    }
    g_ptr_array_free(todo, TRUE);
}

typedef struct prune_walk {
    int rootfd, dry_run;
    pm__prune_cb cb;
    void *ud;
} prune_walk;

static void prune_one(int dirfd, const char *rel, const char *name, const struct stat *sb, void *ud)
{
    prune_walk *w = ud;
    if (S_ISREG(sb->st_mode) && is_record_name(name))
        prune_record(w->rootfd, rel, dirfd, name, w->dry_run, w->cb, w->ud);
}

int pm__state_prune(int rootfd, int dry_run, const int *cancel, pm__prune_cb cb, void *ud)
{
    prune_walk w = {rootfd, dry_run, cb, ud};
    pm__walk_files(rootfd, STATE_ROOT, cancel, prune_one, &w);
    return PM_OK;
}

/* ---- the root's lock and the sweep of stale temps ---- */

#define LOCK_NAME "lock" /* in DIR/.pixmill */
/* Each run's marker is .pixmill/running-<16 hex> (one shared .pixmill/running before). */
#define MARKER_PREFIX "running"

static void sweep_one(int dirfd, const char *rel, const char *name, const struct stat *sb, void *ud)
{
    (void)rel;
    int *swept = ud;
    if (S_ISREG(sb->st_mode) && pm__publish_is_temp_name(name) && unlinkat(dirfd, name, 0) == 0)
        (*swept)++;
}

/* The runs' markers in the state folder: counted, or removed (only by a run alone). */
static int markers(int statefd, int remove)
{
    int dfd = openat(statefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (g_str_has_prefix(e->d_name, MARKER_PREFIX))
            n += !remove || unlinkat(dfd, e->d_name, 0) == 0;
    closedir(d);
    return n;
}

int pm__root_begin(int rootfd, pm__root *root, int *swept)
{
    *swept = 0;
    root->lockfd = -1;
    root->marker[0] = '\0';
    int statefd = -1, recfd = -1, err = 0;
    /* DIR/.pixmill and its state/, each opened without following a link: a link there would
     * take the lock, the markers and every record somewhere else */
    if (pm__publish_open_dir(rootfd, PM__STATE_DIR, &statefd, &err) != PM_OK) {
        errno = err;
        return -1;
    }
    if (pm__publish_open_dir(statefd, "state", &recfd, &err) != PM_OK) {
        close(statefd);
        errno = err;
        return -1;
    }
    close(recfd);
    int fd = openat(statefd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        err = errno;
        close(statefd);
        errno = err;
        return -1;
    }
    /* Each run leaves its own marker until it finishes. Alone on this root, a marker means a
     * run died (SIGKILL, power, an engine killed beside others): its temps are garbage, and
     * once they are gone so is its marker. With another run here (it holds the lock shared),
     * temps may be live: no sweep. One marker a run, not one for all: a run that finished
     * beside a dead one used to take the shared marker with it, and the dead one's temps
     * stayed. */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        if (markers(statefd, 0) > 0) {
            pm__walk_files(rootfd, "", NULL, sweep_one, swept);
            markers(statefd, 1);
        }
        flock(fd, LOCK_SH); /* atomic on Linux: no other run can sweep in between */
    } else {
        /* wait out a run that sweeps; made after, the marker is not swept with the others */
        while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
            ;
    }
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) == (ssize_t)sizeof(rnd)) {
        snprintf(root->marker, sizeof(root->marker), "%s-%02x%02x%02x%02x%02x%02x%02x%02x",
                 MARKER_PREFIX, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        int m = openat(statefd, root->marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (m >= 0)
            close(m);
        else
            root->marker[0] = '\0';
    }
    root->lockfd = fd; /* held shared until the end of the run (or the process) */
    close(statefd);    /* one descriptor fewer while the run lasts (ulimit -n 16) */
    return 0;
}

void pm__root_end(int rootfd, pm__root *root)
{
    if (root->lockfd < 0)
        return;
    /* A clean finish leaves nothing to sweep: this run's marker goes. */
    int statefd =
        root->marker[0] ? pm__open_beneath(rootfd, PM__STATE_DIR, O_PATH | O_DIRECTORY, 0) : -1;
    if (statefd >= 0) {
        unlinkat(statefd, root->marker, 0);
        close(statefd);
    }
    close(root->lockfd);
    root->lockfd = -1;
}
