/* libFuzzer target: one HTTP/1.1 connection's bytes through the real server
 * (csrc/server/: conn.c, parse.c with llhttp in strict mode, router.c,
 * respond.c, stream.c, multipart.c; python/bridge.c; traffic/ with a real
 * shared segment: limiter, metrics; common/). Nothing is stubbed: the
 * limiter's acquire and release are only counted on their way (ld --wrap).
 *
 * LLVMFuzzerInitialize starts, once per process, the worker's I/O thread
 * (bh_io_start) on a loopback listening socket, and a thread that plays the
 * Python side: it takes requests from the bridge and answers them at once
 * (a whole response, or a stream, chosen from the request's body), checking
 * what C handed over. Each input is one connection: connect, send the input
 * in 1 to 3 pieces (cut where a hash of the input says), half-close, read
 * until the server closes, close. Then, once the server is idle again:
 *
 *   - every response is well formed: "HTTP/1.1 NNN reason", header lines,
 *     then exactly content-length bytes, or a chunked body, or (a stream to an
 *     HTTP/1.0 client) the rest with connection: close; nothing follows a
 *     connection: close response; only a stream may be cut short;
 *   - every admitted request was released exactly once;
 *   - no connection, no request in Python and no multipart temp dir is left;
 *   - the server closed the connection within a few seconds.
 *
 * A broken invariant prints "FUZZ INVARIANT: ..." and aborts, which libFuzzer
 * reports as a crash with the input saved. */
#include "common/context.h"
#include "common/fs.h"
#include "common/request.h"
#include "python/bridge.h"
#include "server/internal.h"
#include "server/io.h"
#include "fuzz_check.h"
#include "traffic/limiter.h"
#include "traffic/shm.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <getopt.h>
#include <unistd.h>

#define MAX_BODY (64u << 10)
#define MAX_HEADER 2048
#define RESP_CAP ((size_t)16 << 20) /* response bytes kept; the rest is read and dropped */
#define BIG_RESPONSE ((size_t)64 << 10)
#define CLOSE_DEADLINE_MS 5000
#define IDLE_DEADLINE_MS 5000

enum { API_ECHO, API_META, API_STREAM, API_UPLOAD, NAPIS };

static _Atomic long fuzz_held, fuzz_acquired, fuzz_released;

static bh_worker_t worker;
static bh_options_t opts;
static bh_api_t apis[NAPIS];
static bh_document_t docs[2];
static struct sockaddr_in server_addr;
static char tmp_dir[4096];
static _Atomic int py_busy; /* the Python side is handling entries */

/* ---------------------------------------------------------------- the limiter, counted */

/* Linked with -Wl,--wrap=bh_limiter_acquire,--wrap=bh_limiter_release: the
 * server's calls come here, the real limiter (traffic/limiter.c) does the work. */
int __real_bh_limiter_acquire(bh_worker_t *w);
void __real_bh_limiter_release(bh_worker_t *w);

int __wrap_bh_limiter_acquire(bh_worker_t *w) {
  int r = __real_bh_limiter_acquire(w);
  if (r == 0) {
    atomic_fetch_add(&fuzz_held, 1);
    atomic_fetch_add(&fuzz_acquired, 1);
  }
  return r;
}

