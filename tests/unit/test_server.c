/* test_server.c: the HTTP/WebSocket server on 127.0.0.1 (a free port) as the page and
 * tools use it, with a TEST-ONLY PASSTHROUGH in place of the engine: the test encodes
 * synthetic RGB frames with lg_encoder into the packet ring itself. Checked: /health,
 * /api/v1/status, /metrics (Prometheus line syntax), static files and 404s (no path
 * traversal), POST /api/v1/params|pause (ack, 400 on bad values, 413 on huge bodies),
 * /ws/control (acks with id, errors for malformed/oversize messages without losing the
 * connection, periodic status), /ws/stream (config then decodable Annex B access units with
 * increasing pts, starting at a keyframe), a stalled viewer skipping to a keyframe while
 * another gets everything, /ws/publish, and WHEP/WHIP hooks (201 + Location, DELETE, 503).
 * Threads: the test thread drives the clients; the server runs its own service thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../e2e/h264_check.h"
#include "../e2e/prom_check.h"
#include "../e2e/ws_client.h"
#include "encoder.h"
#include "lg_base.h"
#include "server.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define W 64
#define H 48

/* ---- fake service ---- */

typedef struct svc {
  pthread_mutex_t mu;
  lg_ctl_params cur;
  int publish_ok, publish_bad;
  atomic_int key_requests;
  lg_encoder *enc;
} svc;

static svc g_svc;

static int s_set_params(void *user, const lg_ctl_params *p, unsigned has, lg_ctl_params *now,
                        char *err, size_t errn) {
  (void)err;
  (void)errn;
  svc *f = user;
  pthread_mutex_lock(&f->mu);
  if (has & LG_CTL_HAS_PROMPT) strcpy(f->cur.prompt, p->prompt);
  if (has & LG_CTL_HAS_STRENGTH) f->cur.strength = p->strength;
  if (has & LG_CTL_HAS_STEPS) f->cur.steps = p->steps;
  if (has & LG_CTL_HAS_SEED) f->cur.seed = p->seed;
  if (has & LG_CTL_HAS_BLEND) f->cur.blend = p->blend;
  *now = f->cur;
  pthread_mutex_unlock(&f->mu);
  return 0;
}
static int s_set_paused(void *user, bool paused, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  svc *f = user;
  pthread_mutex_lock(&f->mu);
  f->cur.paused = paused;
  *now = f->cur;
  pthread_mutex_unlock(&f->mu);
  return 0;
}
static int s_reset(void *user, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  svc *f = user;
  pthread_mutex_lock(&f->mu);
  *now = f->cur;
  pthread_mutex_unlock(&f->mu);
  return 0;
}
static void s_get_status(void *user, lg_ctl_status *st) {
  svc *f = user;
  strcpy(st->state, "running");
  pthread_mutex_lock(&f->mu);
  st->params = f->cur;
  pthread_mutex_unlock(&f->mu);
  strcpy(st->input, "test:passthrough");
  strcpy(st->gpu_name, "cpu");
  strcpy(st->dit, "passthrough (test only)");
  strcpy(st->decoder, "none");
  st->width = W;
  st->height = H;
}
static int s_publish(void *user, const uint8_t *data, size_t n) {
  svc *f = user;
  if (n < 4 || data[0] != 0xFF || data[1] != 0xD8) {
    f->publish_bad++;
    return LG_EFORMAT;
  }
  f->publish_ok++;
  return 0;
}
static void s_want_key(void *user, lg_stream_source src) {
  svc *f = user;
  (void)src;
  atomic_fetch_add(&f->key_requests, 1);
  if (f->enc) lg_encoder_request_keyframe(f->enc);
}

/* WHEP/WHIP: answers at once from inside the hook for WHEP, from another thread for WHIP. */
static lg_server *g_srv;
static char g_closed_id[80];

typedef struct later {
  uint64_t req;
} later;

static void *answer_later(void *arg) {
  later *l = arg;
  struct timespec ts = {0, 50000000};
  nanosleep(&ts, NULL);
  lg_server_sdp_answer(g_srv, l->req, 201, "v=0\r\nanswer-whip\r\n", "pub1", NULL);
  free(l);
  return NULL;
}

