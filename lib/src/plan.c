/* One source -> its outputs: every variant x format with 'same' resolved, the geometry, the
 * one decode's size, the digest of everything that decides each output's bytes, the names,
 * the checks that no other source writes the same names (BAD-INPUT 23) and that nothing but
 * pixmill's own files is replaced, and which outputs are current by the build record. Reads
 * headers (of the source, handed in; of a clashing sibling, through decode.c), decodes no
 * pixels and writes no output. */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#include <xxhash.h>

/* lstat of a name below the output root, never through a link on the way. */
static int stat_below(int rootfd, const char *name, struct stat *st)
{
    const char *base;
    int dirfd = pm__open_parent(rootfd, name, &base);
    if (dirfd < 0)
        return -1;
    int rc = fstatat(dirfd, base, st, AT_SYMLINK_NOFOLLOW);
    int err = errno;
    close(dirfd);
    errno = err;
    return rc;
}

/* Everything that decides one output's bytes, hashed: versions, the source's content, the
 * decode, the geometry and the encoder settings this format uses (a new JPEG quality does not
 * rebuild PNGs). Not the variant's name or size spec: two sizes that come out alike (1280 and 640
 * of a 500-pixel source) are one output. */
static void digest_for(const pm__process_ctx *ctx, const pm__job_state *s, pm__planned *v)
{
    const pm_options *o = ctx->opts;
    const pm__variant *pv = &ctx->variants[v->vi];
    const char *ep = pm__export_profile(o, s->has_profile);
    pm_format f = v->format;
    int lossy =
        f == PM_FORMAT_JPEG || f == PM_FORMAT_WEBP || f == PM_FORMAT_AVIF || f == PM_FORMAT_HEIF;
    int heif = f == PM_FORMAT_AVIF || f == PM_FORMAT_HEIF;
    int pads = v->g.width > v->g.resize_width || v->g.height > v->g.resize_height;
    int crops = v->g.width < v->g.resize_width || v->g.height < v->g.resize_height;
    GString *t = g_string_new(NULL);
    g_string_append_printf(
        t, "pixmill %s|vips %s|source %s|decode %dx%d pages %d fail_on %d rotate %d",
        PM_VERSION_STRING, vips_version_string(), s->hash, s->decode_w, s->decode_h, s->all_pages,
        (int)o->fail_on, !o->no_rotate);
    if (s->dc)
        g_string_append(t, "|dc"); /* pixels a little different from libjpeg's at 1/4 */
    g_string_append_printf(
        t, "|profile %d %s %s intent %d|geometry %d %d %d %d|format %d keep %u", (int)o->profile,
        ep ? ep : "-", o->profile == PM_PROFILE_FILE ? ctx->profile_hash : "-", (int)o->intent,
        v->g.resize_width, v->g.resize_height, v->g.width, v->g.height, (int)f, o->keep);
    if (crops)
        g_string_append_printf(t, "|crop %d", (int)pv->crop);
    if (pads || f == PM_FORMAT_JPEG)
        g_string_append_printf(t, "|bg %02x%02x%02x%02x", o->background[0], o->background[1],
                               o->background[2], o->background[3]);
    if (lossy)
        g_string_append_printf(t, "|q %d", pv->quality);
    if (f != PM_FORMAT_JPEG && f != PM_FORMAT_TIFF)
        g_string_append_printf(t, "|effort %d", o->effort);
    if (f == PM_FORMAT_WEBP || heif)
        g_string_append_printf(t, "|lossless %d", o->lossless);
    if (f == PM_FORMAT_JPEG || f == PM_FORMAT_PNG || f == PM_FORMAT_GIF)
        g_string_append_printf(t, "|progressive %d", o->progressive);
    if (f == PM_FORMAT_JPEG || f == PM_FORMAT_WEBP || heif)
        g_string_append_printf(t, "|subsample %d", (int)o->subsample);
    if (f == PM_FORMAT_PNG)
        g_string_append_printf(t, "|palette %d", o->palette);
    if (pm__is_animated_format(f))
        g_string_append_printf(t, "|animated %d", o->animated);
    g_snprintf(v->digest, sizeof(v->digest), "%016" G_GINT64_MODIFIER "x",
               (guint64)XXH3_64bits(t->str, t->len));
    g_string_free(t, TRUE);
}

