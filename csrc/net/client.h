/* The outbound HTTP/1.1 client: a worker's I/O thread calls the APIs of a
 * dependency service, whose workers each listen on their own Unix socket (or
 * TCP host:port). HTTP only: it knows nothing of Python or of the server.
 *
 * Everything runs on one libuv loop, from that loop's thread; nothing blocks
 * and nothing here is thread-safe. Each request goes to the target with the
 * fewest calls in flight (ties: round robin). Per target, idle keep-alive
 * connections are reused most-recent first and new ones opened up to
 * max_conns_per_target; beyond that calls wait in one FIFO queue per client.
 * A request that meets a reused connection the server had closed (EOF or
 * reset before any response byte) is sent once more on a fresh connection;
 * nothing else is ever retried.
 *
 * Writes to a socket whose peer has gone raise SIGPIPE: the process must
 * ignore it, as the host does (worker/worker.c, supervisor/supervisor.c). */
#ifndef BH_NET_CLIENT_H
#define BH_NET_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bh_client bh_client_t;           /* one per dependency, per calling worker */
typedef struct bh_client_call bh_client_call_t; /* one request in flight */

/* unix_path, or host:port when unix_path is NULL. host is a numeric IPv4 or
 * IPv6 address, or "localhost" (127.0.0.1): no name lookup, which would block
 * the loop. */
typedef struct bh_client_target {
  const char *unix_path;
  const char *host;
  int port;
  /* TCP with TLS: the name the peer's certificate must carry (and the SNI
   * sent), or its IP address; NULL: plain TCP. Needs opts.tls. */
  const char *tls_name;
} bh_client_target_t;

/* Any field left 0 takes its default. */
typedef struct bh_client_opts {
  uint64_t connect_timeout_ms;  /* default 5000; a connect past it fails the call with -ETIMEDOUT */
  uint64_t idle_timeout_ms;     /* keep-alive idle close; default 2000: shorter than the server's 5 s so we never reuse a connection the server is closing */
  size_t max_conns_per_target;  /* default 64 */
  uint64_t max_response_size;   /* response body; default 1 GiB; bigger -> -EMSGSIZE */
  size_t max_header_size;       /* status line, header lines and trailers together; default 64 KiB; bigger -> -EMSGSIZE */
  struct bh_tls_ctx *tls;       /* client context (net/tls.h) for targets with a tls_name; not owned */
} bh_client_opts_t;

/* The result of a call, called exactly once per accepted request, always from
 * the loop (never from inside bh_client_request, bh_client_cancel or
 * bh_client_close).
 *
 * status > 0 is the HTTP status (1xx interim responses are skipped); < 0 a
 * negative errno: -ECONNREFUSED/-ENOENT (nobody listens), -ETIMEDOUT (the
 * call's timeout, or connect_timeout_ms), -ECONNRESET/-EPIPE (peer closed
 * mid-response), -EPROTO (unparsable response), -EMSGSIZE (max_response_size
 * or max_header_size), -ECANCELED (bh_client_cancel or bh_client_close),
 * -ENOMEM, or another errno of a failed connect, read or write (-EAGAIN: a
 * Unix socket whose listen backlog is full refuses at once); -ECONNABORTED
 * when a TLS handshake failed (the peer's certificate did not verify, or it
 * does not speak TLS: the reason is logged).
 *
 * headers: the raw header block "name: value\r\n"... of the final response,
 * without the status line and without trailers (a NUL-terminated copy, valid
 * during the callback only; "" when there are none, NULL when status < 0).
 * body: malloc'd, ownership passes to the callback (free it); NULL when empty
 * or status < 0. `call` is valid until the callback returns and no longer. */
typedef void (*bh_client_cb)(bh_client_call_t *call, int status, const char *headers,
                             size_t headers_len, char *body, size_t body_len, void *arg);

/* Fills opts with the defaults (what NULL or 0 fields give). */
void bh_client_opts_default(bh_client_opts_t *opts);

/* A client for ntargets (>= 1) workers of one dependency; the targets'
 * strings are copied. 0, or -EINVAL (no target, a bad address or port),
 * -ENAMETOOLONG (a Unix path too long for sockaddr_un), -ENOMEM. */