static int s_offer(void *user, lg_sdp_kind kind, uint64_t req, const char *sdp, size_t n) {
  (void)user;
  if (n < 3 || strncmp(sdp, "v=0", 3)) return LG_EFORMAT;
  if (kind == LG_SDP_WHEP)
    return lg_server_sdp_answer(g_srv, req, 201, "v=0\r\nanswer\r\n", "abc", NULL);
  later *l = malloc(sizeof *l);
  l->req = req;
  pthread_t th;
  pthread_create(&th, NULL, answer_later, l);
  pthread_detach(th);
  return 0;
}
static int s_close(void *user, lg_sdp_kind kind, const char *id) {
  (void)user;
  (void)kind;
  if (strcmp(id, "abc") && strcmp(id, "pub1")) return LG_ENOTFOUND;
  snprintf(g_closed_id, sizeof g_closed_id, "%s", id);
  return 0;
}

/* ---- fixture ---- */

static lg_packet_ring *g_rings[2];
static lg_metrics *g_metrics;
static int g_port;
static char g_web[128];

static int setup(void **state) {
  (void)state;
  memset(&g_svc, 0, sizeof g_svc);
  pthread_mutex_init(&g_svc.mu, NULL);
  strcpy(g_svc.cur.prompt, "start");
  g_svc.cur.steps = 2;
  g_svc.cur.strength = 0.5;
  snprintf(g_web, sizeof g_web, "/tmp/lg_test_srv_XXXXXX");
  if (!mkdtemp(g_web)) return -1;
  char p[256];
  snprintf(p, sizeof p, "%s/index.html", g_web);
  FILE *f = fopen(p, "w");
  fputs("<html>livegen test page</html>\n", f);
  fclose(f);
  g_rings[0] = lg_packet_ring_new(256);
  g_rings[1] = lg_packet_ring_new(64);
  g_metrics = lg_metrics_new();
  lg_server_opts o;
  memset(&o, 0, sizeof o);
  strcpy(o.host, "127.0.0.1");
  o.port = 0;
  snprintf(o.web_root, sizeof o.web_root, "%s", g_web);
  o.max_viewers = 4;
  o.rings[0] = g_rings[0];
  o.rings[1] = g_rings[1];
  o.metrics = g_metrics;
  o.control = (lg_control_ops){&g_svc, s_set_params, s_set_paused, s_reset, NULL, s_get_status};
  o.webrtc = (lg_webrtc_hooks){NULL, s_offer, s_close};
  o.user = &g_svc;
  o.publish_jpeg = s_publish;
  o.want_keyframe = s_want_key;
  o.status_interval_s = 0.2;
  char err[256];
  g_srv = lg_server_new(&o, err, sizeof err);
  if (!g_srv) return -1;
  g_port = lg_server_port(g_srv);
  if (g_port <= 0) return -1;
  return lg_server_start(g_srv);
}

static int teardown(void **state) {
  (void)state;
  lg_server_free(&g_srv);
  lg_packet_ring_free(&g_rings[0]);
  lg_packet_ring_free(&g_rings[1]);
  lg_metrics_free(&g_metrics);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_web);
  return system(cmd) == 0 ? 0 : -1;
}

static json_t *get_json(const char *path, int *status) {
  char *body;
  *status = http_request(g_port, "GET", path, NULL, NULL, 0, &body, NULL, 5);
  json_t *j = body ? json_loads(body, 0, NULL) : NULL;
  free(body);
  return j;
}

static json_t *post_json(const char *path, const char *body, int *status) {
  char *resp;
  *status = http_request(g_port, "POST", path, "application/json", body, body ? strlen(body) : 0,
                         &resp, NULL, 5);
  json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
  if (!j && resp) fprintf(stderr, "not JSON: %s\n", resp);
  free(resp);
  return j;
}

/* ---- HTTP ---- */

