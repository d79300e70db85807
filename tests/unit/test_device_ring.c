/* test_device_ring.c: the device-frame ring between the GPU worker and the output encoder
 * (pipeline/device_ring.h), on the CPU backend: frames come out oldest first with their pts, a
 * full queue and an exhausted ring drop the oldest frame (counted), a slot being read is never
 * handed to the producer until the read was enqueued, close wakes a waiting consumer, and the
 * producer can wait for the consumer to finish. The ownership rule is checked against a model
 * of a CUDA stream (operations recorded, executed later in order): with release after enqueue
 * every read sees its own frame; releasing before enqueuing (the wrong rule) is caught.
 * Threads: main, plus one consumer or producer thread in the wake-up and stress tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "device_ring.h"
#include "lg_backend.h"
#include "lg_base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { W = 8, H = 4, FB = W * H * 3 };

static lg_backend *g_be;

static int setup(void **state) {
  (void)state;
  g_be = lg_backend_new_cpu(1);
  return g_be ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  lg_backend_free(&g_be);
  return 0;
}

/* Producer: acquire, write value v into every byte (enqueued on the CPU backend = done), publish.
 */
static int put(lg_device_ring *r, uint8_t v, int64_t pts) {
  lg_tensor f;
  int slot = lg_device_ring_acquire(r, &f);
  if (slot < 0) return slot;
  uint8_t buf[FB];
  memset(buf, v, sizeof buf);
  assert_int_equal(lg_tensor_nbytes(&f), FB);
  assert_int_equal(lg_tensor_upload(&f, buf), 0);
  return lg_device_ring_publish(r, slot, pts);
}

typedef struct seen {
  int n;
  uint8_t first[64], last[64];
  int64_t pts[64];
  uint64_t seq[64];
} seen;

static int record(void *user, const lg_tensor *frame, const lg_device_frame_info *info) {
  seen *s = user;
  uint8_t buf[FB];
  assert_int_equal(frame->ndim, 4);
  assert_int_equal(frame->ne[0], 1);
  assert_int_equal(frame->ne[1], H);
  assert_int_equal(frame->ne[2], W);
  assert_int_equal(frame->dtype, LG_U8);
  assert_int_equal(lg_tensor_download(frame, buf), 0);
  s->first[s->n] = buf[0];
  s->last[s->n] = buf[FB - 1];
  s->pts[s->n] = info->pts_ns;
  s->seq[s->n] = info->seq;
  s->n++;
  return 0;
}

static void test_fifo_order_and_info(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 6, 4);
  assert_non_null(r);
  assert_int_equal(lg_device_ring_capacity(r), 6);
  for (int i = 0; i < 3; i++)
    assert_int_equal(put(r, (uint8_t)(10 + i), 1000 * i), 0);
  seen s = {0};
  int frc = -1;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(lg_device_ring_consume(r, record, &s, 0, &frc), 0);
    assert_int_equal(frc, 0);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(s.first[i], 10 + i);
    assert_int_equal(s.last[i], 10 + i);
    assert_int_equal(s.pts[i], 1000 * i);
    assert_int_equal(s.seq[i], (uint64_t)i);
  }
  assert_int_equal(lg_device_ring_consume(r, record, &s, 0, NULL), LG_EAGAIN);
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  assert_int_equal(st.published, 3);
  assert_int_equal(st.consumed, 3);
  assert_int_equal(st.dropped, 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.writing, 0);
  assert_int_equal(st.reading, 0);
  lg_device_ring_free(&r);
  assert_null(r);
  lg_device_ring_free(&r); /* NULL is accepted */
}

static int fail_read(void *user, const lg_tensor *frame, const lg_device_frame_info *info) {
  (void)user;
  (void)frame;
  (void)info;
  return LG_EIO;
}

