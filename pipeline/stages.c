/* stages.c: the v2v stream pipelined over DiT stages (see stages.h, docs/MULTIGPU.md): the
 * partition and balancing functions, one stage's message loop, stage 0's ring schedule (the
 * stream rows, noise, x0 and the KV slot policy, exactly as pipeline/stream.c computes them),
 * layer-boundary moves with their KV caches, and the in-process launcher (stage threads).
 * Threads: each lg_stage runs on the thread that owns its backend; the in-process launcher
 * starts one thread per stage > 0. */
#include "stages.h"

#include "kv_policy.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC 0x4C475354u
#define MAX_SINKS 16
#define MAX_MOVES 64

enum {
  MSG_BATCH = 1,
  MSG_RETURN,
  MSG_CONTEXT,
  MSG_COPYROWS,
  MSG_RESET,
  MSG_MARK,
  MSG_KV,
  MSG_STOP
};

/* The header of every message (fits LG_XFER_HDR_BYTES; host byte order: every rank runs the
 * same build on one kind of host). */
typedef struct msg {
  uint32_t magic;
  int32_t kind;
  int32_t tick, B, F;
  int32_t mark_k, mark_delta; /* MARK */
  int32_t kv_which;           /* KV: 0 K, 1 V, 2 context K, 3 context V */
  lg_dit_row rows[LG_MAX_STEPS];
  int32_t measure_slot[LG_MAX_STEPS];
  int32_t sinks;
  double sims[LG_MAX_STEPS][MAX_SINKS]; /* partial sums over the layers run so far */
  double blocks_ms[LG_STAGES_MAX], fixed_ms[LG_STAGES_MAX];
} msg;
_Static_assert(sizeof(msg) <= LG_XFER_HDR_BYTES, "message header too large");

typedef struct tick_rec {
  bool used;
  int tick, B, F;
  int chunk[LG_MAX_STEPS];
  double t[LG_MAX_STEPS];
  lg_kv_plan plan[LG_MAX_STEPS];
} tick_rec;

struct lg_stage {
  lg_wan_dit *m;
  lg_backend *be;
  lg_transport *t;
  lg_stages_opts o;
  int rank, n, R, maxrf, L, d;
  int64_t ft;
  int bound[LG_STAGES_MAX + 1];
  int lo, hi; /* this stage's layers [lo, hi) */
  lg_kv_cache *kv;
  int kv_first; /* model layer held in cache layer 0 */
  int cap;      /* cache capacity in layers */
  lg_dit_ws *ws;
  lg_tensor hid, e, e0; /* [maxrf*ft, d], [maxrf, d], [maxrf, 6d] act */
  lg_tensor vbuf;       /* [maxrf, h, w, 16] act: head output (last) / RETURN (stage 0) */
  float *ctx;           /* [512, text_dim] host: CONTEXT payload */
  unsigned char wire[LG_XFER_HDR_BYTES];
  msg cur; /* header of the batch being computed */
  /* stage 0 only */
  lg_flow_sched sched;
  lg_kv_policy pol[LG_MAX_STEPS];
  lg_tensor X[LG_STAGES_MAX]; /* per in-flight tick slot: [maxrf, h, w, 16] act */
  lg_tensor X0, carry, eps;   /* [maxrf|R|2, h, w, 16] act */
  lg_tensor eps32;            /* [2, h, w, 16] f32 */
  float *host;
  tick_rec rec[LG_STAGES_MAX];
  int carry_B, carry_chunk[LG_MAX_STEPS];
  int chunks, inflight;
  int moves[MAX_MOVES][2], n_moves;
  bool balanced;
  int target[LG_STAGES_MAX + 1];
  double sum_blocks[LG_STAGES_MAX], sum_fixed[LG_STAGES_MAX];
  double sum_extra; /* lg_stage_note_extra_ms: rank 0's work outside the stage */
  int n_extra;
  int measured;
};

/* ------------------------------------------------------------ partition and balancing */

int lg_stages_partition_even(int layers, int n, int *bound) {
  if (n < 1 || n > LG_STAGES_MAX || layers < n) {
    LG_ERR("stages", "%d layers cannot be split over %d stages (1..%d, >= 1 layer each)", layers, n,
           LG_STAGES_MAX);
    return LG_EINVAL;
  }
  bound[0] = 0;
  for (int s = 0; s < n; s++)
    bound[s + 1] = bound[s] + layers / n + (s < layers % n ? 1 : 0);
  return 0;
}

int lg_stages_balance(int layers, int n, const double *layer_ms, const double *fixed_ms,
                      int max_layers, int *bound) {
  if (n < 1 || n > LG_STAGES_MAX || layers < n || layers > 1024) {
    LG_ERR("stages", "balance: %d layers over %d stages", layers, n);
    return LG_EINVAL;
  }
  if (max_layers <= 0) max_layers = layers;
  /* best[s][l]: the smallest possible slowest-stage time of stages [0, s) over layers [0, l) */
  double *best = malloc(sizeof(double) * (size_t)(n + 1) * (size_t)(layers + 1));
  int *arg = malloc(sizeof(int) * (size_t)(n + 1) * (size_t)(layers + 1));
  double *pre = malloc(sizeof(double) * (size_t)(layers + 1));
  if (!best || !arg || !pre) {
    free(best);
    free(arg);
    free(pre);
    return LG_ENOMEM;
  }
#define BEST(s, l) best[(size_t)(s) * (size_t)(layers + 1) + (size_t)(l)]
#define ARG(s, l) arg[(size_t)(s) * (size_t)(layers + 1) + (size_t)(l)]
  pre[0] = 0.0;
  for (int l = 0; l < layers; l++)
    pre[l + 1] = pre[l] + (layer_ms[l] > 0.0 ? layer_ms[l] : 0.0);
  for (int s = 0; s <= n; s++)
    for (int l = 0; l <= layers; l++)
      BEST(s, l) = INFINITY;
  BEST(0, 0) = 0.0;
  for (int s = 1; s <= n; s++) {
    for (int l = s; l <= layers; l++) {
      for (int j = s - 1; j < l; j++) { /* stage s-1 runs [j, l) */
        if (l - j > max_layers || !isfinite(BEST(s - 1, j))) continue;
        double cost = pre[l] - pre[j] + (fixed_ms ? fixed_ms[s - 1] : 0.0);
        double v = BEST(s - 1, j) > cost ? BEST(s - 1, j) : cost;
        if (v < BEST(s, l)) { /* first (leftmost) split on a tie */
          BEST(s, l) = v;
          ARG(s, l) = j;
        }
      }
    }
  }
  int err = 0;
  if (!isfinite(BEST(n, layers))) {
    LG_ERR("stages", "balance: no split of %d layers over %d stages with <= %d layers each", layers,
           n, max_layers);
    err = LG_EINVAL;
  } else {
    bound[n] = layers;
    for (int s = n; s >= 1; s--)
      bound[s - 1] = ARG(s, bound[s]);
  }
#undef BEST
#undef ARG
  free(best);
  free(arg);
  free(pre);
  return err;
}

