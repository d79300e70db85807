/* umt5.c: the umT5-xxl text encoder (MODELS.md 5; see umt5.h for the math and layouts):
 * config from tensor shapes, loading with a check of every tensor, the relative position
 * bucket function and the forward. Runs on the thread that owns the backend, once per prompt.
 *
 * Per encode (L = n_ids tokens): the token rows are gathered on the host from the embedding
 * copy and uploaded; per block the [heads, L, L] F32 position bias is built on the host from
 * the block's [buckets, heads] table and uploaded (or used in place by the host fallback).
 * Activations come from one arena sized at load for LG_UMT5_MAX_LEN tokens. */
#include "umt5.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { U_N1, U_Q, U_K, U_V, U_O, U_N2, U_GATE, U_FC1, U_FC2, U_COUNT };

struct lg_umt5 {
  lg_backend *be;
  lg_umt5_config cfg;
  lg_tensor norm_w; /* [dim] final norm */
  lg_tensor *blk;   /* [layers][U_COUNT] */
  float *pos;       /* host [layers][buckets][heads] f32 position bias tables */
  void *emb;        /* host [vocab][dim] in emb_dt: the token embedding */
  lg_dtype emb_dt;
  float *host_x;    /* host [MAX_LEN][dim] f32: gathered embedding rows */
  float *host_bias; /* host [heads][MAX_LEN][MAX_LEN] f32: one block's position bias */
  lg_arena arena;   /* activations for MAX_LEN tokens */
  lg_backend *cpu;  /* attention fallback when be has no attention_bias; else NULL */
  float *fb;        /* host [4][MAX_LEN][heads*head_dim] f32: fallback q, k, v, o */
};

int lg_umt5_bucket(int rel_pos, int buckets, int max_dist) {
  int half = buckets / 2; /* buckets per sign (16) */
  int exact = half / 2;   /* exact below this distance (8) */
  int b = rel_pos > 0 ? half : 0;
  int64_t a = rel_pos < 0 ? -(int64_t)rel_pos : rel_pos;
  if (a < exact) return b + (int)a;
  /* float32 like the reference (torch float ops, then .long() truncation) */
  float f =
      logf((float)a / (float)exact) / logf((float)max_dist / (float)exact) * (float)(half - exact);
  int large = exact + (int)f;
  if (large > half - 1) large = half - 1;
  return b + large;
}

/* 2-d shape of a checkpoint tensor or an error naming it. */
static int shape2(const lg_ckpt *ck, const char *name, int64_t *a, int64_t *b, char *err,
                  size_t n) {
  const lg_ckpt_tensor *t = lg_ckpt_find(ck, name);
  if (!t) return lg_errf(err, n, LG_ENOTFOUND, "umt5: missing tensor %s", name);
  if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0 || t->shape[0] > INT32_MAX ||
      t->shape[1] > INT32_MAX) {
    char s[96];
    return lg_errf(err, n, LG_EFORMAT, "umt5: tensor %s has shape %s, expected 2-d", name,
                   lg_shape_str(t->ndim, t->shape, s, sizeof s));
  }
  *a = t->shape[0];
  *b = t->shape[1];
  return 0;
}

