/* server.c: the libwebsockets server of docs/API.md (see server.h). One protocol callback
 * handles HTTP and the three WebSocket endpoints (dispatched on the request path); every
 * connection has a `conn` as its per-session data. HTTP responses are prepared in full and
 * written from the WRITEABLE callback (headers, then body). Viewers read the packet rings
 * with their own lg_packet_reader and write one access unit per WRITEABLE; a viewer whose
 * socket does not drain is simply not called back, falls behind in the ring and skips to the
 * next keyframe there. Control answers and status pushes are queued per connection.
 * WHEP/WHIP offers are handed to lg_webrtc_hooks and answered later through a small pending
 * table guarded by a mutex (the only state shared with other threads besides the rings).
 * Threads: the lws service thread for everything except lg_server_wake / _viewers /
 * _sdp_answer (any thread) and _new/_free (the owner's thread, service thread not running). */
#include "server.h"

#include "lg_base.h"

#include <libwebsockets.h>

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MOD "server"
#define MAX_PENDING_SDP 32
#define CTL_QUEUE_MAX 64
#define SDP_TIMEOUT_S 15.0
#define VIEWER_MAX_LAG 48 /* packets; beyond that a viewer skips to a keyframe */

typedef enum conn_kind {
  CONN_HTTP = 0,
  CONN_CONTROL,
  CONN_STREAM,
  CONN_PUBLISH,
} conn_kind;

typedef enum route {
  ROUTE_NONE = 0,
  ROUTE_PARAMS,
  ROUTE_PAUSE,
  ROUTE_RESUME,
  ROUTE_RESET,
  ROUTE_WHEP,
  ROUTE_WHIP,
} route;

/* A queued outgoing WebSocket message: LWS_PRE bytes of headroom, then len bytes. */
typedef struct out_msg {
  struct out_msg *next;
  size_t len;
  bool binary;
  unsigned char data[];
} out_msg;

typedef struct conn {
  struct lws *wsi;
  conn_kind kind;
  struct conn *prev, *next; /* server's list of WebSocket connections */
  /* HTTP transaction */
  route route;
  char *body; /* request body, up to LG_SERVER_BODY_MAX (+NUL) */
  size_t body_len;
  bool body_too_large;
  unsigned char *resp; /* LWS_PRE + resp_len bytes */
  size_t resp_len;
  int resp_status;
  const char *resp_type;
  char location[160];
  bool resp_ready, headers_sent, close_after;
  bool answered; /* a response was made for this request: ignore the rest of its body */
  bool sdp_waiting;
  /* control */
  out_msg *q_head, *q_tail;
  int q_len;
  /* stream */
  lg_stream_source source;
  lg_packet_reader rd;
  uint32_t info_sent;
  unsigned char *pkt; /* LWS_PRE + 9 + packet */
  size_t pkt_cap;
  double last_key_req;
  /* received message assembly (control, publish) */
  unsigned char *rx;
  size_t rx_len, rx_cap;
  bool rx_oversize;
  double last_err_t;
} conn;

typedef struct pending_sdp {
  uint64_t req; /* 0 = free slot */
  lg_sdp_kind kind;
  conn *c;   /* NULL once the HTTP client has gone */
  double t0; /* when the offer was handed over */
  bool answered;
  int status;
  char *answer, *id, *message;
} pending_sdp;

struct lg_server {
  lg_server_opts o;
  struct lws_context *ctx;
  struct lws_protocols protocols[4];
  lws_sorted_usec_list_t sul;
  pthread_t thread;
  bool started;
  atomic_bool stop;
  atomic_int viewers;
  conn *conns; /* WebSocket connections (lws thread only) */
  char web_root_real[PATH_MAX];
  /* WebRTC offers waiting for an answer; mu guards the table (any thread). */
  pthread_mutex_t mu;
  pending_sdp pending[MAX_PENDING_SDP];
  uint64_t next_req;
  char scratch[LG_CTL_ANSWER_MAX]; /* answer building (lws thread) */
};

static lg_server *server_of(struct lws *wsi) {
  return lws_context_user(lws_get_context(wsi));
}

/* ---- logging ---- */

static void lws_log_emit(int level, const char *line) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", line);
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = 0;
  lg_log(level & LLL_ERR ? LG_LOG_ERROR : LG_LOG_WARN, "lws", "%s", buf);
}

/* ---- connection list and queues ---- */

static void conn_link(lg_server *s, conn *c) {
  c->prev = NULL;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
}

