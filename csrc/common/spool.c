/* Reuse of uploads' temp dirs and files (see spool.h for why).
 *
 * Each file system that request dirs are made on (TMPDIR, /dev/shm) gets one
 * spool dir per worker, "<base>/bentohost-spool-<tag>-<pid>", mode 0700. A
 * request's dir and files are renamed into it when the request is done and
 * renamed out under new names for a later one; renames never replace
 * (RENAME_NOREPLACE), so a name someone else made is never clobbered.
 *
 * A file goes back only when its last other holder is gone: it is first
 * renamed into the private spool dir (so that no one can open it anew), then
 * a write lease is tried on it, which the kernel grants only when no other
 * open file (a reader, an mmap, another process) refers to it; a file with a
 * second link is never taken either. A file that fails is unlinked, and
 * whoever holds it keeps its bytes. Reused files keep their pages: the next
 * upload overwrites them and is truncated to its own length before anyone
 * sees it. The supervisor removes a worker's spool dirs when it exits, and
 * at its start those of supervisors that are gone. */
#include "common/spool.h"
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_SLOTS 3                  /* file systems: TMPDIR, /dev/shm, one more */
#define SPOOL_DIRS 32
#define SPOOL_FILES 32
#define FILE_MAX ((uint64_t)16 << 20)  /* a bigger file is not kept */
#define BYTES_MAX ((uint64_t)32 << 20) /* nor more than this per file system */
#define NAME_TRIES 16
#define TAG_ENV "BENTOHOST_SPOOL_TAG"

typedef struct kept_file {
  int fd;
  uint64_t size, ino;
  unsigned id;
} kept_file_t;

/* A kept dir, empty or holding the one file its request uploaded (fd >= 0):
 * the usual request comes back with a single rename of its dir each way. */
typedef struct kept_dir {
  unsigned id;
  int fd;
  uint64_t size, ino;
  char name[BH_SPOOL_NAME_MAX];
} kept_dir_t;

typedef struct spool {
  char base[1024];
  char dir[1200];
  int state;   /* 0 free slot, 1 usable, -1 given up on this file system */
  int leases;  /* the file system grants leases: files can be kept */
  pid_t pid;   /* the process it belongs to (not a child forked by Python) */
  dev_t dev;
  kept_dir_t dirs[SPOOL_DIRS];
  size_t ndirs;
  kept_file_t files[SPOOL_FILES];
  size_t nfiles;
  uint64_t bytes;
  unsigned next_id;
} spool_t;

