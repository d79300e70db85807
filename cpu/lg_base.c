/* lg_base.c: error strings, the logger, clocks, checked size math, RNG and float16 codecs.
 * Any thread. */
#define _POSIX_C_SOURCE 200809L
#include "lg_base.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *lg_strerror(int err) {
  switch (err) {
  case LG_OK: return "ok";
  case LG_EINVAL: return "invalid argument";
  case LG_ENOMEM: return "out of memory";
  case LG_EIO: return "I/O error";
  case LG_EFORMAT: return "malformed input";
  case LG_ENOTSUP: return "not supported";
  case LG_ENOTFOUND: return "not found";
  case LG_EBACKEND: return "backend failure";
  case LG_EAGAIN: return "try again";
  case LG_EEOF: return "end of stream";
  case LG_ERANGE: return "out of range";
  default: return "unknown error";
  }
}

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static lg_log_fn log_fn;
static void *log_user;
static lg_log_level log_level = LG_LOG_INFO;

void lg_log_set_callback(lg_log_fn fn, void *user) {
  pthread_mutex_lock(&log_mu);
  log_fn = fn;
  log_user = user;
  pthread_mutex_unlock(&log_mu);
}

void lg_log_set_level(lg_log_level level) {
  log_level = level;
}
lg_log_level lg_log_get_level(void) {
  return log_level;
}

void lg_log(lg_log_level level, const char *module, const char *fmt, ...) {
  if (level > log_level) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_mu);
  if (log_fn) {
    log_fn(level, module ? module : "", msg, log_user);
  } else {
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "[%s] %s: %s\n", names[level], module ? module : "", msg);
  }
  pthread_mutex_unlock(&log_mu);
}

int lg_errf(char *err, size_t n, int code, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *lg_shape_str(int nd, const int64_t *shape, char *buf, size_t n) {
  if (!buf || !n) return "";
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < nd && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (o < n) snprintf(buf + o, n - o, "]");
  return buf;
}

double lg_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lg_mul_size(size_t a, size_t b, size_t *out) {
  if (a && b > SIZE_MAX / a) return LG_ERANGE;
  *out = a * b;
  return 0;
}

int lg_add_size(size_t a, size_t b, size_t *out) {
  if (b > SIZE_MAX - a) return LG_ERANGE;
  *out = a + b;
  return 0;
}

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void lg_rng_seed(lg_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t lg_rng_next(lg_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double lg_rng_uniform(lg_rng *r) {
  return (double)(lg_rng_next(r) >> 11) * 0x1.0p-53;
}

double lg_rng_normal(lg_rng *r) {
  double u1 = lg_rng_uniform(r), u2 = lg_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint16_t lg_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float lg_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t lg_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mant = x & 0x007fffffu;
  int32_t exp = (int32_t)((x >> 23) & 0xff);
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
  exp = exp - 127 + 15;
  if (exp >= 0x1f) return (uint16_t)(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    mant |= 0x00800000u;
    int shift = 14 - exp;
    uint32_t half = 1u << (shift - 1);
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

float lg_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3ffu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}
