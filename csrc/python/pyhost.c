/* CPython in a worker: initialised after fork with the launcher's interpreter
 * path (so a virtualenv is honoured), then bentohost._worker.main() runs on
 * this thread until the worker stops. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python/pyhost.h"
#include "python/module.h"
#include "common/log.h"
#include "common/status.h"

#include <errno.h>
#include <string.h>

static int init_python(const bh_options_t *opts) {
  PyConfig config;
  PyStatus status;
  char *argv[] = {(char *)opts->python};

  PyConfig_InitPythonConfig(&config);
  /* SIGTERM belongs to the I/O thread and SIGINT to the supervisor. */
  config.install_signal_handlers = 0;
  config.buffered_stdio = 0;
  config.parse_argv = 0;
  /* The launcher's interpreter path, unresolved, so that a virtualenv's
   * pyvenv.cfg is found and its site-packages are used; `home` stays unset. */
  status = PyConfig_SetBytesString(&config, &config.program_name, opts->python);
  if (PyStatus_Exception(status))
    goto fail;
  status = PyConfig_SetBytesString(&config, &config.executable, opts->python);
  if (PyStatus_Exception(status))
    goto fail;
  status = PyConfig_SetBytesArgv(&config, 1, argv);
  if (PyStatus_Exception(status))
    goto fail;
  status = Py_InitializeFromConfig(&config);
  if (PyStatus_Exception(status))
    goto fail;
  PyConfig_Clear(&config);
  return 0;

fail:
  PyConfig_Clear(&config);
  bh_log("error: cannot initialise Python for %s: %s", opts->python,
         status.err_msg ? status.err_msg : "unknown error");
  return -EINVAL;
}

/* The worker must see the same environment as `python -m bentohost`. */
static void check_prefix(const bh_options_t *opts) {
  if (opts->prefix == NULL)
    return;
  PyObject *prefix = PySys_GetObject("prefix"); /* borrowed */
  const char *got = prefix ? PyUnicode_AsUTF8(prefix) : NULL;
  if (got == NULL) {
    PyErr_Clear();
    return;
  }
  if (strcmp(got, opts->prefix) != 0)
    bh_log("warning: the worker's sys.prefix is %s but the launcher's is %s", got, opts->prefix);
}

int bh_pyhost_run(bh_worker_t *w) {
  PyObject *mod = NULL, *result = NULL;
  int code = BH_EXIT_LOAD_FAILED;

  bh_module_set_worker(w);
  if (PyImport_AppendInittab("_bentohost", bh_module_init) != 0) {
    bh_log("error: cannot register the _bentohost module");
    return BH_EXIT_LOAD_FAILED;
  }
  if (init_python(w->opts) != 0)
    return BH_EXIT_LOAD_FAILED;
  check_prefix(w->opts);

  mod = PyImport_ImportModule("bentohost._worker");
  if (mod == NULL)
    goto fail;
  result = PyObject_CallMethod(mod, "main", NULL);
  if (result == NULL)
    goto fail;
  long rc = PyLong_AsLong(result);
  if (rc == -1 && PyErr_Occurred())
    goto fail;
  code = (int)rc;
  Py_DECREF(result);
  Py_DECREF(mod);
  /* Python is not finalised: daemon threads of user code may still hold the GIL
   * and finalisation would wait for them; the process exits right after. */
  return code;

fail:
  /* PyErr_Print() would finalise and exit on SystemExit while the I/O thread
   * runs: show the exception and let the caller _exit(). */
  if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
    bh_log("the worker called sys.exit()");
    PyErr_Clear();
  } else {
    PyErr_Print();
  }
  Py_XDECREF(result);
  Py_XDECREF(mod);
  return code;
}
