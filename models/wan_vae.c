/* wan_vae.c: the Wan2.1 VAE (see wan_vae.h, MODELS.md 4, docs/VAE.md). Owns the weights, the
 * layer walk that mirrors the reference Encoder3d / Decoder3d, the streaming caches and the
 * activation slots. Runs on the thread that owns the backend.
 *
 * How memory works: a forward only ever uses five activation "slots" (P: the running
 * activation, Q: conv output, A: conv input with cached frames in front, H: shortcut / qkv /
 * interleave, U: one upsampled frame) and the caches. Every forward first runs "dry": the same
 * code walks the layers without running ops and records the largest view of each slot and the
 * shape of each cache (in call order, like the reference's feat_idx). The stream then allocates
 * exactly that once, and real calls only take views. */
#include "wan_vae.h"

#include "wan_consts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "wan_vae"
#define CACHE_T 2
#define MAX_CACHES 64
#define N_DOWN 11 /* encoder.downsamples.* for dim_mult [1,2,4,4], 2 res blocks */
#define N_UP 15   /* decoder.upsamples.* (3 res blocks per level) */
#define N_MULT 4

static const int dim_mult[N_MULT] = {1, 2, 4, 4};
static const int temporal_down[N_MULT - 1] = {0, 1, 1}; /* upsample is the reverse */

/* ------------------------------------------------------------------------------------------ */
/* weights */

typedef struct conv_w {
  lg_tensor w; /* backend weight: CONV [Co,Ci,kt,kh,kw] / [Co,Ci,kh,kw], or LINEAR [Co,Ci] */
  lg_tensor b; /* [Co] or data NULL */
} conv_w;

typedef enum { B_RES, B_ATTN, B_DOWN2D, B_DOWN3D, B_UP2D, B_UP3D } blk_kind;

typedef struct blk {
  blk_kind kind;
  int cin, cout;
  lg_tensor g1, g2; /* res: residual.0 [Cin] / residual.3 [Cout] gamma; attn: g1 = norm gamma */
  conv_w c1, c2;    /* res: residual.2 / residual.6; attn: to_qkv [3C,C] / proj [C,C] (LINEAR);
                       resample: c1 = resample.1 (2-d conv), c2 = time_conv */
  conv_w sc;        /* res: shortcut [Cout,Cin] LINEAR when widths differ, else w.data NULL */
} blk;

struct lg_wan_vae {
  lg_backend *be;
  int dim, zdim;
  int has_enc, has_dec;
  conv_w enc_conv1; /* [d,3,3,3,3] */
  blk enc_down[N_DOWN];
  blk enc_mid[3];
  lg_tensor enc_head_g; /* [4d] */
  conv_w enc_head;      /* [2z,4d,3,3,3] */
  conv_w mu_proj;       /* conv1 rows 0..z-1 as LINEAR [z,2z]: mu = first z channels */
  conv_w z_proj;        /* conv2 folded with z*std+mean, LINEAR [z,z] */
  conv_w dec_conv1;     /* [4d,z,3,3,3] */
  blk dec_mid[3];
  blk dec_up[N_UP];
  lg_tensor dec_head_g; /* [d] */
  conv_w dec_head;      /* [3,d,3,3,3] */
  lg_tensor *owned;     /* every backend weight, for free */
  int n_owned, cap_owned;
};

typedef struct loader {
  lg_wan_vae *v;
  const lg_ckpt *ck;
  char *err;
  size_t errn;
} loader;

static int own(loader *L, lg_tensor *t) {
  lg_wan_vae *v = L->v;
  if (v->n_owned == v->cap_owned) {
    int cap = v->cap_owned ? 2 * v->cap_owned : 256;
    lg_tensor *p = realloc(v->owned, (size_t)cap * sizeof *p);
    if (!p) return LG_ENOMEM;
    v->owned = p;
    v->cap_owned = cap;
  }
  v->owned[v->n_owned++] = *t;
  return 0;
}

/* Finds name and checks its shape: exact ndim/shape, or (vec=1) C elements as [C], [C,1,1] or
 * [C,1,1,1]. */
