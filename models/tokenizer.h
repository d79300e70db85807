/* tokenizer.h: the umT5 tokenizer of Wan2.1 (MODELS.md 5): Wan's text cleaning, then
 * SentencePiece (the unigram google/umt5-xxl spiece.model) and `</s>` appended, truncated to
 * LG_TOKENIZER_MAX_IDS. The SentencePiece part is a thin C wrapper over its C++ API
 * (tokenizer_sp.cc, the one C++ file outside cuda/); a build without SentencePiece still has
 * the text cleaning, and lg_tokenizer_load then fails with a message saying so.
 *
 * Cleaning (Wan's HuggingfaceTokenizer with clean='whitespace'): html.unescape twice (numeric
 * references and the common named entities), strip, collapse every run of whitespace (ASCII
 * and the Unicode spaces Python's \s matches) to one space, strip. Wan first runs ftfy.fix_text
 * (mojibake repair), which is not reproduced: text that is valid UTF-8 is unaffected.
 *
 * Threads: a tokenizer may be used from one thread at a time; cleaning is pure. */
#ifndef LG_TOKENIZER_H
#define LG_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_TOKENIZER_MAX_IDS 512 /* Wan's text_len */
#define LG_TOKENIZER_PAD_ID 0
#define LG_TOKENIZER_EOS_ID 1 /* </s> */

typedef struct lg_tokenizer lg_tokenizer;

/* True when this build has SentencePiece. */
bool lg_tokenizer_available(void);

/* Loads a SentencePiece model (spiece.model). NULL with a message in err when the file is
 * missing or malformed, or when the build has no SentencePiece. */
lg_tokenizer *lg_tokenizer_load(const char *spiece_model_path, char *err, size_t n);
void lg_tokenizer_free(lg_tokenizer **t);
int lg_tokenizer_vocab_size(const lg_tokenizer *t);

/* Cleans text, tokenizes it and appends </s> (id 1); at most min(max_ids, 512) ids are
 * written, truncating the pieces so that </s> stays last (like the reference's truncation).
 * Returns the count (>= 1) or LG_E* (logged). max_ids >= 1. */
int lg_tokenizer_encode(lg_tokenizer *t, const char *text, int32_t *ids, int max_ids);

/* Text of ids (control ids such as </s> and padding produce nothing) into out (NUL-terminated).
 * Returns the length, or LG_ERANGE when out is too small, or LG_E*. */
int lg_tokenizer_decode(lg_tokenizer *t, const int32_t *ids, int n, char *out, size_t outn);

/* Wan's cleaning of text (see above) into out (NUL-terminated; the result is never longer
 * than the input). Returns the length, or LG_ERANGE when out is too small. */
int lg_tokenizer_clean_text(const char *text, char *out, size_t outn);

#ifdef __cplusplus
}
#endif
#endif
