/* test_checkpoint.c: the checkpoint readers and writer on files the test writes itself:
 * safetensors roundtrip (dtypes, name order, alignment, streaming writer), sharded index,
 * name mapping (MODELS.md 1), malformed files (truncated, corrupted, huge lengths, offsets
 * past EOF), PyTorch zip pickles assembled byte by byte, and the model spec sizes
 * (MODELS.md: 825 / 1,418,996,800 for the 1.3B DiT, the VAE tensor list). Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "model_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", g_dir, name);
}

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_ckpt_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
  if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *n = (size_t)sz;
  return p;
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

/* Opens path expecting failure; returns the message. */
static void expect_open_fails(const char *path, const char *needle) {
  char err[512] = "";
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (c) {
    lg_ckpt_free(&c);
    fail_msg("%s opened but should have failed (%s)", path, needle ? needle : "");
  }
  assert_true(err[0] != '\0');
  if (needle && !strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
}

/* ---- safetensors ---- */

static float g_a[6] = {1, -2, 3.5f, 4, 5, 6};
static uint16_t g_b[4];
static uint16_t g_h[3];
static float g_s = 42.0f;

static void write_sample(const char *path) {
  for (int i = 0; i < 4; i++)
    g_b[i] = lg_f32_to_bf16((float)i - 1.5f);
  for (int i = 0; i < 3; i++)
    g_h[i] = lg_f32_to_f16((float)i * 0.25f);
  int64_t sa[2] = {2, 3}, sb[1] = {4}, sh[3] = {1, 3, 1}, se[2] = {0, 7};
  lg_tensor t[5] = {
      lg_tensor_make(NULL, g_a, LG_F32, 2, sa), lg_tensor_make(NULL, g_b, LG_BF16, 1, sb),
      lg_tensor_make(NULL, g_h, LG_F16, 3, sh), lg_tensor_make(NULL, &g_s, LG_F32, 0, NULL),
      lg_tensor_make(NULL, g_a, LG_F32, 2, se),
  };
  const char *names[5] = {"zeta.weight", "alpha.b", "mid.h", "scalar", "empty"};
  const char *meta[2] = {"format", "pt"};
  assert_int_equal(lg_safetensors_write(path, names, t, 5, meta, 1), 0);
}

static void test_st_roundtrip(void **state) {
  (void)state;
  char path[300];
  path_in(path, sizeof path, "rt.safetensors");
  write_sample(path);

  /* layout: header length multiple of 8, names in order, metadata present */
  size_t n;
  uint8_t *raw = read_file(path, &n);
  assert_non_null(raw);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = (hl << 8) | raw[i];
  assert_int_equal(hl % 8, 0);
  assert_true(8 + hl + 24 + 8 + 6 + 4 <= n);
  char *hdr = strndup((char *)raw + 8, hl);
  const char *pa = strstr(hdr, "\"alpha.b\""), *pe = strstr(hdr, "\"empty\""),
             *pm = strstr(hdr, "\"mid.h\""), *ps = strstr(hdr, "\"scalar\""),
             *pz = strstr(hdr, "\"zeta.weight\"");
  assert_true(pa && pe && pm && ps && pz);
  assert_true(pa < pe && pe < pm && pm < ps && ps < pz);
  assert_non_null(strstr(hdr, "__metadata__"));
  free(hdr);
  free(raw);

  char err[256];
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  assert_string_equal(lg_ckpt_format(c), "safetensors");
  assert_int_equal(lg_ckpt_count(c), 5);
  const lg_ckpt_tensor *a = lg_ckpt_find(c, "zeta.weight");
  assert_non_null(a);
  assert_int_equal(a->dtype, LG_F32);
  assert_int_equal(a->ndim, 2);
  assert_int_equal(a->shape[0], 2);
  assert_int_equal(a->shape[1], 3);
  assert_int_equal(a->nbytes, 24);
  assert_memory_equal(a->data, g_a, 24);
  assert_int_equal((uintptr_t)a->data % 4, 0);
  const lg_ckpt_tensor *b = lg_ckpt_find(c, "alpha.b");
  assert_non_null(b);
  assert_int_equal(b->dtype, LG_BF16);
  assert_memory_equal(b->data, g_b, 8);
  assert_true(lg_bf16_to_f32(((const uint16_t *)b->data)[0]) == -1.5f);
  const lg_ckpt_tensor *h = lg_ckpt_find(c, "mid.h");
  assert_non_null(h);
  assert_int_equal(h->dtype, LG_F16);
  assert_int_equal(h->ndim, 3);
  assert_true(lg_f16_to_f32(((const uint16_t *)h->data)[2]) == 0.5f);
  const lg_ckpt_tensor *s = lg_ckpt_find(c, "scalar");
  assert_non_null(s);
  assert_int_equal(s->ndim, 0);
  assert_true(*(const float *)s->data == 42.0f);
  const lg_ckpt_tensor *e = lg_ckpt_find(c, "empty");
  assert_non_null(e);
  assert_int_equal(e->nbytes, 0);
  assert_int_equal(e->shape[1], 7);
  assert_null(lg_ckpt_find(c, "nope"));
  lg_tensor ht = lg_ckpt_host_tensor(a);
  assert_int_equal(lg_tensor_numel(&ht), 6);
  assert_ptr_equal(ht.data, a->data);
  lg_ckpt_free(&c);
  assert_null(c);
}

/* Tensors owned by a backend are downloaded by the writer. */
static void test_st_write_backend(void **state) {
  (void)state;
  char path[300], err[256];
  path_in(path, sizeof path, "backend.safetensors");
  lg_backend *be = lg_backend_new_cpu(1);
  assert_non_null(be);
  int64_t s[2] = {2, 3};
  lg_tensor t;
  assert_int_equal(lg_tensor_alloc(be, &t, LG_F32, 2, s), 0);
  float host[6] = {1, 2, 3, 4, 5, -6};
  assert_int_equal(lg_tensor_upload(&t, host), 0);
  const char *names[1] = {"on_backend"};
  assert_int_equal(lg_safetensors_write(path, names, &t, 1, NULL, 0), 0);
  lg_tensor_free(&t);
  lg_backend_free(&be);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  const lg_ckpt_tensor *r = lg_ckpt_find(c, "on_backend");
  assert_non_null(r);
  assert_memory_equal(r->data, host, sizeof host);
  lg_ckpt_free(&c);
}

typedef struct fill_ctx {
  int calls;
  int last;
} fill_ctx;

static int fill_ramp(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  fill_ctx *fc = user;
  assert_int_equal(offset, 0);
  fc->calls++;
  fc->last = i;
  float *f = buf;
  for (size_t k = 0; k < nbytes / 4; k++)
    f[k] = (float)(i * 1000 + (int)k);
  return 0;
}

static int fill_fail(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  (void)user, (void)i, (void)offset, (void)buf, (void)nbytes;
  return LG_EIO;
}

static void test_st_write_fill(void **state) {
  (void)state;
  char path[300];
  path_in(path, sizeof path, "fill.safetensors");
  int64_t s0[1] = {5}, s1[2] = {3, 3};
  lg_tensor t[2] = {lg_tensor_make(NULL, NULL, LG_F32, 1, s0),
                    lg_tensor_make(NULL, NULL, LG_F32, 2, s1)};
  const char *names[2] = {"b", "a"};
  fill_ctx fc = {0, -1};
  assert_int_equal(lg_safetensors_write_fill(path, names, t, 2, NULL, 0, fill_ramp, &fc), 0);
  assert_int_equal(fc.calls, 2);
  assert_int_equal(fc.last, 0); /* "b" (index 0) comes last in name order */
  char err[256];
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  const lg_ckpt_tensor *b = lg_ckpt_find(c, "b");
  const lg_ckpt_tensor *a = lg_ckpt_find(c, "a");
  assert_true(a && b);
  assert_true(((const float *)b->data)[4] == 4.0f);
  assert_true(((const float *)a->data)[8] == 1008.0f);
  lg_ckpt_free(&c);

  /* a failing fill leaves no file behind and reports the error */
  char p2[300];
  path_in(p2, sizeof p2, "fillfail.safetensors");
  assert_int_equal(lg_safetensors_write_fill(p2, names, t, 2, NULL, 0, fill_fail, NULL), LG_EIO);
  assert_int_equal(access(p2, F_OK), -1);
  /* duplicate names are refused */
  const char *dup[2] = {"a", "a"};
  assert_int_equal(lg_safetensors_write_fill(p2, dup, t, 2, NULL, 0, fill_ramp, &fc), LG_EINVAL);
}

typedef struct chunk_ctx {
  size_t next; /* expected next offset */
  int chunks;
} chunk_ctx;

static int fill_index(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  chunk_ctx *cc = user;
  (void)i;
  assert_int_equal(offset, cc->next);
  assert_int_equal(nbytes % 4, 0);
  cc->next += nbytes;
  cc->chunks++;
  uint32_t *u = buf;
  for (size_t k = 0; k < nbytes / 4; k++)
    u[k] = (uint32_t)(offset / 4 + k);
  return 0;
}

/* A tensor larger than one fill chunk (64 MiB) arrives in consecutive chunks. */
static void test_st_write_chunks(void **state) {
  (void)state;
  char path[300], err[256];
  path_in(path, sizeof path, "chunks.safetensors");
  int64_t s[2] = {17, 1 << 20}; /* 68 MiB of f32 */
  lg_tensor t = lg_tensor_make(NULL, NULL, LG_F32, 2, s);
  const char *names[1] = {"big"};
  chunk_ctx cc = {0, 0};
  assert_int_equal(lg_safetensors_write_fill(path, names, &t, 1, NULL, 0, fill_index, &cc), 0);
  assert_int_equal(cc.chunks, 2);
  assert_int_equal(cc.next, (size_t)17 << 22);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  const lg_ckpt_tensor *b = lg_ckpt_find(c, "big");
  assert_non_null(b);
  const uint32_t *u = b->data;
  for (size_t k = 0; k < ((size_t)17 << 20); k += 4099)
    assert_int_equal(u[k], k);
  assert_int_equal(u[((size_t)17 << 20) - 1], ((size_t)17 << 20) - 1);
  lg_ckpt_free(&c);
  unlink(path);
}

/* Writes a safetensors file with a literal header and data section. */
static void write_raw_st(const char *path, const char *json, const void *data, size_t dn,
                         uint64_t forced_len) {
  size_t jl = strlen(json);
  uint64_t hl = forced_len ? forced_len : jl;
  uint8_t *buf = malloc(8 + jl + dn + 1);
  for (int i = 0; i < 8; i++)
    buf[i] = (uint8_t)(hl >> (8 * i));
  memcpy(buf + 8, json, jl);
  if (dn) memcpy(buf + 8 + jl, data, dn);
  write_file(path, buf, 8 + jl + dn);
  free(buf);
}

static void test_st_malformed(void **state) {
  (void)state;
  char path[300];
  path_in(path, sizeof path, "bad.safetensors");
  float d[4] = {1, 2, 3, 4};
  const char *ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  write_raw_st(path, ok, d, 16, 0);
  char err[256];
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("the well-formed control file failed: %s", err);
  lg_ckpt_free(&c);

  write_raw_st(path, ok, d, 16, 1ull << 62);
  expect_open_fails(path, "header length");
  write_raw_st(path, ok, d, 16, 0xffffffffffffffffull);
  expect_open_fails(path, "header length");
  write_raw_st(path, ok, d, 12, 0); /* data truncated: offsets past EOF */
  expect_open_fails(path, "data_offsets");
  write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", d, 16,
               0);
  expect_open_fails(path, "shape x dtype");
  write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,4]}}", d, 16,
               0);
  expect_open_fails(path, "data_offsets");
  write_raw_st(path,
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,16]}}",
               d, 16, 0);
  expect_open_fails(path, "shape");
  write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,16]}}", d, 16,
               0);
  expect_open_fails(path, "shape");
  write_raw_st(path, "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", d, 16,
               0);
  expect_open_fails(path, "'ids' has dtype I64");
  write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", d, 16, 0);
  expect_open_fails(path, "data_offsets");
  write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", d, 16,
               0);
  expect_open_fails(path, "JSON");
  write_raw_st(path, "[1,2]   ", d, 0, 0);
  expect_open_fails(path, NULL);
  write_raw_st(path,
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               d, 16, 0);
  expect_open_fails(path, NULL);
  /* a header of 123 bytes makes the first byte '{' (0x7b), like a JSON index */
  char j123[124];
  snprintf(j123, sizeof j123, "%-123s",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}");
  assert_int_equal(strlen(j123), 123);
  write_raw_st(path, j123, d, 16, 0);
  c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("safetensors with a '{' length byte: %s", err);
  assert_string_equal(lg_ckpt_format(c), "safetensors");
  lg_ckpt_free(&c);
  write_file(path, "{\0\0\0\0\0\0\0{\"x\"", 12); /* truncated: length 123, 4 bytes */
  expect_open_fails(path, "header length");
  write_file(path, "", 0);
  expect_open_fails(path, "unknown checkpoint format");
  path_in(path, sizeof path, "does-not-exist.safetensors");
  expect_open_fails(path, "does-not-exist");

  /* every prefix of a valid file, and every single-byte corruption of its header, either
   * opens with in-bounds tensors or fails cleanly */
  char good[300];
  path_in(good, sizeof good, "good.safetensors");
  write_sample(good);
  size_t n;
  uint8_t *raw = read_file(good, &n);
  assert_non_null(raw);
  path_in(path, sizeof path, "cut.safetensors");
  for (size_t cut = 0; cut < n; cut++) {
    write_file(path, raw, cut);
    expect_open_fails(path, NULL);
  }
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = (hl << 8) | raw[i];
  for (size_t pos = 0; pos < 8 + hl; pos += 3) {
    uint8_t old = raw[pos];
    raw[pos] ^= (uint8_t)(0x5a + pos);
    write_file(path, raw, n);
    c = lg_ckpt_open(path, err, sizeof err);
    if (c) {
      for (int i = 0; i < lg_ckpt_count(c); i++) {
        const lg_ckpt_tensor *t = lg_ckpt_at(c, i);
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < t->nbytes; k++)
          sink ^= ((const uint8_t *)t->data)[k];
        (void)sink;
      }
      lg_ckpt_free(&c);
    } else {
      assert_true(err[0] != '\0');
    }
    raw[pos] = old;
  }
  free(raw);
}