static void test_http(void **state) {
  (void)state;
  int st;
  json_t *j = get_json("/health", &st);
  assert_int_equal(st, 200);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
  json_decref(j);

  j = get_json("/api/v1/status", &st);
  assert_int_equal(st, 200);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"), "prompt")),
                      "start");
  assert_non_null(json_object_get(json_object_get(j, "stats"), "viewers"));
  json_decref(j);

  char *body, *hdr;
  st = http_request(g_port, "GET", "/metrics", NULL, NULL, 0, &body, &hdr, 5);
  assert_int_equal(st, 200);
  assert_non_null(strcasestr(hdr, "content-type: text/plain; version=0.0.4"));
  char why[256];
  int samples = prom_check_text(body, why, sizeof why);
  if (samples < 0) fail_msg("%s", why);
  assert_true(samples > 10);
  assert_true(prom_sample(body, "livegen_viewers") == 0);
  free(body);
  free(hdr);

  st = http_request(g_port, "GET", "/", NULL, NULL, 0, &body, &hdr, 5);
  assert_int_equal(st, 200);
  assert_non_null(strstr(body, "livegen test page"));
  assert_non_null(strcasestr(hdr, "text/html"));
  free(body);
  free(hdr);
  st = http_request(g_port, "GET", "/index.html", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 200);
  free(body);
  st = http_request(g_port, "GET", "/nope.js", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 404);
  free(body);
  st = http_request(g_port, "GET", "/../../../etc/passwd", NULL, NULL, 0, &body, NULL, 5);
  assert_true(st == 404 || st == 403 || st == 400);
  assert_true(!body || !strstr(body, "root:"));
  free(body);
  st = http_request(g_port, "GET", "/%2e%2e/%2e%2e/etc/passwd", NULL, NULL, 0, &body, NULL, 5);
  assert_true(st == 404 || st == 403 || st == 400);
  assert_true(!body || !strstr(body, "root:"));
  free(body);
  j = get_json("/api/v1/nothing", &st);
  assert_int_equal(st, 404);
  assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
  json_decref(j);
  j = post_json("/health", "{}", &st);
  assert_int_equal(st, 405);
  json_decref(j);
}

static void test_http_control(void **state) {
  (void)state;
  int st;
  json_t *j = post_json("/api/v1/params", "{\"prompt\":\"a cat\",\"strength\":0.3,\"id\":7}", &st);
  assert_int_equal(st, 200);
  assert_string_equal(json_string_value(json_object_get(j, "type")), "ack");
  assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
  json_decref(j);
  j = get_json("/api/v1/status", &st);
  json_t *p = json_object_get(j, "params");
  assert_string_equal(json_string_value(json_object_get(p, "prompt")), "a cat");
  assert_true(json_real_value(json_object_get(p, "strength")) == 0.3);
  json_decref(j);

  j = post_json("/api/v1/params", "{\"steps\":9}", &st);
  assert_int_equal(st, 400);
  assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
  assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "steps"));
  json_decref(j);
  j = post_json("/api/v1/params", "{bad json", &st);
  assert_int_equal(st, 400);
  json_decref(j);
  j = post_json("/api/v1/params", NULL, &st);
  assert_int_equal(st, 400);
  json_decref(j);

  j = post_json("/api/v1/pause", NULL, &st);
  assert_int_equal(st, 200);
  assert_true(json_is_true(json_object_get(json_object_get(j, "params"), "paused")));
  json_decref(j);
  j = post_json("/api/v1/resume", "", &st);
  assert_int_equal(st, 200);
  assert_true(json_is_false(json_object_get(json_object_get(j, "params"), "paused")));
  json_decref(j);
  j = post_json("/api/v1/reset", NULL, &st);
  assert_int_equal(st, 200);
  json_decref(j);

  /* A 200 KB body is refused and the server keeps serving. */
  size_t big = 200 * 1024;
  char *b = malloc(big + 1);
  memset(b, ' ', big);
  b[0] = '{';
  b[big - 1] = '}';
  b[big] = 0;
  j = post_json("/api/v1/params", b, &st);
  assert_int_equal(st, 413);
  json_decref(j);
  free(b);
  j = get_json("/health", &st);
  assert_int_equal(st, 200);
  json_decref(j);
}

