/* safetensors.c: the safetensors reader (header parsed with jansson, every offset and shape
 * bounds-checked, tensor data left in the mmapped file) and writer (tensors in name order,
 * header padded with spaces so that the data starts 8-byte aligned, written to a temporary file
 * renamed into place). Format: u64 LE header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
 * Threads: any (no shared state). */
#include "checkpoint.h"
#include "ckpt_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Chunk of a streamed (fill) tensor: a multiple of every element size. */
#define ST_FILL_CHUNK ((size_t)64 << 20)

/* Largest header accepted: real headers are well under 1 MiB per 1000 tensors. */
#define ST_MAX_HEADER ((uint64_t)256 << 20)

static int st_dtype(const char *s, lg_dtype *out) {
  if (strcmp(s, "F32") == 0)
    *out = LG_F32;
  else if (strcmp(s, "F16") == 0)
    *out = LG_F16;
  else if (strcmp(s, "BF16") == 0)
    *out = LG_BF16;
  else
    return -1;
  return 0;
}

static const char *st_dtype_name(lg_dtype t) {
  switch (t) {
  case LG_F32: return "F32";
  case LG_F16: return "F16";
  case LG_BF16: return "BF16";
  case LG_I32: return "I32";
  case LG_U8: return "U8";
  }
  return NULL;
}

/* Reads a JSON integer in [0, max]. */
static int json_u64(const json_t *v, uint64_t max, uint64_t *out) {
  if (!json_is_integer(v)) return -1;
  json_int_t x = json_integer_value(v);
  if (x < 0 || (uint64_t)x > max) return -1;
  *out = (uint64_t)x;
  return 0;
}

int lg_st_read(lg_ckpt *c, const uint8_t *p, size_t n, const char *what, char *err, size_t errn) {
  if (n < 8)
    return lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: truncated safetensors (%zu bytes)", what, n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = (hl << 8) | p[i];
  if (hl == 0 || hl > ST_MAX_HEADER || hl > n - 8)
    return lg_ckpt_fail(err, errn, LG_EFORMAT,
                        "%s: safetensors header length %llu does not fit the file (%zu bytes)",
                        what, (unsigned long long)hl, n);
  const uint8_t *data = p + 8 + hl;
  size_t data_n = n - 8 - (size_t)hl;
  json_error_t je;
  json_t *root = json_loadb((const char *)p + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: bad safetensors header JSON: %s (at byte %d)",
                        what, je.text, je.position);
  int rc = 0;
  if (!json_is_object(root)) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: safetensors header is not a JSON object", what);
    goto done;
  }
  const char *name;
  json_t *info;
  json_object_foreach(root, name, info) {
    if (strcmp(name, "__metadata__") == 0) continue;
    json_t *jd = json_object_get(info, "dtype");
    json_t *js = json_object_get(info, "shape");
    json_t *jo = json_object_get(info, "data_offsets");
    if (!json_is_object(info) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2) {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT,
                        "%s: tensor '%s': header entry needs dtype, shape and data_offsets[2]",
                        what, name);
      goto done;
    }
    lg_dtype dt;
    if (st_dtype(json_string_value(jd), &dt)) {
      rc = lg_ckpt_fail(err, errn, LG_ENOTSUP,
                        "%s: tensor '%s' has dtype %.16s; only F32, F16 and BF16 are supported",
                        what, name, json_string_value(jd));
      goto done;
    }
    size_t nd = json_array_size(js);
    if (nd > LG_MAX_DIMS) {
      rc = lg_ckpt_fail(err, errn, LG_ENOTSUP, "%s: tensor '%s' has %zu dims (at most %d)", what,
                        name, nd, LG_MAX_DIMS);
      goto done;
    }
    int64_t shape[LG_MAX_DIMS] = {0};
    size_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
      uint64_t v;
      if (json_u64(json_array_get(js, d), (uint64_t)INT64_MAX, &v) ||
          lg_mul_size(numel, (size_t)v, &numel)) {
        rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: tensor '%s': bad or too large shape", what,
                          name);
        goto done;
      }
      shape[d] = (int64_t)v;
    }
    size_t nbytes;
    uint64_t b, e;
    if (lg_mul_size(numel, lg_dtype_size(dt), &nbytes) ||
        json_u64(json_array_get(jo, 0), data_n, &b) ||
        json_u64(json_array_get(jo, 1), data_n, &e) || e < b) {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT,
                        "%s: tensor '%s': data_offsets outside the data section (%zu bytes)", what,
                        name, data_n);
      goto done;
    }
    if (e - b != (uint64_t)nbytes) {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT,
                        "%s: tensor '%s': data_offsets span %llu bytes but shape x dtype needs %zu",
                        what, name, (unsigned long long)(e - b), nbytes);
      goto done;
    }
    const void *tp = data + b;
    if (nbytes && ((uintptr_t)tp % lg_dtype_size(dt)) != 0) {
      /* misaligned element data (odd header padding): copy so that loads are aligned */
      void *cp = malloc(nbytes);
      if (!cp || lg_ckpt_keep(c, cp)) {
        rc = lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
        goto done;
      }
      memcpy(cp, tp, nbytes);
      tp = cp;
    }
    rc = lg_ckpt_push(c, name, strlen(name), dt, (int)nd, shape, tp, nbytes);
    if (rc) {
      lg_ckpt_fail(err, errn, rc, "%s: tensor '%s': %s", what, name, lg_strerror(rc));
      goto done;
    }
  }
