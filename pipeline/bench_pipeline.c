/* bench_pipeline.c: `livegen bench pipeline`: time to first frame and steady-state frames per
 * second of the v2v DiT stream pipelined over N stages (pipeline/stages.h) on random weights,
 * for each N asked. Stages run as threads of this process with the in-process transport, each
 * with its own backend instance on the one device named by --backend (the JSON says so:
 * "transport":"inproc","devices":1), so on one GPU or on the CPU the stages share the device
 * and N > 1 shows the ring's overhead and balance, not multi-GPU speed; multi-GPU runs use
 * the NCCL transport (docs/MULTIGPU.md). DiT only: latents in, x0 out (no VAE); 4 video frames
 * per latent chunk. Main thread (stage 0) plus the stage threads. */
#include "stages.h"

#include "checkpoint.h"
#include "kv_policy.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmd_bench.c */
int lg_bench_write_random_ckpt(const char *arch, const char *preset, const char *path,
                               uint64_t seed, lg_dtype dt);

typedef struct pargs {
  const char *preset, *backend, *transport;
  int px_w, px_h, steps, kvf, sinks, chunks, balance, threads;
  int ngpus, gpus[4];
  uint64_t seed;
  char path[300];
} pargs;

static void usage(FILE *f) {
  fprintf(f,
          "usage: livegen bench pipeline [--gpus 1,2,4] [--preset tiny|1.3b|14b] [--res WxH]\n"
          "                              [--steps S] [--backend cpu|cuda] [--chunks K]\n"
          "                              [--kv-frames N] [--balance T] [--threads N] [--seed S]\n"
          "                              [--transport inproc|nccl]\n"
          "Streams K v2v chunks of random latents through the DiT split over N stages (in-process\n"
          "stages on one device) and prints one JSON line per N: time to first frame, ms per\n"
          "chunk and frames per second once the ring is full, each stage's time.\n"
          "--transport nccl: one process per GPU (GPU r = stage r, NCCL) instead.\n");
}

static lg_wan_dit *load(void *user, int rank) {
  const pargs *a = user;
  char err[256];
  lg_backend *be = !strcmp(a->backend, "cpu") ? lg_backend_new_cpu(a->threads)
                                              : lg_backend_new_by_name(a->backend);
  lg_ckpt *ck = be ? lg_ckpt_open(a->path, err, sizeof err) : NULL;
  lg_wan_dit *m = ck ? lg_wan_dit_load(be, ck, NULL, err, sizeof err) : NULL;
  if (!m) fprintf(stderr, "livegen bench pipeline: stage %d: cannot load the model\n", rank);
  lg_ckpt_free(&ck);
  if (!m) lg_backend_free(&be);
  return m;
}

typedef struct noise_ctx {
  uint64_t seed;
  lg_rng r; /* latents and context */
} noise_ctx;

/* Keyed by (chunk, step), so every N draws the same numbers for the same rows although the
 * ring asks in another order: the x0 checksum is comparable across N. */
static int noise(void *user, int chunk, int step, float *out, size_t n) {
  noise_ctx *c = user;
  lg_rng r;
  lg_rng_seed(&r, c->seed * 0x9E3779B97F4A7C15ull + 1000003ull * (uint64_t)(chunk + 1) +
                      (uint64_t)(step + 2));
  for (size_t i = 0; i < n; i++)
    out[i] = (float)lg_rng_normal(&r);
  return 0;
}

static lg_stages_opts stage_opts(const pargs *a, int n) {
  lg_stages_opts o = {.stream = {.steps = a->steps,
                                 .step_list = {700, 500, 400, 200},
                                 .shift = 8.0,
                                 .kv_frames = a->kvf,
                                 .sink_frames = a->sinks,
                                 .adapt_sink = 0.0,
                                 .lat_h = a->px_h / 8,
                                 .lat_w = a->px_w / 8},
                      .n = n,
                      .balance_ticks = a->balance};
  return o;
}

/* Streams a->chunks chunks through the ring driven by s0 (latents on be, the backend of
 * stage 0's device) and prints the JSON line. */
