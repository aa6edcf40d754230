/* Option values: geometry, formats, fail-on, status strings, and batch option validation. */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <glib.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>

static const struct {
    const char *text;
    int ok, w, h;
} sizes[] = {
    {"256", 1, 256, 256},
    {"800x600", 1, 800, 600},
    {"800x", 1, 800, 0},
    {"x600", 1, 0, 600},
    {"1", 1, 1, 1},
    {"100000", 1, 100000, 100000},
    {"0", 0, 0, 0},
    {"-1", 0, 0, 0},
    {"1e12", 0, 0, 0},
    {"100001", 0, 0, 0},
    {"", 0, 0, 0},
    {"x", 0, 0, 0},
    {"10x10x10", 0, 0, 0},
    {" 10", 0, 0, 0},
    {"10 ", 0, 0, 0},
    {"+10", 0, 0, 0},
    {"0x10", 0, 0, 0},
    {"10x0", 0, 0, 0},
    {"99999999999999999999", 0, 0, 0},
    {"abc", 0, 0, 0},
    {"10X10", 0, 0, 0},
};

START_TEST(test_size_table)
{
    pm_size s = {.width = -7, .height = -7};
    int rc = pm_size_parse(sizes[_i].text, &s);
    if (sizes[_i].ok) {
        ck_assert_msg(rc == PM_OK, "'%s' should parse", sizes[_i].text);
        ck_assert_int_eq(s.width, sizes[_i].w);
        ck_assert_int_eq(s.height, sizes[_i].h);
    } else {
        ck_assert_msg(rc == PM_ERR_USAGE, "'%s' should be rejected", sizes[_i].text);
        ck_assert_int_eq(s.width, -7); /* untouched on failure */
    }
}
END_TEST

START_TEST(test_formats)
{
    pm_format f;
    ck_assert_int_eq(pm_format_parse("jpeg", &f), PM_OK);
    ck_assert_int_eq(f, PM_FORMAT_JPEG);
    ck_assert_int_eq(pm_format_parse("JPG", &f), PM_OK);
    ck_assert_int_eq(f, PM_FORMAT_JPEG);
    ck_assert_int_eq(pm_format_parse("webp", &f), PM_OK);
    ck_assert_str_eq(pm_format_extension(f), "webp");
    ck_assert_int_eq(pm_format_parse("same", &f), PM_OK);
    ck_assert_int_eq(f, PM_FORMAT_SAME);
    ck_assert_int_eq(pm_format_parse("heic", &f), PM_OK);
    ck_assert_str_eq(pm_format_extension(f), "heic");
    ck_assert_int_eq(pm_format_parse("avif", &f), PM_OK);
    ck_assert_str_eq(pm_format_extension(f), "avif");
    ck_assert_int_eq(pm_format_parse("tiff", &f), PM_OK);
    ck_assert_str_eq(pm_format_extension(f), "tif");
    ck_assert_int_eq(pm_format_parse("gif", &f), PM_OK);
    ck_assert_str_eq(pm_format_extension(f), "gif");
    ck_assert_int_eq(pm_format_parse("bmp", &f), PM_ERR_USAGE);
    ck_assert_int_eq(pm_format_parse("", &f), PM_ERR_USAGE);
    ck_assert_int_eq(pm_format_parse(NULL, &f), PM_ERR_USAGE);
    pm_fail_on fo;
    ck_assert_int_eq(pm_fail_on_parse("truncated", &fo), PM_OK);
    ck_assert_int_eq(fo, PM_FAIL_ON_TRUNCATED);
    ck_assert_int_eq(pm_fail_on_parse("loud", &fo), PM_ERR_USAGE);
}
END_TEST

