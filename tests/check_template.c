/* Output name templates (table-driven: every valid and invalid form), the start-up checks that
 * refuse two outputs with one name, and recipe files (good ones applied field by field; bad ones
 * refused naming the group and key). */
#define _GNU_SOURCE
#include "internal.h"
#include "support.h"

#include <check.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *tmpl;
    int ok;
} checks[] = {
    {"{stem}.{ext}", 1},
    {"{dir}/{stem}-{w}x{h}.{ext}", 1},
    {"{variant}/{dir}/{stem}.{hash}.{ext}", 1},
    {"img/{stem}_{variant}.{ext}", 1},
    {"{hash}.{ext}", 1},
    {"{stem}", 1},
    {"a.b/{stem}..{ext}", 1}, /* dots inside a name are fine */
    {"", 0},
    {"/abs/{stem}.{ext}", 0},
    {"a//{stem}.{ext}", 0},
    {"../{stem}.{ext}", 0},
    {"x/../{stem}.{ext}", 0},
    {"./{stem}.{ext}", 0},
    {"{stem}/.", 0},
    {"{stem}/", 0},
    {"{nope}.{ext}", 0},
    {"{stem.{ext}", 0},
    {"{stem}}.{ext}", 0},
    {"stem}.{ext}", 0},
    {"{STEM}.{ext}", 0},
    {"{}{stem}", 0},
    {"{ext}", 0}, /* no {stem} or {hash}: every source would get one name */
    {"{w}x{h}.{ext}", 0},
    {".pixmill/{stem}", 0},   /* pixmill's own state folder */
    {".pixmill-x/{stem}", 0}, /* and temp names */
};

START_TEST(test_check_table)
{
    char why[256] = "";
    unsigned tokens = 0;
    int rc = pm__template_check(checks[_i].tmpl, &tokens, why, sizeof(why));
    if (checks[_i].ok) {
        ck_assert_msg(rc == PM_OK, "'%s' refused: %s", checks[_i].tmpl, why);
    } else {
        ck_assert_msg(rc == PM_ERR_USAGE, "'%s' accepted", checks[_i].tmpl);
        ck_assert_msg(*why, "no reason given for '%s'", checks[_i].tmpl);
    }
}
END_TEST

START_TEST(test_check_too_long)
{
    char *t = g_strnfill(PM__TEMPLATE_MAX + 1, 'a');
    memcpy(t, "{stem}", 6);
    ck_assert_int_eq(pm__template_check(t, NULL, NULL, 0), PM_ERR_USAGE);
    g_free(t);
}
END_TEST

static const struct {
    const char *tmpl, *stem, *dir;
    const char *want; /* NULL: refused */
} expands[] = {
    {"{stem}.{ext}", "photo", "a/b", "a/b/photo.webp"},
    {"{stem}.{ext}", "photo", "", "photo.webp"},
    {"{dir}/{stem}.{ext}", "photo", "", "photo.webp"}, /* empty {dir} leaves no empty folder */
    {"{variant}/{dir}/{stem}-{w}x{h}.{ext}", "p", "a", "small/a/p-320x200.webp"},
    {"{variant}/{dir}/{stem}.{ext}", "p", "", "small/p.webp"},
    {"{stem}.{hash}.{ext}", "p", "", "p.0123456789.webp"},
    {"{stem}/{w}.{ext}", "..", "", NULL}, /* a source named "...png" */
    {"{stem}/{w}.{ext}", ".", "", NULL},
    {"{stem}-{w}.{ext}", "..", "", "..-320.webp"}, /* a name with dots, not a folder */
    {"x{stem}", ".pixmill", "", "x.pixmill"},
    {"{stem}", ".pixmill-1234.tmp", "", NULL}, /* never one of pixmill's own names */
    {"{stem}.{ext}", "", "d", "d/.webp"},
    {"{stem}/", "p", "", NULL},
    {"{dir}{stem}.{ext}", "p", "", "p.webp"},
};

START_TEST(test_expand_table)
{
    pm__name_vars v = {expands[_i].stem, "webp", "small", expands[_i].dir, "0123456789", 320, 200};
    char *got = pm__template_expand(expands[_i].tmpl, &v);
    if (expands[_i].want) {
        ck_assert_msg(got != NULL, "'%s' gave nothing", expands[_i].tmpl);
        ck_assert_str_eq(got, expands[_i].want);
    } else {
        ck_assert_msg(got == NULL, "'%s' with stem '%s' gave '%s'", expands[_i].tmpl,
                      expands[_i].stem, got);
    }
    g_free(got);
}
END_TEST

START_TEST(test_expand_long_component_refused)
{
    char *stem = g_strnfill(300, 'x');
    pm__name_vars v = {stem, "png", "a", "", "h", 1, 1};
    ck_assert_ptr_null(pm__template_expand("{stem}.{ext}", &v));
    g_free(stem);
}
END_TEST

/* ---- start-up checks through the public API ---- */