void __wrap_bh_limiter_release(bh_worker_t *w) {
  atomic_fetch_add(&fuzz_released, 1);
  if (atomic_fetch_sub(&fuzz_held, 1) <= 0)
    FAIL("a limiter slot released more often than acquired (acquired=%ld released=%ld)",
         (long)fuzz_acquired, (long)fuzz_released);
  __real_bh_limiter_release(w);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- the Python side */

static void post(bh_req_t *req, bh_out_kind_t kind, int status, const char *ctype,
                 const char *headers, const char *data, size_t len) {
  bh_out_t *msg = bh_out_new(req, kind, status, ctype, ctype ? strlen(ctype) : 0, headers,
                             headers ? strlen(headers) : 0, data, len);
  if (msg == NULL)
    abort();
  bh_bridge_post(worker.bridge, msg);
}

static void complete(bh_req_t *req, int status, const char *ctype, const char *headers,
                     const char *body, size_t len) {
  post(req, BH_OUT_COMPLETE, status, ctype, headers, body, len);
}

/* What C hands Python must be consistent, whatever the client sent. */
static void check_req(const bh_req_t *req) {
  if (req->api_index < 0 || req->api_index >= NAPIS)
    FAIL("request for api %d", req->api_index);
  if (req->body_len > 0 && req->body == NULL)
    FAIL("body_len %zu with no body", req->body_len);
  if (req->body_len > MAX_BODY)
    FAIL("body of %zu bytes over max_body_size %u", req->body_len, MAX_BODY);
  if (req->content_type != NULL && memchr(req->content_type, '\n', strlen(req->content_type)))
    FAIL("content type with a newline");
  if (req->api_index == API_META || req->nparts > 0 || req->temp_dir != NULL) {
    if (req->head == NULL || req->head_len == 0)
      FAIL("needs_request/multipart request without its head");
  }
  if (req->head != NULL) {
    const char *sp = memchr(req->head, ' ', req->head_len);
    if (req->head[req->head_len] != '\0')
      FAIL("head not NUL-terminated");
    if (sp == NULL || sp == req->head)
      FAIL("head does not start with a method: %.40s", req->head);
    if (req->head_len < 2 || memcmp(req->head + req->head_len - 2, "\r\n", 2) != 0)
      FAIL("head does not end with CRLF");
    if (req->client[0] == '\0' || memchr(req->client, '\0', sizeof(req->client)) == NULL)
      FAIL("client address missing");
  }
  if (req->nparts > 0 && req->body != NULL)
    FAIL("multipart request with a body");
  fuzz_check_parts(req, tmp_dir, 0);
}

static void answer_stream(bh_req_t *req, uint64_t h) {
  size_t n = req->body_len, a = n ? (size_t)(h % (n + 1)) : 0, b = n ? (size_t)((h >> 20) % (n + 1)) : 0;
  if (a > b) {
    size_t t = a;
    a = b;
    b = t;
  }
  if (h & 0x100) /* a chunk before the stream started: dropped by C */
    post(req, BH_OUT_CHUNK, 0, NULL, NULL, "early", 5);
  post(req, BH_OUT_STREAM_START, 200, "text/event-stream", "x-stream: yes\r\n", NULL, 0);
  post(req, BH_OUT_CHUNK, 0, NULL, NULL, req->body, a);
  post(req, BH_OUT_CHUNK, 0, NULL, NULL, NULL, 0); /* an empty chunk does not end it */
  post(req, BH_OUT_CHUNK, 0, NULL, NULL, req->body ? req->body + a : NULL, b - a);
  post(req, BH_OUT_CHUNK, 0, NULL, NULL, req->body ? req->body + b : NULL, n - b);
  if (h & 0x200)
    post(req, BH_OUT_STREAM_START, 201, "text/plain", NULL, NULL, 0); /* ignored */
  post(req, BH_OUT_STREAM_END, 0, NULL, NULL, NULL, 0);
}

static void answer_upload(bh_req_t *req) {
  char out[512];
  size_t i, files = 0, bytes = 0;
  int n;
  for (i = 0; i < req->nparts; i++) {
    files += req->parts[i].path != NULL;
    bytes += req->parts[i].len;
  }
  n = snprintf(out, sizeof(out), "{\"parts\":%zu,\"files\":%zu,\"bytes\":%zu}", req->nparts,
               files, bytes);
  complete(req, 200, "application/json", NULL, out, (size_t)n);
}

/* Larger than the socket takes at once with a small client window: the
 * server queues the rest (respond.c's write callback). */
static void answer_big(bh_req_t *req, uint64_t h) {
  size_t n = BIG_RESPONSE * (1 + h % 2), i;
  char *big = malloc(n);
  if (big == NULL)
    abort();
  for (i = 0; i < n; i++)
    big[i] = (char)('a' + i % 26);
  if (h & 4) {
    post(req, BH_OUT_STREAM_START, 200, "application/octet-stream", NULL, NULL, 0);
    post(req, BH_OUT_CHUNK, 0, NULL, NULL, big, n);
    post(req, BH_OUT_STREAM_END, 0, NULL, NULL, NULL, 0);
  } else {
    complete(req, 200, "application/octet-stream", NULL, big, n);
  }
  free(big);
}

static void py_handle(bh_req_t *req) {
  uint64_t h = fuzz_hash(req->body, req->body ? req->body_len : 0);

  check_req(req);
  switch (req->api_index) {
  case API_ECHO:
    switch (h % 8) {
    case 3:
      answer_big(req, h >> 3);
      return;
    case 4:
      complete(req, 201, "application/json", "x-a: 1\r\nx-b: two\r\n", req->body, req->body_len);
      return;
    case 5:
      answer_stream(req, h >> 3);
      return;
    case 6: /* an empty stream that never started */
      post(req, BH_OUT_STREAM_END, 0, NULL, NULL, NULL, 0);
      return;
    case 7: /* Python gives up on its stream */
      post(req, BH_OUT_STREAM_START, 200, "application/x-ndjson", NULL, NULL, 0);
      post(req, BH_OUT_CHUNK, 0, NULL, NULL, "{}\n", 3);
      complete(req, 500, "application/json", NULL, "{}", 2);
      return;
    default:
      if (req->body_len > 0)
        complete(req, 200, "application/json", NULL, req->body, req->body_len);
      else
        complete(req, 200, "application/json", NULL, "{}", 2);
      return;
    }
  case API_META:
    complete(req, 202, "text/plain", "x-extra: 1\r\n", req->head, req->head_len);
    return;
  case API_STREAM:
    answer_stream(req, h);
    return;
  default:
    answer_upload(req);
    return;
  }
}

static void *py_thread(void *arg) {
  bh_in_t batch[64];
  (void)arg;
  for (;;) {
    size_t n, i;
    struct pollfd pfd;

    atomic_store(&py_busy, 1);
    n = bh_bridge_take(worker.bridge, batch, 64);
    for (i = 0; i < n; i++)
      if (batch[i].kind == BH_IN_REQUEST)
        py_handle(batch[i].req);
    /* BH_IN_CANCEL: everything is answered at once anyway; no BH_IN_WRITABLE
     * (streams stay far below the high-water mark); no batches */
    if (n > 0)
      continue;
    atomic_store(&py_busy, 0);
    pfd.fd = worker.bridge->eventfd;
    pfd.events = POLLIN;
    poll(&pfd, 1, 100);
    bh_bridge_clear_eventfd(worker.bridge);
  }
  return NULL;
}

/* ---------------------------------------------------------------- set-up */

static void rm_tmp(void) {
  if (tmp_dir[0])
    bh_rmtree(tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *names[NAPIS] = {"echo", "meta", "stream", "upload"};
  static const char *routes[NAPIS] = {"/echo", "/meta", "/stream", "/upload"};
  /* the launcher's defaults for every option (also those added later), and
   * limits small enough for a fuzzer's inputs to cross */
  static char *args[] = {"serve", "--target", "fuzz", "--python", "python3",
                         "--max-body-size", "65536", "--max-header-size", "2048",
                         "--timeout-keep-alive", "5", "--timeout-graceful-shutdown", "1",
                         "--backlog", "128", NULL};
  const char *base = getenv("TMPDIR");
  socklen_t slen = sizeof(server_addr);
  pthread_t th;
  int fd, one = 1, sndbuf = 16384, err, i;

  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);

  /* multipart temp dirs go to a directory of this run's own */
  snprintf(tmp_dir, sizeof(tmp_dir), "%s/bh-fuzz-request-XXXXXX",
           base != NULL && base[0] ? base : "/tmp");
  if (mkdtemp(tmp_dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  setenv("TMPDIR", tmp_dir, 1);
  atexit(rm_tmp);

  optind = 1;
  if (bh_options_parse(&opts, (int)(sizeof(args) / sizeof(args[0])) - 1, args) != 0 ||
      opts.max_body_size != MAX_BODY || opts.max_header_size != MAX_HEADER) {
    fprintf(stderr, "bh_options_parse refused the fuzzer's options\n");
    exit(1);
  }
  opts.host = "127.0.0.1";
  for (i = 0; i < NAPIS; i++) {
    apis[i].name = (char *)names[i];
    apis[i].route = (char *)routes[i];
    apis[i].route_len = strlen(routes[i]);
    apis[i].index = i;
  }
  apis[API_META].needs_request = 1;
  apis[API_STREAM].is_stream = 1;
  docs[0].path = "/schema.json";
  docs[0].content_type = "application/json";
  docs[0].body = "{\"name\":\"Fuzz\"}";
  docs[0].len = strlen(docs[0].body);
  docs[0].next = &docs[1];
  docs[1].path = "/";
  docs[1].content_type = "text/html; charset=utf-8";
  docs[1].body = "<html>fuzz</html>";
  docs[1].len = strlen(docs[1].body);

  worker.index = 1;
  worker.opts = &opts;
  worker.documents = &docs[0];
  worker.config.name = "Fuzz";
  worker.config.apis = apis;
  worker.config.napis = NAPIS;
  worker.config.timeout_s = 30;
  worker.config.workers = 1;
  /* one slot: the driver takes it for some inputs to make the server refuse */
  worker.config.max_concurrency = 1;
  /* CORS on, so that its header capture, preflights and lines are fuzzed too */
  worker.config.cors = (char *)"{\"allow_origins\":[\"https://a.test\"],\"allow_origin_regex\":"
                               "\"^(https://[a-z]*\\\\.b\\\\.test)$\",\"allow_methods\":[\"GET\",\"POST\"],"
                               "\"allow_headers\":[\"X-A\"],\"allow_credentials\":true,"
                               "\"expose_headers\":[\"X-E\"],\"max_age\":5}";
  worker.shm = bh_shm_create();
  if (worker.shm == NULL) {
    perror("bh_shm_create");
    exit(1);
  }
  atomic_store(&worker.alive, 1);
  atomic_store(&worker.ready, 1);

  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&server_addr, 0, sizeof(server_addr));
  server_addr.sin_family = AF_INET;
  server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  /* inherited by the accepted sockets: a send buffer that large responses
   * overflow, so that the server queues writes */
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  if (fd < 0 || bind(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) ||
      listen(fd, 128) || getsockname(fd, (struct sockaddr *)&server_addr, &slen)) {
    perror("listen");
    exit(1);
  }
  worker.listen_fd = fd;
  err = bh_io_start(&worker);
  if (err != 0) {
    fprintf(stderr, "bh_io_start: %s\n", strerror(-err));
    exit(1);
  }
  /* The I/O thread took SIGTERM for its graceful drain; the fuzzer should
   * just stop on it (libFuzzer installs its own handler after this). */
  signal(SIGTERM, SIG_DFL);
  if (pthread_create(&th, NULL, py_thread, NULL) != 0) {
    perror("pthread_create");
    exit(1);
  }
  pthread_detach(th);
  return 0;
}

/* ---------------------------------------------------------------- the client */

typedef struct {
  char *buf;
  size_t len;
  int eof, reset;
  int cut; /* reset, or more than RESP_CAP bytes: the end may be missing */
} resp_t;

static void resp_read(int fd, resp_t *r) {
  char tmp[65536];
  for (;;) {
    ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n > 0) {
      size_t k = (size_t)n;
      if (r->len + k > RESP_CAP) {
        k = RESP_CAP - r->len;
        r->cut = 1;
      }
      memcpy(r->buf + r->len, tmp, k);
      r->len += k;
      continue;
    }
    if (n == 0)
      r->eof = 1;
    else if (errno == EINTR)
      continue;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      r->reset = r->cut = r->eof = 1;
    return;
  }
}

/* Waits up to us microseconds for input (or output room when want_out) and
 * reads what came. */
static void pump(int fd, resp_t *r, long us, int want_out) {
  struct pollfd pfd = {fd, (short)(POLLIN | (want_out ? POLLOUT : 0)), 0};
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  if (r->eof)
    return;
  if (ppoll(&pfd, 1, &ts, NULL) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)))
    resp_read(fd, r);
}

