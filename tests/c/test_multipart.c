/* Unit test of the multipart/form-data parser (csrc/multipart.c): the same
 * body fed split at every byte boundary, byte by byte and in random pieces
 * must give the same parts; truncated and malformed bodies must fail; temp
 * dirs must never be left behind; dirs and files reused from earlier requests
 * (common/spool.c) never show their old bytes nor one still held. Run with
 * TMPDIR set to an empty directory. Exits 0 on success. */
#include "server/multipart.h"
#include "common/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* write(2) as multipart.c calls it, counted: file content must be written in
 * large pieces (one write per 64 KiB buffer), whatever the feeds and CRs. */
/* The Content-Length the parser is told of (0: unknown, as when chunked). */
static uint64_t known_len;

/* The file parts the service wants in memory (its image fields). */
static char *const *mem_fields;
static size_t nmem_fields;
static int mem_any;

/* The host's defaults, with max_mem as given. */
static const bh_multipart_limits_t *limits(uint64_t max_mem) {
  static bh_multipart_limits_t l;
  l.max_mem = max_mem;
  l.body_len = known_len;
  l.max_parts = 1000;
  l.max_header_bytes = 64 << 10;
  l.memory_fields = mem_fields;
  l.nmemory_fields = nmem_fields;
  l.memory_any = mem_any;
  return &l;
}

static size_t nwrites;
ssize_t write(int fd, const void *buf, size_t n) {
  if (fd > 2)
    nwrites++;
  return syscall(SYS_write, fd, buf, n);
}

/* writev too; with short_every = k, every k-th call writes half of what it
 * is asked for, as it may. */
static unsigned short_every;
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  static unsigned calls;
  struct iovec cut[2];
  if (fd > 2)
    nwrites++;
  if (short_every && cnt == 2 && ++calls % short_every == 0 && iov[0].iov_len + iov[1].iov_len > 3) {
    size_t want = (iov[0].iov_len + iov[1].iov_len) / 2 + 1;
    cut[0] = iov[0];
    cut[1] = iov[1];
    if (cut[0].iov_len >= want) {
      cut[0].iov_len = want;
      cnt = 1;
    } else {
      cut[1].iov_len = want - cut[0].iov_len;
    }
    iov = cut;
  }
  return syscall(SYS_writev, fd, iov, cnt);
}

void bh_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

static const char CTYPE[] = "multipart/form-data; boundary=\"----xyzXYZ\"";
static char file1[3000];
static size_t file1_len;
static char body[8192];
static size_t body_len, body_end; /* body_end: just after the final "--" */

static void build(void) {
  size_t i;
  char *p = body;
  /* content that almost looks like the delimiter, CRs everywhere */
  for (i = 0; i < sizeof(file1); i++)
    file1[i] = (char)((i * 131 + (i >> 3)) & 0xff);
  memcpy(file1 + 100, "\r\n------xyzXY", 13);
  memcpy(file1 + 200, "\r\n------xyzXY_Z", 15);
  memcpy(file1 + 300, "\r\r\n\r\n-", 6);
  file1_len = sizeof(file1);
  file1[file1_len - 1] = '\r';

  p += sprintf(p, "preamble to ignore\r\n");
  p += sprintf(p, "------xyzXYZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\n"
                  "{\"a\": 1}\r\n");
  p += sprintf(p, "------xyzXYZ  \r\ncontent-disposition: form-data; name=\"up\"; "
                  "filename=\"../../etc/pa ss\\\"wd.png\"\r\nContent-Type: image/png\r\n\r\n");
  memcpy(p, file1, file1_len);
  p += file1_len;
  p += sprintf(p, "\r\n------xyzXYZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"pass wd.png\"\r\n\r\n"
                  "second\r\n");
  p += sprintf(p, "------xyzXYZ\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n");
  p += sprintf(p, "------xyzXYZ--");
  body_end = (size_t)(p - body);
  p += sprintf(p, "\r\nepilogue\r\n------xyzXYZ\r\n");
  body_len = (size_t)(p - body);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  CHECK(f != NULL);
  buf = malloc(1 << 20);
  *len = fread(buf, 1, 1 << 20, f);
  fclose(f);
  return buf;
}

