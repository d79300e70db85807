/* bench_engine.c: `livegen bench engine`: the whole per-chunk path as the service runs it
 * (RGB frames in -> VAE encode -> motion-aware noise -> stream-batch DiT -> decode -> RGB
 * out), on any config, timed per lg_engine_push from the host (each push ends with the
 * decoded frames downloaded, so the wall time is the real chunk time). Prints one JSON line.
 * Main thread (it is the engine's worker thread). */
#include "cli.h"
#include "config.h"
#include "engine.h"
#include "lg_backend.h"
#include "testsrc.h"

#ifdef LG_HAVE_CUDA
#include "lg_cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(const double *sorted, int n, double p) {
  int i = (int)(p * (n - 1) + 0.5);
  return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

int lg_bench_engine(int argc, char **argv) {
  lg_config cfg;
  char err[1024];
  int chunks = 40, warmup = 6;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: livegen bench engine [--config FILE] [--set k=v]... [--chunks N (40)] "
             "[--warmup N (6)]\n  times lg_engine_push per chunk on the test pattern and "
             "prints JSON: ms per chunk, FPS, time to first frame, stage split, memory\n");
      return 0;
    }
  if (lg_config_from_args(&cfg, &argc, argv, err, sizeof err)) {
    fprintf(stderr, "livegen bench engine: %s\n", err);
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--chunks") && i + 1 < argc)
      chunks = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
      warmup = atoi(argv[++i]);
    else {
      fprintf(stderr, "livegen bench engine: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (chunks < 1 || chunks > 100000 || warmup < 0 || warmup >= chunks) {
    fprintf(stderr, "livegen bench engine: need 0 <= --warmup < --chunks\n");
    return 2;
  }
  int rc = 1;
  uint8_t *frames = NULL, *outs = NULL;
  double *ms = NULL, *ms_dit = NULL, *ms_enc = NULL, *ms_dec = NULL;
  double t_begin = lg_now();
  lg_engine *e = lg_engine_new(&cfg, err, sizeof err);
  if (!e) {
    fprintf(stderr, "livegen bench engine: %s\n", err);
    return 1;
  }
  double load_s = lg_now() - t_begin;
  int W, H;
  lg_engine_frame_size(e, &W, &H);
  size_t px = (size_t)W * H * 3;
  const int max_frames = 16; /* t2v blocks emit up to 12 frames */
  frames = malloc(px * 5);
  outs = malloc(px * max_frames);
  ms = calloc((size_t)chunks, sizeof *ms);
  ms_dit = calloc((size_t)chunks, sizeof *ms_dit);
  ms_enc = calloc((size_t)chunks, sizeof *ms_enc);
  ms_dec = calloc((size_t)chunks, sizeof *ms_dec);
  lg_testsrc src;
  if (!frames || !outs || !ms || !ms_dit || !ms_enc || !ms_dec ||
      lg_testsrc_init(&src, "ball", W, H)) {
    fprintf(stderr, "livegen bench engine: out of memory\n");
    goto done;
  }
  const uint8_t *in[5];
  uint8_t *out[16];
  for (int f = 0; f < 5; f++)
    in[f] = frames + px * (size_t)f;
  for (int f = 0; f < max_frames; f++)
    out[f] = outs + px * (size_t)f;
  bool t2v = !strcmp(cfg.engine.mode, "t2v");
  double t_first_push = lg_now(), ttff = -1;
  long frames_out = 0;
  for (int c = 0; c < chunks; c++) {
    int need = lg_engine_frames_needed(e);
    for (int f = 0; f < need; f++)
      lg_testsrc_next(&src, frames + px * (size_t)f);
    double t0 = lg_now();
    int n = lg_engine_push(e, t2v ? NULL : in, t2v ? 0 : need, out, max_frames);
    double t1 = lg_now();
    if (n < 0) {
      fprintf(stderr, "livegen bench engine: push %d failed: %s\n", c, lg_strerror(n));
      goto done;
    }
    if (n > 0 && ttff < 0) ttff = t1 - t_first_push;
    frames_out += n;
    lg_engine_stats st;
    lg_engine_get_stats(e, &st);
    ms[c] = (t1 - t0) * 1e3;
    ms_enc[c] = st.ms_encode;
    ms_dit[c] = st.ms_dit;
    ms_dec[c] = st.ms_decode;
  }
  int n = chunks - warmup;
  qsort(ms + warmup, (size_t)n, sizeof *ms, cmp_double);
  qsort(ms_enc + warmup, (size_t)n, sizeof *ms, cmp_double);
  qsort(ms_dit + warmup, (size_t)n, sizeof *ms, cmp_double);
  qsort(ms_dec + warmup, (size_t)n, sizeof *ms, cmp_double);
  double med = pct(ms + warmup, n, 0.5);
  int per_chunk = t2v ? 12 : 4;
  lg_engine_stats st;
  lg_engine_get_stats(e, &st);
  printf("{\"bench\":\"engine\",\"device\":\"%s\",\"backend\":\"%s\",\"mode\":\"%s\",\"res\":\"%dx%"
         "d\","
         "\"steps\":%d,\"decoder\":\"%s\",\"dit\":\"%s\",\"chunks\":%d,\"warmup\":%d,"
         "\"frames_per_chunk\":%d,\"ms_chunk_median\":%.3f,\"ms_chunk_p10\":%.3f,"
         "\"ms_chunk_p90\":%.3f,\"fps\":%.2f,\"ttff_s\":%.3f,\"load_s\":%.2f,"
         "\"split_ms_host\":{\"encode\":%.3f,\"dit\":%.3f,\"decode\":%.3f},\"frames_out\":%ld",
         st.device, cfg.engine.backend, cfg.engine.mode, W, H, cfg.engine.steps, cfg.model.decoder,
         cfg.model.dit, chunks, warmup, per_chunk, med, pct(ms + warmup, n, 0.1),
         pct(ms + warmup, n, 0.9), per_chunk * 1e3 / med, ttff, load_s,
         pct(ms_enc + warmup, n, 0.5), pct(ms_dit + warmup, n, 0.5), pct(ms_dec + warmup, n, 0.5),
         frames_out);
#ifdef LG_HAVE_CUDA
  size_t peak = 0, now = 0;
  lg_backend *be = lg_engine_backend(e);
  if (be && lg_backend_is_cuda(be) && lg_cuda_mem_stats(be, &peak, &now) == 0)
    printf(",\"peak_mem_gib\":%.3f", (double)peak / 1073741824.0);
#endif
  printf("}\n");
  rc = 0;
done:
  lg_engine_free(&e);
  free(frames);
  free(outs);
  free(ms);
  free(ms_dit);
  free(ms_enc);
  free(ms_dec);
  return rc;
}
