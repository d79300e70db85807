/* test_serve_e2e.c: the whole service in-process on the CPU, as a viewer and a control
 * client see it: test source (GStreamer videotestsrc) -> tiny random-weight engine (64x64)
 * -> libx264 -> /ws/stream. A WebSocket client decodes both streams with libavcodec (frame
 * count, size, increasing timestamps, starting at a keyframe); a prompt/strength change over
 * /ws/control is acknowledged and shows in GET /api/v1/status; malformed control messages get
 * errors while frames keep coming; /metrics is valid Prometheus text with frames counted;
 * pause freezes the state; the service shuts down promptly. 127.0.0.1, a free port.
 * Threads: the test thread drives the clients; lg_serve runs its own threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../e2e/h264_check.h"
#include "../e2e/prom_check.h"
#include "../e2e/ws_client.h"
#include "config.h"
#include "lg_base.h"
#include "serve.h"

#include <jansson.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 64
#define H 64

static lg_serve *g_sv;
static int g_port;

static int setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  lg_log_set_level(LG_LOG_WARN);
  lg_config cfg;
  lg_config_defaults(&cfg);
  char err[512];
  const char *sets[] = {"server.port=0",      "engine.width=64",        "engine.height=64",
                        "engine.backend=cpu", "input=test:ball",        "output.codec=libx264",
                        "output.keyint=8",    "output.bitrate_kbps=300"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (lg_config_set(&cfg, sets[i], err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return -1;
    }
  snprintf(cfg.model.cache_dir, sizeof cfg.model.cache_dir, "%s/test_cache", LG_BINARY_DIR);
  if (lg_config_validate(&cfg, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  g_sv = lg_serve_new(&cfg, err, sizeof err);
  if (!g_sv) {
    fprintf(stderr, "lg_serve_new: %s\n", err);
    return -1;
  }
  g_port = lg_serve_port(g_sv);
  return g_port > 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  double t = lg_now();
  lg_serve_free(&g_sv);
  double dt = lg_now() - t;
  if (dt > 10) {
    fprintf(stderr, "shutdown took %.1f s\n", dt);
    return -1;
  }
  return 0;
}

static json_t *get_json(const char *path, int *status) {
  char *body;
  *status = http_request(g_port, "GET", path, NULL, NULL, 0, &body, NULL, 5);
  json_t *j = body ? json_loads(body, 0, NULL) : NULL;
  free(body);
  return j;
}

typedef struct viewer {
  ws_client c;
  bool got_config;
  int frames, keys, bad;
  int64_t last_pts;
  int width, height;
  char codec[32];
  h264_dec dec;
} viewer;

static void viewer_consume(viewer *v) {
  ws_msg *m;
  while ((m = ws_client_next(&v->c, 0))) {
    if (!m->binary) {
      json_t *j = json_loads((const char *)m->data, 0, NULL);
      assert_non_null(j);
      assert_string_equal(json_string_value(json_object_get(j, "type")), "config");
      assert_string_equal(json_string_value(json_object_get(j, "format")), "annexb");
      v->width = (int)json_integer_value(json_object_get(j, "width"));
      v->height = (int)json_integer_value(json_object_get(j, "height"));
      snprintf(v->codec, sizeof v->codec, "%s", json_string_value(json_object_get(j, "codec")));
      assert_true(json_number_value(json_object_get(j, "fps")) > 0);
      v->got_config = true;
      json_decref(j);
    } else {
      assert_true(v->got_config);
      assert_true(m->len > 9);
      int64_t pts = 0;
      for (int i = 0; i < 8; i++)
        pts = (pts << 8) | m->data[1 + i];
      bool key = m->data[0] & 1;
      if (v->frames == 0)
        assert_true(key);
      else
        assert_true(pts > v->last_pts);
      v->last_pts = pts;
      v->keys += key;
      v->frames++;
      if (h264_dec_feed(&v->dec, m->data + 9, m->len - 9)) v->bad++;
    }
    ws_msg_free(m);
  }
}

static bool viewer_has(ws_client *c, void *arg) {
  (void)c;
  viewer *v = arg;
  viewer_consume(v);
  return v->frames >= 8;
}

static void test_stream_output_and_input(void **state) {
  (void)state;
  int st;
  json_t *j = get_json("/health", &st);
  assert_int_equal(st, 200);
  json_decref(j);

  viewer out, in;
  memset(&out, 0, sizeof out);
  memset(&in, 0, sizeof in);
  assert_int_equal(h264_dec_open(&out.dec), 0);
  assert_int_equal(h264_dec_open(&in.dec), 0);
  assert_int_equal(ws_client_open(&out.c, g_port, "/ws/stream?source=output", NULL), 0);
  assert_int_equal(ws_client_open(&in.c, g_port, "/ws/stream?source=input", NULL), 0);
  /* The tiny model on 2 CPU cores makes a few frames per second after loading. */
  double end = lg_now() + 120;
  while (lg_now() < end && (out.frames < 8 || in.frames < 8)) {
    ws_client_run(&out.c, 0.05, viewer_has, &out);
    ws_client_run(&in.c, 0.05, viewer_has, &in);
  }
  h264_dec_feed(&out.dec, NULL, 0);
  h264_dec_feed(&in.dec, NULL, 0);
  assert_true(out.frames >= 8);
  assert_true(in.frames >= 8);
  assert_int_equal(out.bad + in.bad, 0);
  assert_true(out.dec.frames >= out.frames - 1); /* every access unit decodes */
  assert_int_equal(out.dec.width, W);
  assert_int_equal(out.dec.height, H);
  assert_int_equal(out.width, W);
  assert_int_equal(in.dec.width, W);
  assert_memory_equal(out.codec, "avc1.42", 7);

  j = get_json("/api/v1/status", &st);
  assert_int_equal(st, 200);
  const char *state_s = json_string_value(json_object_get(j, "state"));
  assert_string_equal(state_s, "running");
  json_t *stats = json_object_get(j, "stats");
  if (json_integer_value(json_object_get(stats, "frames_out")) < 8) {
    char *d = json_dumps(j, 0);
    fail_msg("status after %d output frames: %s", out.frames, d);
  }
  assert_true(json_integer_value(json_object_get(stats, "frames_in")) >= 8);
  assert_int_equal(json_integer_value(json_object_get(stats, "viewers")), 2);
  assert_true(json_number_value(json_object_get(stats, "ttff_s")) > 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "model"), "width")), W);
  json_decref(j);
  ws_client_close(&out.c);
  ws_client_close(&in.c);
  h264_dec_close(&out.dec);
  h264_dec_close(&in.dec);
}