static void test_st_sharded(void **state) {
  (void)state;
  char p1[300], p2[300], idx[300];
  path_in(p1, sizeof p1, "m-00001-of-00002.safetensors");
  path_in(p2, sizeof p2, "m-00002-of-00002.safetensors");
  path_in(idx, sizeof idx, "m.safetensors.index.json");
  float a[2] = {1, 2}, b[3] = {3, 4, 5};
  int64_t sa[1] = {2}, sb[1] = {3};
  lg_tensor ta = lg_tensor_make(NULL, a, LG_F32, 1, sa);
  lg_tensor tb = lg_tensor_make(NULL, b, LG_F32, 1, sb);
  const char *na[1] = {"blocks.0.ffn.0.weight"}, *nb[1] = {"blocks.1.ffn.0.weight"};
  assert_int_equal(lg_safetensors_write(p1, na, &ta, 1, NULL, 0), 0);
  assert_int_equal(lg_safetensors_write(p2, nb, &tb, 1, NULL, 0), 0);
  const char *index = "{\"metadata\":{\"total_size\":20},\"weight_map\":{"
                      "\"blocks.0.ffn.0.weight\":\"m-00001-of-00002.safetensors\","
                      "\"blocks.1.ffn.0.weight\":\"m-00002-of-00002.safetensors\"}}";
  write_file(idx, index, strlen(index));
  char err[256];
  lg_ckpt *c = lg_ckpt_open(idx, err, sizeof err);
  if (!c) fail_msg("open index: %s", err);
  assert_string_equal(lg_ckpt_format(c), "safetensors-sharded");
  assert_int_equal(lg_ckpt_count(c), 2);
  const lg_ckpt_tensor *t = lg_ckpt_find(c, "blocks.1.ffn.0.weight");
  assert_non_null(t);
  assert_true(((const float *)t->data)[2] == 5.0f);
  lg_ckpt_free(&c);

  const char *missing = "{\"weight_map\":{\"x\":\"m-00003-of-00002.safetensors\"}}";
  write_file(idx, missing, strlen(missing));
  expect_open_fails(idx, "m-00003-of-00002.safetensors");
  const char *escape = "{\"weight_map\":{\"x\":\"../etc/passwd\"}}";
  write_file(idx, escape, strlen(escape));
  expect_open_fails(idx, "shard");
  const char *absent = "{\"weight_map\":{\"nothere\":\"m-00001-of-00002.safetensors\"}}";
  write_file(idx, absent, strlen(absent));
  expect_open_fails(idx, "nothere");
}

