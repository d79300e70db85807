/* test_ingest.c: GStreamer ingest end to end: a live test pattern arrives at the configured
 * size and rate, a file made here with ffmpeg plays and its end closes the ring, JPEG frames
 * pushed over "ws" come out as frames, ffmpeg can publish RTMP into the rtmp-listen endpoint
 * (twice, one after the other), an SRT listener receives a GStreamer SRT caller, and a lost
 * live input is reported and retried with backoff. Everything on 127.0.0.1, bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "frame_ring.h"
#include "ingest.h"
#include "lg_base.h"
#include "streaming_test_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { W = 64, H = 48 };

static char g_dir[512];

/* Pops frames for `seconds`; returns how many, and whether consecutive frames differed. */
static int pop_for(lg_frame_ring *r, double seconds, int *changed, int *eof) {
  static uint8_t a[W * H * 3], b[W * H * 3];
  int n = 0;
  double end = lg_now() + seconds;
  if (changed) *changed = 0;
  if (eof) *eof = 0;
  while (lg_now() < end) {
    int rc = lg_frame_ring_pop(r, n % 2 ? b : a, sizeof(a), NULL, 0.1);
    if (rc == LG_EEOF) {
      if (eof) *eof = 1;
      break;
    }
    if (rc != 0) continue;
    if (n > 0 && changed && memcmp(a, b, sizeof(a)) != 0) *changed = 1;
    n++;
  }
  return n;
}

/* Waits up to `seconds` for the first frame; returns 0 when one arrived. */
static int wait_first(lg_frame_ring *r, double seconds) {
  static uint8_t f[W * H * 3];
  double end = lg_now() + seconds;
  while (lg_now() < end)
    if (lg_frame_ring_pop(r, f, sizeof(f), NULL, 0.1) == 0) return 0;
  return -1;
}

static void test_bad_uris_are_refused(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 4);
  const char *bad[] = {"",
                       "foo",
                       "test:",
                       "test:ball ! fakesink",
                       "v4l2:video0",
                       "rtmp-listen:abc/live/key",
                       "rtmp-listen:1935/live",
                       "rtmp-listen:1935/a/b?x=1",
                       "file:/nonexistent/clip.mp4"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    lg_ingest *in = lg_ingest_new(bad[i], W, H, 10, r, NULL);
    if (in) fprintf(stderr, "accepted bad uri `%s`\n", bad[i]);
    assert_null(in);
  }
  assert_null(lg_ingest_new("test:ball", W + 1, H, 10, r, NULL)); /* ring size mismatch */
  lg_ingest_kind k;
  assert_int_equal(lg_ingest_parse_kind("srt://127.0.0.1:9000?mode=listener", &k), 0);
  assert_int_equal(k, LG_INGEST_KIND_URI);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:0.0.0.0:1935/live/key", &k), 0);
  assert_int_equal(k, LG_INGEST_KIND_RTMP_LISTEN);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:1935", &k), 0);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:", &k), LG_EINVAL);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:99999", &k), LG_EINVAL);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:localhost:1935", &k), 0);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:a/b:1935", &k), LG_EINVAL);
  assert_int_equal(lg_ingest_parse_kind("rtmp-listen:[::1]:1935", &k), LG_EINVAL);
  lg_frame_ring_free(&r);
}

static void test_test_pattern_size_and_rate(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 4);
  lg_ingest *in = lg_ingest_new("test:ball", W, H, 15, r, NULL);
  assert_non_null(in);
  assert_int_equal(wait_first(r, 5.0), 0);
  int changed = 0;
  int n = pop_for(r, 2.0, &changed, NULL);
  /* 15 fps for 2 s: 30 frames, with slack for a loaded 2-core CI machine. */
  fprintf(stderr, "test:ball: %d frames in 2 s\n", n);
  assert_true(n >= 20 && n <= 36);
  assert_true(changed); /* the ball moves */
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  assert_int_equal(st.state, LG_INGEST_STATE_RUNNING);
  assert_int_equal(st.kind, LG_INGEST_KIND_TEST);
  assert_true(st.frames >= (uint64_t)n);
  lg_ingest_free(&in);
  assert_null(in);
  lg_frame_ring_free(&r);
}

