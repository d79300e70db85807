/* lg_tensor.c: tensor views, backend-agnostic allocation, host transfer and the arena.
 * Runs on whichever thread owns the backend. */
#include "lg_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t lg_dtype_size(lg_dtype t) {
  switch (t) {
  case LG_F32: return 4;
  case LG_F16: return 2;
  case LG_BF16: return 2;
  case LG_I32: return 4;
  case LG_U8: return 1;
  }
  return 0;
}

const char *lg_dtype_name(lg_dtype t) {
  switch (t) {
  case LG_F32: return "F32";
  case LG_F16: return "F16";
  case LG_BF16: return "BF16";
  case LG_I32: return "I32";
  case LG_U8: return "U8";
  }
  return "?";
}

lg_tensor lg_tensor_make(struct lg_backend *be, void *data, lg_dtype dtype, int ndim,
                         const int64_t *shape) {
  lg_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype;
  t.ndim = ndim;
  t.data = data;
  t.be = be;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    t.ne[i] = shape[i];
    t.nb[i] = s;
    s *= shape[i];
  }
  return t;
}

int64_t lg_tensor_numel(const lg_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->ne[i];
  return n;
}

size_t lg_tensor_nbytes(const lg_tensor *t) {
  return (size_t)lg_tensor_numel(t) * lg_dtype_size(t->dtype);
}

bool lg_tensor_is_contiguous(const lg_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->ne[i] != 1 && t->nb[i] != s) return false;
    s *= t->ne[i];
  }
  return true;
}

bool lg_tensor_same_shape(const lg_tensor *a, const lg_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->ne[i] != b->ne[i]) return false;
  return true;
}

int64_t lg_tensor_rows(const lg_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim - 1; i++)
    n *= t->ne[i];
  return n;
}

lg_tensor lg_tensor_narrow(const lg_tensor *t, int dim, int64_t start, int64_t len) {
  lg_tensor v = *t;
  v.ne[dim] = len;
  v.data = (uint8_t *)t->data + (size_t)(start * t->nb[dim]) * lg_dtype_size(t->dtype);
  return v;
}

int lg_tensor_reshape(const lg_tensor *t, int ndim, const int64_t *shape, lg_tensor *out) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  if (ndim < 1 || ndim > LG_MAX_DIMS || n != lg_tensor_numel(t) || !lg_tensor_is_contiguous(t)) {
    char b[96];
    LG_ERR("tensor", "reshape of %s to %d dims with %lld elements is not possible",
           lg_tensor_shape_str(t, b, sizeof b), ndim, (long long)n);
    return LG_EINVAL;
  }
  *out = lg_tensor_make(t->be, t->data, t->dtype, ndim, shape);
  return 0;
}

lg_tensor lg_tensor_permute(const lg_tensor *t, const int *perm) {
  lg_tensor v = *t;
  for (int i = 0; i < t->ndim; i++) {
    v.ne[i] = t->ne[perm[i]];
    v.nb[i] = t->nb[perm[i]];
  }
  return v;
}

const char *lg_tensor_shape_str(const lg_tensor *t, char *buf, size_t n) {
  size_t off = 0;
  off += (size_t)snprintf(buf + off, n - off, "[");
  for (int i = 0; i < t->ndim && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)t->ne[i]);
  if (off < n) snprintf(buf + off, n - off, "] %s", lg_dtype_name(t->dtype));
  return buf;
}

void *lg_backend_host_alloc(lg_backend *be, size_t bytes) {
  return be->ops->host_alloc ? be->ops->host_alloc(be, bytes) : malloc(bytes ? bytes : 1);
}

void lg_backend_host_free(lg_backend *be, void *p) {
  if (!p) return;
  if (be->ops->host_free)
    be->ops->host_free(be, p);
  else
    free(p);
}

void lg_backend_free(lg_backend **be) {
  if (!be || !*be) return;
  (*be)->ops->destroy(*be);
  *be = NULL;
}

int lg_tensor_alloc(lg_backend *be, lg_tensor *t, lg_dtype dtype, int ndim, const int64_t *shape) {
  *t = lg_tensor_make(be, NULL, dtype, ndim, shape);
  size_t bytes = lg_tensor_nbytes(t);
  t->data = be->ops->alloc(be, bytes ? bytes : 1);
  if (!t->data) {
    LG_ERR("tensor", "cannot allocate %zu bytes on %s", bytes, be->ops->name);
    return LG_ENOMEM;
  }
  return 0;
}

void lg_tensor_free(lg_tensor *t) {
  if (!t) return;
  if (t->data && t->be) t->be->ops->free(t->be, t->data);
  t->data = NULL;
}

int lg_tensor_upload(lg_tensor *t, const void *host) {
  return t->be->ops->upload(t->be, t->data, host, lg_tensor_nbytes(t));
}

int lg_tensor_download(const lg_tensor *t, void *host) {
  return t->be->ops->download(t->be, host, t->data, lg_tensor_nbytes(t));
}

int lg_tensor_download_f32(const lg_tensor *t, float *host) {
  lg_backend *be = t->be;
  lg_tensor tmp;
  int err = lg_tensor_alloc(be, &tmp, LG_F32, t->ndim, t->ne);
  if (err) return err;
  err = be->ops->copy(be, &tmp, t);
  if (!err) err = lg_tensor_download(&tmp, host);
  lg_tensor_free(&tmp);
  return err;
}

int lg_tensor_upload_f32(lg_tensor *t, const float *host) {
  lg_backend *be = t->be;
  if (t->dtype == LG_F32 && lg_tensor_is_contiguous(t)) return lg_tensor_upload(t, host);
  lg_tensor tmp;
  int err = lg_tensor_alloc(be, &tmp, LG_F32, t->ndim, t->ne);
  if (err) return err;
  err = lg_tensor_upload(&tmp, host);
  if (!err) err = be->ops->copy(be, t, &tmp);
  lg_tensor_free(&tmp);
  return err;
}

int lg_arena_init(lg_arena *a, lg_backend *be, size_t bytes) {
  memset(a, 0, sizeof *a);
  a->be = be;
  a->base = be->ops->alloc(be, bytes ? bytes : 256);
  if (!a->base) {
    LG_ERR("arena", "cannot allocate %zu bytes on %s", bytes, be->ops->name);
    return LG_ENOMEM;
  }
  a->cap = bytes;
  return 0;
}

void lg_arena_free(lg_arena *a) {
  if (a && a->base) a->be->ops->free(a->be, a->base);
  if (a) a->base = NULL;
}

int lg_arena_tensor(lg_arena *a, lg_tensor *t, lg_dtype dtype, int ndim, const int64_t *shape) {
  *t = lg_tensor_make(a->be, NULL, dtype, ndim, shape);
  size_t bytes = (lg_tensor_nbytes(t) + 255) & ~(size_t)255;
  if (bytes > a->cap - a->used) {
    LG_ERR("arena", "arena of %zu bytes full: %zu used, %zu more asked", a->cap, a->used, bytes);
    return LG_ENOMEM;
  }
  t->data = a->base + a->used;
  a->used += bytes;
  if (a->used > a->peak) a->peak = a->used;
  return 0;
}
