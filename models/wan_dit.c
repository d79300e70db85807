/* wan_dit.c: Wan2.1 DiT, causal use (see wan_dit.h and MODELS.md 2): config from tensors,
 * weight loading with shape checks, context encoding and the KV-cached forward, written only
 * with lg_backend ops. Runs on the thread that owns the backend. */
#include "wan_dit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  B_MOD,
  B_SQW,
  B_SQB,
  B_SKW,
  B_SKB,
  B_SVW,
  B_SVB,
  B_SOW,
  B_SOB,
  B_SNQ,
  B_SNK,
  B_N3W,
  B_N3B,
  B_CQW,
  B_CQB,
  B_CKW,
  B_CKB,
  B_CVW,
  B_CVB,
  B_COW,
  B_COB,
  B_CNQ,
  B_CNK,
  B_F0W,
  B_F0B,
  B_F2W,
  B_F2B,
  B_COUNT
};
enum {
  T_PEW,
  T_PEB,
  T_X0W,
  T_X0B,
  T_X2W,
  T_X2B,
  T_E0W,
  T_E0B,
  T_E2W,
  T_E2B,
  T_P1W,
  T_P1B,
  T_HMOD,
  T_HW,
  T_HB,
  T_COUNT
};

struct lg_wan_dit {
  lg_backend *be;
  lg_wan_dit_config cfg;
  lg_tensor top[T_COUNT];
  lg_tensor *blk; /* [layers][B_COUNT] */
  lg_tensor zero; /* [1, 6*dim] zeros (act dtype): the "scale" of a plain broadcast add */
  lg_tensor mods; /* [layers, 6*dim]: every block's modulation (a copy), for one table pass */
  /* lg_wan_dit_context_weights_to_host: the bytes of the weights only the context pass uses
   * (text_embedding.0/.2 weights, then cross_attn.k/.v weights per layer: ctx_w order), NULL
   * while they live on the backend; their lg_tensors keep shape and dtype, data NULL */
  void **ctx_host;
};

struct lg_dit_ws {
  lg_wan_dit *m;
  lg_arena arena;
  int max_rf, lat_h, lat_w;
  float *host;     /* [max(max_rf*freq_dim)] sinusoid staging */
  lg_tensor tsin;  /* [max_rf, freq_dim] F32 on the backend: the sinusoid of the staged rows */
  int64_t prep_bf; /* row-frames staged in tsin (0: none) */
  float prep_t[LG_DIT_MAX_ROWS * LG_DIT_MAX_CALL]; /* their timesteps */
  int64_t ffn_cap;                                 /* tokens per FFN pass at most */
  bool kv_per_row;                                 /* no batched K/V GEMM over rows */
  bool no_fuse_next; /* the FFN's gated add does not also norm the next block's input */
};

typedef struct wspec {
  char name[96];
  int ndim;
  int64_t shape[LG_MAX_DIMS];
  lg_weight_kind kind;
  lg_tensor *dst;
} wspec;

int lg_wan_dit_read_config(const lg_ckpt *ck, lg_wan_dit_config *cfg, char *err, size_t n) {
  memset(cfg, 0, sizeof *cfg);
  const lg_ckpt_tensor *pe = lg_ckpt_find(ck, "patch_embedding.weight");
  if (!pe)
    return lg_errf(err, n, LG_ENOTFOUND, "missing tensor patch_embedding.weight (not a Wan DiT)");
  if (pe->ndim != 5 || pe->shape[1] != 16 || pe->shape[2] != 1 || pe->shape[3] != 2 ||
      pe->shape[4] != 2 || pe->shape[0] < LG_DIT_HEAD_DIM || pe->shape[0] % LG_DIT_HEAD_DIM ||
      pe->shape[0] > (1 << 16)) {
    char b[96];
    return lg_errf(err, n, LG_EFORMAT,
                   "tensor patch_embedding.weight has shape %s, expected [dim,16,1,2,2] with dim a "
                   "multiple of 128",
                   lg_shape_str(pe->ndim, pe->shape, b, sizeof b));
  }
  cfg->dim = (int)pe->shape[0];
  cfg->heads = cfg->dim / LG_DIT_HEAD_DIM;
  int layers = 0;
  for (int i = 0; i < lg_ckpt_count(ck); i++) {
    const char *nm = lg_ckpt_at(ck, i)->name;
    if (strncmp(nm, "blocks.", 7)) continue;
    char *end = NULL;
    long b = strtol(nm + 7, &end, 10);
    if (end == nm + 7 || *end != '.' || b < 0 || b > 4096)
      return lg_errf(err, n, LG_EFORMAT, "unexpected tensor %s", nm);
    if (b + 1 > layers) layers = (int)b + 1;
  }
  if (layers < 1) return lg_errf(err, n, LG_ENOTFOUND, "no blocks.N tensors in the DiT checkpoint");
  cfg->layers = layers;
  const lg_ckpt_tensor *f0 = lg_ckpt_find(ck, "blocks.0.ffn.0.weight");
  if (!f0) return lg_errf(err, n, LG_ENOTFOUND, "missing tensor blocks.0.ffn.0.weight");
  if (f0->ndim != 2 || f0->shape[1] != cfg->dim || f0->shape[0] < 1 || f0->shape[0] > (1 << 20))
    return lg_errf(err, n, LG_EFORMAT, "tensor blocks.0.ffn.0.weight is not [ffn_dim,%d]",
                   cfg->dim);
  cfg->ffn_dim = (int)f0->shape[0];
  const lg_ckpt_tensor *te = lg_ckpt_find(ck, "text_embedding.0.weight");
  if (!te) return lg_errf(err, n, LG_ENOTFOUND, "missing tensor text_embedding.0.weight");
  if (te->ndim != 2 || te->shape[0] != cfg->dim || te->shape[1] < 1 || te->shape[1] > (1 << 16))
    return lg_errf(err, n, LG_EFORMAT, "tensor text_embedding.0.weight is not [%d,text_dim]",
                   cfg->dim);
  cfg->text_dim = (int)te->shape[1];
  const lg_ckpt_tensor *ti = lg_ckpt_find(ck, "time_embedding.0.weight");
  if (!ti) return lg_errf(err, n, LG_ENOTFOUND, "missing tensor time_embedding.0.weight");
  if (ti->ndim != 2 || ti->shape[0] != cfg->dim || ti->shape[1] < 2 || ti->shape[1] % 2 ||
      ti->shape[1] > (1 << 16))
    return lg_errf(err, n, LG_EFORMAT, "tensor time_embedding.0.weight is not [%d,even freq_dim]",
                   cfg->dim);
  cfg->freq_dim = (int)ti->shape[1];
  return 0;
}

static void add_spec(wspec *s, int *k, lg_tensor *dst, lg_weight_kind kind, int nd, int64_t a,
                     int64_t b, int64_t c, int64_t d, int64_t e, const char *fmt, ...)
    __attribute__((format(printf, 11, 12)));
static void add_spec(wspec *s, int *k, lg_tensor *dst, lg_weight_kind kind, int nd, int64_t a,
                     int64_t b, int64_t c, int64_t d, int64_t e, const char *fmt, ...) {
  wspec *w = &s[(*k)++];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->name, sizeof w->name, fmt, ap);
  va_end(ap);
  w->ndim = nd;
  int64_t sh[5] = {a, b, c, d, e};
  memcpy(w->shape, sh, sizeof sh);
  w->kind = kind;
  w->dst = dst;
}

