/* A worker without Python: the I/O thread (csrc/server/ and python/bridge.c)
 * driven by a main thread that plays the Python side.
 *
 *   http_harness PORT [MAX_BODY] [KEEPALIVE_S] [MAX_HEADER] [READY_DELAY_MS] [TIMEOUT_S]
 *
 * Prints "PORT <n>" once listening (PORT 0 picks a free port). Routes:
 *   POST /echo    -> 200 application/json, the request body (or {} if empty)
 *   POST /ctype   -> 201 text/plain, the request's content-type
 *   a body of the form "sleep:<ms>" on /echo is answered after <ms> from
 *   another thread (an in-flight request for the shutdown tests).
 *   POST /stream  -> body "<n>,<ms>": a chunked text/event-stream of n events
 *                    written <ms> apart from another thread (x-stream: yes);
 *                    body "bp:<bytes>": that many bytes in 64 KiB chunks as
 *                    fast as back-pressure allows, then "waits=W writable=E"
 *   POST /meta    -> (needs_request) the request head, "client=<ip:port>",
 *                    with extra response headers x-extra and x-other
 *   POST /upload  -> JSON description of the multipart parts, with crc32s
 *   POST /stats   -> JSON counters: CANCEL and WRITABLE events seen, ...
 * GET /schema.json and GET / are documents. Exits 0 after SIGTERM once the
 * I/O thread reports shutdown; prints the limiter's balance to stderr. */
#include "common/context.h"
#include "common/options.h"
#include "common/request.h"
#include "python/bridge.h"
#include "server/io.h"

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

static bh_worker_t worker;
static int bound_port;

extern long stub_held, stub_acquired, stub_released, stub_rejected, stub_requests;

/* counters of the fake Python side */
static _Atomic long n_cancels, n_writable, n_stream_gone, n_waits, n_late_posts;
static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wcond = PTHREAD_COND_INITIALIZER;
static bh_req_t *writable_req; /* the WRITABLE event the stream thread waits for */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static void post(bh_req_t *req, bh_out_kind_t kind, int status, const char *ctype,
                 const char *headers, const char *data, size_t len) {
  bh_out_t *msg = bh_out_new(req, kind, status, ctype, ctype ? strlen(ctype) : 0,
                             headers, headers ? strlen(headers) : 0, data, len);
  if (msg == NULL)
    abort();
  bh_bridge_post(worker.bridge, msg);
}

static void complete(bh_req_t *req, int status, const char *ctype, const char *body,
                     size_t len) {
  post(req, BH_OUT_COMPLETE, status, ctype, NULL, body, len);
}

/* As pyhost's stream_write: count, post, and past the high-water mark wait
 * for BH_IN_WRITABLE unless the socket drained meanwhile. */
static void stream_write(bh_req_t *req, const char *data, size_t len) {
  int64_t pending;

  if (atomic_load(&req->flags) & BH_REQ_GONE)
    return;
  pending = atomic_fetch_add(&req->pending_bytes, (int64_t)len) + (int64_t)len;
  post(req, BH_OUT_CHUNK, 0, NULL, NULL, data, len);
  if (pending <= BH_STREAM_HIGH_WATER)
    return;
  atomic_fetch_or(&req->flags, BH_REQ_WANT_WRITABLE);
  if (atomic_load(&req->pending_bytes) < BH_STREAM_LOW_WATER &&
      (atomic_fetch_and(&req->flags, ~(uint32_t)BH_REQ_WANT_WRITABLE) & BH_REQ_WANT_WRITABLE))
    return;
  n_waits++;
  pthread_mutex_lock(&wlock);
  while (writable_req != req && !(atomic_load(&req->flags) & BH_REQ_GONE)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&wcond, &wlock, &ts);
  }
  writable_req = NULL;
  pthread_mutex_unlock(&wlock);
}

static long body_num(const bh_req_t *req, size_t skip) {
  char num[32];
  size_t n = req->body_len > skip ? req->body_len - skip : 0;
  if (n >= sizeof(num))
    n = sizeof(num) - 1;
  memcpy(num, req->body + skip, n);
  num[n] = '\0';
  return strtol(num, NULL, 10);
}

static void *sleeper(void *arg) {
  bh_req_t *req = arg;
  sleep_ms(body_num(req, 6));
  if (atomic_load(&req->flags) & (BH_REQ_TIMED_OUT | BH_REQ_GONE))
    n_late_posts++;
  complete(req, 200, "application/json", "{\"slept\":true}", 14);
  return NULL;
}

