/* cmd_probe_vae.c: `livegen probe vae-encode|vae-decode|taehv-decode` (argv[0] names which):
 * runs the Wan VAE or TAEHV on tensors from a safetensors file, call by call with the streaming
 * state kept (or, with --clip, the whole clip in one call), writes the outputs, prints the wall
 * time of every call to stderr and can compare the outputs with expected ones (golden tests).
 * Without --in it makes seeded random inputs of --res HxW (timing runs). Main thread.
 *
 * Files (PyTorch layout, f32):
 *   vae-encode   IN  x.k [1,3,T,H,W] pixels in [-1,1], T = 1 for k = 0, then 4
 *                OUT z.k [1,16,1,h,w] mu (unnormalised), zn.k = (mu - mean) / std
 *   vae-decode,  IN  z.k [1,16,1,h,w] normalised latents
 *   taehv-decode OUT x.k [1,3,T,H,W] pixels in [-1,1], T = 1 for k = 0, then 4 */
#include "checkpoint.h"
#include "cli.h"
#include "lg_backend.h"
#include "lg_cuda.h"
#include "taehv.h"
#include "wan_consts.h"
#include "wan_vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CALLS 256
#define ZC LG_WAN_Z_DIM

enum { K_ENC, K_DEC, K_TAEHV };

typedef struct opts {
  int kind;
  const char *model, *in, *out, *backend, *compare;
  int clip, calls, height, width, profile;
  double rtol;
  uint64_t seed;
} opts;

static void usage(FILE *f, const char *name) {
  fprintf(f,
          "usage: livegen probe %s --model W [--in IN] [--out OUT] [--backend cpu|cuda|auto]\n"
          "         [--clip] [--compare EXPECTED [--rtol 1e-4]] [--res HxW --calls N --seed S]\n"
          "         [--profile]\n"
          "  Runs call k = 0, 1, ... in order with the streaming state kept (--clip: all calls\n"
          "  as one whole-clip call, outputs split per call). Prints each call's wall time.\n"
          "  vae-encode: IN x.k [1,3,T,H,W] (T = 1, then 4) -> OUT z.k, zn.k [1,16,1,h,w]\n"
          "  vae-decode, taehv-decode: IN z.k [1,16,1,h,w] normalised -> OUT x.k [1,3,T,H,W]\n"
          "  --compare: max|out-exp|/max|exp| per key must be <= rtol (exit 1 otherwise)\n"
          "  without --in: seeded random inputs of --res HxW for --calls calls (default 2)\n"
          "  --profile (cuda): time every op of the last call, printed per op kind\n",
          name);
}

static int parse(int argc, char **argv, opts *o) {
  memset(o, 0, sizeof *o);
  const char *k = argv[0];
  o->kind = !strcmp(k, "vae-encode") ? K_ENC : !strcmp(k, "vae-decode") ? K_DEC : K_TAEHV;
  o->backend = "cpu";
  o->rtol = 1e-4;
  o->calls = 2;
  o->seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout, k);
      return 1;
    } else if (!strcmp(a, "--clip")) {
      o->clip = 1;
      continue;
    } else if (!strcmp(a, "--profile")) {
      o->profile = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "livegen probe %s: %s needs a value\n", k, a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--model"))
      o->model = v;
    else if (!strcmp(a, "--in"))
      o->in = v;
    else if (!strcmp(a, "--out"))
      o->out = v;
    else if (!strcmp(a, "--backend"))
      o->backend = v;
    else if (!strcmp(a, "--compare"))
      o->compare = v;
    else if (!strcmp(a, "--rtol"))
      o->rtol = atof(v);
    else if (!strcmp(a, "--calls"))
      o->calls = atoi(v);
    else if (!strcmp(a, "--seed"))
      o->seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--res")) {
      if (sscanf(v, "%dx%d", &o->height, &o->width) != 2) {
        fprintf(stderr, "livegen probe %s: --res wants HxW, got '%s'\n", k, v);
        return 2;
      }
    } else {
      fprintf(stderr, "livegen probe %s: unknown option %s\n", k, a);
      usage(stderr, k);
      return 2;
    }
  }
  if (!o->model || (!o->in && (o->height <= 0 || o->width <= 0))) {
    fprintf(stderr, "livegen probe %s: --model and either --in or --res are required\n", k);
    usage(stderr, k);
    return 2;
  }
  if (o->height % 8 || o->width % 8 || o->calls < 1 || o->calls > MAX_CALLS || !(o->rtol > 0)) {
    fprintf(stderr, "livegen probe %s: --res must be multiples of 8, --calls 1..%d, --rtol > 0\n",
            k, MAX_CALLS);
    return 2;
  }
  return 0;
}

