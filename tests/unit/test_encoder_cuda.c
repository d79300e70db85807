/* test_encoder_cuda.c: the encoder's CUDA-frame path as far as a machine without an NVIDIA
 * GPU can see it (tests/gpu/nvenc runs it for real): given the engine's CUDA context it falls
 * back, in plain words, to host frames when no NV12 writer is given or the stream is scaled,
 * and without the NVIDIA driver "auto" ends at libx264 with frames that still encode and
 * decode while an explicit h264_nvenc fails with a reason; an encoder on host frames refuses
 * device frames and the writer is never called. Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../e2e/h264_check.h"
#include "encoder.h"
#include "lg_base.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 64
#define H 48

typedef struct sink {
  int packets, keys;
  size_t bytes;
  uint8_t *au[16];
  size_t au_n[16];
} sink;

static int on_packet(void *user, const uint8_t *data, size_t size, int64_t pts_us, bool key) {
  (void)pts_us;
  sink *s = user;
  if (s->packets < 16) {
    s->au[s->packets] = malloc(size);
    memcpy(s->au[s->packets], data, size);
    s->au_n[s->packets] = size;
  }
  s->packets++;
  s->keys += key;
  s->bytes += size;
  return 0;
}

static void sink_free(sink *s) {
  for (int i = 0; i < 16; i++)
    free(s->au[i]);
  memset(s, 0, sizeof *s);
}

static int writer_calls;
static int fake_writer(void *user, const void *src, uint8_t *y, size_t yp, uint8_t *uv,
                       size_t uvp) {
  (void)user, (void)src, (void)y, (void)yp, (void)uv, (void)uvp;
  writer_calls++;
  return 0;
}

static lg_encoder_opts opts(const char *codec) {
  lg_encoder_opts o = {0};
  snprintf(o.codec, sizeof o.codec, "%s", codec);
  o.width = W;
  o.height = H;
  o.fps_num = 16;
  o.fps_den = 1;
  o.bitrate_kbps = 500;
  o.keyint = 4;
  strcpy(o.preset, "ultrafast");
  o.threads = 1;
  /* a context that must never be used as one here (see each test) */
  o.cuda.context = (void *)0x1000;
  o.cuda.stream = (void *)0x2000;
  o.cuda.write_nv12 = fake_writer;
  return o;
}

/* Encodes 8 host frames and checks they come out as decodable H.264 of the right size. */
static void encode_host_frames(lg_encoder *e) {
  static uint8_t rgb[W * H * 3];
  sink s = {0};
  for (int i = 0; i < 8; i++) {
    memset(rgb, 40 + 20 * i, sizeof rgb);
    assert_int_equal(lg_encoder_encode(e, rgb, W * 3, i * 62500, on_packet, &s), 0);
  }
  assert_int_equal(lg_encoder_encode(e, NULL, 0, 0, on_packet, &s), 0);
  assert_int_equal(s.packets, 8);
  assert_int_equal(s.keys, 2); /* keyint 4 */
  h264_dec d;
  assert_int_equal(h264_dec_open(&d), 0);
  for (int i = 0; i < 8; i++)
    assert_int_equal(h264_dec_feed(&d, s.au[i], s.au_n[i]), 0);
  assert_int_equal(h264_dec_feed(&d, NULL, 0), 0);
  assert_int_equal(d.frames, 8);
  assert_int_equal(d.width, W);
  assert_int_equal(d.height, H);
  assert_int_equal(d.errors, 0);
  h264_dec_close(&d);
  /* a host-frame encoder refuses device frames and never calls the writer */
  assert_int_equal(lg_encoder_encode_device(e, rgb, 1000000, on_packet, &s), LG_EINVAL);
  sink_free(&s);
}

static bool nvidia_driver_present(void) {
  void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h) dlclose(h);
  return h != NULL;
}

/* No NV12 writer: the context is not used, frames are host frames. */
static void test_no_writer_host_frames(void **state) {
  (void)state;
  lg_encoder_opts o = opts("libx264");
  o.cuda.write_nv12 = NULL;
  writer_calls = 0;
  lg_encoder *e = lg_encoder_new(&o, NULL, 0);
  assert_non_null(e);
  assert_false(lg_encoder_device_frames(e));
  encode_host_frames(e);
  assert_int_equal(writer_calls, 0);
  lg_encoder_free(&e);
  assert_null(e);
}

/* A scaled stream (the input preview) never gets CUDA frames: the kernel does not scale. */
static void test_scaled_stream_host_frames(void **state) {
  (void)state;
  if (nvidia_driver_present()) skip(); /* here nvenc could open on the fake context */
  lg_encoder_opts o = opts("auto");
  o.out_width = W / 2;
  o.out_height = H / 2;
  writer_calls = 0;
  lg_encoder *e = lg_encoder_new(&o, NULL, 0);
  assert_non_null(e);
  assert_false(lg_encoder_device_frames(e));
  assert_string_equal(lg_encoder_name(e), "libx264");
  int w, h;
  lg_encoder_size(e, &w, &h);
  assert_int_equal(w, W / 2);
  assert_int_equal(h, H / 2);
  assert_int_equal(writer_calls, 0);
  lg_encoder_free(&e);
}

/* Without the NVIDIA driver: FFmpeg cannot load libcuda for the CUDA device context, nvenc
 * with host frames cannot load libnvidia-encode, so "auto" ends at libx264 (frames work),
 * and an explicit h264_nvenc fails with a reason. The fake context is never dereferenced:
 * FFmpeg needs the driver library before it touches it. */
static void test_no_driver_falls_back(void **state) {
  (void)state;
  if (nvidia_driver_present()) skip(); /* a machine with the driver: tests/gpu/nvenc */
  lg_encoder_opts o = opts("auto");
  writer_calls = 0;
  char err[256] = "";
  lg_encoder *e = lg_encoder_new(&o, err, sizeof err);
  assert_non_null(e);
  assert_string_equal(lg_encoder_name(e), "libx264");
  assert_false(lg_encoder_device_frames(e));
  encode_host_frames(e);
  assert_int_equal(writer_calls, 0);
  lg_encoder_free(&e);

  o = opts("h264_nvenc");
  err[0] = 0;
  e = lg_encoder_new(&o, err, sizeof err);
  assert_null(e);
  assert_true(strlen(err) > 0);
  assert_int_equal(writer_calls, 0);
}

int main(void) {
  lg_log_set_level(LG_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_writer_host_frames),
      cmocka_unit_test(test_scaled_stream_host_frames),
      cmocka_unit_test(test_no_driver_falls_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