/* ---- name mapping ---- */

static void open_names(const char *const *names, int n, lg_ckpt **out) {
  char path[300];
  path_in(path, sizeof path, "names.safetensors");
  static float v[1] = {0};
  int64_t s[1] = {1};
  lg_tensor *t = calloc((size_t)n, sizeof *t);
  for (int i = 0; i < n; i++)
    t[i] = lg_tensor_make(NULL, v, LG_F32, 1, s);
  assert_int_equal(lg_safetensors_write(path, names, t, n, NULL, 0), 0);
  free(t);
  char err[256];
  *out = lg_ckpt_open(path, err, sizeof err);
  if (!*out) fail_msg("open: %s", err);
}

static void test_name_strip(void **state) {
  (void)state;
  const char *names[] = {
      "model._fsdp_wrapped_module.blocks.0.self_attn.q.weight",
      "model.head.head.bias",
      "_fsdp_wrapped_module.patch_embedding.weight",
      "blocks.1._fsdp_wrapped_module.norm3.weight",
      "blocks.2.norm2.weight", /* not diffusers: norm2 stays */
  };
  lg_ckpt *c;
  open_names(names, 5, &c);
  assert_non_null(lg_ckpt_find(c, "blocks.0.self_attn.q.weight"));
  assert_non_null(lg_ckpt_find(c, "head.head.bias"));
  assert_non_null(lg_ckpt_find(c, "patch_embedding.weight"));
  assert_non_null(lg_ckpt_find(c, "blocks.1.norm3.weight"));
  assert_non_null(lg_ckpt_find(c, "blocks.2.norm2.weight"));
  lg_ckpt_free(&c);

  /* two names that collide after mapping are an error */
  const char *dup[] = {"model.x.weight", "x.weight"};
  char path[300];
  path_in(path, sizeof path, "dup.safetensors");
  float v[1] = {0};
  int64_t s[1] = {1};
  lg_tensor t[2] = {lg_tensor_make(NULL, v, LG_F32, 1, s), lg_tensor_make(NULL, v, LG_F32, 1, s)};
  assert_int_equal(lg_safetensors_write(path, dup, t, 2, NULL, 0), 0);
  expect_open_fails(path, "duplicate");
}

