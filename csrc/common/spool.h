/* Uploads' temp dirs and files, reused from one request to the next
 * (common/spool.c). A 1 MiB upload to a fresh dir and file costs two mkdirs,
 * a create, the allocation of its pages, an unlink and two rmdirs: on ext4
 * ~0.65 ms, half of such a request. A worker keeps the emptied dirs and the
 * files no one else holds in a private spool dir on the same file system and
 * hands them out again under fresh names: a dir appears at a new random path
 * (a path kept from an earlier request never names a later one's), and a file
 * is only taken back when no one else has it open or linked, so no reader
 * ever sees another request's bytes. Without one (no room, an error, a file
 * system that cannot) everything is made fresh and removed as before. */
#ifndef BH_COMMON_SPOOL_H
#define BH_COMMON_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/request.h"

#define BH_SPOOL_NAME_MAX 160

/* The file a reused dir comes back with (fd -1: none), for the request's
 * first file part. */
typedef struct bh_spool_held {
  int fd;
  uint64_t ino;
  char name[BH_SPOOL_NAME_MAX];
} bh_spool_held_t;

/* A fresh, private (0700) dir "<base>/bentohost-req-XXXXXX"; its path in out.
 * It is empty but for the file in *held, which the first bh_spool_file() in
 * it takes. 0 or a negative errno. */
int bh_spool_dir(const char *base, char *out, size_t cap, bh_spool_held_t *held);

/* Creates "<dir>/<name>" for writing, or gives an earlier request's file that
 * name: *held's when it has one (held may be NULL), else a kept one. *reused
 * is then 1: the caller writes from offset 0 and truncates to what it wrote.
 * Returns the fd (O_WRONLY, O_CLOEXEC), -EEXIST when the name is taken, or
 * another negative errno. *ino is the file's inode. */
int bh_spool_file(const char *dir, const char *name, bh_spool_held_t *held, int *reused, uint64_t *ino);

/* A request is done with its dir: the dir goes back to the spool, with the
 * first of its files that no one else holds still in it, and its other such
 * files on their own; whatever is left (files Python added, files still open)
 * is removed, and the dir too when anything was. */
void bh_spool_release(const char *dir, const bh_part_t *parts, size_t nparts);

/* Removes this process's spool dirs (at exit). */
void bh_spool_cleanup(void);

/* The supervisor's side: the tag its workers name their spool dirs with
 * (BENTOHOST_SPOOL_TAG, set for the children; the spool dirs of supervisors
 * that died with all their workers are removed first), and the removal of a
 * worker's spool dirs once it has exited, however it ended. */
int bh_spool_tag_workers(void);
void bh_spool_remove_worker(pid_t pid);

#endif