static const lg_ckpt_tensor *find_checked(loader *L, const char *name, int ndim,
                                          const int64_t *shape, int vec) {
  const lg_ckpt_tensor *t = lg_ckpt_find(L->ck, name);
  if (!t) {
    snprintf(L->err, L->errn, "wan-vae: tensor '%s' missing", name);
    return NULL;
  }
  int ok = t->dtype == LG_F32 || t->dtype == LG_F16 || t->dtype == LG_BF16;
  if (vec) {
    ok = ok && t->ndim >= 1 && t->shape[0] == shape[0];
    for (int i = 1; ok && i < t->ndim; i++)
      ok = t->shape[i] == 1;
  } else {
    ok = ok && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
      ok = t->shape[i] == shape[i];
  }
  if (!ok) {
    char want[96] = "", got[96] = "";
    size_t o = 0;
    for (int i = 0; i < (vec ? 1 : ndim) && o < sizeof want; i++)
      o += (size_t)snprintf(want + o, sizeof want - o, i ? ",%lld" : "%lld", (long long)shape[i]);
    o = 0;
    for (int i = 0; i < t->ndim && o < sizeof got; i++)
      o += (size_t)snprintf(got + o, sizeof got - o, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    snprintf(L->err, L->errn, "wan-vae: tensor '%s' is [%s] %s, expected [%s]%s F32/F16/BF16", name,
             got, lg_dtype_name(t->dtype), want, vec ? "(,1...)" : "");
    return NULL;
  }
  return t;
}

/* Uploads `elems` elements of t (from element `off`) viewed with shape[ndim] as a weight. */
static int upload(loader *L, const lg_ckpt_tensor *t, int64_t off, int ndim, const int64_t *shape,
                  lg_weight_kind kind, lg_tensor *out) {
  size_t es = lg_dtype_size(t->dtype);
  lg_tensor host = lg_tensor_make(NULL, (void *)((const uint8_t *)t->data + (size_t)off * es),
                                  t->dtype, ndim, shape);
  if ((size_t)off * es + lg_tensor_nbytes(&host) > t->nbytes) {
    snprintf(L->err, L->errn, "wan-vae: tensor '%s' is shorter than its shape", t->name);
    return LG_EFORMAT;
  }
  lg_backend *be = L->v->be;
  int err = be->ops->load_weight(be, out, &host, kind);
  if (err) {
    snprintf(L->err, L->errn, "wan-vae: cannot load '%s' on %s: %s", t->name, be->ops->name,
             lg_strerror(err));
    return err;
  }
  if (!out->be) out->be = be;
  return own(L, out);
}

static int load_vec(loader *L, const char *name, int64_t c, lg_tensor *out) {
  const lg_ckpt_tensor *t = find_checked(L, name, 1, &c, 1);
  if (!t) return LG_ENOTFOUND;
  return upload(L, t, 0, 1, &c, LG_WEIGHT_VECTOR, out);
}

/* prefix.weight [co,ci,(kt,)k,k] (nd 5 or 4) and prefix.bias [co]. */
static int load_conv(loader *L, const char *prefix, int co, int ci, int nd, int kt, int k, int bias,
                     conv_w *c) {
  char name[256];
  int64_t shape[5] = {co, ci, kt, k, k};
  if (nd == 4) shape[2] = k;
  snprintf(name, sizeof name, "%s.weight", prefix);
  const lg_ckpt_tensor *t = find_checked(L, name, nd, shape, 0);
  if (!t) return LG_ENOTFOUND;
  int err = upload(L, t, 0, nd, shape, LG_WEIGHT_CONV, &c->w);
  if (err || !bias) return err;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return load_vec(L, name, co, &c->b);
}

/* A 1x1(x1) conv prefix.weight [co,ci,1,1(,1)] loaded as a LINEAR [co,ci] weight. */
static int load_1x1(loader *L, const char *prefix, int co, int ci, int nd, conv_w *c) {
  char name[256];
  int64_t shape[5] = {co, ci, 1, 1, 1}, lin[2] = {co, ci};
  snprintf(name, sizeof name, "%s.weight", prefix);
  const lg_ckpt_tensor *t = find_checked(L, name, nd, shape, 0);
  if (!t) return LG_ENOTFOUND;
  int err = upload(L, t, 0, 2, lin, LG_WEIGHT_LINEAR, &c->w);
  if (err) return err;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return load_vec(L, name, co, &c->b);
}

static int load_res(loader *L, const char *prefix, int cin, int cout, blk *b) {
  char p[192];
  b->kind = B_RES;
  b->cin = cin;
  b->cout = cout;
  int err;
  snprintf(p, sizeof p, "%s.residual.0.gamma", prefix);
  if ((err = load_vec(L, p, cin, &b->g1))) return err;
  snprintf(p, sizeof p, "%s.residual.2", prefix);
  if ((err = load_conv(L, p, cout, cin, 5, 3, 3, 1, &b->c1))) return err;
  snprintf(p, sizeof p, "%s.residual.3.gamma", prefix);
  if ((err = load_vec(L, p, cout, &b->g2))) return err;
  snprintf(p, sizeof p, "%s.residual.6", prefix);
  if ((err = load_conv(L, p, cout, cout, 5, 3, 3, 1, &b->c2))) return err;
  if (cin != cout) {
    snprintf(p, sizeof p, "%s.shortcut", prefix);
    if ((err = load_1x1(L, p, cout, cin, 5, &b->sc))) return err;
  }
  return 0;
}

static int load_attn(loader *L, const char *prefix, int c, blk *b) {
  char p[192];
  b->kind = B_ATTN;
  b->cin = b->cout = c;
  int err;
  snprintf(p, sizeof p, "%s.norm.gamma", prefix);
  if ((err = load_vec(L, p, c, &b->g1))) return err;
  snprintf(p, sizeof p, "%s.to_qkv", prefix);
  if ((err = load_1x1(L, p, 3 * c, c, 4, &b->c1))) return err;
  snprintf(p, sizeof p, "%s.proj", prefix);
  return load_1x1(L, p, c, c, 4, &b->c2);
}

static int load_resample(loader *L, const char *prefix, blk_kind kind, int c, blk *b) {
  char p[192];
  b->kind = kind;
  b->cin = c;
  int up = kind == B_UP2D || kind == B_UP3D;
  b->cout = up ? c / 2 : c;
  int err;
  snprintf(p, sizeof p, "%s.resample.1", prefix);
  if ((err = load_conv(L, p, b->cout, c, 4, 1, 3, 1, &b->c1))) return err;
  if (kind == B_UP3D || kind == B_DOWN3D) {
    snprintf(p, sizeof p, "%s.time_conv", prefix);
    if ((err = load_conv(L, p, kind == B_UP3D ? 2 * c : c, c, 5, 3, 1, 1, &b->c2))) return err;
  }
  return 0;
}

static int load_middle(loader *L, const char *prefix, int c, blk mid[3]) {
  char p[128];
  int err;
  snprintf(p, sizeof p, "%s.middle.0", prefix);
  if ((err = load_res(L, p, c, c, &mid[0]))) return err;
  snprintf(p, sizeof p, "%s.middle.1", prefix);
  if ((err = load_attn(L, p, c, &mid[1]))) return err;
  snprintf(p, sizeof p, "%s.middle.2", prefix);
  return load_res(L, p, c, c, &mid[2]);
}

/* Encoder3d(dim, 2z, [1,2,4,4], 2 res blocks, temperal_downsample [F,T,T]). */
static int load_encoder(loader *L) {
  lg_wan_vae *v = L->v;
  int d = v->dim, err, n = 0;
  char p[128];
  if ((err = load_conv(L, "encoder.conv1", d, 3, 5, 3, 3, 1, &v->enc_conv1))) return err;
  int in = d;
  for (int i = 0; i < N_MULT; i++) {
    int out = d * dim_mult[i];
    for (int j = 0; j < 2; j++) {
      snprintf(p, sizeof p, "encoder.downsamples.%d", n);
      if ((err = load_res(L, p, in, out, &v->enc_down[n++]))) return err;
      in = out;
    }
    if (i != N_MULT - 1) {
      snprintf(p, sizeof p, "encoder.downsamples.%d", n);
      blk_kind k = temporal_down[i] ? B_DOWN3D : B_DOWN2D;
      if ((err = load_resample(L, p, k, out, &v->enc_down[n++]))) return err;
    }
  }
  int top = d * dim_mult[N_MULT - 1];
  if ((err = load_middle(L, "encoder", top, v->enc_mid))) return err;
  if ((err = load_vec(L, "encoder.head.0.gamma", top, &v->enc_head_g))) return err;
  if ((err = load_conv(L, "encoder.head.2", 2 * v->zdim, top, 5, 3, 3, 1, &v->enc_head)))
    return err;
  /* conv1 (2z->2z, 1x1x1): only the mu half is ever used. */
  int64_t shape[5] = {2 * v->zdim, 2 * v->zdim, 1, 1, 1}, lin[2] = {v->zdim, 2 * v->zdim};
  const lg_ckpt_tensor *t = find_checked(L, "conv1.weight", 5, shape, 0);
  if (!t) return LG_ENOTFOUND;
  if ((err = upload(L, t, 0, 2, lin, LG_WEIGHT_LINEAR, &v->mu_proj.w))) return err;
  t = find_checked(L, "conv1.bias", 1, shape, 1);
  if (!t) return LG_ENOTFOUND;
  return upload(L, t, 0, 1, lin, LG_WEIGHT_VECTOR, &v->mu_proj.b);
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

/* Decoder3d(dim, z, [1,2,4,4], 2(+1) res blocks, temperal_upsample [T,T,F]) and conv2 with the
 * latent de-normalisation folded in: conv2(z*std + mean) = (W diag(std)) z + (W mean + b). */
static int load_decoder(loader *L) {
  lg_wan_vae *v = L->v;
  int d = v->dim, z = v->zdim, err, n = 0;
  char p[128];
  int64_t shape[5] = {z, z, 1, 1, 1}, lin[2] = {z, z};
  const lg_ckpt_tensor *tw = find_checked(L, "conv2.weight", 5, shape, 0);
  const lg_ckpt_tensor *tb = tw ? find_checked(L, "conv2.bias", 1, shape, 1) : NULL;
  if (!tw || !tb) return LG_ENOTFOUND;
  float wf[LG_WAN_Z_DIM * LG_WAN_Z_DIM], bf[LG_WAN_Z_DIM];
  for (int o = 0; o < z; o++) {
    double acc = elem_f32(tb, o);
    for (int i = 0; i < z; i++) {
      float w = elem_f32(tw, (int64_t)o * z + i);
      wf[o * z + i] = w * lg_wan_latent_std[i];
      acc += (double)w * lg_wan_latent_mean[i];
    }
    bf[o] = (float)acc;
  }
  lg_tensor hw = lg_tensor_make(NULL, wf, LG_F32, 2, lin),
            hb = lg_tensor_make(NULL, bf, LG_F32, 1, lin);
  lg_backend *be = v->be;
  if ((err = be->ops->load_weight(be, &v->z_proj.w, &hw, LG_WEIGHT_LINEAR)) ||
      (v->z_proj.w.be = be, err = own(L, &v->z_proj.w)) ||
      (err = be->ops->load_weight(be, &v->z_proj.b, &hb, LG_WEIGHT_VECTOR)) ||
      (v->z_proj.b.be = be, err = own(L, &v->z_proj.b))) {
    snprintf(L->err, L->errn, "wan-vae: cannot load conv2: %s", lg_strerror(err));
    return err;
  }
  int top = d * dim_mult[N_MULT - 1];
  if ((err = load_conv(L, "decoder.conv1", top, z, 5, 3, 3, 1, &v->dec_conv1))) return err;
  if ((err = load_middle(L, "decoder", top, v->dec_mid))) return err;
  /* dims = [4d, 4d, 4d, 2d, d]; levels 1..3 start at half the previous width (after the
   * resample conv C -> C/2). */
  int dims[N_MULT + 1];
  dims[0] = top;
  for (int i = 0; i < N_MULT; i++)
    dims[i + 1] = d * dim_mult[N_MULT - 1 - i];
  for (int i = 0; i < N_MULT; i++) {
    int in = dims[i], out = dims[i + 1];
    if (i >= 1) in /= 2;
    for (int j = 0; j < 3; j++) {
      snprintf(p, sizeof p, "decoder.upsamples.%d", n);
      if ((err = load_res(L, p, in, out, &v->dec_up[n++]))) return err;
      in = out;
    }
    if (i != N_MULT - 1) {
      snprintf(p, sizeof p, "decoder.upsamples.%d", n);
      blk_kind k = temporal_down[N_MULT - 2 - i] ? B_UP3D : B_UP2D;
      if ((err = load_resample(L, p, k, out, &v->dec_up[n++]))) return err;
    }
  }
  if ((err = load_vec(L, "decoder.head.0.gamma", d, &v->dec_head_g))) return err;
  return load_conv(L, "decoder.head.2", 3, d, 5, 3, 3, 1, &v->dec_head);
}

lg_wan_vae *lg_wan_vae_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n) {
  char dummy[8];
  if (!err || !n) {
    err = dummy;
    n = sizeof dummy;
  }
  err[0] = 0;
  if (!be || !ck) {
    snprintf(err, n, "wan-vae: no backend or checkpoint");
    return NULL;
  }
  lg_wan_vae *v = calloc(1, sizeof *v);
  if (!v) {
    snprintf(err, n, "wan-vae: out of memory");
    return NULL;
  }
  v->be = be;
  v->zdim = LG_WAN_Z_DIM;
  loader L = {v, ck, err, n};
  const lg_ckpt_tensor *e = lg_ckpt_find(ck, "encoder.conv1.weight");
  const lg_ckpt_tensor *d = lg_ckpt_find(ck, "decoder.head.2.weight");
  if (e && e->ndim == 5)
    v->dim = (int)e->shape[0];
  else if (d && d->ndim == 5)
    v->dim = (int)d->shape[1];
  if (v->dim <= 0 || v->dim > 4096) {
    snprintf(err, n,
             "wan-vae: no encoder.conv1.weight or decoder.head.2.weight [.,.,3,3,3]: "
             "not a Wan VAE checkpoint");
    goto fail;
  }
  if (e) {
    if (load_encoder(&L)) goto fail;
    v->has_enc = 1;
  }
  if (d || lg_ckpt_find(ck, "decoder.conv1.weight")) {
    if (load_decoder(&L)) goto fail;
    v->has_dec = 1;
  }
  LG_INFO(MOD, "loaded Wan VAE dim %d (%s%s), %d weights on %s", v->dim,
          v->has_enc ? "encoder" : "", v->has_dec ? (v->has_enc ? "+decoder" : "decoder") : "",
          v->n_owned, be->ops->name);
  return v;
fail:
  LG_ERR(MOD, "%s", err);
  lg_wan_vae_free(&v);
  return NULL;
}

void lg_wan_vae_free(lg_wan_vae **pv) {
  if (!pv || !*pv) return;
  lg_wan_vae *v = *pv;
  for (int i = 0; i < v->n_owned; i++)
    if (v->owned[i].data) v->be->ops->free(v->be, v->owned[i].data);
  free(v->owned);
  free(v);
  *pv = NULL;
}

int lg_wan_vae_dim(const lg_wan_vae *v) {
  return v ? v->dim : 0;
}
int lg_wan_vae_has_encoder(const lg_wan_vae *v) {
  return v ? v->has_enc : 0;
}
int lg_wan_vae_has_decoder(const lg_wan_vae *v) {
  return v ? v->has_dec : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* forward context: slots, caches, dry runs */

enum { S_P, S_Q, S_A, S_H, S_U, S_N };

typedef struct cache_set {
  lg_tensor t[MAX_CACHES]; /* [frames,H,W,C] act dtype */
  int n;
} cache_set;

typedef struct run {
  lg_backend *be;
  lg_dtype dt;
  int dry;   /* measuring pass: record slot and cache shapes, run no op */
  int clip;  /* whole clip: zero causal padding, no caches */
  int first; /* first chunk since new/reset (upsample3d skips time_conv, downsample3d seeds) */
  uint8_t *slot[S_N];
  size_t cap[S_N];  /* elements */
  size_t need[S_N]; /* dry: largest view asked */
  cache_set *cs;
  int ci; /* cache cursor (the reference's feat_idx) */
} run;

static uint8_t dry_base[256] __attribute__((aligned(256)));

#define RUN(r, op, ...)                                                                            \
  do {                                                                                             \
    if (!(r)->dry) {                                                                               \
      int rc_ = (r)->be->ops->op((r)->be, __VA_ARGS__);                                            \
      if (rc_ < 0) return rc_;                                                                     \
    }                                                                                              \
  } while (0)

/* The same for an lg_backend_* wrapper (a fused op with its fallback, cpu/lg_fused.c). */
#define RUN_FN(r, fn, ...)                                                                         \
  do {                                                                                             \
    if (!(r)->dry) {                                                                               \
      int rc_ = fn((r)->be, __VA_ARGS__);                                                          \
      if (rc_ < 0) return rc_;                                                                     \
    }                                                                                              \
  } while (0)

static int64_t prod(int nd, const int64_t *s) {
  int64_t p = 1;
  for (int i = 0; i < nd; i++)
    p *= s[i];
  return p;
}

/* Contiguous view of slot s with the given shape. */
static int slot(run *r, int s, int nd, const int64_t *shape, lg_tensor *t) {
  size_t ne = (size_t)prod(nd, shape);
  if (r->dry) {
    if (ne > r->need[s]) r->need[s] = ne;
    *t = lg_tensor_make(r->be, dry_base, r->dt, nd, shape);
    return 0;
  }
  if (ne > r->cap[s]) {
    LG_ERR(MOD, "slot %d: %zu elements needed, %zu sized (stream sized for another shape)", s, ne,
           r->cap[s]);
    return LG_EINVAL;
  }
  *t = lg_tensor_make(r->be, r->slot[s], r->dt, nd, shape);
  return 0;
}

static void swap_pq(run *r) {
  uint8_t *p = r->slot[S_P];
  r->slot[S_P] = r->slot[S_Q];
  r->slot[S_Q] = p;
}

/* The next cache in call order, [frames,H,W,C]. Dry: records its shape. */
static int next_cache(run *r, int64_t frames, int64_t h, int64_t w, int64_t c, lg_tensor **out) {
  int64_t shape[4] = {frames, h, w, c};
  if (r->ci >= MAX_CACHES) {
    LG_ERR(MOD, "more than %d caches", MAX_CACHES);
    return LG_ERANGE;
  }
  lg_tensor *t = &r->cs->t[r->ci++];
  if (r->dry) {
    if (r->ci > r->cs->n) {
      r->cs->n = r->ci;
      *t = lg_tensor_make(r->be, dry_base, r->dt, 4, shape);
    }
    /* the same cache must have the same shape in every pass */
    for (int i = 0; i < 4; i++)
      if (t->ne[i] != shape[i]) {
        LG_ERR(MOD, "cache %d changes shape between calls", r->ci - 1);
        return LG_EINVAL;
      }
  } else if (r->ci > r->cs->n) {
    LG_ERR(MOD, "cache %d was not sized", r->ci - 1);
    return LG_EINVAL;
  }
  *out = t;
  return 0;
}

static lg_tensor frames(const lg_tensor *t, int64_t start, int64_t len) {
  return lg_tensor_narrow(t, 0, start, len);
}

/* y [T,H,W,Co] = CausalConv3d(pre(x)), x [T,H,W,Ci], pre = SiLU(RMS_norm(x, gamma)) when gamma
 * is given, else identity; k(3,ks,ks) with spatial padding ks/2. Streaming: the cache (the last
 * 2 frames of the previous call's conv input, zeros after reset, which is what the reference's
 * zero padding gives) is put in front instead of zero frames, and then becomes the last 2
 * frames of cat[cache, pre(x)]: a 1-frame call keeps the previous last frame plus the new one,
 * exactly the reference's rule. y may be x's slot (x is read into A first). */
static int causal_conv(run *r, const lg_tensor *x, const lg_tensor *gamma, const conv_w *c, int ks,
                       lg_tensor *y) {
  int64_t T = x->ne[0], H = x->ne[1], W = x->ne[2], Ci = x->ne[3];
  lg_conv_opts o = {.stride = {1, 1, 1}, .pad_h = {ks / 2, ks / 2}, .pad_w = {ks / 2, ks / 2}};
  lg_tensor a;
  int err;
  if (r->clip) {
    /* staged in A even without a norm: x may be a caller's tensor of another dtype */
    int64_t sa[4] = {T, H, W, Ci};
    if ((err = slot(r, S_A, 4, sa, &a))) return err;
    if (gamma) {
      RUN_FN(r, lg_backend_channel_rms_norm_silu, &a, x, gamma);
    } else {
      RUN(r, copy, &a, x);
    }
    o.pad_t_front = CACHE_T;
    RUN(r, conv3d, y, &a, &c->w, c->b.data ? &c->b : NULL, &o);
    return 0;
  }
  int64_t sa[4] = {T + CACHE_T, H, W, Ci};
  if ((err = slot(r, S_A, 4, sa, &a))) return err;
  lg_tensor *cache;
  if ((err = next_cache(r, CACHE_T, H, W, Ci, &cache))) return err;
  lg_tensor ax = frames(&a, CACHE_T, T), ac = frames(&a, 0, CACHE_T), tail = frames(&a, T, CACHE_T);
  if (gamma) {
    RUN_FN(r, lg_backend_channel_rms_norm_silu, &ax, x, gamma);
  } else {
    RUN(r, copy, &ax, x);
  }
  RUN(r, copy, &ac, cache);
  RUN(r, copy, cache, &tail);
  RUN(r, conv3d, y, &a, &c->w, c->b.data ? &c->b : NULL, &o);
  return 0;
}

static int matmul_lin(run *r, lg_tensor *y, const lg_tensor *x, const conv_w *c, int accumulate) {
  lg_matmul_opts o = {.trans_b = true, .accumulate = accumulate != 0};
  RUN(r, matmul, y, x, &c->w, c->b.data ? &c->b : NULL, &o);
  return 0;
}

/* ResidualBlock: x (slot P) [T,H,W,Cin] -> *x (slot P) [T,H,W,Cout]. */
static int res_block(run *r, const blk *b, lg_tensor *x) {
  int64_t T = x->ne[0], H = x->ne[1], W = x->ne[2];
  int64_t so[4] = {T, H, W, b->cout};
  lg_tensor h = *x, y, out;
  int err;
  if (b->sc.w.data) {
    if ((err = slot(r, S_H, 4, so, &h))) return err;
    if ((err = matmul_lin(r, &h, x, &b->sc, 0))) return err;
  }
  if ((err = slot(r, S_Q, 4, so, &y))) return err;
  if ((err = causal_conv(r, x, &b->g1, &b->c1, 3, &y))) return err;
  if ((err = causal_conv(r, &y, &b->g2, &b->c2, 3, &y))) return err;
  if ((err = slot(r, S_P, 4, so, &out))) return err;
  RUN(r, axpby, &out, 1.0f, &y, 1.0f, &h);
  *x = out;
  return 0;
}

/* AttentionBlock, per frame: x += proj(attn(q,k,v)), q,k,v = thirds of to_qkv(RMS_norm(x)), one
 * head of dim C over the H*W tokens, scale 1/sqrt(C). x in slot P, in place. */
static int attn_block(run *r, const blk *b, lg_tensor *x) {
  int64_t T = x->ne[0], L = x->ne[1] * x->ne[2], C = x->ne[3];
  int64_t s2[2] = {T * L, C}, sq[3] = {T * L, 3 * C}, so[4] = {T, L, 1, C};
  lg_tensor n, qkv, o, x2;
  int err;
  if ((err = slot(r, S_Q, 4, x->ne, &n))) return err;
  RUN(r, channel_rms_norm, &n, x, &b->g1);
  if ((err = lg_tensor_reshape(&n, 2, s2, &n))) return err;
  if ((err = slot(r, S_H, 2, sq, &qkv))) return err;
  if ((err = matmul_lin(r, &qkv, &n, &b->c1, 0))) return err;
  lg_tensor q = qkv;
  q.ndim = 4;
  q.ne[0] = T, q.ne[1] = L, q.ne[2] = 1, q.ne[3] = C;
  q.nb[0] = L * 3 * C, q.nb[1] = 3 * C, q.nb[2] = C, q.nb[3] = 1;
  lg_tensor k = lg_tensor_narrow(&qkv, 1, C, C), v = lg_tensor_narrow(&qkv, 1, 2 * C, C);
  k.ndim = v.ndim = 4;
  for (int i = 0; i < 4; i++) {
    k.ne[i] = v.ne[i] = q.ne[i];
    k.nb[i] = v.nb[i] = q.nb[i];
  }
  if ((err = slot(r, S_Q, 4, so, &o))) return err;
  RUN(r, attention, &o, &q, &k, &v, NULL, (float)(1.0 / sqrt((double)C)));
  if ((err = lg_tensor_reshape(&o, 2, s2, &o))) return err;
  if ((err = lg_tensor_reshape(x, 2, s2, &x2))) return err;
  return matmul_lin(r, &x2, &o, &b->c2, 1);
}

/* Resample down: ZeroPad2d (0,1,0,1) + Conv2d k3 s2; 3d also time_conv k(3,1,1) s(2,1,1) over
 * [last frame before, x] (not on the first chunk, whose frame seeds the cache). P -> P. */
static int downsample(run *r, const blk *b, lg_tensor *x) {
  int64_t T = x->ne[0], H = x->ne[1] / 2, W = x->ne[2] / 2, C = b->cout;
  int64_t sq[4] = {T, H, W, C};
  lg_conv_opts o = {.stride = {1, 2, 2}, .pad_h = {0, 1}, .pad_w = {0, 1}};
  lg_tensor y, a, out;
  int err;
  if ((err = slot(r, S_Q, 4, sq, &y))) return err;
  RUN(r, conv3d, &y, x, &b->c1.w, &b->c1.b, &o);
  if (b->kind == B_DOWN2D) {
    swap_pq(r);
    return slot(r, S_P, 4, sq, x);
  }
  lg_conv_opts ot = {.stride = {2, 1, 1}};
  if (r->clip) {
    /* [y0] ++ time_conv(y) over windows (0,1,2), (2,3,4), ... */
    int64_t To = 1 + (T >= 3 ? (T - 3) / 2 + 1 : 0), so[4] = {To, H, W, C};
    if ((err = slot(r, S_P, 4, so, &out))) return err;
    lg_tensor o0 = frames(&out, 0, 1), y0 = frames(&y, 0, 1), rest = frames(&out, 1, To - 1);
    RUN(r, copy, &o0, &y0);
    if (To > 1) RUN(r, conv3d, &rest, &y, &b->c2.w, &b->c2.b, &ot);
    *x = out;
    return 0;
  }
  lg_tensor *cache;
  if ((err = next_cache(r, 1, H, W, C, &cache))) return err;
  lg_tensor last = frames(&y, T - 1, 1);
  if (r->first) {
    RUN(r, copy, cache, &last);
    swap_pq(r);
    return slot(r, S_P, 4, sq, x);
  }
  if (T % 2) {
    LG_ERR(MOD, "downsample3d needs an even frame count after the first chunk, got %lld",
           (long long)T);
    return LG_EINVAL;
  }
  int64_t sa[4] = {T + 1, H, W, C}, so[4] = {T / 2, H, W, C};
  if ((err = slot(r, S_A, 4, sa, &a))) return err;
  lg_tensor a0 = frames(&a, 0, 1), a1 = frames(&a, 1, T);
  RUN(r, copy, &a0, cache);
  RUN(r, copy, &a1, &y);
  RUN(r, copy, cache, &last);
  if ((err = slot(r, S_P, 4, so, &out))) return err;
  RUN(r, conv3d, &out, &a, &b->c2.w, &b->c2.b, &ot);
  *x = out;
  return 0;
}

/* Copies t [T,H,W,2C] (time_conv output) into y [2T,H,W,C]: frame 2i from channels [0,C) of
 * frame i, frame 2i+1 from channels [C,2C) (the reference's reshape(b,2,c,t,h,w) + stack). */
static int interleave(run *r, lg_tensor *y, const lg_tensor *t) {
  int64_t T = t->ne[0], H = t->ne[1], W = t->ne[2], C = t->ne[3] / 2;
  lg_tensor src = *t, dst = *y;
  src.ndim = dst.ndim = 5;
  src.ne[0] = dst.ne[0] = T, src.ne[1] = dst.ne[1] = 2, src.ne[2] = dst.ne[2] = H;
  src.ne[3] = dst.ne[3] = W, src.ne[4] = dst.ne[4] = C;
  src.nb[0] = H * W * 2 * C, src.nb[1] = C, src.nb[2] = W * 2 * C, src.nb[3] = 2 * C, src.nb[4] = 1;
  dst.nb[0] = 2 * H * W * C, dst.nb[1] = H * W * C, dst.nb[2] = W * C, dst.nb[3] = C, dst.nb[4] = 1;
  RUN(r, copy, &dst, &src);
  return 0;
}

/* Resample up: upsample3d first runs time_conv (C -> 2C, its own causal cache; skipped on the
 * first chunk) and interleaves the halves into 2T frames; then per frame nearest 2x and Conv2d
 * k3 p1 C -> C/2. P -> P. */
static int upsample(run *r, const blk *b, lg_tensor *x) {
  int64_t T = x->ne[0], H = x->ne[1], W = x->ne[2], C = b->cin;
  lg_tensor src = *x, tq, out, u;
  int err;
  if (b->kind == B_UP3D) {
    if (r->clip) {
      if (T > 1) {
        int64_t st[4] = {T - 1, H, W, 2 * C}, sh[4] = {1 + 2 * (T - 1), H, W, C};
        if ((err = slot(r, S_Q, 4, st, &tq))) return err;
        lg_tensor xr = frames(x, 1, T - 1), x0 = frames(x, 0, 1);
        if ((err = causal_conv(r, &xr, NULL, &b->c2, 1, &tq))) return err;
        if ((err = slot(r, S_H, 4, sh, &src))) return err;
        lg_tensor h0 = frames(&src, 0, 1), hr = frames(&src, 1, 2 * (T - 1));
        RUN(r, copy, &h0, &x0);
        if ((err = interleave(r, &hr, &tq))) return err;
      }
    } else if (r->first) {
      lg_tensor *cache; /* keep the cache order of later calls */
      if ((err = next_cache(r, CACHE_T, H, W, C, &cache))) return err;
    } else {
      int64_t st[4] = {T, H, W, 2 * C}, sh[4] = {2 * T, H, W, C};
      if ((err = slot(r, S_Q, 4, st, &tq))) return err;
      if ((err = causal_conv(r, x, NULL, &b->c2, 1, &tq))) return err;
      if ((err = slot(r, S_H, 4, sh, &src))) return err;
      if ((err = interleave(r, &src, &tq))) return err;
    }
  }
  int64_t Ts = src.ne[0], so[4] = {Ts, 2 * H, 2 * W, b->cout}, su[4] = {1, 2 * H, 2 * W, C};
  lg_conv_opts o = {.stride = {1, 1, 1}, .pad_h = {1, 1}, .pad_w = {1, 1}};
  if ((err = slot(r, S_Q, 4, so, &out))) return err;
  if ((err = slot(r, S_U, 4, su, &u))) return err;
  for (int64_t f = 0; f < Ts; f++) {
    lg_tensor sf = frames(&src, f, 1), of = frames(&out, f, 1);
    RUN(r, upsample2x, &u, &sf);
    RUN(r, conv3d, &of, &u, &b->c1.w, &b->c1.b, &o);
  }
  swap_pq(r);
  return slot(r, S_P, 4, so, x);
}

static int run_blocks(run *r, const blk *bs, int n, lg_tensor *x) {
  for (int i = 0; i < n; i++) {
    int err = 0;
    switch (bs[i].kind) {
    case B_RES: err = res_block(r, &bs[i], x); break;
    case B_ATTN: err = attn_block(r, &bs[i], x); break;
    case B_DOWN2D:
    case B_DOWN3D: err = downsample(r, &bs[i], x); break;
    case B_UP2D:
    case B_UP3D: err = upsample(r, &bs[i], x); break;
    }
    if (err) return err;
  }
  return 0;
}

/* x [T,H,W,3] -> mu [T',H/8,W/8,z]. */
static int enc_forward(run *r, const lg_wan_vae *v, const lg_tensor *x, lg_tensor *mu) {
  int64_t s0[4] = {x->ne[0], x->ne[1], x->ne[2], v->dim};
  lg_tensor p, h;
  int err;
  r->ci = 0;
  if ((err = slot(r, S_P, 4, s0, &p))) return err;
  if ((err = causal_conv(r, x, NULL, &v->enc_conv1, 3, &p))) return err;
  if ((err = run_blocks(r, v->enc_down, N_DOWN, &p))) return err;
  if ((err = run_blocks(r, v->enc_mid, 3, &p))) return err;
  int64_t sh[4] = {p.ne[0], p.ne[1], p.ne[2], 2 * v->zdim};
  if ((err = slot(r, S_Q, 4, sh, &h))) return err;
  if ((err = causal_conv(r, &p, &v->enc_head_g, &v->enc_head, 3, &h))) return err;
  if (!r->dry && !lg_tensor_same_shape(
                     &(lg_tensor){.ndim = 4, .ne = {h.ne[0], h.ne[1], h.ne[2], v->zdim}}, mu)) {
    LG_ERR(MOD, "encode: mu has the wrong shape");
    return LG_EINVAL;
  }
  return matmul_lin(r, mu, &h, &v->mu_proj, 0);
}

/* z [T,h,w,16] normalised -> x [T',8h,8w,3] clamped to [-1,1]. */
static int dec_forward(run *r, const lg_wan_vae *v, const lg_tensor *z, lg_tensor *out) {
  int64_t T = z->ne[0], h = z->ne[1], w = z->ne[2];
  int64_t sz[4] = {T, h, w, v->zdim}, s0[4] = {T, h, w, v->dim * dim_mult[N_MULT - 1]};
  lg_tensor zz, p, y;
  int err;
  r->ci = 0;
  if ((err = slot(r, S_H, 4, sz, &zz))) return err;
  if ((err = matmul_lin(r, &zz, z, &v->z_proj, 0))) return err;
  if ((err = slot(r, S_P, 4, s0, &p))) return err;
  if ((err = causal_conv(r, &zz, NULL, &v->dec_conv1, 3, &p))) return err;
  if ((err = run_blocks(r, v->dec_mid, 3, &p))) return err;
  if ((err = run_blocks(r, v->dec_up, N_UP, &p))) return err;
  int64_t sy[4] = {p.ne[0], p.ne[1], p.ne[2], 3};
  if ((err = slot(r, S_Q, 4, sy, &y))) return err;
  if ((err = causal_conv(r, &p, &v->dec_head_g, &v->dec_head, 3, &y))) return err;
  if (!r->dry && !lg_tensor_same_shape(&y, out)) {
    char a[64], b[64];
    LG_ERR(MOD, "decode: output is %s, expected %s", lg_tensor_shape_str(out, a, sizeof a),
           lg_tensor_shape_str(&y, b, sizeof b));
    return LG_EINVAL;
  }
  RUN(r, unary, out, &y, LG_ACT_CLAMP, 1.0f);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* streams */

struct lg_vae_stream {
  lg_wan_vae *v;
  int height, width;
  lg_arena arena;
  uint8_t *slot[S_N];
  size_t cap[S_N];
  cache_set enc, dec;
  int can_enc, can_dec; /* which cache sets exist */
  long enc_calls, dec_calls;
};

static size_t align256(size_t b) {
  return (b + 255) & ~(size_t)255;
}

/* Sums the bytes of slots (P and Q share one size: they swap) and caches. */
static size_t plan_bytes(size_t need[S_N], const cache_set *const *cs, int ncs, size_t es) {
  if (need[S_P] < need[S_Q]) need[S_P] = need[S_Q];
  need[S_Q] = need[S_P];
  size_t total = 0;
  for (int s = 0; s < S_N; s++)
    total += align256((need[s] ? need[s] : 1) * es);
  for (int k = 0; k < ncs; k++)
    for (int i = 0; i < cs[k]->n; i++)
      total += align256(lg_tensor_nbytes(&cs[k]->t[i]));
  return total;
}

/* Carves slots and caches from a fresh arena. */
static int plan_alloc(lg_arena *a, lg_backend *be, lg_dtype dt, const size_t need[S_N],
                      uint8_t *slot_out[S_N], size_t cap_out[S_N], cache_set *const *cs, int ncs,
                      size_t total) {
  int err = lg_arena_init(a, be, total);
  if (err) return err;
  for (int s = 0; s < S_N; s++) {
    int64_t n = (int64_t)(need[s] ? need[s] : 1);
    lg_tensor t;
    if ((err = lg_arena_tensor(a, &t, dt, 1, &n))) return err;
    slot_out[s] = t.data;
    cap_out[s] = need[s];
  }
  for (int k = 0; k < ncs; k++)
    for (int i = 0; i < cs[k]->n; i++) {
      lg_tensor *c = &cs[k]->t[i];
      if ((err = lg_arena_tensor(a, c, dt, 4, c->ne))) return err;
      if ((err = be->ops->memset0(be, c->data, lg_tensor_nbytes(c)))) return err;
    }
  return 0;
}

static void run_init(run *r, lg_backend *be, int dry, int clip, int first, cache_set *cs) {
  memset(r, 0, sizeof *r);
  r->be = be;
  r->dt = be->act_dtype;
  r->dry = dry;
  r->clip = clip;
  r->first = first;
  r->cs = cs;
}

lg_vae_stream *lg_vae_stream_new(lg_wan_vae *v, int height, int width) {
  return lg_vae_stream_new_for(v, height, width, LG_VAE_ENCODE | LG_VAE_DECODE);
}

lg_vae_stream *lg_vae_stream_new_for(lg_wan_vae *v, int height, int width, unsigned halves) {
  if (!v || height <= 0 || width <= 0 || height % 8 || width % 8) {
    LG_ERR(MOD, "stream: frame size %dx%d must be positive multiples of 8", height, width);
    return NULL;
  }
  int enc = (halves & LG_VAE_ENCODE) && v->has_enc, dec = (halves & LG_VAE_DECODE) && v->has_dec;
  if (!enc && !dec) {
    LG_ERR(MOD, "stream: nothing to do (asked for %s, the model has %s%s)",
           halves & LG_VAE_ENCODE ? (halves & LG_VAE_DECODE ? "encode+decode" : "encode")
                                  : (halves & LG_VAE_DECODE ? "decode" : "nothing"),
           v->has_enc ? "an encoder" : "no encoder", v->has_dec ? " and a decoder" : "");
    return NULL;
  }
  lg_vae_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->v = v;
  s->height = height;
  s->width = width;
  s->can_enc = enc;
  s->can_dec = dec;
  lg_backend *be = v->be;
  size_t need[S_N] = {0};
  int64_t h = height / 8, w = width / 8;
  /* dry runs of a first call and of a later call for each half */
  for (int first = 1; first >= 0; first--) {
    run r;
    if (enc) {
      int64_t sx[4] = {first ? 1 : 4, height, width, 3}, sm[4] = {1, h, w, v->zdim};
      lg_tensor x = lg_tensor_make(be, dry_base, LG_F32, 4, sx);
      lg_tensor mu = lg_tensor_make(be, dry_base, be->act_dtype, 4, sm);
      run_init(&r, be, 1, 0, first, &s->enc);
      if (enc_forward(&r, v, &x, &mu)) goto fail;
      for (int i = 0; i < S_N; i++)
        if (r.need[i] > need[i]) need[i] = r.need[i];
    }
    if (dec) {
      int64_t sz[4] = {1, h, w, v->zdim}, sx[4] = {first ? 1 : 4, height, width, 3};
      lg_tensor z = lg_tensor_make(be, dry_base, LG_F32, 4, sz);
      lg_tensor x = lg_tensor_make(be, dry_base, be->act_dtype, 4, sx);
      run_init(&r, be, 1, 0, first, &s->dec);
      if (dec_forward(&r, v, &z, &x)) goto fail;
      for (int i = 0; i < S_N; i++)
        if (r.need[i] > need[i]) need[i] = r.need[i];
    }
  }
  const cache_set *csc[2] = {&s->enc, &s->dec};
  cache_set *csm[2] = {&s->enc, &s->dec};
  size_t total = plan_bytes(need, csc, 2, lg_dtype_size(be->act_dtype));
  if (plan_alloc(&s->arena, be, be->act_dtype, need, s->slot, s->cap, csm, 2, total)) goto fail;
  LG_INFO(MOD, "stream %dx%d: %d+%d caches, %.1f MiB on %s", height, width, s->enc.n, s->dec.n,
          (double)total / (1 << 20), be->ops->name);
  return s;
fail:
  LG_ERR(MOD, "cannot create a %dx%d stream", height, width);
  lg_vae_stream_free(&s);
  return NULL;
}

void lg_vae_stream_free(lg_vae_stream **ps) {
  if (!ps || !*ps) return;
  lg_arena_free(&(*ps)->arena);
  free(*ps);
  *ps = NULL;
}

size_t lg_vae_stream_bytes(const lg_vae_stream *s) {
  return s ? s->arena.cap : 0;
}

int lg_vae_stream_reset(lg_vae_stream *s) {
  if (!s) return LG_EINVAL;
  lg_backend *be = s->v->be;
  cache_set *cs[2] = {&s->enc, &s->dec};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < cs[k]->n; i++) {
      int err = be->ops->memset0(be, cs[k]->t[i].data, lg_tensor_nbytes(&cs[k]->t[i]));
      if (err) return err;
    }
  s->enc_calls = s->dec_calls = 0;
  return 0;
}

static int check_shape(const char *what, const lg_tensor *t, int64_t d0, int64_t d1, int64_t d2,
                       int64_t d3) {
  if (t && t->data && t->ndim == 4 && t->ne[0] == d0 && t->ne[1] == d1 && t->ne[2] == d2 &&
      t->ne[3] == d3 && t->nb[3] == 1)
    return 0;
  char b[64] = "NULL";
  if (t) lg_tensor_shape_str(t, b, sizeof b);
  LG_ERR(MOD, "%s is %s, expected [%lld,%lld,%lld,%lld] with contiguous channels", what, b,
         (long long)d0, (long long)d1, (long long)d2, (long long)d3);
  return LG_EINVAL;
}

static int check_out(const char *what, const lg_tensor *t, lg_backend *be) {
  if (t->dtype == be->act_dtype && lg_tensor_is_contiguous(t)) return 0;
  LG_ERR(MOD, "%s must be contiguous %s", what, lg_dtype_name(be->act_dtype));
  return LG_EINVAL;
}

int lg_wan_vae_encode(lg_vae_stream *s, const lg_tensor *x, lg_tensor *mu) {
  if (!s || !s->can_enc) {
    LG_ERR(MOD, "encode: %s",
           s ? "this stream has no encoder caches (or the model no encoder)" : "no stream");
    return s ? LG_ENOTSUP : LG_EINVAL;
  }
  lg_wan_vae *v = s->v;
  int64_t T = s->enc_calls ? 4 : 1;
  int err;
  if ((err = check_shape("encode input", x, T, s->height, s->width, 3))) return err;
  if ((err = check_shape("encode mu", mu, 1, s->height / 8, s->width / 8, v->zdim))) return err;
  if ((err = check_out("encode mu", mu, v->be))) return err;
  run r;
  run_init(&r, v->be, 0, 0, s->enc_calls == 0, &s->enc);
  memcpy(r.slot, s->slot, sizeof r.slot);
  memcpy(r.cap, s->cap, sizeof r.cap);
  err = enc_forward(&r, v, x, mu);
  if (err) return err;
  s->enc_calls++;
  return 0;
}

int lg_wan_vae_decode(lg_vae_stream *s, const lg_tensor *z, lg_tensor *x) {
  if (!s || !s->can_dec) {
    LG_ERR(MOD, "decode: %s",
           s ? "this stream has no decoder caches (or the model no decoder)" : "no stream");
    return s ? LG_ENOTSUP : LG_EINVAL;
  }
  lg_wan_vae *v = s->v;
  int64_t T = s->dec_calls ? 4 : 1;
  int err;
  if ((err = check_shape("decode input", z, 1, s->height / 8, s->width / 8, v->zdim))) return err;
  if ((err = check_shape("decode output", x, T, s->height, s->width, 3))) return err;
  if ((err = check_out("decode output", x, v->be))) return err;
  run r;
  run_init(&r, v->be, 0, 0, s->dec_calls == 0, &s->dec);
  memcpy(r.slot, s->slot, sizeof r.slot);
  memcpy(r.cap, s->cap, sizeof r.cap);
  err = dec_forward(&r, v, z, x);
  if (err) return err;
  s->dec_calls++;
  return 0;
}

/* Whole clip: dry run for the sizes, one arena, the real run, free. */
static int clip_run(lg_wan_vae *v, int enc, const lg_tensor *in, lg_tensor *out) {
  lg_backend *be = v->be;
  cache_set none = {.n = 0};
  run r;
  run_init(&r, be, 1, 1, 1, &none);
  int err = enc ? enc_forward(&r, v, in, out) : dec_forward(&r, v, in, out);
  if (err) return err;
  size_t need[S_N];
  memcpy(need, r.need, sizeof need);
  lg_arena a = {0};
  size_t total = plan_bytes(need, NULL, 0, lg_dtype_size(be->act_dtype));
  run_init(&r, be, 0, 1, 1, &none);
  err = plan_alloc(&a, be, be->act_dtype, need, r.slot, r.cap, NULL, 0, total);
  if (!err) err = enc ? enc_forward(&r, v, in, out) : dec_forward(&r, v, in, out);
  lg_arena_free(&a);
  return err;
}

int lg_wan_vae_encode_clip(lg_wan_vae *v, const lg_tensor *x, lg_tensor *mu) {
  if (!v || !v->has_enc) return v ? LG_ENOTSUP : LG_EINVAL;
  if (!x || x->ndim != 4 || (x->ne[0] - 1) % 4 || x->ne[1] % 8 || x->ne[2] % 8) {
    LG_ERR(MOD, "encode_clip: input must be [1+4k,H,W,3] with H, W multiples of 8");
    return LG_EINVAL;
  }
  int err;
  if ((err = check_shape("encode_clip input", x, x->ne[0], x->ne[1], x->ne[2], 3))) return err;
  if ((err = check_shape("encode_clip mu", mu, 1 + (x->ne[0] - 1) / 4, x->ne[1] / 8, x->ne[2] / 8,
                         v->zdim)))
    return err;
  if ((err = check_out("encode_clip mu", mu, v->be))) return err;
  return clip_run(v, 1, x, mu);
}

int lg_wan_vae_decode_clip(lg_wan_vae *v, const lg_tensor *z, lg_tensor *x) {
  if (!v || !v->has_dec) return v ? LG_ENOTSUP : LG_EINVAL;
  int err;
  if (!z || z->ndim != 4 || z->ne[0] < 1) {
    LG_ERR(MOD, "decode_clip: latents must be [n,h,w,16]");
    return LG_EINVAL;
  }
  if ((err = check_shape("decode_clip input", z, z->ne[0], z->ne[1], z->ne[2], v->zdim)))
    return err;
  if ((err = check_shape("decode_clip output", x, 1 + 4 * (z->ne[0] - 1), 8 * z->ne[1],
                         8 * z->ne[2], 3)))
    return err;
  if ((err = check_out("decode_clip output", x, v->be))) return err;
  return clip_run(v, 0, z, x);
}