static void test_webrtc_hooks(void **state) {
  (void)state;
  char *body, *hdr;
  const char *offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n";
  int st = http_request(g_port, "POST", "/whep", "application/sdp", offer, strlen(offer), &body,
                        &hdr, 5);
  assert_int_equal(st, 201);
  assert_string_equal(body, "v=0\r\nanswer\r\n");
  assert_non_null(strcasestr(hdr, "location: /whep/abc"));
  assert_non_null(strcasestr(hdr, "content-type: application/sdp"));
  free(body);
  free(hdr);
  st = http_request(g_port, "POST", "/whip", "application/sdp", offer, strlen(offer), &body, &hdr,
                    5);
  assert_int_equal(st, 201); /* answered 50 ms later from another thread */
  assert_string_equal(body, "v=0\r\nanswer-whip\r\n");
  assert_non_null(strcasestr(hdr, "location: /whip/pub1"));
  free(body);
  free(hdr);
  st = http_request(g_port, "POST", "/whep", "application/sdp", "hello", 5, &body, NULL, 5);
  assert_int_equal(st, 400);
  free(body);
  st = http_request(g_port, "DELETE", "/whep/abc", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 200);
  assert_string_equal(g_closed_id, "abc");
  free(body);
  st = http_request(g_port, "DELETE", "/whep/zzz", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 404);
  free(body);
  st = http_request(g_port, "DELETE", "/whep/a%2Fb", NULL, NULL, 0, &body, NULL, 5);
  assert_int_equal(st, 404);
  free(body);
}

/* ---- /ws/control ---- */

static json_t *next_json(ws_client *c, const char *type, double timeout) {
  double end = ws_now() + timeout;
  while (ws_now() < end) {
    ws_msg *m = ws_client_next(c, end - ws_now());
    if (!m) return NULL;
    json_t *j = m->binary ? NULL : json_loads((const char *)m->data, 0, NULL);
    ws_msg_free(m);
    if (!j) fail_msg("control message is not JSON");
    if (!type || !strcmp(json_string_value(json_object_get(j, "type")), type)) return j;
    json_decref(j);
  }
  return NULL;
}

static void test_ws_control(void **state) {
  (void)state;
  ws_client c;
  assert_int_equal(ws_client_open(&c, g_port, "/ws/control", NULL), 0);
  assert_true(ws_client_run(&c, 5, ws_is_established, NULL));
  json_t *j = next_json(&c, "status", 3); /* pushed on connect */
  assert_non_null(j);
  json_decref(j);

  const char *msg = "{\"type\":\"params\",\"prompt\":\"neon city\",\"strength\":0.8,\"id\":\"x\"}";
  ws_client_send(&c, msg, strlen(msg), false);
  j = next_json(&c, "ack", 3);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "id")), "x");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"), "prompt")),
                      "neon city");
  json_decref(j);

  /* Bad messages: each gets an error, the connection stays. */
  const char *bad[] = {"{oops", "{\"type\":\"params\",\"steps\":\"two\"}", "{\"type\":\"explode\"}",
                       "[]", "{\"type\":\"params\",\"strength\":7}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ws_client_send(&c, bad[i], strlen(bad[i]), false);
    j = next_json(&c, "error", 3);
    if (!j) fail_msg("no error for '%s'", bad[i]);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
  }
  ws_client_send(&c, "\x01\x02", 2, true);
  j = next_json(&c, "error", 3);
  assert_non_null(j);
  json_decref(j);
  /* 100 KiB message, sent in one frame. */
  size_t big = 100 * 1024;
  char *b = malloc(big);
  memset(b, 'a', big);
  ws_client_send(&c, b, big, false);
  free(b);
  j = next_json(&c, "error", 5);
  assert_non_null(j);
  assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "too large"));
  json_decref(j);

  /* Still served: a status request is answered with the id, and pushes keep coming. */
  ws_client_send(&c, "{\"type\":\"status\",\"id\":3}", 24, false);
  double t0 = ws_now();
  bool got_answer = false;
  int pushes = 0;
  while (ws_now() - t0 < 3 && (!got_answer || pushes < 2)) {
    j = next_json(&c, "status", 1);
    if (!j) break;
    if (json_integer_value(json_object_get(j, "id")) == 3)
      got_answer = true;
    else
      pushes++;
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"), "prompt")),
                        "neon city");
    json_decref(j);
  }
  assert_true(got_answer);
  assert_true(pushes >= 2);
  assert_false(c.closed);
  ws_client_close(&c);

  /* Unknown WebSocket paths are refused. */
  assert_int_equal(ws_client_open(&c, g_port, "/ws/other", NULL), 0);
  assert_false(ws_client_run(&c, 2, ws_is_established, NULL));
  ws_client_close(&c);
}

