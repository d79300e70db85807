/* engine.h: the streaming video diffusion engine as the service sees it: RGB frames in,
 * RGB frames out, parameters changed between chunks. Owns the backend, the models (DiT, VAE
 * or TAEHV, text encoder), the stream batch and the rolling KV caches.
 * Threads: every call except lg_engine_set_params / lg_engine_get_params / lg_engine_stats
 * is made from the one GPU worker thread that created it; those three are thread-safe
 * (a mutex guards the pending parameters; they take effect at the next chunk boundary). */
#ifndef LG_ENGINE_H
#define LG_ENGINE_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_engine_params {
  char prompt[LG_PROMPT_MAX];
  double noise_scale; /* "strength": s0 in MODELS.md 3, 0..1 */
  int steps;          /* 1..4 */
  unsigned long long seed;
  double blend_s; /* seconds to blend to a new prompt */
  bool paused;
} lg_engine_params;

typedef struct lg_engine_stats {
  uint64_t chunks, frames_in, frames_out;
  double ms_encode, ms_dit, ms_decode, ms_total; /* last chunk */
  double ttff_s;                                 /* time to first output frame */
  size_t mem_peak_bytes;
  char device[128];
} lg_engine_stats;

typedef struct lg_engine lg_engine;

/* Loads models per cfg (generating the tiny random ones into the cache dir on first use).
 * NULL with a message in err. */
lg_engine *lg_engine_new(const lg_config *cfg, char *err, size_t errn);
void lg_engine_free(lg_engine **e);

/* Frames the next lg_engine_push call consumes (v2v: 5 for the first chunk, then 4;
 * t2v: 0, input ignored). */
int lg_engine_frames_needed(const lg_engine *e);
/* Output frame size (the config's width x height). */
void lg_engine_frame_size(const lg_engine *e, int *width, int *height);

/* Runs one chunk. in: n_in RGB24 frames of width*height*3 bytes (v2v), NULL for t2v.
 * out: up to max_out caller buffers of width*height*3 bytes. Returns the number of frames
 * written (0 while the stream batch fills: output lags by `steps` chunks) or LG_E*. */
int lg_engine_push(lg_engine *e, const uint8_t *const *in, int n_in, uint8_t *const *out,
                   int max_out);

/* One output frame of lg_engine_push_device, number i of the chunk (0, 1, ...): frame is
 * [1,H,W,3] U8 on the engine's backend (device memory on CUDA), borrowed for the call only (the
 * engine writes it again later). Read it by enqueuing backend work on the backend's stream before
 * returning (e.g. LG_OP copy into a buffer of the caller): stream order puts that read before the
 * engine's next write. GPU worker thread. Returns 0, or LG_E* to stop (lg_engine_push_device
 * returns it). */
struct lg_tensor;
typedef int (*lg_engine_frame_fn)(void *user, int i, const struct lg_tensor *frame);

/* lg_engine_push, but the output frames stay on the backend: each of the chunk's first max_out
 * frames is handed to fn instead of being downloaded into host buffers (no host copy and no
 * host wait for the output; the same bytes lg_engine_push would download). Returns the number
 * of frames handed to fn (0 while the stream batch fills) or LG_E*. */
int lg_engine_push_device(lg_engine *e, const uint8_t *const *in, int n_in, lg_engine_frame_fn fn,
                          void *user, int max_out);

/* Parameter changes: validated now (LG_EINVAL + message), applied at the next chunk. */
int lg_engine_set_params(lg_engine *e, const lg_engine_params *p, char *err, size_t errn);
void lg_engine_get_params(lg_engine *e, lg_engine_params *p);
/* Drops caches and the stream batch; the next push is a first chunk again. */
int lg_engine_reset(lg_engine *e);
void lg_engine_get_stats(lg_engine *e, lg_engine_stats *s);
/* The engine's backend (borrowed; for benchmarks that read device memory statistics). */
struct lg_backend *lg_engine_backend(lg_engine *e);
/* Loads the DiT of cfg->model (dit, dit_weights; "tiny" generated into the cache dir on first
 * use) on be: what the engine runs, and what each pipeline stage / `livegen rank` loads.
 * NULL with a message in err. */
struct lg_wan_dit *lg_engine_load_dit(const lg_config *cfg, struct lg_backend *be, char *err,
                                      size_t errn);

#ifdef __cplusplus
}
#endif
#endif