/* Every size form and fit mode against expected dimensions (a 400x300 source unless said). */
static const struct {
    const char *size;
    pm_fit fit;
    int auto_swap, sw, sh;
    int rw, rh, w, h; /* resized, then final */
} geometry[] = {
    {"200", PM_FIT_INSIDE, 0, 400, 300, 200, 150, 200, 150},
    {"200x", PM_FIT_INSIDE, 0, 400, 300, 200, 150, 200, 150},
    {"x150", PM_FIT_INSIDE, 0, 400, 300, 200, 150, 200, 150},
    {"800x800", PM_FIT_INSIDE, 0, 400, 300, 400, 300, 400, 300},  /* never enlarged */
    {"800x800>", PM_FIT_INSIDE, 0, 400, 300, 400, 300, 400, 300}, /* '>' is the default */
    {"800x800<", PM_FIT_INSIDE, 0, 400, 300, 800, 600, 800, 600}, /* only enlarge */
    {"100x100<", PM_FIT_INSIDE, 0, 400, 300, 400, 300, 400, 300}, /* ... never shrinks */
    {"200x200!", PM_FIT_INSIDE, 0, 400, 300, 200, 200, 200, 200}, /* exact */
    {"200x200^", PM_FIT_INSIDE, 0, 400, 300, 267, 200, 267, 200}, /* covers, no crop */
    {"50%", PM_FIT_INSIDE, 0, 400, 300, 200, 150, 200, 150},
    {"200%", PM_FIT_INSIDE, 0, 400, 300, 800, 600, 800, 600},
    {"30000@", PM_FIT_INSIDE, 0, 400, 300, 200, 150, 200, 150},
    {"200x200", PM_FIT_COVER, 0, 400, 300, 267, 200, 200, 200},
    {"200x200", PM_FIT_CONTAIN, 0, 400, 300, 200, 150, 200, 200},
    {"200x100", PM_FIT_FILL, 0, 400, 300, 200, 100, 200, 100},
    {"200x200", PM_FIT_OUTSIDE, 0, 400, 300, 267, 200, 267, 200},
    {"200x", PM_FIT_COVER, 0, 400, 300, 200, 150, 200, 150},      /* one axis: as inside */
    {"800x800", PM_FIT_COVER, 0, 400, 300, 400, 300, 400, 300},   /* small: nothing to crop */
    {"800x800", PM_FIT_CONTAIN, 0, 400, 300, 400, 300, 800, 800}, /* small: padded */
    {"200x200!", PM_FIT_COVER, 0, 400, 300, 200, 200, 200, 200},  /* a modifier wins */
    {"300x100", PM_FIT_INSIDE, 0, 300, 400, 75, 100, 75, 100},
    {"300x100", PM_FIT_INSIDE, 1, 300, 400, 100, 133, 100, 133}, /* auto-swap: 100x300 */
    {"300x100", PM_FIT_INSIDE, 1, 400, 300, 133, 100, 133, 100}, /* same orientation */
    {"256", PM_FIT_INSIDE, 0, 1, 1, 1, 1, 1, 1},
    {"256", PM_FIT_INSIDE, 0, 100000, 1, 256, 1, 256, 1}, /* never 0 on an axis */
    {"256", PM_FIT_INSIDE, 0, 1, 100000, 1, 256, 1, 256},
    {"256", PM_FIT_COVER, 0, 100000, 1, 100000, 1, 256, 1},
    {"1x1!", PM_FIT_INSIDE, 0, 400, 300, 1, 1, 1, 1},
    {"300x200!", PM_FIT_INSIDE, 0, 17, 1000, 300, 200, 300, 200}, /* exact, as ImageMagick */
    {"300x200", PM_FIT_FILL, 0, 17, 1000, 17, 11, 17, 11},        /* the box's shape, smaller */
    {"30000@", PM_FIT_INSIDE, 0, 257, 129, 244, 122, 244, 122},   /* at most 30000 pixels */
};

START_TEST(test_geometry_table)
{
    pm_size s;
    ck_assert_int_eq(pm_size_parse(geometry[_i].size, &s), PM_OK);
    pm_geometry g;
    pm_geometry_compute(&s, geometry[_i].fit, geometry[_i].auto_swap, geometry[_i].sw,
                        geometry[_i].sh, &g);
    ck_assert_msg(g.resize_width == geometry[_i].rw && g.resize_height == geometry[_i].rh &&
                      g.width == geometry[_i].w && g.height == geometry[_i].h,
                  "%s fit %d on %dx%d: resized %dx%d, final %dx%d; want %dx%d, %dx%d",
                  geometry[_i].size, geometry[_i].fit, geometry[_i].sw, geometry[_i].sh,
                  g.resize_width, g.resize_height, g.width, g.height, geometry[_i].rw,
                  geometry[_i].rh, geometry[_i].w, geometry[_i].h);
}
END_TEST

