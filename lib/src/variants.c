/* The batch's variants, resolved from the options (sizes x formats, or named variants whose
 * unset fields inherit the options'), and the check of a whole pm_options before a batch is
 * made: what the command calls a usage error. No files, no libvips. */
#define _GNU_SOURCE
#include "internal.h"

#include <glib.h>
#include <string.h>

#define WHY(...) (why && why_size ? (void)g_snprintf(why, (gulong)why_size, __VA_ARGS__) : (void)0)

static int check_formats(const pm_format *f, int n, char *why, size_t why_size)
{
    if (n < 1 || n > PM_MAX_FORMATS) {
        WHY("between 1 and %d formats", PM_MAX_FORMATS);
        return PM_ERR_USAGE;
    }
    for (int i = 0; i < n; i++) {
        if ((unsigned)f[i] > PM_FORMAT_LAST) {
            WHY("unknown format");
            return PM_ERR_USAGE;
        }
        for (int k = 0; k < i; k++) {
            if (f[k] == f[i]) {
                WHY("format %s given twice", pm_format_extension(f[i]));
                return PM_ERR_USAGE;
            }
        }
    }
    return PM_OK;
}

static int check_size(const pm_size *z)
{
    int box = !z->percent && !z->area;
    return !(z->width < 0 || z->height < 0 || z->width > PM_SIZE_MAX || z->height > PM_SIZE_MAX ||
             (box && z->width == 0 && z->height == 0) || z->percent < 0 || z->percent > 1000 ||
             (unsigned)z->fit > PM_FIT_LAST || (unsigned)z->enlarge > PM_ENLARGE_ALLOW);
}

void pm__variants_free(pm__variant *v, int n)
{
    for (int i = 0; i < n; i++) {
        g_free(v[i].name);
        g_free(v[i].name_template);
    }
}

int pm__variants_resolve(const pm_options *o, pm__variant *out, int *n_out, char *why,
                         size_t why_size)
{
    int n = o->n_variants > 0 ? o->n_variants : o->n_sizes;
    int max = o->n_variants > 0 ? PM_MAX_VARIANTS : PM_MAX_SIZES;
    *n_out = 0;
    if (n < 1 || n > max) {
        WHY("between 1 and %d sizes", max);
        return PM_ERR_USAGE;
    }
    if (o->name_template && pm__template_check(o->name_template, NULL, why, why_size) != PM_OK)
        return PM_ERR_USAGE;
    if (check_formats(o->formats, o->n_formats, why, why_size) != PM_OK)
        return PM_ERR_USAGE;
    for (int i = 0; i < n; i++) {
        const pm_variant *src = o->n_variants > 0 ? &o->variants[i] : NULL;
        pm__variant *v = &out[i];
        memset(v, 0, sizeof(*v));
        v->size = src ? src->size : o->sizes[i];
        if (!check_size(&v->size)) {
            WHY("invalid size");
            goto fail;
        }
        char label[32];
        pm_size_label(&v->size, label, sizeof(label));
        v->name = g_strdup(src && src->name && *src->name ? src->name : label);
        *n_out = i + 1;
        if (strchr(v->name, '/') || strcmp(v->name, ".") == 0 || strcmp(v->name, "..") == 0) {
            WHY("variant name '%s' cannot be a path", v->name);
            goto fail;
        }
        v->crop = src && src->crop != PM_INHERIT ? (pm_crop)src->crop : o->crop;
        if ((unsigned)v->crop > PM_CROP_LAST) {
            WHY("variant %s: invalid crop", v->name);
            goto fail;
        }
        const pm_format *f = src && src->n_formats ? src->formats : o->formats;
        v->n_formats = src && src->n_formats ? src->n_formats : o->n_formats;
        if (check_formats(f, v->n_formats, why, why_size) != PM_OK)
            goto fail;
        memcpy(v->formats, f, sizeof(pm_format) * (size_t)v->n_formats);
        v->quality = src && src->quality ? src->quality : o->quality;
        if (v->quality < 0 || v->quality > 100) {
            WHY("variant %s: quality must be 1..100", v->name);
            goto fail;
        }
        const char *t = src && src->name_template ? src->name_template : o->name_template;
        v->name_template = g_strdup(t ? t : n == 1 ? "{stem}.{ext}" : "{stem}-{variant}.{ext}");
        if (pm__template_check(v->name_template, NULL, why, why_size) != PM_OK)
            goto fail;
        for (int k = 0; k < i; k++) {
            if (strcmp(out[k].name, v->name) == 0) {
                WHY("two sizes or variants are both named '%s' (such as 320 and 320x)", v->name);
                goto fail;
            }
        }
    }
    /* Two outputs that would always get one name: expand every template with stand-ins that
     * differ wherever outputs can differ (the size's own box for {w} and {h}). */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < out[i].n_formats; j++) {
            for (int k = 0; k <= i; k++) {
                for (int l = 0; l < (k == i ? j : out[k].n_formats); l++) {
                    char *a = NULL, *b = NULL;
                    for (int side = 0; side < 2; side++) {
                        const pm__variant *v = side ? &out[k] : &out[i];
                        int vi = side ? k : i, fi = side ? l : j;
                        char hash[32];
                        g_snprintf(hash, sizeof(hash), "h%d.%d", vi, fi);
                        int w = v->size.percent || v->size.area ? -1000 - vi : v->size.width;
                        int h = v->size.percent || v->size.area ? -1000 - vi : v->size.height;
                        pm__name_vars vars = {
                            "s", pm_format_extension(v->formats[fi]), v->name, "d", hash, w, h};
                        char *name = pm__template_expand(v->name_template, &vars);
                        *(side ? &b : &a) = name;
                    }
                    int clash = a && b && strcmp(a, b) == 0;
                    if (clash)
                        WHY("variants %s (%s) and %s (%s) would write the same name; use "
                            "{variant}, {w}, {ext} or {hash} in --name",
                            out[i].name, pm_format_extension(out[i].formats[j]), out[k].name,
                            pm_format_extension(out[k].formats[l]));
                    g_free(a);
                    g_free(b);
                    if (clash)
                        goto fail;
                }
            }
        }
    }
    return PM_OK;
