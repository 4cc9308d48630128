/* Private to the Python room: the `_bentohost` module (python/module.c) as
 * the interpreter's set-up (python/pyhost.c) registers it. */
#ifndef BH_PYTHON_MODULE_H
#define BH_PYTHON_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "common/context.h"
#include "common/request.h"

/* The worker the module serves; set before the interpreter starts. */
void bh_module_set_worker(bh_worker_t *w);
bh_worker_t *bh_module_worker(void);
/* The module's init function, for PyImport_AppendInittab. */
PyObject *bh_module_init(void);
/* -1 with a Python error when the I/O thread has not started. */
int bh_module_require_io(void);

/* Borrowed view of a str or bytes-like argument. */
typedef struct bh_text_arg {
  Py_buffer view;
  const char *data;
  Py_ssize_t len;
} bh_text_arg_t;
/* A str (UTF-8) or bytes-like argument, or None when allowed; 0 or -1 with a
 * Python error. Release it with bh_text_arg_release. */
int bh_text_arg_get(PyObject *obj, bh_text_arg_t *out, int allow_none);
void bh_text_arg_release(bh_text_arg_t *t);

/* -1 on the worker's pending-work count, with a request's final message */
void bh_module_work_done(void);
/* take.c */
PyObject *bh_py_take(PyObject *self, PyObject *unused);
PyObject *bh_py_take_wait(PyObject *self, PyObject *unused);

/* json_array.c */
PyObject *bh_py_ndarray_json(PyObject *self, PyObject *arg);
/* json_rows.c */
PyObject *bh_py_json_rows(PyObject *self, PyObject *args);

/* calls.c */
PyObject *bh_response_tuple(bh_req_t *carrier, int code);

/* Bodies at least this big go to Python without a copy (python/buffer.c). */
#define BH_BODY_ZERO_COPY_MIN (64 * 1024)
/* *data (malloc'd, len bytes) as a Python object: a memoryview (writable or
 * not) that takes the block over (*data becomes NULL) when it is at least min
 * bytes, else a bytes copy (*data stays the caller's). NULL with a Python
 * error set. */
PyObject *bh_body_take(char **data, size_t len, size_t min, int writable);
/* A batch's input decoded by C (traffic/rows.c) as (buffer, shape, counts), the
 * buffer taken over from rows without a copy; NULL with a Python error set. */
PyObject *bh_rows_tuple(bh_rows_t *rows);
PyObject *bh_py_add_dependency(PyObject *self, PyObject *args);
PyObject *bh_py_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *bh_py_cancel_call(PyObject *self, PyObject *arg);
PyObject *bh_py_call_ack(PyObject *self, PyObject *args);
PyObject *bh_py_call_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
