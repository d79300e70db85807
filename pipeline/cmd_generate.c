/* cmd_generate.c: `livegen generate`: runs the whole engine loop offline (v2v on a built-in
 * test pattern, or t2v with no input) and writes the output frames as YUV4MPEG2 (4:2:0,
 * BT.601 limited range). mp4 output comes later through streaming/. Main thread. */
#include "cli.h"
#include "config.h"
#include "engine.h"
#include "lg_base.h"
#include "testsrc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_SLOTS 16

static void usage(FILE *f) {
  fprintf(f, "usage: livegen generate [--config FILE] [--set section.key=value ...]\n"
             "                        [--input test:ball|test:bars|none] --frames N --out "
             "OUT.y4m\n"
             "                        [--gpus 0,1,...]\n"
             "  Runs the engine offline: v2v re-renders a built-in test pattern, t2v\n"
             "  (engine.mode=t2v, --input none) generates from the prompt. Writes N frames as\n"
             "  YUV4MPEG2 4:2:0 at engine.fps. --gpus (engine.gpus) pipelines the DiT over\n"
             "  those GPUs, one process each (NCCL); engine.stages=N over N threads on one\n"
             "  device (docs/MULTIGPU.md).\n");
}

static uint8_t clamp8(double v) {
  return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrint(v);
}

/* RGB24 -> planar 4:2:0 (BT.601 limited range; chroma = mean of the 2x2 block). */
static void rgb_to_i420(const uint8_t *rgb, int W, int H, uint8_t *y, uint8_t *u, uint8_t *v) {
  for (int j = 0; j < H; j++)
    for (int i = 0; i < W; i++) {
      const uint8_t *p = rgb + ((size_t)j * W + i) * 3;
      y[(size_t)j * W + i] = clamp8(16 + 0.257 * p[0] + 0.504 * p[1] + 0.098 * p[2]);
    }
  for (int j = 0; j < H / 2; j++)
    for (int i = 0; i < W / 2; i++) {
      double r = 0, g = 0, b = 0;
      for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
          const uint8_t *p = rgb + ((size_t)(2 * j + dy) * W + 2 * i + dx) * 3;
          r += p[0];
          g += p[1];
          b += p[2];
        }
      r /= 4;
      g /= 4;
      b /= 4;
      u[(size_t)j * (W / 2) + i] = clamp8(128 - 0.148 * r - 0.291 * g + 0.439 * b);
      v[(size_t)j * (W / 2) + i] = clamp8(128 + 0.439 * r - 0.368 * g - 0.071 * b);
    }
}

int lg_cmd_generate(int argc, char **argv) {
  lg_config cfg;
  char err[1024] = "";
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  if (lg_config_from_args(&cfg, &argc, argv, err, sizeof err)) {
    fprintf(stderr, "livegen generate: %s\n", err);
    return 2;
  }
  const char *input = cfg.input, *out_path = NULL;
  long frames = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "livegen generate: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (!strcmp(a, "--input"))
      input = argv[++i];
    else if (!strcmp(a, "--out"))
      out_path = argv[++i];
    else if (!strcmp(a, "--frames")) {
      char *end = NULL;
      frames = strtol(argv[++i], &end, 10);
      if (*end || frames < 1 || frames > 1000000) {
        fprintf(stderr, "livegen generate: --frames must be 1..1000000\n");
        return 2;
      }
    } else {
      fprintf(stderr, "livegen generate: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!out_path || frames < 1) {
    fprintf(stderr, "livegen generate: --frames and --out are required\n");
    usage(stderr);
    return 2;
  }
  bool t2v = !strcmp(cfg.engine.mode, "t2v");
  if (!t2v && strncmp(input, "test:", 5)) {
    fprintf(stderr,
            "livegen generate: input '%s' needs GStreamer ingest (not in this command yet); use "
            "test:ball or test:bars, or engine.mode=t2v with --input none\n",
            input);
    return 2;
  }
  lg_testsrc src;
  if (!t2v && lg_testsrc_init(&src, input, cfg.engine.width, cfg.engine.height)) {
    fprintf(stderr, "livegen generate: unknown test pattern '%s' (test:ball, test:bars)\n", input);
    return 2;
  }
  lg_engine *e = lg_engine_new(&cfg, err, sizeof err);
  if (!e) {
    fprintf(stderr, "livegen generate: %s\n", err);
    return 1;
  }
  int W, H, rc = 1;
  lg_engine_frame_size(e, &W, &H);
  size_t px = (size_t)W * H * 3;
  uint8_t *inbuf = malloc(5 * px), *outbuf = malloc(OUT_SLOTS * px);
  uint8_t *yuv = malloc((size_t)W * H * 3 / 2);
  FILE *f = fopen(out_path, "wb");
  if (!inbuf || !outbuf || !yuv || !f) {
    fprintf(stderr, "livegen generate: cannot open %s or allocate frames\n", out_path);
    goto done;
  }
  int fps_n = (int)lrint(cfg.engine.fps * 1000.0);
  fprintf(f, "YUV4MPEG2 W%d H%d F%d:1000 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n", W, H, fps_n);
  const uint8_t *in[5];
  uint8_t *out[OUT_SLOTS];
  for (int i = 0; i < 5; i++)
    in[i] = inbuf + (size_t)i * px;
  for (int i = 0; i < OUT_SLOTS; i++)
    out[i] = outbuf + (size_t)i * px;
  long written = 0, empty = 0;
  double t0 = lg_now();
  while (written < frames) {
    int need = lg_engine_frames_needed(e);
    for (int i = 0; i < need; i++)
      lg_testsrc_next(&src, (uint8_t *)in[i]);
    int n = lg_engine_push(e, need ? in : NULL, need, out, OUT_SLOTS);
    if (n < 0) {
      fprintf(stderr, "livegen generate: engine failed: %s\n", lg_strerror(n));
      goto done;
    }
    /* outputs lag by up to steps chunks, more with pipelined stages (docs/MULTIGPU.md) */
    if (n == 0 && ++empty > LG_MAX_STEPS * LG_MAX_GPUS + 2) {
      fprintf(stderr, "livegen generate: the engine produces no frames\n");
      goto done;
    }
    for (int k = 0; k < n && written < frames; k++, written++) {
      rgb_to_i420(out[k], W, H, yuv, yuv + (size_t)W * H, yuv + (size_t)W * H * 5 / 4);
      if (fputs("FRAME\n", f) < 0 ||
          fwrite(yuv, 1, (size_t)W * H * 3 / 2, f) != (size_t)W * H * 3 / 2) {
        fprintf(stderr, "livegen generate: writing %s failed\n", out_path);
        goto done;
      }
    }
  }
  lg_engine_stats st;
  lg_engine_get_stats(e, &st);
  printf("generate: %ld frames %dx%d (%s, %s) -> %s in %.1f s; %llu chunks, first frame after "
         "%.2f s, last chunk dit %.1f ms, peak %.1f MB\n",
         written, W, H, cfg.engine.mode, st.device, out_path, lg_now() - t0,
         (unsigned long long)st.chunks, st.ttff_s, st.ms_dit, st.mem_peak_bytes / 1048576.0);
  rc = 0;
done:
  if (f && fclose(f) && rc == 0) {
    fprintf(stderr, "livegen generate: closing %s failed\n", out_path);
    rc = 1;
  }
  free(inbuf);
  free(outbuf);
  free(yuv);
  lg_engine_free(&e);
  return rc;
}
