/* test_transport.c: the in-process stage transport (pipeline/transport.h): messages arrive in
 * order per direction, headers and payloads intact (CPU-backend tensors and host tensors), the
 * ring wraps (the last stage's NEXT is stage 0), a full queue blocks the sender until the
 * receiver takes a message, a payload of the wrong size is refused, and closing the group wakes
 * a blocked receiver with LG_EEOF. The NCCL transport reports LG_ENOTSUP in builds without it. */
#include "test_util.h"

#include "transport.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

static unsigned char g_hdr[LG_XFER_HDR_BYTES], g_in[LG_XFER_HDR_BYTES];

static void hdr_with(int v) {
  memset(g_hdr, 0, sizeof g_hdr);
  memcpy(g_hdr, &v, sizeof v);
  g_hdr[LG_XFER_HDR_BYTES - 1] = (unsigned char)(v * 3);
}

static int hdr_value(void) {
  int v;
  memcpy(&v, g_in, sizeof v);
  assert_int_equal(g_in[LG_XFER_HDR_BYTES - 1], (unsigned char)(v * 3));
  return v;
}

static void test_order_and_payloads(void **state) {
  (void)state;
  lg_inproc_group *g = lg_inproc_group_new(3, 4, 64 * sizeof(float));
  assert_non_null(g);
  lg_transport *t[3];
  for (int r = 0; r < 3; r++) {
    t[r] = lg_inproc_transport(g, r);
    assert_non_null(t[r]);
    assert_int_equal(t[r]->rank, r);
    assert_int_equal(t[r]->size, 3);
  }
  tu_log_capture(true);
  assert_null(lg_inproc_transport(g, 1)); /* taken */
  assert_null(lg_inproc_transport(g, 3));
  tu_log_capture(false);
  lg_backend *be = lg_backend_new_cpu(1);
  int64_t sh[2] = {4, 16};
  float a[64], b[64];
  for (int i = 0; i < 64; i++)
    a[i] = (float)i * 0.5f;
  lg_tensor x = tu_tensor(be, LG_F32, 2, sh, a), y;
  assert_int_equal(lg_tensor_alloc(be, &y, LG_F32, 2, sh), 0);
  /* 0 -> 1 forward: three messages, one without payload, in order */
  for (int i = 0; i < 3; i++) {
    hdr_with(10 + i);
    assert_int_equal(t[0]->ops->send(t[0], LG_PEER_NEXT, g_hdr, i == 1 ? NULL : &x), 0);
  }
  /* 1 -> 0 backward, interleaved: its own queue */
  hdr_with(99);
  assert_int_equal(t[1]->ops->send(t[1], LG_PEER_PREV, g_hdr, NULL), 0);
  size_t bytes = 7;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(t[1]->ops->recv_hdr(t[1], LG_PEER_PREV, g_in, &bytes), 0);
    assert_int_equal(hdr_value(), 10 + i);
    assert_int_equal(bytes, i == 1 ? 0 : sizeof a);
    if (bytes) {
      memset(b, 0, sizeof b);
      assert_int_equal(t[1]->ops->recv_payload(t[1], LG_PEER_PREV, &y), 0);
      assert_int_equal(lg_tensor_download(&y, b), 0);
      assert_memory_equal(a, b, sizeof a);
    }
  }
  assert_int_equal(t[0]->ops->recv_hdr(t[0], LG_PEER_NEXT, g_in, &bytes), 0);
  assert_int_equal(hdr_value(), 99);
  /* the ring: stage 2's NEXT is stage 0; a host tensor as the destination */
  hdr_with(5);
  assert_int_equal(t[2]->ops->send(t[2], LG_PEER_NEXT, g_hdr, &x), 0);
  assert_int_equal(t[0]->ops->recv_hdr(t[0], LG_PEER_PREV, g_in, &bytes), 0);
  assert_int_equal(hdr_value(), 5);
  lg_tensor hb = lg_tensor_make(NULL, b, LG_F32, 2, sh);
  memset(b, 0, sizeof b);
  /* a header before the previous payload was taken, and a payload of the wrong size */
  tu_log_capture(true);
  assert_int_equal(t[0]->ops->recv_hdr(t[0], LG_PEER_PREV, g_in, &bytes), LG_EINVAL);
  int64_t sh1[2] = {2, 16};
  lg_tensor small = lg_tensor_make(NULL, b, LG_F32, 2, sh1);
  assert_int_equal(t[0]->ops->recv_payload(t[0], LG_PEER_PREV, &small), LG_EINVAL);
  tu_log_capture(false);
  assert_int_equal(t[0]->ops->recv_payload(t[0], LG_PEER_PREV, &hb), 0);
  assert_memory_equal(a, b, sizeof a);
  /* too large for the slots */
  int64_t big[2] = {8, 16};
  lg_tensor xb;
  assert_int_equal(lg_tensor_alloc(be, &xb, LG_F32, 2, big), 0);
  tu_log_capture(true);
  assert_int_equal(t[0]->ops->send(t[0], LG_PEER_NEXT, g_hdr, &xb), LG_EINVAL);
  tu_log_capture(false);
  lg_tensor_free(&xb);
  lg_tensor_free(&x);
  lg_tensor_free(&y);
  lg_backend_free(&be);
  for (int r = 0; r < 3; r++)
    lg_transport_free(&t[r]);
  assert_null(t[0]);
  lg_inproc_group_free(&g);
  assert_null(g);
}