fail:
    pm__variants_free(out, *n_out);
    *n_out = 0;
    return PM_ERR_USAGE;
}

int pm_options_check(const pm_options *opts, char *why, size_t why_size)
{
    if (!opts || opts->version != PM_OPTIONS_VERSION) {
        WHY("options of another version");
        return PM_ERR_USAGE;
    }
    if (!opts->output_dir || !*opts->output_dir) {
        WHY("no output folder");
        return PM_ERR_USAGE;
    }
    if (opts->quality < 0 || opts->quality > 100 || opts->jobs < 0 || opts->jobs > 1024 ||
        opts->queue_capacity < 0 || opts->queue_capacity > 1000000 || opts->effort < 0 ||
        opts->effort > 10 || (unsigned)opts->subsample > PM_SUBSAMPLE_OFF ||
        (unsigned)opts->fit > PM_FIT_LAST || (unsigned)opts->crop > PM_CROP_LAST ||
        (unsigned)opts->intent > PM_INTENT_ABSOLUTE ||
        (unsigned)opts->fail_on > PM_FAIL_ON_WARNING || opts->n_variants < 0 ||
        opts->n_variants > PM_MAX_VARIANTS) {
        WHY("a value is out of range");
        return PM_ERR_USAGE;
    }
    if ((unsigned)opts->profile > PM_PROFILE_FILE ||
        (opts->profile == PM_PROFILE_FILE && (!opts->profile_file || !*opts->profile_file))) {
        WHY("invalid profile");
        return PM_ERR_USAGE;
    }
    if (opts->manifest_path && !*opts->manifest_path) {
        WHY("empty manifest path");
        return PM_ERR_USAGE;
    }
    pm__variant v[PM_MAX_VARIANTS];
    int n = 0;
    int rc = pm__variants_resolve(opts, v, &n, why, why_size);
    pm__variants_free(v, n);
    return rc;
}
