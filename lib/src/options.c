/* Options, parsers of user-facing values, status strings, version, global init. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <limits.h>
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

/* A decimal number 1..PM_SIZE_MAX, digits only; *end set past it. */
static int parse_dimension(const char *p, const char **end, int *out)
{
    long v = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (*q - '0');
        if (v > PM_SIZE_MAX)
            return PM_ERR_USAGE;
        q++;
    }
    if (q == p || v < 1)
        return PM_ERR_USAGE;
    *end = q;
    *out = (int)v;
    return PM_OK;
}

int pm_size_parse(const char *text, pm_size *out)
{
    pm_size s = {0, 0};
    const char *p = text;
    if (!p || !*p)
        return PM_ERR_USAGE;
    if (*p != 'x') {
        if (parse_dimension(p, &p, &s.width) != PM_OK)
            return PM_ERR_USAGE;
        if (*p == '\0') { /* "N": an NxN box */
            s.height = s.width;
            *out = s;
            return PM_OK;
        }
    }
    if (*p != 'x')
        return PM_ERR_USAGE;
    p++;
    if (*p != '\0' && parse_dimension(p, &p, &s.height) != PM_OK)
        return PM_ERR_USAGE;
    if (*p != '\0' || (s.width == 0 && s.height == 0))
        return PM_ERR_USAGE;
    *out = s;
    return PM_OK;
}

void pm_size_label(const pm_size *size, char *buf, size_t n)
{
    if (size->width && (size->height == size->width || size->height == 0))
        snprintf(buf, n, "%d", size->width);
    else if (!size->width)
        snprintf(buf, n, "x%d", size->height);
    else
        snprintf(buf, n, "%dx%d", size->width, size->height);
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
    opts->max_pixels = PM_DEFAULT_MAX_PIXELS;
    opts->fail_on = PM_FAIL_ON_ERROR;
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

int pm_global_init(const char *argv0)
{
    return pm__vips_init(argv0);
}

void pm_global_shutdown(void)
{
    pm__vips_shutdown();
}
