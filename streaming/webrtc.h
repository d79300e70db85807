/* webrtc.h: WebRTC for livegen with GStreamer webrtcbin, signalled by WHEP and WHIP (HTTP
 * POST of an SDP offer, 201 with the SDP answer; no trickle ICE: the answer is sent once ICE
 * gathering is complete, so it carries every candidate).
 *
 * WHEP viewers: one pipeline and one webrtcbin per viewer,
 *   appsrc (is-live, H.264 Annex B access units) ! h264parse !
 *   rtph264pay config-interval=-1 pt=<the offer's H.264 payload type> ! webrtcbin
 * fed by one sender thread that reads the shared encoder's packet ring (one reader for all
 * viewers; each viewer starts at a keyframe and a PLI from the browser asks the encoder for
 * one). A session is removed on DELETE, on ICE/DTLS failure or close, after ICE stays
 * disconnected for 10 s, when it never connects within 30 s of the answer, or when the peer
 * goes silent (no RTP/RTCP for peer_timeout_s).
 * WHIP publishers (at most one at a time): webrtcbin ! decodebin (rtph264depay/avdec_h264,
 * VP8, ...) ! videoconvert ! videoscale ! videorate ! RGB WxH ! appsink -> the ingest frame
 * ring (input "whip").
 * ICE: host candidates on every interface by default (loopback and LAN work without TURN);
 * optional STUN/TURN URLs (lg_server_config.ice_servers); local_addresses restricts the
 * interfaces (e.g. "127.0.0.1" in tests).
 *
 * Threads: lg_webrtc_offer and lg_webrtc_close are the server's lg_webrtc_hooks (called on
 * the lws thread; they only queue work and never block). One signalling thread builds
 * pipelines, negotiates, calls the answer callback and tears sessions down; one sender
 * thread fans access units out; GStreamer/libnice threads run the media. _new/_free from the
 * owner (serve.c). */
#ifndef LG_WEBRTC_H
#define LG_WEBRTC_H

#include "frame_ring.h"
#include "packet_ring.h"
#include "server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_WEBRTC_MAX_ICE 4
#define LG_WEBRTC_ID_MAX 40

/* Delivers the answer to offer request `req` (the server's lg_server_sdp_answer, wrapped):
 * status 201 with answer_sdp and resource_id, or an error status (400, 409, 503) with a
 * message. Called exactly once per accepted offer, from the signalling thread. Return 0, or
 * LG_ENOTFOUND when the request is gone (its HTTP client left): the session is dropped. */
typedef int (*lg_webrtc_answer_fn)(void *user, uint64_t req, int status, const char *answer_sdp,
                                   const char *resource_id, const char *message);

typedef struct lg_webrtc_opts {
  lg_packet_ring *packets; /* WHEP source (borrowed until _free); NULL = WHEP off */
  lg_frame_ring *ingest;   /* WHIP target (borrowed until _free); NULL = WHIP off */
  int width, height;       /* WHIP frame size = the ingest ring's */
  double fps;              /* WHIP frame rate */
  int max_viewers;         /* WHEP sessions; <= 0: 16 */
  char ice_servers[LG_WEBRTC_MAX_ICE][512]; /* stun://host:port, turn://user:pass@host:port */
  int n_ice_servers;
  char local_addresses[256]; /* comma-separated IPs ICE may use; "" = all interfaces */
  double gather_timeout_s;   /* answer with the candidates found so far after this; <= 0: 3 s */
  double peer_timeout_s;     /* a connected peer that sent no RTP/RTCP for this long is gone (tab
                                killed, network lost: no DELETE, no DTLS close); <= 0: 15 s.
                                Browsers send RTCP feedback every second or faster. */
  lg_webrtc_answer_fn answer;
  void *answer_user;
  /* A viewer needs a keyframe (joined, or the browser sent a PLI). Any-thread-safe, e.g.
   * lg_encoder_request_keyframe. May be NULL. */
  void (*want_keyframe)(void *user);
  void *keyframe_user;
} lg_webrtc_opts;

typedef struct lg_webrtc lg_webrtc;

/* Starts the signalling and sender threads. NULL on bad options (logged). */
lg_webrtc *lg_webrtc_new(const lg_webrtc_opts *o);
/* Closes every session and stops the threads (bounded, about a second); *w = NULL.
 * Accepts NULL. */
void lg_webrtc_free(lg_webrtc **w);

/* lg_webrtc_hooks.offer (user = the lg_webrtc): queues the offer (copied) and returns 0; the
 * answer comes later through opts.answer. LG_EFORMAT: not an SDP offer with a video m-line
 * (or, for WHEP, without H.264); LG_ENOTSUP: that direction is off; LG_EAGAIN: too many
 * viewers, or a WHIP publisher is already connected. */
int lg_webrtc_offer(void *w, lg_sdp_kind kind, uint64_t req, const char *offer_sdp, size_t n);
/* lg_webrtc_hooks.close: ends session `id` (asynchronously). 0 or LG_ENOTFOUND. */
int lg_webrtc_close(void *w, lg_sdp_kind kind, const char *id);
/* Accepts WHIP publishers (default when opts.ingest is set) or not: call with false when the
 * input switches away from "whip" (open WHIP sessions are closed, new offers get
 * LG_ENOTSUP), so a publisher's frames never mix with another input's. Any thread. */
void lg_webrtc_set_whip_enabled(lg_webrtc *w, bool on);
/* Fills the server hooks with the two functions above. */
void lg_webrtc_fill_hooks(lg_webrtc *w, lg_webrtc_hooks *h);
/* Sets opts.answer after creation, for the usual order in serve.c: lg_webrtc_new, then
 * lg_server_new with lg_webrtc_fill_hooks, then
 *   static int answer(void *srv, uint64_t req, int status, const char *sdp, const char *id,
 *                     const char *msg) { return lg_server_sdp_answer(srv, req, status, sdp,
 *                                                                    id, msg); }
 *   lg_webrtc_set_answer(w, answer, server);
 * Call before the server starts (offers answered earlier would go to the sync table). */
void lg_webrtc_set_answer(lg_webrtc *w, lg_webrtc_answer_fn fn, void *user);

/* Blocking convenience for tools and tests (not for the lws thread): sends the offer and
 * waits up to timeout_s for the answer. On 0, *answer_sdp is a malloc'd string the caller
 * frees and id holds the resource id. Needs opts.answer == NULL. */
int lg_webrtc_offer_sync(lg_webrtc *w, lg_sdp_kind kind, const char *offer_sdp, char **answer_sdp,
                         char id[LG_WEBRTC_ID_MAX], double timeout_s);

typedef struct lg_webrtc_stats {
  int viewers; /* WHEP sessions (negotiating or connected) */
  int viewers_connected;
  int publishers;           /* WHIP sessions */
  uint64_t packets_sent;    /* access units handed to viewers, all together */
  uint64_t frames_in;       /* WHIP frames pushed into the ingest ring */
  uint64_t sessions_closed; /* sessions fully torn down (pipeline stopped) */
} lg_webrtc_stats;
void lg_webrtc_get_stats(lg_webrtc *w, lg_webrtc_stats *st);

#ifdef __cplusplus
}
#endif
#endif