int lg_umt5_read_config(const lg_ckpt *ck, lg_umt5_config *cfg, char *err, size_t n) {
  memset(cfg, 0, sizeof *cfg);
  if (!ck) return lg_errf(err, n, LG_EINVAL, "umt5: no checkpoint");
  int64_t vocab, dim, inner, d2, buckets, heads, ffn, d3;
  int rc;
  if ((rc = shape2(ck, "token_embedding.weight", &vocab, &dim, err, n)) < 0) return rc;
  if ((rc = shape2(ck, "blocks.0.attn.q.weight", &inner, &d2, err, n)) < 0) return rc;
  if ((rc = shape2(ck, "blocks.0.pos_embedding.embedding.weight", &buckets, &heads, err, n)) < 0)
    return rc;
  if ((rc = shape2(ck, "blocks.0.ffn.fc1.weight", &ffn, &d3, err, n)) < 0) return rc;
  if (d2 != dim || d3 != dim)
    return lg_errf(err, n, LG_EFORMAT,
                   "umt5: blocks.0.attn.q / ffn.fc1 take %lld / %lld inputs, the embedding is %lld "
                   "wide",
                   (long long)d2, (long long)d3, (long long)dim);
  if (inner % heads != 0)
    return lg_errf(err, n, LG_EFORMAT, "umt5: attention width %lld is not a multiple of %lld heads",
                   (long long)inner, (long long)heads);
  if (buckets < 4 || buckets % 4 != 0)
    return lg_errf(err, n, LG_EFORMAT,
                   "umt5: %lld relative position buckets (need a multiple of 4)",
                   (long long)buckets);
  int layers = 0;
  for (;; layers++) {
    char nm[96];
    snprintf(nm, sizeof nm, "blocks.%d.norm1.weight", layers);
    if (!lg_ckpt_find(ck, nm)) break;
    if (layers > 1000) return lg_errf(err, n, LG_EFORMAT, "umt5: more than 1000 blocks");
  }
  cfg->vocab = (int)vocab;
  cfg->dim = (int)dim;
  cfg->layers = layers;
  cfg->heads = (int)heads;
  cfg->head_dim = (int)(inner / heads);
  cfg->ffn_dim = (int)ffn;
  cfg->buckets = (int)buckets;
  return 0;
}

typedef struct wspec {
  char name[96];
  int ndim;
  int64_t shape[2];
  lg_tensor *dst; /* backend weight, or NULL for host-side tensors */
  lg_weight_kind kind;
} wspec;

static void spec(wspec *w, lg_tensor *dst, lg_weight_kind kind, int nd, int64_t a, int64_t b,
                 const char *fmt, int layer) {
  snprintf(w->name, sizeof w->name, fmt, layer);
  w->ndim = nd;
  w->shape[0] = a;
  w->shape[1] = b;
  w->dst = dst;
  w->kind = kind;
}

/* The full tensor list: [0] token embedding, [1] norm, then U_COUNT+1 per block (the last
 * being the position table). */
static int build_specs(lg_umt5 *m, wspec **out) {
  const lg_umt5_config *c = &m->cfg;
  int64_t d = c->dim, in = (int64_t)c->heads * c->head_dim, f = c->ffn_dim;
  int ns = 2 + (U_COUNT + 1) * c->layers;
  wspec *s = calloc((size_t)ns, sizeof *s);
  if (!s) return LG_ENOMEM;
  const lg_weight_kind L = LG_WEIGHT_LINEAR, V = LG_WEIGHT_VECTOR;
  spec(&s[0], NULL, V, 2, c->vocab, d, "token_embedding.weight", 0);
  spec(&s[1], &m->norm_w, V, 1, d, 0, "norm.weight", 0);
  for (int l = 0; l < c->layers; l++) {
    wspec *w = s + 2 + (size_t)l * (U_COUNT + 1);
    lg_tensor *b = m->blk + (size_t)l * U_COUNT;
    spec(&w[U_N1], &b[U_N1], V, 1, d, 0, "blocks.%d.norm1.weight", l);
    spec(&w[U_Q], &b[U_Q], L, 2, in, d, "blocks.%d.attn.q.weight", l);
    spec(&w[U_K], &b[U_K], L, 2, in, d, "blocks.%d.attn.k.weight", l);
    spec(&w[U_V], &b[U_V], L, 2, in, d, "blocks.%d.attn.v.weight", l);
    spec(&w[U_O], &b[U_O], L, 2, d, in, "blocks.%d.attn.o.weight", l);
    spec(&w[U_N2], &b[U_N2], V, 1, d, 0, "blocks.%d.norm2.weight", l);
    spec(&w[U_GATE], &b[U_GATE], L, 2, f, d, "blocks.%d.ffn.gate.0.weight", l);
    spec(&w[U_FC1], &b[U_FC1], L, 2, f, d, "blocks.%d.ffn.fc1.weight", l);
    spec(&w[U_FC2], &b[U_FC2], L, 2, d, f, "blocks.%d.ffn.fc2.weight", l);
    spec(&w[U_COUNT], NULL, V, 2, c->buckets, c->heads, "blocks.%d.pos_embedding.embedding.weight",
         l);
  }
  *out = s;
  return ns;
}

