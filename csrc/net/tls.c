/* TLS with OpenSSL: the context (certificate chain, key, client
 * verification, versions, ALPN, session tickets) and the per-connection
 * engine over two memory BIOs: the I/O thread feeds what it read and sends
 * what the engine wrote, so OpenSSL never touches a socket. */
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Python's ssl.PROTOCOL_* numbers, as `bentoml serve --ssl-version` takes them. */
enum { PY_PROTOCOL_TLS = 2, PY_PROTOCOL_TLSv1 = 3, PY_PROTOCOL_TLSv1_1 = 4, PY_PROTOCOL_TLSv1_2 = 5,
       PY_PROTOCOL_TLS_CLIENT = 16, PY_PROTOCOL_TLS_SERVER = 17 };

/* 16 bytes of key name, 32 of HMAC key, 32 of AES key: OpenSSL's layout */
static unsigned char ticket_keys[80];
static int have_ticket_keys;

int bh_tls_init_tickets(void) {
  if (RAND_bytes(ticket_keys, sizeof(ticket_keys)) != 1)
    return -EIO;
  have_ticket_keys = 1;
  return 0;
}

struct bh_tls_ctx {
  SSL_CTX *ssl;
};

struct bh_tls {
  SSL *ssl;
  BIO *in;           /* what the socket gave us */
  BIO *out;          /* what the socket must send */
  size_t out_sent;   /* of out's bytes, already sent or copied */
  const char *error;
};

static void put_err(char *err, size_t errlen, const char *what, const char *path) {
  unsigned long e = ERR_peek_last_error();
  char detail[200] = "";

  if (e != 0)
    ERR_error_string_n(e, detail, sizeof(detail));
  ERR_clear_error();
  snprintf(err, errlen, "%s%s%s%s%s", what, path ? " " : "", path ? path : "",
           detail[0] ? ": " : "", detail);
}

static int readable(const char *path, const char *what, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");

  if (f == NULL) {
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    return -1;
  }
  fclose(f);
  return 0;
}

static int password_cb(char *buf, int size, int rwflag, void *userdata) {
  const char *pw = userdata;
  size_t n;

  (void)rwflag;
  if (pw == NULL || size <= 0)
    return 0;
  n = strlen(pw);
  if (n > (size_t)size)
    n = (size_t)size;
  memcpy(buf, pw, n);
  return (int)n;
}

