/* The GPUs of this machine, learnt once at start in a short-lived child process:
 * a CUDA context, or even the driver's state after cuInit(), does not survive
 * fork(), so the supervisor, which forks every worker, never loads CUDA itself.
 * The child loads the CUDA runtime with dlopen() (so the host runs where there is
 * none), falling back to the driver's own library, and writes one JSON list of
 * {"name", "memory"} down a pipe; the supervisor hands it to the workers in
 * BENTOHOST_GPUS, where bentohost/_placement.py gives the devices out. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS 20000 /* a driver that does not answer: no GPUs, not a hung start
                                  (BENTOHOST_GPU_PROBE_TIMEOUT_MS changes it) */
#define MAX_GPUS 64
#define PROPS_BYTES 8192       /* more than any cudaDeviceProp so far */
#define PROPS_TOTAL_MEM 288    /* offsetof(cudaDeviceProp, totalGlobalMem) since CUDA 10 */

typedef int (*count_fn)(int *);
typedef int (*props_fn)(void *, int);
typedef int (*init_fn)(unsigned);
typedef int (*get_fn)(int *, int);
typedef int (*name_fn)(char *, int, int);
typedef int (*mem_fn)(size_t *, int);

static int add_gpu(cJSON *list, const char *name, double memory) {
  cJSON *gpu = cJSON_CreateObject();
  if (gpu == NULL || !cJSON_AddItemToArray(list, gpu))
    return -ENOMEM;
  return cJSON_AddStringToObject(gpu, "name", name) && cJSON_AddNumberToObject(gpu, "memory", memory) ? 0 : -ENOMEM;
}

/* The runtime's view: 1 when it answered (list filled), 0 when absent or failing. */
static int probe_runtime(cJSON *list, const char *own) {
  const char *names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0",
                         "/usr/local/cuda/lib64/libcudart.so"};
  void *lib = own != NULL ? dlopen(own, RTLD_NOW | RTLD_LOCAL) : NULL;
  for (size_t i = 0; own == NULL && lib == NULL && i < sizeof(names) / sizeof(names[0]); i++)
    lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return 0;
  count_fn count = (count_fn)dlsym(lib, "cudaGetDeviceCount");
  /* CUDA 12 renamed the call (the struct grew); both begin the same way */
  props_fn props = (props_fn)dlsym(lib, "cudaGetDeviceProperties_v2");
  if (props == NULL)
    props = (props_fn)dlsym(lib, "cudaGetDeviceProperties");
  int n = 0;
  if (count == NULL || props == NULL || count(&n) != 0)
    return 0;
  static unsigned char buf[PROPS_BYTES];
  for (int i = 0; i < n && i < MAX_GPUS; i++) {
    size_t total = 0;
    memset(buf, 0, sizeof(buf));
    if (props(buf, i) != 0)
      return 0;
    buf[255] = '\0';
    memcpy(&total, buf + PROPS_TOTAL_MEM, sizeof(total));
    if (add_gpu(list, (const char *)buf, (double)total) != 0)
      return 0;
  }
  return 1;
}

/* The driver's view, where only the driver is installed (a PyTorch wheel carries
 * its own runtime, out of the loader's path). */
static int probe_driver(cJSON *list) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return 0;
  init_fn init = (init_fn)dlsym(lib, "cuInit");
  count_fn count = (count_fn)dlsym(lib, "cuDeviceGetCount");
  get_fn get = (get_fn)dlsym(lib, "cuDeviceGet");
  name_fn name = (name_fn)dlsym(lib, "cuDeviceGetName");
  mem_fn mem = (mem_fn)dlsym(lib, "cuDeviceTotalMem_v2");
  int n = 0;
  if (init == NULL || count == NULL || get == NULL || name == NULL || mem == NULL || init(0) != 0 ||
      count(&n) != 0)
    return 0;
  for (int i = 0; i < n && i < MAX_GPUS; i++) {
    char text[256] = "";
    size_t total = 0;
    int dev = 0;
    if (get(&dev, i) != 0 || name(text, (int)sizeof(text) - 1, dev) != 0 || mem(&total, dev) != 0)
      return 0;
    if (add_gpu(list, text, (double)total) != 0)
      return 0;
  }
  return 1;
}

static void probe_child(int fd) {
  cJSON *list = cJSON_CreateArray();
  if (list == NULL)
    _exit(1);
  /* BENTOHOST_CUDA_RUNTIME names the one library to ask (no other is tried) */
  const char *own = getenv("BENTOHOST_CUDA_RUNTIME");
  if (own != NULL && *own == '\0')
    own = NULL;
  if (!probe_runtime(list, own)) {
    cJSON_Delete(list);
    if (own != NULL || (list = cJSON_CreateArray()) == NULL || !probe_driver(list))
      _exit(0); /* no CUDA: nothing written, no GPUs */
  }
  char *text = cJSON_PrintUnformatted(list);
  size_t len = text ? strlen(text) : 0, off = 0;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w <= 0)
      _exit(1);
    off += (size_t)w;
  }
  _exit(0);
}

/* Reads the child's list until it closes the pipe or the deadline passes. */
static char *read_list(int fd, pid_t pid) {
  size_t len = 0, cap = 4096;
  char *out = malloc(cap);
  const char *own = getenv("BENTOHOST_GPU_PROBE_TIMEOUT_MS");
  double timeout_s = (own != NULL && atoi(own) > 0 ? atoi(own) : PROBE_TIMEOUT_MS) / 1000.0;
  double deadline = bh_sup_now_s() + timeout_s;
  while (out != NULL) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int left = (int)((deadline - bh_sup_now_s()) * 1000.0);
    if (left <= 0 || poll(&p, 1, left) <= 0) {
      bh_log("warning: the GPU probe (pid %d) did not answer in %.1fs; running without GPUs", (int)pid,
             timeout_s);
      free(out);
      return NULL;
    }
    if (len + 1 >= cap) {
      char *bigger = cap < (1u << 20) ? realloc(out, cap * 2) : NULL;
      if (bigger == NULL)
        break;
      out = bigger;
      cap *= 2;
    }
    ssize_t n = read(fd, out + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      out[len] = '\0';
      return out;
    }
    len += (size_t)n;
  }
  free(out);
  return NULL;
}

static void log_gpus(const char *json) {
  cJSON *list = cJSON_Parse(json), *gpu;
  int i = 0;
  cJSON_ArrayForEach(gpu, list) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(gpu, "name");
    const cJSON *memory = cJSON_GetObjectItemCaseSensitive(gpu, "memory");
    bh_log("GPU %d: %s, %.0f GiB", i++, cJSON_IsString(name) ? name->valuestring : "?",
           cJSON_IsNumber(memory) ? memory->valuedouble / (1 << 30) : 0.0);
  }
  cJSON_Delete(list);
}

int bh_sup_gpu_probe(void) {
  int fds[2];
  unsetenv("BENTOHOST_GPUS"); /* this run's own finding only */
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    close(fds[0]);
    close(fds[1]);
    return err;
  }
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    probe_child(fds[1]);
  }
  close(fds[1]);
  char *json = read_list(fds[0], pid);
  close(fds[0]);
  if (json == NULL)
    kill(pid, SIGKILL);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (json != NULL && json[0] == '[') {
    setenv("BENTOHOST_GPUS", json, 1);
    log_gpus(json);
  }
  free(json);
  return 0;
}