/* Geometry as documented, as a property (issue 19): random sources from 1 to 20000 a side,
 * extreme aspect ratios among them, every size form and fit mode; each result checked against
 * the man page's words, computed here on their own: inside the box, N@ at most N pixels, `!`
 * exactly the box, the source's aspect within rounding, never enlarged unless asked. 20,000
 * cases; the seed is printed on failure. */
static double near(double v)
{
    return v < 1 ? 1 : floor(v + 0.5);
}

/* |got - want| within rounding to whole pixels (and never below 1) */
static int rounds_to(int got, double want)
{
    return fabs((double)got - near(want)) <= 1.0 && fabs((double)got - MAX(want, 1.0)) <= 1.0;
}

static int random_side(GRand *r)
{
    switch (g_rand_int_range(r, 0, 6)) {
    case 0:
        return 1 + g_rand_int_range(r, 0, 4);
    case 1:
        return 20000 - g_rand_int_range(r, 0, 4);
    default:
        return (int)exp(g_rand_double_range(r, 0, log(20000.0)));
    }
}

START_TEST(test_geometry_property)
{
    const pm_fit fits[] = {PM_FIT_INSIDE, PM_FIT_COVER, PM_FIT_CONTAIN, PM_FIT_FILL,
                           PM_FIT_OUTSIDE};
    const char *mods[] = {"", ">", "<", "!", "^"};
    guint32 seed = (guint32)time(NULL);
    GRand *r = g_rand_new_with_seed(seed);
    for (int i = 0; i < 20000; i++) {
        int sw = random_side(r), sh = random_side(r);
        int W = random_side(r), H = random_side(r);
        int form = g_rand_int_range(r, 0, 4);
        pm_fit fit = fits[g_rand_int_range(r, 0, 5)];
        const char *mod = mods[g_rand_int_range(r, 0, 5)];
        char text[64];
        uint64_t area = 0;
        int pct = 0;
        if (form == 0) {
            g_snprintf(text, sizeof(text), "%dx%d%s", W, H, mod);
        } else if (form == 1) {
            H = W;
            g_snprintf(text, sizeof(text), "%d%s", W, mod);
        } else if (form == 2) {
            pct = 1 + g_rand_int_range(r, 0, 1000);
            g_snprintf(text, sizeof(text), "%d%%", pct);
        } else {
            area = 1 + (uint64_t)g_rand_int_range(r, 0, 400000000);
            g_snprintf(text, sizeof(text), "%" G_GUINT64_FORMAT "@", area);
        }
        pm_size s;
        ck_assert_msg(pm_size_parse(text, &s) == PM_OK, "seed %u: %s", seed, text);
        pm_geometry g;
        pm_geometry_compute(&s, fit, 0, sw, sh, &g);
        int rw = g.resize_width, rh = g.resize_height;
        char what[160];
        g_snprintf(what, sizeof(what), "seed %u case %d: %s fit %d on %dx%d -> %dx%d, %dx%d", seed,
                   i, text, (int)fit, sw, sh, rw, rh, g.width, g.height);
        ck_assert_msg(rw >= 1 && rh >= 1 && g.width >= 1 && g.height >= 1, "%s", what);
        if (pct) { /* scaled by N/100, both ways */
            ck_assert_msg(rounds_to(rw, sw * pct / 100.0) && rounds_to(rh, sh * pct / 100.0) &&
                              g.width == rw && g.height == rh,
                          "%s", what);
            continue;
        }
        if (area) { /* at most N pixels, aspect kept, never enlarged */
            double k = MIN(1.0, sqrt((double)area / ((double)sw * sh)));
            ck_assert_msg((uint64_t)rw * rh <= MAX(area, 1) || (rw == 1 && rh == 1), "%s", what);
            ck_assert_msg(rw <= sw && rh <= sh && rounds_to(rw, sw * k) && rounds_to(rh, sh * k),
                          "%s", what);
            continue;
        }
        if (*mod == '!') { /* exactly the box, whatever the fit */
            ck_assert_msg(rw == W && rh == H && g.width == W && g.height == H, "%s", what);
            continue;
        }
        pm_fit f = *mod == '^' ? PM_FIT_OUTSIDE : fit;
        double fx = (double)W / sw, fy = (double)H / sh;
        int grow = *mod == '<'; /* only enlarge; else only shrink */
        if (f == PM_FIT_FILL) { /* the box's shape, no axis against the direction allowed */
            double k = grow ? MIN(1.0, MIN(fx, fy)) : MAX(1.0, MAX(fx, fy));
            ck_assert_msg(rounds_to(rw, W / k) && rounds_to(rh, H / k), "%s", what);
            ck_assert_msg(grow ? (rw >= sw - 1 && rh >= sh - 1) : (rw <= sw + 1 && rh <= sh + 1),
                          "%s", what);
            continue;
        }
        double k = (f == PM_FIT_COVER || f == PM_FIT_OUTSIDE) ? MAX(fx, fy) : MIN(fx, fy);
        k = grow ? MAX(k, 1.0) : MIN(k, 1.0);
        ck_assert_msg(rounds_to(rw, sw * k) && rounds_to(rh, sh * k), "%s", what);
        ck_assert_msg(grow ? (rw >= sw && rh >= sh) : (rw <= sw && rh <= sh), "%s", what);
        if ((f == PM_FIT_INSIDE || f == PM_FIT_CONTAIN) && !grow)
            ck_assert_msg(rw <= W && rh <= H, "%s: outside the box", what);
        if (f == PM_FIT_COVER)
            ck_assert_msg(g.width == MIN(rw, W) && g.height == MIN(rh, H), "%s", what);
        else if (f == PM_FIT_CONTAIN)
            ck_assert_msg(g.width == MAX(rw, W) && g.height == MAX(rh, H), "%s", what);
        else
            ck_assert_msg(g.width == rw && g.height == rh, "%s", what);
    }
    g_rand_free(r);
}
END_TEST