/* ---- /ws/stream ---- */

typedef struct enc_ctx {
  lg_packet_ring *ring;
  lg_server *srv;
  bool first_done;
  lg_encoder *enc;
} enc_ctx;

static int to_ring(void *user, const uint8_t *data, size_t size, int64_t pts_us, bool key) {
  enc_ctx *e = user;
  if (key && !lg_packet_ring_get_info(e->ring, NULL)) {
    lg_stream_info info = {0};
    lg_encoder_size(e->enc, &info.width, &info.height);
    info.fps_num = 16;
    info.fps_den = 1;
    snprintf(info.codec, sizeof info.codec, "%s", lg_encoder_codec_string(e->enc));
    lg_packet_ring_set_info(e->ring, &info);
  }
  int rc = lg_packet_ring_write(e->ring, data, size, pts_us, key);
  lg_server_wake(e->srv);
  return rc;
}

typedef struct viewer_state {
  bool got_config;
  int frames, keys, bad;
  int64_t last_pts;
  h264_dec dec;
  char codec[32];
  int width, height;
} viewer_state;

static void consume(ws_client *c, viewer_state *v) {
  ws_msg *m;
  while ((m = c->rx_head)) {
    c->rx_head = m->next;
    if (!c->rx_head) c->rx_tail = NULL;
    if (!m->binary) {
      json_t *j = json_loads((const char *)m->data, 0, NULL);
      assert_non_null(j);
      assert_string_equal(json_string_value(json_object_get(j, "type")), "config");
      assert_string_equal(json_string_value(json_object_get(j, "format")), "annexb");
      snprintf(v->codec, sizeof v->codec, "%s", json_string_value(json_object_get(j, "codec")));
      v->width = (int)json_integer_value(json_object_get(j, "width"));
      v->height = (int)json_integer_value(json_object_get(j, "height"));
      assert_true(json_number_value(json_object_get(j, "fps")) == 16);
      v->got_config = true;
      json_decref(j);
    } else {
      assert_true(v->got_config); /* config comes first */
      assert_true(m->len > 9);
      int64_t pts = 0;
      for (int i = 0; i < 8; i++)
        pts = (pts << 8) | m->data[1 + i];
      bool key = m->data[0] & 1;
      assert_int_equal(m->data[0] & ~1, 0);
      if (v->frames == 0) assert_true(key); /* a viewer starts at a keyframe */
      if (v->frames > 0) assert_true(pts > v->last_pts);
      v->last_pts = pts;
      v->keys += key;
      v->frames++;
      if (h264_dec_feed(&v->dec, m->data + 9, m->len - 9)) v->bad++;
    }
    ws_msg_free(m);
  }
}

