/* kv_cache.c: rolling KV cache storage (see kv_cache.h). Runs on the backend's thread. */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

static lg_tensor view2(lg_backend *be, void *data, lg_dtype dt, int64_t r, int64_t c) {
  int64_t sh[2] = {r, c};
  return lg_tensor_make(be, data, dt, 2, sh);
}

lg_kv_cache *lg_kv_cache_new(lg_backend *be, int layers, int dim, int rows, int cap_frames,
                             int frame_tokens, int ctx_len) {
  if (!be || layers < 1 || dim < 1 || rows < 1 || cap_frames < 1 || frame_tokens < 1 ||
      ctx_len < 1) {
    LG_ERR("kv", "bad cache geometry: %d layers, dim %d, %d rows, %d frames of %d tokens", layers,
           dim, rows, cap_frames, frame_tokens);
    return NULL;
  }
  lg_kv_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->be = be;
  c->dtype = be->act_dtype;
  c->layers = layers;
  c->dim = dim;
  c->rows = rows;
  c->cap_frames = cap_frames;
  c->frame_tokens = frame_tokens;
  c->ctx_len = ctx_len;
  c->cap_tokens = (int64_t)cap_frames * frame_tokens;
  size_t es = lg_dtype_size(c->dtype), self_b, ctx_b, total;
  if (lg_mul_size((size_t)rows * (size_t)c->cap_tokens, (size_t)dim * es, &self_b) ||
      lg_mul_size((size_t)ctx_len, (size_t)dim * es, &ctx_b) ||
      lg_mul_size(self_b + ctx_b, (size_t)layers * 2, &total)) {
    LG_ERR("kv", "cache size overflows");
    goto fail;
  }
  c->k = calloc((size_t)layers * 4, sizeof(lg_tensor));
  c->meas = calloc((size_t)layers * 4 * (size_t)cap_frames, sizeof(lg_tensor));
  c->meas_v = calloc((size_t)layers * 2 * (size_t)cap_frames, sizeof(double));
  if (!c->k || !c->meas || !c->meas_v) goto fail;
  c->v = c->k + layers;
  c->ck = c->v + layers;
  c->cv = c->ck + layers;
  c->mem = be->ops->alloc(be, total);
  if (!c->mem) {
    LG_ERR("kv", "cannot allocate %zu bytes of KV cache on %s", total, be->ops->name);
    goto fail;
  }
  uint8_t *p = c->mem;
  for (int l = 0; l < layers; l++) {
    int64_t sh[3] = {rows, c->cap_tokens, dim};
    c->k[l] = lg_tensor_make(be, p, c->dtype, 3, sh);
    p += self_b;
    c->v[l] = lg_tensor_make(be, p, c->dtype, 3, sh);
    p += self_b;
    c->ck[l] = view2(be, p, c->dtype, ctx_len, dim);
    p += ctx_b;
    c->cv[l] = view2(be, p, c->dtype, ctx_len, dim);
    p += ctx_b;
  }
  if (be->ops->memset0(be, c->mem, total) < 0) goto fail;
  return c;
fail:
  lg_kv_cache_free(&c);
  return NULL;
}

void lg_kv_cache_free(lg_kv_cache **pc) {
  if (!pc || !*pc) return;
  lg_kv_cache *c = *pc;
  if (c->mem) c->be->ops->free(c->be, c->mem);
  free(c->k);
  free(c->meas);
  free(c->meas_v);
  free(c);
  *pc = NULL;
}

size_t lg_kv_cache_bytes(const lg_kv_cache *c) {
  size_t es = lg_dtype_size(c->dtype);
  return (size_t)c->layers * 2 * ((size_t)c->rows * (size_t)c->cap_tokens + (size_t)c->ctx_len) *
         (size_t)c->dim * es;
}

int lg_kv_cache_clear(lg_kv_cache *c) {
  for (int l = 0; l < c->layers; l++) {
    int err = c->be->ops->memset0(c->be, c->k[l].data, lg_tensor_nbytes(&c->k[l]));
    if (!err) err = c->be->ops->memset0(c->be, c->v[l].data, lg_tensor_nbytes(&c->v[l]));
    if (err) return err;
  }
  return 0;
}

int lg_kv_cache_copy_row(lg_kv_cache *c, int dst, int src) {
  if (dst < 0 || src < 0 || dst >= c->rows || src >= c->rows) {
    LG_ERR("kv", "copy_row %d <- %d outside %d rows", dst, src, c->rows);
    return LG_EINVAL;
  }
  if (dst == src) return 0;
  for (int l = 0; l < c->layers; l++) {
    for (int w = 0; w < 2; w++) {
      lg_tensor *t = w ? &c->v[l] : &c->k[l];
      lg_tensor d = lg_tensor_narrow(t, 0, dst, 1), s = lg_tensor_narrow(t, 0, src, 1);
      int err = LG_OP(c->be, copy, &d, &s);
      if (err) return err;
    }
  }
  return 0;
}

lg_tensor lg_kv_cache_slot(const lg_kv_cache *c, int layer, int which, int row, int slot) {
  const lg_tensor *t = which ? &c->v[layer] : &c->k[layer];
  size_t off = ((size_t)row * (size_t)c->cap_tokens + (size_t)slot * (size_t)c->frame_tokens) *
               (size_t)c->dim * lg_dtype_size(c->dtype);
  return view2(c->be, (uint8_t *)t->data + off, c->dtype, c->frame_tokens, c->dim);
}

int lg_kv_cache_sink_similarity(lg_kv_cache *c, int row, int slot, int n_sinks, double *sims) {
  if (row < 0 || row >= c->rows || slot < 0 || slot >= c->cap_frames || n_sinks < 0 ||
      n_sinks > c->cap_frames) {
    LG_ERR("kv", "sink similarity: row %d slot %d sinks %d outside the cache", row, slot, n_sinks);
    return LG_EINVAL;
  }
  /* pairs in the order j, layer, K/V; one sync for all; summed in that order */
  const int n = n_sinks * c->layers * 2;
  lg_tensor *a = c->meas, *b = c->meas + (size_t)c->layers * 2 * (size_t)c->cap_frames;
  for (int j = 0, i = 0; j < n_sinks; j++) {
    for (int l = 0; l < c->layers; l++) {
      for (int w = 0; w < 2; w++, i++) {
        a[i] = lg_kv_cache_slot(c, l, w, row, slot);
        b[i] = lg_kv_cache_slot(c, l, w, row, j);
      }
    }
  }
  int err = lg_backend_cosine_mean_n(c->be, c->meas_v, n, a, b);
  if (err) return err;
  for (int j = 0, i = 0; j < n_sinks; j++) {
    double acc = 0.0;
    for (int k = 0; k < c->layers * 2; k++)
      acc += c->meas_v[i++];
    sims[j] = acc / (2.0 * c->layers);
  }
  return 0;
}