static void test_name_diffusers(void **state) {
  (void)state;
  static const char *pairs[][2] = {
      {"condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight"},
      {"condition_embedder.time_embedder.linear_2.bias", "time_embedding.2.bias"},
      {"condition_embedder.time_proj.weight", "time_projection.1.weight"},
      {"condition_embedder.text_embedder.linear_1.weight", "text_embedding.0.weight"},
      {"condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias"},
      {"blocks.3.attn1.to_q.weight", "blocks.3.self_attn.q.weight"},
      {"blocks.3.attn1.to_k.bias", "blocks.3.self_attn.k.bias"},
      {"blocks.3.attn1.to_v.weight", "blocks.3.self_attn.v.weight"},
      {"blocks.3.attn1.to_out.0.weight", "blocks.3.self_attn.o.weight"},
      {"blocks.3.attn1.norm_q.weight", "blocks.3.self_attn.norm_q.weight"},
      {"blocks.3.attn1.norm_k.weight", "blocks.3.self_attn.norm_k.weight"},
      {"blocks.12.attn2.to_q.weight", "blocks.12.cross_attn.q.weight"},
      {"blocks.12.attn2.to_out.0.bias", "blocks.12.cross_attn.o.bias"},
      {"blocks.12.attn2.norm_k.weight", "blocks.12.cross_attn.norm_k.weight"},
      {"blocks.0.ffn.net.0.proj.weight", "blocks.0.ffn.0.weight"},
      {"blocks.0.ffn.net.2.bias", "blocks.0.ffn.2.bias"},
      {"blocks.0.scale_shift_table", "blocks.0.modulation"},
      {"blocks.0.norm2.weight", "blocks.0.norm3.weight"},
      {"blocks.0.norm2.bias", "blocks.0.norm3.bias"},
      {"scale_shift_table", "head.modulation"},
      {"proj_out.weight", "head.head.weight"},
      {"model.patch_embedding.bias", "patch_embedding.bias"},
  };
  int n = (int)(sizeof pairs / sizeof pairs[0]);
  const char *names[32];
  for (int i = 0; i < n; i++)
    names[i] = pairs[i][0];
  lg_ckpt *c;
  open_names(names, n, &c);
  assert_int_equal(lg_ckpt_count(c), n);
  for (int i = 0; i < n; i++)
    if (!lg_ckpt_find(c, pairs[i][1]))
      fail_msg("%s was not mapped to %s", pairs[i][0], pairs[i][1]);
  lg_ckpt_free(&c);
}

/* ---- PyTorch zip pickles, assembled byte by byte ---- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void b_put(buf *b, const void *p, size_t n) {
  if (!n) return;
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}
static void b_u8(buf *b, unsigned v) {
  uint8_t x = (uint8_t)v;
  b_put(b, &x, 1);
}
static void b_le(buf *b, uint64_t v, int k) {
  for (int i = 0; i < k; i++)
    b_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}
static void b_str(buf *b, const char *s) {
  b_put(b, s, strlen(s));
}

/* pickle emitters (protocol 2, as torch.save writes) */
static void pk_unicode(buf *b, const char *s) {
  b_u8(b, 'X');
  b_le(b, strlen(s), 4);
  b_str(b, s);
}
static void pk_int(buf *b, int v) {
  if (v >= 0 && v < 256) {
    b_u8(b, 'K');
    b_u8(b, (unsigned)v);
  } else {
    b_u8(b, 'J');
    b_le(b, (uint32_t)v, 4);
  }
}
static void pk_global(buf *b, const char *mod, const char *name) {
  b_u8(b, 'c');
  b_str(b, mod);
  b_u8(b, '\n');
  b_str(b, name);
  b_u8(b, '\n');
}
static void pk_ordered_dict(buf *b) {
  pk_global(b, "collections", "OrderedDict");
  b_u8(b, ')');
  b_u8(b, 'R');
}
static void pk_tuple_ints(buf *b, int n, const int *v) {
  b_u8(b, '(');
  for (int i = 0; i < n; i++)
    pk_int(b, v[i]);
  b_u8(b, 't');
}
/* _rebuild_tensor_v2(storage(key, cls, numel), offset, size, stride, False, OrderedDict());
 * a storage key seen before is fetched from memo slot 100+key. */
static void pk_tensor(buf *b, const char *cls, int key, int numel, int offset, int ndim,
                      const int *size, const int *stride, bool *seen) {
  pk_global(b, "torch._utils", "_rebuild_tensor_v2");
  b_u8(b, '(');
  if (seen && seen[key]) {
    b_u8(b, 'h');
    b_u8(b, (unsigned)(100 + key));
  } else {
    char k[16];
    snprintf(k, sizeof k, "%d", key);
    b_u8(b, '(');
    pk_unicode(b, "storage");
    pk_global(b, "torch", cls);
    pk_unicode(b, k);
    pk_unicode(b, "cpu");
    pk_int(b, numel);
    b_u8(b, 't');
    b_u8(b, 'Q');
    b_u8(b, 'q');
    b_u8(b, (unsigned)(100 + key));
    if (seen) seen[key] = true;
  }
  pk_int(b, offset);
  pk_tuple_ints(b, ndim, size);
  pk_tuple_ints(b, ndim, stride);
  b_u8(b, 0x89);
  pk_ordered_dict(b);
  b_u8(b, 't');
  b_u8(b, 'R');
}

