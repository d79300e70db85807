/* test_pixels.c: the U8 dtype and the engine's pixel ops on the CPU backend: copy U8 <-> F32 /
 * F16 / BF16 as plain value casts (round to nearest with ties to even, saturation, NaN -> 0),
 * pixels_from_u8 (x * 2/255 - 1) and pixels_to_u8 (round((x + 1) * 127.5) clamped to 0..255)
 * against double-precision references written here, on odd sizes with permuted and narrowed
 * views, every byte value, values next to the .5 rounding boundaries, clamping, and the
 * argument checks. Test thread; the backend runs 2 OpenMP threads. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lg_backend *be;

static int setup(void **state) {
  (void)state;
  be = lg_backend_new_cpu(2);
  return be ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  lg_backend_free(&be);
  return 0;
}

static const lg_dtype float_dts[3] = {LG_F32, LG_F16, LG_BF16};

/* Round half to even, saturate to [0,255], NaN -> 0: the documented U8 cast, from floor(). */
static int ref_u8(double v) {
  if (!(v > 0.0)) return 0;
  if (v >= 255.0) return 255;
  double f = floor(v), frac = v - f;
  int k = (int)f;
  if (frac > 0.5 || (frac == 0.5 && (k & 1))) k++;
  return k;
}

/* Contiguous U8 tensor holding bytes (or zeros when bytes is NULL). */
static lg_tensor u8_tensor(int ndim, const int64_t *shape, const uint8_t *bytes) {
  lg_tensor t;
  assert_int_equal(lg_tensor_alloc(be, &t, LG_U8, ndim, shape), 0);
  if (bytes)
    assert_int_equal(lg_tensor_upload(&t, bytes), 0);
  else
    assert_int_equal(be->ops->memset0(be, t.data, lg_tensor_nbytes(&t)), 0);
  return t;
}

static uint8_t *u8_download(const lg_tensor *t) {
  uint8_t *b = malloc(lg_tensor_nbytes(t));
  assert_non_null(b);
  assert_int_equal(lg_tensor_download(t, b), 0);
  return b;
}

/* ---- copy ---- */

/* U8 [7,3,5] viewed [3,5,7] by permute, every byte value present, into narrowed float
 * destinations: exact integers 0..255 in every float dtype; then back to a U8 narrowed view. */
static void test_copy_u8_float_roundtrip(void **state) {
  (void)state;
  int64_t sshape[3] = {7, 3, 5}; /* 105 elements, 0 and 255 among them */
  uint8_t sb[105];
  for (int i = 0; i < 105; i++)
    sb[i] = (uint8_t)((i * 37) % 256);
  sb[3] = 255;
  sb[4] = 0;
  lg_tensor src = u8_tensor(3, sshape, sb);
  int perm[3] = {1, 2, 0};
  lg_tensor x = lg_tensor_permute(&src, perm); /* x[i,j,k] = sb[k][i][j] */
  for (int di = 0; di < 3; di++) {
    int64_t dshape[3] = {3, 5, 9};
    lg_tensor dst = tu_tensor(be, float_dts[di], 3, dshape, NULL);
    lg_tensor y = lg_tensor_narrow(&dst, 2, 1, 7);
    assert_int_equal(LG_OP(be, copy, &y, &x), 0);
    float *got = tu_download(&dst);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++)
        for (int k = 0; k < 9; k++) {
          float want = (k == 0 || k == 8) ? 0.0f : (float)sb[((k - 1) * 3 + i) * 5 + j];
          assert_true(got[(i * 5 + j) * 9 + k] == want);
        }
    /* back: float [3,5,7] view -> U8 [3,5,7] narrowed out of [3,5,8] */
    int64_t bshape[3] = {3, 5, 8};
    lg_tensor back = u8_tensor(3, bshape, NULL);
    lg_tensor bv = lg_tensor_narrow(&back, 2, 1, 7);
    assert_int_equal(LG_OP(be, copy, &bv, &y), 0);
    uint8_t *bb = u8_download(&back);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++)
        for (int k = 0; k < 8; k++) {
          int want = k == 0 ? 0 : sb[((k - 1) * 3 + i) * 5 + j];
          assert_int_equal(bb[(i * 5 + j) * 8 + k], want);
        }
    free(bb);
    free(got);
    lg_tensor_free(&back);
    lg_tensor_free(&dst);
  }
  lg_tensor_free(&src);
}

