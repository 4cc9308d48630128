/* Recursive removal of a request's temp dir (and whatever Python left in it). */
#include "common/fs.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  /* keep going on errors: remove as much as we can */
  if (remove(path) != 0 && errno != ENOENT)
    return 0;
  return 0;
}

int bh_rmtree(const char *path) {
  /* FTW_PHYS: a symlink Python left in the dir is removed, not followed */
  if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return errno ? -errno : -EIO;
  return 0;
}
