/* --reload (development): watches the service's directory and every
 * --reload-dir with inotify, recursively, and after a burst of saves has gone
 * quiet does the rolling restart of restart.c. The supervisor stays free of
 * Python: the launcher passes the directories, the workers do the importing,
 * and a save that breaks the import is a new worker that never gets ready,
 * which keeps the old ones serving.
 *
 * What counts: `*.py` files and the configuration file (BENTOML_CONFIG),
 * except what a root's `.bentoignore` excludes (gitignore-like lines: globs,
 * `dir/`, `/anchored`, `**` prefixes, `!` to re-include, `#` comments) and
 * hidden or `__pycache__` directories. Everything is bounded: the watches, the
 * depth of the walk, the patterns, the bytes read per wake-up. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WATCHES 4096   /* directories watched in all */
#define MAX_DEPTH 32       /* below a root */
#define MAX_PATTERNS 512   /* .bentoignore lines kept per root */
#define MAX_IGNORE_BYTES 65536
#define READ_BYTES 16384   /* one read(): at most ~1000 events */
#define READS_PER_WAKE 8   /* then back to the loop, the rest next turn */
#define QUIET_S 0.3        /* a burst of saves is one change once this quiet */

#define DIR_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ONLYDIR)

typedef struct pattern {
  char *glob;
  int negate, dir_only, anchored, any_depth;
} pattern_t;

typedef struct root {
  char *path;                /* canonical */
  pattern_t *pats;
  int npats;
} root_t;

typedef struct watch {
  int wd;
  int root;                  /* -1: the config file's directory only */
  char *path;
} watch_t;

typedef struct sup_reload {
  int fd;
  root_t roots[BH_MAX_RELOAD_DIRS];
  int nroots;
  watch_t *watches;
  int nwatches;
  int full_logged;
  char *config_path;         /* canonical BENTOML_CONFIG, or NULL */
  double due;                /* the quiet period ends then; 0: nothing pending */
  char changed[256];         /* the first change of the burst, for the log */
} sup_reload_t;

/* ---------------------------------------------------------------- .bentoignore */

static void patterns_free(root_t *r) {
  for (int i = 0; i < r->npats; i++)
    free(r->pats[i].glob);
  free(r->pats);
  r->pats = NULL;
  r->npats = 0;
}

static void pattern_add(root_t *r, char *line) {
  pattern_t p = {0};
  size_t n = strlen(line);

  while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
    line[--n] = '\0';
  if (n == 0 || line[0] == '#' || r->npats >= MAX_PATTERNS)
    return;
  if (line[0] == '!') {
    p.negate = 1;
    line++;
    n--;
  }
  if (n > 3 && strcmp(line + n - 3, "/**") == 0) { /* everything inside: the directory */
    line[n -= 3] = '\0';
    p.dir_only = 1;
  }
  if (n > 1 && line[n - 1] == '/') {
    line[--n] = '\0';
    p.dir_only = 1;
  }
  if (strncmp(line, "**/", 3) == 0) {
    line += 3;
    p.any_depth = 1;
  }
  if (line[0] == '/')
    line++, p.anchored = 1;
  else if (strchr(line, '/') != NULL)
    p.anchored = !p.any_depth;
  else
    p.any_depth = 0; /* a bare name matches at any depth anyway */
  if (*line == '\0' || (p.glob = strdup(line)) == NULL)
    return;
  r->pats[r->npats++] = p;
}

static void patterns_load(root_t *r) {
  char path[PATH_MAX], *buf;
  int fd;
  ssize_t n;

  patterns_free(r);
  snprintf(path, sizeof(path), "%s/.bentoignore", r->path);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    return;
  buf = malloc(MAX_IGNORE_BYTES + 1);
  r->pats = calloc(MAX_PATTERNS, sizeof(*r->pats));
  n = buf != NULL && r->pats != NULL ? read(fd, buf, MAX_IGNORE_BYTES) : -1;
  close(fd);
  if (n > 0) {
    buf[n] = '\0';
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
      pattern_add(r, line);
  }
  free(buf);
}

/* Whether rel (relative to the root, no leading slash) matches p. */
static int pattern_matches(const pattern_t *p, const char *rel, int is_dir) {
  const char *base = strrchr(rel, '/');

  if (p->dir_only && !is_dir)
    return 0;
  if (!p->anchored && !p->any_depth)
    return fnmatch(p->glob, base != NULL ? base + 1 : rel, 0) == 0;
  if (fnmatch(p->glob, rel, FNM_PATHNAME) == 0)
    return 1;
  for (const char *s = rel; p->any_depth && (s = strchr(s, '/')) != NULL; s++)
    if (fnmatch(p->glob, s + 1, FNM_PATHNAME) == 0)
      return 1;
  return 0;
}

/* gitignore's rule: a path is out when its directory is, else the last
 * pattern that matches it decides. */