START_TEST(test_fit_crop_color_parse)
{
    pm_fit f;
    pm_crop c;
    unsigned char rgba[4];
    ck_assert_int_eq(pm_fit_parse("cover", &f), PM_OK);
    ck_assert_int_eq(f, PM_FIT_COVER);
    ck_assert_int_eq(pm_fit_parse("outside", &f), PM_OK);
    ck_assert_int_eq(f, PM_FIT_OUTSIDE);
    ck_assert_int_eq(pm_fit_parse("crop", &f), PM_ERR_USAGE);
    ck_assert_int_eq(pm_crop_parse("center", &c), PM_OK);
    ck_assert_int_eq(c, PM_CROP_CENTRE);
    ck_assert_int_eq(pm_crop_parse("southwest", &c), PM_OK);
    ck_assert_int_eq(c, PM_CROP_SOUTHWEST);
    ck_assert_int_eq(pm_crop_parse("attention", &c), PM_OK);
    ck_assert_int_eq(c, PM_CROP_ATTENTION);
    ck_assert_int_eq(pm_crop_parse("middle", &c), PM_ERR_USAGE);
    ck_assert_int_eq(pm_color_parse("#ff8000", rgba), PM_OK);
    ck_assert(rgba[0] == 255 && rgba[1] == 128 && rgba[2] == 0 && rgba[3] == 255);
    ck_assert_int_eq(pm_color_parse("#f80", rgba), PM_OK);
    ck_assert(rgba[0] == 255 && rgba[1] == 136 && rgba[2] == 0 && rgba[3] == 255);
    ck_assert_int_eq(pm_color_parse("#00000080", rgba), PM_OK);
    ck_assert_int_eq(rgba[3], 128);
    ck_assert_int_eq(pm_color_parse("transparent", rgba), PM_OK);
    ck_assert_int_eq(rgba[3], 0);
    ck_assert_int_eq(pm_color_parse("#12345", rgba), PM_ERR_USAGE);
    ck_assert_int_eq(pm_color_parse("#gg0000", rgba), PM_ERR_USAGE);
    ck_assert_int_eq(pm_color_parse("red", rgba), PM_ERR_USAGE);
}
END_TEST

