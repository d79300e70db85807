/* text_ctx.c: hashed prompt contexts and blending (see text_ctx.h). Any thread. */
#include "text_ctx.h"

#include "lg_base.h"

#include <ctype.h>
#include <string.h>

int lg_text_ctx_hash(const char *prompt, int text_dim, float *ctx) {
  memset(ctx, 0, sizeof(float) * (size_t)LG_TEXT_CTX_LEN * (size_t)text_dim);
  int words = 0;
  const char *p = prompt ? prompt : "";
  while (*p && words < LG_TEXT_CTX_LEN) {
    while (*p && isspace((unsigned char)*p))
      p++;
    if (!*p) break;
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the lower-cased word */
    while (*p && !isspace((unsigned char)*p)) {
      h ^= (uint64_t)(unsigned char)tolower((unsigned char)*p++);
      h *= 1099511628211ull;
    }
    lg_rng r;
    lg_rng_seed(&r, h);
    float *row = ctx + (size_t)words * (size_t)text_dim;
    for (int k = 0; k < text_dim; k++)
      row[k] = (float)lg_rng_normal(&r);
    words++;
  }
  return words;
}

void lg_text_ctx_blend(const float *from, const float *to, double a, size_t n, float *out) {
  if (!(a > 0.0)) a = 0.0;
  if (a > 1.0) a = 1.0;
  for (size_t i = 0; i < n; i++)
    out[i] = (float)((1.0 - a) * from[i] + a * to[i]);
}
