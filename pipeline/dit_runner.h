/* dit_runner.h: the engine's DiT loop behind one small interface: the single-stage stream
 * (stream.h) or the v2v stream pipelined over stages (stages.h, docs/MULTIGPU.md), chosen by
 * the config (engine.stages: stages as threads of this process on one device; engine.gpus: one
 * process per GPU over NCCL, this process being rank 0). The engine calls the same functions
 * either way; only the output lag differs (lg_dit_runner_extra_lag).
 *
 * Ranks > 0 run lg_dit_rank_loop: a session loop around lg_stage_run, so a steps change
 * restarts the ring (new stages, same models, same transport) without reloading weights or
 * restarting processes. A session is opened by a SESSION message carrying the stage options,
 * sent down the ring by rank 0 before it creates its own stage; QUIT ends the loop.
 * Threads: a runner belongs to the engine's thread (which is stage 0's); it starts the stage
 * threads (engine.stages) or the rank processes and a watchdog thread (engine.gpus). */
#ifndef LG_DIT_RUNNER_H
#define LG_DIT_RUNNER_H

#include "config.h"
#include "stages.h"
#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_dit_runner lg_dit_runner;

/* What this build and config allow, before anything is loaded: engine.gpus with 2 or more GPUs
 * needs NCCL; stages v2v only. 0 or LG_E* with the reason in err. */
int lg_dit_runner_check(const lg_config *cfg, char *err, size_t n);

/* m: rank 0's DiT (borrowed; its backend is rank 0's device). load(user, rank) loads a copy of
 * the DiT on a backend of its own for in-process stages r > 0 (called on their threads; the
 * runner frees model and backend). cfg: engine.stages / engine.gpus / engine.launch pick the
 * mode; with engine.gpus the children are `livegen rank` processes reading cfg from a file.
 * Nothing runs until lg_dit_runner_configure. NULL with a message in err. */
lg_dit_runner *lg_dit_runner_new(const lg_config *cfg, lg_wan_dit *m, lg_stage_loader load,
                                 void *user, char *err, size_t n);
/* Stops the ring (QUIT to every rank), joins threads / waits for the rank processes. */
void lg_dit_runner_free(lg_dit_runner **r);
/* (Re)starts the stream with these options (first call, and every steps change): the stages'
 * caches are empty afterwards and the context must be set again. */
int lg_dit_runner_configure(lg_dit_runner *r, const lg_stream_opts *o, char *err, size_t n);

/* As lg_stream_set_context / lg_stream_push_v2v / lg_stream_next_t2v (single stage only) /
 * lg_stream_reset / lg_stream_chunks. */
int lg_dit_runner_set_context(lg_dit_runner *r, const float *ctx);
int lg_dit_runner_push_v2v(lg_dit_runner *r, const lg_tensor *latent, double scale,
                           lg_noise_fn noise, void *user, lg_tensor *out, int *out_chunk);
int lg_dit_runner_next_t2v(lg_dit_runner *r, lg_noise_fn noise, void *user, lg_tensor *out);
int lg_dit_runner_reset(lg_dit_runner *r);
int lg_dit_runner_chunks(const lg_dit_runner *r);
/* Stages (1: the plain stream) and the output lag in chunks beyond the single-stage stream's. */
int lg_dit_runner_stages(const lg_dit_runner *r);
int lg_dit_runner_extra_lag(const lg_dit_runner *r);
/* Rank 0's backend bytes held by the stream, or by stage 0 of the ring (the other stages'
 * memory is on their own devices / backends and not counted). */
size_t lg_dit_runner_bytes(const lg_dit_runner *r);
/* The engine's per-chunk time on rank 0 outside the DiT (VAE encode + decode, ms), counted in
 * stage 0's share when engine.balance_ticks rebalances; nothing on a single stage. */
void lg_dit_runner_note_rank0_ms(lg_dit_runner *r, double ms);

/* A rank > 0: sessions over transport t with model m until QUIT (0) or an error (LG_E*). */
int lg_dit_rank_loop(lg_wan_dit *m, lg_transport *t);

#ifdef __cplusplus
}
#endif
#endif