/* Float -> U8 rounds to nearest with ties to even, saturates, NaN gives 0. */
static void test_copy_float_to_u8_rounding_and_clamp(void **state) {
  (void)state;
  const float vals[] = {0.5f,   1.5f,    2.5f,      3.5f,    253.5f, 254.5f, 127.5f,   128.5f,
                        0.49f,  0.51f,   254.49f,   254.51f, -0.5f,  -3.0f,  -0.0f,    255.0f,
                        255.4f, 255.6f,  300.0f,    1e9f,    -1e9f,  NAN,    INFINITY, -INFINITY,
                        17.0f,  99.999f, 100.0001f, 200.25f, 7.75f,  0.0f,   1.0f};
  const int n = (int)(sizeof vals / sizeof vals[0]); /* 31: odd */
  for (int si = 0; si < 3; si++) {
    int64_t shape[1] = {n};
    lg_tensor x = tu_tensor(be, float_dts[si], 1, shape, vals);
    float *held = tu_download(&x); /* the values as this dtype holds them */
    /* strided destination: every other byte of a [2n] buffer */
    int64_t yshape[2] = {n, 2};
    lg_tensor ybuf = u8_tensor(2, yshape, NULL);
    lg_tensor y = lg_tensor_narrow(&ybuf, 1, 1, 1);
    int64_t flat[1] = {n};
    y.ndim = 1;
    y.ne[0] = flat[0];
    y.nb[0] = 2;
    assert_int_equal(LG_OP(be, copy, &y, &x), 0);
    uint8_t *got = u8_download(&ybuf);
    for (int i = 0; i < n; i++) {
      assert_int_equal(got[2 * i], 0);
      if (got[2 * i + 1] != ref_u8((double)held[i]))
        fail_msg("copy %s -> U8: %g gave %d, want %d", lg_dtype_name(float_dts[si]),
                 (double)held[i], got[2 * i + 1], ref_u8((double)held[i]));
    }
    if (si == 0) {                            /* F32: the exact ties */
      assert_int_equal(got[2 * 0 + 1], 0);    /* 0.5 */
      assert_int_equal(got[2 * 1 + 1], 2);    /* 1.5 */
      assert_int_equal(got[2 * 2 + 1], 2);    /* 2.5 */
      assert_int_equal(got[2 * 3 + 1], 4);    /* 3.5 */
      assert_int_equal(got[2 * 4 + 1], 254);  /* 253.5 */
      assert_int_equal(got[2 * 5 + 1], 254);  /* 254.5 */
      assert_int_equal(got[2 * 21 + 1], 0);   /* NaN */
      assert_int_equal(got[2 * 22 + 1], 255); /* inf */
    }
    free(got);
    free(held);
    lg_tensor_free(&ybuf);
    lg_tensor_free(&x);
  }
}

/* ---- pixels_from_u8 ---- */

/* Every byte value through a permuted source into narrowed F32/F16/BF16 destinations:
 * F32 within half an ulp of the double u/127.5 - 1 (exact at 0 and 255); F16/BF16 that F32
 * value rounded to the dtype. */
