/* nvenc_test.c: lg_nvenc_test, livegen's encoder (streaming/encoder.c) on h264_nvenc with CUDA
 * frames, on the GPU machine. Built by tests/gpu/nvenc/build against a static FFmpeg, run by
 * tests/gpu/nvenc/run. On the CUDA backend's own context and stream it:
 *  1. checks the RGB -> NV12 kernel bit for bit against the CPU reference (lg_rgb_to_nv12_ref)
 *     for U8 frames and for BF16 engine pixels (through pixels_to_u8 on the CPU), with padded
 *     pitches;
 *  2. encodes N frames (default 60 at 832x480) that live on the device through lg_encoder with
 *     CUDA frames (the kernel writes each NV12 frame of FFmpeg's pool, nvenc reads it there),
 *     asking for one keyframe on the way;
 *  3. decodes the bitstream with FFmpeg's software h264 decoder and checks the frame count, the
 *     size, the keyframes (every keyint frames and the one asked for), the BT.709 tags, and
 *     the PSNR of Y, Cb and Cr against the reference NV12 of the source;
 *  4. times the encode call per frame, and the same with host frames (h264_nvenc fed RGB from
 *     the host) for comparison.
 * Prints one line per check and a summary; writes out.h264 and summary.txt to --out DIR.
 * Exit 0 when every check passes, 1 when one fails, 2 when there is no CUDA GPU, 3 when the
 * GPU has no NVENC engine (the driver says "unsupported device": H100, H200); the kernel
 * checks still run then.
 * Main thread only. */
#include "encoder.h"
#include "lg_backend.h"
#include "lg_base.h"
#include "lg_cuda.h"
#include "lg_cuda_nv12.h"
#include "lg_nv12.h"

#include <libavcodec/avcodec.h>
#include <libavutil/pixdesc.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct args {
  int frames, width, height, keyint, kbps, key_at;
  double min_psnr;
  const char *out;
} args;

typedef struct stream {
  uint8_t *data; /* Annex B access units back to back */
  size_t size, cap;
  size_t *off, *len; /* per access unit */
  bool *key;
  int n, cap_n;
  int got_this_call; /* packets delivered during the current encode call */
} stream;

static int on_packet(void *user, const uint8_t *data, size_t size, int64_t pts_us, bool key) {
  (void)pts_us;
  stream *s = user;
  if (s->size + size > s->cap) {
    size_t nc = (s->size + size) * 2;
    uint8_t *nd = realloc(s->data, nc);
    if (!nd) return LG_ENOMEM;
    s->data = nd;
    s->cap = nc;
  }
  if (s->n == s->cap_n) {
    int nc = s->cap_n ? 2 * s->cap_n : 64;
    size_t *no = realloc(s->off, sizeof *no * (size_t)nc), *nl = NULL;
    if (no) s->off = no;
    nl = no ? realloc(s->len, sizeof *nl * (size_t)nc) : NULL;
    if (nl) s->len = nl;
    bool *nk = nl ? realloc(s->key, sizeof *nk * (size_t)nc) : NULL;
    if (!nk) return LG_ENOMEM;
    s->key = nk;
    s->cap_n = nc;
  }
  memcpy(s->data + s->size, data, size);
  s->off[s->n] = s->size;
  s->len[s->n] = size;
  s->key[s->n] = key;
  s->n++;
  s->size += size;
  s->got_this_call++;
  return 0;
}

static void stream_free(stream *s) {
  free(s->data);
  free(s->off);
  free(s->len);
  free(s->key);
  memset(s, 0, sizeof *s);
}

/* Frame i (w*h*3 RGB): smooth gradients drifting with i, a sine pattern and a moving white box
 * (motion and edges for the encoder; exact content known for the PSNR). */
static void make_frame(uint8_t *rgb, int w, int h, int i) {
  int bx = (i * 9) % (w - 96), by = h / 3 + (int)(40 * sin(i * 0.2));
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *p = rgb + ((size_t)y * w + x) * 3;
      p[0] = (uint8_t)((x * 255 / w + 3 * i) & 255);
      p[1] = (uint8_t)(y * 255 / h);
      p[2] = (uint8_t)(128 + 90 * sin((x + 2 * y) / 37.0 + i / 7.0));
      if (x >= bx && x < bx + 96 && y >= by && y < by + 64) p[0] = p[1] = p[2] = 235;
    }
}

