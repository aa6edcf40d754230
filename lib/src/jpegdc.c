/* A progressive JPEG at an eighth of its size, from the DC coefficients alone.
 *
 * libjpeg-turbo keeps every coefficient of a progressive image until its last scan, whatever
 * the scale asked for: 72 MB for a 5640x3172 photo at 4:2:2, to make a 256-pixel thumbnail.
 * At 1/8 each 8x8 block becomes one pixel, its DC coefficient (what libjpeg's 1x1 inverse DCT
 * computes), and a progressive file sends every DC coefficient in its first scans. So this
 * reads the DC scans, skips the AC scans' bytes without decoding them, and keeps two bytes a
 * block: about 1 MB for that photo, and a fraction of the time.
 *
 * Strict by design: anything it does not expect (another frame type, arithmetic coding, 12-bit
 * samples, CMYK or RGB components, a bad table, a scan that does not end where it should, a
 * missing EOI) makes it decline with no error, and the caller decodes the file through libvips
 * as before, so every bad or unusual file gets the same outcome and message as it did. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RD_BUF 65536

typedef struct reader {
    int fd;
    off_t base; /* file offset of buf[0] */
    size_t len, at;
    unsigned char buf[RD_BUF];
} reader;

static int refill(reader *r)
{
    r->base += (off_t)r->len;
    r->len = r->at = 0;
    ssize_t n;
    do
        n = pread(r->fd, r->buf, RD_BUF, r->base);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    r->len = (size_t)n;
    return 0;
}

/* The next byte, or -1 at the end of the file or on a read error. */
static inline int next_byte(reader *r)
{
    if (r->at == r->len && refill(r) != 0)
        return -1;
    return r->buf[r->at++];
}

static int read_u16(reader *r)
{
    int hi = next_byte(r), lo = next_byte(r);
    return hi < 0 || lo < 0 ? -1 : hi << 8 | lo;
}

static int skip_bytes(reader *r, size_t n)
{
    while (n > 0) {
        if (r->at == r->len && refill(r) != 0)
            return -1;
        size_t step = MIN(n, r->len - r->at);
        r->at += step;
        n -= step;
    }
    return 0;
}

/* A Huffman table in canonical form (ITU T.81 F.2.2.3). */
typedef struct huff {
    int defined;
    int32_t maxcode[17]; /* largest code of each length, -1 when none */
    int valptr[17];      /* index in vals of the first code of each length */
    int32_t mincode[17];
    unsigned char vals[256];
} huff;

typedef struct comp {
    int id, h, v, tq;
    int bw, bh;       /* blocks across and down that carry the image (libjpeg's width_in_blocks) */
    int stride, rows; /* the grid stored: whole MCUs */
    int dc_bits;      /* the successive-approximation bit reached so far, -1 before any */
    int q0;           /* the DC quantiser latched at the component's first scan, -1 before */
    int16_t *dc;
} comp;

typedef struct dc_state {
    reader r;
    int width, height, ncomp, hmax, vmax, mcux, mcuy, restart;
    int have_frame, adobe, adobe_transform, jfif;
    int scanned, ycc; /* the colour decision, frozen at the first SOS as libjpeg does */
    int qt[4][2];     /* [table] = {defined, DC value} */
    huff dc_tab[4];
    int ac_defined[4];
    comp c[3];
    /* the entropy-coded segment's bits */
    uint32_t acc;
    int nbits;
} dc_state;

/* T.81 C: the code lengths give the codes; refuse a set that overflows its lengths, as
 * libjpeg's jpeg_make_d_derived_tbl() does ("Bogus Huffman table definition"). */
static int huff_build(huff *t, const unsigned char counts[16], int total, int dc)
{
    int32_t code = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        t->valptr[len] = k;
        t->mincode[len] = code;
        code += counts[len - 1];
        k += counts[len - 1];
        if (code >= (1 << len))
            return -1; /* past the length, or the all-ones code, which no table may use */
        t->maxcode[len] = counts[len - 1] ? code - 1 : -1;
        code <<= 1;
    }
    for (int i = 0; dc && i < total; i++)
        if (t->vals[i] > 15)
            return -1;
    t->defined = 1;
    return 0;
}

