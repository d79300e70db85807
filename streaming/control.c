/* control.c: control messages (docs/API.md "/ws/control") parsed and validated with jansson,
 * dispatched through lg_control_ops, answers serialised with jansson. Every field of a
 * message is type- and range-checked before any op is called, so a request is applied
 * entirely or not at all. Runs on the caller's thread (the lws service thread); no state. */
#include "control.h"

#include "lg_base.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *type_names[] = {
    [LG_CTL_PARAMS] = "params", [LG_CTL_PAUSE] = "pause", [LG_CTL_RESUME] = "resume",
    [LG_CTL_RESET] = "reset",   [LG_CTL_INPUT] = "input", [LG_CTL_STATUS] = "status",
};
#define N_TYPES ((int)(sizeof type_names / sizeof type_names[0]))

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errn, const char *fmt,
                                                      ...) {
  if (err && errn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
  }
  return LG_EFORMAT;
}

/* A number field (integer or real), finite, within [lo, hi]. */
static int get_number(json_t *v, const char *name, double lo, double hi, double *out, char *err,
                      size_t errn) {
  if (!json_is_number(v))
    return fail(err, errn, "%s must be a number between %g and %g", name, lo, hi);
  double d = json_number_value(v);
  if (!isfinite(d) || d < lo || d > hi) {
    fail(err, errn, "%s must be a number between %g and %g", name, lo, hi);
    return LG_ERANGE;
  }
  *out = d;
  return 0;
}

static int parse_id(json_t *root, lg_ctl_request *req, char *err, size_t errn) {
  json_t *id = json_object_get(root, "id");
  if (!id || json_is_null(id)) return 0;
  if (json_is_string(id)) {
    if (json_string_length(id) > LG_CTL_ID_MAX)
      return fail(err, errn, "id must be at most %d bytes", LG_CTL_ID_MAX);
  } else if (!json_is_integer(id)) {
    return fail(err, errn, "id must be a string or an integer");
  }
  /* Worst case escaping of 128 bytes could exceed id_json; refuse rather than truncate. */
  size_t n = json_dumpb(id, req->id_json, sizeof req->id_json - 1, JSON_ENCODE_ANY);
  if (n == 0 || n >= sizeof req->id_json) {
    strcpy(req->id_json, "null");
    return fail(err, errn, "id is too long once escaped");
  }
  req->id_json[n] = 0;
  return 0;
}

/* Fields allowed besides "type" and "id" for each type. */
static bool field_allowed(lg_ctl_type t, const char *key) {
  if (!strcmp(key, "type") || !strcmp(key, "id")) return true;
  switch (t) {
  case LG_CTL_PARAMS:
    return !strcmp(key, "prompt") || !strcmp(key, "strength") || !strcmp(key, "steps") ||
           !strcmp(key, "seed") || !strcmp(key, "blend");
  case LG_CTL_INPUT: return !strcmp(key, "input");
  default: return false;
  }
}

static int parse_params(json_t *root, lg_ctl_request *req, char *err, size_t errn) {
  lg_ctl_params *p = &req->params;
  json_t *v;
  int rc;
  if ((v = json_object_get(root, "prompt"))) {
    if (!json_is_string(v)) return fail(err, errn, "prompt must be a string");
    size_t n = json_string_length(v);
    if (n >= LG_CTL_PROMPT_MAX)
      return fail(err, errn, "prompt is too long (%zu bytes, at most %d)", n,
                  LG_CTL_PROMPT_MAX - 1);
    memcpy(p->prompt, json_string_value(v), n);
    p->prompt[n] = 0;
    req->has |= LG_CTL_HAS_PROMPT;
  }
  if ((v = json_object_get(root, "strength"))) {
    if ((rc = get_number(v, "strength", 0.0, 1.0, &p->strength, err, errn))) return rc;
    req->has |= LG_CTL_HAS_STRENGTH;
  }
  if ((v = json_object_get(root, "steps"))) {
    if (!json_is_integer(v)) return fail(err, errn, "steps must be an integer from 1 to 4");
    json_int_t s = json_integer_value(v);
    if (s < 1 || s > 4) {
      fail(err, errn, "steps must be an integer from 1 to 4");
      return LG_ERANGE;
    }
    p->steps = (int)s;
    req->has |= LG_CTL_HAS_STEPS;
  }
  if ((v = json_object_get(root, "seed"))) {
    if (!json_is_integer(v))
      return fail(err, errn, "seed must be an integer from 0 to %llu", LG_CTL_SEED_MAX);
    json_int_t s = json_integer_value(v);
    if (s < 0 || (unsigned long long)s > LG_CTL_SEED_MAX) {
      fail(err, errn, "seed must be an integer from 0 to %llu", LG_CTL_SEED_MAX);
      return LG_ERANGE;
    }
    p->seed = (unsigned long long)s;
    req->has |= LG_CTL_HAS_SEED;
  }
  if ((v = json_object_get(root, "blend"))) {
    if ((rc = get_number(v, "blend", 0.0, LG_CTL_BLEND_MAX, &p->blend, err, errn))) return rc;
    req->has |= LG_CTL_HAS_BLEND;
  }
  return 0;
}

