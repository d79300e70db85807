/* config.h: livegen's configuration, parsed once from YAML into these structs (defaults,
 * then the file, then --set overrides), validated, and then read-only. Each module reads its
 * own sub-struct; nothing reads globals. Strings are fixed-size so the struct can be copied
 * between threads without ownership questions.
 * Threads: parsed on the main thread before any other starts. */
#ifndef LG_CONFIG_H
#define LG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_PATH_MAX 1024
#define LG_PROMPT_MAX 2048
#define LG_MAX_STEPS 4
#define LG_MAX_ICE 4
#define LG_MAX_GPUS 8 /* ranks of the pipelined DiT (LG_STAGES_MAX in stages.h) */

typedef struct lg_model_config {
  char dit[LG_PATH_MAX];          /* Wan DiT: .safetensors, sharded *.index.json, or "tiny" */
  char dit_weights[LG_PATH_MAX];  /* optional .pt whose generator replaces the DiT weights */
  char vae[LG_PATH_MAX];          /* Wan2.1_VAE.pth or "tiny" */
  char decoder[16];               /* "wan-vae" or "taehv" */
  char context_weights[8];        /* "host" (default) or "device": where the DiT's context-only
                                     weights live (host: page-locked host memory, 287 MiB less
                                     GPU memory at 1.3B, ~7 ms more per prompt change on an
                                     H100; device: the fastest prompt changes and blends) */
  char taehv[LG_PATH_MAX];        /* taew2_1.pth/.safetensors or "tiny" (decoder: taehv) */
  char text_encoder[LG_PATH_MAX]; /* umT5 .pth, or "none" (prompt hashed into a context) */
  char tokenizer[LG_PATH_MAX];    /* spiece.model */
  char cache_dir[LG_PATH_MAX];    /* where tiny random models are generated; "" = default */
  unsigned long long seed;        /* seed of the tiny random models */
} lg_model_config;

typedef struct lg_engine_config {
  char backend[16]; /* "auto", "cpu", "cuda", "cuda:N" */
  char mode[8];     /* "v2v" or "t2v" */
  int width, height;
  int steps;                   /* 1..4 denoising steps (rows of the stream batch) */
  int step_list[LG_MAX_STEPS]; /* timesteps, first `steps` used */
  int n_step_list;
  double shift;       /* flow-matching shift (8 for v2v, 5 for Self-Forcing t2v) */
  double noise_scale; /* s0: v2v input noise scale */
  bool motion_noise;  /* motion-aware noise scale */
  int kv_frames;      /* rolling KV cache length in latent frames */
  int sink_frames;    /* sink frames kept at the front */
  double adapt_sink;  /* sink refresh threshold; negative disables */
  unsigned long long seed;
  char prompt[LG_PROMPT_MAX];
  double prompt_blend_s; /* seconds to blend to a new prompt */
  double fps;            /* output frame rate */
  int threads;           /* CPU backend threads, 0 = all cores */
  /* The DiT pipelined over stages (docs/MULTIGPU.md; v2v only). stages > 1: stages as threads
   * of this process on the one device; gpus: one process (rank) per listed GPU, NCCL between
   * them, rank 0 (this process) on gpus[0]. At most one of the two. */
  int stages;
  int balance_ticks; /* pipelined DiT: move layer boundaries to even out the stages' measured
                        times after this many full batches (0: keep the even split) */
  int gpus[LG_MAX_GPUS];
  int n_gpus;
  char launch[16];                /* "spawn": rank 0 starts the other ranks on this host;
                                     "external": mpirun/srun/`livegen rank` start them */
  char nccl_id_file[LG_PATH_MAX]; /* external: where rank 0 publishes the NCCL id */
} lg_engine_config;

typedef struct lg_output_config {
  char codec[32]; /* "auto" (h264_nvenc when present, else libx264), "libx264", "h264_nvenc" */
  int bitrate_kbps;
  int keyint;               /* frames between keyframes */
  char preset[32];          /* encoder preset */
  bool gpu_frames;          /* h264_nvenc may take the engine's frames on the GPU (serve) */
  char rtmp[LG_PATH_MAX];   /* push URL or "" */
  char record[LG_PATH_MAX]; /* fragmented MP4 path or "" */
} lg_output_config;

typedef struct lg_server_config {
  char host[256];
  int port;
  char web_root[LG_PATH_MAX]; /* static files; "" = built-in location */
  int max_viewers;
  char ice_servers[LG_MAX_ICE][512]; /* stun:/turn: URLs */
  int n_ice_servers;
} lg_server_config;

typedef struct lg_config {
  lg_model_config model;
  lg_engine_config engine;
  char input[LG_PATH_MAX]; /* test:<pattern>, file:PATH, v4l2:/dev/videoN, rtmp://, srt://,
                              rtmp-listen:[HOST:]PORT[/APP/KEY] (OBS/ffmpeg publish here),
                              whip, ws, none (t2v) */
  lg_output_config output;
  lg_server_config server;
  char log_level[16];            /* error, warn, info, debug */
  char source_path[LG_PATH_MAX]; /* the file it was read from, for messages */
} lg_config;

/* Fills c with the built-in defaults (the tiny default model, test pattern, 127.0.0.1:8080). */
void lg_config_defaults(lg_config *c);
/* Parses YAML from path over the current contents. Unknown keys, wrong types and invalid
 * values are errors naming file, line and key (written to err, n bytes). 0 or LG_E*. */
int lg_config_load(lg_config *c, const char *path, char *err, size_t n);
/* Same, from a string (name is used in messages). */
int lg_config_load_string(lg_config *c, const char *yaml, const char *name, char *err, size_t n);
/* Applies one "section.key=value" override (value parsed as YAML scalar/flow sequence). */
int lg_config_set(lg_config *c, const char *assignment, char *err, size_t n);
/* Checks ranges and combinations; 0 or LG_EINVAL with the reason in err. */
int lg_config_validate(const lg_config *c, char *err, size_t n);
/* Command-line helper for every command that takes a config: starts from the defaults, then
 * consumes `--config FILE` and `--set key=value` (each may repeat; files apply in order, sets
 * after files) and `--gpus 0,1,...` (engine.gpus, applied last), removes them from argv (argc
 * updated; argv[0] kept), and validates.
 * 0 or LG_E* with the reason in err. */
int lg_config_from_args(lg_config *c, int *argc, char **argv, char *err, size_t n);
/* Writes the effective config as YAML that lg_config_load accepts. */
int lg_config_print(const lg_config *c, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
