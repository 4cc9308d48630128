/* The access log: one line per request on stdout, built by the I/O thread when
 * the response ends (its last byte taken by the socket, the end of a stream, or
 * the connection closing under it), and the request id every response carries.
 *
 *   text: <time> INFO [Hello/2] 127.0.0.1:40312 "POST /hello HTTP/1.1" 200 27 1.234ms id=9f86d081884c7d65
 *   json: {"time":..,"client":..,"method":..,"path":..,"version":..,"status":..,"bytes":..,
 *          "duration_ms":..,"request_id":..,"service":..,"worker":..}
 *
 * Never blocking the loop: the I/O thread collects a loop turn's lines in a
 * buffer of its own (no lock); once per turn (a uv_prepare handle, before the
 * loop waits) they join, under a mutex held for one memcpy, the writer's buffer
 * of at most FILL_MAX bytes, and a writer thread is woken if it sleeps. It takes
 * the whole buffer and writes it: with one write(2) to a regular file; to a pipe or a
 * terminal in pieces of at most PIPE_BUF bytes cut at line ends, which the
 * kernel keeps whole among the other workers' lines. While the output is slow the
 * buffer fills; once full, lines are dropped and counted, and the writer reports
 * the count on stderr when it catches up. The descriptor is shared with the other
 * processes and with Python's sys.stdout, so its flags stay as they are
 * (O_NONBLOCK there would make their writes fail): only the writer ever waits.
 *
 * Request ids: a client's X-Request-ID is kept when it is 1..BH_RID_MAX safe
 * characters (letters, digits, - _ . : + / = @) on one header line; it is meant
 * for a trusted proxy in front, which sets it. Otherwise the id is 16 hex digits,
 * a bijective mix (splitmix64) of a per-worker counter plus a random seed: no
 * system call per request and never the same twice in one worker.
 */
#include "server/access_log.h"
#include "server/internal.h"
#include "common/clock.h"
#include "common/log.h"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILL_MAX ((size_t)2 << 20) /* buffered lines per worker while the output is slow */
#define PATH_MAX_OUT 2048          /* escaped request target in a line; longer is cut */
#define LINE_CAP 4096              /* one line; PIPE_BUF on Linux, so writes stay whole */
#define TURN_CAP (64u << 10)       /* lines of one loop turn before they are handed over */
#define STOP_WAIT_S 2              /* at exit, for the writer to get the last lines out */

/* RID_CLIENT: a client's value being received; RID_KEPT: it was valid. */
enum { RID_NONE, RID_CLIENT, RID_BAD, RID_KEPT, RID_MADE };

static struct {
  int on;                 /* collecting lines (I/O thread) */
  int regular;            /* stdout is a regular file: no PIPE_BUF pieces */
  char turn[TURN_CAP];    /* I/O thread: this loop turn's lines, no lock */
  size_t turn_len;
  uint64_t turn_lines;
  uv_prepare_t prepare;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;    /* the writer: lines, or stop */
  pthread_cond_t gone;    /* the I/O thread at stop: the writer has finished */
  char *fill, *spare;     /* lock: lines being collected; the writer's other buffer */
  size_t fill_len;        /* lock */
  uint64_t dropped;       /* lock: lines refused since the last report */
  int idle, stop, done;   /* lock */
} al;

/* I/O thread only. */
static uint64_t rid_seed, rid_count;

/* ---------------------------------------------------------------- the writer */

/* The whole of p, waiting for the output as long as it takes (descriptors
 * shared with processes that set O_NONBLOCK give EAGAIN); -1 on an error. */
static int write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
      poll(&pfd, 1, 1000);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void write_lines(const char *p, size_t len) {
  while (len > 0) {
    size_t n = len;
    if (!al.regular && n > PIPE_BUF) {
      /* the last line end within PIPE_BUF; a longer line goes alone, whole */
      for (n = PIPE_BUF; n > 0 && p[n - 1] != '\n'; n--)
        ;
      if (n == 0) {
        const char *nl = memchr(p + PIPE_BUF, '\n', len - PIPE_BUF);
        n = nl != NULL ? (size_t)(nl - p) + 1 : len;
      }
    }
    if (write_all(p, n) != 0)
      return; /* the output is gone: these lines with it */
    p += n;
    len -= n;
  }
}

