/* The built-in `_bentohost` module through which bentohost/_worker.py talks to
 * the I/O thread: requests in (take.c), answers and streams out, documents,
 * health flags, the watchdog's marks, and calls to dependencies. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bh.h"
#include "common/config.h"
#include "common/log.h"
#include "common/status.h"
#include "python/bridge.h"
#include "python/module.h"
#include "traffic/shm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One worker per process: the module reaches it through this pointer. */
static bh_worker_t *g_worker;

void bh_module_set_worker(bh_worker_t *w) {
  g_worker = w;
}

bh_worker_t *bh_module_worker(void) {
  return g_worker;
}

/* The service description on the status pipe (the reporter's only): 0, or -1
 * with a Python error set. */
static int send_config(bh_worker_t *w, const char *json, Py_ssize_t len) {
  if (bh_status_send(w->status_fd, "config", w->slot, json, (size_t)len) == 0)
    return 0;
  PyErr_SetString(PyExc_OSError, "cannot report the configuration to the supervisor");
  return -1;
}

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
  if (bh_config_parse(&w->config, json, (size_t)len) != 0 ||
      (w->service == 0 && bh_config_parse_graph(json, (size_t)len, &w->graph, &w->ngraph) != 0)) {
    PyErr_SetString(PyExc_ValueError, "invalid service configuration JSON");
    return NULL;
  }
  bh_log_set_origin(w->config.name, w->index);
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = w->start_serving(w);
  Py_END_ALLOW_THREADS
  if (rc != 0) {
    PyErr_Format(PyExc_OSError, "cannot start the I/O thread: %s", strerror(-rc));
    return NULL;
  }
  w->io_started = 1;
  if (w->reporter && send_config(w, json, len) != 0)
    return NULL;
  Py_RETURN_NONE;
}

/* The reporter's description alone, without serving: it is started again where
 * the description places it (BH_EXIT_PLACE). */
static PyObject *py_report(PyObject *self, PyObject *arg) {
  (void)self;
  Py_ssize_t len;
  const char *json = PyUnicode_AsUTF8AndSize(arg, &len);
  if (json == NULL)
    return NULL;
  bh_worker_t *w = g_worker;
  if (!w->reporter || w->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "report() is the reporting worker's, before publish()");
    return NULL;
  }
  if (send_config(w, json, len) != 0)
    return NULL;
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
    /* A rolling restart's new worker starts accepting now, and says it is
     * ready only once it does: the supervisor then stops the old one. */
    if (w->start_listening != NULL) {
      int rc;
      Py_BEGIN_ALLOW_THREADS
      rc = w->start_listening(w);
      Py_END_ALLOW_THREADS
      /* Stopped before it was ready: it drains and runs its shutdown hooks. */
      if (rc == -ECANCELED)
        Py_RETURN_NONE;
      if (rc != 0) {
        PyErr_Format(PyExc_OSError, "cannot start accepting connections: %s", strerror(-rc));
        return NULL;
      }
    }
    bh_status_send(w->status_fd, "ready", w->slot, NULL, 0);
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

int bh_module_require_io(void) {
  if (!g_worker->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "publish() must be called first");
    return -1;
  }
  return 0;
}

static PyObject *py_eventfd(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (bh_module_require_io() != 0)
    return NULL;
  return PyLong_FromLong(g_worker->bridge->eventfd);
}

/* Pending Python work, for the supervisor's watchdog: +1 per request handed
 * over, -1 with its final message. */
void bh_module_work_done(void) {
  bh_worker_t *w = g_worker;
  if (w->shm) {
    bh_shm_work(w->shm, w->slot, -1);
    bh_shm_heartbeat(w->shm, w->slot);
  }
}

int bh_text_arg_get(PyObject *obj, bh_text_arg_t *out, int allow_none) {
  memset(out, 0, sizeof(*out));
  if (allow_none && obj == Py_None)
    return 0;
  if (PyUnicode_Check(obj)) {
    out->data = PyUnicode_AsUTF8AndSize(obj, &out->len);
    return out->data ? 0 : -1;
  }
  if (PyObject_GetBuffer(obj, &out->view, PyBUF_SIMPLE) != 0)
    return -1;
  out->data = out->view.buf;
  out->len = out->view.len;
  return 0;
}