/* One call's data, host f32 channels-last: in [T,H,W,C], out [T,H,W,C]. */
typedef struct call {
  float *in, *out;
  int64_t t_in, t_out;
} call;

/* [1,C,T,H,W] -> [T,H,W,C] */
static void ncthw_to_thwc(const float *s, float *d, int64_t C, int64_t T, int64_t H, int64_t W) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
          d[((t * H + y) * W + x) * C + c] = s[((c * T + t) * H + y) * W + x];
}

static void thwc_to_ncthw(const float *s, float *d, int64_t C, int64_t T, int64_t H, int64_t W) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
          d[((c * T + t) * H + y) * W + x] = s[((t * H + y) * W + x) * C + c];
}

static float *f32_of(const lg_ckpt_tensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (size_t)t->shape[i];
  float *d = malloc((n ? n : 1) * sizeof *d);
  if (!d) return NULL;
  lg_tensor src = lg_ckpt_host_tensor(t);
  for (size_t i = 0; i < n; i++) {
    if (t->dtype == LG_F32)
      memcpy(&d[i], (const uint8_t *)src.data + 4 * i, 4);
    else {
      uint16_t h;
      memcpy(&h, (const uint8_t *)src.data + 2 * i, 2);
      d[i] = t->dtype == LG_BF16 ? lg_bf16_to_f32(h) : lg_f16_to_f32(h);
    }
  }
  return d;
}

/* Reads call k's input from the file: returns 1 when present, 0 when the key is absent, -1 on
 * a bad shape. Sets H/W from the first call. */
static int read_input(const opts *o, const lg_ckpt *ck, int k, call *c, int *H, int *W) {
  char key[32];
  snprintf(key, sizeof key, "%s.%d", o->kind == K_ENC ? "x" : "z", k);
  const lg_ckpt_tensor *t = lg_ckpt_find(ck, key);
  if (!t) return 0;
  int64_t C = o->kind == K_ENC ? 3 : ZC, T = o->kind == K_ENC ? (k ? 4 : 1) : 1;
  int64_t h = t->ndim == 5 ? t->shape[3] : 0, w = t->ndim == 5 ? t->shape[4] : 0;
  int64_t ph = o->kind == K_ENC ? h : 8 * h, pw = o->kind == K_ENC ? w : 8 * w;
  if (t->ndim != 5 || t->shape[0] != 1 || t->shape[1] != C || t->shape[2] != T || h <= 0 ||
      w <= 0 || ph % 8 || pw % 8 || (*H && (ph != *H || pw != *W))) {
    fprintf(stderr, "livegen probe: %s must be [1,%lld,%lld,H,W]%s\n", key, (long long)C,
            (long long)T, o->kind == K_ENC ? " with H, W multiples of 8" : "");
    return -1;
  }
  *H = (int)ph;
  *W = (int)pw;
  float *src = f32_of(t);
  c->in = malloc((size_t)(T * h * w * C) * sizeof *c->in);
  if (!src || !c->in) {
    free(src);
    return -1;
  }
  ncthw_to_thwc(src, c->in, C, T, h, w);
  free(src);
  c->t_in = T;
  return 1;
}

static void random_input(const opts *o, lg_rng *r, int k, call *c) {
  int64_t T = o->kind == K_ENC ? (k ? 4 : 1) : 1;
  int64_t n = o->kind == K_ENC ? T * o->height * o->width * 3
                               : (int64_t)(o->height / 8) * (o->width / 8) * ZC;
  c->in = malloc((size_t)n * sizeof *c->in);
  if (!c->in) return;
  for (int64_t i = 0; i < n; i++)
    c->in[i] = o->kind == K_ENC ? (float)(2.0 * lg_rng_uniform(r) - 1.0) : (float)lg_rng_normal(r);
  c->t_in = T;
}