static void test_bad_arguments(void **state) {
  (void)state;
  assert_null(lg_device_ring_new(NULL, W, H, 4, 2));
  assert_null(lg_device_ring_new(g_be, 0, H, 4, 2));
  assert_null(lg_device_ring_new(g_be, W, H, 1, 1));
  assert_null(lg_device_ring_new(g_be, W, H, 4, 4)); /* the queue must leave a slot free */
  assert_null(lg_device_ring_new(g_be, W, H, 4, 0));
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 4, 2);
  assert_non_null(r);
  assert_int_equal(lg_device_ring_publish(r, 0, 0), LG_EINVAL); /* not acquired */
  assert_int_equal(lg_device_ring_publish(r, 7, 0), LG_EINVAL);
  assert_int_equal(lg_device_ring_consume(r, NULL, NULL, 0, NULL), LG_EINVAL);
  /* the consumer's error comes back, and the slot is still released */
  assert_int_equal(put(r, 1, 1), 0);
  int frc = 0;
  assert_int_equal(lg_device_ring_consume(r, fail_read, NULL, 0, &frc), 0);
  assert_int_equal(frc, LG_EIO);
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  assert_int_equal(st.reading, 0);
  lg_device_ring_free(&r);
}

static void test_full_queue_drops_oldest(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 6, 3);
  for (int i = 0; i < 10; i++)
    assert_int_equal(put(r, (uint8_t)i, i), 0);
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  assert_int_equal(st.published, 10);
  assert_int_equal(st.dropped, 7);
  assert_int_equal(st.queued, 3);
  seen s = {0};
  while (lg_device_ring_consume(r, record, &s, 0, NULL) == 0) {
  }
  assert_int_equal(s.n, 3); /* the three newest, oldest first */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(s.first[i], 7 + i);
    assert_int_equal(s.seq[i], (uint64_t)(7 + i));
  }
  lg_device_ring_free(&r);
}

/* No free slot: acquire takes the oldest queued frame's slot; when the producer holds every
 * slot the ring says so instead of blocking. */
static void test_acquire_steals_oldest_queued(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 4, 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(put(r, (uint8_t)(20 + i), i), 0);
  lg_tensor f;
  int held[4];
  for (int k = 0; k < 4; k++) {
    held[k] = lg_device_ring_acquire(r, &f);
    assert_true(held[k] >= 0);
    lg_device_ring_stats st;
    lg_device_ring_get_stats(r, &st);
    assert_int_equal(st.dropped, (uint64_t)k); /* the first came from the free slot */
    assert_int_equal(st.queued, 3 - k);
    assert_int_equal(st.writing, k + 1);
  }
  for (int a = 0; a < 4; a++)
    for (int b = a + 1; b < 4; b++)
      assert_int_not_equal(held[a], held[b]);
  assert_int_equal(lg_device_ring_acquire(r, &f), LG_EAGAIN);
  for (int k = 0; k < 4; k++)
    lg_device_ring_cancel(r, held[k]);
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  assert_int_equal(st.writing, 0);
  assert_int_equal(st.published, 3);
  assert_int_equal(lg_device_ring_consume(r, record, &(seen){0}, 0, NULL), LG_EAGAIN);
  assert_true(lg_device_ring_acquire(r, &f) >= 0); /* cancelled slots are free again */
  lg_device_ring_free(&r);
}

/* While the consumer reads slot S (inside its callback), the producer can fill every other slot,
 * over and over, and never gets S; right after the callback returns S is free again. */
typedef struct hold_ctx {
  lg_device_ring *r;
  int reading_slot_value;
  int acquired, refused;
  bool other_slots_only;
} hold_ctx;

static int read_while_producer_runs(void *user, const lg_tensor *frame,
                                    const lg_device_frame_info *info) {
  hold_ctx *c = user;
  (void)info;
  uint8_t before[FB], after[FB];
  assert_int_equal(lg_tensor_download(frame, before), 0);
  c->other_slots_only = true;
  for (int round = 0; round < 5; round++) {
    int held[8], n = 0;
    for (;;) {
      lg_tensor f;
      int slot = lg_device_ring_acquire(c->r, &f);
      if (slot == LG_EAGAIN) {
        c->refused++;
        break;
      }
      assert_true(slot >= 0);
      if (f.data == frame->data) c->other_slots_only = false;
      uint8_t buf[FB];
      memset(buf, 0xAB, sizeof buf); /* the producer writes into what it got */
      assert_int_equal(lg_tensor_upload(&f, buf), 0);
      held[n++] = slot;
      c->acquired++;
      assert_true(n < 8);
    }
    /* publish half, cancel the rest: queued frames get stolen by the next round */
    for (int i = 0; i < n; i++) {
      if (i % 2 == 0)
        assert_int_equal(lg_device_ring_publish(c->r, held[i], round), 0);
      else
        lg_device_ring_cancel(c->r, held[i]);
    }
  }
  assert_int_equal(lg_tensor_download(frame, after), 0);
  assert_memory_equal(before, after, FB); /* nobody wrote the slot being read */
  c->reading_slot_value = before[0];
  return 0;
}

