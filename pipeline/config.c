/* config.c: YAML -> lg_config. Parsed once on the main thread with libyaml's document API
 * (so every key has a line number for messages), driven by one table of fields: defaults,
 * types, ranges. Unknown keys, wrong types and out-of-range values are errors naming file,
 * line and key. `--set section.key=value` goes through the same table. */
#include "config.h"

#include "lg_base.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { F_STR, F_INT, F_DBL, F_BOOL, F_U64, F_INTLIST, F_STRLIST } field_type;

typedef struct field {
  const char *key; /* "section.key" or "key" for top-level scalars */
  field_type type;
  size_t off;       /* offset in lg_config */
  size_t size;      /* F_STR: buffer size; lists: element size */
  double lo, hi;    /* F_INT/F_DBL range; lists: max count in hi */
  size_t count_off; /* lists: offset of the int count */
  const char *help;
} field;

#define OFF(m) offsetof(lg_config, m)
#define STR(k, m, h)                                                                               \
  { k, F_STR, OFF(m), sizeof(((lg_config *)0)->m), 0, 0, 0, h }
#define INT(k, m, lo, hi, h)                                                                       \
  { k, F_INT, OFF(m), sizeof(int), lo, hi, 0, h }
#define DBL(k, m, lo, hi, h)                                                                       \
  { k, F_DBL, OFF(m), sizeof(double), lo, hi, 0, h }
#define BOOL(k, m, h)                                                                              \
  { k, F_BOOL, OFF(m), sizeof(bool), 0, 1, 0, h }
#define U64(k, m, h)                                                                               \
  { k, F_U64, OFF(m), sizeof(unsigned long long), 0, 0, 0, h }