static void test_ws_stream(void **state) {
  (void)state;
  lg_encoder_opts eo = {0};
  strcpy(eo.codec, "libx264");
  eo.width = W;
  eo.height = H;
  eo.fps_num = 16;
  eo.fps_den = 1;
  eo.bitrate_kbps = 300;
  eo.keyint = 8;
  strcpy(eo.preset, "ultrafast");
  eo.threads = 1;
  enc_ctx e = {g_rings[0], g_srv, false, NULL};
  e.enc = lg_encoder_new(&eo, NULL, 0);
  assert_non_null(e.enc);
  g_svc.enc = e.enc;

  ws_client a, b;
  viewer_state va, vb;
  memset(&va, 0, sizeof va);
  memset(&vb, 0, sizeof vb);
  assert_int_equal(h264_dec_open(&va.dec), 0);
  assert_int_equal(h264_dec_open(&vb.dec), 0);
  assert_int_equal(ws_client_open(&a, g_port, "/ws/stream?source=output", NULL), 0);
  assert_true(ws_client_run(&a, 5, ws_is_established, NULL));
  assert_int_equal(ws_client_open(&b, g_port, "/ws/stream", "livegen-stream"), 0);
  assert_true(ws_client_run(&b, 5, ws_is_established, NULL));
  /* The server counts both viewers (status, metrics). */
  for (int i = 0; i < 100 && lg_server_viewers(g_srv) != 2; i++)
    ws_client_run(&a, 0.02, NULL, NULL);
  assert_int_equal(lg_server_viewers(g_srv), 2);
  assert_true(atomic_load(&g_svc.key_requests) >= 2); /* joining viewers asked for keys */

  /* PASSTHROUGH (test only): synthetic frames straight into the encoder. */
  uint8_t rgb[W * H * 3];
  const int n = 40;
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < W * H; k++) {
      rgb[3 * k] = (uint8_t)(k + i * 3);
      rgb[3 * k + 1] = (uint8_t)(i * 5);
      rgb[3 * k + 2] = 128;
    }
    assert_int_equal(lg_encoder_encode(e.enc, rgb, W * 3, 1000000 + i * 62500, to_ring, &e), 0);
    ws_client_run(&a, 0.01, NULL, NULL);
    ws_client_run(&b, 0.01, NULL, NULL);
    consume(&a, &va);
    consume(&b, &vb);
  }
  double end = ws_now() + 5;
  while (ws_now() < end && (va.frames < n || vb.frames < n)) {
    ws_client_run(&a, 0.02, NULL, NULL);
    ws_client_run(&b, 0.02, NULL, NULL);
    consume(&a, &va);
    consume(&b, &vb);
  }
  h264_dec_feed(&va.dec, NULL, 0);
  h264_dec_feed(&vb.dec, NULL, 0);
  /* Both joined before the first frame: they get every frame, decodable, in order. */
  assert_int_equal(va.frames, n);
  assert_int_equal(vb.frames, n);
  assert_int_equal(va.dec.frames, n);
  assert_int_equal(vb.dec.frames, n);
  assert_int_equal(va.bad + vb.bad, 0);
  assert_int_equal(va.dec.width, W);
  assert_int_equal(va.dec.height, H);
  assert_int_equal(va.width, W);
  assert_int_equal(va.height, H);
  assert_memory_equal(va.codec, "avc1.42", 7);
  assert_true(va.keys >= n / 8);

  /* A viewer joining mid-stream starts at a keyframe (requested for it). */
  ws_client c;
  viewer_state vc;
  memset(&vc, 0, sizeof vc);
  assert_int_equal(h264_dec_open(&vc.dec), 0);
  assert_int_equal(ws_client_open(&c, g_port, "/ws/stream", NULL), 0);
  assert_true(ws_client_run(&c, 5, ws_is_established, NULL));
  ws_client_run(&c, 0.1, NULL, NULL);
  for (int i = n; i < n + 3; i++) {
    memset(rgb, i, sizeof rgb);
    assert_int_equal(lg_encoder_encode(e.enc, rgb, W * 3, 1000000 + i * 62500, to_ring, &e), 0);
  }
  end = ws_now() + 5;
  while (ws_now() < end && vc.frames < 3) {
    ws_client_run(&c, 0.02, NULL, NULL);
    consume(&c, &vc);
  }
  assert_true(vc.frames >= 1);
  assert_int_equal(vc.bad, 0);
  assert_true(vc.dec.frames >= 1); /* decodable from its first packet */

  ws_client_close(&a);
  ws_client_close(&b);
  ws_client_close(&c);
  for (int i = 0; i < 100 && lg_server_viewers(g_srv) != 0; i++) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(lg_server_viewers(g_srv), 0);
  h264_dec_close(&va.dec);
  h264_dec_close(&vb.dec);
  h264_dec_close(&vc.dec);
  g_svc.enc = NULL;
  lg_encoder_free(&e.enc);
}

