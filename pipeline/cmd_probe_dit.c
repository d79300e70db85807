/* cmd_probe_dit.c: `livegen probe dit`, `probe stream` and `probe compare`: run the DiT (one
 * call sequence with per-row KV caches) or the v2v stream on tensors from a safetensors file
 * and write the results, for the golden tests against tests/ref/dit_ref.py; compare two
 * safetensors files tensor by tensor. Main thread. */
#include "cli.h"
#include "checkpoint.h"
#include "flow_sched.h"
#include "kv_policy.h"
#include "stream.h"
#include "wan_dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUT 4096

typedef struct probe_opts {
  const char *model, *weights, *in, *out, *backend;
  int kv_frames, sink_frames, steps;
  double adapt, shift;
  bool t2v;
} probe_opts;

/* Output list: names and host f32 tensors, written at the end. */
typedef struct out_list {
  char *names[MAX_OUT];
  lg_tensor t[MAX_OUT];
  int n;
} out_list;

static void out_free(out_list *o) {
  for (int i = 0; i < o->n; i++) {
    free(o->names[i]);
    free(o->t[i].data);
  }
  o->n = 0;
}

/* Takes ownership of data (malloc'ed f32). */
static int out_add(out_list *o, const char *name, float *data, int ndim, const int64_t *shape) {
  if (o->n >= MAX_OUT) {
    free(data);
    fprintf(stderr, "livegen probe: too many outputs\n");
    return LG_ERANGE;
  }
  o->names[o->n] = strdup(name);
  o->t[o->n] = lg_tensor_make(NULL, data, LG_F32, ndim, shape);
  o->n++;
  return 0;
}

static int out_write(out_list *o, const char *path) {
  int err = lg_safetensors_write(path, (const char *const *)o->names, o->t, o->n, NULL, 0);
  if (err < 0) fprintf(stderr, "livegen probe: cannot write %s: %s\n", path, lg_strerror(err));
  return err;
}

/* f32 host copy of a checkpoint tensor (F32/F16/BF16). NULL when missing (no message). */
static float *tensor_f32(const lg_ckpt *ck, const char *name, const lg_ckpt_tensor **info) {
  const lg_ckpt_tensor *t = lg_ckpt_find(ck, name);
  if (info) *info = t;
  if (!t) return NULL;
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (size_t)t->shape[i];
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (t->dtype == LG_F32) {
      memcpy(&p[i], (const uint8_t *)t->data + 4 * i, 4);
    } else {
      uint16_t h;
      memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
      p[i] = t->dtype == LG_BF16 ? lg_bf16_to_f32(h) : lg_f16_to_f32(h);
    }
  }
  return p;
}

/* [B,F,C,h,w] <-> [B,F,h,w,C] */
static void to_cl(float *dst, const float *src, int64_t BF, int64_t C, int64_t hw) {
  for (int64_t r = 0; r < BF; r++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < hw; p++)
        dst[(r * hw + p) * C + c] = src[(r * C + c) * hw + p];
}
static void from_cl(float *dst, const float *src, int64_t BF, int64_t C, int64_t hw) {
  for (int64_t r = 0; r < BF; r++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < hw; p++)
        dst[(r * C + c) * hw + p] = src[(r * hw + p) * C + c];
}

static int usage(const char *cmd) {
  fprintf(stderr,
          "usage: livegen probe %s --model W.safetensors [--weights GEN.pt] --in IN.safetensors "
          "--out OUT.safetensors\n"
          "       [--kv-frames N (6)] [--sink-frames N (3)] [--adapt-sink X (0.2, <0 off)] "
          "[--shift S (8)]%s [--backend cpu|cuda|auto (cpu)]\n",
          cmd, !strcmp(cmd, "stream") ? " [--steps N (2)] [--t2v]" : "");
  return 2;
}

