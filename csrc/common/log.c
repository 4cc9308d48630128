/* The host's log: one line per call on stderr, as text or JSON lines (log.h
 * shows both), with the time, a level and the origin (service/worker). */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024 /* a message; JSON escapes may grow it up to 6 times */

typedef struct origin {
  char text[96];  /* "Hello/2", or "supervisor" */
  char json[224]; /* "service":"Hello","worker":2 */
} origin_t;

/* Two slots: a new origin is written into the one not in use, then published
 * with one atomic store, so a thread formatting a line never sees half a name.
 * The origin changes at most twice per process (at fork, at publish). */
static origin_t origins[2] = {
    {"supervisor", "\"service\":\"supervisor\",\"worker\":0"},
};
static _Atomic(origin_t *) current = &origins[0];
static int json_lines;

void bh_log_set_json(int json) {
  json_lines = json;
}

int bh_log_json(void) {
  return json_lines;
}

void bh_log_set_origin(const char *service, int worker) {
  origin_t *o = atomic_load(&current) == &origins[0] ? &origins[1] : &origins[0];
  char name[80];
  size_t used, n;

  if (service == NULL || *service == '\0')
    service = "bentohost";
  n = bh_log_escape(name, sizeof(name) - 1, service, strlen(service), BH_ESC_JSON, &used);
  name[n] = '\0';
  if (worker <= 0) {
    snprintf(o->text, sizeof(o->text), "%.80s", service);
    snprintf(o->json, sizeof(o->json), "\"service\":\"%s\",\"worker\":0", name);
  } else {
    snprintf(o->text, sizeof(o->text), "%.80s/%d", service, worker);
    snprintf(o->json, sizeof(o->json), "\"service\":\"%s\",\"worker\":%d", name, worker);
  }
  atomic_store(&current, o);
}

const char *bh_log_origin_json(void) {
  return atomic_load(&current)->json;
}

/* The formatted second is kept per thread: most lines of a busy worker fall
 * into the same second, and gmtime_r() is the costly part. */
void bh_log_time(char out[BH_LOG_TIME_LEN + 1]) {
  static _Thread_local time_t cached_sec = -1;
  static _Thread_local char cached[20];
  struct timespec ts;
  struct tm tm;
  unsigned ms;

  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    gmtime_r(&ts.tv_sec, &tm);
    strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = ts.tv_sec;
  }
  ms = (unsigned)(ts.tv_nsec / 1000000);
  memcpy(out, cached, 19);
  out[19] = '.';
  out[20] = (char)('0' + ms / 100);
  out[21] = (char)('0' + ms / 10 % 10);
  out[22] = (char)('0' + ms % 10);
  out[23] = 'Z';
  out[24] = '\0';
}

/* Copied piece by piece, no snprintf(): the access log calls this per request. */
size_t bh_log_prefix(char *buf, size_t cap, const char *level) {
  const char *origin = atomic_load(&current)->text;
  size_t nl = strlen(level), no = strlen(origin), n = BH_LOG_TIME_LEN + nl + no + 5;
  char t[BH_LOG_TIME_LEN + 1];

  if (n >= cap)
    return 0;
  bh_log_time(t);
  memcpy(buf, t, BH_LOG_TIME_LEN);
  buf[BH_LOG_TIME_LEN] = ' ';
  memcpy(buf + BH_LOG_TIME_LEN + 1, level, nl);
  memcpy(buf + BH_LOG_TIME_LEN + 1 + nl, " [", 2);
  memcpy(buf + BH_LOG_TIME_LEN + 3 + nl, origin, no);
  memcpy(buf + n - 2, "] ", 2);
  buf[n] = '\0';
  return n;
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len, i;
  unsigned char lo = 0x80, hi = 0xBF;

  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    len = 2;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    len = 3;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    len = 4;
  else
    return 0;
  if (len > n)
    return 0;
  /* no overlong forms, no surrogates, nothing above U+10FFFF */
  if (s[0] == 0xE0)
    lo = 0xA0;
  else if (s[0] == 0xED)
    hi = 0x9F;
  else if (s[0] == 0xF0)
    lo = 0x90;
  else if (s[0] == 0xF4)
    hi = 0x8F;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return len;
}

size_t bh_log_escape(char *out, size_t cap, const char *s, size_t n, int flags, size_t *used) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, o = 0;

  while (i < n) { /* one input byte or sequence per turn: bounded by n */
    unsigned char ch = p[i];
    char esc[8];
    size_t k = 0, take = 1;

    if (ch == '"' || ch == '\\') {
      esc[k++] = '\\';
      esc[k++] = (char)ch;
    } else if ((flags & BH_ESC_JSON) && (ch == '\n' || ch == '\r' || ch == '\t')) {
      esc[k++] = '\\';
      esc[k++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
    } else if (ch >= 0x80 && (flags & BH_ESC_UTF8) && (take = utf8_len(p + i, n - i)) > 0) {
      if (o + take > cap)
        break;
      memcpy(out + o, p + i, take);
      o += take;
      i += take;
      continue;
    } else if (ch < 0x20 || ch >= 0x7f) {
      take = 1;
      esc[k++] = '\\';
      if (flags & BH_ESC_JSON) {
        memcpy(esc + k, "u00", 3);
        k += 3;
      } else {
        esc[k++] = 'x';
      }
      esc[k++] = hex[ch >> 4];
      esc[k++] = hex[ch & 15];
    } else {
      esc[k++] = (char)ch;
    }
    if (o + k > cap)
      break;
    memcpy(out + o, esc, k);
    o += k;
    i += take;
  }
  *used = i;
  return o;
}

static const char *level_of(const char *msg) {
  if (strncmp(msg, "error:", 6) == 0)
    return "ERROR";
  if (strncmp(msg, "warning:", 8) == 0)
    return "WARNING";
  return "INFO";
}

void bh_log(const char *fmt, ...) {
  char msg[LINE_MAX_BYTES], line[LINE_MAX_BYTES * 6 + 256];
  const char *level;
  size_t n, used, len;
  va_list ap;
  int m;

  va_start(ap, fmt);
  m = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  len = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
  level = level_of(msg);
  if (json_lines) {
    char t[BH_LOG_TIME_LEN + 1];
    bh_log_time(t);
    n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",%s,\"message\":\"", t,
                         level, bh_log_origin_json());
    n += bh_log_escape(line + n, sizeof(line) - n - 3, msg, len, BH_ESC_JSON | BH_ESC_UTF8, &used);
    line[n++] = '"';
    line[n++] = '}';
  } else {
    n = bh_log_prefix(line, sizeof(line), level);
    memcpy(line + n, msg, len);
    n += len;
  }
  line[n++] = '\n';
  /* One write per line so that lines of several processes never interleave. */
  ssize_t unused = write(STDERR_FILENO, line, n);
  (void)unused;
}