/* A viewer that stops reading falls behind and resumes at a keyframe; a reading viewer gets
 * every packet; the writer is never held back. Packets here are raw ring entries (the
 * server does not parse them): 9-byte-free payloads carrying their sequence number. */
static void test_slow_viewer(void **state) {
  (void)state;
  lg_packet_ring *ring = g_rings[1]; /* the input source: 64 slots */
  lg_stream_info info = {.width = 32, .height = 32, .fps_num = 16, .fps_den = 1};
  strcpy(info.codec, "avc1.42C01E");
  lg_packet_ring_set_info(ring, &info);
  ws_client fast, slow;
  assert_int_equal(ws_client_open(&fast, g_port, "/ws/stream?source=input", NULL), 0);
  assert_true(ws_client_run(&fast, 5, ws_is_established, NULL));
  assert_int_equal(ws_client_open(&slow, g_port, "/ws/stream?source=input", NULL), 0);
  assert_true(ws_client_run(&slow, 5, ws_is_established, NULL));
  ws_client_run(&fast, 0.05, NULL, NULL);
  ws_client_run(&slow, 0.05, NULL, NULL);

  const size_t psize = 256 * 1024;
  uint8_t *pk = calloc(1, psize);
  const int total = 300; /* 75 MB: far more than socket buffers hold */
  uint64_t got_fast = 0, expect_fast = 0;
  bool fast_ok = true, fast_started = false;
  double t0 = lg_now(), write_s = 0;
  for (int i = 0; i < total; i++) {
    memcpy(pk, &i, sizeof i);
    double tw = lg_now();
    assert_int_equal(lg_packet_ring_write(ring, pk, psize, i * 1000, i % 10 == 0), 0);
    write_s += lg_now() - tw;
    lg_server_wake(g_srv);
    /* Only the fast client is serviced; the slow one's socket fills up. */
    double until = ws_now() + 0.5;
    while (ws_now() < until) {
      ws_client_run(&fast, 0.005, NULL, NULL);
      ws_msg *m;
      while ((m = ws_client_next(&fast, 0))) {
        if (m->binary) {
          int seq;
          memcpy(&seq, m->data + 9, sizeof seq);
          if (!fast_started) {
            fast_started = true;
            expect_fast = (uint64_t)seq;
            if (seq % 10) fast_ok = false;
          }
          if ((uint64_t)seq != expect_fast) fast_ok = false;
          expect_fast = (uint64_t)seq + 1;
          got_fast++;
        }
        ws_msg_free(m);
      }
      if (expect_fast == (uint64_t)i + 1) break;
    }
  }
  (void)t0;
  assert_true(fast_ok);
  assert_int_equal(got_fast, total);
  assert_true(write_s < 2.0); /* the stalled viewer did not slow the writer */

  /* Now the slow viewer reads: after at most a partial backlog it must jump, and every jump
   * lands on a keyframe. */
  int prev = -1, jumps = 0, slow_got = 0;
  bool jump_to_key = true;
  double end = ws_now() + 10;
  while (ws_now() < end && prev != total - 1) {
    ws_client_run(&slow, 0.02, NULL, NULL);
    ws_msg *m;
    while ((m = ws_client_next(&slow, 0))) {
      if (m->binary) {
        int seq;
        memcpy(&seq, m->data + 9, sizeof seq);
        if (prev >= 0 && seq != prev + 1) {
          jumps++;
          if (seq % 10 != 0 || !(m->data[0] & 1)) jump_to_key = false;
        }
        if (prev < 0 && seq % 10 != 0) jump_to_key = false;
        prev = seq;
        slow_got++;
      }
      ws_msg_free(m);
    }
  }
  assert_true(jump_to_key);
  assert_true(jumps >= 1);
  assert_true(slow_got < total);
  assert_int_equal(prev, total - 1);
  free(pk);
  ws_client_close(&fast);
  ws_client_close(&slow);
}