/* Every spec present with its shape and a float dtype, and nothing else in the checkpoint. */
static int check_ckpt(const lg_ckpt *ck, const wspec *s, int ns, char *err, size_t n) {
  for (int i = 0; i < ns; i++) {
    const lg_ckpt_tensor *t = lg_ckpt_find(ck, s[i].name);
    if (!t) return lg_errf(err, n, LG_ENOTFOUND, "umt5: missing tensor %s", s[i].name);
    bool ok = t->ndim == s[i].ndim;
    for (int j = 0; ok && j < t->ndim; j++)
      ok = t->shape[j] == s[i].shape[j];
    if (!ok) {
      char a[96], b[96];
      return lg_errf(err, n, LG_EFORMAT, "umt5: tensor %s has shape %s, expected %s", s[i].name,
                     lg_shape_str(t->ndim, t->shape, a, sizeof a),
                     lg_shape_str(s[i].ndim, s[i].shape, b, sizeof b));
    }
    if (t->dtype != LG_F32 && t->dtype != LG_F16 && t->dtype != LG_BF16)
      return lg_errf(err, n, LG_EFORMAT, "umt5: tensor %s is %s, expected F32/F16/BF16", s[i].name,
                     lg_dtype_name(t->dtype));
    size_t want = (size_t)lg_dtype_size(t->dtype) * (size_t)s[i].shape[0] *
                  (size_t)(s[i].ndim == 2 ? s[i].shape[1] : 1);
    if (t->nbytes != want)
      return lg_errf(err, n, LG_EFORMAT, "umt5: tensor %s holds %zu bytes, expected %zu", s[i].name,
                     t->nbytes, want);
  }
  if (lg_ckpt_count(ck) != ns) {
    for (int i = 0; i < lg_ckpt_count(ck); i++) {
      const char *nm = lg_ckpt_at(ck, i)->name;
      bool found = false;
      for (int j = 0; j < ns && !found; j++)
        found = !strcmp(nm, s[j].name);
      if (!found) return lg_errf(err, n, LG_EFORMAT, "umt5: unexpected tensor %s", nm);
    }
    return lg_errf(err, n, LG_EFORMAT, "umt5: %d tensors, expected %d (duplicates?)",
                   lg_ckpt_count(ck), ns);
  }
  return 0;
}

static float ld_f32(const void *p, lg_dtype dt, size_t i) {
  switch (dt) {
  case LG_F16: return lg_f16_to_f32(((const uint16_t *)p)[i]);
  case LG_BF16: return lg_bf16_to_f32(((const uint16_t *)p)[i]);
  default: return ((const float *)p)[i];
  }
}

static size_t r256(size_t b) {
  return (b + 255) & ~(size_t)255;
}

/* Arena bytes for L tokens (see encode for the tensor list). */
static size_t arena_bytes(const lg_umt5_config *c, lg_dtype act, int64_t L) {
  size_t as = lg_dtype_size(act), d = (size_t)c->dim, in = (size_t)c->heads * c->head_dim;
  size_t f = (size_t)c->ffn_dim, l = (size_t)L;
  return 2 * r256(l * d * as) + 4 * r256(l * in * as) + 3 * r256(l * f * as) +
         r256((size_t)c->heads * l * l * sizeof(float));
}

