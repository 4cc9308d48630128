/* TLS with OpenSSL (net/tls.c), both ways: the server's context, made once
 * from the --ssl-* options, the client's for https:// dependencies, and an
 * engine per connection that the I/O thread drives with memory buffers, so
 * no socket call of OpenSSL ever blocks the loop and libuv keeps owning the
 * sockets.
 *
 * No libuv and no Python here: the supervisor makes the context before it
 * forks (a bad certificate stops the server before any worker starts, and
 * every worker shares the session-ticket keys, so a session resumes on any
 * worker), and the connection code moves bytes through the engine. */
#ifndef BH_SERVER_TLS_H
#define BH_SERVER_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct bh_tls_opts {
  const char *certfile;   /* PEM: the certificate, then its chain */
  const char *keyfile;    /* PEM; NULL: in certfile */
  const char *password;   /* of an encrypted key, or NULL */
  const char *ca_certs;   /* PEM bundle to verify client certificates */
  const char *ciphers;    /* OpenSSL cipher list for TLS 1.2, or NULL */
  int cert_reqs;          /* 0 no client certificate, 1 optional, 2 required (mutual TLS) */
  int version;            /* Python's ssl.PROTOCOL_* number, as uvicorn takes it; 0: default */
} bh_tls_opts_t;

typedef struct bh_tls_ctx bh_tls_ctx_t;
typedef struct bh_tls bh_tls_t;

/* Makes the session-ticket keys that every server context made after it
 * uses: called by the supervisor before it forks, so that all workers share
 * them and a client resumes its session on whichever worker it reaches. 0,
 * or -EIO when no randomness could be had. */
int bh_tls_init_tickets(void);

/* 0, or -EINVAL with a one-line reason in err (a missing or unreadable file,
 * a key that does not match the certificate, a wrong password, ...). */
int bh_tls_ctx_new(bh_tls_ctx_t **out, const bh_tls_opts_t *opts, char *err, size_t errlen);
void bh_tls_ctx_free(bh_tls_ctx_t *ctx);

/* A client context: peers verified against the system's CA certificates
 * (OpenSSL's default paths; SSL_CERT_FILE and SSL_CERT_DIR are honoured) and
 * ca_file when given. 0, or -EINVAL with the reason in err. */
int bh_tls_client_ctx_new(bh_tls_ctx_t **out, const char *ca_file, char *err, size_t errlen);

/* A server-side engine for one connection; NULL when out of memory. */
bh_tls_t *bh_tls_new(bh_tls_ctx_t *ctx);
/* A client-side engine that will check the peer's certificate for host (a
 * name, sent as SNI, or an IP address); NULL when out of memory. */
bh_tls_t *bh_tls_client_new(bh_tls_ctx_t *ctx, const char *host);

/* Moves the handshake on (a client starts it with this call): 1 done, 0
 * waiting for the peer (send bh_tls_output first), -EPROTO failed. */
int bh_tls_handshake(bh_tls_t *t);
void bh_tls_free(bh_tls_t *t);

/* Bytes read from the socket. 0, or -ENOMEM. */
int bh_tls_feed(bh_tls_t *t, const char *data, size_t len);

/* Decrypted bytes, up to cap of them into buf (also moves the handshake on):
 * > 0 bytes, 0 when more input is needed, -EPIPE at the peer's close_notify,
 * -EPROTO when the connection must be closed (a handshake that failed: plain
 * HTTP on the TLS port, garbage, a client certificate that did not verify). */
ssize_t bh_tls_read(bh_tls_t *t, char *buf, size_t cap);

/* Encrypts len bytes (once the handshake is done). 0, or -EPROTO. */
int bh_tls_write(bh_tls_t *t, const char *data, size_t len);

/* The encrypted bytes waiting for the socket: *data points into the engine
 * (valid until the next call on it) and the length is returned; 0: none. */
size_t bh_tls_output(bh_tls_t *t, const char **data);
/* The first n bytes of the output were sent or copied. */
void bh_tls_output_done(bh_tls_t *t, size_t n);

int bh_tls_handshake_done(const bh_tls_t *t);
/* Why the last -EPROTO happened, for the log (a static string). */
const char *bh_tls_error(const bh_tls_t *t);

#endif
