/* tokenizer.c: Wan's prompt cleaning for the umT5 tokenizer (html.unescape twice, whitespace
 * collapse, strip; see tokenizer.h) and, in builds without SentencePiece, the tokenizer entry
 * points that say so. The SentencePiece wrapper itself is tokenizer_sp.cc. Pure functions;
 * any thread.
 *
 * html.unescape follows Python's html module: `&#N;` / `&#xH;` (the `;` optional) with its
 * rules for invalid references (0 and surrogates/out of range -> U+FFFD, 0x80-0x9F -> the
 * cp1252 characters, other control code points dropped), and named references from the table
 * below: with `;`, or, for the legacy names that HTML5 allows without it (all Latin-1 names and
 * amp/lt/gt/quot), as the longest such prefix. Unknown names are left as they are. */
#include "tokenizer.h"

#include "lg_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entity {
  const char *name;
  uint32_t cp;
} entity;

/* Latin-1 names: code points 160..255 in order; all allowed without ';'. */
static const char *const latin1[96] = {
    "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",
    "copy",   "ordf",   "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn",
    "sup2",   "sup3",   "acute",  "micro",  "para",   "middot", "cedil",  "sup1",   "ordm",
    "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc",  "Atilde",
    "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",   "Igrave",
    "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde",
    "Ouml",   "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",
    "szlig",  "agrave", "aacute", "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil",
    "egrave", "eacute", "ecirc",  "euml",   "igrave", "iacute", "icirc",  "iuml",   "eth",
    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide", "oslash", "ugrave",
    "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml",
};

/* Legacy ASCII names (allowed without ';'). */
static const entity legacy_ascii[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'},
    {"AMP", '&'}, {"LT", '<'}, {"GT", '>'}, {"QUOT", '"'},
};

/* Common names that need ';'. */
static const entity named[] = {
    {"apos", '\''},     {"euro", 0x20AC},   {"hellip", 0x2026}, {"mdash", 0x2014},
    {"ndash", 0x2013},  {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"ldquo", 0x201C},
    {"rdquo", 0x201D},  {"sbquo", 0x201A},  {"bdquo", 0x201E},  {"bull", 0x2022},
    {"trade", 0x2122},  {"dagger", 0x2020}, {"Dagger", 0x2021}, {"permil", 0x2030},
    {"lsaquo", 0x2039}, {"rsaquo", 0x203A}, {"OElig", 0x152},   {"oelig", 0x153},
    {"Scaron", 0x160},  {"scaron", 0x161},  {"Yuml", 0x178},    {"fnof", 0x192},
    {"circ", 0x2C6},    {"tilde", 0x2DC},   {"ensp", 0x2002},   {"emsp", 0x2003},
    {"thinsp", 0x2009}, {"zwnj", 0x200C},   {"zwj", 0x200D},    {"lrm", 0x200E},
    {"rlm", 0x200F},    {"prime", 0x2032},  {"Prime", 0x2033},  {"larr", 0x2190},
    {"rarr", 0x2192},   {"uarr", 0x2191},   {"darr", 0x2193},   {"harr", 0x2194},
    {"hearts", 0x2665}, {"spades", 0x2660}, {"clubs", 0x2663},  {"diams", 0x2666},
    {"infin", 0x221E},  {"ne", 0x2260},     {"le", 0x2264},     {"ge", 0x2265},
    {"minus", 0x2212},  {"asymp", 0x2248},  {"star", 0x2606},   {"check", 0x2713},
    {"Tab", '\t'},      {"NewLine", '\n'},
};

