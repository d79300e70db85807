/* webrtc.c: WHEP viewers and WHIP publishers on GStreamer webrtcbin (see webrtc.h).
 * Threads: the lws thread only queues offers/closes (lg_webrtc_offer/_close); the signalling
 * thread (signal_main) builds pipelines, negotiates, answers and tears sessions down (it
 * alone frees sessions, so a session pointer stays valid for it across unlocks); the sender
 * thread (sender_main) reads the packet ring and pushes each access unit to every live
 * viewer's appsrc; webrtcbin/libnice threads only set atomic flags and wake the signalling
 * thread; WHIP frames are pushed into the ingest ring from a GStreamer streaming thread.
 * `mu` guards the session list, the sync-answer table and the counters. */
#include "webrtc.h"

#include "lg_base.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/video/video.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <nice/agent.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "webrtc"
#define CONNECT_TIMEOUT_S 30.0    /* answered but never connected: dropped */
#define DISCONNECTED_GRACE_S 10.0 /* ICE disconnected this long: dropped */
#define MAX_CANDIDATES 32
#define SYNC_SLOTS 8
#define SLOW_VIEWER_BYTES (1u << 20) /* queued for one viewer: it skips to the next keyframe */

typedef enum sess_state {
  SESS_NEW = 0,   /* offer queued */
  SESS_GATHERING, /* answer set locally, gathering ICE candidates */
  SESS_LIVE,      /* answer sent */
} sess_state;

typedef struct session {
  struct session *next;
  lg_webrtc *w;
  lg_sdp_kind kind;
  uint64_t req;
  char id[LG_WEBRTC_ID_MAX];
  char *offer; /* owned; freed after negotiation */
  sess_state state;
  double t_state; /* lg_now() when the state was entered */
  atomic_bool gathered, dead, connected, need_key;
  atomic_int ice_state;   /* GstWebRTCICEConnectionState */
  _Atomic double t_heard; /* lg_now() of the last RTP/RTCP packet from the peer, 0 = none */
  double t_connected;     /* when ICE first connected (signalling thread) */
  double t_disconnected;
  int pt;                             /* WHEP: H.264 payload type of the offer */
  GstElement *pipe, *webrtc, *appsrc; /* new references; appsrc for WHEP */
  char *candidates[MAX_CANDIDATES];   /* "candidate:..." lines from on-ice-candidate */
  int n_candidates;
  pthread_mutex_t cand_mu;
} session;

typedef struct sync_slot {
  bool used, done;
  uint64_t req;
  int status;
  char *sdp;
  char id[LG_WEBRTC_ID_MAX];
} sync_slot;

struct lg_webrtc {
  lg_webrtc_opts o;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* wakes the signalling thread; also signals sync answers */
  session *sessions;
  atomic_bool stop;
  pthread_t signal_th, sender_th;
  bool signal_started, sender_started;
  lg_webrtc_stats st;
  atomic_bool whip_on; /* WHIP offers accepted (the input is "whip") */
  sync_slot sync[SYNC_SLOTS];
  uint64_t next_sync_req;
  lg_rng rng;
};