static int fails;
static bool no_nvenc; /* the GPU has no NVENC engine (exit 3) */
static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!ok) fails++;
}

/* The kernel against the reference: U8 input, and BF16 engine pixels (the reference gets the
 * bytes the CPU backend's pixels_to_u8 makes of the same BF16 values). */
static int check_kernel(lg_backend *be, const args *a) {
  int W = a->width, H = a->height, P = W + 64; /* pitch with padding */
  size_t fsz = (size_t)W * H * 3;
  int64_t s3[3] = {H, W, 3}, sp[2] = {H + H / 2, P};
  lg_backend *cpu = lg_backend_new_cpu(1);
  lg_tensor u8 = {0}, bf = {0}, nv = {0}, cbf = {0}, cu8 = {0};
  uint8_t *rgb = malloc(fsz), *rgb2 = malloc(fsz), *got = malloc((size_t)P * (H + H / 2)),
          *want = malloc((size_t)P * (H + H / 2));
  uint16_t *bfh = malloc(fsz * 2);
  int err = LG_ENOMEM;
  if (!cpu || !rgb || !rgb2 || !got || !want || !bfh) goto done;
  if ((err = lg_tensor_alloc(be, &u8, LG_U8, 3, s3)) ||
      (err = lg_tensor_alloc(be, &bf, LG_BF16, 3, s3)) ||
      (err = lg_tensor_alloc(be, &nv, LG_U8, 2, sp)) ||
      (err = lg_tensor_alloc(cpu, &cbf, LG_BF16, 3, s3)) ||
      (err = lg_tensor_alloc(cpu, &cu8, LG_U8, 3, s3)))
    goto done;
  make_frame(rgb, W, H, 7);
  uint8_t *ny = nv.data, *nuv = ny + (size_t)P * H;
  for (int pass = 0; pass < 2; pass++) {
    const char *what = pass ? "BF16 engine pixels" : "U8 frame";
    if ((err = lg_tensor_upload(&u8, rgb))) goto done;
    lg_tensor *src = &u8;
    const uint8_t *ref_rgb = rgb;
    if (pass) {
      /* [-1,1] BF16 as the engine's decoder output; the reference takes the bytes the CPU
       * backend's pixels_to_u8 makes of the same BF16 values */
      if ((err = lg_backend_pixels_from_u8(be, &bf, &u8)) || (err = lg_tensor_download(&bf, bfh)) ||
          (err = lg_tensor_upload(&cbf, bfh)) || (err = lg_backend_pixels_to_u8(cpu, &cu8, &cbf)))
        goto done;
      memcpy(rgb2, cu8.data, fsz);
      src = &bf;
      ref_rgb = rgb2;
    }
    if ((err = LG_OP(be, memset0, nv.data, lg_tensor_nbytes(&nv))) ||
        (err = lg_cuda_rgb_to_nv12(be, src, ny, (size_t)P, nuv, (size_t)P)) ||
        (err = lg_tensor_download(&nv, got)))
      goto done;
    memset(want, 0, (size_t)P * (H + H / 2));
    if ((err = lg_rgb_to_nv12_ref(ref_rgb, (size_t)W * 3, W, H, want, (size_t)P,
                                  want + (size_t)P * H, (size_t)P)))
      goto done;
    size_t diff = 0, n = (size_t)P * (H + H / 2);
    for (size_t i = 0; i < n; i++)
      diff += got[i] != want[i];
    check(diff == 0,
          "kernel: RGB->NV12 of a %dx%d %s, pitch %d: %zu of %zu bytes differ from the "
          "CPU reference",
          W, H, what, P, diff, n);
  }
  /* time of the kernel alone, per frame, on the backend's stream (events) */
  for (int pass = 0; pass < 2; pass++) {
    enum { REPS = 200 };
    lg_tensor *src = pass ? &bf : &u8;
    float ms = 0;
    if ((err = lg_cuda_rgb_to_nv12(be, src, ny, (size_t)P, nuv, (size_t)P)) ||
        (err = lg_cuda_mark(be, 0)))
      goto done;
    for (int r = 0; r < REPS && !err; r++)
      err = lg_cuda_rgb_to_nv12(be, src, ny, (size_t)P, nuv, (size_t)P);
    if (err || (err = lg_cuda_mark(be, 1)) || (err = lg_cuda_elapsed_ms(be, 0, 1, &ms))) goto done;
    printf("time kernel RGB->NV12 %dx%d from %s: %.2f us per frame (%d runs)\n", W, H,
           pass ? "BF16" : "U8", ms * 1e3 / REPS, REPS);
  }
  err = 0;
done:
  if (err) check(false, "kernel check could not run: %s", lg_strerror(err));
  lg_tensor_free(&u8);
  lg_tensor_free(&bf);
  lg_tensor_free(&nv);
  lg_tensor_free(&cbf);
  lg_tensor_free(&cu8);
  lg_backend_free(&cpu);
  free(rgb);
  free(rgb2);
  free(got);
  free(want);
  free(bfh);
  return err;
}