/* The full tensor list of a model with config c, pointing at m's weight slots. */
static int build_specs(lg_wan_dit *m, wspec **out) {
  const lg_wan_dit_config *c = &m->cfg;
  int64_t d = c->dim, f = c->ffn_dim;
  wspec *s = calloc((size_t)(T_COUNT + B_COUNT * c->layers), sizeof *s);
  if (!s) return LG_ENOMEM;
  int k = 0;
  lg_tensor *t = m->top;
  const lg_weight_kind L = LG_WEIGHT_LINEAR, V = LG_WEIGHT_VECTOR;
  add_spec(s, &k, &t[T_PEW], LG_WEIGHT_CONV, 5, d, 16, 1, 2, 2, "patch_embedding.weight");
  add_spec(s, &k, &t[T_PEB], V, 1, d, 0, 0, 0, 0, "patch_embedding.bias");
  add_spec(s, &k, &t[T_X0W], L, 2, d, c->text_dim, 0, 0, 0, "text_embedding.0.weight");
  add_spec(s, &k, &t[T_X0B], V, 1, d, 0, 0, 0, 0, "text_embedding.0.bias");
  add_spec(s, &k, &t[T_X2W], L, 2, d, d, 0, 0, 0, "text_embedding.2.weight");
  add_spec(s, &k, &t[T_X2B], V, 1, d, 0, 0, 0, 0, "text_embedding.2.bias");
  add_spec(s, &k, &t[T_E0W], L, 2, d, c->freq_dim, 0, 0, 0, "time_embedding.0.weight");
  add_spec(s, &k, &t[T_E0B], V, 1, d, 0, 0, 0, 0, "time_embedding.0.bias");
  add_spec(s, &k, &t[T_E2W], L, 2, d, d, 0, 0, 0, "time_embedding.2.weight");
  add_spec(s, &k, &t[T_E2B], V, 1, d, 0, 0, 0, 0, "time_embedding.2.bias");
  add_spec(s, &k, &t[T_P1W], L, 2, 6 * d, d, 0, 0, 0, "time_projection.1.weight");
  add_spec(s, &k, &t[T_P1B], V, 1, 6 * d, 0, 0, 0, 0, "time_projection.1.bias");
  add_spec(s, &k, &t[T_HMOD], V, 3, 1, 2, d, 0, 0, "head.modulation");
  add_spec(s, &k, &t[T_HW], L, 2, 64, d, 0, 0, 0, "head.head.weight");
  add_spec(s, &k, &t[T_HB], V, 1, 64, 0, 0, 0, 0, "head.head.bias");
  static const char *const qkvo[4] = {"q", "k", "v", "o"};
  for (int l = 0; l < c->layers; l++) {
    lg_tensor *b = m->blk + (size_t)l * B_COUNT;
    add_spec(s, &k, &b[B_MOD], V, 3, 1, 6, d, 0, 0, "blocks.%d.modulation", l);
    for (int a = 0; a < 2; a++) {
      const char *an = a ? "cross_attn" : "self_attn";
      int base = a ? B_CQW : B_SQW;
      for (int j = 0; j < 4; j++) {
        add_spec(s, &k, &b[base + 2 * j], L, 2, d, d, 0, 0, 0, "blocks.%d.%s.%s.weight", l, an,
                 qkvo[j]);
        add_spec(s, &k, &b[base + 2 * j + 1], V, 1, d, 0, 0, 0, 0, "blocks.%d.%s.%s.bias", l, an,
                 qkvo[j]);
      }
      add_spec(s, &k, &b[base + 8], V, 1, d, 0, 0, 0, 0, "blocks.%d.%s.norm_q.weight", l, an);
      add_spec(s, &k, &b[base + 9], V, 1, d, 0, 0, 0, 0, "blocks.%d.%s.norm_k.weight", l, an);
    }
    add_spec(s, &k, &b[B_N3W], V, 1, d, 0, 0, 0, 0, "blocks.%d.norm3.weight", l);
    add_spec(s, &k, &b[B_N3B], V, 1, d, 0, 0, 0, 0, "blocks.%d.norm3.bias", l);
    add_spec(s, &k, &b[B_F0W], L, 2, f, d, 0, 0, 0, "blocks.%d.ffn.0.weight", l);
    add_spec(s, &k, &b[B_F0B], V, 1, f, 0, 0, 0, 0, "blocks.%d.ffn.0.bias", l);
    add_spec(s, &k, &b[B_F2W], L, 2, d, f, 0, 0, 0, "blocks.%d.ffn.2.weight", l);
    add_spec(s, &k, &b[B_F2B], V, 1, d, 0, 0, 0, 0, "blocks.%d.ffn.2.bias", l);
  }
  *out = s;
  return k;
}

/* Every spec present with its shape, and nothing else in the checkpoint. */
static int check_ckpt(const lg_ckpt *ck, const char *what, const wspec *s, int ns, char *err,
                      size_t n) {
  for (int i = 0; i < ns; i++) {
    const lg_ckpt_tensor *t = lg_ckpt_find(ck, s[i].name);
    if (!t) return lg_errf(err, n, LG_ENOTFOUND, "%s: missing tensor %s", what, s[i].name);
    bool ok = t->ndim == s[i].ndim;
    for (int j = 0; ok && j < t->ndim; j++)
      ok = t->shape[j] == s[i].shape[j];
    if (!ok) {
      char a[96], b[96];
      return lg_errf(err, n, LG_EFORMAT, "%s: tensor %s has shape %s, expected %s", what, s[i].name,
                     lg_shape_str(t->ndim, t->shape, a, sizeof a),
                     lg_shape_str(s[i].ndim, s[i].shape, b, sizeof b));
    }
  }
  if (lg_ckpt_count(ck) != ns) {
    for (int i = 0; i < lg_ckpt_count(ck); i++) {
      const char *nm = lg_ckpt_at(ck, i)->name;
      bool found = false;
      for (int j = 0; j < ns && !found; j++)
        found = !strcmp(nm, s[j].name);
      if (!found) return lg_errf(err, n, LG_EFORMAT, "%s: unexpected tensor %s", what, nm);
    }
    return lg_errf(err, n, LG_EFORMAT, "%s: %d tensors, expected %d (duplicates?)", what,
                   lg_ckpt_count(ck), ns);
  }
  return 0;
}

/* [rows, cols] view with row stride `stride` elements, starting `off` elements into t. */
static lg_tensor rows_view(const lg_tensor *t, int64_t off, int64_t rows, int64_t cols,
                           int64_t stride) {
  lg_tensor v = *t;
  v.ndim = 2;
  v.ne[0] = rows;
  v.ne[1] = cols;
  v.nb[0] = stride;
  v.nb[1] = 1;
  v.data = (uint8_t *)t->data + (size_t)off * lg_dtype_size(t->dtype);
  return v;
}

