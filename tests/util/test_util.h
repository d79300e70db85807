/* test_util.h: small helpers shared by the cmocka unit tests: deterministic random tensors
 * (lg_rng), host <-> backend tensors as f32, error measures against double references, raw
 * f32 files and log capture for asserting error messages. Every helper that can fail
 * asserts through cmocka (fail_msg), so tests stay short. Test thread only; not thread-safe.
 *
 * Error measure used by the op tests: tu_rel_err = max_i |got_i - ref_i| / max_i |ref_i|
 * (the error normalised by the largest reference magnitude, not per element, so that values
 * near zero do not dominate). */
#ifndef LG_TEST_UTIL_H
#define LG_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include <cmocka.h>

#include <stdbool.h>

#include "lg_backend.h"

/* Fills dst[n] with uniform values in [lo, hi). */
void tu_fill_uniform(lg_rng *r, float *dst, size_t n, float lo, float hi);
/* Fills dst[n] with N(0, stddev^2). */
void tu_fill_normal(lg_rng *r, float *dst, size_t n, float stddev);
/* v rounded to dtype and back to f32 (F16/BF16 round to nearest even; F32 unchanged): the
 * value a backend holds after uploading v into a tensor of that dtype. */
float tu_round(lg_dtype dt, float v);

/* New contiguous tensor on be (free with lg_tensor_free) holding host[numel] converted to dt.
 * host NULL leaves it zeroed. */
lg_tensor tu_tensor(lg_backend *be, lg_dtype dt, int ndim, const int64_t *shape, const float *host);
/* New contiguous tensor of uniform [-1,1) values. When vals is not NULL, *vals receives a
 * malloc'ed copy (numel floats) of the values as the backend holds them (rounded to dt). */
lg_tensor tu_tensor_rand(lg_backend *be, lg_rng *r, lg_dtype dt, int ndim, const int64_t *shape,
                         float **vals);
/* Any tensor (any strides/dtype) as a malloc'ed contiguous f32 array of numel floats. */
float *tu_download(const lg_tensor *t);

/* max_i |got_i - ref_i| */
double tu_max_abs_err(const float *got, const double *ref, size_t n);
/* max_i |got_i - ref_i| / max(max_i |ref_i|, 1e-30) */
double tu_rel_err(const float *got, const double *ref, size_t n);
/* Downloads t and fails the test (printing what, the error and the worst element) unless
 * tu_rel_err <= tol. Returns the error. */
double tu_assert_close(const lg_tensor *t, const double *ref, double tol, const char *what);

/* Raw little-endian f32 files (fixtures). write returns 0 or LG_EIO; read returns a malloc'ed
 * array and its length, or NULL. */
int tu_write_f32(const char *path, const float *v, size_t n);
/* Writes the tiny Wan DiT spec with its blocks replaced by `layers` blocks (f32, values from
 * the spec's mean/std and lg_rng seeded with seed) as safetensors; asserts on failure. */
void tu_write_tiny_dit(const char *path, int layers, uint64_t seed);
float *tu_read_f32(const char *path, size_t *n);

/* Log capture: while on, log lines go to a buffer instead of stderr (so expected errors do not
 * clutter the output); tu_log_text returns everything captured since it was turned on. */
void tu_log_capture(bool on);
const char *tu_log_text(void);

#endif
