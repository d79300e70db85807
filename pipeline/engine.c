/* engine.c: the streaming engine (engine.h): backend, models (tiny random ones generated into
 * the cache folder on first use), VAE encode -> motion-aware noise -> v2v stream batch (or the
 * t2v block loop) -> VAE/TAEHV decode, prompt contexts with blending, parameters applied at
 * chunk boundaries, per-chunk stats. The DiT loop runs through dit_runner.h: the single-stage
 * stream, or the stream pipelined over stages (engine.stages / engine.gpus); VAE encode,
 * decode and the pixel conversions stay on this process's device (rank 0), where the ring
 * returns the head output anyway (docs/MULTIGPU.md). Every call but set/get_params and
 * get_stats runs on the GPU worker thread that created the engine; those three take the
 * mutex. */
#include "engine.h"

#include "checkpoint.h"
#include "dit_runner.h"
#include "model_spec.h"
#include "stream.h"
#include "taehv.h"
#include "text_ctx.h"
#include "tokenizer.h"
#include "umt5.h"
#include "wan_dit.h"
#include "wan_vae.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PUSH_FRAMES 5 /* v2v input frames per push */
#define MAX_OUT_FRAMES 12 /* t2v: one block of 3 latents -> up to 12 frames */

struct lg_engine {
  lg_config cfg;
  lg_backend *be;
  lg_ckpt *vae_ck, *taehv_ck;
  lg_wan_dit *dit;
  lg_wan_vae *vae;
  lg_vae_stream *vs;
  lg_taehv *taehv;
  lg_taehv_stream *ts;
  lg_dit_runner *dr; /* the DiT loop: one stage or the pipelined stages */
  lg_tokenizer *tok; /* umT5 text encoder + tokenizer, or NULL: hashed contexts */
  lg_umt5 *t5;
  lg_tensor t5out, t5out32; /* [512, text_dim] act / f32 */
  bool t2v;
  int W, H, lh, lw, text_dim;
  unsigned long long noise_seed;
  unsigned noise_epoch; /* resets so far: a reset draws fresh noise */
  /* buffers (backend) */
  lg_tensor pixu8;        /* [5,H,W,3] U8: input frames as uploaded (RGB24) */
  lg_tensor pix32;        /* [5,H,W,3] f32: input bytes as values 0..255 (motion measure) */
  lg_tensor pix;          /* [5,H,W,3] act: input pixels in [-1,1] (VAE encoder input) */
  lg_tensor last32;       /* [1,H,W,3] f32: previous chunk's last input frame, 0..255 */
  lg_tensor lat, mu;      /* [2,lh,lw,16] act: chunk latents; [1,lh,lw,16] one VAE call */
  lg_tensor olat;         /* [3,lh,lw,16] act: emitted x0 */
  lg_tensor opix, opixu8; /* [4,H,W,3] act / U8: decoded frames */
  /* contexts */
  float *ctx_from, *ctx_to, *ctx_cur; /* [512*text_dim] */
  double blend_s, blend_t;            /* blend length and output seconds into it */
  double blend_dt;                    /* output seconds since the last blend step */
  bool blending;
  /* state */
  lg_engine_params cur;
  double s_prev;  /* previous noise scale (motion-aware) */
  bool have_last; /* last32 holds the previous chunk's last frame */
  bool first_out_done;
  double t_start;
  /* thread-shared */
  pthread_mutex_t mu_lock;
  lg_engine_params pending;
  bool have_pending;
  lg_engine_stats stats;
};

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && n) vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return LG_EINVAL;
}

/* ---------------------------------------------------------------- tiny models */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

typedef struct gen_ctx {
  const lg_tensor_spec *specs;
  uint64_t seed;
  lg_rng rng;
} gen_ctx;

/* Same values as `livegen init-model --arch A --preset tiny --seed S` (f32). */
static int gen_fill(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  gen_ctx *g = user;
  const lg_tensor_spec *s = &g->specs[i];
  if (offset == 0) lg_rng_seed(&g->rng, g->seed ^ fnv1a(s->name));
  float *p = buf;
  for (size_t k = 0; k < nbytes / 4; k++)
    p[k] = s->mean + (s->std != 0.0f ? s->std * (float)lg_rng_normal(&g->rng) : 0.0f);
  return 0;
}