static void test_slot_held_until_read_enqueued(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 5, 3);
  assert_int_equal(put(r, 77, 1), 0);
  hold_ctx c = {.r = r};
  int frc = -1;
  assert_int_equal(lg_device_ring_consume(r, read_while_producer_runs, &c, 0, &frc), 0);
  assert_int_equal(frc, 0);
  assert_true(c.other_slots_only);
  assert_int_equal(c.reading_slot_value, 77);
  assert_int_equal(c.refused, 5);      /* every round ran the ring dry */
  assert_int_equal(c.acquired, 4 * 5); /* capacity - the slot being read */
  /* released: now all 5 slots can be held by the producer */
  lg_tensor f;
  int held[5];
  for (int k = 0; k < 5; k++)
    assert_true((held[k] = lg_device_ring_acquire(r, &f)) >= 0);
  assert_int_equal(lg_device_ring_acquire(r, &f), LG_EAGAIN);
  for (int k = 0; k < 5; k++)
    lg_device_ring_cancel(r, held[k]);
  lg_device_ring_free(&r);
}

/* ---- a model of the CUDA stream: writes and reads are recorded when enqueued and executed
 * later in enqueue order, as the GPU does. */
enum { OP_WRITE, OP_READ, MAX_OPS = 4096 };
typedef struct stream_op {
  int kind;
  const void *slot; /* slot address (frame.data) */
  uint64_t value;   /* WRITE: the frame number written; READ: the frame number expected */
} stream_op;

typedef struct fake_stream {
  stream_op ops[MAX_OPS];
  int n;
  const void *pending_slot; /* wrong rule: a read recorded after the release */
  uint64_t pending_value;
} fake_stream;

static void enqueue(fake_stream *s, int kind, const void *slot, uint64_t value) {
  assert_true(s->n < MAX_OPS);
  s->ops[s->n++] = (stream_op){kind, slot, value};
}

/* Runs the recorded stream; returns how many reads saw another frame than their own. */
static int run_stream(const fake_stream *s, const void *base, int capacity) {
  uint64_t mem[64] = {0};
  int bad = 0;
  assert_true(capacity <= 64);
  for (int i = 0; i < s->n; i++) {
    int k = (int)(((const uint8_t *)s->ops[i].slot - (const uint8_t *)base) / FB);
    assert_true(k >= 0 && k < capacity);
    if (s->ops[i].kind == OP_WRITE)
      mem[k] = s->ops[i].value;
    else if (mem[k] != s->ops[i].value)
      bad++;
  }
  return bad;
}

static int enqueue_read(void *user, const lg_tensor *frame, const lg_device_frame_info *info) {
  fake_stream *s = user;
  enqueue(s, OP_READ, frame->data, info->seq); /* the right rule: enqueued before returning */
  return 0;
}

static int remember_read(void *user, const lg_tensor *frame, const lg_device_frame_info *info) {
  fake_stream *s = user;
  s->pending_slot = frame->data; /* the wrong rule: enqueued after the slot was released */
  s->pending_value = info->seq;
  return 0;
}

/* The producer writes chunks of 4 frames; the consumer takes one frame between chunks (it is
 * behind, so frames are dropped too). frame_value == seq: frames are published in order. */