lg_wan_dit *lg_wan_dit_load(lg_backend *be, const lg_ckpt *base, const lg_ckpt *over, char *err,
                            size_t n) {
  wspec *specs = NULL;
  lg_wan_dit *m = calloc(1, sizeof *m);
  if (!m || !be || !base) {
    lg_errf(err, n, LG_EINVAL, "wan dit: no backend, checkpoint or memory");
    goto fail;
  }
  m->be = be;
  if (lg_wan_dit_read_config(base, &m->cfg, err, n) < 0) goto fail;
  const lg_ckpt *src = base;
  if (over) {
    lg_wan_dit_config oc;
    char e2[256];
    if (lg_wan_dit_read_config(over, &oc, e2, sizeof e2) < 0) {
      lg_errf(err, n, LG_EFORMAT, "override weights: %s", e2);
      goto fail;
    }
    if (memcmp(&oc, &m->cfg, sizeof oc)) {
      lg_errf(
          err, n, LG_EFORMAT,
          "override weights are dim %d x %d layers (ffn %d, text %d), the base DiT is dim %d x %d "
          "layers (ffn %d, text %d)",
          oc.dim, oc.layers, oc.ffn_dim, oc.text_dim, m->cfg.dim, m->cfg.layers, m->cfg.ffn_dim,
          m->cfg.text_dim);
      goto fail;
    }
    src = over;
  }
  m->blk = calloc((size_t)m->cfg.layers * B_COUNT, sizeof(lg_tensor));
  if (!m->blk) goto fail;
  int ns = build_specs(m, &specs);
  if (ns < 0) goto fail;
  if (check_ckpt(base, "base DiT", specs, ns, err, n) < 0) goto fail;
  if (over && check_ckpt(over, "override weights", specs, ns, err, n) < 0) goto fail;
  for (int i = 0; i < ns; i++) {
    lg_tensor host = lg_ckpt_host_tensor(lg_ckpt_find(src, specs[i].name));
    if (be->ops->load_weight(be, specs[i].dst, &host, specs[i].kind) < 0) {
      lg_errf(err, n, LG_EBACKEND, "cannot load tensor %s onto the %s backend", specs[i].name,
              be->ops->name);
      goto fail;
    }
    if (!specs[i].dst->be) specs[i].dst->be = be;
  }
  int64_t zs[2] = {1, 6 * (int64_t)m->cfg.dim}, ms[2] = {m->cfg.layers, zs[1]};
  if (lg_tensor_alloc(be, &m->zero, be->act_dtype, 2, zs) < 0 ||
      be->ops->memset0(be, m->zero.data, lg_tensor_nbytes(&m->zero)) < 0 ||
      lg_tensor_alloc(be, &m->mods, m->blk[B_MOD].dtype, 2, ms) < 0) {
    lg_errf(err, n, LG_ENOMEM, "wan dit: cannot allocate on the backend");
    goto fail;
  }
  for (int l = 0; l < m->cfg.layers; l++) {
    lg_tensor dst = rows_view(&m->mods, l * zs[1], 1, zs[1], zs[1]);
    lg_tensor src = rows_view(&m->blk[(size_t)l * B_COUNT + B_MOD], 0, 1, zs[1], zs[1]);
    if (LG_OP(be, copy, &dst, &src) < 0) {
      lg_errf(err, n, LG_EBACKEND, "wan dit: cannot copy the modulation of block %d", l);
      goto fail;
    }
  }
  free(specs);
  LG_INFO("dit", "Wan DiT: dim %d, %d layers, %d heads, ffn %d, text %d, freq %d%s", m->cfg.dim,
          m->cfg.layers, m->cfg.heads, m->cfg.ffn_dim, m->cfg.text_dim, m->cfg.freq_dim,
          over ? " (override weights)" : "");
  return m;
fail:
  free(specs);
  lg_wan_dit_free(&m);
  return NULL;
}

/* The weights only lg_wan_dit_set_context uses: 2 + 2 * layers of them. */
static int ctx_w_count(const lg_wan_dit *m) {
  return 2 + 2 * m->cfg.layers;
}
static lg_tensor *ctx_w(lg_wan_dit *m, int i) {
  if (i < 2) return &m->top[i ? T_X2W : T_X0W];
  i -= 2;
  return &m->blk[(size_t)(i / 2) * B_COUNT + (i % 2 ? B_CVW : B_CKW)];
}

int lg_wan_dit_context_weights_to_host(lg_wan_dit *m, char *err, size_t n) {
  if (m->ctx_host) return 0;
  const int nw = ctx_w_count(m);
  size_t total = 0;
  m->ctx_host = calloc((size_t)nw, sizeof *m->ctx_host);
  if (!m->ctx_host) return lg_errf(err, n, LG_ENOMEM, "wan dit: out of host memory");
  for (int i = 0; i < nw; i++) {
    lg_tensor *w = ctx_w(m, i);
    size_t b = lg_tensor_nbytes(w);
    m->ctx_host[i] = lg_backend_host_alloc(m->be, b);
    if (!m->ctx_host[i] || m->be->ops->download(m->be, m->ctx_host[i], w->data, b) < 0) {
      /* the ones moved so far stay on the host: the model works either way */
      lg_backend_host_free(m->be, m->ctx_host[i]);
      m->ctx_host[i] = NULL;
      return lg_errf(err, n, LG_ENOMEM,
                     "wan dit: cannot move %zu bytes of context weights to the host", b);
    }
    lg_tensor_free(w);
    total += b;
  }
  LG_INFO("dit", "context-only weights (%.1f MiB) moved to host memory", total / 1048576.0);
  return 0;
}

/* The weight to use in the context pass: w itself, or its host bytes uploaded into stage (a
 * workspace buffer of ctx_stage_bytes). Uploads are ordered on the backend after the GEMMs
 * already queued, so one stage buffer serves every weight in turn. */
static int ctx_weight(lg_wan_dit *m, int i, const lg_tensor *stage, lg_tensor *out) {
  *out = *ctx_w(m, i);
  if (!m->ctx_host || !m->ctx_host[i]) return 0;
  out->data = stage->data; /* a view of the stage: never freed */
  return m->be->ops->upload(m->be, out->data, m->ctx_host[i], lg_tensor_nbytes(out));
}

static size_t ctx_stage_bytes(lg_wan_dit *m) {
  size_t b = 0;
  for (int i = 0; i < ctx_w_count(m); i++)
    if (lg_tensor_nbytes(ctx_w(m, i)) > b) b = lg_tensor_nbytes(ctx_w(m, i));
  return b;
}

void lg_wan_dit_free(lg_wan_dit **pm) {
  if (!pm || !*pm) return;
  lg_wan_dit *m = *pm;
  if (m->ctx_host)
    for (int i = 0; i < ctx_w_count(m); i++)
      lg_backend_host_free(m->be, m->ctx_host[i]);
  free(m->ctx_host);
  for (int i = 0; i < T_COUNT; i++)
    lg_tensor_free(&m->top[i]);
  if (m->blk)
    for (int i = 0; i < m->cfg.layers * B_COUNT; i++)
      lg_tensor_free(&m->blk[i]);
  free(m->blk);
  lg_tensor_free(&m->zero);
  lg_tensor_free(&m->mods);
  free(m);
  *pm = NULL;
}

const lg_wan_dit_config *lg_wan_dit_get_config(const lg_wan_dit *m) {
  return &m->cfg;
}
lg_backend *lg_wan_dit_backend(const lg_wan_dit *m) {
  return m->be;
}

