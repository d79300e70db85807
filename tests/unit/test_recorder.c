/* test_recorder.c: the recorder writes a fragmented MP4 from the packet ring that ffprobe
 * can read while it is being written and that, once finished, has the right codec, size,
 * frame count and duration; a recorder stopped mid-stream still leaves a valid file; an
 * unwritable path is refused at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "lg_base.h"
#include "packet_ring.h"
#include "recorder.h"
#include "streaming_test_enc.h"
#include "streaming_test_probe.h"
#include "streaming_test_util.h"

static char g_dir[512];

static void test_record_playable_while_written_and_complete(void **state) {
  (void)state;
  char path[700];
  snprintf(path, sizeof(path), "%s/rec.mp4", g_dir);
  lg_packet_ring *ring = lg_packet_ring_new(64);
  lg_recorder *rec = lg_recorder_new(ring, path);
  assert_non_null(rec);
  st_source src = {.ring = ring,
                   .width = 160,
                   .height = 120,
                   .fps = 25,
                   .keyint = 12,
                   .frames = 75,
                   .close_at_end = true};
  assert_int_equal(st_source_start(&src), 0);
  usleep(2000000); /* 2 s in: some fragments are on disk */
  st_probe mid;
  assert_int_equal(st_ffprobe(path, 20, &mid), 0);
  assert_string_equal(mid.codec, "h264");
  assert_true(mid.frames >= 24); /* at least two 12-frame fragments */
  assert_true(mid.frames < 75);
  st_source_join(&src);
  assert_int_equal(src.err, 0);
  lg_mux_output_status st;
  double end = lg_now() + 5;
  do {
    usleep(50000);
    lg_recorder_get_status(rec, &st);
  } while (st.state != LG_MUX_STATE_DONE && lg_now() < end);
  assert_int_equal(st.state, LG_MUX_STATE_DONE); /* ring closed -> file finished */
  assert_int_equal(st.packets, (uint64_t)atomic_load(&src.written));
  lg_recorder_free(&rec);
  assert_null(rec);
  st_probe pr;
  assert_int_equal(st_ffprobe(path, 20, &pr), 0);
  assert_string_equal(pr.codec, "h264");
  assert_int_equal(pr.width, 160);
  assert_int_equal(pr.height, 120);
  assert_int_equal(pr.frames, 75);
  assert_true(pr.duration > 2.8 && pr.duration < 3.2);
  lg_packet_ring_free(&ring);
}

static void test_stop_midway_leaves_valid_file(void **state) {
  (void)state;
  char path[700];
  snprintf(path, sizeof(path), "%s/cut.mp4", g_dir);
  lg_packet_ring *ring = lg_packet_ring_new(64);
  lg_recorder *rec = lg_recorder_new(ring, path);
  st_source src = {.ring = ring,
                   .width = 96,
                   .height = 64,
                   .fps = 25,
                   .keyint = 10,
                   .frames = 60,
                   .close_at_end = false};
  assert_int_equal(st_source_start(&src), 0);
  usleep(1200000);
  lg_mux_output_status st;
  lg_recorder_get_status(rec, &st);
  assert_int_equal(st.state, LG_MUX_STATE_RUNNING);
  lg_recorder_free(&rec); /* the service shutting down while the encoder still runs */
  int recorded = (int)st.packets;
  st_source_join(&src);
  st_probe pr;
  assert_int_equal(st_ffprobe(path, 20, &pr), 0);
  assert_int_equal(pr.width, 96);
  assert_true(pr.frames >= recorded && pr.frames >= 20 && pr.frames < 60);
  lg_packet_ring_free(&ring);
}

static void test_unwritable_path_refused(void **state) {
  (void)state;
  lg_packet_ring *ring = lg_packet_ring_new(8);
  assert_null(lg_recorder_new(ring, "/nonexistent/dir/x.mp4"));
  assert_null(lg_recorder_new(ring, ""));
  lg_packet_ring_free(&ring);
}

static int setup(void **state) {
  (void)state;
  return st_tmpdir(g_dir, sizeof(g_dir), "recorder");
}

static int teardown(void **state) {
  (void)state;
  st_rmdir(g_dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record_playable_while_written_and_complete),
      cmocka_unit_test(test_stop_midway_leaves_valid_file),
      cmocka_unit_test(test_unwritable_path_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
