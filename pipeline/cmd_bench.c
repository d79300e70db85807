/* cmd_bench.c: `livegen bench dit`: times the real Wan DiT forward (models/wan_dit.h) on
 * random weights drawn from lg_model_spec + lg_rng, in the v2v steady state (every row's
 * cache full, one chunk of frames per row, rows = steps), and prints one JSON line: median ms
 * per chunk, FLOPs counted as MODELS.md 6 (linear 2*params*tokens without the per-prompt
 * cross K/V, attention 4*dim*layers per query-key pair), TFLOP/s and the fraction of the bf16
 * roofline, the memory pool's high-water mark, and the split GEMM / attention / elementwise
 * from one profiled forward (events around every op).
 * The random weights go through a temporary safetensors file (in /dev/shm when it exists,
 * unlinked as soon as it is mapped) because the model loads from an lg_ckpt.
 * Also exports lg_bench_write_random_ckpt for tests/gpu. Main thread. */
#include "cli.h"
#include "kv_cache.h"
#include "lg_backend.h"
#include "lg_cuda.h"
#include "model_spec.h"
#include "stages.h"
#include "wan_dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- random checkpoints */

typedef struct fill_ctx {
  const lg_tensor_spec *sp;
  uint64_t seed;
  lg_dtype dt;
  lg_rng r;
} fill_ctx;

/* Values mean + std * U where U is uniform with unit variance (fast, and enough for timing
 * and parity: every element random, none zero). Deterministic per (seed, tensor). */
