/* The ring's entries as Python objects: a request as (handle, api, body,
 * content_type, meta), a batch, a dependency's response, or an event; take()
 * for the Python loop and take_wait() for a thread that runs sync calls itself.
 * Bodies move into Python without a copy where they are big (python/buffer.c). */
#include "python/bridge.h"
#include "python/module.h"
#include "common/log.h"
#include "traffic/shm.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>

#define TAKE_BATCH 256
/* A file part held in memory from this size on is moved, not copied. */
#define PART_TAKE_MIN (64 << 10)

static PyObject *bytes_or_none(const char *data, size_t len) {
  if (data == NULL)
    return Py_NewRef(Py_None);
  return PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
}

static PyObject *str_or_none(const char *s) {
  if (s == NULL)
    return Py_NewRef(Py_None);
  return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "surrogateescape");
}

/* A request's content type: a service sees the same few values over and
 * over, so the last ones are kept as str objects (GIL held: one thread here
 * at a time) instead of decoding one per request. */
#define CTYPE_CACHE 4
#define CTYPE_CACHE_LEN 64

static PyObject *content_type_str(const char *s) {
  static char seen[CTYPE_CACHE][CTYPE_CACHE_LEN];
  static PyObject *objs[CTYPE_CACHE];
  static unsigned next;
  size_t len;

  if (s == NULL)
    return Py_NewRef(Py_None);
  len = strlen(s);
  if (len >= CTYPE_CACHE_LEN)
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
  for (int i = 0; i < CTYPE_CACHE; i++)
    if (objs[i] != NULL && memcmp(seen[i], s, len + 1) == 0)
      return Py_NewRef(objs[i]);
  PyObject *obj = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
  if (obj == NULL)
    return NULL;
  unsigned k = next++ % CTYPE_CACHE;
  Py_XSETREF(objs[k], Py_NewRef(obj));
  memcpy(seen[k], s, len + 1);
  return obj;
}

/* Moves the body into a bytes object: C does not need its copy any more. A
 * pickle (a call from the graph, arrays out of band) is handed over without a
 * copy and writable (python/buffer.c). A big raw or .npy array is handed over
 * without a copy too, read-only as an array over bytes is (the 1 MiB copy was
 * a fifth of such a request's time); Python makes it bytes where an API wants
 * those (bentohost/_io.py). Other bodies stay bytes, as user code and json
 * expect. */
static PyObject *take_body(bh_req_t *req) {
  static const char pickle_ct[] = "application/vnd.bentoml+pickle";
  PyObject *body;
  if (req->parts != NULL)
    return Py_NewRef(Py_None);
  if (req->content_type != NULL && strncasecmp(req->content_type, pickle_ct, sizeof(pickle_ct) - 1) == 0)
    return bh_body_take(&req->body, req->body_len, 1, 1); /* arrays writable, as the caller's */
  if (bh_media_type_is(req->content_type, "application/octet-stream") ||
      bh_media_type_is(req->content_type, "application/x-npy"))
    return bh_body_take(&req->body, req->body_len, BH_BODY_ZERO_COPY_MIN, 0);
  body = PyBytes_FromStringAndSize(req->body ? req->body : "", (Py_ssize_t)req->body_len);
  if (body != NULL) {
    free(req->body);
    req->body = NULL;
  }
  return body;
}

/* A part's content: a field's as bytes (it is text or JSON); a file held in
 * memory (an image's, server/multipart.c) moved into Python without a copy
 * when it is big, as the image is read from it and nothing else. */
static PyObject *part_data(bh_part_t *p) {
  if (p->path != NULL)
    return Py_NewRef(Py_None);
  if (p->filename != NULL)
    return bh_body_take(&p->data, p->len, PART_TAKE_MIN, 1);
  return bytes_or_none(p->data ? p->data : "", p->len);
}

