/* For tests/fuzz/run.sh only: the parser fuzzers compile options.c, whose global init calls
 * into process.c (libvips). They never call it; these stand in so the target links without
 * the whole library. */
#include "internal.h"

int pm__vips_init(const char *argv0)
{
    (void)argv0;
    return PM_ERR_INIT;
}

void pm__vips_shutdown(void)
{
}