typedef struct models {
  lg_wan_vae *vae;
  lg_taehv *tae;
  lg_vae_stream *vs;
  lg_taehv_stream *ts;
} models;

/* Per op kind of the profiled call: ms and count (cuda backend). */
static void print_profile(lg_backend *be, int k) {
  double cls[LG_CUDA_PROF_N] = {0}, ms[32];
  const char *names[32];
  int ops = 0, cnt[32];
  if (lg_cuda_profile_end(be, cls, &ops)) return;
  fprintf(stderr, "profile call %d: %d ops, gemm %.1f ms, attention %.1f ms, elementwise %.1f ms\n",
          k, ops, cls[LG_CUDA_PROF_GEMM], cls[LG_CUDA_PROF_ATTN], cls[LG_CUDA_PROF_ELEM]);
  int n = lg_cuda_profile_ops(be, names, ms, cnt, 32);
  for (int i = 0; i < n; i++)
    fprintf(stderr, "profile call %d: %-18s %9.2f ms %5d calls\n", k, names[i], ms[i], cnt[i]);
}

/* Runs calls [0,n) (or all at once with --clip); fills c[k].out. */
static int run_calls(const opts *o, lg_backend *be, models *m, call *c, int n, int H, int W) {
  int64_t h = H / 8, w = W / 8;
  int err = 0;
  int64_t t_out_sum = 0, t_in_sum = 0;
  for (int k = 0; k < n; k++) {
    c[k].t_out = o->kind == K_ENC ? 1 : (k ? 4 : 1);
    t_out_sum += c[k].t_out;
    t_in_sum += c[k].t_in;
  }
  int64_t cin = o->kind == K_ENC ? 3 : ZC, cout = o->kind == K_ENC ? ZC : 3;
  int64_t hin = o->kind == K_ENC ? H : h, win = o->kind == K_ENC ? W : w;
  int64_t hout = o->kind == K_ENC ? h : H, wout = o->kind == K_ENC ? w : W;
  int ncalls = o->clip ? 1 : n;
  for (int k = 0; k < ncalls; k++) {
    int64_t ti = o->clip ? t_in_sum : c[k].t_in, to = o->clip ? t_out_sum : c[k].t_out;
    int64_t si[4] = {ti, hin, win, cin}, so[4] = {to, hout, wout, cout};
    lg_tensor x = {0}, y = {0};
    float *host_in = NULL, *host_out = NULL;
    if (lg_tensor_alloc(be, &x, be->act_dtype, 4, si) ||
        lg_tensor_alloc(be, &y, be->act_dtype, 4, so))
      goto fail_call;
    host_in = malloc((size_t)(ti * hin * win * cin) * sizeof *host_in);
    host_out = malloc((size_t)(to * hout * wout * cout) * sizeof *host_out);
    if (!host_in || !host_out) goto fail_call;
    size_t at = 0;
    for (int j = 0; j < n; j++) {
      if (!o->clip && j != k) continue;
      size_t len = (size_t)(c[j].t_in * hin * win * cin);
      memcpy(host_in + at, c[j].in, len * sizeof *host_in);
      at += len;
    }
    if (lg_tensor_upload_f32(&x, host_in)) goto fail_call;
    be->ops->sync(be);
    int prof = o->profile && k == ncalls - 1 && lg_cuda_profile_begin(be) == 0;
    double t0 = lg_now();
    int rc;
    if (o->clip)
      rc = o->kind == K_ENC   ? lg_wan_vae_encode_clip(m->vae, &x, &y)
           : o->kind == K_DEC ? lg_wan_vae_decode_clip(m->vae, &x, &y)
                              : lg_taehv_decode_clip(m->tae, &x, &y);
    else
      rc = o->kind == K_ENC   ? lg_wan_vae_encode(m->vs, &x, &y)
           : o->kind == K_DEC ? lg_wan_vae_decode(m->vs, &x, &y)
                              : lg_taehv_decode(m->ts, &x, &y);
    if (!rc) rc = be->ops->sync(be);
    double dt = lg_now() - t0;
    if (prof) print_profile(be, k);
    if (rc) {
      fprintf(stderr, "livegen probe: call %d failed: %s\n", k, lg_strerror(rc));
      goto fail_call;
    }
    fprintf(stderr, "call %d%s: %lld -> %lld frames at %dx%d in %.1f ms\n", k,
            o->clip ? " (whole clip)" : "", (long long)ti, (long long)to, H, W, dt * 1e3);
    if (lg_tensor_download_f32(&y, host_out)) goto fail_call;
    size_t done_out = 0;
    for (int j = 0; j < n; j++) {
      if (!o->clip && j != k) continue;
      size_t len = (size_t)(c[j].t_out * hout * wout * cout);
      c[j].out = malloc(len * sizeof *c[j].out);
      if (!c[j].out) goto fail_call;
      memcpy(c[j].out, host_out + done_out, len * sizeof *c[j].out);
      done_out += len;
    }
    lg_tensor_free(&x);
    lg_tensor_free(&y);
    free(host_in);
    free(host_out);
    continue;
  fail_call:
    lg_tensor_free(&x);
    lg_tensor_free(&y);
    free(host_in);
    free(host_out);
    err = 1;
    break;
  }
  return err;
}

