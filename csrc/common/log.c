/* The host's log: one line per call on stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void bh_log(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  int n = snprintf(line, sizeof(line), "[bentohost] ");
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  /* One write per line so that lines of several processes never interleave. */
  ssize_t unused = write(STDERR_FILENO, line, (size_t)n);
  (void)unused;
}
