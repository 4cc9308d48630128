/* A stand-in for the CUDA runtime (libcudart.so) on machines without a GPU: the
 * devices are those of FAKE_GPUS, ';'-separated "name:total_bytes:used_bytes:util_percent"
 * (the format tests/c/fake_nvml.c reads too). Only what the supervisor's probe calls
 * (csrc/supervisor/gpu.c). FAKE_GPUS_HANG=1 makes it never answer (the probe's timeout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROPS_TOTAL_MEM 288 /* offsetof(cudaDeviceProp, totalGlobalMem) */

/* The i-th device's name and total memory; -1 when there is none. */
static int fake_device(int index, char *name, size_t cap, size_t *total) {
  const char *spec = getenv("FAKE_GPUS");
  for (int i = 0; spec != NULL && *spec; i++) {
    const char *end = strchr(spec, ';');
    size_t len = end ? (size_t)(end - spec) : strlen(spec);
    const char *colon = memchr(spec, ':', len);
    if (i == index && colon != NULL) {
      size_t n = (size_t)(colon - spec) < cap - 1 ? (size_t)(colon - spec) : cap - 1;
      memcpy(name, spec, n);
      name[n] = '\0';
      *total = strtoull(colon + 1, NULL, 10);
      return 0;
    }
    spec = end ? end + 1 : spec + len;
  }
  return -1;
}

int cudaGetDeviceCount(int *count) {
  if (getenv("FAKE_GPUS_HANG") != NULL)
    pause();
  char name[256];
  size_t total;
  int n = 0;
  while (fake_device(n, name, sizeof(name), &total) == 0)
    n++;
  *count = n;
  return n > 0 ? 0 : 100; /* cudaErrorNoDevice */
}

int cudaGetDeviceProperties_v2(void *props, int device) {
  size_t total;
  if (fake_device(device, (char *)props, 256, &total) != 0)
    return 101; /* cudaErrorInvalidDevice */
  memcpy((char *)props + PROPS_TOTAL_MEM, &total, sizeof(total));
  return 0;
}