/* Builds the output tensors in PyTorch layout (NCTHW); names/tensors/bufs have room for 2n. */
static int make_outputs(const opts *o, call *c, int n, int H, int W, char (*names)[32],
                        lg_tensor *ts) {
  int64_t h = H / 8, w = W / 8, m = 0;
  for (int k = 0; k < n; k++) {
    int64_t C = o->kind == K_ENC ? ZC : 3, T = c[k].t_out, hh = o->kind == K_ENC ? h : H,
            ww = o->kind == K_ENC ? w : W;
    int64_t shape[5] = {1, C, T, hh, ww};
    size_t len = (size_t)(C * T * hh * ww);
    float *d = malloc(len * sizeof *d);
    if (!d) return -1;
    thwc_to_ncthw(c[k].out, d, C, T, hh, ww);
    snprintf(names[m], 32, "%s.%d", o->kind == K_ENC ? "z" : "x", k);
    ts[m++] = lg_tensor_make(NULL, d, LG_F32, 5, shape);
    if (o->kind == K_ENC) {
      float *e = malloc(len * sizeof *e);
      if (!e) return -1;
      for (int64_t ch = 0; ch < C; ch++)
        for (int64_t i = 0; i < T * hh * ww; i++)
          e[ch * T * hh * ww + i] =
              (d[ch * T * hh * ww + i] - lg_wan_latent_mean[ch]) / lg_wan_latent_std[ch];
      snprintf(names[m], 32, "zn.%d", k);
      ts[m++] = lg_tensor_make(NULL, e, LG_F32, 5, shape);
    }
  }
  return (int)m;
}

/* max|a-b| / max|b| for every output key against the expected file. */
static int compare(const opts *o, char (*names)[32], const lg_tensor *ts, int m) {
  char err[256];
  lg_ckpt *ex = lg_ckpt_open(o->compare, err, sizeof err);
  if (!ex) {
    fprintf(stderr, "livegen probe: %s\n", err);
    return 1;
  }
  int bad = 0;
  for (int i = 0; i < m; i++) {
    const lg_ckpt_tensor *e = lg_ckpt_find(ex, names[i]);
    int same = e && e->ndim == ts[i].ndim;
    for (int d = 0; same && d < e->ndim; d++)
      same = e->shape[d] == ts[i].ne[d];
    if (!same) {
      fprintf(stderr, "compare %s: %s in %s\n", names[i], e ? "shape differs" : "missing",
              o->compare);
      bad = 1;
      continue;
    }
    float *ev = f32_of(e);
    const float *gv = ts[i].data;
    double mx = 0, md = 0;
    int64_t n = lg_tensor_numel(&ts[i]);
    for (int64_t j = 0; ev && j < n; j++) {
      double dd = fabs((double)gv[j] - ev[j]);
      if (!(dd <= md)) md = dd; /* NaN counts as the worst */
      if (fabs(ev[j]) > mx) mx = fabs(ev[j]);
    }
    double rel = md / (mx > 1e-30 ? mx : 1e-30);
    int ok = ev && rel <= o->rtol;
    fprintf(stderr, "compare %s: rel err %.3g (max abs %.3g, max |expected| %.3g) %s\n", names[i],
            rel, md, mx, ok ? "ok" : "FAIL");
    bad |= !ok;
    free(ev);
  }
  lg_ckpt_free(&ex);
  return bad;
}

