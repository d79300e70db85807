/* kv_policy.c: slot planning for the rolling KV cache (see kv_policy.h, docs/DIT.md).
 * Runs on the thread that owns the cache row. */
#include "kv_policy.h"

#include "lg_base.h"

#include <string.h>

int lg_kv_policy_init(lg_kv_policy *p, int kv_frames, int sink_frames, double adapt) {
  if (kv_frames < 1 || kv_frames > LG_KV_MAX_FRAMES || sink_frames < 0 ||
      sink_frames >= kv_frames) {
    LG_ERR("kv", "kv_frames %d must be in [1,%d] and sink_frames %d in [0,kv_frames)", kv_frames,
           LG_KV_MAX_FRAMES, sink_frames);
    return LG_EINVAL;
  }
  memset(p, 0, sizeof *p);
  p->cap = kv_frames;
  p->sinks = sink_frames;
  p->adapt = adapt;
  lg_kv_policy_reset(p);
  return 0;
}

void lg_kv_policy_reset(lg_kv_policy *p) {
  p->filled = 0;
  p->rr = p->sinks;
  p->pending_sink = -1;
  p->last_start = -1;
  p->last_n = 0;
}

int32_t lg_kv_rope_frame(int64_t g, int n, int kv_frames) {
  int64_t base = kv_frames - 1, period = LG_KV_ROPE_LIMIT - base;
  if (g + n <= LG_KV_ROPE_LIMIT || period <= 0 || base + n > LG_KV_ROPE_LIMIT) return (int32_t)g;
  int64_t over = g + n - LG_KV_ROPE_LIMIT;
  int64_t k = (over + period - 1) / period;
  return (int32_t)(g - k * period);
}

int lg_kv_policy_plan(lg_kv_policy *p, int64_t start, int frame_tokens, int n, lg_kv_plan *out) {
  memset(out, 0, sizeof *out);
  if (n < 1 || n > LG_KV_MAX_CALL || frame_tokens < 1 || start < 0 || start % frame_tokens) {
    LG_ERR("kv", "bad call: %d frames at token %lld (frame_tokens %d)", n, (long long)start,
           frame_tokens);
    return LG_EINVAL;
  }
  out->n = n;
  out->measure_slot = -1;
  out->rope_start = lg_kv_rope_frame(start / frame_tokens, n, p->cap);
  if (p->last_start >= 0 && start == p->last_start) {
    if (n != p->last_n) {
      LG_ERR("kv", "repeated start %lld with %d frames, the first call had %d", (long long)start, n,
             p->last_n);
      return LG_EINVAL;
    }
    out->repeat = true;
    memcpy(out->slot, p->last_slots, sizeof(int) * (size_t)n);
  } else {
    if (p->last_start >= 0 && start < p->last_start) {
      LG_ERR("kv", "start %lld is before the previous start %lld (reset the cache first)",
             (long long)start, (long long)p->last_start);
      return LG_EINVAL;
    }
    int free_slots = p->cap - p->filled, ring = p->cap - p->sinks;
    if (n > free_slots + ring) {
      LG_ERR("kv", "%d frames do not fit a cache of %d frames with %d sinks", n, p->cap, p->sinks);
      return LG_EINVAL;
    }
    for (int j = 0; j < n; j++) {
      if (p->filled < p->cap) {
        out->slot[j] = p->filled++;
      } else if (p->pending_sink >= 0) {
        out->slot[j] = p->pending_sink;
        p->pending_sink = -1;
      } else {
        out->slot[j] = p->rr;
        p->rr = p->rr + 1 < p->cap ? p->rr + 1 : p->sinks;
      }
    }
    p->last_start = start;
    p->last_n = n;
    memcpy(p->last_slots, out->slot, sizeof(int) * (size_t)n);
  }
  out->kv_frames = p->filled;
  int last = out->slot[n - 1];
  if (p->adapt > 0.0 && p->sinks > 0 && last >= p->sinks && p->filled > p->sinks)
    out->measure_slot = last;
  return 0;
}

void lg_kv_policy_observe(lg_kv_policy *p, const lg_kv_plan *plan, const double *sims) {
  if (plan->measure_slot < 0 || !sims) return;
  int lo = 0;
  for (int j = 1; j < p->sinks; j++)
    if (sims[j] < sims[lo]) lo = j;
  p->pending_sink = sims[lo] < p->adapt ? lo : -1;
}