static double psnr(double sse, double n) {
  return sse <= 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 * n / sse);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Encodes a->frames frames; device: through CUDA frames from `dev` (U8 [H,W,3]), else host RGB.
 * Fills s and the per-frame call times (ms). */
static int encode_run(lg_backend *be, const args *a, bool device, stream *s, double *ms, char *name,
                      size_t namen) {
  int W = a->width, H = a->height;
  size_t fsz = (size_t)W * H * 3;
  lg_encoder_opts o;
  memset(&o, 0, sizeof o);
  snprintf(o.codec, sizeof o.codec, "h264_nvenc");
  o.width = W;
  o.height = H;
  o.fps_num = 30;
  o.fps_den = 1;
  o.bitrate_kbps = a->kbps;
  o.keyint = a->keyint;
  int err = 0;
  if (device) {
    if ((err = lg_cuda_native_handles(be, &o.cuda.context, &o.cuda.stream))) return err;
    o.cuda.write_nv12 = lg_cuda_nv12_write;
    o.cuda.user = be;
  }
  char msg[256] = "";
  lg_encoder *e = lg_encoder_new(&o, msg, sizeof msg);
  if (!e) {
    if (strstr(msg, "no NVENC encoder")) {
      /* the driver answered that this GPU cannot encode: nothing to test here */
      printf("NONE %s frames: %s\n", device ? "CUDA" : "host", msg);
      no_nvenc = true;
    } else {
      check(false, "encoder (%s frames): %s", device ? "CUDA" : "host", msg);
    }
    return LG_ENOTSUP;
  }
  snprintf(name, namen, "%s with %s frames", lg_encoder_name(e),
           lg_encoder_device_frames(e) ? "CUDA" : "host");
  if (device) check(lg_encoder_device_frames(e), "encoder takes CUDA frames (%s)", name);
  int64_t s3[3] = {H, W, 3};
  lg_tensor dev = {0};
  uint8_t *rgb = malloc(fsz);
  if (!rgb || (err = lg_tensor_alloc(be, &dev, LG_U8, 3, s3))) {
    err = err ? err : LG_ENOMEM;
    goto done;
  }
  for (int i = 0; i < a->frames && !err; i++) {
    make_frame(rgb, W, H, i);
    if (device && (err = lg_tensor_upload(&dev, rgb))) break; /* synchronous: not timed */
    if (i == a->key_at) lg_encoder_request_keyframe(e);
    s->got_this_call = 0;
    double t0 = lg_now();
    err = device ? lg_encoder_encode_device(e, &dev, i * 33333, on_packet, s)
                 : lg_encoder_encode(e, rgb, (size_t)W * 3, i * 33333, on_packet, s);
    ms[i] = (lg_now() - t0) * 1e3;
  }
  if (!err) err = lg_encoder_encode(e, NULL, 0, 0, on_packet, s);
done:
  if (err) check(false, "encoding (%s): %s", name, lg_strerror(err));
  lg_tensor_free(&dev);
  free(rgb);
  lg_encoder_free(&e);
  return err;
}

static void time_summary(const char *name, const double *ms, int n, FILE *sum) {
  double *v = malloc(sizeof *v * (size_t)n), mean = 0;
  if (!v || n < 2) {
    free(v);
    return;
  }
  /* frame 0 opens the session's buffers: reported apart */
  for (int i = 1; i < n; i++)
    v[i - 1] = ms[i], mean += ms[i];
  mean /= n - 1;
  qsort(v, (size_t)n - 1, sizeof *v, cmp_double);
  char line[256];
  snprintf(line, sizeof line,
           "encode call per frame, %s: mean %.3f ms, median %.3f, p90 %.3f, max %.3f (frames "
           "1..%d; frame 0 %.3f ms)",
           name, mean, v[(n - 1) / 2], v[(int)((n - 1) * 0.9)], v[n - 2], n - 1, ms[0]);
  printf("time %s\n", line);
  if (sum) fprintf(sum, "%s\n", line);
  free(v);
}