/* Python html._invalid_charrefs for 0x80..0x9F (cp1252; unmapped bytes map to themselves). */
static const uint16_t cp1252[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178,
};

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Python html._invalid_codepoints: replaced by nothing. */
static bool invalid_cp(uint32_t c) {
  return (c >= 0x1 && c <= 0x8) || c == 0xB || (c >= 0xE && c <= 0x1F) ||
         (c >= 0x7F && c <= 0x9F) || (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE;
}

/* Numeric reference body after "&#" at s; sets *used (chars consumed after "&#", including an
 * optional ';') and writes the replacement. Returns bytes written, or -1 when not a reference. */
static int numeric_ref(const char *s, size_t *used, char *o) {
  bool hex = s[0] == 'x' || s[0] == 'X';
  size_t i = hex ? 1 : 0, start = i;
  uint64_t v = 0;
  for (;; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'          ? c - '0'
            : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
            : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
    if (d < 0) break;
    if (v <= 0x110000) v = v * (hex ? 16 : 10) + (uint64_t)d; /* saturates past the range */
  }
  if (i == start) return -1;
  if (s[i] == ';') i++;
  *used = i;
  if (v == 0) return (int)put_utf8(o, 0xFFFD);
  if (v == 0x0D) return (int)put_utf8(o, '\r');
  if (v >= 0x80 && v <= 0x9F) return (int)put_utf8(o, cp1252[v - 0x80]);
  if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return (int)put_utf8(o, 0xFFFD);
  if (invalid_cp((uint32_t)v)) return 0;
  return (int)put_utf8(o, (uint32_t)v);
}

/* Code point of a legacy name (allowed without ';') of exactly len chars, or 0. */
static uint32_t legacy_lookup(const char *s, size_t len) {
  for (int i = 0; i < 96; i++)
    if (strlen(latin1[i]) == len && !memcmp(latin1[i], s, len)) return 160u + (uint32_t)i;
  for (size_t i = 0; i < sizeof legacy_ascii / sizeof legacy_ascii[0]; i++)
    if (strlen(legacy_ascii[i].name) == len && !memcmp(legacy_ascii[i].name, s, len))
      return legacy_ascii[i].cp;
  return 0;
}

/* Named reference body after "&" at s. Returns bytes written (with *used set) or -1. */
static int named_ref(const char *s, size_t *used, char *o) {
  size_t n = 0; /* Python: [^\t\n\f <&#;]{1,32};? */
  while (n < 32 && s[n] && !strchr("\t\n\f <&#;", s[n]))
    n++;
  if (n == 0) return -1;
  if (s[n] == ';') {
    uint32_t cp = legacy_lookup(s, n);
    for (size_t i = 0; !cp && i < sizeof named / sizeof named[0]; i++)
      if (strlen(named[i].name) == n && !memcmp(named[i].name, s, n)) cp = named[i].cp;
    if (cp) {
      *used = n + 1;
      return (int)put_utf8(o, cp);
    }
  }
  for (size_t x = n; x >= 2; x--) { /* longest legacy prefix; the rest stays as text */
    uint32_t cp = legacy_lookup(s, x);
    if (cp) {
      *used = x;
      return (int)put_utf8(o, cp);
    }
  }
  return -1;
}

/* One html.unescape pass of s into o (o has room for strlen(s)+1: never grows). */
static void unescape(const char *s, char *o) {
  size_t j = 0;
  for (size_t i = 0; s[i];) {
    if (s[i] == '&') {
      size_t used = 0;
      int w = s[i + 1] == '#' ? numeric_ref(s + i + 2, &used, o + j)
                              : named_ref(s + i + 1, &used, o + j);
      if (w >= 0) {
        j += (size_t)w;
        i += 1 + (s[i + 1] == '#' ? 1 : 0) + used;
        continue;
      }
    }
    o[j++] = s[i++];
  }
  o[j] = '\0';
}

/* Length of a whitespace character at s (Python str.isspace), or 0. */
static size_t space_len(const unsigned char *s) {
  if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x1F)) return 1;
  if (s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
  if (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3; /* U+1680 */
  if (s[0] == 0xE2 && s[1] == 0x80 &&
      ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
    return 3;                                                 /* U+2000..200A, 2028, 2029, 202F */
  if (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3; /* U+205F */
  if (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
  return 0;
}

int lg_tokenizer_clean_text(const char *text, char *out, size_t outn) {
  if (!text || !out) return LG_EINVAL;
  size_t len = strlen(text);
  char *a = malloc(len + 1), *b = malloc(len + 1);
  if (!a || !b) {
    free(a);
    free(b);
    return LG_ENOMEM;
  }
  unescape(text, a);
  unescape(a, b);
  /* collapse whitespace runs to one space; strip both ends */
  size_t j = 0;
  bool pending = false;
  for (const unsigned char *p = (const unsigned char *)b; *p;) {
    size_t w = space_len(p);
    if (w) {
      pending = j > 0;
      p += w;
      continue;
    }
    if (pending) a[j++] = ' ';
    pending = false;
    a[j++] = (char)*p++;
  }
  a[j] = '\0';
  int rc = (int)j;
  if (j + 1 > outn)
    rc = LG_ERANGE;
  else
    memcpy(out, a, j + 1);
  free(a);
  free(b);
  return rc;
}

#ifndef LG_HAVE_SENTENCEPIECE
/* Built without SentencePiece: the tokenizer cannot be loaded. */
bool lg_tokenizer_available(void) {
  return false;
}
lg_tokenizer *lg_tokenizer_load(const char *path, char *err, size_t n) {
  if (err && n)
    snprintf(err, n,
             "tokenizer: this build has no SentencePiece (install libsentencepiece-dev and "
             "re-run cmake); cannot load %s",
             path ? path : "(null)");
  return NULL;
}
void lg_tokenizer_free(lg_tokenizer **t) {
  if (t) *t = NULL;
}
int lg_tokenizer_vocab_size(const lg_tokenizer *t) {
  (void)t;
  return 0;
}
int lg_tokenizer_encode(lg_tokenizer *t, const char *text, int32_t *ids, int max_ids) {
  (void)t, (void)text, (void)ids, (void)max_ids;
  LG_ERR("tokenizer", "this build has no SentencePiece");
  return LG_ENOTSUP;
}
int lg_tokenizer_decode(lg_tokenizer *t, const int32_t *ids, int n, char *out, size_t outn) {
  (void)t, (void)ids, (void)n, (void)out, (void)outn;
  LG_ERR("tokenizer", "this build has no SentencePiece");
  return LG_ENOTSUP;
}
#endif
