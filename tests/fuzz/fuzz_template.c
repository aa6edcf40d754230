/* libFuzzer target: the output-name template checker and expander. Input: lines of template,
 * stem, dir, variant, hash (missing lines are empty). Whatever the bytes, an expanded name must
 * stay below the output root: relative, no empty, "." or ".." component, none of pixmill's own
 * names, each component at most 255 bytes; and a template the checker refuses expands to
 * nothing. Built with clang -fsanitize=fuzzer (tests/fuzz/run.sh); replay.c runs the corpus
 * under any compiler in ctest. */
#include "internal.h"

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = g_strndup((const char *)data, size); /* stops at a NUL */
    gchar **f = g_strsplit(text, "\n", 6);
    const char *part[5] = {"", "", "", "", ""};
    for (int i = 0; i < 5 && f[i]; i++)
        part[i] = f[i];
    pm__name_vars v = {
        part[1], "webp", part[3], part[2], part[4], (int)(size % 5000), (int)(size * 7 % 3000)};
    char why[256];
    unsigned tokens = 0;
    int ok = pm__template_check(part[0], &tokens, why, sizeof(why)) == PM_OK;
    char *name = pm__template_expand(part[0], &v);
    if (!ok) {
        must(name == NULL);
        must(why[0] != '\0');
    }
    if (name) {
        must(*name != '\0' && name[0] != '/' && strlen(name) < 4000);
        gchar **comps = g_strsplit(name, "/", -1);
        for (int i = 0; comps[i]; i++) {
            size_t n = strlen(comps[i]);
            must(n > 0 && n <= 255);
            must(strcmp(comps[i], ".") != 0 && strcmp(comps[i], "..") != 0);
            must(strncmp(comps[i], ".pixmill", 8) != 0);
        }
        g_strfreev(comps);
        /* the same inputs always give the same name */
        char *again = pm__template_expand(part[0], &v);
        must(again && strcmp(again, name) == 0);
        g_free(again);
    }
    g_free(name);
    g_strfreev(f);
    g_free(text);
    return 0;
}