static int parse(int argc, char **argv, probe_opts *o) {
  memset(o, 0, sizeof *o);
  o->kv_frames = 6;
  o->sink_frames = 3;
  o->adapt = 0.2;
  o->shift = 8.0;
  o->steps = 2;
  o->backend = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(argv[0]) - 2 + 1;
    if (!strcmp(a, "--t2v") && !strcmp(argv[0], "stream")) {
      o->t2v = true;
      continue;
    }
    if (!v) {
      fprintf(stderr, "livegen probe %s: %s needs a value\n", argv[0], a);
      return -1;
    }
    char *end = NULL;
    if (!strcmp(a, "--model"))
      o->model = v;
    else if (!strcmp(a, "--weights"))
      o->weights = v;
    else if (!strcmp(a, "--in"))
      o->in = v;
    else if (!strcmp(a, "--out"))
      o->out = v;
    else if (!strcmp(a, "--backend"))
      o->backend = v;
    else if (!strcmp(a, "--kv-frames"))
      o->kv_frames = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--sink-frames"))
      o->sink_frames = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--steps"))
      o->steps = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--adapt-sink"))
      o->adapt = strtod(v, &end);
    else if (!strcmp(a, "--shift"))
      o->shift = strtod(v, &end);
    else {
      fprintf(stderr, "livegen probe %s: unknown option %s\n", argv[0], a);
      return -1;
    }
    if (end && *end) {
      fprintf(stderr, "livegen probe %s: bad value for %s: '%s'\n", argv[0], a, v);
      return -1;
    }
    i++;
  }
  if (!o->model || !o->in || !o->out) {
    fprintf(stderr, "livegen probe %s: --model, --in and --out are required\n", argv[0]);
    return -1;
  }
  if (o->kv_frames < 1 || o->kv_frames > LG_KV_MAX_FRAMES || o->sink_frames < 0 ||
      o->sink_frames >= o->kv_frames || o->steps < 1 || o->steps > LG_MAX_STEPS ||
      !(o->shift > 0)) {
    fprintf(stderr,
            "livegen probe %s: need 1 <= kv-frames <= %d, 0 <= sink-frames < kv-frames, "
            "1 <= steps <= %d, shift > 0\n",
            argv[0], LG_KV_MAX_FRAMES, LG_MAX_STEPS);
    return -1;
  }
  return 0;
}

typedef struct probe_env {
  lg_backend *be;
  lg_ckpt *wck, *ock, *in;
  lg_wan_dit *m;
} probe_env;

static void env_free(probe_env *e) {
  lg_wan_dit_free(&e->m);
  lg_ckpt_free(&e->wck);
  lg_ckpt_free(&e->ock);
  lg_ckpt_free(&e->in);
  lg_backend_free(&e->be);
}

static int env_open(probe_env *e, const probe_opts *o, const char *cmd) {
  char err[512] = "";
  memset(e, 0, sizeof *e);
  e->be = lg_backend_new_by_name(o->backend);
  if (!e->be) {
    fprintf(stderr, "livegen probe %s: no backend '%s'\n", cmd, o->backend);
    return 1;
  }
  e->wck = lg_ckpt_open(o->model, err, sizeof err);
  if (e->wck && o->weights) e->ock = lg_ckpt_open(o->weights, err, sizeof err);
  if (!e->wck || (o->weights && !e->ock)) {
    fprintf(stderr, "livegen probe %s: %s\n", cmd, err);
    return 1;
  }
  e->m = lg_wan_dit_load(e->be, e->wck, e->ock, err, sizeof err);
  if (!e->m) {
    fprintf(stderr, "livegen probe %s: %s: %s\n", cmd, o->model, err);
    return 1;
  }
  e->in = lg_ckpt_open(o->in, err, sizeof err);
  if (!e->in) {
    fprintf(stderr, "livegen probe %s: %s\n", cmd, err);
    return 1;
  }
  return 0;
}

/* context [512,text_dim] from the input file. */
static float *read_context(const probe_env *e, const char *cmd) {
  const lg_ckpt_tensor *ti;
  float *ctx = tensor_f32(e->in, "context", &ti);
  const lg_wan_dit_config *c = lg_wan_dit_get_config(e->m);
  if (!ti || ti->ndim != 2 || ti->shape[0] != LG_DIT_TEXT_LEN || ti->shape[1] != c->text_dim) {
    fprintf(stderr, "livegen probe %s: input needs context f32 [%d,%d]\n", cmd, LG_DIT_TEXT_LEN,
            c->text_dim);
    free(ctx);
    return NULL;
  }
  return ctx;
}

