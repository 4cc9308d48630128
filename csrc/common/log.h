/* One log line to stderr, prefixed "[bentohost] ", written with a single
 * write() so that lines of the supervisor and its workers never interleave. */
#ifndef BH_COMMON_LOG_H
#define BH_COMMON_LOG_H

void bh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