static void wake(lg_webrtc *w) {
  pthread_mutex_lock(&w->mu);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* ---- SDP checks (lws thread and signalling thread) ---- */

/* Finds the first video m-line; for WHEP also its H.264 payload type (packetization-mode=1
 * preferred). 0, or LG_EFORMAT with the reason logged. */
static int check_offer(const char *sdp, size_t n, lg_sdp_kind kind, const char *profile,
                       int *pt_out) {
  GstSDPMessage *msg = NULL;
  int err = LG_EFORMAT, pt = -1, best = -1;
  if (!sdp || n == 0 || n > LG_SERVER_BODY_MAX || strlen(sdp) != n) goto fail;
  if (gst_sdp_message_new_from_text(sdp, &msg) != GST_SDP_OK || !msg) goto fail;
  const GstSDPMedia *video = NULL;
  for (guint i = 0; i < gst_sdp_message_medias_len(msg); i++) {
    const GstSDPMedia *m = gst_sdp_message_get_media(msg, i);
    if (g_strcmp0(gst_sdp_media_get_media(m), "video") == 0) {
      video = m;
      break;
    }
  }
  if (!video) {
    LG_WARN(MOD, "offer has no video m-line");
    goto fail;
  }
  if (kind == LG_SDP_WHEP) {
    /* Best H.264 format: packetization-mode=1 first (rtph264pay fragments large NAL units,
     * which mode 0 forbids), then the profile our encoder produces (profile_idc, 2 hex). */
    for (guint i = 0; i < gst_sdp_media_formats_len(video); i++) {
      int fmt = atoi(gst_sdp_media_get_format(video, i));
      GstCaps *caps = gst_sdp_media_get_caps_from_media(video, fmt);
      if (!caps) continue;
      const GstStructure *s = gst_caps_get_structure(caps, 0);
      const char *enc = gst_structure_get_string(s, "encoding-name");
      const char *pm = gst_structure_get_string(s, "packetization-mode");
      const char *plid = gst_structure_get_string(s, "profile-level-id");
      if (enc && g_ascii_strcasecmp(enc, "H264") == 0) {
        int score = (pm && strcmp(pm, "1") == 0) * 4 +
                    (profile && plid && g_ascii_strncasecmp(plid, profile, 2) == 0) * 2;
        if (score > best) {
          best = score;
          pt = fmt;
        }
      }
      gst_caps_unref(caps);
    }
    if (pt < 0 || pt > 127) {
      LG_WARN(MOD, "WHEP offer does not accept H.264");
      goto fail;
    }
    if (pt_out) *pt_out = pt;
  }
  err = 0;
fail:
  if (err && !msg) LG_WARN(MOD, "body is not an SDP offer");
  if (msg) gst_sdp_message_free(msg);
  return err;
}

/* ---- webrtcbin signal handlers (webrtcbin/libnice threads): flags only ---- */

static void on_gathering_state(GstElement *webrtc, GParamSpec *ps, gpointer user) {
  session *s = user;
  (void)ps;
  GstWebRTCICEGatheringState g;
  g_object_get(webrtc, "ice-gathering-state", &g, NULL);
  if (g == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) {
    atomic_store(&s->gathered, true);
    wake(s->w);
  }
}

static void on_ice_connection_state(GstElement *webrtc, GParamSpec *ps, gpointer user) {
  session *s = user;
  (void)ps;
  GstWebRTCICEConnectionState c;
  g_object_get(webrtc, "ice-connection-state", &c, NULL);
  atomic_store(&s->ice_state, (int)c);
  if (c == GST_WEBRTC_ICE_CONNECTION_STATE_CONNECTED ||
      c == GST_WEBRTC_ICE_CONNECTION_STATE_COMPLETED) {
    atomic_store(&s->connected, true);
  } else if (c == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED ||
             c == GST_WEBRTC_ICE_CONNECTION_STATE_CLOSED) {
    LG_INFO(MOD, "session %s: ICE %s", s->id,
            c == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED ? "failed" : "closed");
    atomic_store(&s->dead, true);
  }
  wake(s->w);
}

static void on_connection_state(GstElement *webrtc, GParamSpec *ps, gpointer user) {
  session *s = user;
  (void)ps;
  GstWebRTCPeerConnectionState c;
  g_object_get(webrtc, "connection-state", &c, NULL);
  if (c == GST_WEBRTC_PEER_CONNECTION_STATE_FAILED ||
      c == GST_WEBRTC_PEER_CONNECTION_STATE_CLOSED) {
    LG_INFO(MOD, "session %s: peer connection %s", s->id,
            c == GST_WEBRTC_PEER_CONNECTION_STATE_FAILED ? "failed" : "closed");
    atomic_store(&s->dead, true);
    wake(s->w);
  }
}

static void on_ice_candidate(GstElement *webrtc, guint mline, gchar *cand, gpointer user) {
  session *s = user;
  (void)webrtc;
  (void)mline;
  if (!cand || !*cand) return;
  pthread_mutex_lock(&s->cand_mu);
  if (s->n_candidates < MAX_CANDIDATES) {
    const char *c = strncmp(cand, "a=", 2) == 0 ? cand + 2 : cand;
    s->candidates[s->n_candidates] = g_strdup(c);
    if (s->candidates[s->n_candidates]) s->n_candidates++;
  }
  pthread_mutex_unlock(&s->cand_mu);
}

/* Any packet from the peer into rtpbin: it is still there. */
static GstPadProbeReturn on_peer_packet(GstPad *pad, GstPadProbeInfo *info, gpointer user) {
  session *s = user;
  (void)pad;
  (void)info;
  atomic_store(&s->t_heard, lg_now());
  return GST_PAD_PROBE_OK;
}

/* Watches the peer's incoming RTP/RTCP on webrtcbin's rtpbin (recv_rtp_sink_*,
 * recv_rtcp_sink_*), which exist once the descriptions are set. A viewer that vanishes
 * without DELETE or DTLS close (tab killed, network gone) stops sending RTCP. */
static void watch_peer(session *s) {
  GstIterator *it = gst_bin_iterate_recurse(GST_BIN(s->webrtc));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
    GstElement *e = g_value_get_object(&v);
    GstElementFactory *f = gst_element_get_factory(e);
    if (f && strcmp(GST_OBJECT_NAME(f), "rtpbin") == 0) {
      GstIterator *pit = gst_element_iterate_sink_pads(e);
      GValue pv = G_VALUE_INIT;
      while (gst_iterator_next(pit, &pv) == GST_ITERATOR_OK) {
        GstPad *pad = g_value_get_object(&pv);
        if (g_str_has_prefix(GST_OBJECT_NAME(pad), "recv_"))
          gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST,
                            on_peer_packet, s, NULL);
        g_value_reset(&pv);
      }
      g_value_unset(&pv);
      gst_iterator_free(pit);
    }
    g_value_reset(&v);
  }
  g_value_unset(&v);
  gst_iterator_free(it);
}

/* A PLI/FIR from the viewer reaches the appsrc as an upstream force-key-unit event. */
static GstPadProbeReturn on_upstream_event(GstPad *pad, GstPadProbeInfo *info, gpointer user) {
  session *s = user;
  (void)pad;
  GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
  if (ev && gst_video_event_is_force_key_unit(ev) && s->w->o.want_keyframe)
    s->w->o.want_keyframe(s->w->o.keyframe_user);
  return GST_PAD_PROBE_OK;
}

/* ---- WHIP media: decoded frames into the ingest ring (GStreamer streaming threads) ---- */

