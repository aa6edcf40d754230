/* Recipes: an INI file read with GLib's GKeyFile.
 *
 *   [defaults]            any of: format quality effort lossless progressive subsample palette
 *   format = webp, jpeg   animated fit crop background auto-swap no-rotate keep profile intent
 *   name = {stem}-{w}.{ext}                                   name max-pixels fail-on size
 *   [variant small]       size (required) fit crop format quality name enlarge
 *   size = 320
 *
 * Unknown groups and keys are errors (a typo must not silently change the output). The
 * presets (--preset) are recipes too, carried as text and read the same way. */
#include "internal.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>

enum {
    SET_FORMATS = 1u << 0,
    SET_QUALITY = 1u << 1,
    SET_EFFORT = 1u << 2,
    SET_LOSSLESS = 1u << 3,
    SET_PROGRESSIVE = 1u << 4,
    SET_SUBSAMPLE = 1u << 5,
    SET_PALETTE = 1u << 6,
    SET_ANIMATED = 1u << 7,
    SET_FIT = 1u << 8,
    SET_CROP = 1u << 9,
    SET_BACKGROUND = 1u << 10,
    SET_AUTO_SWAP = 1u << 11,
    SET_NO_ROTATE = 1u << 12,
    SET_KEEP = 1u << 13,
    SET_PROFILE = 1u << 14,
    SET_INTENT = 1u << 15,
    SET_NAME = 1u << 16,
    SET_MAX_PIXELS = 1u << 17,
    SET_FAIL_ON = 1u << 18,
    SET_SIZES = 1u << 19,
};

struct pm_recipe {
    unsigned set;
    pm_options o; /* the values of the fields in set */
    char *name_template;
    char *profile_file;
    char *variant_names[PM_MAX_VARIANTS];
    char *variant_templates[PM_MAX_VARIANTS];
};

typedef struct reader {
    GKeyFile *kf;
    const char *path;
    const char *group;
    char *why;
    size_t why_size;
} reader;

static int bad(reader *r, const char *key, const char *what)
{
    if (r->why && r->why_size)
        g_snprintf(r->why, (gulong)r->why_size, "%s: [%s] %s: %s", r->path, r->group, key, what);
    return PM_ERR_USAGE;
}

static int get_int(reader *r, const char *key, int lo, int hi, int *out)
{
    char *text = g_key_file_get_string(r->kf, r->group, key, NULL);
    char *end = NULL;
    long v = text ? strtol(text, &end, 10) : 0;
    int ok = text && *text && end && *end == '\0' && v >= lo && v <= hi;
    g_free(text);
    if (!ok) {
        char msg[64];
        g_snprintf(msg, sizeof(msg), "want a whole number %d..%d", lo, hi);
        return bad(r, key, msg);
    }
    *out = (int)v;
    return PM_OK;
}

static int get_bool(reader *r, const char *key, int *out)
{
    GError *e = NULL;
    gboolean v = g_key_file_get_boolean(r->kf, r->group, key, &e);
    if (e) {
        g_error_free(e);
        return bad(r, key, "want true or false");
    }
    *out = v != FALSE;
    return PM_OK;
}

static int get_formats(reader *r, const char *key, pm_format *formats, int *n)
{
    char *text = g_key_file_get_string(r->kf, r->group, key, NULL);
    gchar **parts = g_strsplit_set(text ? text : "", ",;", -1);
    int rc = PM_OK;
    *n = 0;
    for (int i = 0; parts[i] && rc == PM_OK; i++) {
        g_strstrip(parts[i]);
        if (!*parts[i])
            continue;
        if (*n == PM_MAX_FORMATS || pm_format_parse(parts[i], &formats[*n]) != PM_OK)
            rc = bad(r, key, "want formats such as webp, jpeg");
        else
            (*n)++;
    }
    if (rc == PM_OK && *n == 0)
        rc = bad(r, key, "no format");
    g_strfreev(parts);
    g_free(text);
    return rc;
}

/* A string value, stripped; parse() must accept it. */
static char *get_text(reader *r, const char *key)
{
    char *text = g_key_file_get_string(r->kf, r->group, key, NULL);
    return text ? g_strstrip(text) : NULL;
}

