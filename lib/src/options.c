/* The parsers of user-facing values (formats, sizes and their geometry, fits, crops, colours,
 * metadata, profiles), status strings, the version, option defaults and the default job count.
 * No libvips here (vips.c starts it). */
#define _GNU_SOURCE
#include "internal.h"

#include <glib.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *pm_version_string(void)
{
    return PM_VERSION_STRING;
}

const char *pm_strerror(int status)
{
    switch (status) {
#define PM__STATUS_TEXT(name, value, text)                                                         \
    case value:                                                                                    \
        return text;
        PM_STATUS_LIST(PM__STATUS_TEXT)
#undef PM__STATUS_TEXT
    }
    return "unknown status";
}

const char *pm_status_name(int status)
{
    switch (status) {
#define PM__STATUS_NAME(name, value, text)                                                         \
    case value:                                                                                    \
        return #name;
        PM_STATUS_LIST(PM__STATUS_NAME)
#undef PM__STATUS_NAME
    }
    return "unknown status";
}

int pm_format_parse(const char *text, pm_format *out)
{
    static const struct {
        const char *name;
        pm_format format;
    } names[] = {{"jpeg", PM_FORMAT_JPEG}, {"jpg", PM_FORMAT_JPEG},  {"png", PM_FORMAT_PNG},
                 {"webp", PM_FORMAT_WEBP}, {"avif", PM_FORMAT_AVIF}, {"heif", PM_FORMAT_HEIF},
                 {"heic", PM_FORMAT_HEIF}, {"gif", PM_FORMAT_GIF},   {"tiff", PM_FORMAT_TIFF},
                 {"tif", PM_FORMAT_TIFF},  {"same", PM_FORMAT_SAME}};
    if (!text)
        return PM_ERR_USAGE;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].format;
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

const char *pm_format_extension(pm_format format)
{
    switch (format) {
    case PM_FORMAT_JPEG:
        return "jpg";
    case PM_FORMAT_PNG:
        return "png";
    case PM_FORMAT_WEBP:
        return "webp";
    case PM_FORMAT_AVIF:
        return "avif";
    case PM_FORMAT_HEIF:
        return "heic";
    case PM_FORMAT_GIF:
        return "gif";
    case PM_FORMAT_TIFF:
        return "tif";
    case PM_FORMAT_SAME:
    default:
        return "same";
    }
}

int pm_fail_on_parse(const char *text, pm_fail_on *out)
{
    static const char *const names[] = {"none", "truncated", "error", "warning"};
    if (!text)
        return PM_ERR_USAGE;
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (pm_fail_on)i;
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

/* A decimal number lo..hi, digits only; *end set past it. */
static int parse_number(const char *p, const char **end, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (uint64_t)(*q - '0');
        if (v > hi)
            return PM_ERR_USAGE;
        q++;
    }
    if (q == p || v < lo)
        return PM_ERR_USAGE;
    *end = q;
    *out = v;
    return PM_OK;
}

static int parse_dimension(const char *p, const char **end, int *out)
{
    uint64_t v;
    if (parse_number(p, end, 1, PM_SIZE_MAX, &v) != PM_OK)
        return PM_ERR_USAGE;
    *out = (int)v;
    return PM_OK;
}

int pm_size_parse(const char *text, pm_size *out)
{
    pm_size s;
    memset(&s, 0, sizeof(s));
    const char *p = text;
    uint64_t v;
    if (!p || !*p)
        return PM_ERR_USAGE;
    if (*p != 'x') {
        if (parse_number(p, &p, 1, (uint64_t)PM_SIZE_MAX * PM_SIZE_MAX, &v) != PM_OK)
            return PM_ERR_USAGE;
        if (p[0] == '%' && p[1] == '\0') {
            if (v > 1000)
                return PM_ERR_USAGE;
            s.percent = (int)v;
            s.enlarge = PM_ENLARGE_ALLOW;
            *out = s;
            return PM_OK;
        }
        if (p[0] == '@' && p[1] == '\0') {
            s.area = v;
            *out = s;
            return PM_OK;
        }
        if (v > PM_SIZE_MAX)
            return PM_ERR_USAGE;
        s.width = (int)v;
        if (*p != 'x') /* "N": an NxN box */
            s.height = s.width;
    }
    if (*p == 'x') {
        p++;
        if (*p >= '0' && *p <= '9' && parse_dimension(p, &p, &s.height) != PM_OK)
            return PM_ERR_USAGE;
        if (s.width == 0 && s.height == 0)
            return PM_ERR_USAGE;
    }
    switch (*p) { /* at most one modifier */
    case '\0':
        break;
    case '>':
        s.enlarge = PM_ENLARGE_NEVER;
        p++;
        break;
    case '<':
        s.enlarge = PM_ENLARGE_ONLY;
        p++;
        break;
    case '!': /* exactly the box, as ImageMagick: an axis may enlarge while the other shrinks */
        s.fit = PM_FIT_FILL;
        s.enlarge = PM_ENLARGE_ALLOW;
        p++;
        break;
    case '^':
        s.fit = PM_FIT_OUTSIDE;
        p++;
        break;
    default:
        return PM_ERR_USAGE;
    }
    if (*p != '\0')
        return PM_ERR_USAGE;
    *out = s;
    return PM_OK;
}

