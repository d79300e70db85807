/* test_encoder.c: the H.264 encoder as a viewer experiences it: every frame comes out as one
 * Annex B access unit with increasing timestamps, keyframes every keyint frames and on
 * request, each keyframe decodable on its own (SPS+PPS repeated), the codec string comes from
 * the SPS, the decoded picture has the right size and brightness, downscaling works, and bad
 * options are refused. Uses libx264 (CPU). Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../e2e/h264_check.h"
#include "encoder.h"
#include "lg_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 64
#define H 48
#define N 30

typedef struct pkt {
  uint8_t *data;
  size_t size;
  int64_t pts;
  bool key;
} pkt;

typedef struct sink {
  pkt p[64];
  int n;
} sink;

static int on_packet(void *user, const uint8_t *data, size_t size, int64_t pts_us, bool key) {
  sink *s = user;
  if (s->n >= 64) return LG_ERANGE;
  pkt *p = &s->p[s->n++];
  p->data = malloc(size);
  memcpy(p->data, data, size);
  p->size = size;
  p->pts = pts_us;
  p->key = key;
  return 0;
}

static void sink_free(sink *s) {
  for (int i = 0; i < s->n; i++)
    free(s->p[i].data);
  s->n = 0;
}

/* Frame i: dark (value 30) for even i/5 blocks, bright (220) otherwise, with a moving bar. */
static void make_frame(uint8_t *rgb, int i) {
  uint8_t v = (i / 5) % 2 ? 220 : 30;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *p = rgb + (y * W + x) * 3;
      p[0] = p[1] = p[2] = v;
      if (x == (i * 2) % W) p[0] = 255;
    }
}

static lg_encoder_opts opts(void) {
  lg_encoder_opts o = {0};
  strcpy(o.codec, "libx264");
  o.width = W;
  o.height = H;
  o.fps_num = 16;
  o.fps_den = 1;
  o.bitrate_kbps = 500;
  o.keyint = 10;
  strcpy(o.preset, "ultrafast");
  o.threads = 1;
  return o;
}

typedef struct nal_types {
  int sps, pps, idr, slices;
} nal_types;

static void count_nal(void *user, const uint8_t *nal, size_t n) {
  (void)n;
  nal_types *t = user;
  int ty = nal[0] & 0x1f;
  t->sps += ty == 7;
  t->pps += ty == 8;
  t->idr += ty == 5;
  t->slices += ty == 1 || ty == 5;
}

static void test_encode_decode(void **state) {
  (void)state;
  lg_encoder_opts o = opts();
  char err[256];
  lg_encoder *e = lg_encoder_new(&o, err, sizeof err);
  assert_non_null(e);
  assert_string_equal(lg_encoder_name(e), "libx264");
  assert_string_equal(lg_encoder_codec_string(e), "");
  static sink s;
  uint8_t rgb[W * H * 3];
  for (int i = 0; i < N; i++) {
    make_frame(rgb, i);
    if (i == 13) lg_encoder_request_keyframe(e);
    /* pts repeats at i == 20: the encoder must still make it increase. */
    int64_t pts = (i == 20 ? 19 : i) * 62500;
    assert_int_equal(lg_encoder_encode(e, rgb, W * 3, pts, on_packet, &s), 0);
  }
  assert_int_equal(lg_encoder_encode(e, NULL, 0, 0, on_packet, &s), 0);
  assert_int_equal(s.n, N); /* one access unit per frame, nothing held back after flush */
  const char *cs = lg_encoder_codec_string(e);
  assert_int_equal(strlen(cs), 11);
  assert_memory_equal(cs, "avc1.42", 7); /* baseline profile */
  size_t hn;
  const uint8_t *hdr = lg_encoder_headers(e, &hn);
  assert_true(hn > 8);
  char cs2[16];
  assert_int_equal(lg_h264_codec_string(hdr, hn, cs2, sizeof cs2), 0);
  assert_string_equal(cs, cs2);

  h264_dec all;
  assert_int_equal(h264_dec_open(&all), 0);
  for (int i = 0; i < N; i++) {
    pkt *p = &s.p[i];
    if (i > 0) assert_true(p->pts > s.p[i - 1].pts);
    nal_types t = {0};
    assert_true(lg_h264_for_each_nal(p->data, p->size, count_nal, &t) >= 1);
    assert_int_equal(t.slices > 0, 1);
    /* keyint counts from the last IDR, so the forced one at 13 moves the next to 23 */
    bool want_key = i == 0 || i == 10 || i == 13 || i == 23;
    if (want_key != p->key) fail_msg("packet %d key=%d, expected %d", i, p->key, want_key);
    if (p->key) {
      assert_true(t.sps >= 1 && t.pps >= 1 && t.idr >= 1);
      /* Decodable alone by a decoder that joins here. */
      h264_dec one;
      assert_int_equal(h264_dec_open(&one), 0);
      assert_int_equal(h264_dec_feed(&one, p->data, p->size), 0);
      h264_dec_feed(&one, NULL, 0);
      assert_int_equal(one.frames, 1);
      assert_int_equal(one.errors, 0);
      h264_dec_close(&one);
    } else {
      assert_int_equal(t.idr, 0);
    }
    assert_int_equal(h264_dec_feed(&all, p->data, p->size), 0);
    if (all.frames > 0 && i == all.frames - 1) {
      /* bright blocks are 5..9, 15..19, 25..29; limited-range luma: 30 -> ~42, 220 -> ~205 */
      double y = all.last_mean_y;
      if ((i / 5) % 2)
        assert_true(y > 170);
      else
        assert_true(y < 80);
    }
  }
  h264_dec_feed(&all, NULL, 0);
  assert_int_equal(all.frames, N);
  assert_int_equal(all.errors, 0);
  assert_int_equal(all.width, W);
  assert_int_equal(all.height, H);
  h264_dec_close(&all);
  sink_free(&s);
  lg_encoder_free(&e);
  assert_null(e);
  lg_encoder_free(&e);
}

