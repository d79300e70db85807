/* dit_runner.c: the engine's DiT loop (dit_runner.h): the single-stage stream, or stage 0 of
 * the pipelined stream with the other stages either as threads of this process (in-process
 * transport, engine.stages) or as `livegen rank` processes on other GPUs (NCCL, engine.gpus),
 * started here (engine.launch spawn) or by mpirun/srun (external). Also the ranks' session
 * loop and, for spawned ranks, a watchdog that turns a dead rank into an error instead of a
 * hang (lg_nccl_abort makes the blocked NCCL waits of this process return).
 * Threads: the runner's calls run on the engine's thread; stage threads (in-process) and the
 * watchdog thread (spawned ranks) are started and joined here. */
#include "dit_runner.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SES_MAGIC 0x4C475353u /* "LGSS" */
#define QUIT_WAIT_S 10.0      /* a rank's exit after QUIT before it is killed */

enum { SES_OPEN = 1, SES_QUIT = 2 };

/* The session header (in the LG_XFER_HDR_BYTES of a message without payload). */
typedef struct session_msg {
  uint32_t magic;
  int32_t kind;
  lg_stages_opts o;
} session_msg;
_Static_assert(sizeof(session_msg) <= LG_XFER_HDR_BYTES, "session header too large");

typedef enum { MODE_STREAM = 0, MODE_INPROC, MODE_NCCL } run_mode;

struct lg_dit_runner {
  run_mode mode;
  int n; /* stages */
  lg_wan_dit *m;
  lg_stream *st; /* MODE_STREAM */
  lg_stage *s0;  /* MODE_INPROC, MODE_NCCL */
  lg_transport *t0;
  bool broken; /* a ring operation failed: no more messages are sent */
  int chunks;
  int balance_ticks; /* engine.balance_ticks, for every session's stage 0 */
  unsigned char wire[LG_XFER_HDR_BYTES];
  /* in-process stages */
  lg_inproc_group *g;
  lg_stage_loader load;
  void *user;
  pthread_t th[LG_STAGES_MAX];
  bool started[LG_STAGES_MAX];
  int rank_arg[LG_STAGES_MAX];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready, failed;
  /* spawned ranks */
  pid_t pid[LG_STAGES_MAX];
  int gpu[LG_STAGES_MAX];
  pthread_t wd;
  bool wd_started;
  atomic_bool wd_stop, stopping;
  atomic_int dead; /* rank that died unexpectedly, or 0 */
  char cfg_path[PATH_MAX];
};

/* ------------------------------------------------------------ ranks > 0 */

int lg_dit_rank_loop(lg_wan_dit *m, lg_transport *t) {
  unsigned char wire[LG_XFER_HDR_BYTES];
  for (;;) {
    size_t bytes = 0;
    int err = t->ops->recv_hdr(t, LG_PEER_PREV, wire, &bytes);
    if (err) return err;
    session_msg h;
    memcpy(&h, wire, sizeof h);
    if (h.magic != SES_MAGIC || bytes != 0 || (h.kind != SES_OPEN && h.kind != SES_QUIT)) {
      LG_ERR("runner", "rank %d: expected a session message (magic %08x, kind %d, %zu bytes)",
             t->rank, h.magic, h.kind, bytes);
      return LG_EFORMAT;
    }
    if (t->rank + 1 < t->size) { /* down the ring; the last rank does not wrap to rank 0 */
      err = t->ops->send(t, LG_PEER_NEXT, wire, NULL);
      if (err) return err;
    }
    if (h.kind == SES_QUIT) return 0;
    char msg[256] = "";
    lg_stage *s = lg_stage_new(m, &h.o, t, msg, sizeof msg);
    if (!s) {
      LG_ERR("runner", "rank %d: %s", t->rank, msg);
      return LG_EINVAL;
    }
    LG_INFO("runner", "rank %d: session of %d stages, %d steps", t->rank, h.o.n, h.o.stream.steps);
    err = lg_stage_run(s);
    lg_stage_free(&s);
    if (err) return err;
  }
}