static json_t *next_of(ws_client *c, const char *type, double timeout) {
  double end = lg_now() + timeout;
  while (lg_now() < end) {
    ws_msg *m = ws_client_next(c, end - lg_now());
    if (!m) return NULL;
    json_t *j = json_loads((const char *)m->data, 0, NULL);
    ws_msg_free(m);
    assert_non_null(j);
    if (!strcmp(json_string_value(json_object_get(j, "type")), type)) return j;
    json_decref(j);
  }
  return NULL;
}

static void test_control(void **state) {
  (void)state;
  ws_client c;
  assert_int_equal(ws_client_open(&c, g_port, "/ws/control", NULL), 0);
  assert_true(ws_client_run(&c, 5, ws_is_established, NULL));
  const char *msg = "{\"type\":\"params\",\"prompt\":\"a red fox in snow\",\"strength\":0.6,"
                    "\"steps\":1,\"seed\":5,\"blend\":0.5,\"id\":\"p1\"}";
  ws_client_send(&c, msg, strlen(msg), false);
  json_t *j = next_of(&c, "ack", 5);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "id")), "p1");
  json_decref(j);
  int st;
  j = get_json("/api/v1/status", &st);
  json_t *p = json_object_get(j, "params");
  assert_string_equal(json_string_value(json_object_get(p, "prompt")), "a red fox in snow");
  assert_true(json_number_value(json_object_get(p, "strength")) == 0.6);
  assert_int_equal(json_integer_value(json_object_get(p, "steps")), 1);
  assert_int_equal(json_integer_value(json_object_get(p, "seed")), 5);
  json_decref(j);

  /* Malformed messages: errors, connection kept, stream unaffected. */
  const char *bad[] = {"{\"type\":\"params\",\"strength\":2}", "not json", "{\"type\":\"fly\"}",
                       "{\"type\":\"params\",\"steps\":0}",
                       "{\"type\":\"input\",\"input\":\"gopher:x\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ws_client_send(&c, bad[i], strlen(bad[i]), false);
    j = next_of(&c, "error", 5);
    if (!j) fail_msg("no error answer for %s", bad[i]);
    json_decref(j);
  }
  j = get_json("/api/v1/status", &st);
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"), "prompt")),
                      "a red fox in snow");
  json_decref(j);

  /* Frames still flow after the bad messages. */
  viewer v;
  memset(&v, 0, sizeof v);
  assert_int_equal(h264_dec_open(&v.dec), 0);
  assert_int_equal(ws_client_open(&v.c, g_port, "/ws/stream", NULL), 0);
  double end = lg_now() + 60;
  while (lg_now() < end && v.frames < 3)
    ws_client_run(&v.c, 0.1, viewer_has, &v);
  assert_true(v.frames >= 3);
  assert_int_equal(v.bad, 0);
  ws_client_close(&v.c);
  h264_dec_close(&v.dec);

  /* Pause / resume over the control socket show in the status. */
  ws_client_send(&c, "{\"type\":\"pause\"}", 16, false);
  j = next_of(&c, "ack", 5);
  assert_non_null(j);
  assert_true(json_is_true(json_object_get(json_object_get(j, "params"), "paused")));
  json_decref(j);
  j = get_json("/api/v1/status", &st);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "paused");
  json_decref(j);
  /* Frozen: no new engine frames while paused, even from a chunk that was running. */
  struct timespec settle = {0, 200 * 1000000};
  nanosleep(&settle, NULL);
  j = get_json("/api/v1/status", &st);
  json_int_t out_a = json_integer_value(json_object_get(json_object_get(j, "stats"), "frames_out"));
  json_decref(j);
  struct timespec hold = {2, 0};
  nanosleep(&hold, NULL);
  j = get_json("/api/v1/status", &st);
  json_int_t out_b = json_integer_value(json_object_get(json_object_get(j, "stats"), "frames_out"));
  json_decref(j);
  assert_int_equal(out_a, out_b);
  ws_client_send(&c, "{\"type\":\"resume\"}", 17, false);
  j = next_of(&c, "ack", 5);
  assert_non_null(j);
  json_decref(j);
  /* Periodic status pushes arrive about once a second. */
  j = next_of(&c, "status", 3);
  assert_non_null(j);
  assert_non_null(json_object_get(j, "stats"));
  json_decref(j);
  ws_client_close(&c);
}

