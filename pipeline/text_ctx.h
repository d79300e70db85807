/* text_ctx.h: prompt -> DiT text context [512, text_dim] (host f32), and the linear blend of
 * two contexts. With no text encoder (model.text_encoder "none") the context is derived from
 * the prompt deterministically: each word (split on whitespace, lower-cased) is hashed (FNV-1a
 * 64) into an lg_rng seed; row i (i < 512) is that word's N(0,1) vector of text_dim draws scaled
 * (unit variance, one row per word, at most 512); rows past the word count are zero, as
 * T5 output is past the prompt. It lets the tiny model react to prompts without a text
 * encoder; it carries no meaning. With a text encoder configured the engine uses umT5
 * (models/umt5.h) instead.
 * Threads: pure functions, any thread. */
#ifndef LG_TEXT_CTX_H
#define LG_TEXT_CTX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_TEXT_CTX_LEN 512

/* ctx [512*text_dim] from the prompt (hashed words). Returns the number of words used. */
int lg_text_ctx_hash(const char *prompt, int text_dim, float *ctx);
/* out = (1-a)*from + a*to, n floats (a clamped to [0,1]). */
void lg_text_ctx_blend(const float *from, const float *to, double a, size_t n, float *out);

#ifdef __cplusplus
}
#endif
#endif