static void test_file_plays_then_eos_closes_ring(void **state) {
  (void)state;
  char clip[700], cmd[1500];
  snprintf(clip, sizeof(clip), "%s/clip.mp4", g_dir);
  snprintf(cmd, sizeof(cmd),
           "ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=160x120:rate=25 "
           "-f lavfi -i sine=frequency=440 -t 1.6 -c:v libx264 -preset ultrafast "
           "-pix_fmt yuv420p -c:a aac '%s'", /* with a sound track livegen ignores */
           clip);
  assert_int_equal(st_run(cmd, 30), 0);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 64);
  char uri[800];
  snprintf(uri, sizeof(uri), "file:%s", clip);
  double t0 = lg_now();
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, NULL);
  assert_non_null(in);
  int eof = 0, changed = 0;
  int n = pop_for(r, 15.0, &changed, &eof);
  double dt = lg_now() - t0;
  fprintf(stderr, "file: %d frames, eof=%d after %.2f s\n", n, eof, dt);
  assert_true(eof);                /* the end of the file closed the ring */
  assert_true(n >= 13 && n <= 18); /* 1.6 s at 10 fps */
  assert_true(changed);
  assert_true(dt >= 1.2); /* played in real time, not as fast as possible */
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  assert_int_equal(st.state, LG_INGEST_STATE_EOS);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_corrupt_file_fails_and_closes_ring(void **state) {
  (void)state;
  char path[700];
  snprintf(path, sizeof(path), "%s/corrupt.mp4", g_dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  lg_rng rng;
  lg_rng_seed(&rng, 7);
  for (int i = 0; i < 4096; i++)
    fputc((int)(lg_rng_next(&rng) & 0xff), f);
  fclose(f);
  char uri[800];
  snprintf(uri, sizeof(uri), "file:%s", path);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 4);
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, NULL);
  assert_non_null(in);
  static uint8_t out[W * H * 3];
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 10.0), LG_EEOF);
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  fprintf(stderr, "corrupt file: %s: %s\n", lg_ingest_state_name(st.state), st.last_error);
  assert_int_equal(st.state, LG_INGEST_STATE_FAILED);
  assert_true(st.last_error[0] != 0);
  assert_int_equal(st.reconnects, 0); /* a file is not retried */
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_ws_jpeg_frames(void **state) {
  (void)state;
  char jpg[700], cmd[1500];
  snprintf(jpg, sizeof(jpg), "%s/f.jpg", g_dir);
  snprintf(cmd, sizeof(cmd),
           "ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=320x240 -frames:v 1 '%s'", jpg);
  assert_int_equal(st_run(cmd, 30), 0);
  FILE *f = fopen(jpg, "rb");
  assert_non_null(f);
  static uint8_t data[1 << 20];
  size_t len = fread(data, 1, sizeof(data), f);
  fclose(f);
  assert_true(len > 100);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 8);
  lg_ingest *in = lg_ingest_new("ws", W, H, 10, r, NULL);
  assert_non_null(in);
  /* Not JPEG: refused with a clear error, the ingest keeps working. */
  uint8_t junk[64] = {1, 2, 3};
  assert_int_equal(lg_ingest_push_jpeg(in, junk, sizeof(junk)), LG_EFORMAT);
  int pushed = 0;
  double end = lg_now() + 3.0;
  while (lg_now() < end) {
    if (lg_ingest_push_jpeg(in, data, len) == 0) pushed++;
    usleep(50000);
  }
  assert_true(pushed >= 20);
  static uint8_t out[W * H * 3];
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 2.0), 0);
  long sum = 0;
  for (size_t i = 0; i < sizeof(out); i++)
    sum += out[i];
  assert_true(sum > 0); /* the test card, not black */
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  fprintf(stderr, "ws: pushed %d jpeg, %llu frames\n", pushed, (unsigned long long)st.frames);
  assert_true(st.frames >= 10);
  assert_int_equal(st.state, LG_INGEST_STATE_RUNNING);
  lg_frame_ring *r2 = lg_frame_ring_new(W, H, 2);
  lg_ingest *t = lg_ingest_new("test:snow", W, H, 10, r2, NULL);
  assert_int_equal(lg_ingest_push_jpeg(t, data, len), LG_ENOTSUP);
  lg_ingest_free(&t);
  lg_frame_ring_free(&r2);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_rtmp_listen_accepts_ffmpeg_publish(void **state) {
  (void)state;
  int port = st_free_port(SOCK_STREAM);
  assert_true(port > 0);
  char uri[128], cmd[1024];
  snprintf(uri, sizeof(uri), "rtmp-listen:%d", port); /* 127.0.0.1, app/key live/stream */
  lg_frame_ring *r = lg_frame_ring_new(W, H, 8);
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, NULL);
  assert_non_null(in);
  for (int round = 0; round < 2; round++) { /* a second publisher after the first left */
    usleep(300000);
    lg_ingest_status st;
    lg_ingest_get_status(in, &st);
    assert_int_equal(st.state, LG_INGEST_STATE_WAITING);
    snprintf(cmd, sizeof(cmd),
             "exec ffmpeg -nostdin -v error -re -f lavfi -i testsrc=size=160x120:rate=15 %s "
             "-t 2.5 -c:v libx264 -preset ultrafast -tune zerolatency -g 15 -f flv "
             "rtmp://127.0.0.1:%d/live/%s",
             /* the second publisher sends sound too, as OBS always does */
             round ? "-f lavfi -i sine -c:a aac" : "", port, round ? "another-key" : "stream");
    pid_t pid = st_spawn(cmd);
    assert_true(pid > 0);
    assert_int_equal(wait_first(r, 10.0), 0);
    int changed = 0;
    int n = pop_for(r, 1.0, &changed, NULL);
    fprintf(stderr, "rtmp-listen round %d: %d frames in 1 s\n", round, n);
    assert_true(n >= 5 && n <= 15);
    assert_true(changed);
    lg_ingest_get_status(in, &st);
    assert_int_equal(st.state, LG_INGEST_STATE_RUNNING);
    int rc = st_wait(pid, 15.0);
    if (rc < 0) st_kill(pid);
    assert_int_equal(rc, 0); /* ffmpeg published successfully */
    /* Publisher gone: back to waiting for the next one. */
    double end = lg_now() + 5.0;
    do {
      usleep(100000);
      lg_ingest_get_status(in, &st);
    } while (st.state != LG_INGEST_STATE_WAITING && lg_now() < end);
    assert_int_equal(st.state, LG_INGEST_STATE_WAITING);
    lg_frame_ring_flush(r);
  }
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_rtmp_pull_from_nginx(void **state) {
  (void)state;
  /* livegen pulls from a real RTMP server. It connects before anyone publishes (the server
   * turns it away), retries, and gets frames once ffmpeg publishes. */
  int port = st_free_port(SOCK_STREAM);
  pid_t ngx = st_nginx_rtmp_start(g_dir, port);
  assert_true(ngx > 0);
  char uri[128], cmd[1024];
  snprintf(uri, sizeof(uri), "rtmp://127.0.0.1:%d/live/cam", port);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 8);
  lg_ingest_options o;
  lg_ingest_options_default(&o);
  o.reconnect_min_s = 0.2;
  o.reconnect_max_s = 0.5;
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, &o);
  assert_non_null(in);
  usleep(800000);
  snprintf(cmd, sizeof(cmd),
           "exec ffmpeg -nostdin -v error -re -f lavfi -i testsrc=size=160x120:rate=15 "
           "-f lavfi -i sine -t 8 -c:v libx264 -preset ultrafast -tune zerolatency -g 15 "
           "-c:a aac -f flv %s",
           uri);
  pid_t pub = st_spawn(cmd);
  double t_pub = lg_now();
  int first = wait_first(r, 15.0);
  double latency = lg_now() - t_pub;
  int changed = 0;
  int n = first == 0 ? pop_for(r, 1.0, &changed, NULL) : 0;
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  fprintf(stderr, "rtmp pull: first=%d after %.2f s, %d frames in 1 s, %d reconnects\n", first,
          latency, n, st.reconnects);
  lg_ingest_free(&in);
  st_kill(pub);
  st_kill(ngx);
  assert_int_equal(first, 0);
  assert_true(latency < 6.0);     /* live, not held until the publisher stops */
  assert_true(n >= 5 && n <= 15); /* 10 fps, not a burst of stale frames */
  assert_true(changed);
  assert_int_equal(st.state, LG_INGEST_STATE_RUNNING);
  lg_frame_ring_free(&r);
}