/* Tokens per FFN pass: N split into equal passes of at most cap tokens (cap a multiple of
 * 64; a pass is rounded up to a multiple of 64, so never over cap). The hidden
 * [fc, ffn_dim] is the largest activation, so it need not be held for all tokens at once;
 * every token's FFN is independent of the others'. */
/* 4096: the 2-row 480x832 chunk (3120 tokens) in one pass, whose M=3120 GEMMs ran 2-3.7 ms
 * per chunk faster on an H100 than passes of 1560 or 832 tokens (docs/PERFORMANCE.md) */
#define FFN_CAP_DEFAULT 4096
/* Tokens per FFN pass: all N when they fit the cap; else passes of whole frames (HW tokens)
 * where a frame fits, balanced (the 4-row chunk: 2 passes of 3120, whose ffn.2 then takes the
 * gated add; passes of 3136 + 3104 ran ~1.5 ms per chunk slower on an H100); else equal
 * passes rounded up to 64 tokens. Never more than cap (the workspace holds cap rows). */
static int64_t ffn_chunk(int64_t N, int64_t HW, int64_t cap) {
  if (N <= cap) return N;
  if (HW >= 1 && HW <= cap && N % HW == 0) {
    int64_t frames = N / HW, per = cap / HW, passes = (frames + per - 1) / per;
    return (frames + passes - 1) / passes * HW;
  }
  int64_t passes = (N + cap - 1) / cap, fc = (N + passes - 1) / passes;
  fc = (fc + 63) / 64 * 64;
  return fc < N ? fc : N;
}

/* Experiment knobs, read once per workspace: LG_DIT_FFN_TOKENS (tokens per FFN pass, rounded
 * to 64; default FFN_CAP_DEFAULT), LG_DIT_KV_PER_ROW=1 (one K/V GEMM per row even when rows
 * share their slots), LG_DIT_FUSE_NEXT=0 (the next block's modulated norm as its own pass). */
static int64_t env_int(const char *name, int64_t def, int64_t lo, int64_t hi) {
  const char *e = getenv(name);
  if (!e || !*e) return def;
  long long v = strtoll(e, NULL, 10);
  return v < lo ? lo : v > hi ? hi : v;
}

static size_t r256(size_t b) {
  return (b + 255) & ~(size_t)255;
}

lg_dit_ws *lg_dit_ws_new(lg_wan_dit *m, int max_rf, int lat_h, int lat_w) {
  if (!m || max_rf < 1 || lat_h < 2 || lat_w < 2 || lat_h % 2 || lat_w % 2 || lat_h > 4096 ||
      lat_w > 4096 || max_rf > LG_DIT_MAX_ROWS * LG_DIT_MAX_CALL) {
    LG_ERR("dit", "workspace: bad geometry %d row-frames of %dx%d latents", max_rf, lat_h, lat_w);
    return NULL;
  }
  lg_dit_ws *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  const lg_wan_dit_config *c = &m->cfg;
  size_t es = lg_dtype_size(m->be->act_dtype), d = (size_t)c->dim;
  size_t bf = (size_t)max_rf, N = bf * (size_t)(lat_h / 2) * (size_t)(lat_w / 2);
  /* persistent: the staged sinusoid; forward: e, e0, hidden, then the largest of the time
   * embedding, the blocks (m, hb, q, one FFN chunk) and the head; or the context pass */
  const int64_t cap = (env_int("LG_DIT_FFN_TOKENS", FFN_CAP_DEFAULT, 64, 1 << 24) + 63) / 64 * 64;
  size_t fc = N < (size_t)cap ? N : (size_t)cap;
  size_t tsin = r256(bf * (size_t)c->freq_dim * 4);
  size_t t_ph = r256(bf * (size_t)c->freq_dim * es) + 2 * r256(bf * d * es);
  size_t b_ph = r256((size_t)c->layers * bf * 6 * d * es) + 2 * r256(N * d * es) +
                r256(fc * (size_t)c->ffn_dim * es);
  size_t h_ph = 2 * r256(bf * d * es) + r256(N * d * es) + r256(N * 64 * es);
  size_t fwd = r256(bf * d * es) + r256(bf * 6 * d * es) + r256(N * d * es) +
               (t_ph > b_ph ? (t_ph > h_ph ? t_ph : h_ph) : (b_ph > h_ph ? b_ph : h_ph));
  size_t ctx = r256(ctx_stage_bytes(m)) + r256((size_t)LG_DIT_TEXT_LEN * (size_t)c->text_dim * 4) +
               r256((size_t)LG_DIT_TEXT_LEN * (size_t)c->text_dim * es) +
               3 * r256((size_t)LG_DIT_TEXT_LEN * d * es);
  size_t bytes = tsin + (fwd > ctx ? fwd : ctx) + 4096;
  w->m = m;
  w->ffn_cap = cap;
  w->kv_per_row = env_int("LG_DIT_KV_PER_ROW", 0, 0, 1) != 0;
  w->no_fuse_next = env_int("LG_DIT_FUSE_NEXT", 1, 0, 1) == 0;
  w->max_rf = max_rf;
  w->lat_h = lat_h;
  w->lat_w = lat_w;
  w->host = malloc(bf * (size_t)c->freq_dim * sizeof(float));
  int64_t ts[2] = {max_rf, c->freq_dim};
  if (!w->host || lg_arena_init(&w->arena, m->be, bytes) < 0 ||
      lg_arena_tensor(&w->arena, &w->tsin, LG_F32, 2, ts) < 0) {
    lg_dit_ws_free(&w);
    return NULL;
  }
  return w;
}

void lg_dit_ws_free(lg_dit_ws **pw) {
  if (!pw || !*pw) return;
  lg_arena_free(&(*pw)->arena);
  free((*pw)->host);
  free(*pw);
  *pw = NULL;
}

size_t lg_dit_ws_bytes(const lg_dit_ws *w) {
  return w->arena.cap;
}

lg_kv_cache *lg_wan_dit_cache_new(lg_wan_dit *m, int rows, int cap_frames, int lat_h, int lat_w) {
  return lg_kv_cache_new(m->be, m->cfg.layers, m->cfg.dim, rows, cap_frames,
                         (lat_h / 2) * (lat_w / 2), LG_DIT_TEXT_LEN);
}

/* [b, L, heads, 128] view of a [.., L*?, dim] buffer whose batch stride is bstride. */
static lg_tensor heads_view(const lg_tensor *t, int64_t b, int64_t L, int64_t heads,
                            int64_t bstride) {
  lg_tensor v = *t;
  v.ndim = 4;
  v.ne[0] = b;
  v.ne[1] = L;
  v.ne[2] = heads;
  v.ne[3] = LG_DIT_HEAD_DIM;
  v.nb[0] = bstride;
  v.nb[1] = heads * LG_DIT_HEAD_DIM;
  v.nb[2] = LG_DIT_HEAD_DIM;
  v.nb[3] = 1;
  return v;
}

static int linear(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                  const lg_tensor *b, lg_act act) {
  lg_matmul_opts o = {.trans_b = true, .act = act};
  return be->ops->matmul(be, y, x, w, b, &o);
}

static int atensor(lg_dit_ws *ws, lg_tensor *t, lg_dtype dt, int64_t r, int64_t c) {
  int64_t sh[2] = {r, c};
  return lg_arena_tensor(&ws->arena, t, dt, 2, sh);
}