lg_umt5 *lg_umt5_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n) {
  wspec *specs = NULL;
  lg_umt5 *m = calloc(1, sizeof *m);
  if (!m || !be || !ck) {
    lg_errf(err, n, LG_EINVAL, "umt5: no backend, checkpoint or memory");
    goto fail;
  }
  m->be = be;
  if (lg_umt5_read_config(ck, &m->cfg, err, n) < 0) goto fail;
  const lg_umt5_config *c = &m->cfg;
  m->blk = calloc((size_t)c->layers * U_COUNT, sizeof(lg_tensor));
  if (!m->blk) {
    lg_errf(err, n, LG_ENOMEM, "umt5: out of memory");
    goto fail;
  }
  int ns = build_specs(m, &specs);
  if (ns < 0) {
    lg_errf(err, n, LG_ENOMEM, "umt5: out of memory");
    goto fail;
  }
  if (check_ckpt(ck, specs, ns, err, n) < 0) goto fail;

  size_t hh = (size_t)c->heads, mx = LG_UMT5_MAX_LEN, in = hh * (size_t)c->head_dim;
  const lg_ckpt_tensor *e = lg_ckpt_find(ck, "token_embedding.weight");
  m->emb_dt = e->dtype;
  m->emb = malloc(e->nbytes);
  m->pos = malloc(sizeof(float) * (size_t)c->layers * (size_t)c->buckets * hh);
  m->host_x = malloc(sizeof(float) * mx * (size_t)c->dim);
  m->host_bias = malloc(sizeof(float) * hh * mx * mx);
  if (!m->emb || !m->pos || !m->host_x || !m->host_bias) {
    lg_errf(err, n, LG_ENOMEM, "umt5: cannot allocate %zu bytes of host memory", e->nbytes);
    goto fail;
  }
  memcpy(m->emb, e->data, e->nbytes);
  for (int i = 1; i < ns; i++) {
    const lg_ckpt_tensor *t = lg_ckpt_find(ck, specs[i].name);
    if (!specs[i].dst) { /* position table -> host f32 */
      int l = (i - 2) / (U_COUNT + 1);
      float *dst = m->pos + (size_t)l * (size_t)c->buckets * hh;
      for (size_t j = 0; j < (size_t)c->buckets * hh; j++)
        dst[j] = ld_f32(t->data, t->dtype, j);
      continue;
    }
    lg_tensor host = lg_ckpt_host_tensor(t);
    if (be->ops->load_weight(be, specs[i].dst, &host, specs[i].kind) < 0) {
      lg_errf(err, n, LG_EBACKEND, "umt5: cannot load tensor %s onto the %s backend", specs[i].name,
              be->ops->name);
      goto fail;
    }
    if (!specs[i].dst->be) specs[i].dst->be = be;
  }
  if (lg_arena_init(&m->arena, be, arena_bytes(c, be->act_dtype, LG_UMT5_MAX_LEN)) < 0) {
    lg_errf(err, n, LG_ENOMEM, "umt5: cannot allocate the activation arena on %s", be->ops->name);
    goto fail;
  }
  if (!be->ops->attention_bias) {
    m->cpu = lg_backend_new_cpu(0);
    m->fb = malloc(sizeof(float) * 4 * mx * in);
    if (!m->cpu || !m->fb) {
      lg_errf(err, n, LG_ENOMEM, "umt5: cannot set up the host attention fallback");
      goto fail;
    }
    LG_INFO("umt5", "the %s backend has no attention_bias op: umT5 attention runs on the host",
            be->ops->name);
  }
  free(specs);
  LG_INFO("umt5", "umT5 encoder: vocab %d, dim %d, %d layers, %d heads x %d, ffn %d, %d buckets",
          c->vocab, c->dim, c->layers, c->heads, c->head_dim, c->ffn_dim, c->buckets);
  return m;
fail:
  free(specs);
  lg_umt5_free(&m);
  return NULL;
}

void lg_umt5_free(lg_umt5 **pm) {
  if (!pm || !*pm) return;
  lg_umt5 *m = *pm;
  lg_tensor_free(&m->norm_w);
  if (m->blk)
    for (int i = 0; i < m->cfg.layers * U_COUNT; i++)
      lg_tensor_free(&m->blk[i]);
  free(m->blk);
  if (m->arena.base) lg_arena_free(&m->arena);
  lg_backend_free(&m->cpu);
  free(m->fb);
  free(m->pos);
  free(m->emb);
  free(m->host_x);
  free(m->host_bias);
  free(m);
  *pm = NULL;
}

const lg_umt5_config *lg_umt5_get_config(const lg_umt5 *m) {
  return &m->cfg;
}

/* Attention of one block: a = softmax(q k^T + bias) v over all L tokens; q, k, v, a [L, inner]
 * (act dtype), bias [heads, L, L] F32 on the backend (already uploaded unless fallback). */