static int send_session(lg_dit_runner *r, int kind, const lg_stages_opts *o) {
  session_msg h;
  memset(&h, 0, sizeof h);
  h.magic = SES_MAGIC;
  h.kind = kind;
  if (o) h.o = *o;
  memset(r->wire, 0, sizeof r->wire);
  memcpy(r->wire, &h, sizeof h);
  return r->t0->ops->send(r->t0, LG_PEER_NEXT, r->wire, NULL);
}

/* ------------------------------------------------------------ in-process stages */

static void *stage_thread(void *arg) {
  int *rp = arg;
  int rank = *rp;
  lg_dit_runner *r = (lg_dit_runner *)((char *)(rp - rank) - offsetof(lg_dit_runner, rank_arg));
  lg_wan_dit *m = r->load(r->user, rank);
  lg_transport *t = m ? lg_inproc_transport(r->g, rank) : NULL;
  if (!t) LG_ERR("runner", "stage %d: cannot load the DiT or get its transport", rank);
  pthread_mutex_lock(&r->mu);
  if (t)
    r->ready++;
  else
    r->failed++;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (t) {
    int rc = lg_dit_rank_loop(m, t);
    if (rc) {
      LG_ERR("runner", "stage %d stopped: %s", rank, lg_strerror(rc));
      lg_inproc_group_close(r->g); /* rank 0 must not wait for it */
    }
  }
  lg_transport_free(&t);
  lg_stages_model_free(&m);
  return NULL;
}

static int start_inproc(lg_dit_runner *r, size_t maxp, char *err, size_t n) {
  r->g = lg_inproc_group_new(r->n, r->n + 4, maxp);
  r->t0 = r->g ? lg_inproc_transport(r->g, 0) : NULL;
  if (!r->t0)
    return lg_errf(err, n, LG_ENOMEM,
                   "engine.stages: cannot create the in-process transport "
                   "(%d stages, %zu-byte slots)",
                   r->n, maxp);
  for (int k = 1; k < r->n; k++) {
    r->rank_arg[k] = k;
    if (pthread_create(&r->th[k], NULL, stage_thread, &r->rank_arg[k]) != 0) {
      lg_inproc_group_close(r->g);
      return lg_errf(err, n, LG_ENOMEM, "engine.stages: cannot start stage thread %d", k);
    }
    r->started[k] = true;
  }
  pthread_mutex_lock(&r->mu);
  while (r->ready + r->failed < r->n - 1)
    pthread_cond_wait(&r->cv, &r->mu);
  int failed = r->failed;
  pthread_mutex_unlock(&r->mu);
  if (failed) {
    lg_inproc_group_close(r->g);
    return lg_errf(err, n, LG_EINVAL, "engine.stages: %d stage(s) could not load the DiT", failed);
  }
  return 0;
}

/* ------------------------------------------------------------ NCCL ranks */