static int simulate(bool right_rule, uint64_t *dropped) {
  static fake_stream s;
  memset(&s, 0, sizeof s);
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 7, 2);
  assert_non_null(r);
  const void *base = NULL;
  uint64_t next = 0;
  for (int chunk = 0; chunk < 40; chunk++) {
    int held[4];
    for (int i = 0; i < 4; i++) {
      lg_tensor f;
      held[i] = lg_device_ring_acquire(r, &f);
      assert_true(held[i] >= 0);
      if (!base) base = (const uint8_t *)f.data - (size_t)held[i] * FB; /* slot 0 */
      enqueue(&s, OP_WRITE, f.data, next + (uint64_t)i);
    }
    for (int i = 0; i < 4; i++)
      assert_int_equal(lg_device_ring_publish(r, held[i], 0), 0);
    next += 4;
    if (!right_rule && s.pending_slot) {
      enqueue(&s, OP_READ, s.pending_slot, s.pending_value);
      s.pending_slot = NULL;
    }
    int frc;
    assert_int_equal(
        lg_device_ring_consume(r, right_rule ? enqueue_read : remember_read, &s, 0, &frc), 0);
  }
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  *dropped = st.dropped;
  int bad = run_stream(&s, base, 7);
  lg_device_ring_free(&r);
  return bad;
}

static void test_stream_order_protects_slots(void **state) {
  (void)state;
  uint64_t dropped = 0;
  assert_int_equal(simulate(true, &dropped), 0);
  assert_true(dropped > 0); /* the consumer was behind: slots were recycled, with drops */
  /* releasing before the read is enqueued lets the producer's next write overtake it */
  assert_true(simulate(false, &dropped) > 0);
}

/* ---- close and wake-up */
typedef struct waiter {
  lg_device_ring *r;
  int rc;
  seen s;
  double t_done;
} waiter;

static void *consume_forever(void *arg) {
  waiter *w = arg;
  w->rc = lg_device_ring_consume(w->r, record, &w->s, -1, NULL);
  w->t_done = lg_now();
  return NULL;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static void test_publish_and_close_wake_consumer(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 4, 2);
  waiter w = {.r = r, .rc = 1};
  pthread_t th;
  /* a publish wakes it with the frame */
  assert_int_equal(pthread_create(&th, NULL, consume_forever, &w), 0);
  sleep_s(0.05);
  assert_int_equal(put(r, 5, 123), 0);
  pthread_join(th, NULL);
  assert_int_equal(w.rc, 0);
  assert_int_equal(w.s.n, 1);
  assert_int_equal(w.s.first[0], 5);
  assert_int_equal(w.s.pts[0], 123);
  /* close wakes it with end of stream */
  w.rc = 1;
  assert_int_equal(pthread_create(&th, NULL, consume_forever, &w), 0);
  sleep_s(0.05);
  double t_close = lg_now();
  lg_device_ring_close(r);
  pthread_join(th, NULL);
  assert_int_equal(w.rc, LG_EEOF);
  assert_true(w.t_done - t_close < 1.0);
  lg_tensor f;
  assert_int_equal(lg_device_ring_acquire(r, &f), LG_EEOF);
  lg_device_ring_free(&r);
}

static void test_close_drains_queue_then_eof(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 5, 3);
  assert_int_equal(put(r, 1, 1), 0);
  assert_int_equal(put(r, 2, 2), 0);
  lg_tensor f;
  int held = lg_device_ring_acquire(r, &f);
  assert_true(held >= 0);
  lg_device_ring_close(r);
  lg_device_ring_close(r); /* idempotent */
  /* a frame being written when the ring closed is refused and its slot freed */
  assert_int_equal(lg_device_ring_publish(r, held, 3), LG_EEOF);
  seen s = {0};
  assert_int_equal(lg_device_ring_consume(r, record, &s, -1, NULL), 0);
  assert_int_equal(lg_device_ring_consume(r, record, &s, -1, NULL), 0);
  assert_int_equal(lg_device_ring_consume(r, record, &s, -1, NULL), LG_EEOF);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.first[0], 1);
  assert_int_equal(s.first[1], 2);
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  assert_true(st.closed);
  assert_int_equal(st.writing, 0);
  lg_device_ring_free(&r);
}

static void test_consume_timeout(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 3, 1);
  double t0 = lg_now();
  assert_int_equal(lg_device_ring_consume(r, record, &(seen){0}, 0.1, NULL), LG_EAGAIN);
  double dt = lg_now() - t0;
  assert_true(dt >= 0.09);
  assert_true(dt < 2.0);
  lg_device_ring_free(&r);
}