static void conn_unlink(lg_server *s, conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (s->conns == c)
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* Queues a text message on a control/publish connection (copied). Drops it when the client
 * has not drained CTL_QUEUE_MAX messages (a stuck client must not grow memory). */
static void queue_text(conn *c, const char *text, size_t len) {
  if (c->q_len >= CTL_QUEUE_MAX) {
    LG_WARN(MOD, "control client not reading; dropping a message");
    return;
  }
  out_msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (!m) return;
  m->next = NULL;
  m->len = len;
  m->binary = false;
  memcpy(m->data + LWS_PRE, text, len);
  if (c->q_tail)
    c->q_tail->next = m;
  else
    c->q_head = m;
  c->q_tail = m;
  c->q_len++;
  lws_callback_on_writable(c->wsi);
}

static void queue_free(conn *c) {
  out_msg *m = c->q_head;
  while (m) {
    out_msg *n = m->next;
    free(m);
    m = n;
  }
  c->q_head = c->q_tail = NULL;
  c->q_len = 0;
}

static void http_reset(conn *c) {
  free(c->body);
  free(c->resp);
  c->body = NULL;
  c->resp = NULL;
  c->body_len = c->resp_len = 0;
  c->body_too_large = c->resp_ready = c->headers_sent = c->close_after = c->answered = false;
  c->sdp_waiting = false;
  c->route = ROUTE_NONE;
  c->location[0] = 0;
}

/* ---- HTTP responses ---- */

/* Sets the response (body copied) and asks for a writable callback. */
static void respond(conn *c, int status, const char *type, const char *body, size_t len) {
  free(c->resp);
  c->resp = malloc(LWS_PRE + len + 1);
  if (!c->resp) {
    c->resp_len = 0;
    status = 500;
    type = "text/plain";
  } else {
    memcpy(c->resp + LWS_PRE, body, len);
    c->resp_len = len;
  }
  c->resp_status = status;
  c->resp_type = type;
  c->resp_ready = true;
  c->answered = true;
  c->headers_sent = false;
  lws_callback_on_writable(c->wsi);
}

static void respond_json(conn *c, int status, const char *json) {
  respond(c, status, "application/json", json, strlen(json));
}

static void respond_error(lg_server *s, conn *c, int status, const char *message) {
  int n = lg_ctl_format_error(NULL, message, s->scratch, sizeof s->scratch);
  if (n < 0)
    respond_json(c, status, "{\"type\":\"error\",\"id\":null,\"message\":\"error\"}");
  else
    respond(c, status, "application/json", s->scratch, (size_t)n);
}

/* HTTP WRITEABLE: headers in one callback, the body in the next. Returns -1 to close. */
static int http_writeable(conn *c) {
  if (!c->resp_ready) return 0;
  if (!c->headers_sent) {
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(c->wsi, (unsigned)c->resp_status, c->resp_type,
                                    (lws_filepos_t)c->resp_len, &p, end))
      return -1;
    if (lws_add_http_header_by_name(c->wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
      return -1;
    if (c->location[0] && lws_add_http_header_by_name(c->wsi, (const unsigned char *)"location:",
                                                      (const unsigned char *)c->location,
                                                      (int)strlen(c->location), &p, end))
      return -1;
    if (c->close_after && lws_add_http_header_by_name(c->wsi, (const unsigned char *)"connection:",
                                                      (const unsigned char *)"close", 5, &p, end))
      return -1;
    if (lws_finalize_write_http_header(c->wsi, start, &p, end)) return -1;
    c->headers_sent = true;
    lws_callback_on_writable(c->wsi);
    return 0;
  }
  if (lws_write(c->wsi, c->resp + LWS_PRE, c->resp_len, LWS_WRITE_HTTP_FINAL) != (int)c->resp_len)
    return -1;
  bool close_after = c->close_after;
  free(c->resp);
  c->resp = NULL;
  c->resp_len = 0;
  c->resp_ready = false;
  if (close_after) return -1;
  return lws_http_transaction_completed(c->wsi) ? -1 : 0;
}

/* ---- static files ---- */

static const char *mime_of(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot) return "application/octet-stream";
  static const struct {
    const char *ext, *mime;
  } t[] = {{".html", "text/html; charset=utf-8"},
           {".js", "text/javascript; charset=utf-8"},
           {".mjs", "text/javascript; charset=utf-8"},
           {".css", "text/css; charset=utf-8"},
           {".json", "application/json"},
           {".png", "image/png"},
           {".jpg", "image/jpeg"},
           {".svg", "image/svg+xml"},
           {".ico", "image/x-icon"},
           {".wasm", "application/wasm"},
           {".txt", "text/plain; charset=utf-8"},
           {".map", "application/json"}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!strcmp(dot, t[i].ext)) return t[i].mime;
  return "application/octet-stream";
}

/* Serves uri from the web root. Returns what LWS_CALLBACK_HTTP should return. */
static int serve_static(lg_server *s, conn *c, const char *uri) {
  char rel[512], path[PATH_MAX], real[PATH_MAX];
  size_t n = strlen(uri);
  if (!s->web_root_real[0] || n == 0 || n >= sizeof rel - 16 || uri[0] != '/' ||
      strstr(uri, "..") || strchr(uri, '\\')) {
    respond(c, 404, "text/plain", "not found\n", 10);
    return 0;
  }
  snprintf(rel, sizeof rel, "%s%s", uri, uri[n - 1] == '/' ? "index.html" : "");
  int k = snprintf(path, sizeof path, "%s%s", s->web_root_real, rel);
  struct stat st;
  if (k < 0 || (size_t)k >= sizeof path) {
    respond(c, 404, "text/plain", "not found\n", 10);
    return 0;
  }
  /* realpath: symlinks must not lead outside the web root. */
  if (!realpath(path, real) || strncmp(real, s->web_root_real, strlen(s->web_root_real)) ||
      stat(real, &st) || !S_ISREG(st.st_mode)) {
    respond(c, 404, "text/plain", "not found\n", 10);
    return 0;
  }
  int rc = lws_serve_http_file(c->wsi, real, mime_of(real), NULL, 0);
  if (rc < 0 || (rc > 0 && lws_http_transaction_completed(c->wsi))) return -1;
  return 0;
}

/* ---- API ---- */

static void fill_status(lg_server *s, lg_ctl_status *st) {
  memset(st, 0, sizeof *st);
  if (s->o.control.get_status) s->o.control.get_status(s->o.control.user, st);
  st->viewers += atomic_load(&s->viewers); /* the service reports its other viewers (WHEP) */
}

static void respond_status(lg_server *s, conn *c) {
  lg_ctl_status st;
  fill_status(s, &st);
  int n = lg_ctl_format_status(&st, NULL, NULL, s->scratch, sizeof s->scratch);
  if (n < 0)
    respond_error(s, c, 500, "status too large");
  else
    respond(c, 200, "application/json", s->scratch, (size_t)n);
}

static void respond_metrics(lg_server *s, conn *c) {
  if (!s->o.metrics) {
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", "", 0);
    return;
  }
  lg_metrics_set_gauge(s->o.metrics, LG_GAUGE_VIEWERS, atomic_load(&s->viewers));
  size_t cap = lg_metrics_render_size();
  char *buf = malloc(cap);
  int n = buf ? lg_metrics_render(s->o.metrics, buf, cap) : LG_ENOMEM;
  if (n < 0)
    respond_error(s, c, 500, "metrics unavailable");
  else
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf, (size_t)n);
  free(buf);
}

