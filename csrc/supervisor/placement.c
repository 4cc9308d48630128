/* Where a worker runs, from its service's description ("placement", one entry per
 * worker index, decided in Python by bentohost/_placement.py): its environment
 * (CUDA_VISIBLE_DEVICES, the BLAS/OpenMP thread counts) and its CPUs, applied in
 * the forked child before Python or any CUDA library starts, since both read them
 * once at start-up. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry of the worker in `slot`; NULL when it has none. *root is freed by the caller. */
static const cJSON *worker_entry(const sup_t *s, int slot, cJSON **root) {
  const bh_service_config_t *cfg = bh_sup_config(s, slot);
  *root = NULL;
  if (cfg->placement == NULL)
    return NULL;
  *root = cJSON_Parse(cfg->placement);
  const cJSON *entry = cJSON_GetArrayItem(*root, s->workers[slot].index - 1);
  return cJSON_IsObject(entry) ? entry : NULL;
}

void bh_sup_placement_describe(const sup_t *s, int slot, char *out, size_t cap) {
  cJSON *root;
  const cJSON *entry = worker_entry(s, slot, &root);
  const cJSON *words = cJSON_GetObjectItemCaseSensitive(entry, "describe");
  out[0] = '\0';
  if (cJSON_IsString(words))
    snprintf(out, cap, "%s", words->valuestring);
  cJSON_Delete(root);
}

int bh_sup_placement_apply(const sup_t *s, int slot, int *io_cpu) {
  cJSON *root;
  const cJSON *entry = worker_entry(s, slot, &root), *item;
  int err = 0;

  *io_cpu = 0;
  if (entry == NULL) {
    cJSON_Delete(root);
    return 0;
  }
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(entry, "env")) {
    if (cJSON_IsString(item) && setenv(item->string, item->valuestring, 1) != 0)
      err = -1;
  }
  const cJSON *cpus = cJSON_GetObjectItemCaseSensitive(entry, "cpus");
  cpu_set_t set;
  CPU_ZERO(&set);
  int last = -1;
  cJSON_ArrayForEach(item, cpus) {
    if (cJSON_IsNumber(item) && item->valueint >= 0 && item->valueint < CPU_SETSIZE) {
      CPU_SET(item->valueint, &set);
      last = item->valueint;
    }
  }
  if (last >= 0) {
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
      err = -1;
    /* the I/O thread on the last of them, the Python threads on all */
    *io_cpu = last + 1;
  }
  cJSON_Delete(root);
  return err;
}