static int stream_bench(const pargs *a, int n, lg_stage *s0, lg_backend *be, const char *transport,
                        int devices, double t_load) {
  int rc = 1;
  const int lat_h = a->px_h / 8, lat_w = a->px_w / 8;
  lg_tensor lt = {0}, out = {0};
  float *host = NULL, *ctx = NULL;
  size_t fe = (size_t)lat_h * (size_t)lat_w * 16;
  host = malloc(2 * fe * sizeof(float));
  ctx = calloc((size_t)LG_DIT_TEXT_LEN * 4096, sizeof(float));
  int64_t sh2[4] = {2, lat_h, lat_w, 16};
  if (!be || !host || !ctx || lg_tensor_alloc(be, &lt, be->act_dtype, 4, sh2) ||
      lg_tensor_alloc(be, &out, be->act_dtype, 4, sh2))
    goto done;
  noise_ctx nz = {.seed = a->seed};
  lg_rng_seed(&nz.r, a->seed);
  for (size_t i = 0; i < (size_t)20 * 64; i++)
    ctx[i] = (float)lg_rng_normal(&nz.r) * 0.1f; /* a short prompt; text_dim >= 64 */
  if (lg_stage_set_context(s0, ctx) < 0) goto done;
  double ttff = 0, t_steady = 0;
  int emitted_steady = 0, fill = lg_stage_extra_lag(s0) + a->steps;
  /* checksum over the chunks every N <= 4 emits within K pushes: 0 .. K - 4*steps */
  int cmax = a->chunks - 4 * a->steps, summed = 0;
  double sum_sq = 0.0;
  for (int c = 0; c < a->chunks; c++) {
    int F = c == 0 ? 2 : 1;
    for (size_t i = 0; i < (size_t)F * fe; i++)
      host[i] = (float)lg_rng_normal(&nz.r);
    lg_tensor l = lg_tensor_narrow(&lt, 0, 0, F);
    if (lg_tensor_upload_f32(&l, host) < 0) goto done;
    double t0 = lg_now();
    int chunk = -1;
    int nf = lg_stage_push_v2v(s0, &l, 0.8, noise, &nz, &out, &chunk);
    if (nf < 0 || be->ops->sync(be) < 0) {
      fprintf(stderr, "livegen bench pipeline: push %d failed (%d)\n", c, nf);
      goto done;
    }
    double dt = lg_now() - t0;
    if (c == 0) ttff = dt;
    if (nf > 0 && chunk <= cmax) {
      lg_tensor o = lg_tensor_narrow(&out, 0, 0, nf);
      if (lg_tensor_download_f32(&o, host) < 0) goto done;
      for (size_t i = 0; i < (size_t)nf * fe; i++)
        sum_sq += (double)host[i] * host[i];
      summed++;
    }
    if (c > fill) { /* steady: the ring is full and every push emits */
      t_steady += dt;
      emitted_steady += nf > 0;
    }
  }
  if (emitted_steady < 1) {
    fprintf(stderr,
            "livegen bench pipeline: %d chunks do not fill a ring of %d stages with %d steps "
            "(need more than %d)\n",
            a->chunks, n, a->steps, fill + 1);
    goto done;
  }
  double chunk_ms = t_steady / emitted_steady * 1e3;
  double blk[LG_STAGES_MAX], fx[LG_STAGES_MAX];
  int measured = 0, bound[LG_STAGES_MAX + 1];
  lg_stage_times(s0, blk, fx, &measured);
  lg_stage_bounds(s0, bound);
  printf("{\"bench\":\"pipeline\",\"preset\":\"%s\",\"res\":\"%dx%d\",\"latent\":\"%dx%d\","
         "\"steps\":%d,\"kv_frames\":%d,\"stages\":%d,\"transport\":\"%s\",\"devices\":%d,"
         "\"backend\":\"%s\",\"dit_only\":true,\"load_s\":%.2f,\"ttff_ms\":%.2f,"
         "\"chunk_ms\":%.2f,\"fps\":%.2f,\"extra_lag_chunks\":%d,\"steady_chunks\":%d,"
         "\"bounds\":[",
         a->preset, a->px_w, a->px_h, lat_w, lat_h, a->steps, a->kvf, n, transport, devices,
         be->ops->name, t_load, ttff * 1e3, chunk_ms, 4.0 * 1e3 / chunk_ms, lg_stage_extra_lag(s0),
         emitted_steady);
  for (int i = 0; i <= n; i++)
    printf(i ? ",%d" : "%d", bound[i]);
  printf("],\"stage_blocks_ms\":[");
  for (int i = 0; i < n; i++)
    printf(i ? ",%.2f" : "%.2f", blk[i]);
  printf("],\"stage_fixed_ms\":[");
  for (int i = 0; i < n; i++)
    printf(i ? ",%.2f" : "%.2f", fx[i]);
  printf("],\"measured_batches\":%d,\"x0_chunks\":%d,\"x0_sum_sq\":%.9g}\n", measured, summed,
         sum_sq);
  fflush(stdout);
  rc = 0;
done:
  lg_tensor_free(&lt);
  lg_tensor_free(&out);
  free(host);
  free(ctx);
  return rc;
}

