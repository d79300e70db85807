/* stream.c: v2v stream batch and t2v block loop over latents (see stream.h, docs/DIT.md).
 * Runs on the thread that owns the backend. All backend memory is allocated in
 * lg_stream_new; a push only uploads noise and runs ops. */
#include "stream.h"

#include "kv_policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lg_stream {
  lg_wan_dit *m;
  lg_backend *be;
  lg_stream_opts o;
  lg_flow_sched sched;
  int rows;   /* cache rows: steps (v2v) or 1 (t2v) */
  int maxf;   /* latent frames of the largest single-row call (2 v2v, 3 t2v) */
  int64_t ft; /* tokens per latent frame */
  lg_kv_cache *kv;
  lg_dit_ws *ws;
  lg_kv_policy pol[LG_MAX_STEPS];
  lg_tensor X, V, X0; /* [max(rows, maxf) frames, h, w, 16] act dtype: batch / warm-up input */
  lg_tensor eps;      /* [maxf, h, w, 16] act dtype */
  lg_tensor eps32;    /* [maxf, h, w, 16] f32 staging */
  float *host;        /* maxf*h*w*16 floats */
  int row_chunk[LG_MAX_STEPS];
  int64_t row_start[LG_MAX_STEPS];
  double row_t0[LG_MAX_STEPS]; /* timestep each row runs at (row 0: from the noise scale) */
  int chunks;
  int64_t next_start;
};

static size_t lat_elems(const lg_stream *s, int frames) {
  return (size_t)frames * (size_t)s->o.lat_h * (size_t)s->o.lat_w * 16;
}

static lg_tensor frames_view(const lg_tensor *t, int64_t first, int64_t n) {
  return lg_tensor_narrow(t, 0, first, n);
}

/* [B,F,h,w,16] view of the first B*F frames of a [n,h,w,16] buffer. */
static lg_tensor batch_view(const lg_tensor *t, int64_t B, int64_t F) {
  lg_tensor v = *t;
  int64_t ne[5] = {B, F, t->ne[1], t->ne[2], 16};
  v = lg_tensor_make(t->be, t->data, t->dtype, 5, ne);
  return v;
}

lg_stream *lg_stream_new(lg_wan_dit *m, const lg_stream_opts *o, char *err, size_t n) {
  lg_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (!m || o->steps < 1 || o->steps > LG_MAX_STEPS || o->lat_h < 2 || o->lat_w < 2 ||
      o->lat_h % 2 || o->lat_w % 2) {
    snprintf(err, n, "stream: steps %d must be 1..%d and the latent %dx%d even", o->steps,
             LG_MAX_STEPS, o->lat_h, o->lat_w);
    goto fail;
  }
  s->m = m;
  s->be = lg_wan_dit_backend(m);
  s->o = *o;
  if (lg_flow_sched_init(&s->sched, o->shift) < 0) {
    snprintf(err, n, "stream: bad shift %g", o->shift);
    goto fail;
  }
  s->rows = o->t2v ? 1 : o->steps;
  s->maxf = o->t2v ? LG_T2V_BLOCK : 2;
  s->ft = (int64_t)(o->lat_h / 2) * (o->lat_w / 2);
  for (int i = 0; i < s->rows; i++) {
    if (lg_kv_policy_init(&s->pol[i], o->kv_frames, o->sink_frames, o->adapt_sink) < 0) {
      snprintf(err, n, "stream: kv_frames %d / sink_frames %d invalid", o->kv_frames,
               o->sink_frames);
      goto fail;
    }
  }
  if (s->maxf > o->kv_frames - o->sink_frames && s->maxf > o->kv_frames) {
    snprintf(err, n, "stream: a KV cache of %d frames cannot hold a %d-frame chunk", o->kv_frames,
             s->maxf);
    goto fail;
  }
  int bf = s->rows > s->maxf ? s->rows : s->maxf;
  s->kv = lg_wan_dit_cache_new(m, s->rows, o->kv_frames, o->lat_h, o->lat_w);
  s->ws = lg_dit_ws_new(m, bf, o->lat_h, o->lat_w);
  int64_t sh[4] = {bf, o->lat_h, o->lat_w, 16}, se[4] = {s->maxf, o->lat_h, o->lat_w, 16};
  s->host = malloc(lat_elems(s, s->maxf) * sizeof(float));
  if (!s->kv || !s->ws || !s->host || lg_tensor_alloc(s->be, &s->X, s->be->act_dtype, 4, sh) ||
      lg_tensor_alloc(s->be, &s->V, s->be->act_dtype, 4, sh) ||
      lg_tensor_alloc(s->be, &s->X0, s->be->act_dtype, 4, sh) ||
      lg_tensor_alloc(s->be, &s->eps, s->be->act_dtype, 4, se) ||
      lg_tensor_alloc(s->be, &s->eps32, LG_F32, 4, se)) {
    snprintf(err, n, "stream: cannot allocate the caches and the batch on the backend");
    goto fail;
  }
  if (lg_stream_reset(s) < 0) {
    snprintf(err, n, "stream: reset failed");
    goto fail;
  }
  return s;
fail:
  lg_stream_free(&s);
  return NULL;
}

