/* checkpoint.c: the lg_ckpt API: format detection (from content, not the suffix), the tensor
 * table, owned mappings/buffers, sharded safetensors through *.index.json, and the name mapping
 * of MODELS.md 1 (strip "model." / "_fsdp_wrapped_module.", diffusers -> official names).
 * The safetensors reader is safetensors.c; the PyTorch path (lg_pt_read, end of this file)
 * indexes the zip (zip.c), runs data.pkl through the restricted pickle VM (pickle.c) and turns
 * the selected dict's tensors into views on the stored blobs. Threads: opened on one thread;
 * read-only afterwards from any thread. */
#include "checkpoint.h"
#include "ckpt_internal.h"
#include "pickle.h"
#include "zip.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ckpt_map {
  void *p;
  size_t n;
} ckpt_map;

struct lg_ckpt {
  const char *format;
  lg_ckpt_tensor *t;
  int n, cap;
  int *sorted; /* indices of t by name */
  void **owned;
  int nowned, capowned;
  ckpt_map *maps;
  int nmaps, capmaps;
};

int lg_ckpt_fail(char *err, size_t errn, int code, const char *fmt, ...) {
  if (err && errn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
  }
  return code;
}

static int grow(void **arr, int *cap, int need, size_t elem) {
  if (need <= *cap) return 0;
  int nc = *cap ? *cap : 16;
  while (nc < need) {
    if (nc > (1 << 28)) return LG_ENOMEM;
    nc *= 2;
  }
  size_t bytes;
  if (lg_mul_size((size_t)nc, elem, &bytes)) return LG_ENOMEM;
  void *p = realloc(*arr, bytes);
  if (!p) return LG_ENOMEM;
  *arr = p;
  *cap = nc;
  return 0;
}

int lg_ckpt_keep(lg_ckpt *c, void *p) {
  if (!p) return 0;
  if (grow((void **)&c->owned, &c->capowned, c->nowned + 1, sizeof(void *))) {
    free(p);
    return LG_ENOMEM;
  }
  c->owned[c->nowned++] = p;
  return 0;
}

