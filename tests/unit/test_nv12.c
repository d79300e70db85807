/* test_nv12.c: RGB24 -> NV12 BT.709 limited range (cpu/lg_nv12.h), the conversion the
 * encoder's CUDA-frame path runs on the GPU (cuda/cuda_nv12.cu computes the same integers;
 * tests/gpu/nvenc checks them bit for bit there). What a viewer would notice: black, white and
 * the primaries land on the BT.709 studio-range values, gray has no tint, every pixel is within
 * rounding of the exact formula, chroma is the average of its 2x2 block, row pitches are
 * honoured and bad sizes refused. Without CUDA the device calls say "not supported".
 * Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lg_backend.h"
#include "lg_cuda_nv12.h"
#include "lg_nv12.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double KR = 0.2126, KB = 0.0722, KG = 1.0 - 0.2126 - 0.0722;

/* The exact BT.709 limited-range values (unrounded). */
static double y_exact(double r, double g, double b) {
  return 16.0 + (KR * r + KG * g + KB * b) * 219.0 / 255.0;
}
static double u_exact(double r, double g, double b) {
  return 128.0 + (b - (KR * r + KG * g + KB * b)) / (2.0 * (1.0 - KB)) * 224.0 / 255.0;
}
static double v_exact(double r, double g, double b) {
  return 128.0 + (r - (KR * r + KG * g + KB * b)) / (2.0 * (1.0 - KR)) * 224.0 / 255.0;
}

/* One 2x2 frame of a single colour: its Y, Cb, Cr. */
static void convert_solid(int r, int g, int b, int *y, int *u, int *v) {
  uint8_t rgb[12], yp[4], uv[2];
  for (int i = 0; i < 4; i++)
    rgb[3 * i] = (uint8_t)r, rgb[3 * i + 1] = (uint8_t)g, rgb[3 * i + 2] = (uint8_t)b;
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 6, 2, 2, yp, 2, uv, 2), 0);
  for (int i = 1; i < 4; i++)
    assert_int_equal(yp[i], yp[0]);
  *y = yp[0], *u = uv[0], *v = uv[1];
}

static void test_known_colours(void **state) {
  (void)state;
  static const struct {
    int r, g, b, y, u, v;
  } c[] = {
      {0, 0, 0, 16, 128, 128},        /* black: studio-range foot, no tint */
      {255, 255, 255, 235, 128, 128}, /* white: studio-range head */
      {128, 128, 128, 126, 128, 128}, /* mid gray */
      {255, 0, 0, 63, 102, 240},      /* BT.709 red */
      {0, 255, 0, 173, 42, 26},       /* green */
      {0, 0, 255, 32, 240, 118},      /* blue */
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    int y, u, v;
    convert_solid(c[i].r, c[i].g, c[i].b, &y, &u, &v);
    assert_int_equal(y, c[i].y);
    assert_int_equal(u, c[i].u);
    assert_int_equal(v, c[i].v);
  }
  /* every gray level: Cb = Cr = 128 exactly, Y monotonic from 16 to 235 */
  int prev = 0;
  for (int g = 0; g < 256; g++) {
    int y, u, v;
    convert_solid(g, g, g, &y, &u, &v);
    assert_int_equal(u, 128);
    assert_int_equal(v, 128);
    assert_true(y >= prev);
    prev = y;
  }
  assert_int_equal(prev, 235);
}

static void test_random_within_rounding(void **state) {
  (void)state;
  enum { W = 64, H = 32, YP = 80, UVP = 72, RS = W * 3 + 5 };
  uint8_t *rgb = malloc(RS * H), *y = malloc(YP * H), *uv = malloc(UVP * H / 2);
  assert_non_null(rgb);
  assert_non_null(y);
  assert_non_null(uv);
  lg_rng rng;
  lg_rng_seed(&rng, 7);
  for (int i = 0; i < RS * H; i++)
    rgb[i] = (uint8_t)(lg_rng_next(&rng) >> 56);
  memset(y, 0xAB, YP * H);
  memset(uv, 0xCD, UVP * H / 2);
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, RS, W, H, y, YP, uv, UVP), 0);
  double worst_y = 0, worst_c = 0;
  for (int j = 0; j < H; j++)
    for (int i = 0; i < W; i++) {
      const uint8_t *p = rgb + j * RS + 3 * i;
      double d = fabs(y[j * YP + i] - y_exact(p[0], p[1], p[2]));
      worst_y = d > worst_y ? d : worst_y;
    }
  for (int j = 0; j < H / 2; j++)
    for (int i = 0; i < W / 2; i++) {
      double r = 0, g = 0, b = 0;
      for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
          const uint8_t *p = rgb + (2 * j + dy) * RS + 3 * (2 * i + dx);
          r += p[0] / 4.0, g += p[1] / 4.0, b += p[2] / 4.0;
        }
      double du = fabs(uv[j * UVP + 2 * i] - u_exact(r, g, b));
      double dv = fabs(uv[j * UVP + 2 * i + 1] - v_exact(r, g, b));
      worst_c = du > worst_c ? du : worst_c;
      worst_c = dv > worst_c ? dv : worst_c;
    }
  /* nearest integer of the exact value, up to the 16-bit coefficients' error */
  assert_true(worst_y <= 0.51);
  assert_true(worst_c <= 0.51);
  /* the padding past each row is not written */
  for (int j = 0; j < H; j++)
    for (int i = W; i < YP; i++)
      assert_int_equal(y[j * YP + i], 0xAB);
  for (int j = 0; j < H / 2; j++)
    for (int i = W; i < UVP; i++)
      assert_int_equal(uv[j * UVP + i], 0xCD);
  free(rgb);
  free(y);
  free(uv);
}