static const field fields[] = {
    STR("model.dit", model.dit, "Wan DiT: .safetensors, sharded .index.json, or tiny"),
    STR("model.dit_weights", model.dit_weights, "optional .pt replacing the DiT weights"),
    STR("model.vae", model.vae, "Wan2.1_VAE.pth or tiny"),
    STR("model.decoder", model.decoder, "wan-vae or taehv"),
    STR("model.context_weights", model.context_weights, "device or host"),
    STR("model.taehv", model.taehv, "taew2_1.pth/.safetensors or tiny"),
    STR("model.text_encoder", model.text_encoder, "umT5 .pth or none"),
    STR("model.tokenizer", model.tokenizer, "spiece.model"),
    STR("model.cache_dir", model.cache_dir, "folder for generated tiny models"),
    U64("model.seed", model.seed, "seed of the tiny random models"),
    STR("engine.backend", engine.backend, "auto, cpu, cuda or cuda:N"),
    STR("engine.mode", engine.mode, "v2v or t2v"),
    INT("engine.width", engine.width, 16, 4096, "output width (multiple of 16)"),
    INT("engine.height", engine.height, 16, 4096, "output height (multiple of 16)"),
    INT("engine.steps", engine.steps, 1, LG_MAX_STEPS, "denoising steps"),
    {"engine.step_list", F_INTLIST, OFF(engine.step_list), sizeof(int), 0, LG_MAX_STEPS,
     OFF(engine.n_step_list), "timesteps in [0,1000], first `steps` used"},
    DBL("engine.shift", engine.shift, 0.01, 100, "flow-matching shift"),
    DBL("engine.noise_scale", engine.noise_scale, 0, 1, "v2v input noise scale (strength)"),
    BOOL("engine.motion_noise", engine.motion_noise, "motion-aware noise scale"),
    INT("engine.kv_frames", engine.kv_frames, 1, 64, "KV cache length in latent frames"),
    INT("engine.sink_frames", engine.sink_frames, 0, 63, "sink frames"),
    DBL("engine.adapt_sink", engine.adapt_sink, -1, 1, "sink refresh threshold (<0 off)"),
    U64("engine.seed", engine.seed, "noise seed"),
    STR("engine.prompt", engine.prompt, "prompt"),
    DBL("engine.prompt_blend_s", engine.prompt_blend_s, 0, 600, "prompt blend seconds"),
    DBL("engine.fps", engine.fps, 1, 240, "output frame rate"),
    INT("engine.threads", engine.threads, 0, 1024, "CPU backend threads (0 = all)"),
    INT("engine.stages", engine.stages, 1, LG_MAX_GPUS,
        "DiT stages as threads on one device (v2v; 1 = no pipeline)"),
    INT("engine.balance_ticks", engine.balance_ticks, 0, 1000000,
        "pipelined DiT: rebalance layer boundaries after this many batches (0: even split)"),
    {"engine.gpus", F_INTLIST, OFF(engine.gpus), sizeof(int), 0, LG_MAX_GPUS, OFF(engine.n_gpus),
     "one process per GPU, DiT pipelined over NCCL (v2v): [0,1,...]; [] = off"},
    STR("engine.launch", engine.launch, "engine.gpus ranks: spawn (on this host) or external"),
    STR("engine.nccl_id_file", engine.nccl_id_file, "external launch: NCCL id file rank 0 writes"),
    STR("input", input,
        "test:<pattern>, file:PATH, v4l2:/dev/videoN, rtmp://, srt://, rtmp-listen:PORT/APP/KEY, "
        "whip, ws, none"),
    STR("output.codec", output.codec, "auto, libx264 or h264_nvenc"),
    INT("output.bitrate_kbps", output.bitrate_kbps, 50, 200000, "encoder bitrate"),
    INT("output.keyint", output.keyint, 1, 1000, "frames between keyframes"),
    STR("output.preset", output.preset, "encoder preset"),
    BOOL("output.gpu_frames", output.gpu_frames,
         "serve on CUDA: h264_nvenc takes the frames on the GPU (false: host frames)"),
    STR("output.rtmp", output.rtmp, "RTMP push URL"),
    STR("output.record", output.record, "fragmented MP4 path"),
    STR("server.host", server.host, "listen address"),
    INT("server.port", server.port, 0, 65535, "listen port (0 = any free port)"),
    STR("server.web_root", server.web_root, "static files folder"),
    INT("server.max_viewers", server.max_viewers, 1, 10000, "viewer limit"),
    {"server.ice_servers", F_STRLIST, OFF(server.ice_servers),
     sizeof(((lg_config *)0)->server.ice_servers[0]), 0, LG_MAX_ICE, OFF(server.n_ice_servers),
     "stun:/turn: URLs"},
    STR("log.level", log_level, "error, warn, info or debug"),
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

void lg_config_defaults(lg_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->model.dit, sizeof c->model.dit, "tiny");
  snprintf(c->model.vae, sizeof c->model.vae, "tiny");
  snprintf(c->model.decoder, sizeof c->model.decoder, "wan-vae");
  snprintf(c->model.context_weights, sizeof c->model.context_weights, "host");
  snprintf(c->model.taehv, sizeof c->model.taehv, "tiny");
  snprintf(c->model.text_encoder, sizeof c->model.text_encoder, "none");
  c->model.seed = 42;
  snprintf(c->engine.backend, sizeof c->engine.backend, "auto");
  snprintf(c->engine.mode, sizeof c->engine.mode, "v2v");
  c->engine.width = 320;
  c->engine.height = 192;
  c->engine.steps = 2;
  const int steps[4] = {700, 500, 400, 200};
  memcpy(c->engine.step_list, steps, sizeof steps);
  c->engine.n_step_list = 4;
  c->engine.shift = 8.0;
  c->engine.noise_scale = 0.8;
  c->engine.motion_noise = true;
  c->engine.kv_frames = 6;
  c->engine.sink_frames = 3;
  c->engine.adapt_sink = 0.2;
  c->engine.seed = 0;
  snprintf(c->engine.prompt, sizeof c->engine.prompt, "a watercolor painting");
  c->engine.prompt_blend_s = 1.0;
  c->engine.fps = 16;
  c->engine.stages = 1;
  snprintf(c->engine.launch, sizeof c->engine.launch, "spawn");
  snprintf(c->input, sizeof c->input, "test:ball");
  snprintf(c->output.codec, sizeof c->output.codec, "auto");
  c->output.bitrate_kbps = 2000;
  c->output.keyint = 16;
  snprintf(c->output.preset, sizeof c->output.preset, "ultrafast");
  c->output.gpu_frames = true;
  snprintf(c->server.host, sizeof c->server.host, "127.0.0.1");
  c->server.port = 8080;
  c->server.max_viewers = 64;
  snprintf(c->log_level, sizeof c->log_level, "info");
}