int bh_client_create(bh_client_t **out, uv_loop_t *loop, const bh_client_target_t *targets,
                     size_t ntargets, const bh_client_opts_t *opts /* NULL: defaults */);

/* Sends `method path` (an HTTP/1.1 request) with the extra header lines
 * `headers` (each "Name: value\r\n"; Content-Length and Transfer-Encoding are
 * refused: the client frames the body) and the body given as nbufs buffers.
 * The client adds Host ("localhost" for a Unix socket, unless the caller gave
 * one) and Content-Length (omitted for a GET or HEAD without a body); it
 * keeps connections alive and honours the response's connection: close.
 *
 * Copied: method, path, headers and the uv_buf_t array. Referenced, not
 * copied: the body's bytes, which must stay valid and unchanged until the
 * callback (a retry sends them again).
 *
 * timeout_ms (0 = none) counts from now, time in the queue included; past it
 * the call gets -ETIMEDOUT and its connection, if any, is closed.
 * *out (out may be NULL) is the call's handle, for bh_client_cancel.
 * Returns 0 (cb will be called exactly once, never synchronously from inside
 * bh_client_request) or a negative errno (cb never called): -EINVAL (a bad
 * argument, method, path or header line), -ESHUTDOWN (bh_client_close was
 * called), -ENOMEM. */
int bh_client_request(bh_client_t *c, const char *method, const char *path, const char *headers,
                      size_t headers_len, const uv_buf_t *body, unsigned nbufs,
                      uint64_t timeout_ms, bh_client_cb cb, void *arg, bh_client_call_t **out);

/* Streaming: the call's body is handed over as it arrives rather than whole.
 * Set right after a successful bh_client_request (before the loop runs
 * again); 0, or -EINVAL (call NULL, on_data NULL, or past that point).
 *
 * on_data is called from the loop (deferred as results are, never inside a
 * libuv or llhttp callback, so it may call any function of the client): once
 * with the final response's status and header block (valid during the call),
 * data then holding the first body bytes or NULL; then with headers NULL for
 * each later run of body bytes (what one turn of the loop read). data is
 * malloc'd and passes to the callback (free it); len > 0 whenever data is
 * set. cb follows exactly once as for any call, with body NULL: the status
 * again when the response ended cleanly, or a negative errno when it broke
 * off (nothing was lost before it: every byte read was delivered).
 *
 * The timeout bounds the wait for the head and then each wait for more body
 * bytes (a read timeout, as httpx has), so a long stream that keeps talking
 * lives on; max_response_size bounds one delivery, not the whole stream. */
typedef void (*bh_client_data_cb)(bh_client_call_t *call, int status, const char *headers,
                                  size_t headers_len, char *data, size_t len, void *arg);
int bh_client_stream(bh_client_call_t *call, bh_client_data_cb on_data);

/* Back-pressure for a streamed call: paused, its connection is not read (the
 * peer's writes block once the socket buffers fill) and its timeout does not
 * run; resumed, both start again. Idempotent; ignored for a finished call. */
void bh_client_pause(bh_client_call_t *call, int paused);

/* cb gets -ECANCELED (later, from the loop); the connection is closed if the
 * exchange had started. A call whose result is already decided keeps it. */
void bh_client_cancel(bh_client_call_t *call);

/* For tests and metrics: calls in flight to a target (connecting, sending or
 * awaiting the response), its open connections (idle ones included), and the
 * calls waiting for a connection. An index out of range reads 0. */
size_t bh_client_inflight(const bh_client_t *c, size_t target);
size_t bh_client_conns(const bh_client_t *c, size_t target);
size_t bh_client_queued(const bh_client_t *c);

/* Pending calls get -ECANCELED (from the loop, as ever); connections are
 * closed and the memory freed in close callbacks, so the loop must run on for
 * a turn. Once it returns, c may be used only by the callbacks still to come
 * (bh_client_request there returns -ESHUTDOWN); it may be called from one. */
void bh_client_close(bh_client_t *c);

#endif
