/* CORS in C, following Starlette's CORSMiddleware (starlette/middleware/cors.py,
 * 1.x), which BentoML installs from http.cors: the same preflight answers (200
 * "OK" or 400 "Disallowed CORS ..."), the same header set, the same quirks (a
 * requested header list is split on commas and each piece stripped; the method
 * is compared as sent). bentohost/_cors.py checks the settings and writes them as
 * JSON, the origin regex already turned into an anchored POSIX ERE.
 *
 * Unlike BentoML, where the middleware sits inside the timeout and concurrency
 * ones, every response C writes carries the lines: 429, 504 and C's own routes
 * too, so that a browser can read them. Runs on the I/O thread; every loop over a
 * request's bytes is bounded by their length, which --max-header-size bounds. */
#include "server/internal.h"
#include "server/cors.h"

#include <cjson/cJSON.h>
#include <regex.h>
#include <stdio.h>
#include <strings.h>

enum { SEEN_ORIGIN = 1, SEEN_ACRM = 2, SEEN_ACRH = 4, SEEN_ACRPN = 8 };

/* Origins longer than this never match the regex (no browser sends one): it
 * bounds what regexec is given; exact origins are compared whatever their size. */
#define REGEX_MAX_ORIGIN 2048
#define LIT(s) s, sizeof(s) - 1

#define VARY_PREFLIGHT                                                                             \
  "vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "                 \
  "Access-Control-Request-Private-Network\r\n"

typedef struct {
  char **items;
  size_t n;
} list_t;

struct bh_cors {
  list_t origins;    /* exact origins (as configured, "*" included) */
  list_t methods;    /* allowed methods: "*" became Starlette's ALL_METHODS */
  list_t headers;    /* allowed request headers, lowercased, the safelisted ones added */
  int all_origins;   /* "*" among the origins */
  int all_headers;   /* "*" among the headers: a preflight's list is mirrored */
  int credentials;
  int explicit_origin; /* a preflight names the origin instead of "*" */
  int has_regex;
  regex_t regex;
  char *simple;      /* credentials and expose lines, for any request with an Origin */
  size_t simple_len;
  char *preflight;   /* a preflight's fixed lines */
  size_t preflight_len;
};

static const char *const ALL_METHODS[] = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY"};
static const char *const SAFELISTED[] = {"Accept", "Accept-Language", "Content-Language", "Content-Type"};

/* ---------------------------------------------------------------- settings */

static void list_free(list_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

static int list_add(list_t *l, const char *s) {
  char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
  if (items == NULL)
    return -ENOMEM;
  l->items = items;
  if ((items[l->n] = strdup(s)) == NULL)
    return -ENOMEM;
  l->n++;
  return 0;
}

static int list_has(const list_t *l, const char *s, size_t len) {
  for (size_t i = 0; i < l->n; i++)
    if (strlen(l->items[i]) == len && memcmp(l->items[i], s, len) == 0)
      return 1;
  return 0;
}

/* No CR, LF or other control byte may reach a header line from the settings. */
static int header_safe(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 0;
  return 1;
}

/* json[key]: a list of strings (missing or null: empty). */
static int read_list(const cJSON *json, const char *key, list_t *out, char *err, size_t errlen) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key), *item;
  if (v == NULL || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsArray(v)) {
    snprintf(err, errlen, "%s: expected a list of strings", key);
    return -EINVAL;
  }
  cJSON_ArrayForEach(item, v) {
    if (!cJSON_IsString(item) || !header_safe(item->valuestring)) {
      snprintf(err, errlen, "%s: expected strings without control characters", key);
      return -EINVAL;
    }
    if (list_add(out, item->valuestring) != 0)
      return -ENOMEM;
  }
  return 0;
}

static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  return bh_buf_append(buf, len, cap, s, n);
}