static void test_downscale_and_auto(void **state) {
  (void)state;
  lg_encoder_opts o = opts();
  strcpy(o.codec, "auto");
  o.out_width = 33; /* odd: rounded down to even */
  o.out_height = 24;
  lg_encoder *e = lg_encoder_new(&o, NULL, 0);
  assert_non_null(e);
  assert_true(!strcmp(lg_encoder_name(e), "libx264") || !strcmp(lg_encoder_name(e), "h264_nvenc"));
  int w, h;
  lg_encoder_size(e, &w, &h);
  assert_int_equal(w, 32);
  assert_int_equal(h, 24);
  static sink s;
  uint8_t rgb[W * H * 3];
  for (int i = 0; i < 5; i++) {
    make_frame(rgb, i);
    assert_int_equal(lg_encoder_encode(e, rgb, W * 3, i * 1000, on_packet, &s), 0);
  }
  lg_encoder_encode(e, NULL, 0, 0, on_packet, &s);
  h264_dec d;
  assert_int_equal(h264_dec_open(&d), 0);
  for (int i = 0; i < s.n; i++)
    h264_dec_feed(&d, s.p[i].data, s.p[i].size);
  h264_dec_feed(&d, NULL, 0);
  assert_int_equal(d.frames, 5);
  assert_int_equal(d.width, 32);
  assert_int_equal(d.height, 24);
  h264_dec_close(&d);
  sink_free(&s);
  lg_encoder_free(&e);
}

static void test_bad_options(void **state) {
  (void)state;
  char err[256];
  lg_encoder_opts o = opts();
  o.keyint = 0;
  assert_null(lg_encoder_new(&o, err, sizeof err));
  o = opts();
  o.width = 0;
  assert_null(lg_encoder_new(&o, err, sizeof err));
  o = opts();
  strcpy(o.codec, "mpeg1");
  assert_null(lg_encoder_new(&o, err, sizeof err));
  assert_non_null(strstr(err, "unknown codec"));
  o = opts();
  lg_encoder *e = lg_encoder_new(&o, err, sizeof err);
  uint8_t rgb[W * H * 3] = {0};
  assert_int_equal(lg_encoder_encode(e, rgb, W * 3 - 1, 0, NULL, NULL), LG_EINVAL);
  lg_encoder_free(&e);
}

static void test_nal_parser(void **state) {
  (void)state;
  /* 3- and 4-byte start codes, leading garbage, trailing zeros. */
  const uint8_t buf[] = {0xff, 0,    0,    0, 1, 0x67, 0x42, 0xC0, 0x1E, 0xAA, 0, 0,
                         1,    0x68, 0xCE, 0, 0, 0,    1,    0x65, 0x88, 0x84, 0, 0};
  nal_types t = {0};
  assert_int_equal(lg_h264_for_each_nal(buf, sizeof buf, count_nal, &t), 3);
  assert_int_equal(t.sps, 1);
  assert_int_equal(t.pps, 1);
  assert_int_equal(t.idr, 1);
  char cs[16];
  assert_int_equal(lg_h264_codec_string(buf, sizeof buf, cs, sizeof cs), 0);
  assert_string_equal(cs, "avc1.42C01E");
  assert_int_equal(lg_h264_codec_string(buf + 10, sizeof buf - 10, cs, sizeof cs), LG_ENOTFOUND);
  assert_int_equal(lg_h264_for_each_nal(buf, 3, count_nal, &t), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_decode),
      cmocka_unit_test(test_downscale_and_auto),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_nal_parser),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
