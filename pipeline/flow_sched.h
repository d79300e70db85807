/* flow_sched.h: the flow-matching scheduler of MODELS.md 3 (Wan / CausVid FlowMatchScheduler
 * with 1000 training steps): shifted sigma grid, sigma(t) of the nearest grid timestep,
 * add_noise, x0 from a flow prediction, and the Self-Forcing step warp. Plain host math in
 * double; no allocation. Threads: a scheduler is immutable after init and may be shared. */
#ifndef LG_FLOW_SCHED_H
#define LG_FLOW_SCHED_H

#ifdef __cplusplus
extern "C" {
#endif

#define LG_FLOW_STEPS 1000

typedef struct lg_flow_sched {
  double shift;
  /* sigma'_i = linspace(1,0,1001)[i], sigma_i = s*sigma'/(1+(s-1)*sigma'), i < 1000 */
  double sigma[LG_FLOW_STEPS];
  double timestep[LG_FLOW_STEPS]; /* 1000 * sigma_i, decreasing from 1000 */
} lg_flow_sched;

/* shift > 0; LG_EINVAL otherwise. */
int lg_flow_sched_init(lg_flow_sched *s, double shift);
/* Index of the grid timestep nearest to t (first one on a tie, like torch.argmin). */
int lg_flow_sched_index(const lg_flow_sched *s, double t);
/* sigma of the nearest grid timestep; t <= 0 maps to the grid end (sigma_999), as the
 * reference does (t=0 is only used for the clean cache pass, whose output is discarded). */
double lg_flow_sched_sigma(const lg_flow_sched *s, double t);
/* Self-Forcing warp: timestep[1000 - step] for step in (0,1000], 0 for step 0. */
double lg_flow_sched_warp(const lg_flow_sched *s, double step);

#ifdef __cplusplus
}
#endif
#endif
