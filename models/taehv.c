/* taehv.c: the TAEHV decoder (see taehv.h, docs/VAE.md). Owns the weights, the MemBlock
 * memories of streams and the layer walk of the reference nn.Sequential decoder:
 *   0 Clamp (tanh(x/3)*3), 1 conv(16,n0), 2 ReLU, 3-5 MemBlock(n0), 6 Upsample, 7 TGrow(n0,1),
 *   8 conv(n0,n1) no bias, 9-11 MemBlock(n1), 12 Upsample, 13 TGrow(n1,2), 14 conv(n1,n2),
 *   15-17 MemBlock(n2), 18 Upsample, 19 TGrow(n2,2), 20 conv(n2,n3), 21 ReLU, 22 conv(n3,3).
 * Memory works as in wan_vae.c: a dry pass records the largest view of each activation slot,
 * then one arena is allocated and real calls only take views. Runs on the backend's thread. */
#include "taehv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "taehv"
#define N_LEVELS 3
#define N_MEM 9
#define T_TRIM 3 /* 2^2 - 1: frames the decoder emits before it is aligned with the Wan VAE */

static const int tgrow_stride[N_LEVELS] = {1, 2, 2}; /* decoder_time_upscale (False, True, True) */
static const int mem_index[N_MEM] = {3, 4, 5, 9, 10, 11, 15, 16, 17};
static const int tgrow_index[N_LEVELS] = {7, 13, 19};
static const int proj_index[N_LEVELS] = {8, 14, 20};

typedef struct conv_w {
  lg_tensor w; /* CONV [Co,Ci,3,3] or LINEAR [Co,Ci] */
  lg_tensor b; /* [Co] or data NULL */
} conv_w;

typedef struct mem_blk {
  conv_w c0, c2, c4; /* conv.0 [n,2n,3,3], conv.2 / conv.4 [n,n,3,3], all with bias */
} mem_blk;

struct lg_taehv {
  lg_backend *be;
  int zc;    /* latent channels (16) */
  int nf[4]; /* widths n0..n3 (256,128,64,64 real) */
  conv_w in; /* decoder.1 [n0,z,3,3] */
  mem_blk mb[N_MEM];
  conv_w tg[N_LEVELS];   /* TGrow 1x1 as LINEAR [n*s, n], no bias (last n*s channels kept) */
  conv_w proj[N_LEVELS]; /* decoder.8/14/20 [n_{l+1}, n_l, 3, 3], no bias */
  conv_w out;            /* decoder.22 [3,n3,3,3] scaled by 2, bias 2b-1: emits x*2-1 */
  lg_tensor owned[64];
  int n_owned;
};

/* ------------------------------------------------------------------------------------------ */
/* loading */

typedef struct loader {
  lg_taehv *t;
  const lg_ckpt *ck;
  char *err;
  size_t errn;
} loader;

static const lg_ckpt_tensor *find4(loader *L, const char *name, int nd, int64_t c0, int64_t c1,
                                   int64_t k) {
  const lg_ckpt_tensor *t = lg_ckpt_find(L->ck, name);
  if (!t) {
    snprintf(L->err, L->errn, "taehv: tensor '%s' missing", name);
    return NULL;
  }
  int ok = (t->dtype == LG_F32 || t->dtype == LG_F16 || t->dtype == LG_BF16) && t->ndim == nd &&
           (c0 < 0 || t->shape[0] == c0) && (nd < 2 || c1 < 0 || t->shape[1] == c1);
  for (int i = 2; ok && i < nd; i++)
    ok = t->shape[i] == k;
  if (!ok) {
    snprintf(
        L->err, L->errn,
        "taehv: tensor '%s' has %d dims [%lld,%lld,...] %s, expected %d dims [%lld,%lld,%lld,%lld]",
        name, t->ndim, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
        lg_dtype_name(t->dtype), nd, (long long)c0, (long long)c1, (long long)k, (long long)k);
    return NULL;
  }
  return t;
}

