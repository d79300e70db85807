/* kv_cache.h: storage of the DiT's rolling KV caches (MODELS.md 3). Per cache row and per
 * layer one K buffer (already rotated by RoPE) and one V buffer, each [cap_frames*frame_tokens,
 * dim] in the backend's activation dtype; frame slot s of a row is tokens
 * [s*frame_tokens, (s+1)*frame_tokens). All rows of one layer lie in one [rows, cap_tokens, dim]
 * block so a batched attention reads them with a row stride. Plus the cross-attention K/V of
 * the current prompt, per layer [ctx_len, dim], shared by all rows. Which slot a call writes is
 * decided by pipeline/kv_policy; this module only stores, copies and measures.
 * One backend allocation at creation; nothing allocates afterwards.
 * Threads: owned by the thread that owns the backend. */
#ifndef LG_KV_CACHE_H
#define LG_KV_CACHE_H

#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_kv_cache {
  lg_backend *be;
  lg_dtype dtype; /* be->act_dtype */
  int layers, dim, rows, cap_frames, frame_tokens, ctx_len;
  int64_t cap_tokens; /* cap_frames * frame_tokens */
  void *mem;          /* the one backend allocation */
  lg_tensor *k, *v;   /* [layers] views [rows, cap_tokens, dim] */
  lg_tensor *ck, *cv; /* [layers] views [ctx_len, dim]: cross-attention K (normed) and V */
  int ctx_valid;      /* ck/cv hold a computed context */
  lg_tensor *meas;    /* [2 * layers * cap_frames] slot views for sink_similarity (a, then b) */
  double *meas_v;     /* [layers * 2 * cap_frames] its results */
} lg_kv_cache;

/* NULL on failure (logged). */
lg_kv_cache *lg_kv_cache_new(lg_backend *be, int layers, int dim, int rows, int cap_frames,
                             int frame_tokens, int ctx_len);
void lg_kv_cache_free(lg_kv_cache **c);
size_t lg_kv_cache_bytes(const lg_kv_cache *c);
/* Zeroes the self-attention buffers of every row (the context stays). */
int lg_kv_cache_clear(lg_kv_cache *c);
/* Copies row src's K/V (all layers, all slots) onto row dst. */
int lg_kv_cache_copy_row(lg_kv_cache *c, int dst, int src);
/* View of one slot: [frame_tokens, dim]; which 0 = K, 1 = V. */
lg_tensor lg_kv_cache_slot(const lg_kv_cache *c, int layer, int which, int row, int slot);
/* sims[j] for j < n_sinks = mean over layers and over {K, V} of the cosine_mean op between
 * the tokens of `slot` and those of sink slot j in `row` (all of them measured with one host
 * sync, lg_backend_cosine_mean_n; summed on the host in the order j, layer, K/V). */
int lg_kv_cache_sink_similarity(lg_kv_cache *c, int row, int slot, int n_sinks, double *sims);

#ifdef __cplusplus
}
#endif
#endif