static void test_pixels_from_u8_all_values(void **state) {
  (void)state;
  /* storage [3,256] U8, each row all 256 values in a different order, viewed [256,3] */
  int64_t sshape[2] = {3, 256};
  uint8_t sb[3 * 256];
  for (int r = 0; r < 3; r++)
    for (int i = 0; i < 256; i++)
      sb[r * 256 + i] = (uint8_t)((i * (2 * r + 1) + 11 * r) & 255);
  lg_tensor src = u8_tensor(2, sshape, sb);
  int perm[2] = {1, 0};
  lg_tensor x = lg_tensor_permute(&src, perm); /* x[i,r] = sb[r][i] */
  for (int di = 0; di < 3; di++) {
    int64_t dshape[2] = {256, 5};
    lg_tensor dst = tu_tensor(be, float_dts[di], 2, dshape, NULL);
    lg_tensor y = lg_tensor_narrow(&dst, 1, 1, 3);
    assert_int_equal(lg_backend_pixels_from_u8(be, &y, &x), 0);
    float *got = tu_download(&dst);
    for (int i = 0; i < 256; i++)
      for (int c = 0; c < 5; c++) {
        float g = got[i * 5 + c];
        if (c == 0 || c == 4) {
          assert_true(g == 0.0f);
          continue;
        }
        int u = sb[(c - 1) * 256 + i];
        double ref = u / 127.5 - 1.0;
        float f32 = (float)ref; /* nearest float to the double reference */
        double half_ulp = fabs(nextafterf(f32, INFINITY) - f32) * 0.5;
        float want = tu_round(float_dts[di], f32);
        if (float_dts[di] == LG_F32) {
          if (!(fabs((double)g - ref) <= half_ulp))
            fail_msg("pixels_from_u8 F32: %d gave %.9g, want %.9g", u, (double)g, ref);
        } else if (g != want) {
          fail_msg("pixels_from_u8 %s: %d gave %.9g, want %.9g", lg_dtype_name(float_dts[di]), u,
                   (double)g, (double)want);
        }
        if (u == 0) assert_true(g == -1.0f);
        if (u == 255) assert_true(g == 1.0f);
      }
    free(got);
    lg_tensor_free(&dst);
  }
  lg_tensor_free(&src);
}

/* ---- pixels_to_u8 ---- */

/* Values just below, at and above each .5 boundary of (x+1)*127.5, from F32/F16/BF16 sources
 * in an odd [3,5,7]-like layout, against the double reference; every byte value survives
 * pixels_from_u8 then pixels_to_u8 in all three dtypes. */
static void test_pixels_to_u8_boundaries(void **state) {
  (void)state;
  enum { NB = 256 * 3 + 3 }; /* per boundary k+0.5: below, nearest, above; plus 3 extras */
  float *vals = malloc(sizeof(float) * NB);
  assert_non_null(vals);
  int n = 0;
  for (int k = 0; k < 256; k++) {
    float b = (float)((k + 0.5) / 127.5 - 1.0);
    vals[n++] = nextafterf(b, -INFINITY);
    vals[n++] = b;
    vals[n++] = nextafterf(b, INFINITY);
  }
  vals[n++] = 0.0f; /* v = 127.5 exactly: ties to even gives 128 */
  vals[n++] = -1.0f;
  vals[n++] = 1.0f;
  assert_int_equal(n, NB);
  for (int si = 0; si < 3; si++) {
    int64_t shape[2] = {NB, 1};
    lg_tensor x = tu_tensor(be, float_dts[si], 2, shape, vals);
    float *held = tu_download(&x);
    int64_t yshape[2] = {NB, 3};
    lg_tensor ybuf = u8_tensor(2, yshape, NULL);
    lg_tensor y = lg_tensor_narrow(&ybuf, 1, 2, 1);
    assert_int_equal(lg_backend_pixels_to_u8(be, &y, &x), 0);
    uint8_t *got = u8_download(&ybuf);
    for (int i = 0; i < NB; i++) {
      int want = ref_u8(((double)held[i] + 1.0) * 127.5);
      assert_int_equal(got[3 * i], 0);
      assert_int_equal(got[3 * i + 1], 0);
      if (got[3 * i + 2] != want)
        fail_msg("pixels_to_u8 %s: %.9g gave %d, want %d", lg_dtype_name(float_dts[si]),
                 (double)held[i], got[3 * i + 2], want);
    }
    assert_int_equal(got[3 * (NB - 3) + 2], 128);
    assert_int_equal(got[3 * (NB - 2) + 2], 0);
    assert_int_equal(got[3 * (NB - 1) + 2], 255);
    free(got);
    free(held);
    lg_tensor_free(&ybuf);
    lg_tensor_free(&x);
  }
  free(vals);
}