static int parse_input(json_t *root, lg_ctl_request *req, char *err, size_t errn) {
  json_t *v = json_object_get(root, "input");
  if (!json_is_string(v)) return fail(err, errn, "input must be a string such as \"test:smpte\"");
  size_t n = json_string_length(v);
  if (n == 0 || n >= LG_CTL_INPUT_MAX)
    return fail(err, errn, "input must be 1 to %d bytes", LG_CTL_INPUT_MAX - 1);
  /* The kind (test:, file:, rtmp://, ws, ...) is checked by the service's set_input, which
   * knows what the ingest supports; here only what no input spec may contain. */
  const char *s = json_string_value(v);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20)
      return fail(err, errn, "input must not contain control characters");
  memcpy(req->input, s, n);
  req->input[n] = 0;
  return 0;
}

int lg_ctl_parse(const char *msg, size_t len, int default_type, lg_ctl_request *req, char *err,
                 size_t errn) {
  memset(req, 0, sizeof *req);
  strcpy(req->id_json, "null");
  if (err && errn) err[0] = 0;
  if (!msg || len == 0) return fail(err, errn, "empty message");
  if (len > LG_CTL_MSG_MAX)
    return fail(err, errn, "message too large (%zu bytes, at most %d)", len, LG_CTL_MSG_MAX);
  json_error_t je;
  json_t *root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) return fail(err, errn, "malformed JSON: %s", je.text);
  int rc = 0;
  if (!json_is_object(root)) {
    rc = fail(err, errn, "a control message must be a JSON object");
    goto done;
  }
  if ((rc = parse_id(root, req, err, errn))) goto done;
  json_t *t = json_object_get(root, "type");
  int type = -1;
  if (!t) {
    if (default_type < 0) {
      rc = fail(err, errn, "missing \"type\"");
      goto done;
    }
    type = default_type;
  } else {
    if (!json_is_string(t)) {
      rc = fail(err, errn, "\"type\" must be a string");
      goto done;
    }
    for (int i = 0; i < N_TYPES; i++)
      if (!strcmp(json_string_value(t), type_names[i])) type = i;
    if (type < 0) {
      rc = fail(err, errn, "unknown type \"%.64s\"", json_string_value(t));
      goto done;
    }
    if (default_type >= 0 && type != default_type) {
      rc = fail(err, errn, "\"type\" must be \"%s\" here", type_names[default_type]);
      goto done;
    }
  }
  req->type = (lg_ctl_type)type;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (!field_allowed(req->type, key)) {
      rc = fail(err, errn, "unknown field \"%.64s\" for type \"%s\"", key, type_names[type]);
      goto done;
    }
  }
  if (req->type == LG_CTL_PARAMS)
    rc = parse_params(root, req, err, errn);
  else if (req->type == LG_CTL_INPUT)
    rc = parse_input(root, req, err, errn);
done:
  json_decref(root);
  return rc;
}

/* Dumps obj into out; returns the length or LG_ERANGE. Steals obj. */
static int dump(json_t *obj, char *out, size_t outn) {
  if (!obj) return LG_ENOMEM;
  size_t n = json_dumpb(obj, out, outn, JSON_COMPACT | JSON_REAL_PRECISION(12));
  json_decref(obj);
  if (n == 0 || n >= outn) {
    if (outn) out[0] = 0;
    return LG_ERANGE;
  }
  out[n] = 0;
  return (int)n;
}