static int send_all(int fd, const char *p, size_t n, resp_t *r) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pump(fd, r, 10000, 1);
      if (r->eof)
        return -1;
      continue;
    }
    return -1; /* the server closed (EPIPE, ECONNRESET): read what it said */
  }
  return 0;
}

/* small_window: a tiny receive buffer, so that the server's writes do not all
 * fit in the socket and are queued (respond.c's write callback path). */
static int connect_server(int small_window) {
  int tries;
  for (tries = 0; tries < 500; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rcvbuf = 2048;
    if (fd < 0)
      FAIL("socket: %s", strerror(errno));
    if (small_window)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int r = connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr));
    if (r != 0 && errno == EINTR) {
      /* libFuzzer's timer signal: the connection goes on without us */
      struct pollfd pfd = {fd, POLLOUT, 0};
      socklen_t elen = sizeof(int);
      int soerr = 0;
      while (poll(&pfd, 1, 1000) < 0 && errno == EINTR)
        ;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen);
      r = soerr ? -1 : 0;
      errno = soerr;
    }
    if (r == 0) {
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    close(fd);
    if (errno != EADDRNOTAVAIL && errno != ECONNREFUSED && errno != EAGAIN)
      FAIL("connect: %s", strerror(errno));
    usleep(10000); /* out of ephemeral ports for a moment */
  }
  FAIL("cannot connect to the server");
}