static void test_publish(void **state) {
  (void)state;
  ws_client c;
  assert_int_equal(ws_client_open(&c, g_port, "/ws/publish", NULL), 0);
  assert_true(ws_client_run(&c, 5, ws_is_established, NULL));
  const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9};
  ws_client_send(&c, jpeg, sizeof jpeg, true);
  ws_client_send(&c, "hello", 5, true);
  ws_msg *m = ws_client_next(&c, 3);
  assert_non_null(m);
  assert_non_null(strstr((const char *)m->data, "not a JPEG"));
  ws_msg_free(m);
  assert_int_equal(g_svc.publish_ok, 1);
  assert_int_equal(g_svc.publish_bad, 1);
  assert_true(lg_metrics_get(g_metrics, LG_COUNTER_FRAMES_DROPPED) >= 1);
  ws_client_close(&c);
}

/* Keep-alive as browsers do it: several requests on one connection, including a POST. */
static void test_keep_alive(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)g_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  const char *body = "{\"seed\":77}";
  char req[512];
  int responses = 0;
  char buf[16384];
  size_t len = 0;
  for (int i = 0; i < 3; i++) {
    int n = i == 1 ? snprintf(req, sizeof req,
                              "POST /api/v1/params HTTP/1.1\r\nHost: x\r\nContent-Type: "
                              "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                              strlen(body), body)
                   : snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    /* Read until this response's body is complete. */
    double end = ws_now() + 5;
    int want = i + 1;
    while (ws_now() < end && responses < want) {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      ssize_t r = recv(fd, buf + len, sizeof buf - len - 1, 0);
      assert_true(r > 0); /* the server must not close a keep-alive connection */
      len += (size_t)r;
      buf[len] = 0;
      responses = 0;
      for (char *q = buf; (q = strstr(q, "HTTP/1.1 200")); q++)
        responses++;
    }
    assert_int_equal(responses, want);
  }
  close(fd);
  assert_non_null(strstr(buf, "\"seed\":77"));
  pthread_mutex_lock(&g_svc.mu);
  assert_int_equal(g_svc.cur.seed, 77);
  pthread_mutex_unlock(&g_svc.mu);
}

/* More viewers than server.max_viewers (4): the extra one is refused, the others stay. */
static void test_max_viewers(void **state) {
  (void)state;
  ws_client v[5];
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ws_client_open(&v[i], g_port, "/ws/stream", NULL), 0);
    assert_true(ws_client_run(&v[i], 5, ws_is_established, NULL));
  }
  assert_int_equal(ws_client_open(&v[4], g_port, "/ws/stream", NULL), 0);
  assert_false(ws_client_run(&v[4], 2, ws_is_established, NULL));
  ws_client_close(&v[4]);
  assert_int_equal(lg_server_viewers(g_srv), 4);
  for (int i = 0; i < 4; i++) {
    ws_client_run(&v[i], 0.05, NULL, NULL);
    assert_false(v[i].closed);
    ws_client_close(&v[i]);
  }
  for (int i = 0; i < 100 && lg_server_viewers(g_srv) != 0; i++) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(lg_server_viewers(g_srv), 0);
  /* A source that does not exist is refused too. */
  ws_client bad;
  assert_int_equal(ws_client_open(&bad, g_port, "/ws/stream?source=sideways", NULL), 0);
  assert_false(ws_client_run(&bad, 2, ws_is_established, NULL));
  ws_client_close(&bad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http),         cmocka_unit_test(test_http_control),
      cmocka_unit_test(test_webrtc_hooks), cmocka_unit_test(test_ws_control),
      cmocka_unit_test(test_ws_stream),    cmocka_unit_test(test_slow_viewer),
      cmocka_unit_test(test_publish),      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_max_viewers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