static int read_defaults(reader *r, pm_recipe *rc, const char *recipe_dir)
{
    gchar **keys = g_key_file_get_keys(r->kf, r->group, NULL, NULL);
    int st = PM_OK;
    pm_options *o = &rc->o;
    for (int i = 0; keys && keys[i] && st == PM_OK; i++) {
        const char *k = keys[i];
        char *text = get_text(r, k);
        if (strcmp(k, "format") == 0) {
            st = get_formats(r, k, o->formats, &o->n_formats);
            rc->set |= SET_FORMATS;
        } else if (strcmp(k, "quality") == 0) {
            st = get_int(r, k, 1, 100, &o->quality);
            rc->set |= SET_QUALITY;
        } else if (strcmp(k, "effort") == 0) {
            st = get_int(r, k, 1, 10, &o->effort);
            rc->set |= SET_EFFORT;
        } else if (strcmp(k, "lossless") == 0) {
            st = get_bool(r, k, &o->lossless);
            rc->set |= SET_LOSSLESS;
        } else if (strcmp(k, "progressive") == 0) {
            st = get_bool(r, k, &o->progressive);
            rc->set |= SET_PROGRESSIVE;
        } else if (strcmp(k, "palette") == 0) {
            st = get_bool(r, k, &o->palette);
            rc->set |= SET_PALETTE;
        } else if (strcmp(k, "animated") == 0) {
            st = get_bool(r, k, &o->animated);
            rc->set |= SET_ANIMATED;
        } else if (strcmp(k, "auto-swap") == 0) {
            st = get_bool(r, k, &o->auto_swap);
            rc->set |= SET_AUTO_SWAP;
        } else if (strcmp(k, "no-rotate") == 0) {
            st = get_bool(r, k, &o->no_rotate);
            rc->set |= SET_NO_ROTATE;
        } else if (strcmp(k, "subsample") == 0) {
            if (pm_subsample_parse(text, &o->subsample) != PM_OK)
                st = bad(r, k, "want auto, on or off");
            rc->set |= SET_SUBSAMPLE;
        } else if (strcmp(k, "fit") == 0) {
            if (pm_fit_parse(text, &o->fit) != PM_OK)
                st = bad(r, k, "want inside, cover, contain, fill or outside");
            rc->set |= SET_FIT;
        } else if (strcmp(k, "crop") == 0) {
            if (pm_crop_parse(text, &o->crop) != PM_OK)
                st = bad(r, k, "want centre, north, ..., attention or entropy");
            rc->set |= SET_CROP;
        } else if (strcmp(k, "background") == 0) {
            if (pm_color_parse(text, o->background) != PM_OK)
                st = bad(r, k, "want #rgb, #rrggbb, #rrggbbaa, white, black or transparent");
            rc->set |= SET_BACKGROUND;
        } else if (strcmp(k, "keep") == 0) {
            if (pm_keep_parse(text, &o->keep) != PM_OK)
                st = bad(r, k, "want none, icc, exif, xmp, all or a list");
            rc->set |= SET_KEEP;
        } else if (strcmp(k, "intent") == 0) {
            if (pm_intent_parse(text, &o->intent) != PM_OK)
                st = bad(r, k, "want relative, perceptual, saturation or absolute");
            rc->set |= SET_INTENT;
        } else if (strcmp(k, "fail-on") == 0) {
            if (pm_fail_on_parse(text, &o->fail_on) != PM_OK)
                st = bad(r, k, "want none, truncated, error or warning");
            rc->set |= SET_FAIL_ON;
        } else if (strcmp(k, "max-pixels") == 0) {
            char *end = NULL;
            guint64 v = text && g_ascii_isdigit(*text) ? g_ascii_strtoull(text, &end, 10) : 0;
            /* digits only: strtoull takes "-1" as 2^64-1, which would turn the cap off */
            if (!text || !g_ascii_isdigit(*text) || !end || *end)
                st = bad(r, k, "want a whole number, 0 or more");
            o->max_pixels = v;
            rc->set |= SET_MAX_PIXELS;
        } else if (strcmp(k, "profile") == 0) {
            const char *file = NULL;
            if (pm_profile_parse(text, &o->profile, &file) != PM_OK) {
                st = bad(r, k, "want srgb, p3, keep or an ICC file");
            } else if (o->profile == PM_PROFILE_FILE) {
                /* relative to the recipe's folder, where it was written */
                rc->profile_file = g_path_is_absolute(file)
                                       ? g_strdup(file)
                                       : g_build_filename(recipe_dir, file, NULL);
                if (!g_file_test(rc->profile_file, G_FILE_TEST_IS_REGULAR))
                    st = bad(r, k, "cannot read that ICC file");
            }
            rc->set |= SET_PROFILE;
        } else if (strcmp(k, "name") == 0) {
            g_free(rc->name_template);
            rc->name_template = g_strdup(text);
            char why[256];
            if (pm__template_check(text, NULL, why, sizeof(why)) != PM_OK)
                st = bad(r, k, why);
            rc->set |= SET_NAME;
        } else if (strcmp(k, "size") == 0) {
            gchar **parts = g_strsplit_set(text ? text : "", ", ", -1);
            o->n_sizes = 0;
            for (int p = 0; parts[p] && st == PM_OK; p++) {
                if (!*parts[p])
                    continue;
                if (o->n_sizes == PM_MAX_SIZES || pm_size_parse(parts[p], &o->sizes[o->n_sizes++]))
                    st = bad(r, k, "want sizes such as 320, 640x480");
            }
            if (st == PM_OK && o->n_sizes == 0)
                st = bad(r, k, "no size");
            g_strfreev(parts);
            rc->set |= SET_SIZES;
        } else {
            st = bad(r, k, "unknown key");
        }
        g_free(text);
    }
    g_strfreev(keys);
    return st;
}

