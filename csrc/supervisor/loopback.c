/* Dependency pools on loopback TCP (--no-uds, BentoML's BENTOML_NO_UDS): the
 * run's random key that pickle on those ports must be signed with, the ports'
 * listening sockets, and the addresses every later worker is told.
 *
 * The entry's first worker picks the ports: it binds them (SO_REUSEPORT, not
 * listening) before it describes the graph, because it calls them before any
 * pool exists; here the same ports are bound with SO_REUSEPORT and listened on.
 * The kernel lets only the same user join such a port, so nobody else can take
 * it; the key never appears in a log or on a command line. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define KEY_BYTES 32

int bh_sup_key_create(void) {
  unsigned char key[KEY_BYTES];
  char hex[KEY_BYTES * 2 + 1];
  size_t got = 0;

  while (got < sizeof(key)) {
    ssize_t n = getrandom(key + got, sizeof(key) - got, 0);
    if (n < 0 && errno != EINTR)
      return -errno;
    if (n > 0)
      got += (size_t)n;
  }
  for (size_t i = 0; i < sizeof(key); i++)
    snprintf(hex + 2 * i, 3, "%02x", key[i]);
  int err = setenv(BH_PRIVATE_KEY_ENV, hex, 1) != 0 ? -errno : 0;
  explicit_bzero(key, sizeof(key));
  explicit_bzero(hex, sizeof(hex));
  return err;
}

/* A listening socket on 127.0.0.1:port, shared with the reserving worker. */
static int bind_port(int port, int backlog) {
  struct sockaddr_in sa;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -errno;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, backlog) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

int bh_sup_loopback_bind(sup_service_t *svc, const cJSON *desc, int backlog) {
  const cJSON *ports = cJSON_GetObjectItemCaseSensitive(desc, "ports"), *p;
  int k = 0;

  if (!cJSON_IsArray(ports) || cJSON_GetArraySize(ports) != svc->nworkers) {
    bh_log("error: --no-uds: the graph's description has no port for each worker of %s",
           svc->config.name);
    return -EINVAL;
  }
  if ((svc->ports = calloc((size_t)svc->nworkers, sizeof(int))) == NULL)
    return -ENOMEM;
  cJSON_ArrayForEach(p, ports) {
    if (!cJSON_IsNumber(p) || p->valuedouble < 1 || p->valuedouble > 65535) {
      bh_log("error: --no-uds: bad port for %s in the graph's description", svc->config.name);
      return -EINVAL;
    }
    svc->ports[k] = (int)p->valuedouble;
    int fd = bind_port(svc->ports[k], backlog);
    if (fd < 0) {
      bh_log("error: cannot listen on 127.0.0.1:%d for %s: %s", svc->ports[k], svc->config.name,
             strerror(-fd));
      return fd;
    }
    svc->fds[k++] = fd;
  }
  return 0;
}

int bh_sup_loopback_publish(const sup_t *s) {
  cJSON *map = cJSON_CreateObject();
  char line[1024], addr[64];
  size_t len = 0;
  int err = map == NULL ? -ENOMEM : 0;

  line[0] = '\0';
  for (int i = 1; i < s->nservices && err == 0; i++) {
    const sup_service_t *svc = &s->services[i];
    cJSON *list = cJSON_AddArrayToObject(map, svc->config.name);
    if (list == NULL) {
      err = -ENOMEM;
      break;
    }
    for (int k = 0; k < svc->nworkers; k++) {
      snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", svc->ports[k]);
      cJSON *item = cJSON_CreateString(addr);
      if (item == NULL || !cJSON_AddItemToArray(list, item)) {
        cJSON_Delete(item);
        err = -ENOMEM;
        break;
      }
      int w = snprintf(line + len, sizeof(line) - len, "%s%s%s %d", k == 0 && i > 1 ? "," : "",
                       k == 0 ? " " : "", k == 0 ? svc->config.name : "", svc->ports[k]);
      if (w > 0 && (size_t)w < sizeof(line) - len)
        len += (size_t)w;
    }
  }
  char *json = err == 0 ? cJSON_PrintUnformatted(map) : NULL;
  if (err == 0 && (json == NULL || setenv(BH_PRIVATE_ADDRS_ENV, json, 1) != 0))
    err = json == NULL ? -ENOMEM : -errno;
  cJSON_free(json);
  cJSON_Delete(map);
  if (err == 0)
    bh_log("dependencies listen on 127.0.0.1 (--no-uds; pickle there must be signed):%s", line);
  return err;
}
