/* test_metrics.c: the Prometheus metrics: every line of the rendering is valid exposition
 * syntax, counters/gauges/histogram values are what was recorded (cumulative buckets, +Inf
 * equals _count, sum), concurrent updates from several threads are not lost, and a too small
 * buffer is refused. Main thread plus the threads it starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../e2e/prom_check.h"
#include "lg_base.h"
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

static char *render(lg_metrics *m) {
  size_t cap = lg_metrics_render_size();
  char *buf = malloc(cap);
  assert_non_null(buf);
  int n = lg_metrics_render(m, buf, cap);
  assert_true(n > 0);
  assert_int_equal(strlen(buf), (size_t)n);
  char why[256];
  int samples = prom_check_text(buf, why, sizeof why);
  if (samples < 0) fail_msg("%s", why);
  /* 4 counters + 2 gauges + 5 stages x (14 buckets + sum + count) */
  assert_int_equal(samples, 4 + 2 + 5 * 16);
  return buf;
}

static void test_render_values(void **state) {
  (void)state;
  lg_metrics *m = lg_metrics_new();
  assert_non_null(m);
  lg_metrics_add(m, LG_COUNTER_FRAMES_IN, 7);
  lg_metrics_add(m, LG_COUNTER_FRAMES_IN, 3);
  lg_metrics_add(m, LG_COUNTER_FRAMES_OUT, 4);
  lg_metrics_add(m, LG_COUNTER_FRAMES_DROPPED, 1);
  lg_metrics_set_gauge(m, LG_GAUGE_VIEWERS, 2);
  lg_metrics_set_gauge(m, LG_GAUGE_ENCODER_BITRATE, 1.5e6);
  lg_metrics_set_gauge(m, LG_GAUGE_VIEWERS, NAN); /* ignored */
  lg_metrics_observe(m, LG_STAGE_DIT, 0.004);     /* le 0.005 */
  lg_metrics_observe(m, LG_STAGE_DIT, 0.2);       /* le 0.25 */
  lg_metrics_observe(m, LG_STAGE_DIT, 100.0);     /* +Inf only */
  lg_metrics_observe(m, LG_STAGE_DIT, -1.0);      /* ignored */
  lg_metrics_observe(m, LG_STAGE_TOTAL, 0.001);   /* le 0.001 (inclusive) */
  char *t = render(m);
  assert_true(prom_sample(t, "livegen_frames_in_total") == 10);
  assert_true(prom_sample(t, "livegen_frames_out_total") == 4);
  assert_true(prom_sample(t, "livegen_frames_dropped_total") == 1);
  assert_true(prom_sample(t, "livegen_viewers") == 2);
  assert_true(prom_sample(t, "livegen_encoder_bitrate_bps") == 1.5e6);
  const char *h = "livegen_stage_latency_seconds";
  char key[128];
#define B(stage, le)                                                                               \
  (snprintf(key, sizeof key, "%s_bucket{stage=\"%s\",le=\"%s\"}", h, stage, le),                   \
   prom_sample(t, key))
  assert_true(B("dit", "0.0025") == 0);
  assert_true(B("dit", "0.005") == 1);
  assert_true(B("dit", "0.1") == 1);
  assert_true(B("dit", "0.25") == 2);
  assert_true(B("dit", "10") == 2);
  assert_true(B("dit", "+Inf") == 3);
  assert_true(B("total", "0.001") == 1);
  assert_true(B("ingest", "+Inf") == 0);
  assert_true(B("encode", "+Inf") == 0);
  assert_true(B("decode", "+Inf") == 0);
#undef B
  snprintf(key, sizeof key, "%s_count{stage=\"dit\"}", h);
  assert_true(prom_sample(t, key) == 3);
  snprintf(key, sizeof key, "%s_sum{stage=\"dit\"}", h);
  assert_true(fabs(prom_sample(t, key) - 100.204) < 1e-9);
  assert_non_null(strstr(t, "# TYPE livegen_stage_latency_seconds histogram\n"));
  assert_non_null(strstr(t, "# TYPE livegen_frames_in_total counter\n"));
  assert_non_null(strstr(t, "# TYPE livegen_viewers gauge\n"));
  free(t);
  char small[64];
  assert_int_equal(lg_metrics_render(m, small, sizeof small), LG_ERANGE);
  lg_metrics_free(&m);
  assert_null(m);
  lg_metrics_free(&m);
}

static void test_checker_rejects_bad_lines(void **state) {
  (void)state;
  char why[256];
  /* The checker itself must catch what a scraper would reject. */
  assert_int_equal(prom_check_text("a 1\n", why, sizeof why), 1);
  assert_int_equal(prom_check_text("a{b=\"c\"} 1.5e3\n", why, sizeof why), 1);
  assert_int_equal(prom_check_text("1a 1\n", why, sizeof why), -1);
  assert_int_equal(prom_check_text("a{b=c} 1\n", why, sizeof why), -1);
  assert_int_equal(prom_check_text("a 1", why, sizeof why), -1);
  assert_int_equal(prom_check_text("a one\n", why, sizeof why), -1);
  assert_int_equal(prom_check_text("# TYPE a countr\n", why, sizeof why), -1);
}

static lg_metrics *g_m;

static void *hammer(void *arg) {
  (void)arg;
  for (int i = 0; i < 100000; i++) {
    lg_metrics_add(g_m, LG_COUNTER_FRAMES_OUT, 1);
    lg_metrics_observe(g_m, LG_STAGE_ENCODE, 0.5);
  }
  return NULL;
}

static void test_concurrent(void **state) {
  (void)state;
  g_m = lg_metrics_new();
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(lg_metrics_get(g_m, LG_COUNTER_FRAMES_OUT), 400000);
  assert_int_equal(lg_metrics_observations(g_m, LG_STAGE_ENCODE), 400000);
  char *t = render(g_m);
  assert_true(prom_sample(t, "livegen_stage_latency_seconds_sum{stage=\"encode\"}") == 200000);
  free(t);
  lg_metrics_free(&g_m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_values),
      cmocka_unit_test(test_checker_rejects_bad_lines),
      cmocka_unit_test(test_concurrent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