/* A control request from HTTP (params body, or a command with no body). */
static void respond_control(lg_server *s, conn *c, const char *msg, size_t len, int type) {
  int rc = lg_ctl_handle(&s->o.control, msg, len, type, s->scratch, sizeof s->scratch);
  int status = 200;
  if (rc == LG_EFORMAT || rc == LG_ERANGE || rc == LG_EINVAL)
    status = 400;
  else if (rc)
    status = 503;
  respond(c, status, "application/json", s->scratch, strlen(s->scratch));
}

static void handle_offer(lg_server *s, conn *c, lg_sdp_kind kind) {
  if (!s->o.webrtc.offer) {
    respond_error(s, c, 503, "WebRTC is not available in this build");
    return;
  }
  if (!c->body_len) {
    respond_error(s, c, 400, "the body must be an SDP offer");
    return;
  }
  pthread_mutex_lock(&s->mu);
  pending_sdp *p = NULL;
  for (int i = 0; i < MAX_PENDING_SDP; i++)
    if (!s->pending[i].req) {
      p = &s->pending[i];
      break;
    }
  uint64_t req = 0;
  if (p) {
    req = ++s->next_req;
    memset(p, 0, sizeof *p);
    p->req = req;
    p->kind = kind;
    p->c = c;
    p->t0 = lg_now();
  }
  pthread_mutex_unlock(&s->mu);
  if (!p) {
    respond_error(s, c, 503, "too many WebRTC negotiations in progress");
    return;
  }
  c->sdp_waiting = true;
  int rc = s->o.webrtc.offer(s->o.webrtc.user, kind, req, c->body, c->body_len);
  if (rc) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < MAX_PENDING_SDP; i++)
      if (s->pending[i].req == req) {
        free(s->pending[i].answer);
        free(s->pending[i].id);
        free(s->pending[i].message);
        memset(&s->pending[i], 0, sizeof s->pending[i]);
      }
    pthread_mutex_unlock(&s->mu);
    c->sdp_waiting = false;
    respond_error(s, c, rc == LG_EFORMAT ? 400 : 503,
                  rc == LG_EFORMAT ? "the SDP offer was not accepted" : "WebRTC failed");
  }
}