int lg_ckpt_map_file(lg_ckpt *c, const char *path, const uint8_t **p, size_t *n, char *err,
                     size_t errn) {
  *p = NULL;
  *n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never block on a FIFO */
  if (fd < 0) return lg_ckpt_fail(err, errn, LG_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return lg_ckpt_fail(err, errn, LG_EIO, "%s: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return 0;
  }
  if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
    close(fd);
    return lg_ckpt_fail(err, errn, LG_ERANGE, "%s: file too large", path);
  }
  if (grow((void **)&c->maps, &c->capmaps, c->nmaps + 1, sizeof(ckpt_map))) {
    close(fd);
    return lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (m == MAP_FAILED) return lg_ckpt_fail(err, errn, LG_EIO, "%s: mmap: %s", path, strerror(e));
  c->maps[c->nmaps].p = m;
  c->maps[c->nmaps].n = (size_t)st.st_size;
  c->nmaps++;
  *p = m;
  *n = (size_t)st.st_size;
  return 0;
}

int lg_ckpt_push(lg_ckpt *c, const char *name, size_t name_len, lg_dtype dtype, int ndim,
                 const int64_t *shape, const void *data, size_t nbytes) {
  if (ndim < 0 || ndim > LG_MAX_DIMS) return LG_EINVAL;
  if (grow((void **)&c->t, &c->cap, c->n + 1, sizeof(lg_ckpt_tensor))) return LG_ENOMEM;
  char *nm = malloc(name_len + 1);
  if (!nm) return LG_ENOMEM;
  memcpy(nm, name, name_len);
  nm[name_len] = '\0';
  if (lg_ckpt_keep(c, nm)) return LG_ENOMEM;
  lg_ckpt_tensor *t = &c->t[c->n];
  memset(t, 0, sizeof *t);
  t->name = nm;
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  t->data = data;
  t->nbytes = nbytes;
  c->n++;
  return 0;
}

static lg_ckpt *ckpt_new(void) {
  lg_ckpt *c = calloc(1, sizeof *c);
  return c;
}

void lg_ckpt_free(lg_ckpt **cp) {
  if (!cp || !*cp) return;
  lg_ckpt *c = *cp;
  for (int i = 0; i < c->nowned; i++)
    free(c->owned[i]);
  for (int i = 0; i < c->nmaps; i++)
    munmap(c->maps[i].p, c->maps[i].n);
  free(c->owned);
  free(c->maps);
  free(c->t);
  free(c->sorted);
  free(c);
  *cp = NULL;
}

int lg_ckpt_count(const lg_ckpt *c) {
  return c ? c->n : 0;
}

const lg_ckpt_tensor *lg_ckpt_at(const lg_ckpt *c, int i) {
  if (!c || i < 0 || i >= c->n) return NULL;
  return &c->t[i];
}

const char *lg_ckpt_format(const lg_ckpt *c) {
  return c ? c->format : NULL;
}

const lg_ckpt_tensor *lg_ckpt_find(const lg_ckpt *c, const char *name) {
  if (!c || !name || !c->sorted) return NULL;
  int lo = 0, hi = c->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int r = strcmp(c->t[c->sorted[mid]].name, name);
    if (r == 0) return &c->t[c->sorted[mid]];
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

lg_tensor lg_ckpt_host_tensor(const lg_ckpt_tensor *t) {
  return lg_tensor_make(NULL, (void *)t->data, t->dtype, t->ndim, t->shape);
}

/* ---- name mapping (MODELS.md 1) ---- */

/* Removes every "_fsdp_wrapped_module." component and leading "model." components. Returns a
 * malloc'ed string. */
static char *strip_name(const char *in) {
  static const char fsdp[] = "_fsdp_wrapped_module.";
  size_t fl = sizeof fsdp - 1;
  size_t n = strlen(in);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0;
  size_t i = 0;
  while (i < n) {
    /* at a component start */
    if (strncmp(in + i, fsdp, fl) == 0) {
      i += fl;
      continue;
    }
    while (i < n && in[i] != '.')
      out[o++] = in[i++];
    if (i < n) out[o++] = in[i++]; /* the dot */
  }
  out[o] = '\0';
  char *s = out;
  while (strncmp(s, "model.", 6) == 0 && s[6] != '\0')
    s += 6;
  if (s != out) memmove(out, s, strlen(s) + 1);
  return out;
}

typedef struct name_rule {
  const char *from;
  const char *to;
} name_rule;

/* Top-level diffusers names -> official names (prefixes matched at a component boundary). */
static const name_rule k_diff_top[] = {
    {"condition_embedder.time_embedder.linear_1", "time_embedding.0"},
    {"condition_embedder.time_embedder.linear_2", "time_embedding.2"},
    {"condition_embedder.time_proj", "time_projection.1"},
    {"condition_embedder.text_embedder.linear_1", "text_embedding.0"},
    {"condition_embedder.text_embedder.linear_2", "text_embedding.2"},
    {"scale_shift_table", "head.modulation"},
    {"proj_out", "head.head"},
};

/* Per-block diffusers names (after "blocks.N.") -> official names. */
static const name_rule k_diff_block[] = {
    {"attn1.to_q", "self_attn.q"},
    {"attn1.to_k", "self_attn.k"},
    {"attn1.to_v", "self_attn.v"},
    {"attn1.to_out.0", "self_attn.o"},
    {"attn1.norm_q", "self_attn.norm_q"},
    {"attn1.norm_k", "self_attn.norm_k"},
    {"attn2.to_q", "cross_attn.q"},
    {"attn2.to_k", "cross_attn.k"},
    {"attn2.to_v", "cross_attn.v"},
    {"attn2.to_out.0", "cross_attn.o"},
    {"attn2.norm_q", "cross_attn.norm_q"},
    {"attn2.norm_k", "cross_attn.norm_k"},
    {"ffn.net.0.proj", "ffn.0"},
    {"ffn.net.2", "ffn.2"},
    {"scale_shift_table", "modulation"},
    {"norm2", "norm3"},
    {"norm3", "norm2"},
};

/* If s starts with rule->from at a component boundary, returns the rest (possibly ""). */
static const char *match_prefix(const char *s, const char *from) {
  size_t l = strlen(from);
  if (strncmp(s, from, l) != 0) return NULL;
  if (s[l] == '\0' || s[l] == '.') return s + l;
  return NULL;
}

static char *join3(const char *a, size_t al, const char *b, const char *c) {
  size_t bl = strlen(b), cl = strlen(c);
  char *o = malloc(al + bl + cl + 1);
  if (!o) return NULL;
  memcpy(o, a, al);
  memcpy(o + al, b, bl);
  memcpy(o + al + bl, c, cl + 1);
  return o;
}

/* Maps one diffusers name; returns a malloc'ed string (a copy when nothing matches). */
static char *map_diffusers(const char *s) {
  for (size_t r = 0; r < sizeof k_diff_top / sizeof k_diff_top[0]; r++) {
    const char *rest = match_prefix(s, k_diff_top[r].from);
    if (rest) return join3("", 0, k_diff_top[r].to, rest);
  }
  if (strncmp(s, "blocks.", 7) == 0) {
    const char *p = s + 7;
    const char *q = p;
    while (isdigit((unsigned char)*q))
      q++;
    if (q > p && *q == '.') {
      const char *tail = q + 1;
      size_t pl = (size_t)(tail - s);
      for (size_t r = 0; r < sizeof k_diff_block / sizeof k_diff_block[0]; r++) {
        const char *rest = match_prefix(tail, k_diff_block[r].from);
        if (rest) return join3(s, pl, k_diff_block[r].to, rest);
      }
    }
  }
  return strdup(s);
}

static int cmp_idx_name(const void *a, const void *b, void *arg) {
  const lg_ckpt *c = arg;
  return strcmp(c->t[*(const int *)a].name, c->t[*(const int *)b].name);
}

/* Renames every tensor, checks for duplicate names and builds the sorted index. */
static int ckpt_finalize(lg_ckpt *c, char *err, size_t errn) {
  bool diffusers = false;
  for (int i = 0; i < c->n; i++) {
    char *s = strip_name(c->t[i].name);
    if (!s || lg_ckpt_keep(c, s)) return lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
    c->t[i].name = s;
    if (strncmp(s, "condition_embedder.", 19) == 0) diffusers = true;
  }
  if (diffusers) {
    for (int i = 0; i < c->n; i++) {
      char *s = map_diffusers(c->t[i].name);
      if (!s || lg_ckpt_keep(c, s)) return lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
      c->t[i].name = s;
    }
  }
  c->sorted = malloc(sizeof(int) * (size_t)(c->n ? c->n : 1));
  if (!c->sorted) return lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
  for (int i = 0; i < c->n; i++)
    c->sorted[i] = i;
  qsort_r(c->sorted, (size_t)c->n, sizeof(int), cmp_idx_name, c);
  for (int i = 1; i < c->n; i++) {
    const char *a = c->t[c->sorted[i - 1]].name, *b = c->t[c->sorted[i]].name;
    if (strcmp(a, b) == 0)
      return lg_ckpt_fail(err, errn, LG_EFORMAT, "duplicate tensor name '%s' (after mapping)", a);
  }
  return 0;
}

/* ---- sharded safetensors ---- */

static int open_index(lg_ckpt *c, const char *path, const uint8_t *p, size_t n, char *err,
                      size_t errn) {
  json_error_t je;
  json_t *root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);
  int rc = 0;
  char *dir = NULL;
  const char **shards = NULL;
  size_t nshards = 0;
  if (!root)
    return lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: bad JSON index: %s (line %d)", path, je.text,
                        je.line);
  json_t *wm = json_object_get(root, "weight_map");
  if (!json_is_object(wm)) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: not a safetensors index (no weight_map object)",
                      path);
    goto done;
  }
  const char *slash = strrchr(path, '/');
  dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup("");
  shards = calloc(json_object_size(wm) + 1, sizeof *shards);
  if (!dir || !shards) {
    rc = lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
    goto done;
  }
  const char *key;
  json_t *val;
  json_object_foreach(wm, key, val) {
    const char *f = json_string_value(val);
    if (!f || !*f || f[0] == '/' || strstr(f, "..")) {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: weight_map['%s'] is not a shard file name",
                        path, key);
      goto done;
    }
    size_t k = 0;
    while (k < nshards && strcmp(shards[k], f) != 0)
      k++;
    if (k == nshards) shards[nshards++] = f;
  }
  if (nshards == 0) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: empty weight_map", path);
    goto done;
  }
  for (size_t k = 0; k < nshards; k++) {
    char *sp = join3(dir, strlen(dir), shards[k], "");
    if (!sp) {
      rc = lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
      goto done;
    }
    const uint8_t *sd;
    size_t sn;
    rc = lg_ckpt_map_file(c, sp, &sd, &sn, err, errn);
    if (rc == 0) rc = lg_st_read(c, sd, sn, sp, err, errn);
    free(sp);
    if (rc) goto done;
  }
  /* every tensor the index names must exist in some shard */
  json_object_foreach(wm, key, val) {
    bool found = false;
    for (int i = 0; i < c->n && !found; i++)
      found = strcmp(c->t[i].name, key) == 0;
    if (!found) {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: tensor '%s' listed in the index is in no shard",
                        path, key);
      goto done;
    }
  }