static void check_parts(const bh_req_t *req) {
  size_t len;
  char *data;

  CHECK(req->nparts == 4);
  CHECK(req->temp_dir != NULL);
  CHECK(strcmp(req->parts[0].name, "field") == 0);
  CHECK(req->parts[0].filename == NULL && req->parts[0].path == NULL);
  CHECK(req->parts[0].len == 8 && strcmp(req->parts[0].data, "{\"a\": 1}") == 0);

  CHECK(strcmp(req->parts[1].name, "up") == 0);
  CHECK(strcmp(req->parts[1].filename, "../../etc/pa ss\"wd.png") == 0);
  CHECK(strcmp(req->parts[1].content_type, "image/png") == 0);
  CHECK(req->parts[1].data == NULL && req->parts[1].len == file1_len);
  CHECK(strncmp(req->parts[1].path, req->temp_dir, strlen(req->temp_dir)) == 0);
  /* stored as <temp dir>/<sanitized name> */
  CHECK(strcmp(req->parts[1].path + strlen(req->temp_dir), "/pa_ss_wd.png") == 0);
  data = read_file(req->parts[1].path, &len);
  CHECK(len == file1_len && memcmp(data, file1, len) == 0);
  free(data);

  CHECK(strcmp(req->parts[2].filename, "pass wd.png") == 0);
  CHECK(strcmp(req->parts[2].path + strlen(req->temp_dir), "/pass_wd.png") == 0);
  CHECK(req->parts[2].content_type == NULL);
  data = read_file(req->parts[2].path, &len);
  CHECK(len == 6 && memcmp(data, "second", 6) == 0 && req->parts[2].len == 6);
  free(data);

  CHECK(strcmp(req->parts[3].name, "empty") == 0);
  CHECK(req->parts[3].len == 0 && req->parts[3].data != NULL && req->parts[3].data[0] == '\0');
}

static bh_req_t *parse_split(const size_t *cuts, size_t ncuts, size_t upto, int expect_ok) {
  bh_multipart_t *mp;
  bh_req_t *req = calloc(1, sizeof(*req));
  size_t prev = 0, i;
  int r = 0;

  CHECK(bh_multipart_new(&mp, CTYPE, strlen(CTYPE), limits(1 << 20)) == 0);
  for (i = 0; i <= ncuts && r == 0; i++) {
    size_t end = i < ncuts ? cuts[i] : upto;
    r = bh_multipart_feed(mp, body + prev, end - prev);
    prev = end;
  }
  if (r == 0)
    r = bh_multipart_finish(mp, req);
  if (expect_ok && r != 0) {
    fprintf(stderr, "parse failed (%s), cuts:", bh_multipart_error(mp));
    for (i = 0; i < ncuts; i++)
      fprintf(stderr, " %zu", cuts[i]);
    fprintf(stderr, " upto %zu\n", upto);
    exit(1);
  }
  if (!expect_ok) {
    CHECK(r != 0);
    CHECK(bh_multipart_status(mp) == 400);
  }
  bh_multipart_free(mp);
  if (r != 0) {
    bh_req_free(req);
    return NULL;
  }
  return req;
}

/* Whether path holds nothing but (with spool_too) this process's spool dir,
 * which lives as long as the process. */
static int dir_empty_but(const char *path, int spool_too) {
  DIR *d = opendir(path);
  struct dirent *e;
  int n = 0;
  CHECK(d != NULL);
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
        !(spool_too && strncmp(e->d_name, "bentohost-spool-", 16) == 0))
      n++;
  closedir(d);
  return n == 0;
}

static int dir_empty(const char *path) {
  return dir_empty_but(path, 1);
}

