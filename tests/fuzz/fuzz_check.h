/* Shared by the fuzz targets: failing an invariant, the input hash that
 * picks per-input knobs, and the checks of a request's multipart parts. */
#ifndef BH_FUZZ_CHECK_H
#define BH_FUZZ_CHECK_H

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/request.h"

/* libFuzzer reports the abort as a crash and saves the input. */
#define FAIL(...)                                                            \
  do {                                                                       \
    fprintf(stderr, "FUZZ INVARIANT: " __VA_ARGS__);                         \
    fputc('\n', stderr);                                                     \
    abort();                                                                 \
  } while (0)

/* A worker's spool dir (common/spool.c) holds only what a later request may
 * reuse: empty dirs "d<n>" and regular files "f<n>", a bounded number. */
static inline void fuzz_check_spool(const char *spool) {
  DIR *d = opendir(spool);
  struct dirent *e;
  char path[4096];
  struct stat st;
  int n = 0;
  if (d == NULL)
    FAIL("spool dir %s unreadable", spool);
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(path, sizeof(path), "%s/%s", spool, e->d_name);
    if (lstat(path, &st) != 0 || (e->d_name[0] != 'd' && e->d_name[0] != 'f') ||
        (e->d_name[0] == 'd') != !!S_ISDIR(st.st_mode) || (e->d_name[0] == 'f' && !S_ISREG(st.st_mode)))
      FAIL("unexpected %s in the spool", path);
    if (S_ISDIR(st.st_mode) && st.st_nlink != 2)
      FAIL("spooled dir %s is not empty", path);
    if (++n > 64)
      FAIL("spool %s holds more than it may", spool);
  }
  closedir(d);
}

/* Entries of a directory other than . and .. and (with spool_ok) the spool
 * dirs, which are checked: the fuzzers' TMPDIR must end with nothing else. */
static inline int fuzz_dir_count(const char *dir, int spool_ok) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[4096];
  int n = 0;
  if (d == NULL)
    FAIL("TMPDIR %s vanished", dir);
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (spool_ok && strncmp(e->d_name, "bentohost-spool-", 16) == 0) {
      snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
      fuzz_check_spool(path);
      continue;
    }
    n++;
  }
  closedir(d);
  return n;
}

static inline int fuzz_dir_entries(const char *dir) {
  return fuzz_dir_count(dir, 1);
}

static inline uint64_t fuzz_hash(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* A component ".<digits>": the folder multipart.c makes for a part whose
 * name is already taken in its request. */
static inline int fuzz_index_folder(const char *p, const char *slash) {
  if (*p != '.' || slash == NULL || slash == p + 1)
    return 0;
  for (p++; p < slash; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return 1;
}

/* path lies under dir and no component of the rest is empty, hidden, "." or
 * "..", but for index folders. */
static inline int fuzz_path_under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  const char *p;
  if (strncmp(path, dir, n) != 0 || path[n] != '/')
    return 0;
  for (p = path + n + 1;;) {
    const char *slash = strchr(p, '/');
    if (*p == '\0' || *p == '/' || (*p == '.' && !fuzz_index_folder(p, slash)))
      return 0;
    if (slash == NULL)
      return 1;
    p = slash + 1;
  }
}

/* The parts as Python would get them: file parts are regular files of the
 * announced size in the request's temp dir (itself under tmp_base), or, where
 * memory_files allows, held in memory like fields; fields are NUL-terminated. */
static inline void fuzz_check_parts(const bh_req_t *req, const char *tmp_base, int memory_files) {
  size_t i;

  if (req->nparts > 0 && req->parts == NULL)
    FAIL("%zu parts without an array", req->nparts);
  if (req->temp_dir != NULL && !fuzz_path_under(req->temp_dir, tmp_base))
    FAIL("temp dir %s not under TMPDIR %s", req->temp_dir, tmp_base);
  for (i = 0; i < req->nparts; i++) {
    const bh_part_t *p = &req->parts[i];
    if (p->name == NULL)
      FAIL("part %zu without a name", i);
    if (p->path != NULL) {
      struct stat st;
      if (req->temp_dir == NULL || !fuzz_path_under(p->path, req->temp_dir))
        FAIL("file part %s not safely inside the temp dir %s", p->path,
             req->temp_dir ? req->temp_dir : "(none)");
      if (p->filename == NULL || p->data != NULL)
        FAIL("file part %zu without a filename, or with data", i);
      if (lstat(p->path, &st) != 0)
        FAIL("file part %s: %s", p->path, strerror(errno));
      if (!S_ISREG(st.st_mode))
        FAIL("file part %s is not a regular file", p->path);
      if ((size_t)st.st_size != p->len)
        FAIL("file part %s: %zu bytes announced, %lld on disk", p->path, p->len,
             (long long)st.st_size);
    } else {
      if (p->filename != NULL && !memory_files)
        FAIL("part %zu has a filename but no file", i);
      if (p->data == NULL || p->data[p->len] != '\0')
        FAIL("field part %zu without NUL-terminated data", i);
    }
  }
}

#endif