START_TEST(test_keep_profile_intent_parse)
{
    unsigned keep = 99;
    ck_assert_int_eq(pm_keep_parse("none", &keep), PM_OK);
    ck_assert_uint_eq(keep, PM_KEEP_NONE);
    ck_assert_int_eq(pm_keep_parse("icc,exif", &keep), PM_OK);
    ck_assert_uint_eq(keep, PM_KEEP_ICC | PM_KEEP_EXIF);
    ck_assert_int_eq(pm_keep_parse("all", &keep), PM_OK);
    ck_assert_uint_eq(keep, PM_KEEP_ALL);
    ck_assert_int_eq(pm_keep_parse("icc,", &keep), PM_ERR_USAGE);
    ck_assert_int_eq(pm_keep_parse("gps", &keep), PM_ERR_USAGE);
    ck_assert_int_eq(pm_keep_parse("", &keep), PM_ERR_USAGE);
    pm_profile p;
    const char *file = "x";
    ck_assert_int_eq(pm_profile_parse("p3", &p, &file), PM_OK);
    ck_assert_int_eq(p, PM_PROFILE_P3);
    ck_assert_ptr_null(file);
    ck_assert_int_eq(pm_profile_parse("/usr/share/color/icc/x.icc", &p, &file), PM_OK);
    ck_assert_int_eq(p, PM_PROFILE_FILE);
    ck_assert_str_eq(file, "/usr/share/color/icc/x.icc");
    ck_assert_int_eq(pm_profile_parse("", &p, &file), PM_ERR_USAGE);
    pm_subsample sub;
    ck_assert_int_eq(pm_subsample_parse("off", &sub), PM_OK);
    ck_assert_int_eq(sub, PM_SUBSAMPLE_OFF);
    ck_assert_int_eq(pm_subsample_parse("444", &sub), PM_ERR_USAGE);
    pm_intent i;
    ck_assert_int_eq(pm_intent_parse("perceptual", &i), PM_OK);
    ck_assert_int_eq(i, PM_INTENT_PERCEPTUAL);
    ck_assert_int_eq(pm_intent_parse("vivid", &i), PM_ERR_USAGE);
}
END_TEST

START_TEST(test_size_labels)
{
    static const struct {
        const char *text, *label;
    } t[] = {{"256", "256"},         {"320x", "320"},         {"x600", "x600"},
             {"800x600", "800x600"}, {"800x600!", "800x600"}, {"50%", "50pct"},
             {"30000@", "30000px"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        pm_size s;
        char buf[32];
        ck_assert_int_eq(pm_size_parse(t[i].text, &s), PM_OK);
        pm_size_label(&s, buf, sizeof(buf));
        ck_assert_str_eq(buf, t[i].label);
    }
}
END_TEST

/* Two variants that would write one file are refused when the batch is created. */
START_TEST(test_variant_collisions_refused)
{
    pm_options o;
    pm_batch *b = NULL;
    pm_options_init(&o);
    o.output_dir = "out";
    o.n_sizes = 2;
    pm_size_parse("320", &o.sizes[0]);
    pm_size_parse("320x", &o.sizes[1]); /* both label "320" */
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
    pm_size_parse("640x", &o.sizes[1]);
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_OK);
    pm_batch_destroy(b);
    o.n_formats = 2;
    o.formats[0] = PM_FORMAT_WEBP;
    o.formats[1] = PM_FORMAT_WEBP;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
    o.formats[1] = PM_FORMAT_AVIF;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_OK);
    pm_batch_destroy(b);
    o.n_sizes = PM_MAX_SIZES + 1;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
}
END_TEST

START_TEST(test_status_strings)
{
    ck_assert_str_eq(pm_status_name(PM_OK), "PM_OK");
    ck_assert_str_eq(pm_status_name(PM_ERR_TOO_MANY_PIXELS), "PM_ERR_TOO_MANY_PIXELS");
    ck_assert_str_eq(pm_strerror(PM_ERR_UNKNOWN_FORMAT), "not a known image format");
    ck_assert_str_eq(pm_strerror(12345), "unknown status");
    ck_assert_str_eq(pm_version_string(), PM_VERSION_STRING);
    ck_assert_int_ge(pm_default_jobs(), 1);
}
END_TEST