static void fail_case(const char *ctype, const char *b, const char *reason) {
  bh_multipart_t *mp;
  bh_req_t req;
  int r;

  memset(&req, 0, sizeof(req));
  r = bh_multipart_new(&mp, ctype, strlen(ctype), limits(1 << 20));
  if (r == 0)
    r = bh_multipart_feed(mp, b, strlen(b));
  if (r == 0)
    r = bh_multipart_finish(mp, &req);
  CHECK(r != 0);
  if (strstr(bh_multipart_error(mp), reason) == NULL) {
    fprintf(stderr, "want %s, got %s\n", reason, bh_multipart_error(mp));
    exit(1);
  }
  bh_multipart_free(mp);
}

/* ---------------------------------------------------------- large parts */

#define FBUF (64 * 1024)
static const char BCTYPE[] = "multipart/form-data; boundary=bNd";
static char *big;             /* the body */
static size_t big_len;
static char *bfile[4];        /* file parts: random, FBUF, FBUF + 1, empty */
static size_t bfile_len[4];
static size_t bdelim[5];      /* offsets of the delimiters' CRs */

static unsigned rnd(unsigned *s) {
  *s = *s * 1103515245 + 12345;
  return *s >> 8;
}

static void build_big(void) {
  static const size_t lens[4] = {300 * 1024 + 17, FBUF, FBUF + 1, 0};
  static const char *near[] = {"\r\n--bN", "\r\n--bNx", "\r\r\n--bNd", "\r\n-", "\r\n--b\r"};
  unsigned seed = 99;
  size_t i, k, o = 0;

  for (k = 0; k < 4; k++) {
    bfile_len[k] = lens[k];
    bfile[k] = malloc(lens[k] + 1);
    for (i = 0; i < lens[k]; i++) /* plenty of CRs and LFs */
      bfile[k][i] = rnd(&seed) % 8 == 0 ? "\r\n-"[rnd(&seed) % 3] : (char)rnd(&seed);
    /* near-misses of the delimiter, some across the buffer's size */
    for (i = 100; i + 12 < lens[k]; i += 1000 + rnd(&seed) % 9000) {
      const char *m = near[rnd(&seed) % 5];
      memcpy(bfile[k] + i, m, strlen(m));
    }
    if (lens[k] > FBUF + 8)
      memcpy(bfile[k] + FBUF - 3, "\r\n--bN", 7);
    for (i = 0; i + 7 <= lens[k]; i++) /* no real delimiter by chance */
      if (memcmp(bfile[k] + i, "\r\n--bNd", 7) == 0)
        bfile[k][i + 6] = 'D';
    if (lens[k] > 0)
      bfile[k][lens[k] - 1] = '\r';
  }
  big = malloc(lens[0] + lens[1] + lens[2] + 4096);
  for (k = 0; k < 4; k++) {
    if (k == 0)
      o += (size_t)sprintf(big + o, "--bNd");
    else
      o += (size_t)sprintf(big + o, "\r\n--bNd");
    bdelim[k] = o - (k == 0 ? 5 : 7);
    o += (size_t)sprintf(big + o, "\r\nContent-Disposition: form-data; name=\"f%zu\"; "
                         "filename=\"f%zu.bin\"\r\n\r\n", k, k);
    memcpy(big + o, bfile[k], bfile_len[k]);
    o += bfile_len[k];
  }
  bdelim[4] = o;
  o += (size_t)sprintf(big + o, "\r\n--bNd--\r\n");
  big_len = o;
}

/* Parses big fed in pieces of the given sizes (cycled; 0 = the rest) and
 * checks the parts and the number of writes. */
static void parse_big(const size_t *cuts, size_t ncuts) {
  bh_multipart_t *mp;
  bh_req_t *req = calloc(1, sizeof(*req));
  size_t prev = 0, i, k, len, maxw = 0;
  char *data;

  CHECK(bh_multipart_new(&mp, BCTYPE, strlen(BCTYPE), limits(1 << 20)) == 0);
  nwrites = 0;
  for (i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : big_len;
    if (bh_multipart_feed(mp, big + prev, end - prev) != 0) {
      fprintf(stderr, "feed: %s\n", bh_multipart_error(mp));
      exit(1);
    }
    prev = end;
  }
  CHECK(bh_multipart_finish(mp, req) == 0);
  bh_multipart_free(mp);
  CHECK(req->nparts == 4);
  for (k = 0; k < 4; k++) {
    CHECK(req->parts[k].path != NULL && req->parts[k].len == bfile_len[k]);
    data = read_file(req->parts[k].path, &len);
    CHECK(len == bfile_len[k] && memcmp(data, bfile[k], len) == 0);
    free(data);
    maxw += (bfile_len[k] + FBUF - 1) / FBUF + 1;
  }
  /* at most one write per buffer-full (+ one a part): a part that fits in
   * the buffer is one write, an empty one none (short writes take more) */
  if (nwrites > maxw && short_every == 0) {
    fprintf(stderr, "%zu writes, want <= %zu\n", nwrites, maxw);
    exit(1);
  }
  bh_req_free(req);
}