/* ---------------------------------------------------------------- the checks */

static void wait_idle(void) {
  bh_io_t *io = bh_io_get();
  uint64_t deadline = now_ms() + IDLE_DEADLINE_MS;
  for (;;) {
    size_t nconns = __atomic_load_n(&io->nconns, __ATOMIC_ACQUIRE);
    size_t inflight = __atomic_load_n(&io->inflight, __ATOMIC_ACQUIRE);
    long held = atomic_load(&fuzz_held);
    if (nconns == 0 && inflight == 0 && held == 0 && !atomic_load(&py_busy) &&
        fuzz_dir_entries(tmp_dir) == 0)
      return;
    if (now_ms() > deadline)
      FAIL("server not idle %d ms after the client left: connections=%zu in_python=%zu "
           "limiter_held=%ld temp_dir_empty=%d",
           IDLE_DEADLINE_MS, nconns, inflight, held, fuzz_dir_entries(tmp_dir) == 0);
    usleep(20);
  }
}

static const char *find(const char *p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  for (; p + n <= end; p++)
    if (memcmp(p, lit, n) == 0)
      return p;
  return NULL;
}

static void dump(const char *why, const resp_t *r, size_t at) {
  size_t from = at > 200 ? at - 200 : 0, i;
  fprintf(stderr, "FUZZ INVARIANT: %s at byte %zu of %zu response bytes%s; around it:\n", why,
          at, r->len, r->reset ? " (connection reset)" : "");
  for (i = from; i < r->len && i < at + 200; i++) {
    unsigned char ch = (unsigned char)r->buf[i];
    if (i == at)
      fputs("<<HERE>>", stderr);
    if (ch == '\n' || (ch >= 0x20 && ch < 0x7f && ch != '\\'))
      fputc(ch, stderr);
    else
      fprintf(stderr, "\\x%02x", ch);
  }
  fputc('\n', stderr);
  abort();
}