static int read_variant(reader *r, pm_recipe *rc, const char *name)
{
    int idx = rc->o.n_variants;
    if (idx == PM_MAX_VARIANTS)
        return bad(r, "size", "too many variants");
    pm_variant *v = &rc->o.variants[idx];
    memset(v, 0, sizeof(*v));
    v->crop = PM_INHERIT;
    rc->variant_names[idx] = g_strdup(name);
    v->name = rc->variant_names[idx];
    rc->o.n_variants++;
    if (!g_key_file_has_key(r->kf, r->group, "size", NULL))
        return bad(r, "size", "every variant needs a size");
    gchar **keys = g_key_file_get_keys(r->kf, r->group, NULL, NULL);
    int st = PM_OK;
    for (int i = 0; keys && keys[i] && st == PM_OK; i++) {
        const char *k = keys[i];
        char *text = get_text(r, k);
        if (strcmp(k, "size") == 0) {
            if (pm_size_parse(text, &v->size) != PM_OK)
                st = bad(r, k, "want N, WxH, Wx or xH with > < ! ^, or N% or N@");
        } else if (strcmp(k, "fit") == 0) {
            pm_fit fit;
            if (pm_fit_parse(text, &fit) != PM_OK)
                st = bad(r, k, "want inside, cover, contain, fill or outside");
            else
                v->size.fit = fit; /* set after size: keys come in file order, so re-applied */
        } else if (strcmp(k, "crop") == 0) {
            pm_crop crop;
            if (pm_crop_parse(text, &crop) != PM_OK)
                st = bad(r, k, "want centre, north, ..., attention or entropy");
            else
                v->crop = (int)crop;
        } else if (strcmp(k, "format") == 0) {
            st = get_formats(r, k, v->formats, &v->n_formats);
        } else if (strcmp(k, "quality") == 0) {
            st = get_int(r, k, 1, 100, &v->quality);
        } else if (strcmp(k, "name") == 0) {
            char why[256];
            rc->variant_templates[idx] = g_strdup(text);
            v->name_template = rc->variant_templates[idx];
            if (pm__template_check(text, NULL, why, sizeof(why)) != PM_OK)
                st = bad(r, k, why);
        } else if (strcmp(k, "enlarge") == 0) {
            GError *e = NULL;
            g_key_file_get_boolean(r->kf, r->group, k, &e);
            if (e) {
                g_error_free(e);
                st = bad(r, k, "want true or false");
            }
        } else {
            st = bad(r, k,
                     "unknown key (a variant takes size, fit, crop, format, quality, name, "
                     "enlarge)");
        }
        g_free(text);
    }
    g_strfreev(keys);
    /* "fit" may come before "size" in the file: apply it again over the parsed size. */
    char *fit_text = st == PM_OK ? get_text(r, "fit") : NULL;
    pm_fit fit;
    if (fit_text && pm_fit_parse(fit_text, &fit) == PM_OK)
        v->size.fit = fit;
    g_free(fit_text);
    /* "enlarge = true": the box is met both ways (a social card has a fixed size) */
    if (st == PM_OK && g_key_file_get_boolean(r->kf, r->group, "enlarge", NULL))
        v->size.enlarge = PM_ENLARGE_ALLOW;
    return st;
}

