/* server.h: the livegen HTTP + WebSocket server (libwebsockets 4.1), as documented in
 * docs/API.md: static files from the web root, GET /health, GET /metrics, GET /api/v1/status,
 * POST /api/v1/params|pause|resume|reset, WS /ws/control, WS /ws/stream?source=output|input,
 * WS /ws/publish, and POST/DELETE /whep, /whip handed to the WebRTC module through
 * lg_webrtc_hooks.
 *
 * Threads: lg_server_new binds the port on the caller's thread; lg_server_start starts the
 * one lws service thread, the only thread that calls libwebsockets from then on. Other
 * threads talk to it only through lg_server_wake (after writing packets into a ring) and
 * lg_server_sdp_answer (a WebRTC answer is ready); both are thread-safe and never block on
 * the network. lg_server_free stops and joins the service thread. */
#ifndef LG_SERVER_H
#define LG_SERVER_H

#include "control.h"
#include "metrics.h"
#include "packet_ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_SERVER_BODY_MAX (64 * 1024)          /* HTTP request bodies (JSON, SDP) */
#define LG_SERVER_PUBLISH_MAX (4 * 1024 * 1024) /* one JPEG on /ws/publish */

typedef enum lg_sdp_kind {
  LG_SDP_WHEP = 0, /* a viewer: offer in, answer out, the module sends our packet ring */
  LG_SDP_WHIP = 1, /* a publisher: offer in, answer out, the module feeds the ingest ring */
} lg_sdp_kind;

typedef struct lg_server lg_server;

/* WebRTC signalling hooks, implemented by streaming/webrtc.c. All are called on the lws
 * thread and must not block. NULL offer = WebRTC unavailable (503). */
typedef struct lg_webrtc_hooks {
  void *user;
  /* POST /whep or /whip with a complete body (offer_sdp: n bytes, NUL-terminated, borrowed
   * for the call). Start the negotiation and later call lg_server_sdp_answer(srv, req, ...)
   * exactly once, from any thread (also from inside this call). Return 0 if it will be
   * called, or LG_E* to have the server answer an error now (LG_EFORMAT -> 400, others 503)
   * without calling lg_server_sdp_answer. */
  int (*offer)(void *user, lg_sdp_kind kind, uint64_t req, const char *offer_sdp, size_t n);
  /* DELETE /whep/<id> or /whip/<id>: end that session. 0, or LG_ENOTFOUND (-> 404). Also
   * called by the server for a session whose HTTP client left before its answer came. */
  int (*close)(void *user, lg_sdp_kind kind, const char *id);
} lg_webrtc_hooks;

/* Which stream a viewer watches. */
typedef enum lg_stream_source {
  LG_SOURCE_OUTPUT = 0,
  LG_SOURCE_INPUT = 1,
  LG_SOURCE_COUNT
} lg_stream_source;

typedef struct lg_server_opts {
  char host[256]; /* interface to bind ("127.0.0.1", "0.0.0.0"); "" = all */
  int port;       /* 0 = any free port (see lg_server_port) */
  char web_root[1024];
  int max_viewers; /* /ws/stream connections, both sources together; <= 0: 64 */
  /* Encoded streams (borrowed until lg_server_free). in_ring may be NULL (no input preview). */
  lg_packet_ring *rings[LG_SOURCE_COUNT];
  lg_metrics *metrics; /* borrowed; may be NULL */
  lg_control_ops control;
  lg_webrtc_hooks webrtc;
  void *user; /* for the callbacks below */
  /* /ws/publish: one complete binary message (a JPEG). 0 = accepted, LG_ENOTSUP = input is
   * not "ws" (ignored silently), other LG_E* = rejected (the client gets an error message).
   * Called on the lws thread; must not block. NULL = publishing off. */
  int (*publish_jpeg)(void *user, const uint8_t *data, size_t n);
  /* A viewer of source needs a keyframe soon (joined or fell behind). Any-thread-safe
   * callee expected (e.g. lg_encoder_request_keyframe). May be NULL. */
  void (*want_keyframe)(void *user, lg_stream_source source);
  double status_interval_s; /* status push period on /ws/control; <= 0: 1 s */
} lg_server_opts;

/* Creates the context and binds the port. NULL with the reason in err. */
lg_server *lg_server_new(const lg_server_opts *o, char *err, size_t errn);
/* Starts the service thread. 0 or LG_E*. */
int lg_server_start(lg_server *s);
/* Stops the service thread (closing every connection) and frees. Accepts NULL. */
void lg_server_free(lg_server **s);

/* The bound port (useful with port 0). */
int lg_server_port(const lg_server *s);
/* Any thread: new packets are in a ring, or anything else changed; wakes the service
 * thread so viewers get them. Cheap; call after each packet. */
void lg_server_wake(lg_server *s);
/* Connected /ws/stream viewers (any thread). */
int lg_server_viewers(const lg_server *s);

/* Any thread: the answer to offer request `req`. status 201 with answer_sdp and resource_id
 * (the Location becomes /whep/<id> or /whip/<id>), or an error status (400, 503...) with
 * message. Strings are copied. 0, or LG_ENOTFOUND if req is unknown (already answered). */
int lg_server_sdp_answer(lg_server *s, uint64_t req, int status, const char *answer_sdp,
                         const char *resource_id, const char *message);

#ifdef __cplusplus
}
#endif
#endif