void bh_text_arg_release(bh_text_arg_t *t) {
  if (t->view.obj)
    PyBuffer_Release(&t->view);
}

static bh_req_t *handle_arg(PyObject *obj) {
  bh_req_t *req = PyLong_AsVoidPtr(obj);
  if (req == NULL && !PyErr_Occurred())
    PyErr_SetString(PyExc_ValueError, "invalid request handle");
  return req;
}

/* Shared by complete() and stream_start():
 * (handle, status, content_type, body_or_None, headers=None) */
static PyObject *post_response(PyObject *const *args, Py_ssize_t nargs, bh_out_kind_t kind,
                               Py_ssize_t min_args, Py_ssize_t max_args, const char *usage) {
  if (nargs < min_args || nargs > max_args) {
    PyErr_SetString(PyExc_TypeError, usage);
    return NULL;
  }
  bh_req_t *req = handle_arg(args[0]);
  if (req == NULL)
    return NULL;
  long status = PyLong_AsLong(args[1]);
  if (status == -1 && PyErr_Occurred())
    return NULL;
  if (status < 100 || status > 999) {
    PyErr_SetString(PyExc_ValueError, "status must be between 100 and 999");
    return NULL;
  }
  PyObject *body_obj = kind == BH_OUT_COMPLETE ? args[3] : Py_None;
  PyObject *headers_obj = nargs > (kind == BH_OUT_COMPLETE ? 4 : 3) ? args[nargs - 1] : Py_None;
  bh_text_arg_t ctype, body, headers;
  PyObject *result = NULL;

  if (bh_text_arg_get(args[2], &ctype, 0) != 0)
    return NULL;
  if (bh_text_arg_get(body_obj, &body, 1) != 0)
    goto release_ctype;
  if (bh_text_arg_get(headers_obj, &headers, 1) != 0)
    goto release_body;
  bh_out_t *msg = bh_out_new(req, kind, (int)status, ctype.data, (size_t)ctype.len, headers.data,
                             (size_t)headers.len, body.data, (size_t)body.len);
  if (msg == NULL) {
    PyErr_NoMemory();
    goto release_headers;
  }
  if (kind == BH_OUT_STREAM_START)
    atomic_fetch_or(&req->flags, BH_REQ_STREAMING);
  bh_bridge_post(g_worker->bridge, msg);
  if (kind == BH_OUT_COMPLETE)
    bh_module_work_done();
  result = Py_NewRef(Py_None);
release_headers:
  bh_text_arg_release(&headers);
release_body:
  bh_text_arg_release(&body);
release_ctype:
  bh_text_arg_release(&ctype);
  return result;
}

static PyObject *py_complete(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  return post_response(args, nargs, BH_OUT_COMPLETE, 4, 5,
                       "complete(handle, status, content_type, body, headers=None)");
}

static PyObject *py_stream_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  return post_response(args, nargs, BH_OUT_STREAM_START, 3, 4,
                       "stream_start(handle, status, content_type, headers=None)");
}

