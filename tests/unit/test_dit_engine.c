/* test_dit_engine.c: the engine end to end on CPU with the tiny random DiT and VAE generated
 * into a temporary cache folder: v2v emits the first chunk at once (5 frames), then nothing
 * while the stream batch fills, then 4 frames per chunk; same config -> same frames, another
 * seed -> other frames; steps 1 has no lag; a steps change restarts with a 5-frame chunk; a
 * prompt change alters the output; pause; t2v blocks of 9 then 12 frames; the umT5 text
 * encoder path (a tokenizer trained here with spm_train, the tiny random umT5) and its
 * refusals; hashed prompt contexts; stats. */
#include "test_util.h"

#include "config.h"
#include "engine.h"
#include "testsrc.h"
#include "text_ctx.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { W = 64, H = 64, PX = W * H * 3, SLOTS = 16 };

static char g_dir[256];
static uint8_t g_in[5][PX], g_out[SLOTS][PX];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_engine_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void config(lg_config *c, const char *const *sets) {
  char err[512];
  lg_config_defaults(c);
  const char *base[] = {"engine.backend=cpu", "engine.threads=1", "engine.width=64",
                        "engine.height=64", NULL};
  for (int i = 0; base[i]; i++)
    assert_int_equal(lg_config_set(c, base[i], err, sizeof err), 0);
  snprintf(c->model.cache_dir, sizeof c->model.cache_dir, "%s", g_dir);
  for (int i = 0; sets && sets[i]; i++)
    if (lg_config_set(c, sets[i], err, sizeof err)) fail_msg("%s: %s", sets[i], err);
  if (lg_config_validate(c, err, sizeof err)) fail_msg("validate: %s", err);
}

static lg_engine *engine(const char *const *sets) {
  lg_config c;
  char err[512] = "";
  config(&c, sets);
  lg_engine *e = lg_engine_new(&c, err, sizeof err);
  if (!e) fail_msg("engine: %s", err);
  return e;
}

/* Pushes one chunk of test-pattern frames; returns the frames out. */
static int push(lg_engine *e, lg_testsrc *src) {
  int need = lg_engine_frames_needed(e);
  const uint8_t *in[5];
  uint8_t *out[SLOTS];
  for (int i = 0; i < need; i++) {
    lg_testsrc_next(src, g_in[i]);
    in[i] = g_in[i];
  }
  for (int i = 0; i < SLOTS; i++)
    out[i] = g_out[i];
  int n = lg_engine_push(e, need ? in : NULL, need, out, SLOTS);
  assert_true(n >= 0);
  return n;
}

/* Runs `chunks` chunks; returns a malloc'ed copy of all output frames and their count. */
static uint8_t *run(const char *const *sets, int chunks, int *counts, int *total) {
  lg_engine *e = engine(sets);
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "test:ball", W, H), 0);
  uint8_t *all = malloc((size_t)chunks * SLOTS * PX);
  *total = 0;
  for (int c = 0; c < chunks; c++) {
    int n = push(e, &src);
    if (counts) counts[c] = n;
    memcpy(all + (size_t)*total * PX, g_out, (size_t)n * PX);
    *total += n;
  }
  lg_engine_free(&e);
  return all;
}

static void test_v2v_lag_and_determinism(void **state) {
  (void)state;
  int counts[5], n1, n2, n3;
  uint8_t *a = run((const char *[]){"engine.steps=2", NULL}, 5, counts, &n1);
  /* first chunk at once (time to first frame), then a lag of steps-1 chunks */
  assert_int_equal(counts[0], 5);
  assert_int_equal(counts[1], 0);
  assert_int_equal(counts[2], 4);
  assert_int_equal(counts[3], 4);
  assert_int_equal(counts[4], 4);
  uint8_t *b = run((const char *[]){"engine.steps=2", NULL}, 5, NULL, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(a, b, (size_t)n1 * PX);
  uint8_t *c = run((const char *[]){"engine.steps=2", "engine.seed=7", NULL}, 5, NULL, &n3);
  assert_int_equal(n1, n3);
  assert_true(memcmp(a, c, (size_t)n1 * PX) != 0);
  free(a);
  free(b);
  free(c);
  /* 3 steps: two chunks of lag; 1 step: none */
  a = run((const char *[]){"engine.steps=3", NULL}, 4, counts, &n1);
  assert_int_equal(counts[0], 5);
  assert_int_equal(counts[1], 0);
  assert_int_equal(counts[2], 0);
  assert_int_equal(counts[3], 4);
  free(a);
  a = run((const char *[]){"engine.steps=1", NULL}, 3, counts, &n1);
  assert_int_equal(counts[1], 4);
  assert_int_equal(counts[2], 4);
  free(a);
}

static void test_params_and_stats(void **state) {
  (void)state;
  lg_engine *e = engine((const char *[]){"engine.steps=2", NULL});
  lg_testsrc src;
  char err[256];
  assert_int_equal(lg_testsrc_init(&src, "ball", W, H), 0);
  assert_int_equal(lg_engine_frames_needed(e), 5);
  assert_int_equal(push(e, &src), 5);
  assert_int_equal(lg_engine_frames_needed(e), 4);
  assert_int_equal(push(e, &src), 0);
  lg_engine_params p;
  lg_engine_get_params(e, &p);
  assert_int_equal(p.steps, 2);
  p.steps = 9;
  assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "steps"));
  p.steps = 1;
  assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), 0);
  /* the steps change rebuilds the batch: the next chunk is a first chunk again */
  assert_int_equal(lg_engine_frames_needed(e), 5);
  assert_int_equal(push(e, &src), 5);
  assert_int_equal(push(e, &src), 4); /* 1 step: no lag */
  p.paused = true;
  assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), 0);
  assert_int_equal(push(e, &src), 0);
  lg_engine_stats st;
  lg_engine_get_stats(e, &st);
  assert_int_equal(st.chunks, 4);
  assert_int_equal(st.frames_in, 5 + 4 + 5 + 4);
  assert_int_equal(st.frames_out, 5 + 0 + 5 + 4);
  assert_true(st.ttff_s > 0.0);
  assert_true(st.mem_peak_bytes > 0);
  assert_string_equal(st.device, "cpu");
  lg_engine_free(&e);
}