static const field *find_field(const char *key) {
  for (size_t i = 0; i < N_FIELDS; i++)
    if (!strcmp(fields[i].key, key)) return &fields[i];
  return NULL;
}

static bool is_section(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < N_FIELDS; i++)
    if (!strncmp(fields[i].key, name, n) && fields[i].key[n] == '.') return true;
  return false;
}

/* Parses one scalar per the field type into dst. where = "file:line" for messages. */
static int set_scalar(const field *f, void *dst, const char *v, const char *where, char *err,
                      size_t n) {
  char *end = NULL;
  switch (f->type) {
  case F_STR:
  case F_STRLIST: {
    size_t len = strlen(v);
    if (len >= f->size)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: value is %zu characters, at most %zu allowed",
                     where, f->key, len, f->size - 1);
    memcpy(dst, v, len + 1);
    return 0;
  }
  case F_INT:
  case F_INTLIST: {
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: expected an integer, got '%s'", where, f->key, v);
    double lo = f->type == F_INT ? f->lo : 0, hi = f->type == F_INT ? f->hi : 1000;
    if (x < lo || x > hi)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: %ld is out of range [%g, %g]", where, f->key, x,
                     lo, hi);
    *(int *)dst = (int)x;
    return 0;
  }
  case F_DBL: {
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x))
      return lg_errf(err, n, LG_EINVAL, "%s: %s: expected a number, got '%s'", where, f->key, v);
    if (x < f->lo || x > f->hi)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: %g is out of range [%g, %g]", where, f->key, x,
                     f->lo, f->hi);
    *(double *)dst = x;
    return 0;
  }
  case F_U64: {
    errno = 0;
    if (*v == '-') return lg_errf(err, n, LG_EINVAL, "%s: %s: must not be negative", where, f->key);
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: expected an unsigned integer, got '%s'", where,
                     f->key, v);
    *(unsigned long long *)dst = x;
    return 0;
  }
  case F_BOOL: {
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
      *(bool *)dst = true;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
      *(bool *)dst = false;
    else
      return lg_errf(err, n, LG_EINVAL, "%s: %s: expected true or false, got '%s'", where, f->key,
                     v);
    return 0;
  }
  }
  return LG_EINVAL;
}

/* Applies a YAML node (scalar or sequence) to a field. */
static int set_node(lg_config *c, const field *f, yaml_document_t *doc, yaml_node_t *node,
                    const char *src, char *err, size_t n) {
  char where[LG_PATH_MAX + 32];
  snprintf(where, sizeof where, "%s:%zu", src, node->start_mark.line + 1);
  uint8_t *base = (uint8_t *)c;
  if (f->type == F_INTLIST || f->type == F_STRLIST) {
    if (node->type != YAML_SEQUENCE_NODE)
      return lg_errf(err, n, LG_EINVAL, "%s: %s: expected a list like [700, 500]", where, f->key);
    int count = 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
      yaml_node_t *item = yaml_document_get_node(doc, *it);
      if (!item || item->type != YAML_SCALAR_NODE)
        return lg_errf(err, n, LG_EINVAL, "%s: %s: list items must be scalars", where, f->key);
      if (count >= (int)f->hi)
        return lg_errf(err, n, LG_EINVAL, "%s: %s: at most %d items", where, f->key, (int)f->hi);
      int rc = set_scalar(f, base + f->off + (size_t)count * f->size,
                          (const char *)item->data.scalar.value, where, err, n);
      if (rc) return rc;
      count++;
    }
    *(int *)(base + f->count_off) = count;
    return 0;
  }
  if (node->type != YAML_SCALAR_NODE)
    return lg_errf(err, n, LG_EINVAL, "%s: %s: expected a single value, not a %s", where, f->key,
                   node->type == YAML_MAPPING_NODE ? "mapping" : "list");
  return set_scalar(f, base + f->off, (const char *)node->data.scalar.value, where, err, n);
}