static PyObject *parts_list(bh_req_t *req) {
  PyObject *list = PyList_New((Py_ssize_t)req->nparts);
  if (list == NULL)
    return NULL;
  for (size_t i = 0; i < req->nparts; i++) {
    bh_part_t *p = &req->parts[i];
    PyObject *name = NULL, *filename = NULL, *ctype = NULL, *path = NULL, *data = NULL, *item = NULL;
    if ((name = str_or_none(p->name)) == NULL || (filename = str_or_none(p->filename)) == NULL ||
        (ctype = str_or_none(p->content_type)) == NULL || (path = str_or_none(p->path)) == NULL ||
        (data = part_data(p)) == NULL)
      goto fail_part;
    item = PyTuple_Pack(5, name, filename, ctype, path, data);
  fail_part:
    Py_XDECREF(name);
    Py_XDECREF(filename);
    Py_XDECREF(ctype);
    Py_XDECREF(path);
    Py_XDECREF(data);
    if (item == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  return list;
}

/* (head, client, temp_dir, parts) or None when C kept no metadata. */
static PyObject *request_meta(bh_req_t *req) {
  PyObject *head = NULL, *client = NULL, *temp_dir = NULL, *parts = NULL, *meta = NULL;
  if (req->head == NULL && req->parts == NULL && req->temp_dir == NULL)
    return Py_NewRef(Py_None);
  if ((head = PyBytes_FromStringAndSize(req->head ? req->head : "", (Py_ssize_t)req->head_len)) == NULL)
    goto fail;
  if ((client = str_or_none(req->client)) == NULL)
    goto fail;
  if ((temp_dir = str_or_none(req->temp_dir)) == NULL)
    goto fail;
  parts = req->parts ? parts_list(req) : Py_NewRef(Py_None);
  if (parts == NULL)
    goto fail;
  meta = PyTuple_Pack(4, head, client, temp_dir, parts);
fail:
  Py_XDECREF(head);
  Py_XDECREF(client);
  Py_XDECREF(temp_dir);
  Py_XDECREF(parts);
  return meta;
}

static PyObject *request_tuple(bh_req_t *req) {
  PyObject *handle = NULL, *index = NULL, *body = NULL, *ctype = NULL, *meta = NULL, *tuple = NULL;

  if ((handle = PyLong_FromVoidPtr(req)) == NULL)
    goto fail;
  if ((index = PyLong_FromLong(req->api_index)) == NULL)
    goto fail;
  if ((ctype = content_type_str(req->content_type)) == NULL)
    goto fail;
  if ((meta = request_meta(req)) == NULL)
    goto fail;
  if ((body = take_body(req)) == NULL)
    goto fail;
  tuple = PyTuple_Pack(5, handle, index, body, ctype, meta);
fail:
  Py_XDECREF(handle);
  Py_XDECREF(index);
  Py_XDECREF(body);
  Py_XDECREF(ctype);
  Py_XDECREF(meta);
  return tuple;
}

static PyObject *batch_tuple(bh_req_t *head) {
  PyObject *handle = NULL, *index = NULL, *bodies = NULL, *ctypes = NULL, *handles = NULL, *tuple = NULL;
  Py_ssize_t n = 0;

  for (bh_req_t *m = head; m != NULL; m = m->batch_next)
    n++;
  if ((handle = PyLong_FromVoidPtr(head)) == NULL || (index = PyLong_FromLong(head->api_index)) == NULL ||
      (handles = PyList_New(n)) == NULL)
    goto fail;
  if (head->rows != NULL) { /* no bodies: the input is one array already */
    Py_ssize_t i = 0;
    for (bh_req_t *m = head; m != NULL; m = m->batch_next, i++) {
      PyObject *h = PyLong_FromVoidPtr(m);
      if (h == NULL)
        goto fail;
      PyList_SET_ITEM(handles, i, h);
    }
    if ((bodies = PyList_New(0)) == NULL || (ctypes = bh_rows_tuple(head->rows)) == NULL)
      goto fail;
    tuple = PyTuple_Pack(5, handle, index, bodies, ctypes, handles);
    goto fail;
  }
  if ((bodies = PyList_New(n)) == NULL || (ctypes = PyList_New(n)) == NULL)
    goto fail;
  Py_ssize_t i = 0;
  for (bh_req_t *m = head; m != NULL; m = m->batch_next, i++) {
    PyObject *body = take_body(m);
    if (body == NULL)
      goto fail;
    PyList_SET_ITEM(bodies, i, body);
    PyObject *ctype = content_type_str(m->content_type);
    if (ctype == NULL)
      goto fail;
    PyList_SET_ITEM(ctypes, i, ctype);
    PyObject *h = PyLong_FromVoidPtr(m);
    if (h == NULL)
      goto fail;
    PyList_SET_ITEM(handles, i, h);
  }
  tuple = PyTuple_Pack(5, handle, index, bodies, ctypes, handles);
fail:
  Py_XDECREF(handle);
  Py_XDECREF(index);
  Py_XDECREF(bodies);
  Py_XDECREF(ctypes);
  Py_XDECREF(handles);
  return tuple;
}

static PyObject *event_tuple(bh_req_t *req, long kind) {
  PyObject *handle = PyLong_FromVoidPtr(req), *code = PyLong_FromLong(kind), *tuple = NULL;
  if (handle != NULL && code != NULL)
    tuple = PyTuple_Pack(5, handle, code, Py_None, Py_None, Py_None);
  Py_XDECREF(handle);
  Py_XDECREF(code);
  return tuple;
}

static PyObject *in_tuple(const bh_in_t *in) {
  switch (in->kind) {
  case BH_IN_RESPONSE: return bh_response_tuple(in->req, -3);
  case BH_IN_RESPONSE_DATA: return bh_response_tuple(in->req, -4);
  case BH_IN_REQUEST: return request_tuple(in->req);
  case BH_IN_BATCH: return batch_tuple(in->req);
  case BH_IN_CANCEL: return event_tuple(in->req, -1);
  case BH_IN_WRITABLE: return event_tuple(in->req, -2);
  }
  PyErr_SetString(PyExc_RuntimeError, "unknown bridge entry");
  return NULL;
}

/* Pending Python work, for the supervisor's watchdog: +1 per request handed
 * over (here), -1 with its final message (bh_module_work_done). */
static void work_taken(const bh_in_t *entries, size_t n) {
  bh_worker_t *w = bh_module_worker();
  int k = 0;
  if (w->shm == NULL)
    return;
  for (size_t i = 0; i < n; i++) {
    if (entries[i].kind == BH_IN_REQUEST)
      k++;
    else if (entries[i].kind == BH_IN_BATCH)
      for (bh_req_t *m = entries[i].req; m != NULL; m = m->batch_next)
        k++;
  }
  if (k > 0)
    bh_shm_work(w->shm, w->slot, k);
}

static void post_error(bh_req_t *req) {
  static const char body[] =
      "{\"error\":\"An unexpected error has occurred, please check the server log.\"}";
  bh_out_t *msg = bh_out_new(req, BH_OUT_COMPLETE, 500, "application/json", 16, NULL, 0, body,
                             sizeof(body) - 1);
  if (msg == NULL) {
    bh_log("error: out of memory answering a request: it is lost");
    return;
  }
  bh_bridge_post(bh_module_worker()->bridge, msg);
  bh_module_work_done();
}

/* An entry that could not be turned into Python objects is answered here, so
 * that no request is lost. */
static void fail_entry(const bh_in_t *in) {
  if (in->kind == BH_IN_RESPONSE || in->kind == BH_IN_RESPONSE_DATA) {
    bh_req_free(in->req); /* its caller's own timeout answers the call */
  } else if (in->kind == BH_IN_REQUEST) {
    post_error(in->req);
  } else if (in->kind == BH_IN_BATCH) {
    /* Read the link first: once its final message is posted, m may be freed. */
    for (bh_req_t *m = in->req, *next; m != NULL; m = next) {
      next = m->batch_next;
      post_error(m);
    }
  }
}

/* The entries as a list of tuples; entries that cannot be converted are
 * answered here (an error for a request), so that none is lost. */
static PyObject *entries_list(bh_in_t *entries, size_t n) {
  work_taken(entries, n);
  PyObject *list = PyList_New((Py_ssize_t)n);
  if (list == NULL) {
    for (size_t j = 0; j < n; j++)
      fail_entry(&entries[j]);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    PyObject *item = in_tuple(&entries[i]);
    if (item == NULL) {
      PyErr_WriteUnraisable(NULL);
      for (size_t j = i; j < n; j++)
        fail_entry(&entries[j]);
      Py_SET_SIZE(list, (Py_ssize_t)i);
      return list;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  return list;
}

/* Up to TAKE_BATCH entries: 0 with none pending, -1 at shutdown. The eventfd
 * is emptied first when the caller was woken by it (woken). */
static Py_ssize_t take_now(bh_worker_t *w, bh_in_t *entries, int woken) {
  bh_bridge_t *b = w->bridge;
  if (w->shm)
    bh_shm_heartbeat(w->shm, w->slot);
  if (woken)
    bh_bridge_clear_eventfd(b);
  size_t n = bh_bridge_take(b, entries, TAKE_BATCH);
  if (n == 0 && atomic_load(&b->shutdown))
    return -1;
  return (Py_ssize_t)n;
}

PyObject *bh_py_take(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (bh_module_require_io() != 0)
    return NULL;
  bh_in_t entries[TAKE_BATCH];
  Py_ssize_t n = take_now(bh_module_worker(), entries, 1);
  if (n < 0)
    Py_RETURN_NONE;
  return entries_list(entries, (size_t)n);
}

/* take() for the one thread that runs a service's sync calls itself (the
 * Python loop does not read the ring then): it waits, without the GIL, until
 * there is something. bh_bridge_take() announced the sleep when it found the
 * ring empty, so the producer writes the eventfd for the next entry. */
PyObject *bh_py_take_wait(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (bh_module_require_io() != 0)
    return NULL;
  bh_worker_t *w = bh_module_worker();
  bh_in_t entries[TAKE_BATCH];
  /* The eventfd is read only after poll() said it was written: a thread that finds
   * requests waiting (the busy case) makes no system call to take them. A write
   * left over from a race in bh_bridge_take() costs one spurious turn of this loop. */
  for (int woken = 0;; woken = 1) {
    Py_ssize_t n = take_now(w, entries, woken);
    if (n < 0)
      Py_RETURN_NONE;
    if (n > 0)
      return entries_list(entries, (size_t)n);
    struct pollfd pfd = {.fd = w->bridge->eventfd, .events = POLLIN};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = poll(&pfd, 1, -1);
    Py_END_ALLOW_THREADS
    if (rc < 0 && errno == EINTR && PyErr_CheckSignals() != 0)
      return NULL;
  }
}
