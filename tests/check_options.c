/* Option values: geometry, formats, fail-on, status strings, and batch option validation. */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <string.h>

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
    pm_size s = {-7, -7};
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

START_TEST(test_size_labels)
{
    static const struct {
        const char *text, *label;
    } t[] = {{"256", "256"}, {"320x", "320"}, {"x600", "x600"}, {"800x600", "800x600"}};
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
    tcase_add_test(tc, test_size_labels);
    tcase_add_test(tc, test_variant_collisions_refused);
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_batch_validation);
    suite_add_tcase(s, tc);
    return pmt_run_suite(s);
}