static int upload(loader *L, const lg_ckpt_tensor *ct, int64_t off, int nd, const int64_t *shape,
                  lg_weight_kind kind, lg_tensor *out) {
  lg_taehv *t = L->t;
  size_t es = lg_dtype_size(ct->dtype);
  lg_tensor host = lg_tensor_make(NULL, (void *)((const uint8_t *)ct->data + (size_t)off * es),
                                  ct->dtype, nd, shape);
  if ((size_t)off * es + lg_tensor_nbytes(&host) > ct->nbytes) {
    snprintf(L->err, L->errn, "taehv: tensor '%s' is shorter than its shape", ct->name);
    return LG_EFORMAT;
  }
  if (t->n_owned >= (int)(sizeof t->owned / sizeof t->owned[0])) return LG_ERANGE;
  int err = t->be->ops->load_weight(t->be, out, &host, kind);
  if (err) {
    snprintf(L->err, L->errn, "taehv: cannot load '%s': %s", ct->name, lg_strerror(err));
    return err;
  }
  if (!out->be) out->be = t->be;
  t->owned[t->n_owned++] = *out;
  return 0;
}

/* decoder.<i>[.sub].weight [co,ci,3,3] (+ bias [co]). */
static int load_conv3(loader *L, const char *name_w, const char *name_b, int co, int ci,
                      conv_w *c) {
  const lg_ckpt_tensor *w = find4(L, name_w, 4, co, ci, 3);
  if (!w) return LG_ENOTFOUND;
  int64_t s[4] = {co, ci, 3, 3};
  int err = upload(L, w, 0, 4, s, LG_WEIGHT_CONV, &c->w);
  if (err || !name_b) return err;
  const lg_ckpt_tensor *b = find4(L, name_b, 1, co, -1, 1);
  if (!b) return LG_ENOTFOUND;
  int64_t sb = co;
  return upload(L, b, 0, 1, &sb, LG_WEIGHT_VECTOR, &c->b);
}