/* HTTP/1.1 only: a client that offers h2 alone gets no ALPN answer and may
 * go on with HTTP/1.1 or leave. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char http11[] = "\x08http/1.1";
  unsigned char *sel;

  (void)ssl;
  (void)arg;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int set_versions(SSL_CTX *ssl, int version, char *err, size_t errlen) {
  int min = TLS1_2_VERSION, max = 0;

  switch (version) {
  case 0:
  case PY_PROTOCOL_TLS:
  case PY_PROTOCOL_TLS_CLIENT:
  case PY_PROTOCOL_TLS_SERVER:
    break;
  case PY_PROTOCOL_TLSv1_2:
    max = TLS1_2_VERSION;
    break;
  case PY_PROTOCOL_TLSv1:
  case PY_PROTOCOL_TLSv1_1:
    snprintf(err, errlen, "--ssl-version %d: TLS 1.0 and 1.1 are insecure and not served "
             "(TLS 1.2 and 1.3 are)", version);
    return -1;
  default:
    snprintf(err, errlen, "--ssl-version %d: not a TLS protocol number (2 or 17: TLS 1.2 and "
             "1.3; 5: TLS 1.2 only)", version);
    return -1;
  }
  SSL_CTX_set_min_proto_version(ssl, min);
  SSL_CTX_set_max_proto_version(ssl, max);
  return 0;
}

int bh_tls_ctx_new(bh_tls_ctx_t **out, const bh_tls_opts_t *o, char *err, size_t errlen) {
  const char *keyfile = o->keyfile != NULL && o->keyfile[0] ? o->keyfile : o->certfile;
  bh_tls_ctx_t *ctx;
  SSL_CTX *ssl;
  EVP_PKEY *key = NULL;
  BIO *kbio;

  *out = NULL;
  if (o->certfile == NULL || o->certfile[0] == '\0') {
    snprintf(err, errlen, "TLS needs a certificate: --ssl-certfile");
    return -EINVAL;
  }
  if (o->cert_reqs < 0 || o->cert_reqs > 2) {
    snprintf(err, errlen, "--ssl-cert-reqs %d: 0 (none), 1 (optional) or 2 (required)", o->cert_reqs);
    return -EINVAL;
  }
  if (o->cert_reqs > 0 && (o->ca_certs == NULL || o->ca_certs[0] == '\0')) {
    snprintf(err, errlen, "--ssl-cert-reqs %d needs --ssl-ca-certs to verify client certificates",
             o->cert_reqs);
    return -EINVAL;
  }
  if (readable(o->certfile, "certificate", err, errlen) != 0 ||
      readable(keyfile, "key", err, errlen) != 0 ||
      (o->cert_reqs > 0 && readable(o->ca_certs, "CA certificates", err, errlen) != 0))
    return -EINVAL;
  if ((ssl = SSL_CTX_new(TLS_server_method())) == NULL) {
    put_err(err, errlen, "cannot make a TLS context", NULL);
    return -EINVAL;
  }
  if (set_versions(ssl, o->version, err, errlen) != 0)
    goto fail;
  SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS); /* idle keep-alive connections hold no buffers */
  if (SSL_CTX_use_certificate_chain_file(ssl, o->certfile) != 1) {
    put_err(err, errlen, "bad certificate file", o->certfile);
    goto fail;
  }
  /* Read apart from its use, so that an unreadable key and one that does not
   * match the certificate get their own reasons. */
  if ((kbio = BIO_new_file(keyfile, "r")) != NULL)
    key = PEM_read_bio_PrivateKey(kbio, NULL, password_cb, (void *)o->password);
  BIO_free(kbio);
  if (key == NULL) {
    put_err(err, errlen, o->password ? "cannot load the key (wrong --ssl-keyfile-password?)"
                                     : "cannot load the key (encrypted? give --ssl-keyfile-password)",
            keyfile);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey(ssl, key) != 1 || SSL_CTX_check_private_key(ssl) != 1) {
    put_err(err, errlen, "the key does not match the certificate", keyfile);
    goto fail;
  }
  EVP_PKEY_free(key);
  key = NULL;
  if (o->ciphers != NULL && o->ciphers[0] && SSL_CTX_set_cipher_list(ssl, o->ciphers) != 1) {
    put_err(err, errlen, "--ssl-ciphers: no usable cipher in", o->ciphers);
    goto fail;
  }
  if (o->cert_reqs > 0) {
    if (SSL_CTX_load_verify_locations(ssl, o->ca_certs, NULL) != 1) {
      put_err(err, errlen, "bad CA certificates file", o->ca_certs);
      goto fail;
    }
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER | (o->cert_reqs == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
  }
  SSL_CTX_set_alpn_select_cb(ssl, alpn_cb, NULL);
  /* Stateless tickets only, with the keys the supervisor made before it
   * forked (bh_tls_init_tickets): every worker resumes every session. */
  SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ssl, 1);
  if (have_ticket_keys && SSL_CTX_set_tlsext_ticket_keys(ssl, ticket_keys, sizeof(ticket_keys)) != 1) {
    put_err(err, errlen, "cannot set the session ticket keys", NULL);
    goto fail;
  }
  if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  ctx->ssl = ssl;
  *out = ctx;
  return 0;
fail:
  EVP_PKEY_free(key);
  SSL_CTX_free(ssl);
  return -EINVAL;
}

int bh_tls_client_ctx_new(bh_tls_ctx_t **out, const char *ca_file, char *err, size_t errlen) {
  static const unsigned char http11[] = "\x08http/1.1";
  bh_tls_ctx_t *ctx;
  SSL_CTX *ssl;

  *out = NULL;
  if ((ssl = SSL_CTX_new(TLS_client_method())) == NULL) {
    put_err(err, errlen, "cannot make a TLS context", NULL);
    return -EINVAL;
  }
  SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
  SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_set_default_verify_paths(ssl) != 1 ||
      (ca_file != NULL && ca_file[0] && SSL_CTX_load_verify_locations(ssl, ca_file, NULL) != 1)) {
    put_err(err, errlen, "cannot load CA certificates", ca_file);
    SSL_CTX_free(ssl);
    return -EINVAL;
  }
  SSL_CTX_set_alpn_protos(ssl, http11, sizeof(http11) - 1);
  if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
    snprintf(err, errlen, "out of memory");
    SSL_CTX_free(ssl);
    return -EINVAL;
  }
  ctx->ssl = ssl;
  *out = ctx;
  return 0;
}

