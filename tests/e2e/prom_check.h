/* prom_check.h: a strict checker of Prometheus text exposition format 0.0.4 line syntax, for
 * tests (test_metrics.c, test_serve_e2e.c). Header-only (static functions). Any thread. */
#ifndef LG_PROM_CHECK_H
#define LG_PROM_CHECK_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int prom_is_name_start(int c) {
  return isalpha(c) || c == '_' || c == ':';
}
static int prom_is_name_char(int c) {
  return isalnum(c) || c == '_' || c == ':';
}

/* Parses a metric name at *p; returns its length (0 = none). */
static size_t prom_name(const char *p) {
  if (!prom_is_name_start((unsigned char)p[0])) return 0;
  size_t n = 1;
  while (prom_is_name_char((unsigned char)p[n]))
    n++;
  return n;
}

static int prom_value(const char *p, const char **end) {
  if (!strncmp(p, "+Inf", 4) || !strncmp(p, "-Inf", 4)) {
    *end = p + 4;
    return 1;
  }
  if (!strncmp(p, "NaN", 3)) {
    *end = p + 3;
    return 1;
  }
  char *e;
  strtod(p, &e);
  if (e == p) return 0;
  *end = e;
  return 1;
}

/* Checks one line (without '\n'). Returns 1 if valid; on failure writes why into why. */
static int prom_check_line(const char *line, char *why, size_t whyn) {
  const char *p = line;
  if (*p == 0) return 1; /* empty lines are allowed */
  if (*p == '#') {
    if (!strncmp(p, "# HELP ", 7) || !strncmp(p, "# TYPE ", 7)) {
      int is_type = p[2] == 'T';
      p += 7;
      size_t n = prom_name(p);
      if (!n) goto bad;
      p += n;
      if (*p != ' ') goto bad;
      p++;
      if (is_type && strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
          strcmp(p, "summary") && strcmp(p, "untyped"))
        goto bad;
    }
    return 1;
  }
  size_t n = prom_name(p);
  if (!n) goto bad;
  p += n;
  if (*p == '{') {
    p++;
    while (*p != '}') {
      if (!(isalpha((unsigned char)*p) || *p == '_')) goto bad;
      while (isalnum((unsigned char)*p) || *p == '_')
        p++;
      if (*p++ != '=') goto bad;
      if (*p++ != '"') goto bad;
      while (*p && *p != '"') {
        if (*p == '\\') {
          p++;
          if (*p != '\\' && *p != '"' && *p != 'n') goto bad;
        }
        p++;
      }
      if (*p++ != '"') goto bad;
      if (*p == ',')
        p++;
      else if (*p != '}')
        goto bad;
    }
    p++;
  }
  if (*p++ != ' ') goto bad;
  const char *e;
  if (!prom_value(p, &e)) goto bad;
  p = e;
  if (*p == ' ') { /* optional timestamp (ms) */
    p++;
    char *te;
    strtoll(p, &te, 10);
    if (te == p) goto bad;
    p = te;
  }
  if (*p) goto bad;
  return 1;
bad:
  snprintf(why, whyn, "bad line at column %d: '%.160s'", (int)(p - line), line);
  return 0;
}

/* Checks a whole exposition: every line valid, ends with '\n'. Returns the number of sample
 * lines, or -1 with the reason in why. */
static int prom_check_text(const char *text, char *why, size_t whyn) {
  size_t len = strlen(text);
  if (len == 0 || text[len - 1] != '\n') {
    snprintf(why, whyn, "exposition does not end with a newline");
    return -1;
  }
  int samples = 0;
  const char *p = text;
  char line[1024];
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t n = (size_t)(nl - p);
    if (n >= sizeof line) {
      snprintf(why, whyn, "line too long");
      return -1;
    }
    memcpy(line, p, n);
    line[n] = 0;
    if (!prom_check_line(line, why, whyn)) return -1;
    if (line[0] && line[0] != '#') samples++;
    p = nl + 1;
  }
  return samples;
}

/* Value of the first sample whose line starts with prefix (name plus labels), or -1. */
static double prom_sample(const char *text, const char *prefix) {
  size_t pl = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (!strncmp(p, prefix, pl) && p[pl] == ' ') return strtod(p + pl + 1, NULL);
  }
  return -1;
}

#endif