static float elem_f32(const lg_ckpt_tensor *t, int64_t i) {
  if (t->dtype == LG_F32) {
    float f;
    memcpy(&f, (const uint8_t *)t->data + 4 * i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
  return t->dtype == LG_BF16 ? lg_bf16_to_f32(h) : lg_f16_to_f32(h);
}

static int load_all(loader *L) {
  lg_taehv *t = L->t;
  char nw[64], nb[64];
  int err;
  const lg_ckpt_tensor *w1 = lg_ckpt_find(L->ck, "decoder.1.weight");
  if (!w1 || w1->ndim != 4 || w1->shape[0] <= 0 || w1->shape[1] <= 0) {
    snprintf(L->err, L->errn, "taehv: no decoder.1.weight [n0,z,3,3]: not a TAEHV checkpoint");
    return LG_EFORMAT;
  }
  t->nf[0] = (int)w1->shape[0];
  t->zc = (int)w1->shape[1];
  for (int l = 0; l < N_LEVELS; l++) {
    snprintf(nw, sizeof nw, "decoder.%d.weight", proj_index[l]);
    const lg_ckpt_tensor *p = find4(L, nw, 4, -1, t->nf[l], 3);
    if (!p) return LG_ENOTFOUND;
    t->nf[l + 1] = (int)p->shape[0];
  }
  for (int l = 0; l < 4; l++)
    if (t->nf[l] > 4096) {
      snprintf(L->err, L->errn, "taehv: width %d out of range", t->nf[l]);
      return LG_EFORMAT;
    }
  if ((err = load_conv3(L, "decoder.1.weight", "decoder.1.bias", t->nf[0], t->zc, &t->in)))
    return err;
  for (int m = 0; m < N_MEM; m++) {
    int n = t->nf[m / 3], i = mem_index[m];
    conv_w *cs[3] = {&t->mb[m].c0, &t->mb[m].c2, &t->mb[m].c4};
    for (int k = 0; k < 3; k++) {
      snprintf(nw, sizeof nw, "decoder.%d.conv.%d.weight", i, 2 * k);
      snprintf(nb, sizeof nb, "decoder.%d.conv.%d.bias", i, 2 * k);
      if ((err = load_conv3(L, nw, nb, n, k ? n : 2 * n, cs[k]))) return err;
    }
  }
  for (int l = 0; l < N_LEVELS; l++) {
    int n = t->nf[l], s = tgrow_stride[l];
    snprintf(nw, sizeof nw, "decoder.%d.conv.weight", tgrow_index[l]);
    const lg_ckpt_tensor *g = find4(L, nw, 4, -1, n, 1);
    if (!g) return LG_ENOTFOUND;
    if (g->shape[0] < (int64_t)n * s || g->shape[0] % n) {
      snprintf(L->err, L->errn, "taehv: %s has %lld output channels, need a multiple of %d >= %d",
               nw, (long long)g->shape[0], n, n * s);
      return LG_EFORMAT;
    }
    /* the reference patch_tgrow_layers keeps the last n*s output channels */
    int64_t lin[2] = {(int64_t)n * s, n}, off = (g->shape[0] - (int64_t)n * s) * n;
    if ((err = upload(L, g, off, 2, lin, LG_WEIGHT_LINEAR, &t->tg[l].w))) return err;
    snprintf(nw, sizeof nw, "decoder.%d.weight", proj_index[l]);
    if ((err = load_conv3(L, nw, NULL, t->nf[l + 1], n, &t->proj[l]))) return err;
  }
  /* decoder.22 folded with the [0,1] -> [-1,1] map: 2*(w*x + b) - 1 */
  const lg_ckpt_tensor *ow = find4(L, "decoder.22.weight", 4, 3, t->nf[3], 3);
  const lg_ckpt_tensor *ob = ow ? find4(L, "decoder.22.bias", 1, 3, -1, 1) : NULL;
  if (!ow || !ob) return LG_ENOTFOUND;
  int64_t nwel = 3 * (int64_t)t->nf[3] * 9, so[4] = {3, t->nf[3], 3, 3}, sb = 3;
  float *buf = malloc((size_t)(nwel + 3) * sizeof *buf);
  if (!buf) return LG_ENOMEM;
  for (int64_t i = 0; i < nwel; i++)
    buf[i] = 2.0f * elem_f32(ow, i);
  for (int i = 0; i < 3; i++)
    buf[nwel + i] = 2.0f * elem_f32(ob, i) - 1.0f;
  lg_ckpt_tensor fw = {.name = "decoder.22.weight",
                       .dtype = LG_F32,
                       .ndim = 4,
                       .data = buf,
                       .nbytes = (size_t)nwel * 4};
  lg_ckpt_tensor fb = {
      .name = "decoder.22.bias", .dtype = LG_F32, .ndim = 1, .data = buf + nwel, .nbytes = 12};
  err = upload(L, &fw, 0, 4, so, LG_WEIGHT_CONV, &t->out.w);
  if (!err) err = upload(L, &fb, 0, 1, &sb, LG_WEIGHT_VECTOR, &t->out.b);
  free(buf);
  return err;
}

lg_taehv *lg_taehv_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n) {
  char dummy[8];
  if (!err || !n) {
    err = dummy;
    n = sizeof dummy;
  }
  err[0] = 0;
  if (!be || !ck) {
    snprintf(err, n, "taehv: no backend or checkpoint");
    return NULL;
  }
  lg_taehv *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, n, "taehv: out of memory");
    return NULL;
  }
  t->be = be;
  loader L = {t, ck, err, n};
  if (load_all(&L)) {
    if (!err[0]) snprintf(err, n, "taehv: cannot load the checkpoint");
    LG_ERR(MOD, "%s", err);
    lg_taehv_free(&t);
    return NULL;
  }
  LG_INFO(MOD, "loaded TAEHV widths %d/%d/%d/%d, %d latent channels on %s", t->nf[0], t->nf[1],
          t->nf[2], t->nf[3], t->zc, be->ops->name);
  return t;
}

