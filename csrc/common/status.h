/* The status pipe from workers to the supervisor, and the exit codes a worker
 * uses to say why it stopped. One line per message:
 * "<kind> <index> <pid> [payload]\n". */
#ifndef BH_COMMON_STATUS_H
#define BH_COMMON_STATUS_H

#include <stddef.h>

/* 0 or a negative errno; one write per message (see status.c). */
int bh_status_send(int fd, const char *kind, int index, const char *payload, size_t len);

/* Exit codes of a worker that the supervisor understands. */
#define BH_EXIT_LOAD_FAILED 3   /* the service could not be imported: fatal before the
                                   config is known, a start-up failure after */
#define BH_EXIT_START_FAILED 4  /* instance or on_startup failed: respawn with backoff */
#define BH_EXIT_PLACE 75        /* the reporting worker described the graph and must run
                                   elsewhere (its GPUs, its CPUs: bentohost/_placement.py):
                                   start it again at once, placed, not a failure */

#endif
