/* transport.c: the in-process stage transport (see transport.h): bounded FIFO queues of
 * preallocated slots between stage threads of one process. A send downloads the tensor into a
 * slot (backend -> host), recv_payload uploads it into the receiver's tensor, so stages may run
 * on separate backend instances (one per thread) of the CPU or of one GPU.
 * Threads: the group is shared by the stage threads; each queue has its own mutex. */
#include "transport.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
  unsigned char hdr[LG_XFER_HDR_BYTES];
  size_t bytes;
  unsigned char *data; /* max_payload bytes */
} slot;

typedef struct queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  slot *slots; /* [depth] */
  int head, count;
  bool hdr_taken; /* the head's header was received, its payload not yet */
} queue;

struct lg_inproc_group {
  int size, depth;
  size_t max_payload;
  int closed;         /* set once by close (atomic: read under each queue's own mutex) */
  queue *q;           /* [size*2]: q[rank*2 + dir], dir 0 = arriving from PREV, 1 = from NEXT */
  bool *in_use;       /* [size] endpoints handed out */
  pthread_mutex_t mu; /* guards in_use */
};

void lg_transport_free(lg_transport **t) {
  if (!t || !*t) return;
  (*t)->ops->destroy(*t);
  *t = NULL;
}

lg_inproc_group *lg_inproc_group_new(int size, int depth, size_t max_payload) {
  if (size < 1 || size > 64 || depth < 1 || depth > 64) {
    LG_ERR("transport", "in-process group: %d stages, depth %d (1..64 each)", size, depth);
    return NULL;
  }
  lg_inproc_group *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->size = size;
  g->depth = depth;
  g->max_payload = max_payload;
  pthread_mutex_init(&g->mu, NULL);
  g->q = calloc((size_t)size * 2, sizeof *g->q);
  g->in_use = calloc((size_t)size, sizeof *g->in_use);
  if (!g->q || !g->in_use) goto fail;
  for (int i = 0; i < size * 2; i++) {
    queue *q = &g->q[i];
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->slots = calloc((size_t)depth, sizeof *q->slots);
    if (!q->slots) goto fail;
    for (int j = 0; j < depth; j++) {
      q->slots[j].data = malloc(max_payload ? max_payload : 1);
      if (!q->slots[j].data) goto fail;
    }
  }
  return g;
fail:
  LG_ERR("transport", "in-process group: cannot allocate %d x 2 x %d slots of %zu bytes", size,
         depth, max_payload);
  lg_inproc_group_free(&g);
  return NULL;
}

void lg_inproc_group_close(lg_inproc_group *g) {
  if (!g) return;
  for (int i = 0; i < g->size * 2; i++) {
    pthread_mutex_lock(&g->q[i].mu);
    __atomic_store_n(&g->closed, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&g->q[i].cv);
    pthread_mutex_unlock(&g->q[i].mu);
  }
}

void lg_inproc_group_free(lg_inproc_group **pg) {
  if (!pg || !*pg) return;
  lg_inproc_group *g = *pg;
  if (g->q) {
    for (int i = 0; i < g->size * 2; i++) {
      if (g->q[i].slots)
        for (int j = 0; j < g->depth; j++)
          free(g->q[i].slots[j].data);
      free(g->q[i].slots);
      pthread_mutex_destroy(&g->q[i].mu);
      pthread_cond_destroy(&g->q[i].cv);
    }
  }
  free(g->q);
  free(g->in_use);
  pthread_mutex_destroy(&g->mu);
  free(g);
  *pg = NULL;
}

typedef struct endpoint {
  lg_inproc_group *g;
  int rank;
} endpoint;

static int peer_of(const lg_transport *t, lg_peer p) {
  return p == LG_PEER_NEXT ? (t->rank + 1) % t->size : (t->rank + t->size - 1) % t->size;
}

/* Queue a message sent towards `to` lands in: at the receiver, dir 0 holds what its PREV sent
 * (sent with NEXT), dir 1 what its NEXT sent (sent with PREV). */
static queue *send_queue(lg_transport *t, lg_peer to) {
  endpoint *e = t->impl;
  return &e->g->q[peer_of(t, to) * 2 + (to == LG_PEER_NEXT ? 0 : 1)];
}

static queue *recv_queue(lg_transport *t, lg_peer from) {
  endpoint *e = t->impl;
  return &e->g->q[t->rank * 2 + (from == LG_PEER_PREV ? 0 : 1)];
}

