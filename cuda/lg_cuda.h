/* lg_cuda.h: what the CUDA backend offers beyond the op interface: device count and name,
 * memory high-water mark, an op-class profiler (GEMM / attention / elementwise, timed with
 * events) and CUDA graph capture of a sequence of ops on the backend's stream.
 * Plain C; every function accepts a non-CUDA backend and then returns LG_ENOTSUP (or 0/false).
 * Threads: the thread that owns the backend. */
#ifndef LG_CUDA_H
#define LG_CUDA_H

#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

int lg_cuda_device_count(void);
bool lg_backend_is_cuda(const lg_backend *be);
/* Device name ("NVIDIA H100 80GB HBM3"); "" for a non-CUDA backend. */
const char *lg_cuda_device_name(const lg_backend *be);

/* Bytes of device memory: the pool's high-water mark of memory in use by this backend since
 * creation or the last reset, and what is in use now. */
int lg_cuda_mem_stats(lg_backend *be, size_t *peak_used, size_t *now_used);
int lg_cuda_mem_reset_peak(lg_backend *be);

typedef enum {
  LG_CUDA_PROF_GEMM = 0, /* matmul, conv3d (im2col + GEMM) */
  LG_CUDA_PROF_ATTN,     /* attention */
  LG_CUDA_PROF_ELEM,     /* every other op: norms, modulation, RoPE, copies, adds */
  LG_CUDA_PROF_N,
} lg_cuda_prof_class;

/* Time every op with a pair of events until profile_end, which syncs and returns the summed
 * milliseconds per class (ms[LG_CUDA_PROF_N]) and the op count. Not during graph capture. */
int lg_cuda_profile_begin(lg_backend *be);
int lg_cuda_profile_end(lg_backend *be, double *ms, int *ops);
/* After profile_end: per op kind that ran, its name (static), summed ms and call count;
 * returns how many kinds (at most max) or LG_E*. */
int lg_cuda_profile_ops(lg_backend *be, const char **names, double *ms, int *counts, int max);
/* After profile_end: the matmuls per M x N x K and the attentions per B x Lq x longest kv_len
 * (shape[3]), in first-run order, each with its summed ms and call count; returns how many
 * rows (at most max) or LG_E*. */
typedef struct lg_cuda_prof_shape {
  const char *op; /* static */
  int32_t shape[3];
  double ms;
  int count;
} lg_cuda_prof_shape;
int lg_cuda_profile_shapes(lg_backend *be, lg_cuda_prof_shape *rows, int max);

/* CUDA graphs: ops enqueued between capture_begin and capture_end are recorded, not run
 * (no op may download or sync in between). graph_launch replays them on the stream; the
 * host arrays (kv_len, frame_start) that the ops read at capture time are baked in, so
 * capture once per distinct cache fill level. */
typedef struct lg_cuda_graph lg_cuda_graph;
int lg_cuda_capture_begin(lg_backend *be);
int lg_cuda_capture_end(lg_backend *be, lg_cuda_graph **out);
int lg_cuda_graph_launch(lg_backend *be, lg_cuda_graph *g);
void lg_cuda_graph_free(lg_cuda_graph **g);

/* cudaProfilerStart (on) / cudaProfilerStop after a device sync: bounds what an external
 * profiler started with its capture off records. */
int lg_cuda_profiler_range(lg_backend *be, bool on);

/* Milliseconds between two points of the stream, for benchmarks: record returns a marker
 * (an event, created on first use per slot 0..15). */
int lg_cuda_mark(lg_backend *be, int slot);
int lg_cuda_elapsed_ms(lg_backend *be, int slot_a, int slot_b, float *ms);

/* The board's power (mW; NVML's 1-second average on Hopper), SM clock now (MHz) and energy
 * counter (mJ since the driver loaded, 0 where the board has none) by NVML, opened at run time;
 * LG_ENOTSUP where NVML or the power reading is missing. */
typedef struct lg_cuda_power {
  unsigned long long energy_mj;
  unsigned power_mw, sm_mhz;
} lg_cuda_power;
int lg_cuda_power_read(lg_backend *be, lg_cuda_power *p);

#ifdef __cplusplus
}
#endif
#endif