static int read_dht(dc_state *d, int len)
{
    len -= 2;
    while (len > 0) {
        int tcth = next_byte(&d->r);
        if (tcth < 0 || len < 17)
            return -1;
        int tc = tcth >> 4, th = tcth & 15;
        if (tc > 1 || th > 3)
            return -1;
        unsigned char counts[16];
        int total = 0;
        for (int i = 0; i < 16; i++) {
            int b = next_byte(&d->r);
            if (b < 0)
                return -1;
            counts[i] = (unsigned char)b;
            total += b;
        }
        len -= 17;
        if (total > 256 || total > len)
            return -1;
        huff t = {0};
        for (int i = 0; i < total; i++) {
            int b = next_byte(&d->r);
            if (b < 0)
                return -1;
            t.vals[i] = (unsigned char)b;
        }
        len -= total;
        if (huff_build(&t, counts, total, tc == 0) != 0)
            return -1;
        if (tc == 0)
            d->dc_tab[th] = t;
        else
            d->ac_defined[th] = 1;
    }
    return len == 0 ? 0 : -1;
}

static int read_dqt(dc_state *d, int len)
{
    len -= 2;
    while (len > 0) {
        int pqtq = next_byte(&d->r);
        if (pqtq < 0)
            return -1;
        int pq = pqtq >> 4, tq = pqtq & 15, n = pq ? 128 : 64;
        if (pq > 1 || tq > 3 || len < 1 + n)
            return -1;
        int first = pq ? read_u16(&d->r) : next_byte(&d->r);
        if (first < 0 || skip_bytes(&d->r, (size_t)(n - (pq ? 2 : 1))) != 0)
            return -1;
        d->qt[tq][0] = 1;
        d->qt[tq][1] = first; /* zigzag position 0 is DC */
        len -= 1 + n;
    }
    return len == 0 ? 0 : -1;
}

static int read_sof2(dc_state *d, int len)
{
    if (d->have_frame || len < 8)
        return -1;
    int precision = next_byte(&d->r), h = read_u16(&d->r), w = read_u16(&d->r),
        n = next_byte(&d->r);
    if (precision != 8 || h <= 0 || w <= 0 || (n != 1 && n != 3) || len != 8 + 3 * n)
        return -1; /* h == 0 waits for a DNL marker: libjpeg's business */
    d->width = w, d->height = h, d->ncomp = n, d->hmax = d->vmax = 1;
    for (int i = 0; i < n; i++) {
        comp *c = &d->c[i];
        int id = next_byte(&d->r), hv = next_byte(&d->r), tq = next_byte(&d->r);
        if (id < 0 || hv < 0 || tq < 0 || tq > 3)
            return -1;
        c->id = id, c->h = hv >> 4, c->v = hv & 15, c->tq = tq;
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return -1;
        for (int j = 0; j < i; j++)
            if (d->c[j].id == id)
                return -1;
        d->hmax = MAX(d->hmax, c->h);
        d->vmax = MAX(d->vmax, c->v);
    }
    d->mcux = (w + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (h + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < n; i++) {
        comp *c = &d->c[i];
        c->bw = (int)(((int64_t)w * c->h + 8 * d->hmax - 1) / (8 * d->hmax));
        c->bh = (int)(((int64_t)h * c->v + 8 * d->vmax - 1) / (8 * d->vmax));
        c->stride = d->mcux * c->h;
        c->rows = d->mcuy * c->v;
        c->dc_bits = -1;
        c->q0 = -1;
        c->dc = calloc((size_t)c->stride * (size_t)c->rows, sizeof(int16_t));
        if (!c->dc)
            return -1;
    }
    d->have_frame = 1;
    return 0;
}

/* One bit of entropy-coded data; -1 where a marker or the file's end comes first. */
static inline int get_bit(dc_state *d)
{
    if (d->nbits == 0) {
        int b = next_byte(&d->r);
        if (b < 0)
            return -1;
        if (b == 0xFF) {
            int z = next_byte(&d->r);
            if (z != 0)
                return -1; /* a marker inside the data: short or corrupt, let libjpeg judge */
        }
        d->acc = (uint32_t)b;
        d->nbits = 8;
    }
    d->nbits--;
    return (int)(d->acc >> d->nbits) & 1;
}

static int get_bits(dc_state *d, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        int b = get_bit(d);
        if (b < 0)
            return -1;
        v = v << 1 | b;
    }
    *out = v;
    return 0;
}