/* Walks the responses. may_head: the input may hold HEAD requests, whose
 * responses announce a content-length without a body. */
static void check_responses(const resp_t *r, int may_head) {
  const char *buf = r->buf, *end = r->buf + r->len, *p = buf;

  while (p < end) {
    const char *hend, *line, *q;
    long long clen = -1;
    int chunked = 0, close = 0, status, i;

    if ((size_t)(end - p) < 13 || (hend = find(p, end, "\r\n\r\n")) == NULL) {
      size_t k = (size_t)(end - p) < 9 ? (size_t)(end - p) : 9;
      if (memcmp(p, "HTTP/1.1 ", k) != 0)
        dump("response does not start with HTTP/1.1", r, (size_t)(p - buf));
      if (r->cut)
        return; /* cut by a reset */
      dump("incomplete response head", r, (size_t)(p - buf));
    }
    if (memcmp(p, "HTTP/1.1 ", 9) != 0)
      dump("response does not start with HTTP/1.1", r, (size_t)(p - buf));
    for (i = 9; i < 12; i++)
      if (p[i] < '0' || p[i] > '9')
        dump("status is not 3 digits", r, (size_t)(p - buf));
    if (p[12] != ' ')
      dump("no space after the status", r, (size_t)(p - buf));
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 100 || status > 599)
      dump("status out of range", r, (size_t)(p - buf));
    for (q = p; q < hend; q++) {
      if (*q == '\n' && (q == p || q[-1] != '\r'))
        dump("bare LF in the response head", r, (size_t)(q - buf));
      if (*q == '\r' && q[1] != '\n')
        dump("bare CR in the response head", r, (size_t)(q - buf));
    }
    line = memchr(p, '\n', (size_t)(hend - p) + 2) + 1;
    while (line < hend + 2) {
      const char *eol = find(line, hend + 2, "\r\n");
      const char *colon = memchr(line, ':', (size_t)(eol - line));
      size_t nlen;
      if (colon == NULL || colon == line)
        dump("header line without a name", r, (size_t)(line - buf));
      nlen = (size_t)(colon - line);
      if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
        if (clen >= 0)
          dump("two content-lengths", r, (size_t)(line - buf));
        clen = strtoll(colon + 1, NULL, 10);
        if (clen < 0)
          dump("negative content-length", r, (size_t)(line - buf));
      } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
        chunked = 1;
      } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
        close = find(colon, eol, "close") != NULL;
      }
      line = eol + 2;
    }
    if (chunked && clen >= 0)
      dump("content-length and transfer-encoding together", r, (size_t)(p - buf));
    p = hend + 4;
    if (status == 100) {
      if (clen >= 0 || chunked)
        dump("100 Continue with a body", r, (size_t)(p - buf));
      continue;
    }
    if (clen >= 0) {
      int body_fits = end - p >= clen;
      int next_ok = body_fits && (p + clen == end || (end - (p + clen) >= 9 &&
                                  memcmp(p + clen, "HTTP/1.1 ", 9) == 0));
      if (next_ok) {
        p += clen;
      } else if (may_head && (p == end || (end - p >= 9 && memcmp(p, "HTTP/1.1 ", 9) == 0))) {
        /* a response to HEAD: no body */
      } else if (!body_fits && !r->cut) {
        dump("response body shorter than its content-length", r, (size_t)(p - buf));
      } else if (!body_fits) {
        return; /* cut by a reset */
      } else {
        dump("bytes after a response body", r, (size_t)(p + clen - buf));
      }
    } else if (chunked) {
      /* A stream: the server closes it when the client half-closes under it,
       * so it may end anywhere, but what is there must be chunked coding. */
      for (;;) {
        const char *eol = find(p, end, "\r\n");
        char *stop;
        long long n;
        if (eol == NULL)
          return;
        n = strtoll(p, &stop, 16);
        if (stop != eol || n < 0 || stop == p)
          dump("bad chunk size line", r, (size_t)(p - buf));
        p = eol + 2;
        if (n == 0) {
          if (end - p < 2)
            return;
          if (memcmp(p, "\r\n", 2) != 0)
            dump("last chunk without its CRLF", r, (size_t)(p - buf));
          p += 2;
          break;
        }
        if (end - p < n + 2)
          return;
        if (memcmp(p + n, "\r\n", 2) != 0)
          dump("chunk data without its CRLF", r, (size_t)(p + n - buf));
        p += n + 2;
      }
    } else {
      if (!close)
        dump("response with neither length nor chunking nor connection: close", r,
             (size_t)(p - buf));
      return; /* an HTTP/1.0 stream: the rest is its body */
    }
    if (close && p != end)
      dump("bytes after a connection: close response", r, (size_t)(p - buf));
  }
}