void lg_taehv_free(lg_taehv **pt) {
  if (!pt || !*pt) return;
  lg_taehv *t = *pt;
  for (int i = 0; i < t->n_owned; i++)
    if (t->owned[i].data) t->be->ops->free(t->be, t->owned[i].data);
  free(t);
  *pt = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* forward */

enum { S_P, S_Q, S_A, S_G, S_R, S_U, S_Z, S_N };

typedef struct run {
  lg_backend *be;
  lg_dtype dt;
  int dry;
  uint8_t *slot[S_N];
  size_t cap[S_N], need[S_N]; /* elements */
  lg_tensor *mem;             /* N_MEM memories [1,H,W,n], or NULL: zeros (whole sequence) */
} run;

static uint8_t dry_base[256] __attribute__((aligned(256)));

#define RUN(r, op, ...)                                                                            \
  do {                                                                                             \
    if (!(r)->dry) {                                                                               \
      int rc_ = (r)->be->ops->op((r)->be, __VA_ARGS__);                                            \
      if (rc_ < 0) return rc_;                                                                     \
    }                                                                                              \
  } while (0)

static int slot(run *r, int s, int64_t d0, int64_t d1, int64_t d2, int64_t d3, lg_tensor *t) {
  int64_t shape[4] = {d0, d1, d2, d3};
  size_t ne = (size_t)(d0 * d1 * d2 * d3);
  if (r->dry) {
    if (ne > r->need[s]) r->need[s] = ne;
    *t = lg_tensor_make(r->be, dry_base, r->dt, 4, shape);
    return 0;
  }
  if (ne > r->cap[s]) {
    LG_ERR(MOD, "slot %d: %zu elements needed, %zu sized", s, ne, r->cap[s]);
    return LG_EINVAL;
  }
  *t = lg_tensor_make(r->be, r->slot[s], r->dt, 4, shape);
  return 0;
}

static void swap_pq(run *r) {
  uint8_t *p = r->slot[S_P];
  r->slot[S_P] = r->slot[S_Q];
  r->slot[S_Q] = p;
}

static const lg_conv_opts conv_p1 = {.stride = {1, 1, 1}, .pad_h = {1, 1}, .pad_w = {1, 1}};

static int conv(run *r, lg_tensor *y, const lg_tensor *x, const conv_w *c) {
  RUN(r, conv3d, y, x, &c->w, c->b.data ? &c->b : NULL, &conv_p1);
  return 0;
}

/* MemBlock: x (slot P) [T,H,W,n] in place: x = ReLU(conv4(ReLU(conv2(ReLU(conv0(cat[x, past])))))
 * + x), past = x shifted one frame later, frame 0 taking the memory (zeros for a whole
 * sequence); the memory becomes the last frame of x. */
static int mem_block(run *r, const mem_blk *b, lg_tensor *mem, lg_tensor *x) {
  int64_t T = x->ne[0], H = x->ne[1], W = x->ne[2], n = x->ne[3];
  lg_tensor a, q, a2;
  int err;
  if ((err = slot(r, S_A, T, H, W, 2 * n, &a))) return err;
  lg_tensor ax = lg_tensor_narrow(&a, 3, 0, n), ap = lg_tensor_narrow(&a, 3, n, n);
  lg_tensor ap0 = lg_tensor_narrow(&ap, 0, 0, 1), xl = lg_tensor_narrow(x, 0, T - 1, 1);
  RUN(r, copy, &ax, x);
  if (T > 1) {
    lg_tensor ap1 = lg_tensor_narrow(&ap, 0, 1, T - 1), xf = lg_tensor_narrow(x, 0, 0, T - 1);
    RUN(r, copy, &ap1, &xf);
  }
  if (mem) {
    RUN(r, copy, &ap0, mem);
    RUN(r, copy, mem, &xl);
  } else {
    lg_tensor z;
    if ((err = slot(r, S_Z, 1, H, W, n, &z))) return err;
    RUN(r, memset0, z.data, lg_tensor_nbytes(&z));
    RUN(r, copy, &ap0, &z);
  }
  if ((err = slot(r, S_Q, T, H, W, n, &q))) return err;
  if ((err = conv(r, &q, &a, &b->c0))) return err;
  RUN(r, unary, &q, &q, LG_ACT_RELU, 0.0f);
  if ((err = slot(r, S_A, T, H, W, n, &a2))) return err;
  if ((err = conv(r, &a2, &q, &b->c2))) return err;
  RUN(r, unary, &a2, &a2, LG_ACT_RELU, 0.0f);
  if ((err = conv(r, &q, &a2, &b->c4))) return err;
  RUN(r, axpby, x, 1.0f, &q, 1.0f, x);
  RUN(r, unary, x, x, LG_ACT_RELU, 0.0f);
  return 0;
}

/* Per frame of x (slot P) [T,H,W,n]: nearest 2x, TGrow (1x1 n -> n*s, frame t becomes frames
 * t*s..t*s+s-1 from consecutive channel groups), then the 3x3 projection n -> n'. Result
 * [T*s,2H,2W,n'] in slot P. */
static int up_grow_proj(run *r, int l, const conv_w *tg, const conv_w *proj, int64_t n_out,
                        lg_tensor *x) {
  int64_t T = x->ne[0], H = 2 * x->ne[1], W = 2 * x->ne[2], n = x->ne[3], s = tgrow_stride[l];
  lg_tensor u, g, rr, out;
  int err;
  if ((err = slot(r, S_Q, T * s, H, W, n_out, &out))) return err;
  if ((err = slot(r, S_U, 1, H, W, n, &u))) return err;
  if ((err = slot(r, S_G, 1, H, W, n * s, &g))) return err;
  if ((err = slot(r, S_R, s, H, W, n, &rr))) return err;
  lg_matmul_opts mo = {.trans_b = true};
  for (int64_t f = 0; f < T; f++) {
    lg_tensor xf = lg_tensor_narrow(x, 0, f, 1), of = lg_tensor_narrow(&out, 0, f * s, s);
    RUN(r, upsample2x, &u, &xf);
    RUN(r, matmul, &g, &u, &tg->w, NULL, &mo);
    /* g [1,H,W,s*n] viewed [s,H,W,n] with strides (n, W*s*n, s*n, 1) */
    lg_tensor src = g;
    src.ne[0] = s, src.ne[1] = H, src.ne[2] = W, src.ne[3] = n;
    src.nb[0] = n, src.nb[1] = W * s * n, src.nb[2] = s * n, src.nb[3] = 1;
    RUN(r, copy, &rr, &src);
    if ((err = conv(r, &of, &rr, proj))) return err;
  }
  swap_pq(r);
  return slot(r, S_P, T * s, H, W, n_out, x);
}

/* z [T,h,w,zc] -> all 4T raw frames [4T,8h,8w,3] (already mapped to [-1,1], not clamped) in
 * slot Q; *y is that view. */
static int forward(run *r, const lg_taehv *t, const lg_tensor *z, lg_tensor *y) {
  int64_t T = z->ne[0], h = z->ne[1], w = z->ne[2];
  lg_tensor c, x;
  int err;
  if ((err = slot(r, S_A, T, h, w, t->zc, &c))) return err;
  RUN(r, unary, &c, z, LG_ACT_TANH_SCALED, 3.0f);
  if ((err = slot(r, S_P, T, h, w, t->nf[0], &x))) return err;
  if ((err = conv(r, &x, &c, &t->in))) return err;
  RUN(r, unary, &x, &x, LG_ACT_RELU, 0.0f);
  for (int l = 0; l < N_LEVELS; l++) {
    for (int m = 3 * l; m < 3 * l + 3; m++)
      if ((err = mem_block(r, &t->mb[m], r->mem ? &r->mem[m] : NULL, &x))) return err;
    if ((err = up_grow_proj(r, l, &t->tg[l], &t->proj[l], t->nf[l + 1], &x))) return err;
  }
  RUN(r, unary, &x, &x, LG_ACT_RELU, 0.0f);
  if ((err = slot(r, S_Q, x.ne[0], x.ne[1], x.ne[2], 3, y))) return err;
  return conv(r, y, &x, &t->out);
}

/* ------------------------------------------------------------------------------------------ */
/* streams */

struct lg_taehv_stream {
  lg_taehv *t;
  int height, width;
  lg_arena arena;
  uint8_t *slot[S_N];
  size_t cap[S_N];
  lg_tensor mem[N_MEM]; /* [1, h*2^l, w*2^l, n_l] */
  long calls;
};

static size_t align256(size_t b) {
  return (b + 255) & ~(size_t)255;
}

static int alloc_slots(lg_arena *a, lg_backend *be, size_t need[S_N], size_t extra,
                       uint8_t *slot_out[S_N], size_t cap_out[S_N]) {
  if (need[S_P] < need[S_Q]) need[S_P] = need[S_Q];
  need[S_Q] = need[S_P];
  size_t es = lg_dtype_size(be->act_dtype), total = extra;
  for (int s = 0; s < S_N; s++)
    total += align256((need[s] ? need[s] : 1) * es);
  int err = lg_arena_init(a, be, total);
  if (err) return err;
  for (int s = 0; s < S_N; s++) {
    int64_t n = (int64_t)(need[s] ? need[s] : 1);
    lg_tensor t;
    if ((err = lg_arena_tensor(a, &t, be->act_dtype, 1, &n))) return err;
    slot_out[s] = t.data;
    cap_out[s] = need[s];
  }
  return 0;
}

lg_taehv_stream *lg_taehv_stream_new(lg_taehv *t, int height, int width) {
  if (!t || height <= 0 || width <= 0 || height % 8 || width % 8) {
    LG_ERR(MOD, "stream: frame size %dx%d must be positive multiples of 8", height, width);
    return NULL;
  }
  lg_taehv_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->t = t;
  s->height = height;
  s->width = width;
  lg_backend *be = t->be;
  int64_t h = height / 8, w = width / 8;
  run r;
  memset(&r, 0, sizeof r);
  r.be = be;
  r.dt = be->act_dtype;
  r.dry = 1;
  r.mem = s->mem;
  size_t extra = 0;
  for (int m = 0; m < N_MEM; m++) {
    int l = m / 3;
    int64_t sh[4] = {1, h << l, w << l, t->nf[l]};
    s->mem[m] = lg_tensor_make(be, dry_base, be->act_dtype, 4, sh);
    extra += align256(lg_tensor_nbytes(&s->mem[m]));
  }
  int64_t sz[4] = {1, h, w, t->zc};
  lg_tensor z = lg_tensor_make(be, dry_base, LG_F32, 4, sz), y;
  if (forward(&r, t, &z, &y)) goto fail;
  if (alloc_slots(&s->arena, be, r.need, extra, s->slot, s->cap)) goto fail;
  for (int m = 0; m < N_MEM; m++) {
    lg_tensor *mt = &s->mem[m];
    if (lg_arena_tensor(&s->arena, mt, be->act_dtype, 4, mt->ne)) goto fail;
  }
  if (lg_taehv_stream_reset(s)) goto fail;
  LG_INFO(MOD, "stream %dx%d: %.1f MiB on %s", height, width, (double)s->arena.cap / (1 << 20),
          be->ops->name);
  return s;
fail:
  LG_ERR(MOD, "cannot create a %dx%d stream", height, width);
  lg_taehv_stream_free(&s);
  return NULL;
}

void lg_taehv_stream_free(lg_taehv_stream **ps) {
  if (!ps || !*ps) return;
  lg_arena_free(&(*ps)->arena);
  free(*ps);
  *ps = NULL;
}

size_t lg_taehv_stream_bytes(const lg_taehv_stream *s) {
  return s ? s->arena.cap : 0;
}

int lg_taehv_stream_reset(lg_taehv_stream *s) {
  if (!s) return LG_EINVAL;
  lg_backend *be = s->t->be;
  for (int m = 0; m < N_MEM; m++) {
    int err = be->ops->memset0(be, s->mem[m].data, lg_tensor_nbytes(&s->mem[m]));
    if (err) return err;
  }
  s->calls = 0;
  return 0;
}

static int check_io(const char *what, const lg_tensor *t, int64_t d0, int64_t d1, int64_t d2,
                    int64_t d3, const lg_backend *out_be) {
  int ok = t && t->data && t->ndim == 4 && t->ne[0] == d0 && t->ne[1] == d1 && t->ne[2] == d2 &&
           t->ne[3] == d3 && t->nb[3] == 1;
  if (ok && out_be) ok = t->dtype == out_be->act_dtype && lg_tensor_is_contiguous(t);
  if (ok) return 0;
  char b[64] = "NULL";
  if (t) lg_tensor_shape_str(t, b, sizeof b);
  LG_ERR(MOD, "%s is %s, expected [%lld,%lld,%lld,%lld]%s", what, b, (long long)d0, (long long)d1,
         (long long)d2, (long long)d3, out_be ? " contiguous in the act dtype" : "");
  return LG_EINVAL;
}

int lg_taehv_decode(lg_taehv_stream *s, const lg_tensor *z, lg_tensor *x) {
  if (!s) return LG_EINVAL;
  lg_taehv *t = s->t;
  int64_t T = s->calls ? 4 : 4 - T_TRIM;
  int err;
  if ((err = check_io("taehv decode input", z, 1, s->height / 8, s->width / 8, t->zc, NULL)))
    return err;
  if ((err = check_io("taehv decode output", x, T, s->height, s->width, 3, t->be))) return err;
  run r;
  memset(&r, 0, sizeof r);
  r.be = t->be;
  r.dt = t->be->act_dtype;
  r.mem = s->mem;
  memcpy(r.slot, s->slot, sizeof r.slot);
  memcpy(r.cap, s->cap, sizeof r.cap);
  lg_tensor y;
  if ((err = forward(&r, t, z, &y))) return err;
  lg_tensor keep = lg_tensor_narrow(&y, 0, 4 - T, T);
  RUN(&r, unary, x, &keep, LG_ACT_CLAMP, 1.0f);
  s->calls++;
  return 0;
}

int lg_taehv_decode_clip(lg_taehv *t, const lg_tensor *z, lg_tensor *x) {
  if (!t || !z || z->ndim != 4 || z->ne[0] < 1) {
    LG_ERR(MOD, "decode_clip: latents must be [n,h,w,%d]", t ? t->zc : 16);
    return LG_EINVAL;
  }
  int64_t n = z->ne[0], T = 4 * n - T_TRIM;
  int err;
  if ((err = check_io("taehv decode_clip input", z, n, z->ne[1], z->ne[2], t->zc, NULL)))
    return err;
  if ((err = check_io("taehv decode_clip output", x, T, 8 * z->ne[1], 8 * z->ne[2], 3, t->be)))
    return err;
  run r;
  memset(&r, 0, sizeof r);
  r.be = t->be;
  r.dt = t->be->act_dtype;
  r.dry = 1;
  lg_tensor y;
  if ((err = forward(&r, t, z, &y))) return err;
  lg_arena a = {0};
  r.dry = 0;
  err = alloc_slots(&a, t->be, r.need, 0, r.slot, r.cap);
  if (!err) err = forward(&r, t, z, &y);
  if (!err) {
    lg_tensor keep = lg_tensor_narrow(&y, 0, T_TRIM, T);
    err = t->be->ops->unary(t->be, x, &keep, LG_ACT_CLAMP, 1.0f);
  }
  lg_arena_free(&a);
  return err;
}
