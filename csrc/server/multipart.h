/* Incremental multipart/form-data parser (multipart.c), used by the I/O thread
 * while a request body arrives: file parts go straight to files in a
 * per-request temp dir, plain fields stay in memory, the body is never
 * buffered whole. The temp dir is in TMPDIR (else /tmp), or in memory
 * (/dev/shm) for a small body with BENTOHOST_UPLOADS_IN_MEMORY=1 and room. Independent of libuv and llhttp so that it can be unit
 * tested on its own (tests/c/test_multipart.c). */
#ifndef BH_SERVER_MULTIPART_H
#define BH_SERVER_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "common/fs.h"
#include "common/request.h"

typedef struct bh_multipart bh_multipart_t;

typedef struct bh_multipart_limits {
  uint64_t max_mem;          /* bytes of the plain fields (in memory) */
  size_t max_parts;          /* --max-multipart-parts */
  size_t max_header_bytes;   /* --max-multipart-header-size, all parts together */
  uint64_t body_len;         /* the request's Content-Length, 0 when unknown (chunked) */
  /* File parts kept in memory, not written (bh_part_t data, no path), when
   * body_len is known and at most BH_MULTIPART_MEMORY_MAX: those named in
   * memory_fields, or every one with memory_any. */
  char *const *memory_fields;
  size_t nmemory_fields;
  int memory_any;
} bh_multipart_limits_t;

#define BH_MULTIPART_MEMORY_MAX ((uint64_t)16 << 20)

/* Whether a Content-Type's media type is multipart/form-data. */
int bh_multipart_match(const char *ctype, size_t len);

/* Starts a parser for a request with Content-Type ctype. 0, -ENOMEM, or
 * -EINVAL when the boundary is missing or unusable (then *out is still a
 * parser, in its error state, so that the caller reads the reason; free it).
 * Over a limit the parser fails with 413. */
int bh_multipart_new(bh_multipart_t **out, const char *ctype, size_t len,
                     const bh_multipart_limits_t *limits);
/* 0, or negative once the body is known to be invalid (see _status/_error). */
int bh_multipart_feed(bh_multipart_t *mp, const char *data, size_t len);
/* The body ended: 0 and the parts and temp dir move to req (req->body stays
 * as it is), or negative when the body was incomplete or invalid. */
int bh_multipart_finish(bh_multipart_t *mp, bh_req_t *req);
/* After a failure: the HTTP status to answer (400, 413 or 500) and the reason. */
int bh_multipart_status(const bh_multipart_t *mp);
const char *bh_multipart_error(const bh_multipart_t *mp);
/* Frees the parser; removes its temp dir unless finish handed it over. */
void bh_multipart_free(bh_multipart_t *mp);

#endif