static void test_metrics(void **state) {
  (void)state;
  char *body;
  int st = http_request(g_port, "GET", "/metrics", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 200);
  char why[256];
  int n = prom_check_text(body, why, sizeof why);
  if (n < 0) fail_msg("%s", why);
  assert_true(prom_sample(body, "livegen_frames_out_total") >= 8);
  assert_true(prom_sample(body, "livegen_frames_in_total") >= 8);
  assert_true(prom_sample(body, "livegen_stage_latency_seconds_count{stage=\"total\"}") >= 1);
  assert_true(prom_sample(body, "livegen_stage_latency_seconds_count{stage=\"encode\"}") >= 8);
  assert_true(prom_sample(body, "livegen_stage_latency_seconds_count{stage=\"dit\"}") >= 1);
  assert_true(prom_sample(body, "livegen_encoder_bitrate_bps") > 0);
  free(body);
}

/* One 64x64 JPEG (mid grey with a bright square at x) from libavcodec's mjpeg encoder. */
static int make_jpeg(int x, uint8_t **out, size_t *n) {
  const AVCodec *c = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  if (!c) return -1;
  AVCodecContext *ctx = avcodec_alloc_context3(c);
  ctx->width = W;
  ctx->height = H;
  ctx->pix_fmt = AV_PIX_FMT_YUVJ420P;
  ctx->time_base = (AVRational){1, 16};
  if (avcodec_open2(ctx, c, NULL) < 0) return -1;
  AVFrame *f = av_frame_alloc();
  f->format = ctx->pix_fmt;
  f->width = W;
  f->height = H;
  av_frame_get_buffer(f, 0);
  for (int y = 0; y < H; y++)
    for (int k = 0; k < W; k++)
      f->data[0][y * f->linesize[0] + k] = (k >= x && k < x + 16 && y < 16) ? 235 : 128;
  for (int y = 0; y < H / 2; y++) {
    memset(f->data[1] + y * f->linesize[1], 128, W / 2);
    memset(f->data[2] + y * f->linesize[2], 128, W / 2);
  }
  f->pts = 0;
  AVPacket *pkt = av_packet_alloc();
  int rc = -1;
  if (avcodec_send_frame(ctx, f) == 0 && avcodec_receive_packet(ctx, pkt) == 0) {
    *out = malloc((size_t)pkt->size);
    memcpy(*out, pkt->data, (size_t)pkt->size);
    *n = (size_t)pkt->size;
    rc = 0;
  }
  av_packet_free(&pkt);
  av_frame_free(&f);
  avcodec_free_context(&ctx);
  return rc;
}

