/* test_webrtc.c: real WebRTC peers (GStreamer webrtcbin clients in this process, ICE on
 * 127.0.0.1 only) against livegen's WHEP/WHIP side: a WHEP viewer decodes H.264 frames of the
 * shared encoder's stream; a WHIP publisher's videotestsrc arrives as RGB frames in the ingest
 * ring; DELETE ends a session; bad offers get a clear refusal. Threads: test main thread,
 * the stream source thread, GStreamer threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "frame_ring.h"
#include "lg_base.h"
#include "packet_ring.h"
#include "streaming_test_enc.h"
#include "streaming_test_util.h"
#include "webrtc.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/video/video.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <nice/agent.h>

#include <stdatomic.h>
#include <string.h>

/* ---- a webrtcbin test peer ---- */

typedef struct peer {
  GstElement *pipe, *webrtc;
  atomic_bool gathered;
  atomic_int frames;      /* decoded */
  atomic_int rtp_packets; /* received, before the decoder */
  atomic_int width, height;
} peer;

static GstPadProbeReturn peer_on_rtp(GstPad *pad, GstPadProbeInfo *info, gpointer user) {
  peer *p = user;
  (void)pad;
  (void)info;
  atomic_fetch_add(&p->rtp_packets, 1);
  return GST_PAD_PROBE_OK;
}

static void peer_on_gathering(GstElement *webrtc, GParamSpec *ps, gpointer user) {
  peer *p = user;
  (void)ps;
  GstWebRTCICEGatheringState g;
  g_object_get(webrtc, "ice-gathering-state", &g, NULL);
  if (g == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) atomic_store(&p->gathered, true);
}

static GstFlowReturn peer_on_sample(GstAppSink *sink, gpointer user) {
  peer *p = user;
  GstSample *s = gst_app_sink_pull_sample(sink);
  if (!s) return GST_FLOW_EOS;
  GstVideoInfo vi;
  if (gst_video_info_from_caps(&vi, gst_sample_get_caps(s))) {
    atomic_store(&p->width, GST_VIDEO_INFO_WIDTH(&vi));
    atomic_store(&p->height, GST_VIDEO_INFO_HEIGHT(&vi));
  }
  atomic_fetch_add(&p->frames, 1);
  gst_sample_unref(s);
  return GST_FLOW_OK;
}

/* Incoming RTP (WHEP viewer): depayload, decode, count decoded frames. */
static void peer_on_pad(GstElement *webrtc, GstPad *pad, gpointer user) {
  peer *p = user;
  (void)webrtc;
  if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC) return;
  GstElement *bin = gst_parse_bin_from_description(
      "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=RGB ! "
      "appsink name=sink sync=false",
      TRUE, NULL);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(bin), "sink");
  GstAppSinkCallbacks cbs = {0};
  cbs.new_sample = peer_on_sample;
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, p, NULL);
  gst_object_unref(sink);
  gst_bin_add(GST_BIN(p->pipe), bin);
  gst_element_sync_state_with_parent(bin);
  GstPad *sp = gst_element_get_static_pad(bin, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, peer_on_rtp, p, NULL);
  gst_pad_link(pad, sp);
  gst_object_unref(sp);
}

static void peer_loopback_only(peer *p) {
  GstWebRTCICE *ice = NULL;
  NiceAgent *agent = NULL;
  g_object_get(p->webrtc, "ice-agent", &ice, NULL);
  assert_non_null(ice);
  g_object_get(ice, "agent", &agent, NULL);
  assert_non_null(agent);
  NiceAddress a;
  nice_address_init(&a);
  assert_true(nice_address_set_from_string(&a, "127.0.0.1"));
  nice_agent_add_local_address(agent, &a);
  g_object_unref(agent);
  gst_object_unref(ice);
}

static GstStructure *peer_promise(GstElement *webrtc, const char *sig, gpointer arg) {
  GstPromise *pr = gst_promise_new();
  g_signal_emit_by_name(webrtc, sig, arg, pr);
  assert_int_equal(gst_promise_wait(pr), GST_PROMISE_RESULT_REPLIED);
  const GstStructure *r = gst_promise_get_reply(pr);
  GstStructure *copy = r ? gst_structure_copy(r) : NULL;
  gst_promise_unref(pr);
  return copy;
}

