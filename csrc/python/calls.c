/* The `_bentohost` functions for calls to dependencies: registering their
 * sockets, posting a call to the I/O thread, and the response's tuple. */
#include "python/module.h"
#include "python/bridge.h"
#include "common/waiter.h"

#include <stdlib.h>
#include <string.h>

/* (call_id, code, status, headers, body), code -3 for a response (status < 0
 * is a negative errno: the dependency could not be reached, timed out, or
 * its stream broke off), -4 for a streamed call's bytes (headers in the
 * first only); the carrier is freed here. */
PyObject *bh_response_tuple(bh_req_t *carrier, int code) {
  PyObject *body = bh_body_take(&carrier->body, carrier->body_len, BH_BODY_ZERO_COPY_MIN, 1), *t = NULL;
  if (body != NULL)
    t = Py_BuildValue("(Kiiy#N)", (unsigned long long)carrier->call_id, code, carrier->call_status,
                      carrier->head ? carrier->head : "",
                      (Py_ssize_t)(carrier->head ? carrier->head_len : 0), body);
  bh_req_free(carrier);
  return t;
}

/* add_dependency(name, [socket paths]) -> index: before publish(). */
PyObject *bh_py_add_dependency(PyObject *self, PyObject *args) {
  (void)self;
  const char *name;
  PyObject *paths, *result = NULL;
  bh_worker_t *w = bh_module_worker();
  if (!PyArg_ParseTuple(args, "sO!", &name, &PyList_Type, &paths))
    return NULL;
  if (w->io_started) {
    PyErr_SetString(PyExc_RuntimeError, "add_dependency() after publish()");
    return NULL;
  }
  Py_ssize_t n = PyList_GET_SIZE(paths);
  bh_dependency_t *deps = realloc(w->deps, sizeof(*deps) * (w->ndeps + 1));
  if (deps == NULL)
    return PyErr_NoMemory();
  w->deps = deps;
  bh_dependency_t *d = &deps[w->ndeps];
  memset(d, 0, sizeof(*d));
  if ((d->name = strdup(name)) == NULL || (d->paths = calloc((size_t)(n ? n : 1), sizeof(char *))) == NULL)
    goto nomem;
  for (Py_ssize_t i = 0; i < n; i++) {
    const char *p = PyUnicode_AsUTF8(PyList_GET_ITEM(paths, i));
    if (p == NULL)
      goto fail;
    if ((d->paths[i] = strdup(p)) == NULL)
      goto nomem;
    d->npaths++;
  }
  result = PyLong_FromSize_t(w->ndeps++);
  return result;
nomem:
  PyErr_NoMemory();
fail:
  for (size_t i = 0; i < d->npaths; i++)
    free(d->paths[i]);
  free(d->paths);
  free(d->name);
  return NULL;
}

/* call_ack(call_id, nbytes): Python consumed that much of a streamed call. */
PyObject *bh_py_call_ack(PyObject *self, PyObject *args) {
  (void)self;
  unsigned long long v[2];
  uint64_t data[2];
  if (!PyArg_ParseTuple(args, "KK", &v[0], &v[1]))
    return NULL;
  if (bh_module_require_io() != 0)
    return NULL;
  data[0] = v[0];
  data[1] = v[1];
  bh_out_t *msg = bh_out_new(NULL, BH_OUT_CALL_ACK, 0, NULL, 0, NULL, 0, (const char *)data,
                             sizeof(data));
  if (msg == NULL)
    return PyErr_NoMemory();
  bh_bridge_post(bh_module_worker()->bridge, msg);
  Py_RETURN_NONE;
}

/* The I/O thread aborts the call with that id, if it is still in flight. */
static int post_cancel(uint64_t id) {
  bh_out_t *msg = bh_out_new(NULL, BH_OUT_CALL_CANCEL, 0, NULL, 0, NULL, 0, (const char *)&id,
                             sizeof(id));
  if (msg == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  bh_bridge_post(bh_module_worker()->bridge, msg);
  return 0;
}

/* cancel_call(call_id): the caller gave up; the I/O thread aborts the call. */
PyObject *bh_py_cancel_call(PyObject *self, PyObject *arg) {
  (void)self;
  uint64_t id = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred())
    return NULL;
  if (bh_module_require_io() != 0 || post_cancel(id) != 0)
    return NULL;
  Py_RETURN_NONE;
}

#define MAX_CALL_PARTS 64

/* The BH_OUT_CALL message for call()'s first six arguments, with its
 * carrier; NULL with a Python error set. body is one bytes-like object or a
 * list of up to MAX_CALL_PARTS (a pickle's main part and its out-of-band
 * buffers), copied once, straight into the message. */