static void *writer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&al.lock);
  for (;;) {
    while (al.fill_len == 0 && !al.stop) {
      al.idle = 1;
      pthread_cond_wait(&al.wake, &al.lock);
      al.idle = 0;
    }
    if (al.fill_len == 0)
      break; /* stopped, and everything is out */
    char *mine = al.fill;
    size_t len = al.fill_len;
    uint64_t dropped = al.dropped;
    al.fill = al.spare;
    al.fill_len = 0;
    al.dropped = 0;
    pthread_mutex_unlock(&al.lock);

    write_lines(mine, len);
    if (dropped > 0)
      bh_log("warning: access log: %llu line(s) dropped, the output did not keep up",
             (unsigned long long)dropped);

    pthread_mutex_lock(&al.lock);
    al.spare = mine;
  }
  al.done = 1;
  pthread_cond_signal(&al.gone);
  pthread_mutex_unlock(&al.lock);
  return NULL;
}

/* This turn's lines join the writer's buffer with one lock, or are counted as
 * dropped when they do not fit; the writer is woken if it sleeps. */
static void hand_off(void) {
  if (al.turn_len == 0)
    return;
  pthread_mutex_lock(&al.lock);
  if (al.fill_len + al.turn_len > FILL_MAX) {
    al.dropped += al.turn_lines;
  } else {
    memcpy(al.fill + al.fill_len, al.turn, al.turn_len);
    al.fill_len += al.turn_len;
  }
  if (al.idle)
    pthread_cond_signal(&al.wake);
  pthread_mutex_unlock(&al.lock);
  al.turn_len = 0;
  al.turn_lines = 0;
}

/* Once per loop turn, before the loop waits. */
static void on_prepare(uv_prepare_t *h) {
  (void)h;
  hand_off();
}

static void push(const char *line, size_t n) {
  if (al.turn_len + n > TURN_CAP)
    hand_off(); /* a busy turn: this much goes now, the rest at its end */
  memcpy(al.turn + al.turn_len, line, n);
  al.turn_len += n;
  al.turn_lines++;
}

static void rid_seed_once(void) {
  if (rid_seed != 0)
    return;
  if (getrandom(&rid_seed, sizeof(rid_seed), GRND_NONBLOCK) != (ssize_t)sizeof(rid_seed))
    rid_seed = bh_now_ns() ^ ((uint64_t)getpid() << 32);
  rid_seed |= 1; /* 0 means "not seeded yet" */
}

int bh_access_log_start(bh_io_t *io) {
  pthread_condattr_t attr;
  sigset_t all, old;
  struct stat st;
  int err;

  rid_seed_once();
  if (!io->w->opts->access_log)
    return 0;
  al.regular = fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode);
  /* Untouched pages of these cost nothing: only a slow output fills them. */
  al.fill = malloc(FILL_MAX);
  al.spare = malloc(FILL_MAX);
  if (al.fill == NULL || al.spare == NULL) {
    free(al.fill);
    free(al.spare);
    al.fill = al.spare = NULL;
    return -ENOMEM;
  }
  al.fill_len = 0;
  al.dropped = 0;
  al.idle = al.stop = al.done = 0;
  pthread_mutex_init(&al.lock, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&al.gone, &attr);
  pthread_condattr_destroy(&attr);
  pthread_cond_init(&al.wake, NULL);

  /* The writer takes no signal: SIGTERM is the I/O thread's, SIGUSR1 Python's. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  err = pthread_create(&al.thread, NULL, writer_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    free(al.fill);
    free(al.spare);
    al.fill = al.spare = NULL;
    return -err;
  }
  uv_prepare_init(&io->loop, &al.prepare);
  uv_prepare_start(&al.prepare, on_prepare);
  al.on = 1;
  return 0;
}

void bh_access_log_stop(bh_io_t *io) {
  struct timespec until;
  int rc = 0;

  (void)io;
  if (!al.on)
    return;
  hand_off();
  al.on = 0;
  uv_close((uv_handle_t *)&al.prepare, NULL);
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += STOP_WAIT_S;
  pthread_mutex_lock(&al.lock);
  al.stop = 1;
  pthread_cond_signal(&al.wake);
  while (!al.done && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&al.gone, &al.lock, &until);
  pthread_mutex_unlock(&al.lock);
  if (!al.done) {
    /* Stuck on an output nobody reads: the process exits without those lines. */
    pthread_detach(al.thread);
    return;
  }
  pthread_join(al.thread, NULL);
  free(al.fill);
  free(al.spare);
  al.fill = al.spare = NULL;
}