/* Out of range and non-finite inputs clamp: <= -1 -> 0, >= 1 -> 255, NaN -> 0. */
static void test_pixels_to_u8_clamp(void **state) {
  (void)state;
  const float vals[] = {-1.0f, -1.5f,    -100.0f, -INFINITY, 1.0f,     1.0001f,  1.5f,
                        7.0f,  INFINITY, NAN,     -1.00392f, 0.99607f, -0.99609f};
  const int want[] = {0, 0, 0, 0, 255, 255, 255, 255, 255, 0, 0, 254, 0};
  const int n = (int)(sizeof vals / sizeof vals[0]);
  int64_t shape[1] = {n};
  lg_tensor x = tu_tensor(be, LG_F32, 1, shape, vals);
  lg_tensor y = u8_tensor(1, shape, NULL);
  assert_int_equal(lg_backend_pixels_to_u8(be, &y, &x), 0);
  uint8_t *got = u8_download(&y);
  for (int i = 0; i < n; i++) {
    assert_int_equal(want[i], ref_u8(((double)vals[i] + 1.0) * 127.5));
    if (got[i] != want[i]) fail_msg("pixels_to_u8: %g gave %d, want %d", vals[i], got[i], want[i]);
  }
  free(got);
  lg_tensor_free(&y);
  lg_tensor_free(&x);
}

/* A frame of odd size [3,5,7,3] through pixels_from_u8 and pixels_to_u8 comes back unchanged in
 * each float dtype (what the engine's input and output paths rely on). */
static void test_pixels_roundtrip_frames(void **state) {
  (void)state;
  int64_t shape[4] = {3, 5, 7, 3};
  const int n = 3 * 5 * 7 * 3;
  uint8_t in[3 * 5 * 7 * 3];
  lg_rng r;
  lg_rng_seed(&r, 7);
  for (int i = 0; i < n; i++)
    in[i] = (uint8_t)(lg_rng_next(&r) & 255);
  in[0] = 0;
  in[1] = 255;
  in[2] = 127;
  in[3] = 128;
  lg_tensor x = u8_tensor(4, shape, in);
  for (int di = 0; di < 3; di++) {
    lg_tensor f = tu_tensor(be, float_dts[di], 4, shape, NULL);
    lg_tensor y = u8_tensor(4, shape, NULL);
    assert_int_equal(lg_backend_pixels_from_u8(be, &f, &x), 0);
    assert_int_equal(lg_backend_pixels_to_u8(be, &y, &f), 0);
    uint8_t *got = u8_download(&y);
    assert_memory_equal(got, in, (size_t)n);
    free(got);
    lg_tensor_free(&y);
    lg_tensor_free(&f);
  }
  lg_tensor_free(&x);
}

/* Wrong dtypes and shapes are refused with LG_EINVAL and a logged reason. */
static void test_pixels_bad_args(void **state) {
  (void)state;
  int64_t s1[2] = {4, 3}, s2[2] = {3, 4};
  lg_tensor u = u8_tensor(2, s1, NULL), u2 = u8_tensor(2, s2, NULL);
  lg_tensor f = tu_tensor(be, LG_F32, 2, s1, NULL);
  tu_log_capture(true);
  assert_int_equal(lg_backend_pixels_from_u8(be, &u, &u), LG_EINVAL);  /* y not float */
  assert_int_equal(lg_backend_pixels_from_u8(be, &f, &f), LG_EINVAL);  /* x not U8 */
  assert_int_equal(lg_backend_pixels_from_u8(be, &f, &u2), LG_EINVAL); /* shape */
  assert_int_equal(lg_backend_pixels_to_u8(be, &f, &f), LG_EINVAL);    /* y not U8 */
  assert_int_equal(lg_backend_pixels_to_u8(be, &u2, &f), LG_EINVAL);   /* shape */
  assert_int_equal(lg_backend_pixels_to_u8(be, NULL, &f), LG_EINVAL);
  assert_non_null(strstr(tu_log_text(), "pixels_to_u8"));
  tu_log_capture(false);
  lg_tensor_free(&f);
  lg_tensor_free(&u2);
  lg_tensor_free(&u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_copy_u8_float_roundtrip),
      cmocka_unit_test(test_copy_float_to_u8_rounding_and_clamp),
      cmocka_unit_test(test_pixels_from_u8_all_values),
      cmocka_unit_test(test_pixels_to_u8_boundaries),
      cmocka_unit_test(test_pixels_to_u8_clamp),
      cmocka_unit_test(test_pixels_roundtrip_frames),
      cmocka_unit_test(test_pixels_bad_args),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
