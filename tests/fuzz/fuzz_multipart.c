/* libFuzzer target: the multipart/form-data parser (csrc/server/multipart.c)
 * with the request that receives its parts (common/request.c, common/fs.c).
 *
 * Input: the first line (up to the first '\n', at most 512 bytes) is the
 * Content-Type header value, e.g. "multipart/form-data; boundary=xyz"; the
 * rest is the body. The body is parsed twice: fed whole, and fed in pieces
 * cut where a hash of the input says (sometimes byte by byte), with a
 * max_mem for the fields that is sometimes tiny. Checked:
 *
 *   - any split of the body gives the same result: success or the same
 *     status and reason; the same parts, names, content types, fields and
 *     file contents (multipart.c promises this);
 *   - a failure's status is 400, 413 or 500 with a reason;
 *   - file parts are files of the announced size in the request's temp dir,
 *     under TMPDIR (a directory of this run's own), with safe names; fields
 *     are NUL-terminated (fuzz_check.h);
 *   - the field, part-count and part-header limits (sometimes tiny here)
 *     fail with 413 the same way at any split;
 *   - after bh_multipart_free + bh_req_free nothing is left under TMPDIR but
 *     the spool's reusable dirs and files (common/spool.c), and once the
 *     spool is cleaned up, nothing at all and no file descriptor open. */
#include "common/fs.h"
#include "common/request.h"
#include "common/spool.h"
#include "server/multipart.h"
#include "fuzz_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CTYPE 512

static char tmp_dir[4096];

