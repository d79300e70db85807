/* stages.h: the v2v DiT stream (pipeline/stream.h) pipelined over stages, one per GPU
 * (docs/MULTIGPU.md). The DiT's layers are split into contiguous ranges [bound[s],
 * bound[s+1]); stage 0 also owns the stream state (input, noise, x0, re-noise, the KV slot
 * policy) and the patch embedding, the last stage the head. Batches of stream rows flow through
 * the stages as a ring (StreamDiffusionV2): with N stages, N batches are in flight, each at
 * another stage, and the rows of a batch re-enter stage 0 when its head output comes back.
 * Row i of the batch at tick T holds chunk T - i*N, so every cache row sees the same chunk
 * sequence as in the single-stage stream and the output is the same (bit for bit on the CPU
 * backend), emitted (N-1)*steps chunks later.
 *
 * Messages (transport.h): BATCH (hidden [B*F*tokens, dim] act dtype + rows' timesteps, rope
 * starts, slots, sink-similarity partial sums, stage times), RETURN (v [B,F,h,w,16] from the
 * last stage to stage 0), CONTEXT, COPYROWS, RESET, MARK (a layer boundary moves by one layer;
 * the layer's K/V cache follows as KV messages), STOP.
 *
 * Every stage loads the whole model (weights are not split; see docs/MULTIGPU.md) and holds a
 * KV cache for at most max_layers layers.
 * Threads: a stage belongs to the thread (or process) that owns its model's backend. Stage 0's
 * calls drive the ring; the other stages run lg_stage_run until STOP. */
#ifndef LG_STAGES_H
#define LG_STAGES_H

#include "stream.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LG_STAGES_MAX 8

typedef struct lg_stages_opts {
  lg_stream_opts stream;        /* v2v only (t2v is refused) */
  int n;                        /* stages, 1..LG_STAGES_MAX */
  int bound[LG_STAGES_MAX + 1]; /* bound[0] = 0 < ... < bound[n] = layers; all 0: even */
  int max_layers;               /* KV cache capacity of a stage in layers; 0: layers */
  int balance_ticks;            /* > 0: after this many full batches, rebalance */
} lg_stages_opts;

/* ---- partition and balancing (pure functions) ---- */
/* Even split of `layers` over n stages (the first stages get the extra layers). */
int lg_stages_partition_even(int layers, int n, int *bound);
/* Boundaries minimising the slowest stage's time, given each layer's cost (ms) and each
 * stage's fixed cost (embedding, head, x0: ms); every stage keeps >= 1 layer and at most
 * max_layers. Exact (dynamic programming over contiguous splits). */
int lg_stages_balance(int layers, int n, const double *layer_ms, const double *fixed_ms,
                      int max_layers, int *bound);
/* One step from cur towards target: (k, delta) such that boundary k+1 (between stage k and
 * k+1) moves by delta = +1 or -1. Returns 1 with a step, 0 when cur == target. */
int lg_stages_next_move(int n, const int *cur, const int *target, int *k, int *delta);

/* ---- stages ---- */
typedef struct lg_stage lg_stage;

/* Stage `t->rank` of `t->size` (= o->n). Takes ownership of nothing: m (its backend) and t are
 * borrowed until lg_stage_free. NULL with a message in err. */
lg_stage *lg_stage_new(lg_wan_dit *m, const lg_stages_opts *o, lg_transport *t, char *err,
                       size_t n);
void lg_stage_free(lg_stage **s);
/* The largest payload a stage sends (size of the in-process slots, NCCL staging buffers). */
size_t lg_stages_max_payload(const lg_wan_dit_config *c, const lg_stages_opts *o);

/* Ranks > 0: handle messages until STOP (0) or an error (LG_E*). */
int lg_stage_run(lg_stage *s);

/* Rank 0 only. As lg_stream_set_context / lg_stream_push_v2v / lg_stream_reset. A push
 * returns the latent frames written to out (0 while the ring fills), *out_chunk the chunk. */