void bh_tls_ctx_free(bh_tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

static const char *reason(bh_tls_t *t, int rc) {
  unsigned long e = ERR_get_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  long verify = SSL_get_verify_result(t->ssl);

  ERR_clear_error();
  if (verify != X509_V_OK) /* the peer's certificate: say why it was refused */
    return X509_verify_cert_error_string(verify);
  if (r != NULL)
    return r;
  return rc == SSL_ERROR_SYSCALL ? "unexpected end of the TLS stream" : "TLS protocol error";
}

static bh_tls_t *engine_new(bh_tls_ctx_t *ctx) {
  bh_tls_t *t = calloc(1, sizeof(*t));

  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(ctx->ssl);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    return NULL;
  }
  BIO_set_mem_eof_return(t->in, -1); /* empty: "retry", not end of file */
  SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both now */
  return t;
}

bh_tls_t *bh_tls_new(bh_tls_ctx_t *ctx) {
  bh_tls_t *t = engine_new(ctx);

  if (t != NULL)
    SSL_set_accept_state(t->ssl);
  return t;
}

bh_tls_t *bh_tls_client_new(bh_tls_ctx_t *ctx, const char *host) {
  bh_tls_t *t = engine_new(ctx);
  unsigned char addr[16];
  int ok;

  if (t == NULL)
    return NULL;
  SSL_set_connect_state(t->ssl);
  if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
  } else {
    ok = SSL_set_tlsext_host_name(t->ssl, host) == 1 && SSL_set1_host(t->ssl, host) == 1;
  }
  if (!ok) {
    bh_tls_free(t);
    return NULL;
  }
  return t;
}

int bh_tls_handshake(bh_tls_t *t) {
  int rc;

  if (SSL_do_handshake(t->ssl) == 1)
    return 1;
  rc = SSL_get_error(t->ssl, 0);
  if (rc == SSL_ERROR_WANT_READ || rc == SSL_ERROR_WANT_WRITE)
    return 0;
  t->error = reason(t, rc);
  return -EPROTO;
}

void bh_tls_free(bh_tls_t *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl);
  free(t);
}

int bh_tls_feed(bh_tls_t *t, const char *data, size_t len) {
  size_t written;

  if (len == 0)
    return 0;
  if (BIO_write_ex(t->in, data, len, &written) != 1 || written != len)
    return -ENOMEM;
  return 0;
}

ssize_t bh_tls_read(bh_tls_t *t, char *buf, size_t cap) {
  size_t got = 0;
  int rc;

  if (SSL_read_ex(t->ssl, buf, cap, &got) == 1)
    return (ssize_t)got;
  rc = SSL_get_error(t->ssl, 0);
  if (rc == SSL_ERROR_WANT_READ || rc == SSL_ERROR_WANT_WRITE)
    return 0;
  if (rc == SSL_ERROR_ZERO_RETURN)
    return -EPIPE;
  t->error = reason(t, rc);
  return -EPROTO;
}

int bh_tls_write(bh_tls_t *t, const char *data, size_t len) {
  size_t done = 0;

  if (len == 0)
    return 0;
  /* a memory BIO takes everything: no partial write, no retry */
  if (SSL_write_ex(t->ssl, data, len, &done) != 1 || done != len) {
    t->error = reason(t, SSL_get_error(t->ssl, 0));
    return -EPROTO;
  }
  return 0;
}

size_t bh_tls_output(bh_tls_t *t, const char **data) {
  char *p = NULL;
  long n = BIO_get_mem_data(t->out, &p);

  if (n <= 0 || (size_t)n <= t->out_sent) {
    *data = NULL;
    return 0;
  }
  *data = p + t->out_sent;
  return (size_t)n - t->out_sent;
}

void bh_tls_output_done(bh_tls_t *t, size_t n) {
  char *p;
  long left;

  t->out_sent += n;
  left = BIO_get_mem_data(t->out, &p);
  if (left > 0 && t->out_sent >= (size_t)left) {
    (void)BIO_reset(t->out); /* all sent: empty it, so it does not grow */
    t->out_sent = 0;
  }
}

int bh_tls_handshake_done(const bh_tls_t *t) {
  return SSL_is_init_finished(t->ssl);
}

const char *bh_tls_error(const bh_tls_t *t) {
  return t->error != NULL ? t->error : "TLS error";
}