/* Polls the service (input switches happen there) until status.input == want. */
static bool wait_input(const char *want, double timeout) {
  double end = lg_now() + timeout;
  while (lg_now() < end) {
    assert_int_equal(lg_serve_poll(g_sv), 0);
    int st;
    json_t *j = get_json("/api/v1/status", &st);
    bool ok = j && !strcmp(json_string_value(json_object_get(j, "input")), want);
    json_decref(j);
    if (ok) return true;
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
  }
  return false;
}

static double frames_in(void) {
  char *body;
  http_request(g_port, "GET", "/metrics", NULL, NULL, 0, &body, NULL, 5);
  double v = body ? prom_sample(body, "livegen_frames_in_total") : -1;
  free(body);
  return v;
}

/* The page's camera path: switch the input to "ws", publish JPEGs over /ws/publish, and
 * see them counted as input frames; a non-JPEG gets an error; then switch back. */
static void test_input_switch_and_publish(void **state) {
  (void)state;
  ws_client c;
  assert_int_equal(ws_client_open(&c, g_port, "/ws/control", NULL), 0);
  assert_true(ws_client_run(&c, 5, ws_is_established, NULL));
  const char *sw = "{\"type\":\"input\",\"input\":\"ws\",\"id\":1}";
  ws_client_send(&c, sw, strlen(sw), false);
  json_t *j = next_of(&c, "ack", 5);
  assert_non_null(j);
  json_decref(j);
  assert_true(wait_input("ws", 10));

  ws_client pub;
  assert_int_equal(ws_client_open(&pub, g_port, "/ws/publish", NULL), 0);
  assert_true(ws_client_run(&pub, 5, ws_is_established, NULL));
  struct timespec ts = {0, 300 * 1000000};
  nanosleep(&ts, NULL); /* the ws pipeline starts */
  double before = frames_in();
  for (int i = 0; i < 12; i++) {
    uint8_t *jpg = NULL;
    size_t n = 0;
    assert_int_equal(make_jpeg(i * 4, &jpg, &n), 0);
    ws_client_send(&pub, jpg, n, true);
    free(jpg);
    ws_client_run(&pub, 0.1, NULL, NULL);
    lg_serve_poll(g_sv);
  }
  double end = lg_now() + 10, after = before;
  while (lg_now() < end && after < before + 3) {
    ws_client_run(&pub, 0.2, NULL, NULL);
    after = frames_in();
  }
  assert_true(after >= before + 3);
  ws_client_send(&pub, "not a jpeg", 10, true);
  ws_msg *m = ws_client_next(&pub, 5);
  assert_non_null(m);
  assert_non_null(strstr((const char *)m->data, "\"error\""));
  ws_msg_free(m);
  ws_client_close(&pub);

  sw = "{\"type\":\"input\",\"input\":\"test:smpte\"}";
  ws_client_send(&c, sw, strlen(sw), false);
  j = next_of(&c, "ack", 5);
  assert_non_null(j);
  json_decref(j);
  assert_true(wait_input("test:smpte", 10));
  ws_client_close(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_output_and_input),
      cmocka_unit_test(test_control),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_input_switch_and_publish),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