/* Delivers answered offers and times out stale ones (lws thread). */
static void process_pending(lg_server *s) {
  double now = lg_now();
  for (int i = 0; i < MAX_PENDING_SDP; i++) {
    pthread_mutex_lock(&s->mu);
    pending_sdp p = s->pending[i];
    bool take = p.req && (p.answered || now - p.t0 > SDP_TIMEOUT_S);
    if (take) memset(&s->pending[i], 0, sizeof s->pending[i]);
    pthread_mutex_unlock(&s->mu);
    if (!take) continue;
    conn *c = p.c;
    if (!p.answered) {
      if (c) {
        c->sdp_waiting = false;
        respond_error(s, c, 504, "WebRTC negotiation timed out");
      }
    } else if (!c) {
      /* The client left before its answer: end the session nobody will use. */
      if (p.status == 201 && p.id && s->o.webrtc.close)
        s->o.webrtc.close(s->o.webrtc.user, p.kind, p.id);
    } else {
      c->sdp_waiting = false;
      if (p.status == 201 && p.answer && p.id) {
        snprintf(c->location, sizeof c->location, "/%s/%s", p.kind == LG_SDP_WHEP ? "whep" : "whip",
                 p.id);
        respond(c, 201, "application/sdp", p.answer, strlen(p.answer));
      } else {
        respond_error(s, c, p.status >= 400 && p.status < 600 ? p.status : 500,
                      p.message ? p.message : "WebRTC negotiation failed");
      }
    }
    free(p.answer);
    free(p.id);
    free(p.message);
  }
}

/* The HTTP client of a pending offer went away. */
static void forget_pending(lg_server *s, conn *c) {
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < MAX_PENDING_SDP; i++)
    if (s->pending[i].req && s->pending[i].c == c) s->pending[i].c = NULL;
  pthread_mutex_unlock(&s->mu);
  c->sdp_waiting = false;
}

int lg_server_sdp_answer(lg_server *s, uint64_t req, int status, const char *answer_sdp,
                         const char *resource_id, const char *message) {
  if (!s || !req) return LG_EINVAL;
  int rc = LG_ENOTFOUND;
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < MAX_PENDING_SDP; i++) {
    pending_sdp *p = &s->pending[i];
    if (p->req != req || p->answered) continue;
    p->answered = true;
    p->status = status;
    p->answer = answer_sdp ? strdup(answer_sdp) : NULL;
    p->id = resource_id ? strdup(resource_id) : NULL;
    p->message = message ? strdup(message) : NULL;
    rc = 0;
    break;
  }
  pthread_mutex_unlock(&s->mu);
  if (!rc) lws_cancel_service(s->ctx);
  return rc;
}

/* Valid resource ids: [A-Za-z0-9_-]{1,64}. */
static bool valid_id(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = id[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_'))
      return false;
  }
  return true;
}

static int http_route(lg_server *s, conn *c, const char *uri);

/* One request. A request answered before its body arrived closes the connection afterwards
 * so the unread body is never taken for the next request. */