typedef struct zentry {
  const char *name;
  const void *data;
  size_t n;
  int method;
} zentry;

static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

/* A zip with the given entries; zip64 writes ZIP64 extra fields and end records. */
static void write_zip(const char *path, const zentry *e, int n, bool zip64) {
  buf b = {0}, cd = {0};
  for (int i = 0; i < n; i++) {
    uint64_t off = b.n;
    uint32_t crc = crc32_of(e[i].data, e[i].n);
    size_t nl = strlen(e[i].name);
    b_le(&b, 0x04034b50, 4);
    b_le(&b, 20, 2);
    b_le(&b, 0, 2);
    b_le(&b, (uint64_t)e[i].method, 2);
    b_le(&b, 0, 4);
    b_le(&b, crc, 4);
    b_le(&b, e[i].n, 4);
    b_le(&b, e[i].n, 4);
    b_le(&b, nl, 2);
    /* pad the data to 64 bytes like torch does, with an unknown extra field */
    size_t at = b.n + 2 + nl + 4;
    size_t pad = (64 - at % 64) % 64;
    b_le(&b, 4 + pad, 2);
    b_str(&b, e[i].name);
    b_le(&b, 0x4246, 2);
    b_le(&b, pad, 2);
    for (size_t k = 0; k < pad; k++)
      b_u8(&b, 'Z');
    b_put(&b, e[i].data, e[i].n);
    b_le(&cd, 0x02014b50, 4);
    b_le(&cd, 45, 2);
    b_le(&cd, 45, 2);
    b_le(&cd, 0, 2);
    b_le(&cd, (uint64_t)e[i].method, 2);
    b_le(&cd, 0, 4);
    b_le(&cd, crc, 4);
    b_le(&cd, zip64 ? 0xffffffffu : e[i].n, 4);
    b_le(&cd, zip64 ? 0xffffffffu : e[i].n, 4);
    b_le(&cd, nl, 2);
    b_le(&cd, zip64 ? 28 : 0, 2);
    b_le(&cd, 0, 2);
    b_le(&cd, 0, 2);
    b_le(&cd, 0, 2);
    b_le(&cd, 0, 4);
    b_le(&cd, zip64 ? 0xffffffffu : off, 4);
    b_str(&cd, e[i].name);
    if (zip64) {
      b_le(&cd, 1, 2);
      b_le(&cd, 24, 2);
      b_le(&cd, e[i].n, 8);
      b_le(&cd, e[i].n, 8);
      b_le(&cd, off, 8);
    }
  }
  uint64_t cd_off = b.n, cd_n = cd.n;
  b_put(&b, cd.p, cd.n);
  if (zip64) {
    uint64_t e64 = b.n;
    b_le(&b, 0x06064b50, 4);
    b_le(&b, 44, 8);
    b_le(&b, 45, 2);
    b_le(&b, 45, 2);
    b_le(&b, 0, 4);
    b_le(&b, 0, 4);
    b_le(&b, (uint64_t)n, 8);
    b_le(&b, (uint64_t)n, 8);
    b_le(&b, cd_n, 8);
    b_le(&b, cd_off, 8);
    b_le(&b, 0x07064b50, 4);
    b_le(&b, 0, 4);
    b_le(&b, e64, 8);
    b_le(&b, 1, 4);
  }
  b_le(&b, 0x06054b50, 4);
  b_le(&b, 0, 2);
  b_le(&b, 0, 2);
  b_le(&b, zip64 ? 0xffff : (uint64_t)n, 2);
  b_le(&b, zip64 ? 0xffff : (uint64_t)n, 2);
  b_le(&b, zip64 ? 0xffffffffu : cd_n, 4);
  b_le(&b, zip64 ? 0xffffffffu : cd_off, 4);
  b_le(&b, 0, 2);
  write_file(path, b.p, b.n);
  free(b.p);
  free(cd.p);
}

/* Storage 0: 12 floats 0..11 shared by "w" (a [3,4] contiguous view), "wt" (its transpose
 * [4,3], strides (1,4)) and "row" (offset 4, [4]); storage 1: bf16 [2]; storage 2: f16 [3]. */
static float g_st0[12];
static uint16_t g_st1[2], g_st2[3];

static void build_state_dict(buf *pk, const char *wrap_key, const char *prefix) {
  bool seen[8] = {0};
  char nm[128];
  b_u8(pk, 0x80);
  b_u8(pk, 2);
  if (wrap_key) {
    b_u8(pk, '}');
    b_u8(pk, 'q');
    b_u8(pk, 0);
    b_u8(pk, '(');
    /* a decoy dict that must not be picked, with its own tensor */
    pk_unicode(pk, "generator");
    pk_ordered_dict(pk);
    pk_unicode(pk, "model.decoy");
    pk_tensor(pk, "FloatStorage", 0, 12, 0, 1, (int[]){12}, (int[]){1}, seen);
    b_u8(pk, 's');
    pk_unicode(pk, "step");
    pk_int(pk, 1234);
    pk_unicode(pk, wrap_key);
  }
  pk_ordered_dict(pk);
  b_u8(pk, 'q');
  b_u8(pk, 1);
  b_u8(pk, '(');
  snprintf(nm, sizeof nm, "%sw", prefix);
  pk_unicode(pk, nm);
  pk_tensor(pk, "FloatStorage", 0, 12, 0, 2, (int[]){3, 4}, (int[]){4, 1}, seen);
  snprintf(nm, sizeof nm, "%swt", prefix);
  pk_unicode(pk, nm);
  pk_tensor(pk, "FloatStorage", 0, 12, 0, 2, (int[]){4, 3}, (int[]){1, 4}, seen);
  snprintf(nm, sizeof nm, "%srow", prefix);
  pk_unicode(pk, nm);
  /* wrapped as an nn.Parameter */
  pk_global(pk, "torch._utils", "_rebuild_parameter");
  b_u8(pk, '(');
  pk_tensor(pk, "FloatStorage", 0, 12, 4, 1, (int[]){4}, (int[]){1}, seen);
  b_u8(pk, 0x88);
  pk_ordered_dict(pk);
  b_u8(pk, 't');
  b_u8(pk, 'R');
  snprintf(nm, sizeof nm, "%sbf", prefix);
  pk_unicode(pk, nm);
  pk_tensor(pk, "BFloat16Storage", 1, 2, 0, 1, (int[]){2}, (int[]){1}, seen);
  snprintf(nm, sizeof nm, "%shalf", prefix);
  pk_unicode(pk, nm);
  pk_tensor(pk, "HalfStorage", 2, 3, 0, 2, (int[]){1, 3}, (int[]){3, 1}, seen);
  /* non-tensor values are ignored */
  pk_unicode(pk, "note");
  pk_unicode(pk, "hello");
  pk_unicode(pk, "lr");
  b_u8(pk, 'G');
  for (int i = 7; i >= 0; i--)
    b_u8(pk, (unsigned)(0x3f50624dd2f1a9fcull >> (8 * i)) & 0xff);
  b_u8(pk, 'u');
  /* state dicts carry _metadata, set through BUILD */
  b_u8(pk, '}');
  pk_unicode(pk, "_metadata");
  b_u8(pk, '}');
  b_u8(pk, 's');
  b_u8(pk, 'b');
  if (wrap_key) b_u8(pk, 'u');
  b_u8(pk, '.');
}