static spool_t spools[SPOOL_SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rng;
static char tag[48];

static uint64_t next_random(void) {
  if (rng == 0 && getrandom(&rng, sizeof(rng), 0) != (ssize_t)sizeof(rng))
    rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)&rng;
  /* splitmix64 */
  uint64_t z = (rng += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* "<base>/bentohost-req-" and six random letters or digits, like mkdtemp's. */
static void random_name(const char *base, char *out, size_t cap) {
  static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  uint64_t r = next_random();
  char s[7];
  for (int i = 0; i < 6; i++, r /= 62)
    s[i] = set[r % 62];
  s[6] = '\0';
  snprintf(out, cap, "%s/bentohost-req-%s", base, s);
}

static void kept_path(const spool_t *sp, char kind, unsigned id, char *out, size_t cap) {
  snprintf(out, cap, "%s/%c%u", sp->dir, kind, id);
}

static const char *worker_tag(void) {
  const char *t = getenv(TAG_ENV);
  return t != NULL && t[0] != '\0' && strlen(t) < 40 && strchr(t, '/') == NULL ? t : "solo";
}

/* The length of the dir part of path ("/tmp/x" -> 4), 0 when there is none. */
static size_t base_len(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash != NULL ? (size_t)(slash - path) : 0;
}

/* The spool of the file system at base (a dir path of base_len bytes); made
 * on first use when create is set. NULL when there is none to use. */
static spool_t *spool_for(const char *base, size_t len, int create) {
  spool_t *free_slot = NULL;
  struct stat st;

  if (len == 0 || len >= sizeof(spools[0].base))
    return NULL;
  for (int i = 0; i < SPOOL_SLOTS; i++) {
    spool_t *sp = &spools[i];
    if (sp->state == 0) {
      if (free_slot == NULL)
        free_slot = sp;
    } else if (strlen(sp->base) == len && memcmp(sp->base, base, len) == 0) {
      return sp->state == 1 && sp->pid == getpid() ? sp : NULL;
    }
  }
  if (!create || free_slot == NULL)
    return NULL;
  spool_t *sp = free_slot;
  memset(sp, 0, sizeof(*sp));
  memcpy(sp->base, base, len);
  sp->base[len] = '\0';
  sp->pid = getpid();
  sp->state = -1;
  snprintf(sp->dir, sizeof(sp->dir), "%s/bentohost-spool-%s-%d", sp->base, worker_tag(), (int)sp->pid);
  if (mkdir(sp->dir, 0700) != 0 || lstat(sp->dir, &st) != 0)
    return NULL;
  sp->dev = st.st_dev;
  sp->leases = 1;
  sp->state = 1;
  return sp;
}

/* A rename that fails for a reason other than a taken name means this file
 * system cannot do it (EXDEV, EINVAL: no RENAME_NOREPLACE): stop using it. */
static void give_up_unless_taken(spool_t *sp, int err) {
  if (err != EEXIST && err != ENOENT)
    sp->state = -1;
}

int bh_spool_dir(const char *base, char *out, size_t cap, bh_spool_held_t *held) {
  char from[1300];

  held->fd = -1;
  pthread_mutex_lock(&lock);
  spool_t *sp = spool_for(base, strlen(base), 1);
  while (sp != NULL && sp->state == 1 && sp->ndirs > 0) {
    kept_dir_t d = sp->dirs[--sp->ndirs];
    sp->bytes -= d.fd >= 0 ? d.size : 0;
    kept_path(sp, 'd', d.id, from, sizeof(from));
    for (int i = 0; i < NAME_TRIES; i++) {
      random_name(base, out, cap);
      if (renameat2(AT_FDCWD, from, AT_FDCWD, out, RENAME_NOREPLACE) == 0) {
        pthread_mutex_unlock(&lock);
        if (d.fd >= 0)
          *held = (bh_spool_held_t){.fd = d.fd, .ino = d.ino};
        memcpy(held->name, d.name, sizeof(held->name));
        return 0;
      }
      if (errno != EEXIST)
        break;
    }
    give_up_unless_taken(sp, errno);
    if (d.fd >= 0)
      close(d.fd);
    bh_rmtree(from);
  }
  pthread_mutex_unlock(&lock);
  snprintf(out, cap, "%s/bentohost-req-XXXXXX", base);
  return mkdtemp(out) != NULL ? 0 : -errno;
}

/* The file a dir came back with, given the name its new upload needs. */
static int take_held(const char *dir, const char *name, bh_spool_held_t *held, uint64_t *ino) {
  char from[4096], to[4096];
  int fd = held->fd;

  held->fd = -1;
  snprintf(from, sizeof(from), "%s/%s", dir, held->name);
  if (strcmp(held->name, name) != 0) {
    snprintf(to, sizeof(to), "%s/%s", dir, name);
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0) {
      close(fd);
      unlink(from);
      return -1;
    }
  }
  *ino = held->ino;
  return fd;
}

int bh_spool_file(const char *dir, const char *name, bh_spool_held_t *held, int *reused, uint64_t *ino) {
  char path[4096], from[1300];
  struct stat st;
  int fd;

  if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
    return -ENAMETOOLONG;
  *reused = 0;
  if (held != NULL && held->fd >= 0 && (fd = take_held(dir, name, held, ino)) >= 0) {
    *reused = 1;
    return fd;
  }
  pthread_mutex_lock(&lock);
  spool_t *sp = spool_for(dir, base_len(dir), 0);
  if (sp != NULL && sp->nfiles > 0) {
    kept_file_t f = sp->files[sp->nfiles - 1];
    kept_path(sp, 'f', f.id, from, sizeof(from));
    if (renameat2(AT_FDCWD, from, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
      sp->nfiles--;
      sp->bytes -= f.size;
      pthread_mutex_unlock(&lock);
      *reused = 1;
      *ino = f.ino;
      return f.fd;
    }
    if (errno == EEXIST) {
      pthread_mutex_unlock(&lock);
      return -EEXIST;
    }
    give_up_unless_taken(sp, errno);
    sp->nfiles--;
    sp->bytes -= f.size;
    close(f.fd);
    unlink(from);
  }
  pthread_mutex_unlock(&lock);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) != 0) {
    int err = -errno;
    close(fd);
    unlink(path);
    return err;
  }
  *ino = (uint64_t)st.st_ino;
  return fd;
}