int lg_wan_dit_set_context_layers(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, int kv_first,
                                  int first, int last, const float *ctx) {
  int err = 0;
  lg_backend *be = m->be;
  const lg_wan_dit_config *c = &m->cfg;
  size_t mark = lg_arena_mark(&ws->arena);
  const int64_t L = LG_DIT_TEXT_LEN;
  LG_CHECK(first >= kv_first && first <= last && last <= c->layers &&
               last - kv_first <= kv->layers && kv->dim == c->dim && kv->ctx_len == L,
           LG_EINVAL, "dit",
           "set_context: layers [%d,%d) do not fit this cache (%d layers from %d)", first, last,
           kv->layers, kv_first);
  lg_tensor c32, ca, c1, cc, tmp, stage, w;
  if (m->ctx_host) LG_TRY(atensor(ws, &stage, LG_U8, 1, (int64_t)ctx_stage_bytes(m)));
  LG_TRY(atensor(ws, &c32, LG_F32, L, c->text_dim));
  LG_TRY(atensor(ws, &ca, be->act_dtype, L, c->text_dim));
  LG_TRY(atensor(ws, &c1, be->act_dtype, L, c->dim));
  LG_TRY(atensor(ws, &cc, be->act_dtype, L, c->dim));
  LG_TRY(atensor(ws, &tmp, be->act_dtype, L, c->dim));
  LG_TRY(lg_tensor_upload(&c32, ctx));
  LG_TRY(LG_OP(be, copy, &ca, &c32));
  LG_TRY(ctx_weight(m, 0, &stage, &w));
  LG_TRY(linear(be, &c1, &ca, &w, &m->top[T_X0B], LG_ACT_GELU_TANH));
  LG_TRY(ctx_weight(m, 1, &stage, &w));
  LG_TRY(linear(be, &cc, &c1, &w, &m->top[T_X2B], LG_ACT_NONE));
  for (int l = first; l < last; l++) {
    const lg_tensor *b = m->blk + (size_t)l * B_COUNT;
    LG_TRY(ctx_weight(m, 2 + 2 * l, &stage, &w));
    LG_TRY(linear(be, &tmp, &cc, &w, &b[B_CKB], LG_ACT_NONE));
    LG_TRY(LG_OP(be, rms_norm, &kv->ck[l - kv_first], &tmp, &b[B_CNK], 1e-6f));
    LG_TRY(ctx_weight(m, 3 + 2 * l, &stage, &w));
    LG_TRY(linear(be, &kv->cv[l - kv_first], &cc, &w, &b[B_CVB], LG_ACT_NONE));
  }
  kv->ctx_valid = 1;
fail:
  lg_arena_reset(&ws->arena, mark);
  return err;
}

int lg_wan_dit_set_context(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, const float *ctx) {
  if (kv->layers != m->cfg.layers || kv->dim != m->cfg.dim || kv->ctx_len != LG_DIT_TEXT_LEN) {
    LG_ERR("dit", "set_context: cache does not belong to this model");
    return LG_EINVAL;
  }
  return lg_wan_dit_set_context_layers(m, ws, kv, 0, 0, m->cfg.layers, ctx);
}

/* [rows, cols] contiguous act-dtype tensor check for the split forward's caller tensors. */
static bool is_mat(const lg_tensor *t, lg_dtype dt, int64_t r, int64_t c) {
  return t && t->dtype == dt && lg_tensor_is_contiguous(t) && lg_tensor_numel(t) == r * c &&
         t->ne[t->ndim - 1] == c;
}

/* Whether tsin holds the sinusoid of exactly these rows' timesteps. */
static bool staged(const lg_dit_ws *ws, const lg_dit_row *rows, int64_t B, int64_t F) {
  if (ws->prep_bf != B * F) return false;
  for (int64_t r = 0; r < B * F; r++)
    if (ws->prep_t[r] != rows[r / F].t) return false;
  return true;
}

int lg_wan_dit_prepare(lg_wan_dit *m, lg_dit_ws *ws, const lg_dit_row *rows, int64_t B, int64_t F) {
  int err = 0;
  const lg_wan_dit_config *c = &m->cfg;
  const int64_t BF = B * F;
  LG_CHECK(rows && B >= 1 && F >= 1 && BF <= ws->max_rf && BF <= LG_DIT_MAX_ROWS * LG_DIT_MAX_CALL,
           LG_EINVAL, "dit", "prepare: %lld rows of %lld frames do not fit the workspace",
           (long long)B, (long long)F);
  ws->prep_bf = 0;
  const int half = c->freq_dim / 2;
  for (int64_t r = 0; r < BF; r++) {
    double t = rows[r / F].t;
    for (int k = 0; k < half; k++) {
      double a = t * pow(10000.0, -(double)k / half);
      ws->host[r * c->freq_dim + k] = (float)cos(a);
      ws->host[r * c->freq_dim + half + k] = (float)sin(a);
    }
  }
  LG_TRY(m->be->ops->upload(m->be, ws->tsin.data, ws->host,
                            (size_t)BF * (size_t)c->freq_dim * sizeof(float)));
  for (int64_t r = 0; r < BF; r++)
    ws->prep_t[r] = rows[r / F].t;
  ws->prep_bf = BF;
fail:
  return err;
}

int lg_wan_dit_time(lg_wan_dit *m, lg_dit_ws *ws, const lg_dit_row *rows, int64_t B, int64_t F,
                    lg_tensor *e, lg_tensor *e0) {
  int err = 0;
  lg_backend *be = m->be;
  const lg_wan_dit_config *c = &m->cfg;
  size_t mark = lg_arena_mark(&ws->arena);
  const int64_t BF = B * F, d = c->dim;
  const lg_dtype ad = be->act_dtype;
  LG_CHECK(rows && B >= 1 && F >= 1 && BF <= ws->max_rf && is_mat(e, ad, BF, d) &&
               is_mat(e0, ad, BF, 6 * d),
           LG_EINVAL, "dit", "time: %lld rows of %lld frames do not fit e/e0 or the workspace",
           (long long)B, (long long)F);
  /* s [BF,freq] (host, double -> f32, staged by lg_wan_dit_prepare or here), e [BF,d],
   * e0 [BF,6d] */
  if (!staged(ws, rows, B, F)) LG_TRY(lg_wan_dit_prepare(m, ws, rows, B, F));
  lg_tensor s32 = rows_view(&ws->tsin, 0, BF, c->freq_dim, c->freq_dim), s, e1, se;
  LG_TRY(atensor(ws, &s, ad, BF, c->freq_dim));
  LG_TRY(atensor(ws, &e1, ad, BF, d));
  LG_TRY(atensor(ws, &se, ad, BF, d));
  LG_TRY(LG_OP(be, copy, &s, &s32));
  LG_TRY(linear(be, &e1, &s, &m->top[T_E0W], &m->top[T_E0B], LG_ACT_SILU));
  LG_TRY(linear(be, e, &e1, &m->top[T_E2W], &m->top[T_E2B], LG_ACT_NONE));
  LG_TRY(LG_OP(be, unary, &se, e, LG_ACT_SILU, 0.0f));
  LG_TRY(linear(be, e0, &se, &m->top[T_P1W], &m->top[T_P1B], LG_ACT_NONE));
fail:
  lg_arena_reset(&ws->arena, mark);
  return err;
}