/* "name: a, b, c\r\n" from a list. */
static int put_joined(char **buf, size_t *len, size_t *cap, const char *name, const list_t *l) {
  int rc = put(buf, len, cap, name, strlen(name));
  for (size_t i = 0; rc == 0 && i < l->n; i++) {
    if (i > 0)
      rc = put(buf, len, cap, ", ", 2);
    if (rc == 0)
      rc = put(buf, len, cap, l->items[i], strlen(l->items[i]));
  }
  return rc == 0 ? put(buf, len, cap, "\r\n", 2) : rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Starlette's sorted(SAFELISTED | set(allow_headers)): the preflight's
 * Access-Control-Allow-Headers value, and the lowercased list requests are
 * checked against. */
static int build_headers(bh_cors_t *k, const list_t *given, list_t *sorted) {
  size_t i;
  for (i = 0; i < sizeof(SAFELISTED) / sizeof(SAFELISTED[0]); i++)
    if (!list_has(sorted, SAFELISTED[i], strlen(SAFELISTED[i])) && list_add(sorted, SAFELISTED[i]) != 0)
      return -ENOMEM;
  for (i = 0; i < given->n; i++) {
    if (!strcmp(given->items[i], "*"))
      k->all_headers = 1;
    if (!list_has(sorted, given->items[i], strlen(given->items[i])) && list_add(sorted, given->items[i]) != 0)
      return -ENOMEM;
  }
  qsort(sorted->items, sorted->n, sizeof(char *), cmp_str);
  for (i = 0; i < sorted->n; i++) {
    if (list_add(&k->headers, sorted->items[i]) != 0)
      return -ENOMEM;
    for (char *p = k->headers.items[i]; *p; p++)
      *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
  }
  return 0;
}

static int build(bh_cors_t *k, const cJSON *json, char *err, size_t errlen) {
  list_t methods = {0}, headers = {0}, expose = {0}, sorted = {0};
  const cJSON *regex = cJSON_GetObjectItemCaseSensitive(json, "allow_origin_regex");
  const cJSON *max_age = cJSON_GetObjectItemCaseSensitive(json, "max_age");
  char line[64];
  size_t cap = 0;
  int rc;

  k->credentials = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "allow_credentials"));
  rc = read_list(json, "allow_origins", &k->origins, err, errlen);
  if (rc == 0)
    rc = read_list(json, "allow_methods", &methods, err, errlen);
  if (rc == 0)
    rc = read_list(json, "allow_headers", &headers, err, errlen);
  if (rc == 0)
    rc = read_list(json, "expose_headers", &expose, err, errlen);
  if (rc == 0 && !cJSON_IsNumber(max_age)) {
    snprintf(err, errlen, "max_age: expected a number");
    rc = -EINVAL;
  }
  k->all_origins = list_has(&k->origins, "*", 1);
  k->explicit_origin = !k->all_origins || k->credentials;
  if (rc == 0 && list_has(&methods, "*", 1)) {
    list_free(&methods);
    for (size_t i = 0; rc == 0 && i < sizeof(ALL_METHODS) / sizeof(ALL_METHODS[0]); i++)
      rc = list_add(&methods, ALL_METHODS[i]);
  }
  k->methods = methods;
  methods = (list_t){0};
  if (rc == 0)
    rc = build_headers(k, &headers, &sorted);
  if (rc == 0 && cJSON_IsString(regex)) {
    int r = regcomp(&k->regex, regex->valuestring, REG_EXTENDED | REG_NOSUB);
    if (r != 0) {
      char what[128];
      regerror(r, &k->regex, what, sizeof(what));
      snprintf(err, errlen, "allow_origin_regex: %s", what);
      rc = -EINVAL;
    } else {
      k->has_regex = 1;
    }
  }

  /* Lines any request with an Origin gets: Starlette's simple_headers but its
   * "*" origin, which bh_cors_head writes (the origin itself with credentials). */
  if (rc == 0 && k->credentials)
    rc = put(&k->simple, &k->simple_len, &cap, LIT("access-control-allow-credentials: true\r\n"));
  if (rc == 0 && expose.n > 0)
    rc = put_joined(&k->simple, &k->simple_len, &cap, "access-control-expose-headers: ", &expose);

  /* A preflight's fixed lines, in Starlette's order. */
  cap = 0;
  if (rc == 0)
    rc = put(&k->preflight, &k->preflight_len, &cap, LIT(VARY_PREFLIGHT));
  if (rc == 0 && !k->explicit_origin)
    rc = put(&k->preflight, &k->preflight_len, &cap, LIT("access-control-allow-origin: *\r\n"));
  if (rc == 0)
    rc = put_joined(&k->preflight, &k->preflight_len, &cap, "access-control-allow-methods: ", &k->methods);
  if (rc == 0) {
    int n = snprintf(line, sizeof(line), "access-control-max-age: %.0f\r\n", max_age->valuedouble);
    rc = put(&k->preflight, &k->preflight_len, &cap, line, (size_t)n);
  }
  if (rc == 0 && !k->all_headers)
    rc = put_joined(&k->preflight, &k->preflight_len, &cap, "access-control-allow-headers: ", &sorted);
  if (rc == 0 && k->credentials)
    rc = put(&k->preflight, &k->preflight_len, &cap, LIT("access-control-allow-credentials: true\r\n"));

  list_free(&methods);
  list_free(&headers);
  list_free(&expose);
  list_free(&sorted);
  if (rc == -ENOMEM)
    snprintf(err, errlen, "out of memory");
  return rc;
}

