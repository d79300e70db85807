/* wan_dit.h: the Wan2.1 diffusion transformer in causal (KV-cached) use, MODELS.md 2, written
 * once against the op interface in lg_backend.h so that it runs on every backend.
 *
 * Layouts: latents are channels-last per row, [B,F,h,w,16] (B rows, F latent frames, h x w
 * latent pixels, h and w even); tokens run f, h, w (h/2 x w/2 per frame); activations are in
 * the backend's act dtype (F32 on cpu, BF16 on cuda) including the residual stream and the
 * modulation; weights keep their PyTorch layout (load_weight). The config is read off the
 * tensors. Every forward runs inside an lg_dit_ws arena sized once for a frame size and a
 * maximum number of row-frames, so a forward never allocates.
 * Threads: a model, its workspaces and caches belong to the thread that owns the backend. */
#ifndef LG_WAN_DIT_H
#define LG_WAN_DIT_H

#include "checkpoint.h"
#include "kv_cache.h"
#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LG_DIT_MAX_ROWS 16 /* rows of one batched forward */
#define LG_DIT_MAX_CALL 8  /* latent frames per row of one forward */
#define LG_DIT_TEXT_LEN 512
#define LG_DIT_HEAD_DIM 128

typedef struct lg_wan_dit_config {
  int dim;      /* from patch_embedding.weight [dim,16,1,2,2] */
  int ffn_dim;  /* blocks.0.ffn.0.weight [ffn_dim,dim] */
  int heads;    /* dim / 128 */
  int layers;   /* count of blocks.N */
  int text_dim; /* text_embedding.0.weight [dim,text_dim] (4096 real, 64 tiny) */
  int freq_dim; /* time_embedding.0.weight [dim,freq_dim] (256) */
} lg_wan_dit_config;

typedef struct lg_wan_dit lg_wan_dit;
typedef struct lg_dit_ws lg_dit_ws;

/* Reads the config off a checkpoint's tensors. 0 or LG_E* with the offending tensor in err. */
int lg_wan_dit_read_config(const lg_ckpt *ck, lg_wan_dit_config *cfg, char *err, size_t n);
/* Loads the DiT. `base` is the Wan DiT checkpoint; `over` (may be NULL) is a StreamDiffusionV2 /
 * Self-Forcing / CausVid generator whose tensors replace the base weights entirely: it must
 * supply every tensor, and its config must equal the base's. A missing, extra or misshapen
 * tensor is an error naming it. Checkpoints are borrowed during the call only. NULL on
 * failure with a message in err. */
lg_wan_dit *lg_wan_dit_load(lg_backend *be, const lg_ckpt *base, const lg_ckpt *over, char *err,
                            size_t n);
void lg_wan_dit_free(lg_wan_dit **m);
/* Moves the weights only the context pass uses (text_embedding.0/.2 and every layer's
 * cross-attention k/v weights: 287 MiB of the 1.3B's 2.7 GB, 4.2 GB of the 14B's 28 GB in
 * bf16) from the backend to host memory; lg_wan_dit_set_context then uploads each into a
 * workspace buffer before its GEMM (same bytes, same results). Saves device memory at the cost
 * of those uploads per context change (and per step of a prompt blend). Create workspaces
 * after or before, either works. 0 or LG_E* (the model stays usable either way). */
int lg_wan_dit_context_weights_to_host(lg_wan_dit *m, char *err, size_t n);
const lg_wan_dit_config *lg_wan_dit_get_config(const lg_wan_dit *m);
lg_backend *lg_wan_dit_backend(const lg_wan_dit *m);

/* Activation arena for forwards of up to max_row_frames (B*F) latent frames of lat_h x lat_w,
 * and for lg_wan_dit_set_context. The model is borrowed until lg_dit_ws_free. NULL on failure. */
