/* Incremental multipart/form-data parser (RFC 7578 / RFC 2046 framing).
 *
 * The body is scanned for the delimiter "\r\n--<boundary>"; the parser starts
 * as if a CRLF preceded the body so that the first delimiter needs no special
 * case. The boundary cannot contain CR (RFC 2046 bchars), so the delimiter's
 * only CR is its first byte: when a partial match fails, none of the held
 * bytes can start another match, and they are plain content. That makes the
 * matcher a scan for a CR with the delimiter's last byte at the right distance
 * (server/scan.c), a memchr for a CR in the last bytes that a delimiter cut by
 * the end of the feed could start from, and a counter, with no look-behind
 * buffer; any split of the input into feeds gives the same result.
 *
 * File parts (those whose Content-Disposition has a filename) are written
 * with write(2) to files in a temp dir made on the first file part (dir and
 * files come from common/spool.c, reused from earlier requests when it can);
 * the I/O thread does this directly because they are local files. Their content goes
 * through one FBUF_CAP buffer per parser: a piece that fits is copied into
 * it, and once the buffer and a piece make FBUF_CAP bytes or more, both go out
 * in one writev, the piece uncopied. So every write but a part's last carries
 * at least FBUF_CAP bytes: a part of up to FBUF_CAP bytes costs one write, a
 * 1 MiB one at most 17, however the body was split and however many CRs it
 * holds (held-back delimiter bytes that turn out to be content are copied into
 * the buffer, never written on their own). */
#include "server/multipart.h"
#include "common/fs.h"
#include "common/spool.h"
#include "server/part_header.h"
#include "server/scan.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_BOUNDARY 200
#define MAX_PART_HEADERS (16 * 1024)
#define FBUF_CAP (64 * 1024)
#define SHRINK_SLACK (64 * 1024)

enum { S_PREAMBLE, S_AFTER_DELIM, S_HEADERS, S_BODY, S_EPILOGUE, S_ERROR };

struct bh_multipart {
  char delim[4 + MAX_BOUNDARY];
  size_t dlen;
  int state;
  size_t match;      /* delimiter bytes matched and held back */
  int ad;            /* position in the line after a delimiter */

  char *hbuf;        /* the part's header line being read */
  size_t hlen, hcap, htotal; /* this part's header bytes */
  size_t headers_all;        /* header bytes of every part so far */

  bh_part_t cur;     /* the part being read */
  int in_part;
  int cur_in_memory; /* a file part held in memory (limits.memory_fields) */
  int fd;
  int fd_reused;     /* fd is an earlier request's file: truncate it at the end */
  bh_spool_held_t held; /* the file the temp dir came back with, until a part takes it */
  size_t dcap;
  char *fbuf;        /* file content not yet written to fd (FBUF_CAP bytes) */
  size_t flen;

  bh_part_t *parts;
  size_t nparts, pcap;
  char *temp_dir;
  uint64_t mem;      /* plain fields' bytes */
  uint64_t fed;      /* body bytes consumed */
  bh_multipart_limits_t limits;

  int status;
  char err[160];
};

static int mp_fail(bh_multipart_t *mp, int status, const char *fmt, const char *arg) {
  if (mp->state != S_ERROR) {
    mp->state = S_ERROR;
    mp->status = status;
    snprintf(mp->err, sizeof(mp->err), fmt, arg ? arg : "");
  }
  return -EINVAL;
}

int bh_multipart_match(const char *ctype, size_t len) {
  static const char mt[] = "multipart/form-data";
  size_t n = sizeof(mt) - 1;

  while (len > 0 && (*ctype == ' ' || *ctype == '\t'))
    ctype++, len--;
  if (len < n || strncasecmp(ctype, mt, n) != 0)
    return 0;
  return len == n || ctype[n] == ';' || ctype[n] == ' ' || ctype[n] == '\t';
}

