/* A stand-in for libnvidia-ml.so.1 for the GPU metrics tests: the few NVML
 * calls the host's GPU monitor makes, answered from the environment.
 *   FAKE_GPUS="name:total_bytes:used_bytes:util_percent;..."
 * e.g. "NVIDIA H200:150000000000:1073741824:37". Built by the test with
 * cc -shared -fPIC into a temporary libnvidia-ml.so.1 (tests/test_gpu_metrics.py);
 * tests/c/fake_cudart.c reads the same variable for the CUDA runtime's view. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define MAX_GPUS 64

typedef struct fake_gpu {
  char name[96];
  unsigned long long total, used;
  unsigned int util;
} fake_gpu_t;

typedef struct fake_gpu *nvmlDevice_t;
typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
  unsigned int gpu, memory;
} nvmlUtilization_t;

static fake_gpu_t gpus[MAX_GPUS];
static unsigned ngpus;
static int initialised;

static void parse(void) {
  const char *env = getenv("FAKE_GPUS");
  ngpus = 0;
  if (env == NULL)
    return;
  char *copy = strdup(env), *save = NULL;
  if (copy == NULL)
    return;
  for (char *tok = strtok_r(copy, ";", &save); tok && ngpus < MAX_GPUS;
       tok = strtok_r(NULL, ";", &save)) {
    /* the name is everything before the last three ':' (it may hold one) */
    char *c3 = strrchr(tok, ':');
    if (c3 == NULL)
      continue;
    *c3 = '\0';
    char *c2 = strrchr(tok, ':');
    if (c2 == NULL)
      continue;
    *c2 = '\0';
    char *c1 = strrchr(tok, ':');
    if (c1 == NULL)
      continue;
    *c1 = '\0';
    fake_gpu_t *g = &gpus[ngpus++];
    snprintf(g->name, sizeof(g->name), "%s", tok);
    g->total = strtoull(c1 + 1, NULL, 10);
    g->used = strtoull(c2 + 1, NULL, 10);
    g->util = (unsigned)strtoul(c3 + 1, NULL, 10);
  }
  free(copy);
}

int nvmlInit_v2(void) {
  parse();
  initialised = 1;
  return NVML_SUCCESS;
}

int nvmlShutdown(void) {
  initialised = 0;
  return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
  if (!initialised)
    return NVML_ERROR_UNINITIALIZED;
  if (count == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  *count = ngpus;
  return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  if (!initialised)
    return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || index >= ngpus)
    return NVML_ERROR_INVALID_ARGUMENT;
  *device = &gpus[index];
  return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
  if (device == NULL || memory == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  memory->total = device->total;
  memory->used = device->used;
  memory->free = device->total > device->used ? device->total - device->used : 0;
  return NVML_SUCCESS;
}

int nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
  if (device == NULL || utilization == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  utilization->gpu = device->util;
  utilization->memory = device->total ? (unsigned)(100 * device->used / device->total) : 0;
  return NVML_SUCCESS;
}

int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
  if (device == NULL || name == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(device->name) + 1 > length)
    return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(name, device->name, strlen(device->name) + 1);
  return NVML_SUCCESS;
}