/* big with every file part wanted in memory: the same content, no write,
 * and no part keeping the room it reserved for the rest of the body. */
static void parse_big_in_memory(void) {
  bh_multipart_t *mp;
  bh_req_t *req = calloc(1, sizeof(*req));

  mem_any = 1;
  known_len = big_len;
  nwrites = 0;
  CHECK(bh_multipart_new(&mp, BCTYPE, strlen(BCTYPE), limits(1 << 20)) == 0);
  CHECK(bh_multipart_feed(mp, big, big_len) == 0);
  CHECK(bh_multipart_finish(mp, req) == 0);
  bh_multipart_free(mp);
  CHECK(req->nparts == 4 && req->temp_dir == NULL && nwrites == 0);
  for (size_t k = 0; k < 4; k++) {
    const bh_part_t *p = &req->parts[k];
    CHECK(p->path == NULL && p->len == bfile_len[k] && memcmp(p->data, bfile[k], p->len) == 0);
    CHECK(malloc_usable_size(p->data) <= p->len + 1 + (64 << 10) + 4096);
  }
  bh_req_free(req);
  mem_any = 0;
  known_len = 0;
}

static void big_tests(void) {
  size_t *cuts, k, j, n;
  unsigned seed = 5;

  build_big();
  cuts = malloc((big_len + 1) * sizeof(size_t));
  parse_big(NULL, 0);
  parse_big_in_memory();
  /* byte by byte: exactly ceil(len / FBUF) writes per part */
  for (k = 0; k < big_len; k++)
    cuts[k] = k;
  parse_big(cuts, big_len);
  CHECK(nwrites == 5 + 1 + 2 + 0);
  /* random pieces, small and large; half of them with short writes */
  for (k = 0; k < 60; k++) {
    size_t pos = 0, maxp = k % 3 == 0 ? 64 : k % 3 == 1 ? 5000 : 200000;
    short_every = k % 2 ? 3 : 0;
    n = 0;
    for (;;) {
      pos += 1 + rnd(&seed) % maxp;
      if (pos >= big_len)
        break;
      cuts[n++] = pos;
    }
    parse_big(cuts, n);
  }
  short_every = 0;
  /* split at every byte around each delimiter and the first buffer-full */
  for (j = 0; j < 6; j++) {
    size_t at = j < 5 ? bdelim[j] : bdelim[0] + 80 + FBUF;
    for (k = at > 40 ? at - 40 : 0; k < at + 40 && k < big_len; k++) {
      cuts[0] = k;
      parse_big(cuts, 1);
    }
  }
  /* truncated anywhere: fails, nothing left behind */
  for (k = 0; k < 40; k++) {
    bh_multipart_t *mp;
    bh_req_t req;
    size_t end = rnd(&seed) % bdelim[4];
    memset(&req, 0, sizeof(req));
    CHECK(bh_multipart_new(&mp, BCTYPE, strlen(BCTYPE), limits(1 << 20)) == 0);
    CHECK(bh_multipart_feed(mp, big, end / 2) == 0);
    CHECK(bh_multipart_feed(mp, big + end / 2, end - end / 2) == 0);
    CHECK(bh_multipart_finish(mp, &req) != 0 && bh_multipart_status(mp) == 400);
    bh_multipart_free(mp);
  }
  for (k = 0; k < 4; k++)
    free(bfile[k]);
  free(big);
  free(cuts);
}