int bh_multipart_new(bh_multipart_t **out, const char *ctype, size_t len,
                     const bh_multipart_limits_t *limits) {
  bh_multipart_t *mp = calloc(1, sizeof(*mp));
  char b[MAX_BOUNDARY + 2];
  size_t blen = 0, i;

  *out = mp;
  if (mp == NULL)
    return -ENOMEM;
  mp->fd = -1;
  mp->held.fd = -1;
  mp->limits = *limits;
  mp->state = S_PREAMBLE;
  if (!bh_part_param(ctype, len, "boundary", b, sizeof(b), &blen) || blen == 0)
    return mp_fail(mp, 400, "missing boundary", NULL);
  if (blen > MAX_BOUNDARY)
    return mp_fail(mp, 400, "boundary too long", NULL);
  for (i = 0; i < blen; i++)
    if (b[i] == '\r' || b[i] == '\n')
      return mp_fail(mp, 400, "invalid boundary", NULL);
  memcpy(mp->delim, "\r\n--", 4);
  memcpy(mp->delim + 4, b, blen);
  mp->dlen = 4 + blen;
  /* the virtual CRLF before the body: the first delimiter may start at byte 0 */
  mp->match = 2;
  return 0;
}

/* ---------------------------------------------------------------- parts */

static void part_clear(bh_part_t *p) {
  free(p->name);
  free(p->filename);
  free(p->content_type);
  free(p->path);
  free(p->data);
  memset(p, 0, sizeof(*p));
}

/* A body this small may have its files in memory... */
#define MEMORY_BODY_MAX ((uint64_t)16 << 20)
/* ...while the memory filesystem keeps this much free, and 16 such bodies. */
#define MEMORY_FREE_MIN ((uint64_t)256 << 20)
#define MEMORY_DIR "/dev/shm"

/* TMPDIR, or NULL when it is not set. */
static const char *tmpdir(void) {
  const char *t = getenv("TMPDIR");
  return t != NULL && t[0] != '\0' ? t : NULL;
}

/* Whether this request's files go to memory: a file that lives for one
 * request then costs no filesystem blocks to allocate and free (a fifth of
 * the time of a 1 MiB upload on ext4). Asked for with
 * BENTOHOST_UPLOADS_IN_MEMORY=1, since a service may rename an upload to a
 * place on /tmp's filesystem, which fails across filesystems; then only for a
 * body known to be small, with room to spare (a container's /dev/shm may be
 * 64 MiB): a big or chunked upload is never in memory. */
static int files_in_memory(const bh_multipart_t *mp) {
  struct statvfs st;
  const char *asked = getenv("BENTOHOST_UPLOADS_IN_MEMORY");

  if (asked == NULL || strcmp(asked, "1") != 0 || mp->limits.body_len == 0 || mp->limits.body_len > MEMORY_BODY_MAX)
    return 0;
  if (statvfs(MEMORY_DIR, &st) != 0)
    return 0;
  uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
  return free_bytes >= MEMORY_FREE_MIN && free_bytes / 16 >= mp->limits.body_len;
}

/* The request's temp dir, made on its first file part. */
static int make_temp_dir(bh_multipart_t *mp) {
  char path[4096];
  int err;

  if (!files_in_memory(mp) || bh_spool_dir(MEMORY_DIR, path, sizeof(path), &mp->held) != 0) {
    if ((err = bh_spool_dir(tmpdir() != NULL ? tmpdir() : "/tmp", path, sizeof(path), &mp->held)) != 0)
      return mp_fail(mp, 500, "cannot create a temp dir: %s", strerror(-err));
  }
  if ((mp->temp_dir = strdup(path)) == NULL) {
    bh_rmtree(path);
    return mp_fail(mp, 500, "out of memory", NULL);
  }
  return 0;
}

/* A file part is "<temp dir>/<its sanitized name>": Python sees the upload's
 * name and extension. A name already taken in this request goes into a
 * folder of its own named by the part's index, ".<index>": sanitized names
 * never start with '.', so the folders never meet the files. */