void lg_stream_free(lg_stream **ps) {
  if (!ps || !*ps) return;
  lg_stream *s = *ps;
  lg_kv_cache_free(&s->kv);
  lg_dit_ws_free(&s->ws);
  lg_tensor_free(&s->X);
  lg_tensor_free(&s->V);
  lg_tensor_free(&s->X0);
  lg_tensor_free(&s->eps);
  lg_tensor_free(&s->eps32);
  free(s->host);
  free(s);
  *ps = NULL;
}

int lg_stream_reset(lg_stream *s) {
  for (int i = 0; i < s->rows; i++) {
    lg_kv_policy_reset(&s->pol[i]);
    s->row_chunk[i] = -1;
    s->row_start[i] = 0;
  }
  s->chunks = 0;
  s->next_start = 0;
  return lg_kv_cache_clear(s->kv);
}

int lg_stream_set_context(lg_stream *s, const float *ctx) {
  return lg_wan_dit_set_context(s->m, s->ws, s->kv, ctx);
}

int lg_stream_chunks(const lg_stream *s) {
  return s->chunks;
}
const lg_flow_sched *lg_stream_sched(const lg_stream *s) {
  return &s->sched;
}
size_t lg_stream_bytes(const lg_stream *s) {
  return lg_kv_cache_bytes(s->kv) + lg_dit_ws_bytes(s->ws) + 3 * lg_tensor_nbytes(&s->X) +
         lg_tensor_nbytes(&s->eps) + lg_tensor_nbytes(&s->eps32);
}

/* eps[0:F] <- F frames of noise from the caller. */
static int draw(lg_stream *s, lg_noise_fn noise, void *user, int chunk, int step, int F) {
  size_t n = lat_elems(s, F);
  int err = noise(user, chunk, step, s->host, n);
  if (err < 0) return err;
  lg_tensor e32 = frames_view(&s->eps32, 0, F), e = frames_view(&s->eps, 0, F);
  err = lg_tensor_upload(&e32, s->host);
  if (!err) err = LG_OP(s->be, copy, &e, &e32);
  return err;
}

/* x <- (1-sigma(t)) x0 + sigma(t) eps  (add_noise, sigma as float) */
static int add_noise(lg_stream *s, lg_tensor *x, const lg_tensor *x0, const lg_tensor *eps,
                     double t) {
  double sg = lg_flow_sched_sigma(&s->sched, t);
  return LG_OP(s->be, axpby, x, (float)(1.0 - sg), x0, (float)sg, eps);
}

/* x0 <- x - sigma(t) v  (sigma as float) */
static int to_x0(lg_stream *s, lg_tensor *x0, const lg_tensor *x, const lg_tensor *v, double t) {
  double sg = lg_flow_sched_sigma(&s->sched, t);
  return LG_OP(s->be, axpby, x0, 1.0f, x, (float)-sg, v);
}

/* Plans + forward of rows [0,B) with F frames each; x/v are [B*F,h,w,16] buffers. Measures
 * sink similarity where the policy asks. */