static GstFlowReturn on_whip_sample(GstAppSink *sink, gpointer user) {
  session *s = user;
  lg_webrtc *w = s->w;
  GstSample *smp = gst_app_sink_pull_sample(sink);
  if (!smp) return GST_FLOW_EOS;
  GstBuffer *buf = gst_sample_get_buffer(smp);
  GstCaps *caps = gst_sample_get_caps(smp);
  GstVideoInfo vi;
  GstVideoFrame vf;
  if (buf && caps && gst_video_info_from_caps(&vi, caps) &&
      GST_VIDEO_INFO_WIDTH(&vi) == w->o.width && GST_VIDEO_INFO_HEIGHT(&vi) == w->o.height &&
      gst_video_frame_map(&vf, &vi, buf, GST_MAP_READ)) {
    int64_t pts = GST_BUFFER_PTS_IS_VALID(buf) ? (int64_t)GST_BUFFER_PTS(buf) : -1;
    if (lg_frame_ring_push(w->o.ingest, GST_VIDEO_FRAME_PLANE_DATA(&vf, 0),
                           (size_t)GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0), pts) == 0) {
      pthread_mutex_lock(&w->mu);
      w->st.frames_in++;
      pthread_mutex_unlock(&w->mu);
    }
    gst_video_frame_unmap(&vf);
  }
  gst_sample_unref(smp);
  return GST_FLOW_OK;
}

static void on_decoded_pad(GstElement *dec, GstPad *pad, gpointer user) {
  GstElement *conv = user;
  (void)dec;
  GstCaps *caps = gst_pad_get_current_caps(pad);
  if (!caps) caps = gst_pad_query_caps(pad, NULL);
  const GstStructure *st = caps ? gst_caps_get_structure(caps, 0) : NULL;
  bool video = st && g_str_has_prefix(gst_structure_get_name(st), "video/x-raw");
  if (caps) gst_caps_unref(caps);
  if (!video) return;
  GstPad *sink = gst_element_get_static_pad(conv, "sink");
  if (!gst_pad_is_linked(sink) && gst_pad_link(pad, sink) != GST_PAD_LINK_OK)
    LG_WARN(MOD, "WHIP: cannot link the decoded video");
  gst_object_unref(sink);
}

/* webrtcbin src pad (incoming RTP): decodebin ! videoconvert ! videoscale ! videorate !
 * RGB WxH ! appsink, added to the running pipeline. */
static void on_whip_pad(GstElement *webrtc, GstPad *pad, gpointer user) {
  session *s = user;
  lg_webrtc *w = s->w;
  (void)webrtc;
  if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC) return;
  GstCaps *pc = gst_pad_get_current_caps(pad);
  if (!pc) pc = gst_pad_query_caps(pad, NULL);
  const GstStructure *ps = pc && gst_caps_get_size(pc) ? gst_caps_get_structure(pc, 0) : NULL;
  const char *media = ps ? gst_structure_get_string(ps, "media") : NULL;
  bool is_video = !media || strcmp(media, "video") == 0;
  if (pc) gst_caps_unref(pc);
  if (!is_video) { /* e.g. OBS sends Opus too: livegen only uses the picture */
    GstElement *fs = gst_element_factory_make("fakesink", NULL);
    g_object_set(fs, "sync", FALSE, "async", FALSE, NULL);
    gst_bin_add(GST_BIN(s->pipe), fs);
    gst_element_sync_state_with_parent(fs);
    GstPad *fp = gst_element_get_static_pad(fs, "sink");
    gst_pad_link(pad, fp);
    gst_object_unref(fp);
    return;
  }
  char desc[512];
  int fn, fd;
  gst_util_double_to_fraction(w->o.fps, &fn, &fd);
  snprintf(desc, sizeof(desc),
           "videoconvert name=conv ! videoscale ! videorate skip-to-first=true ! "
           "video/x-raw,format=RGB,width=%d,height=%d,framerate=%d/%d,pixel-aspect-ratio=1/1 ! "
           "appsink name=sink max-buffers=2 drop=true sync=false",
           w->o.width, w->o.height, fn, fd);
  GError *gerr = NULL;
  GstElement *tail = gst_parse_bin_from_description(desc, FALSE, &gerr);
  GstElement *dec = gst_element_factory_make("decodebin", NULL);
  if (!tail || !dec) {
    LG_ERR(MOD, "WHIP: cannot build the decoder: %s", gerr ? gerr->message : "?");
    if (gerr) g_error_free(gerr);
    if (tail) gst_object_unref(tail);
    if (dec) gst_object_unref(dec);
    atomic_store(&s->dead, true);
    return;
  }
  GstElement *conv = gst_bin_get_by_name(GST_BIN(tail), "conv");
  GstElement *sink = gst_bin_get_by_name(GST_BIN(tail), "sink");
  GstPad *conv_sink = gst_element_get_static_pad(conv, "sink");
  gst_element_add_pad(tail, gst_ghost_pad_new("sink", conv_sink));
  gst_object_unref(conv_sink);
  GstAppSinkCallbacks cbs = {0};
  cbs.new_sample = on_whip_sample;
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, s, NULL);
  gst_object_unref(sink);
  gst_object_unref(conv);
  gst_bin_add_many(GST_BIN(s->pipe), dec, tail, NULL);
  g_signal_connect(dec, "pad-added", G_CALLBACK(on_decoded_pad), tail);
  gst_element_sync_state_with_parent(tail);
  gst_element_sync_state_with_parent(dec);
  GstPad *dsink = gst_element_get_static_pad(dec, "sink");
  if (gst_pad_link(pad, dsink) != GST_PAD_LINK_OK) {
    LG_WARN(MOD, "WHIP: cannot link the incoming stream");
    atomic_store(&s->dead, true);
  }
  gst_object_unref(dsink);
  LG_INFO(MOD, "WHIP session %s: receiving video", s->id);
}

