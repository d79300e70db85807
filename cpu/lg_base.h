/* lg_base.h: error codes, logging and small helpers shared by every livegen library.
 * Owned by cpu/ because cpu/ is the lowest library: everything links it.
 * Thread-safe: lg_log may be called from any thread. */
#ifndef LG_BASE_H
#define LG_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: functions return 0 or one of these (negative). Constructors return NULL. */
enum {
  LG_OK = 0,
  LG_EINVAL = -1,    /* bad argument or shape */
  LG_ENOMEM = -2,    /* allocation failed */
  LG_EIO = -3,       /* file or socket I/O failed */
  LG_EFORMAT = -4,   /* malformed input: file, message, config */
  LG_ENOTSUP = -5,   /* valid request this build/backend cannot do */
  LG_ENOTFOUND = -6, /* missing tensor, key, file */
  LG_EBACKEND = -7,  /* CUDA/cuBLAS/cuDNN/NCCL failure */
  LG_EAGAIN = -8,    /* try again later (queue full/empty) */
  LG_EEOF = -9,      /* end of stream */
  LG_ERANGE = -10,   /* value out of range */
};

/* Human-readable name of an error code (static string). */
const char *lg_strerror(int err);

typedef enum {
  LG_LOG_ERROR = 0,
  LG_LOG_WARN = 1,
  LG_LOG_INFO = 2,
  LG_LOG_DEBUG = 3,
} lg_log_level;

/* Log sink: receives one formatted line without trailing newline. */
typedef void (*lg_log_fn)(lg_log_level level, const char *module, const char *msg, void *user);

/* Sets the sink (NULL restores the default stderr sink) and the maximum level printed. */
void lg_log_set_callback(lg_log_fn fn, void *user);
void lg_log_set_level(lg_log_level level);
lg_log_level lg_log_get_level(void);

void lg_log(lg_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LG_ERR(mod, ...) lg_log(LG_LOG_ERROR, mod, __VA_ARGS__)
#define LG_WARN(mod, ...) lg_log(LG_LOG_WARN, mod, __VA_ARGS__)
#define LG_INFO(mod, ...) lg_log(LG_LOG_INFO, mod, __VA_ARGS__)
#define LG_DBG(mod, ...) lg_log(LG_LOG_DEBUG, mod, __VA_ARGS__)

/* Goto-style checks: log the failing statement with file and line, set err, goto fail. */
#define LG_CHECK(cond, code, mod, ...)                                                             \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      lg_log(LG_LOG_ERROR, mod, __VA_ARGS__);                                                      \
      err = (code);                                                                                \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define LG_TRY(expr)                                                                               \
  do {                                                                                             \
    int lg_try_rc_ = (expr);                                                                       \
    if (lg_try_rc_ < 0) {                                                                          \
      err = lg_try_rc_;                                                                            \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

/* Writes a formatted message into a caller's error buffer (err may be NULL) and returns code:
 * `return lg_errf(err, n, LG_EINVAL, "tensor %s ...", name);`. */
int lg_errf(char *err, size_t n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "[a,b,c]" for a shape of nd dims into buf (n bytes); returns buf. */
const char *lg_shape_str(int nd, const int64_t *shape, char *buf, size_t n);

/* Monotonic clock in seconds. */
double lg_now(void);

/* Overflow-checked size arithmetic: return 0 on success, LG_ERANGE on overflow. */
int lg_mul_size(size_t a, size_t b, size_t *out);
int lg_add_size(size_t a, size_t b, size_t *out);

/* Deterministic RNG (splitmix64 seeded xoshiro256**), used for weights, noise and tests so
 * that the same seed gives the same numbers on every machine. */
typedef struct lg_rng {
  uint64_t s[4];
} lg_rng;
void lg_rng_seed(lg_rng *r, uint64_t seed);
uint64_t lg_rng_next(lg_rng *r);
double lg_rng_uniform(lg_rng *r); /* [0,1) */
double lg_rng_normal(lg_rng *r);  /* N(0,1), Box-Muller */

/* bf16/f16 <-> f32 (round to nearest even). */
uint16_t lg_f32_to_bf16(float f);
float lg_bf16_to_f32(uint16_t h);
uint16_t lg_f32_to_f16(float f);
float lg_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