static int http_request(lg_server *s, conn *c, const char *uri) {
  http_reset(c);
  char cl[32] = {0};
  bool has_body = lws_hdr_copy(c->wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
                  strtoll(cl, NULL, 10) > 0;
  int rc = http_route(s, c, uri);
  if (c->answered && has_body) c->close_after = true;
  return rc;
}

static int http_route(lg_server *s, conn *c, const char *uri) {
  bool get = lws_hdr_total_length(c->wsi, WSI_TOKEN_GET_URI) > 0;
  bool post = lws_hdr_total_length(c->wsi, WSI_TOKEN_POST_URI) > 0;
  bool del = lws_hdr_total_length(c->wsi, WSI_TOKEN_DELETE_URI) > 0;
  bool api = !strncmp(uri, "/api/", 5);

  static const struct {
    const char *path;
    route r;
  } posts[] = {{"/api/v1/params", ROUTE_PARAMS},
               {"/api/v1/pause", ROUTE_PAUSE},
               {"/api/v1/resume", ROUTE_RESUME},
               {"/api/v1/reset", ROUTE_RESET},
               {"/whep", ROUTE_WHEP},
               {"/whip", ROUTE_WHIP}};
  route r = ROUTE_NONE;
  for (size_t i = 0; i < sizeof posts / sizeof posts[0]; i++)
    if (!strcmp(uri, posts[i].path)) r = posts[i].r;

  if (!strcmp(uri, "/health") || !strcmp(uri, "/metrics") || !strcmp(uri, "/api/v1/status")) {
    if (!get) {
      respond_error(s, c, 405, "use GET");
      return 0;
    }
    if (uri[1] == 'h')
      respond_json(c, 200, "{\"status\":\"ok\"}");
    else if (uri[1] == 'm')
      respond_metrics(s, c);
    else
      respond_status(s, c);
    return 0;
  }
  if (r != ROUTE_NONE) {
    if (!post) {
      respond_error(s, c, 405, "use POST");
      return 0;
    }
    c->route = r;
    char cl[32] = {0};
    long long len = -1;
    if (lws_hdr_copy(c->wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
      len = strtoll(cl, NULL, 10);
    if (len > LG_SERVER_BODY_MAX) {
      c->close_after = true; /* the unread body must not be taken for the next request */
      respond_error(s, c, 413, "request body too large (at most 65536 bytes)");
      return 0;
    }
    if (len > 0) return 0; /* wait for LWS_CALLBACK_HTTP_BODY(_COMPLETION) */
    /* No body: commands run now; params and offers need one. */
    if (r == ROUTE_PAUSE)
      respond_control(s, c, "{\"type\":\"pause\"}", 16, LG_CTL_PAUSE);
    else if (r == ROUTE_RESUME)
      respond_control(s, c, "{\"type\":\"resume\"}", 17, LG_CTL_RESUME);
    else if (r == ROUTE_RESET)
      respond_control(s, c, "{\"type\":\"reset\"}", 16, LG_CTL_RESET);
    else if (r == ROUTE_PARAMS)
      respond_error(s, c, 400, "the body must be a JSON object");
    else
      handle_offer(s, c, r == ROUTE_WHEP ? LG_SDP_WHEP : LG_SDP_WHIP);
    return 0;
  }
  if (!strncmp(uri, "/whep/", 6) || !strncmp(uri, "/whip/", 6)) {
    lg_sdp_kind kind = uri[3] == 'e' ? LG_SDP_WHEP : LG_SDP_WHIP;
    const char *id = uri + 6;
    if (!del) {
      respond_error(s, c, 405, "use DELETE");
    } else if (!valid_id(id) || !s->o.webrtc.close) {
      respond_error(s, c, 404, "no such session");
    } else {
      int rc = s->o.webrtc.close(s->o.webrtc.user, kind, id);
      if (rc)
        respond_error(s, c, 404, "no such session");
      else
        respond(c, 200, "text/plain", "", 0);
    }
    return 0;
  }
  if (api) {
    respond_error(s, c, 404, "unknown API path");
    return 0;
  }
  if (!get) {
    respond_error(s, c, 405, "method not allowed");
    return 0;
  }
  return serve_static(s, c, uri);
}

static int http_body(conn *c, const void *in, size_t len) {
  if (c->body_too_large || c->answered) return 0;
  if (c->body_len + len > LG_SERVER_BODY_MAX) {
    c->body_too_large = true;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    return 0;
  }
  if (!c->body) {
    c->body = malloc(LG_SERVER_BODY_MAX + 1);
    if (!c->body) return -1;
  }
  memcpy(c->body + c->body_len, in, len);
  c->body_len += len;
  c->body[c->body_len] = 0;
  return 0;
}

static void http_body_done(lg_server *s, conn *c) {
  if (c->answered) return;
  if (c->body_too_large) {
    c->close_after = true;
    respond_error(s, c, 413, "request body too large (at most 65536 bytes)");
    return;
  }
  const char *b = c->body ? c->body : "";
  switch (c->route) {
  case ROUTE_PARAMS: respond_control(s, c, b, c->body_len, LG_CTL_PARAMS); break;
  case ROUTE_PAUSE: respond_control(s, c, "{\"type\":\"pause\"}", 16, LG_CTL_PAUSE); break;
  case ROUTE_RESUME: respond_control(s, c, "{\"type\":\"resume\"}", 17, LG_CTL_RESUME); break;
  case ROUTE_RESET: respond_control(s, c, "{\"type\":\"reset\"}", 16, LG_CTL_RESET); break;
  case ROUTE_WHEP: handle_offer(s, c, LG_SDP_WHEP); break;
  case ROUTE_WHIP: handle_offer(s, c, LG_SDP_WHIP); break;
  default: respond_error(s, c, 404, "not found"); break;
  }
  /* Every consumer above copied what it needed: the body is not kept with the connection. */
  free(c->body);
  c->body = NULL;
  c->body_len = 0;
}

/* ---- WebSocket ---- */

/* Which endpoint an upgrade request is for (from the GET path and ?source=). */
static int ws_target(struct lws *wsi, conn_kind *kind, lg_stream_source *src) {
  char uri[128];
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return -1;
  *src = LG_SOURCE_OUTPUT;
  if (!strcmp(uri, "/ws/control"))
    *kind = CONN_CONTROL;
  else if (!strcmp(uri, "/ws/publish"))
    *kind = CONN_PUBLISH;
  else if (!strcmp(uri, "/ws/stream")) {
    *kind = CONN_STREAM;
    char arg[64];
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
      if (!strcmp(arg, "source=input"))
        *src = LG_SOURCE_INPUT;
      else if (!strcmp(arg, "source=output"))
        *src = LG_SOURCE_OUTPUT;
      else if (!strncmp(arg, "source=", 7))
        return -1;
    }
  } else
    return -1;
  return 0;
}

static void want_key(lg_server *s, conn *c) {
  double now = lg_now();
  if (now - c->last_key_req < 0.5) return; /* one request per viewer per half second */
  c->last_key_req = now;
  if (s->o.want_keyframe) s->o.want_keyframe(s->o.user, c->source);
}

static int stream_writeable(lg_server *s, conn *c) {
  lg_packet_ring *ring = s->o.rings[c->source];
  lg_stream_info info;
  uint32_t v = lg_packet_ring_get_info(ring, &info);
  if (!v) return 0; /* no keyframe encoded yet */
  if (v != c->info_sent) {
    char cfg[256];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"type\":\"config\",\"codec\":\"%s\",\"width\":%d,\"height\":%d,"
                     "\"fps\":%.6g,\"format\":\"annexb\"}",
                     info.codec[0] ? info.codec : "avc1.42E01E", info.width, info.height,
                     info.fps_den > 0 ? (double)info.fps_num / info.fps_den : 0.0);
    unsigned char buf[LWS_PRE + 256];
    memcpy(buf + LWS_PRE, cfg, (size_t)n);
    if (lws_write(c->wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n) return -1;
    if (c->info_sent) c->rd.need_key = true; /* the stream changed: restart at a keyframe */
    c->info_sent = v;
    lws_callback_on_writable(c->wsi);
    return 0;
  }
  lg_packet_meta m;
  size_t room = c->pkt_cap > LWS_PRE + 9 ? c->pkt_cap - LWS_PRE - 9 : 0;
  int rc = lg_packet_ring_read(ring, &c->rd, c->pkt ? c->pkt + LWS_PRE + 9 : NULL, room, &m);
  if (rc == LG_ERANGE || (rc == LG_EINVAL && !c->pkt)) {
    size_t need = LWS_PRE + 9 + (rc == LG_ERANGE ? m.size : 65536);
    unsigned char *nb = realloc(c->pkt, need);
    if (!nb) return -1;
    c->pkt = nb;
    c->pkt_cap = need;
    rc = lg_packet_ring_read(ring, &c->rd, c->pkt + LWS_PRE + 9, need - LWS_PRE - 9, &m);
  }
  if (rc == LG_EAGAIN) {
    if (c->rd.need_key) want_key(s, c);
    return 0;
  }
  if (rc == LG_EEOF) return 0;
  if (rc) return -1;
  unsigned char *h = c->pkt + LWS_PRE;
  h[0] = m.key ? 1 : 0;
  uint64_t pts = (uint64_t)m.pts_us;
  for (int i = 0; i < 8; i++)
    h[1 + i] = (unsigned char)(pts >> (56 - 8 * i));
  size_t len = 9 + m.size;
  if (lws_write(c->wsi, h, len, LWS_WRITE_BINARY) < (int)len) return -1;
  if (lg_packet_ring_readable(ring, &c->rd)) lws_callback_on_writable(c->wsi);
  return 0;
}

static void send_error_text(lg_server *s, conn *c, const char *message, bool rate_limit) {
  double now = lg_now();
  if (rate_limit && now - c->last_err_t < 1.0) return;
  c->last_err_t = now;
  int n = lg_ctl_format_error(NULL, message, s->scratch, sizeof s->scratch);
  if (n > 0) queue_text(c, s->scratch, (size_t)n);
}

/* A complete message arrived on /ws/control or /ws/publish. */
static void ws_message(lg_server *s, conn *c, bool binary) {
  if (c->kind == CONN_CONTROL) {
    if (c->rx_oversize) {
      char m[96];
      snprintf(m, sizeof m, "message too large (at most %d bytes)", LG_CTL_MSG_MAX);
      send_error_text(s, c, m, false);
      return;
    }
    if (binary) {
      send_error_text(s, c, "control messages must be text (JSON)", false);
      return;
    }
    lg_ctl_handle(&s->o.control, (const char *)c->rx, c->rx_len, -1, s->scratch, sizeof s->scratch);
    /* A status answer gets the live viewer count like the periodic push. */
    queue_text(c, s->scratch, strlen(s->scratch));
    return;
  }
  /* publish */
  if (c->rx_oversize || !binary || c->rx_len == 0) {
    if (s->o.metrics) lg_metrics_add(s->o.metrics, LG_COUNTER_FRAMES_DROPPED, 1);
    send_error_text(s, c,
                    c->rx_oversize ? "frame too large (at most 4 MiB)"
                                   : "frames must be binary messages, one JPEG each",
                    true);
    return;
  }
  if (!s->o.publish_jpeg) return;
  int rc = s->o.publish_jpeg(s->o.user, c->rx, c->rx_len);
  if (rc && rc != LG_ENOTSUP && rc != LG_EAGAIN) {
    if (s->o.metrics) lg_metrics_add(s->o.metrics, LG_COUNTER_FRAMES_DROPPED, 1);
    send_error_text(s, c, rc == LG_EFORMAT ? "not a JPEG image" : "frame rejected", true);
  }
}

static int ws_receive(lg_server *s, conn *c, const void *in, size_t len) {
  if (c->kind == CONN_STREAM) return 0; /* viewers send nothing we use */
  size_t limit = c->kind == CONN_CONTROL ? LG_CTL_MSG_MAX : LG_SERVER_PUBLISH_MAX;
  if (lws_is_first_fragment(c->wsi)) {
    c->rx_len = 0;
    c->rx_oversize = false;
  }
  if (!c->rx_oversize) {
    if (c->rx_len + len > limit) {
      c->rx_oversize = true; /* discard the rest of this message */
    } else {
      if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len + 1)
          cap *= 2;
        unsigned char *nb = realloc(c->rx, cap);
        if (!nb) return -1;
        c->rx = nb;
        c->rx_cap = cap;
      }
      memcpy(c->rx + c->rx_len, in, len);
      c->rx_len += len;
      c->rx[c->rx_len] = 0;
    }
  }
  if (lws_is_final_fragment(c->wsi)) {
    ws_message(s, c, lws_frame_is_binary(c->wsi));
    c->rx_len = 0;
    c->rx_oversize = false;
  }
  return 0;
}