/* ---- signalling thread ---- */

static void restrict_ice(session *s) {
  lg_webrtc *w = s->w;
  GstWebRTCICE *ice = NULL;
  g_object_get(s->webrtc, "ice-agent", &ice, NULL);
  if (!ice) return;
  if (w->o.local_addresses[0] && g_object_class_find_property(G_OBJECT_GET_CLASS(ice), "agent")) {
    NiceAgent *agent = NULL;
    g_object_get(ice, "agent", &agent, NULL);
    char list[256];
    snprintf(list, sizeof(list), "%s", w->o.local_addresses);
    for (char *save = NULL, *ip = strtok_r(list, ", ", &save); ip && agent;
         ip = strtok_r(NULL, ", ", &save)) {
      NiceAddress a;
      nice_address_init(&a);
      if (nice_address_set_from_string(&a, ip))
        nice_agent_add_local_address(agent, &a);
      else
        LG_WARN(MOD, "ignoring bad local address `%s`", ip);
    }
    if (agent) g_object_unref(agent);
  }
  gst_object_unref(ice);
}

static void configure_ice_servers(session *s) {
  lg_webrtc *w = s->w;
  bool stun_set = false;
  for (int i = 0; i < w->o.n_ice_servers && i < LG_WEBRTC_MAX_ICE; i++) {
    const char *u = w->o.ice_servers[i];
    char url[560];
    /* Browser style "stun:host:port" -> GStreamer style "stun://host:port". */
    const char *colon = strchr(u, ':');
    if (!colon) continue;
    if (strncmp(colon, "://", 3) == 0)
      snprintf(url, sizeof(url), "%s", u);
    else
      snprintf(url, sizeof(url), "%.*s://%s", (int)(colon - u), u, colon + 1);
    if (strncmp(url, "stun://", 7) == 0 && !stun_set) {
      g_object_set(s->webrtc, "stun-server", url, NULL);
      stun_set = true;
    } else if (strncmp(url, "turn://", 7) == 0 || strncmp(url, "turns://", 8) == 0) {
      gboolean ok = FALSE;
      g_signal_emit_by_name(s->webrtc, "add-turn-server", url, &ok);
      if (!ok) LG_WARN(MOD, "TURN server `%s` refused (turn://user:pass@host:port)", url);
    }
  }
}

/* Emits a promise-taking action signal and waits for the reply (webrtcbin always answers).
 * Returns the reply structure copy (caller frees) or NULL; logs an "error" field. */
static GstStructure *call_promise(GstElement *webrtc, const char *signal, gpointer arg) {
  GstPromise *p = gst_promise_new();
  if (arg)
    g_signal_emit_by_name(webrtc, signal, arg, p);
  else
    g_signal_emit_by_name(webrtc, signal, NULL, p);
  GstPromiseResult r = gst_promise_wait(p);
  GstStructure *copy = NULL;
  if (r == GST_PROMISE_RESULT_REPLIED) {
    const GstStructure *reply = gst_promise_get_reply(p);
    if (reply) {
      GError *e = NULL;
      if (gst_structure_has_field(reply, "error")) {
        gst_structure_get(reply, "error", G_TYPE_ERROR, &e, NULL);
        LG_WARN(MOD, "%s failed: %s", signal, e ? e->message : "?");
        if (e) g_error_free(e);
      } else {
        copy = gst_structure_copy(reply);
      }
    } else {
      copy = gst_structure_new_empty("ok");
    }
  }
  gst_promise_unref(p);
  return copy;
}

/* Builds the session's pipeline and runs offer -> answer up to set-local-description.
 * 0, or LG_E* with *status/msg for the HTTP error. */
