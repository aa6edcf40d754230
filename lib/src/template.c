/* Output name templates: "{dir}/{stem}-{w}.{ext}". Checked once at create (syntax, tokens,
 * names that could leave the output root), expanded per output. A template without {dir}
 * names a file in the source's mirrored folder; with {dir} it names the whole path below the
 * output root. */
#include "internal.h"

#include <glib.h>
#include <stdarg.h>
#include <string.h>

static const char *const token_names[] = {"stem", "ext", "w", "h", "variant", "dir", "hash"};

/* The token starting at p ('{'): its index, and its length through '}'; -1 when unknown. */
static int token_at(const char *p, size_t *len)
{
    const char *close = strchr(p, '}');
    if (!close)
        return -1;
    size_t n = (size_t)(close - p - 1);
    for (size_t i = 0; i < G_N_ELEMENTS(token_names); i++) {
        if (strlen(token_names[i]) == n && strncmp(p + 1, token_names[i], n) == 0) {
            *len = n + 2;
            return (int)i;
        }
    }
    return -1;
}

__attribute__((format(printf, 3, 4))) static int why_fail(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && n)
        g_vsnprintf(why, (gulong)n, fmt, ap);
    va_end(ap);
    return PM_ERR_USAGE;
}

int pm__template_check(const char *tmpl, unsigned *tokens, char *why, size_t why_size)
{
    unsigned seen = 0;
    if (!tmpl || !*tmpl)
        return why_fail(why, why_size, "%sempty name template", "");
    if (strlen(tmpl) > PM__TEMPLATE_MAX)
        return why_fail(why, why_size, "name template '%s' is too long", tmpl);
    if (tmpl[0] == '/')
        return why_fail(why, why_size, "name template '%s' must be relative to the output folder",
                        tmpl);
    /* Walk component by component: literal "." and ".." components, empty ones ("a//b") and a
     * trailing '/' are refused; braces must form known tokens. */
    const char *comp = tmpl;
    for (const char *p = tmpl;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - comp);
            if (n == 0)
                return why_fail(why, why_size, "name template '%s' has an empty folder name", tmpl);
            if ((n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
                return why_fail(why, why_size,
                                "name template '%s' could leave the output folder ('.' or '..')",
                                tmpl);
            if (n >= strlen(PM__STATE_DIR) &&
                strncmp(comp, PM__STATE_DIR, strlen(PM__STATE_DIR)) == 0)
                return why_fail(why, why_size, "name template '%s' uses pixmill's own names", tmpl);
            if (*p == '\0')
                break;
            comp = p + 1;
        } else if (*p == '{') {
            size_t len;
            int t = token_at(p, &len);
            if (t < 0)
                return why_fail(why, why_size,
                                "unknown token in name template '%s' (tokens: {stem} {ext} {w} "
                                "{h} {variant} {dir} {hash})",
                                tmpl);
            seen |= 1u << t;
            p += len - 1;
        } else if (*p == '}') {
            return why_fail(why, why_size, "unmatched '}' in name template '%s'", tmpl);
        }
    }
    if (!(seen & (PM__TOKEN_STEM | PM__TOKEN_HASH)))
        return why_fail(why, why_size,
                        "name template '%s' needs {stem} or {hash}: every source would write "
                        "the same name",
                        tmpl);
    if (tokens)
        *tokens = seen;
    return PM_OK;
}

/* A part of a name below the output root: not "." or "..", not too long for a name, not one
 * of pixmill's own (temps, state). */
static int component_ok(const char *comp, size_t n)
{
    return n > 0 && n <= 255 && !(n == 1 && comp[0] == '.') &&
           !(n == 2 && comp[0] == '.' && comp[1] == '.') &&
           !(n >= strlen(PM__STATE_DIR) &&
             strncmp(comp, PM__STATE_DIR, strlen(PM__STATE_DIR)) == 0);
}

#define NAME_MAX_TOTAL 4000 /* an output's whole name below the root, in bytes */

int pm__name_is_safe(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= NAME_MAX_TOTAL || name[0] == '/')
        return 0;
    const char *comp = name;
    for (const char *p = name;; p++) {
        if (*p == '/' || *p == '\0') {
            if (!component_ok(comp, (size_t)(p - comp)))
                return 0;
            if (*p == '\0')
                return 1;
            comp = p + 1;
        }
    }
}

/* Appends one expanded component to out, refusing what could leave the root. */
static int take_component(GString *out, const char *comp, size_t n)
{
    if (n == 0)
        return 0; /* from an empty {dir}, or {stem} of a name that is all extension */
    if (!component_ok(comp, n))
        return -1;
    if (out->len)
        g_string_append_c(out, '/');
    g_string_append_len(out, comp, (gssize)n);
    return 0;
}

char *pm__template_expand(const char *tmpl, const pm__name_vars *v)
{
    GString *raw = g_string_sized_new(64);
    unsigned tokens = 0;
    if (pm__template_check(tmpl, &tokens, NULL, 0) != PM_OK) {
        g_string_free(raw, TRUE);
        return NULL;
    }
    if (!(tokens & PM__TOKEN_DIR) && v->dir && *v->dir) {
        g_string_append(raw, v->dir);
        g_string_append_c(raw, '/');
    }
    for (const char *p = tmpl; *p; p++) {
        size_t len;
        if (*p != '{') {
            g_string_append_c(raw, *p);
            continue;
        }
        int t = token_at(p, &len);
        p += len - 1;
        switch (t) {
        case 0:
            g_string_append(raw, v->stem ? v->stem : "");
            break;
        case 1:
            g_string_append(raw, v->ext ? v->ext : "");
            break;
        case 2:
            g_string_append_printf(raw, "%d", v->w);
            break;
        case 3:
            g_string_append_printf(raw, "%d", v->h);
            break;
        case 4:
            g_string_append(raw, v->variant ? v->variant : "");
            break;
        case 5:
            g_string_append(raw, v->dir ? v->dir : "");
            break;
        default:
            g_string_append(raw, v->hash ? v->hash : "");
            break;
        }
    }
    /* Re-split: a token may have brought '/' ({dir}) or made "." or ".." ({stem} of "...png"). */
    GString *out = g_string_sized_new(raw->len + 1);
    const char *comp = raw->str;
    int bad = 0;
    for (const char *p = raw->str;; p++) {
        if (*p == '/' || *p == '\0') {
            bad |= take_component(out, comp, (size_t)(p - comp));
            if (*p == '\0')
                break;
            comp = p + 1;
        }
    }
    /* The last component must be the file's own name, not folders only. */
    size_t raw_len = raw->len;
    int ends_in_slash = raw_len > 0 && raw->str[raw_len - 1] == '/';
    g_string_free(raw, TRUE);
    if (bad || ends_in_slash || out->len == 0 || out->len >= NAME_MAX_TOTAL) {
        g_string_free(out, TRUE);
        return NULL;
    }
    return g_string_free(out, FALSE);
}