static int fill_random(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  fill_ctx *f = user;
  if (offset == 0) lg_rng_seed(&f->r, f->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
  const float mean = f->sp[i].mean, sd = f->sp[i].std * 1.7320508f;
  size_t n = nbytes / lg_dtype_size(f->dt);
  for (size_t j = 0; j < n; j++) {
    float u = (float)(lg_rng_next(&f->r) >> 40) * (2.0f / 16777216.0f) - 1.0f;
    float v = mean + sd * u;
    if (f->dt == LG_F32)
      ((float *)buf)[j] = v;
    else if (f->dt == LG_BF16)
      ((uint16_t *)buf)[j] = lg_f32_to_bf16(v);
    else
      ((uint16_t *)buf)[j] = lg_f32_to_f16(v);
  }
  return 0;
}

/* Writes a safetensors file with every tensor of lg_model_spec(arch, preset), random. */
int lg_bench_write_random_ckpt(const char *arch, const char *preset, const char *path,
                               uint64_t seed, lg_dtype dt) {
  int err = 0, n = 0;
  lg_tensor_spec *sp = NULL;
  const char **names = NULL;
  lg_tensor *ts = NULL;
  char msg[256];
  err = lg_model_spec(arch, preset, &sp, &n, msg, sizeof msg);
  LG_CHECK(err == 0, err ? err : LG_EINVAL, "bench", "%s", msg);
  names = calloc((size_t)n, sizeof *names);
  ts = calloc((size_t)n, sizeof *ts);
  LG_CHECK(names && ts, LG_ENOMEM, "bench", "out of memory");
  for (int i = 0; i < n; i++) {
    names[i] = sp[i].name;
    ts[i] = lg_tensor_make(NULL, NULL, dt, sp[i].ndim, sp[i].shape);
  }
  {
    fill_ctx f = {.sp = sp, .seed = seed, .dt = dt};
    err = lg_safetensors_write_fill(path, names, ts, n, NULL, 0, fill_random, &f);
  }
fail:
  free(names);
  free(ts);
  free(sp);
  return err;
}

/* ---------------------------------------------------------------- bench dit */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static int cmp_unsigned(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return x < y ? -1 : x > y;
}

static void usage(FILE *f) {
  fprintf(
      f, "usage: livegen bench dit [--preset tiny|1.3b|14b] [--res HxW] [--steps 1|2|4|1,2,4]\n"
         "                        [--kv-frames N] [--frames F] [--iters N] [--warmup N]\n"
         "                        [--backend cuda|cpu|auto] [--seed S] [--graph 0|1]\n"
         "                        [--context-weights device|host]\n"
         "Times one v2v chunk of the Wan DiT (rows = steps, F latent frames per row, every\n"
         "row's cache full) on random weights; prints one JSON line. With --graph 1 (the\n"
         "default on CUDA) the forward is also captured once as a CUDA graph and replayed:\n"
         "ms_* are the replays', eager_ms_* the plain forwards'. --context-weights host (the\n"
         "default, as model.context_weights) keeps the weights only the text-context pass uses\n"
         "in host memory, device keeps them on the GPU (context_ms: that pass, the fastest of 3).\n"
         "       livegen bench engine [--config F] [--set k=v]... [--chunks N] [--warmup N]\n"
         "Times the whole chunk (VAE encode, DiT stream batch, decode) on any config.\n"
         "       livegen bench pipeline --gpus 1,2,4 ... (see livegen bench pipeline --help)\n");
}

typedef struct bench_args {
  const char *preset, *backend;
  int px_h, px_w, kvf, frames, iters, warmup;
  int nsteps, steps[4];
  int graph;     /* -1: default (on for CUDA) */
  bool ctx_host; /* --context-weights host (default) | device */
  uint64_t seed;
} bench_args;

/* One configuration (rows = steps) on a loaded model; prints its JSON line. 0 or LG_E*. */
static int bench_one(const bench_args *a, lg_backend *be, lg_wan_dit *m, int steps, double t_load) {
  int err = LG_EBACKEND;
  const int lat_h = a->px_h / 8, lat_w = a->px_w / 8, B = steps, frames = a->frames, kvf = a->kvf,
            iters = a->iters;
  const float tsteps[4] = {700, 500, 400, 200};
  const lg_wan_dit_config *cfg = lg_wan_dit_get_config(m);
  lg_dit_ws *ws = NULL;
  lg_kv_cache *kv = NULL;
  lg_tensor x = {0}, vout = {0};
  float *ctx = NULL, *xh = NULL, *vh = NULL;
  double *ms = NULL, *ms_eager = NULL;
  lg_cuda_graph *graph = NULL;
  double graph_err = -1, ctx_ms = 0;
  /* back-to-back replays (NVML): J per chunk, median W, median SM clock */
  double pw_j = -1, pw_w = 0, pw_ms = 0; /* pw_ms: ms per chunk of the back-to-back replays */
  unsigned pw_mhz = 0;
  bool cuda = lg_backend_is_cuda(be);
  const bool use_graph = cuda && a->graph != 0;
  if (cuda) lg_cuda_mem_reset_peak(be);
  ws = lg_dit_ws_new(m, B * frames, lat_h, lat_w);
  kv = lg_wan_dit_cache_new(m, B, kvf, lat_h, lat_w);
  if (!ws || !kv) goto done;
  {
    lg_rng r;
    lg_rng_seed(&r, a->seed + 1);
    size_t nctx = (size_t)LG_DIT_TEXT_LEN * (size_t)cfg->text_dim;
    ctx = calloc(nctx, sizeof *ctx);
    if (!ctx) goto done;
    for (size_t i = 0; i < (size_t)20 * (size_t)cfg->text_dim; i++)
      ctx[i] = (float)lg_rng_normal(&r) * 0.1f; /* a 20-token prompt, zero rows after */
    /* the fastest of 3 context passes (the first also plans its GEMMs) */
    for (int i = 0; i < 3; i++) {
      double c0 = lg_now();
      if (lg_kv_cache_clear(kv) < 0 || lg_wan_dit_set_context(m, ws, kv, ctx) < 0 ||
          be->ops->sync(be) < 0)
        goto done;
      double t = (lg_now() - c0) * 1e3;
      ctx_ms = i == 0 || t < ctx_ms ? t : ctx_ms;
    }
    int64_t sh[5] = {B, frames, lat_h, lat_w, 16};
    if (lg_tensor_alloc(be, &x, be->act_dtype, 5, sh) < 0 ||
        lg_tensor_alloc(be, &vout, be->act_dtype, 5, sh) < 0)
      goto done;
    int64_t n = lg_tensor_numel(&x);
    xh = malloc((size_t)n * sizeof *xh);
    if (!xh) goto done;
    for (int64_t i = 0; i < n; i++)
      xh[i] = (float)lg_rng_normal(&r);
    if (lg_tensor_upload_f32(&x, xh) < 0) goto done;
  }
  /* steady state: every row's cache full (kv_frames = kvf), the chunk written to the last
   * slots, RoPE index past the sinks */
  lg_dit_row rows[LG_DIT_MAX_ROWS];
  memset(rows, 0, sizeof rows);
  for (int b = 0; b < B; b++) {
    rows[b].t = tsteps[b];
    rows[b].rope_start = 10 + b;
    rows[b].kv_frames = kvf;
    for (int f = 0; f < frames; f++)
      rows[b].slot[f] = kvf - frames + f;
  }
  ms = calloc((size_t)iters, sizeof *ms);
  ms_eager = calloc((size_t)iters, sizeof *ms_eager);
  if (!ms || !ms_eager) goto done;
  double host_ms = 0;
  for (int i = 0; i < a->warmup; i++)
    if (lg_wan_dit_forward(m, ws, kv, &x, rows, &vout) < 0 || be->ops->sync(be) < 0) goto done;
  for (int i = 0; i < iters; i++) {
    double h0 = lg_now();
    if (cuda && lg_cuda_mark(be, 0) < 0) goto done;
    if (lg_wan_dit_forward(m, ws, kv, &x, rows, &vout) < 0) goto done;
    host_ms += (lg_now() - h0) * 1e3 / iters; /* enqueue time: is the host the bottleneck? */
    if (cuda) {
      float e = 0;
      if (lg_cuda_mark(be, 1) < 0 || lg_cuda_elapsed_ms(be, 0, 1, &e) < 0) goto done;
      ms[i] = e;
    } else {
      if (be->ops->sync(be) < 0) goto done;
      ms[i] = (lg_now() - h0) * 1e3;
    }
  }
  memcpy(ms_eager, ms, (size_t)iters * sizeof *ms);
  if (use_graph) {
    /* stage the uploads, capture one forward, replay: the same cache slots are written with
     * the same values each time, so the output must equal the eager one */
    int64_t n = lg_tensor_numel(&vout);
    float *ve = malloc((size_t)n * sizeof *ve), *vg = malloc((size_t)n * sizeof *vg);
    int rc = ve && vg ? lg_tensor_download_f32(&vout, ve) : LG_ENOMEM;
    if (!rc) rc = lg_wan_dit_prepare(m, ws, rows, B, frames);
    if (!rc) rc = lg_cuda_capture_begin(be);
    if (!rc) {
      int rc2 = lg_wan_dit_forward(m, ws, kv, &x, rows, &vout);
      rc = lg_cuda_capture_end(be, &graph);
      if (rc2) rc = rc2;
    }
    for (int i = 0; !rc && i < a->warmup; i++)
      rc = lg_cuda_graph_launch(be, graph);
    double sum_ms = 0;
    for (int i = 0; !rc && i < iters; i++) {
      float e = 0;
      rc = lg_cuda_mark(be, 0);
      if (!rc) rc = lg_cuda_graph_launch(be, graph);
      if (!rc) rc = lg_cuda_mark(be, 1);
      if (!rc) rc = lg_cuda_elapsed_ms(be, 0, 1, &e);
      ms[i] = e, sum_ms += e;
    }
    /* power (NVML, where there is one): at least 3 s more of replays queued back to back, as a
     * stream runs them; board power (NVML's 1-second average) and SM clock polled from the host
     * from 40% of the run on, so that the average covers these replays only; nothing is added
     * between the replays. J per chunk = median W x ms per chunk. */
    lg_cuda_power pm;
    if (!rc && sum_ms > 0 && lg_cuda_power_read(be, &pm) == 0) {
      enum { NPOLL = 512 };
      static unsigned mhz[NPOLL], mw[NPOLL];
      const double per = sum_ms / iters;
      const int nb = (int)fmax(iters, ceil(3000.0 / per));
      int np = 0;
      const double t0 = lg_now(), dur = nb * per * 1e-3;
      for (int i = 0; !rc && i < nb; i++)
        rc = lg_cuda_graph_launch(be, graph);
      while (!rc && np < NPOLL && lg_now() < t0 + 0.95 * dur) {
        if (lg_now() > t0 + 0.4 * dur && lg_cuda_power_read(be, &pm) == 0 && pm.power_mw)
          mw[np] = pm.power_mw, mhz[np++] = pm.sm_mhz;
        usleep(10000);
      }
      if (!rc) rc = be->ops->sync(be);
      if (!rc && np > 0) {
        qsort(mw, (size_t)np, sizeof *mw, cmp_unsigned);
        qsort(mhz, (size_t)np, sizeof *mhz, cmp_unsigned);
        pw_ms = (lg_now() - t0) * 1e3 / nb;
        pw_w = mw[np / 2] * 1e-3;
        pw_mhz = mhz[np / 2];
        pw_j = pw_w * pw_ms * 1e-3;
      }
    }
    if (!rc) rc = lg_tensor_download_f32(&vout, vg);
    if (!rc) {
      double num = 0, den = 0;
      for (int64_t i = 0; i < n; i++) {
        double dd = (double)vg[i] - ve[i];
        num += dd * dd, den += (double)ve[i] * ve[i];
      }
      graph_err = den > 0 ? sqrt(num / den) : sqrt(num);
    }
    free(ve);
    free(vg);
    if (rc) {
      fprintf(stderr, "livegen bench dit: CUDA graph capture/replay failed (%s)\n",
              lg_strerror(rc));
      goto done;
    }
  }
  /* LG_BENCH_PROFILER_RANGE=1: one more eager forward inside cudaProfilerStart/Stop, for a
   * profiler started with the capture off (tests/gpu/run_kprof) */
  if (cuda && getenv("LG_BENCH_PROFILER_RANGE")) {
    if (lg_cuda_profiler_range(be, true) < 0 ||
        lg_wan_dit_forward(m, ws, kv, &x, rows, &vout) < 0 || lg_cuda_profiler_range(be, false) < 0)
      goto done;
  }
  double split[LG_CUDA_PROF_N] = {0}, op_ms[32];
  const char *op_name[32];
  int nops = 0, op_cnt[32], nkinds = 0, nshapes = 0;
  lg_cuda_prof_shape shapes[48];
  bool have_split = false;
  if (cuda && lg_cuda_profile_begin(be) == 0) {
    if (lg_wan_dit_forward(m, ws, kv, &x, rows, &vout) < 0) goto done;
    have_split = lg_cuda_profile_end(be, split, &nops) == 0;
    if (have_split) nkinds = lg_cuda_profile_ops(be, op_name, op_ms, op_cnt, 32);
    if (have_split) nshapes = lg_cuda_profile_shapes(be, shapes, 48);
  }
  {
    /* the output must be finite: random weights must not hide a NaN */
    int64_t n = lg_tensor_numel(&vout);
    int nonfinite = 0;
    vh = malloc((size_t)n * sizeof *vh);
    if (!vh || lg_tensor_download_f32(&vout, vh) < 0) goto done;
    for (int64_t i = 0; i < n; i++)
      nonfinite += !isfinite(vh[i]);
    if (nonfinite) {
      fprintf(stderr, "livegen bench dit: %d non-finite outputs\n", nonfinite);
      goto done;
    }
  }
  qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
  qsort(ms_eager, (size_t)iters, sizeof *ms_eager, cmp_double);
  double med = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
  double p90 = ms[(int)((iters - 1) * 0.9)];
  double emed =
      iters % 2 ? ms_eager[iters / 2] : 0.5 * (ms_eager[iters / 2 - 1] + ms_eager[iters / 2]);
  /* FLOPs, MODELS.md 6 */
  const double d = cfg->dim, ff = cfg->ffn_dim, L = cfg->layers;
  const double tpf = (double)(lat_h / 2) * (lat_w / 2), tokens = B * frames * tpf;
  double pairs = 0;
  for (int b = 0; b < B; b++)
    pairs += frames * tpf * rows[b].kv_frames * tpf;
  double fl_lin = 2.0 * tokens * L * (6 * d * d + 2 * d * ff);
  double fl_att = 4.0 * d * L * (pairs + tokens * LG_DIT_TEXT_LEN);
  double tflop = (fl_lin + fl_att) * 1e-12, tflops = tflop / (med * 1e-3);
  const char *dev = cuda ? lg_cuda_device_name(be) : "cpu";
  double roof = (strstr(dev, "H100") || strstr(dev, "H200")) ? 790.0 : 0.0;
  size_t peak = 0, now = 0;
  bool have_mem = cuda && lg_cuda_mem_stats(be, &peak, &now) == 0;
  printf("{\"bench\":\"dit\",\"preset\":\"%s\",\"res\":\"%dx%d\",\"latent\":\"%dx%d\","
         "\"tokens_per_frame\":%d,\"rows\":%d,\"frames_per_row\":%d,\"kv_frames\":%d,"
         "\"backend\":\"%s\",\"device\":\"%s\",\"iters\":%d,\"cuda_graph\":%s,"
         "\"ms_median\":%.3f,\"ms_min\":%.3f,\"ms_p90\":%.3f,\"eager_ms_median\":%.3f,"
         "\"eager_ms_min\":%.3f,\"tflop\":%.3f,"
         "\"tflop_linear\":%.3f,\"tflop_attention\":%.3f,\"tflops\":%.1f,",
         a->preset, a->px_h, a->px_w, lat_h, lat_w, (int)tpf, B, frames, kvf, be->ops->name, dev,
         iters, use_graph ? "true" : "false", med, ms[0], p90, emed, ms_eager[0], tflop,
         fl_lin * 1e-12, fl_att * 1e-12, tflops);
  if (use_graph) printf("\"graph_vs_eager_rel\":%.3g,", graph_err);
  if (roof > 0)
    printf("\"roofline_tflops\":%.0f,\"roofline_frac\":%.3f,", roof, tflops / roof);
  else
    printf("\"roofline_tflops\":null,\"roofline_frac\":null,");
  if (have_mem)
    printf("\"peak_mem_gib\":%.3f,", peak / 1073741824.0);
  else
    printf("\"peak_mem_gib\":null,");
  if (pw_j >= 0)
    printf("\"energy_j_per_chunk\":%.3f,\"power_w\":%.0f,\"ms_back_to_back\":%.3f,", pw_j, pw_w,
           pw_ms);
  else
    printf("\"energy_j_per_chunk\":null,\"power_w\":null,\"ms_back_to_back\":null,");
  if (pw_mhz)
    printf("\"sm_mhz_median\":%u,", pw_mhz);
  else
    printf("\"sm_mhz_median\":null,");
  if (have_split)
    printf("\"split_ms\":{\"gemm\":%.3f,\"attention\":%.3f,\"elementwise\":%.3f,\"ops\":%d},",
           split[LG_CUDA_PROF_GEMM], split[LG_CUDA_PROF_ATTN], split[LG_CUDA_PROF_ELEM], nops);
  else
    printf("\"split_ms\":null,");
  if (nkinds > 0) {
    printf("\"ops_ms\":{");
    for (int i = 0; i < nkinds; i++)
      printf("%s\"%s\":[%.3f,%d]", i ? "," : "", op_name[i], op_ms[i], op_cnt[i]);
    printf("},");
  }
  if (nshapes > 0) {
    /* per shape: [ms, calls, TFLOP/s]; matmul M x N x K, attention B x Lq x Lk (keys) with
     * 4 * Lq * Lk * dim FLOPs per row */
    printf("\"shapes_ms\":{");
    for (int i = 0; i < nshapes; i++) {
      const int32_t *sh = shapes[i].shape;
      double fl = !strcmp(shapes[i].op, "matmul")
                      ? 2.0 * sh[0] * sh[1] * sh[2]
                      : 4.0 * sh[0] * sh[1] * (double)sh[2] * lg_wan_dit_get_config(m)->dim;
      printf("%s\"%s %dx%dx%d\":[%.3f,%d,%.0f]", i ? "," : "", shapes[i].op, sh[0], sh[1], sh[2],
             shapes[i].ms, shapes[i].count,
             shapes[i].ms > 0 ? fl * shapes[i].count / (shapes[i].ms * 1e9) : 0.0);
    }
    printf("},");
  }
  const char *aw = getenv("LG_ATTN_WARPS"), *ak = getenv("LG_ATTN_KERNEL"),
             *as = getenv("LG_ATTN_SPLIT");
  printf("\"attn_kernel\":\"%s\",\"attn_warps\":\"%s\",\"attn_split\":\"%s\","
         "\"host_enqueue_ms\":%.3f,",
         ak ? ak : "default", aw ? aw : "default", as ? as : "auto", host_ms);
  printf("\"ws_mib\":%.1f,\"kv_mib\":%.1f,", lg_dit_ws_bytes(ws) / 1048576.0,
         lg_kv_cache_bytes(kv) / 1048576.0);
  printf("\"context_weights\":\"%s\",\"context_ms\":%.2f,", a->ctx_host ? "host" : "device",
         ctx_ms);
  printf("\"load_s\":%.1f}\n", t_load);
  fflush(stdout);
  err = 0;
done:
  lg_cuda_graph_free(&graph);
  free(ms);
  free(ms_eager);
  free(ctx);
  free(xh);
  free(vh);
  lg_tensor_free(&x);
  lg_tensor_free(&vout);
  lg_kv_cache_free(&kv);
  lg_dit_ws_free(&ws);
  return err;
}

static int bench_dit(int argc, char **argv) {
  bench_args a = {.preset = "1.3b",
                  .backend = "cuda",
                  .px_h = 480,
                  .px_w = 832,
                  .kvf = 6,
                  .frames = 1,
                  .iters = 20,
                  .warmup = 3,
                  .nsteps = 1,
                  .steps = {2},
                  .graph = -1,
                  .ctx_host = true, /* model.context_weights' default */
                  .seed = 42};
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "livegen bench dit: %s needs a value\n", k);
      return 2;
    }
    if (!strcmp(k, "--preset"))
      a.preset = v;
    else if (!strcmp(k, "--backend"))
      a.backend = v;
    else if (!strcmp(k, "--res")) {
      if (sscanf(v, "%dx%d", &a.px_h, &a.px_w) != 2) {
        fprintf(stderr, "livegen bench dit: --res wants HxW, e.g. 480x832\n");
        return 2;
      }
    } else if (!strcmp(k, "--steps")) {
      /* one value or a comma list (each configuration on the one loaded model) */
      char *end = NULL;
      const char *p = v;
      a.nsteps = 0;
      while (*p && a.nsteps < 4) {
        long s = strtol(p, &end, 10);
        if (end == p || s < 1 || s > 4) {
          fprintf(stderr, "livegen bench dit: --steps wants 1..4 or a list like 1,2,4\n");
          return 2;
        }
        a.steps[a.nsteps++] = (int)s;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
          fprintf(stderr, "livegen bench dit: --steps wants 1..4 or a list like 1,2,4\n");
          return 2;
        }
      }
      if (*p) {
        fprintf(stderr, "livegen bench dit: at most 4 --steps values\n");
        return 2;
      }
    } else if (!strcmp(k, "--kv-frames"))
      a.kvf = atoi(v);
    else if (!strcmp(k, "--frames"))
      a.frames = atoi(v);
    else if (!strcmp(k, "--iters"))
      a.iters = atoi(v);
    else if (!strcmp(k, "--warmup"))
      a.warmup = atoi(v);
    else if (!strcmp(k, "--seed"))
      a.seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--graph"))
      a.graph = atoi(v) != 0;
    else if (!strcmp(k, "--context-weights")) {
      if (strcmp(v, "host") && strcmp(v, "device")) {
        fprintf(stderr, "livegen bench dit: --context-weights wants device or host\n");
        return 2;
      }
      a.ctx_host = !strcmp(v, "host");
    } else {
      fprintf(stderr, "livegen bench dit: unknown option %s\n", k);
      usage(stderr);
      return 2;
    }
    i++;
  }
  if (a.nsteps < 1 || a.px_h < 16 || a.px_w < 16 || a.px_h % 16 || a.px_w % 16 || a.kvf < 1 ||
      a.kvf > 64 || a.frames < 1 || a.frames > LG_DIT_MAX_CALL || a.frames > a.kvf || a.iters < 1 ||
      a.iters > 10000 || a.warmup < 0 || a.warmup > 1000) {
    fprintf(stderr, "livegen bench dit: bad arguments (steps 1..4, res multiples of 16, "
                    "1 <= frames <= kv-frames, iters >= 1)\n");
    return 2;
  }
  int rc = 1, err = 0;
  lg_backend *be = NULL;
  lg_ckpt *ck = NULL;
  lg_wan_dit *m = NULL;
  char path[256], msg[256] = "";
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(path, sizeof path, "%s/lg_bench_dit_%s_%d.safetensors", dir, a.preset, (int)getpid());

  be = lg_backend_new_by_name(a.backend);
  if (!be) goto done;
  double t0 = lg_now();
  err = lg_bench_write_random_ckpt("wan-dit", a.preset, path, a.seed, LG_BF16);
  if (err) {
    unlink(path);
    fprintf(stderr, "livegen bench dit: cannot write random weights to %s: %s\n", path,
            lg_strerror(err));
    goto done;
  }
  ck = lg_ckpt_open(path, msg, sizeof msg);
  unlink(path); /* the mapping stays valid */
  if (!ck) {
    fprintf(stderr, "livegen bench dit: %s\n", msg);
    goto done;
  }
  m = lg_wan_dit_load(be, ck, NULL, msg, sizeof msg);
  if (!m) {
    fprintf(stderr, "livegen bench dit: %s\n", msg);
    goto done;
  }
  lg_ckpt_free(&ck);
  if (a.ctx_host && lg_wan_dit_context_weights_to_host(m, msg, sizeof msg) < 0) {
    fprintf(stderr, "livegen bench dit: %s\n", msg);
    goto done;
  }
  double t_load = lg_now() - t0;
  for (int i = 0; i < a.nsteps; i++)
    if (bench_one(&a, be, m, a.steps[i], t_load) < 0) goto done;
  rc = 0;
done:
  if (rc) fprintf(stderr, "livegen bench dit: failed (see the log above)\n");
  lg_wan_dit_free(&m);
  lg_ckpt_free(&ck);
  lg_backend_free(&be);
  return rc;
}

int lg_cmd_bench(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "dit")) return bench_dit(argc - 1, argv + 1);
  if (!strcmp(argv[1], "pipeline")) return lg_bench_pipeline(argc - 1, argv + 1); /* stages.h */
  if (!strcmp(argv[1], "engine")) return lg_bench_engine(argc - 1, argv + 1); /* bench_engine.c */
  fprintf(stderr,
          "livegen bench: unknown target '%s' (dit, engine, pipeline; the VAE alone: "
          "livegen probe vae-decode --res HxW --calls N)\n",
          argv[1]);
  return 2;
}