/* A progressive JPEG whose one decode is no larger than an eighth of it (in each axis, as
 * stored): decoded from its DC coefficients alone (jpegdc.c), as libjpeg's 1/8 scale would,
 * without holding every coefficient of the image. libvips' own thumbnail would stop at 1/4
 * until the shrink reaches 16, leaving a factor of two to its resize; sharp's
 * fastShrinkOnLoad, like this, goes to 1/8 as soon as the result is large enough. Not under
 * --fail-on warning: the AC scans are skipped, so their warnings would go unseen. */
static int dc_wanted(const pm_options *o, const pm__job_state *s)
{
    if (!s->dc_source || o->fail_on == PM_FAIL_ON_WARNING || s->same != PM_FORMAT_JPEG)
        return 0;
    int side = s->dc_source == 2; /* stored on its side: the upright sizes swap back */
    int stored_w = side ? s->upright_h : s->upright_w,
        stored_h = side ? s->upright_w : s->upright_h;
    int want_w = side ? s->decode_h : s->decode_w, want_h = side ? s->decode_w : s->decode_h;
    return (stored_w + 7) / 8 >= want_w && (stored_h + 7) / 8 >= want_h;
}

/* Every variant x format for this source, with 'same' resolved; geometry, the one decode's
 * size, digests and names. Two outputs with one name: the same digest makes them one output,
 * a different digest fails the later one. */
void pm__plan_outputs(const pm__process_ctx *ctx, const pm__job *job, pm__job_state *s)
{
    const pm_options *o = ctx->opts;
    double scale = 0;
    s->n = 0;
    int most = 0;
    for (int i = 0; i < ctx->n_variants; i++)
        most += ctx->variants[i].n_formats;
    g_free(s->v);
    s->v = g_new0(pm__planned, most ? most : 1);
    for (int i = 0; i < ctx->n_variants; i++) {
        const pm__variant *pv = &ctx->variants[i];
        pm_geometry g;
        pm_geometry_compute(&pv->size, o->fit, o->auto_swap, s->upright_w, s->upright_h, &g);
        /* An enlarging size can ask for a monster (100x100< on a 1x50000 strip covers as
         * 100x5000000; 1000% of a 16000-pixel photo): outputs obey the caps sources do. */
        uint64_t rpx = (uint64_t)g.resize_width * (uint64_t)g.resize_height;
        int too_big = g.resize_width > PM_SIZE_MAX || g.resize_height > PM_SIZE_MAX ||
                      g.width > PM_SIZE_MAX || g.height > PM_SIZE_MAX ||
                      (o->max_pixels && rpx > o->max_pixels);
        if (!too_big)
            scale = MAX(scale, MAX((double)g.resize_width / s->upright_w,
                                   (double)g.resize_height / s->upright_h));
        for (int j = 0; j < pv->n_formats; j++) {
            pm__planned *v = &s->v[s->n++];
            memset(v, 0, sizeof(*v));
            v->vi = i;
            v->format = pv->formats[j] == PM_FORMAT_SAME ? s->same : pv->formats[j];
            v->g = g;
            if (too_big)
                pm__output_fail(v, PM_ERR_LIMIT, 0,
                                g_strdup_printf("variant %s would be %dx%d pixels: more than %d a "
                                                "side or --max-pixels",
                                                pv->name, g.resize_width, g.resize_height,
                                                PM_SIZE_MAX));
        }
    }
    /* One decode at the largest scale any output needs, straight to exact dimensions. */
    if (scale <= 0)
        scale = 1; /* every output refused: nothing will be decoded */
    s->decode_w = MAX(1, (int)(s->upright_w * scale + 0.5));
    s->decode_h = MAX(1, (int)(s->upright_h * scale + 0.5));
    s->all_pages = 0;
    for (int k = 0; k < s->n && o->animated && s->pages > 1; k++)
        s->all_pages |= pm__is_animated_format(s->v[k].format);
    s->dc = dc_wanted(o, s);

    const char *slash = strrchr(job->out_rel, '/');
    char *dir = slash ? g_strndup(job->out_rel, (gsize)(slash - job->out_rel)) : g_strdup("");
    const char *stem = slash ? slash + 1 : job->out_rel;
    for (int k = 0; k < s->n; k++) {
        pm__planned *v = &s->v[k];
        const pm__variant *pv = &ctx->variants[v->vi];
        digest_for(ctx, s, v);
        char hash[16], *both = g_strconcat(s->hash, v->digest, NULL);
        g_snprintf(hash, sizeof(hash), "%010" G_GINT64_MODIFIER "x",
                   (guint64)(XXH3_64bits(both, strlen(both)) & 0xFFFFFFFFFFull));
        g_free(both);
        pm__name_vars vars = {
            stem, pm_format_extension(v->format), pv->name, dir, hash, v->g.width, v->g.height};
        v->name = pm__template_expand(pv->name_template, &vars);
        v->out.format = v->format;
        v->out.size_index = v->vi;
        v->out.width = v->g.width;
        v->out.height = v->g.height;
        if (!v->name) {
            pm__output_fail(v, PM_ERR_NAME, 0,
                            g_strdup_printf("template '%s' gives no usable name for this source: "
                                            "a part over 255 bytes, '.' or '..', or pixmill's own",
                                            pv->name_template));
            continue;
        }
        if (ctx->manifest_rel && strcmp(v->name, ctx->manifest_rel) == 0) {
            pm__output_fail(v, PM_ERR_NAME, 0, g_strdup("that is the --manifest's name"));
            continue;
        }
        for (int e = 0; e < k; e++) {
            pm__planned *w = &s->v[e];
            if (!w->name || w->alias || strcmp(w->name, v->name) != 0)
                continue;
            if (strcmp(w->digest, v->digest) == 0)
                v->alias = 1;
            else
                pm__output_fail(v, PM_ERR_NAME, 0,
                                g_strdup_printf("variant %s gives the same name as variant %s",
                                                pv->name, ctx->variants[w->vi].name));
            break;
        }
    }
    g_free(dir);
}