static int part_open_file(bh_multipart_t *mp) {
  char name[BH_PART_NAME_MAX + 8], path[4096];
  int fd;

  if (mp->temp_dir == NULL && make_temp_dir(mp) != 0)
    return -EINVAL;
  if (mp->fbuf == NULL && (mp->fbuf = malloc(FBUF_CAP)) == NULL)
    return mp_fail(mp, 500, "out of memory", NULL);
  mp->flen = 0;
  bh_part_filename(mp->cur.filename, name, sizeof(name));
  snprintf(path, sizeof(path), "%s", mp->temp_dir);
  fd = bh_spool_file(path, name, &mp->held, &mp->fd_reused, &mp->cur.ino);
  if (fd == -EEXIST) {
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/.%zu", mp->nparts);
    if (mkdir(path, 0700) != 0)
      return mp_fail(mp, 500, "cannot create a folder: %s", strerror(errno));
    fd = bh_spool_file(path, name, NULL, &mp->fd_reused, &mp->cur.ino);
  }
  if (fd < 0)
    return mp_fail(mp, 500, "cannot create a file: %s", strerror(-fd));
  mp->fd = fd;
  snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", name);
  if ((mp->cur.path = strdup(path)) == NULL)
    return mp_fail(mp, 500, "out of memory", NULL);
  return 0;
}

