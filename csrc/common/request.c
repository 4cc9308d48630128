/* A request's memory: freeing one (and its temp dir), and building Python's
 * messages about it in one allocation. */
#include "common/request.h"
#include "common/spool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void bh_req_free(bh_req_t *req) {
  size_t i;

  if (req == NULL)
    return;
  free(req->body);
  free(req->content_type);
  free(req->head);
  if (req->temp_dir != NULL) {
    /* What is left is removed recursively: Python may have added files. */
    bh_spool_release(req->temp_dir, req->parts, req->nparts);
    free(req->temp_dir);
  }
  for (i = 0; i < req->nparts; i++) {
    bh_part_t *p = &req->parts[i];
    free(p->name);
    free(p->filename);
    free(p->content_type);
    free(p->path);
    free(p->data);
  }
  free(req->parts);
  if (req->rows != NULL) {
    free(req->rows->data);
    free(req->rows->counts);
    free(req->rows);
  }
  free(req);
}

bh_out_t *bh_out_new(bh_req_t *req, bh_out_kind_t kind, int status,
                     const char *content_type, size_t content_type_len,
                     const char *headers, size_t headers_len,
                     const char *data, size_t len) {
  return bh_out_new_parts(req, kind, status, content_type, content_type_len, headers,
                          headers_len, &data, &len, 1);
}

bh_out_t *bh_out_new_parts(bh_req_t *req, bh_out_kind_t kind, int status,
                           const char *content_type, size_t content_type_len,
                           const char *headers, size_t headers_len,
                           const char *const *parts, const size_t *lens, size_t nparts) {
  size_t ct = content_type != NULL ? content_type_len + 1 : 0;
  size_t len = 0, total;
  bh_out_t *msg;
  char *p;

  for (size_t i = 0; i < nparts; i++) {
    if (lens[i] > SIZE_MAX - len) /* overflow */
      return NULL;
    len += parts[i] != NULL ? lens[i] : 0;
  }
  total = sizeof(bh_out_t) + ct + headers_len + len;
  if (total < sizeof(bh_out_t) + len) /* overflow */
    return NULL;
  msg = malloc(total);
  if (msg == NULL)
    return NULL;
  p = (char *)(msg + 1);
  msg->next = NULL;
  msg->req = req;
  msg->kind = kind;
  msg->status = status;
  msg->content_type = NULL;
  msg->headers = NULL;
  msg->headers_len = 0;
  msg->data = NULL;
  msg->len = 0;
  if (content_type != NULL) {
    memcpy(p, content_type, content_type_len);
    p[content_type_len] = '\0';
    msg->content_type = p;
    p += ct;
  }
  if (headers != NULL && headers_len > 0) {
    memcpy(p, headers, headers_len);
    msg->headers = p;
    msg->headers_len = headers_len;
    p += headers_len;
  }
  if (len > 0) {
    msg->data = p;
    msg->len = len;
    for (size_t i = 0; i < nparts; i++)
      if (parts[i] != NULL && lens[i] > 0) {
        memcpy(p, parts[i], lens[i]);
        p += lens[i];
      }
  }
  return msg;
}