/* The groups of a loaded key file into *out; path names it in messages (a file, or "preset
 * NAME"), dir is where a relative profile is looked for. */
static int read_recipe(GKeyFile *kf, const char *path, const char *dir, pm_recipe **out, char *why,
                       size_t why_size)
{
    pm_recipe *rc = g_new0(pm_recipe, 1);
    pm_options_init(&rc->o);
    rc->o.n_variants = 0;
    reader r = {kf, path, NULL, why, why_size};
    gchar **groups = g_key_file_get_groups(kf, NULL);
    int st = PM_OK;
    for (int i = 0; groups[i] && st == PM_OK; i++) {
        r.group = groups[i];
        if (strcmp(groups[i], "defaults") == 0) {
            st = read_defaults(&r, rc, dir);
        } else if (g_str_has_prefix(groups[i], "variant ") && groups[i][8]) {
            st = read_variant(&r, rc, g_strstrip(groups[i] + 8));
        } else {
            if (why && why_size)
                g_snprintf(why, (gulong)why_size,
                           "%s: unknown group [%s] (want [defaults] and [variant NAME])", path,
                           groups[i]);
            st = PM_ERR_USAGE;
        }
    }
    g_strfreev(groups);
    if (st == PM_OK && rc->o.n_variants > 0 && (rc->set & SET_SIZES)) {
        if (why && why_size)
            g_snprintf(why, (gulong)why_size,
                       "%s: give sizes either as [defaults] size or as [variant] groups", path);
        st = PM_ERR_USAGE;
    }
    if (st != PM_OK) {
        pm_recipe_free(rc);
        return st;
    }
    *out = rc;
    return PM_OK;
}

int pm_recipe_load(pm_recipe **out, const char *path, char *why, size_t why_size)
{
    if (!out || !path)
        return PM_ERR_USAGE;
    GKeyFile *kf = g_key_file_new();
    GError *e = NULL;
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
        if (why && why_size)
            g_snprintf(why, (gulong)why_size, "%s: %s", path, e->message);
        g_error_free(e);
        g_key_file_free(kf);
        return PM_ERR_USAGE;
    }
    char *dir = g_path_get_dirname(path);
    int st = read_recipe(kf, path, dir, out, why, why_size);
    g_free(dir);
    g_key_file_free(kf);
    return st;
}

/* The presets: recipes pixmill carries for the common asks of someone resizing photos to
 * share them. Boxes, so that portraits and landscapes get the same long side; never enlarged. */
static const struct {
    const char *name, *summary, *text;
} presets[] = {
    {"small", "800 px on the long side, each image in its own format", "[defaults]\nsize = 800\n"},
    {"medium", "1280 px on the long side, each image in its own format",
     "[defaults]\nsize = 1280\n"},
    {"large", "1920 px on the long side, each image in its own format",
     "[defaults]\nsize = 1920\n"},
    {"email", "1024 px JPEG at quality 75, to attach to a mail (most photos 40-110 KB)",
     "[defaults]\nsize = 1024\nformat = jpeg\nquality = 75\n"},
    {"web", "1600 px WebP at quality 80, and a JPEG of it beside",
     "[defaults]\nsize = 1600\nformat = webp, jpeg\nquality = 80\n"},
    {"square", "1080x1080 exactly, cropped to fill from the centre (a smaller image is enlarged)",
     "[variant square]\nsize = 1080x1080\nfit = cover\nenlarge = true\n"},
};