/* Creates the offer, gathers every candidate, returns the SDP text (g_free). */
static char *peer_offer(peer *p) {
  GstStructure *r = peer_promise(p->webrtc, "create-offer", NULL);
  assert_non_null(r);
  GstWebRTCSessionDescription *offer = NULL;
  assert_true(gst_structure_get(r, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, NULL));
  gst_structure_free(r);
  r = peer_promise(p->webrtc, "set-local-description", offer);
  if (r) gst_structure_free(r);
  gst_webrtc_session_description_free(offer);
  double end = lg_now() + 10;
  while (!atomic_load(&p->gathered) && lg_now() < end)
    usleep(20000);
  assert_true(atomic_load(&p->gathered));
  GstWebRTCSessionDescription *local = NULL;
  g_object_get(p->webrtc, "local-description", &local, NULL);
  char *text = gst_sdp_message_as_text(local->sdp);
  gst_webrtc_session_description_free(local);
  return text;
}

static void peer_answer(peer *p, const char *answer) {
  GstSDPMessage *sdp = NULL;
  assert_int_equal(gst_sdp_message_new_from_text(answer, &sdp), GST_SDP_OK);
  GstWebRTCSessionDescription *d =
      gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
  GstStructure *r = peer_promise(p->webrtc, "set-remote-description", d);
  if (r) gst_structure_free(r);
  gst_webrtc_session_description_free(d);
}

/* Browsers send RTCP feedback every second or faster; GStreamer's rtpsession defaults to
 * one report per ~5 s. Make the test peer behave like a browser (every 0.5 s) so that the
 * service's silence timeout can be short in the test. */
static void peer_fast_rtcp(peer *p) {
  GstIterator *it = gst_bin_iterate_recurse(GST_BIN(p->webrtc));
  GValue v = G_VALUE_INIT;
  int found = 0;
  while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
    GstElement *e = g_value_get_object(&v);
    GstElementFactory *f = gst_element_get_factory(e);
    if (f && strcmp(GST_OBJECT_NAME(f), "rtpbin") == 0) {
      GObject *session = NULL;
      g_signal_emit_by_name(e, "get-internal-session", 0u, &session);
      if (session) {
        g_object_set(session, "rtcp-min-interval", (guint64)(500 * GST_MSECOND), NULL);
        g_object_unref(session);
        found++;
      }
    }
    g_value_reset(&v);
  }
  g_value_unset(&v);
  gst_iterator_free(it);
  assert_true(found >= 1);
}

static void peer_start(peer *p, const char *launch) {
  memset(p, 0, sizeof(*p));
  GError *e = NULL;
  GstElement *parsed = gst_parse_launch(launch, &e);
  assert_null(e);
  if (GST_IS_PIPELINE(parsed)) {
    p->pipe = parsed;
  } else { /* a lone webrtcbin comes back unwrapped */
    p->pipe = gst_pipeline_new(NULL);
    gst_bin_add(GST_BIN(p->pipe), parsed);
  }
  p->webrtc = gst_bin_get_by_name(GST_BIN(p->pipe), "webrtc");
  peer_loopback_only(p);
  g_signal_connect(p->webrtc, "notify::ice-gathering-state", G_CALLBACK(peer_on_gathering), p);
  g_signal_connect(p->webrtc, "pad-added", G_CALLBACK(peer_on_pad), p);
}

static void peer_stop(peer *p) {
  gst_element_set_state(p->pipe, GST_STATE_NULL);
  gst_object_unref(p->webrtc);
  gst_object_unref(p->pipe);
}

/* ---- the tests ---- */

static void want_key(void *user) {
  lg_encoder_request_keyframe(((st_source *)user)->enc);
}

