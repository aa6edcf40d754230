/* A program outside the tree, built against the installed libpixmill. */
#include <pixmill/pixmill.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    pm_options o;
    pm_options_init(&o);
    pm_size s;
    if (pm_size_parse("320x200", &s) != PM_OK || s.width != 320 || s.height != 200)
        return 1;
    if (strcmp(pm_version_string(), PM_VERSION_STRING) != 0)
        return 1;
    printf("consumer: pixmill %s, %s\n", pm_version_string(), pm_strerror(PM_ERR_BLOCKED));
    return 0;
}
