/* transport.h: messages between pipeline stages (pipeline/stages.h, docs/MULTIGPU.md). A stage
 * sends a fixed-size header plus at most one tensor to its next or previous stage; each
 * direction is its own FIFO, so messages arrive in the order they were sent. Stage r's NEXT is
 * (r+1) mod size, its PREV (r-1) mod size: the last stage's NEXT is stage 0 (the ring).
 *
 * Two implementations:
 * - in-process (this file, transport.c): every stage a thread of one process (on one device or
 *   on the CPU backend), bounded queues of preallocated slots; used by CI and single-GPU runs.
 * - NCCL (cuda/nccl_transport.c): one process per GPU, ncclSend/ncclRecv on a stream of its
 *   own, one communicator per direction.
 *
 * Receiving is two calls: recv_hdr gives the header and the payload size so the receiver can
 * pick the destination, then recv_payload (only when the size is > 0) fills a tensor of exactly
 * that many bytes.
 * Threads: a transport endpoint belongs to the thread of its stage; the in-process group is
 * shared by the stage threads (one mutex per queue). */
#ifndef LG_TRANSPORT_H
#define LG_TRANSPORT_H

#include "lg_backend.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_XFER_HDR_BYTES 2048 /* every header is this size (opaque to the transport) */

typedef enum {
  LG_PEER_NEXT = 0, /* send: to (rank+1) mod size; recv: from (rank+1) mod size */
  LG_PEER_PREV = 1, /* send: to (rank-1) mod size; recv: from (rank-1) mod size */
} lg_peer;

typedef struct lg_transport lg_transport;

typedef struct lg_transport_ops {
  const char *name; /* "inproc", "nccl" */
  /* Sends hdr (LG_XFER_HDR_BYTES) and x's bytes (x contiguous, any backend, or NULL for none).
   * x and hdr may be reused once the call returns (the data was copied or its transfer was
   * ordered before any later write by the caller's backend). Blocks while the queue is full. */
  int (*send)(lg_transport *t, lg_peer to, const void *hdr, const lg_tensor *x);
  /* Next message from `from`: its header into hdr, its payload size into *bytes. Blocks. */
  int (*recv_hdr)(lg_transport *t, lg_peer from, void *hdr, size_t *bytes);
  /* The payload of the message whose header was just received, into x (contiguous, exactly
   * *bytes bytes; a host tensor with be NULL is allowed). */
  int (*recv_payload)(lg_transport *t, lg_peer from, lg_tensor *x);
  void (*destroy)(lg_transport *t);
} lg_transport_ops;

struct lg_transport {
  const lg_transport_ops *ops;
  int rank, size;
  void *impl;
};

void lg_transport_free(lg_transport **t);

/* ---- in-process group: `size` endpoints, one queue per (stage, direction) of `depth` slots
 * of up to max_payload bytes each, all allocated here. NULL on failure (logged). */
typedef struct lg_inproc_group lg_inproc_group;
lg_inproc_group *lg_inproc_group_new(int size, int depth, size_t max_payload);
/* Endpoint of `rank`; borrows the group until lg_transport_free. Each rank at most once. */
lg_transport *lg_inproc_transport(lg_inproc_group *g, int rank);
/* Wakes every blocked call with LG_EEOF and makes later calls fail the same way (a stage that
 * failed closes the group so the others do not wait forever). Thread-safe. */
void lg_inproc_group_close(lg_inproc_group *g);
/* After every endpoint was freed. */
void lg_inproc_group_free(lg_inproc_group **g);

/* ---- NCCL (cuda/nccl_transport.c; NULL and LG_ENOTSUP when built without NCCL) ----
 * id: 128 bytes from lg_nccl_unique_id on rank 0, given to every rank (file or env, see
 * docs/MULTIGPU.md). device: the CUDA device of this rank. max_payload: the largest tensor
 * (staging buffers are allocated once). */
#define LG_NCCL_ID_BYTES 128
int lg_nccl_unique_id(unsigned char id[LG_NCCL_ID_BYTES]);
lg_transport *lg_nccl_transport_new(const unsigned char id[LG_NCCL_ID_BYTES], int rank, int size,
                                    int device, size_t max_payload);
/* Makes every NCCL wait of this process (communicator setup, send, receive), blocked now or
 * later, give up with LG_EEOF: a peer rank died and nothing will come (rank 0's watchdog,
 * pipeline/dit_runner.c). Thread-safe and async-signal-safe; cannot be undone. The setup of a
 * communicator also gives up after $LG_NCCL_INIT_TIMEOUT_S seconds (default 600: a rank that
 * never joins). */
void lg_nccl_abort(void);

#ifdef __cplusplus
}
#endif
#endif