static void write_pt(const char *path, const buf *pk, bool zip64, int method) {
  for (int i = 0; i < 12; i++)
    g_st0[i] = (float)i;
  g_st1[0] = lg_f32_to_bf16(1.5f);
  g_st1[1] = lg_f32_to_bf16(-2.0f);
  for (int i = 0; i < 3; i++)
    g_st2[i] = lg_f32_to_f16(0.5f * (float)i);
  zentry e[6] = {
      {"archive/data.pkl", pk->p, pk->n, method}, {"archive/data/0", g_st0, sizeof g_st0, 0},
      {"archive/data/1", g_st1, sizeof g_st1, 0}, {"archive/data/2", g_st2, sizeof g_st2, 0},
      {"archive/byteorder", "little", 6, 0},      {"archive/version", "3\n", 2, 0},
  };
  write_zip(path, e, 6, zip64);
}

static void check_state_dict(const lg_ckpt *c, const char *prefix) {
  char nm[128];
  assert_string_equal(lg_ckpt_format(c), "pytorch");
  assert_int_equal(lg_ckpt_count(c), 5);
  snprintf(nm, sizeof nm, "%sw", prefix);
  const lg_ckpt_tensor *w = lg_ckpt_find(c, nm);
  assert_non_null(w);
  assert_int_equal(w->dtype, LG_F32);
  assert_int_equal(w->ndim, 2);
  assert_int_equal(w->shape[0], 3);
  assert_int_equal(w->nbytes, 48);
  assert_memory_equal(w->data, g_st0, 48);
  snprintf(nm, sizeof nm, "%swt", prefix);
  const lg_ckpt_tensor *wt = lg_ckpt_find(c, nm);
  assert_non_null(wt);
  assert_int_equal(wt->shape[0], 4);
  assert_int_equal(wt->shape[1], 3);
  const float *f = wt->data;
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++)
      assert_true(f[i * 3 + j] == (float)(j * 4 + i));
  snprintf(nm, sizeof nm, "%srow", prefix);
  const lg_ckpt_tensor *row = lg_ckpt_find(c, nm);
  assert_non_null(row);
  assert_int_equal(row->nbytes, 16);
  assert_true(((const float *)row->data)[0] == 4.0f && ((const float *)row->data)[3] == 7.0f);
  snprintf(nm, sizeof nm, "%sbf", prefix);
  const lg_ckpt_tensor *bf = lg_ckpt_find(c, nm);
  assert_non_null(bf);
  assert_int_equal(bf->dtype, LG_BF16);
  assert_true(lg_bf16_to_f32(((const uint16_t *)bf->data)[1]) == -2.0f);
  snprintf(nm, sizeof nm, "%shalf", prefix);
  const lg_ckpt_tensor *h = lg_ckpt_find(c, nm);
  assert_non_null(h);
  assert_int_equal(h->dtype, LG_F16);
  assert_int_equal(h->ndim, 2);
  assert_true(lg_f16_to_f32(((const uint16_t *)h->data)[2]) == 1.0f);
}

static void test_pt_plain(void **state) {
  (void)state;
  char path[300], err[512];
  path_in(path, sizeof path, "plain.pt");
  buf pk = {0};
  build_state_dict(&pk, NULL, "");
  write_pt(path, &pk, false, 0);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  check_state_dict(c, "");
  lg_ckpt_free(&c);

  path_in(path, sizeof path, "plain64.pt");
  write_pt(path, &pk, true, 0);
  c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open zip64: %s", err);
  check_state_dict(c, "");
  lg_ckpt_free(&c);

  path_in(path, sizeof path, "deflated.pt");
  write_pt(path, &pk, false, 8);
  expect_open_fails(path, "compressed");

  /* every truncation fails cleanly */
  size_t n;
  path_in(path, sizeof path, "plain.pt");
  uint8_t *raw = read_file(path, &n);
  assert_non_null(raw);
  path_in(path, sizeof path, "cut.pt");
  for (size_t cut = 0; cut < n; cut += 7) {
    write_file(path, raw, cut);
    expect_open_fails(path, NULL);
  }
  free(raw);

  /* every truncation of the pickle itself fails cleanly */
  for (size_t cut = 0; cut < pk.n; cut++) {
    buf t = {0};
    b_put(&t, pk.p, cut);
    write_pt(path, &t, false, 0);
    expect_open_fails(path, NULL);
    free(t.p);
  }
  free(pk.p);
}