static int bench_n(const pargs *a, int n) {
  char err[512] = "";
  lg_stages_opts o = stage_opts(a, n);
  double t_start = lg_now();
  lg_stages_inproc *p = lg_stages_inproc_new(&o, load, (void *)a, err, sizeof err);
  if (!p) {
    fprintf(stderr, "livegen bench pipeline: %d stages: %s\n", n, err);
    return 1;
  }
  double t_load = lg_now() - t_start;
  lg_backend *be =
      !strcmp(a->backend, "cpu") ? lg_backend_new_cpu(1) : lg_backend_new_by_name(a->backend);
  int rc = be ? stream_bench(a, n, lg_stages_inproc_stage0(p), be, "inproc", 1, t_load) : 1;
  lg_backend_free(&be);
  lg_stages_inproc_free(&p);
  return rc;
}

/* One process per GPU (GPU r = rank r), NCCL between them; the children are forked before
 * this process touches CUDA, and inherit the NCCL id. Not run yet: see docs/MULTIGPU.md. */
static int bench_nccl(const pargs *a, int n) {
  char err[512] = "";
  lg_stages_opts o = stage_opts(a, n);
  unsigned char id[LG_NCCL_ID_BYTES];
  lg_ckpt *ck = lg_ckpt_open(a->path, err, sizeof err);
  lg_wan_dit_config cfg;
  int rc = ck ? lg_wan_dit_read_config(ck, &cfg, err, sizeof err) : LG_EIO;
  lg_ckpt_free(&ck);
  if (rc < 0 || n < 2 || lg_nccl_unique_id(id) < 0) {
    fprintf(stderr, "livegen bench pipeline: NCCL with %d ranks: %s\n", n,
            n < 2    ? "needs --gpus 2 or more"
            : err[0] ? err
                     : "no NCCL in this build");
    return 1;
  }
  size_t maxp = lg_stages_max_payload(&cfg, &o);
  pid_t kids[LG_STAGES_MAX] = {0};
  double t_start = lg_now();
  fflush(stdout);
  fflush(stderr);
  for (int r = 1; r < n; r++) {
    kids[r] = fork();
    if (kids[r] == 0) {
      char name[32];
      snprintf(name, sizeof name, "cuda:%d", r);
      pargs ar = *a;
      ar.backend = name;
      lg_wan_dit *m = load(&ar, r);
      lg_transport *t = m ? lg_nccl_transport_new(id, r, n, r, maxp) : NULL;
      int krc = t ? lg_stages_rank_main(m, &o, t) : 1;
      lg_transport_free(&t);
      lg_stages_model_free(&m);
      _exit(krc ? 1 : 0);
    }
    if (kids[r] < 0) {
      fprintf(stderr, "livegen bench pipeline: cannot fork rank %d\n", r);
      n = r; /* wait for the ones started */
      break;
    }
  }
  pargs a0 = *a;
  a0.backend = "cuda:0";
  lg_wan_dit *m = load(&a0, 0);
  lg_transport *t = m ? lg_nccl_transport_new(id, 0, o.n, 0, maxp) : NULL;
  lg_stage *s0 = t ? lg_stage_new(m, &o, t, err, sizeof err) : NULL;
  rc = 1;
  if (s0 && n == o.n) {
    rc = stream_bench(a, n, s0, lg_wan_dit_backend(m), "nccl", n, lg_now() - t_start);
    if (lg_stage_stop(s0) < 0) rc = 1;
  } else {
    fprintf(stderr, "livegen bench pipeline: rank 0 could not start: %s\n", err);
    for (int r = 1; r < n; r++) /* they would wait for rank 0 in NCCL's init */
      if (kids[r] > 0) kill(kids[r], SIGTERM);
  }
  lg_stage_free(&s0);
  lg_transport_free(&t);
  lg_stages_model_free(&m);
  for (int r = 1; r < n; r++) {
    int st = 0;
    if (kids[r] > 0 && (waitpid(kids[r], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))) rc = 1;
  }
  return rc;
}

