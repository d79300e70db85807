/* stream.h: the denoising loops over latents (MODELS.md 3; exact rules in docs/DIT.md).
 *
 * v2v (StreamDiffusionV2): the stream batch has one row per denoising step; row i always runs
 * step i with its own KV cache row. A first chunk (2 latent frames) is denoised step by step
 * in row 0 and emitted at once; row 0's cache is then copied to every row. Each later chunk
 * (1 latent frame) shifts the rows by one, enters row 0 as s*eps + (1-s)*latent at
 * t = int(1000*s) - 100, and all rows that hold a chunk run in one batched forward; row i's x0
 * is re-noised to step i+1, and the last row's x0 is emitted (a lag of steps-1 chunks after
 * the first one).
 * t2v (Self-Forcing/CausVid): blocks of 3 latent frames from pure noise, denoised step by step
 * in cache row 0, then re-run at t=0 to write the clean cache.
 *
 * Latents are channels-last [F,h,w,16] in the backend's act dtype; v2v input latents are the
 * VAE mean without normalisation. Every random draw comes from the caller's lg_noise_fn, so
 * the engine (lg_rng) and the golden probe (draws from a file) share the loop.
 * Threads: owned by the thread that owns the backend (the GPU worker or a test). */
#ifndef LG_STREAM_H
#define LG_STREAM_H

#include "config.h"
#include "flow_sched.h"
#include "wan_dit.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fills out[n] (n = F*h*w*16 floats, channels-last [F,h,w,16]) with N(0,1) draws.
 * step -1: the input noise of chunk `chunk` (v2v eps_in, t2v the block's start noise);
 * step i >= 0: the re-noise draw of chunk `chunk` after step i (to step i+1). 0 or LG_E*. */
typedef int (*lg_noise_fn)(void *user, int chunk, int step, float *out, size_t n);

typedef struct lg_stream_opts {
  bool t2v;
  int steps;                      /* rows of the stream batch, 1..LG_MAX_STEPS */
  double step_list[LG_MAX_STEPS]; /* model timesteps, first `steps` used (already warped) */
  double shift;                   /* scheduler shift (sigma lookup) */
  int kv_frames, sink_frames;
  double adapt_sink; /* <= 0 disables */
  int lat_h, lat_w;  /* latent size (even) */
} lg_stream_opts;

typedef struct lg_stream lg_stream;

lg_stream *lg_stream_new(lg_wan_dit *m, const lg_stream_opts *o, char *err, size_t n);
void lg_stream_free(lg_stream **s);
/* Empties the caches and the batch: the next push is a first chunk (the context stays). */
int lg_stream_reset(lg_stream *s);
/* Text context [512,text_dim] host f32: cross-attention K/V recomputed (between chunks). */
int lg_stream_set_context(lg_stream *s, const float *ctx);
/* v2v: latent [F,h,w,16] act dtype (F = 2 for the first chunk, then 1), s the noise scale of
 * this chunk. out [2,h,w,16] act dtype receives the emitted chunk's x0; returns its latent frame
 * count (0 while the batch fills) and sets *out_chunk to its index. LG_E* on error. */
int lg_stream_push_v2v(lg_stream *s, const lg_tensor *latent, double scale, lg_noise_fn noise,
                       void *user, lg_tensor *out, int *out_chunk);
/* t2v: generates the next block into out [3,h,w,16]; returns 3 or LG_E*. */
int lg_stream_next_t2v(lg_stream *s, lg_noise_fn noise, void *user, lg_tensor *out);
/* Chunks (v2v) or blocks (t2v) consumed since the last reset. */
int lg_stream_chunks(const lg_stream *s);
const lg_flow_sched *lg_stream_sched(const lg_stream *s);
/* Backend bytes held (caches, workspace, batch). */
size_t lg_stream_bytes(const lg_stream *s);

#define LG_T2V_BLOCK 3

#ifdef __cplusplus
}
#endif
#endif