/* Whether the file open at fd, now only in the spool dir, may be kept:
 * a regular file of ours with no other link and no other open file. */
static int may_keep(spool_t *sp, int fd, uint64_t ino, struct stat *st) {
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || (uint64_t)st->st_ino != ino ||
      st->st_dev != sp->dev || st->st_nlink != 1 || st->st_uid != geteuid() ||
      (uint64_t)st->st_size > FILE_MAX || sp->bytes + (uint64_t)st->st_size > BYTES_MAX)
    return 0;
  if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0) {
    if (errno != EAGAIN)
      sp->leases = 0; /* leases are off here (fs.leases-enable, the file system) */
    return 0;
  }
  fcntl(fd, F_SETLEASE, F_UNLCK);
  return 1;
}

/* The file at path, already where no one can open it anew: its fd when it
 * may be kept (see may_keep), else -1 and it is unlinked. */
static int keepable(spool_t *sp, const char *path, uint64_t ino, struct stat *st) {
  int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0 && may_keep(sp, fd, ino, st))
    return fd;
  if (fd >= 0)
    close(fd);
  unlink(path);
  return -1;
}

/* A file kept on its own, for a later request's second file or one whose
 * dir could not be kept. path is where it is now (in the request's dir, or
 * in a kept dir in the spool). */
static void keep_file(spool_t *sp, const char *path, uint64_t ino) {
  char to[1300];
  struct stat st;
  unsigned id = sp->next_id++;
  int fd;

  if (!sp->leases || sp->nfiles == SPOOL_FILES || lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
      (uint64_t)st.st_ino != ino || st.st_nlink != 1)
    return;
  kept_path(sp, 'f', id, to, sizeof(to));
  if (renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) != 0) {
    give_up_unless_taken(sp, errno);
    return;
  }
  if ((fd = keepable(sp, to, ino, &st)) < 0)
    return;
  sp->files[sp->nfiles++] = (kept_file_t){.fd = fd, .size = (uint64_t)st.st_size, .ino = ino, .id = id};
  sp->bytes += (uint64_t)st.st_size;
}