static int load_doc(lg_config *c, yaml_document_t *doc, const char *src, char *err, size_t n) {
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root) return 0; /* empty file: defaults */
  if (root->type != YAML_MAPPING_NODE)
    return lg_errf(err, n, LG_EINVAL, "%s:%zu: the top level must be a mapping of sections", src,
                   root->start_mark.line + 1);
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    yaml_node_t *v = yaml_document_get_node(doc, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE)
      return lg_errf(err, n, LG_EINVAL, "%s: keys must be plain names", src);
    const char *key = (const char *)k->data.scalar.value;
    const field *f = find_field(key);
    if (f) {
      int rc = set_node(c, f, doc, v, src, err, n);
      if (rc) return rc;
      continue;
    }
    if (!is_section(key))
      return lg_errf(err, n, LG_EINVAL, "%s:%zu: unknown key '%s'", src, k->start_mark.line + 1,
                     key);
    if (v->type != YAML_MAPPING_NODE)
      return lg_errf(err, n, LG_EINVAL, "%s:%zu: '%s' must be a mapping of keys", src,
                     v->start_mark.line + 1, key);
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
      yaml_node_t *k2 = yaml_document_get_node(doc, q->key);
      yaml_node_t *v2 = yaml_document_get_node(doc, q->value);
      if (!k2 || !v2 || k2->type != YAML_SCALAR_NODE)
        return lg_errf(err, n, LG_EINVAL, "%s: keys must be plain names", src);
      char full[160];
      snprintf(full, sizeof full, "%s.%s", key, (const char *)k2->data.scalar.value);
      const field *f2 = find_field(full);
      if (!f2)
        return lg_errf(err, n, LG_EINVAL, "%s:%zu: unknown key '%s'", src, k2->start_mark.line + 1,
                       full);
      int rc = set_node(c, f2, doc, v2, src, err, n);
      if (rc) return rc;
    }
  }
  return 0;
}

static int load_parser(lg_config *c, yaml_parser_t *parser, const char *src, char *err, size_t n) {
  yaml_document_t doc;
  if (!yaml_parser_load(parser, &doc)) {
    int rc = lg_errf(err, n, LG_EINVAL, "%s:%zu: YAML syntax error: %s", src,
                     parser->problem_mark.line + 1, parser->problem ? parser->problem : "?");
    return rc;
  }
  int rc = load_doc(c, &doc, src, err, n);
  yaml_document_delete(&doc);
  return rc;
}

int lg_config_load_string(lg_config *c, const char *yaml, const char *name, char *err, size_t n) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return LG_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
  int rc = load_parser(c, &parser, name ? name : "<string>", err, n);
  yaml_parser_delete(&parser);
  return rc;
}

int lg_config_load(lg_config *c, const char *path, char *err, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    lg_errf(err, n, LG_EINVAL, "%s: cannot open: %s", path, strerror(errno));
    return LG_EIO;
  }
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    fclose(f);
    return LG_ENOMEM;
  }
  yaml_parser_set_input_file(&parser, f);
  int rc = load_parser(c, &parser, path, err, n);
  yaml_parser_delete(&parser);
  fclose(f);
  if (!rc) snprintf(c->source_path, sizeof c->source_path, "%s", path);
  return rc;
}