static void test_prompt_changes_output(void **state) {
  (void)state;
  int n = 0;
  uint8_t *base = run((const char *[]){"engine.steps=1", NULL}, 4, NULL, &n);
  lg_engine *e = engine((const char *[]){"engine.steps=1", NULL});
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "ball", W, H), 0);
  assert_int_equal(push(e, &src), 5);
  assert_memory_equal(g_out, base, 5 * PX);
  lg_engine_params p;
  char err[256];
  lg_engine_get_params(e, &p);
  snprintf(p.prompt, sizeof p.prompt, "a completely different prompt about red cats");
  p.blend_s = 0.0; /* switch at once */
  assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), 0);
  assert_int_equal(push(e, &src), 4);
  /* blend_s 0: the chunk pushed after the switch already uses the new context */
  assert_true(memcmp(g_out, base + (size_t)5 * PX, 4 * PX) != 0);
  lg_engine_free(&e);
  free(base);
}

static void test_t2v_blocks(void **state) {
  (void)state;
  int counts[2], n;
  uint8_t *a = run((const char *[]){"engine.mode=t2v", "engine.steps=4", "engine.shift=5",
                                    "engine.step_list=[1000,750,500,250]", NULL},
                   2, counts, &n);
  /* 3 latents per block: 1+4+4 frames first, then 12 */
  assert_int_equal(counts[0], 9);
  assert_int_equal(counts[1], 12);
  /* frames move: consecutive outputs differ */
  assert_true(memcmp(a, a + PX, PX) != 0);
  free(a);
}

static void test_text_encoder(void **state) {
  (void)state;
  lg_config c;
  char err[512] = "";
  config(&c, (const char *[]){"engine.steps=1", NULL});
  snprintf(c.model.text_encoder, sizeof c.model.text_encoder, "tiny");
  lg_engine *e = lg_engine_new(&c, err, sizeof err); /* no tokenizer */
  assert_null(e);
  assert_non_null(strstr(err, "model.tokenizer"));
  snprintf(c.model.tokenizer, sizeof c.model.tokenizer, "%s/nonexistent.model", g_dir);
  e = lg_engine_new(&c, err, sizeof err);
  assert_null(e);
  assert_non_null(strstr(err, "nonexistent.model"));
  if (!lg_tokenizer_available()) return; /* the build has no SentencePiece: refused above */
  /* a tiny unigram tokenizer trained here, and the tiny random umT5 (width 64 = text_dim) */
  char corpus[300], prefix[300], cmd[1024];
  snprintf(corpus, sizeof corpus, "%s/corpus.txt", g_dir);
  snprintf(prefix, sizeof prefix, "%s/spm", g_dir);
  FILE *f = fopen(corpus, "w");
  assert_non_null(f);
  static const char *const words[] = {"a",     "watercolor", "painting", "of",  "red",
                                      "cats",  "blue",       "sky",      "the", "city",
                                      "night", "neon",       "river",    "old", "house"};
  lg_rng r;
  lg_rng_seed(&r, 3);
  for (int i = 0; i < 300; i++) {
    for (int k = 0; k < 6; k++)
      fprintf(f, "%s ", words[lg_rng_next(&r) % 15]);
    fprintf(f, "\n");
  }
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "spm_train --input=%s --model_prefix=%s --vocab_size=60 --model_type=unigram "
           "--character_coverage=1.0 --hard_vocab_limit=false --pad_id=0 --eos_id=1 --unk_id=2 "
           "--bos_id=-1 >/dev/null 2>&1",
           corpus, prefix);
  if (system(cmd) != 0) fail_msg("spm_train failed (Debian package sentencepiece): %s", cmd);
  snprintf(c.model.tokenizer, sizeof c.model.tokenizer, "%s.model", prefix);
  e = lg_engine_new(&c, err, sizeof err);
  if (!e) fail_msg("engine with umT5: %s", err);
  int n = 0;
  uint8_t *hashed = run((const char *[]){"engine.steps=1", NULL}, 2, NULL, &n);
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "ball", W, H), 0);
  assert_int_equal(push(e, &src), 5);
  assert_true(memcmp(g_out, hashed, 5 * PX) != 0); /* umT5 context, not the hashed one */
  uint8_t first[4 * PX];
  assert_int_equal(push(e, &src), 4);
  memcpy(first, g_out, sizeof first);
  lg_engine_free(&e);
  /* the same run with another prompt from chunk 1 on */
  e = lg_engine_new(&c, err, sizeof err);
  assert_non_null(e);
  assert_int_equal(lg_testsrc_init(&src, "ball", W, H), 0);
  assert_int_equal(push(e, &src), 5);
  lg_engine_params p;
  lg_engine_get_params(e, &p);
  snprintf(p.prompt, sizeof p.prompt, "the old house by the river at night");
  p.blend_s = 0.0;
  assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), 0);
  assert_int_equal(push(e, &src), 4);
  assert_true(memcmp(g_out, first, sizeof first) != 0);
  lg_engine_free(&e);
  free(hashed);
}