/* Is name in dfd a regular file other than ours? (Links are not followed: a walk skips
 * them.) */
static int other_file(int dfd, const char *name, const struct stat *ours)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
           !(st.st_dev == ours->st_dev && st.st_ino == ours->st_ino);
}

static int may_write_at(int dfd, const char *name, pm_format *same)
{
    return pm__source_may_write(
        openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), same);
}

/* A named file: followed if it is a link, as its own job is. */
static int may_write(const char *path, pm_format *same)
{
    return pm__source_may_write(open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), same);
}

/* Another source, `other`, whose outputs land in the same folder under the same stem: the
 * outputs of ours whose names its outputs would take too fail, here and (symmetrically) in
 * its own job, so neither overwrites the other whatever the order. */
static void refuse_names_shared_with(const pm__process_ctx *ctx, pm__job_state *s,
                                     const char *out_rel, const char *other, pm_format other_same)
{
    const char *dir_end = strrchr(out_rel, '/');
    char *dir = dir_end ? g_strndup(out_rel, (gsize)(dir_end - out_rel)) : g_strdup("");
    const char *stem = dir_end ? dir_end + 1 : out_rel;
    for (int k = 0; k < s->n; k++) {
        pm__planned *v = &s->v[k];
        const pm__variant *pv = &ctx->variants[v->vi];
        if (!v->name || v->alias || v->out.status != PM_OK)
            continue;
        pm_format sf = v->format;
        for (int j = 0; j < pv->n_formats; j++)
            if (pv->formats[j] == PM_FORMAT_SAME && s->same == v->format)
                sf = other_same;
        char hash[16] = "other";
        pm__name_vars vars = {stem,       pm_format_extension(sf), pv->name, dir, hash, v->g.width,
                              v->g.height};
        char *theirs = pm__template_expand(pv->name_template, &vars);
        if (theirs && strcmp(theirs, v->name) == 0)
            pm__output_fail(v, PM_ERR_NAME, 0,
                            g_strdup_printf("%s would write %s too: rename one, or put {hash} in "
                                            "--name",
                                            other, v->name));
        g_free(theirs);
    }
    g_free(dir);
}

/* The image files in folder dfd (shown as shown_dir) with stem, other than ours (self: its
 * own name there, when dfd is its own folder): each that will write refuses the outputs whose
 * names it would take too. The folder is listed once per worker (siblings.c), so extensions
 * compare in any case without a probe per spelling. */
static void refuse_clashes_in(const pm__process_ctx *ctx, pm__job_state *s, const char *out_rel,
                              int dfd, const char *shown_dir, const char *stem, const char *self,
                              const struct stat *ours)
{
    GPtrArray *names = pm__siblings(s->w, dfd, stem, self);
    for (guint i = 0; names && i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        pm_format same;
        if (!other_file(dfd, name, ours) || !may_write_at(dfd, name, &same))
            continue;
        size_t n = strlen(shown_dir);
        char *shown = g_strconcat(shown_dir, n && shown_dir[n - 1] != '/' ? "/" : "", name, NULL);
        refuse_names_shared_with(ctx, s, out_rel, shown, same);
        g_free(shown);
    }
    if (names)
        g_ptr_array_free(names, TRUE);
}

