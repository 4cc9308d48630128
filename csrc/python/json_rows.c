/* An API's one numpy input read from its JSON body ({"field": [...]} or the
 * bare array) by the batch decoder (traffic/rows.c), for APIs that are not
 * batchable: the numbers go straight into the array's buffer, with no Python
 * float per number, and with the GIL released while a big body is read. What
 * that decoder declines (anything Python's json and numpy would read some
 * other way, or refuse) gives None, and Python decodes the body as before. */
#include "python/module.h"
#include "traffic/rows.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Smaller bodies take less time to read than a GIL hand-over costs. */
#define RELEASE_GIL_MIN (64 * 1024)

PyObject *bh_py_json_rows(PyObject *self, PyObject *args) {
  (void)self;
  Py_buffer body;
  const char *field;
  int kind, size, err;
  bh_api_t api;
  bh_req_t req;
  bh_rows_t rows;
  PyObject *out = NULL;

  if (!PyArg_ParseTuple(args, "y*zCi", &body, &field, &kind, &size))
    return NULL;
  if (!(kind == 'f' && (size == 4 || size == 8)) &&
      !((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8))) {
    PyErr_Format(PyExc_ValueError, "json_rows: no C decoding for dtype kind %c, size %d", kind, size);
    goto done;
  }
  memset(&api, 0, sizeof(api));
  memset(&req, 0, sizeof(req));
  api.rows_kind = (char)kind;
  api.rows_size = size;
  api.batch_root = field == NULL;
  api.batch_field = (char *)field;
  req.body = body.buf;
  req.body_len = (size_t)body.len;
  if (req.body == NULL || req.body_len == 0) {
    out = Py_NewRef(Py_None);
    goto done;
  }
  if (body.len >= RELEASE_GIL_MIN) {
    Py_BEGIN_ALLOW_THREADS
    err = bh_rows_build(&api, &req, &rows);
    Py_END_ALLOW_THREADS
  } else {
    err = bh_rows_build(&api, &req, &rows);
  }
  if (err == -ENOMEM) {
    PyErr_NoMemory();
    goto done;
  }
  if (err != 0) {
    out = Py_NewRef(Py_None);
    goto done;
  }
  out = bh_rows_tuple(&rows);
  free(rows.data); /* NULL once the tuple took it over */
  free(rows.counts);
done:
  PyBuffer_Release(&body);
  return out;
}
