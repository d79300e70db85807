/* test_packet_ring.c: the encoded-packet ring: new readers start at a keyframe, readers see
 * every packet in order with its timestamp, an overrun or lagging reader skips to the next
 * keyframe (never a P-frame without its reference), a reader never slows the writer or other
 * readers, close/EOF, and a threaded writer with concurrent readers. Main thread plus the
 * reader threads it starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lg_base.h"
#include "packet_ring.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Packet i: key every 4th, payload = 8 bytes of i then (i % 50) filler bytes. */
static size_t make_packet(uint64_t i, uint8_t *buf) {
  memcpy(buf, &i, 8);
  size_t n = 8 + (size_t)(i % 50);
  for (size_t k = 8; k < n; k++)
    buf[k] = (uint8_t)(i + k);
  return n;
}

static void write_n(lg_packet_ring *r, uint64_t from, uint64_t n) {
  uint8_t buf[64];
  for (uint64_t i = from; i < from + n; i++) {
    size_t sz = make_packet(i, buf);
    assert_int_equal(lg_packet_ring_write(r, buf, sz, (int64_t)i * 1000, i % 4 == 0), 0);
  }
}

static uint64_t check_packet(const uint8_t *buf, const lg_packet_meta *m) {
  uint64_t i;
  memcpy(&i, buf, 8);
  assert_int_equal(m->seq, i);
  assert_int_equal(m->size, 8 + i % 50);
  assert_int_equal(m->pts_us, (int64_t)i * 1000);
  assert_int_equal(m->key, i % 4 == 0);
  for (size_t k = 8; k < m->size; k++)
    assert_int_equal(buf[k], (uint8_t)(i + k));
  return i;
}

static void test_new_reader_starts_at_next_keyframe(void **state) {
  (void)state;
  lg_packet_ring *r = lg_packet_ring_new(16);
  assert_non_null(r);
  write_n(r, 0, 6); /* 0..5: keys at 0 and 4 */
  lg_packet_reader rd;
  lg_packet_reader_init(r, &rd, 0);
  uint8_t buf[64];
  lg_packet_meta m;
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), LG_EAGAIN);
  assert_false(lg_packet_ring_readable(r, &rd));
  write_n(r, 6, 2); /* 6, 7: not keys */
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), LG_EAGAIN);
  write_n(r, 8, 3); /* 8 is a key */
  assert_true(lg_packet_ring_readable(r, &rd));
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 8);
  assert_true(m.key);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 9);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 10);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), LG_EAGAIN);
  lg_packet_ring_free(&r);
  assert_null(r);
  lg_packet_ring_free(&r); /* NULL is fine */
}

static void test_in_order_and_small_buffer(void **state) {
  (void)state;
  lg_packet_ring *r = lg_packet_ring_new(8);
  lg_packet_reader rd;
  lg_packet_reader_init(r, &rd, 0);
  uint8_t buf[64];
  lg_packet_meta m;
  uint64_t expect = 0;
  for (int round = 0; round < 20; round++) {
    write_n(r, expect, 5);
    for (int k = 0; k < 5; k++) {
      /* Too small a buffer: ERANGE with the size needed, position kept. */
      if (k == 2 && (expect % 50) > 0) {
        assert_int_equal(lg_packet_ring_read(r, &rd, buf, 8, &m), LG_ERANGE);
        assert_int_equal(m.size, 8 + expect % 50);
      }
      assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
      assert_int_equal(check_packet(buf, &m), expect);
      assert_int_equal(m.skipped, 0);
      expect++;
    }
  }
  assert_int_equal(rd.skipped_total, 0);
  assert_int_equal(lg_packet_ring_head(r), 100);
  lg_packet_ring_free(&r);
}

