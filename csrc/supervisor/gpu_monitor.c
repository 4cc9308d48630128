/* The GPU monitor: NVML sampled once a second by a child of the supervisor,
 * written into the shared segment's GPU block for every worker's /metrics.
 *
 * A child, not the supervisor itself: NVML is a large driver library that
 * starts threads and may block in the driver, and the supervisor must stay
 * single-threaded and never wait on anything but its own events. It is loaded
 * with dlopen() so that the host runs, and links, where no NVIDIA driver is.
 * The NVML declarations below are ours (the few calls used, their ABI is
 * stable across driver versions): no NVML header is needed to build. */
#include "supervisor/gpu_monitor.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NVML_SUCCESS 0
#define SAMPLE_PERIOD_NS 1000000000ull
#define READY_WAIT_MS 2000 /* for the child to say whether NVML loaded */
#define MONITOR_FD 3       /* where the child keeps its end of the pipe */

typedef struct nvml_device *nvml_device_t;
typedef struct {
  unsigned long long total, free, used;
} nvml_memory_t;
typedef struct {
  unsigned int gpu, memory;
} nvml_utilization_t;

typedef struct nvml {
  int (*init)(void);
  int (*shutdown)(void);
  int (*count)(unsigned int *);
  int (*handle)(unsigned int, nvml_device_t *);
  int (*memory)(nvml_device_t, nvml_memory_t *);
  int (*utilization)(nvml_device_t, nvml_utilization_t *);
} nvml_t;

/* The child must not keep the supervisor's listening socket, status pipe or
 * signalfd: a worker's socket held open by it would outlive a shutdown. */
static void close_inherited(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, MONITOR_FD + 1, ~0u, 0) == 0)
    return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536)
    max = 65536;
  for (long fd = MONITOR_FD + 1; fd < max; fd++)
    close((int)fd);
}

/* The supervisor's signal state is not the monitor's: it runs with nothing
 * blocked and default actions, except what the supervisor orchestrates. */
static void reset_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  /* A terminal's ^C reaches the whole process group; the supervisor drains
   * then, and /metrics should keep its GPUs meanwhile. */
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
}

static int nvml_load(nvml_t *n) {
  const char *path = getenv(BH_NVML_LIBRARY_ENV);
  void *lib = dlopen(path != NULL && path[0] != '\0' ? path : "libnvidia-ml.so.1",
                     RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return -ENOENT;
  /* POSIX's way from dlsym's void * to a function pointer */
  *(void **)&n->init = dlsym(lib, "nvmlInit_v2");
  *(void **)&n->shutdown = dlsym(lib, "nvmlShutdown");
  *(void **)&n->count = dlsym(lib, "nvmlDeviceGetCount_v2");
  *(void **)&n->handle = dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
  *(void **)&n->memory = dlsym(lib, "nvmlDeviceGetMemoryInfo");
  *(void **)&n->utilization = dlsym(lib, "nvmlDeviceGetUtilizationRates");
  if (!n->init || !n->shutdown || !n->count || !n->handle || !n->memory || !n->utilization)
    return -ENOENT;
  return 0;
}

static void sample(const nvml_t *n, bh_shm_t *shm, int ngpus) {
  for (int i = 0; i < ngpus; i++) {
    nvml_device_t dev;
    nvml_memory_t mem;
    nvml_utilization_t util;
    /* A GPU that fails is left alone: its last sample ages out of /metrics. */
    if (n->handle((unsigned)i, &dev) != NVML_SUCCESS || n->memory(dev, &mem) != NVML_SUCCESS)
      continue;
    double ratio = -1; /* some devices report no utilisation: memory still counts */
    if (n->utilization(dev, &util) == NVML_SUCCESS)
      ratio = util.gpu / 100.0;
    bh_shm_gpu_set(shm, i, mem.used, mem.total, ratio);
  }
}

static void monitor_main(bh_shm_t *shm, pid_t parent, int ready_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(0); /* the supervisor died before PDEATHSIG was armed */
  prctl(PR_SET_NAME, "bentohost-gpu");
  if (ready_fd != MONITOR_FD) {
    if (dup2(ready_fd, MONITOR_FD) < 0)
      _exit(0);
    close(ready_fd);
  }
  close_inherited();
  reset_signals();

  nvml_t n = {0};
  if (nvml_load(&n) != 0)
    _exit(0); /* no NVIDIA driver: the supervisor sees the pipe close */
  char ok = 1;
  while (write(MONITOR_FD, &ok, 1) < 0 && errno == EINTR)
    ;
  close(MONITOR_FD);

  unsigned count = 0;
  if (n.init() != NVML_SUCCESS)
    _exit(0);
  if (n.count(&count) != NVML_SUCCESS || count == 0) {
    n.shutdown();
    _exit(0);
  }
  int ngpus = count > BH_SHM_MAX_GPUS ? BH_SHM_MAX_GPUS : (int)count;
  bh_shm_gpu_count(shm, ngpus);

  /* An absolute schedule: the period stays a second however long NVML takes. */
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    sample(&n, shm, ngpus);
    if (getppid() != parent)
      _exit(0);
    uint64_t ns = (uint64_t)next.tv_nsec + SAMPLE_PERIOD_NS;
    next.tv_sec += (time_t)(ns / 1000000000ull);
    next.tv_nsec = (long)(ns % 1000000000ull);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
      ;
  }
}

pid_t bh_sup_gpu_monitor_start(bh_shm_t *shm) {
  int p[2];
  if (shm == NULL)
    return -EINVAL;
  if (pipe2(p, O_CLOEXEC) != 0)
    return -errno;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(p[0]);
    close(p[1]);
    return -err;
  }
  if (pid == 0) {
    close(p[0]);
    monitor_main(shm, parent, p[1]);
    _exit(0);
  }
  close(p[1]);
  /* Waiting for the one byte keeps the common case, no driver, free of a child
   * left running or a zombie: dlopen() fails fast, and the child is reaped
   * here. nvmlInit() failing later is an exit the reap loop takes. */
  struct pollfd pfd = {.fd = p[0], .events = POLLIN};
  char byte;
  ssize_t got = -1;
  int r;
  while ((r = poll(&pfd, 1, READY_WAIT_MS)) < 0 && errno == EINTR)
    ;
  if (r > 0)
    while ((got = read(p[0], &byte, 1)) < 0 && errno == EINTR)
      ;
  close(p[0]);
  if (got == 0) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return -ENOENT;
  }
  return pid; /* loaded, or still loading after READY_WAIT_MS: let it run */
}