int lg_stages_next_move(int n, const int *cur, const int *target, int *k, int *delta) {
  for (int s = 1; s < n; s++) {
    if (cur[s] == target[s]) continue;
    int dl = target[s] > cur[s] ? 1 : -1;
    /* the move must leave both stages non-empty: moving boundary s left shrinks stage s-1 */
    if (dl < 0 && cur[s] - 1 <= cur[s - 1]) continue;
    if (dl > 0 && cur[s] + 1 >= cur[s + 1]) continue;
    *k = s - 1;
    *delta = dl;
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ stage setup */

static size_t act_size(void) {
  return 4; /* the largest act dtype: payload bounds are computed before a backend is known */
}

size_t lg_stages_max_payload(const lg_wan_dit_config *c, const lg_stages_opts *o) {
  const lg_stream_opts *so = &o->stream;
  size_t R = (size_t)so->steps, maxrf = R > 2 ? R : 2;
  size_t ft = (size_t)(so->lat_h / 2) * (size_t)(so->lat_w / 2), es = act_size();
  size_t sz[5] = {maxrf * ft * (size_t)c->dim * es,
                  maxrf * (size_t)so->lat_h * (size_t)so->lat_w * 16 * es,
                  R * (size_t)so->kv_frames * ft * (size_t)c->dim * es,
                  (size_t)LG_DIT_TEXT_LEN * (size_t)c->dim * es,
                  (size_t)LG_DIT_TEXT_LEN * (size_t)c->text_dim * sizeof(float)};
  size_t mx = 0;
  for (int i = 0; i < 5; i++)
    if (sz[i] > mx) mx = sz[i];
  return mx;
}

static lg_tensor prefix(const lg_tensor *t, int64_t rows) {
  return lg_tensor_narrow(t, 0, 0, rows);
}

/* [B,F,h,w,16] view of the first B*F frames of a [n,h,w,16] buffer. */
static lg_tensor batch_view(const lg_tensor *t, int64_t B, int64_t F) {
  int64_t ne[5] = {B, F, t->ne[1], t->ne[2], 16};
  return lg_tensor_make(t->be, t->data, t->dtype, 5, ne);
}

static lg_tensor frames(const lg_tensor *t, int64_t first, int64_t n) {
  return lg_tensor_narrow(t, 0, first, n);
}

lg_stage *lg_stage_new(lg_wan_dit *m, const lg_stages_opts *o, lg_transport *t, char *err,
                       size_t n) {
  lg_stage *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  const lg_stream_opts *so = &o->stream;
  const lg_wan_dit_config *c = m ? lg_wan_dit_get_config(m) : NULL;
  if (!m || !t || o->n < 1 || o->n > LG_STAGES_MAX || t->size != o->n || t->rank < 0 ||
      t->rank >= o->n) {
    snprintf(err, n, "stages: %d stages (1..%d), transport of %d", o->n, LG_STAGES_MAX,
             t ? t->size : 0);
    goto fail;
  }
  if (so->t2v || so->steps < 1 || so->steps > LG_MAX_STEPS || so->lat_h < 2 || so->lat_w < 2 ||
      so->lat_h % 2 || so->lat_w % 2) {
    snprintf(err, n, "stages: v2v only, steps 1..%d, even latent size", LG_MAX_STEPS);
    goto fail;
  }
  if (so->adapt_sink > 0.0 && so->sink_frames > MAX_SINKS) {
    snprintf(err, n, "stages: at most %d sink frames with adaptive sinks", MAX_SINKS);
    goto fail;
  }
  s->m = m;
  s->be = lg_wan_dit_backend(m);
  s->t = t;
  s->o = *o;
  s->rank = t->rank;
  s->n = o->n;
  s->R = so->steps;
  s->maxrf = s->R > 2 ? s->R : 2;
  s->L = c->layers;
  s->d = c->dim;
  s->ft = (int64_t)(so->lat_h / 2) * (so->lat_w / 2);
  bool given = false;
  for (int i = 0; i <= s->n; i++)
    given = given || o->bound[i] != 0;
  if (given) {
    bool ok = o->bound[0] == 0 && o->bound[s->n] == s->L;
    for (int i = 0; ok && i < s->n; i++)
      ok = o->bound[i] < o->bound[i + 1];
    if (!ok) {
      snprintf(err, n, "stages: boundaries must rise from 0 to %d layers", s->L);
      goto fail;
    }
    memcpy(s->bound, o->bound, sizeof s->bound);
  } else if (lg_stages_partition_even(s->L, s->n, s->bound) < 0) {
    snprintf(err, n, "stages: %d layers cannot be split over %d stages", s->L, s->n);
    goto fail;
  }
  s->cap = o->max_layers > 0 && o->max_layers < s->L ? o->max_layers : s->L;
  for (int i = 0; i < s->n; i++) {
    if (s->bound[i + 1] - s->bound[i] > s->cap) {
      snprintf(err, n, "stages: stage %d has %d layers, more than max_layers %d", i,
               s->bound[i + 1] - s->bound[i], s->cap);
      goto fail;
    }
  }
  s->lo = s->bound[s->rank];
  s->hi = s->bound[s->rank + 1];
  s->kv_first = s->lo;
  s->kv = lg_kv_cache_new(s->be, s->cap, c->dim, s->R, so->kv_frames, (int)s->ft, LG_DIT_TEXT_LEN);
  s->ws = lg_dit_ws_new(m, s->maxrf, so->lat_h, so->lat_w);
  s->ctx = malloc(sizeof(float) * LG_DIT_TEXT_LEN * (size_t)c->text_dim);
  lg_dtype ad = s->be->act_dtype;
  int64_t sh[2] = {s->maxrf * s->ft, c->dim}, she[2] = {s->maxrf, c->dim},
          she0[2] = {s->maxrf, 6 * (int64_t)c->dim};
  int64_t lat[4] = {s->maxrf, so->lat_h, so->lat_w, 16};
  if (!s->kv || !s->ws || !s->ctx || lg_tensor_alloc(s->be, &s->hid, ad, 2, sh) ||
      lg_tensor_alloc(s->be, &s->e, ad, 2, she) || lg_tensor_alloc(s->be, &s->e0, ad, 2, she0) ||
      lg_tensor_alloc(s->be, &s->vbuf, ad, 4, lat)) {
    snprintf(err, n, "stages: cannot allocate stage %d's cache and buffers", s->rank);
    goto fail;
  }
  if (s->rank == 0) {
    if (lg_flow_sched_init(&s->sched, so->shift) < 0) {
      snprintf(err, n, "stages: bad shift %g", so->shift);
      goto fail;
    }
    for (int i = 0; i < s->R; i++) {
      if (lg_kv_policy_init(&s->pol[i], so->kv_frames, so->sink_frames, so->adapt_sink) < 0) {
        snprintf(err, n, "stages: kv_frames %d / sink_frames %d invalid", so->kv_frames,
                 so->sink_frames);
        goto fail;
      }
    }
    int64_t rl[4] = {s->R, so->lat_h, so->lat_w, 16}, el[4] = {2, so->lat_h, so->lat_w, 16};
    s->host = malloc(sizeof(float) * 2 * (size_t)so->lat_h * (size_t)so->lat_w * 16);
    bool ok = s->host && !lg_tensor_alloc(s->be, &s->X0, ad, 4, lat) &&
              !lg_tensor_alloc(s->be, &s->carry, ad, 4, rl) &&
              !lg_tensor_alloc(s->be, &s->eps, ad, 4, el) &&
              !lg_tensor_alloc(s->be, &s->eps32, LG_F32, 4, el);
    for (int i = 0; ok && i < s->n; i++)
      ok = !lg_tensor_alloc(s->be, &s->X[i], ad, 4, lat);
    if (!ok) {
      snprintf(err, n, "stages: cannot allocate stage 0's stream buffers");
      goto fail;
    }
    for (int i = 0; i < s->R; i++)
      lg_kv_policy_reset(&s->pol[i]);
  }
  return s;
fail:
  lg_stage_free(&s);
  return NULL;
}

void lg_stage_free(lg_stage **ps) {
  if (!ps || !*ps) return;
  lg_stage *s = *ps;
  lg_kv_cache_free(&s->kv);
  lg_dit_ws_free(&s->ws);
  lg_tensor_free(&s->hid);
  lg_tensor_free(&s->e);
  lg_tensor_free(&s->e0);
  lg_tensor_free(&s->vbuf);
  lg_tensor_free(&s->X0);
  lg_tensor_free(&s->carry);
  lg_tensor_free(&s->eps);
  lg_tensor_free(&s->eps32);
  for (int i = 0; i < LG_STAGES_MAX; i++)
    lg_tensor_free(&s->X[i]);
  free(s->host);
  free(s->ctx);
  free(s);
  *ps = NULL;
}

void lg_stage_layers(const lg_stage *s, int *first, int *last) {
  *first = s->lo;
  *last = s->hi;
}

void lg_stage_bounds(const lg_stage *s, int *bound) {
  memcpy(bound, s->bound, sizeof(int) * (size_t)(s->n + 1));
}

void lg_stage_note_extra_ms(lg_stage *s, double ms) {
  if (!s || s->rank != 0 || !(ms >= 0.0) || ms > 1e6) return;
  s->sum_extra += ms;
  s->n_extra++;
}

int lg_stage_times(const lg_stage *s, double *blocks_ms, double *fixed_ms, int *batches) {
  *batches = s->measured;
  for (int i = 0; i < s->n; i++) {
    blocks_ms[i] = s->measured ? s->sum_blocks[i] / s->measured : 0.0;
    fixed_ms[i] = s->measured ? s->sum_fixed[i] / s->measured : 0.0;
  }
  return 0;
}

int lg_stage_extra_lag(const lg_stage *s) {
  return (s->n - 1) * s->R;
}

size_t lg_stage_bytes(const lg_stage *s) {
  size_t b = lg_kv_cache_bytes(s->kv) + lg_dit_ws_bytes(s->ws);
  const lg_tensor *ts[] = {&s->hid, &s->e, &s->e0, &s->vbuf, &s->X0, &s->carry, &s->eps, &s->eps32};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    b += ts[i]->data ? lg_tensor_nbytes(ts[i]) : 0; /* stage 0's buffers only on stage 0 */
  for (int i = 0; i < LG_STAGES_MAX; i++)
    b += s->X[i].data ? lg_tensor_nbytes(&s->X[i]) : 0;
  return b;
}

/* ------------------------------------------------------------ messages */

static int send_msg(lg_stage *s, lg_peer to, const msg *h, const lg_tensor *x) {
  memset(s->wire, 0, sizeof s->wire);
  memcpy(s->wire, h, sizeof *h);
  return s->t->ops->send(s->t, to, s->wire, x);
}

static int recv_msg(lg_stage *s, lg_peer from, msg *h, size_t *bytes) {
  int err = s->t->ops->recv_hdr(s->t, from, s->wire, bytes);
  if (err) return err;
  memcpy(h, s->wire, sizeof *h);
  if (h->magic != MAGIC || h->kind < MSG_BATCH || h->kind > MSG_STOP || h->B < 0 || h->B > s->R ||
      h->F < 0 || h->F > 2 || h->B * h->F > s->maxrf) {
    LG_ERR("stages", "stage %d: bad message (kind %d, %d rows of %d frames)", s->rank, h->kind,
           h->B, h->F);
    return LG_EFORMAT;
  }
  return 0;
}

static msg ctl(int kind) {
  msg h;
  memset(&h, 0, sizeof h);
  h.magic = MAGIC;
  h.kind = kind;
  return h;
}

static bool is_last(const lg_stage *s) {
  return s->rank == s->n - 1;
}

/* Control messages go down the stages; the last stage does not pass them on to stage 0. */
static int forward_ctl(lg_stage *s, const msg *h, const lg_tensor *x) {
  if (is_last(s)) return 0;
  return send_msg(s, LG_PEER_NEXT, h, x);
}

/* Rotates the cache's per-layer views by one: dir > 0 moves the last view to the front. */
static void rotate(lg_kv_cache *kv, int dir) {
  lg_tensor *arr[4] = {kv->k, kv->v, kv->ck, kv->cv};
  int c = kv->layers;
  for (int a = 0; a < 4; a++) {
    lg_tensor *v = arr[a];
    if (dir > 0) {
      lg_tensor last = v[c - 1];
      memmove(v + 1, v, sizeof(lg_tensor) * (size_t)(c - 1));
      v[0] = last;
    } else {
      lg_tensor first = v[0];
      memmove(v, v + 1, sizeof(lg_tensor) * (size_t)(c - 1));
      v[c - 1] = first;
    }
  }
}

static lg_tensor *kv_part(lg_kv_cache *kv, int idx, int which) {
  lg_tensor *arr[4] = {kv->k, kv->v, kv->ck, kv->cv};
  return &arr[which][idx];
}

static int send_layer(lg_stage *s, lg_peer to, int layer) {
  int idx = layer - s->kv_first;
  for (int w = 0; w < 4; w++) {
    msg h = ctl(MSG_KV);
    h.kv_which = w;
    int err = send_msg(s, to, &h, kv_part(s->kv, idx, w));
    if (err) return err;
  }
  return 0;
}

static int recv_layer(lg_stage *s, lg_peer from, int idx) {
  for (int w = 0; w < 4; w++) {
    msg h;
    size_t bytes = 0;
    int err = recv_msg(s, from, &h, &bytes);
    if (!err && (h.kind != MSG_KV || h.kv_which != w)) {
      LG_ERR("stages", "stage %d: expected KV part %d, got message kind %d", s->rank, w, h.kind);
      err = LG_EFORMAT;
    }
    if (!err) err = s->t->ops->recv_payload(s->t, from, kv_part(s->kv, idx, w));
    if (err) return err;
  }
  return 0;
}

/* Boundary k+1 moves by delta; every stage applies it when the MARK reaches it, after the
 * batches sent before it, so each batch runs every layer exactly once. */
static int apply_mark(lg_stage *s, const msg *h) {
  int err = forward_ctl(s, h, NULL);
  if (err) return err;
  int k = h->mark_k, delta = h->mark_delta, b = s->bound[k + 1];
  s->bound[k + 1] += delta;
  if (delta < 0) { /* layer b-1: stage k -> k+1 */
    if (s->rank == k) {
      err = send_layer(s, LG_PEER_NEXT, b - 1);
      s->hi--;
    } else if (s->rank == k + 1) {
      rotate(s->kv, +1);
      s->kv_first--;
      s->lo--;
      err = recv_layer(s, LG_PEER_PREV, 0);
    }
  } else { /* layer b: stage k+1 -> k */
    if (s->rank == k) {
      err = recv_layer(s, LG_PEER_NEXT, s->hi - s->kv_first);
      s->hi++;
    } else if (s->rank == k + 1) {
      err = send_layer(s, LG_PEER_PREV, b);
      rotate(s->kv, -1);
      s->kv_first++;
      s->lo++;
    }
  }
  return err;
}

static int copy_rows(lg_stage *s) {
  for (int i = 1; i < s->R; i++) {
    int err = lg_kv_cache_copy_row(s->kv, i, 0);
    if (err) return err;
  }
  return 0;
}

/* The stage's part of a batch: time embedding, (stage 0) patch embedding of x, its blocks,
 * the sink-similarity partial sums, (last stage) the head into vbuf. h->B, F, rows set. */
static int compute(lg_stage *s, msg *h, const lg_tensor *x) {
  int err = 0;
  const int64_t B = h->B, F = h->F, BF = B * F;
  double t0 = lg_now();
  lg_tensor hid = prefix(&s->hid, BF * s->ft), e = prefix(&s->e, BF), e0 = prefix(&s->e0, BF);
  LG_TRY(lg_wan_dit_time(s->m, s->ws, h->rows, B, F, &e, &e0));
  if (s->rank == 0) LG_TRY(lg_wan_dit_embed(s->m, s->ws, x, &hid));
  LG_TRY(s->be->ops->sync(s->be));
  double t1 = lg_now();
  LG_TRY(
      lg_wan_dit_blocks(s->m, s->ws, s->kv, s->kv_first, s->lo, s->hi, h->rows, B, F, &e0, &hid));
  /* sink similarity: the same sums in the same order as lg_kv_cache_sink_similarity, carried
   * from stage to stage */
  for (int b = 0; b < B; b++) {
    int ms = h->measure_slot[b];
    if (ms < 0) continue;
    for (int j = 0; j < h->sinks; j++) {
      for (int l = s->lo; l < s->hi; l++) {
        for (int w = 0; w < 2; w++) {
          lg_tensor a = lg_kv_cache_slot(s->kv, l - s->kv_first, w, b, ms);
          lg_tensor c = lg_kv_cache_slot(s->kv, l - s->kv_first, w, b, j);
          double v = 0.0;
          LG_TRY(LG_OP(s->be, cosine_mean, &v, &a, &c));
          h->sims[b][j] += v;
        }
      }
    }
  }
  LG_TRY(s->be->ops->sync(s->be));
  double t2 = lg_now();
  if (is_last(s)) {
    lg_tensor v = batch_view(&s->vbuf, B, F);
    LG_TRY(lg_wan_dit_head(s->m, s->ws, &hid, &e, &v));
    LG_TRY(s->be->ops->sync(s->be));
  }
  h->blocks_ms[s->rank] = (t2 - t1) * 1e3;
  h->fixed_ms[s->rank] = (t1 - t0 + lg_now() - t2) * 1e3;
fail:
  return err;
}

/* ------------------------------------------------------------ stages > 0 */

int lg_stage_run(lg_stage *s) {
  if (s->rank == 0) {
    LG_ERR("stages", "lg_stage_run is for stages > 0");
    return LG_EINVAL;
  }
  for (;;) {
    msg h;
    size_t bytes = 0;
    int err = recv_msg(s, LG_PEER_PREV, &h, &bytes);
    if (err) return err;
    switch (h.kind) {
    case MSG_BATCH: {
      lg_tensor hid = prefix(&s->hid, (int64_t)h.B * h.F * s->ft);
      err = s->t->ops->recv_payload(s->t, LG_PEER_PREV, &hid);
      if (!err) err = compute(s, &h, NULL);
      if (!err && !is_last(s)) err = send_msg(s, LG_PEER_NEXT, &h, &hid);
      if (!err && is_last(s)) {
        h.kind = MSG_RETURN;
        lg_tensor v = prefix(&s->vbuf, (int64_t)h.B * h.F);
        err = send_msg(s, LG_PEER_NEXT, &h, &v);
      }
      break;
    }
    case MSG_CONTEXT: {
      const lg_wan_dit_config *c = lg_wan_dit_get_config(s->m);
      int64_t sh[2] = {LG_DIT_TEXT_LEN, c->text_dim};
      lg_tensor ct = lg_tensor_make(NULL, s->ctx, LG_F32, 2, sh);
      err = s->t->ops->recv_payload(s->t, LG_PEER_PREV, &ct);
      if (!err)
        err = lg_wan_dit_set_context_layers(s->m, s->ws, s->kv, s->kv_first, s->lo, s->hi, s->ctx);
      if (!err) err = forward_ctl(s, &h, &ct);
      break;
    }
    case MSG_COPYROWS:
      err = copy_rows(s);
      if (!err) err = forward_ctl(s, &h, NULL);
      break;
    case MSG_RESET:
      err = lg_kv_cache_clear(s->kv);
      if (!err) err = forward_ctl(s, &h, NULL);
      break;
    case MSG_MARK: err = apply_mark(s, &h); break;
    case MSG_STOP: return forward_ctl(s, &h, NULL);
    default:
      LG_ERR("stages", "stage %d: unexpected message kind %d", s->rank, h.kind);
      err = LG_EFORMAT;
    }
    if (err) return err;
  }
}

/* ------------------------------------------------------------ stage 0: the ring */

static int draw(lg_stage *s, lg_noise_fn noise, void *user, int chunk, int step, int F) {
  size_t n = (size_t)F * (size_t)s->o.stream.lat_h * (size_t)s->o.stream.lat_w * 16;
  int err = noise(user, chunk, step, s->host, n);
  if (err < 0) return err;
  lg_tensor e32 = frames(&s->eps32, 0, F), e = frames(&s->eps, 0, F);
  err = lg_tensor_upload(&e32, s->host);
  if (!err) err = LG_OP(s->be, copy, &e, &e32);
  return err;
}

static int add_noise(lg_stage *s, lg_tensor *x, const lg_tensor *x0, const lg_tensor *eps,
                     double t) {
  double sg = lg_flow_sched_sigma(&s->sched, t);
  return LG_OP(s->be, axpby, x, (float)(1.0 - sg), x0, (float)sg, eps);
}

static int to_x0(lg_stage *s, lg_tensor *x0, const lg_tensor *x, const lg_tensor *v, double t) {
  double sg = lg_flow_sched_sigma(&s->sched, t);
  return LG_OP(s->be, axpby, x0, 1.0f, x, (float)-sg, v);
}

/* Plans rows [0,B) of tick rec r (chunks and t set) and runs stage 0's part of the batch from
 * x [B*F frames]; sends it on (n > 1) or leaves v in vbuf (n == 1). */
static int start_batch(lg_stage *s, tick_rec *r, const lg_tensor *x) {
  msg *h = &s->cur;
  *h = ctl(MSG_BATCH);
  h->tick = r->tick;
  h->B = r->B;
  h->F = r->F;
  h->sinks = s->o.stream.adapt_sink > 0.0 ? s->o.stream.sink_frames : 0;
  for (int b = 0; b < r->B; b++) {
    int64_t start = r->tick == 0 ? 0 : (int64_t)(r->chunk[b] + 1) * s->ft;
    int err = lg_kv_policy_plan(&s->pol[b], start, (int)s->ft, r->F, &r->plan[b]);
    if (err < 0) return err;
    h->rows[b].t = (float)r->t[b];
    h->rows[b].rope_start = r->plan[b].rope_start;
    h->rows[b].kv_frames = r->plan[b].kv_frames;
    for (int f = 0; f < r->F; f++)
      h->rows[b].slot[f] = r->plan[b].slot[f];
    h->measure_slot[b] = h->sinks > 0 ? r->plan[b].measure_slot : -1;
  }
  r->used = true;
  lg_tensor xb = batch_view(x, r->B, r->F);
  int err = compute(s, h, &xb);
  if (err || s->n == 1) return err;
  lg_tensor hid = prefix(&s->hid, (int64_t)r->B * r->F * s->ft);
  err = send_msg(s, LG_PEER_NEXT, h, &hid);
  if (!err) s->inflight++;
  return err;
}

/* The head output of the oldest batch in flight: into vbuf, its header into s->cur. */
static int wait_return(lg_stage *s, int tick) {
  if (s->n == 1) return 0; /* computed in place by start_batch */
  size_t bytes = 0;
  int err = recv_msg(s, LG_PEER_PREV, &s->cur, &bytes);
  if (err) return err;
  if (s->cur.kind != MSG_RETURN || s->cur.tick != tick) {
    LG_ERR("stages", "stage 0: expected the return of tick %d, got kind %d tick %d", tick,
           s->cur.kind, s->cur.tick);
    return LG_EFORMAT;
  }
  lg_tensor v = prefix(&s->vbuf, (int64_t)s->cur.B * s->cur.F);
  err = s->t->ops->recv_payload(s->t, LG_PEER_PREV, &v);
  if (!err) s->inflight--;
  return err;
}

/* Observes the sink similarities and accumulates the stage times of a returned batch. */
static void observe(lg_stage *s, tick_rec *r) {
  const msg *h = &s->cur;
  for (int b = 0; b < r->B; b++) {
    if (h->measure_slot[b] < 0) continue;
    double sims[MAX_SINKS];
    for (int j = 0; j < h->sinks; j++)
      sims[j] = h->sims[b][j] / (2.0 * s->L);
    lg_kv_policy_observe(&s->pol[b], &r->plan[b], sims);
  }
  if (r->B == s->R && r->tick > 0) {
    for (int i = 0; i < s->n; i++) {
      s->sum_blocks[i] += h->blocks_ms[i];
      s->sum_fixed[i] += h->fixed_ms[i];
    }
    s->measured++;
  }
  if (s->o.balance_ticks > 0 && !s->balanced && s->measured >= s->o.balance_ticks) {
    double layer_ms[1024], fixed[LG_STAGES_MAX];
    for (int i = 0; i < s->n; i++) {
      int nl = s->bound[i + 1] - s->bound[i];
      for (int l = s->bound[i]; l < s->bound[i + 1] && l < 1024; l++)
        layer_ms[l] = s->sum_blocks[i] / s->measured / nl;
      fixed[i] = s->sum_fixed[i] / s->measured;
    }
    if (s->n_extra > 0) fixed[0] += s->sum_extra / s->n_extra;
    if (s->L <= 1024 && lg_stages_balance(s->L, s->n, layer_ms, fixed, s->cap, s->target) == 0) {
      s->balanced = true;
      LG_INFO("stages", "balance: target boundaries computed after %d batches", s->measured);
    }
  }
}

/* Rows of a returned steady-state batch: x0, re-noise into the carry (next rows), emit. */
static int take_return(lg_stage *s, tick_rec *r, lg_noise_fn noise, void *user, lg_tensor *out,
                       int *out_chunk) {
  lg_tensor *X = &s->X[r->tick % s->n];
  int err = 0;
  observe(s, r);
  for (int i = 0; i < r->B; i++) {
    lg_tensor xi = frames(X, i, 1), vi = frames(&s->vbuf, i, 1), x0 = frames(&s->X0, i, 1);
    err = to_x0(s, &x0, &xi, &vi, r->t[i]);
    if (!err && i + 1 < s->R) {
      lg_tensor e1 = frames(&s->eps, 0, 1), ci = frames(&s->carry, i, 1);
      err = draw(s, noise, user, r->chunk[i], i, 1);
      if (!err) err = add_noise(s, &ci, &x0, &e1, s->o.stream.step_list[i + 1]);
      s->carry_chunk[i] = r->chunk[i];
    }
    if (err) return err;
  }
  s->carry_B = r->B < s->R - 1 ? r->B : s->R - 1;
  r->used = false;
  if (r->B < s->R) return 0;
  lg_tensor x0 = frames(&s->X0, s->R - 1, 1), o = frames(out, 0, 1);
  err = LG_OP(s->be, copy, &o, &x0);
  if (err) return err;
  *out_chunk = r->chunk[s->R - 1];
  return 1;
}

static int local_mark(lg_stage *s, int k, int delta) {
  msg h = ctl(MSG_MARK);
  h.mark_k = k;
  h.mark_delta = delta;
  return apply_mark(s, &h);
}

static bool move_ok(const lg_stage *s, int k, int delta) {
  if (k < 0 || k + 1 >= s->n || (delta != 1 && delta != -1)) return false;
  int a = s->bound[k + 1] - s->bound[k] + delta, b = s->bound[k + 2] - s->bound[k + 1] - delta;
  return a >= 1 && b >= 1 && a <= s->cap && b <= s->cap;
}

int lg_stage_move_boundary(lg_stage *s, int k, int delta) {
  if (s->rank != 0 || !move_ok(s, k, delta) || s->n_moves == MAX_MOVES) {
    LG_ERR("stages", "move boundary %d by %d: refused (%d stages, max %d layers each)", k + 1,
           delta, s->n, s->cap);
    return LG_EINVAL;
  }
  s->moves[s->n_moves][0] = k;
  s->moves[s->n_moves][1] = delta;
  s->n_moves++;
  return 0;
}

/* At most one boundary move per push: a queued one, else one towards the balance target. */
static int next_move(lg_stage *s) {
  int k = 0, delta = 0;
  if (s->n_moves > 0) {
    k = s->moves[0][0];
    delta = s->moves[0][1];
    memmove(s->moves, s->moves + 1, sizeof(s->moves[0]) * (size_t)(s->n_moves - 1));
    s->n_moves--;
    if (!move_ok(s, k, delta)) {
      LG_WARN("stages", "move of boundary %d by %d no longer fits; dropped", k + 1, delta);
      return 0;
    }
  } else if (!s->balanced || !lg_stages_next_move(s->n, s->bound, s->target, &k, &delta)) {
    return 0;
  }
  LG_INFO("stages", "boundary %d moves from layer %d to %d", k + 1, s->bound[k + 1],
          s->bound[k + 1] + delta);
  return local_mark(s, k, delta);
}

int lg_stage_set_context(lg_stage *s, const float *ctx) {
  if (s->rank != 0) return LG_EINVAL;
  int err = lg_wan_dit_set_context_layers(s->m, s->ws, s->kv, s->kv_first, s->lo, s->hi, ctx);
  if (err) return err;
  const lg_wan_dit_config *c = lg_wan_dit_get_config(s->m);
  int64_t sh[2] = {LG_DIT_TEXT_LEN, c->text_dim};
  lg_tensor ct = lg_tensor_make(NULL, (void *)ctx, LG_F32, 2, sh);
  msg h = ctl(MSG_CONTEXT);
  return forward_ctl(s, &h, &ct);
}

static int drain(lg_stage *s) {
  while (s->inflight > 0) {
    int oldest = -1;
    for (int i = 0; i < s->n; i++)
      if (s->rec[i].used && (oldest < 0 || s->rec[i].tick < s->rec[oldest].tick)) oldest = i;
    if (oldest < 0) break;
    int err = wait_return(s, s->rec[oldest].tick);
    if (err) return err;
    s->rec[oldest].used = false;
  }
  return 0;
}

int lg_stage_reset(lg_stage *s) {
  if (s->rank != 0) return LG_EINVAL;
  int err = drain(s);
  if (err) return err;
  for (int i = 0; i < s->R; i++)
    lg_kv_policy_reset(&s->pol[i]);
  for (int i = 0; i < s->n; i++)
    s->rec[i].used = false;
  s->chunks = 0;
  s->carry_B = 0;
  err = lg_kv_cache_clear(s->kv);
  msg h = ctl(MSG_RESET);
  if (!err) err = forward_ctl(s, &h, NULL);
  return err;
}

int lg_stage_stop(lg_stage *s) {
  if (s->rank != 0) return LG_EINVAL;
  int err = drain(s);
  msg h = ctl(MSG_STOP);
  int e2 = forward_ctl(s, &h, NULL);
  return err ? err : e2;
}

int lg_stage_push_v2v(lg_stage *s, const lg_tensor *latent, double scale, lg_noise_fn noise,
                      void *user, lg_tensor *out, int *out_chunk) {
  const lg_stream_opts *so = &s->o.stream;
  char sb[96];
  *out_chunk = -1;
  if (s->rank != 0) return LG_EINVAL;
  int F = latent->ndim == 4 ? (int)latent->ne[0] : 0, want = s->chunks == 0 ? 2 : 1;
  if (F != want || latent->ne[1] != so->lat_h || latent->ne[2] != so->lat_w ||
      latent->ne[3] != 16 || !(scale >= 0.0 && scale <= 1.0)) {
    LG_ERR("stages", "push: latent %s must be [%d,%d,%d,16], scale %g in [0,1]",
           lg_tensor_shape_str(latent, sb, sizeof sb), want, so->lat_h, so->lat_w, scale);
    return LG_EINVAL;
  }
  if (!s->kv->ctx_valid) {
    LG_ERR("stages", "push: no context set");
    return LG_EINVAL;
  }
  const int c = s->chunks, R = s->R;
  const double t0 = (double)((int)(1000.0 * scale) - 100);
  int err = draw(s, noise, user, c, -1, F);
  if (err) return err;
  tick_rec *r = &s->rec[c % s->n];
  lg_tensor *X = &s->X[c % s->n];
  lg_tensor x = frames(X, 0, F), e = frames(&s->eps, 0, F);
  err = LG_OP(s->be, axpby, &x, (float)scale, &e, (float)(1.0 - scale), latent);
  if (err) return err;
  s->chunks++;

  if (c == 0) {
    /* first chunk: every step through the whole ring in cache row 0 (the ring is empty) */
    lg_tensor x0 = frames(&s->X0, 0, F);
    for (int i = 0; i < R; i++) {
      memset(r, 0, sizeof *r);
      r->tick = 0;
      r->B = 1;
      r->F = F;
      r->chunk[0] = 0;
      r->t[0] = i == 0 ? t0 : so->step_list[i];
      err = start_batch(s, r, X);
      if (!err) err = wait_return(s, 0);
      if (err) return err;
      observe(s, r);
      r->used = false;
      lg_tensor v = frames(&s->vbuf, 0, F);
      err = to_x0(s, &x0, &x, &v, r->t[0]);
      if (!err && i + 1 < R) {
        err = draw(s, noise, user, 0, i, F);
        if (!err) err = add_noise(s, &x, &x0, &e, so->step_list[i + 1]);
      }
      if (err) return err;
    }
    err = copy_rows(s);
    msg h = ctl(MSG_COPYROWS);
    if (!err) err = forward_ctl(s, &h, NULL);
    for (int i = 1; i < R; i++)
      s->pol[i] = s->pol[0];
    if (err) return err;
    lg_tensor o = frames(out, 0, F);
    err = LG_OP(s->be, copy, &o, &x0);
    if (err) return err;
    *out_chunk = 0;
    return F;
  }

  err = next_move(s);
  if (err) return err;
  /* batch c: row 0 the new chunk, rows 1.. the re-noised rows of batch c - n */
  memset(r, 0, sizeof *r);
  r->tick = c;
  r->F = 1;
  r->B = 1 + s->carry_B;
  r->chunk[0] = c;
  r->t[0] = t0;
  for (int i = 1; i < r->B; i++) {
    lg_tensor d = frames(X, i, 1), src = frames(&s->carry, i - 1, 1);
    err = LG_OP(s->be, copy, &d, &src);
    if (err) return err;
    r->chunk[i] = s->carry_chunk[i - 1];
    r->t[i] = so->step_list[i];
  }
  s->carry_B = 0;
  err = start_batch(s, r, X);
  if (err) return err;
  /* the batch whose rows the next push needs: this one (n == 1) or tick c - n + 1 */
  int due = c - s->n + 1;
  if (due < 1) return 0;
  tick_rec *dr = &s->rec[due % s->n];
  err = wait_return(s, due);
  if (err) return err;
  (void)R;
  return take_return(s, dr, noise, user, out, out_chunk);
}

/* ------------------------------------------------------------ multi-process ranks */

int lg_stages_id_write(const char *path, const unsigned char id[LG_NCCL_ID_BYTES]) {
  char tmp[4096];
  if (!path || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return LG_EINVAL;
  FILE *f = fopen(tmp, "w");
  if (!f) {
    LG_ERR("stages", "cannot write the NCCL id to %s", tmp);
    return LG_EIO;
  }
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++)
    fprintf(f, "%02x", id[i]);
  fputc('\n', f);
  bool ok = fclose(f) == 0 && rename(tmp, path) == 0;
  if (!ok) {
    LG_ERR("stages", "cannot publish the NCCL id as %s", path);
    unlink(tmp);
    return LG_EIO;
  }
  return 0;
}

static int parse_id(const char *hex, size_t n, unsigned char *id) {
  while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r'))
    n--;
  if (n != 2 * LG_NCCL_ID_BYTES) return LG_EFORMAT;
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++) {
    unsigned v = 0;
    for (int j = 0; j < 2; j++) {
      char ch = hex[2 * i + j];
      int d = ch >= '0' && ch <= '9'   ? ch - '0'
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                       : -1;
      if (d < 0) return LG_EFORMAT;
      v = v * 16 + (unsigned)d;
    }
    id[i] = (unsigned char)v;
  }
  return 0;
}

int lg_stages_id_read(const char *path, unsigned char id[LG_NCCL_ID_BYTES], double timeout_s) {
  const char *env = getenv("LG_NCCL_ID");
  if (env && *env) {
    int err = parse_id(env, strlen(env), id);
    if (err) LG_ERR("stages", "LG_NCCL_ID must be %d hex digits", 2 * LG_NCCL_ID_BYTES);
    return err;
  }
  if (!path) return LG_EINVAL;
  double until = lg_now() + timeout_s;
  for (;;) {
    FILE *f = fopen(path, "r");
    if (f) {
      char buf[2 * LG_NCCL_ID_BYTES + 8];
      size_t n = fread(buf, 1, sizeof buf, f);
      fclose(f);
      int err = parse_id(buf, n, id);
      if (err)
        LG_ERR("stages", "%s does not hold a NCCL id (%d hex digits)", path, 2 * LG_NCCL_ID_BYTES);
      return err;
    }
    if (lg_now() >= until) {
      LG_ERR("stages", "no NCCL id at %s after %.0f s (is rank 0 running?)", path, timeout_s);
      return LG_EAGAIN;
    }
    usleep(20 * 1000);
  }
}

int lg_stages_rank_main(lg_wan_dit *m, const lg_stages_opts *o, lg_transport *t) {
  char err[256] = "";
  lg_stage *s = lg_stage_new(m, o, t, err, sizeof err);
  if (!s) {
    LG_ERR("stages", "rank %d: %s", t ? t->rank : -1, err);
    return LG_EINVAL;
  }
  int rc = lg_stage_run(s);
  lg_stage_free(&s);
  return rc;
}

/* ------------------------------------------------------------ in-process launcher */

struct lg_stages_inproc {
  lg_stages_opts o;
  lg_inproc_group *g;
  lg_stage_loader load;
  void *user;
  pthread_t th[LG_STAGES_MAX];
  bool started[LG_STAGES_MAX];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready, failed;
  lg_transport *t0;
  lg_wan_dit *m0;
  lg_stage *s0;
  int rank_arg[LG_STAGES_MAX];
};

void lg_stages_model_free(lg_wan_dit **m) {
  if (!m || !*m) return;
  lg_backend *be = lg_wan_dit_backend(*m);
  lg_wan_dit_free(m);
  lg_backend_free(&be);
}

static void *stage_thread(void *arg) {
  int *rp = arg;
  int rank = *rp;
  lg_stages_inproc *p =
      (lg_stages_inproc *)((char *)(rp - rank) - offsetof(lg_stages_inproc, rank_arg));
  char err[256] = "";
  lg_wan_dit *m = p->load(p->user, rank);
  lg_transport *t = lg_inproc_transport(p->g, rank);
  lg_stage *s = m && t ? lg_stage_new(m, &p->o, t, err, sizeof err) : NULL;
  if (!s) LG_ERR("stages", "stage %d: %s", rank, err[0] ? err : "cannot load the model");
  pthread_mutex_lock(&p->mu);
  if (s)
    p->ready++;
  else
    p->failed++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (s) {
    int rc = lg_stage_run(s);
    if (rc) {
      LG_ERR("stages", "stage %d stopped with error %d", rank, rc);
      lg_inproc_group_close(p->g);
    }
  }
  lg_stage_free(&s);
  lg_transport_free(&t);
  lg_stages_model_free(&m);
  return NULL;
}

lg_stages_inproc *lg_stages_inproc_new(const lg_stages_opts *o, lg_stage_loader load, void *user,
                                       char *err, size_t n) {
  lg_stages_inproc *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->o = *o;
  p->load = load;
  p->user = user;
  if (o->n < 1 || o->n > LG_STAGES_MAX) {
    snprintf(err, n, "stages: %d stages (1..%d)", o->n, LG_STAGES_MAX);
    goto fail;
  }
  p->m0 = load(user, 0);
  if (!p->m0) {
    snprintf(err, n, "stages: cannot load stage 0's model");
    goto fail;
  }
  size_t maxp = lg_stages_max_payload(lg_wan_dit_get_config(p->m0), o);
  p->g = lg_inproc_group_new(o->n, o->n + 4, maxp);
  p->t0 = p->g ? lg_inproc_transport(p->g, 0) : NULL;
  if (!p->t0) {
    snprintf(err, n, "stages: cannot create the in-process transport (%zu-byte slots)", maxp);
    goto fail;
  }
  p->s0 = lg_stage_new(p->m0, o, p->t0, err, n);
  if (!p->s0) goto fail;
  for (int r = 1; r < o->n; r++) {
    p->rank_arg[r] = r;
    if (pthread_create(&p->th[r], NULL, stage_thread, &p->rank_arg[r]) != 0) {
      snprintf(err, n, "stages: cannot start stage thread %d", r);
      lg_inproc_group_close(p->g);
      goto fail;
    }
    p->started[r] = true;
  }
  pthread_mutex_lock(&p->mu);
  while (p->ready + p->failed < o->n - 1)
    pthread_cond_wait(&p->cv, &p->mu);
  int failed = p->failed;
  pthread_mutex_unlock(&p->mu);
  if (failed) {
    snprintf(err, n, "stages: %d stage(s) failed to start (see the log)", failed);
    lg_inproc_group_close(p->g);
    goto fail;
  }
  return p;
fail:
  lg_stages_inproc_free(&p);
  return NULL;
}

lg_stage *lg_stages_inproc_stage0(lg_stages_inproc *p) {
  return p->s0;
}

void lg_stages_inproc_free(lg_stages_inproc **pp) {
  if (!pp || !*pp) return;
  lg_stages_inproc *p = *pp;
  bool any = false;
  for (int r = 1; r < LG_STAGES_MAX; r++)
    any = any || p->started[r];
  if (any && p->s0 && lg_stage_stop(p->s0) != 0) lg_inproc_group_close(p->g);
  if (any && !p->s0) lg_inproc_group_close(p->g);
  for (int r = 1; r < LG_STAGES_MAX; r++)
    if (p->started[r]) pthread_join(p->th[r], NULL);
  lg_stage_free(&p->s0);
  lg_transport_free(&p->t0);
  lg_stages_model_free(&p->m0);
  lg_inproc_group_free(&p->g);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
  *pp = NULL;
}
