/* A worker process, right after fork(): prepares signals for the two-thread
 * model, runs the Python host on this (the main) thread and exits with its code. */
#include "bh.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

int bh_worker_main(bh_worker_t *w) {
  sigset_t mask;

  /* SIGTERM must reach the I/O thread (it unblocks it for itself), never the
   * Python thread; threads started later from here inherit this mask. */
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  /* Ctrl-C reaches the whole process group: the supervisor turns it into an
   * orderly SIGTERM for each worker, so workers ignore it themselves. */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  atomic_store(&w->alive, 1);

  int code = bh_pyhost_run(w);
  if (code == 0 && w->io_started)
    bh_io_join(w);
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}

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
