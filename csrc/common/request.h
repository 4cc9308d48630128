/* A request on its way from the I/O thread to Python and back, and the
 * messages Python sends about it. Shared by the server, the batcher, the
 * bridge and the Python host; allocated and freed by the I/O thread. */
#ifndef BH_COMMON_REQUEST_H
#define BH_COMMON_REQUEST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* A multipart/form-data part, parsed by C. File parts are streamed to a file in
 * the request's temp_dir; other parts are kept in memory. */
typedef struct bh_part {
  char *name;
  char *filename;      /* NULL for plain fields */
  char *content_type;  /* NULL if the part had none */
  char *path;          /* file parts: where the content was written */
  uint64_t ino;        /* file parts: its inode, to know it again (common/spool.h) */
  char *data;          /* plain fields: the value */
  size_t len;          /* bytes of content (file or data) */
} bh_part_t;

enum {
  BH_REQ_TIMED_OUT = 1 << 0,  /* C answered 504; Python's result is dropped */
  BH_REQ_GONE = 1 << 1,       /* the client went away */
  BH_REQ_STREAMING = 1 << 2,  /* response headers sent, chunks follow */
  BH_REQ_WANT_WRITABLE = 1 << 3, /* Python waits for a BH_IN_WRITABLE event */
};

/* A batch's input decoded by C into one array (traffic/rows.c), held by the
 * batch's head request until Python takes it. */
#define BH_ROWS_MAX_DIMS 32
typedef struct bh_rows {
  char *data;               /* malloc'd, the shape's product × itemsize bytes */
  size_t len;
  int ndim;
  int64_t shape[BH_ROWS_MAX_DIMS]; /* the members' rows together, then the trailing dims */
  uint32_t *counts;         /* rows of each member, in batch order */
  size_t nmembers;
} bh_rows_t;

/* One HTTP request on its way to Python and back. Allocated by the I/O thread and
 * freed by it, only after Python's final message for it (complete or stream_end)
 * has been processed: a handle Python holds is always valid. */
typedef struct bh_req {
  void *conn;            /* the connection, owned by the I/O thread */
  int api_index;
  char *body;            /* malloc'd request body (may be NULL when empty) */
  size_t body_len;
  char *content_type;    /* malloc'd, NUL-terminated, NULL if absent */

  /* Request metadata, kept when the API needs_request or the body is multipart. */
  char *head;            /* raw request line + header lines, as received */
  size_t head_len;
  char client[64];       /* "ip:port" of the peer */
  char *temp_dir;        /* per-request directory, removed (or spooled) after the response */
  bh_part_t *parts;      /* multipart parts (body is then NULL) */
  size_t nparts;

  /* Batching (traffic/batch.c): members of one batch, head first; items this
   * request carries; a request split across batches points at its parent. */
  struct bh_req *batch_next;
  struct bh_req *split_parent;
  uint32_t items;
  bh_rows_t *rows;       /* the head's: the batch's input decoded by C, or NULL */

  uint64_t start_ns;     /* arrival, CLOCK_MONOTONIC */

  /* An outbound call's carrier (BH_OUT_CALL there, BH_IN_RESPONSE back):
   * Python's id for it, and the response's status (< 0: a negative errno);
   * the response's headers travel in head, its body in body. */
  uint64_t call_id;
  uint64_t call_timeout_ms;  /* 0: none */
  int call_status;
  int call_stream;           /* the response goes back as it arrives (BH_IN_RESPONSE_DATA) */
  struct bh_waiter *waiter;  /* a thread blocked on the response (common/waiter.h), or NULL */
  _Atomic uint32_t flags;          /* BH_REQ_* */
  _Atomic int64_t pending_bytes;   /* streamed bytes not yet written to the socket */
} bh_req_t;

/* Frees the request, its parts and its temp dir (recursively). */
void bh_req_free(bh_req_t *req);
/* Whether a Content-Type value's media type is want (case-insensitive; what
 * follows may only be parameters). NULL is no type. */
static inline int bh_media_type_is(const char *ctype, const char *want) {
  size_t n = strlen(want);
  if (ctype == NULL || strncasecmp(ctype, want, n) != 0)
    return 0;
  return ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ' || ctype[n] == '\t';
}

/* Back to the I/O thread: what Python says about a request. One allocation
 * holds the message and its strings (content_type, headers and data point into
 * the same block). */
typedef enum bh_out_kind {
  BH_OUT_COMPLETE = 0,     /* the whole response; final */
  BH_OUT_STREAM_START = 1, /* status + headers of a chunked response */
  BH_OUT_CHUNK = 2,        /* one chunk of a streamed body */
  BH_OUT_STREAM_END = 3,   /* the end of a streamed body; final */
  BH_OUT_CALL = 4,         /* a call to a dependency: status = its index, content_type
                              = the route, headers and data the request's */
  BH_OUT_CALL_CANCEL = 5,  /* the caller gave up: data holds the call's uint64_t id */
  BH_OUT_CALL_ACK = 6,     /* Python consumed streamed bytes: data holds the call's
                              uint64_t id, then the uint64_t byte count */
} bh_out_kind_t;

typedef struct bh_out {
  struct bh_out *next;
  bh_req_t *req;
  bh_out_kind_t kind;
  int status;
  const char *content_type;  /* NUL-terminated, or NULL */
  const char *headers;       /* extra header lines "Name: value\r\n"..., or NULL */
  size_t headers_len;
  const char *data;          /* body or chunk */
  size_t len;
} bh_out_t;

/* Allocates a message with room for the strings and copies them in. */
bh_out_t *bh_out_new(bh_req_t *req, bh_out_kind_t kind, int status,
                     const char *content_type, size_t content_type_len,
                     const char *headers, size_t headers_len,
                     const char *data, size_t len);

/* The same, with the data given as nparts pieces copied one after another
 * (a call's body from Python's parts: one copy, no join first). */
bh_out_t *bh_out_new_parts(bh_req_t *req, bh_out_kind_t kind, int status,
                           const char *content_type, size_t content_type_len,
                           const char *headers, size_t headers_len,
                           const char *const *parts, const size_t *lens, size_t nparts);

/* Streaming back-pressure: Python stops advancing a generator once more than the
 * high-water mark is queued for a socket, and is woken (BH_IN_WRITABLE) once the
 * queue drains below the low-water mark. */
#define BH_STREAM_HIGH_WATER (1 << 20)
#define BH_STREAM_LOW_WATER (256 << 10)

#endif
