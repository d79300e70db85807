/* kv_policy.h: which rolling-KV-cache slots a DiT call writes (MODELS.md 3; exact rules in
 * docs/DIT.md): fill empty slots in order, keep the sink slots at the front, overwrite the
 * non-sink slots round-robin (oldest first), rewrite the same slots when a row's chunk is
 * denoised again at the same start, refresh a sink slot when a new frame's K/V similarity to
 * it falls under the threshold, and reset the RoPE frame index before it reaches 50.
 * Pure host logic, no allocation; one policy per cache row.
 * Threads: owned by the thread that owns the row's cache (GPU worker or a test). */
#ifndef LG_KV_POLICY_H
#define LG_KV_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_KV_MAX_FRAMES 64 /* cache capacity in latent frames */
#define LG_KV_MAX_CALL 8    /* latent frames one call may write */
#define LG_KV_ROPE_LIMIT 50 /* RoPE frame index is reset before it reaches this */

typedef struct lg_kv_policy {
  int cap;            /* kv_frames */
  int sinks;          /* sink_frames (< cap) */
  double adapt;       /* sink refresh threshold; <= 0 disables */
  int filled;         /* slots [0, filled) hold frames */
  int rr;             /* next round-robin slot, in [sinks, cap) */
  int pending_sink;   /* sink slot the next new frame takes, or -1 */
  int64_t last_start; /* token start of the row's previous call, -1 before the first */
  int last_n;         /* frames of the previous call */
  int last_slots[LG_KV_MAX_CALL];
} lg_kv_policy;

/* What one call does on one row. */
typedef struct lg_kv_plan {
  int n;                    /* frames the call writes */
  int slot[LG_KV_MAX_CALL]; /* cache slot of local frame j */
  int kv_frames;            /* filled slots after the write: attention spans [0, kv_frames) */
  int32_t rope_start;       /* RoPE frame index of local frame 0 (frames are contiguous) */
  bool repeat;              /* same start as the previous call: same slots rewritten */
  int measure_slot;         /* slot whose similarity to each sink slot the caller measures
                               after the write and passes to lg_kv_policy_observe; -1: none */
} lg_kv_plan;

/* kv_frames in [1, LG_KV_MAX_FRAMES], sink_frames in [0, kv_frames). 0 or LG_EINVAL. */
int lg_kv_policy_init(lg_kv_policy *p, int kv_frames, int sink_frames, double adapt);
/* Empties the row (next call is a first call). */
void lg_kv_policy_reset(lg_kv_policy *p);
/* Plans a call writing n frames at token index start (a multiple of frame_tokens) and
 * updates the policy as if the write happened. LG_EINVAL (logged) when start goes back,
 * is not a multiple of frame_tokens, a repeated start has another n, or n does not fit
 * (n > kv_frames - sink_frames once the cache has to wrap). */
int lg_kv_policy_plan(lg_kv_policy *p, int64_t start, int frame_tokens, int n, lg_kv_plan *out);
/* sims[j]: similarity of plan->measure_slot's frame to sink slot j (j < sinks). Sets the sink
 * slot the next new frame overwrites (the least similar one when under the threshold). */
void lg_kv_policy_observe(lg_kv_policy *p, const lg_kv_plan *plan, const double *sims);
/* RoPE frame index of the first of n frames whose global frame index is g: g while the
 * chunk's last frame stays below 50, else g - k*(50 - (kv_frames-1)) with the smallest k that
 * brings the last frame below 50 (so frame 50 of a one-frame chunk maps to kv_frames-1). */
int32_t lg_kv_rope_frame(int64_t g, int n, int kv_frames);

#ifdef __cplusplus
}
#endif
#endif