/* Decodes s with the software h264 decoder and checks it against the source frames. */
static void check_decode(const args *a, const stream *s, FILE *sum) {
  int W = a->width, H = a->height;
  const AVCodec *dc = avcodec_find_decoder(AV_CODEC_ID_H264);
  AVCodecContext *d = dc ? avcodec_alloc_context3(dc) : NULL;
  AVPacket *pkt = av_packet_alloc();
  AVFrame *f = av_frame_alloc();
  uint8_t *rgb = malloc((size_t)W * H * 3), *ny = malloc((size_t)W * H),
          *nuv = malloc((size_t)W * H / 2);
  if (!d || !pkt || !f || !rgb || !ny || !nuv) {
    check(false, "decoder: h264 decoder missing or out of memory");
    goto done;
  }
  d->thread_count = 1;
  if (avcodec_open2(d, dc, NULL) < 0) {
    check(false, "decoder: cannot open h264");
    goto done;
  }
  int decoded = 0, bad_size = 0, bad_tags = 0, dec_errors = 0;
  double sse[3] = {0}, min_y = 99, min_c = 99;
  int keys_want = 0, keys_ok = 0, keys_extra = 0;
  for (int i = 0; i <= s->n; i++) {
    int rc;
    if (i < s->n) {
      if (av_new_packet(pkt, (int)s->len[i]) < 0) break;
      memcpy(pkt->data, s->data + s->off[i], s->len[i]);
      rc = avcodec_send_packet(d, pkt);
      av_packet_unref(pkt);
    } else {
      rc = avcodec_send_packet(d, NULL);
    }
    if (rc < 0 && rc != AVERROR_EOF) dec_errors++;
    while (avcodec_receive_frame(d, f) == 0) {
      int k = decoded++;
      if (f->width != W || f->height != H || f->format != AV_PIX_FMT_YUV420P) {
        bad_size++;
        av_frame_unref(f);
        continue;
      }
      if (f->colorspace != AVCOL_SPC_BT709 || f->color_range != AVCOL_RANGE_MPEG) bad_tags++;
      make_frame(rgb, W, H, k);
      lg_rgb_to_nv12_ref(rgb, (size_t)W * 3, W, H, ny, (size_t)W, nuv, (size_t)W);
      double fs[3] = {0};
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          double e = (double)f->data[0][y * f->linesize[0] + x] - ny[y * W + x];
          fs[0] += e * e;
        }
      for (int y = 0; y < H / 2; y++)
        for (int x = 0; x < W / 2; x++) {
          double eu = (double)f->data[1][y * f->linesize[1] + x] - nuv[y * W + 2 * x];
          double ev = (double)f->data[2][y * f->linesize[2] + x] - nuv[y * W + 2 * x + 1];
          fs[1] += eu * eu;
          fs[2] += ev * ev;
        }
      double py = psnr(fs[0], (double)W * H), pc = psnr(fs[1] + fs[2], (double)W * H / 2);
      min_y = py < min_y ? py : min_y;
      min_c = pc < min_c ? pc : min_c;
      for (int c = 0; c < 3; c++)
        sse[c] += fs[c];
      av_frame_unref(f);
    }
  }
  for (int i = 0; i < s->n; i++) {
    bool want = i % a->keyint == 0 || i == a->key_at;
    keys_want += want;
    keys_ok += want && s->key[i];
    keys_extra += !want && s->key[i];
  }
  double n = (double)decoded;
  double py = psnr(sse[0], n * W * H), pu = psnr(sse[1], n * W * H / 4),
         pv = psnr(sse[2], n * W * H / 4);
  check(s->n == a->frames, "packets: %d access units for %d frames", s->n, a->frames);
  check(decoded == a->frames && dec_errors == 0, "decode: %d frames decoded, %d decoder errors",
        decoded, dec_errors);
  check(bad_size == 0, "size: every frame %dx%d yuv420p (%d not)", W, H, bad_size);
  check(keys_ok == keys_want && keys_extra == 0,
        "keyframes: %d of %d where expected (every %d frames and the one asked for at %d), %d "
        "elsewhere",
        keys_ok, keys_want, a->keyint, a->key_at, keys_extra);
  check(bad_tags == 0, "colour: BT.709 limited range in the stream (%d frames not)", bad_tags);
  check(min_y > a->min_psnr && min_c > a->min_psnr,
        "PSNR vs source NV12: Y %.2f dB, Cb %.2f, Cr %.2f (mean over frames); worst frame Y %.2f, "
        "chroma %.2f (> %.0f)",
        py, pu, pv, min_y, min_c, a->min_psnr);
  if (sum)
    fprintf(sum,
            "decoded %d/%d frames %dx%d, keyframes %d/%d (+%d), PSNR Y %.2f Cb %.2f Cr %.2f dB, "
            "worst frame Y %.2f chroma %.2f, bitstream %zu bytes\n",
            decoded, a->frames, W, H, keys_ok, keys_want, keys_extra, py, pu, pv, min_y, min_c,
            s->size);