int lg_wan_dit_embed(lg_wan_dit *m, lg_dit_ws *ws, const lg_tensor *x, lg_tensor *hidden) {
  int err = 0;
  lg_backend *be = m->be;
  char sb[128];
  LG_CHECK(x && x->ndim == 5 && x->ne[4] == 16 && lg_tensor_is_contiguous(x) &&
               x->ne[2] == ws->lat_h && x->ne[3] == ws->lat_w,
           LG_EINVAL, "dit", "embed: x %s must be contiguous [B,F,%d,%d,16]",
           x ? lg_tensor_shape_str(x, sb, sizeof sb) : "NULL", ws->lat_h, ws->lat_w);
  const int64_t BF = x->ne[0] * x->ne[1], h = x->ne[2], w = x->ne[3], H = h / 2, W = w / 2;
  const int64_t d = m->cfg.dim;
  LG_CHECK(BF <= ws->max_rf && is_mat(hidden, be->act_dtype, BF * H * W, d), LG_EINVAL, "dit",
           "embed: hidden must be contiguous [%lld, %lld]", (long long)(BF * H * W), (long long)d);
  /* patchify: [BF,h,w,16] -> [BF,H,W,d] = tokens [N,d] in f,h,w order */
  lg_tensor xin, xo;
  int64_t s4[4] = {BF, h, w, 16}, o4[4] = {BF, H, W, d};
  LG_TRY(lg_tensor_reshape(x, 4, s4, &xin));
  LG_TRY(lg_tensor_reshape(hidden, 4, o4, &xo));
  lg_conv_opts co = {.stride = {1, 2, 2}};
  LG_TRY(LG_OP(be, conv3d, &xo, &xin, &m->top[T_PEW], &m->top[T_PEB], &co));
fail:
  return err;
}

/* Frames of rows [b, b+nb) from local frame f (nf frames) that go to the consecutive cache
 * slots [slot, slot+nf) of each of these rows: one K and one V GEMM per segment. */
typedef struct kv_seg {
  int b, nb, f, nf, slot;
} kv_seg;

/* Splits a forward's cache writes into segments: rows with identical slot lists share
 * segments (the usual case: one segment for the whole batch); within a row, runs of
 * consecutive slots. Returns the count (at most B*F). */
static int kv_segs(const lg_dit_row *rows, int64_t B, int64_t F, bool per_row, kv_seg *seg) {
  bool same = !per_row;
  for (int64_t b = 1; b < B && same; b++)
    same = !memcmp(rows[b].slot, rows[0].slot, (size_t)F * sizeof rows[0].slot[0]);
  int n = 0;
  for (int64_t b = 0; b < (same ? 1 : B); b++) {
    for (int64_t f = 0; f < F;) {
      int64_t e = f + 1;
      while (e < F && rows[b].slot[e] == rows[b].slot[e - 1] + 1)
        e++;
      seg[n++] = (kv_seg){.b = (int)b,
                          .nb = same ? (int)B : 1,
                          .f = (int)f,
                          .nf = (int)(e - f),
                          .slot = rows[b].slot[f]};
      f = e;
    }
  }
  return n;
}

/* [nb, nf*HW, d] view of rows [b, b+nb) (batch stride bstride elements), tokens from frame
 * (or slot) f on. */
static lg_tensor seg_view(const lg_tensor *t, int64_t b, int64_t nb, int64_t f, int64_t nf,
                          int64_t HW, int64_t d, int64_t bstride) {
  lg_tensor v = *t;
  v.ndim = 3;
  v.ne[0] = nb;
  v.ne[1] = nf * HW;
  v.ne[2] = d;
  v.nb[0] = bstride;
  v.nb[1] = d;
  v.nb[2] = 1;
  v.data = (uint8_t *)t->data + (size_t)(b * bstride + f * HW * d) * lg_dtype_size(t->dtype);
  return v;
}

