/* test_rtmp_push.c: livegen pushes its encoded stream to a real RTMP server (nginx with
 * libnginx-mod-rtmp started here on a free loopback port) and ffprobe plays it back; while
 * the server is down the push retries with backoff without ever slowing the encoder, and it
 * reconnects by itself when the server comes (back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "lg_base.h"
#include "packet_ring.h"
#include "rtmp_push.h"
#include "streaming_test_enc.h"
#include "streaming_test_probe.h"
#include "streaming_test_util.h"

static char g_dir[512];

static lg_mux_state wait_state(lg_rtmp_push *p, lg_mux_state want, double timeout_s,
                               lg_mux_output_status *st) {
  double end = lg_now() + timeout_s;
  do {
    usleep(50000);
    lg_rtmp_push_get_status(p, st);
  } while (st->state != want && lg_now() < end);
  return st->state;
}

static void test_push_to_nginx_then_ffprobe_plays_it(void **state) {
  (void)state;
  int port = st_free_port(SOCK_STREAM);
  pid_t ngx = st_nginx_rtmp_start(g_dir, port);
  assert_true(ngx > 0);
  char url[128], out[700];
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/lg", port);
  snprintf(out, sizeof(out), "%s/probe1.txt", g_dir);
  lg_packet_ring *ring = lg_packet_ring_new(128);
  lg_rtmp_push *push = lg_rtmp_push_new(ring, url, NULL);
  assert_non_null(push);
  st_source src = {.ring = ring,
                   .width = 160,
                   .height = 120,
                   .fps = 25,
                   .keyint = 12,
                   .frames = 100,
                   .close_at_end = false};
  assert_int_equal(st_source_start(&src), 0);
  lg_mux_output_status st;
  assert_int_equal(wait_state(push, LG_MUX_STATE_RUNNING, 10, &st), LG_MUX_STATE_RUNNING);
  pid_t probe = st_ffprobe_start(url, out); /* a viewer of the RTMP server */
  st_source_join(&src);
  lg_rtmp_push_get_status(push, &st);
  fprintf(stderr, "pushed %llu packets, %llu bytes, %d connects\n", (unsigned long long)st.packets,
          (unsigned long long)st.bytes, st.connects);
  assert_int_equal(st.connects, 1);
  assert_true(st.packets >= 95);
  lg_rtmp_push_free(&push); /* ends the RTMP stream: the viewer sees the end */
  st_probe pr;
  int rc = st_ffprobe_finish(probe, out, 20, &pr);
  st_kill(ngx);
  assert_int_equal(rc, 0);
  assert_string_equal(pr.codec, "h264");
  assert_int_equal(pr.width, 160);
  assert_int_equal(pr.height, 120);
  assert_true(pr.frames >= 40); /* joined about a second in, played to the end */
  lg_packet_ring_free(&ring);
}

static void test_push_retries_and_reconnects(void **state) {
  (void)state;
  int port = st_free_port(SOCK_STREAM);
  char url[128], out[700];
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/re", port);
  snprintf(out, sizeof(out), "%s/probe2.txt", g_dir);
  lg_packet_ring *ring = lg_packet_ring_new(64);
  lg_rtmp_push_options o = {.reconnect_min_s = 0.2, .reconnect_max_s = 0.8, .io_timeout_s = 3};
  lg_rtmp_push *push = lg_rtmp_push_new(ring, url, &o);
  assert_non_null(push);
  st_source src = {.ring = ring,
                   .width = 128,
                   .height = 96,
                   .fps = 25,
                   .keyint = 10,
                   .frames = 300,
                   .close_at_end = false};
  assert_int_equal(st_source_start(&src), 0);
  /* No server yet: the push fails, backs off, fails again... */
  lg_mux_output_status st;
  double end = lg_now() + 8;
  do {
    usleep(100000);
    lg_rtmp_push_get_status(push, &st);
  } while (st.failures < 3 && lg_now() < end);
  fprintf(stderr, "no server: state %s, %d failures, %s\n", lg_mux_state_name(st.state),
          st.failures, st.last_error);
  assert_true(st.failures >= 3);
  assert_int_equal(st.state, LG_MUX_STATE_RECONNECTING);
  assert_int_equal(st.packets, 0);
  /* The server appears: the push connects by itself. */
  pid_t ngx = st_nginx_rtmp_start(g_dir, port);
  assert_true(ngx > 0);
  assert_int_equal(wait_state(push, LG_MUX_STATE_RUNNING, 10, &st), LG_MUX_STATE_RUNNING);
  usleep(1000000);
  /* The server dies mid-stream: detected, retried; it comes back: the push resumes. */
  st_kill(ngx);
  assert_int_equal(wait_state(push, LG_MUX_STATE_RECONNECTING, 10, &st), LG_MUX_STATE_RECONNECTING);
  ngx = st_nginx_rtmp_start(g_dir, port);
  assert_true(ngx > 0);
  assert_int_equal(wait_state(push, LG_MUX_STATE_RUNNING, 10, &st), LG_MUX_STATE_RUNNING);
  assert_true(st.connects >= 2);
  st_probe pr;
  pid_t probe = st_ffprobe_start(url, out);
  usleep(2500000);
  lg_rtmp_push_free(&push);
  int rc = st_ffprobe_finish(probe, out, 20, &pr);
  st_kill(ngx);
  st_source_join(&src); /* the source ran the whole time, never blocked */
  fprintf(stderr, "slowest packet ring write: %.3f ms\n", src.max_write_s * 1e3);
  assert_true(src.max_write_s < 0.05);
  assert_int_equal(src.err, 0);
  assert_int_equal(rc, 0);
  assert_string_equal(pr.codec, "h264");
  assert_int_equal(pr.width, 128);
  assert_true(pr.frames >= 20);
  lg_packet_ring_free(&ring);
}

static void test_bad_url_refused(void **state) {
  (void)state;
  lg_packet_ring *ring = lg_packet_ring_new(8);
  assert_null(lg_rtmp_push_new(ring, "http://127.0.0.1/live", NULL));
  assert_null(lg_rtmp_push_new(ring, "", NULL));
  lg_packet_ring_free(&ring);
}

static int setup(void **state) {
  (void)state;
  return st_tmpdir(g_dir, sizeof(g_dir), "rtmp");
}

static int teardown(void **state) {
  (void)state;
  st_rmdir(g_dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_to_nginx_then_ffprobe_plays_it),
      cmocka_unit_test(test_push_retries_and_reconnects),
      cmocka_unit_test(test_bad_url_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