int lg_cmd_probe_vae(int argc, char **argv) {
  opts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;
  const char *name = argv[0];
  int status = 1, n = 0, H = 0, W = 0, m = 0;
  char err[512];
  lg_backend *be = NULL;
  lg_ckpt *wck = NULL, *ick = NULL;
  models mo = {0};
  call *c = calloc(MAX_CALLS, sizeof *c);
  char(*names)[32] = calloc(2 * MAX_CALLS, sizeof *names);
  lg_tensor *ts = calloc(2 * MAX_CALLS, sizeof *ts);
  if (!c || !names || !ts) goto done;
  if (o.in) {
    ick = lg_ckpt_open(o.in, err, sizeof err);
    if (!ick) {
      fprintf(stderr, "livegen probe %s: %s\n", name, err);
      goto done;
    }
    for (; n < MAX_CALLS; n++) {
      int r = read_input(&o, ick, n, &c[n], &H, &W);
      if (r < 0) goto done;
      if (r == 0) break;
    }
    if (n == 0) {
      fprintf(stderr, "livegen probe %s: %s has no %s.0\n", name, o.in,
              o.kind == K_ENC ? "x" : "z");
      goto done;
    }
  } else {
    lg_rng r;
    lg_rng_seed(&r, o.seed);
    H = o.height;
    W = o.width;
    for (; n < o.calls; n++) {
      random_input(&o, &r, n, &c[n]);
      if (!c[n].in) goto done;
    }
  }
  be = lg_backend_new_by_name(o.backend);
  if (!be) goto done;
  wck = lg_ckpt_open(o.model, err, sizeof err);
  if (!wck) {
    fprintf(stderr, "livegen probe %s: %s\n", name, err);
    goto done;
  }
  double t0 = lg_now();
  if (o.kind == K_TAEHV)
    mo.tae = lg_taehv_load(be, wck, err, sizeof err);
  else
    mo.vae = lg_wan_vae_load(be, wck, err, sizeof err);
  if (!mo.tae && !mo.vae) {
    fprintf(stderr, "livegen probe %s: %s\n", name, err);
    goto done;
  }
  if (!o.clip) {
    if (o.kind == K_TAEHV)
      mo.ts = lg_taehv_stream_new(mo.tae, H, W);
    else
      mo.vs = lg_vae_stream_new_for(mo.vae, H, W, o.kind == K_ENC ? LG_VAE_ENCODE : LG_VAE_DECODE);
    if (!mo.ts && !mo.vs) goto done;
  }
  fprintf(stderr, "%s: model loaded in %.2f s on %s, %d call(s) at %dx%d\n", name, lg_now() - t0,
          be->ops->name, n, H, W);
  if (run_calls(&o, be, &mo, c, n, H, W)) goto done;
  m = make_outputs(&o, c, n, H, W, names, ts);
  if (m < 0) goto done;
  if (o.out) {
    const char *nm[2 * MAX_CALLS];
    for (int i = 0; i < m; i++)
      nm[i] = names[i];
    int e = lg_safetensors_write(o.out, nm, ts, m, NULL, 0);
    if (e) {
      fprintf(stderr, "livegen probe %s: cannot write %s: %s\n", name, o.out, lg_strerror(e));
      goto done;
    }
  }
  status = o.compare ? compare(&o, names, ts, m) : 0;
done:
  for (int i = 0; ts && i < m; i++)
    free(ts[i].data);
  for (int k = 0; c && k < n; k++) {
    free(c[k].in);
    free(c[k].out);
  }
  free(c);
  free(names);
  free(ts);
  lg_vae_stream_free(&mo.vs);
  lg_taehv_stream_free(&mo.ts);
  lg_wan_vae_free(&mo.vae);
  lg_taehv_free(&mo.tae);
  lg_ckpt_free(&wck);
  lg_ckpt_free(&ick);
  lg_backend_free(&be);
  return status;
}