/* The temp dir of the body parsed with known_len = len starts with want; it
 * is gone once the request is freed. */
static void files_land_in(uint64_t len, const char *want) {
  char dir[4096];
  size_t none[1] = {0};
  bh_req_t *req;

  known_len = len;
  req = parse_split(none, 0, body_len, 1);
  check_parts(req);
  CHECK(strncmp(req->temp_dir, want, strlen(want)) == 0);
  snprintf(dir, sizeof(dir), "%s", req->temp_dir);
  bh_req_free(req);
  CHECK(access(dir, F_OK) != 0);
  known_len = 0;
}

/* With BENTOHOST_UPLOADS_IN_MEMORY=1 a small body of known length has its
 * files in memory when /dev/shm has room; a chunked or big one, and any
 * without it, in TMPDIR. */
static void memory_or_disk(const char *tmp) {
  struct statvfs st;
  int room = statvfs("/dev/shm", &st) == 0 && (uint64_t)st.f_bavail * st.f_frsize >= ((uint64_t)256 << 20) &&
             access("/dev/shm", W_OK) == 0;

  files_land_in(body_len, tmp);
  CHECK(setenv("BENTOHOST_UPLOADS_IN_MEMORY", "1", 1) == 0);
  files_land_in(body_len, room ? "/dev/shm/bentohost-req-" : tmp);
  files_land_in(0, tmp);
  files_land_in((uint64_t)64 << 20, tmp);
  CHECK(unsetenv("BENTOHOST_UPLOADS_IN_MEMORY") == 0);
}

/* The parts of the body parsed whole and split in two at every byte, with
 * the file parts of field "up" wanted in memory and the body's length as
 * given: in memory (data, no path, no temp dir) only when that is known and
 * at most BH_MULTIPART_MEMORY_MAX. */
static void memory_parts_case(uint64_t len, int any, int want_memory) {
  static char *const up[] = {"other", "up"};
  size_t cut[1];
  bh_req_t *req;

  mem_fields = any ? NULL : up;
  nmem_fields = any ? 0 : 2;
  mem_any = any;
  known_len = len;
  for (cut[0] = 0; cut[0] <= body_len; cut[0] += want_memory ? 1 : 97) {
    req = parse_split(cut, 1, body_len, 1);
    CHECK(req->nparts == 4);
    CHECK((req->temp_dir == NULL) == want_memory);
    for (size_t i = 1; i <= 2; i++) {
      const bh_part_t *p = &req->parts[i];
      const char *want = i == 1 ? file1 : "second";
      size_t want_len = i == 1 ? file1_len : 6;
      CHECK(p->filename != NULL && p->len == want_len);
      if (want_memory) {
        CHECK(p->path == NULL && p->data != NULL && memcmp(p->data, want, want_len) == 0);
        CHECK(p->data[want_len] == '\0');
      } else {
        CHECK(p->path != NULL && p->data == NULL);
      }
    }
    CHECK(strcmp(req->parts[0].data, "{\"a\": 1}") == 0);
    bh_req_free(req);
  }
  mem_fields = NULL;
  nmem_fields = 0;
  mem_any = 0;
  known_len = 0;
}

static void memory_parts_tests(void) {
  bh_multipart_t *mp;
  bh_req_t *req = calloc(1, sizeof(*req));
  static char *const up[] = {"up"};

  memory_parts_case(body_len, 0, 1);
  memory_parts_case(body_len, 1, 1);
  memory_parts_case(0, 0, 0);                            /* chunked: length unknown */
  memory_parts_case(BH_MULTIPART_MEMORY_MAX + 1, 0, 0);  /* too big to hold */
  /* a file held in memory does not count against the plain fields' limit */
  mem_fields = up;
  nmem_fields = 1;
  known_len = body_len;
  CHECK(bh_multipart_new(&mp, CTYPE, strlen(CTYPE), limits(64)) == 0);
  CHECK(bh_multipart_feed(mp, body, body_len) == 0);
  CHECK(bh_multipart_finish(mp, req) == 0);
  CHECK(req->nparts == 4 && req->parts[1].path == NULL && req->parts[1].len == file1_len);
  bh_multipart_free(mp);
  bh_req_free(req);
  mem_fields = NULL;
  nmem_fields = 0;
  known_len = 0;
}