/* ---------------------------------------------------------------- request ids */

void bh_access_message(bh_conn_t *c) {
  /* the peer's address while it is surely there: a 499 line comes after it left */
  if (al.on && c->client[0] == '\0')
    bh_conn_client(c);
  c->acc.rid_state = RID_NONE;
  c->acc.rid_len = 0;
  c->acc.method_known = 0;
}

void bh_access_rid_piece(bh_conn_t *c, const char *at, size_t len, int line) {
  bh_access_t *a = &c->acc;

  if (!c->in_head)
    return; /* a trailer of a chunked body: the id was the head's */
  if (line) {
    a->rid_state = a->rid_state == RID_NONE ? RID_CLIENT : RID_BAD; /* two lines: ambiguous */
    return;
  }
  if (a->rid_state != RID_CLIENT)
    return;
  if (a->rid_len + len > BH_RID_MAX) {
    a->rid_state = RID_BAD;
    return;
  }
  memcpy(a->rid + a->rid_len, at, len);
  a->rid_len += len;
}

static int rid_char_ok(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
    return 1;
  switch (ch) {
  case '-': case '_': case '.': case ':': case '+': case '/': case '=': case '@':
    return 1;
  default:
    return 0;
  }
}

/* The client's id without surrounding blanks, if every character is safe. */
static int rid_client_ok(bh_access_t *a) {
  size_t start = 0, len = a->rid_len, i;

  while (start < len && (a->rid[start] == ' ' || a->rid[start] == '\t'))
    start++;
  while (len > start && (a->rid[len - 1] == ' ' || a->rid[len - 1] == '\t'))
    len--;
  if (len == start)
    return 0;
  for (i = start; i < len; i++)
    if (!rid_char_ok((unsigned char)a->rid[i]))
      return 0;
  memmove(a->rid, a->rid + start, len - start);
  a->rid_len = len - start;
  a->rid[a->rid_len] = '\0';
  return 1;
}

const char *bh_request_id(bh_conn_t *c) {
  static const char hex[] = "0123456789abcdef";
  bh_access_t *a = &c->acc;
  uint64_t z;
  int i;

  if (a->rid_state == RID_KEPT || a->rid_state == RID_MADE)
    return a->rid;
  if (a->rid_state == RID_CLIENT && rid_client_ok(a)) {
    a->rid_state = RID_KEPT;
    return a->rid;
  }
  /* splitmix64: seed + n * gamma is distinct for every n, and the mix is a bijection */
  rid_seed_once();
  z = rid_seed + ++rid_count * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  for (i = 15; i >= 0; i--, z >>= 4)
    a->rid[i] = hex[z & 15];
  a->rid[16] = '\0';
  a->rid_len = 16;
  a->rid_state = RID_MADE;
  return a->rid;
}

const char *bh_request_id_made(bh_conn_t *c) {
  const char *rid = bh_request_id(c);
  return c->acc.rid_state == RID_MADE ? rid : NULL;
}

const char *bh_request_id_for_head(bh_conn_t *c, const char *extra, size_t extra_len) {
  const char *p = extra, *end, *nl;

  if (extra == NULL || extra_len == 0) /* no extra lines (NULL + 0 is undefined behaviour) */
    return bh_request_id(c);
  end = extra + extra_len;
  /* one turn per header line: bounded by extra_len */
  while (p != NULL && end - p >= 13) {
    if (strncasecmp(p, "x-request-id:", 13) == 0)
      return NULL;
    nl = memchr(p, '\n', (size_t)(end - p));
    p = nl != NULL ? nl + 1 : NULL;
  }
  return bh_request_id(c);
}

/* ---------------------------------------------------------------- lines */

void bh_access_begin(bh_conn_t *c, int status, uint64_t bytes) {
  c->acc.status = status;
  c->acc.bytes = bytes;
}