int lg_config_set(lg_config *c, const char *assignment, char *err, size_t n) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return lg_errf(err, n, LG_EINVAL, "--set %s: expected section.key=value", assignment);
  char key[160];
  size_t klen = (size_t)(eq - assignment);
  if (klen >= sizeof key) return lg_errf(err, n, LG_EINVAL, "--set: key too long");
  memcpy(key, assignment, klen);
  key[klen] = 0;
  const field *f = find_field(key);
  if (!f) return lg_errf(err, n, LG_EINVAL, "--set: unknown key '%s'", key);
  /* Parse the value as a one-node YAML document so lists and quoting work as in files. */
  const char *val = eq + 1;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return LG_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)val, strlen(val));
  yaml_document_t doc;
  int rc;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = lg_errf(err, n, LG_EINVAL, "--set %s: cannot parse value: %s", key,
                 parser.problem ? parser.problem : "?");
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
      /* Empty value: an empty string or list. */
      if (f->type == F_STR) {
        ((char *)c)[f->off] = 0;
        rc = 0;
      } else if (f->type == F_STRLIST || f->type == F_INTLIST) {
        *(int *)((uint8_t *)c + f->count_off) = 0;
        rc = 0;
      } else {
        rc = lg_errf(err, n, LG_EINVAL, "--set %s: empty value", key);
      }
    } else {
      rc = set_node(c, f, &doc, root, "--set", err, n);
    }
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  return rc;
}

static bool one_of(const char *v, const char *const *opts) {
  for (; *opts; opts++)
    if (!strcmp(v, *opts)) return true;
  return false;
}