static bh_out_t *call_message(PyObject *const *args, int stream) {
  bh_text_arg_t route, headers, parts[MAX_CALL_PARTS];
  const char *data[MAX_CALL_PARTS];
  size_t lens[MAX_CALL_PARTS];
  Py_ssize_t nparts = 0;
  bh_out_t *msg = NULL;
  long dep = PyLong_AsLong(args[0]);
  unsigned long long id = PyLong_AsUnsignedLongLong(args[1]);
  double timeout = PyFloat_AsDouble(args[5]);
  if (PyErr_Occurred())
    return NULL;
  if (bh_text_arg_get(args[2], &route, 0) != 0)
    return NULL;
  if (bh_text_arg_get(args[3], &headers, 1) != 0)
    goto release_route;
  if (PyList_Check(args[4])) {
    if (PyList_GET_SIZE(args[4]) > MAX_CALL_PARTS) {
      PyErr_SetString(PyExc_ValueError, "too many body parts");
      goto release_parts;
    }
    for (; nparts < PyList_GET_SIZE(args[4]); nparts++)
      if (bh_text_arg_get(PyList_GET_ITEM(args[4], nparts), &parts[nparts], 0) != 0)
        goto release_parts;
  } else {
    if (bh_text_arg_get(args[4], &parts[0], 0) != 0)
      goto release_parts;
    nparts = 1;
  }
  for (Py_ssize_t i = 0; i < nparts; i++) {
    data[i] = parts[i].data;
    lens[i] = (size_t)parts[i].len;
  }
  if (dep < 0 || (size_t)dep >= bh_module_worker()->ndeps) {
    PyErr_SetString(PyExc_ValueError, "unknown dependency");
    goto release_parts;
  }
  bh_req_t *carrier = calloc(1, sizeof(*carrier));
  if (carrier == NULL) {
    PyErr_NoMemory();
    goto release_parts;
  }
  carrier->call_id = id;
  carrier->call_stream = stream;
  carrier->call_timeout_ms = timeout > 0 ? (uint64_t)(timeout * 1000.0) + 1 : 0;
  msg = bh_out_new_parts(carrier, BH_OUT_CALL, (int)dep, route.data, (size_t)route.len,
                         headers.data, (size_t)headers.len, data, lens, (size_t)nparts);
  if (msg == NULL) {
    free(carrier);
    PyErr_NoMemory();
  }
release_parts:
  while (nparts > 0)
    bh_text_arg_release(&parts[--nparts]);
  bh_text_arg_release(&headers);
release_route:
  bh_text_arg_release(&route);
  return msg;
}

/* call(dependency, call_id, route, headers, body, timeout_s[, stream]): the
 * request goes to the I/O thread; its response comes back from take() as
 * (call_id, -3, status, headers, body), a streamed one first as
 * (call_id, -4, status, headers, bytes) entries as it arrives. */
PyObject *bh_py_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  bh_out_t *msg;
  if (nargs != 6 && nargs != 7) {
    PyErr_SetString(PyExc_TypeError,
                    "call(dependency, call_id, route, headers, body, timeout[, stream])");
    return NULL;
  }
  int stream = nargs == 7 ? PyObject_IsTrue(args[6]) : 0;
  if (stream < 0 || bh_module_require_io() != 0 || (msg = call_message(args, stream)) == NULL)
    return NULL;
  bh_bridge_post(bh_module_worker()->bridge, msg);
  Py_RETURN_NONE;
}

/* call_wait(dependency, call_id, route, headers, body, timeout_s, wait_s) ->
 * (status, headers, body): call() for a thread that blocks on the answer. It
 * waits without the GIL and the I/O thread wakes it directly (common/waiter.h):
 * the worker's event loop is not involved. Past wait_s (0: no limit) the call
 * is cancelled and status is -ETIMEDOUT. */
PyObject *bh_py_call_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  bh_out_t *msg;
  bh_waiter_t *w;
  bh_req_t *carrier;
  PyObject *result;
  int rc;
  if (nargs != 7) {
    PyErr_SetString(PyExc_TypeError,
                    "call_wait(dependency, call_id, route, headers, body, timeout, wait)");
    return NULL;
  }
  double wait = PyFloat_AsDouble(args[6]);
  if (PyErr_Occurred() || bh_module_require_io() != 0 || (msg = call_message(args, 0)) == NULL)
    return NULL;
  carrier = msg->req;
  if ((w = bh_waiter_new(carrier)) == NULL) {
    free(carrier);
    free(msg);
    return PyErr_NoMemory();
  }
  bh_bridge_post(bh_module_worker()->bridge, msg);
  Py_BEGIN_ALLOW_THREADS
  rc = bh_waiter_wait(w, wait > 0 ? (uint64_t)(wait * 1000.0) + 1 : 0);
  Py_END_ALLOW_THREADS
  if (rc != 0) {
    uint64_t id = carrier->call_id; /* the carrier stays alive until we release it */
    bh_waiter_release(w);
    if (post_cancel(id) != 0)
      return NULL;
    return Py_BuildValue("(iyy)", rc, "", "");
  }
  PyObject *body = bh_body_take(&carrier->body, carrier->body_len, BH_BODY_ZERO_COPY_MIN, 1);
  result = body == NULL ? NULL
                        : Py_BuildValue("(iy#N)", carrier->call_status, carrier->head ? carrier->head : "",
                                        (Py_ssize_t)(carrier->head ? carrier->head_len : 0), body);
  bh_waiter_release(w);
  return result;
}
