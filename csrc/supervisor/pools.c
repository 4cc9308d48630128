/* The pools of a service graph: one per service, each dependency's workers on
 * their own Unix sockets in a private runtime directory (or loopback ports with
 * --no-uds, loopback.c), bound before any of its workers starts so that early
 * calls wait in the backlog. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int bh_sup_rundir_create(sup_t *s) {
  const char *tmp = getenv("TMPDIR");
  char tmpl[4096];

  snprintf(tmpl, sizeof(tmpl), "%s/bentohost-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
  if (mkdtemp(tmpl) == NULL || chmod(tmpl, 0700) != 0)
    return -errno;
  if ((s->rundir = strdup(tmpl)) == NULL)
    return -ENOMEM;
  /* Every worker finds its dependencies' sockets from here. */
  setenv("BENTOHOST_RUNTIME_DIR", s->rundir, 1);
  return 0;
}

static void socket_path(const sup_t *s, const bh_service_config_t *cfg, int index,
                        char *out, size_t cap) {
  snprintf(out, cap, "%s/%s-%d.sock", s->rundir, cfg->name, index);
}

void bh_sup_rundir_remove(sup_t *s) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];

  if (s->rundir == NULL)
    return;
  for (int i = 1; i < s->nservices; i++)
    for (int k = 1; k <= s->services[i].nworkers; k++) {
      socket_path(s, &s->services[i].config, k, path, sizeof(path));
      unlink(path);
    }
  rmdir(s->rundir);
  free(s->rundir);
  s->rundir = NULL;
  unsetenv("BENTOHOST_RUNTIME_DIR");
}

static int bind_unix(const char *path, int backlog) {
  struct sockaddr_un sa;
  int fd;

  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path))
    return -ENAMETOOLONG;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  unlink(path);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, backlog) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd; /* CLOEXEC: forked workers keep it; nothing exec'd does */
}

int bh_sup_graph_setup(sup_t *s, const char *json, size_t len, int entry_workers) {
  bh_service_config_t *deps = NULL;
  size_t ndeps = 0;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
  int err = bh_config_parse_graph(json, len, &deps, &ndeps), slot;
  cJSON *root = NULL;
  const cJSON *descs = NULL;

  if (err != 0)
    return err;
  if (s->opts->no_uds && ndeps > 0) { /* the ports are in the description */
    root = cJSON_ParseWithLength(json, len);
    descs = cJSON_GetObjectItemCaseSensitive(root, "graph");
  }
  if (ndeps + 1 > BH_MAX_SERVICES) {
    bh_log("error: %zu services in the graph; at most %d", ndeps + 1, BH_MAX_SERVICES);
    err = -E2BIG;
    goto fail;
  }
  s->services = calloc(ndeps + 1, sizeof(*s->services));
  if (s->services == NULL) {
    err = -ENOMEM;
    goto fail;
  }
  s->nservices = (int)ndeps + 1;
  s->services[0].first_slot = 1;
  s->services[0].nworkers = entry_workers;
  slot = entry_workers + 1;
  for (size_t i = 0; i < ndeps; i++) {
    sup_service_t *svc = &s->services[i + 1];
    svc->config = deps[i];
    memset(&deps[i], 0, sizeof(deps[i])); /* moved */
    svc->first_slot = slot;
    svc->nworkers = svc->config.workers;
    slot += svc->nworkers;
    if (slot - 1 > BH_MAX_WORKERS) {
      bh_log("error: %d workers in the graph; at most %d", slot - 1, BH_MAX_WORKERS);
      err = -E2BIG;
      goto fail;
    }
    if ((svc->fds = calloc((size_t)svc->nworkers, sizeof(int))) == NULL) {
      err = -ENOMEM;
      goto fail;
    }
    for (int k = 0; k < svc->nworkers; k++)
      svc->fds[k] = -1;
    if (s->opts->no_uds) {
      if ((err = bh_sup_loopback_bind(svc, cJSON_GetArrayItem(descs, (int)i), s->opts->backlog)) != 0)
        goto fail;
      continue;
    }
    for (int k = 1; k <= svc->nworkers; k++) {
      socket_path(s, &svc->config, k, path, sizeof(path));
      int fd = bind_unix(path, s->opts->backlog);
      if (fd < 0) {
        bh_log("error: cannot listen on %s: %s", path, strerror(-fd));
        err = fd;
        goto fail;
      }
      svc->fds[k - 1] = fd;
    }
  }
  free(deps);
  cJSON_Delete(root);
  return 0;

fail:
  for (size_t i = 0; i < ndeps; i++)
    bh_config_free(&deps[i]);
  free(deps);
  cJSON_Delete(root);
  return err;
}

void bh_sup_graph_free(sup_t *s) {
  for (int i = 1; i < s->nservices; i++) {
    for (int k = 0; s->services[i].fds != NULL && k < s->services[i].nworkers; k++)
      if (s->services[i].fds[k] >= 0)
        close(s->services[i].fds[k]);
    free(s->services[i].fds);
    free(s->services[i].ports);
    bh_config_free(&s->services[i].config);
  }
  free(s->services);
  s->services = NULL;
  s->nservices = 0;
}

int bh_sup_listen_fd(const sup_t *s, int slot) {
  const sup_worker_t *w = &s->workers[slot];
  if (w->service == 0 || s->services == NULL)
    return s->listen_fd;
  return s->services[w->service].fds[w->index - 1];
}