static void hex_id(const unsigned char *id, char *out) {
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++)
    snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void describe_exit(int st, char *out, size_t n) {
  if (WIFEXITED(st))
    snprintf(out, n, "exited with status %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(out, n, "was killed by signal %d", WTERMSIG(st));
  else
    snprintf(out, n, "stopped (status 0x%x)", st);
}

/* Rank 0's watchdog: a rank that exits before the runner stops it ends the pipeline (NCCL
 * would wait for it forever): say which and why, abort this process's NCCL waits and stop
 * the other ranks. */
static void *watchdog(void *arg) {
  lg_dit_runner *r = arg;
  while (!atomic_load(&r->wd_stop)) {
    for (int k = 1; k < r->n; k++) {
      int st = 0;
      if (r->pid[k] <= 0 || waitpid(r->pid[k], &st, WNOHANG) != r->pid[k]) continue;
      r->pid[k] = 0;
      if (atomic_load(&r->stopping) && WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
      char why[64];
      describe_exit(st, why, sizeof why);
      LG_ERR("runner",
             "rank %d (GPU %d) %s: the multi-GPU pipeline cannot go on; stopping the other ranks",
             k, r->gpu[k], why);
      atomic_store(&r->dead, k);
      lg_nccl_abort();
      for (int j = 1; j < r->n; j++)
        if (r->pid[j] > 0) kill(r->pid[j], SIGTERM);
    }
    usleep(100 * 1000);
  }
  return NULL;
}

/* fork + exec `livegen rank` for ranks 1..n-1 (this binary, /proc/self/exe), the config in a
 * temporary file, the NCCL id in LG_NCCL_ID. Everything the child needs is prepared before
 * fork (the caller may have other threads: only async-signal-safe calls after fork). */
static int spawn_ranks(lg_dit_runner *r, const lg_config *cfg, const unsigned char *id, char *err,
                       size_t n) {
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) return lg_errf(err, n, LG_EIO, "engine.gpus: cannot find this program's path");
  exe[len] = 0;
  const char *tmp = getenv("TMPDIR");
  snprintf(r->cfg_path, sizeof r->cfg_path, "%s/livegen-ranks-XXXXXX.yaml",
           tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemps(r->cfg_path, 5);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    if (fd >= 0) close(fd);
    r->cfg_path[0] = 0;
    return lg_errf(err, n, LG_EIO, "engine.gpus: cannot write the ranks' config file");
  }
  lg_config c = *cfg;
  snprintf(c.engine.launch, sizeof c.engine.launch, "spawn");
  bool ok = lg_config_print(&c, f) == 0;
  ok = fclose(f) == 0 && ok;
  if (!ok) return lg_errf(err, n, LG_EIO, "engine.gpus: writing %s failed", r->cfg_path);
  /* environment: ours without LG_NCCL_ID, plus the id */
  size_t ne = 0;
  while (environ[ne])
    ne++;
  char **envp = calloc(ne + 2, sizeof *envp);
  char idvar[16 + 2 * LG_NCCL_ID_BYTES];
  if (!envp) return lg_errf(err, n, LG_ENOMEM, "engine.gpus: out of memory");
  size_t k = 0;
  for (size_t i = 0; i < ne; i++)
    if (strncmp(environ[i], "LG_NCCL_ID=", 11)) envp[k++] = environ[i];
  memcpy(idvar, "LG_NCCL_ID=", 11);
  hex_id(id, idvar + 11);
  envp[k++] = idvar;
  envp[k] = NULL;
  char a_rank[16], a_n[16], a_gpu[16];
  snprintf(a_n, sizeof a_n, "%d", r->n);
  pid_t parent = getpid();
  int rc = 0;
  fflush(stdout);
  fflush(stderr);
  for (int q = 1; q < r->n && !rc; q++) {
    snprintf(a_rank, sizeof a_rank, "%d", q);
    snprintf(a_gpu, sizeof a_gpu, "%d", r->gpu[q]);
    char *argv[] = {exe,        "rank", "--config", r->cfg_path, "--rank", a_rank,
                    "--nranks", a_n,    "--gpu",    a_gpu,       NULL};
    pid_t pid = fork();
    if (pid == 0) {
      /* the rank goes when this thread goes (no orphan waiting in NCCL forever) */
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      execve(exe, argv, envp);
      static const char msg[] = "livegen: cannot exec the rank process\n";
      ssize_t w = write(2, msg, sizeof msg - 1);
      (void)w;
      _exit(127);
    }
    if (pid < 0) {
      rc = lg_errf(err, n, LG_EIO, "engine.gpus: cannot start rank %d: %s", q, strerror(errno));
      break;
    }
    r->pid[q] = pid;
    LG_INFO("runner", "rank %d on GPU %d: pid %d", q, r->gpu[q], (int)pid);
  }
  free(envp);
  if (!rc && pthread_create(&r->wd, NULL, watchdog, r) == 0)
    r->wd_started = true;
  else if (!rc)
    rc = lg_errf(err, n, LG_ENOMEM, "engine.gpus: cannot start the watchdog");
  return rc;
}

static int start_nccl(lg_dit_runner *r, const lg_config *cfg, size_t maxp, char *err, size_t n) {
  const lg_engine_config *c = &cfg->engine;
  unsigned char id[LG_NCCL_ID_BYTES];
  bool external = !strcmp(c->launch, "external");
  for (int k = 0; k < r->n; k++)
    r->gpu[k] = c->gpus[k];
  const char *env_id = getenv("LG_NCCL_ID");
  int rc;
  if (external && env_id && *env_id)
    rc = lg_stages_id_read(NULL, id, 0); /* the job gave every rank the id */
  else
    rc = lg_nccl_unique_id(id);
  if (rc == LG_ENOTSUP)
    return lg_errf(err, n, LG_ENOTSUP,
                   "engine.gpus: this build has no NCCL (build with -DLG_CUDA=ON on a machine "
                   "with NCCL), so the DiT cannot run over %d GPUs",
                   r->n);
  if (rc) return lg_errf(err, n, rc, "engine.gpus: cannot make a NCCL id: %s", lg_strerror(rc));
  if (external) {
    if (!(env_id && *env_id)) {
      if (!c->nccl_id_file[0])
        return lg_errf(err, n, LG_EINVAL,
                       "engine.launch external needs engine.nccl_id_file (a path every rank "
                       "reads) or LG_NCCL_ID");
      rc = lg_stages_id_write(c->nccl_id_file, id);
      if (rc) return lg_errf(err, n, rc, "engine.nccl_id_file: cannot write %s", c->nccl_id_file);
    }
    LG_INFO("runner", "rank 0 of %d on GPU %d: waiting for the external ranks", r->n, r->gpu[0]);
  } else {
    rc = spawn_ranks(r, cfg, id, err, n);
    if (rc) return rc;
  }
  r->t0 = lg_nccl_transport_new(id, 0, r->n, r->gpu[0], maxp);
  if (r->cfg_path[0]) { /* the ranks read it before joining */
    unlink(r->cfg_path);
    r->cfg_path[0] = 0;
  }
  if (!r->t0) {
    int dead = atomic_load(&r->dead);
    if (dead)
      return lg_errf(err, n, LG_EBACKEND,
                     "engine.gpus: rank %d (GPU %d) failed to start (see the "
                     "log)",
                     dead, r->gpu[dead]);
    return lg_errf(err, n, LG_EBACKEND,
                   "engine.gpus: the NCCL ring of %d ranks did not form (see the log)", r->n);
  }
  return 0;
}

/* Ranks are done (QUIT sent, or the ring is broken and they were told to stop): reap them
 * (the watchdog was joined), killing those that do not exit in time. */
static void reap_ranks(lg_dit_runner *r) {
  double until = lg_now() + QUIT_WAIT_S;
  for (;;) {
    bool left = false;
    for (int k = 1; k < r->n; k++) {
      int st = 0;
      if (r->pid[k] > 0 && waitpid(r->pid[k], &st, WNOHANG) == r->pid[k]) r->pid[k] = 0;
      left = left || r->pid[k] > 0;
    }
    if (!left || lg_now() > until) break;
    usleep(20 * 1000);
  }
  for (int k = 1; k < r->n; k++) {
    if (r->pid[k] <= 0) continue;
    LG_WARN("runner", "rank %d (pid %d) did not exit: killed", k, (int)r->pid[k]);
    kill(r->pid[k], SIGKILL);
    waitpid(r->pid[k], NULL, 0);
    r->pid[k] = 0;
  }
}

/* ------------------------------------------------------------ runner */

int lg_dit_runner_check(const lg_config *cfg, char *err, size_t n) {
  const lg_engine_config *c = &cfg->engine;
  if ((c->stages > 1 || c->n_gpus > 1) && !strcmp(c->mode, "t2v"))
    return lg_errf(err, n, LG_EINVAL,
                   "the pipelined DiT (engine.stages > 1, engine.gpus) runs v2v only, not t2v");
#ifndef LG_HAVE_NCCL
  if (c->n_gpus > 1)
    return lg_errf(err, n, LG_ENOTSUP,
                   "engine.gpus (--gpus) with %d GPUs: this build has no NCCL (build with "
                   "-DLG_CUDA=ON on a machine with CUDA and NCCL)",
                   c->n_gpus);
#endif
  return 0;
}

lg_dit_runner *lg_dit_runner_new(const lg_config *cfg, lg_wan_dit *m, lg_stage_loader load,
                                 void *user, char *err, size_t n) {
  lg_dit_runner *r = calloc(1, sizeof *r);
  if (!r) {
    lg_errf(err, n, LG_ENOMEM, "engine: out of memory");
    return NULL;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  const lg_engine_config *c = &cfg->engine;
  r->m = m;
  r->load = load;
  r->user = user;
  r->balance_ticks = c->balance_ticks;
  r->n = c->n_gpus > 1 ? c->n_gpus : c->stages > 1 ? c->stages : 1;
  r->mode = c->n_gpus > 1 ? MODE_NCCL : c->stages > 1 ? MODE_INPROC : MODE_STREAM;
  if (r->mode == MODE_STREAM) return r;
  if (!strcmp(c->mode, "t2v") || r->n > LG_STAGES_MAX) {
    lg_errf(err, n, LG_EINVAL, "the pipelined DiT runs v2v only, on 2..%d stages", LG_STAGES_MAX);
    goto fail;
  }
  const lg_wan_dit_config *dc = lg_wan_dit_get_config(m);
  if (dc->layers < r->n) {
    lg_errf(err, n, LG_EINVAL, "the DiT has %d layers: it cannot be split over %d stages",
            dc->layers, r->n);
    goto fail;
  }
  /* transport buffers fit the largest session: every steps value may come later */
  lg_stages_opts mo = {.stream = {.steps = LG_MAX_STEPS,
                                  .kv_frames = c->kv_frames,
                                  .lat_h = c->height / 8,
                                  .lat_w = c->width / 8},
                       .n = r->n};
  size_t maxp = lg_stages_max_payload(dc, &mo);
  int rc =
      r->mode == MODE_INPROC ? start_inproc(r, maxp, err, n) : start_nccl(r, cfg, maxp, err, n);
  if (rc) goto fail;
  LG_INFO("runner", "DiT pipelined over %d stages (%s)", r->n,
          r->mode == MODE_INPROC ? "threads on one device" : "one process per GPU, NCCL");
  return r;
fail:
  r->broken = true;
  lg_dit_runner_free(&r);
  return NULL;
}

void lg_dit_runner_free(lg_dit_runner **pr) {
  if (!pr || !*pr) return;
  lg_dit_runner *r = *pr;
  lg_stream_free(&r->st);
  atomic_store(&r->stopping, true); /* ranks exiting with status 0 from now on are expected */
  if (r->s0 && !r->broken && lg_stage_stop(r->s0) < 0) r->broken = true;
  lg_stage_free(&r->s0);
  if (r->t0 && !r->broken && send_session(r, SES_QUIT, NULL) < 0) r->broken = true;
  if (r->wd_started) {
    atomic_store(&r->wd_stop, true);
    pthread_join(r->wd, NULL);
  }
  if (r->mode == MODE_INPROC) {
    if (r->broken && r->g) lg_inproc_group_close(r->g);
    for (int k = 1; k < LG_STAGES_MAX; k++)
      if (r->started[k]) pthread_join(r->th[k], NULL);
  }
  if (r->mode == MODE_NCCL && r->broken) {
    lg_nccl_abort(); /* nothing more is said on the ring: do not wait on it */
    for (int k = 1; k < r->n; k++)
      if (r->pid[k] > 0) kill(r->pid[k], SIGTERM);
  }
  lg_transport_free(&r->t0);
  if (r->mode == MODE_NCCL) reap_ranks(r);
  lg_inproc_group_free(&r->g);
  if (r->cfg_path[0]) unlink(r->cfg_path);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
  *pr = NULL;
}

/* A failed ring operation: say so once (naming a dead rank when the watchdog saw one). */
static int broke(lg_dit_runner *r, int err) {
  if (err >= 0 || r->broken) return err;
  r->broken = true;
  int dead = atomic_load(&r->dead);
  if (dead)
    LG_ERR("runner", "the pipelined DiT stopped: rank %d (GPU %d) is gone", dead, r->gpu[dead]);
  else
    LG_ERR("runner", "the pipelined DiT stopped: %s", lg_strerror(err));
  return err;
}

int lg_dit_runner_configure(lg_dit_runner *r, const lg_stream_opts *o, char *err, size_t n) {
  r->chunks = 0;
  if (r->mode == MODE_STREAM) {
    lg_stream_free(&r->st);
    r->st = lg_stream_new(r->m, o, err, n);
    return r->st ? 0 : LG_EINVAL;
  }
  if (r->broken) return lg_errf(err, n, LG_EBACKEND, "the pipelined DiT has stopped");
  if (r->s0) { /* a steps change: end this session on every stage, then open another */
    int rc = lg_stage_stop(r->s0);
    lg_stage_free(&r->s0);
    if (rc < 0) return lg_errf(err, n, broke(r, rc), "stopping the stages failed");
  }
  lg_stages_opts so = {.stream = *o, .n = r->n, .balance_ticks = r->balance_ticks};
  int rc = send_session(r, SES_OPEN, &so);
  if (rc < 0) return lg_errf(err, n, broke(r, rc), "starting the stages failed");
  r->s0 = lg_stage_new(r->m, &so, r->t0, err, n);
  if (!r->s0) {
    broke(r, LG_EINVAL);
    return LG_EINVAL;
  }
  return 0;
}

int lg_dit_runner_set_context(lg_dit_runner *r, const float *ctx) {
  if (r->st) return lg_stream_set_context(r->st, ctx);
  if (!r->s0 || r->broken) return LG_EBACKEND;
  return broke(r, lg_stage_set_context(r->s0, ctx));
}

int lg_dit_runner_push_v2v(lg_dit_runner *r, const lg_tensor *latent, double scale,
                           lg_noise_fn noise, void *user, lg_tensor *out, int *out_chunk) {
  int nf;
  if (r->st) {
    nf = lg_stream_push_v2v(r->st, latent, scale, noise, user, out, out_chunk);
  } else {
    if (!r->s0 || r->broken) return LG_EBACKEND;
    nf = broke(r, lg_stage_push_v2v(r->s0, latent, scale, noise, user, out, out_chunk));
  }
  if (nf >= 0) r->chunks++;
  return nf;
}

int lg_dit_runner_next_t2v(lg_dit_runner *r, lg_noise_fn noise, void *user, lg_tensor *out) {
  if (!r->st) {
    LG_ERR("runner", "t2v runs on one stage only");
    return LG_ENOTSUP;
  }
  int nf = lg_stream_next_t2v(r->st, noise, user, out);
  if (nf >= 0) r->chunks++;
  return nf;
}

int lg_dit_runner_reset(lg_dit_runner *r) {
  r->chunks = 0;
  if (r->st) return lg_stream_reset(r->st);
  if (!r->s0 || r->broken) return LG_EBACKEND;
  return broke(r, lg_stage_reset(r->s0));
}

int lg_dit_runner_chunks(const lg_dit_runner *r) {
  return r->st ? lg_stream_chunks(r->st) : r->chunks;
}

int lg_dit_runner_stages(const lg_dit_runner *r) {
  return r->n;
}

int lg_dit_runner_extra_lag(const lg_dit_runner *r) {
  return r->s0 ? lg_stage_extra_lag(r->s0) : 0;
}

size_t lg_dit_runner_bytes(const lg_dit_runner *r) {
  return r->st ? lg_stream_bytes(r->st) : r->s0 ? lg_stage_bytes(r->s0) : 0;
}

void lg_dit_runner_note_rank0_ms(lg_dit_runner *r, double ms) {
  if (r && r->s0) lg_stage_note_extra_ms(r->s0, ms);
}