static void test_pt_nested(void **state) {
  (void)state;
  char path[300], err[512];
  buf pk = {0};
  path_in(path, sizeof path, "nested.pt");
  build_state_dict(&pk, "generator_ema", "model._fsdp_wrapped_module.");
  write_pt(path, &pk, false, 0);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  check_state_dict(c, ""); /* generator_ema picked, prefixes stripped, decoy not loaded */
  assert_null(lg_ckpt_find(c, "decoy"));
  lg_ckpt_free(&c);
  free(pk.p);

  /* without generator_ema, generator is used */
  pk = (buf){0};
  build_state_dict(&pk, "state_dict", "model.");
  write_pt(path, &pk, false, 0);
  c = lg_ckpt_open(path, err, sizeof err);
  if (!c) fail_msg("open: %s", err);
  assert_int_equal(lg_ckpt_count(c), 1);
  assert_non_null(lg_ckpt_find(c, "decoy"));
  lg_ckpt_free(&c);
  free(pk.p);
}

/* A pickle with one tensor "t", built by fn, must fail with needle in the message. */
static void expect_pickle_fails(const char *body_tail, size_t tail_n, const char *needle) {
  char path[300];
  path_in(path, sizeof path, "evil.pt");
  buf pk = {0};
  b_u8(&pk, 0x80);
  b_u8(&pk, 2);
  b_put(&pk, body_tail, tail_n);
  write_pt(path, &pk, false, 0);
  expect_open_fails(path, needle);
  free(pk.p);
}

static void test_pt_malicious(void **state) {
  (void)state;
  /* os.system("echo pwned") */
  const char evil1[] = "cos\nsystem\nX\x0a\x00\x00\x00echo pwnedR.";
  expect_pickle_fails(evil1, sizeof evil1 - 1, "pickle: global os.system not allowed");
  const char evil2[] = "\x8c\x08"
                       "builtins"
                       "\x8c\x04"
                       "eval"
                       "\x93"
                       ")R.";
  expect_pickle_fails(evil2, sizeof evil2 - 1, "pickle: global builtins.eval not allowed");
  const char evil3[] = "ctorch\nload\n.";
  expect_pickle_fails(evil3, sizeof evil3 - 1, "global torch.load not allowed");
  /* REDUCE of an allowed but non-callable global */
  const char evil4[] = "ctorch\nfloat32\n)R.";
  expect_pickle_fails(evil4, sizeof evil4 - 1, "cannot call torch.float32");
  const char und[] = "t.";
  expect_pickle_fails(und, sizeof und - 1, "MARK");
  const char memo[] = "h\x05.";
  expect_pickle_fails(memo, sizeof memo - 1, "memo");
  const char big[] = "X\xff\xff\xff\x7f"
                     "abc";
  expect_pickle_fails(big, sizeof big - 1, "past the end");
  const char notdict[] = "]q\x00.";
  expect_pickle_fails(notdict, sizeof notdict - 1, "dict");
  const char op[] = "\xff.";
  expect_pickle_fails(op, sizeof op - 1, "opcode 0xff");

  /* tensor view past its storage; int64 tensor in the state dict */
  buf pk = {0};
  pk_ordered_dict(&pk);
  b_u8(&pk, '(');
  pk_unicode(&pk, "t");
  pk_tensor(&pk, "FloatStorage", 0, 12, 10, 1, (int[]){3}, (int[]){1}, NULL);
  b_u8(&pk, 'u');
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "outside its storage");
  pk.n = 0;
  pk_ordered_dict(&pk);
  b_u8(&pk, '(');
  pk_unicode(&pk, "steps");
  pk_tensor(&pk, "LongStorage", 0, 6, 0, 1, (int[]){6}, (int[]){1}, NULL);
  b_u8(&pk, 'u');
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "'steps' has dtype int64");
  /* storage larger than its blob (blob 0 holds 12 floats) */
  pk.n = 0;
  pk_ordered_dict(&pk);
  b_u8(&pk, '(');
  pk_unicode(&pk, "t");
  pk_tensor(&pk, "FloatStorage", 0, 1000, 0, 1, (int[]){1000}, (int[]){1}, NULL);
  b_u8(&pk, 'u');
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "blob");
  /* a storage whose blob is missing */
  pk.n = 0;
  pk_ordered_dict(&pk);
  b_u8(&pk, '(');
  pk_unicode(&pk, "t");
  pk_tensor(&pk, "FloatStorage", 7, 1, 0, 1, (int[]){1}, (int[]){1}, NULL);
  b_u8(&pk, 'u');
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "archive/data/7");

  /* a dict holding itself: refused at once (depth), not walked forever */
  pk.n = 0;
  b_u8(&pk, '}');
  b_u8(&pk, 'q');
  b_u8(&pk, 0);
  b_u8(&pk, '(');
  for (int i = 0; i < 12; i++) {
    char k[4] = {'k', (char)('a' + i), 0, 0};
    pk_unicode(&pk, k);
    b_u8(&pk, 'h');
    b_u8(&pk, 0);
  }
  b_u8(&pk, 'u');
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "nested too deeply");
  /* 8 levels of dicts, each holding the next 12 times (12^8 paths through shared dicts): the
   * walk stops at its entry budget */
  pk.n = 0;
  b_u8(&pk, '}');
  b_u8(&pk, 'q');
  b_u8(&pk, 8);
  for (int lvl = 7; lvl >= 0; lvl--) {
    b_u8(&pk, '}');
    b_u8(&pk, 'q');
    b_u8(&pk, (unsigned)lvl);
    b_u8(&pk, '(');
    for (int i = 0; i < 12; i++) {
      char k[4] = {'k', (char)('a' + i), 0, 0};
      pk_unicode(&pk, k);
      b_u8(&pk, 'h');
      b_u8(&pk, (unsigned)lvl + 1);
    }
    b_u8(&pk, 'u');
  }
  b_u8(&pk, '.');
  expect_pickle_fails((const char *)pk.p, pk.n, "dict entries");
  free(pk.p);

  /* a zip without data.pkl */
  char path[300];
  path_in(path, sizeof path, "nopkl.pt");
  zentry e[1] = {{"archive/data/0", "abcd", 4, 0}};
  write_zip(path, e, 1, false);
  expect_open_fails(path, "data.pkl");
}