/* Returns 0: go on; 1: wait for a writable event; -1: the client is gone. */
static PyObject *py_stream_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "stream_write(handle, data)");
    return NULL;
  }
  bh_req_t *req = handle_arg(args[0]);
  if (req == NULL)
    return NULL;
  if (atomic_load(&req->flags) & BH_REQ_GONE)
    return PyLong_FromLong(-1);
  bh_text_arg_t data;
  if (bh_text_arg_get(args[1], &data, 0) != 0)
    return NULL;
  if (data.len == 0) {
    bh_text_arg_release(&data);
    return PyLong_FromLong(0);
  }
  bh_out_t *msg = bh_out_new(req, BH_OUT_CHUNK, 0, NULL, 0, NULL, 0, data.data, (size_t)data.len);
  bh_text_arg_release(&data);
  if (msg == NULL)
    return PyErr_NoMemory();
  /* Count before posting, so that the I/O thread's decrement never goes below 0. */
  int64_t pending = atomic_fetch_add(&req->pending_bytes, (int64_t)msg->len) + (int64_t)msg->len;
  bh_bridge_post(g_worker->bridge, msg);
  if (pending <= BH_STREAM_HIGH_WATER)
    return PyLong_FromLong(0);
  atomic_fetch_or(&req->flags, BH_REQ_WANT_WRITABLE);
  /* The socket may have drained meanwhile: whoever clears the flag owns the
   * wake-up, so exactly one of this thread and the I/O thread does. */
  if (atomic_load(&req->pending_bytes) < BH_STREAM_LOW_WATER &&
      (atomic_fetch_and(&req->flags, ~(uint32_t)BH_REQ_WANT_WRITABLE) & BH_REQ_WANT_WRITABLE))
    return PyLong_FromLong(0);
  return PyLong_FromLong(1);
}

static PyObject *py_stream_end(PyObject *self, PyObject *arg) {
  (void)self;
  bh_req_t *req = handle_arg(arg);
  if (req == NULL)
    return NULL;
  bh_out_t *msg = bh_out_new(req, BH_OUT_STREAM_END, 0, NULL, 0, NULL, 0, NULL, 0);
  if (msg == NULL)
    return PyErr_NoMemory();
  bh_bridge_post(g_worker->bridge, msg);
  bh_module_work_done();
  Py_RETURN_NONE;
}

/* set_document(path, content_type, body): served by C on GET from memory. */
static PyObject *py_set_document(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "set_document(path, content_type, body)");
    return NULL;
  }
  if (g_worker->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "set_document() must be called before publish()");
    return NULL;
  }
  bh_text_arg_t path, ctype, body;
  PyObject *result = NULL;
  if (bh_text_arg_get(args[0], &path, 0) != 0)
    return NULL;
  if (bh_text_arg_get(args[1], &ctype, 0) != 0)
    goto release_path;
  if (bh_text_arg_get(args[2], &body, 0) != 0)
    goto release_ctype;
  bh_document_t *doc = calloc(1, sizeof(*doc));
  if (doc == NULL || (doc->path = strndup(path.data, (size_t)path.len)) == NULL ||
      (doc->content_type = strndup(ctype.data, (size_t)ctype.len)) == NULL ||
      (doc->body = malloc(body.len > 0 ? (size_t)body.len : 1)) == NULL) {
    if (doc) {
      free(doc->path);
      free(doc->content_type);
      free(doc);
    }
    PyErr_NoMemory();
    goto release_body;
  }
  memcpy(doc->body, body.data, (size_t)body.len);
  doc->len = (size_t)body.len;
  /* A path registered twice: the newest wins, being first in the list. */
  doc->next = g_worker->documents;
  g_worker->documents = doc;
  result = Py_NewRef(Py_None);
release_body:
  bh_text_arg_release(&body);
release_ctype:
  bh_text_arg_release(&ctype);
release_path:
  bh_text_arg_release(&path);
  return result;
}

static PyObject *py_heartbeat(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (g_worker->shm)
    bh_shm_heartbeat(g_worker->shm, g_worker->slot);
  Py_RETURN_NONE;
}

static PyObject *py_sync_threads(PyObject *self, PyObject *arg) {
  (void)self;
  long n = PyLong_AsLong(arg);
  if (n == -1 && PyErr_Occurred())
    return NULL;
  bh_shm_set_sync_threads(g_worker->shm, g_worker->slot, (int)n);
  Py_RETURN_NONE;
}

/* sync_busy(thread): a sync thread enters a call; sync_busy(~thread) leaves it.
 * One int argument keeps the per-call cost at one METH_O call. */
