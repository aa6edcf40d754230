/* Which other image files share a source's stem in a folder (a.png, a.JPG, a.Webp: all would
 * make a.webp), extensions compared in any case. A worker lists a folder once, while it does
 * not change, keeping a sorted array of 32-bit hashes of its candidates' stems (4 bytes a file,
 * at most 2^20 files: 4 MiB; a larger folder is read again for each lookup instead); only a
 * stem found there makes it read the folder's names again, and it keeps just the matches. No
 * list of what was seen survives the folder, so memory does not grow with the tree. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CACHED_FOLDERS 4
#define MAX_INDEXED (1u << 20)

typedef struct folder_index {
    int used;
    dev_t dev;
    ino_t ino;
    int64_t mtime_ns, ctime_ns;
    uint32_t *hashes; /* sorted; NULL with whole == 0 */
    size_t n;
    int whole; /* every candidate is in hashes */
    uint64_t last_use;
} folder_index;

struct pm__worker {
    folder_index idx[CACHED_FOLDERS];
    uint64_t clock;
};

pm__worker *pm__worker_new(void)
{
    return g_new0(pm__worker, 1);
}

void pm__worker_free(pm__worker *w)
{
    if (!w)
        return;
    for (int i = 0; i < CACHED_FOLDERS; i++)
        g_free(w->idx[i].hashes);
    g_free(w);
}

/* The stem of an image candidate's name (up to its last dot), or 0 when it is not one. */
static size_t candidate_stem(const char *name)
{
    if (!pm__scan_is_candidate_name(name) || pm__publish_is_temp_name(name))
        return 0;
    return (size_t)(strrchr(name, '.') - name);
}

static uint32_t stem_hash(const char *stem, size_t len)
{
    return XXH32(stem, len, 0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static DIR *list_folder(int dfd)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    return d;
}

static void build(folder_index *ix, int dfd)
{
    g_free(ix->hashes);
    ix->hashes = NULL;
    ix->n = 0;
    ix->whole = 0;
    DIR *d = list_folder(dfd);
    if (!d)
        return; /* cannot be listed: every lookup tries (and finds nothing) */
    size_t cap = 64;
    ix->hashes = g_new(uint32_t, cap);
    ix->whole = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) { // NOLINT(concurrency-mt-unsafe): this stream is ours
        size_t len = candidate_stem(e->d_name);
        if (!len)
            continue;
        if (ix->n == MAX_INDEXED) {
            ix->whole = 0;
            break;
        }
        if (ix->n == cap) {
            cap *= 2;
            ix->hashes = g_renew(uint32_t, ix->hashes, cap);
        }
        ix->hashes[ix->n++] = stem_hash(e->d_name, len);
    }
    closedir(d);
    if (!ix->whole) {
        g_free(ix->hashes);
        ix->hashes = NULL;
        ix->n = 0;
        return;
    }
    qsort(ix->hashes, ix->n, sizeof(uint32_t), cmp_u32);
}

/* The index of the folder dfd, made now unless a current one is cached. */
static folder_index *index_of(pm__worker *w, int dfd)
{
    struct stat st;
    if (fstat(dfd, &st) != 0)
        return NULL;
    int64_t mt = pm__mtime_ns(&st), ct = pm__ctime_ns(&st);
    folder_index *pick = &w->idx[0];
    for (int i = 0; i < CACHED_FOLDERS; i++) {
        folder_index *ix = &w->idx[i];
        if (ix->used && ix->dev == st.st_dev && ix->ino == st.st_ino && ix->mtime_ns == mt &&
            ix->ctime_ns == ct) {
            ix->last_use = ++w->clock;
            return ix;
        }
        if (!ix->used || (pick->used && ix->last_use < pick->last_use))
            pick = ix;
    }
    build(pick, dfd);
    pick->used = 1;
    pick->dev = st.st_dev;
    pick->ino = st.st_ino;
    pick->mtime_ns = mt;
    pick->ctime_ns = ct;
    pick->last_use = ++w->clock;
    return pick;
}

/* How many candidates of the index have this stem's hash. */
static size_t count(const folder_index *ix, uint32_t h)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->hashes[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    while (lo + n < ix->n && ix->hashes[lo + n] == h)
        n++;
    return n;
}

GPtrArray *pm__siblings(pm__worker *w, int dfd, const char *stem, const char *self)
{
    size_t len = strlen(stem);
    if (dfd < 0 || len == 0)
        return NULL;
    folder_index *ix = index_of(w, dfd);
    if (!ix)
        return NULL;
    if (ix->whole) {
        uint32_t h = stem_hash(stem, len);
        size_t mine = self && candidate_stem(self) == len && strncmp(self, stem, len) == 0;
        if (count(ix, h) <= mine)
            return NULL; /* the usual answer: nothing else of this stem */
    }
    DIR *d = list_folder(dfd);
    if (!d)
        return NULL;
    GPtrArray *found = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) { // NOLINT(concurrency-mt-unsafe): this stream is ours
        if (candidate_stem(e->d_name) != len || strncmp(e->d_name, stem, len) != 0 ||
            (self && strcmp(e->d_name, self) == 0))
            continue;
        if (!found)
            found = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(found, g_strdup(e->d_name));
    }
    closedir(d);
    return found;
}