static void two_sizes(pm_options *o)
{
    pm_options_init(o);
    o->output_dir = "out";
    o->n_sizes = 2;
    ck_assert_int_eq(pm_size_parse("640", &o->sizes[0]), PM_OK);
    ck_assert_int_eq(pm_size_parse("320", &o->sizes[1]), PM_OK);
    o->n_formats = 2;
    o->formats[0] = PM_FORMAT_WEBP;
    o->formats[1] = PM_FORMAT_JPEG;
}

static const struct {
    const char *tmpl;
    int ok;
} collisions[] = {
    {NULL, 1}, /* default: {stem}-{variant}.{ext} */
    {"{stem}-{w}.{ext}", 1},
    {"{stem}-{variant}.{ext}", 1},
    {"{hash}.{ext}", 1},
    {"{stem}.{hash}", 1},
    {"{stem}.{ext}", 0},     /* sizes collide */
    {"{stem}-{w}.jpg", 0},   /* formats collide */
    {"{stem}-{h}.{ext}", 1}, /* 640 and 320 boxes differ in height too */
    {"{dir}/{stem}.{ext}", 0},
    {"{variant}.{ext}/{stem}", 1},
};

START_TEST(test_collisions_refused_at_start)
{
    pm_options o;
    two_sizes(&o);
    o.name_template = collisions[_i].tmpl;
    char why[256] = "";
    int rc = pm_options_check(&o, why, sizeof(why));
    if (collisions[_i].ok) {
        ck_assert_msg(rc == PM_OK, "'%s' refused: %s", collisions[_i].tmpl, why);
    } else {
        ck_assert_msg(rc == PM_ERR_USAGE, "'%s' accepted", collisions[_i].tmpl);
        ck_assert_msg(strstr(why, "same name"), "reason: %s", why);
        pm_batch *b = NULL;
        ck_assert_int_eq(pm_batch_create(&b, &o), PM_ERR_USAGE);
        ck_assert_ptr_null(b);
    }
}
END_TEST

START_TEST(test_variants_checked)
{
    pm_options o;
    pm_options_init(&o);
    o.output_dir = "out";
    o.n_variants = 2;
    for (int i = 0; i < 2; i++) {
        o.variants[i].crop = PM_INHERIT;
        ck_assert_int_eq(pm_size_parse(i ? "320" : "640", &o.variants[i].size), PM_OK);
    }
    o.variants[0].name = "a";
    o.variants[1].name = "a";
    char why[256];
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE); /* one name twice */
    o.variants[1].name = "b";
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_OK);
    o.variants[1].name = "x/y";
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE);
    o.variants[1].name = "b";
    o.variants[1].quality = 101;
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE);
    o.variants[1].quality = 0;
    o.variants[1].crop = 99;
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE);
    o.variants[1].crop = PM_INHERIT;
    o.variants[1].name_template = "{w}.{ext}";
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE);
    o.variants[1].name_template = "{stem}-b.{ext}";
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_OK);
    /* the same size and format twice with a name that only has {w}: always one name */
    o.variants[1].name_template = NULL;
    o.name_template = "{stem}-{w}.{ext}";
    ck_assert_int_eq(pm_size_parse("640", &o.variants[1].size), PM_OK);
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_ERR_USAGE);
    o.variants[1].formats[0] = PM_FORMAT_AVIF;
    o.variants[1].n_formats = 1; /* another format: another extension */
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_OK);
}
END_TEST

/* ---- recipes ---- */

static char *dir;

static void recipe_setup(void)
{
    dir = pmt_mkdtemp();
}

static void recipe_teardown(void)
{
    pmt_rmtree(dir);
    free(dir);
}

static int load(const char *text, pm_recipe **r, char *why, size_t n)
{
    char *p = pmt_path(dir, "r.ini");
    ck_assert_int_eq(pmt_write_file(p, text, strlen(text)), 0);
    int rc = pm_recipe_load(r, p, why, n);
    free(p);
    return rc;
}