/* A block of two black and two white pixels: luma keeps each pixel, chroma is the block's
 * average (gray, no tint); a red/blue checkerboard gives the purple of their mean. */
static void test_chroma_is_block_average(void **state) {
  (void)state;
  uint8_t rgb[4 * 2 * 3] = {0}, y[8], uv[4];
  /* 4x2: block 0 = black, white / white, black; block 1 = red, blue / blue, red */
  const uint8_t px[8][3] = {{0, 0, 0},       {255, 255, 255}, {255, 0, 0}, {0, 0, 255},
                            {255, 255, 255}, {0, 0, 0},       {0, 0, 255}, {255, 0, 0}};
  for (int i = 0; i < 8; i++)
    memcpy(rgb + 3 * i, px[i], 3);
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 12, 4, 2, y, 4, uv, 4), 0);
  assert_int_equal(y[0], 16);
  assert_int_equal(y[1], 235);
  assert_int_equal(y[4], 235);
  assert_int_equal(y[5], 16);
  assert_int_equal(uv[0], 128);
  assert_int_equal(uv[1], 128);
  assert_int_equal(uv[2], (int)lround(u_exact(127.5, 0, 127.5)));
  assert_int_equal(uv[3], (int)lround(v_exact(127.5, 0, 127.5)));
}

static void test_bad_arguments(void **state) {
  (void)state;
  uint8_t rgb[6 * 4 * 3] = {0}, y[32], uv[16];
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 18, 6, 4, y, 6, uv, 6), 0);
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 18, 5, 4, y, 6, uv, 6), LG_EINVAL); /* odd width */
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 18, 6, 3, y, 6, uv, 6), LG_EINVAL); /* odd height */
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 17, 6, 4, y, 6, uv, 6), LG_EINVAL); /* rgb stride */
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 18, 6, 4, y, 5, uv, 6), LG_EINVAL); /* y pitch */
  assert_int_equal(lg_rgb_to_nv12_ref(rgb, 18, 6, 4, y, 6, uv, 4), LG_EINVAL); /* uv pitch */
  assert_int_equal(lg_rgb_to_nv12_ref(NULL, 18, 6, 4, y, 6, uv, 6), LG_EINVAL);
}

/* On a CPU backend (and in builds without CUDA) the CUDA-frame helpers refuse, so the encoder
 * falls back to host frames. */
static void test_cuda_helpers_refuse_cpu_backend(void **state) {
  (void)state;
  lg_backend *be = lg_backend_new_cpu(1);
  assert_non_null(be);
  lg_tensor t;
  int64_t s[3] = {4, 4, 3};
  assert_int_equal(lg_tensor_alloc(be, &t, LG_U8, 3, s), 0);
  uint8_t y[16], uv[8];
  void *ctx = (void *)1, *stream = (void *)1;
  assert_int_equal(lg_cuda_native_handles(be, &ctx, &stream), LG_ENOTSUP);
  assert_null(ctx);
  assert_null(stream);
  assert_int_equal(lg_cuda_rgb_to_nv12(be, &t, y, 4, uv, 4), LG_ENOTSUP);
  assert_int_equal(lg_cuda_nv12_write(be, &t, y, 4, uv, 4), LG_ENOTSUP);
  lg_tensor_free(&t);
  lg_backend_free(&be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_colours),
      cmocka_unit_test(test_random_within_rounding),
      cmocka_unit_test(test_chroma_is_block_average),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_cuda_helpers_refuse_cpu_backend),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