static int decode_symbol(dc_state *d, const huff *t)
{
    int32_t code = 0;
    for (int len = 1; len <= 16; len++) {
        int b = get_bit(d);
        if (b < 0)
            return -1;
        code = code << 1 | b;
        if (code <= t->maxcode[len])
            return t->vals[t->valptr[len] + code - t->mincode[len]];
    }
    return -1; /* no such code */
}

/* The marker after a restart interval or a scan: only fill bytes (0xFF) before it. Returns
 * the marker's code, or -1. */
static int marker_after_data(dc_state *d)
{
    d->nbits = 0;
    int b = next_byte(&d->r);
    if (b != 0xFF)
        return -1;
    while ((b = next_byte(&d->r)) == 0xFF)
        ;
    return b <= 0 ? -1 : b;
}

/* An AC scan's data, not decoded: the bytes up to the next marker that is not a restart. */
static int skip_scan_data(dc_state *d)
{
    reader *r = &d->r;
    for (;;) {
        if (r->at == r->len && refill(r) != 0)
            return -1;
        unsigned char *ff = memchr(r->buf + r->at, 0xFF, r->len - r->at);
        if (!ff) {
            r->at = r->len;
            continue;
        }
        r->at = (size_t)(ff - r->buf) + 1;
        int b;
        while ((b = next_byte(r)) == 0xFF)
            ;
        if (b < 0)
            return -1;
        if (b != 0 && (b < 0xD0 || b > 0xD7))
            return b;
    }
}

/* One block's DC in a DC scan: the first pass (a difference from the last block of the
 * component) or a refinement (one more bit). */
static int dc_block(dc_state *d, int *pred, const huff *t, int ah, int al, int16_t *block)
{
    if (ah) {
        int bit = get_bit(d);
        if (bit < 0)
            return -1;
        if (bit)
            *block = (int16_t)(*block | (1 << al));
        return 0;
    }
    int s = decode_symbol(d, t), diff = 0;
    if (s < 0)
        return -1;
    if (s) {
        if (get_bits(d, s, &diff) != 0)
            return -1;
        if (diff < (1 << (s - 1)))
            diff -= (1 << s) - 1;
    }
    int v = *pred + diff;
    if (v < -32768 || v > 32767 || v * (1 << al) < -32768 || v * (1 << al) > 32767)
        return -1; /* libjpeg would wrap it: not a photo's DC */
    *pred = v;
    *block = (int16_t)(v * (1 << al));
    return 0;
}

/* The restart marker due after an interval. */
static int restart_marker(dc_state *d, int n, int pred[3])
{
    if (marker_after_data(d) != 0xD0 + (n & 7))
        return -1;
    pred[0] = pred[1] = pred[2] = 0;
    return 0;
}

/* A scan's header, then its data: decoded for DC, skipped for AC. Returns the marker after
 * it, or -1. */