/* Is this place the source's own (its input folder, or its list's root)? */
static int own_place(const pm__job *job, const pm__place *p)
{
    return job->origin == PM__FROM_LIST ? p->input == job->place
                                        : job->origin == PM__FROM_WALK && p->input == job->input;
}

/* Other sources that map to our output names (BAD-INPUT 23): files with our stem and another
 * image extension, in any case, in our own folder when it is walked or listed (a.png and a.JPG
 * both make a.webp); then the same place below every other folder whose tree lands on the
 * output root (other input folders; for file lists, "/" and the current folder, where /a/x.jpg
 * and a/x.jpg meet); and named files with our stem. Checked from the file system, not from what was
 * seen (memory stays flat), so both sides refuse, whichever runs first. */
void pm__plan_refuse_clashes(const pm__process_ctx *ctx, const pm__job *job, pm__job_state *s,
                             const struct stat *ours)
{
    const char *cut = strrchr(job->out_rel, '/');
    const char *stem = cut ? cut + 1 : job->out_rel;
    char *dir_rel = cut ? g_strndup(job->out_rel, (gsize)(cut - job->out_rel)) : g_strdup("");
    /* its own folder as met: a walked file's is where it was opened; a named or listed path's
     * is the one the user's path names */
    const char *base = strrchr(job->source, '/');
    char *shown = !base                 ? g_strdup("")
                  : base == job->source ? g_strdup("/") /* "/x.jpg" */
                                        : g_strndup(job->source, (gsize)(base - job->source));
    base = base ? base + 1 : job->source;
    const char *dot = strrchr(base, '.');
    /* A named file's siblings are no sources unless named too (named_by_stem, below) or below
     * an input folder (the places): IMG_1.JPG named beside IMG_1.HEIC converts. A listed
     * file's are checked here, as the list is not held in memory. */
    if (dot && dot != base && job->origin != PM__FROM_NAMED) {
        int dfd = job->explicit_file ? open(*shown ? shown : ".", O_PATH | O_DIRECTORY | O_CLOEXEC)
                                     : s->srcdir;
        char *own_stem = g_strndup(base, (gsize)(dot - base));
        refuse_clashes_in(ctx, s, job->out_rel, dfd, shown, own_stem, base, ours);
        g_free(own_stem);
        if (dfd >= 0 && dfd != s->srcdir)
            close(dfd);
    }
    g_free(shown);
    for (int i = 0; i < ctx->n_places; i++) {
        const pm__place *p = &ctx->places[i];
        if (own_place(job, p))
            continue;
        char *there = *dir_rel ? g_strconcat(p->phys, p->phys[1] ? "/" : "", dir_rel, NULL)
                               : g_strdup(p->phys);
        /* an input folder is walked without following links; a listed path is followed */
        int dfd = p->input >= 0 ? pm__open_physical(there, O_PATH | O_DIRECTORY)
                                : open(there, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            /* shown as the user would name that folder */
            char *shown_dir = p->input == PM__PLACE_LIST_ABS ? g_strconcat("/", dir_rel, NULL)
                              : !*dir_rel || !*p->path       ? g_strconcat(p->path, dir_rel, NULL)
                                                       : g_strconcat(p->path, "/", dir_rel, NULL);
            refuse_clashes_in(ctx, s, job->out_rel, dfd, shown_dir, stem, NULL, ours);
            g_free(shown_dir);
            close(dfd);
        }
        g_free(there);
    }
    GPtrArray *named =
        ctx->named_by_stem && !*dir_rel ? g_hash_table_lookup(ctx->named_by_stem, stem) : NULL;
    for (guint i = 0; named && i < named->len; i++) {
        const pm__place *p = g_ptr_array_index(named, i);
        struct stat st;
        pm_format same;
        if (p->input != job->input && stat(p->path, &st) == 0 && S_ISREG(st.st_mode) &&
            !(st.st_dev == ours->st_dev && st.st_ino == ours->st_ino) && may_write(p->path, &same))
            refuse_names_shared_with(ctx, s, job->out_rel, p->path, same);
    }
    g_free(dir_rel);
}

/* Which outputs are current: recorded for this source with the same digest, and the file
 * still holds what was written. Returns how many outputs still need making. Also marks files
 * the record says are ours (they may be replaced even where outputs overlap inputs). */