lg_dit_ws *lg_dit_ws_new(lg_wan_dit *m, int max_row_frames, int lat_h, int lat_w);
void lg_dit_ws_free(lg_dit_ws **w);
size_t lg_dit_ws_bytes(const lg_dit_ws *w);
/* A cache for this model: rows rows of cap_frames frames of (lat_h/2)*(lat_w/2) tokens. */
lg_kv_cache *lg_wan_dit_cache_new(lg_wan_dit *m, int rows, int cap_frames, int lat_h, int lat_w);

/* Text context: ctx [512,text_dim] host f32 (T5 rows; rows past the prompt zero).
 * ctx = text_embedding.2(GELU_tanh(text_embedding.0(ctx))), then per layer the cross-attention
 * K = norm_k(k(ctx)) and V = v(ctx) are stored in kv (computed once per context). */
int lg_wan_dit_set_context(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, const float *ctx);

/* One row of a forward: which cache slots its frames go to (from pipeline/kv_policy). */
typedef struct lg_dit_row {
  float t;                       /* timestep of all the row's frames, raw [0,1000] */
  int32_t rope_start;            /* RoPE frame index of local frame 0 */
  int32_t kv_frames;             /* filled slots after the write; attention spans [0, kv_frames) */
  int32_t slot[LG_DIT_MAX_CALL]; /* cache slot of local frame f */
} lg_dit_row;

/* Flow prediction v [B,F,h,w,16] (contiguous, act dtype) for x [B,F,h,w,16] (contiguous, act
 * dtype). Row b uses cache row b of kv: its K (rotated) and V are written into
 * rows[b].slot[f] of every layer, then its queries attend over slots [0, rows[b].kv_frames).
 * The context must have been set on kv. 0 or LG_E*. */
int lg_wan_dit_forward(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, const lg_tensor *x,
                       const lg_dit_row *rows, lg_tensor *v);

/* ---- layer-range forward (pipeline stages, pipeline/stages.h) ----
 * lg_wan_dit_forward == time + embed + blocks(0, layers) + head, the same ops in the same
 * order, so a forward split over stages gives the same bits as one call. Shapes for B rows of
 * F frames of h x w latents (the workspace's), T = F*(h/2)*(w/2) tokens per row, act dtype,
 * contiguous: e [B*F, dim], e0 [B*F, 6*dim], hidden [B*T, dim]. */
/* Stages the host->device input of the next forward (the timestep sinusoid of B rows of F
 * frames) so that the forward itself uploads nothing and can be captured as a CUDA graph and
 * replayed: call it before the forward (or before replaying a graph of it) whenever the rows'
 * timesteps change. A forward whose rows were not staged stages them itself. 0 or LG_E*. */
int lg_wan_dit_prepare(lg_wan_dit *m, lg_dit_ws *ws, const lg_dit_row *rows, int64_t B, int64_t F);
/* e = time_embedding(sinusoid(rows[b].t)), e0 = time_projection(SiLU(e)), per row-frame. */
int lg_wan_dit_time(lg_wan_dit *m, lg_dit_ws *ws, const lg_dit_row *rows, int64_t B, int64_t F,
                    lg_tensor *e, lg_tensor *e0);
/* hidden = patchify(x), x [B,F,h,w,16]. */
int lg_wan_dit_embed(lg_wan_dit *m, lg_dit_ws *ws, const lg_tensor *x, lg_tensor *hidden);
/* Blocks [first, last) in place on hidden. Layer l uses cache layer l - kv_first of kv (a
 * cache may hold only a stage's layers); rows as in lg_wan_dit_forward. */
int lg_wan_dit_blocks(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, int kv_first, int first,
                      int last, const lg_dit_row *rows, int64_t B, int64_t F, const lg_tensor *e0,
                      lg_tensor *hidden);
/* v [B,F,h,w,16] = unpatchify(head(hidden, e)). */
int lg_wan_dit_head(lg_wan_dit *m, lg_dit_ws *ws, const lg_tensor *hidden, const lg_tensor *e,
                    lg_tensor *v);
/* Cross-attention K/V of layers [first, last) into cache layers [first - kv_first, ...). */
int lg_wan_dit_set_context_layers(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, int kv_first,
                                  int first, int last, const float *ctx);

#ifdef __cplusplus
}
#endif
#endif