static int attend(lg_umt5 *m, lg_tensor *a, const lg_tensor *q, const lg_tensor *k,
                  const lg_tensor *v, const lg_tensor *bias, int64_t L) {
  const lg_umt5_config *c = &m->cfg;
  int64_t s4[4] = {1, L, c->heads, c->head_dim};
  int err = 0;
  if (!m->cpu) {
    lg_tensor q4, k4, v4, a4;
    LG_TRY(lg_tensor_reshape(q, 4, s4, &q4));
    LG_TRY(lg_tensor_reshape(k, 4, s4, &k4));
    LG_TRY(lg_tensor_reshape(v, 4, s4, &v4));
    LG_TRY(lg_tensor_reshape(a, 4, s4, &a4));
    return lg_backend_attention_bias(m->be, &a4, &q4, &k4, &v4, bias, NULL, 1.0f);
  }
  /* host fallback: q, k, v down as f32, attention on the private CPU backend, o up */
  size_t nel = (size_t)L * (size_t)c->heads * (size_t)c->head_dim;
  lg_tensor hq = lg_tensor_make(m->cpu, m->fb, LG_F32, 4, s4);
  lg_tensor hk = lg_tensor_make(m->cpu, m->fb + nel, LG_F32, 4, s4);
  lg_tensor hv = lg_tensor_make(m->cpu, m->fb + 2 * nel, LG_F32, 4, s4);
  lg_tensor ho = lg_tensor_make(m->cpu, m->fb + 3 * nel, LG_F32, 4, s4);
  int64_t sb[3] = {c->heads, L, L};
  lg_tensor hb = lg_tensor_make(m->cpu, m->host_bias, LG_F32, 3, sb);
  LG_TRY(lg_tensor_download_f32(q, hq.data));
  LG_TRY(lg_tensor_download_f32(k, hk.data));
  LG_TRY(lg_tensor_download_f32(v, hv.data));
  LG_TRY(lg_backend_attention_bias(m->cpu, &ho, &hq, &hk, &hv, &hb, NULL, 1.0f));
  LG_TRY(lg_tensor_upload_f32(a, ho.data));
  return 0;
fail:
  return err;
}