int lg_stage_set_context(lg_stage *s, const float *ctx);
int lg_stage_push_v2v(lg_stage *s, const lg_tensor *latent, double scale, lg_noise_fn noise,
                      void *user, lg_tensor *out, int *out_chunk);
int lg_stage_reset(lg_stage *s);
/* Moves boundary k+1 (between stage k and k+1) by delta (+1: stage k takes stage k+1's first
 * layer; -1: stage k+1 takes stage k's last layer) at the next push, with the layer's KV
 * cache. LG_EINVAL when a stage would be left empty or over max_layers. */
int lg_stage_move_boundary(lg_stage *s, int k, int delta);
/* Sends STOP through the ring (other stages' lg_stage_run return). */
int lg_stage_stop(lg_stage *s);

/* Any rank: this stage's current layers [first, last), and (rank 0) all boundaries. */
void lg_stage_layers(const lg_stage *s, int *first, int *last);
void lg_stage_bounds(const lg_stage *s, int *bound);
/* Rank 0: time per chunk that rank 0 spends outside the stage (the engine's VAE encode and
 * decode, ms); its mean is added to stage 0's fixed cost when balancing. */
void lg_stage_note_extra_ms(lg_stage *s, double ms);
/* Rank 0: mean stage times over the batches measured so far (ms; blocks and fixed parts). */
int lg_stage_times(const lg_stage *s, double *blocks_ms, double *fixed_ms, int *batches);
/* Rank 0: pushes (chunks) after which the ring is full: output lag in chunks beyond the
 * single-stage stream's. */
int lg_stage_extra_lag(const lg_stage *s);
/* This stage's backend bytes: KV cache (max_layers layers), workspace, buffers. */
size_t lg_stage_bytes(const lg_stage *s);

/* ---- in-process pipeline: stages 1..n-1 on threads of this process ----
 * load(user, rank) runs on the stage's thread and returns its model (the stage frees the model
 * and its backend when the thread ends); rank 0's is loaded on the caller's thread and owned
 * by the returned pipeline too. */
typedef lg_wan_dit *(*lg_stage_loader)(void *user, int rank);
/* Frees a loader's model and the backend it was loaded on; NULLs *m (NULL is fine). */
void lg_stages_model_free(lg_wan_dit **m);
typedef struct lg_stages_inproc lg_stages_inproc;
lg_stages_inproc *lg_stages_inproc_new(const lg_stages_opts *o, lg_stage_loader load, void *user,
                                       char *err, size_t n);
/* Stage 0 of the pipeline (call the rank-0 functions above on it). */
lg_stage *lg_stages_inproc_stage0(lg_stages_inproc *p);
/* Stops the ring, joins the threads, frees everything. */
void lg_stages_inproc_free(lg_stages_inproc **p);

/* ---- multi-process ranks (NCCL; docs/MULTIGPU.md) ----
 * Rank 0 makes the id (lg_nccl_unique_id) and publishes it as hex to a file every rank can
 * read (written to path.tmp, then renamed); the other ranks wait for it. LG_NCCL_ID (the same
 * hex in the environment) takes the place of the file when set. */
int lg_stages_id_write(const char *path, const unsigned char id[LG_NCCL_ID_BYTES]);
/* Reads the id from $LG_NCCL_ID, else from path, polling until it exists or timeout_s passes
 * (LG_EAGAIN). LG_EFORMAT for anything but LG_NCCL_ID_BYTES*2 hex digits (+ newline). */
int lg_stages_id_read(const char *path, unsigned char id[LG_NCCL_ID_BYTES], double timeout_s);
/* A rank > 0 process: its stage over transport t with model m until STOP. 0 or LG_E*. */
int lg_stages_rank_main(lg_wan_dit *m, const lg_stages_opts *o, lg_transport *t);

/* `livegen bench pipeline ...` (bench_pipeline.c; argv[0] is "pipeline"): 0, 1 or 2 (usage). */
int lg_bench_pipeline(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
