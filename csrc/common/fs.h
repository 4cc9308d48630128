/* File-system helpers shared by the request's temp dirs and the multipart parser. */
#ifndef BH_COMMON_FS_H
#define BH_COMMON_FS_H

/* rm -rf path (no symlinks followed); 0 or a negative errno. */
int bh_rmtree(const char *path);

#endif