static void *finish_later(void *arg) {
  sleep_s(0.05);
  lg_device_ring_finish(arg);
  return NULL;
}

static void test_wait_finished(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 3, 1);
  assert_false(lg_device_ring_wait_finished(r, 0));
  assert_false(lg_device_ring_wait_finished(r, 0.05)); /* nobody finished: times out */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, finish_later, r), 0);
  assert_true(lg_device_ring_wait_finished(r, -1)); /* woken by finish */
  pthread_join(th, NULL);
  assert_true(lg_device_ring_wait_finished(r, 0));
  lg_device_ring_free(&r);
}

/* ---- two threads: the producer never blocks, the consumer sees frames in order with their own
 * bytes (never a slot overwritten during its read), and every frame is accounted for. */
enum { STRESS_FRAMES = 3000 };

typedef struct stress {
  lg_device_ring *r;
  uint64_t last_seq;
  int got, bad_bytes, out_of_order;
} stress;

static int check_read(void *user, const lg_tensor *frame, const lg_device_frame_info *info) {
  stress *st = user;
  uint8_t a[FB], b[FB];
  lg_tensor_download(frame, a);
  if (st->got % 7 == 0) sleep_s(0.0002); /* a slow encoder now and then */
  lg_tensor_download(frame, b);
  uint8_t want = (uint8_t)(info->seq * 31u + 7u);
  for (int i = 0; i < FB; i++)
    if (a[i] != want || b[i] != want) {
      st->bad_bytes++;
      break;
    }
  if (st->got && info->seq <= st->last_seq) st->out_of_order++;
  st->last_seq = info->seq;
  st->got++;
  return 0;
}

static void *stress_consumer(void *arg) {
  stress *st = arg;
  while (lg_device_ring_consume(st->r, check_read, st, -1, NULL) != LG_EEOF) {
  }
  lg_device_ring_finish(st->r);
  return NULL;
}

static void test_two_threads(void **state) {
  (void)state;
  lg_device_ring *r = lg_device_ring_new(g_be, W, H, 8, 4);
  stress st = {.r = r};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, stress_consumer, &st), 0);
  int refused = 0;
  for (uint64_t i = 0; i < STRESS_FRAMES; i++) {
    lg_tensor f;
    int slot = lg_device_ring_acquire(r, &f);
    if (slot == LG_EAGAIN) { /* cannot happen: the producer holds one slot at a time */
      refused++;
      continue;
    }
    assert_true(slot >= 0);
    uint8_t buf[FB];
    memset(buf, (uint8_t)(i * 31u + 7u), sizeof buf); /* seq == i: one publish per frame */
    lg_tensor_upload(&f, buf);
    assert_int_equal(lg_device_ring_publish(r, slot, (int64_t)i), 0);
  }
  lg_device_ring_close(r);
  assert_true(lg_device_ring_wait_finished(r, 10.0));
  pthread_join(th, NULL);
  lg_device_ring_stats s;
  lg_device_ring_get_stats(r, &s);
  assert_int_equal(refused, 0);
  assert_int_equal(st.bad_bytes, 0);
  assert_int_equal(st.out_of_order, 0);
  assert_int_equal(s.published, STRESS_FRAMES);
  assert_int_equal(s.consumed + s.dropped, STRESS_FRAMES);
  assert_int_equal((uint64_t)st.got, s.consumed);
  assert_true(st.got > 0);
  lg_device_ring_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_order_and_info),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_full_queue_drops_oldest),
      cmocka_unit_test(test_acquire_steals_oldest_queued),
      cmocka_unit_test(test_slot_held_until_read_enqueued),
      cmocka_unit_test(test_stream_order_protects_slots),
      cmocka_unit_test(test_publish_and_close_wake_consumer),
      cmocka_unit_test(test_close_drains_queue_then_eof),
      cmocka_unit_test(test_consume_timeout),
      cmocka_unit_test(test_wait_finished),
      cmocka_unit_test(test_two_threads),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