int bh_cors_new(bh_cors_t **out, const char *json, char *err, size_t errlen) {
  cJSON *root = cJSON_Parse(json);
  bh_cors_t *k = calloc(1, sizeof(*k));
  int rc;

  *out = NULL;
  if (k == NULL || !cJSON_IsObject(root)) {
    snprintf(err, errlen, k == NULL ? "out of memory" : "not a JSON object");
    rc = k == NULL ? -ENOMEM : -EINVAL;
  } else {
    rc = build(k, root, err, errlen);
  }
  cJSON_Delete(root);
  if (rc != 0) {
    bh_cors_free(k);
    return rc;
  }
  *out = k;
  return 0;
}

void bh_cors_free(bh_cors_t *k) {
  if (k == NULL)
    return;
  list_free(&k->origins);
  list_free(&k->methods);
  list_free(&k->headers);
  if (k->has_regex)
    regfree(&k->regex);
  free(k->simple);
  free(k->preflight);
  free(k);
}

/* ---------------------------------------------------------------- a request's headers */

void bh_cors_reset(bh_cors_req_t *r) {
  r->seen = r->field = 0;
  r->origin_len = r->acrh_len = r->acrm_len = 0;
  r->preflight = 0;
  r->out_len = 0;
}

void bh_cors_req_free(bh_cors_req_t *r) {
  free(r->origin);
  free(r->acrh);
  free(r->out);
}

static int name_is(const char *name, size_t len, const char *lit) {
  return len == strlen(lit) && strncasecmp(name, lit, len) == 0;
}

int bh_cors_field(bh_cors_req_t *r, const char *name, size_t len) {
  unsigned bit = name_is(name, len, "origin")                                  ? SEEN_ORIGIN
                 : name_is(name, len, "access-control-request-method")         ? SEEN_ACRM
                 : name_is(name, len, "access-control-request-headers")        ? SEEN_ACRH
                 : name_is(name, len, "access-control-request-private-network") ? SEEN_ACRPN
                                                                                : 0;
  /* Starlette reads the first of repeated headers. */
  if (bit == 0 || (r->seen & bit))
    return 0;
  r->seen |= bit;
  r->field = bit;
  return 1;
}

int bh_cors_value(bh_cors_req_t *r, const char *at, size_t len) {
  switch (r->field) {
  case SEEN_ORIGIN: return bh_buf_append(&r->origin, &r->origin_len, &r->origin_cap, at, len);
  case SEEN_ACRH: return bh_buf_append(&r->acrh, &r->acrh_len, &r->acrh_cap, at, len);
  case SEEN_ACRM:
    if (r->acrm_len + len <= sizeof(r->acrm))
      memcpy(r->acrm + r->acrm_len, at, len);
    r->acrm_len += len; /* past the buffer: compared as too long */
    return 0;
  default: return 0; /* private network: only its presence counts */
  }
}

/* ---------------------------------------------------------------- answers */

/* The ends of a value, as the ASGI servers under Starlette strip them. */
static void trim_ows(const char **s, size_t *len) {
  while (*len > 0 && (**s == ' ' || **s == '\t'))
    (*s)++, (*len)--;
  while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
    (*len)--;
}

/* What Python's str.strip() takes from a latin-1 header value. */
static int py_space(unsigned char ch) {
  return (ch >= 0x09 && ch <= 0x0d) || (ch >= 0x1c && ch <= 0x20) || ch == 0x85 || ch == 0xa0;
}

static int regex_allows(const bh_cors_t *k, const char *origin, size_t len) {
  char buf[REGEX_MAX_ORIGIN + 1];
  if (!k->has_regex || len > REGEX_MAX_ORIGIN)
    return 0;
  /* ASCII only: the ERE was written for single-byte characters, and any locale
   * must read them the same way. */
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)origin[i] < 0x20 || (unsigned char)origin[i] >= 0x7f)
      return 0;
  memcpy(buf, origin, len);
  buf[len] = '\0';
  return regexec(&k->regex, buf, 0, NULL, 0) == 0;
}