static int ctl_writeable(conn *c) {
  out_msg *m = c->q_head;
  if (!m) return 0;
  c->q_head = m->next;
  if (!c->q_head) c->q_tail = NULL;
  c->q_len--;
  int n =
      lws_write(c->wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
  bool ok = n >= (int)m->len;
  free(m);
  if (!ok) return -1;
  if (c->q_head) lws_callback_on_writable(c->wsi);
  return 0;
}

/* Periodic work on the lws thread: status pushes, SDP timeouts. */
static void on_timer(lws_sorted_usec_list_t *sul) {
  lg_server *s = lws_container_of(sul, lg_server, sul);
  lg_ctl_status st;
  bool have = false;
  int n = 0;
  for (conn *c = s->conns; c; c = c->next) {
    if (c->kind != CONN_CONTROL || c->q_len > 8) continue;
    if (!have) {
      fill_status(s, &st);
      n = lg_ctl_format_status(&st, "status", NULL, s->scratch, sizeof s->scratch);
      have = true;
    }
    if (n > 0) queue_text(c, s->scratch, (size_t)n);
  }
  if (s->o.metrics) lg_metrics_set_gauge(s->o.metrics, LG_GAUGE_VIEWERS, atomic_load(&s->viewers));
  process_pending(s);
  double iv = s->o.status_interval_s > 0 ? s->o.status_interval_s : 1.0;
  lws_sul_schedule(s->ctx, 0, &s->sul, on_timer, (lws_usec_t)(iv * LWS_US_PER_SEC));
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  lg_server *s = server_of(wsi);
  conn *c = user;
  switch (reason) {
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    /* Woken by another thread: new packets, SDP answers, or stop. */
    if (!s) return 0;
    process_pending(s);
    for (conn *k = s->conns; k; k = k->next) {
      if (k->kind != CONN_STREAM) continue;
      lg_packet_ring *ring = s->o.rings[k->source];
      if (lg_packet_ring_get_info(ring, NULL) != k->info_sent ||
          lg_packet_ring_readable(ring, &k->rd))
        lws_callback_on_writable(k->wsi);
      else if (k->rd.need_key)
        want_key(s, k); /* still waiting for a keyframe: ask again (rate-limited) */
    }
    return 0;

  case LWS_CALLBACK_HTTP:
    c->wsi = wsi;
    c->kind = CONN_HTTP;
    return http_request(s, c, in ? (const char *)in : "/");
  case LWS_CALLBACK_HTTP_BODY: return http_body(c, in, len);
  case LWS_CALLBACK_HTTP_BODY_COMPLETION: http_body_done(s, c); return 0;
  case LWS_CALLBACK_HTTP_WRITEABLE: return http_writeable(c);
  case LWS_CALLBACK_HTTP_FILE_COMPLETION: return lws_http_transaction_completed(wsi) ? -1 : 0;
  case LWS_CALLBACK_CLOSED_HTTP:
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    if (c && c->kind == CONN_HTTP) {
      if (c->sdp_waiting) forget_pending(s, c);
      http_reset(c);
    }
    return 0;

  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
    conn_kind k;
    lg_stream_source src;
    if (ws_target(wsi, &k, &src)) return 1;
    if (k == CONN_STREAM && (!s->o.rings[src] || atomic_load(&s->viewers) >= s->o.max_viewers))
      return 1;
    return 0;
  }
  case LWS_CALLBACK_ESTABLISHED: {
    if (c->sdp_waiting) forget_pending(s, c);
    http_reset(c); /* the same session data may have served HTTP before the upgrade */
    memset(c, 0, sizeof *c);
    c->wsi = wsi;
    if (ws_target(wsi, &c->kind, &c->source)) return -1;
    conn_link(s, c);
    if (c->kind == CONN_STREAM) {
      if (atomic_fetch_add(&s->viewers, 1) + 1 > s->o.max_viewers) {
        atomic_fetch_sub(&s->viewers, 1);
        c->kind = CONN_HTTP; /* not counted */
        return -1;
      }
      lg_packet_reader_init(s->o.rings[c->source], &c->rd, VIEWER_MAX_LAG);
      c->last_key_req = -1e9;
      want_key(s, c);
      if (s->o.metrics)
        lg_metrics_set_gauge(s->o.metrics, LG_GAUGE_VIEWERS, atomic_load(&s->viewers));
      lws_callback_on_writable(wsi);
    } else if (c->kind == CONN_CONTROL) {
      lg_ctl_status st;
      fill_status(s, &st);
      int n = lg_ctl_format_status(&st, "status", NULL, s->scratch, sizeof s->scratch);
      if (n > 0) queue_text(c, s->scratch, (size_t)n);
    }
    return 0;
  }
  case LWS_CALLBACK_RECEIVE: return ws_receive(s, c, in, len);
  case LWS_CALLBACK_SERVER_WRITEABLE:
    if (c->kind == CONN_STREAM) return stream_writeable(s, c);
    return ctl_writeable(c);
  case LWS_CALLBACK_CLOSED:
    if (c->kind == CONN_STREAM) {
      atomic_fetch_sub(&s->viewers, 1);
      if (s->o.metrics)
        lg_metrics_set_gauge(s->o.metrics, LG_GAUGE_VIEWERS, atomic_load(&s->viewers));
    }
    if (c->wsi) conn_unlink(s, c);
    queue_free(c);
    free(c->pkt);
    free(c->rx);
    c->pkt = c->rx = NULL;
    c->kind = CONN_HTTP;
    return 0;
  default: return 0;
  }
}

