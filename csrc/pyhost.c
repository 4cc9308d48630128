/* Everything in the worker that holds the GIL: CPython initialisation after fork,
 * the built-in `_bentohost` module through which bentohost/_worker.py talks to
 * the I/O thread, and the call into bentohost._worker.main(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bh.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One worker per process: the module reaches it through this pointer. */
static bh_worker_t *g_worker;

#define TAKE_BATCH 256

static PyObject *py_publish(PyObject *self, PyObject *arg) {
  (void)self;
  Py_ssize_t len;
  const char *json = PyUnicode_AsUTF8AndSize(arg, &len);
  if (json == NULL)
    return NULL;
  bh_worker_t *w = g_worker;
  if (w->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "publish() was already called");
    return NULL;
  }
  if (bh_config_parse(&w->config, json, (size_t)len) != 0) {
    PyErr_SetString(PyExc_ValueError, "invalid service configuration JSON");
    return NULL;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = bh_io_start(w);
  Py_END_ALLOW_THREADS
  if (rc != 0) {
    PyErr_Format(PyExc_OSError, "cannot start the I/O thread: %s", strerror(-rc));
    return NULL;
  }
  w->io_started = 1;
  if (w->reporter && bh_status_send(w->status_fd, "config", w->index, json, (size_t)len) != 0) {
    PyErr_SetString(PyExc_OSError, "cannot report the configuration to the supervisor");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *py_set_ready(PyObject *self, PyObject *arg) {
  (void)self;
  int flag = PyObject_IsTrue(arg);
  if (flag < 0)
    return NULL;
  bh_worker_t *w = g_worker;
  int was = atomic_exchange(&w->ready, flag);
  /* The supervisor logs readiness once, the first time. */
  static int reported;
  if (flag && !was && !reported) {
    reported = 1;
    bh_status_send(w->status_fd, "ready", w->index, NULL, 0);
  }
  Py_RETURN_NONE;
}

static PyObject *py_set_alive(PyObject *self, PyObject *arg) {
  (void)self;
  int flag = PyObject_IsTrue(arg);
  if (flag < 0)
    return NULL;
  atomic_store(&g_worker->alive, flag);
  Py_RETURN_NONE;
}

static int require_io(void) {
  if (!g_worker->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "publish() must be called first");
    return -1;
  }
  return 0;
}

static PyObject *py_eventfd(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (require_io() != 0)
    return NULL;
  return PyLong_FromLong(g_worker->bridge.eventfd);
}

static PyObject *request_tuple(bh_req_t *req) {
  PyObject *handle = NULL, *index = NULL, *body = NULL, *ctype = NULL, *tuple = NULL;

  handle = PyLong_FromVoidPtr(req);
  if (handle == NULL)
    goto fail;
  index = PyLong_FromLong(req->api_index);
  if (index == NULL)
    goto fail;
  body = PyBytes_FromStringAndSize(req->body ? req->body : "", (Py_ssize_t)req->body_len);
  if (body == NULL)
    goto fail;
  if (req->content_type) {
    ctype = PyUnicode_DecodeLatin1(req->content_type, (Py_ssize_t)strlen(req->content_type), NULL);
    if (ctype == NULL)
      goto fail;
  } else {
    ctype = Py_NewRef(Py_None);
  }
  /* The body now lives in the bytes object; the C copy is not needed any more. */
  free(req->body);
  req->body = NULL;
  tuple = PyTuple_Pack(4, handle, index, body, ctype);
fail:
  Py_XDECREF(handle);
  Py_XDECREF(index);
  Py_XDECREF(body);
  Py_XDECREF(ctype);
  return tuple;
}

static void fail_request(bh_req_t *req) {
  static const char body[] =
      "{\"error\":\"An unexpected error has occurred, please check the server log.\"}";
  req->status = 500;
  req->resp_content_type = strdup("application/json");
  req->resp_body = malloc(sizeof(body) - 1);
  if (req->resp_body) {
    memcpy(req->resp_body, body, sizeof(body) - 1);
    req->resp_len = sizeof(body) - 1;
  }
  bh_bridge_complete(&g_worker->bridge, req);
}

static PyObject *py_take(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (require_io() != 0)
    return NULL;
  bh_bridge_t *b = &g_worker->bridge;
  bh_req_t *reqs[TAKE_BATCH];

  bh_bridge_clear_eventfd(b);
  size_t n = bh_bridge_take(b, reqs, TAKE_BATCH);
  if (n == 0 && atomic_load(&b->shutdown))
    Py_RETURN_NONE;

  PyObject *list = PyList_New((Py_ssize_t)n);
  if (list == NULL)
    goto fail_all;
  for (size_t i = 0; i < n; i++) {
    PyObject *item = request_tuple(reqs[i]);
    if (item == NULL) {
      /* Requests already in the list reach Python; the rest are answered here so
       * that none is lost. */
      for (size_t j = i; j < n; j++)
        fail_request(reqs[j]);
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  return list;

fail_all:
  for (size_t j = 0; j < n; j++)
    fail_request(reqs[j]);
  return NULL;
}

/* complete(handle, status, content_type, body): body is bytes-like or str. */
static PyObject *py_complete(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "complete(handle, status, content_type, body)");
    return NULL;
  }
  bh_req_t *req = PyLong_AsVoidPtr(args[0]);
  if (req == NULL)
    return NULL;
  long status = PyLong_AsLong(args[1]);
  if (status == -1 && PyErr_Occurred())
    return NULL;
  Py_ssize_t ct_len;
  const char *ct = PyUnicode_AsUTF8AndSize(args[2], &ct_len);
  if (ct == NULL)
    return NULL;

  Py_buffer view = {0};
  const char *data;
  Py_ssize_t len;
  if (PyUnicode_Check(args[3])) {
    data = PyUnicode_AsUTF8AndSize(args[3], &len);
    if (data == NULL)
      return NULL;
  } else {
    if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) != 0)
      return NULL;
    data = view.buf;
    len = view.len;
  }

  char *body = malloc(len > 0 ? (size_t)len : 1);
  char *ctype = malloc((size_t)ct_len + 1);
  if (body == NULL || ctype == NULL) {
    free(body);
    free(ctype);
    if (view.obj)
      PyBuffer_Release(&view);
    return PyErr_NoMemory();
  }
  memcpy(body, data, (size_t)len);
  memcpy(ctype, ct, (size_t)ct_len + 1);
  if (view.obj)
    PyBuffer_Release(&view);

  req->status = (int)status;
  req->resp_content_type = ctype;
  req->resp_body = body;
  req->resp_len = (size_t)len;
  bh_bridge_complete(&g_worker->bridge, req);
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"publish", py_publish, METH_O, "Register the service configuration and start serving."},
    {"set_ready", py_set_ready, METH_O, "Set the /readyz flag."},
    {"set_alive", py_set_alive, METH_O, "Set the /livez flag."},
    {"eventfd", py_eventfd, METH_NOARGS, "The fd that becomes readable when requests wait."},
    {"take", py_take, METH_NOARGS, "Pending requests, [] if none, None at shutdown."},
    {"complete", (PyCFunction)(void (*)(void))py_complete, METH_FASTCALL,
     "Answer a request: complete(handle, status, content_type, body)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_bentohost", "The bentohost C host, seen from Python.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

static PyObject *init_module(void) {
  PyObject *m = PyModule_Create(&module_def);
  if (m == NULL)
    return NULL;
  if (PyModule_AddIntConstant(m, "worker_index", g_worker->index) != 0 ||
      PyModule_AddStringConstant(m, "target", g_worker->opts->target) != 0 ||
      PyModule_AddObjectRef(m, "reporter", g_worker->reporter ? Py_True : Py_False) != 0 ||
      PyModule_AddStringConstant(m, "version", BH_VERSION) != 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}

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

  g_worker = w;
  if (PyImport_AppendInittab("_bentohost", init_module) != 0) {
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
  code = (int)PyLong_AsLong(result);
  if (code == -1 && PyErr_Occurred())
    goto fail;
  Py_DECREF(result);
  Py_DECREF(mod);
  /* Python is not finalised: daemon threads of user code may still hold the GIL
   * and finalisation would wait for them; the process exits right after. */
  return code;

fail:
  PyErr_Print();
  Py_XDECREF(result);
  Py_XDECREF(mod);
  return code;
}
