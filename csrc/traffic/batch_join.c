/* Requests split across batches: their parts' outputs (JSON arrays) joined
 * back into one answer for the parent request, or its first failure. */
#include "traffic/internal.h"

#include <stdlib.h>
#include <string.h>

static void append_out(bh_split_t *s, const char *p, size_t n) {
  if (s->out_len + n + 1 > s->out_cap) {
    size_t cap = (s->out_cap + n + 1) * 2;
    char *o = realloc(s->out, cap);
    if (o == NULL) {
      s->out_cap = (size_t)-1; /* poisons the join: becomes a 500 */
      return;
    }
    s->out = o;
    s->out_cap = cap;
  }
  if (s->out_cap == (size_t)-1)
    return;
  memcpy(s->out + s->out_len, p, n);
  s->out_len += n;
}

static const char k500[] = "{\"error\":\"Internal Server Error\"}";

/* A part's final message: keep its array's contents, or its failure. */
void bh_split_absorb(bh_split_t *s, bh_out_t *msg) {
  if (msg->status >= 400 || msg->kind != BH_OUT_COMPLETE) {
    if (s->err == NULL) {
      s->err = msg;
      return;
    }
    free(msg);
    return;
  }
  const char *d = msg->data;
  size_t i = bh_json_skip_ws(d, 0, msg->len), e = msg->len;
  while (e > i && strchr(" \t\r\n", d[e - 1]))
    e--;
  if (d == NULL || e - i < 2 || d[i] != '[' || d[e - 1] != ']') {
    /* Python returned something that cannot be joined: the parent fails. */
    if (s->err == NULL)
      s->err = bh_out_new(s->parent, BH_OUT_COMPLETE, 500, "application/json", 16, NULL, 0, k500,
                          sizeof(k500) - 1);
    free(msg);
    return;
  }
  size_t in_s = bh_json_skip_ws(d, i + 1, e - 1), in_e = e - 1;
  if (in_e > in_s) {
    if (s->out_len > 0)
      append_out(s, ",", 1);
    append_out(s, d + in_s, in_e - in_s);
  }
  if (s->first == NULL)
    s->first = msg;
  else
    free(msg);
}

bh_out_t *bh_split_join(bh_split_t *s) {
  bh_req_t *p = s->parent;
  if (s->err != NULL) {
    bh_out_t *e = s->err;
    return bh_out_new(p, BH_OUT_COMPLETE, e->status, e->content_type,
                      e->content_type ? strlen(e->content_type) : 0, e->headers, e->headers_len,
                      e->data, e->len);
  }
  if (s->out_cap == (size_t)-1 || s->first == NULL)
    return bh_out_new(p, BH_OUT_COMPLETE, 500, "application/json", 16, NULL, 0, k500,
                      sizeof(k500) - 1);
  size_t n = s->out_len + 2;
  char *body = malloc(n);
  if (body == NULL)
    return NULL;
  body[0] = '[';
  if (s->out_len)
    memcpy(body + 1, s->out, s->out_len);
  body[n - 1] = ']';
  bh_out_t *f = s->first;
  bh_out_t *m = bh_out_new(p, BH_OUT_COMPLETE, f->status, f->content_type,
                           f->content_type ? strlen(f->content_type) : 0, f->headers,
                           f->headers_len, body, n);
  free(body);
  return m;
}