/* Entries of a dir, counting to at most 3. */
static int dir_entries(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return 3;
  while (n < 3 && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

/* The request's dir into the spool with one rename, and its files kept:
 * the first one directly in it stays there, others are kept on their own.
 * 0 when the dir is kept; otherwise (something else is in it, no room) it
 * is removed from the spool, and -1 when it could not be moved at all. */
static int keep_dir(spool_t *sp, const char *dir, const bh_part_t *parts, size_t nparts) {
  char to[1300], path[4400];
  struct stat st;
  size_t dlen = strlen(dir);
  kept_dir_t d = {.fd = -1};

  if (sp->ndirs == SPOOL_DIRS || lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_dev != sp->dev ||
      st.st_uid != geteuid() || (st.st_mode & 07777) != 0700)
    return -1;
  d.id = sp->next_id++;
  kept_path(sp, 'd', d.id, to, sizeof(to));
  if (renameat2(AT_FDCWD, dir, AT_FDCWD, to, RENAME_NOREPLACE) != 0) {
    give_up_unless_taken(sp, errno);
    return -1;
  }
  /* from here on no one can open its files by their paths */
  for (size_t i = 0; i < nparts && sp->state == 1; i++) {
    const char *p = parts[i].path, *rest;
    if (p == NULL || strncmp(p, dir, dlen) != 0 || p[dlen] != '/')
      continue;
    rest = p + dlen + 1;
    snprintf(path, sizeof(path), "%s/%s", to, rest);
    if (d.fd < 0 && sp->leases && strchr(rest, '/') == NULL && strlen(rest) < sizeof(d.name)) {
      if ((d.fd = keepable(sp, path, parts[i].ino, &st)) >= 0) {
        d.size = (uint64_t)st.st_size;
        d.ino = parts[i].ino;
        snprintf(d.name, sizeof(d.name), "%s", rest);
      }
    } else {
      keep_file(sp, path, parts[i].ino);
    }
  }
  if (sp->state == 1 && dir_entries(to) == (d.fd >= 0 ? 1 : 0)) {
    sp->dirs[sp->ndirs++] = d;
    sp->bytes += d.fd >= 0 ? d.size : 0;
    return 0;
  }
  if (d.fd >= 0) {
    close(d.fd);
    snprintf(path, sizeof(path), "%s/%s", to, d.name);
    keep_file(sp, path, d.ino);
  }
  bh_rmtree(to);
  return 0;
}

void bh_spool_release(const char *dir, const bh_part_t *parts, size_t nparts) {
  int kept = -1;

  pthread_mutex_lock(&lock);
  spool_t *sp = spool_for(dir, base_len(dir), 0);
  if (sp != NULL && (kept = keep_dir(sp, dir, parts, nparts)) != 0)
    for (size_t i = 0; i < nparts && sp->state == 1; i++)
      if (parts[i].path != NULL)
        keep_file(sp, parts[i].path, parts[i].ino);
  pthread_mutex_unlock(&lock);
  if (kept != 0)
    bh_rmtree(dir);
}

void bh_spool_cleanup(void) {
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SPOOL_SLOTS; i++) {
    spool_t *sp = &spools[i];
    if (sp->state == 0 || sp->pid != getpid())
      continue;
    for (size_t k = 0; k < sp->nfiles; k++)
      close(sp->files[k].fd);
    for (size_t k = 0; k < sp->ndirs; k++)
      if (sp->dirs[k].fd >= 0)
        close(sp->dirs[k].fd);
    if (sp->dir[0] != '\0' && access(sp->dir, F_OK) == 0)
      bh_rmtree(sp->dir);
    memset(sp, 0, sizeof(*sp));
  }
  pthread_mutex_unlock(&lock);
}

/* The pid a spool dir's name says is alive, or was never known: names are
 * "bentohost-spool-<supervisor pid>-<random>-<worker pid>", or
 * "bentohost-spool-solo-<worker pid>" for a worker with no supervisor. */
static int owner_alive(const char *name) {
  int sup = 0, worker = 0, end = 0;
  unsigned rand_part;

  if (sscanf(name, "bentohost-spool-%d-%8x-%d%n", &sup, &rand_part, &worker, &end) == 3 && name[end] == '\0')
    return sup <= 0 || kill(sup, 0) == 0 || errno != ESRCH;
  if (sscanf(name, "bentohost-spool-solo-%d%n", &worker, &end) == 1 && name[end] == '\0')
    return worker <= 0 || kill(worker, 0) == 0 || errno != ESRCH;
  return 1;
}

/* Spool dirs whose supervisor is gone (all its processes were SIGKILLed, so
 * no one removed them): removed when a supervisor starts. A pid that exists
 * (even reused by another process) keeps its dirs. */
static void sweep(const char *base) {
  DIR *d = opendir(base);
  struct dirent *e;
  char path[1200];
  struct stat st;

  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "bentohost-spool-", 16) != 0 || owner_alive(e->d_name))
      continue;
    snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid())
      bh_rmtree(path);
  }
  closedir(d);
}

static const char *disk_base(void) {
  const char *tmp = getenv("TMPDIR");
  return tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp";
}

int bh_spool_tag_workers(void) {
  sweep(disk_base());
  sweep("/dev/shm");
  snprintf(tag, sizeof(tag), "%d-%08x", (int)getpid(), (unsigned)next_random());
  return setenv(TAG_ENV, tag, 1) == 0 ? 0 : -errno;
}

void bh_spool_remove_worker(pid_t pid) {
  const char *bases[2] = {disk_base(), "/dev/shm"};
  char path[1200];

  if (tag[0] == '\0')
    return;
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "%s/bentohost-spool-%s-%d", bases[i], tag, (int)pid);
    if (access(path, F_OK) == 0)
      bh_rmtree(path);
  }
}
