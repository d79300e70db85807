/* test_umt5_tokenizer.c: the umT5 tokenizer (models/tokenizer.c, tokenizer_sp.cc).
 * - Wan's text cleaning (html.unescape twice, whitespace collapse, strip) on cases whose
 *   expected output is what Python's html.unescape / re.sub(r'\s+', ' ') give;
 * - with SentencePiece in the build: a tiny unigram model is trained here with Debian's
 *   `spm_train` (package sentencepiece; no real spiece.model can be downloaded) with T5's
 *   special ids (pad 0, </s> 1, unk 2); encoded prompts end in </s>, decode back to the cleaned
 *   text, and truncate to max_ids / 512 keeping </s> last; bad files and ids get errors.
 * - without SentencePiece: loading says the build has none. Test thread. */
#include "test_util.h"

#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_clean(const char *in, const char *want) {
  char out[512];
  int n = lg_tokenizer_clean_text(in, out, sizeof out);
  if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want))
    fail_msg("clean(\"%s\") = \"%s\" (%d), expected \"%s\"", in, n < 0 ? "" : out, n, want);
}

static void test_tokenizer_clean_text(void **state) {
  (void)state;
  expect_clean("  a   photo\tof\n a  cat  ", "a photo of a cat");
  expect_clean("", "");
  expect_clean(" \t\r\n ", "");
  expect_clean("Tom &amp; Jerry", "Tom & Jerry");
  expect_clean("&amp;lt;b&amp;gt; bold", "<b> bold"); /* unescaped twice, like Wan */
  expect_clean("caf&eacute; &#233; &#xE9; &#XE9", "caf\xc3\xa9 \xc3\xa9 \xc3\xa9 \xc3\xa9");
  expect_clean("a&nbsp;&nbsp;b", "a b");              /* U+00A0 is whitespace for \s */
  expect_clean("x &copy 2024", "x \xc2\xa9 2024");    /* legacy name without ';' */
  expect_clean("&notit; &zzz;", "\xc2\xacit; &zzz;"); /* Python: "¬it;"; unknown kept */
  expect_clean("it&apos;s &quot;fine&quot; &hellip;", "it's \"fine\" \xe2\x80\xa6");
  expect_clean("AT&T & co &", "AT&T & co &");
  expect_clean("&#0;|&#128;|&#1;|&#x110000;|&#65", "\xef\xbf\xbd|\xe2\x82\xac||\xef\xbf\xbd|A");
  expect_clean("&#; &#x; &", "&#; &#x; &");
  expect_clean("\xe3\x80\x80"
               "full\xe2\x80\x83width\xc2\x85",
               "full width"); /* U+3000 U+2003 */
  expect_clean("line1&#10;&#10;line2", "line1 line2");
  char small[4];
  assert_int_equal(lg_tokenizer_clean_text("hello", small, sizeof small), LG_ERANGE);
  assert_int_equal(lg_tokenizer_clean_text("  hi  ", small, sizeof small), 2);
  assert_string_equal(small, "hi");
}

/* ---- SentencePiece ---- */

static char model_path[600];

/* Trains a tiny unigram model with T5's special ids into LG_BINARY_DIR. */
static void train_tiny_model(void) {
  if (system("command -v spm_train >/dev/null 2>&1") != 0)
    fail_msg("spm_train not found: install the Debian package 'sentencepiece' (scripts/setup)");
  char corpus[512], prefix[512], cmd[2048];
  snprintf(corpus, sizeof corpus, "%s/test_umt5_tok_corpus.txt", LG_BINARY_DIR);
  snprintf(prefix, sizeof prefix, "%s/test_umt5_tok", LG_BINARY_DIR);
  snprintf(model_path, sizeof model_path, "%s.model", prefix);
  static const char *const subj[] = {"a cat",     "the dog",     "a red car",
                                     "two birds", "an old man",  "a girl",
                                     "the river", "Hello world", "my friends"};
  static const char *const verb[] = {"runs across", "sits on",    "flies over", "looks at",
                                     "walks along", "jumps into", "waves to",   "paints"};
  static const char *const obj[] = {"the street",  "a wooden table",    "the blue sky",
                                    "green hills", "the city & lights", "a small house",
                                    "the camera"};
  FILE *f = fopen(corpus, "w");
  assert_non_null(f);
  lg_rng r;
  lg_rng_seed(&r, 1);
  for (int i = 0; i < 400; i++)
    fprintf(f, "%s %s %s, cinematic %d.\n", subj[lg_rng_next(&r) % 9], verb[lg_rng_next(&r) % 8],
            obj[lg_rng_next(&r) % 7], (int)(lg_rng_next(&r) % 10));
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "spm_train --input=%s --model_prefix=%s --vocab_size=120 --model_type=unigram "
           "--character_coverage=1.0 --hard_vocab_limit=false --pad_id=0 --eos_id=1 --unk_id=2 "
           "--bos_id=-1 >/dev/null 2>&1",
           corpus, prefix);
  if (system(cmd) != 0) fail_msg("spm_train failed: %s", cmd);
  remove(corpus);
}