static int read_sos(dc_state *d, int len)
{
    if (!d->have_frame || len < 6)
        return -1;
    int ns = next_byte(&d->r);
    if (ns < 1 || ns > d->ncomp || len != 6 + 2 * ns)
        return -1;
    comp *sc[3];
    int td[3], ta[3], last = -1;
    for (int i = 0; i < ns; i++) {
        int id = next_byte(&d->r), tt = next_byte(&d->r);
        if (id < 0 || tt < 0)
            return -1;
        sc[i] = NULL;
        int at = -1;
        for (int j = 0; j < d->ncomp; j++)
            if (d->c[j].id == id)
                sc[i] = &d->c[j], at = j;
        /* a scan lists its components in frame order (T.81 B.2.3), each once: libjpeg
         * refuses a file that does not */
        if (!sc[i] || at <= last)
            return -1;
        last = at;
        td[i] = tt >> 4, ta[i] = tt & 15;
        if (td[i] > 3 || ta[i] > 3)
            return -1;
    }
    int blocks = 0; /* in an MCU: libjpeg refuses more than 10 */
    for (int i = 0; i < ns && ns > 1; i++)
        blocks += sc[i]->h * sc[i]->v;
    if (blocks > 10)
        return -1;
    int ss = next_byte(&d->r), se = next_byte(&d->r), a = next_byte(&d->r);
    if (ss < 0 || se < 0 || a < 0)
        return -1;
    int ah = a >> 4, al = a & 15;
    /* the checks libjpeg's progressive decoder makes at the start of a scan */
    if (ss == 0 ? se != 0 : (se < ss || se > 63 || ns != 1))
        return -1;
    if (ah > 13 || al > 13 || (ah != 0 && al != ah - 1))
        return -1;
    for (int i = 0; i < ns; i++) {
        comp *c = sc[i];
        if (c->q0 < 0) { /* latched at the component's first scan, as libjpeg does */
            if (!d->qt[c->tq][0])
                return -1;
            c->q0 = d->qt[c->tq][1];
        }
        if (ss == 0) {
            if (ah == 0 ? c->dc_bits != -1 || !d->dc_tab[td[i]].defined : c->dc_bits != ah)
                return -1;
            c->dc_bits = al;
        } else if (c->dc_bits < 0 || !d->ac_defined[ta[i]]) {
            return -1;
        }
    }
    if (ss != 0)
        return skip_scan_data(d);

    int pred[3] = {0, 0, 0}, n_rst = 0, mcu = 0;
    d->nbits = 0;
    if (ns == 1) { /* one block an MCU, over the blocks that carry the image */
        comp *c = sc[0];
        for (int by = 0; by < c->bh; by++)
            for (int bx = 0; bx < c->bw; bx++, mcu++) {
                if (d->restart && mcu && mcu % d->restart == 0 && restart_marker(d, n_rst++, pred))
                    return -1;
                if (dc_block(d, &pred[0], &d->dc_tab[td[0]], ah, al,
                             &c->dc[(size_t)by * (size_t)c->stride + (size_t)bx]) != 0)
                    return -1;
            }
    } else {
        for (int my = 0; my < d->mcuy; my++)
            for (int mx = 0; mx < d->mcux; mx++, mcu++) {
                if (d->restart && mcu && mcu % d->restart == 0 && restart_marker(d, n_rst++, pred))
                    return -1;
                for (int i = 0; i < ns; i++) {
                    comp *c = sc[i];
                    for (int y = 0; y < c->v; y++)
                        for (int x = 0; x < c->h; x++) {
                            size_t at = (size_t)(my * c->v + y) * (size_t)c->stride +
                                        (size_t)(mx * c->h + x);
                            if (dc_block(d, &pred[i], &d->dc_tab[td[i]], ah, al, &c->dc[at]) != 0)
                                return -1;
                        }
                }
            }
    }
    return marker_after_data(d);
}

/* The sample libjpeg's 1x1 inverse DCT makes of a block: DC dequantised, divided by 8 with
 * rounding, level-shifted and clamped. */
