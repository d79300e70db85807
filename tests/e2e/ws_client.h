/* ws_client.h: a small WebSocket client for tests (libwebsockets client API): one lws
 * context per client, messages reassembled from fragments and queued, text/binary sends,
 * and a service loop bounded in time. Plus a blocking HTTP/1.1 request helper over a plain
 * socket. Header-only (static functions). Each client is driven by one thread. */
#ifndef LG_WS_CLIENT_H
#define LG_WS_CLIENT_H

#include <libwebsockets.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct ws_msg {
  struct ws_msg *next;
  bool binary;
  size_t len;
  unsigned char *data; /* LWS_PRE headroom before it for sends; NUL-terminated */
  unsigned char *alloc;
} ws_msg;

typedef struct ws_client {
  struct lws_context *ctx;
  struct lws *wsi;
  lws_sorted_usec_list_t sul;
  struct lws_protocols protocols[2];
  bool established, closed, error;
  ws_msg *rx_head, *rx_tail;
  int rx_count;
  unsigned char *asm_buf;
  size_t asm_len, asm_cap;
  bool asm_binary;
  ws_msg *tx_head, *tx_tail;
  uint64_t rx_bytes;
} ws_client;

static double ws_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ws_msg *ws_msg_new(const void *data, size_t len, bool binary) {
  ws_msg *m = calloc(1, sizeof *m);
  m->alloc = malloc(LWS_PRE + len + 1);
  m->data = m->alloc + LWS_PRE;
  if (len) memcpy(m->data, data, len);
  m->data[len] = 0;
  m->len = len;
  m->binary = binary;
  return m;
}

static void ws_msg_free(ws_msg *m) {
  if (!m) return;
  free(m->alloc);
  free(m);
}