static int run_rows(lg_stream *s, int B, int F, const int64_t *start, const double *t, lg_tensor *x,
                    lg_tensor *v) {
  lg_dit_row rows[LG_MAX_STEPS];
  lg_kv_plan plan[LG_MAX_STEPS];
  memset(rows, 0, sizeof rows);
  for (int b = 0; b < B; b++) {
    int err = lg_kv_policy_plan(&s->pol[b], start[b], (int)s->ft, F, &plan[b]);
    if (err < 0) return err;
    rows[b].t = (float)t[b];
    rows[b].rope_start = plan[b].rope_start;
    rows[b].kv_frames = plan[b].kv_frames;
    for (int f = 0; f < F; f++)
      rows[b].slot[f] = plan[b].slot[f];
  }
  lg_tensor xb = batch_view(x, B, F), vb = batch_view(v, B, F);
  int err = lg_wan_dit_forward(s->m, s->ws, s->kv, &xb, rows, &vb);
  if (err < 0) return err;
  for (int b = 0; b < B; b++) {
    if (plan[b].measure_slot < 0) continue;
    double sims[LG_KV_MAX_FRAMES];
    err = lg_kv_cache_sink_similarity(s->kv, b, plan[b].measure_slot, s->pol[b].sinks, sims);
    if (err < 0) return err;
    lg_kv_policy_observe(&s->pol[b], &plan[b], sims);
  }
  return 0;
}

/* Denoises F frames in X[0:F] step by step in cache row 0, starting at t_first; result x0 in
 * X0[0:F]. Re-noise draws are (chunk, step i). */
static int denoise_single(lg_stream *s, int chunk, int F, int64_t start, double t_first,
                          lg_noise_fn noise, void *user) {
  lg_tensor x = frames_view(&s->X, 0, F), v = frames_view(&s->V, 0, F);
  lg_tensor x0 = frames_view(&s->X0, 0, F), e = frames_view(&s->eps, 0, F);
  for (int i = 0; i < s->o.steps; i++) {
    double t = i == 0 ? t_first : s->o.step_list[i];
    int err = run_rows(s, 1, F, &start, &t, &s->X, &s->V);
    if (!err) err = to_x0(s, &x0, &x, &v, t);
    if (!err && i + 1 < s->o.steps) {
      err = draw(s, noise, user, chunk, i, F);
      if (!err) err = add_noise(s, &x, &x0, &e, s->o.step_list[i + 1]);
    }
    if (err) return err;
  }
  return 0;
}