static PyObject *py_sync_busy(PyObject *self, PyObject *arg) {
  (void)self;
  long t = PyLong_AsLong(arg);
  if (t == -1 && PyErr_Occurred())
    return NULL;
  if (t >= 0)
    bh_shm_sync_busy(g_worker->shm, g_worker->slot, (int)t, 1);
  else
    bh_shm_sync_busy(g_worker->shm, g_worker->slot, (int)~t, 0);
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"publish", py_publish, METH_O, "Register the service configuration and start serving."},
    {"report", py_report, METH_O, "Report the service configuration only (the reporter, to be placed)."},
    {"set_ready", py_set_ready, METH_O, "Set the /readyz flag."},
    {"set_alive", py_set_alive, METH_O, "Set the /livez flag."},
    {"eventfd", py_eventfd, METH_NOARGS, "The fd that becomes readable when requests wait."},
    {"take", bh_py_take, METH_NOARGS, "Pending entries, [] if none, None at shutdown."},
    {"take_wait", bh_py_take_wait, METH_NOARGS, "Pending entries, waiting for one; None at shutdown."},
    {"ndarray_json", bh_py_ndarray_json, METH_O,
     "json.dumps(a.tolist()) as bytes from the array's buffer, or None for one it does not write."},
    {"json_rows", bh_py_json_rows, METH_VARARGS,
     "json_rows(body, field, kind, itemsize): (buffer, shape, counts) of the JSON body's array, or None."},
    {"complete", (PyCFunction)(void (*)(void))py_complete, METH_FASTCALL,
     "Answer a request: complete(handle, status, content_type, body, headers=None)."},
    {"stream_start", (PyCFunction)(void (*)(void))py_stream_start, METH_FASTCALL,
     "Start a chunked response: stream_start(handle, status, content_type, headers=None)."},
    {"stream_write", (PyCFunction)(void (*)(void))py_stream_write, METH_FASTCALL,
     "Send a chunk: 0 go on, 1 wait for a writable event, -1 client gone."},
    {"stream_end", py_stream_end, METH_O, "End a chunked response."},
    {"set_document", (PyCFunction)(void (*)(void))py_set_document, METH_FASTCALL,
     "Serve a document on GET from memory (before publish)."},
    {"heartbeat", py_heartbeat, METH_NOARGS, "Tell the supervisor the Python thread makes progress."},
    {"sync_threads", py_sync_threads, METH_O, "How many sync threads the watchdog watches."},
    {"add_dependency", bh_py_add_dependency, METH_VARARGS,
     "Register a dependency's worker sockets (before publish); returns its index."},
    {"call", (PyCFunction)(void (*)(void))bh_py_call, METH_FASTCALL,
     "call(dependency, call_id, route, headers, body, timeout[, stream]): a request to a dependency."},
    {"cancel_call", bh_py_cancel_call, METH_O, "cancel_call(call_id): abort a call in flight."},
    {"call_wait", (PyCFunction)(void (*)(void))bh_py_call_wait, METH_FASTCALL,
     "call_wait(dependency, call_id, route, headers, body, timeout, wait) -> (status, headers, body)."},
    {"call_ack", bh_py_call_ack, METH_VARARGS,
     "call_ack(call_id, nbytes): that much of a streamed call was consumed."},
    {"sync_busy", py_sync_busy, METH_O,
     "sync_busy(i): sync thread i entered a call; sync_busy(~i): it left it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_bentohost", "The bentohost C host, seen from Python.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyObject *bh_module_init(void) {
  PyObject *m = PyModule_Create(&module_def);
  if (m == NULL)
    return NULL;
  if (PyModule_AddIntConstant(m, "worker_index", g_worker->index) != 0 ||
      PyModule_AddStringConstant(m, "target", g_worker->opts->target) != 0 ||
      PyModule_AddObjectRef(m, "reporter", g_worker->reporter ? Py_True : Py_False) != 0 ||
      PyModule_AddStringConstant(m, "version", BH_VERSION) != 0 ||
      PyModule_AddStringConstant(m, "log_format", bh_log_json() ? "json" : "text") != 0 ||
      PyModule_AddStringConstant(m, "service_name",
                                 g_worker->service_name ? g_worker->service_name : "") != 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