/* Starts a WHEP viewer (recvonly H.264 at payload type 102) and negotiates with w. */
static void whep_connect(lg_webrtc *w, peer *v, char id[LG_WEBRTC_ID_MAX]) {
  peer_start(v, "webrtcbin name=webrtc bundle-policy=max-bundle");
  /* Like a browser: several H.264 formats. 100 is High profile, which our encoder does not
   * produce here (ultrafast: Constrained Baseline), 101 is packetization-mode 0; the service
   * must pick 102. */
  GstCaps *caps = gst_caps_from_string(
      "application/x-rtp,media=video,encoding-name=H264,payload=100,clock-rate=90000,"
      "packetization-mode=(string)1,profile-level-id=(string)640c1f; "
      "application/x-rtp,media=video,encoding-name=H264,payload=101,clock-rate=90000,"
      "packetization-mode=(string)0,profile-level-id=(string)42e01f; "
      "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
      "packetization-mode=(string)1,profile-level-id=(string)42e01f");
  GstWebRTCRTPTransceiver *t = NULL;
  g_signal_emit_by_name(v->webrtc, "add-transceiver", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY,
                        caps, &t);
  gst_caps_unref(caps);
  assert_non_null(t);
  gst_object_unref(t);
  assert_int_not_equal(gst_element_set_state(v->pipe, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  char *offer = peer_offer(v);
  char *answer = NULL;
  assert_int_equal(lg_webrtc_offer_sync(w, LG_SDP_WHEP, offer, &answer, id, 10), 0);
  fprintf(stderr, "WHEP answer:\n%s\n", answer);
  assert_non_null(strstr(answer, "a=rtpmap:102 H264/90000")); /* the viewer's payload type */
  assert_null(strstr(answer, "a=rtpmap:100 "));
  assert_null(strstr(answer, "a=rtpmap:101 "));
  assert_non_null(strstr(answer, "a=candidate:")); /* no trickle: all candidates */
  assert_non_null(strstr(answer, "127.0.0.1"));
  assert_non_null(strstr(answer, "a=sendonly"));
  assert_true(strlen(id) >= 16);
  peer_answer(v, answer);
  peer_fast_rtcp(v);
  free(answer);
  g_free(offer);
}

static int wait_frames(peer *v, int n, double timeout_s) {
  double end = lg_now() + timeout_s;
  while (atomic_load(&v->frames) < n && lg_now() < end)
    usleep(50000);
  return atomic_load(&v->frames);
}

static lg_webrtc_stats wait_closed(lg_webrtc *w, uint64_t closed, double timeout_s) {
  lg_webrtc_stats st;
  double end = lg_now() + timeout_s;
  do {
    usleep(50000);
    lg_webrtc_get_stats(w, &st);
  } while (st.sessions_closed < closed && lg_now() < end);
  return st;
}

static void test_whep_viewers(void **state) {
  (void)state;
  lg_packet_ring *ring = lg_packet_ring_new(128);
  st_source src = {
      .ring = ring, .width = 160, .height = 120, .fps = 25, .keyint = 50, .frames = 25 * 40};
  assert_int_equal(st_source_start(&src), 0);
  lg_stream_info info; /* the encoder described its stream (profile) before viewers come */
  double info_end = lg_now() + 10;
  while (lg_packet_ring_get_info(ring, &info) == 0 && lg_now() < info_end)
    usleep(20000);
  assert_true(info.version > 0);
  lg_webrtc_opts o = {
      .packets = ring, .want_keyframe = want_key, .keyframe_user = &src, .peer_timeout_s = 4};
  snprintf(o.local_addresses, sizeof(o.local_addresses), "127.0.0.1");
  lg_webrtc *w = lg_webrtc_new(&o);
  assert_non_null(w);

  /* A viewer decodes the encoder's frames. */
  peer v;
  char id[LG_WEBRTC_ID_MAX];
  whep_connect(w, &v, id);
  int got = wait_frames(&v, 25, 20);
  fprintf(stderr, "WHEP viewer decoded %d frames of %dx%d\n", got, atomic_load(&v.width),
          atomic_load(&v.height));
  assert_true(got >= 25);
  assert_int_equal(atomic_load(&v.width), 160);
  assert_int_equal(atomic_load(&v.height), 120);
  lg_webrtc_stats st;
  lg_webrtc_get_stats(w, &st);
  assert_int_equal(st.viewers, 1);
  assert_int_equal(st.viewers_connected, 1);
  assert_true(st.packets_sent >= 25);
  /* A healthy viewer outlives the silence timeout: its RTCP keeps it. */
  usleep(5000000);
  lg_webrtc_get_stats(w, &st);
  assert_int_equal(st.viewers_connected, 1);
  assert_true(atomic_load(&v.frames) >= got + 75); /* 25 fps kept flowing */

  /* A second viewer that vanishes without DELETE (tab killed) is removed. */
  peer gone;
  char gone_id[LG_WEBRTC_ID_MAX];
  whep_connect(w, &gone, gone_id);
  assert_true(wait_frames(&gone, 10, 20) >= 10);
  lg_webrtc_get_stats(w, &st);
  assert_int_equal(st.viewers, 2);
  peer_stop(&gone);
  st = wait_closed(w, 1, 15);
  assert_int_equal(st.sessions_closed, 1);
  assert_int_equal(st.viewers, 1); /* the first one is untouched */

  /* DELETE /whep/<id>: the session goes, the viewer stops receiving. */
  assert_int_equal(lg_webrtc_close(w, LG_SDP_WHEP, id), 0);
  assert_int_equal(lg_webrtc_close(w, LG_SDP_WHEP, "nope"), LG_ENOTFOUND);
  st = wait_closed(w, 2, 5);
  assert_int_equal(st.viewers, 0);
  assert_int_equal(st.sessions_closed, 2);
  /* Let what was in flight drain (jitter buffer), then no more RTP arrives. */
  int after;
  double quiet_end = lg_now() + 8;
  do {
    after = atomic_load(&v.rtp_packets);
    usleep(1000000);
  } while (atomic_load(&v.rtp_packets) != after && lg_now() < quiet_end);
  usleep(1500000);
  assert_int_equal(atomic_load(&v.rtp_packets), after);

  peer_stop(&v);
  atomic_store(&src.stop, true);
  st_source_join(&src);
  lg_webrtc_free(&w);
  assert_null(w);
  lg_packet_ring_free(&ring);
}

/* Publishes `launch` (ending in webrtcbin name=webrtc) over WHIP; checks the frames. */
static void whip_publish(const char *launch) {
  enum { W = 64, H = 48 };
  lg_frame_ring *ingest = lg_frame_ring_new(W, H, 4);
  lg_webrtc_opts o = {.ingest = ingest, .width = W, .height = H, .fps = 10};
  snprintf(o.local_addresses, sizeof(o.local_addresses), "127.0.0.1");
  lg_webrtc *w = lg_webrtc_new(&o);
  assert_non_null(w);
  peer pub;
  peer_start(&pub, launch);
  assert_int_not_equal(gst_element_set_state(pub.pipe, GST_STATE_PLAYING),
                       GST_STATE_CHANGE_FAILURE);
  GArray *ts = NULL; /* every track is send-only */
  g_signal_emit_by_name(pub.webrtc, "get-transceivers", &ts);
  assert_non_null(ts);
  assert_true(ts->len >= 1);
  for (guint i = 0; i < ts->len; i++)
    g_object_set(g_array_index(ts, GstWebRTCRTPTransceiver *, i), "direction",
                 GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
  g_array_unref(ts);
  char *offer = peer_offer(&pub);
  char *answer = NULL, id[LG_WEBRTC_ID_MAX];
  assert_int_equal(lg_webrtc_offer_sync(w, LG_SDP_WHIP, offer, &answer, id, 10), 0);
  fprintf(stderr, "WHIP answer:\n%s\n", answer);
  assert_non_null(strstr(answer, "a=recvonly"));
  /* One publisher at a time. */
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHIP, 99, offer, strlen(offer)), LG_EAGAIN);
  peer_answer(&pub, answer);
  free(answer);
  g_free(offer);

  static uint8_t a[W * H * 3], b[W * H * 3];
  int n = 0, changed = 0;
  double end = lg_now() + 20;
  while (n < 20 && lg_now() < end) {
    if (lg_frame_ring_pop(ingest, n % 2 ? b : a, sizeof(a), NULL, 0.2) == 0) {
      if (n > 0 && memcmp(a, b, sizeof(a)) != 0) changed = 1;
      n++;
    }
  }
  fprintf(stderr, "WHIP: %d frames in the ingest ring\n", n);
  assert_true(n >= 20);
  assert_true(changed); /* the ball moves */
  usleep(200000);       /* the counter moves just after the push the test popped */
  lg_webrtc_stats st;
  lg_webrtc_get_stats(w, &st);
  assert_int_equal(st.publishers, 1);
  assert_true(st.frames_in >= 20);
  assert_int_equal(lg_webrtc_close(w, LG_SDP_WHIP, id), 0);
  end = lg_now() + 5;
  do {
    usleep(50000);
    lg_webrtc_get_stats(w, &st);
  } while (st.publishers > 0 && lg_now() < end);
  assert_int_equal(st.publishers, 0);
  peer_stop(&pub);
  lg_webrtc_free(&w);
  lg_frame_ring_free(&ingest);
}

static void test_whip_h264_publisher_feeds_ingest(void **state) {
  (void)state;
  whip_publish("videotestsrc is-live=true pattern=ball ! "
               "video/x-raw,width=160,height=120,framerate=15/1 ! videoconvert ! "
               "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 threads=1 ! "
               "video/x-h264,profile=constrained-baseline ! "
               "rtph264pay config-interval=-1 pt=96 ! "
               "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! "
               "webrtcbin name=webrtc bundle-policy=max-bundle");
}

static void test_whip_vp8_with_audio_publisher_feeds_ingest(void **state) {
  (void)state;
  /* Like OBS or a browser: video plus an audio track livegen ignores. */
  whip_publish("webrtcbin name=webrtc bundle-policy=max-bundle "
               "videotestsrc is-live=true pattern=ball ! "
               "video/x-raw,width=160,height=120,framerate=15/1 ! videoconvert ! "
               "vp8enc deadline=1 keyframe-max-dist=15 threads=1 ! rtpvp8pay pt=97 ! "
               "application/x-rtp,media=video,encoding-name=VP8,payload=97,clock-rate=90000 ! "
               "webrtc. "
               "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! "
               "rtpopuspay pt=111 ! "
               "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! "
               "webrtc.");
}

typedef struct async_answer {
  pthread_mutex_t mu;
  uint64_t req;
  int status;
  char *sdp;
  char id[LG_WEBRTC_ID_MAX];
  double t;
} async_answer;

/* Stands in for lg_server_sdp_answer (any thread). */
static int on_answer(void *user, uint64_t req, int status, const char *sdp, const char *id,
                     const char *msg) {
  async_answer *a = user;
  (void)msg;
  pthread_mutex_lock(&a->mu);
  a->req = req;
  a->status = status;
  a->sdp = sdp ? strdup(sdp) : NULL;
  snprintf(a->id, sizeof(a->id), "%s", id ? id : "");
  a->t = lg_now();
  pthread_mutex_unlock(&a->mu);
  return 0;
}

static void test_async_answer_not_stalled_by_unreachable_stun(void **state) {
  (void)state;
  /* The lws thread hands the offer over and returns at once; the answer comes through the
   * callback. A STUN server that never replies must not hold the answer past the gathering
   * timeout: host candidates are enough on a LAN. */
  lg_packet_ring *ring = lg_packet_ring_new(8);
  lg_webrtc_opts o = {.packets = ring, .gather_timeout_s = 1.5, .n_ice_servers = 1};
  snprintf(o.ice_servers[0], sizeof(o.ice_servers[0]), "stun:127.0.0.1:%d",
           st_free_port(SOCK_DGRAM));
  snprintf(o.local_addresses, sizeof(o.local_addresses), "127.0.0.1");
  lg_webrtc *w = lg_webrtc_new(&o);
  assert_non_null(w);
  async_answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};
  lg_webrtc_set_answer(w, on_answer, &a);
  lg_webrtc_hooks h;
  lg_webrtc_fill_hooks(w, &h);
  peer v;
  peer_start(&v, "webrtcbin name=webrtc bundle-policy=max-bundle");
  GstCaps *caps = gst_caps_from_string(
      "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000");
  GstWebRTCRTPTransceiver *t = NULL;
  g_signal_emit_by_name(v.webrtc, "add-transceiver", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY,
                        caps, &t);
  gst_caps_unref(caps);
  gst_object_unref(t);
  gst_element_set_state(v.pipe, GST_STATE_PLAYING);
  char *offer = peer_offer(&v);
  double t0 = lg_now();
  assert_int_equal(h.offer(h.user, LG_SDP_WHEP, 42, offer, strlen(offer)), 0);
  assert_true(lg_now() - t0 < 0.1); /* never blocks the caller */
  double end = t0 + 10;
  bool done = false;
  while (!done && lg_now() < end) {
    usleep(20000);
    pthread_mutex_lock(&a.mu);
    done = a.req != 0;
    pthread_mutex_unlock(&a.mu);
  }
  assert_true(done);
  fprintf(stderr, "answer after %.2f s, status %d\n", a.t - t0, a.status);
  assert_int_equal(a.req, 42);
  assert_int_equal(a.status, 201);
  assert_true(a.t - t0 < 1.5 + 1.0);
  assert_non_null(a.sdp);
  assert_non_null(strstr(a.sdp, "a=candidate:"));
  assert_int_equal(lg_webrtc_close(h.user, LG_SDP_WHEP, a.id), 0);
  free(a.sdp);
  g_free(offer);
  peer_stop(&v);
  lg_webrtc_free(&w);
  lg_packet_ring_free(&ring);
}