void pm_size_label(const pm_size *size, char *buf, size_t n)
{
    if (size->percent)
        snprintf(buf, n, "%dpct", size->percent);
    else if (size->area)
        snprintf(buf, n, "%llupx", (unsigned long long)size->area);
    else if (size->width && (size->height == size->width || size->height == 0))
        snprintf(buf, n, "%d", size->width);
    else if (!size->width)
        snprintf(buf, n, "x%d", size->height);
    else
        snprintf(buf, n, "%dx%d", size->width, size->height);
}

static int round_dim(double v)
{
    if (v < 1.0)
        return 1;
    if (v > (double)INT_MAX)
        return INT_MAX;
    return (int)(v + 0.5);
}

void pm_geometry_compute(const pm_size *size, pm_fit fit, int auto_swap, int src_w, int src_h,
                         pm_geometry *out)
{
    double sw = src_w > 0 ? src_w : 1, sh = src_h > 0 ? src_h : 1;
    double sx, sy;
    pm_fit f = size->fit != PM_FIT_DEFAULT ? size->fit : fit;
    int bw = size->width, bh = size->height;
    if (f == PM_FIT_DEFAULT)
        f = PM_FIT_INSIDE;
    if (size->percent) {
        sx = sy = size->percent / 100.0;
        bw = bh = 0;
    } else if (size->area) {
        sx = sy = sqrt((double)size->area / (sw * sh));
        bw = bh = 0;
    } else {
        if (auto_swap && bw && bh && bw != bh && sw != sh && ((bw > bh) != (sw > sh))) {
            int t = bw;
            bw = bh;
            bh = t;
        }
        double fx = bw ? bw / sw : -1, fy = bh ? bh / sh : -1;
        if (fx < 0)
            fx = fy;
        if (fy < 0)
            fy = fx;
        switch (f) {
        case PM_FIT_COVER:
        case PM_FIT_OUTSIDE:
            sx = sy = MAX(fx, fy);
            break;
        case PM_FIT_FILL:
            sx = fx;
            sy = fy;
            break;
        case PM_FIT_INSIDE:
        case PM_FIT_CONTAIN:
        default:
            sx = sy = MIN(fx, fy);
            break;
        }
    }
    if (f == PM_FIT_FILL && size->enlarge == PM_ENLARGE_NEVER && MAX(sx, sy) > 1.0) {
        /* the box's shape, made smaller until no axis enlarges (clamping each axis on its
         * own gave neither the box nor the source's shape: 300x200 of 17x1000 was 17x200) */
        double k = MAX(sx, sy);
        sx /= k;
        sy /= k;
    } else if (f == PM_FIT_FILL && size->enlarge == PM_ENLARGE_ONLY && MIN(sx, sy) < 1.0) {
        double k = MIN(sx, sy);
        sx /= k;
        sy /= k;
    } else if (size->enlarge == PM_ENLARGE_NEVER) {
        sx = MIN(sx, 1.0);
        sy = MIN(sy, 1.0);
    } else if (size->enlarge == PM_ENLARGE_ONLY) {
        sx = MAX(sx, 1.0);
        sy = MAX(sy, 1.0);
    }
    out->resize_width = round_dim(sw * sx);
    out->resize_height = round_dim(sh * sy);
    /* N@ is at most N pixels: rounding to nearest can pass it (257x129 at 30000@ rounded to
     * 244x123 = 30,012); take a pixel off the axis rounded up the most until it fits */
    while (size->area && (uint64_t)out->resize_width * (uint64_t)out->resize_height > size->area &&
           (out->resize_width > 1 || out->resize_height > 1)) {
        double ex = out->resize_width - sw * sx, ey = out->resize_height - sh * sy;
        if ((ex >= ey && out->resize_width > 1) || out->resize_height == 1)
            out->resize_width--;
        else
            out->resize_height--;
    }
    out->width = out->resize_width;
    out->height = out->resize_height;
    if (bw && bh && f == PM_FIT_COVER) {
        out->width = MIN(out->resize_width, bw);
        out->height = MIN(out->resize_height, bh);
    } else if (bw && bh && f == PM_FIT_CONTAIN) {
        out->width = MAX(out->resize_width, bw);
        out->height = MAX(out->resize_height, bh);
    }
}

