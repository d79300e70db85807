/* control.h: the control protocol of docs/API.md as plain C: parse and validate a control
 * JSON message (WebSocket /ws/control, POST /api/v1/params), dispatch it to the service
 * through an lg_control_ops table of callbacks, and serialise the ack / error / status
 * answers. The service (pipeline/serve.c) fills the table and never sees JSON.
 * Threads: the parse/format functions are pure (any thread); lg_ctl_handle calls the ops on
 * the caller's thread (the lws service thread), so the ops must be quick and thread-safe. */
#ifndef LG_CONTROL_H
#define LG_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_CTL_MSG_MAX (64 * 1024)          /* larger messages are refused */
#define LG_CTL_PROMPT_MAX 2048              /* bytes including the NUL (= LG_PROMPT_MAX) */
#define LG_CTL_INPUT_MAX 1024               /* bytes including the NUL (= LG_PATH_MAX) */
#define LG_CTL_ID_MAX 128                   /* bytes of a string id */
#define LG_CTL_ANSWER_MAX (32 * 1024)       /* enough for any answer (a 2047-byte prompt escaped) */
#define LG_CTL_SEED_MAX 9007199254740991ULL /* 2^53-1: exact in a JavaScript number */
#define LG_CTL_BLEND_MAX 60.0

/* Which fields of lg_ctl_params a request sets. */
enum {
  LG_CTL_HAS_PROMPT = 1 << 0,
  LG_CTL_HAS_STRENGTH = 1 << 1,
  LG_CTL_HAS_STEPS = 1 << 2,
  LG_CTL_HAS_SEED = 1 << 3,
  LG_CTL_HAS_BLEND = 1 << 4,
};

typedef struct lg_ctl_params {
  char prompt[LG_CTL_PROMPT_MAX];
  double strength; /* 0..1, the engine's noise_scale */
  int steps;       /* 1..4 */
  unsigned long long seed;
  double blend; /* seconds, 0..60 */
  bool paused;
} lg_ctl_params;

typedef enum lg_ctl_type {
  LG_CTL_PARAMS = 0,
  LG_CTL_PAUSE,
  LG_CTL_RESUME,
  LG_CTL_RESET,
  LG_CTL_INPUT,
  LG_CTL_STATUS,
} lg_ctl_type;

typedef struct lg_ctl_request {
  lg_ctl_type type;
  unsigned has; /* LG_CTL_HAS_* (type params) */
  lg_ctl_params params;
  char input[LG_CTL_INPUT_MAX];     /* type input */
  char id_json[LG_CTL_ID_MAX + 16]; /* the request's id as JSON text ("\"x\"", "5"), or "null" */
} lg_ctl_request;

/* Everything GET /api/v1/status reports (docs/API.md). Filled by the service. */
typedef struct lg_ctl_status {
  char state[16]; /* loading, warming, running, paused, error */
  lg_ctl_params params;
  char input[LG_CTL_INPUT_MAX];
  double fps_in, fps_out, latency_ms;
  uint64_t dropped, frames_in, frames_out;
  int viewers; /* the service fills viewers the server does not see (WHEP); the server adds
                  its /ws/stream viewers */
  double ttff_s;
  char gpu_name[128];
  double mem_used_mb, mem_total_mb;
  char dit[LG_CTL_INPUT_MAX];
  char decoder[32];
  int width, height;
} lg_ctl_status;

/* The service side. Every op returns 0 or LG_E* with a plain-words reason in err; called
 * on the lws thread, must not block (queue the change, apply it between chunks). */
typedef struct lg_control_ops {
  void *user;
  /* Applies the fields named by `has` (all already range-checked); fills *now with the
   * parameters after the change. */
  int (*set_params)(void *user, const lg_ctl_params *p, unsigned has, lg_ctl_params *now, char *err,
                    size_t errn);
  int (*set_paused)(void *user, bool paused, lg_ctl_params *now, char *err, size_t errn);
  int (*reset)(void *user, lg_ctl_params *now, char *err, size_t errn);
  int (*set_input)(void *user, const char *input, lg_ctl_params *now, char *err, size_t errn);
  void (*get_status)(void *user, lg_ctl_status *st);
} lg_control_ops;

/* Parses one message of len bytes (need not be NUL-terminated). default_type: the type
 * assumed when the message has no "type" (LG_CTL_PARAMS for POST /api/v1/params), or -1 to
 * require one. Returns 0, or LG_EFORMAT / LG_ERANGE with a plain-words reason in err; the id
 * is filled whenever the message was an object with a valid id, even on error. */
int lg_ctl_parse(const char *msg, size_t len, int default_type, lg_ctl_request *req, char *err,
                 size_t errn);

/* Parses, dispatches to ops and writes the one answer (ack, error or status JSON, no
 * newline, NUL-terminated) into out (LG_CTL_ANSWER_MAX bytes is always enough).
 * Returns 0 when the answer is an ack/status, LG_EFORMAT/LG_ERANGE for a bad message (answer
 * is an error), or the op's error (answer is an error). */
int lg_ctl_handle(const lg_control_ops *ops, const char *msg, size_t len, int default_type,
                  char *out, size_t outn);

/* Answer builders. Each returns the length written (without NUL) or LG_ERANGE. */
int lg_ctl_format_ack(const char *id_json, const lg_ctl_params *p, char *out, size_t outn);
int lg_ctl_format_error(const char *id_json, const char *message, char *out, size_t outn);
/* type: "status" for the WebSocket message (then id_json is added when non-NULL), NULL for
 * the bare object of GET /api/v1/status. */
int lg_ctl_format_status(const lg_ctl_status *st, const char *type, const char *id_json, char *out,
                         size_t outn);

#ifdef __cplusplus
}
#endif
#endif