static void test_bad_offers_refused(void **state) {
  (void)state;
  lg_packet_ring *ring = lg_packet_ring_new(8);
  lg_webrtc_opts o = {.packets = ring};
  lg_webrtc *w = lg_webrtc_new(&o);
  assert_non_null(w);
  const char *junk = "hello";
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHEP, 1, junk, strlen(junk)), LG_EFORMAT);
  const char *audio = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                      "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
                      "a=rtpmap:111 opus/48000/2\r\n";
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHEP, 2, audio, strlen(audio)), LG_EFORMAT);
  const char *vp8 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                    "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\n"
                    "a=rtpmap:97 VP8/90000\r\na=recvonly\r\n";
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHEP, 3, vp8, strlen(vp8)), LG_EFORMAT);
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHIP, 4, vp8, strlen(vp8)), LG_ENOTSUP);
  /* A claimed length that disagrees with the string is refused, not over-read. */
  assert_int_equal(lg_webrtc_offer(w, LG_SDP_WHEP, 5, vp8, strlen(vp8) + 10), LG_EFORMAT);
  lg_webrtc_hooks h;
  lg_webrtc_fill_hooks(w, &h);
  assert_ptr_equal(h.user, w);
  /* WHIP switched off (the input is not "whip"): a valid publisher offer is refused. */
  lg_frame_ring *ing = lg_frame_ring_new(32, 32, 2);
  lg_webrtc_opts wo = {.ingest = ing, .width = 32, .height = 32, .fps = 10};
  lg_webrtc *ww = lg_webrtc_new(&wo);
  const char *pub = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
                    "a=rtpmap:96 H264/90000\r\na=sendonly\r\n";
  lg_webrtc_set_whip_enabled(ww, false);
  assert_int_equal(lg_webrtc_offer(ww, LG_SDP_WHIP, 6, pub, strlen(pub)), LG_ENOTSUP);
  assert_int_equal(lg_webrtc_offer(ww, LG_SDP_WHEP, 7, vp8, strlen(vp8)), LG_ENOTSUP);
  lg_webrtc_set_whip_enabled(ww, true);
  assert_int_equal(lg_webrtc_offer(ww, LG_SDP_WHIP, 8, pub, strlen(pub)), 0);
  lg_webrtc_free(&ww);
  lg_frame_ring_free(&ing);
  assert_int_equal(h.close(h.user, LG_SDP_WHEP, "0123"), LG_ENOTFOUND);
  lg_webrtc_free(&w);
  lg_packet_ring_free(&ring);
  lg_webrtc_opts none = {0};
  assert_null(lg_webrtc_new(&none));
}

int main(void) {
  gst_init(NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_offers_refused),
      cmocka_unit_test(test_async_answer_not_stalled_by_unreachable_stun),
      cmocka_unit_test(test_whep_viewers),
      cmocka_unit_test(test_whip_h264_publisher_feeds_ingest),
      cmocka_unit_test(test_whip_vp8_with_audio_publisher_feeds_ingest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