static int ignored(const root_t *r, const char *rel, int is_dir) {
  char sub[PATH_MAX];
  size_t n = strlen(rel);

  if (r == NULL || r->npats == 0 || n == 0 || n >= sizeof(sub))
    return 0;
  memcpy(sub, rel, n + 1);
  for (size_t i = 0; i <= n; i++) {
    if (sub[i] != '/' && sub[i] != '\0')
      continue;
    char c = sub[i];
    sub[i] = '\0';
    int out = 0;
    for (int k = 0; k < r->npats; k++)
      if (pattern_matches(&r->pats[k], sub, c == '/' || is_dir))
        out = !r->pats[k].negate;
    sub[i] = c;
    if (out)
      return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- watches */

static const char *relative(const sup_reload_t *rl, int root, const char *path) {
  size_t n = strlen(rl->roots[root].path);
  return path[n] == '/' ? path + n + 1 : "";
}

static int skipped_dir(const char *name) {
  return name[0] == '.' || strcmp(name, "__pycache__") == 0;
}

static watch_t *watch_of(sup_reload_t *rl, int wd) {
  for (int i = 0; i < rl->nwatches; i++)
    if (rl->watches[i].wd == wd)
      return &rl->watches[i];
  return NULL;
}

static int add_watch(sup_reload_t *rl, int root, const char *path) {
  if (rl->nwatches >= MAX_WATCHES) {
    if (!rl->full_logged++)
      bh_log("warning: --reload watches %d directories at most; %s and others are not watched",
             MAX_WATCHES, path);
    return -ENOSPC;
  }
  int wd = inotify_add_watch(rl->fd, path, DIR_MASK);
  if (wd < 0) {
    if (errno == ENOSPC && !rl->full_logged++)
      bh_log("warning: --reload: the kernel's inotify watch limit is reached "
             "(fs.inotify.max_user_watches); %s and others are not watched", path);
    return -errno;
  }
  if (watch_of(rl, wd) != NULL) /* the same directory seen twice */
    return 0;
  char *copy = strdup(path);
  if (copy == NULL)
    return -ENOMEM;
  rl->watches[rl->nwatches++] = (watch_t){wd, root, copy};
  return 0;
}

static void add_tree(sup_reload_t *rl, int root, const char *path, int depth) {
  char child[PATH_MAX];
  struct dirent *e;
  DIR *d;

  if (add_watch(rl, root, path) != 0 || depth >= MAX_DEPTH || (d = opendir(path)) == NULL)
    return;
  while ((e = readdir(d)) != NULL && rl->nwatches < MAX_WATCHES) {
    struct stat st;
    if (skipped_dir(e->d_name))
      continue;
    if (snprintf(child, sizeof(child), "%s/%s", path, e->d_name) >= (int)sizeof(child))
      continue;
    /* lstat: symbolic links are not followed, so no loop */
    if (lstat(child, &st) != 0 || !S_ISDIR(st.st_mode) ||
        ignored(&rl->roots[root], relative(rl, root, child), 1))
      continue;
    add_tree(rl, root, child, depth + 1);
  }
  closedir(d);
}

static int depth_of(const sup_reload_t *rl, int root, const char *path) {
  int n = 0;
  for (const char *s = relative(rl, root, path); *s; s++)
    n += *s == '/';
  return n + 1;
}

/* ---------------------------------------------------------------- events */

static void on_event(sup_reload_t *rl, const struct inotify_event *ev) {
  char path[PATH_MAX];
  watch_t *w;

  if (ev->mask & IN_Q_OVERFLOW) { /* events were lost: assume the worst */
    snprintf(rl->changed, sizeof(rl->changed), "%s", "many files");
    rl->due = bh_sup_now_s() + QUIET_S;
    return;
  }
  if ((w = watch_of(rl, ev->wd)) == NULL)
    return;
  if (ev->mask & IN_IGNORED) { /* the directory is gone */
    free(w->path);
    *w = rl->watches[--rl->nwatches];
    return;
  }
  if (ev->len == 0 || snprintf(path, sizeof(path), "%s/%s", w->path, ev->name) >= (int)sizeof(path))
    return;
  int is_config = rl->config_path != NULL && strcmp(path, rl->config_path) == 0;
  if (w->root < 0 && !is_config)
    return;
  const root_t *r = w->root >= 0 ? &rl->roots[w->root] : NULL;
  const char *rel = w->root >= 0 ? relative(rl, w->root, path) : path;
  if (ev->mask & IN_ISDIR) {
    if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && r != NULL && !skipped_dir(ev->name) &&
        !ignored(r, rel, 1))
      add_tree(rl, w->root, path, depth_of(rl, w->root, path));
    return;
  }
  if (r != NULL && strcmp(ev->name, ".bentoignore") == 0 && strcmp(w->path, r->path) == 0) {
    patterns_load(&rl->roots[w->root]);
    return;
  }
  if (ev->mask & IN_CREATE)
    return; /* its IN_CLOSE_WRITE follows */
  size_t n = strlen(ev->name);
  int is_py = n > 3 && strcmp(ev->name + n - 3, ".py") == 0 && ev->name[0] != '.' &&
              ev->name[0] != '#';
  if (!is_config && !(is_py && !ignored(r, rel, 0)))
    return;
  if (rl->due == 0)
    snprintf(rl->changed, sizeof(rl->changed), "%s", rel);
  rl->due = bh_sup_now_s() + QUIET_S;
}

void bh_sup_reload_read(sup_t *s) {
  sup_reload_t *rl = s->reload;
  _Alignas(struct inotify_event) char buf[READ_BYTES];

  for (int k = 0; rl != NULL && k < READS_PER_WAKE; k++) {
    ssize_t n = read(rl->fd, buf, sizeof(buf));
    if (n <= 0)
      return;
    for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
      const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
      on_event(rl, ev);
      off += (ssize_t)sizeof(*ev) + ev->len;
    }
  }
}

