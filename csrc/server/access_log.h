/* The access log and the request id, both owned by the I/O thread.
 *
 * Every response ends in one access line (server/access_log.c); every response
 * carries `x-request-id`: the client's, when it sent a valid one, else one made
 * here. The calls: parse.c hands over the header, respond.c and stream.c say
 * where a response begins and how many body bytes it carries, conn.c where it
 * ends, and io.c starts and stops the writer. */
#ifndef BH_SERVER_ACCESS_LOG_H
#define BH_SERVER_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

struct bh_conn;
struct bh_io;

/* A client's X-Request-ID longer than this is replaced by a generated one. */
#define BH_RID_MAX 64

/* Per connection, the message being answered (a field of bh_conn_t). */
typedef struct bh_access {
  int status;          /* of the response under way; 0: none begun */
  int method_known;    /* parser.method is this message's */
  uint64_t bytes;      /* its body bytes so far */
  int rid_state;       /* RID_* in access_log.c */
  size_t rid_len;
  char rid[BH_RID_MAX + 1];
} bh_access_t;

/* io.c: once the server listens (0, or a negative errno: serving goes on
 * without access lines), and when the loop finishes (the last lines out). */
int bh_access_log_start(struct bh_io *io);
void bh_access_log_stop(struct bh_io *io);

/* parse.c: a new message; a piece of its X-Request-ID value (line: a new
 * header line began, so a second one makes the client's id ambiguous). */
void bh_access_message(struct bh_conn *c);
void bh_access_rid_piece(struct bh_conn *c, const char *at, size_t len, int line);

/* The current message's id: the client's valid one, else generated once. */
const char *bh_request_id(struct bh_conn *c);
/* The same when it was generated here; NULL when it is the client's. */
const char *bh_request_id_made(struct bh_conn *c);
/* The same, for a response head, unless its extra header lines (Python's)
 * already say x-request-id: then NULL. */
const char *bh_request_id_for_head(struct bh_conn *c, const char *extra, size_t extra_len);

/* respond.c, stream.c: a response begins, with this many body bytes so far
 * (0 for HEAD); stream chunks add theirs. */
void bh_access_begin(struct bh_conn *c, int status, uint64_t bytes);
static inline void bh_access_bytes(bh_access_t *a, uint64_t n) {
  a->bytes += n;
}
/* conn.c: the response is on the wire, or the connection closes under it; a
 * request that reached Python and never got a response begun is logged as 499. */
void bh_access_end(struct bh_conn *c);

#endif
