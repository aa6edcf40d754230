/* What a source's container declares, held to what the file holds, before any decoder sees it.
 * libpng allocates a chunk's declared length before reading it (a 46-byte PNG whose zTXt,
 * iTXt, tEXt, pCAL or sPLT chunk says 0x3FFFFFFF bytes took the engine to 1.06 GB before it
 * failed); so a PNG chunk, a RIFF (WebP) chunk or an ISOBMFF (HEIF, AVIF) box that claims more
 * bytes than are left in the file is refused here as truncated. Only headers are read (8 or 16
 * bytes a chunk or box, with pread: the file offset does not move); the format is told by its
 * magic bytes, not by the name. Formats not listed pass: JPEG's segments are 16-bit lengths,
 * and GIF's blocks 8-bit. May not touch libvips. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static int read_at(int fd, uint64_t off, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* A chunk or box type for a message: its four letters, or hex when they are not letters. */
static char *type_name(const unsigned char *t)
{
    for (int i = 0; i < 4; i++)
        if (!g_ascii_isalnum(t[i]) && t[i] != ' ')
            return g_strdup_printf("0x%08x", be32(t));
    return g_strdup_printf("'%.4s'", (const char *)t);
}

static char *too_long(const char *what, const unsigned char *type, uint64_t at, uint64_t declared,
                      uint64_t left)
{
    char *t = type_name(type);
    char *why =
        g_strdup_printf("truncated: %s %s at byte %" G_GUINT64_FORMAT " declares %" G_GUINT64_FORMAT
                        " bytes, the file has %" G_GUINT64_FORMAT " left",
                        what, t, at, declared, left);
    g_free(t);
    return why;
}

/* Every chunk from the signature to IEND (or the end of the file). */
static char *check_png(int fd, uint64_t size)
{
    uint64_t off = 8;
    unsigned char h[8];
    while (off + 8 <= size && read_at(fd, off, h, 8) == 0) {
        uint64_t len = be32(h), left = size - off - 8;
        /* the length, the type before it and the CRC after the data */
        if (len > 0x7FFFFFFFu || len + 4 > left)
            return too_long("PNG chunk", h + 4, off, len, left);
        if (memcmp(h + 4, "IEND", 4) == 0)
            break;
        off += 12 + len;
    }
    return NULL;
}

/* The RIFF size against the file, then each chunk against the RIFF. */
static char *check_riff(int fd, uint64_t size, const unsigned char *head)
{
    uint64_t riff = le32(head + 4);
    if (riff + 8 > size)
        return too_long("RIFF", head, 0, riff, size - 8);
    uint64_t end = riff + 8, off = 12;
    unsigned char h[8];
    while (off + 8 <= end && read_at(fd, off, h, 8) == 0) {
        uint64_t len = le32(h + 4), left = end - off - 8;
        if (len > left)
            return too_long("WebP chunk", h, off, len, left);
        off += 8 + len + (len & 1);
    }
    return NULL;
}

/* Boxes that hold only boxes (after a full box's 4 bytes of version and flags, or iinf's
 * entry count), walked so that a box inside is held to its parent. */
static int box_skip(const unsigned char *type, int version)
{
    static const char *plain[] = {"moov", "trak", "mdia", "minf", "stbl", "dinf",
                                  "iprp", "ipco", "grpl", "edts", "meco", "mere"};
    for (size_t i = 0; i < G_N_ELEMENTS(plain); i++)
        if (memcmp(type, plain[i], 4) == 0)
            return 0;
    if (memcmp(type, "meta", 4) == 0 || memcmp(type, "iref", 4) == 0)
        return 4;
    if (memcmp(type, "iinf", 4) == 0)
        return version == 0 ? 6 : 8;
    return -1;
}

static char *check_boxes(int fd, uint64_t off, uint64_t end, int depth)
{
    unsigned char h[16];
    while (off + 8 <= end && read_at(fd, off, h, 8) == 0) {
        uint64_t len = be32(h), hdr = 8, left = end - off;
        if (len == 1) {
            if (off + 16 > end || read_at(fd, off + 8, h + 8, 8) != 0)
                return too_long("ISOBMFF box", h + 4, off, 16, left);
            len = (uint64_t)be32(h + 8) << 32 | be32(h + 12);
            hdr = 16;
        } else if (len == 0) {
            len = left; /* to the end of its parent */
        }
        if (len > left)
            return too_long("ISOBMFF box", h + 4, off, len, left);
        if (len < hdr)
            return g_strdup_printf("malformed: ISOBMFF box at byte %" G_GUINT64_FORMAT
                                   " declares %" G_GUINT64_FORMAT " bytes, less than its header",
                                   off, len);
        unsigned char v = 0;
        if (len > hdr)
            read_at(fd, off + hdr, &v, 1);
        int skip = box_skip(h + 4, v);
        if (skip >= 0 && depth < 8 && hdr + (uint64_t)skip <= len) {
            char *why = check_boxes(fd, off + hdr + (uint64_t)skip, off + len, depth + 1);
            if (why)
                return why;
        }
        off += len;
    }
    return NULL;
}

char *pm__container_check(int fd, uint64_t size)
{
    unsigned char head[12];
    if (size < sizeof(head) || read_at(fd, 0, head, sizeof(head)) != 0)
        return NULL; /* too short to be any of these: the decoder's to refuse */
    if (memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0)
        return check_png(fd, size);
    if (memcmp(head, "RIFF", 4) == 0 && memcmp(head + 8, "WEBP", 4) == 0)
        return check_riff(fd, size, head);
    if (memcmp(head + 4, "ftyp", 4) == 0)
        return check_boxes(fd, 0, size, 0);
    return NULL;
}
