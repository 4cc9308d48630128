/* The response side of the client: llhttp's callbacks (HTTP_RESPONSE, strict
 * mode), the header block kept for the caller, 1xx interim responses skipped,
 * and the body accumulated into one buffer under the size limits. Every
 * callback is bounded by the bytes llhttp hands it. A streamed call's body
 * is moved out after each read (client_conn.c), so the limit bounds what one
 * read accumulates, not the stream. */
#include "net/client_internal.h"

/* More interim responses than this for one request is a peer that never
 * answers: each "HTTP/1.1 100 \r\n\r\n" costs the header limit nothing. */
#define MAX_INTERIM 16
#define HDRS_INITIAL 512
#define BODY_INITIAL (16 * 1024)

static int fail(bh_cconn_t *conn, int err) {
  conn->err = err;
  return -1;
}

/* The status line's reason, header lines and trailers all count toward
 * max_header_size, over every message of the exchange: neither a long head
 * nor a stream of interim responses can grow memory without bound. (Chunk
 * extensions are neither kept nor counted: llhttp hands them over as spans
 * of the read buffer, and the call's timeout bounds a peer that sends them
 * forever.) */
static int head_count(bh_cconn_t *conn, size_t n) {
  conn->head_bytes += n;
  if (conn->head_bytes > conn->client->opts.max_header_size)
    return fail(conn, -EMSGSIZE);
  return 0;
}

/* Appends to the header block, keeping it NUL-terminated for the callback. */
static int hdrs_add(bh_cconn_t *conn, const char *d, size_t n) {
  if (head_count(conn, n) != 0)
    return -1;
  if (!conn->in_head)
    return 0; /* a trailer: counted, not kept */
  if (conn->hdrs_len + n + 1 > conn->hdrs_cap) {
    size_t ncap = conn->hdrs_cap ? conn->hdrs_cap : HDRS_INITIAL;
    char *p;
    /* bounded: hdrs_len + n is under max_header_size (head_count above) */
    while (ncap < conn->hdrs_len + n + 1)
      ncap = ncap > SIZE_MAX / 2 ? conn->hdrs_len + n + 1 : ncap * 2;
    p = realloc(conn->hdrs, ncap);
    if (p == NULL)
      return fail(conn, -ENOMEM);
    conn->hdrs = p;
    conn->hdrs_cap = ncap;
  }
  memcpy(conn->hdrs + conn->hdrs_len, d, n);
  conn->hdrs_len += n;
  conn->hdrs[conn->hdrs_len] = '\0';
  return 0;
}

/* Room for `more` body bytes, under max_response_size. A body of known
 * length was allocated whole at its head; others grow by doubling. */
static int body_reserve(bh_cconn_t *conn, size_t more) {
  uint64_t max = conn->client->opts.max_response_size;
  size_t need, ncap;
  char *p;

  if ((uint64_t)more > max - conn->body_len)
    return fail(conn, -EMSGSIZE);
  need = conn->body_len + more;
  if (need <= conn->body_cap)
    return 0;
  ncap = conn->body_cap ? conn->body_cap : BODY_INITIAL;
  while (ncap < need) /* at most 64 doublings */
    ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
  if ((uint64_t)ncap > max)
    ncap = (size_t)max;
  p = realloc(conn->body, ncap);
  if (p == NULL)
    return fail(conn, -ENOMEM);
  conn->body = p;
  conn->body_cap = ncap;
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  bh_cconn_t *conn = p->data;

  /* A final response after interim ones starts its header block over. */
  conn->in_head = 1;
  conn->interim = 0;
  conn->hdrs_len = 0;
  if (conn->hdrs != NULL)
    conn->hdrs[0] = '\0';
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  return head_count(p->data, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  return hdrs_add(p->data, at, len);
}

static int on_header_field_complete(llhttp_t *p) {
  return hdrs_add(p->data, ": ", 2);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  return hdrs_add(p->data, at, len);
}

static int on_header_value_complete(llhttp_t *p) {
  return hdrs_add(p->data, "\r\n", 2);
}

/* Returns 1 where the response has no body whatever its headers say: llhttp
 * would otherwise wait for the Content-Length of a 304 or a HEAD response. */
static int on_headers_complete(llhttp_t *p) {
  bh_cconn_t *conn = p->data;
  int status = p->status_code;

  conn->in_head = 0;
  if (status == 101)
    return fail(conn, -EPROTO); /* we never ask to switch protocols */
  if (status < 200) {
    if (++conn->ninterim > MAX_INTERIM)
      return fail(conn, -EPROTO);
    conn->interim = 1;
    return 1;
  }
  conn->status = status;
  conn->head_done = 1;
  if (status == 204 || status == 304 || (conn->call != NULL && conn->call->head))
    return 1;
  /* a streamed body goes out as it arrives: nothing to size up front */
  if (conn->call != NULL && conn->call->on_data != NULL)
    return 0;
  if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED) && p->content_length > 0) {
    /* sized up front: one allocation, no copies as the body arrives */
    if (p->content_length > conn->client->opts.max_response_size)
      return fail(conn, -EMSGSIZE);
    conn->body = malloc((size_t)p->content_length);
    if (conn->body == NULL)
      return fail(conn, -ENOMEM);
    conn->body_cap = (size_t)p->content_length;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  bh_cconn_t *conn = p->data;

  if (body_reserve(conn, len) != 0)
    return -1;
  memcpy(conn->body + conn->body_len, at, len);
  conn->body_len += len;
  return 0;
}

/* Pauses at the end of the final response: bytes after it (a peer that
 * answers twice) must not be read as the next exchange's, and the read
 * callback sees where the message ended. */
static int on_message_complete(llhttp_t *p) {
  bh_cconn_t *conn = p->data;

  if (conn->interim) {
    conn->interim = 0;
    return 0; /* the final response follows on the same connection */
  }
  /* read here: llhttp clears the flags it depends on once this returns */
  conn->keep_alive = llhttp_should_keep_alive(p);
  conn->msg_done = 1;
  return HPE_PAUSED;
}

const llhttp_settings_t bh_cconn_parser_settings = {
  .on_message_begin = on_message_begin,
  .on_status = on_status,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
  .on_header_field_complete = on_header_field_complete,
  .on_header_value_complete = on_header_value_complete,
};

/* A fresh parser per exchange: nothing of the previous response (its flags,
 * a pause) can leak into the next. Buffers handed to a finished call were
 * detached already; a failed exchange's are reused. */
void bh_cconn_parse_start(bh_cconn_t *conn) {
  llhttp_init(&conn->parser, HTTP_RESPONSE, &bh_cconn_parser_settings);
  conn->parser.data = conn;
  conn->got_bytes = 0;
  conn->msg_done = 0;
  conn->keep_alive = 0;
  conn->in_head = 0;
  conn->head_done = 0;
  conn->interim = 0;
  conn->ninterim = 0;
  conn->err = 0;
  conn->status = 0;
  conn->head_bytes = 0;
  conn->hdrs_len = 0;
  conn->body_len = 0;
  free(conn->body);
  conn->body = NULL;
  conn->body_cap = 0;
}