int pm__plan_mark_current(const pm__process_ctx *ctx, pm__job_state *s, int *refreshed_any)
{
    int todo = 0;
    for (int k = 0; k < s->n; k++) {
        pm__planned *v = &s->v[k];
        if (v->alias || v->out.status != PM_OK)
            continue;
        for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
            pm__state_out *rec = &s->old.outs[i];
            if (strcmp(rec->name, v->name) != 0)
                continue;
            int refreshed = 0;
            v->ours = pm__state_output_matches(ctx->out_rootfd, rec, 0, &refreshed, &v->ours_ino);
            if (v->ours && strcmp(rec->digest, v->digest) == 0 && !ctx->opts->force) {
                v->current = 1;
                v->rec = *rec; /* borrowed strings: only scalars are used */
                v->out.bytes = rec->bytes;
                v->out.width = rec->width;
                v->out.height = rec->height;
                if (refreshed) {
                    struct stat sb;
                    if (stat_below(ctx->out_rootfd, rec->name, &sb) == 0) {
                        v->rec.mtime_ns = pm__mtime_ns(&sb);
                        v->rec.ino = (uint64_t)sb.st_ino;
                    }
                    *refreshed_any = 1;
                }
            }
            break;
        }
        todo += !v->current;
    }
    return todo;
}

/* Does the record hold an output this plan no longer makes (a format, size or name gone from
 * the options)? Then the record is written again, with it marked left over for --prune. */
int pm__plan_drops_outputs(const pm__job_state *s)
{
    for (int i = 0; s->have_old && i < s->old.n_outs; i++) {
        const pm__state_out *rec = &s->old.outs[i];
        int planned = 0;
        for (int k = 0; k < s->n && !planned; k++)
            planned = s->v[k].name && !s->v[k].alias && s->v[k].out.status == PM_OK &&
                      strcmp(s->v[k].name, rec->name) == 0;
        if (!rec->left && !planned)
            return 1;
    }
    return 0;
}

/* Refuse up front, before decoding: an existing output that is this very input (same inode,
 * any name), or, where the output folder overlaps the inputs, any existing file this source
 * did not make. Returns the number of outputs still to make. */
int pm__plan_refuse_existing(const pm__process_ctx *ctx, pm__job_state *s, const struct stat *src)
{
    int todo = 0;
    for (int i = 0; i < s->n; i++) {
        struct stat ost;
        pm__planned *v = &s->v[i];
        if (v->current || v->alias || v->out.status != PM_OK)
            continue;
        if (stat_below(ctx->out_rootfd, v->name, &ost) == 0) {
            if (ost.st_dev == src->st_dev && ost.st_ino == src->st_ino) {
                pm__output_fail(v, PM_ERR_OUTPUT_IS_INPUT, 0, NULL);
                continue;
            }
            if (ctx->overlap && !v->ours) {
                pm__output_fail(v, PM_ERR_OUTPUT_EXISTS, 0, NULL);
                continue;
            }
        }
        todo++;
    }
    return todo;
}

/* The source is as recorded when its size, mtime, ctime and inode match (a write that puts
 * the mtime back still moves the ctime, which no one can set), or its size and content (a
 * fresh clone resets the times: the bytes are read and hashed): then its header need not be
 * read to know what it makes, and s takes the record's facts. */
int pm__plan_source_is_recorded(pm__job_state *s, const struct stat *st, pm__result *r,
                                int *have_hash)
{
    int fresh = 0;
    *have_hash = 0;
    if (s->have_old && s->old.size == (uint64_t)st->st_size) {
        if (s->old.mtime_ns == pm__mtime_ns(st) && s->old.ctime_ns == pm__ctime_ns(st) &&
            s->old.ino == (uint64_t)st->st_ino) {
            fresh = 1;
        } else if (pm__hash_fd(s->fd, s->hash) == 0) {
            *have_hash = 1;
            fresh = strcmp(s->hash, s->old.hash) == 0;
            s->need_save = fresh; /* record the new mtime: no hashing next time */
        }
    }
    if (!fresh)
        return 0;
    g_strlcpy(s->hash, s->old.hash, sizeof(s->hash));
    s->upright_w = s->old.width;
    s->upright_h = s->old.height;
    s->pages = s->old.pages;
    s->same = s->old.same;
    s->has_profile = s->old.has_profile;
    s->dc_source = s->old.dc_source;
    r->ev.source_width = s->old.width;
    r->ev.source_height = s->old.height;
    /* the tree moved, or the record is older than roots: prune must know */
    s->need_save |=
        strcmp(s->src, s->old.source) != 0 || !s->old.root || strlen(s->old.root) != s->root_len ||
        strncmp(s->old.root, s->src, s->root_len) != 0 || s->old.root_dev != s->root_dev;
    return 1;
}