done:
  free(shards);
  free(dir);
  json_decref(root);
  return rc;
}

/* ---- open ---- */

lg_ckpt *lg_ckpt_open(const char *path, char *err, size_t errn) {
  if (err && errn) err[0] = '\0';
  lg_ckpt *c = ckpt_new();
  if (!c) {
    lg_ckpt_fail(err, errn, LG_ENOMEM, "out of memory");
    return NULL;
  }
  const uint8_t *p;
  size_t n;
  int rc = lg_ckpt_map_file(c, path, &p, &n, err, errn);
  if (rc) goto fail;
  if (n >= 4 && p[0] == 'P' && p[1] == 'K' && p[2] == 3 && p[3] == 4) {
    c->format = "pytorch";
    rc = lg_pt_read(c, p, n, err, errn);
  } else if (n >= 4 && p[0] == 'P' && p[1] == 'K' && p[2] == 5 && p[3] == 6) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "%s: empty zip archive", path);
  } else {
    /* safetensors: u64 header length then '{'. An index is JSON text; a safetensors file whose
     * length byte happens to be '{' is told apart by its header length fitting the file. */
    bool st_like = n >= 9 && p[8] == '{';
    uint64_t hl = 0;
    for (int k = 7; st_like && k >= 0; k--)
      hl = (hl << 8) | p[k];
    bool st_fits = st_like && hl <= n - 8;
    size_t i = 0;
    while (i < n && i < 64 && isspace(p[i]))
      i++;
    bool json = i < n && p[i] == '{';
    if (st_fits || (st_like && !json)) {
      c->format = "safetensors";
      rc = lg_st_read(c, p, n, path, err, errn);
    } else if (json) {
      c->format = "safetensors-sharded";
      rc = open_index(c, path, p, n, err, errn);
      if (rc && st_like) { /* more likely a truncated safetensors file: say so */
        c->format = "safetensors";
        rc = lg_st_read(c, p, n, path, err, errn);
      }
    } else if (n >= 2 && p[0] == 0x80 && p[1] <= 5) {
      rc = lg_ckpt_fail(err, errn, LG_ENOTSUP,
                        "%s: legacy (non-zip) PyTorch pickle; re-save it with torch.save in the "
                        "default zip format",
                        path);
    } else {
      rc = lg_ckpt_fail(err, errn, LG_EFORMAT,
                        "%s: unknown checkpoint format (%s; expected safetensors, "
                        "a safetensors *.index.json or a PyTorch zip .pt/.pth)",
                        path, n < 9 ? "file too short" : "bad magic");
    }
  }
  if (rc) goto fail;
  rc = ckpt_finalize(c, err, errn);
  if (rc) goto fail;
  return c;
