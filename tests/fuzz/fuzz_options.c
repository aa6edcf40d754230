/* libFuzzer target: the user-facing parsers (size, format, fit, crop, colour, keep, profile,
 * intent, subsample, fail-on) and pm_geometry_compute. Input: a line for the parser text, then
 * bytes that pick the source size. Whatever the text: a parser that accepts gives values in
 * range, and every geometry it leads to is at least 1x1, never larger than the source when only
 * shrinking, and meets the box as its fit says. Built by tests/fuzz/run.sh; replay.c runs its
 * corpus in ctest. */
#include "pixmill/pixmill.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond)
{
    if (!cond)
        abort();
}

static void check_geometry(const pm_size *z, int sw, int sh)
{
    for (int fit = PM_FIT_INSIDE; fit <= PM_FIT_LAST; fit++) {
        for (int swap = 0; swap < 2; swap++) {
            pm_geometry g;
            pm_geometry_compute(z, (pm_fit)fit, swap, sw, sh, &g);
            must(g.width >= 1 && g.height >= 1 && g.resize_width >= 1 && g.resize_height >= 1);
            pm_fit f = z->fit != PM_FIT_DEFAULT ? z->fit : (pm_fit)fit;
            /* only shrink: never larger than the source */
            if (z->enlarge == PM_ENLARGE_NEVER)
                must(g.resize_width <= sw && g.resize_height <= sh);
            /* a cover crop and a contain pad meet the box exactly when both sides are given */
            if (!swap && z->width && z->height && !z->percent && !z->area) {
                if (f == PM_FIT_COVER)
                    must(g.width <= z->width && g.height <= z->height);
                if (f == PM_FIT_CONTAIN)
                    must(g.width >= z->width && g.height >= z->height);
                if (f == PM_FIT_INSIDE && z->enlarge == PM_ENLARGE_NEVER)
                    must(g.width <= z->width && g.height <= z->height);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    while (n < size && data[n] != '\n' && n < 256)
        n++;
    char text[257];
    memcpy(text, data, n);
    text[n] = '\0';
    uint32_t a = 0, b = 0;
    for (size_t i = n + 1; i < size && i < n + 9; i++) {
        if (i < n + 5)
            a = (a << 8) | data[i];
        else
            b = (b << 8) | data[i];
    }
    int sw = (int)(a % 100000) + 1, sh = (int)(b % 100000) + 1;

    pm_size z;
    memset(&z, 0x5a, sizeof(z));
    if (pm_size_parse(text, &z) == PM_OK) {
        must(z.width >= 0 && z.width <= PM_SIZE_MAX && z.height >= 0 && z.height <= PM_SIZE_MAX);
        must(z.percent >= 0 && z.percent <= 1000);
        must(z.percent || z.area || z.width || z.height);
        char label[32];
        pm_size_label(&z, label, sizeof(label));
        must(strlen(label) > 0 && strlen(label) < sizeof(label));
        check_geometry(&z, sw, sh);
    }
    pm_format f;
    if (pm_format_parse(text, &f) == PM_OK)
        must((unsigned)f <= PM_FORMAT_LAST && pm_format_extension(f)[0]);
    pm_fit fit;
    if (pm_fit_parse(text, &fit) == PM_OK)
        must((unsigned)fit <= PM_FIT_LAST);
    pm_crop crop;
    if (pm_crop_parse(text, &crop) == PM_OK)
        must((unsigned)crop <= PM_CROP_LAST);
    unsigned char rgba[4];
    (void)pm_color_parse(text, rgba);
    unsigned keep;
    if (pm_keep_parse(text, &keep) == PM_OK)
        must((keep & ~PM_KEEP_ALL) == 0);
    pm_profile profile;
    const char *file = NULL;
    if (pm_profile_parse(text, &profile, &file) == PM_OK)
        must(profile != PM_PROFILE_FILE || (file && *file));
    pm_intent intent;
    (void)pm_intent_parse(text, &intent);
    pm_subsample sub;
    (void)pm_subsample_parse(text, &sub);
    pm_fail_on fo;
    (void)pm_fail_on_parse(text, &fo);
    return 0;
}