int lg_cmd_probe_dit(int argc, char **argv) {
  probe_opts o;
  int pr = parse(argc, argv, &o);
  if (pr) return pr > 0 ? 0 : usage(argv[0]);
  probe_env e;
  out_list out = {.n = 0};
  int rc = 1, ncalls = 0;
  lg_kv_cache *kv = NULL;
  lg_dit_ws *ws = NULL;
  float *ctx = NULL, *xh = NULL, *th = NULL, *sh = NULL, *xcl = NULL, *vcl = NULL;
  lg_tensor xt = {0}, vt = {0};
  lg_kv_policy pol[LG_DIT_MAX_ROWS];
  lg_flow_sched sched;
  if (env_open(&e, &o, "dit")) goto done;
  if (!(ctx = read_context(&e, "dit"))) goto done;
  lg_flow_sched_init(&sched, o.shift);

  /* scan calls: shapes, max rows / row-frames */
  int64_t maxB = 0, maxBF = 0, h = 0, w = 0;
  for (;; ncalls++) {
    char nm[64];
    snprintf(nm, sizeof nm, "x.%d", ncalls);
    const lg_ckpt_tensor *xi = lg_ckpt_find(e.in, nm);
    if (!xi) break;
    if (xi->ndim != 5 || xi->shape[2] != 16 || xi->shape[0] < 1 || xi->shape[0] > LG_DIT_MAX_ROWS ||
        xi->shape[1] < 1 || xi->shape[1] > LG_DIT_MAX_CALL || xi->shape[3] < 2 ||
        xi->shape[3] % 2 || xi->shape[4] < 2 || xi->shape[4] % 2 ||
        (h && (xi->shape[3] != h || xi->shape[4] != w))) {
      fprintf(stderr,
              "livegen probe dit: %s must be [B<=%d,F<=%d,16,h,w] with even h, w equal in every "
              "call\n",
              nm, LG_DIT_MAX_ROWS, LG_DIT_MAX_CALL);
      goto done;
    }
    h = xi->shape[3];
    w = xi->shape[4];
    if (xi->shape[0] > maxB) maxB = xi->shape[0];
    if (xi->shape[0] * xi->shape[1] > maxBF) maxBF = xi->shape[0] * xi->shape[1];
  }
  if (!ncalls) {
    fprintf(stderr, "livegen probe dit: no x.0 in %s\n", o.in);
    goto done;
  }
  kv = lg_wan_dit_cache_new(e.m, (int)maxB, o.kv_frames, (int)h, (int)w);
  ws = lg_dit_ws_new(e.m, (int)maxBF, (int)h, (int)w);
  int64_t xs[5] = {maxBF, (int64_t)h, (int64_t)w, 16, 1};
  size_t nmax = (size_t)(maxBF * h * w * 16);
  xcl = malloc(nmax * sizeof(float));
  vcl = malloc(nmax * sizeof(float));
  if (!kv || !ws || !xcl || !vcl || lg_tensor_alloc(e.be, &xt, e.be->act_dtype, 4, xs) ||
      lg_tensor_alloc(e.be, &vt, e.be->act_dtype, 4, xs)) {
    fprintf(stderr, "livegen probe dit: out of memory\n");
    goto done;
  }
  for (int b = 0; b < maxB; b++)
    lg_kv_policy_init(&pol[b], o.kv_frames, o.sink_frames, o.adapt);
  if (lg_wan_dit_set_context(e.m, ws, kv, ctx) < 0) goto done;

  const int64_t ft = (h / 2) * (w / 2), hw = h * w;
  for (int k = 0; k < ncalls; k++) {
    char nx[64], nt[64], ns[64];
    snprintf(nx, sizeof nx, "x.%d", k);
    snprintf(nt, sizeof nt, "t.%d", k);
    snprintf(ns, sizeof ns, "start.%d", k);
    const lg_ckpt_tensor *xi, *ti, *si;
    xh = tensor_f32(e.in, nx, &xi);
    th = tensor_f32(e.in, nt, &ti);
    sh = tensor_f32(e.in, ns, &si);
    int64_t B = xi->shape[0], F = xi->shape[1];
    if (!xh || !th || !sh || ti->ndim != 1 || ti->shape[0] != B || si->ndim != 1 ||
        si->shape[0] != B) {
      fprintf(stderr, "livegen probe dit: call %d needs %s [B], %s [B] next to %s\n", k, nt, ns,
              nx);
      goto done;
    }
    lg_dit_row rows[LG_DIT_MAX_ROWS];
    lg_kv_plan plan[LG_DIT_MAX_ROWS];
    memset(rows, 0, sizeof rows);
    for (int64_t b = 0; b < B; b++) {
      double st = sh[b];
      if (!(st >= 0 && st < 1e9) || st != floor(st) || !isfinite(th[b])) {
        fprintf(stderr, "livegen probe dit: %s[%lld] = %g is not a token index\n", ns, (long long)b,
                st);
        goto done;
      }
      if (lg_kv_policy_plan(&pol[b], (int64_t)st, (int)ft, (int)F, &plan[b]) < 0) {
        fprintf(stderr, "livegen probe dit: call %d row %lld: bad cache sequence\n", k,
                (long long)b);
        goto done;
      }
      rows[b].t = th[b];
      rows[b].rope_start = plan[b].rope_start;
      rows[b].kv_frames = plan[b].kv_frames;
      for (int64_t f = 0; f < F; f++)
        rows[b].slot[f] = plan[b].slot[f];
    }
    to_cl(xcl, xh, B * F, 16, hw);
    int64_t s5[5] = {B, F, h, w, 16};
    lg_tensor x5 = lg_tensor_make(e.be, xt.data, xt.dtype, 5, s5);
    lg_tensor v5 = lg_tensor_make(e.be, vt.data, vt.dtype, 5, s5);
    if (lg_tensor_upload_f32(&x5, xcl) < 0 || lg_wan_dit_forward(e.m, ws, kv, &x5, rows, &v5) < 0 ||
        lg_tensor_download_f32(&v5, vcl) < 0) {
      fprintf(stderr, "livegen probe dit: call %d failed\n", k);
      goto done;
    }
    for (int64_t b = 0; b < B; b++) {
      if (plan[b].measure_slot < 0) continue;
      double sims[LG_KV_MAX_FRAMES];
      if (lg_kv_cache_sink_similarity(kv, (int)b, plan[b].measure_slot, pol[b].sinks, sims) < 0)
        goto done;
      lg_kv_policy_observe(&pol[b], &plan[b], sims);
    }
    size_t n = (size_t)(B * F * 16 * hw);
    float *v = malloc(n * sizeof(float)), *x0 = malloc(n * sizeof(float));
    if (!v || !x0) {
      free(v);
      free(x0);
      goto done;
    }
    from_cl(v, vcl, B * F, 16, hw);
    size_t per_row = (size_t)(F * 16 * hw);
    for (size_t i = 0; i < n; i++) {
      double sg = lg_flow_sched_sigma(&sched, th[i / per_row]);
      x0[i] = (float)((double)xh[i] - sg * (double)v[i]);
    }
    int64_t os[5] = {B, F, 16, h, w};
    char nv[64], n0[64];
    snprintf(nv, sizeof nv, "v.%d", k);
    snprintf(n0, sizeof n0, "x0.%d", k);
    if (out_add(&out, nv, v, 5, os) < 0 || out_add(&out, n0, x0, 5, os) < 0) goto done;
    free(xh);
    free(th);
    free(sh);
    xh = th = sh = NULL;
  }
  if (out_write(&out, o.out) < 0) goto done;
  printf("probe dit: %d calls -> %s\n", ncalls, o.out);
  rc = 0;
done:
  free(xh);
  free(th);
  free(sh);
  free(xcl);
  free(vcl);
  free(ctx);
  lg_tensor_free(&xt);
  lg_tensor_free(&vt);
  lg_dit_ws_free(&ws);
  lg_kv_cache_free(&kv);
  out_free(&out);
  env_free(&e);
  return rc;
}

