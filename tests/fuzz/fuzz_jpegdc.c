/* libFuzzer target: the progressive-JPEG DC decoder (lib/src/jpegdc.c) alone, on bytes in a
 * memfd, at libFuzzer's speed rather than a whole job's. Whatever the bytes: no crash, no read
 * or write out of bounds, no leak; a decode that succeeds has the size its header promised
 * (ceil(w / 8) x ceil(h / 8), at most 8192 a side for a 16-bit dimension) and every pixel is
 * readable. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("jpegdc", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    pm__dc_image im;
    if (pm__jpeg_dc_decode(fd, &im) == 0) {
        if (im.width < 1 || im.height < 1 || im.width > 8192 || im.height > 8192 ||
            (im.bands != 1 && im.bands != 3) || !im.pixels)
            abort();
        unsigned sum = 0;
        size_t n = (size_t)im.width * (size_t)im.height * (size_t)im.bands;
        for (size_t i = 0; i < n; i++)
            sum += im.pixels[i];
        if (sum == 0xFFFFFFFFu) /* keeps the reads */
            abort();
        pm__dc_image_free(&im);
    }
    close(fd);
    return 0;
}
