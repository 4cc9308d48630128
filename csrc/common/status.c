/* Writing status lines to the supervisor (read by supervisor/supervisor.c). */
#include "common/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bh_status_send(int fd, const char *kind, int index, const char *payload, size_t len) {
  char head[64];
  int hn = snprintf(head, sizeof(head), "%s %d %d%s", kind, index, (int)getpid(),
                    payload ? " " : "");
  size_t total = (size_t)hn + len + 1;
  char *msg = malloc(total);
  if (msg == NULL)
    return -ENOMEM;
  memcpy(msg, head, (size_t)hn);
  if (payload)
    memcpy(msg + hn, payload, len);
  msg[total - 1] = '\n';
  /* One write per message: writes up to PIPE_BUF never interleave with other
   * workers' lines; the only long message (config) is sent before any other
   * worker exists. */
  size_t off = 0;
  int rc = 0;
  while (off < total) {
    ssize_t n = write(fd, msg + off, total - off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      break;
    }
    off += (size_t)n;
  }
  free(msg);
  return rc;
}