done:
  avcodec_free_context(&d);
  av_packet_free(&pkt);
  av_frame_free(&f);
  free(rgb);
  free(ny);
  free(nuv);
}

int main(int argc, char **argv) {
  args a = {.frames = 60,
            .width = 832,
            .height = 480,
            .keyint = 30,
            .kbps = 8000,
            .key_at = 45,
            .min_psnr = 30.0,
            .out = "."};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--frames"))
      a.frames = atoi(v);
    else if (!strcmp(k, "--width"))
      a.width = atoi(v);
    else if (!strcmp(k, "--height"))
      a.height = atoi(v);
    else if (!strcmp(k, "--keyint"))
      a.keyint = atoi(v);
    else if (!strcmp(k, "--kbps"))
      a.kbps = atoi(v);
    else if (!strcmp(k, "--key-at"))
      a.key_at = atoi(v);
    else if (!strcmp(k, "--out"))
      a.out = v;
    else {
      fprintf(stderr,
              "usage: %s [--frames 60] [--width 832] [--height 480] [--keyint 30] "
              "[--kbps 8000] [--key-at 45] [--out DIR]\n",
              argv[0]);
      return 2;
    }
  }
  if (a.frames < 2 || a.frames > 10000 || a.width < 96 || a.height < 96 || (a.width & 1) ||
      (a.height & 1) || a.keyint < 1 || a.kbps < 100) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  lg_backend *be = lg_backend_new_cuda(0);
  if (!be) {
    fprintf(stderr, "no CUDA backend (no GPU or driver)\n");
    return 2;
  }
  printf("device: %s; FFmpeg libavcodec %s\n", lg_cuda_device_name(be), av_version_info());
  char path[1024];
  snprintf(path, sizeof path, "%s/summary.txt", a.out);
  FILE *sum = fopen(path, "w");
  if (sum)
    fprintf(sum, "device %s, %d frames %dx%d, keyint %d, %d kbit/s\n", lg_cuda_device_name(be),
            a.frames, a.width, a.height, a.keyint, a.kbps);
  check_kernel(be, &a);

  double *ms = calloc((size_t)a.frames, sizeof *ms);
  stream s = {0};
  char name[64] = "";
  if (ms && !encode_run(be, &a, true, &s, ms, name, sizeof name)) {
    time_summary(name, ms, a.frames, sum);
    check_decode(&a, &s, sum);
    snprintf(path, sizeof path, "%s/out.h264", a.out);
    FILE *f = fopen(path, "wb");
    if (f) {
      fwrite(s.data, 1, s.size, f);
      fclose(f);
    }
  }
  stream_free(&s);
  /* the same frames through nvenc from the host (sws RGB->YUV420P, upload inside nvenc) */
  if (ms && !encode_run(be, &a, false, &s, ms, name, sizeof name)) {
    time_summary(name, ms, a.frames, sum);
    check(s.n == a.frames, "host frames: %d access units for %d frames", s.n, a.frames);
  }
  stream_free(&s);
  free(ms);
  const char *verdict = fails ? "FAIL" : no_nvenc ? "NO NVENC on this GPU" : "PASS";
  printf("%s: %d check(s) failed\n", verdict, fails);
  if (sum) {
    fprintf(sum, "%s: %d check(s) failed\n", verdict, fails);
    fclose(sum);
  }
  lg_backend_free(&be);
  return fails ? 1 : no_nvenc ? 3 : 0;
}
