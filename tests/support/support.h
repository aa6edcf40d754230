/* Test helpers: temp folders, synthetic images, running the built binary, and decoders that
 * are not libvips (libpng, libjpeg, libwebp) to check outputs independently. */
#ifndef PM_TEST_SUPPORT_H
#define PM_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

/* The usual end-to-end fixture: a fresh temp folder with in/ made and out/ named (not made).
 * Returns 0; pmt_io_free removes the tree and frees the three strings. */
int pmt_io_make(char **tmp, char **in, char **out);
void pmt_io_free(char **tmp, char **in, char **out);

/* A fresh folder under $TMPDIR; free with pmt_rmtree + free. */
char *pmt_mkdtemp(void);
void pmt_rmtree(const char *path);
char *pmt_path(const char *dir, const char *name); /* malloc'd "dir/name" */
void pmt_mkdirs(const char *path);
int pmt_write_file(const char *path, const void *data, size_t len);
/* malloc'd contents, NULL on failure */
char *pmt_read_file(const char *path, size_t *len);
int pmt_same_file_bytes(const char *a, const char *b);

/* Needs libvips initialised (call pmt_vips_init in a checked fixture). A smooth gradient;
 * bands 3 (RGB) or 4 (RGBA, alpha 0 in the left half); the format follows the extension. */
void pmt_vips_init(void);
int pmt_write_image(const char *path, int width, int height, int bands);
/* pmt_write_image at dir/rel, making the folders; the malloc'd path, or NULL. */
char *pmt_make_image(const char *dir, const char *rel, int width, int height, int bands);
/* Encoded bytes of a small image, for fast mass-copying. */
void *pmt_encode_image(const char *suffix, int width, int height, int bands, size_t *len);

/* Independent decoders: full decode; 0 on success with dimensions and channels set. */
int pmt_png_decode(const char *path, int *w, int *h, int *channels);
int pmt_jpeg_decode(const char *path, int *w, int *h, int *channels, unsigned char *corner_rgb);
/* libjpeg's own decode at scale 1/8 (its default settings, RGB or grey out): malloc'd pixels,
 * or NULL when libjpeg fails or warns. */
unsigned char *pmt_jpeg_eighth(const char *path, int *w, int *h, int *channels);
/* The same, but a decode that only warns (corrupt data it read past) still gives its pixels:
 * NULL only when libjpeg gives up. */
unsigned char *pmt_jpeg_eighth_lenient(const char *path, int *w, int *h, int *channels);
/* libjpeg's view of a JPEG header: progressive mode and the first component's sampling. */
int pmt_jpeg_header(const char *path, int *progressive, int *h_samp, int *v_samp);
int pmt_webp_decode(const char *path, int *w, int *h, int *has_alpha);
int pmt_heif_decode(const char *path, int *w, int *h); /* AVIF and HEIC, through libheif */
int pmt_tiff_decode(const char *path, int *w, int *h); /* through libtiff */
/* Decodes a PNG with libpng into malloc'd RGBA (w*h*4 bytes). */
unsigned char *pmt_png_rgba(const char *path, int *w, int *h);
/* Mean absolute difference over the RGB channels of two RGBA buffers of n pixels. */
double pmt_mad_rgb(const unsigned char *a, const unsigned char *b, size_t n);
/* Peak signal-to-noise ratio in dB over RGB, for reporting. */
double pmt_psnr_rgb(const unsigned char *a, const unsigned char *b, size_t n);
/* Does the file contain this byte string anywhere? */
int pmt_file_contains(const char *path, const void *needle, size_t len);

/* Runs argv (argv[0] a path) with stdin from /dev/null; captures stdout and stderr into
 * malloc'd strings (may be NULL). Returns the exit status (128+sig when killed), -1 on error.
 * ru, when not NULL, receives the child's resource usage (ru_maxrss: peak RSS in KiB). */
int pmt_run(char *const argv[], char **out, char **err, struct rusage *ru);
const char *pmt_pixmill(void); /* $PIXMILL_BIN */
/* Runs pixmill with the NULL-terminated arguments after it; stderr into *err (malloc'd, may be
 * NULL to discard). Returns the exit status as pmt_run does. */
int pmt_pixmill_run(char **err, const char *first, ...);
/* The same, with stdout too (*out malloc'd; may be NULL to discard). */
int pmt_pixmill_run_out(char **out, char **err, const char *first, ...);
/* The same with a NULL-terminated argv whose argv[0] is the program to run. */
int pmt_run_argv(const char **argv, char **err);
/* Before running something under strace: LeakSanitizer cannot run under ptrace, so in a
 * sanitizer build the leak check is turned off (this forked test process's environment only). */
void pmt_no_leak_check_when_traced(void);
/* Runs pixmill as pmt_pixmill_run does, under "strace -f -e trace=CALLS -o LOG" (CALLS such as
 * "execve" or "madvise,brk"; strings shown up to 256 bytes; the leak check off as above). */
int pmt_pixmill_traced(const char *calls, const char *log, char **err, const char *first, ...);
/* Number of lines of the file at path that contain needle (0 if it cannot be read). */
int pmt_count_lines(const char *path, const char *needle);
/* Number of files whose name contains needle, below dir (recursive), outside pixmill's build
 * state (.pixmill/). */
int pmt_count_files(const char *dir, const char *needle);
/* SHA-256 (hex, malloc'd) of every path below dir with its type, link count and content (link
 * targets for symlinks), in sorted order: equal before and after a run means nothing in the
 * tree was changed, added, removed or re-linked. */
char *pmt_tree_digest(const char *dir);
/* Runs a Check suite (forking per test) and returns the process exit status: 0 if all passed. */
typedef struct Suite Suite;
int pmt_run_suite(Suite *suite);
/* Runs fn in a forked child and returns its exit status; for tests that change credentials or
 * namespaces, which must not leak into the test process. By convention 77 means "cannot run
 * here" (the caller reports a skip), 0 pass, anything else fail. */
int pmt_in_child(int (*fn)(void));
#define PMT_CANNOT_RUN 77

/* Scale for heavy tests: $PM_TEST_SCALE as a divisor (1 = full). */
int pmt_scale_divisor(void);

#endif