static int ip_send(lg_transport *t, lg_peer to, const void *hdr, const lg_tensor *x) {
  endpoint *e = t->impl;
  size_t bytes = x ? lg_tensor_nbytes(x) : 0;
  if (x && (!lg_tensor_is_contiguous(x) || bytes > e->g->max_payload)) {
    LG_ERR("transport", "send: payload of %zu bytes (contiguous: %d) over the %zu-byte slots",
           bytes, x ? (int)lg_tensor_is_contiguous(x) : 0, e->g->max_payload);
    return LG_EINVAL;
  }
  queue *q = send_queue(t, to);
  pthread_mutex_lock(&q->mu);
  while (!__atomic_load_n(&e->g->closed, __ATOMIC_SEQ_CST) && q->count == e->g->depth)
    pthread_cond_wait(&q->cv, &q->mu);
  if (__atomic_load_n(&e->g->closed, __ATOMIC_SEQ_CST)) {
    pthread_mutex_unlock(&q->mu);
    return LG_EEOF;
  }
  /* the slot past the tail is free and only this sender writes it: copy outside the lock */
  slot *s = &q->slots[(q->head + q->count) % e->g->depth];
  pthread_mutex_unlock(&q->mu);
  memcpy(s->hdr, hdr, LG_XFER_HDR_BYTES);
  s->bytes = bytes;
  int err = 0;
  if (bytes) {
    if (x->be)
      err = x->be->ops->download(x->be, s->data, x->data, bytes);
    else
      memcpy(s->data, x->data, bytes);
  }
  if (err) return err;
  pthread_mutex_lock(&q->mu);
  q->count++;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

static int ip_recv_hdr(lg_transport *t, lg_peer from, void *hdr, size_t *bytes) {
  endpoint *e = t->impl;
  queue *q = recv_queue(t, from);
  pthread_mutex_lock(&q->mu);
  if (q->hdr_taken) {
    pthread_mutex_unlock(&q->mu);
    LG_ERR("transport", "recv_hdr: the previous message's payload was not received");
    return LG_EINVAL;
  }
  while (!__atomic_load_n(&e->g->closed, __ATOMIC_SEQ_CST) && q->count == 0)
    pthread_cond_wait(&q->cv, &q->mu);
  if (__atomic_load_n(&e->g->closed, __ATOMIC_SEQ_CST)) {
    pthread_mutex_unlock(&q->mu);
    return LG_EEOF;
  }
  slot *s = &q->slots[q->head];
  memcpy(hdr, s->hdr, LG_XFER_HDR_BYTES);
  *bytes = s->bytes;
  if (s->bytes) {
    q->hdr_taken = true;
  } else {
    q->head = (q->head + 1) % e->g->depth;
    q->count--;
    pthread_cond_broadcast(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return 0;
}

static int ip_recv_payload(lg_transport *t, lg_peer from, lg_tensor *x) {
  endpoint *e = t->impl;
  queue *q = recv_queue(t, from);
  pthread_mutex_lock(&q->mu);
  bool taken = q->hdr_taken;
  slot *s = &q->slots[q->head];
  pthread_mutex_unlock(&q->mu);
  if (!taken) {
    LG_ERR("transport", "recv_payload: no header with a payload was received");
    return LG_EINVAL;
  }
  if (!x || !lg_tensor_is_contiguous(x) || lg_tensor_nbytes(x) != s->bytes) {
    LG_ERR("transport", "recv_payload: the message has %zu bytes, the tensor %zu", s->bytes,
           x ? lg_tensor_nbytes(x) : 0);
    return LG_EINVAL;
  }
  int err = 0;
  if (x->be)
    err = x->be->ops->upload(x->be, x->data, s->data, s->bytes);
  else
    memcpy(x->data, s->data, s->bytes);
  pthread_mutex_lock(&q->mu);
  q->hdr_taken = false;
  q->head = (q->head + 1) % e->g->depth;
  q->count--;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return err;
}

static void ip_destroy(lg_transport *t) {
  endpoint *e = t->impl;
  pthread_mutex_lock(&e->g->mu);
  e->g->in_use[e->rank] = false;
  pthread_mutex_unlock(&e->g->mu);
  free(e);
  free(t);
}

static const lg_transport_ops g_inproc_ops = {
    .name = "inproc",
    .send = ip_send,
    .recv_hdr = ip_recv_hdr,
    .recv_payload = ip_recv_payload,
    .destroy = ip_destroy,
};

lg_transport *lg_inproc_transport(lg_inproc_group *g, int rank) {
  if (!g || rank < 0 || rank >= g->size) {
    LG_ERR("transport", "in-process endpoint %d outside the group", rank);
    return NULL;
  }
  pthread_mutex_lock(&g->mu);
  bool used = g->in_use[rank];
  g->in_use[rank] = true;
  pthread_mutex_unlock(&g->mu);
  if (used) {
    LG_ERR("transport", "in-process endpoint %d is already in use", rank);
    return NULL;
  }
  lg_transport *t = calloc(1, sizeof *t);
  endpoint *e = calloc(1, sizeof *e);
  if (!t || !e) {
    free(t);
    free(e);
    pthread_mutex_lock(&g->mu);
    g->in_use[rank] = false;
    pthread_mutex_unlock(&g->mu);
    return NULL;
  }
  e->g = g;
  e->rank = rank;
  t->ops = &g_inproc_ops;
  t->rank = rank;
  t->size = g->size;
  t->impl = e;
  return t;
}