int pm_fit_parse(const char *text, pm_fit *out)
{
    static const char *const names[] = {"inside", "cover", "contain", "fill", "outside"};
    for (int i = 0; text && i < 5; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (pm_fit)(PM_FIT_INSIDE + i);
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

int pm_crop_parse(const char *text, pm_crop *out)
{
    static const char *const names[] = {"centre",    "north",     "south",     "east",
                                        "west",      "northeast", "northwest", "southeast",
                                        "southwest", "attention", "entropy"};
    if (text && strcmp(text, "center") == 0)
        text = "centre";
    for (int i = 0; text && i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (pm_crop)i;
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pm_color_parse(const char *text, unsigned char rgba[4])
{
    static const struct {
        const char *name;
        unsigned char rgba[4];
    } named[] = {
        {"white", {255, 255, 255, 255}}, {"black", {0, 0, 0, 255}}, {"transparent", {0, 0, 0, 0}}};
    if (!text)
        return PM_ERR_USAGE;
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (strcasecmp(text, named[i].name) == 0) {
            memcpy(rgba, named[i].rgba, 4);
            return PM_OK;
        }
    }
    size_t n = strlen(text);
    if (text[0] != '#' || (n != 4 && n != 7 && n != 9))
        return PM_ERR_USAGE;
    unsigned char c[4] = {0, 0, 0, 255};
    for (size_t i = 1; i < n; i++)
        if (hex_digit(text[i]) < 0)
            return PM_ERR_USAGE;
    if (n == 4) {
        for (int i = 0; i < 3; i++)
            c[i] = (unsigned char)(hex_digit(text[1 + i]) * 17);
    } else {
        for (size_t i = 0; i < (n - 1) / 2; i++)
            c[i] = (unsigned char)(hex_digit(text[1 + 2 * i]) * 16 + hex_digit(text[2 + 2 * i]));
    }
    memcpy(rgba, c, 4);
    return PM_OK;
}

int pm_keep_parse(const char *text, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"none", PM_KEEP_NONE},
                 {"icc", PM_KEEP_ICC},
                 {"exif", PM_KEEP_EXIF},
                 {"xmp", PM_KEEP_XMP},
                 {"all", PM_KEEP_ALL}};
    if (!text || !*text)
        return PM_ERR_USAGE;
    unsigned bits = 0;
    gchar **parts = g_strsplit(text, ",", -1);
    int rc = PM_OK;
    for (int i = 0; parts[i] && rc == PM_OK; i++) {
        size_t k = 0;
        while (k < G_N_ELEMENTS(names) && strcmp(parts[i], names[k].name) != 0)
            k++;
        if (k == G_N_ELEMENTS(names))
            rc = PM_ERR_USAGE;
        else
            bits |= names[k].bits;
    }
    g_strfreev(parts);
    if (rc == PM_OK)
        *out = bits;
    return rc;
}

int pm_profile_parse(const char *text, pm_profile *out, const char **file)
{
    if (!text || !*text)
        return PM_ERR_USAGE;
    *file = NULL;
    if (strcmp(text, "srgb") == 0)
        *out = PM_PROFILE_SRGB;
    else if (strcmp(text, "p3") == 0)
        *out = PM_PROFILE_P3;
    else if (strcmp(text, "keep") == 0)
        *out = PM_PROFILE_KEEP;
    else {
        *out = PM_PROFILE_FILE;
        *file = text;
    }
    return PM_OK;
}

int pm_subsample_parse(const char *text, pm_subsample *out)
{
    static const char *const names[] = {"auto", "on", "off"};
    for (int i = 0; text && i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (pm_subsample)i;
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

int pm_intent_parse(const char *text, pm_intent *out)
{
    static const char *const names[] = {"relative", "perceptual", "saturation", "absolute"};
    for (int i = 0; text && i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (pm_intent)i;
            return PM_OK;
        }
    }
    return PM_ERR_USAGE;
}

void pm_options_init(pm_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->version = PM_OPTIONS_VERSION;
    opts->sizes[0].width = PM_DEFAULT_SIZE;
    opts->sizes[0].height = PM_DEFAULT_SIZE;
    opts->n_sizes = 1;
    opts->formats[0] = PM_FORMAT_SAME;
    opts->n_formats = 1;
    opts->fit = PM_FIT_INSIDE;
    opts->crop = PM_CROP_CENTRE;
    memset(opts->background, 255, sizeof(opts->background)); /* opaque white */
    opts->max_pixels = PM_DEFAULT_MAX_PIXELS;
    opts->fail_on = PM_FAIL_ON_ERROR;
    opts->journal_fd = -1;
    opts->lane_send_fd = -1;
    opts->lane_recv_fd = -1;
    opts->max_pages = PM_DEFAULT_MAX_PAGES;
    opts->decode_budget = PM_DEFAULT_DECODE_BUDGET;
}

/* cgroup v2 quota "max 100000" or "200000 100000": ceil(quota / period), or 0 for none. */
static int cgroup_cpus(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "re");
    if (!f)
        return 0;
    char quota[32] = "";
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || strcmp(quota, "max") == 0 || period <= 0)
        return 0;
    long q = strtol(quota, NULL, 10);
    if (q <= 0)
        return 0;
    return (int)((q + period - 1) / period);
}

int pm_default_jobs(void)
{
    int n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    int quota = cgroup_cpus();
    if (quota > 0 && quota < n)
        n = quota;
    return n > 0 ? n : 1;
}