/* ---- probe stream ---- */

typedef struct file_noise {
  const lg_ckpt *in;
  int h, w;
  float *tmp;
} file_noise;

/* eps_in.k / eps_step.k.i [1,F,16,h,w] from the file -> channels-last. */
static int noise_from_file(void *user, int chunk, int step, float *out, size_t n) {
  file_noise *fn = user;
  char nm[64];
  if (step < 0)
    snprintf(nm, sizeof nm, "eps_in.%d", chunk);
  else
    snprintf(nm, sizeof nm, "eps_step.%d.%d", chunk, step);
  const lg_ckpt_tensor *t;
  float *p = tensor_f32(fn->in, nm, &t);
  size_t hw = (size_t)fn->h * (size_t)fn->w;
  if (!p || t->ndim != 5 || t->shape[0] != 1 || t->shape[2] != 16 || t->shape[3] != fn->h ||
      t->shape[4] != fn->w || (size_t)t->shape[1] * 16 * hw != n) {
    fprintf(stderr, "livegen probe stream: input needs %s [1,%zu,16,%d,%d]\n", nm, n / 16 / hw,
            fn->h, fn->w);
    free(p);
    return LG_ENOTFOUND;
  }
  to_cl(out, p, (int64_t)(n / 16 / hw), 16, (int64_t)hw);
  free(p);
  return 0;
}