int lg_umt5_encode(lg_umt5 *m, const int32_t *ids, int n_ids, lg_tensor *out) {
  int err = 0;
  LG_CHECK(m && out && out->be && out->data && (ids || n_ids == 0), LG_EINVAL, "umt5",
           "encode: missing model, ids or output tensor");
  const lg_umt5_config *c = &m->cfg;
  lg_backend *be = m->be;
  char s[96];
  LG_CHECK(out->ndim == 2 && out->ne[1] == c->dim && lg_tensor_is_contiguous(out) &&
               (out->dtype == LG_F32 || out->dtype == LG_F16 || out->dtype == LG_BF16),
           LG_EINVAL, "umt5", "encode: out %s must be a contiguous float [L, %d] tensor",
           lg_tensor_shape_str(out, s, sizeof s), c->dim);
  LG_CHECK(out->be == be, LG_EINVAL, "umt5", "encode: out is on %s, the model on %s",
           out->be->ops->name, be->ops->name);
  LG_CHECK(n_ids >= 0 && n_ids <= LG_UMT5_MAX_LEN && n_ids <= out->ne[0], LG_EINVAL, "umt5",
           "encode: %d ids for %lld output rows (at most %d)", n_ids, (long long)out->ne[0],
           LG_UMT5_MAX_LEN);
  for (int i = 0; i < n_ids; i++)
    LG_CHECK(ids[i] >= 0 && ids[i] < c->vocab, LG_EINVAL, "umt5",
             "encode: token id %d at position %d outside the vocabulary [0, %d)", ids[i], i,
             c->vocab);
  int64_t L = n_ids, d = c->dim, in = (int64_t)c->heads * c->head_dim, f = c->ffn_dim;
  size_t row_bytes = (size_t)d * lg_dtype_size(out->dtype);
  if (L < out->ne[0])
    LG_TRY(be->ops->memset0(be, (uint8_t *)out->data + (size_t)L * row_bytes,
                            (size_t)(out->ne[0] - L) * row_bytes));
  if (L == 0) return 0;

  /* activations: x, h [L,d]; q, k, v, a [L,in]; g, u, p [L,f]; bias [heads,L,L] F32 */
  lg_arena_reset(&m->arena, 0);
  lg_dtype act = be->act_dtype;
  lg_tensor x, h, q, k, v, a, g, u, p, bias;
  LG_TRY(lg_arena_tensor(&m->arena, &x, act, 2, (int64_t[]){L, d}));
  LG_TRY(lg_arena_tensor(&m->arena, &h, act, 2, (int64_t[]){L, d}));
  LG_TRY(lg_arena_tensor(&m->arena, &q, act, 2, (int64_t[]){L, in}));
  LG_TRY(lg_arena_tensor(&m->arena, &k, act, 2, (int64_t[]){L, in}));
  LG_TRY(lg_arena_tensor(&m->arena, &v, act, 2, (int64_t[]){L, in}));
  LG_TRY(lg_arena_tensor(&m->arena, &a, act, 2, (int64_t[]){L, in}));
  LG_TRY(lg_arena_tensor(&m->arena, &g, act, 2, (int64_t[]){L, f}));
  LG_TRY(lg_arena_tensor(&m->arena, &u, act, 2, (int64_t[]){L, f}));
  LG_TRY(lg_arena_tensor(&m->arena, &p, act, 2, (int64_t[]){L, f}));
  LG_TRY(lg_arena_tensor(&m->arena, &bias, LG_F32, 3, (int64_t[]){c->heads, L, L}));

  /* token embedding rows (host gather) */
  for (int64_t i = 0; i < L; i++) {
    size_t base = (size_t)ids[i] * (size_t)d;
    for (int64_t j = 0; j < d; j++)
      m->host_x[i * d + j] = ld_f32(m->emb, m->emb_dt, base + (size_t)j);
  }
  LG_TRY(lg_tensor_upload_f32(&x, m->host_x));

  /* bucket of each relative position key - query in [-(L-1), L-1] */
  int bk[2 * LG_UMT5_MAX_LEN];
  for (int64_t r = -(L - 1); r <= L - 1; r++)
    bk[r + L - 1] = lg_umt5_bucket((int)r, c->buckets, LG_UMT5_MAX_DIST);

  const lg_matmul_opts lin = {.trans_b = true};
  const lg_matmul_opts lin_acc = {.trans_b = true, .accumulate = true};
  const lg_matmul_opts lin_gelu = {.trans_b = true, .act = LG_ACT_GELU_TANH};
  for (int l = 0; l < c->layers; l++) {
    const lg_tensor *w = m->blk + (size_t)l * U_COUNT;
    /* x += o(attn(norm1(x))) */
    LG_TRY(LG_OP(be, rms_norm, &h, &x, &w[U_N1], LG_UMT5_NORM_EPS));
    LG_TRY(LG_OP(be, matmul, &q, &h, &w[U_Q], NULL, &lin));
    LG_TRY(LG_OP(be, matmul, &k, &h, &w[U_K], NULL, &lin));
    LG_TRY(LG_OP(be, matmul, &v, &h, &w[U_V], NULL, &lin));
    const float *tab = m->pos + (size_t)l * (size_t)c->buckets * (size_t)c->heads;
    for (int64_t hd = 0; hd < c->heads; hd++)
      for (int64_t i = 0; i < L; i++) {
        float *row = m->host_bias + (hd * L + i) * L;
        for (int64_t j = 0; j < L; j++)
          row[j] = tab[(size_t)bk[j - i + L - 1] * (size_t)c->heads + (size_t)hd];
      }
    if (!m->cpu) LG_TRY(lg_tensor_upload(&bias, m->host_bias));
    LG_TRY(attend(m, &a, &q, &k, &v, &bias, L));
    LG_TRY(LG_OP(be, matmul, &x, &a, &w[U_O], NULL, &lin_acc));
    /* x += fc2(fc1(h) * gelu_tanh(gate(h))), h = norm2(x) */
    LG_TRY(LG_OP(be, rms_norm, &h, &x, &w[U_N2], LG_UMT5_NORM_EPS));
    LG_TRY(LG_OP(be, matmul, &g, &h, &w[U_GATE], NULL, &lin_gelu));
    LG_TRY(LG_OP(be, matmul, &u, &h, &w[U_FC1], NULL, &lin));
    LG_TRY(be->ops->memset0(be, p.data, lg_tensor_nbytes(&p)));
    LG_TRY(LG_OP(be, gated_add, &p, &u, &g, 1)); /* p = gelu(gate) * fc1 */
    LG_TRY(LG_OP(be, matmul, &x, &p, &w[U_FC2], NULL, &lin_acc));
  }
  LG_TRY(LG_OP(be, rms_norm, &h, &x, &m->norm_w, LG_UMT5_NORM_EPS));
  lg_tensor rows = lg_tensor_narrow(out, 0, 0, L);
  LG_TRY(LG_OP(be, copy, &rows, &h));
  return 0;
fail:
  return err;
}