/* ---------------------------------------------------------------- one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char *respbuf;
  const char *in = (const char *)data;
  uint64_t h = fuzz_hash(data, size), deadline;
  size_t cuts[4], ncuts = 0, i, prev = 0;
  struct linger lg = {1, 0};
  resp_t r;
  int fd, may_head, refuse;

  if (respbuf == NULL && (respbuf = malloc(RESP_CAP)) == NULL)
    abort();
  memset(&r, 0, sizeof(r));
  r.buf = respbuf;

  /* per-input knobs from the hash: cuts, a refusing limiter, /readyz, a small
   * client receive window */
  switch ((h >> 3) % 4) {
  case 2:
    cuts[ncuts++] = (size_t)((h >> 16) % (size + 1));
    break;
  case 3:
    cuts[ncuts++] = (size_t)((h >> 16) % (size + 1));
    cuts[ncuts++] = (size_t)((h >> 40) % (size + 1));
    if (cuts[0] > cuts[1]) {
      size_t t = cuts[0];
      cuts[0] = cuts[1];
      cuts[1] = t;
    }
    break;
  }
  cuts[ncuts++] = size;
  /* the service at its max_concurrency: API requests get 429 */
  refuse = (h >> 5) % 8 == 0;
  if (refuse && __real_bh_limiter_acquire(&worker) != 0)
    FAIL("the limiter is full before the input: a slot leaked");
  atomic_store(&worker.ready, (h >> 8) % 4 != 0);
  may_head = size >= 4 && find(in, in + size, "HEAD") != NULL;

  fd = connect_server((h >> 12) % 4 == 0);
  for (i = 0; i < ncuts; i++) {
    if (send_all(fd, in + prev, cuts[i] - prev, &r) != 0)
      break;
    prev = cuts[i];
    if (i + 1 < ncuts)
      pump(fd, &r, 200, 0); /* let the server read this piece on its own */
  }
  shutdown(fd, SHUT_WR);
  deadline = now_ms() + CLOSE_DEADLINE_MS;
  while (!r.eof) {
    pump(fd, &r, 50000, 0);
    if (!r.eof && now_ms() > deadline)
      FAIL("the server kept the connection open %d ms after the client half-closed "
           "(%zu response bytes so far)",
           CLOSE_DEADLINE_MS, r.len);
  }
  wait_idle();
  /* no TIME_WAIT: the server is done with the connection */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  if (refuse)
    __real_bh_limiter_release(&worker);
  check_responses(&r, may_head);
  return 0;
}