static inline unsigned char dc_sample(int dc, int q0)
{
    int v = ((dc * q0 + 4) >> 3) + 128;
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* A component's samples at the output's size: at full resolution straight from its blocks,
 * subsampled ones interpolated linearly between block centres (libjpeg's "fancy"
 * upsampling does the same for 2:1). */
static int component_plane(const dc_state *d, const comp *c, int ow, int oh, unsigned char *out)
{
    int fx = d->hmax / c->h, fy = d->vmax / c->v;
    if (d->hmax % c->h || d->vmax % c->v)
        return -1; /* 3:2 and the like: libjpeg's own business */
    if (fx == 1 && fy == 1) {
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                out[(size_t)y * (size_t)ow + (size_t)x] =
                    dc_sample(c->dc[(size_t)y * (size_t)c->stride + (size_t)x], c->q0);
        return 0;
    }
    unsigned char *src = malloc((size_t)c->bw * (size_t)c->bh);
    if (!src)
        return -1;
    for (int y = 0; y < c->bh; y++)
        for (int x = 0; x < c->bw; x++)
            src[(size_t)y * (size_t)c->bw + (size_t)x] =
                dc_sample(c->dc[(size_t)y * (size_t)c->stride + (size_t)x], c->q0);
    for (int y = 0; y < oh; y++) {
        /* the source position of this row's centre, in 1/256ths of a block */
        int sy = ((2 * y + 1) * 256 / fy - 256) / 2, y0 = sy < 0 ? 0 : sy >> 8;
        int wy = sy < 0 ? 0 : sy & 255, y1 = MIN(y0 + 1, c->bh - 1);
        y0 = MIN(y0, c->bh - 1);
        for (int x = 0; x < ow; x++) {
            int sx = ((2 * x + 1) * 256 / fx - 256) / 2, x0 = sx < 0 ? 0 : sx >> 8;
            int wx = sx < 0 ? 0 : sx & 255, x1 = MIN(x0 + 1, c->bw - 1);
            x0 = MIN(x0, c->bw - 1);
            const unsigned char *r0 = src + (size_t)y0 * (size_t)c->bw,
                                *r1 = src + (size_t)y1 * (size_t)c->bw;
            int top = r0[x0] * (256 - wx) + r0[x1] * wx, bot = r1[x0] * (256 - wx) + r1[x1] * wx;
            out[(size_t)y * (size_t)ow + (size_t)x] =
                (unsigned char)((top * (256 - wy) + bot * wy + 32768) >> 16);
        }
    }
    free(src);
    return 0;
}

static inline unsigned char clamp255(int v)
{
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* YCbCr to RGB with JFIF's coefficients (T.871), in 16-bit fixed point as libjpeg does. */
static void ycc_to_rgb(const unsigned char *y, const unsigned char *cb, const unsigned char *cr,
                       size_t n, unsigned char *rgb)
{
    const int one_half = 1 << 15;
    const int cr_r = 91881, cb_b = 116130, cb_g = -22554, cr_g = -46802;
    for (size_t i = 0; i < n; i++) {
        int yy = y[i], u = cb[i] - 128, v = cr[i] - 128;
        rgb[3 * i] = clamp255(yy + ((cr_r * v + one_half) >> 16));
        rgb[3 * i + 1] = clamp255(yy + ((cb_g * u + cr_g * v + one_half) >> 16));
        rgb[3 * i + 2] = clamp255(yy + ((cb_b * u + one_half) >> 16));
    }
}

static int make_pixels(const dc_state *d, pm__dc_image *out)
{
    int ow = (d->width + 7) / 8, oh = (d->height + 7) / 8;
    size_t n = (size_t)ow * (size_t)oh;
    unsigned char *planes = malloc(n * (size_t)d->ncomp);
    if (!planes)
        return -1;
    for (int i = 0; i < d->ncomp; i++)
        if (d->c[i].dc_bits < 0 || component_plane(d, &d->c[i], ow, oh, planes + n * (size_t)i)) {
            free(planes);
            return -1;
        }
    if (d->ncomp == 1) {
        out->pixels = planes;
    } else {
        out->pixels = malloc(n * 3);
        if (out->pixels)
            ycc_to_rgb(planes, planes + n, planes + 2 * n, n, out->pixels);
        free(planes);
        if (!out->pixels)
            return -1;
    }
    out->width = ow, out->height = oh, out->bands = d->ncomp;
    return 0;
}

/* Three components are YCbCr unless the file says RGB, as libjpeg reads them: a JFIF marker
 * means YCbCr; else an Adobe marker's transform 0 means RGB; else component ids R, G, B do. */
static int is_ycc(const dc_state *d)
{
    if (d->ncomp == 1 || d->jfif)
        return 1;
    if (d->adobe)
        return d->adobe_transform == 1;
    return !(d->c[0].id == 'R' && d->c[1].id == 'G' && d->c[2].id == 'B');
}

/* APP0 (JFIF, when long enough for libjpeg to count it) and APP14 (Adobe): what says how to
 * read three components. */
static int read_app(dc_state *d, int m, int len)
{
    unsigned char head[12] = {0};
    int want = m == 0xE0 ? 5 : m == 0xEE ? 12 : 0, got = 0;
    for (; got < want && got < len - 2; got++) {
        int b = next_byte(&d->r);
        if (b < 0)
            return -1;
        head[got] = (unsigned char)b;
    }
    if (m == 0xE0 && got == 5 && len - 2 >= 14 && memcmp(head, "JFIF", 5) == 0)
        d->jfif = 1;
    if (m == 0xEE && got == 12 && memcmp(head, "Adobe", 5) == 0)
        d->adobe = 1, d->adobe_transform = head[11];
    return skip_bytes(&d->r, (size_t)(len - 2 - got));
}

/* The marker at the reader: 0xFF (any number of them), then the code. */
static int next_marker(dc_state *d)
{
    if (next_byte(&d->r) != 0xFF)
        return -1; /* bytes where a marker should be: libjpeg warns and skips them */
    int b;
    while ((b = next_byte(&d->r)) == 0xFF)
        ;
    return b <= 0 ? -1 : b;
}

static int run(dc_state *d, pm__dc_image *out)
{
    if (next_byte(&d->r) != 0xFF || next_byte(&d->r) != 0xD8)
        return -1;
    int m = next_marker(d);
    for (;;) {
        if (m < 0)
            return -1;
        if (m == 0xD9) /* EOI */
            return d->have_frame && d->scanned && d->ycc ? make_pixels(d, out) : -1;
        int len = read_u16(&d->r);
        if (len < 2)
            return -1;
        int rc;
        switch (m) {
        case 0xC2: /* SOF2: progressive, Huffman-coded */
            rc = read_sof2(d, len);
            break;
        case 0xC4:
            rc = read_dht(d, len);
            break;
        case 0xDB:
            rc = read_dqt(d, len);
            break;
        case 0xDD: /* DRI */
            rc = len == 4 && (d->restart = read_u16(&d->r)) >= 0 ? 0 : -1;
            break;
        case 0xDA:
            if (!d->scanned && d->have_frame) { /* later APP0/APP14 markers change nothing */
                d->scanned = 1;
                d->ycc = is_ycc(d);
            }
            m = read_sos(d, len);
            continue;
        case 0xFE:
            rc = skip_bytes(&d->r, (size_t)(len - 2));
            break;
        default:
            rc = m >= 0xE0 && m <= 0xEF ? read_app(d, m, len) : -1; /* any other frame type too */
            break;
        }
        if (rc != 0)
            return -1;
        m = next_marker(d);
    }
}

int pm__jpeg_dc_decode(int fd, pm__dc_image *out)
{
    memset(out, 0, sizeof(*out));
    dc_state *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->r.fd = fd;
    int rc = run(d, out);
    for (int i = 0; i < 3; i++)
        free(d->c[i].dc);
    free(d);
    if (rc != 0)
        pm__dc_image_free(out);
    return rc;
}

void pm__dc_image_free(pm__dc_image *img)
{
    free(img->pixels);
    img->pixels = NULL;
}
