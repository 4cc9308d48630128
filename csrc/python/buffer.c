/* Big bodies handed to Python without a copy (and a batch's input that C
 * decoded into one buffer, traffic/rows.c): a small object that owns the
 * malloc'd block C read the body into, seen from Python as a memoryview. A
 * 4 MiB array in a pickle is unpickled straight from the bytes the socket
 * delivered (its out-of-band buffer is a view of them), where a bytes object
 * would have cost a full copy first; and the array is writable, as the
 * caller's was. */
#include "python/module.h"

#include <stdlib.h>

typedef struct {
  PyObject_HEAD
  char *data;
  Py_ssize_t len;
  int readonly;
} body_t;

static int body_getbuffer(PyObject *self, Py_buffer *view, int flags) {
  body_t *b = (body_t *)self;
  return PyBuffer_FillInfo(view, self, b->data, b->len, b->readonly, flags);
}

static void body_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  free(((body_t *)self)->data);
  tp->tp_free(self);
  Py_DECREF(tp); /* a heap type: each instance holds a reference to it */
}

static PyType_Slot body_slots[] = {
    {Py_tp_dealloc, body_dealloc},
    {Py_bf_getbuffer, body_getbuffer},
    {Py_tp_doc, "A body read by the host, owned until its last view goes."},
    {0, NULL},
};

static PyType_Spec body_spec = {
    .name = "_bentohost.Body",
    .basicsize = sizeof(body_t),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = body_slots,
};

static PyObject *body_type;

PyObject *bh_body_take(char **data, size_t len, size_t min, int writable) {
  body_t *b;
  PyObject *view;

  if (*data == NULL || len < min)
    return PyBytes_FromStringAndSize(*data ? *data : "", (Py_ssize_t)len);
  if (body_type == NULL && (body_type = PyType_FromSpec(&body_spec)) == NULL)
    return NULL;
  b = PyObject_New(body_t, (PyTypeObject *)body_type);
  if (b == NULL)
    return NULL;
  b->data = *data;
  b->len = (Py_ssize_t)len;
  b->readonly = !writable;
  *data = NULL; /* Python owns it now */
  view = PyMemoryView_FromObject((PyObject *)b);
  Py_DECREF(b);
  return view;
}

/* The batch's input that C decoded (traffic/rows.c): (buffer, shape, counts), the
 * buffer taken over without a copy. */
PyObject *bh_rows_tuple(bh_rows_t *rows) {
  PyObject *data = NULL, *shape = NULL, *counts = NULL, *tuple = NULL;
  if ((shape = PyTuple_New(rows->ndim)) == NULL || (counts = PyList_New((Py_ssize_t)rows->nmembers)) == NULL)
    goto fail;
  for (int k = 0; k < rows->ndim; k++) {
    PyObject *d = PyLong_FromLongLong((long long)rows->shape[k]);
    if (d == NULL)
      goto fail;
    PyTuple_SET_ITEM(shape, k, d);
  }
  for (size_t k = 0; k < rows->nmembers; k++) {
    PyObject *c = PyLong_FromUnsignedLong(rows->counts[k]);
    if (c == NULL)
      goto fail;
    PyList_SET_ITEM(counts, (Py_ssize_t)k, c);
  }
  if ((data = bh_body_take(&rows->data, rows->len, 0, 1)) == NULL)
    goto fail;
  tuple = PyTuple_Pack(3, data, shape, counts);
fail:
  Py_XDECREF(data);
  Py_XDECREF(shape);
  Py_XDECREF(counts);
  return tuple;
}