/* Milliseconds with three decimals: 1.234 */
static char *put_ms(char *p, uint64_t ns) {
  uint64_t us = ns / 1000u;
  unsigned frac = (unsigned)(us % 1000u);

  p = bh_put_u64(p, us / 1000u);
  *p++ = '.';
  *p++ = (char)('0' + frac / 100);
  *p++ = (char)('0' + frac / 10 % 10);
  *p++ = (char)('0' + frac % 10);
  return p;
}

/* The request target as received, escaped, cut at PATH_MAX_OUT bytes; "-"
 * when the message was refused before it (llhttp reports no partial target). */
static char *put_path(char *p, const bh_conn_t *c, int flags) {
  size_t used, n;

  if (c->url_len == 0)
    return BH_PUT_LIT(p, "-");
  n = bh_log_escape(p, PATH_MAX_OUT, c->url, c->url_len, flags, &used);
  p += n;
  if (used < c->url_len)
    p = BH_PUT_LIT(p, "...");
  return p;
}

static char *put_version(char *p, const bh_conn_t *c) {
  if (c->parser.http_major == 0)
    return BH_PUT_LIT(p, "-");
  p = BH_PUT_LIT(p, "HTTP/");
  *p++ = (char)('0' + c->parser.http_major % 10);
  *p++ = '.';
  *p++ = (char)('0' + c->parser.http_minor % 10);
  return p;
}

static void access_line(bh_conn_t *c, int status, uint64_t bytes) {
  char line[LINE_CAP], *p = line;
  const char *client = bh_conn_client(c), *rid = bh_request_id(c);
  const char *method = c->acc.method_known ? llhttp_method_name((llhttp_method_t)c->parser.method) : "-";
  uint64_t took = bh_now_ns() - c->msg_start_ns;

  if (bh_log_json()) {
    char t[BH_LOG_TIME_LEN + 1];
    bh_log_time(t);
    p = BH_PUT_LIT(p, "{\"time\":\"");
    p = bh_put(p, t, BH_LOG_TIME_LEN);
    p = BH_PUT_LIT(p, "\",\"client\":\"");
    p = bh_put(p, client, strlen(client));
    p = BH_PUT_LIT(p, "\",\"method\":\"");
    p = bh_put(p, method, strlen(method));
    p = BH_PUT_LIT(p, "\",\"path\":\"");
    p = put_path(p, c, BH_ESC_JSON);
    p = BH_PUT_LIT(p, "\",\"version\":\"");
    p = put_version(p, c);
    p = BH_PUT_LIT(p, "\",\"status\":");
    p = bh_put_u64(p, (uint64_t)status);
    p = BH_PUT_LIT(p, ",\"bytes\":");
    p = bh_put_u64(p, bytes);
    p = BH_PUT_LIT(p, ",\"duration_ms\":");
    p = put_ms(p, took);
    p = BH_PUT_LIT(p, ",\"request_id\":\"");
    p = bh_put(p, rid, strlen(rid));
    p = BH_PUT_LIT(p, "\",");
    const char *origin = bh_log_origin_json();
    p = bh_put(p, origin, strlen(origin));
    *p++ = '}';
  } else {
    p += bh_log_prefix(p, 160, "INFO");
    p = bh_put(p, client, strlen(client));
    p = BH_PUT_LIT(p, " \"");
    p = bh_put(p, method, strlen(method));
    *p++ = ' ';
    p = put_path(p, c, 0);
    *p++ = ' ';
    p = put_version(p, c);
    p = BH_PUT_LIT(p, "\" ");
    p = bh_put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = bh_put_u64(p, bytes);
    *p++ = ' ';
    p = put_ms(p, took);
    p = BH_PUT_LIT(p, "ms id=");
    p = bh_put(p, rid, strlen(rid));
  }
  *p++ = '\n';
  push(line, (size_t)(p - line));
}

void bh_access_end(bh_conn_t *c) {
  bh_access_t *a = &c->acc;
  int status = a->status;

  if (status == 0) {
    if (c->active == NULL)
      return;
    status = 499; /* the connection closed before any response (nginx's code) */
    a->bytes = 0;
  }
  a->status = 0;
  if (al.on)
    access_line(c, status, a->bytes);
}