static uint64_t inode_of(const char *path) {
  struct stat st;
  CHECK(stat(path, &st) == 0);
  return (uint64_t)st.st_ino;
}

static int has_inode(const bh_req_t *req, uint64_t ino) {
  for (size_t i = 0; i < req->nparts; i++)
    if (req->parts[i].path != NULL && inode_of(req->parts[i].path) == ino)
      return 1;
  return 0;
}

/* The files of one request are the next one's, under a new dir, truncated to
 * their new content (check_parts reads them back), unless someone still has
 * them: an open reader, a mapping, a second link. */
static void spool_tests(const char *tmp) {
  size_t none[1] = {0}, len;
  char old_dir[4096], keep[4096];
  bh_req_t *req = parse_split(none, 0, body_len, 1), *next;
  uint64_t a = inode_of(req->parts[1].path), b = inode_of(req->parts[2].path);
  int fd;
  char *data;

  snprintf(old_dir, sizeof(old_dir), "%s", req->temp_dir);
  bh_req_free(req);
  CHECK(access(old_dir, F_OK) != 0);
  next = parse_split(none, 0, body_len, 1);
  check_parts(next);
  CHECK(strcmp(next->temp_dir, old_dir) != 0);
  CHECK(has_inode(next, a) && has_inode(next, b));

  /* held by a reader: it keeps its bytes and is not handed out again */
  fd = open(next->parts[1].path, O_RDONLY);
  CHECK(fd >= 0);
  a = inode_of(next->parts[1].path);
  bh_req_free(next);
  req = parse_split(none, 0, body_len, 1);
  check_parts(req);
  CHECK(!has_inode(req, a));
  {
    char got[sizeof(file1)];
    CHECK(pread(fd, got, sizeof(got), 0) == (ssize_t)file1_len && memcmp(got, file1, file1_len) == 0);
  }
  close(fd);

  /* mapped, its fd closed */
  fd = open(req->parts[1].path, O_RDONLY);
  a = inode_of(req->parts[1].path);
  void *map = mmap(NULL, file1_len, PROT_READ, MAP_SHARED, fd, 0);
  CHECK(map != MAP_FAILED);
  close(fd);
  bh_req_free(req);
  next = parse_split(none, 0, body_len, 1);
  check_parts(next);
  CHECK(!has_inode(next, a));
  CHECK(memcmp(map, file1, file1_len) == 0);
  munmap(map, file1_len);

  /* linked elsewhere */
  snprintf(keep, sizeof(keep), "%s/kept.png", tmp);
  CHECK(link(next->parts[1].path, keep) == 0);
  a = inode_of(keep);
  bh_req_free(next);
  for (int i = 0; i < 3; i++) {
    req = parse_split(none, 0, body_len, 1);
    check_parts(req);
    CHECK(!has_inode(req, a));
    bh_req_free(req);
  }
  data = read_file(keep, &len);
  CHECK(len == file1_len && memcmp(data, file1, len) == 0);
  free(data);
  CHECK(unlink(keep) == 0);

  /* a dir comes back with its file, which takes the next upload's name */
  {
    static const char one[] = "--b\r\nContent-Disposition: form-data; name=f; filename=one.bin\r\n\r\n"
                              "a longer first upload\r\n--b--\r\n";
    static const char two[] = "--b\r\nContent-Disposition: form-data; name=f; filename=two.bin\r\n\r\n"
                              "short\r\n--b--\r\n";
    const char *bodies[2] = {one, two};
    uint64_t first = 0;
    for (int k = 0; k < 2; k++) {
      bh_multipart_t *mp;
      bh_req_t *r = calloc(1, sizeof(*r));
      CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b", 31, limits(1 << 20)) == 0);
      CHECK(bh_multipart_feed(mp, bodies[k], strlen(bodies[k])) == 0);
      CHECK(bh_multipart_finish(mp, r) == 0 && r->nparts == 1);
      bh_multipart_free(mp);
      CHECK(strcmp(r->parts[0].path + strlen(r->temp_dir), k ? "/two.bin" : "/one.bin") == 0);
      data = read_file(r->parts[0].path, &len);
      CHECK(len == (k ? 5u : 21u) && memcmp(data, k ? "short" : "a longer first upload", len) == 0);
      free(data);
      if (k == 0)
        first = inode_of(r->parts[0].path);
      else {
        char gone[4096];
        snprintf(gone, sizeof(gone), "%s/one.bin", r->temp_dir);
        CHECK(inode_of(r->parts[0].path) == first && access(gone, F_OK) != 0);
      }
      bh_req_free(r);
    }
  }
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  size_t cuts[3], k, j, n = 0;
  bh_req_t *req;
  unsigned seed = 7;

  CHECK(tmp != NULL && dir_empty(tmp));
  build();
  CHECK(bh_multipart_match(CTYPE, strlen(CTYPE)));
  CHECK(bh_multipart_match("Multipart/Form-Data", 19));
  CHECK(!bh_multipart_match("multipart/form-datax", 20));
  CHECK(!bh_multipart_match("application/json", 16));

  /* whole, then split in two at every byte */
  for (k = 0; k <= body_len; k++) {
    cuts[0] = k;
    req = parse_split(cuts, 1, body_len, 1);
    check_parts(req);
    bh_req_free(req);
    n++;
  }
  /* split in three around every position of the first file's tricky region */
  for (k = 150; k < 420; k += 3)
    for (j = k; j < k + 20; j++) {
      cuts[0] = k;
      cuts[1] = j;
      req = parse_split(cuts, 2, body_len, 1);
      check_parts(req);
      bh_req_free(req);
      n++;
    }
  /* byte by byte */
  {
    size_t *all = malloc(body_len * sizeof(size_t));
    for (k = 0; k < body_len; k++)
      all[k] = k;
    req = parse_split(all, body_len, body_len, 1);
    check_parts(req);
    /* Python may add files: they go too */
    {
      char extra[4096];
      FILE *f;
      snprintf(extra, sizeof(extra), "%s/sub", req->temp_dir);
      CHECK(mkdir(extra, 0700) == 0);
      snprintf(extra, sizeof(extra), "%s/sub/x", req->temp_dir);
      f = fopen(extra, "w");
      CHECK(f != NULL);
      fclose(f);
    }
    bh_req_free(req);
    free(all);
  }
  /* random pieces */
  for (k = 0; k < 200; k++) {
    size_t c[16], m = 0, pos = 0;
    while (m < 16) {
      seed = seed * 1103515245 + 12345;
      pos += (seed >> 16) % 700;
      if (pos >= body_len)
        break;
      c[m++] = pos;
    }
    req = parse_split(c, m, body_len, 1);
    check_parts(req);
    bh_req_free(req);
  }
  /* ending right after the final delimiter is complete */
  req = parse_split(cuts, 0, body_end, 1);
  check_parts(req);
  bh_req_free(req);
  /* every truncation before that fails, at any split */
  for (k = 0; k < body_end; k++) {
    cuts[0] = k / 2;
    parse_split(cuts, 1, k, 0);
  }
  CHECK(dir_empty(tmp));

  fail_case("multipart/form-data", "x", "missing boundary");
  fail_case("multipart/form-data; charset=utf-8", "x", "missing boundary");
  fail_case("multipart/form-data; boundary=b", "no delimiter at all", "no boundary");
  fail_case("multipart/form-data; boundary=b", "--b\r\nContent-Type: a/b\r\n\r\nx\r\n--b--",
            "without Content-Disposition");
  fail_case("multipart/form-data; boundary=b", "--bX\r\n", "malformed boundary line");
  fail_case("multipart/form-data; boundary=b", "--b\r\nno colon here\r\n\r\n", "malformed part header");
  fail_case("multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=f; filename=a.txt\r\n\r\npartial",
            "truncated");
  CHECK(dir_empty(tmp));
  /* a token boundary and a field without a filename, then an empty form */
  {
    bh_multipart_t *mp;
    bh_req_t r2;
    static const char b2[] = "--b\r\nContent-Disposition: form-data; name=f\r\n\r\nv\r\n--b--\r\n";
    memset(&r2, 0, sizeof(r2));
    CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b; x=y", 36, limits(1 << 20)) == 0);
    CHECK(bh_multipart_feed(mp, b2, sizeof(b2) - 1) == 0);
    CHECK(bh_multipart_finish(mp, &r2) == 0);
    CHECK(r2.nparts == 1 && r2.temp_dir == NULL && strcmp(r2.parts[0].data, "v") == 0);
    bh_multipart_free(mp);
    free(r2.parts[0].name);
    free(r2.parts[0].data);
    free(r2.parts);
  }
  /* fields are bounded */
  {
    bh_multipart_t *mp;
    static const char b3[] = "--b\r\nContent-Disposition: form-data; name=f\r\n\r\n0123456789";
    CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b", 31, limits(5)) == 0);
    CHECK(bh_multipart_feed(mp, b3, sizeof(b3) - 1) != 0);
    CHECK(bh_multipart_status(mp) == 413);
    bh_multipart_free(mp);
  }
  /* parts and their headers are bounded, whatever the file names say */
  {
    bh_multipart_t *mp;
    bh_multipart_limits_t few = {.max_mem = 1 << 20, .max_parts = 3, .max_header_bytes = 64 << 10};
    static const char part[] = "--b\r\nContent-Disposition: form-data; name=f; filename=same.bin\r\n\r\nx\r\n";
    CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b", 31, &few) == 0);
    for (int k = 0; k < 3; k++)
      CHECK(bh_multipart_feed(mp, part, sizeof(part) - 1) == 0);
    CHECK(bh_multipart_feed(mp, part, sizeof(part) - 1) != 0);
    CHECK(bh_multipart_status(mp) == 413);
    bh_multipart_free(mp);
    /* one name thrice: the first is the dir's, the others in folders of their own */
    {
      static const char tail[] = "--b--\r\n";
      static const char *const want[] = {"/same.bin", "/.1/same.bin", "/.2/same.bin"};
      bh_req_t r3;
      memset(&r3, 0, sizeof(r3));
      CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b", 31, limits(1 << 20)) == 0);
      for (int k = 0; k < 3; k++)
        CHECK(bh_multipart_feed(mp, part, sizeof(part) - 1) == 0);
      CHECK(bh_multipart_feed(mp, tail, sizeof(tail) - 1) == 0);
      CHECK(bh_multipart_finish(mp, &r3) == 0 && r3.nparts == 3);
      for (int k = 0; k < 3; k++)
        CHECK(strcmp(r3.parts[k].path + strlen(r3.temp_dir), want[k]) == 0 && r3.parts[k].len == 1);
      bh_multipart_free(mp);
      bh_req_t *moved = calloc(1, sizeof(*moved));
      *moved = r3;
      bh_req_free(moved);
    }
    bh_multipart_limits_t small = {.max_mem = 1 << 20, .max_parts = 1000, .max_header_bytes = 100};
    CHECK(bh_multipart_new(&mp, "multipart/form-data; boundary=b", 31, &small) == 0);
    CHECK(bh_multipart_feed(mp, part, sizeof(part) - 1) == 0);
    CHECK(bh_multipart_feed(mp, part, sizeof(part) - 1) != 0);
    CHECK(bh_multipart_status(mp) == 413);
    bh_multipart_free(mp);
  }
  CHECK(dir_empty(tmp));
  /* the small body: its file parts fit in the buffer, one write each */
  nwrites = 0;
  req = parse_split(cuts, 0, body_len, 1);
  CHECK(nwrites == 2);
  bh_req_free(req);
  big_tests();
  CHECK(dir_empty(tmp));
  memory_or_disk(tmp);
  memory_parts_tests();
  spool_tests(tmp);
  CHECK(dir_empty(tmp));
  bh_spool_cleanup();
  CHECK(dir_empty_but(tmp, 0));
  printf("multipart: %zu splits OK\n", n);
  printf("OK\n");
  return 0;
}