START_TEST(test_recipe_applied)
{
    pm_recipe *r = NULL;
    char why[512] = "";
    int rc = load("# responsive\n[defaults]\nformat = webp, jpeg\nquality = 70\nname = "
                  "{stem}-{w}.{ext}\nprogressive = true\nkeep = icc\n\n[variant small]\nsize = "
                  "320\n\n[variant hero]\nfit = cover\nenlarge = true\nsize = 1200x600\ncrop = "
                  "attention\nformat = avif\nquality = 45\nname = hero/{stem}.{ext}\n",
                  &r, why, sizeof(why));
    ck_assert_msg(rc == PM_OK, "%s", why);
    pm_options o;
    pm_options_init(&o);
    o.output_dir = "out";
    pm_recipe_apply(r, &o);
    ck_assert_int_eq(o.n_formats, 2);
    ck_assert_int_eq(o.formats[0], PM_FORMAT_WEBP);
    ck_assert_int_eq(o.formats[1], PM_FORMAT_JPEG);
    ck_assert_int_eq(o.quality, 70);
    ck_assert_int_eq(o.progressive, 1);
    ck_assert_uint_eq(o.keep, PM_KEEP_ICC);
    ck_assert_str_eq(o.name_template, "{stem}-{w}.{ext}");
    ck_assert_int_eq(o.n_variants, 2);
    ck_assert_str_eq(o.variants[0].name, "small");
    ck_assert_int_eq(o.variants[0].size.width, 320);
    ck_assert_int_eq(o.variants[0].n_formats, 0); /* inherits */
    ck_assert_int_eq(o.variants[0].crop, PM_INHERIT);
    ck_assert_str_eq(o.variants[1].name, "hero");
    ck_assert_int_eq(o.variants[1].size.width, 1200);
    ck_assert_int_eq(o.variants[1].size.height, 600);
    ck_assert_int_eq(o.variants[1].size.fit, PM_FIT_COVER); /* fit before size in the file */
    ck_assert_int_eq(o.variants[1].size.enlarge, PM_ENLARGE_ALLOW); /* enlarge too */
    ck_assert_int_eq(o.variants[0].size.enlarge, PM_ENLARGE_NEVER);
    ck_assert_int_eq(o.variants[1].crop, PM_CROP_ATTENTION);
    ck_assert_int_eq(o.variants[1].formats[0], PM_FORMAT_AVIF);
    ck_assert_int_eq(o.variants[1].quality, 45);
    ck_assert_str_eq(o.variants[1].name_template, "hero/{stem}.{ext}");
    ck_assert_int_eq(pm_options_check(&o, why, sizeof(why)), PM_OK);
    pm_batch *b = NULL;
    ck_assert_int_eq(pm_batch_create(&b, &o), PM_OK);
    pm_recipe_free(r); /* the batch copied what it needs */
    pm_batch_destroy(b);
}
END_TEST

static const struct {
    const char *text, *needle;
} bad_recipes[] = {
    {"[defaults]\nqualty = 70\n", "qualty"},
    {"[defaults]\nquality = 700\n", "quality"},
    {"[defaults]\nquality = 7x\n", "quality"},
    {"[defaults]\nformat = webp, bmp\n", "format"},
    {"[defaults]\nname = ../{stem}\n", "name"},
    {"[defaults]\nfit = squash\n", "fit"},
    {"[defaults]\nlossless = maybe\n", "lossless"},
    {"[variant a]\nquality = 50\n", "size"},
    {"[variant a]\nsize = 0\n", "size"},
    {"[variant a]\nsize = 320\nedge = 1\n", "edge"},
    {"[variant a]\nsize = 320\nenlarge = maybe\n", "enlarge"},
    {"[variants]\nsize = 320\n", "variants"},
    {"[defaults]\nsize = 320\n[variant a]\nsize = 320\n", "either"},
    {"not an ini file\n", "r.ini"},
};

START_TEST(test_recipe_refused)
{
    pm_recipe *r = NULL;
    char why[512] = "";
    ck_assert_int_eq(load(bad_recipes[_i].text, &r, why, sizeof(why)), PM_ERR_USAGE);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(why, bad_recipes[_i].needle), "reason '%s' does not name '%s'", why,
                  bad_recipes[_i].needle);
}
END_TEST

START_TEST(test_sample_recipe_loads)
{
    const char *samples = getenv("PM_SAMPLES");
    ck_assert_ptr_nonnull(samples);
    char *p = g_build_filename(samples, "build", "web.ini", NULL);
    pm_recipe *r = NULL;
    char why[512] = "";
    ck_assert_msg(pm_recipe_load(&r, p, why, sizeof(why)) == PM_OK, "%s", why);
    pm_options o;
    pm_options_init(&o);
    o.output_dir = "out";
    pm_recipe_apply(r, &o);
    ck_assert_int_ge(o.n_variants, 2);
    ck_assert_msg(pm_options_check(&o, why, sizeof(why)) == PM_OK, "%s", why);
    pm_recipe_free(r);
    g_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("template");
    TCase *tc = tcase_create("template");
    tcase_add_loop_test(tc, test_check_table, 0, (int)G_N_ELEMENTS(checks));
    tcase_add_test(tc, test_check_too_long);
    tcase_add_loop_test(tc, test_expand_table, 0, (int)G_N_ELEMENTS(expands));
    tcase_add_test(tc, test_expand_long_component_refused);
    tcase_add_loop_test(tc, test_collisions_refused_at_start, 0, (int)G_N_ELEMENTS(collisions));
    tcase_add_test(tc, test_variants_checked);
    suite_add_tcase(s, tc);
    TCase *rc = tcase_create("recipe");
    tcase_add_checked_fixture(rc, recipe_setup, recipe_teardown);
    tcase_add_test(rc, test_recipe_applied);
    tcase_add_loop_test(rc, test_recipe_refused, 0, (int)G_N_ELEMENTS(bad_recipes));
    tcase_add_test(rc, test_sample_recipe_loads);
    suite_add_tcase(s, rc);
    return s;
}

int main(void)
{
    return pmt_run_suite(suite());
}