int lg_stream_push_v2v(lg_stream *s, const lg_tensor *latent, double scale, lg_noise_fn noise,
                       void *user, lg_tensor *out, int *out_chunk) {
  int err = 0;
  char sb[96];
  *out_chunk = -1;
  if (s->o.t2v) {
    LG_ERR("stream", "push: this stream is t2v");
    return LG_EINVAL;
  }
  int F = latent->ndim == 4 ? (int)latent->ne[0] : 0;
  int want = s->chunks == 0 ? 2 : 1;
  if (F != want || latent->ne[1] != s->o.lat_h || latent->ne[2] != s->o.lat_w ||
      latent->ne[3] != 16 || !(scale >= 0.0 && scale <= 1.0)) {
    LG_ERR("stream", "push: latent %s must be [%d,%d,%d,16], scale %g in [0,1]",
           lg_tensor_shape_str(latent, sb, sizeof sb), want, s->o.lat_h, s->o.lat_w, scale);
    return LG_EINVAL;
  }
  if (!s->kv->ctx_valid) {
    LG_ERR("stream", "push: no context set");
    return LG_EINVAL;
  }
  const int R = s->rows, chunk = s->chunks;
  const double t0 = (double)((int)(1000.0 * scale) - 100);
  /* shift the rows by one (row R-1's content falls out) */
  for (int i = R - 1; chunk > 0 && i >= 1; i--) {
    lg_tensor d = frames_view(&s->X, i, 1), src = frames_view(&s->X, i - 1, 1);
    err = LG_OP(s->be, copy, &d, &src);
    if (err) return err;
    s->row_chunk[i] = s->row_chunk[i - 1];
    s->row_start[i] = s->row_start[i - 1];
  }
  /* row 0: noisy = s*eps + (1-s)*latent at t0 */
  err = draw(s, noise, user, chunk, -1, F);
  if (err) return err;
  lg_tensor x = frames_view(&s->X, 0, F), e = frames_view(&s->eps, 0, F);
  err = LG_OP(s->be, axpby, &x, (float)scale, &e, (float)(1.0 - scale), latent);
  if (err) return err;
  s->row_chunk[0] = chunk;
  s->row_start[0] = s->next_start;
  s->next_start += F * s->ft;
  s->chunks++;

  if (chunk == 0) {
    /* first chunk: every step in cache row 0, then row 0's cache is every row's */
    err = denoise_single(s, 0, F, 0, t0, noise, user);
    for (int i = 1; !err && i < R; i++) {
      err = lg_kv_cache_copy_row(s->kv, i, 0);
      s->pol[i] = s->pol[0];
      s->row_chunk[i] = -1;
    }
    s->row_chunk[0] = -1; /* row 0 is empty until the next chunk enters */
    if (err) return err;
    lg_tensor x0 = frames_view(&s->X0, 0, F), o = frames_view(out, 0, F);
    err = LG_OP(s->be, copy, &o, &x0);
    if (err) return err;
    *out_chunk = 0;
    return F;
  }

  /* rows holding a chunk form a prefix: run them in one batch */
  int B = 0;
  while (B < R && s->row_chunk[B] >= 1)
    B++;
  double t[LG_MAX_STEPS] = {0};
  for (int i = 0; i < B; i++)
    t[i] = i == 0 ? t0 : s->o.step_list[i];
  err = run_rows(s, B, 1, s->row_start, t, &s->X, &s->V);
  if (err) return err;
  for (int i = 0; i < B; i++) {
    lg_tensor xi = frames_view(&s->X, i, 1), vi = frames_view(&s->V, i, 1);
    lg_tensor x0 = frames_view(&s->X0, i, 1);
    err = to_x0(s, &x0, &xi, &vi, t[i]);
    if (!err && i + 1 < R) {
      lg_tensor e1 = frames_view(&s->eps, 0, 1);
      err = draw(s, noise, user, s->row_chunk[i], i, 1);
      if (!err) err = add_noise(s, &xi, &x0, &e1, s->o.step_list[i + 1]);
    }
    if (err) return err;
  }
  if (B < R) return 0;
  lg_tensor x0 = frames_view(&s->X0, R - 1, 1), o = frames_view(out, 0, 1);
  err = LG_OP(s->be, copy, &o, &x0);
  if (err) return err;
  *out_chunk = s->row_chunk[R - 1];
  return 1;
}

int lg_stream_next_t2v(lg_stream *s, lg_noise_fn noise, void *user, lg_tensor *out) {
  if (!s->o.t2v) {
    LG_ERR("stream", "next_t2v: this stream is v2v");
    return LG_EINVAL;
  }
  if (!s->kv->ctx_valid) {
    LG_ERR("stream", "next_t2v: no context set");
    return LG_EINVAL;
  }
  const int F = LG_T2V_BLOCK, block = s->chunks;
  int64_t start = s->next_start;
  int err = draw(s, noise, user, block, -1, F);
  lg_tensor x = frames_view(&s->X, 0, F), e = frames_view(&s->eps, 0, F);
  lg_tensor x0 = frames_view(&s->X0, 0, F);
  if (!err) err = LG_OP(s->be, copy, &x, &e);
  if (!err) err = denoise_single(s, block, F, start, s->o.step_list[0], noise, user);
  if (err) return err;
  /* clean pass: x0 at t=0 rewrites this block's slots with clean K/V (output unused) */
  double tz = 0.0;
  err = LG_OP(s->be, copy, &x, &x0);
  if (!err) err = run_rows(s, 1, F, &start, &tz, &s->X, &s->V);
  if (!err) {
    lg_tensor o = frames_view(out, 0, F);
    err = LG_OP(s->be, copy, &o, &x0);
  }
  if (err) return err;
  s->next_start += F * s->ft;
  s->chunks++;
  return F;
}
