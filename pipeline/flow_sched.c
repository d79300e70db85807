/* flow_sched.c: flow-matching scheduler (see flow_sched.h). Any thread. */
#include "flow_sched.h"

#include "lg_base.h"

#include <math.h>

int lg_flow_sched_init(lg_flow_sched *s, double shift) {
  if (!s || !(shift > 0.0) || !isfinite(shift)) {
    LG_ERR("sched", "flow scheduler shift must be a positive number (got %g)", shift);
    return LG_EINVAL;
  }
  s->shift = shift;
  for (int i = 0; i < LG_FLOW_STEPS; i++) {
    double sp = 1.0 - (double)i / LG_FLOW_STEPS; /* linspace(1, 0, 1001)[i] */
    s->sigma[i] = shift * sp / (1.0 + (shift - 1.0) * sp);
    s->timestep[i] = 1000.0 * s->sigma[i];
  }
  return 0;
}

int lg_flow_sched_index(const lg_flow_sched *s, double t) {
  int best = 0;
  double bd = fabs(s->timestep[0] - t);
  for (int i = 1; i < LG_FLOW_STEPS; i++) {
    double d = fabs(s->timestep[i] - t);
    if (d < bd) {
      bd = d;
      best = i;
    }
  }
  return best;
}

double lg_flow_sched_sigma(const lg_flow_sched *s, double t) {
  return s->sigma[lg_flow_sched_index(s, t)];
}

double lg_flow_sched_warp(const lg_flow_sched *s, double step) {
  if (step <= 0.0) return 0.0;
  long i = lround(1000.0 - step);
  if (i < 0) i = 0;
  if (i > LG_FLOW_STEPS - 1) i = LG_FLOW_STEPS - 1;
  return s->timestep[i];
}