int lg_wan_dit_blocks(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, int kv_first, int first,
                      int last, const lg_dit_row *rows, int64_t B, int64_t F, const lg_tensor *e0,
                      lg_tensor *xs) {
  int err = 0;
  lg_backend *be = m->be;
  const lg_wan_dit_config *c = &m->cfg;
  size_t mark = lg_arena_mark(&ws->arena);
  const int64_t H = ws->lat_h / 2, W = ws->lat_w / 2, HW = H * W, T = F * HW, N = B * T;
  const int64_t BF = B * F, d = c->dim, nh = c->heads;
  const lg_dtype ad = be->act_dtype;
  LG_CHECK(rows && first >= kv_first && first <= last && last <= c->layers &&
               last - kv_first <= kv->layers && kv->dim == d,
           LG_EINVAL, "dit", "blocks: layers [%d,%d) do not fit the cache (%d layers from %d)",
           first, last, kv->layers, kv_first);
  LG_CHECK(B >= 1 && B <= kv->rows && B <= LG_DIT_MAX_ROWS && F >= 1 && F <= LG_DIT_MAX_CALL &&
               BF <= ws->max_rf && HW == kv->frame_tokens && is_mat(e0, ad, BF, 6 * d) &&
               is_mat(xs, ad, N, d),
           LG_EINVAL, "dit",
           "blocks: %lld rows of %lld frames do not fit the workspace (%d row-frames), the cache "
           "(%d rows, %d tokens per frame) or hidden/e0",
           (long long)B, (long long)F, ws->max_rf, kv->rows, kv->frame_tokens);
  LG_CHECK(kv->ctx_valid, LG_EINVAL, "dit", "forward: no context set on the cache");
  int32_t kv_len[LG_DIT_MAX_ROWS], fstart[LG_DIT_MAX_ROWS];
  for (int64_t b = 0; b < B; b++) {
    LG_CHECK(rows[b].kv_frames >= 1 && rows[b].kv_frames <= kv->cap_frames &&
                 rows[b].rope_start >= 0 && isfinite(rows[b].t),
             LG_EINVAL, "dit", "forward: row %lld: kv_frames %d (cache %d), rope_start %d",
             (long long)b, rows[b].kv_frames, kv->cap_frames, rows[b].rope_start);
    for (int64_t f = 0; f < F; f++)
      LG_CHECK(rows[b].slot[f] >= 0 && rows[b].slot[f] < rows[b].kv_frames, LG_EINVAL, "dit",
               "forward: row %lld frame %lld: slot %d outside the %d filled slots", (long long)b,
               (long long)f, rows[b].slot[f], rows[b].kv_frames);
    kv_len[b] = rows[b].kv_frames * kv->frame_tokens;
    fstart[b] = rows[b].rope_start;
  }
  if (first == last) return 0;
  /* Buffers: tabs [layers of this call, BF, 6d] the blocks' modulation tables; reused within a
   * layer: hb [N,d] holds the modulated input, then the attention output; q [N,d] holds the
   * queries, then the projection output y; fh [fc, ffn] the FFN hidden of fc tokens at a time.
   * K and V go straight into the cache slots (kv_segs). */
  const int64_t fc = ffn_chunk(N, HW, ws->ffn_cap);
  /* passes of whole frames take the gated add into ffn.2, and with it the next block's
   * modulated input norm (its table made a block ahead) when that block runs in this call */
  const bool ffn_gated = fc % HW == 0, fuse_next = ffn_gated && !ws->no_fuse_next;
  const int nl = last - first;
  lg_tensor tabs, hb, q, fh;
  LG_TRY(atensor(ws, &tabs, ad, nl * BF, 6 * d));
  LG_TRY(atensor(ws, &hb, ad, N, d));
  LG_TRY(atensor(ws, &q, ad, N, d));
  LG_TRY(atensor(ws, &fh, ad, fc, c->ffn_dim));
  kv_seg seg[LG_DIT_MAX_ROWS * LG_DIT_MAX_CALL];
  const int nseg = kv_segs(rows, B, F, ws->kv_per_row, seg);

  const float scale = 1.0f / sqrtf((float)LG_DIT_HEAD_DIM);
  lg_tensor q4 = heads_view(&q, B, T, nh, T * d), o4 = heads_view(&hb, B, T, nh, T * d);
  lg_tensor y = q, o = hb;
  /* the modulation table of block l = its modulation + e0: [BF, 6d], chunks shift_msa,
   * scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp; every block's in one broadcast add
   * x*(1+0) + table over [nl, BF, 6d], e0 repeated per block (stride 0) */
  {
    lg_tensor x3 = *e0, y3 = tabs, mods = rows_view(&m->mods, first * 6 * d, nl, 6 * d, 6 * d);
    lg_tensor zeros = rows_view(&m->zero, 0, nl, 6 * d, 0);
    x3.ndim = y3.ndim = 3;
    x3.ne[0] = y3.ne[0] = nl, x3.ne[1] = y3.ne[1] = BF, x3.ne[2] = y3.ne[2] = 6 * d;
    x3.nb[0] = 0, y3.nb[0] = BF * 6 * d;
    x3.nb[1] = y3.nb[1] = 6 * d, x3.nb[2] = y3.nb[2] = 1;
    LG_TRY(LG_OP(be, modulate, &y3, &x3, &mods, &zeros, BF, false, 0.0f));
  }
  bool h_ready = false; /* hb holds this block's modulated input already */
  for (int l = first; l < last; l++) {
    const lg_tensor *wb = m->blk + (size_t)l * B_COUNT;
    const int kl = l - kv_first;
    const bool fuse = fuse_next && l + 1 < last;
    lg_tensor ch[6], chn[2]; /* this block's table chunks; the next block's shift/scale_msa */
    const int64_t tb = (int64_t)(l - first) * BF * 6 * d;
    for (int j = 0; j < 6; j++)
      ch[j] = rows_view(&tabs, tb + j * d, BF, d, 6 * d);
    for (int j = 0; j < 2 && fuse; j++)
      chn[j] = rows_view(&tabs, tb + BF * 6 * d + j * d, BF, d, 6 * d);

    /* self-attention */
    if (!h_ready) LG_TRY(LG_OP(be, modulate, &hb, xs, &ch[0], &ch[1], HW, true, 1e-6f));
    LG_TRY(linear(be, &q, &hb, &wb[B_SQW], &wb[B_SQB], LG_ACT_NONE));
    LG_TRY(lg_backend_qk_norm_rope(be, &q4, &wb[B_SNQ], 1e-6f, F, H, W, fstart));
    /* K = rope(norm_k(k(hb))) and V = v(hb) straight into the cache slots; K's norm right after
     * its GEMM, while K is still in L2 */
    for (int s = 0; s < nseg; s++) {
      const kv_seg *g = &seg[s];
      lg_tensor src = seg_view(&hb, g->b, g->nb, g->f, g->nf, HW, d, T * d);
      lg_tensor kd = seg_view(&kv->k[kl], g->b, g->nb, g->slot, g->nf, HW, d, kv->cap_tokens * d);
      lg_tensor vd = seg_view(&kv->v[kl], g->b, g->nb, g->slot, g->nf, HW, d, kv->cap_tokens * d);
      LG_TRY(linear(be, &kd, &src, &wb[B_SKW], &wb[B_SKB], LG_ACT_NONE));
      lg_tensor k4 = heads_view(&kd, g->nb, g->nf * HW, nh, kv->cap_tokens * d);
      int32_t kfs[LG_DIT_MAX_ROWS];
      for (int i = 0; i < g->nb; i++)
        kfs[i] = fstart[g->b + i] + g->f;
      LG_TRY(lg_backend_qk_norm_rope(be, &k4, &wb[B_SNK], 1e-6f, g->nf, H, W, kfs));
      LG_TRY(linear(be, &vd, &src, &wb[B_SVW], &wb[B_SVB], LG_ACT_NONE));
    }
    {
      lg_tensor kc = heads_view(&kv->k[kl], B, kv->cap_tokens, nh, kv->cap_tokens * d);
      lg_tensor vc = heads_view(&kv->v[kl], B, kv->cap_tokens, nh, kv->cap_tokens * d);
      LG_TRY(LG_OP(be, attention, &o4, &q4, &kc, &vc, kv_len, scale));
    }
    /* x += gate_msa * o(attn), then the cross-attention's norm3 (affine LN) of the new x into
     * hb, in one pass over x where the backend can */
    LG_TRY(lg_backend_linear_gated_add_ln(be, xs, &o, &wb[B_SOW], &wb[B_SOB], &ch[2], HW, &y, &hb,
                                          &wb[B_N3W], &wb[B_N3B], 1e-6f));

    /* cross-attention: q with norm_q; K/V of the context from the cache */
    LG_TRY(linear(be, &q, &hb, &wb[B_CQW], &wb[B_CQB], LG_ACT_NONE));
    LG_TRY(LG_OP(be, rms_norm, &q, &q, &wb[B_CNQ], 1e-6f));
    {
      /* the context K/V serve every row: all B*T queries as one row (fewer part-full query
       * tiles than B rows of T) */
      int64_t Lc = kv->ctx_len;
      lg_tensor kc = heads_view(&kv->ck[kl], 1, Lc, nh, Lc * d);
      lg_tensor vc = heads_view(&kv->cv[kl], 1, Lc, nh, Lc * d);
      lg_tensor q1 = heads_view(&q, 1, N, nh, N * d), o1 = heads_view(&hb, 1, N, nh, N * d);
      LG_TRY(LG_OP(be, attention, &o1, &q1, &kc, &vc, NULL, scale));
    }
    {
      /* x += o(attn): the residual add in the GEMM (accumulate) */
      lg_matmul_opts ao = {.trans_b = true, .accumulate = true};
      LG_TRY(be->ops->matmul(be, xs, &o, &wb[B_COW], &wb[B_COB], &ao));
    }

    /* FFN */
    LG_TRY(LG_OP(be, modulate, &hb, xs, &ch[3], &ch[4], HW, true, 1e-6f));
    for (int64_t t0 = 0; t0 < N; t0 += fc) {
      const int64_t nt = N - t0 < fc ? N - t0 : fc;
      lg_tensor hc = rows_view(&hb, t0 * d, nt, d, d), yc = rows_view(&y, t0 * d, nt, d, d);
      lg_tensor fc_h = rows_view(&fh, 0, nt, c->ffn_dim, c->ffn_dim);
      LG_TRY(linear(be, &fc_h, &hc, &wb[B_F0W], &wb[B_F0B], LG_ACT_GELU_TANH));
      if (ffn_gated) {
        lg_tensor xc = rows_view(xs, t0 * d, nt, d, d);
        const int64_t g0 = (t0 / HW) * 6 * d;
        lg_tensor gc = rows_view(&ch[5], g0, nt / HW, d, 6 * d);
        if (fuse) { /* this pass's tokens of hb were read by ffn.0: the next input goes there */
          lg_tensor shc = rows_view(&chn[0], g0, nt / HW, d, 6 * d);
          lg_tensor scc = rows_view(&chn[1], g0, nt / HW, d, 6 * d);
          LG_TRY(lg_backend_linear_gated_add_mod(be, &xc, &fc_h, &wb[B_F2W], &wb[B_F2B], &gc, HW,
                                                 &yc, &hc, &shc, &scc, 1e-6f));
        } else {
          LG_TRY(lg_backend_linear_gated_add(be, &xc, &fc_h, &wb[B_F2W], &wb[B_F2B], &gc, HW, &yc));
        }
      } else {
        LG_TRY(linear(be, &yc, &fc_h, &wb[B_F2W], &wb[B_F2B], LG_ACT_NONE));
      }
    }
    if (!ffn_gated) LG_TRY(LG_OP(be, gated_add, xs, &y, &ch[5], HW));
    h_ready = fuse;
  }
fail:
  lg_arena_reset(&ws->arena, mark);
  return err;
}