double bh_sup_reload_due(const sup_t *s) {
  return s->reload != NULL ? s->reload->due : 0;
}

void bh_sup_reload_tick(sup_t *s) {
  sup_reload_t *rl = s->reload;
  char why[sizeof(rl->changed) + 32];

  if (rl == NULL || rl->due == 0 || bh_sup_now_s() < rl->due)
    return;
  rl->due = 0;
  snprintf(why, sizeof(why), "reload: %s changed", rl->changed);
  bh_sup_restart_request(s, why);
}

int bh_sup_reload_fd(const sup_t *s) {
  return s->reload != NULL ? s->reload->fd : -1;
}

/* ---------------------------------------------------------------- start and stop */

static int add_root(sup_reload_t *rl, const char *dir) {
  char real[PATH_MAX];

  if (realpath(dir, real) == NULL) {
    bh_log("error: --reload-dir %s: %s", dir, strerror(errno));
    return -errno;
  }
  for (int i = 0; i < rl->nroots; i++) /* the same tree twice, or one inside another */
    if (strncmp(real, rl->roots[i].path, strlen(rl->roots[i].path)) == 0 &&
        (real[strlen(rl->roots[i].path)] == '/' || real[strlen(rl->roots[i].path)] == '\0'))
      return 0;
  if ((rl->roots[rl->nroots].path = strdup(real)) == NULL)
    return -ENOMEM;
  patterns_load(&rl->roots[rl->nroots]);
  rl->nroots++;
  return 0;
}

int bh_sup_reload_start(sup_t *s) {
  const bh_options_t *o = s->opts;
  sup_reload_t *rl = calloc(1, sizeof(*rl));
  char real[PATH_MAX];
  int err = 0;

  if (rl == NULL || (rl->watches = calloc(MAX_WATCHES, sizeof(*rl->watches))) == NULL) {
    free(rl);
    return -ENOMEM;
  }
  s->reload = rl;
  if ((rl->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
    err = -errno;
    bh_log("error: --reload: inotify: %s", strerror(errno));
    bh_sup_reload_stop(s);
    return err;
  }
  for (int i = 0; i < o->nreload_dirs && err == 0; i++)
    err = add_root(rl, o->reload_dirs[i]);
  if (err == 0 && o->nreload_dirs == 0)
    err = add_root(rl, ".");
  if (err != 0) {
    bh_sup_reload_stop(s);
    return err;
  }
  for (int i = 0; i < rl->nroots; i++)
    add_tree(rl, i, rl->roots[i].path, 0);
  const char *cfg = getenv("BENTOML_CONFIG");
  if (cfg != NULL && *cfg && realpath(cfg, real) != NULL && (rl->config_path = strdup(real))) {
    char *slash = strrchr(real, '/');
    if (slash != NULL && slash != real) {
      *slash = '\0';
      add_watch(rl, -1, real); /* a directory already watched keeps its root */
    }
  }
  bh_log("reload: watching %d director%s under %s%s (*.py%s, honouring .bentoignore)",
         rl->nwatches, rl->nwatches == 1 ? "y" : "ies", rl->roots[0].path,
         rl->nroots > 1 ? " and the other --reload-dir" : "",
         rl->config_path != NULL ? " and the configuration file" : "");
  return 0;
}

void bh_sup_reload_stop(sup_t *s) {
  sup_reload_t *rl = s->reload;
  if (rl == NULL)
    return;
  if (rl->fd >= 0)
    close(rl->fd);
  for (int i = 0; i < rl->nwatches; i++)
    free(rl->watches[i].path);
  for (int i = 0; i < rl->nroots; i++) {
    patterns_free(&rl->roots[i]);
    free(rl->roots[i].path);
  }
  free(rl->watches);
  free(rl->config_path);
  free(rl);
  s->reload = NULL;
}