int lg_cmd_probe_stream(int argc, char **argv) {
  probe_opts o;
  int pr = parse(argc, argv, &o);
  if (pr) return pr > 0 ? 0 : usage(argv[0]);
  probe_env e;
  out_list out = {.n = 0};
  int rc = 1;
  lg_stream *st = NULL;
  float *ctx = NULL, *lat = NULL, *cl = NULL;
  lg_tensor lt = {0}, ot = {0};
  if (env_open(&e, &o, "stream")) goto done;
  if (!(ctx = read_context(&e, "stream"))) goto done;
  /* v2v: latent.0 [1,2,16,h,w]; t2v: eps_in.0 [1,3,16,h,w] gives the size */
  const lg_ckpt_tensor *l0 = lg_ckpt_find(e.in, o.t2v ? "eps_in.0" : "latent.0");
  const int F0 = o.t2v ? LG_T2V_BLOCK : 2;
  if (!l0 || l0->ndim != 5 || l0->shape[0] != 1 || l0->shape[1] != F0 || l0->shape[2] != 16 ||
      l0->shape[3] < 2 || l0->shape[3] % 2 || l0->shape[4] < 2 || l0->shape[4] % 2 ||
      l0->shape[3] > 4096 || l0->shape[4] > 4096) {
    fprintf(stderr, "livegen probe stream: input needs %s [1,%d,16,h,w] (h, w even)\n",
            o.t2v ? "eps_in.0" : "latent.0", F0);
    goto done;
  }
  const int h = (int)l0->shape[3], w = (int)l0->shape[4];
  double scale = 0.8;
  const lg_ckpt_tensor *si;
  float *sp = tensor_f32(e.in, "scale", &si);
  if (sp) {
    scale = sp[0];
    free(sp);
    if (!(scale >= 0 && scale <= 1)) {
      fprintf(stderr, "livegen probe stream: scale %g outside [0,1]\n", scale);
      goto done;
    }
  }
  lg_stream_opts so = {.t2v = o.t2v,
                       .steps = o.steps,
                       .shift = o.shift,
                       .kv_frames = o.kv_frames,
                       .sink_frames = o.sink_frames,
                       .adapt_sink = o.adapt,
                       .lat_h = h,
                       .lat_w = w};
  /* v2v (StreamDiffusionV2): [700,500,400,200] as they are; t2v (Self-Forcing):
   * [1000,750,500,250] warped through the shifted schedule */
  static const double v2v_steps[4] = {700, 500, 400, 200}, t2v_steps[4] = {1000, 750, 500, 250};
  lg_flow_sched sched;
  lg_flow_sched_init(&sched, o.shift);
  for (int i = 0; i < LG_MAX_STEPS; i++)
    so.step_list[i] = o.t2v ? lg_flow_sched_warp(&sched, t2v_steps[i]) : v2v_steps[i];
  char err[256] = "";
  st = lg_stream_new(e.m, &so, err, sizeof err);
  int64_t sh[4] = {3, h, w, 16};
  cl = malloc((size_t)(3 * h * w * 16) * sizeof(float));
  if (!st || !cl || lg_tensor_alloc(e.be, &lt, e.be->act_dtype, 4, sh) ||
      lg_tensor_alloc(e.be, &ot, e.be->act_dtype, 4, sh)) {
    fprintf(stderr, "livegen probe stream: %s\n", err[0] ? err : "out of memory");
    goto done;
  }
  if (lg_stream_set_context(st, ctx) < 0) goto done;
  file_noise fn = {.in = e.in, .h = h, .w = w};
  int nchunks = 0;
  for (int k = 0;; k++) {
    char nm[64];
    int nf = 0, oc = k;
    if (o.t2v) {
      snprintf(nm, sizeof nm, "eps_in.%d", k);
      if (!lg_ckpt_find(e.in, nm)) break;
      nf = lg_stream_next_t2v(st, noise_from_file, &fn, &ot);
    } else {
      snprintf(nm, sizeof nm, "latent.%d", k);
      const lg_ckpt_tensor *li;
      lat = tensor_f32(e.in, nm, &li);
      if (!lat) break;
      int F = k == 0 ? 2 : 1;
      if (li->ndim != 5 || li->shape[0] != 1 || li->shape[1] != F || li->shape[2] != 16 ||
          li->shape[3] != h || li->shape[4] != w) {
        fprintf(stderr, "livegen probe stream: %s must be [1,%d,16,%d,%d]\n", nm, F, h, w);
        goto done;
      }
      to_cl(cl, lat, F, 16, (int64_t)h * w);
      lg_tensor lv = lg_tensor_narrow(&lt, 0, 0, F);
      if (lg_tensor_upload_f32(&lv, cl) < 0) goto done;
      nf = lg_stream_push_v2v(st, &lv, scale, noise_from_file, &fn, &ot, &oc);
      free(lat);
      lat = NULL;
    }
    if (nf < 0) {
      fprintf(stderr, "livegen probe stream: chunk %d failed\n", k);
      goto done;
    }
    if (nf > 0) {
      lg_tensor ov = lg_tensor_narrow(&ot, 0, 0, nf);
      size_t n = (size_t)nf * (size_t)h * (size_t)w * 16;
      float *p = malloc(n * sizeof(float));
      if (!p || lg_tensor_download_f32(&ov, cl) < 0) {
        free(p);
        goto done;
      }
      from_cl(p, cl, nf, 16, (int64_t)h * w);
      char on[64];
      snprintf(on, sizeof on, "out.%d", oc);
      int64_t os[5] = {1, nf, 16, h, w};
      if (out_add(&out, on, p, 5, os) < 0) goto done;
    }
    nchunks++;
  }
  if (!nchunks) goto done;
  if (out_write(&out, o.out) < 0) goto done;
  printf("probe stream: %d chunks in, %d out -> %s\n", nchunks, out.n, o.out);
  rc = 0;
done:
  free(lat);
  free(cl);
  free(ctx);
  lg_tensor_free(&lt);
  lg_tensor_free(&ot);
  lg_stream_free(&st);
  out_free(&out);
  env_free(&e);
  return rc;
}