int lg_config_validate(const lg_config *c, char *err, size_t n) {
  const lg_engine_config *e = &c->engine;
  if (e->width % 16 || e->height % 16)
    return lg_errf(err, n, LG_EINVAL,
                   "engine.width and engine.height must be multiples of 16 (got %dx%d)", e->width,
                   e->height);
  if (!one_of(e->mode, (const char *const[]){"v2v", "t2v", NULL}))
    return lg_errf(err, n, LG_EINVAL, "engine.mode must be v2v or t2v (got '%s')", e->mode);
  if (strcmp(e->backend, "auto") && strcmp(e->backend, "cpu") && strncmp(e->backend, "cuda", 4))
    return lg_errf(err, n, LG_EINVAL, "engine.backend must be auto, cpu, cuda or cuda:N (got '%s')",
                   e->backend);
  if (e->n_step_list < e->steps)
    return lg_errf(err, n, LG_EINVAL, "engine.step_list has %d entries but engine.steps is %d",
                   e->n_step_list, e->steps);
  for (int i = 1; i < e->n_step_list; i++)
    if (e->step_list[i] >= e->step_list[i - 1])
      return lg_errf(err, n, LG_EINVAL, "engine.step_list must be decreasing");
  if (e->sink_frames >= e->kv_frames)
    return lg_errf(err, n, LG_EINVAL,
                   "engine.sink_frames (%d) must be less than engine.kv_frames (%d)",
                   e->sink_frames, e->kv_frames);
  if (e->stages > 1 && e->n_gpus > 0)
    return lg_errf(err, n, LG_EINVAL,
                   "engine.stages and engine.gpus exclude each other (engine.gpus runs one stage "
                   "per GPU)");
  bool piped = e->stages > 1 || e->n_gpus > 1;
  if (piped && !strcmp(e->mode, "t2v"))
    return lg_errf(err, n, LG_EINVAL,
                   "the pipelined DiT (engine.stages > 1, engine.gpus) runs v2v only, not t2v");
  for (int i = 0; i < e->n_gpus; i++) {
    if (e->gpus[i] > 63)
      return lg_errf(err, n, LG_EINVAL, "engine.gpus: GPU %d out of range [0, 63]", e->gpus[i]);
    for (int j = 0; j < i; j++)
      if (e->gpus[j] == e->gpus[i])
        return lg_errf(err, n, LG_EINVAL,
                       "engine.gpus lists GPU %d twice (one rank per GPU: NCCL cannot run two "
                       "ranks on one device)",
                       e->gpus[i]);
  }
  if (e->n_gpus > 0 && !strcmp(e->backend, "cpu"))
    return lg_errf(err, n, LG_EINVAL,
                   "engine.gpus needs the CUDA backend (engine.backend auto or cuda, not cpu)");
  if (!one_of(e->launch, (const char *const[]){"spawn", "external", NULL}))
    return lg_errf(err, n, LG_EINVAL, "engine.launch must be spawn or external (got '%s')",
                   e->launch);
  if (!one_of(c->model.context_weights, (const char *const[]){"device", "host", NULL}))
    return lg_errf(err, n, LG_EINVAL, "model.context_weights must be device or host (got '%s')",
                   c->model.context_weights);
  if (!one_of(c->model.decoder, (const char *const[]){"wan-vae", "taehv", NULL}))
    return lg_errf(err, n, LG_EINVAL, "model.decoder must be wan-vae or taehv (got '%s')",
                   c->model.decoder);
  if (!c->model.dit[0]) return lg_errf(err, n, LG_EINVAL, "model.dit is required");
  if (!c->model.vae[0] && !strcmp(e->mode, "v2v"))
    return lg_errf(err, n, LG_EINVAL, "model.vae is required for v2v");
  if (!one_of(c->output.codec, (const char *const[]){"auto", "libx264", "h264_nvenc", NULL}))
    return lg_errf(err, n, LG_EINVAL, "output.codec must be auto, libx264 or h264_nvenc (got '%s')",
                   c->output.codec);
  if (!one_of(c->log_level, (const char *const[]){"error", "warn", "info", "debug", NULL}))
    return lg_errf(err, n, LG_EINVAL, "log.level must be error, warn, info or debug (got '%s')",
                   c->log_level);
  if (!c->input[0])
    return lg_errf(err, n, LG_EINVAL, "input is required (use none for text-to-video)");
  if (!strcmp(e->mode, "v2v") && !strcmp(c->input, "none"))
    return lg_errf(err, n, LG_EINVAL, "input none needs engine.mode t2v");
  for (int i = 0; i < c->server.n_ice_servers; i++)
    if (strncmp(c->server.ice_servers[i], "stun:", 5) &&
        strncmp(c->server.ice_servers[i], "turn:", 5) &&
        strncmp(c->server.ice_servers[i], "turns:", 6))
      return lg_errf(err, n, LG_EINVAL,
                     "server.ice_servers[%d] must start with stun:, turn: or turns:", i);
  return 0;
}

/* YAML double-quoted scalar. */
static void put_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\x%02x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

int lg_config_print(const lg_config *c, FILE *f) {
  const uint8_t *base = (const uint8_t *)c;
  char section[32] = "";
  for (size_t i = 0; i < N_FIELDS; i++) {
    const field *fd = &fields[i];
    const char *dot = strchr(fd->key, '.');
    const char *name = fd->key;
    if (dot) {
      size_t sl = (size_t)(dot - fd->key);
      if (strlen(section) != sl || strncmp(section, fd->key, sl)) {
        snprintf(section, sizeof section, "%.*s", (int)sl, fd->key);
        fprintf(f, "%s:\n", section);
      }
      name = dot + 1;
      fputs("  ", f);
    } else {
      section[0] = 0;
    }
    fprintf(f, "%s: ", name);
    const void *p = base + fd->off;
    switch (fd->type) {
    case F_STR: put_str(f, (const char *)p); break;
    case F_INT: fprintf(f, "%d", *(const int *)p); break;
    case F_DBL: fprintf(f, "%.15g", *(const double *)p); break;
    case F_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
    case F_U64: fprintf(f, "%llu", *(const unsigned long long *)p); break;
    case F_INTLIST:
    case F_STRLIST: {
      int cnt = *(const int *)(base + fd->count_off);
      fputc('[', f);
      for (int k = 0; k < cnt; k++) {
        if (k) fputs(", ", f);
        if (fd->type == F_INTLIST)
          fprintf(f, "%d", ((const int *)p)[k]);
        else
          put_str(f, (const char *)p + (size_t)k * fd->size);
      }
      fputc(']', f);
      break;
    }
    }
    fprintf(f, "  # %s\n", fd->help);
  }
  return ferror(f) ? LG_EIO : 0;
}

