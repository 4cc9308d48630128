/* The host's log lines, in one format for every process, shared with Python's
 * logging in the workers (bentohost/_worker.py formats its records the same way):
 *
 *   text: 2026-12-02T04:13:01.123Z INFO [Hello/2] message
 *   json: {"time":"2026-12-02T04:13:01.123Z","level":"INFO","service":"Hello","worker":2,"message":"..."}
 *
 * Each line goes to stderr with a single write(), so that lines of the supervisor
 * and its workers never interleave. Also the pieces the access log
 * (server/access_log.c) builds its lines from: the time, the prefix, escaping. */
#ifndef BH_COMMON_LOG_H
#define BH_COMMON_LOG_H

#include <stddef.h>

/* Writes one line. The level comes from the message ("error: ..." is ERROR,
 * "warning: ..." WARNING, the rest INFO), which keeps its words. */
void bh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --log-format json: JSON lines from here on (the supervisor, before any fork). */
void bh_log_set_json(int json);
int bh_log_json(void);

/* Whose lines these are: a worker's service (NULL: not known yet) and index 1..N;
 * worker 0 is the supervisor. Called before a thread that logs starts, or
 * safely while they run (the origin is swapped as one pointer). */
void bh_log_set_origin(const char *service, int worker);

#define BH_LOG_TIME_LEN 24
/* Now as "2026-12-02T04:13:01.123Z" (UTC, milliseconds), NUL-terminated. */
void bh_log_time(char out[BH_LOG_TIME_LEN + 1]);

/* A text line's start, "<time> LEVEL [service/worker] ", into buf; its length
 * (cap of 160 always fits). */
size_t bh_log_prefix(char *buf, size_t cap, const char *level);

/* `"service":"Hello","worker":2` for a JSON line (no braces, no comma around). */
const char *bh_log_origin_json(void);

enum {
  BH_ESC_JSON = 1, /* JSON string escapes (\" \\ \n \u00XX); else \" \\ \xHH */
  BH_ESC_UTF8 = 2, /* valid UTF-8 passes as it is; else bytes >= 0x80 are escaped */
};

/* Escapes n bytes of s into out (control characters, quotes and backslashes
 * always; see the flags), never splitting an escape and never writing more than
 * cap bytes; returns the bytes written and sets *used to the input consumed. */
size_t bh_log_escape(char *out, size_t cap, const char *s, size_t n, int flags, size_t *used);

#endif