/* ---- model specs ---- */

static void spec_totals(const char *arch, const char *preset, int *n, uint64_t *params) {
  lg_tensor_spec *sp;
  char err[256];
  if (lg_model_spec(arch, preset, &sp, n, err, sizeof err))
    fail_msg("%s %s: %s", arch, preset, err);
  *params = 0;
  for (int i = 0; i < *n; i++) {
    uint64_t p = 1;
    for (int d = 0; d < sp[i].ndim; d++)
      p *= (uint64_t)sp[i].shape[d];
    *params += p;
    assert_true(sp[i].std >= 0.0f && sp[i].std <= 1.0f);
    for (int j = 0; j < i; j++)
      if (strcmp(sp[i].name, sp[j].name) == 0) fail_msg("%s: duplicate %s", arch, sp[i].name);
  }
  free(sp);
}

static void test_model_spec_sizes(void **state) {
  (void)state;
  static const struct {
    const char *arch, *preset;
    int n;
    uint64_t params;
  } k[] = {
      {"wan-dit", "1.3b", 825, 1418996800ull}, {"wan-dit", "14b", 1095, 14288491584ull},
      {"wan-dit", "tiny", 69, 2227008ull},     {"wan-vae", "1.3b", 194, 126892531ull},
      {"wan-vae", "14b", 194, 126892531ull},   {"wan-vae", "tiny", 194, 924491ull},
      {"taehv", "1.3b", 64, 9844611ull},       {"taehv", "tiny", 64, 158515ull},
      {"umt5", "1.3b", 242, 5680910336ull},    {"umt5", "tiny", 22, 146496ull},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    int n;
    uint64_t p;
    spec_totals(k[i].arch, k[i].preset, &n, &p);
    if (n != k[i].n || p != k[i].params)
      fail_msg("%s %s: %d tensors / %llu params, expected %d / %llu", k[i].arch, k[i].preset, n,
               (unsigned long long)p, k[i].n, (unsigned long long)k[i].params);
  }
  lg_tensor_spec *sp;
  int n;
  char err[256];
  assert_int_equal(lg_model_spec("gpt", "tiny", &sp, &n, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "gpt"));
  assert_int_equal(lg_model_spec("wan-dit", "7b", &sp, &n, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "7b"));
}

static const lg_tensor_spec *spec_find(const lg_tensor_spec *sp, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(sp[i].name, name) == 0) return &sp[i];
  return NULL;
}

static void test_model_spec_shapes(void **state) {
  (void)state;
  lg_tensor_spec *sp;
  int n;
  char err[256];
  /* the real VAE is exactly the tensor list of MODELS.md 4 (wan21_vae_tensors.txt) */
  assert_int_equal(lg_model_spec("wan-vae", "1.3b", &sp, &n, err, sizeof err), 0);
  FILE *f = fopen(LG_SOURCE_DIR "/tests/fixtures/wan21_vae_tensors.txt", "r");
  assert_non_null(f);
  char line[256];
  int lines = 0;
  while (fgets(line, sizeof line, f)) {
    char name[160], dims[96];
    if (sscanf(line, "%159s (%95[^)])", name, dims) != 2) continue;
    const lg_tensor_spec *t = spec_find(sp, n, name);
    if (!t) fail_msg("VAE spec lacks %s", name);
    char got[96] = "";
    for (int d = 0; d < t->ndim; d++)
      snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld",
               (long long)t->shape[d]);
    if (t->ndim == 1) strcat(got, ",");
    if (strcmp(got, dims) != 0) fail_msg("%s: shape (%s), expected (%s)", name, got, dims);
    lines++;
  }
  fclose(f);
  assert_int_equal(lines, 194);
  assert_true(spec_find(sp, n, "decoder.head.0.gamma")->mean == 1.0f);
  free(sp);

  /* tiny DiT: text_embedding.0 is [256, 64], heads of 128 -> dim 256 */
  assert_int_equal(lg_model_spec("wan-dit", "tiny", &sp, &n, err, sizeof err), 0);
  const lg_tensor_spec *t = spec_find(sp, n, "text_embedding.0.weight");
  assert_non_null(t);
  assert_int_equal(t->shape[0], 256);
  assert_int_equal(t->shape[1], 64);
  t = spec_find(sp, n, "blocks.1.self_attn.norm_k.weight");
  assert_non_null(t);
  assert_true(t->mean == 1.0f && t->std == 0.0f);
  t = spec_find(sp, n, "blocks.0.ffn.2.weight");
  assert_non_null(t);
  assert_true(fabsf(t->std - 1.0f / sqrtf(512.0f)) < 1e-6f);
  assert_non_null(spec_find(sp, n, "head.modulation"));
  assert_null(spec_find(sp, n, "blocks.2.modulation"));
  free(sp);

  /* taehv: TGrow convs have no bias, MemBlock convs do */
  assert_int_equal(lg_model_spec("taehv", "1.3b", &sp, &n, err, sizeof err), 0);
  assert_non_null(spec_find(sp, n, "decoder.13.conv.weight"));
  assert_int_equal(spec_find(sp, n, "decoder.13.conv.weight")->shape[0], 256);
  assert_null(spec_find(sp, n, "decoder.13.conv.bias"));
  assert_int_equal(spec_find(sp, n, "decoder.9.conv.0.weight")->shape[1], 256);
  assert_non_null(spec_find(sp, n, "decoder.22.bias"));
  assert_null(spec_find(sp, n, "decoder.20.bias"));
  free(sp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_st_roundtrip),      cmocka_unit_test(test_st_write_fill),
      cmocka_unit_test(test_st_write_backend),  cmocka_unit_test(test_st_write_chunks),
      cmocka_unit_test(test_st_malformed),      cmocka_unit_test(test_st_sharded),
      cmocka_unit_test(test_name_strip),        cmocka_unit_test(test_name_diffusers),
      cmocka_unit_test(test_pt_plain),          cmocka_unit_test(test_pt_nested),
      cmocka_unit_test(test_pt_malicious),      cmocka_unit_test(test_model_spec_sizes),
      cmocka_unit_test(test_model_spec_shapes),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