static void rm_tmp(void) {
  if (tmp_dir[0])
    bh_rmtree(tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *base = getenv("TMPDIR");
  (void)argc;
  (void)argv;
  snprintf(tmp_dir, sizeof(tmp_dir), "%s/bh-fuzz-multipart-XXXXXX",
           base != NULL && base[0] ? base : "/tmp");
  if (mkdtemp(tmp_dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  setenv("TMPDIR", tmp_dir, 1);
  atexit(rm_tmp);
  return 0;
}

/* The lowest free descriptor: it moves up when one is left open. */
static int next_fd(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  close(fd);
  return fd;
}

/* One parse's outcome, kept to compare two splits. */
typedef struct {
  int new_rc, rc, status;
  char err[200];
  bh_req_t *req; /* on success */
  bh_multipart_t *mp;
} outcome_t;

static char *slurp(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *buf;
  ssize_t n;
  if (fd < 0 || fstat(fd, &st) != 0)
    FAIL("cannot open file part %s: %s", path, strerror(errno));
  buf = malloc((size_t)st.st_size + 1);
  n = read(fd, buf, (size_t)st.st_size);
  close(fd);
  if (n != st.st_size)
    FAIL("short read of %s", path);
  *len = (size_t)n;
  return buf;
}

static void parse(outcome_t *o, const char *ctype, size_t clen, const char *body, size_t blen,
                  const size_t *cuts, size_t ncuts, const bh_multipart_limits_t *limits) {
  size_t i, prev = 0;

  memset(o, 0, sizeof(*o));
  o->new_rc = o->rc = bh_multipart_new(&o->mp, ctype, clen, limits);
  if (o->mp == NULL)
    FAIL("bh_multipart_new gave no parser (rc %d)", o->new_rc);
  if (o->new_rc != 0 && o->new_rc != -EINVAL)
    FAIL("bh_multipart_new: unexpected rc %d", o->new_rc);
  for (i = 0; o->rc == 0 && i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : blen;
    o->rc = bh_multipart_feed(o->mp, body + prev, end - prev);
    prev = end;
  }
  if (o->rc == 0) {
    o->req = calloc(1, sizeof(*o->req));
    o->rc = bh_multipart_finish(o->mp, o->req);
    if (o->rc != 0) {
      if (o->req->parts != NULL || o->req->temp_dir != NULL)
        FAIL("a failed finish handed parts over");
      bh_req_free(o->req);
      o->req = NULL;
    }
  }
  if (o->rc != 0) {
    const char *e = bh_multipart_error(o->mp);
    o->status = bh_multipart_status(o->mp);
    if (o->status != 400 && o->status != 413 && o->status != 500)
      FAIL("failure with status %d", o->status);
    if (e == NULL || e[0] == '\0')
      FAIL("failure without a reason");
    snprintf(o->err, sizeof(o->err), "%s", e);
  } else {
    fuzz_check_parts(o->req, tmp_dir, limits->memory_any || limits->nmemory_fields > 0);
  }
}

static int same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void compare(const outcome_t *a, const outcome_t *b) {
  size_t i;
  if ((a->rc == 0) != (b->rc == 0) || a->status != b->status || strcmp(a->err, b->err) != 0)
    FAIL("the split changed the outcome: whole rc=%d status=%d '%s', split rc=%d status=%d '%s'",
         a->rc, a->status, a->err, b->rc, b->status, b->err);
  if (a->rc != 0)
    return;
  if (a->req->nparts != b->req->nparts)
    FAIL("the split changed the number of parts: %zu vs %zu", a->req->nparts, b->req->nparts);
  for (i = 0; i < a->req->nparts; i++) {
    const bh_part_t *p = &a->req->parts[i], *q = &b->req->parts[i];
    if (!same_str(p->name, q->name) || !same_str(p->filename, q->filename) ||
        !same_str(p->content_type, q->content_type) || p->len != q->len ||
        (p->path == NULL) != (q->path == NULL))
      FAIL("the split changed part %zu's metadata", i);
    if (p->path == NULL) {
      if (memcmp(p->data, q->data, p->len) != 0)
        FAIL("the split changed field %zu's value", i);
    } else {
      size_t la, lb;
      char *da = slurp(p->path, &la), *db = slurp(q->path, &lb);
      /* the same path inside each parse's own temp dir */
      const char *ba = p->path + strlen(a->req->temp_dir), *bb = q->path + strlen(b->req->temp_dir);
      if (la != lb || memcmp(da, db, la) != 0)
        FAIL("the split changed file %zu's content", i);
      if (strcmp(ba, bb) != 0)
        FAIL("the split changed file %zu's name: %s vs %s", i, ba, bb);
      free(da);
      free(db);
    }
  }
}

static void release(outcome_t *o) {
  bh_multipart_free(o->mp);
  bh_req_free(o->req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data, *nl, *body;
  size_t clen, blen, ncuts = 0, i, *cuts;
  uint64_t h = fuzz_hash(data, size);
  static char *const image_fields[] = {"file", "image", "f"};
  bh_multipart_limits_t limits = {.max_mem = (uint64_t)1 << 20, .max_parts = 1000,
                                  .max_header_bytes = (size_t)1 << 20}; /* the defaults */
  outcome_t whole, split;
  int fd, fd_before = next_fd();

  nl = memchr(in, '\n', size < MAX_CTYPE ? size : MAX_CTYPE);
  clen = nl ? (size_t)(nl - in) : (size < MAX_CTYPE ? size : MAX_CTYPE);
  body = in + clen + (nl != NULL);
  blen = size - (size_t)(body - in);
  /* sometimes tiny limits, to reach the 413s */
  if ((h & 7) == 0)
    limits.max_mem = (h >> 3) % 64;
  if (((h >> 9) & 7) == 0)
    limits.max_parts = (size_t)((h >> 12) % 4);
  if (((h >> 14) & 7) == 0)
    limits.max_header_bytes = (size_t)((h >> 17) % 400);
  /* sometimes the body's length known, and file parts wanted in memory (a
   * service's image fields, or its one root image) */
  if (((h >> 20) & 3) == 0) {
    limits.body_len = blen;
    limits.memory_any = (h >> 22) & 1;
    limits.memory_fields = limits.memory_any ? NULL : image_fields;
    limits.nmemory_fields = limits.memory_any ? 0 : 3;
  }

  cuts = malloc((blen + 8) * sizeof(*cuts));
  if ((h >> 8) % 8 == 0 && blen <= 2048) {
    for (i = 1; i < blen; i++) /* byte by byte */
      cuts[ncuts++] = i;
  } else {
    size_t n = 1 + (size_t)((h >> 8) % 6), pos = 0;
    uint64_t s = h;
    for (i = 0; i < n && blen > 0; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      pos += (size_t)((s >> 33) % (blen / n + 2));
      if (pos >= blen)
        break;
      cuts[ncuts++] = pos;
    }
  }

  parse(&whole, in, clen, body, blen, NULL, 0, &limits);
  parse(&split, in, clen, body, blen, cuts, ncuts, &limits);
  compare(&whole, &split);
  free(cuts);
  release(&whole);
  release(&split);

  if (fuzz_dir_entries(tmp_dir) != 0)
    FAIL("something is left in TMPDIR %s after the request was freed", tmp_dir);
  /* the spool's own fds and files go with it, and nothing else may remain */
  bh_spool_cleanup();
  if (fuzz_dir_count(tmp_dir, 0) != 0)
    FAIL("something is left in TMPDIR %s after the spool was cleaned up", tmp_dir);
  if ((fd = next_fd()) != fd_before)
    FAIL("a file descriptor was left open (next fd %d, was %d)", fd, fd_before);
  return 0;
}