/* `--gpus 0,1,2` -> "engine.gpus=[0,1,2]" (GPU numbers only; duplicates are refused by
 * validation). */
static int gpus_assignment(const char *v, char *out, size_t outn, char *err, size_t n) {
  size_t o = (size_t)snprintf(out, outn, "engine.gpus=[");
  const char *p = v;
  int count = 0;
  for (;;) {
    const char *q = p;
    while (*q >= '0' && *q <= '9')
      q++;
    if (q == p || q - p > 2 || (*q && *q != ',') || ++count > LG_MAX_GPUS)
      return lg_errf(err, n, LG_EINVAL,
                     "--gpus %s: expected 1 to %d GPU numbers separated by commas, like 0,1,2,3", v,
                     LG_MAX_GPUS);
    if (o + (size_t)(q - p) + 3 >= outn) return lg_errf(err, n, LG_EINVAL, "--gpus: too long");
    o += (size_t)snprintf(out + o, outn - o, "%s%.*s", count > 1 ? "," : "", (int)(q - p), p);
    if (!*q) break;
    p = q + 1;
  }
  snprintf(out + o, outn - o, "]");
  return 0;
}

int lg_config_from_args(lg_config *c, int *argc, char **argv, char *err, size_t n) {
  lg_config_defaults(c);
  const char *sets[64];
  char gpus[96] = "";
  int n_sets = 0, out = 1;
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    bool is_cfg = false, is_set = false;
    if (!strcmp(a, "--gpus") || !strncmp(a, "--gpus=", 7)) {
      if (a[6] != '=' && i + 1 >= *argc) return lg_errf(err, n, LG_EINVAL, "--gpus needs a value");
      const char *v = a[6] == '=' ? a + 7 : argv[++i];
      int rc = gpus_assignment(v, gpus, sizeof gpus, err, n);
      if (rc) return rc;
      continue;
    }
    if (!strcmp(a, "--config") || !strcmp(a, "--set")) {
      if (i + 1 >= *argc) return lg_errf(err, n, LG_EINVAL, "%s needs a value", a);
      is_cfg = a[2] == 'c';
      is_set = !is_cfg;
      val = argv[++i];
    } else if (!strncmp(a, "--config=", 9)) {
      is_cfg = true;
      val = a + 9;
    } else if (!strncmp(a, "--set=", 6)) {
      is_set = true;
      val = a + 6;
    }
    if (is_cfg) {
      int rc = lg_config_load(c, val, err, n);
      if (rc) return rc;
    } else if (is_set) {
      if (n_sets >= 64) return lg_errf(err, n, LG_EINVAL, "too many --set options (64 at most)");
      sets[n_sets++] = val;
    } else {
      argv[out++] = argv[i];
    }
  }
  for (int i = 0; i < n_sets; i++) {
    int rc = lg_config_set(c, sets[i], err, n);
    if (rc) return rc;
  }
  if (gpus[0]) { /* --gpus wins over the file and --set */
    int rc = lg_config_set(c, gpus, err, n);
    if (rc) return rc;
  }
  *argc = out;
  argv[out] = NULL;
  return lg_config_validate(c, err, n);
}
