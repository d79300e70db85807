/* nccl_transport.c: the NCCL stage transport (interface in pipeline/transport.h, design in
 * docs/MULTIGPU.md): one process per GPU, ncclSend/ncclRecv between neighbouring ranks.
 *
 * A message is two NCCL transfers: a frame (payload size + the LG_XFER_HDR_BYTES header) and,
 * when the size is > 0, the payload. Each direction has two communicators, picked by the parity
 * of the sending rank, each with its own stream, so a rank's sends and receives sit on
 * different streams (no ring of sends waiting on receives queued behind them). A send stages
 * the tensor into a device buffer of its own (the caller may reuse the tensor at once), then
 * enqueues the transfer and returns: the transfer overlaps the caller's next compute; the next
 * send on that communicator waits for the previous one's buffer. A receive blocks until the
 * data is in the caller's tensor.
 * The communicators are non-blocking (ncclConfig_t.blocking = 0) and every wait polls: the
 * stream or event, the communicator's async error and the process's abort flag
 * (lg_nccl_abort: rank 0's watchdog sets it when a rank dies, since NCCL would wait for the
 * dead peer forever), and for the setup a timeout ($LG_NCCL_INIT_TIMEOUT_S, default 600 s).
 * Without NCCL (LG_HAVE_NCCL undefined) the constructors report LG_ENOTSUP.
 * Threads: one endpoint per stage, used by the stage's thread only. */
#include "../pipeline/transport.h"

#include <stdlib.h>
#include <string.h>

#ifndef LG_HAVE_NCCL

int lg_nccl_unique_id(unsigned char id[LG_NCCL_ID_BYTES]) {
  memset(id, 0, LG_NCCL_ID_BYTES);
  return LG_ENOTSUP;
}

lg_transport *lg_nccl_transport_new(const unsigned char id[LG_NCCL_ID_BYTES], int rank, int size,
                                    int device, size_t max_payload) {
  (void)id;
  (void)max_payload;
  LG_ERR("nccl", "rank %d of %d on device %d: this build has no NCCL (LG_CUDA=ON with NCCL found)",
         rank, size, device);
  return NULL;
}

void lg_nccl_abort(void) {}

#else

#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

_Static_assert(sizeof(ncclUniqueId) <= LG_NCCL_ID_BYTES, "ncclUniqueId does not fit");

#define FRAME_BYTES (16 + LG_XFER_HDR_BYTES) /* u64 payload size, 8 spare, header */