static int negotiate(session *s, int *status, const char **msg) {
  char desc[768];
  GstSDPMessage *sdp = NULL;
  GstWebRTCSessionDescription *offer = NULL, *answer = NULL;
  GstStructure *reply = NULL;
  int err = LG_EBACKEND;
  *status = 503;
  *msg = "WebRTC negotiation failed";
  if (s->kind == LG_SDP_WHEP) {
    snprintf(desc, sizeof(desc),
             "appsrc name=src is-live=true do-timestamp=true format=time block=false "
             "max-bytes=4000000 leaky-type=downstream "
             "caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! "
             "rtph264pay config-interval=-1 pt=%d aggregate-mode=zero-latency ! "
             "application/x-rtp,media=video,encoding-name=H264,payload=%d,clock-rate=90000 ! "
             "webrtcbin name=webrtc bundle-policy=max-bundle",
             s->pt, s->pt);
  } else {
    snprintf(desc, sizeof(desc), "webrtcbin name=webrtc bundle-policy=max-bundle");
  }
  GError *gerr = NULL;
  GstElement *parsed = gst_parse_launch(desc, &gerr);
  if (parsed && !GST_IS_PIPELINE(parsed)) { /* a lone element comes back unwrapped */
    s->pipe = gst_pipeline_new(NULL);
    gst_bin_add(GST_BIN(s->pipe), parsed);
  } else {
    s->pipe = parsed;
  }
  if (!s->pipe || gerr) {
    LG_ERR(MOD, "cannot build the WebRTC pipeline: %s", gerr ? gerr->message : "?");
    if (gerr) g_error_free(gerr);
    goto fail;
  }
  s->webrtc = gst_bin_get_by_name(GST_BIN(s->pipe), "webrtc");
  restrict_ice(s);
  configure_ice_servers(s);
  g_signal_connect(s->webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering_state), s);
  g_signal_connect(s->webrtc, "notify::ice-connection-state", G_CALLBACK(on_ice_connection_state),
                   s);
  g_signal_connect(s->webrtc, "notify::connection-state", G_CALLBACK(on_connection_state), s);
  g_signal_connect(s->webrtc, "on-ice-candidate", G_CALLBACK(on_ice_candidate), s);
  if (s->kind == LG_SDP_WHEP) {
    s->appsrc = gst_bin_get_by_name(GST_BIN(s->pipe), "src");
    GstPad *sp = gst_element_get_static_pad(s->appsrc, "src");
    gst_pad_add_probe(sp, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM, on_upstream_event, s, NULL);
    gst_object_unref(sp);
  } else {
    g_signal_connect(s->webrtc, "pad-added", G_CALLBACK(on_whip_pad), s);
  }
  if (gst_element_set_state(s->pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    LG_ERR(MOD, "WebRTC pipeline refused to start");
    goto fail;
  }
  if (s->kind == LG_SDP_WHEP) { /* we only send */
    GstWebRTCRTPTransceiver *t = NULL;
    g_signal_emit_by_name(s->webrtc, "get-transceiver", 0, &t);
    if (t) {
      g_object_set(t, "direction", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
      gst_object_unref(t);
    }
  }
  if (gst_sdp_message_new_from_text(s->offer, &sdp) != GST_SDP_OK) {
    *status = 400;
    *msg = "not an SDP offer";
    err = LG_EFORMAT;
    goto fail;
  }
  offer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp); /* takes sdp */
  sdp = NULL;
  reply = call_promise(s->webrtc, "set-remote-description", offer);
  if (!reply) {
    *status = 400;
    *msg = "the offer was not accepted";
    err = LG_EFORMAT;
    goto fail;
  }
  gst_structure_free(reply);
  reply = call_promise(s->webrtc, "create-answer", NULL);
  if (!reply ||
      !gst_structure_get(reply, "answer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &answer, NULL) ||
      !answer) {
    *status = 400;
    *msg = "no answer could be made for this offer";
    err = LG_EFORMAT;
    goto fail;
  }
  gst_structure_free(reply);
  reply = call_promise(s->webrtc, "set-local-description", answer);
  if (!reply) goto fail;
  gst_structure_free(reply);
  reply = NULL;
  gst_webrtc_session_description_free(offer);
  gst_webrtc_session_description_free(answer);
  GstWebRTCICEGatheringState g;
  g_object_get(s->webrtc, "ice-gathering-state", &g, NULL);
  if (g == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) atomic_store(&s->gathered, true);
  return 0;
fail:
  if (reply) gst_structure_free(reply);
  if (sdp) gst_sdp_message_free(sdp);
  if (offer) gst_webrtc_session_description_free(offer);
  if (answer) gst_webrtc_session_description_free(answer);
  return err;
}

/* The local answer with every candidate: webrtcbin puts gathered candidates into the local
 * description; candidates it reported only through on-ice-candidate are added here.
 * g_free the result. */
static char *answer_text(session *s) {
  GstWebRTCSessionDescription *local = NULL;
  g_object_get(s->webrtc, "local-description", &local, NULL);
  if (!local) return NULL;
  char *text = gst_sdp_message_as_text(local->sdp);
  if (text && !strstr(text, "a=candidate:") && s->n_candidates > 0) {
    GstSDPMessage *copy = NULL;
    gst_sdp_message_copy(local->sdp, &copy);
    pthread_mutex_lock(&s->cand_mu);
    for (guint m = 0; m < gst_sdp_message_medias_len(copy); m++) {
      GstSDPMedia *media = (GstSDPMedia *)gst_sdp_message_get_media(copy, m);
      for (int i = 0; i < s->n_candidates; i++)
        gst_sdp_media_add_attribute(media, "candidate", s->candidates[i] + strlen("candidate:"));
      gst_sdp_media_add_attribute(media, "end-of-candidates", "");
    }
    pthread_mutex_unlock(&s->cand_mu);
    g_free(text);
    text = gst_sdp_message_as_text(copy);
    gst_sdp_message_free(copy);
  }
  gst_webrtc_session_description_free(local);
  return text;
}

/* Delivers an answer or error: through opts.answer, or into the sync table. */
static int deliver(lg_webrtc *w, uint64_t req, int status, const char *sdp, const char *id,
                   const char *message) {
  pthread_mutex_lock(&w->mu);
  lg_webrtc_answer_fn fn = w->o.answer;
  void *fn_user = w->o.answer_user;
  pthread_mutex_unlock(&w->mu);
  if (fn) return fn(fn_user, req, status, sdp, id, message);
  int rc = LG_ENOTFOUND;
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < SYNC_SLOTS; i++) {
    sync_slot *y = &w->sync[i];
    if (y->used && !y->done && y->req == req) {
      y->done = true;
      y->status = status;
      y->sdp = sdp ? strdup(sdp) : NULL;
      snprintf(y->id, sizeof(y->id), "%s", id ? id : "");
      rc = 0;
      pthread_cond_broadcast(&w->cv);
    }
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

static void session_free(session *s) {
  if (s->pipe) gst_element_set_state(s->pipe, GST_STATE_NULL);       /* joins streaming threads */
  if (s->webrtc) g_signal_handlers_disconnect_by_data(s->webrtc, s); /* no late callbacks */
  if (s->appsrc) gst_object_unref(s->appsrc);
  if (s->webrtc) gst_object_unref(s->webrtc);
  if (s->pipe) gst_object_unref(s->pipe);
  for (int i = 0; i < s->n_candidates; i++)
    g_free(s->candidates[i]);
  pthread_mutex_destroy(&s->cand_mu);
  free(s->offer);
  free(s);
}

static void *signal_main(void *user) {
  lg_webrtc *w = user;
  pthread_mutex_lock(&w->mu);
  while (!atomic_load(&w->stop)) {
    session **link = &w->sessions;
    while (*link && !atomic_load(&w->stop)) {
      session *s = *link;
      double now = lg_now();
      if (atomic_load(&s->dead)) {
        *link = s->next; /* unlink, then tear down outside the lock */
        pthread_mutex_unlock(&w->mu);
        LG_INFO(MOD, "%s session %s closed", s->kind == LG_SDP_WHEP ? "WHEP" : "WHIP", s->id);
        if (s->state != SESS_LIVE) deliver(w, s->req, 503, NULL, NULL, "session closed");
        session_free(s);
        pthread_mutex_lock(&w->mu);
        w->st.sessions_closed++; /* counted once its pipeline is down */
        link = &w->sessions;     /* the list may have changed: start over */
        continue;
      }
      if (s->state == SESS_NEW) {
        pthread_mutex_unlock(&w->mu);
        int status;
        const char *msg;
        if (negotiate(s, &status, &msg) < 0) {
          deliver(w, s->req, status, NULL, NULL, msg);
          s->state = SESS_LIVE; /* answered (with an error) */
          atomic_store(&s->dead, true);
        } else {
          s->state = SESS_GATHERING;
          s->t_state = lg_now();
        }
        free(s->offer);
        s->offer = NULL;
        pthread_mutex_lock(&w->mu);
        link = &w->sessions;
        continue;
      }
      if (s->state == SESS_GATHERING &&
          (atomic_load(&s->gathered) || now - s->t_state > w->o.gather_timeout_s)) {
        pthread_mutex_unlock(&w->mu);
        if (!atomic_load(&s->gathered))
          LG_WARN(MOD, "session %s: ICE gathering incomplete after %.1f s; answering anyway", s->id,
                  w->o.gather_timeout_s);
        char *text = answer_text(s);
        int rc = text ? deliver(w, s->req, 201, text, s->id, NULL)
                      : deliver(w, s->req, 503, NULL, NULL, "no local description");
        g_free(text);
        s->state = SESS_LIVE;
        s->t_state = lg_now();
        atomic_store(&s->need_key, true);
        watch_peer(s);
        if (!text || rc == LG_ENOTFOUND) atomic_store(&s->dead, true);
        if (text && s->kind == LG_SDP_WHEP && w->o.want_keyframe)
          w->o.want_keyframe(w->o.keyframe_user);
        LG_INFO(MOD, "%s session %s answered", s->kind == LG_SDP_WHEP ? "WHEP" : "WHIP", s->id);
        pthread_mutex_lock(&w->mu);
        link = &w->sessions;
        continue;
      }
      if (s->state == SESS_LIVE) {
        int ice = atomic_load(&s->ice_state);
        if (ice == GST_WEBRTC_ICE_CONNECTION_STATE_DISCONNECTED) {
          if (s->t_disconnected == 0) s->t_disconnected = now;
          if (now - s->t_disconnected > DISCONNECTED_GRACE_S) atomic_store(&s->dead, true);
        } else {
          s->t_disconnected = 0;
        }
        if (!atomic_load(&s->connected) && now - s->t_state > CONNECT_TIMEOUT_S) {
          LG_INFO(MOD, "session %s never connected", s->id);
          atomic_store(&s->dead, true);
        }
        if (atomic_load(&s->connected)) {
          if (s->t_connected == 0) s->t_connected = now;
          double heard = atomic_load(&s->t_heard);
          if (now - (heard > s->t_connected ? heard : s->t_connected) > w->o.peer_timeout_s) {
            LG_INFO(MOD, "session %s: nothing from the peer for %.1f s", s->id,
                    w->o.peer_timeout_s);
            atomic_store(&s->dead, true);
          }
        }
        if (atomic_load(&s->dead)) continue; /* removed on this pass */
      }
      link = &s->next;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  /* Shutdown: every session goes. */
  while (w->sessions) {
    session *s = w->sessions;
    w->sessions = s->next;
    pthread_mutex_unlock(&w->mu);
    if (s->state != SESS_LIVE) deliver(w, s->req, 503, NULL, NULL, "shutting down");
    session_free(s);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* ---- sender thread: packet ring -> every live viewer ---- */

static void *sender_main(void *user) {
  lg_webrtc *w = user;
  lg_packet_reader rd;
  lg_packet_meta meta;
  size_t cap = 1 << 20;
  uint8_t *buf = malloc(cap);
  if (!buf) return NULL;
  lg_packet_reader_init(w->o.packets, &rd, 0);
  while (!atomic_load(&w->stop)) {
    int rc = lg_packet_ring_wait_read(w->o.packets, &rd, buf, cap, &meta, 100);
    if (rc == LG_EAGAIN) continue;
    if (rc == LG_EEOF) break;
    if (rc == LG_ERANGE) { /* grows once to the largest access unit */
      uint8_t *nb = meta.size <= LG_PACKET_MAX_BYTES ? realloc(buf, meta.size) : NULL;
      if (!nb) break;
      buf = nb;
      cap = meta.size;
      continue;
    }
    if (rc < 0) break;
    GstBuffer *b = NULL; /* one copy shared by every viewer */
    bool want_key = false;
    pthread_mutex_lock(&w->mu);
    for (session *s = w->sessions; s; s = s->next) {
      if (s->kind != LG_SDP_WHEP || s->state != SESS_LIVE || !s->appsrc || atomic_load(&s->dead))
        continue;
      if (!atomic_load(&s->need_key) &&
          gst_app_src_get_current_level_bytes(GST_APP_SRC(s->appsrc)) > SLOW_VIEWER_BYTES) {
        /* A slow viewer: skip to the next keyframe instead of queueing more. */
        LG_WARN(MOD, "viewer %s is behind; skipping to the next keyframe", s->id);
        atomic_store(&s->need_key, true);
        want_key = true;
      }
      if (atomic_load(&s->need_key)) {
        if (!meta.key) continue;
        atomic_store(&s->need_key, false);
      }
      if (!b) {
        b = gst_buffer_new_memdup(buf, meta.size);
        if (!meta.key) GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
      }
      if (gst_app_src_push_buffer(GST_APP_SRC(s->appsrc), gst_buffer_ref(b)) == GST_FLOW_OK)
        w->st.packets_sent++;
    }
    pthread_mutex_unlock(&w->mu);
    if (b) gst_buffer_unref(b);
    if (want_key && w->o.want_keyframe) w->o.want_keyframe(w->o.keyframe_user); /* unlocked */
  }
  free(buf);
  return NULL;
}

/* ---- public API ---- */

lg_webrtc *lg_webrtc_new(const lg_webrtc_opts *o) {
  if (!gst_is_initialized()) gst_init(NULL, NULL);
  if (!o || (!o->packets && !o->ingest) ||
      (o->ingest && (o->width != lg_frame_ring_width(o->ingest) ||
                     o->height != lg_frame_ring_height(o->ingest) || !(o->fps > 0)))) {
    LG_ERR(MOD, "bad WebRTC options (need a packet ring and/or an ingest ring of WxH @ fps)");
    return NULL;
  }
  GstElementFactory *f = gst_element_factory_find("webrtcbin");
  if (!f) {
    LG_ERR(MOD, "GStreamer has no webrtcbin (gstreamer1.0-plugins-bad, gstreamer1.0-nice)");
    return NULL;
  }
  gst_object_unref(f);
  lg_webrtc *w = calloc(1, sizeof(*w));
  if (!w) return NULL;
  w->o = *o;
  if (w->o.max_viewers <= 0) w->o.max_viewers = 16;
  atomic_store(&w->whip_on, w->o.ingest != NULL);
  if (!(w->o.gather_timeout_s > 0)) w->o.gather_timeout_s = 3.0;
  if (!(w->o.peer_timeout_s > 0)) w->o.peer_timeout_s = 15.0;
  if (w->o.n_ice_servers < 0 || w->o.n_ice_servers > LG_WEBRTC_MAX_ICE) w->o.n_ice_servers = 0;
  lg_rng_seed(&w->rng, (uint64_t)(lg_now() * 1e9) ^ (uint64_t)(uintptr_t)w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&w->signal_th, NULL, signal_main, w) != 0) goto fail;
  w->signal_started = true;
  if (w->o.packets) {
    if (pthread_create(&w->sender_th, NULL, sender_main, w) != 0) goto fail;
    w->sender_started = true;
  }
  return w;
fail:
  LG_ERR(MOD, "cannot start the WebRTC threads");
  lg_webrtc_free(&w);
  return NULL;
}

void lg_webrtc_free(lg_webrtc **pw) {
  if (!pw || !*pw) return;
  lg_webrtc *w = *pw;
  atomic_store(&w->stop, true);
  wake(w);
  if (w->sender_started) pthread_join(w->sender_th, NULL);
  if (w->signal_started) pthread_join(w->signal_th, NULL);
  for (int i = 0; i < SYNC_SLOTS; i++)
    free(w->sync[i].sdp);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
  *pw = NULL;
}

int lg_webrtc_offer(void *wp, lg_sdp_kind kind, uint64_t req, const char *offer_sdp, size_t n) {
  lg_webrtc *w = wp;
  int pt = 96;
  if (!w) return LG_EINVAL;
  if ((kind == LG_SDP_WHEP && !w->o.packets) ||
      (kind == LG_SDP_WHIP && (!w->o.ingest || !atomic_load(&w->whip_on))) ||
      (kind != LG_SDP_WHEP && kind != LG_SDP_WHIP))
    return LG_ENOTSUP;
  char profile[3] = ""; /* profile_idc of our stream from "avc1.PPCCLL", if known */
  if (kind == LG_SDP_WHEP) {
    lg_stream_info info;
    if (lg_packet_ring_get_info(w->o.packets, &info) && strncmp(info.codec, "avc1.", 5) == 0 &&
        strlen(info.codec) >= 7)
      memcpy(profile, info.codec + 5, 2);
  }
  if (check_offer(offer_sdp, n, kind, profile[0] ? profile : NULL, &pt) < 0) return LG_EFORMAT;
  session *s = calloc(1, sizeof(*s));
  if (!s) return LG_ENOMEM;
  s->offer = strndup(offer_sdp, n);
  if (!s->offer) {
    free(s);
    return LG_ENOMEM;
  }
  s->w = w;
  s->kind = kind;
  s->req = req;
  s->pt = pt;
  s->t_state = lg_now();
  pthread_mutex_init(&s->cand_mu, NULL);
  pthread_mutex_lock(&w->mu);
  int viewers = 0, publishers = 0;
  for (session *t = w->sessions; t; t = t->next) {
    if (atomic_load(&t->dead)) continue;
    if (t->kind == LG_SDP_WHEP)
      viewers++;
    else
      publishers++;
  }
  if ((kind == LG_SDP_WHEP && viewers >= w->o.max_viewers) ||
      (kind == LG_SDP_WHIP && publishers >= 1)) {
    pthread_mutex_unlock(&w->mu);
    LG_WARN(MOD, "%s refused: %s", kind == LG_SDP_WHEP ? "WHEP" : "WHIP",
            kind == LG_SDP_WHEP ? "too many viewers" : "a publisher is already connected");
    pthread_mutex_destroy(&s->cand_mu);
    free(s->offer);
    free(s);
    return LG_EAGAIN;
  }
  snprintf(s->id, sizeof(s->id), "%016llx%08llx", (unsigned long long)lg_rng_next(&w->rng),
           (unsigned long long)(lg_rng_next(&w->rng) & 0xffffffffu));
  s->next = w->sessions;
  w->sessions = s;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

int lg_webrtc_close(void *wp, lg_sdp_kind kind, const char *id) {
  lg_webrtc *w = wp;
  int rc = LG_ENOTFOUND;
  if (!w || !id) return LG_EINVAL;
  pthread_mutex_lock(&w->mu);
  for (session *s = w->sessions; s; s = s->next) {
    if (s->kind == kind && strcmp(s->id, id) == 0 && !atomic_load(&s->dead)) {
      atomic_store(&s->dead, true);
      rc = 0;
    }
  }
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void lg_webrtc_set_answer(lg_webrtc *w, lg_webrtc_answer_fn fn, void *user) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->o.answer = fn;
  w->o.answer_user = user;
  pthread_mutex_unlock(&w->mu);
}

void lg_webrtc_set_whip_enabled(lg_webrtc *w, bool on) {
  if (!w || !w->o.ingest) return;
  pthread_mutex_lock(&w->mu);
  atomic_store(&w->whip_on, on);
  if (!on)
    for (session *s = w->sessions; s; s = s->next)
      if (s->kind == LG_SDP_WHIP) atomic_store(&s->dead, true);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void lg_webrtc_fill_hooks(lg_webrtc *w, lg_webrtc_hooks *h) {
  h->user = w;
  h->offer = lg_webrtc_offer;
  h->close = lg_webrtc_close;
}

int lg_webrtc_offer_sync(lg_webrtc *w, lg_sdp_kind kind, const char *offer_sdp, char **answer_sdp,
                         char id[LG_WEBRTC_ID_MAX], double timeout_s) {
  if (!w || !offer_sdp || !answer_sdp) return LG_EINVAL;
  pthread_mutex_lock(&w->mu);
  bool has_answer_fn = w->o.answer != NULL;
  pthread_mutex_unlock(&w->mu);
  if (has_answer_fn) return LG_EINVAL;
  *answer_sdp = NULL;
  pthread_mutex_lock(&w->mu);
  int slot = -1;
  for (int i = 0; i < SYNC_SLOTS && slot < 0; i++)
    if (!w->sync[i].used) slot = i;
  if (slot < 0) {
    pthread_mutex_unlock(&w->mu);
    return LG_EAGAIN;
  }
  sync_slot *y = &w->sync[slot];
  memset(y, 0, sizeof(*y));
  y->used = true;
  y->req = ++w->next_sync_req;
  uint64_t req = y->req;
  pthread_mutex_unlock(&w->mu);
  int err = lg_webrtc_offer(w, kind, req, offer_sdp, strlen(offer_sdp));
  pthread_mutex_lock(&w->mu);
  if (err == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)timeout_s;
    ts.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    while (!y->done)
      if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT) break;
    if (!y->done)
      err = LG_EAGAIN;
    else if (y->status != 201 || !y->sdp)
      err = y->status == 400 ? LG_EFORMAT : LG_EBACKEND;
    else {
      *answer_sdp = y->sdp;
      y->sdp = NULL;
      snprintf(id, LG_WEBRTC_ID_MAX, "%s", y->id);
    }
  }
  free(y->sdp);
  memset(y, 0, sizeof(*y));
  pthread_mutex_unlock(&w->mu);
  return err;
}

void lg_webrtc_get_stats(lg_webrtc *w, lg_webrtc_stats *st) {
  if (!w || !st) return;
  pthread_mutex_lock(&w->mu);
  *st = w->st;
  st->viewers = st->publishers = st->viewers_connected = 0;
  for (session *s = w->sessions; s; s = s->next) {
    if (atomic_load(&s->dead)) continue;
    if (s->kind == LG_SDP_WHEP) {
      st->viewers++;
      if (atomic_load(&s->connected)) st->viewers_connected++;
    } else {
      st->publishers++;
    }
  }
  pthread_mutex_unlock(&w->mu);
}