fail:
  if (err && errn) {
    size_t pl = strlen(path);
    if (!err[0]) {
      lg_ckpt_fail(err, errn, rc, "%s: %s", path, lg_strerror(rc));
    } else if (strncmp(err, path, pl) != 0 && pl + 3 < errn) {
      char *msg = strdup(err);
      if (msg) lg_ckpt_fail(err, errn, rc, "%s: %s", path, msg);
      free(msg);
    }
  }
  lg_ckpt_free(&c);
  return NULL;
}

/* ---- PyTorch zip pickle ---- */

typedef struct pt_ctx {
  lg_ckpt *c;
  lg_zip zip;
  char prefix[128]; /* "archive/" */
  char *err;
  size_t errn;
  size_t steps; /* dict entries visited: bounds walks through shared or cyclic dicts */
} pt_ctx;

#define PT_MAX_STEPS ((size_t)1 << 20)

static int pt_dtype(const lg_pk_value *st, lg_dtype *out) {
  switch (st->st) {
  case LG_PK_ST_F32: *out = LG_F32; return 0;
  case LG_PK_ST_F16: *out = LG_F16; return 0;
  case LG_PK_ST_BF16: *out = LG_BF16; return 0;
  default: return -1;
  }
}

/* Pushes tensor t named name: a view into the storage blob when contiguous and aligned, a
 * materialised contiguous copy otherwise. */