const char *pm_preset_name(int i)
{
    return i >= 0 && i < (int)G_N_ELEMENTS(presets) ? presets[i].name : NULL;
}

const char *pm_preset_summary(int i)
{
    return i >= 0 && i < (int)G_N_ELEMENTS(presets) ? presets[i].summary : NULL;
}

int pm_recipe_preset(pm_recipe **out, const char *name, char *why, size_t why_size)
{
    if (!out || !name)
        return PM_ERR_USAGE;
    for (size_t i = 0; i < G_N_ELEMENTS(presets); i++) {
        if (strcmp(presets[i].name, name) != 0)
            continue;
        GKeyFile *kf = g_key_file_new();
        if (!g_key_file_load_from_data(kf, presets[i].text, (gsize)-1, G_KEY_FILE_NONE, NULL)) {
            g_key_file_free(kf); /* cannot happen: the texts above are tested */
            return PM_ERR_USAGE;
        }
        char *shown = g_strdup_printf("preset %s", name);
        int st = read_recipe(kf, shown, ".", out, why, why_size);
        g_free(shown);
        g_key_file_free(kf);
        return st;
    }
    if (why && why_size) {
        GString *names = g_string_new(NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(presets); i++)
            g_string_append_printf(names, "%s%s", i ? ", " : "", presets[i].name);
        g_snprintf(why, (gulong)why_size, "unknown preset '%s' (want %s; --preset help)", name,
                   names->str);
        g_string_free(names, TRUE);
    }
    return PM_ERR_USAGE;
}

void pm_recipe_apply(const pm_recipe *rc, pm_options *o)
{
    if (!rc || !o)
        return;
    const pm_options *r = &rc->o;
    if (rc->set & SET_FORMATS) {
        memcpy(o->formats, r->formats, sizeof(o->formats));
        o->n_formats = r->n_formats;
    }
    if (rc->set & SET_QUALITY)
        o->quality = r->quality;
    if (rc->set & SET_EFFORT)
        o->effort = r->effort;
    if (rc->set & SET_LOSSLESS)
        o->lossless = r->lossless;
    if (rc->set & SET_PROGRESSIVE)
        o->progressive = r->progressive;
    if (rc->set & SET_SUBSAMPLE)
        o->subsample = r->subsample;
    if (rc->set & SET_PALETTE)
        o->palette = r->palette;
    if (rc->set & SET_ANIMATED)
        o->animated = r->animated;
    if (rc->set & SET_FIT)
        o->fit = r->fit;
    if (rc->set & SET_CROP)
        o->crop = r->crop;
    if (rc->set & SET_BACKGROUND)
        memcpy(o->background, r->background, sizeof(o->background));
    if (rc->set & SET_AUTO_SWAP)
        o->auto_swap = r->auto_swap;
    if (rc->set & SET_NO_ROTATE)
        o->no_rotate = r->no_rotate;
    if (rc->set & SET_KEEP)
        o->keep = r->keep;
    if (rc->set & SET_PROFILE) {
        o->profile = r->profile;
        o->profile_file = rc->profile_file;
    }
    if (rc->set & SET_INTENT)
        o->intent = r->intent;
    if (rc->set & SET_NAME)
        o->name_template = rc->name_template;
    if (rc->set & SET_MAX_PIXELS)
        o->max_pixels = r->max_pixels;
    if (rc->set & SET_FAIL_ON)
        o->fail_on = r->fail_on;
    if (rc->set & SET_SIZES) {
        memcpy(o->sizes, r->sizes, sizeof(o->sizes));
        o->n_sizes = r->n_sizes;
    }
    if (r->n_variants > 0) {
        memcpy(o->variants, r->variants, sizeof(o->variants));
        o->n_variants = r->n_variants;
    }
}

void pm_recipe_free(pm_recipe *rc)
{
    if (!rc)
        return;
    for (int i = 0; i < PM_MAX_VARIANTS; i++) {
        g_free(rc->variant_names[i]);
        g_free(rc->variant_templates[i]);
    }
    g_free(rc->name_template);
    g_free(rc->profile_file);
    g_free(rc);
}