/* ---- probe compare ---- */

int lg_cmd_probe_compare(int argc, char **argv) {
  const char *a = NULL, *b = NULL;
  double rtol = 1e-4;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rtol") && i + 1 < argc) {
      char *end = NULL;
      rtol = strtod(argv[++i], &end);
      if (*end || !(rtol >= 0)) {
        fprintf(stderr, "livegen probe compare: bad --rtol\n");
        return 2;
      }
    } else if (!a) {
      a = argv[i];
    } else if (!b) {
      b = argv[i];
    } else {
      a = NULL;
      break;
    }
  }
  if (!a || !b) {
    fprintf(stderr, "usage: livegen probe compare EXPECTED.safetensors ACTUAL.safetensors "
                    "[--rtol X (1e-4)]\n"
                    "  every tensor of EXPECTED must be in ACTUAL with its shape and a relative "
                    "L2 error ||a-e||/||e|| <= X\n");
    return 2;
  }
  char err[512];
  lg_ckpt *ea = lg_ckpt_open(a, err, sizeof err), *eb = NULL;
  if (ea) eb = lg_ckpt_open(b, err, sizeof err);
  if (!ea || !eb) {
    fprintf(stderr, "livegen probe compare: %s\n", err);
    lg_ckpt_free(&ea);
    return 1;
  }
  int bad = 0;
  for (int i = 0; i < lg_ckpt_count(ea); i++) {
    const lg_ckpt_tensor *te = lg_ckpt_at(ea, i), *ta = lg_ckpt_find(eb, te->name);
    bool same = ta && ta->ndim == te->ndim;
    for (int j = 0; same && j < te->ndim; j++)
      same = ta->shape[j] == te->shape[j];
    if (!same) {
      printf("%-24s MISSING or shape differs\n", te->name);
      bad++;
      continue;
    }
    float *pe = tensor_f32(ea, te->name, NULL), *pa = tensor_f32(eb, te->name, NULL);
    size_t n = 1;
    for (int j = 0; j < te->ndim; j++)
      n *= (size_t)te->shape[j];
    double num = 0, den = 0, mx = 0;
    for (size_t k = 0; pe && pa && k < n; k++) {
      double d = (double)pa[k] - (double)pe[k];
      num += d * d;
      den += (double)pe[k] * pe[k];
      if (fabs(d) > mx || d != d) mx = fabs(d);
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = pe && pa && rel <= rtol && rel == rel;
    printf("%-24s rel %.3e  max_abs %.3e  %s\n", te->name, rel, mx, ok ? "ok" : "FAIL");
    if (!ok) bad++;
    free(pe);
    free(pa);
  }
  printf("compare: %d tensors, %d failed (rtol %g)\n", lg_ckpt_count(ea), bad, rtol);
  lg_ckpt_free(&ea);
  lg_ckpt_free(&eb);
  return bad ? 1 : 0;
}