static int pt_push_tensor(pt_ctx *x, const char *name, const lg_pk_value *t) {
  const lg_pk_value *st = t->storage;
  lg_dtype dt;
  if (pt_dtype(st, &dt))
    return lg_ckpt_fail(x->err, x->errn, LG_ENOTSUP,
                        "tensor '%s' has dtype %s; only float32, float16 and bfloat16 are "
                        "supported",
                        name, lg_pk_storage_name(st->st));
  char ename[256];
  snprintf(ename, sizeof ename, "%sdata/%s", x->prefix, st->s);
  const lg_zip_entry *e = lg_zip_find(&x->zip, ename);
  if (!e)
    return lg_ckpt_fail(x->err, x->errn, LG_EFORMAT, "tensor '%s': storage blob '%s' missing", name,
                        ename);
  const uint8_t *blob;
  size_t blob_n;
  int rc = lg_zip_data(&x->zip, e, &blob, &blob_n, x->err, x->errn);
  if (rc) return rc;
  size_t es = lg_dtype_size(dt), need;
  if (lg_mul_size((size_t)st->numel, es, &need) || need > blob_n)
    return lg_ckpt_fail(x->err, x->errn, LG_EFORMAT,
                        "tensor '%s': storage '%s' claims %llu elements but its blob has %zu bytes",
                        name, st->s, (unsigned long long)st->numel, blob_n);
  /* the pickle VM checked offset + extent < storage numel */
  size_t numel = 1;
  for (int d = 0; d < t->ndim; d++)
    if (lg_mul_size(numel, (size_t)t->shape[d], &numel))
      return lg_ckpt_fail(x->err, x->errn, LG_ERANGE, "tensor '%s' too large", name);
  size_t nbytes = numel * es; /* <= need (checked by the VM's extent test when numel > 0) */
  bool contig = true;
  int64_t expect = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != expect) contig = false;
    expect *= t->shape[d];
  }
  const uint8_t *src = blob + (size_t)t->offset * es;
  const void *data = src;
  if (numel == 0) {
    data = blob;
  } else if (!contig || ((uintptr_t)src % es) != 0) {
    uint8_t *cp = malloc(nbytes);
    if (!cp || lg_ckpt_keep(x->c, cp))
      return lg_ckpt_fail(x->err, x->errn, LG_ENOMEM, "out of memory copying tensor '%s'", name);
    int64_t idx[LG_PK_MAX_DIMS] = {0};
    for (size_t k = 0; k < numel; k++) {
      int64_t off = t->offset;
      for (int d = 0; d < t->ndim; d++)
        off += idx[d] * t->stride[d];
      memcpy(cp + k * es, blob + (size_t)off * es, es);
      for (int d = t->ndim - 1; d >= 0; d--) {
        if (++idx[d] < t->shape[d]) break;
        idx[d] = 0;
      }
    }
    data = cp;
  }
  rc = lg_ckpt_push(x->c, name, strlen(name), dt, t->ndim, t->shape, data, nbytes);
  if (rc) return lg_ckpt_fail(x->err, x->errn, rc, "tensor '%s': %s", name, lg_strerror(rc));
  return 0;
}

/* Pushes every tensor of dict d (string keys; nested dicts joined with '.'; other values
 * ignored). depth bounds recursion (and cycles made through the memo). */