/* ---- lifecycle ---- */

lg_server *lg_server_new(const lg_server_opts *o, char *err, size_t errn) {
  char tmp[256];
  if (!err || !errn) {
    err = tmp;
    errn = sizeof tmp;
  }
  err[0] = 0;
  if (!o || o->port < 0 || o->port > 65535 || !o->rings[LG_SOURCE_OUTPUT]) {
    snprintf(err, errn, "server: bad options (port, output ring)");
    LG_ERR(MOD, "%s", err);
    return NULL;
  }
  lg_server *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->o = *o;
  if (s->o.max_viewers <= 0) s->o.max_viewers = 64;
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->stop, false);
  atomic_init(&s->viewers, 0);
  if (o->web_root[0] && !realpath(o->web_root, s->web_root_real)) {
    LG_WARN(MOD, "web root %s not found: static files disabled", o->web_root);
    s->web_root_real[0] = 0;
  }
  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
  static const char *names[] = {"http", "livegen-control", "livegen-stream"};
  for (int i = 0; i < 3; i++) {
    s->protocols[i].name = names[i];
    s->protocols[i].callback = callback;
    s->protocols[i].per_session_data_size = sizeof(conn);
    s->protocols[i].rx_buffer_size = 65536;
  }
  /* protocols[3] stays zeroed: the terminator. */
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = o->port;
  info.iface = o->host[0] ? o->host : NULL;
  info.protocols = s->protocols;
  info.user = s;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  info.timeout_secs = 20;
  info.max_http_header_data = 4096; /* browsers send long cookies and user agents */
  s->ctx = lws_create_context(&info);
  if (!s->ctx) {
    snprintf(err, errn, "cannot listen on %s:%d (in use or not permitted)",
             o->host[0] ? o->host : "*", o->port);
    LG_ERR(MOD, "%s", err);
    goto fail;
  }
  if (lg_server_port(s) <= 0) {
    snprintf(err, errn, "cannot listen on %s:%d", o->host[0] ? o->host : "*", o->port);
    LG_ERR(MOD, "%s", err);
    goto fail;
  }
  LG_INFO(MOD, "listening on http://%s:%d/ (web root %s)", o->host[0] ? o->host : "0.0.0.0",
          lg_server_port(s), s->web_root_real[0] ? s->web_root_real : "none");
  return s;