done:
  json_decref(root);
  return rc;
}

/* ---- writer ---- */

typedef struct st_sort {
  const char *const *names;
  int i;
} st_sort;

static int cmp_st_sort(const void *a, const void *b) {
  const st_sort *x = a, *y = b;
  return strcmp(x->names[x->i], y->names[y->i]);
}

static int write_all(FILE *f, const void *p, size_t n) {
  return fwrite(p, 1, n, f) == n ? 0 : LG_EIO;
}

int lg_safetensors_write_fill(const char *path, const char *const *names, const lg_tensor *tensors,
                              int n, const char *const *meta_kv, int n_meta, lg_st_fill_fn fill,
                              void *user) {
  int err = 0;
  json_t *root = NULL;
  char *hdr = NULL;
  char *tmp = NULL;
  FILE *f = NULL;
  st_sort *ord = NULL;
  void *buf = NULL;
  size_t bufn = 0;
  LG_CHECK(path && n >= 0 && (n == 0 || (names && tensors)) && n_meta >= 0 &&
               (n_meta == 0 || meta_kv),
           LG_EINVAL, "safetensors", "write: bad arguments");
  ord = malloc(sizeof *ord * (size_t)(n ? n : 1));
  root = json_object();
  LG_CHECK(ord && root, LG_ENOMEM, "safetensors", "write: out of memory");
  for (int i = 0; i < n; i++) {
    LG_CHECK(names[i] && names[i][0] && strcmp(names[i], "__metadata__") != 0, LG_EINVAL,
             "safetensors", "write: tensor %d has an empty or reserved name", i);
    ord[i].names = names;
    ord[i].i = i;
  }
  qsort(ord, (size_t)n, sizeof *ord, cmp_st_sort);
  for (int k = 1; k < n; k++)
    LG_CHECK(strcmp(names[ord[k - 1].i], names[ord[k].i]) != 0, LG_EINVAL, "safetensors",
             "write: duplicate tensor name '%s'", names[ord[k].i]);
  if (n_meta > 0) {
    json_t *m = json_object();
    LG_CHECK(m && json_object_set_new(root, "__metadata__", m) == 0, LG_ENOMEM, "safetensors",
             "write: out of memory");
    for (int k = 0; k < n_meta; k++) {
      LG_CHECK(meta_kv[2 * k] && meta_kv[2 * k + 1], LG_EINVAL, "safetensors",
               "write: metadata %d is NULL", k);
      LG_CHECK(json_object_set_new(m, meta_kv[2 * k], json_string(meta_kv[2 * k + 1])) == 0,
               LG_EINVAL, "safetensors", "write: bad metadata key/value '%s'", meta_kv[2 * k]);
    }
  }
  uint64_t off = 0;
  for (int k = 0; k < n; k++) {
    const lg_tensor *t = &tensors[ord[k].i];
    const char *dn = st_dtype_name(t->dtype);
    LG_CHECK(dn, LG_EINVAL, "safetensors", "write: tensor '%s' has an unknown dtype",
             names[ord[k].i]);
    LG_CHECK(t->ndim >= 0 && t->ndim <= LG_MAX_DIMS, LG_EINVAL, "safetensors",
             "write: tensor '%s' has bad ndim %d", names[ord[k].i], t->ndim);
    LG_CHECK(!t->data || lg_tensor_is_contiguous(t), LG_EINVAL, "safetensors",
             "write: tensor '%s' is not contiguous", names[ord[k].i]);
    LG_CHECK(t->data || fill, LG_EINVAL, "safetensors",
             "write: tensor '%s' has no data and no fill callback", names[ord[k].i]);
    size_t numel = 1, nbytes;
    json_t *shape = json_array();
    LG_CHECK(shape, LG_ENOMEM, "safetensors", "write: out of memory");
    for (int d = 0; d < t->ndim; d++) {
      if (t->ne[d] < 0 || lg_mul_size(numel, (size_t)t->ne[d], &numel)) {
        json_decref(shape);
        LG_CHECK(0, LG_EINVAL, "safetensors", "write: tensor '%s' has a bad shape",
                 names[ord[k].i]);
      }
      json_array_append_new(shape, json_integer(t->ne[d]));
    }
    if (lg_mul_size(numel, lg_dtype_size(t->dtype), &nbytes)) {
      json_decref(shape);
      LG_CHECK(0, LG_EINVAL, "safetensors", "write: tensor '%s' too large", names[ord[k].i]);
    }
    json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dn, "shape", shape, "data_offsets",
                          (json_int_t)off, (json_int_t)(off + nbytes));
    LG_CHECK(e && json_object_set_new(root, names[ord[k].i], e) == 0, LG_ENOMEM, "safetensors",
             "write: out of memory");
    off += nbytes;
    size_t want = !t->data ? (nbytes < ST_FILL_CHUNK ? nbytes : ST_FILL_CHUNK) : t->be ? nbytes : 0;
    if (want > bufn) bufn = want;
  }
  hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  LG_CHECK(hdr, LG_ENOMEM, "safetensors", "write: out of memory");
  size_t hl = strlen(hdr);
  size_t pad = (8 - hl % 8) % 8;
  size_t tl = strlen(path) + 32;
  tmp = malloc(tl);
  LG_CHECK(tmp, LG_ENOMEM, "safetensors", "write: out of memory");
  snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
  f = fopen(tmp, "wb");
  LG_CHECK(f, LG_EIO, "safetensors", "write: cannot create %s: %s", tmp, strerror(errno));
  uint8_t le[8];
  uint64_t hl8 = hl + pad;
  for (int i = 0; i < 8; i++)
    le[i] = (uint8_t)(hl8 >> (8 * i));
  static const char spaces[8] = "        ";
  LG_CHECK(write_all(f, le, 8) == 0 && write_all(f, hdr, hl) == 0 && write_all(f, spaces, pad) == 0,
           LG_EIO, "safetensors", "write: %s: %s", tmp, strerror(errno));
  if (bufn) {
    buf = malloc(bufn);
    LG_CHECK(buf, LG_ENOMEM, "safetensors", "write: cannot allocate %zu bytes", bufn);
  }
  for (int k = 0; k < n; k++) {
    const lg_tensor *t = &tensors[ord[k].i];
    size_t nbytes = lg_tensor_nbytes(t);
    const void *src = t->data;
    if (!nbytes) continue;
    if (!t->data) {
      for (size_t o = 0; o < nbytes; o += ST_FILL_CHUNK) {
        size_t cn = nbytes - o < ST_FILL_CHUNK ? nbytes - o : ST_FILL_CHUNK;
        LG_TRY(fill(user, ord[k].i, o, buf, cn));
        LG_CHECK(write_all(f, buf, cn) == 0, LG_EIO, "safetensors", "write: %s: %s", tmp,
                 strerror(errno));
      }
      continue;
    } else if (t->be) {
      LG_TRY(lg_tensor_download(t, buf));
      src = buf;
    }
    LG_CHECK(write_all(f, src, nbytes) == 0, LG_EIO, "safetensors", "write: %s: %s", tmp,
             strerror(errno));
  }
  LG_CHECK(fflush(f) == 0, LG_EIO, "safetensors", "write: %s: %s", tmp, strerror(errno));
  int ce = fclose(f);
  f = NULL;
  LG_CHECK(ce == 0, LG_EIO, "safetensors", "write: %s: %s", tmp, strerror(errno));
  LG_CHECK(rename(tmp, path) == 0, LG_EIO, "safetensors", "write: rename to %s: %s", path,
           strerror(errno));
  free(tmp);
  tmp = NULL;
fail:
  if (f) fclose(f);
  if (tmp) unlink(tmp);
  free(tmp);
  free(buf);
  free(hdr);
  free(ord);
  json_decref(root);
  return err;
}

int lg_safetensors_write(const char *path, const char *const *names, const lg_tensor *tensors,
                         int n, const char *const *meta_kv, int n_meta) {
  return lg_safetensors_write_fill(path, names, tensors, n, meta_kv, n_meta, NULL, NULL);
}
