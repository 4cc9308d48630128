/* An API's numpy answer as JSON, written from the array's buffer: the bytes
 * json.dumps(array.tolist()) gives, without a Python float (or int) object per
 * element. Floats are written with float.__repr__'s digits (common/fmt.h: the
 * shortest that read back, found without dtoa's big numbers); NaN and the
 * infinities are written as json writes them (allow_nan). A buffer this does
 * not know (other byte orders, float16, objects, strides) gives None, and the
 * caller encodes the usual way. */
#include "python/module.h"
#include "common/fmt.h"
#include "common/text.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The longest element: a double's repr or an unsigned 64-bit integer, with
 * the ", " after it. */
#define ELEMENT_MAX (BH_PY_FLOAT_MAX + 2)

typedef enum { K_BOOL, K_INT, K_UINT, K_FLOAT } elem_kind_t;

typedef struct array_view {
  const char *data;
  const Py_ssize_t *shape;
  int ndim;
  Py_ssize_t itemsize;
  elem_kind_t kind;
} array_view_t;

/* The struct-module format of a native C-contiguous buffer: 0, or -1 when the
 * element type is not one written here. */
static int parse_format(const char *fmt, Py_ssize_t itemsize, elem_kind_t *kind) {
  if (fmt == NULL)
    fmt = "B";
  if (*fmt == '@' || *fmt == '=' || (*fmt == '<' && PY_LITTLE_ENDIAN) || (*fmt == '>' && PY_BIG_ENDIAN))
    fmt++;
  if (fmt[0] == '\0' || fmt[1] != '\0')
    return -1;
  switch (fmt[0]) {
  case '?':
    *kind = K_BOOL;
    return itemsize == 1 ? 0 : -1;
  case 'b': case 'h': case 'i': case 'l': case 'q': case 'n':
    *kind = K_INT;
    break;
  case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N':
    *kind = K_UINT;
    break;
  case 'f':
  case 'd':
    *kind = K_FLOAT;
    return itemsize == 4 || itemsize == 8 ? 0 : -1;
  default:
    return -1;
  }
  return itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8 ? 0 : -1;
}

static char *put_element(char *p, const array_view_t *a, const char *at) {
  switch (a->kind) {
  case K_BOOL:
    if (*at) {
      memcpy(p, "true", 4);
      return p + 4;
    }
    memcpy(p, "false", 5);
    return p + 5;
  case K_INT:
    switch (a->itemsize) {
    case 1: { int8_t v; memcpy(&v, at, 1); return bh_put_i64(p, v); }
    case 2: { int16_t v; memcpy(&v, at, 2); return bh_put_i64(p, v); }
    case 4: { int32_t v; memcpy(&v, at, 4); return bh_put_i64(p, v); }
    default: { int64_t v; memcpy(&v, at, 8); return bh_put_i64(p, v); }
    }
  case K_UINT:
    switch (a->itemsize) {
    case 1: { uint8_t v; memcpy(&v, at, 1); return bh_put_u64(p, v); }
    case 2: { uint16_t v; memcpy(&v, at, 2); return bh_put_u64(p, v); }
    case 4: { uint32_t v; memcpy(&v, at, 4); return bh_put_u64(p, v); }
    default: { uint64_t v; memcpy(&v, at, 8); return bh_put_u64(p, v); }
    }
  case K_FLOAT: {
    double d;
    if (a->itemsize == 4) {
      float f;
      memcpy(&f, at, 4);
      d = f;
    } else {
      memcpy(&d, at, 8);
    }
    if (isnan(d)) {
      memcpy(p, "NaN", 3);
      return p + 3;
    }
    if (isinf(d)) {
      if (d < 0)
        *p++ = '-';
      memcpy(p, "Infinity", 8);
      return p + 8;
    }
    return bh_put_py_float(p, d);
  }
  }
  return p;
}

/* Dimension `dim` from `at` on; *at advances. The recursion is as deep as the array has dimensions (at most 64 in numpy). */
static char *put_dim(char *p, const array_view_t *a, int dim, const char **at) {
  if (dim == a->ndim) {
    p = put_element(p, a, *at);
    *at += a->itemsize;
    return p;
  }
  *p++ = '[';
  for (Py_ssize_t i = 0; i < a->shape[dim]; i++) {
    if (i > 0) {
      *p++ = ',';
      *p++ = ' ';
    }
    p = put_dim(p, a, dim + 1, at);
  }
  *p++ = ']';
  return p;
}

/* The most bytes the text can take: every element at its longest, and for
 * every list its brackets and separator. */
static int text_bound(const array_view_t *a, Py_ssize_t *out) {
  Py_ssize_t lists = 0, outer = 1, elements;
  for (int d = 0; d < a->ndim; d++) {
    if (a->shape[d] > 0 && outer > PY_SSIZE_T_MAX / a->shape[d])
      return -1;
    lists += outer;
    outer *= a->shape[d];
  }
  elements = outer;
  if (elements > (PY_SSIZE_T_MAX - 4 * lists) / ELEMENT_MAX)
    return -1;
  *out = elements * ELEMENT_MAX + 4 * lists + 1;
  return 0;
}

PyObject *bh_py_ndarray_json(PyObject *self, PyObject *arg) {
  (void)self;
  Py_buffer view;
  PyObject *out = NULL;
  array_view_t a;
  Py_ssize_t bound;

  if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
    PyErr_Clear(); /* not a plain buffer: the caller's way */
    Py_RETURN_NONE;
  }
  a.data = view.buf;
  a.shape = view.shape;
  a.ndim = view.ndim;
  a.itemsize = view.itemsize;
  if (parse_format(view.format, view.itemsize, &a.kind) != 0 || (a.ndim > 0 && a.shape == NULL) ||
      text_bound(&a, &bound) != 0) {
    out = Py_NewRef(Py_None);
    goto done;
  }
  out = PyBytes_FromStringAndSize(NULL, bound);
  if (out == NULL)
    goto done;
  const char *at = a.data;
  char *start = PyBytes_AS_STRING(out);
  char *end = put_dim(start, &a, 0, &at);
  if (_PyBytes_Resize(&out, end - start) != 0)
    out = NULL; /* _PyBytes_Resize released it */
done:
  PyBuffer_Release(&view);
  return out;
}