static void test_overrun_skips_to_next_keyframe(void **state) {
  (void)state;
  lg_packet_ring *r = lg_packet_ring_new(8);
  lg_packet_reader slow, fast;
  lg_packet_reader_init(r, &slow, 0);
  lg_packet_reader_init(r, &fast, 0);
  uint8_t buf[64];
  lg_packet_meta m;
  write_n(r, 0, 2);
  assert_int_equal(lg_packet_ring_read(r, &slow, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 0);
  /* The writer runs far ahead of slow (never blocked); fast keeps up. */
  for (uint64_t i = 2; i < 30; i++) {
    write_n(r, i, 1);
    assert_int_equal(lg_packet_ring_read(r, &fast, buf, sizeof buf, &m), 0);
    assert_int_equal(check_packet(buf, &m), i == 2 ? 0 : i); /* fast started at key 0 */
    if (i == 2) {
      assert_int_equal(lg_packet_ring_read(r, &fast, buf, sizeof buf, &m), 0);
      assert_int_equal(lg_packet_ring_read(r, &fast, buf, sizeof buf, &m), 0);
      assert_int_equal(check_packet(buf, &m), 2);
    }
  }
  /* Ring holds 22..29; slow was at 1: it must resume at key 24, not at P-frame 22. */
  assert_int_equal(lg_packet_ring_read(r, &slow, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 24);
  assert_true(m.key);
  assert_int_equal(m.skipped, 23);
  for (uint64_t i = 25; i < 30; i++) {
    assert_int_equal(lg_packet_ring_read(r, &slow, buf, sizeof buf, &m), 0);
    assert_int_equal(check_packet(buf, &m), i);
  }
  assert_int_equal(lg_packet_ring_read(r, &slow, buf, sizeof buf, &m), LG_EAGAIN);
  lg_packet_ring_free(&r);
}

static void test_max_lag_skips(void **state) {
  (void)state;
  lg_packet_ring *r = lg_packet_ring_new(64);
  lg_packet_reader rd;
  lg_packet_reader_init(r, &rd, 6);
  uint8_t buf[64];
  lg_packet_meta m;
  write_n(r, 0, 1);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  write_n(r, 1, 20); /* head 21; window 15..20 holds key 16 */
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(check_packet(buf, &m), 16);
  assert_int_equal(m.skipped, 15);
  assert_int_equal(rd.skipped_total, 15);
  lg_packet_ring_free(&r);
}

static void test_close_and_bad_writes(void **state) {
  (void)state;
  assert_null(lg_packet_ring_new(1));
  lg_packet_ring *r = lg_packet_ring_new(4);
  uint8_t buf[64] = {0};
  assert_int_equal(lg_packet_ring_write(r, buf, 0, 0, true), LG_EINVAL);
  assert_int_equal(lg_packet_ring_write(r, buf, (size_t)LG_PACKET_MAX_BYTES + 1, 0, true),
                   LG_EINVAL);
  lg_packet_reader rd;
  lg_packet_reader_init(r, &rd, 0);
  write_n(r, 0, 2);
  lg_stream_info info = {.width = 64, .height = 32, .fps_num = 16, .fps_den = 1};
  strcpy(info.codec, "avc1.42E01E");
  assert_int_equal(lg_packet_ring_get_info(r, NULL), 0);
  lg_packet_ring_set_info(r, &info);
  lg_stream_info got;
  assert_int_equal(lg_packet_ring_get_info(r, &got), 1);
  assert_string_equal(got.codec, "avc1.42E01E");
  assert_int_equal(got.width, 64);
  lg_packet_ring_close(r);
  assert_int_equal(lg_packet_ring_write(r, buf, 4, 0, true), LG_EINVAL);
  lg_packet_meta m;
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), 0);
  assert_int_equal(lg_packet_ring_read(r, &rd, buf, sizeof buf, &m), LG_EEOF);
  assert_int_equal(lg_packet_ring_wait_read(r, &rd, buf, sizeof buf, &m, 1000), LG_EEOF);
  lg_packet_ring_free(&r);
}

typedef struct {
  lg_packet_ring *r;
  int delay_every; /* sleep 1 ms every N packets (a slow reader) */
  uint64_t got, skipped, last, bad_order, p_after_gap;
} reader_ctx;

static void *reader_main(void *arg) {
  reader_ctx *c = arg;
  lg_packet_reader rd;
  lg_packet_reader_init(c->r, &rd, 0);
  uint8_t buf[64];
  lg_packet_meta m;
  bool have = false;
  for (;;) {
    int rc = lg_packet_ring_wait_read(c->r, &rd, buf, sizeof buf, &m, 2000);
    if (rc == LG_EEOF) break;
    if (rc == LG_EAGAIN) continue;
    if (rc != 0) break;
    uint64_t i;
    memcpy(&i, buf, 8);
    if (i != m.seq || m.size != 8 + i % 50) c->bad_order++;
    if (have && i <= c->last) c->bad_order++;
    if (!have && !m.key) c->p_after_gap++;
    if (m.skipped && !m.key) c->p_after_gap++;
    c->last = i;
    have = true;
    c->got++;
    if (c->delay_every && c->got % (uint64_t)c->delay_every == 0) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  c->skipped = rd.skipped_total;
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  lg_packet_ring *r = lg_packet_ring_new(32);
  reader_ctx ctx[3] = {{.r = r}, {.r = r, .delay_every = 1}, {.r = r}};
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reader_main, &ctx[i]), 0);
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL); /* readers positioned before packet 0 */
  double t0 = lg_now();
  const uint64_t total = 20000;
  write_n(r, 0, total);
  double write_s = lg_now() - t0;
  lg_packet_ring_close(r);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ctx[i].bad_order, 0);
    assert_int_equal(ctx[i].p_after_gap, 0);
    assert_true(ctx[i].got > 0);
    assert_int_equal(ctx[i].last, total - 1); /* all reach the end */
  }
  /* The sleeping reader cannot keep up with 20000 packets written in a burst: it skipped,
   * and the writer was not held back by it (a 1 ms sleep per packet would take 20 s). */
  assert_true(ctx[1].skipped > 0);
  assert_true(ctx[1].got + ctx[1].skipped <= total);
  assert_true(write_s < 5.0);
  lg_packet_ring_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_reader_starts_at_next_keyframe),
      cmocka_unit_test(test_in_order_and_small_buffer),
      cmocka_unit_test(test_overrun_skips_to_next_keyframe),
      cmocka_unit_test(test_max_lag_skips),
      cmocka_unit_test(test_close_and_bad_writes),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