static int mkdirs(const char *path) {
  char tmp[LG_PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
  return 0;
}

static void cache_dir(const lg_config *cfg, char *out, size_t n) {
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (cfg->model.cache_dir[0])
    snprintf(out, n, "%s", cfg->model.cache_dir);
  else if (xdg && xdg[0])
    snprintf(out, n, "%s/livegen", xdg);
  else
    snprintf(out, n, "%s/.cache/livegen", home && home[0] ? home : "/tmp");
}

/* Opens `path`, or for "tiny" the tiny random model of `arch` in the cache dir (written to a
 * temporary name and renamed, so a half-written file is never seen). */
static lg_ckpt *open_model(const lg_config *cfg, const char *path, const char *arch, char *err,
                           size_t n) {
  char dir[LG_PATH_MAX], file[LG_PATH_MAX + 128], tmp[LG_PATH_MAX + 160];
  if (strcmp(path, "tiny")) {
    lg_ckpt *c = lg_ckpt_open(path, err, n);
    if (!c) {
      char e2[512];
      snprintf(e2, sizeof e2, "%s", err);
      fail(err, n, "%s: %s", path, e2);
    }
    return c;
  }
  cache_dir(cfg, dir, sizeof dir);
  snprintf(file, sizeof file, "%s/%s-tiny-seed%llu.safetensors", dir, arch, cfg->model.seed);
  if (access(file, R_OK)) {
    lg_tensor_spec *specs = NULL;
    int ns = 0;
    if (lg_model_spec(arch, "tiny", &specs, &ns, err, n)) return NULL;
    const char **names = malloc(sizeof *names * (size_t)ns);
    lg_tensor *ts = malloc(sizeof *ts * (size_t)ns);
    int e = LG_ENOMEM;
    if (names && ts && !mkdirs(dir)) {
      for (int i = 0; i < ns; i++) {
        names[i] = specs[i].name;
        ts[i] = lg_tensor_make(NULL, NULL, LG_F32, specs[i].ndim, specs[i].shape);
      }
      snprintf(tmp, sizeof tmp, "%s.tmp%ld", file, (long)getpid());
      gen_ctx g = {.specs = specs, .seed = cfg->model.seed};
      e = lg_safetensors_write_fill(tmp, names, ts, ns, NULL, 0, gen_fill, &g);
      if (!e && rename(tmp, file)) e = LG_EIO;
      if (e) unlink(tmp);
    }
    free(names);
    free(ts);
    free(specs);
    if (e) {
      fail(err, n, "cannot write the tiny %s model to %s: %s", arch, file, lg_strerror(e));
      return NULL;
    }
    LG_INFO("engine", "generated tiny %s model %s", arch, file);
  }
  lg_ckpt *c = lg_ckpt_open(file, err, n);
  if (!c) {
    char e2[512];
    snprintf(e2, sizeof e2, "%s", err);
    fail(err, n, "%s: %s", file, e2);
  }
  return c;
}

/* ---------------------------------------------------------------- text */

/* model.text_encoder "none" (or ""): hashed prompt contexts (text_ctx.h). Otherwise the umT5
 * encoder (a checkpoint path, or "tiny" for the tiny random one) with model.tokenizer
 * (spiece.model); its width must be the DiT's text_dim. */
static int open_text_encoder(lg_engine *e, char *err, size_t n) {
  const lg_model_config *mc = &e->cfg.model;
  if (!mc->text_encoder[0] || !strcmp(mc->text_encoder, "none")) return 0;
  if (!mc->tokenizer[0])
    return fail(err, n, "model.text_encoder '%s' needs model.tokenizer (spiece.model)",
                mc->text_encoder);
  char e2[512] = "";
  e->tok = lg_tokenizer_load(mc->tokenizer, e2, sizeof e2);
  if (!e->tok) return fail(err, n, "model.tokenizer: %s", e2);
  lg_ckpt *ck = open_model(&e->cfg, mc->text_encoder, "umt5", err, n);
  if (!ck) return LG_EINVAL;
  e->t5 = lg_umt5_load(e->be, ck, e2, sizeof e2);
  lg_ckpt_free(&ck);
  if (!e->t5) return fail(err, n, "model.text_encoder %s: %s", mc->text_encoder, e2);
  int d = lg_umt5_get_config(e->t5)->dim;
  if (d != e->text_dim)
    return fail(err, n, "model.text_encoder has width %d but the DiT takes text_dim %d", d,
                e->text_dim);
  int64_t s[2] = {LG_TEXT_CTX_LEN, d};
  if (lg_tensor_alloc(e->be, &e->t5out, e->be->act_dtype, 2, s) ||
      lg_tensor_alloc(e->be, &e->t5out32, LG_F32, 2, s))
    return fail(err, n, "engine: cannot allocate the text context");
  LG_INFO("engine", "text encoder %s (width %d), tokenizer %s", mc->text_encoder, d, mc->tokenizer);
  return 0;
}

/* Context [512, text_dim] host f32 for a prompt. */
static int prompt_context(lg_engine *e, const char *prompt, float *ctx) {
  if (!e->t5) {
    lg_text_ctx_hash(prompt, e->text_dim, ctx);
    return 0;
  }
  int32_t ids[LG_TOKENIZER_MAX_IDS];
  int nid = lg_tokenizer_encode(e->tok, prompt, ids, LG_UMT5_MAX_LEN);
  if (nid < 0) return nid;
  int err = lg_umt5_encode(e->t5, ids, nid, &e->t5out);
  if (!err) err = LG_OP(e->be, copy, &e->t5out32, &e->t5out);
  if (!err) err = lg_tensor_download(&e->t5out32, ctx);
  return err;
}

/* ---------------------------------------------------------------- setup */

static int build_stream(lg_engine *e, int steps, char *err, size_t n) {
  const lg_engine_config *c = &e->cfg.engine;
  lg_stream_opts o = {.t2v = e->t2v,
                      .steps = steps,
                      .shift = c->shift,
                      .kv_frames = c->kv_frames,
                      .sink_frames = c->sink_frames,
                      .adapt_sink = c->adapt_sink,
                      .lat_h = e->lh,
                      .lat_w = e->lw};
  lg_flow_sched sched;
  if (lg_flow_sched_init(&sched, c->shift)) return fail(err, n, "engine: bad shift %g", c->shift);
  for (int i = 0; i < steps; i++) {
    double t = i < c->n_step_list ? c->step_list[i] : c->step_list[c->n_step_list - 1];
    /* t2v (Self-Forcing) warps its steps through the shifted schedule; v2v uses them raw */
    o.step_list[i] = e->t2v ? lg_flow_sched_warp(&sched, t) : t;
  }
  if (lg_dit_runner_configure(e->dr, &o, err, n)) return LG_EINVAL;
  if (lg_dit_runner_set_context(e->dr, e->ctx_cur) < 0)
    return fail(err, n, "engine: setting the text context failed");
  return 0;
}

lg_wan_dit *lg_engine_load_dit(const lg_config *cfg, lg_backend *be, char *err, size_t n) {
  lg_ckpt *over = NULL, *ck = open_model(cfg, cfg->model.dit, "wan-dit", err, n);
  lg_wan_dit *m = NULL;
  if (ck && cfg->model.dit_weights[0]) over = lg_ckpt_open(cfg->model.dit_weights, err, n);
  if (ck && (over || !cfg->model.dit_weights[0])) m = lg_wan_dit_load(be, ck, over, err, n);
  if (m && !strcmp(cfg->model.context_weights, "host") &&
      lg_wan_dit_context_weights_to_host(m, err, n) < 0)
    lg_wan_dit_free(&m);
  lg_ckpt_free(&over);
  lg_ckpt_free(&ck);
  return m;
}

/* The backend of rank 0 / of an in-process stage: engine.backend, or with engine.gpus the
 * CUDA device of rank 0. */
static lg_backend *new_backend(const lg_engine_config *c) {
  char name[32];
  if (c->n_gpus > 0) {
    snprintf(name, sizeof name, "cuda:%d", c->gpus[0]);
    return lg_backend_new_by_name(name);
  }
  if (!strcmp(c->backend, "cpu")) return lg_backend_new_cpu(c->threads);
  return lg_backend_new_by_name(c->backend);
}

/* engine.stages: stage `rank`'s copy of the DiT on a backend of its own (its thread). */
static lg_wan_dit *stage_loader(void *user, int rank) {
  const lg_config *cfg = user;
  char err[512] = "";
  lg_backend *be = new_backend(&cfg->engine);
  lg_wan_dit *m = be ? lg_engine_load_dit(cfg, be, err, sizeof err) : NULL;
  if (!m) {
    LG_ERR("engine", "stage %d: %s", rank, err[0] ? err : "cannot create the backend");
    lg_backend_free(&be);
  }
  return m;
}

static int alloc4(lg_engine *e, lg_tensor *t, lg_dtype dt, int64_t a, int64_t b, int64_t c,
                  int64_t d) {
  int64_t s[4] = {a, b, c, d};
  return lg_tensor_alloc(e->be, t, dt, 4, s);
}

lg_engine *lg_engine_new(const lg_config *cfg, char *err, size_t n) {
  lg_engine *e = calloc(1, sizeof *e);
  if (!e) {
    fail(err, n, "engine: out of memory");
    return NULL;
  }
  pthread_mutex_init(&e->mu_lock, NULL);
  e->cfg = *cfg;
  const lg_engine_config *c = &cfg->engine;
  e->t2v = !strcmp(c->mode, "t2v");
  e->W = c->width;
  e->H = c->height;
  if (e->W % 16 || e->H % 16 || e->W < 16 || e->H < 16) {
    fail(err, n, "engine: width and height must be multiples of 16 (got %dx%d)", e->W, e->H);
    goto fail;
  }
  e->lh = e->H / 8;
  e->lw = e->W / 8;
  if (lg_dit_runner_check(cfg, err, n)) goto fail;
  e->be = new_backend(c);
  if (!e->be) {
    if (c->n_gpus > 0)
      fail(err, n, "engine.gpus: cannot open GPU %d (no such GPU, or a build without CUDA)",
           c->gpus[0]);
    else
      fail(err, n, "engine: cannot create backend '%s'", c->backend);
    goto fail;
  }
  snprintf(e->stats.device, sizeof e->stats.device, "%s", e->be->ops->name);
  /* DiT */
  if (!(e->dit = lg_engine_load_dit(cfg, e->be, err, n))) goto fail;
  e->text_dim = lg_wan_dit_get_config(e->dit)->text_dim;
  /* engine.stages / engine.gpus: the other stages load their own copies and join the ring */
  if (!(e->dr = lg_dit_runner_new(&e->cfg, e->dit, stage_loader, &e->cfg, err, n))) goto fail;
  if (open_text_encoder(e, err, n)) goto fail;
  /* VAE: the encoder for v2v, the decoder unless TAEHV decodes */
  bool taehv = !strcmp(cfg->model.decoder, "taehv");
  if (!e->t2v || !taehv) {
    if (!(e->vae_ck = open_model(cfg, cfg->model.vae, "wan-vae", err, n))) goto fail;
    if (!(e->vae = lg_wan_vae_load(e->be, e->vae_ck, err, n))) goto fail;
    lg_ckpt_free(&e->vae_ck);
    /* Only the halves this engine uses: TAEHV decoding drops the Wan decoder caches (about
     * 2.2 GiB at 480x832 in bf16), t2v drops the encoder's. */
    int halves = (e->t2v ? 0 : LG_VAE_ENCODE) | (taehv ? 0 : LG_VAE_DECODE);
    if (!(e->vs = lg_vae_stream_new_for(e->vae, e->H, e->W, halves))) {
      fail(err, n, "engine: cannot create the VAE stream for %dx%d", e->W, e->H);
      goto fail;
    }
  }
  if (taehv) {
    if (!(e->taehv_ck = open_model(cfg, cfg->model.taehv, "taehv", err, n))) goto fail;
    if (!(e->taehv = lg_taehv_load(e->be, e->taehv_ck, err, n))) goto fail;
    lg_ckpt_free(&e->taehv_ck);
    if (!(e->ts = lg_taehv_stream_new(e->taehv, e->H, e->W))) {
      fail(err, n, "engine: cannot create the TAEHV stream for %dx%d", e->W, e->H);
      goto fail;
    }
  }
  /* contexts */
  size_t cn = (size_t)LG_TEXT_CTX_LEN * (size_t)e->text_dim;
  e->ctx_from = malloc(cn * sizeof(float));
  e->ctx_to = malloc(cn * sizeof(float));
  e->ctx_cur = malloc(cn * sizeof(float));
  if (!e->ctx_from || !e->ctx_to || !e->ctx_cur) {
    fail(err, n, "engine: out of memory");
    goto fail;
  }
  if (prompt_context(e, c->prompt, e->ctx_cur)) {
    fail(err, n, "engine: encoding the prompt failed");
    goto fail;
  }
  /* params */
  snprintf(e->cur.prompt, sizeof e->cur.prompt, "%s", c->prompt);
  e->cur.noise_scale = c->noise_scale;
  e->cur.steps = c->steps;
  e->cur.seed = c->seed;
  e->cur.blend_s = c->prompt_blend_s;
  e->cur.paused = false;
  e->noise_seed = c->seed;
  lg_dtype ad = e->be->act_dtype;
  if (alloc4(e, &e->pixu8, LG_U8, MAX_PUSH_FRAMES, e->H, e->W, 3) ||
      alloc4(e, &e->pix32, LG_F32, MAX_PUSH_FRAMES, e->H, e->W, 3) ||
      alloc4(e, &e->last32, LG_F32, 1, e->H, e->W, 3) ||
      alloc4(e, &e->pix, ad, MAX_PUSH_FRAMES, e->H, e->W, 3) ||
      alloc4(e, &e->lat, ad, 2, e->lh, e->lw, 16) || alloc4(e, &e->mu, ad, 1, e->lh, e->lw, 16) ||
      alloc4(e, &e->olat, ad, LG_T2V_BLOCK, e->lh, e->lw, 16) ||
      alloc4(e, &e->opix, ad, 4, e->H, e->W, 3) || alloc4(e, &e->opixu8, LG_U8, 4, e->H, e->W, 3)) {
    fail(err, n, "engine: cannot allocate frame buffers on the backend");
    goto fail;
  }
  if (build_stream(e, c->steps, err, n)) goto fail;
  e->s_prev = c->noise_scale;
  e->t_start = lg_now();
  return e;
fail:
  lg_engine_free(&e);
  return NULL;
}

void lg_engine_free(lg_engine **pe) {
  if (!pe || !*pe) return;
  lg_engine *e = *pe;
  lg_dit_runner_free(&e->dr);
  lg_vae_stream_free(&e->vs);
  lg_wan_vae_free(&e->vae);
  lg_taehv_stream_free(&e->ts);
  lg_taehv_free(&e->taehv);
  lg_wan_dit_free(&e->dit);
  lg_ckpt_free(&e->vae_ck);
  lg_ckpt_free(&e->taehv_ck);
  lg_tensor *ts[] = {&e->pixu8, &e->pix32, &e->pix,  &e->last32, &e->lat,
                     &e->mu,    &e->olat,  &e->opix, &e->opixu8};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    lg_tensor_free(ts[i]);
  lg_umt5_free(&e->t5);
  lg_tokenizer_free(&e->tok);
  lg_tensor_free(&e->t5out);
  lg_tensor_free(&e->t5out32);
  lg_backend_free(&e->be);
  free(e->ctx_from);
  free(e->ctx_to);
  free(e->ctx_cur);
  pthread_mutex_destroy(&e->mu_lock);
  free(e);
  *pe = NULL;
}

/* A pending steps change rebuilds the stream batch (and resets the VAE caches), so the chunk
 * that applies it is a first chunk again. */
static bool pending_rebuild(const lg_engine *e) {
  pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu_lock;
  pthread_mutex_lock(mu);
  bool r = e->have_pending && e->pending.steps != e->cur.steps;
  pthread_mutex_unlock(mu);
  return r;
}

int lg_engine_frames_needed(const lg_engine *e) {
  if (e->t2v) return 0;
  return lg_dit_runner_chunks(e->dr) == 0 || pending_rebuild(e) ? 5 : 4;
}

void lg_engine_frame_size(const lg_engine *e, int *width, int *height) {
  *width = e->W;
  *height = e->H;
}

/* ---------------------------------------------------------------- params */

static int check_params(const lg_engine_params *p, char *err, size_t n) {
  if (!(p->noise_scale >= 0.0 && p->noise_scale <= 1.0))
    return fail(err, n, "noise_scale %g must be in [0,1]", p->noise_scale);
  if (p->steps < 1 || p->steps > LG_MAX_STEPS)
    return fail(err, n, "steps %d must be 1..%d", p->steps, LG_MAX_STEPS);
  if (!(p->blend_s >= 0.0 && p->blend_s <= 600.0))
    return fail(err, n, "blend_s %g must be in [0,600]", p->blend_s);
  if (!memchr(p->prompt, 0, sizeof p->prompt)) return fail(err, n, "prompt is not terminated");
  return 0;
}

int lg_engine_set_params(lg_engine *e, const lg_engine_params *p, char *err, size_t n) {
  int rc = check_params(p, err, n);
  if (rc) return rc;
  pthread_mutex_lock(&e->mu_lock);
  e->pending = *p;
  e->have_pending = true;
  pthread_mutex_unlock(&e->mu_lock);
  return 0;
}

void lg_engine_get_params(lg_engine *e, lg_engine_params *p) {
  pthread_mutex_lock(&e->mu_lock);
  *p = e->have_pending ? e->pending : e->cur;
  pthread_mutex_unlock(&e->mu_lock);
}

void lg_engine_get_stats(lg_engine *e, lg_engine_stats *s) {
  pthread_mutex_lock(&e->mu_lock);
  *s = e->stats;
  pthread_mutex_unlock(&e->mu_lock);
}

static int reset_state(lg_engine *e) {
  int err = lg_dit_runner_reset(e->dr);
  e->noise_epoch++;
  if (!err && e->vs) err = lg_vae_stream_reset(e->vs);
  if (!err && e->ts) err = lg_taehv_stream_reset(e->ts);
  e->have_last = false;
  e->s_prev = e->cur.noise_scale;
  e->first_out_done = false;
  e->t_start = lg_now();
  return err;
}

int lg_engine_reset(lg_engine *e) {
  return reset_state(e);
}

/* Chunk boundary: pending parameters take effect. A steps change needs a first chunk (5
 * frames in v2v); pushed with 4 frames (set_params raced frames_needed) it waits for the next
 * chunk. */
static int apply_pending(lg_engine *e, int n_in) {
  lg_engine_params p;
  pthread_mutex_lock(&e->mu_lock);
  bool have = e->have_pending;
  if (have) p = e->pending;
  if (have && p.steps != e->cur.steps && !e->t2v && n_in != 5) have = false;
  if (have) e->have_pending = false;
  pthread_mutex_unlock(&e->mu_lock);
  if (!have) return 0;
  int err = 0;
  if (strcmp(p.prompt, e->cur.prompt)) {
    size_t cn = (size_t)LG_TEXT_CTX_LEN * (size_t)e->text_dim;
    memcpy(e->ctx_from, e->ctx_cur, cn * sizeof(float));
    err = prompt_context(e, p.prompt, e->ctx_to);
    if (err) return err;
    e->blend_s = p.blend_s;
    e->blend_t = 0.0;
    e->blend_dt = 0.0;
    e->blending = true;
  }
  if (p.seed != e->cur.seed) e->noise_seed = p.seed;
  bool rebuild = p.steps != e->cur.steps;
  e->cur = p;
  if (rebuild) {
    char msg[256];
    err = build_stream(e, p.steps, msg, sizeof msg);
    if (err) {
      LG_ERR("engine", "%s", msg);
      return err;
    }
    err = reset_state(e);
  }
  return err;
}

/* Advances the prompt blend by dt seconds of output and refreshes the context. */
static int blend_step(lg_engine *e, double dt) {
  if (!e->blending) return 0;
  size_t cn = (size_t)LG_TEXT_CTX_LEN * (size_t)e->text_dim;
  e->blend_t += dt;
  double a = e->blend_s > 0 ? e->blend_t / e->blend_s : 1.0;
  if (a >= 1.0) {
    memcpy(e->ctx_cur, e->ctx_to, cn * sizeof(float));
    e->blending = false;
  } else {
    lg_text_ctx_blend(e->ctx_from, e->ctx_to, a, cn, e->ctx_cur);
  }
  return lg_dit_runner_set_context(e->dr, e->ctx_cur);
}

/* ---------------------------------------------------------------- push */

/* Draws keyed by (seed, resets so far, chunk, step): the pipelined stages ask for a chunk's
 * re-noise later than the single-stage stream does, and still get the same numbers. */
static int noise_rng(void *user, int chunk, int step, float *out, size_t n) {
  lg_engine *e = user;
  lg_rng r;
  uint64_t key =
      e->noise_seed * 0x9E3779B97F4A7C15ull ^
      ((uint64_t)e->noise_epoch << 40 | (uint64_t)(uint32_t)chunk << 4 | (uint64_t)(step + 1));
  lg_rng_seed(&r, key);
  for (size_t i = 0; i < n; i++)
    out[i] = (float)lg_rng_normal(&r);
  return 0;
}

/* MODELS.md 3: d = clamp(max_f rms(x_f - x_{f-1}) / 0.2, 0, 1) over consecutive frames in
 * [-1,1] (the previous chunk's last frame first), s = 0.9*(s0 - 0.1 d) + 0.1 s_prev.
 * In [-1,1] a byte difference is (2/255) times the byte difference, so the sum of squares is
 * (2/255)^2 times that of the bytes: the backend sums the byte differences squared
 * (sq_diff_sum over e->pix32 / e->last32, 0..255 as f32), which is exact in double (integers),
 * so CPU and GPU give the same d bit for bit. One host read per frame pair. */
static int motion_scale(lg_engine *e, int n_in, double *s_out) {
  size_t px = (size_t)e->W * e->H * 3;
  double dmax = 0.0;
  for (int f = e->have_last ? 0 : 1; f < n_in; f++) {
    lg_tensor a = f == 0 ? e->last32 : lg_tensor_narrow(&e->pix32, 0, f - 1, 1),
              b = lg_tensor_narrow(&e->pix32, 0, f, 1);
    double acc = 0.0;
    int err = LG_OP(e->be, sq_diff_sum, &acc, &a, &b);
    if (err) return err;
    double r = sqrt(acc * ((2.0 / 255.0) * (2.0 / 255.0)) / (double)px);
    if (r > dmax) dmax = r;
  }
  double d = dmax / 0.2;
  if (d > 1.0) d = 1.0;
  double s = 0.9 * (e->cur.noise_scale - 0.1 * d) + 0.1 * e->s_prev;
  if (s < 0.0) s = 0.0;
  if (s > 1.0) s = 1.0;
  *s_out = s;
  return 0;
}

/* Decodes nf latent frames of e->olat into RGB24: downloaded into the out buffers, or (fn set)
 * handed to fn as device frames. Returns frames written. */
static int decode_out(lg_engine *e, int nf, uint8_t *const *out, lg_engine_frame_fn fn, void *user,
                      int max_out, double *ms) {
  double t0 = lg_now();
  int written = 0, dropped = 0;
  for (int f = 0; f < nf; f++) {
    lg_tensor z = lg_tensor_narrow(&e->olat, 0, f, 1);
    /* the decoder gives 1 frame on its first call after a reset, then 4 */
    int T = e->first_out_done || f > 0 ? 4 : 1;
    lg_tensor x = lg_tensor_narrow(&e->opix, 0, 0, T);
    int err = e->ts ? lg_taehv_decode(e->ts, &z, &x) : lg_wan_vae_decode(e->vs, &z, &x);
    if (err < 0) return err;
    /* RGB24 on the backend ([-1,1] -> round((x+1)*127.5) clamped), then 1 byte per value
     * downloaded straight into the caller's buffers */
    lg_tensor xu8 = lg_tensor_narrow(&e->opixu8, 0, 0, T);
    err = lg_backend_pixels_to_u8(e->be, &xu8, &x);
    if (err < 0) return err;
    if (T > max_out - written) dropped += T - (max_out - written > 0 ? max_out - written : 0);
    for (int k = 0; k < T && written < max_out; k++, written++) {
      lg_tensor fk = lg_tensor_narrow(&e->opixu8, 0, k, 1);
      err = fn ? fn(user, written, &fk) : lg_tensor_download(&fk, out[written]);
      if (err < 0) return err;
    }
  }
  if (nf > 0) e->first_out_done = true;
  if (dropped) LG_WARN("engine", "push: %d decoded frames dropped (max_out %d)", dropped, max_out);
  *ms = (lg_now() - t0) * 1e3;
  return written;
}

/* One chunk; output downloaded into out, or handed to fn on the device (fn set). */
static int push_chunk(lg_engine *e, const uint8_t *const *in, int n_in, uint8_t *const *out,
                      lg_engine_frame_fn fn, void *user, int max_out) {
  double t_total = lg_now();
  int err = apply_pending(e, n_in);
  if (err) return err;
  if (e->cur.paused) return 0;
  /* the prompt blend advances by the output time since the last chunk */
  err = blend_step(e, e->blend_dt);
  e->blend_dt = 0.0;
  if (err) return err;
  double ms_enc = 0, ms_dit = 0, ms_dec = 0;
  int nf = 0, written = 0;
  if (e->t2v) {
    double t0 = lg_now();
    nf = lg_dit_runner_next_t2v(e->dr, noise_rng, e, &e->olat);
    if (nf < 0) return nf;
    ms_dit = (lg_now() - t0) * 1e3;
  } else {
    int need = lg_dit_runner_chunks(e->dr) == 0 ? 5 : 4;
    if (!in || n_in != need) {
      LG_ERR("engine", "push: %d input frames, this chunk needs %d", n_in, need);
      return LG_EINVAL;
    }
    double t0 = lg_now();
    /* RGB24 up (1 byte per value); on the backend [-1,1] pixels in the act dtype for the
     * encoder and the bytes as f32 values for the motion measure */
    for (int f = 0; !err && f < n_in; f++) {
      lg_tensor fu8 = lg_tensor_narrow(&e->pixu8, 0, f, 1);
      err = lg_tensor_upload(&fu8, in[f]);
    }
    lg_tensor pu8 = lg_tensor_narrow(&e->pixu8, 0, 0, n_in),
              p32 = lg_tensor_narrow(&e->pix32, 0, 0, n_in),
              p = lg_tensor_narrow(&e->pix, 0, 0, n_in);
    if (!err) err = lg_backend_pixels_from_u8(e->be, &p, &pu8);
    if (!err && e->cfg.engine.motion_noise) err = LG_OP(e->be, copy, &p32, &pu8);
    /* motion before the encode is queued, so its host reads wait only for the conversion */
    double s = e->cur.noise_scale;
    if (!err && e->cfg.engine.motion_noise) err = motion_scale(e, n_in, &s);
    lg_tensor lastf = lg_tensor_narrow(&e->pixu8, 0, n_in - 1, 1);
    if (!err) err = LG_OP(e->be, copy, &e->last32, &lastf);
    if (err) return err;
    e->s_prev = s;
    e->have_last = true;
    /* first chunk: encode frame 0 alone (1 latent), then frames 1-4 (1 latent) */
    int F = n_in == 5 ? 2 : 1, f0 = 0;
    for (int l = 0; !err && l < F; l++) {
      int T = (n_in == 5 && l == 0) ? 1 : 4;
      lg_tensor xs = lg_tensor_narrow(&e->pix, 0, f0, T);
      err = lg_wan_vae_encode(e->vs, &xs, &e->mu);
      lg_tensor dst = lg_tensor_narrow(&e->lat, 0, l, 1);
      if (!err) err = LG_OP(e->be, copy, &dst, &e->mu);
      f0 += T;
    }
    if (err) return err;
    ms_enc = (lg_now() - t0) * 1e3;
    t0 = lg_now();
    int oc = -1;
    lg_tensor lat = lg_tensor_narrow(&e->lat, 0, 0, F);
    nf = lg_dit_runner_push_v2v(e->dr, &lat, s, noise_rng, e, &e->olat, &oc);
    if (nf < 0) return nf;
    ms_dit = (lg_now() - t0) * 1e3;
  }
  if (nf > 0) {
    written = decode_out(e, nf, out, fn, user, max_out, &ms_dec);
    if (written < 0) return written;
    e->blend_dt += written / (e->cfg.engine.fps > 0 ? e->cfg.engine.fps : 16.0);
  }
  if (!e->t2v) lg_dit_runner_note_rank0_ms(e->dr, ms_enc + ms_dec); /* for the balancer */
  pthread_mutex_lock(&e->mu_lock);
  e->stats.chunks++;
  e->stats.frames_in += (uint64_t)(e->t2v ? 0 : n_in);
  e->stats.frames_out += (uint64_t)written;
  e->stats.ms_encode = ms_enc;
  e->stats.ms_dit = ms_dit;
  e->stats.ms_decode = ms_dec;
  e->stats.ms_total = (lg_now() - t_total) * 1e3;
  if (written > 0 && e->stats.ttff_s == 0.0) e->stats.ttff_s = lg_now() - e->t_start;
  size_t mem = lg_dit_runner_bytes(e->dr) + (e->vs ? lg_vae_stream_bytes(e->vs) : 0) +
               (e->ts ? lg_taehv_stream_bytes(e->ts) : 0);
  if (mem > e->stats.mem_peak_bytes) e->stats.mem_peak_bytes = mem;
  pthread_mutex_unlock(&e->mu_lock);
  return written;
}

int lg_engine_push(lg_engine *e, const uint8_t *const *in, int n_in, uint8_t *const *out,
                   int max_out) {
  return push_chunk(e, in, n_in, out, NULL, NULL, max_out);
}

int lg_engine_push_device(lg_engine *e, const uint8_t *const *in, int n_in, lg_engine_frame_fn fn,
                          void *user, int max_out) {
  if (!fn) return LG_EINVAL;
  return push_chunk(e, in, n_in, NULL, fn, user, max_out);
}

struct lg_backend *lg_engine_backend(lg_engine *e) {
  return e ? e->be : NULL;
}