static void *streamer(void *arg) {
  bh_req_t *req = arg;
  char buf[64];
  long n = 3, ms = 0, i;

  if (req->body_len > 3 && memcmp(req->body, "bp:", 3) == 0) {
    long total = body_num(req, 3), sent = 0;
    char *chunk = malloc(65536);
    for (i = 0; i < 65536; i++)
      chunk[i] = (char)('a' + i % 26);
    post(req, BH_OUT_STREAM_START, 200, "application/octet-stream", NULL, NULL, 0);
    while (sent < total && !(atomic_load(&req->flags) & BH_REQ_GONE)) {
      long k = total - sent < 65536 ? total - sent : 65536;
      stream_write(req, chunk, (size_t)k);
      sent += k;
    }
    free(chunk);
    snprintf(buf, sizeof(buf), "waits=%ld writable=%ld", (long)n_waits, (long)n_writable);
    stream_write(req, buf, strlen(buf));
  } else {
    if (req->body_len > 0) {
      char tmp[64];
      size_t l = req->body_len < 63 ? req->body_len : 63;
      memcpy(tmp, req->body, l);
      tmp[l] = '\0';
      sscanf(tmp, "%ld,%ld", &n, &ms);
    }
    post(req, BH_OUT_STREAM_START, 200, "text/event-stream", "x-stream: yes\r\n", NULL, 0);
    for (i = 0; i < n; i++) {
      if (atomic_load(&req->flags) & BH_REQ_GONE)
        break;
      if (i > 0 && ms > 0)
        sleep_ms(ms);
      snprintf(buf, sizeof(buf), "data: %ld\n\n", i);
      stream_write(req, buf, strlen(buf));
      if (i == 0) /* an empty chunk must not end the stream */
        post(req, BH_OUT_CHUNK, 0, NULL, NULL, NULL, 0);
    }
  }
  if (atomic_load(&req->flags) & BH_REQ_GONE)
    n_stream_gone++;
  post(req, BH_OUT_STREAM_END, 0, NULL, NULL, NULL, 0);
  return NULL;
}

