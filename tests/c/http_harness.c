/* A worker without Python: the I/O thread (io.c, http.c, router.c, bridge.c)
 * driven by a main thread that plays the Python side.
 *
 *   http_harness PORT [MAX_BODY] [KEEPALIVE_S] [MAX_HEADER] [READY_DELAY_MS]
 *
 * Prints "PORT <n>" once listening (PORT 0 picks a free port). Routes:
 *   POST /echo    -> 200 application/json, the request body (or {} if empty)
 *   POST /ctype   -> 201 text/plain, the request's content-type
 *   a body of the form "sleep:<ms>" on /echo is answered after <ms> from
 *   another thread (an in-flight request for the shutdown tests).
 * Exits 0 after SIGTERM once the I/O thread reports shutdown. */
#include "bh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void bh_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[harness] ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static bh_worker_t worker;
static int bound_port;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_response(bh_req_t *req, int status, const char *ctype,
                         const char *body, size_t len) {
  req->status = status;
  req->resp_content_type = strdup(ctype);
  req->resp_body = malloc(len ? len : 1);
  memcpy(req->resp_body, body, len);
  req->resp_len = len;
}

static void *sleeper(void *arg) {
  bh_req_t *req = arg;
  struct timespec ts;
  char num[32];
  long ms;
  memcpy(num, req->body + 6, req->body_len - 6);
  num[req->body_len - 6] = '\0';
  ms = strtol(num, NULL, 10);
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
  set_response(req, 200, "application/json", "{\"slept\":true}", 14);
  bh_bridge_complete(&worker.bridge, req);
  return NULL;
}

static void handle(bh_req_t *req) {
  if (req->api_index == 0) {
    if (req->body_len > 6 && req->body_len < 32 && memcmp(req->body, "sleep:", 6) == 0) {
      pthread_t th;
      if (pthread_create(&th, NULL, sleeper, req) == 0) {
        pthread_detach(th);
        return;
      }
    }
    if (req->body_len > 0)
      set_response(req, 200, "application/json", req->body, req->body_len);
    else
      set_response(req, 200, "application/json", "{}", 2);
  } else {
    const char *ct = req->content_type ? req->content_type : "";
    set_response(req, 201, "text/plain", ct, strlen(ct));
  }
  bh_bridge_complete(&worker.bridge, req);
}

static int listen_on(int port) {
  struct sockaddr_in sa;
  socklen_t slen = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128) ||
      getsockname(fd, (struct sockaddr *)&sa, &slen)) {
    close(fd);
    return -1;
  }
  bound_port = ntohs(sa.sin_port);
  return fd;
}

int main(int argc, char **argv) {
  static bh_options_t opts;
  static bh_api_t apis[2];
  bh_req_t *batch[64];
  sigset_t set;
  uint64_t start, ready_at;
  int port, err;

  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [MAX_BODY] [KEEPALIVE_S] [MAX_HEADER] [READY_DELAY_MS]\n", argv[0]);
    return 2;
  }
  port = atoi(argv[1]);
  opts.host = "127.0.0.1";
  opts.port = port;
  opts.backlog = 128;
  opts.graceful_timeout_s = 10;
  opts.max_body_size = argc > 2 ? strtoull(argv[2], NULL, 10) : 100u << 20;
  opts.keepalive_timeout_s = argc > 3 ? atof(argv[3]) : 5;
  opts.max_header_size = argc > 4 ? strtoull(argv[4], NULL, 10) : 64 * 1024;
  ready_at = argc > 5 ? strtoull(argv[5], NULL, 10) : 300;

  apis[0].name = "echo";
  apis[0].route = "/echo";
  apis[0].route_len = 5;
  apis[0].index = 0;
  apis[1].name = "ctype";
  apis[1].route = "/ctype";
  apis[1].route_len = 6;
  apis[1].index = 1;

  worker.index = 1;
  worker.opts = &opts;
  worker.config.name = "Harness";
  worker.config.apis = apis;
  worker.config.napis = 2;
  atomic_store(&worker.alive, 1);
  atomic_store(&worker.ready, 0);

  /* As pyhost does: the Python thread never takes SIGTERM. */
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  worker.listen_fd = listen_on(port);
  if (worker.listen_fd < 0) {
    perror("listen");
    return 1;
  }
  err = bh_io_start(&worker);
  if (err != 0) {
    fprintf(stderr, "bh_io_start: %s\n", strerror(-err));
    return 1;
  }
  if (!atomic_load(&worker.io_ready)) {
    fprintf(stderr, "io_ready not set\n");
    return 1;
  }
  printf("PORT %d\n", bound_port);
  fflush(stdout);

  start = now_ms();
  for (;;) {
    size_t n = bh_bridge_take(&worker.bridge, batch, 64), i;
    struct pollfd pfd;
    int timeout = -1;

    for (i = 0; i < n; i++)
      handle(batch[i]);
    if (n > 0)
      continue;
    if (atomic_load(&worker.bridge.shutdown))
      break;
    if (!atomic_load(&worker.ready)) {
      uint64_t t = now_ms();
      if (t >= start + ready_at) {
        atomic_store(&worker.ready, 1);
        continue;
      }
      timeout = (int)(start + ready_at - t);
    }
    pfd.fd = worker.bridge.eventfd;
    pfd.events = POLLIN;
    if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
      perror("poll");
      return 1;
    }
    bh_bridge_clear_eventfd(&worker.bridge);
  }

  err = bh_io_join(&worker);
  bh_bridge_destroy(&worker.bridge);
  fprintf(stderr, "[harness] clean exit\n");
  return err == 0 ? 0 : 1;
}