static void test_text_context(void **state) {
  (void)state;
  static float a[512 * 64], b[512 * 64], c[512 * 64], m[512 * 64];
  assert_int_equal(lg_text_ctx_hash("A watercolor  painting", 64, a), 3);
  assert_int_equal(lg_text_ctx_hash("a WATERCOLOR painting", 64, b), 3);
  assert_memory_equal(a, b, sizeof a); /* words, case-insensitive */
  for (int i = 3 * 64; i < 512 * 64; i++)
    assert_true(a[i] == 0.0f); /* rows past the prompt are zero */
  double var = 0;
  for (int i = 0; i < 3 * 64; i++)
    var += (double)a[i] * a[i];
  var /= 3 * 64;
  assert_true(var > 0.5 && var < 1.6); /* unit-variance rows */
  assert_int_equal(lg_text_ctx_hash("a watercolor sketch", 64, c), 3);
  assert_memory_equal(a, c, 2 * 64 * sizeof(float)); /* same words, same rows */
  assert_true(memcmp(a + 128, c + 128, 64 * sizeof(float)) != 0);
  lg_text_ctx_blend(a, c, 0.25, 512 * 64, m);
  assert_true(fabsf(m[130] - (0.75f * a[130] + 0.25f * c[130])) < 1e-6f);
  lg_text_ctx_blend(a, c, 2.0, 512 * 64, m);
  assert_memory_equal(m, c, sizeof m);
  assert_int_equal(lg_text_ctx_hash("", 64, m), 0);
}

static void test_testsrc(void **state) {
  (void)state;
  lg_testsrc t;
  static uint8_t a[PX], b[PX];
  tu_log_capture(true);
  assert_int_equal(lg_testsrc_init(&t, "test:nope", W, H), LG_EINVAL);
  assert_int_equal(lg_testsrc_init(&t, "ball", 1, H), LG_EINVAL);
  tu_log_capture(false);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(lg_testsrc_init(&t, k ? "test:bars" : "test:ball", W, H), 0);
    lg_testsrc_next(&t, a);
    lg_testsrc_next(&t, b);
    assert_true(memcmp(a, b, PX) != 0); /* it moves */
    lg_testsrc t2;
    assert_int_equal(lg_testsrc_init(&t2, k ? "bars" : "ball", W, H), 0);
    lg_testsrc_next(&t2, b);
    assert_memory_equal(a, b, PX); /* a pure function of the frame index */
  }
  /* bars: the row below the moving line holds the pure bar colours (yellow among them) */
  assert_int_equal(lg_testsrc_init(&t, "bars", W, H), 0);
  lg_testsrc_next(&t, a);
  const uint8_t *row = a + (size_t)(H - 1) * W * 3;
  int yellow = 0;
  for (int x = 0; x < W; x++)
    yellow += row[3 * x] == 235 && row[3 * x + 1] == 235 && row[3 * x + 2] == 16;
  assert_int_equal(yellow, W / 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v2v_lag_and_determinism),
      cmocka_unit_test(test_params_and_stats),
      cmocka_unit_test(test_prompt_changes_output),
      cmocka_unit_test(test_t2v_blocks),
      cmocka_unit_test(test_text_encoder),
      cmocka_unit_test(test_text_context),
      cmocka_unit_test(test_testsrc),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