static int pt_walk(pt_ctx *x, const lg_pk_value *d, const char *prefix, int depth) {
  if (depth > 8) return lg_ckpt_fail(x->err, x->errn, LG_EFORMAT, "dicts nested too deeply");
  for (size_t i = 0; i + 1 < d->n; i += 2) {
    const lg_pk_value *k = d->items[i], *v = d->items[i + 1];
    if (++x->steps > PT_MAX_STEPS)
      return lg_ckpt_fail(x->err, x->errn, LG_ERANGE,
                          "more than %zu dict entries (cyclic or shared dicts?)", PT_MAX_STEPS);
    if (k->type != LG_PK_STR) continue;
    if (v->type != LG_PK_TENSOR && v->type != LG_PK_DICT) continue;
    if (strlen(k->s) != k->slen || k->slen == 0)
      return lg_ckpt_fail(x->err, x->errn, LG_EFORMAT, "empty or NUL-containing key");
    size_t pl = strlen(prefix);
    char *name = malloc(pl + k->slen + 2);
    if (!name) return lg_ckpt_fail(x->err, x->errn, LG_ENOMEM, "out of memory");
    memcpy(name, prefix, pl);
    memcpy(name + pl, k->s, k->slen + 1);
    int rc;
    if (v->type == LG_PK_TENSOR) {
      rc = pt_push_tensor(x, name, v);
    } else {
      strcat(name, ".");
      rc = pt_walk(x, v, name, depth + 1);
    }
    free(name);
    if (rc) return rc;
  }
  return 0;
}

int lg_pt_read(lg_ckpt *c, const uint8_t *p, size_t n, char *err, size_t errn) {
  pt_ctx x = {.c = c, .err = err, .errn = errn};
  lg_pickle pk = {0};
  int rc = lg_zip_open(&x.zip, p, n, err, errn);
  if (rc) return rc;
  const lg_zip_entry *pkl = NULL;
  for (size_t i = 0; i < x.zip.ne; i++) {
    const char *nm = x.zip.e[i].name;
    const char *sl = strchr(nm, '/');
    if (sl && strcmp(sl, "/data.pkl") == 0 && (size_t)(sl - nm) < sizeof x.prefix - 1) {
      if (pkl) {
        rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "archive holds more than one */data.pkl");
        goto done;
      }
      pkl = &x.zip.e[i];
      memcpy(x.prefix, nm, (size_t)(sl - nm) + 1);
      x.prefix[sl - nm + 1] = '\0';
    }
  }
  if (!pkl) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT,
                      "zip archive without <name>/data.pkl: not a torch.save checkpoint");
    goto done;
  }
  char bo_name[160];
  snprintf(bo_name, sizeof bo_name, "%sbyteorder", x.prefix);
  const lg_zip_entry *bo = lg_zip_find(&x.zip, bo_name);
  if (bo) {
    const uint8_t *bd;
    size_t bn;
    if ((rc = lg_zip_data(&x.zip, bo, &bd, &bn, err, errn))) goto done;
    if (!(bn == 6 && memcmp(bd, "little", 6) == 0)) {
      rc = lg_ckpt_fail(err, errn, LG_ENOTSUP, "big-endian checkpoint not supported");
      goto done;
    }
  }
  const uint8_t *pd;
  size_t pn;
  if ((rc = lg_zip_data(&x.zip, pkl, &pd, &pn, err, errn))) goto done;
  if ((rc = lg_pickle_load(&pk, pd, pn, err, errn))) goto done;
  const lg_pk_value *root = pk.root;
  if (root->type != LG_PK_DICT) {
    rc = lg_ckpt_fail(err, errn, LG_EFORMAT, "data.pkl does not hold a dict (state dict)");
    goto done;
  }
  static const char *const k_pick[] = {"generator_ema", "generator", "state_dict"};
  for (size_t i = 0; i < sizeof k_pick / sizeof k_pick[0]; i++) {
    const lg_pk_value *v = lg_pk_dict_get(root, k_pick[i]);
    if (v && v->type == LG_PK_DICT) {
      root = v;
      break;
    }
  }
  rc = pt_walk(&x, root, "", 0);
done:
  lg_pickle_free(&pk);
  lg_zip_free(&x.zip);
  return rc;
}