static uint32_t crc32_buf(uint32_t crc, const unsigned char *p, size_t n) {
  static uint32_t table[256];
  size_t i;
  if (table[1] == 0)
    for (i = 0; i < 256; i++) {
      uint32_t c = (uint32_t)i;
      int k;
      for (k = 0; k < 8; k++)
        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  crc = ~crc;
  for (i = 0; i < n; i++)
    crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void json_str(char **p, const char *s) {
  *p += sprintf(*p, "\"");
  for (; s && *s; s++) {
    if (*s == '"' || *s == '\\')
      *p += sprintf(*p, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      *p += sprintf(*p, "\\u%04x", *s);
    else
      *(*p)++ = *s;
  }
  *p += sprintf(*p, "\"");
}

static void handle_upload(bh_req_t *req) {
  char *out = malloc(256 + req->nparts * 9000), *p = out;
  size_t i;

  p += sprintf(p, "{\"body_null\":%s,\"temp_dir\":", req->body == NULL ? "true" : "false");
  if (req->temp_dir)
    json_str(&p, req->temp_dir);
  else
    p += sprintf(p, "null");
  p += sprintf(p, ",\"has_head\":%s,\"parts\":[", req->head ? "true" : "false");
  for (i = 0; i < req->nparts; i++) {
    const bh_part_t *part = &req->parts[i];
    uint32_t crc = 0;
    long disk = -1;
    if (part->path) {
      FILE *f = fopen(part->path, "rb");
      static unsigned char buf[1 << 16];
      size_t n;
      if (f) {
        disk = 0;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
          crc = crc32_buf(crc, buf, n);
          disk += (long)n;
        }
        fclose(f);
      }
    } else {
      crc = crc32_buf(0, (const unsigned char *)part->data, part->len);
    }
    p += sprintf(p, "%s{\"name\":", i ? "," : "");
    json_str(&p, part->name);
    p += sprintf(p, ",\"filename\":");
    if (part->filename)
      json_str(&p, part->filename);
    else
      p += sprintf(p, "null");
    p += sprintf(p, ",\"ctype\":");
    if (part->content_type)
      json_str(&p, part->content_type);
    else
      p += sprintf(p, "null");
    p += sprintf(p, ",\"path\":");
    if (part->path)
      json_str(&p, part->path);
    else
      p += sprintf(p, "null");
    p += sprintf(p, ",\"len\":%zu,\"disk\":%ld,\"crc\":%u}", part->len, disk, crc);
  }
  p += sprintf(p, "]}");
  complete(req, 200, "application/json", out, (size_t)(p - out));
  free(out);
}

static void handle(bh_req_t *req) {
  pthread_t th;
  char buf[8192];
  int n;

  switch (req->api_index) {
  case 0:
    if (req->body_len > 6 && req->body_len < 32 && memcmp(req->body, "sleep:", 6) == 0) {
      if (pthread_create(&th, NULL, sleeper, req) == 0) {
        pthread_detach(th);
        return;
      }
    }
    if (req->body_len > 0)
      complete(req, 200, "application/json", req->body, req->body_len);
    else
      complete(req, 200, "application/json", "{}", 2);
    return;
  case 1: {
    const char *ct = req->content_type ? req->content_type : "";
    complete(req, 201, "text/plain", ct, strlen(ct));
    return;
  }
  case 2:
    if (pthread_create(&th, NULL, streamer, req) == 0) {
      pthread_detach(th);
      return;
    }
    complete(req, 500, "text/plain", "no thread", 9);
    return;
  case 3:
    n = snprintf(buf, sizeof(buf), "%.*s\nclient=%s", (int)req->head_len,
                 req->head ? req->head : "", req->client);
    post(req, BH_OUT_COMPLETE, 202, "text/plain", "x-extra: 1\r\nx-other: two\r\n", buf,
         (size_t)n);
    return;
  case 4:
    handle_upload(req);
    return;
  default:
    n = snprintf(buf, sizeof(buf),
                 "{\"cancels\":%ld,\"waits\":%ld,\"writable\":%ld,\"stream_gone\":%ld,\"held\":%ld,"
                 "\"acquired\":%ld,\"released\":%ld,\"rejected\":%ld,\"late_posts\":%ld}",
                 (long)n_cancels, (long)n_waits, (long)n_writable, (long)n_stream_gone, stub_held,
                 stub_acquired, stub_released, stub_rejected, (long)n_late_posts);
    complete(req, 200, "application/json", buf, (size_t)n);
    return;
  }
}

static void on_event(const bh_in_t *in) {
  switch (in->kind) {
  case BH_IN_REQUEST:
    handle(in->req);
    break;
  case BH_IN_CANCEL:
    n_cancels++;
    break;
  case BH_IN_WRITABLE:
    n_writable++;
    pthread_mutex_lock(&wlock);
    writable_req = in->req;
    pthread_cond_broadcast(&wcond);
    pthread_mutex_unlock(&wlock);
    break;
  default:
    break;
  }
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
  static bh_api_t apis[6];
  static bh_document_t docs[2];
  static const char *names[6] = {"echo", "ctype", "stream", "meta", "upload", "stats"};
  static const char *routes[6] = {"/echo", "/ctype", "/stream", "/meta", "/upload", "/stats"};
  bh_in_t batch[64];
  int i;
  sigset_t set;
  uint64_t start, ready_at;
  int port, err;

  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [MAX_BODY] [KEEPALIVE_S] [MAX_HEADER] [READY_DELAY_MS] [TIMEOUT_S]\n", argv[0]);
    return 2;
  }
  port = atoi(argv[1]);
  bh_options_defaults(&opts);
  opts.host = "127.0.0.1";
  opts.port = port;
  opts.backlog = 128;
  opts.graceful_timeout_s = 10;
  opts.max_body_size = argc > 2 ? strtoull(argv[2], NULL, 10) : 100u << 20;
  opts.keepalive_timeout_s = argc > 3 ? atof(argv[3]) : 5;
  opts.max_header_size = argc > 4 ? strtoull(argv[4], NULL, 10) : 64 * 1024;
  ready_at = argc > 5 ? strtoull(argv[5], NULL, 10) : 300;

  for (i = 0; i < 6; i++) {
    apis[i].name = (char *)names[i];
    apis[i].route = (char *)routes[i];
    apis[i].route_len = strlen(routes[i]);
    apis[i].index = i;
  }
  apis[2].is_stream = 1;
  apis[3].needs_request = 1;

  docs[0].path = "/schema.json";
  docs[0].content_type = "application/json";
  docs[0].body = "{\"name\":\"Harness\"}";
  docs[0].len = strlen(docs[0].body);
  docs[0].next = &docs[1];
  docs[1].path = "/";
  docs[1].content_type = "text/html; charset=utf-8";
  docs[1].body = "<html>harness</html>";
  docs[1].len = strlen(docs[1].body);
  worker.documents = &docs[0];

  worker.index = 1;
  worker.opts = &opts;
  worker.config.name = "Harness";
  worker.config.apis = apis;
  worker.config.napis = 6;
  worker.config.timeout_s = argc > 6 ? atof(argv[6]) : 60;
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
    size_t n = bh_bridge_take(worker.bridge, batch, 64), i;
    struct pollfd pfd;
    int timeout = -1;

    for (i = 0; i < n; i++)
      on_event(&batch[i]);
    if (n > 0)
      continue;
    if (atomic_load(&worker.bridge->shutdown))
      break;
    if (!atomic_load(&worker.ready)) {
      uint64_t t = now_ms();
      if (t >= start + ready_at) {
        atomic_store(&worker.ready, 1);
        continue;
      }
      timeout = (int)(start + ready_at - t);
    }
    pfd.fd = worker.bridge->eventfd;
    pfd.events = POLLIN;
    if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
      perror("poll");
      return 1;
    }
    bh_bridge_clear_eventfd(worker.bridge);
  }

  err = bh_io_join(&worker);
  bh_bridge_destroy(worker.bridge);
  fprintf(stderr, "[harness] limiter held=%ld acquired=%ld released=%ld\n", stub_held,
          stub_acquired, stub_released);
  fprintf(stderr, "[harness] clean exit\n");
  return err == 0 ? 0 : 1;
}