fail:
  lg_server_free(&s);
  return NULL;
}

static void *service_main(void *arg) {
  lg_server *s = arg;
  lws_sul_schedule(s->ctx, 0, &s->sul, on_timer, LWS_US_PER_SEC / 4);
  while (!atomic_load(&s->stop))
    if (lws_service(s->ctx, 0) < 0) break;
  return NULL;
}

int lg_server_start(lg_server *s) {
  if (!s || s->started) return LG_EINVAL;
  if (pthread_create(&s->thread, NULL, service_main, s)) return LG_ENOMEM;
  s->started = true;
  return 0;
}

void lg_server_free(lg_server **ps) {
  if (!ps || !*ps) return;
  lg_server *s = *ps;
  if (s->started) {
    atomic_store(&s->stop, true);
    lws_cancel_service(s->ctx);
    pthread_join(s->thread, NULL);
  }
  if (s->ctx) {
    lws_sul_cancel(&s->sul);
    lws_context_destroy(s->ctx); /* closes connections: CLOSED callbacks run here */
  }
  for (int i = 0; i < MAX_PENDING_SDP; i++) {
    free(s->pending[i].answer);
    free(s->pending[i].id);
    free(s->pending[i].message);
  }
  pthread_mutex_destroy(&s->mu);
  free(s);
  *ps = NULL;
}

int lg_server_port(const lg_server *s) {
  struct lws_vhost *vh = lws_get_vhost_by_name(s->ctx, "default");
  return vh ? lws_get_vhost_listen_port(vh) : -1;
}

void lg_server_wake(lg_server *s) {
  if (s && s->ctx) lws_cancel_service(s->ctx);
}

int lg_server_viewers(const lg_server *s) {
  return s ? atomic_load(&((lg_server *)s)->viewers) : 0;
}