int lg_wan_dit_head(lg_wan_dit *m, lg_dit_ws *ws, const lg_tensor *xs, const lg_tensor *e,
                    lg_tensor *vout) {
  int err = 0;
  lg_backend *be = m->be;
  size_t mark = lg_arena_mark(&ws->arena);
  char sb[128];
  const lg_dtype ad = be->act_dtype;
  LG_CHECK(vout && vout->ndim == 5 && vout->ne[4] == 16 && lg_tensor_is_contiguous(vout) &&
               vout->ne[2] == ws->lat_h && vout->ne[3] == ws->lat_w,
           LG_EINVAL, "dit", "head: v %s must be contiguous [B,F,%d,%d,16]",
           vout ? lg_tensor_shape_str(vout, sb, sizeof sb) : "NULL", ws->lat_h, ws->lat_w);
  const int64_t BF = vout->ne[0] * vout->ne[1], H = ws->lat_h / 2, W = ws->lat_w / 2;
  const int64_t N = BF * H * W, HW = H * W, d = m->cfg.dim;
  LG_CHECK(BF <= ws->max_rf && is_mat(xs, ad, N, d) && is_mat(e, ad, BF, d), LG_EINVAL, "dit",
           "head: hidden must be [%lld,%lld] and e [%lld,%lld]", (long long)N, (long long)d,
           (long long)BF, (long long)d);
  lg_tensor hsh, hsc, hb, ho;
  LG_TRY(atensor(ws, &hsh, ad, BF, d));
  LG_TRY(atensor(ws, &hsc, ad, BF, d));
  LG_TRY(atensor(ws, &hb, ad, N, d));
  LG_TRY(atensor(ws, &ho, ad, N, 64));
  /* shift = head.modulation[0] + e, scale = head.modulation[1] + e (per frame) */
  {
    lg_tensor zero1 = rows_view(&m->zero, 0, 1, d, d);
    lg_tensor hm0 = rows_view(&m->top[T_HMOD], 0, 1, d, d);
    lg_tensor hm1 = rows_view(&m->top[T_HMOD], d, 1, d, d);
    LG_TRY(LG_OP(be, modulate, &hsh, e, &hm0, &zero1, BF, false, 0.0f));
    LG_TRY(LG_OP(be, modulate, &hsc, e, &hm1, &zero1, BF, false, 0.0f));
    LG_TRY(LG_OP(be, modulate, &hb, xs, &hsh, &hsc, HW, true, 1e-6f));
    LG_TRY(linear(be, &ho, &hb, &m->top[T_HW], &m->top[T_HB], LG_ACT_NONE));
  }
  /* unpatchify: out[(b,f,i,j)][(q*2+r)*16 + c] -> v[b,f,2i+q,2j+r,c] */
  {
    lg_tensor src = ho, dst;
    src.ndim = 5;
    int64_t ne[5] = {BF * H, 2, W, 2, 16}, nb[5] = {W * 64, 32, 64, 16, 1};
    memcpy(src.ne, ne, sizeof ne);
    memcpy(src.nb, nb, sizeof nb);
    LG_TRY(lg_tensor_reshape(vout, 5, ne, &dst));
    LG_TRY(LG_OP(be, copy, &dst, &src));
  }
fail:
  lg_arena_reset(&ws->arena, mark);
  return err;
}

int lg_wan_dit_forward(lg_wan_dit *m, lg_dit_ws *ws, lg_kv_cache *kv, const lg_tensor *x,
                       const lg_dit_row *rows, lg_tensor *vout) {
  int err = 0;
  lg_backend *be = m->be;
  const lg_wan_dit_config *c = &m->cfg;
  size_t mark = lg_arena_mark(&ws->arena);
  char sb[128];
  LG_CHECK(x && vout && rows && x->ndim == 5 && x->ne[4] == 16 && lg_tensor_is_contiguous(x) &&
               lg_tensor_same_shape(x, vout) && lg_tensor_is_contiguous(vout),
           LG_EINVAL, "dit", "forward: x %s must be contiguous [B,F,h,w,16] like v",
           x ? lg_tensor_shape_str(x, sb, sizeof sb) : "NULL");
  const int64_t B = x->ne[0], F = x->ne[1], h = x->ne[2], w = x->ne[3];
  const int64_t HW = (h / 2) * (w / 2), N = B * F * HW, BF = B * F, d = c->dim;
  LG_CHECK(B >= 1 && B <= kv->rows && B <= LG_DIT_MAX_ROWS && F >= 1 && F <= LG_DIT_MAX_CALL &&
               BF <= ws->max_rf && h == ws->lat_h && w == ws->lat_w && HW == kv->frame_tokens,
           LG_EINVAL, "dit",
           "forward: x %s does not fit the workspace (%d row-frames of %dx%d) or the cache (%d "
           "rows, %d tokens per frame)",
           lg_tensor_shape_str(x, sb, sizeof sb), ws->max_rf, ws->lat_h, ws->lat_w, kv->rows,
           kv->frame_tokens);
  LG_CHECK(kv->layers == c->layers, LG_EINVAL, "dit",
           "forward: the cache holds %d layers, the model has %d", kv->layers, c->layers);
  const lg_dtype ad = be->act_dtype;
  lg_tensor e, e0, xs;
  LG_TRY(atensor(ws, &e, ad, BF, d));
  LG_TRY(atensor(ws, &e0, ad, BF, 6 * d));
  LG_TRY(atensor(ws, &xs, ad, N, d));
  LG_TRY(lg_wan_dit_time(m, ws, rows, B, F, &e, &e0));
  LG_TRY(lg_wan_dit_embed(m, ws, x, &xs));
  LG_TRY(lg_wan_dit_blocks(m, ws, kv, 0, 0, c->layers, rows, B, F, &e0, &xs));
  LG_TRY(lg_wan_dit_head(m, ws, &xs, &e, vout));
fail:
  lg_arena_reset(&ws->arena, mark);
  return err;
}
