/* streaming_test_util.h: helpers for the streaming tests (ingest, RTMP, recorder, WebRTC):
 * free loopback ports, temp dirs, child processes in their own process group that are
 * always killed, and shell commands with a deadline. Header-only (static functions) so it
 * stays private to the tests that include it. Main test thread only. */
#ifndef LG_STREAMING_TEST_UTIL_H
#define LG_STREAMING_TEST_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A TCP (or UDP) port on 127.0.0.1 that was free a moment ago. */
static inline int st_free_port(int type) {
  int fd = socket(AF_INET, type, 0);
  struct sockaddr_in a;
  socklen_t n = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &n) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* mkdtemp under $TMPDIR or /tmp; writes the path into dir (n bytes). 0 or -1. */
static inline int st_tmpdir(char *dir, size_t n, const char *tag) {
  const char *t = getenv("TMPDIR");
  snprintf(dir, n, "%s/lg_%s_XXXXXX", t && *t ? t : "/tmp", tag);
  return mkdtemp(dir) ? 0 : -1;
}

static inline void st_rmdir(const char *dir) {
  char cmd[1200];
  if (!dir || !*dir || strstr(dir, "/lg_") == NULL) return; /* only what st_tmpdir made */
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Children still running, so that a failed assertion (cmocka jumps out of the test) does
 * not leave an nginx or ffmpeg behind: st_kill_all runs at exit. */
static pid_t st_children[64];

static inline void st_forget(pid_t pid) {
  for (int i = 0; i < 64; i++)
    if (st_children[i] == pid) st_children[i] = 0;
}

static inline void st_kill_all(void) {
  for (int i = 0; i < 64; i++)
    if (st_children[i] > 0) {
      kill(-st_children[i], SIGKILL);
      waitpid(st_children[i], NULL, 0);
      st_children[i] = 0;
    }
}

/* Starts `sh -c cmd` in a new process group; returns its pid (> 0) or -1. */
static inline pid_t st_spawn(const char *cmd) {
  static int registered;
  if (!registered) {
    atexit(st_kill_all);
    registered = 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  if (pid > 0) {
    setpgid(pid, pid);
    for (int i = 0; i < 64; i++)
      if (st_children[i] == 0) {
        st_children[i] = pid;
        break;
      }
  }
  return pid;
}

/* Waits up to timeout_s for the child; returns its exit status (0..255), 128+sig, or -1 on
 * timeout (the child keeps running). */
static inline int st_wait(pid_t pid, double timeout_s) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      st_forget(pid);
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0) {
      st_forget(pid);
      return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > timeout_s)
      return -1;
    usleep(20000);
  }
}

/* Terminates the child's process group (TERM, then KILL after 2 s) and reaps it. */
static inline void st_kill(pid_t pid) {
  if (pid <= 0) return;
  kill(-pid, SIGTERM);
  if (st_wait(pid, 2.0) < 0) {
    kill(-pid, SIGKILL);
    st_wait(pid, 2.0);
  }
}

/* Runs cmd to completion with a deadline; returns its exit status or -1 (killed). */
static inline int st_run(const char *cmd, double timeout_s) {
  pid_t pid = st_spawn(cmd);
  if (pid < 0) return -1;
  int rc = st_wait(pid, timeout_s);
  if (rc < 0) st_kill(pid);
  return rc;
}

/* Runs cmd and captures up to n-1 bytes of its stdout into out. Exit status or -1. */
static inline int st_capture(const char *cmd, char *out, size_t n, double timeout_s) {
  char path[] = "/tmp/lg_capture_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  char full[4096];
  snprintf(full, sizeof(full), "%s > '%s'", cmd, path);
  int rc = st_run(full, timeout_s);
  FILE *f = fopen(path, "rb");
  size_t got = f ? fread(out, 1, n - 1, f) : 0;
  out[got] = 0;
  if (f) fclose(f);
  unlink(path);
  return rc;
}

/* Polls until something accepts TCP connections on 127.0.0.1:port. 0 or -1 on timeout. */
static inline int st_wait_port(int port, double timeout_s) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) close(fd);
    if (ok) return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > timeout_s)
      return -1;
    usleep(50000);
  }
}

/* Starts a real RTMP server: nginx with libnginx-mod-rtmp, its own prefix and config in
 * dir, listening on 127.0.0.1:port with a live application "live" (idle_streams off: players
 * are disconnected when the publisher leaves, so they see the end). Returns the pid of the
 * nginx master (its own process group; st_kill stops master and worker) once it accepts
 * connections, or -1. */
static inline pid_t st_nginx_rtmp_start(const char *dir, int port) {
  char conf[700], cmd[2400];
  snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
  FILE *f = fopen(conf, "w");
  if (!f) return -1;
  fprintf(f,
          "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n"
          "pid %s/nginx.pid;\n"
          "error_log %s/nginx_error.log info;\n"
          "worker_processes 1;\n"
          "events { worker_connections 64; }\n"
          "rtmp { server { listen 127.0.0.1:%d; chunk_size 4096;\n"
          "  application live { live on; record off; idle_streams off; } } }\n",
          dir, dir, port);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "exec nginx -e '%s/nginx_error.log' -p '%s' -c '%s' -g 'daemon off;'",
           dir, dir, conf);
  pid_t pid = st_spawn(cmd);
  if (pid < 0) return -1;
  if (st_wait_port(port, 10.0) != 0) {
    st_kill(pid);
    return -1;
  }
  return pid;
}

#endif