int lg_bench_pipeline(int argc, char **argv) {
  pargs a = {.preset = "tiny",
             .backend = "cpu",
             .transport = "inproc",
             .px_w = 256,
             .px_h = 256,
             .steps = 2,
             .kvf = 6,
             .sinks = 3,
             .chunks = 24,
             .balance = 0,
             .threads = 0,
             .ngpus = 3,
             .gpus = {1, 2, 4},
             .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "livegen bench pipeline: %s needs a value\n", k);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    char *end = NULL;
    if (!strcmp(k, "--preset")) {
      a.preset = v;
    } else if (!strcmp(k, "--backend")) {
      a.backend = v;
    } else if (!strcmp(k, "--transport")) {
      a.transport = v;
    } else if (!strcmp(k, "--res")) {
      if (sscanf(v, "%dx%d", &a.px_w, &a.px_h) != 2) a.px_w = 0;
    } else if (!strcmp(k, "--gpus")) {
      a.ngpus = 0;
      const char *q = v;
      while (*q && a.ngpus < 4) {
        long g = strtol(q, &end, 10);
        if (end == q || g < 1 || g > LG_STAGES_MAX) {
          a.ngpus = 0;
          break;
        }
        a.gpus[a.ngpus++] = (int)g;
        q = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
          a.ngpus = 0;
          break;
        }
      }
      if (*q) a.ngpus = 0;
    } else if (!strcmp(k, "--steps")) {
      a.steps = (int)strtol(v, &end, 10);
    } else if (!strcmp(k, "--chunks")) {
      a.chunks = (int)strtol(v, &end, 10);
    } else if (!strcmp(k, "--kv-frames")) {
      a.kvf = (int)strtol(v, &end, 10);
    } else if (!strcmp(k, "--balance")) {
      a.balance = (int)strtol(v, &end, 10);
    } else if (!strcmp(k, "--threads")) {
      a.threads = (int)strtol(v, &end, 10);
    } else if (!strcmp(k, "--seed")) {
      a.seed = strtoull(v, &end, 10);
    } else {
      fprintf(stderr, "livegen bench pipeline: unknown option %s\n", k);
      usage(stderr);
      return 2;
    }
  }
  if (a.px_w < 16 || a.px_h < 16 || a.px_w % 16 || a.px_h % 16 || a.px_w > 4096 || a.px_h > 4096 ||
      a.steps < 1 || a.steps > LG_MAX_STEPS || a.chunks < 2 || a.chunks > 100000 || a.kvf < 3 ||
      a.kvf > LG_KV_MAX_FRAMES || a.ngpus < 1 || a.balance < 0 ||
      (strcmp(a.transport, "inproc") && strcmp(a.transport, "nccl"))) {
    fprintf(stderr,
            "livegen bench pipeline: bad arguments (res WxH multiples of 16, steps 1..%d, "
            "--gpus like 1,2,4 with 1..%d each, kv-frames 3..%d, transport inproc|nccl)\n",
            LG_MAX_STEPS, LG_STAGES_MAX, LG_KV_MAX_FRAMES);
    return 2;
  }
  a.sinks = a.kvf / 2 < 3 ? a.kvf / 2 : 3;
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(a.path, sizeof a.path, "%s/lg_bench_pipeline_%s_%d.safetensors", dir, a.preset,
           (int)getpid());
  int rc = lg_bench_write_random_ckpt("wan-dit", a.preset, a.path, a.seed, LG_BF16);
  if (rc < 0) {
    fprintf(stderr, "livegen bench pipeline: cannot write random weights to %s\n", a.path);
    return 1;
  }
  int fails = 0;
  bool nccl = !strcmp(a.transport, "nccl");
  for (int i = 0; i < a.ngpus; i++)
    fails += nccl ? bench_nccl(&a, a.gpus[i]) : bench_n(&a, a.gpus[i]);
  unlink(a.path);
  return fails ? 1 : 0;
}
