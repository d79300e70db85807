/* tokenizer_sp.cc: the thin C wrapper over SentencePiece's C++ API behind tokenizer.h (the one
 * C++ file outside cuda/, built only when pkg-config finds sentencepiece). Loads spiece.model,
 * encodes cleaned text (lg_tokenizer_clean_text in tokenizer.c) to ids with </s> appended,
 * decodes ids. No C++ exception crosses into C. One thread at a time per tokenizer. */
#include "tokenizer.h"

#include "lg_base.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

struct lg_tokenizer {
  sentencepiece::SentencePieceProcessor sp;
};

extern "C" bool lg_tokenizer_available(void) {
  return true;
}

extern "C" lg_tokenizer *lg_tokenizer_load(const char *path, char *err, size_t n) {
  if (!path) {
    if (err && n) snprintf(err, n, "tokenizer: no spiece.model path");
    return nullptr;
  }
  lg_tokenizer *t = new (std::nothrow) lg_tokenizer;
  if (!t) {
    if (err && n) snprintf(err, n, "tokenizer: out of memory");
    return nullptr;
  }
  try {
    const auto st = t->sp.Load(path);
    if (!st.ok()) {
      if (err && n) snprintf(err, n, "tokenizer: cannot load %s: %s", path, st.ToString().c_str());
      delete t;
      return nullptr;
    }
  } catch (...) {
    if (err && n) snprintf(err, n, "tokenizer: cannot load %s (exception)", path);
    delete t;
    return nullptr;
  }
  if (t->sp.GetPieceSize() <= LG_TOKENIZER_EOS_ID || !t->sp.IsControl(LG_TOKENIZER_EOS_ID)) {
    if (err && n)
      snprintf(err, n, "tokenizer: %s has no </s> control piece at id %d (not a T5 spiece.model)",
               path, LG_TOKENIZER_EOS_ID);
    delete t;
    return nullptr;
  }
  return t;
}

extern "C" void lg_tokenizer_free(lg_tokenizer **t) {
  if (!t) return;
  delete *t;
  *t = nullptr;
}

extern "C" int lg_tokenizer_vocab_size(const lg_tokenizer *t) {
  return t ? t->sp.GetPieceSize() : 0;
}

extern "C" int lg_tokenizer_encode(lg_tokenizer *t, const char *text, int32_t *ids, int max_ids) {
  if (!t || !text || !ids || max_ids < 1) {
    LG_ERR("tokenizer", "encode: missing tokenizer, text or ids, or max_ids %d < 1", max_ids);
    return LG_EINVAL;
  }
  size_t len = strlen(text);
  try {
    std::string clean(len + 1, '\0');
    int cl = lg_tokenizer_clean_text(text, &clean[0], clean.size());
    if (cl < 0) {
      LG_ERR("tokenizer", "encode: cannot clean the text (%s)", lg_strerror(cl));
      return cl;
    }
    clean.resize((size_t)cl);
    std::vector<int> pieces;
    const auto st = t->sp.Encode(clean, &pieces);
    if (!st.ok()) {
      LG_ERR("tokenizer", "encode: %s", st.ToString().c_str());
      return LG_EFORMAT;
    }
    int cap = max_ids < LG_TOKENIZER_MAX_IDS ? max_ids : LG_TOKENIZER_MAX_IDS;
    int np = (int)pieces.size() < cap - 1 ? (int)pieces.size() : cap - 1;
    for (int i = 0; i < np; i++)
      ids[i] = pieces[(size_t)i];
    ids[np] = LG_TOKENIZER_EOS_ID;
    return np + 1;
  } catch (...) {
    LG_ERR("tokenizer", "encode: out of memory");
    return LG_ENOMEM;
  }
}

extern "C" int lg_tokenizer_decode(lg_tokenizer *t, const int32_t *ids, int n, char *out,
                                   size_t outn) {
  if (!t || (!ids && n > 0) || n < 0 || !out || outn == 0) {
    LG_ERR("tokenizer", "decode: missing tokenizer, ids or output buffer");
    return LG_EINVAL;
  }
  int vs = t->sp.GetPieceSize();
  try {
    std::vector<int> v((size_t)n);
    for (int i = 0; i < n; i++) {
      if (ids[i] < 0 || ids[i] >= vs) {
        LG_ERR("tokenizer", "decode: id %d at %d outside [0, %d)", ids[i], i, vs);
        return LG_EINVAL;
      }
      v[(size_t)i] = ids[i];
    }
    std::string s;
    const auto st = t->sp.Decode(v, &s);
    if (!st.ok()) {
      LG_ERR("tokenizer", "decode: %s", st.ToString().c_str());
      return LG_EFORMAT;
    }
    if (s.size() + 1 > outn || s.size() > (size_t)INT32_MAX) return LG_ERANGE;
    memcpy(out, s.c_str(), s.size() + 1);
    return (int)s.size();
  } catch (...) {
    LG_ERR("tokenizer", "decode: out of memory");
    return LG_ENOMEM;
  }
}