static void test_srt_listener_receives_caller(void **state) {
  (void)state;
  int port = st_free_port(SOCK_DGRAM);
  assert_true(port > 0);
  char uri[128], cmd[1024];
  snprintf(uri, sizeof(uri), "srt://127.0.0.1:%d?mode=listener", port);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 8);
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, NULL);
  assert_non_null(in);
  snprintf(cmd, sizeof(cmd),
           "exec gst-launch-1.0 -q videotestsrc is-live=true pattern=ball num-buffers=90 ! "
           "video/x-raw,width=160,height=120,framerate=30/1 ! x264enc tune=zerolatency "
           "speed-preset=ultrafast key-int-max=15 ! mpegtsmux ! "
           "srtsink uri='srt://127.0.0.1:%d?mode=caller' latency=100",
           port);
  pid_t pid = st_spawn(cmd);
  int first = wait_first(r, 10.0);
  int changed = 0;
  int n = first == 0 ? pop_for(r, 1.0, &changed, NULL) : 0;
  st_kill(pid);
  fprintf(stderr, "srt: first=%d, %d frames in 1 s\n", first, n);
  assert_int_equal(first, 0);
  assert_true(n >= 5 && n <= 15);
  assert_true(changed);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_lost_live_input_is_retried_with_backoff(void **state) {
  (void)state;
  /* An RTMP server that is not there: the pull fails and is retried, doubling the wait. */
  int port = st_free_port(SOCK_STREAM);
  char uri[128];
  snprintf(uri, sizeof(uri), "rtmp://127.0.0.1:%d/live/none", port);
  lg_frame_ring *r = lg_frame_ring_new(W, H, 2);
  lg_ingest_options o;
  lg_ingest_options_default(&o);
  o.reconnect_min_s = 0.2;
  o.reconnect_max_s = 0.8;
  lg_ingest *in = lg_ingest_new(uri, W, H, 10, r, &o);
  assert_non_null(in);
  lg_ingest_status st;
  double end = lg_now() + 10.0;
  do {
    usleep(100000);
    lg_ingest_get_status(in, &st);
  } while (st.reconnects < 3 && lg_now() < end);
  fprintf(stderr, "lost input: state %s, %d reconnects, last error: %s\n",
          lg_ingest_state_name(st.state), st.reconnects, st.last_error);
  assert_true(st.reconnects >= 3);
  assert_true(st.state == LG_INGEST_STATE_RECONNECTING || st.state == LG_INGEST_STATE_STARTING);
  assert_true(st.last_error[0] != 0);
  lg_frame_ring_stats rs;
  lg_frame_ring_get_stats(r, &rs);
  assert_int_equal(rs.closed, 0); /* a live input loss does not end the session */
  double t0 = lg_now();
  lg_ingest_free(&in); /* stops promptly even mid-backoff */
  assert_true(lg_now() - t0 < 3.0);
  /* Same with a cap on retries: gives up, reports failed, closes the ring. */
  o.max_reconnects = 1;
  in = lg_ingest_new(uri, W, H, 10, r, &o);
  end = lg_now() + 10.0;
  do {
    usleep(100000);
    lg_ingest_get_status(in, &st);
  } while (st.state != LG_INGEST_STATE_FAILED && lg_now() < end);
  assert_int_equal(st.state, LG_INGEST_STATE_FAILED);
  static uint8_t out[W * H * 3];
  assert_int_equal(lg_frame_ring_pop(r, out, sizeof(out), NULL, 1.0), LG_EEOF);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_missing_webcam_reported(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 2);
  lg_ingest_options o;
  lg_ingest_options_default(&o);
  o.reconnect_min_s = 0.2;
  lg_ingest *in = lg_ingest_new("v4l2:/dev/video-lg-missing", W, H, 10, r, &o);
  assert_non_null(in); /* a webcam may be plugged in later: retried like any live input */
  lg_ingest_status st;
  double end = lg_now() + 10.0;
  do {
    usleep(100000);
    lg_ingest_get_status(in, &st);
  } while (st.reconnects < 1 && lg_now() < end);
  fprintf(stderr, "v4l2: %s, %s\n", lg_ingest_state_name(st.state), st.last_error);
  assert_true(st.reconnects >= 1);
  assert_true(strlen(st.last_error) > 0);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static void test_whip_status_follows_ring(void **state) {
  (void)state;
  lg_frame_ring *r = lg_frame_ring_new(W, H, 2);
  lg_ingest *in = lg_ingest_new("whip", W, H, 10, r, NULL);
  assert_non_null(in);
  lg_ingest_status st;
  lg_ingest_get_status(in, &st);
  assert_int_equal(st.state, LG_INGEST_STATE_WAITING);
  static uint8_t f[W * H * 3];
  lg_frame_ring_push(r, f, W * 3, 0); /* what webrtc.c does for each decoded WHIP frame */
  lg_frame_ring_push(r, f, W * 3, 1);
  lg_ingest_get_status(in, &st);
  assert_int_equal(st.state, LG_INGEST_STATE_RUNNING);
  assert_int_equal(st.frames, 2);
  assert_int_equal(lg_ingest_push_jpeg(in, f, 10), LG_ENOTSUP);
  lg_ingest_free(&in);
  lg_frame_ring_free(&r);
}

static int setup(void **state) {
  (void)state;
  return st_tmpdir(g_dir, sizeof(g_dir), "ingest");
}

static int teardown(void **state) {
  (void)state;
  st_rmdir(g_dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_uris_are_refused),
      cmocka_unit_test(test_test_pattern_size_and_rate),
      cmocka_unit_test(test_file_plays_then_eos_closes_ring),
      cmocka_unit_test(test_corrupt_file_fails_and_closes_ring),
      cmocka_unit_test(test_ws_jpeg_frames),
      cmocka_unit_test(test_rtmp_listen_accepts_ffmpeg_publish),
      cmocka_unit_test(test_rtmp_pull_from_nginx),
      cmocka_unit_test(test_srt_listener_receives_caller),
      cmocka_unit_test(test_lost_live_input_is_retried_with_backoff),
      cmocka_unit_test(test_missing_webcam_reported),
      cmocka_unit_test(test_whip_status_follows_ring),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