#define NCCL_CHECK(stmt)                                                                           \
  do {                                                                                             \
    ncclResult_t r_ = (stmt);                                                                      \
    if (r_ != ncclSuccess) {                                                                       \
      LG_ERR("nccl", "%s failed: %s (%s:%d)", #stmt, ncclGetErrorString(r_), __FILE__, __LINE__);  \
      err = LG_EBACKEND;                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define WAIT(stmt)                                                                                 \
  do {                                                                                             \
    err = (stmt);                                                                                  \
    if (err) goto fail;                                                                            \
  } while (0)

#define CUDA_CHECK(stmt)                                                                           \
  do {                                                                                             \
    cudaError_t c_ = (stmt);                                                                       \
    if (c_ != cudaSuccess) {                                                                       \
      LG_ERR("nccl", "%s failed: %s (%s:%d)", #stmt, cudaGetErrorString(c_), __FILE__, __LINE__);  \
      err = LG_EBACKEND;                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

typedef struct chan {
  ncclComm_t comm;
  cudaStream_t stream;
  unsigned char *buf; /* device: FRAME_BYTES + max_payload (send staging / recv landing) */
  cudaEvent_t done;   /* the last send's transfer finished with buf */
  int busy;           /* a send was enqueued since the last wait */
} chan;

typedef struct nccl_ep {
  int device;
  bool failed; /* a wait failed: communicators are aborted, not finalized */
  size_t max_payload;
  chan ch[2][2];        /* [direction 0 = towards NEXT, 1 = towards PREV][sender parity] */
  unsigned char *frame; /* pinned host FRAME_BYTES */
  size_t pending[2];    /* payload bytes announced by the last frame, per receive direction */
} nccl_ep;

static size_t frame_off(void) {
  return (FRAME_BYTES + 255) & ~(size_t)255;
}

static atomic_int g_abort;

void lg_nccl_abort(void) {
  atomic_store(&g_abort, 1);
}

static double init_timeout_s(void) {
  const char *v = getenv("LG_NCCL_INIT_TIMEOUT_S");
  double t = v && *v ? strtod(v, NULL) : 600.0;
  return t > 0.0 ? t : 600.0;
}

/* The communicator's state: 0 when idle, 1 while an operation is in progress, LG_E* on error
 * or after lg_nccl_abort. */
static int comm_state(ncclComm_t comm, const char *what) {
  ncclResult_t st = ncclSuccess;
  ncclResult_t r = ncclCommGetAsyncError(comm, &st);
  if (r != ncclSuccess) st = r;
  if (st != ncclSuccess && st != ncclInProgress) {
    LG_ERR("nccl", "%s: %s", what, ncclGetErrorString(st));
    return LG_EBACKEND;
  }
  if (atomic_load(&g_abort)) {
    LG_ERR("nccl", "%s: abandoned (a rank of the ring is gone)", what);
    return LG_EEOF;
  }
  return st == ncclInProgress ? 1 : 0;
}

/* After a NCCL call on a non-blocking communicator: waits until the operation was issued.
 * timeout_s <= 0: no timeout (the abort flag still ends the wait). */
static int comm_done(ncclResult_t r, ncclComm_t comm, double timeout_s, const char *what) {
  if (r != ncclSuccess && r != ncclInProgress) {
    LG_ERR("nccl", "%s: %s", what, ncclGetErrorString(r));
    return LG_EBACKEND;
  }
  double t0 = lg_now();
  for (;;) {
    int st = comm_state(comm, what);
    if (st <= 0) return st;
    if (timeout_s > 0.0 && lg_now() - t0 > timeout_s) {
      LG_ERR("nccl", "%s: no answer after %.0f s (is every rank running? LG_NCCL_INIT_TIMEOUT_S)",
             what, timeout_s);
      return LG_EAGAIN;
    }
    usleep(1000);
  }
}

/* Waits for the work queued on stream (ev NULL) or for event ev, watching comm. */
static int gpu_wait(cudaStream_t stream, cudaEvent_t ev, ncclComm_t comm, const char *what) {
  for (unsigned spin = 0;; spin++) {
    cudaError_t q = ev ? cudaEventQuery(ev) : cudaStreamQuery(stream);
    if (q == cudaSuccess) return 0;
    if (q != cudaErrorNotReady) {
      LG_ERR("nccl", "%s: %s", what, cudaGetErrorString(q));
      return LG_EBACKEND;
    }
    int st = comm_state(comm, what);
    if (st < 0) return st;
    if (spin < 4096)
      sched_yield(); /* a transfer usually ends within microseconds of its compute */
    else
      usleep(50);
  }
}

int lg_nccl_unique_id(unsigned char id[LG_NCCL_ID_BYTES]) {
  ncclUniqueId u;
  int err = 0;
  memset(id, 0, LG_NCCL_ID_BYTES);
  NCCL_CHECK(ncclGetUniqueId(&u));
  memcpy(id, &u, sizeof u);
fail:
  return err;
}

static void nccl_destroy(lg_transport *t) {
  nccl_ep *e = t->impl;
  if (e) {
    cudaSetDevice(e->device);
    for (int d = 0; d < 2 && !e->failed; d++) /* the last sends reach their peers */
      for (int p = 0; p < 2 && !e->failed; p++)
        if (e->ch[d][p].stream && e->ch[d][p].comm &&
            gpu_wait(e->ch[d][p].stream, NULL, e->ch[d][p].comm, "close") < 0)
          e->failed = true;
    for (int d = 0; d < 2 && !e->failed; d++)
      for (int p = 0; p < 2 && !e->failed; p++)
        if (e->ch[d][p].comm &&
            comm_done(ncclCommFinalize(e->ch[d][p].comm), e->ch[d][p].comm, 30.0, "finalize") < 0)
          e->failed = true;
    for (int d = 0; d < 2; d++) {
      for (int p = 0; p < 2; p++) {
        chan *c = &e->ch[d][p];
        if (c->comm) {
          if (e->failed)
            ncclCommAbort(c->comm);
          else
            ncclCommDestroy(c->comm);
        }
        if (c->done) cudaEventDestroy(c->done);
        if (c->stream) cudaStreamDestroy(c->stream);
        if (c->buf) cudaFree(c->buf);
      }
    }
    if (e->frame) cudaFreeHost(e->frame);
    free(e);
  }
  free(t);
}

static int peer(const lg_transport *t, lg_peer p) {
  return p == LG_PEER_NEXT ? (t->rank + 1) % t->size : (t->rank + t->size - 1) % t->size;
}

static int nccl_send(lg_transport *t, lg_peer to, const void *hdr, const lg_tensor *x) {
  nccl_ep *e = t->impl;
  int err = 0, dir = to == LG_PEER_NEXT ? 0 : 1;
  chan *c = &e->ch[dir][t->rank % 2];
  size_t bytes = x ? lg_tensor_nbytes(x) : 0;
  if (x && (!lg_tensor_is_contiguous(x) || bytes > e->max_payload)) {
    LG_ERR("nccl", "send: payload of %zu bytes over the %zu-byte staging buffer", bytes,
           e->max_payload);
    return LG_EINVAL;
  }
  CUDA_CHECK(cudaSetDevice(e->device));
  if (c->busy) WAIT(gpu_wait(c->stream, c->done, c->comm, "send")); /* buf free again */
  c->busy = 0;
  uint64_t b64 = bytes;
  memset(e->frame, 0, FRAME_BYTES);
  memcpy(e->frame, &b64, sizeof b64);
  memcpy(e->frame + 16, hdr, LG_XFER_HDR_BYTES);
  CUDA_CHECK(cudaMemcpyAsync(c->buf, e->frame, FRAME_BYTES, cudaMemcpyHostToDevice, c->stream));
  if (bytes) {
    /* the tensor was written on its backend's stream: wait for it, stage it, and let the
     * caller reuse it as soon as the copy is done */
    if (x->be) {
      err = x->be->ops->sync(x->be);
      if (err) goto fail;
    }
    CUDA_CHECK(cudaMemcpyAsync(c->buf + frame_off(), x->data, bytes, cudaMemcpyDefault, c->stream));
  }
  WAIT(gpu_wait(c->stream, NULL, c->comm, "send")); /* frame and payload staged */
  NCCL_CHECK(ncclGroupStart());
  NCCL_CHECK(ncclSend(c->buf, FRAME_BYTES, ncclUint8, peer(t, to), c->comm, c->stream));
  if (bytes)
    NCCL_CHECK(ncclSend(c->buf + frame_off(), bytes, ncclUint8, peer(t, to), c->comm, c->stream));
  WAIT(comm_done(ncclGroupEnd(), c->comm, 0.0, "send"));
  CUDA_CHECK(cudaEventRecord(c->done, c->stream));
  c->busy = 1;
fail:
  if (err) e->failed = true;
  return err;
}

/* Messages from `from` travel in direction 0 when from is PREV (it sent towards its NEXT). */
static chan *recv_chan(lg_transport *t, lg_peer from, int *dir) {
  nccl_ep *e = t->impl;
  *dir = from == LG_PEER_PREV ? 0 : 1;
  return &e->ch[*dir][peer(t, from) % 2];
}

static int nccl_recv_hdr(lg_transport *t, lg_peer from, void *hdr, size_t *bytes) {
  nccl_ep *e = t->impl;
  int err = 0, dir;
  chan *c = recv_chan(t, from, &dir);
  if (e->pending[dir]) {
    LG_ERR("nccl", "recv_hdr: the previous message's payload was not received");
    return LG_EINVAL;
  }
  CUDA_CHECK(cudaSetDevice(e->device));
  if (c->busy) { /* the channel's buffer may hold a send of ours (odd rings wrap onto one) */
    WAIT(gpu_wait(c->stream, c->done, c->comm, "receive"));
    c->busy = 0;
  }
  WAIT(comm_done(ncclRecv(c->buf, FRAME_BYTES, ncclUint8, peer(t, from), c->comm, c->stream),
                 c->comm, 0.0, "receive"));
  CUDA_CHECK(cudaMemcpyAsync(e->frame, c->buf, FRAME_BYTES, cudaMemcpyDeviceToHost, c->stream));
  WAIT(gpu_wait(c->stream, NULL, c->comm, "receive")); /* blocks until the peer sends */
  uint64_t b64;
  memcpy(&b64, e->frame, sizeof b64);
  if (b64 > e->max_payload) {
    LG_ERR("nccl", "recv: a %llu-byte payload announced, buffers hold %zu", (unsigned long long)b64,
           e->max_payload);
    return LG_EFORMAT;
  }
  memcpy(hdr, e->frame + 16, LG_XFER_HDR_BYTES);
  *bytes = (size_t)b64;
  e->pending[dir] = (size_t)b64;
fail:
  if (err) e->failed = true;
  return err;
}

static int nccl_recv_payload(lg_transport *t, lg_peer from, lg_tensor *x) {
  nccl_ep *e = t->impl;
  int err = 0, dir;
  chan *c = recv_chan(t, from, &dir);
  size_t bytes = e->pending[dir];
  if (!bytes || !x || !lg_tensor_is_contiguous(x) || lg_tensor_nbytes(x) != bytes) {
    LG_ERR("nccl", "recv_payload: %zu bytes announced, tensor of %zu", bytes,
           x ? lg_tensor_nbytes(x) : 0);
    return LG_EINVAL;
  }
  CUDA_CHECK(cudaSetDevice(e->device));
  WAIT(
      comm_done(ncclRecv(c->buf + frame_off(), bytes, ncclUint8, peer(t, from), c->comm, c->stream),
                c->comm, 0.0, "receive"));
  CUDA_CHECK(cudaMemcpyAsync(x->data, c->buf + frame_off(), bytes, cudaMemcpyDefault, c->stream));
  WAIT(gpu_wait(c->stream, NULL, c->comm, "receive"));
  e->pending[dir] = 0;
fail:
  if (err) e->failed = true;
  return err;
}

static const lg_transport_ops g_nccl_ops = {
    .name = "nccl",
    .send = nccl_send,
    .recv_hdr = nccl_recv_hdr,
    .recv_payload = nccl_recv_payload,
    .destroy = nccl_destroy,
};

lg_transport *lg_nccl_transport_new(const unsigned char id[LG_NCCL_ID_BYTES], int rank, int size,
                                    int device, size_t max_payload) {
  int err = 0;
  lg_transport *t = calloc(1, sizeof *t);
  nccl_ep *e = calloc(1, sizeof *e);
  if (!t || !e || size < 2 || rank < 0 || rank >= size) {
    LG_ERR("nccl", "rank %d of %d: bad arguments (2 ranks or more; 1 stage needs no transport)",
           rank, size);
    free(t);
    free(e);
    return NULL;
  }
  t->ops = &g_nccl_ops;
  t->rank = rank;
  t->size = size;
  t->impl = e;
  e->device = device;
  e->max_payload = max_payload;
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaMallocHost((void **)&e->frame, FRAME_BYTES));
  /* non-blocking: the setup waits for every rank, and must be able to give up */
  ncclConfig_t ncfg = NCCL_CONFIG_INITIALIZER;
  ncfg.blocking = 0;
  double tmo = init_timeout_s();
  WAIT(comm_done(ncclCommInitRankConfig(&e->ch[0][0].comm, size, u, rank, &ncfg), e->ch[0][0].comm,
                 tmo, "joining the ring"));
  for (int d = 0; d < 2; d++) {
    for (int p = 0; p < 2; p++) {
      chan *c = &e->ch[d][p];
      if (d || p) {
        ncclResult_t r = ncclCommSplit(e->ch[0][0].comm, 0, rank, &c->comm, &ncfg);
        WAIT(comm_done(r, e->ch[0][0].comm, tmo, "splitting the communicator"));
        if (c->comm) WAIT(comm_done(ncclSuccess, c->comm, tmo, "splitting the communicator"));
      }
      CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
      CUDA_CHECK(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming));
      CUDA_CHECK(cudaMalloc((void **)&c->buf, frame_off() + max_payload));
    }
  }
  LG_INFO("nccl", "rank %d of %d on device %d: 4 communicators, %zu-byte buffers", rank, size,
          device, max_payload);
  return t;
fail:
  (void)err;
  e->failed = true;
  nccl_destroy(t);
  return NULL;
}

#endif