static json_t *id_value(const char *id_json) {
  if (!id_json) return json_null();
  json_t *v = json_loads(id_json, JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}

static json_t *params_object(const lg_ctl_params *p) {
  return json_pack("{s:s, s:f, s:i, s:I, s:f, s:b}", "prompt", p->prompt, "strength", p->strength,
                   "steps", p->steps, "seed", (json_int_t)p->seed, "blend", p->blend, "paused",
                   p->paused);
}

int lg_ctl_format_ack(const char *id_json, const lg_ctl_params *p, char *out, size_t outn) {
  json_t *params = params_object(p);
  if (!params) return LG_EINVAL; /* only if prompt is not valid UTF-8 */
  return dump(
      json_pack("{s:s, s:o, s:o}", "type", "ack", "id", id_value(id_json), "params", params), out,
      outn);
}

int lg_ctl_format_error(const char *id_json, const char *message, char *out, size_t outn) {
  json_t *m = json_string(message ? message : "error");
  if (!m) m = json_string("error (message was not valid UTF-8)");
  return dump(json_pack("{s:s, s:o, s:o}", "type", "error", "id", id_value(id_json), "message", m),
              out, outn);
}

/* json_string that never fails on bad UTF-8 from a status field. */
static json_t *str_or_empty(const char *s) {
  json_t *v = json_string(s);
  return v ? v : json_string("");
}

int lg_ctl_format_status(const lg_ctl_status *st, const char *type, const char *id_json, char *out,
                         size_t outn) {
  json_t *params = params_object(&st->params);
  if (!params) params = json_object();
  json_t *o = json_pack(
      "{s:s, s:o, s:o,"
      " s:{s:f, s:f, s:f, s:I, s:I, s:I, s:i, s:f},"
      " s:{s:o, s:f, s:f},"
      " s:{s:o, s:o, s:i, s:i}}",
      "state", st->state[0] ? st->state : "loading", "params", params, "input",
      str_or_empty(st->input), "stats", "fps_in", st->fps_in, "fps_out", st->fps_out, "latency_ms",
      st->latency_ms, "dropped", (json_int_t)st->dropped, "frames_in", (json_int_t)st->frames_in,
      "frames_out", (json_int_t)st->frames_out, "viewers", st->viewers, "ttff_s", st->ttff_s, "gpu",
      "name", str_or_empty(st->gpu_name), "mem_used_mb", st->mem_used_mb, "mem_total_mb",
      st->mem_total_mb, "model", "dit", str_or_empty(st->dit), "decoder", str_or_empty(st->decoder),
      "width", st->width, "height", st->height);
  if (!o) return LG_EINVAL;
  if (type) {
    json_object_set_new(o, "type", json_string(type));
    if (id_json) json_object_set_new(o, "id", id_value(id_json));
  }
  return dump(o, out, outn);
}

int lg_ctl_handle(const lg_control_ops *ops, const char *msg, size_t len, int default_type,
                  char *out, size_t outn) {
  lg_ctl_request req;
  char err[512];
  int rc = lg_ctl_parse(msg, len, default_type, &req, err, sizeof err);
  if (rc) {
    lg_ctl_format_error(req.id_json, err, out, outn);
    return rc;
  }
  lg_ctl_params now;
  memset(&now, 0, sizeof now);
  err[0] = 0;
  switch (req.type) {
  case LG_CTL_PARAMS:
    rc = ops->set_params ? ops->set_params(ops->user, &req.params, req.has, &now, err, sizeof err)
                         : LG_ENOTSUP;
    break;
  case LG_CTL_PAUSE:
  case LG_CTL_RESUME:
    rc = ops->set_paused
             ? ops->set_paused(ops->user, req.type == LG_CTL_PAUSE, &now, err, sizeof err)
             : LG_ENOTSUP;
    break;
  case LG_CTL_RESET:
    rc = ops->reset ? ops->reset(ops->user, &now, err, sizeof err) : LG_ENOTSUP;
    break;
  case LG_CTL_INPUT:
    rc = ops->set_input ? ops->set_input(ops->user, req.input, &now, err, sizeof err) : LG_ENOTSUP;
    break;
  case LG_CTL_STATUS: {
    lg_ctl_status st;
    memset(&st, 0, sizeof st);
    if (ops->get_status) ops->get_status(ops->user, &st);
    int n = lg_ctl_format_status(&st, "status", req.id_json, out, outn);
    return n < 0 ? n : 0;
  }
  }
  if (rc) {
    if (!err[0]) snprintf(err, sizeof err, "%s failed: %s", type_names[req.type], lg_strerror(rc));
    lg_ctl_format_error(req.id_json, err, out, outn);
    return rc;
  }
  int n = lg_ctl_format_ack(req.id_json, &now, out, outn);
  return n < 0 ? n : 0;
}