typedef struct prod {
  lg_transport *t;
  int sent; /* messages whose send returned */
  int rc;
} prod;

static void *producer(void *arg) {
  prod *p = arg;
  unsigned char h[LG_XFER_HDR_BYTES];
  for (int i = 0; i < 6; i++) {
    memset(h, 0, sizeof h);
    memcpy(h, &i, sizeof i);
    p->rc = p->t->ops->send(p->t, LG_PEER_NEXT, h, NULL);
    if (p->rc) return NULL;
    __atomic_store_n(&p->sent, i + 1, __ATOMIC_SEQ_CST);
  }
  return NULL;
}

static void test_full_queue_blocks(void **state) {
  (void)state;
  lg_inproc_group *g = lg_inproc_group_new(2, 2, 16);
  lg_transport *a = lg_inproc_transport(g, 0), *b = lg_inproc_transport(g, 1);
  prod p = {.t = a};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
  usleep(100 * 1000);
  /* depth 2: the third send waits */
  assert_int_equal(__atomic_load_n(&p.sent, __ATOMIC_SEQ_CST), 2);
  size_t bytes;
  for (int i = 0; i < 6; i++) {
    assert_int_equal(b->ops->recv_hdr(b, LG_PEER_PREV, g_in, &bytes), 0);
    int v;
    memcpy(&v, g_in, sizeof v);
    assert_int_equal(v, i);
  }
  pthread_join(th, NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.sent, 6);
  lg_transport_free(&a);
  lg_transport_free(&b);
  lg_inproc_group_free(&g);
}

typedef struct waiter {
  lg_transport *t;
  int rc;
} waiter;

static void *blocked_recv(void *arg) {
  waiter *w = arg;
  unsigned char h[LG_XFER_HDR_BYTES];
  size_t bytes;
  w->rc = w->t->ops->recv_hdr(w->t, LG_PEER_PREV, h, &bytes);
  return NULL;
}

static void test_close_wakes(void **state) {
  (void)state;
  lg_inproc_group *g = lg_inproc_group_new(2, 2, 16);
  lg_transport *a = lg_inproc_transport(g, 0), *b = lg_inproc_transport(g, 1);
  waiter w = {.t = b, .rc = 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, blocked_recv, &w), 0);
  usleep(50 * 1000);
  lg_inproc_group_close(g);
  pthread_join(th, NULL);
  assert_int_equal(w.rc, LG_EEOF);
  assert_int_equal(a->ops->send(a, LG_PEER_NEXT, g_hdr, NULL), LG_EEOF);
  lg_transport_free(&a);
  lg_transport_free(&b);
  lg_inproc_group_free(&g);
}

static void test_nccl_absent_or_present(void **state) {
  (void)state;
  unsigned char id[LG_NCCL_ID_BYTES];
  int rc = lg_nccl_unique_id(id);
#ifdef LG_HAVE_NCCL
  (void)rc; /* needs a GPU: run by the lead on the GPU machine */
#else
  assert_int_equal(rc, LG_ENOTSUP);
  tu_log_capture(true);
  assert_null(lg_nccl_transport_new(id, 0, 2, 0, 1024));
  tu_log_capture(false);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_payloads),
      cmocka_unit_test(test_full_queue_blocks),
      cmocka_unit_test(test_close_wakes),
      cmocka_unit_test(test_nccl_absent_or_present),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