/* Every concrete libvips loader, blocked or not. The trusted ones are the allow-list of the
 * issue: JPEG, PNG, WebP, GIF, HEIF/AVIF; everything else (TIFF included) must be blocked,
 * and --allow opens exactly the one named. libvips ignores unknown names in
 * vips_operation_block_set silently, so this reads each class's flags itself. */
static GString *loaders_open;

static void *note_loader(GType type, void *a)
{
    (void)a;
    if (G_TYPE_IS_ABSTRACT(type))
        return NULL;
    VipsOperationClass *klass = g_type_class_ref(type);
    if (!(klass->flags & VIPS_OPERATION_BLOCKED))
        g_string_append_printf(loaders_open, "%s ", VIPS_OBJECT_CLASS(klass)->nickname);
    g_type_class_unref(klass);
    return NULL;
}

static char *open_loaders(void)
{
    loaders_open = g_string_new(NULL);
    vips_type_map_all(g_type_from_name("VipsForeignLoad"), note_loader, NULL);
    return g_string_free(loaders_open, FALSE);
}

START_TEST(test_only_trusted_loaders_open)
{
    ck_assert_int_eq(pm_global_init("check_options"), PM_OK);
    char *open = open_loaders();
    gchar **names = g_strsplit(g_strstrip(open), " ", -1);
    static const char *const trusted[] = {"jpegload", "pngload", "webpload", "gifload", "heifload"};
    int n = 0;
    for (int i = 0; names[i]; i++, n++) {
        int ok = 0;
        for (size_t t = 0; t < G_N_ELEMENTS(trusted); t++)
            ok |= g_str_has_prefix(names[i], trusted[t]);
        ck_assert_msg(ok, "loader %s is not blocked (open: %s)", names[i], open);
    }
    ck_assert_int_ge(n, 5); /* jpeg, png, webp, gif, heif: source variants at least */
    g_strfreev(names);
    g_free(open);
    /* --allow=tiff opens the TIFF loaders and nothing else */
    char *before = open_loaders();
    ck_assert_int_eq(pm_loader_allow("tiff"), PM_OK);
    char *after = open_loaders();
    gchar **extra = g_strsplit(g_strstrip(after), " ", -1);
    for (int i = 0; extra[i]; i++)
        ck_assert_msg(strstr(before, extra[i]) || g_str_has_prefix(extra[i], "tiffload"),
                      "--allow=tiff opened %s", extra[i]);
    ck_assert_ptr_nonnull(strstr(after, "tiffload"));
    ck_assert_ptr_null(strstr(before, "tiffload"));
    g_strfreev(extra);
    g_free(before), g_free(after);
    ck_assert_int_eq(pm_loader_allow("no-such-format"), PM_ERR_USAGE);
}
END_TEST

START_TEST(test_batch_validation)
{
    pm_options o;
    pm_batch *b = (pm_batch *)0x1;
    pm_options_init(&o);
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE); /* no output folder */
    ck_assert_ptr_eq(b, (pm_batch *)0x1);                    /* *out untouched on failure */
    o.output_dir = "out";
    o.quality = 101;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
    o.quality = 0;
    o.sizes[0].width = o.sizes[0].height = 0;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
    o.sizes[0].width = 64;
    o.version = 99;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
    o.version = PM_OPTIONS_VERSION;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_OK);
    ck_assert_int_eq(pm_batch_add_input(b, ""), PM_ERR_USAGE);
    ck_assert_int_eq(pm_batch_add_input(b, "x"), PM_OK);
    pm_batch_destroy(b);
    pm_batch_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_size_table, 0, (int)(sizeof(sizes) / sizeof(sizes[0])));
    tcase_add_test(tc, test_formats);
    tcase_add_loop_test(tc, test_geometry_table, 0, (int)(sizeof(geometry) / sizeof(geometry[0])));
    tcase_add_test(tc, test_geometry_property);
    tcase_add_test(tc, test_fit_crop_color_parse);
    tcase_add_test(tc, test_keep_profile_intent_parse);
    tcase_add_test(tc, test_size_labels);
    tcase_add_test(tc, test_variant_collisions_refused);
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_batch_validation);
    tcase_add_test(tc, test_only_trusted_loaders_open);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