static void ws_tick(lws_sorted_usec_list_t *sul) {
  ws_client *c = lws_container_of(sul, ws_client, sul);
  lws_sul_schedule(c->ctx, 0, &c->sul, ws_tick, 20 * LWS_US_PER_MS);
}

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len) {
  (void)user;
  ws_client *c = lws_context_user(lws_get_context(wsi));
  switch (reason) {
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    c->established = true;
    if (c->tx_head) lws_callback_on_writable(wsi);
    break;
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    c->error = true;
    c->closed = true;
    c->wsi = NULL;
    break;
  case LWS_CALLBACK_CLIENT_CLOSED:
    c->closed = true;
    c->wsi = NULL;
    break;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (lws_is_first_fragment(wsi)) {
      c->asm_len = 0;
      c->asm_binary = lws_frame_is_binary(wsi);
    }
    if (c->asm_len + len + 1 > c->asm_cap) {
      c->asm_cap = (c->asm_len + len + 1) * 2;
      c->asm_buf = realloc(c->asm_buf, c->asm_cap);
    }
    memcpy(c->asm_buf + c->asm_len, in, len);
    c->asm_len += len;
    c->rx_bytes += len;
    if (lws_is_final_fragment(wsi)) {
      ws_msg *m = ws_msg_new(c->asm_buf, c->asm_len, c->asm_binary);
      if (c->rx_tail)
        c->rx_tail->next = m;
      else
        c->rx_head = m;
      c->rx_tail = m;
      c->rx_count++;
      c->asm_len = 0;
    }
    break;
  case LWS_CALLBACK_CLIENT_WRITEABLE: {
    ws_msg *m = c->tx_head;
    if (!m) break;
    c->tx_head = m->next;
    if (!c->tx_head) c->tx_tail = NULL;
    int n = lws_write(wsi, m->data, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    ws_msg_free(m);
    if (n < 0) return -1;
    if (c->tx_head) lws_callback_on_writable(wsi);
    break;
  }
  default: break;
  }
  return 0;
}

/* Connects to ws://127.0.0.1:port/path (subprotocol may be NULL). 0 or -1. The handshake
 * completes during ws_client_run. */
static int ws_client_open(ws_client *c, int port, const char *path, const char *subprotocol) {
  memset(c, 0, sizeof *c);
  c->protocols[0].name = "lg-test-client";
  c->protocols[0].callback = ws_cb;
  c->protocols[0].rx_buffer_size = 65536;
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = c->protocols;
  info.user = c;
  c->ctx = lws_create_context(&info);
  if (!c->ctx) return -1;
  lws_sul_schedule(c->ctx, 0, &c->sul, ws_tick, 20 * LWS_US_PER_MS);
  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = c->ctx;
  ci.address = "127.0.0.1";
  ci.port = port;
  ci.path = path;
  ci.host = "127.0.0.1";
  ci.origin = "127.0.0.1";
  ci.protocol = subprotocol;
  ci.local_protocol_name = "lg-test-client";
  ci.pwsi = &c->wsi;
  if (!lws_client_connect_via_info(&ci)) return -1;
  return 0;
}

/* Services the client until done(c, arg) is true, it closes, or timeout_s passes. Returns
 * true if done() became true. done may be NULL (just run for timeout_s). */
static bool ws_client_run(ws_client *c, double timeout_s, bool (*done)(ws_client *, void *),
                          void *arg) {
  double end = ws_now() + timeout_s;
  while (ws_now() < end) {
    if (done && done(c, arg)) return true;
    if (c->closed && !c->rx_head) return done ? done(c, arg) : false;
    lws_service(c->ctx, 0);
  }
  return done ? done(c, arg) : false;
}

static bool ws_is_established(ws_client *c, void *arg) {
  (void)arg;
  return c->established;
}

static bool ws_has_msg(ws_client *c, void *arg) {
  (void)arg;
  return c->rx_head != NULL;
}

static void ws_client_send(ws_client *c, const void *data, size_t len, bool binary) {
  ws_msg *m = ws_msg_new(data, len, binary);
  if (c->tx_tail)
    c->tx_tail->next = m;
  else
    c->tx_head = m;
  c->tx_tail = m;
  if (c->wsi && c->established) lws_callback_on_writable(c->wsi);
}

/* Next received message (caller frees with ws_msg_free), waiting up to timeout_s. */
static ws_msg *ws_client_next(ws_client *c, double timeout_s) {
  if (!c->rx_head) ws_client_run(c, timeout_s, ws_has_msg, NULL);
  ws_msg *m = c->rx_head;
  if (!m) return NULL;
  c->rx_head = m->next;
  if (!c->rx_head) c->rx_tail = NULL;
  c->rx_count--;
  m->next = NULL;
  return m;
}

static void ws_client_close(ws_client *c) {
  if (c->ctx) lws_context_destroy(c->ctx);
  c->ctx = NULL;
  ws_msg *m;
  while ((m = c->rx_head)) {
    c->rx_head = m->next;
    ws_msg_free(m);
  }
  while ((m = c->tx_head)) {
    c->tx_head = m->next;
    ws_msg_free(m);
  }
  free(c->asm_buf);
  c->asm_buf = NULL;
}

/* One HTTP/1.1 request to 127.0.0.1:port with Connection: close. Returns the status code
 * (or -1) and the body (malloc'd, NUL-terminated) in *body; headers (malloc'd) in *headers
 * if not NULL. Bounded by timeout_s. */
static int http_request(int port, const char *method, const char *path, const char *ctype,
                        const void *body, size_t body_len, char **resp_body, char **headers,
                        double timeout_s) {
  *resp_body = NULL;
  if (headers) *headers = NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  char head[1024];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                    "%s%s%sContent-Length: %zu\r\n\r\n",
                    method, path, port, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                    ctype ? "\r\n" : "", body_len);
  if (!strcmp(method, "GET") || !strcmp(method, "DELETE")) {
    hn = snprintf(head, sizeof head,
                  "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method, path,
                  port);
  }
  if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn) {
    close(fd);
    return -1;
  }
  size_t off = 0;
  while (off < body_len) {
    ssize_t w = send(fd, (const char *)body + off, body_len - off, MSG_NOSIGNAL);
    if (w <= 0) break; /* the server may refuse early (413) */
    off += (size_t)w;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  double end = ws_now() + timeout_s;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)((end - ws_now()) * 1000);
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
    ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
    if (r <= 0) break;
    len += (size_t)r;
    buf[len] = 0;
    /* Stop at Content-Length so a kept-alive connection does not hang us. */
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep) {
      const char *cl = strcasestr(buf, "content-length:");
      if (cl && cl < sep && len >= (size_t)(sep + 4 - buf) + strtoul(cl + 15, NULL, 10)) break;
    }
  }
  close(fd);
  buf[len] = 0;
  int status = -1;
  if (len > 12 && !strncmp(buf, "HTTP/1.1 ", 9)) status = atoi(buf + 9);
  char *sep = strstr(buf, "\r\n\r\n");
  if (!sep) {
    free(buf);
    return status;
  }
  *sep = 0;
  *resp_body = strdup(sep + 4);
  if (headers) *headers = strdup(buf);
  free(buf);
  return status;
}

#endif