static void test_tokenizer_sentencepiece(void **state) {
  (void)state;
  char err[512] = "";
  if (!lg_tokenizer_available()) {
    /* this build has no SentencePiece: loading must say so */
    assert_null(lg_tokenizer_load("/nonexistent/spiece.model", err, sizeof err));
    assert_non_null(strstr(err, "no SentencePiece"));
    return;
  }
  train_tiny_model();
  lg_tokenizer *t = lg_tokenizer_load(model_path, err, sizeof err);
  if (!t) fail_msg("load: %s", err);
  assert_true(lg_tokenizer_vocab_size(t) > 3);

  int32_t ids[LG_TOKENIZER_MAX_IDS + 8];
  int n = lg_tokenizer_encode(t, "  Hello   world &amp; my friends\n", ids, LG_TOKENIZER_MAX_IDS);
  assert_true(n > 2);
  assert_int_equal(ids[n - 1], LG_TOKENIZER_EOS_ID);
  for (int i = 0; i < n - 1; i++)
    assert_true(ids[i] > LG_TOKENIZER_EOS_ID && ids[i] != 2); /* no pad, </s> or unk inside */
  char text[1024];
  assert_int_equal(lg_tokenizer_decode(t, ids, n, text, sizeof text),
                   (int)strlen("Hello world & my friends"));
  assert_string_equal(text, "Hello world & my friends");
  /* the same prompt, differently spaced, gives the same ids */
  int32_t ids2[LG_TOKENIZER_MAX_IDS];
  assert_int_equal(lg_tokenizer_encode(t, "Hello world&nbsp;&amp;\tmy friends", ids2, 512), n);
  assert_memory_equal(ids, ids2, sizeof(int32_t) * (size_t)n);

  /* truncation keeps </s> last */
  assert_int_equal(lg_tokenizer_encode(t, "Hello world & my friends", ids2, 3), 3);
  assert_memory_equal(ids2, ids, 2 * sizeof(int32_t));
  assert_int_equal(ids2[2], LG_TOKENIZER_EOS_ID);
  assert_int_equal(lg_tokenizer_encode(t, "   ", ids2, 512), 1); /* empty prompt: just </s> */
  assert_int_equal(ids2[0], LG_TOKENIZER_EOS_ID);
  size_t cap = 700 * 12;
  char *lng = malloc(cap);
  assert_non_null(lng);
  lng[0] = '\0';
  for (int i = 0; i < 700; i++)
    strcat(lng, "a red car, ");
  /* more than 512 pieces: 512 ids even when the buffer allows more */
  assert_int_equal(lg_tokenizer_encode(t, lng, ids, LG_TOKENIZER_MAX_IDS + 8),
                   LG_TOKENIZER_MAX_IDS);
  assert_int_equal(ids[LG_TOKENIZER_MAX_IDS - 1], LG_TOKENIZER_EOS_ID);
  for (int i = 0; i < LG_TOKENIZER_MAX_IDS - 1; i++)
    assert_true(ids[i] != LG_TOKENIZER_EOS_ID);
  free(lng);

  /* errors */
  tu_log_capture(true);
  assert_int_equal(lg_tokenizer_encode(t, "x", ids, 0), LG_EINVAL);
  int32_t bad[2] = {5, 1 << 20};
  assert_int_equal(lg_tokenizer_decode(t, bad, 2, text, sizeof text), LG_EINVAL);
  assert_non_null(strstr(tu_log_text(), "outside"));
  tu_log_capture(false);
  assert_int_equal(lg_tokenizer_decode(t, ids, n, text, 4), LG_ERANGE);
  lg_tokenizer_free(&t);
  assert_null(t);

  /* a file that is not a SentencePiece model, and a missing one */
  char junk[512];
  snprintf(junk, sizeof junk, "%s/test_umt5_tok_junk.model", LG_BINARY_DIR);
  FILE *f = fopen(junk, "w");
  assert_non_null(f);
  fputs("not a model", f);
  fclose(f);
  assert_null(lg_tokenizer_load(junk, err, sizeof err));
  assert_non_null(strstr(err, junk));
  remove(junk);
  assert_null(lg_tokenizer_load("/nonexistent/spiece.model", err, sizeof err));
  assert_non_null(strstr(err, "/nonexistent/spiece.model"));
  remove(model_path);
  char vocab[512];
  snprintf(vocab, sizeof vocab, "%s/test_umt5_tok.vocab", LG_BINARY_DIR);
  remove(vocab);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tokenizer_clean_text),
      cmocka_unit_test(test_tokenizer_sentencepiece),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