/* Writes a then b (either may be empty), going on after short writes. */
static int write_pair(bh_multipart_t *mp, const char *a, size_t alen, const char *b, size_t blen) {
  struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
  struct iovec *v = iov;
  int left = 2;

  while (left > 0) {
    if (v->iov_len == 0) {
      v++, left--;
      continue;
    }
    ssize_t w = writev(mp->fd, v, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return mp_fail(mp, 500, "cannot write a file: %s", w < 0 ? strerror(errno) : "no progress");
    for (size_t done = (size_t)w; done > 0;) {
      size_t d = done < v->iov_len ? done : v->iov_len;
      v->iov_base = (char *)v->iov_base + d;
      v->iov_len -= d;
      done -= d;
      if (v->iov_len == 0)
        v++, left--;
    }
  }
  return 0;
}

/* Writes the buffered file content out. */
static int fbuf_flush(bh_multipart_t *mp) {
  size_t n = mp->flen;
  mp->flen = 0;
  return n > 0 ? write_pair(mp, mp->fbuf, n, NULL, 0) : 0;
}

/* Content of the current part: buffered for a file, kept for a field. */
static int emit(bh_multipart_t *mp, const char *p, size_t n) {
  if (mp->state == S_PREAMBLE || n == 0)
    return 0;
  if (mp->fd >= 0) {
    size_t held = mp->flen;
    mp->cur.len += n;
    if (held + n < FBUF_CAP) {
      memcpy(mp->fbuf + held, p, n);
      mp->flen += n;
      return 0;
    }
    /* a buffer-full or more: what is held and this piece in one call, the
     * piece not copied (a 64 KiB read of the socket is never copied here) */
    mp->flen = 0;
    return write_pair(mp, mp->fbuf, held, p, n);
  }

  /* a file held in memory is bounded by the body's known length instead */
  if (!mp->cur_in_memory && mp->mem + n > mp->limits.max_mem)
    return mp_fail(mp, 413, "fields too large", NULL);
  if (mp->cur.len + n + 1 > mp->dcap) {
    size_t ncap = mp->dcap ? mp->dcap : 64;
    char *nd;
    while (ncap < mp->cur.len + n + 1)
      ncap *= 2;
    if ((nd = realloc(mp->cur.data, ncap)) == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
    mp->cur.data = nd;
    mp->dcap = ncap;
  }
  memcpy(mp->cur.data + mp->cur.len, p, n);
  mp->cur.len += n;
  mp->mem += mp->cur_in_memory ? 0 : n;
  return 0;
}

static int part_end(bh_multipart_t *mp) {
  if (mp->fd >= 0) {
    if (fbuf_flush(mp))
      return -EINVAL;
    /* a reused file was longer: none of its old bytes may be seen */
    if (mp->fd_reused && ftruncate(mp->fd, (off_t)mp->cur.len) != 0) {
      close(mp->fd);
      mp->fd = -1;
      return mp_fail(mp, 500, "cannot write a file: %s", strerror(errno));
    }
    if (close(mp->fd) != 0 && errno != EINTR) {
      mp->fd = -1;
      return mp_fail(mp, 500, "cannot write a file: %s", strerror(errno));
    }
    mp->fd = -1;
  } else if (mp->cur.data == NULL) {
    if ((mp->cur.data = malloc(1)) == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
    mp->cur.data[0] = '\0';
  } else {
    mp->cur.data[mp->cur.len] = '\0';
    /* an in-memory file had room for the whole rest of the body: give back
     * what it did not use before the next part reserves its own */
    if (mp->cur_in_memory && mp->dcap > mp->cur.len + 1 + SHRINK_SLACK) {
      char *nd = realloc(mp->cur.data, mp->cur.len + 1);
      if (nd != NULL)
        mp->cur.data = nd;
    }
  }
  if (mp->nparts == mp->pcap) {
    size_t ncap = mp->pcap ? mp->pcap * 2 : 4;
    bh_part_t *np = realloc(mp->parts, ncap * sizeof(*np));
    if (np == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
    mp->parts = np;
    mp->pcap = ncap;
  }
  mp->parts[mp->nparts++] = mp->cur;
  memset(&mp->cur, 0, sizeof(mp->cur));
  mp->in_part = 0;
  mp->cur_in_memory = 0;
  mp->dcap = 0;
  return 0;
}

/* One header line of a part, without its CRLF. */
static int header_line(bh_multipart_t *mp, const char *s, size_t len) {
  const char *colon = memchr(s, ':', len);
  const char *v;
  size_t nlen, vlen;

  if (len > 0 && (s[0] == ' ' || s[0] == '\t'))
    return 0; /* obsolete folding: nothing we read is long enough to fold */
  if (colon == NULL)
    return mp_fail(mp, 400, "malformed part header", NULL);
  nlen = (size_t)(colon - s);
  while (nlen > 0 && (s[nlen - 1] == ' ' || s[nlen - 1] == '\t'))
    nlen--;
  v = colon + 1;
  vlen = len - (size_t)(v - s);
  while (vlen > 0 && (*v == ' ' || *v == '\t'))
    v++, vlen--;
  while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
    vlen--;

  if (nlen == 19 && strncasecmp(s, "content-disposition", 19) == 0) {
    char *buf = malloc(vlen + 1);
    size_t n;
    if (buf == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
    free(mp->cur.name);
    free(mp->cur.filename);
    mp->cur.name = mp->cur.filename = NULL;
    if (bh_part_param(v, vlen, "name", buf, vlen + 1, &n))
      mp->cur.name = strndup(buf, n);
    else
      mp->cur.name = strdup("");
    if (bh_part_param(v, vlen, "filename", buf, vlen + 1, &n))
      mp->cur.filename = strndup(buf, n);
    free(buf);
    if (mp->cur.name == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
    mp->in_part = 2; /* seen */
  } else if (nlen == 12 && strncasecmp(s, "content-type", 12) == 0) {
    free(mp->cur.content_type);
    if ((mp->cur.content_type = strndup(v, vlen)) == NULL)
      return mp_fail(mp, 500, "out of memory", NULL);
  }
  return 0;
}

/* Whether the file part just begun is kept in memory: the service asked for
 * it (an image, decoded in memory anyway) and the whole body is small. */
static int held_in_memory(const bh_multipart_t *mp) {
  const bh_multipart_limits_t *l = &mp->limits;

  if (l->body_len == 0 || l->body_len > BH_MULTIPART_MEMORY_MAX)
    return 0;
  if (l->memory_any)
    return 1;
  for (size_t i = 0; i < l->nmemory_fields; i++)
    if (strcmp(l->memory_fields[i], mp->cur.name) == 0)
      return 1;
  return 0;
}

/* Room for the rest of the body at once: the content is copied once, never
 * moved by a growing buffer. */
static int reserve_in_memory(bh_multipart_t *mp) {
  uint64_t rest = mp->limits.body_len > mp->fed ? mp->limits.body_len - mp->fed : 0;
  char *nd;

  mp->cur_in_memory = 1;
  if ((nd = realloc(mp->cur.data, (size_t)rest + 1)) == NULL)
    return mp_fail(mp, 500, "out of memory", NULL);
  mp->cur.data = nd;
  mp->dcap = (size_t)rest + 1;
  return 0;
}

static int headers_done(bh_multipart_t *mp) {
  if (mp->in_part != 2)
    return mp_fail(mp, 400, "part without Content-Disposition", NULL);
  if (mp->nparts >= mp->limits.max_parts)
    return mp_fail(mp, 413, "more parts than --max-multipart-parts allows", NULL);
  mp->state = S_BODY;
  if (mp->cur.filename != NULL && held_in_memory(mp))
    return reserve_in_memory(mp);
  if (mp->cur.filename != NULL)
    return part_open_file(mp);
  return 0;
}

/* Reads header lines; returns bytes used. */
static size_t feed_headers(bh_multipart_t *mp, const char *p, size_t n) {
  const char *nl = memchr(p, '\n', n);
  size_t take = nl ? (size_t)(nl - p) + 1 : n;

  mp->htotal += take;
  mp->headers_all += take;
  if (mp->headers_all > mp->limits.max_header_bytes) {
    mp_fail(mp, 413, "part headers larger than --max-multipart-header-size allows", NULL);
    return n;
  }
  if (mp->htotal > MAX_PART_HEADERS) {
    mp_fail(mp, 400, "part headers too large", NULL);
    return n;
  }
  if (mp->hlen + take > mp->hcap) {
    size_t ncap = mp->hcap ? mp->hcap : 256;
    char *nb;
    while (ncap < mp->hlen + take)
      ncap *= 2;
    if ((nb = realloc(mp->hbuf, ncap)) == NULL) {
      mp_fail(mp, 500, "out of memory", NULL);
      return n;
    }
    mp->hbuf = nb;
    mp->hcap = ncap;
  }
  memcpy(mp->hbuf + mp->hlen, p, take);
  mp->hlen += take;
  if (nl == NULL)
    return take;

  if (mp->hlen < 2 || mp->hbuf[mp->hlen - 2] != '\r') {
    mp_fail(mp, 400, "malformed part header", NULL);
    return n;
  }
  if (mp->hlen == 2)
    headers_done(mp);
  else
    header_line(mp, mp->hbuf, mp->hlen - 2);
  mp->hlen = 0;
  return take;
}

/* The delimiter is complete: the part (if any) ends. Returns nonzero on error. */
static int delim_done(bh_multipart_t *mp) {
  mp->match = 0;
  if (mp->state == S_BODY && part_end(mp))
    return -EINVAL;
  mp->state = S_AFTER_DELIM;
  mp->ad = 0;
  return 0;
}

/* Content until the next delimiter. Returns bytes used; the state moves to
 * S_AFTER_DELIM when the delimiter is complete. Content is emitted in runs as
 * long as the input allows: a CR that is not followed by the rest of the
 * delimiter (known from the bytes at hand) does not cut the run. */
static size_t feed_content(bh_multipart_t *mp, const char *p, size_t n) {
  size_t i = 0;

  /* a match held back from the previous feed: go on byte by byte */
  while (mp->match > 0 && i < n) {
    if (p[i] == mp->delim[mp->match]) {
      i++;
      if (++mp->match == mp->dlen)
        return delim_done(mp) ? n : i;
    } else {
      /* the held bytes were content after all; p[i] is looked at again */
      if (emit(mp, mp->delim, mp->match))
        return n;
      mp->match = 0;
    }
  }

  {
    size_t start = i; /* start of the content run not yet emitted */
    size_t k = mp->dlen - 1; /* the delimiter's last byte, from its CR */
    while (i < n) {
      const char *cr = NULL;
      size_t c, m;
      if (n - i > k)
        cr = bh_scan_pair(p + i, n - i - k, '\r', k, mp->delim[k]);
      if (cr == NULL) { /* no whole delimiter: only one cut by the end is left */
        size_t tail = n - i > k ? n - k : i;
        cr = memchr(p + tail, '\r', n - tail);
      }
      if (cr == NULL)
        break;
      c = (size_t)(cr - p);
      /* how much of the delimiter follows (the CR is its first byte) */
      for (m = 1; m < mp->dlen && c + m < n && p[c + m] == mp->delim[m]; m++)
        ;
      if (m == mp->dlen) {
        if (emit(mp, p + start, c - start))
          return n;
        return delim_done(mp) ? n : c + m;
      }
      if (c + m == n) { /* a partial match up to the end: hold it back */
        if (emit(mp, p + start, c - start))
          return n;
        mp->match = m;
        return n;
      }
      /* a mismatch: the CR and what matched are content (none is a CR) */
      i = c + m;
    }
    if (emit(mp, p + start, n - start))
      return n;
  }
  return n;
}

/* The rest of a delimiter line: "--" ends the body, else optional padding
 * and CRLF start a part. */
static size_t feed_after_delim(bh_multipart_t *mp, const char *p, size_t n) {
  size_t i;

  for (i = 0; i < n && mp->state == S_AFTER_DELIM; i++) {
    char ch = p[i];
    switch (mp->ad) {
    case 0:
      if (ch == '-')
        mp->ad = 1;
      else if (ch == ' ' || ch == '\t')
        mp->ad = 3;
      else if (ch == '\r')
        mp->ad = 2;
      else
        mp_fail(mp, 400, "malformed boundary line", NULL);
      break;
    case 1:
      if (ch == '-')
        mp->state = S_EPILOGUE;
      else
        mp_fail(mp, 400, "malformed boundary line", NULL);
      break;
    case 3:
      if (ch == '\r')
        mp->ad = 2;
      else if (ch != ' ' && ch != '\t')
        mp_fail(mp, 400, "malformed boundary line", NULL);
      break;
    case 2:
      if (ch != '\n') {
        mp_fail(mp, 400, "malformed boundary line", NULL);
        break;
      }
      mp->state = S_HEADERS;
      mp->in_part = 1;
      mp->hlen = mp->htotal = 0;
      break;
    }
  }
  return i;
}

int bh_multipart_feed(bh_multipart_t *mp, const char *data, size_t len) {
  while (len > 0) {
    size_t used;
    switch (mp->state) {
    case S_PREAMBLE:
    case S_BODY:
      used = feed_content(mp, data, len);
      break;
    case S_AFTER_DELIM:
      used = feed_after_delim(mp, data, len);
      break;
    case S_HEADERS:
      used = feed_headers(mp, data, len);
      break;
    case S_EPILOGUE:
      return 0;
    default:
      return -EINVAL;
    }
    data += used;
    len -= used;
    mp->fed += used;
  }
  return mp->state == S_ERROR ? -EINVAL : 0;
}

int bh_multipart_finish(bh_multipart_t *mp, bh_req_t *req) {
  if (mp->state == S_ERROR)
    return -EINVAL;
  if (mp->state != S_EPILOGUE)
    return mp_fail(mp, 400, mp->state == S_PREAMBLE && mp->nparts == 0 &&
                   !mp->in_part ? "no boundary in the body" : "truncated body", NULL);
  req->parts = mp->parts;
  req->nparts = mp->nparts;
  req->temp_dir = mp->temp_dir;
  mp->parts = NULL;
  mp->nparts = mp->pcap = 0;
  mp->temp_dir = NULL;
  return 0;
}

int bh_multipart_status(const bh_multipart_t *mp) {
  return mp->status ? mp->status : 400;
}

const char *bh_multipart_error(const bh_multipart_t *mp) {
  return mp->err[0] ? mp->err : "invalid body";
}

void bh_multipart_free(bh_multipart_t *mp) {
  size_t i;

  if (mp == NULL)
    return;
  if (mp->fd >= 0)
    close(mp->fd);
  if (mp->held.fd >= 0) /* the first file part failed before it took it */
    close(mp->held.fd);
  if (mp->temp_dir != NULL) {
    /* the part being written, if any, is not among them: it is removed */
    bh_spool_release(mp->temp_dir, mp->parts, mp->nparts);
    free(mp->temp_dir);
  }
  free(mp->fbuf);
  part_clear(&mp->cur);
  for (i = 0; i < mp->nparts; i++)
    part_clear(&mp->parts[i]);
  free(mp->parts);
  free(mp->hbuf);
  free(mp);
}