static int origin_allowed(const bh_cors_t *k, const char *origin, size_t len) {
  return k->all_origins || regex_allows(k, origin, len) || list_has(&k->origins, origin, len);
}

/* Every piece of the comma-separated list, stripped and lowercased, is allowed. */
static int headers_allowed(const bh_cors_t *k, const char *s, size_t len) {
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != ',')
      continue;
    size_t a = start, b = i;
    char low[128];
    while (a < b && py_space((unsigned char)s[a]))
      a++;
    while (b > a && py_space((unsigned char)s[b - 1]))
      b--;
    if (b - a > sizeof(low)) /* longer than any header we list */
      return 0;
    for (size_t j = a; j < b; j++)
      low[j - a] = (char)(s[j] >= 'A' && s[j] <= 'Z' ? s[j] + 32 : s[j]);
    if (!list_has(&k->headers, low, b - a))
      return 0;
    start = i + 1;
  }
  return 1;
}

static int out(bh_cors_req_t *r, const char *s, size_t n) {
  return bh_buf_append(&r->out, &r->out_len, &r->out_cap, s, n);
}

static int out_line(bh_cors_req_t *r, const char *name, const char *value, size_t len) {
  int rc = out(r, name, strlen(name));
  if (rc == 0)
    rc = out(r, value, len);
  return rc == 0 ? out(r, "\r\n", 2) : rc;
}

static int preflight(const bh_cors_t *k, bh_cors_req_t *r, const char *origin, size_t olen) {
  const char *method = r->acrm, *failed[4];
  size_t mlen = r->acrm_len, nfailed = 0;
  int rc = out(r, k->preflight, k->preflight_len);

  r->preflight = 1;
  if (origin_allowed(k, origin, olen)) {
    if (rc == 0 && k->explicit_origin)
      rc = out_line(r, "access-control-allow-origin: ", origin, olen);
  } else {
    failed[nfailed++] = "origin";
  }
  trim_ows(&method, &mlen);
  if (mlen > sizeof(r->acrm) || !list_has(&k->methods, method, mlen))
    failed[nfailed++] = "method";
  if (r->seen & SEEN_ACRH) {
    const char *hs = r->acrh ? r->acrh : "";
    size_t hlen = r->acrh_len;
    trim_ows(&hs, &hlen);
    if (k->all_headers) {
      if (rc == 0)
        rc = out_line(r, "access-control-allow-headers: ", hs, hlen);
    } else if (!headers_allowed(k, hs, hlen)) {
      failed[nfailed++] = "headers";
    }
  }
  /* BentoML has no setting for allow_private_network: Starlette's False. */
  if (r->seen & SEEN_ACRPN)
    failed[nfailed++] = "private-network";
  r->status = nfailed ? 400 : 200;
  if (nfailed == 0) {
    snprintf(r->text, sizeof(r->text), "OK");
  } else {
    size_t n = (size_t)snprintf(r->text, sizeof(r->text), "Disallowed CORS %s", failed[0]);
    for (size_t i = 1; i < nfailed && n < sizeof(r->text); i++)
      n += (size_t)snprintf(r->text + n, sizeof(r->text) - n, ", %s", failed[i]);
  }
  return rc;
}

int bh_cors_head(const bh_cors_t *k, bh_cors_req_t *r, int method) {
  const char *origin = r->origin ? r->origin : "";
  size_t olen = r->origin_len;
  int has_origin = (r->seen & SEEN_ORIGIN) != 0, rc = 0;

  r->field = 0;
  r->out_len = 0;
  trim_ows(&origin, &olen);
  if (has_origin && method == HTTP_OPTIONS && (r->seen & SEEN_ACRM))
    return preflight(k, r, origin, olen);
  if (has_origin) {
    rc = out(r, k->simple, k->simple_len);
    if (rc == 0 && k->all_origins && !k->credentials)
      rc = out(r, LIT("access-control-allow-origin: *\r\n"));
    else if (rc == 0 && (k->all_origins || origin_allowed(k, origin, olen)))
      rc = out_line(r, "access-control-allow-origin: ", origin, olen);
  }
  /* Starlette adds Origin to Vary on every response, with an Origin or not. */
  return rc == 0 ? out(r, LIT("vary: Origin\r\n")) : rc;
}

void bh_cors_route(const bh_cors_req_t *r, bh_route_t *route) {
  if (!r->preflight)
    return;
  route->kind = BH_ROUTE_PREFLIGHT;
  route->status = r->status;
  route->text = r->text;
}
