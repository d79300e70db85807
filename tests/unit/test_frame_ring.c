/* test_frame_ring.c: the ingest ring keeps the newest frames, counts drops, wakes a blocked
 * consumer on push and on close, and honours its timeout. Main thread plus one producer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "frame_ring.h"
#include "lg_base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { W = 8, H = 4 };

static void fill(uint8_t *f, uint8_t v) {
  memset(f, v, W * H * 3);
}

static void test_fifo_order_and_info(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 4);
  assert_non_null(r);
  assert_int_equal(lg_frame_ring_frame_size(r), W * H * 3);
  uint8_t in[W * H * 3], out[W * H * 3];
  for (int i = 0; i < 3; i++) {
    fill(in, (uint8_t)(10 + i));
    assert_int_equal(lg_frame_ring_push(r, in, W * 3, 1000 * i), 0);
  }
  for (int i = 0; i < 3; i++) {
    lg_frame_info info;
    assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), &info, 0), 0);
    assert_int_equal(out[0], 10 + i);
    assert_int_equal(out[sizeof(out) - 1], 10 + i);
    assert_int_equal(info.pts_ns, 1000 * i);
    assert_int_equal(info.seq, (uint64_t)i);
    assert_true(info.t_arrival > 0);
  }
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 0), LG_EAGAIN);
  lg_frame_ring_free(&r);
  assert_null(r);
  lg_frame_ring_free(&r); /* NULL is accepted */
}

static void test_full_ring_drops_oldest(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 3);
  uint8_t in[W * H * 3], out[W * H * 3];
  for (int i = 0; i < 10; i++) {
    fill(in, (uint8_t)i);
    assert_int_equal(lg_frame_ring_push(r, in, W * 3, i), 0);
  }
  lg_frame_ring_stats st;
  lg_frame_ring_get_stats(r, &st);
  assert_int_equal(st.pushed, 10);
  assert_int_equal(st.dropped, 7);
  assert_int_equal(st.queued, 3);
  /* The consumer sees the three newest frames, oldest first. */
  for (int i = 7; i < 10; i++) {
    lg_frame_info info;
    assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), &info, 0), 0);
    assert_int_equal(out[5], i);
    assert_int_equal(info.seq, (uint64_t)i);
  }
  lg_frame_ring_get_stats(r, &st);
  assert_int_equal(st.popped, 3);
  lg_frame_ring_free(&r);
}

static void test_stride_is_repacked(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 2);
  enum { STRIDE = W * 3 + 8 };
  uint8_t in[STRIDE * H], out[W * H * 3];
  memset(in, 0xEE, sizeof(in)); /* padding bytes must not leak into the frame */
  for (int y = 0; y < H; y++)
    memset(in + y * STRIDE, y + 1, W * 3);
  assert_int_equal(lg_frame_ring_push(r, in, STRIDE, 0), 0);
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 0), 0);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W * 3; x++)
      assert_int_equal(out[y * W * 3 + x], y + 1);
  assert_int_equal(lg_frame_ring_push(r, in, W * 3 - 1, 0), LG_EINVAL);
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out) - 1, NULL, 0), LG_EINVAL);
  lg_frame_ring_free(&r);
}

static void test_bad_geometry(void **state) {
  (void)state;
  assert_null(lg_frame_ring_new(0, 4, 2));
  assert_null(lg_frame_ring_new(4, -1, 2));
  assert_null(lg_frame_ring_new(4, 4, 0));
  assert_null(lg_frame_ring_new(4, 4, 100000));
}

static void test_timeout(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 2);
  uint8_t out[W * H * 3];
  double t0 = lg_now();
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 0.2), LG_EAGAIN);
  double dt = lg_now() - t0;
  assert_true(dt >= 0.19);
  assert_true(dt < 2.0);
  lg_frame_ring_free(&r);
}

typedef struct producer {
  lg_frame_ring *r;
  int n;
  int close_after;
} producer;

static void *produce(void *arg) {
  producer *p = arg;
  uint8_t in[W * H * 3];
  for (int i = 0; i < p->n; i++) {
    usleep(20000);
    fill(in, (uint8_t)(i + 1));
    lg_frame_ring_push(p->r, in, W * 3, i);
  }
  if (p->close_after) {
    usleep(20000);
    lg_frame_ring_close(p->r);
  }
  return NULL;
}

static void test_blocking_pop_woken_by_push_and_close(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 8);
  producer p = {r, 5, 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, produce, &p), 0);
  uint8_t out[W * H * 3];
  int got = 0, rc;
  double t0 = lg_now();
  while ((rc = lg_frame_ring_pop(r, out, sizeof(out), NULL, -1)) == 0) {
    got++;
    assert_int_equal(out[0], got); /* nothing dropped: the consumer keeps up */
  }
  assert_int_equal(rc, LG_EEOF);
  assert_int_equal(got, 5);
  assert_true(lg_now() - t0 < 5.0);
  pthread_join(th, NULL);
  uint8_t in[W * H * 3] = {0};
  assert_int_equal(lg_frame_ring_push(r, in, W * 3, 0), LG_EEOF);
  lg_frame_ring_stats st;
  lg_frame_ring_get_stats(r, &st);
  assert_int_equal(st.closed, 1);
  lg_frame_ring_reopen(r);
  assert_int_equal(lg_frame_ring_push(r, in, W * 3, 0), 0);
  lg_frame_ring_flush(r);
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 0), LG_EAGAIN);
  lg_frame_ring_free(&r);
}

static void test_close_drains_queued_frames_first(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 4);
  uint8_t in[W * H * 3], out[W * H * 3];
  fill(in, 7);
  lg_frame_ring_push(r, in, W * 3, 0);
  lg_frame_ring_push(r, in, W * 3, 1);
  lg_frame_ring_close(r);
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 1.0), 0);
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 1.0), 0);
  double t0 = lg_now();
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 5.0), LG_EEOF);
  assert_true(lg_now() - t0 < 0.5); /* closed: no waiting */
  lg_frame_ring_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_order_and_info),
      cmocka_unit_test(test_full_ring_drops_oldest),
      cmocka_unit_test(test_stride_is_repacked),
      cmocka_unit_test(test_bad_geometry),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_blocking_pop_woken_by_push_and_close),
      cmocka_unit_test(test_close_drains_queued_frames_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
