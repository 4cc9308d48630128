/* YAML text into cJSON, resolved as PyYAML's safe_load does (YAML 1.1 scalars,
 * anchors and aliases, bounded depth and alias expansion), and the one-line
 * report (an error, warnings) that the readers of BentoML's files share:
 * yamlconf.c for BENTOML_CONFIG and the --arg-file of bento arguments. */
#include "common/yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_ALIAS_NODES 100000 /* nodes that all aliases together may copy in */
#define TAG(name) "tag:yaml.org,2002:" name
#define fail bh_yaml_fail

int bh_yaml_fail(bh_yaml_report_t *r, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (r->errlen > 0)
    vsnprintf(r->err, r->errlen, fmt, ap);
  va_end(ap);
  return rc;
}

int bh_yaml_nomem(bh_yaml_report_t *r) {
  return fail(r, -ENOMEM, "out of memory reading the configuration");
}

int bh_yaml_warn(bh_yaml_report_t *r, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  cJSON *s = cJSON_CreateString(line);
  if (s == NULL || !cJSON_AddItemToArray(r->warnings, s)) {
    cJSON_Delete(s);
    return bh_yaml_nomem(r);
  }
  return 0;
}

/* How a value reads in a message: "a list", "a map", "\"abc\"", "true", "null", "2.5". */
const char *bh_yaml_describe(const cJSON *v, char *buf, size_t cap) {
  if (cJSON_IsArray(v) || cJSON_IsObject(v))
    return cJSON_IsArray(v) ? "a list" : "a map";
  if (cJSON_IsString(v))
    snprintf(buf, cap, "\"%.40s%s\"", v->valuestring, strlen(v->valuestring) > 40 ? "..." : "");
  else if (cJSON_IsNumber(v))
    snprintf(buf, cap, fabs(v->valuedouble) < 1e15 && v->valuedouble == floor(v->valuedouble) ? "%.0f" : "%g",
             v->valuedouble);
  else
    snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : cJSON_IsFalse(v) ? "false" : "null");
  return buf;
}

/* Height of a tree (a scalar is 0, a map or list 1 + its tallest child), looking
 * no deeper than limit + 1; *count gets the number of nodes seen. */
int bh_yaml_shape(const cJSON *node, int limit, size_t *count) {
  (*count)++;
  if (!cJSON_IsArray(node) && !cJSON_IsObject(node))
    return 0;
  int tallest = 0;
  const cJSON *c;
  if (limit > 0)
    cJSON_ArrayForEach(c, node) {
      int h = bh_yaml_shape(c, limit - 1, count);
      tallest = h > tallest ? h : tallest;
    }
  return 1 + tallest;
}

/* ---- YAML scalars, resolved as YAML 1.1 (PyYAML's safe_load) does ------------- */

static int is_null_word(const char *s) {
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* 1 for true, 0 for false, -1 when s is neither. */
static int bool_word(const char *s) {
  static const char *const words[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON",
                                      "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
    if (!strcmp(s, words[i]))
      return i < 9;
  return -1;
}

/* [-+]? then 0b101, 0x1f, 017 (octal), or decimal; '_' may separate digits. */
static int parse_int(const char *s, double *out) {
  static const char digits[] = "0123456789abcdef";
  const char *p = s + (*s == '-' || *s == '+'), *d;
  int base = p[0] != '0' || p[1] == '\0' ? 10 : p[1] == 'b' ? 2 : p[1] == 'x' ? 16 : 8, n = 0;
  double v = 0;
  p += base == 8 ? 1 : base == 10 ? 0 : 2;
  if (base == 10 && *p == '_')
    return -1;
  for (; *p; p++) {
    int c = *p >= 'A' && *p <= 'F' ? *p + ('a' - 'A') : *p;
    if (c != '_' && (d = memchr(digits, c, (size_t)base)) == NULL)
      return -1;
    if (c != '_')
      v = v * base + (double)(d - digits), n++;
  }
  if (n == 0 || !isfinite(v))
    return -1;
  *out = *s == '-' ? -v : v;
  return 0;
}

/* [-+]? digits with a '.' and/or an exponent ("1.5", ".5", "2.", "1e3", "1_000.0");
 * .inf and .nan are not numbers here (JSON has none): they stay strings. */
static int parse_float(const char *s, double *out) {
  char buf[128], *end;
  size_t n = 0;
  int marked = 0;
  for (const char *p = s; *p; p++) {
    if (strchr("0123456789+-._eE", *p) == NULL || n + 1 >= sizeof(buf))
      return -1;
    marked |= *p == '.' || *p == 'e' || *p == 'E';
    if (*p != '_')
      buf[n++] = *p;
  }
  buf[n] = '\0';
  if (!marked || n == 0)
    return -1;
  *out = strtod(buf, &end);
  return end == buf + n && isfinite(*out) ? 0 : -1;
}

/* ---- the YAML file into cJSON ------------------------------------------------- */

/* node[key] = item (consumed), replacing what was there; key may be item->string. */
int bh_yaml_set_key(bh_yaml_report_t *r, cJSON *node, const char *key, cJSON *item) {
  cJSON_DeleteItemFromObjectCaseSensitive(node, key);
  if (!cJSON_AddItemToObject(node, key, item)) {
    cJSON_Delete(item);
    return bh_yaml_nomem(r);
  }
  return 0;
}

typedef struct {
  cJSON *node;  /* the open map or list (already attached to its parent) */
  char *key;    /* a map's key waiting for its value; NULL when a key comes next */
  yaml_mark_t key_mark;
  char *anchor; /* the collection's anchor, registered when it closes */
} frame_t;

typedef struct {
  bh_yaml_report_t *r;
  const char *file;
  frame_t stack[BH_YAML_MAX_DEPTH];
  int depth;
  cJSON *root;
  int documents;
  cJSON *anchors; /* name -> a copy of the value as it was when it closed */
  size_t alias_nodes;
} loader_t;

__attribute__((format(printf, 3, 4))) static int fail_at(loader_t *l, yaml_mark_t m, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  return fail(l->r, -EINVAL, "%s:%zu:%zu: %s", l->file, m.line + 1, m.column + 1, what);
}

static void loader_free(loader_t *l) {
  for (int i = 0; i < l->depth; i++) {
    free(l->stack[i].key);
    free(l->stack[i].anchor);
  }
  cJSON_Delete(l->anchors);
  cJSON_Delete(l->root);
}

static int wants_key(const loader_t *l) {
  return l->depth > 0 && cJSON_IsObject(l->stack[l->depth - 1].node) && l->stack[l->depth - 1].key == NULL;
}

/* A copy of node under name (an anchor named again: the later one counts). */
static int register_anchor(loader_t *l, const char *name, const cJSON *node) {
  cJSON *copy = cJSON_Duplicate(node, 1);
  cJSON_DeleteItemFromObjectCaseSensitive(l->anchors, name);
  if (copy == NULL || !cJSON_AddItemToObject(l->anchors, name, copy)) {
    cJSON_Delete(copy);
    return bh_yaml_nomem(l->r);
  }
  return 0;
}

/* Puts item (consumed) where the parser is: the root, the end of a list, or the
 * value of the key waiting in a map (a duplicate key: the later value wins). */
static int attach(loader_t *l, cJSON *item) {
  if (item == NULL)
    return bh_yaml_nomem(l->r);
  if (l->depth == 0) {
    l->root = item;
    return 0;
  }
  frame_t *f = &l->stack[l->depth - 1];
  if (cJSON_IsArray(f->node))
    return cJSON_AddItemToArray(f->node, item) ? 0 : bh_yaml_nomem(l->r);
  char *key = f->key;
  int rc = 0;
  f->key = NULL;
  if (cJSON_GetObjectItemCaseSensitive(f->node, key) != NULL)
    rc = bh_yaml_warn(l->r, "%s:%zu:%zu: duplicate key \"%.100s\": the later value wins", l->file, f->key_mark.line + 1,
              f->key_mark.column + 1, key);
  int set = bh_yaml_set_key(l->r, f->node, key, item);
  free(key);
  return rc != 0 ? rc : set;
}

/* A scalar's value: plain untagged ones resolved (null, bool, int, float, else a
 * string), other untagged ones strings, the standard tags (!!str, !!int, ...) obeyed. */
static int scalar_value(loader_t *l, const yaml_event_t *ev, cJSON **out) {
  const char *v = (const char *)ev->data.scalar.value, *tag = (const char *)ev->data.scalar.tag;
  int plain = tag == NULL && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, b = bool_word(v);
  double d;
  *out = NULL;
  if (!plain && (tag == NULL || !strcmp(tag, "!") || !strcmp(tag, TAG("str"))))
    *out = cJSON_CreateString(v);
  else if ((plain || !strcmp(tag, TAG("null"))) && is_null_word(v))
    *out = cJSON_CreateNull();
  else if ((plain || !strcmp(tag, TAG("bool"))) && b >= 0)
    *out = cJSON_CreateBool(b);
  else if ((plain || !strcmp(tag, TAG("int")) || !strcmp(tag, TAG("float"))) && parse_int(v, &d) == 0)
    *out = cJSON_CreateNumber(d);
  else if ((plain || !strcmp(tag, TAG("float"))) && parse_float(v, &d) == 0)
    *out = cJSON_CreateNumber(d);
  else if (plain)
    *out = cJSON_CreateString(v);
  else
    return fail_at(l, ev->start_mark, "cannot read \"%.40s\" as %.100s", v, tag);
  return *out ? 0 : bh_yaml_nomem(l->r);
}

static int on_scalar(loader_t *l, const yaml_event_t *ev) {
  const char *v = (const char *)ev->data.scalar.value, *anchor = (const char *)ev->data.scalar.anchor;
  if (memchr(v, '\0', ev->data.scalar.length) != NULL)
    return fail_at(l, ev->start_mark, "a NUL character in a scalar is not supported");
  if (wants_key(l)) {
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.tag == NULL && !strcmp(v, "<<"))
      return fail_at(l, ev->start_mark, "merge keys (<<) are not supported");
    l->stack[l->depth - 1].key_mark = ev->start_mark;
    return (l->stack[l->depth - 1].key = strdup(v)) ? 0 : bh_yaml_nomem(l->r);
  }
  cJSON *item;
  int rc = scalar_value(l, ev, &item);
  if (rc == 0 && anchor != NULL && (rc = register_anchor(l, anchor, item)) != 0)
    cJSON_Delete(item);
  return rc != 0 ? rc : attach(l, item);
}

static int on_alias(loader_t *l, const yaml_event_t *ev) {
  const char *name = (const char *)ev->data.alias.anchor;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(l->anchors, name);
  size_t count = 0;
  if (wants_key(l))
    return fail_at(l, ev->start_mark, "an alias as a map key is not supported");
  if (a == NULL)
    return fail_at(l, ev->start_mark, "*%.100s names no anchor that closed before it", name);
  if (l->depth + bh_yaml_shape(a, BH_YAML_MAX_DEPTH, &count) > BH_YAML_MAX_DEPTH)
    return fail_at(l, ev->start_mark, "nested deeper than %d levels", BH_YAML_MAX_DEPTH);
  if ((l->alias_nodes += count) > MAX_ALIAS_NODES)
    return fail_at(l, ev->start_mark, "aliases expand to more than %d values", MAX_ALIAS_NODES);
  return attach(l, cJSON_Duplicate(a, 1));
}

static int on_start(loader_t *l, const yaml_event_t *ev) {
  int is_map = ev->type == YAML_MAPPING_START_EVENT;
  const char *tag = (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
  const char *anchor = (const char *)(is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
  if (wants_key(l))
    return fail_at(l, ev->start_mark, "a map or a list as a map key is not supported");
  if (l->depth >= BH_YAML_MAX_DEPTH)
    return fail_at(l, ev->start_mark, "nested deeper than %d levels", BH_YAML_MAX_DEPTH);
  if (tag != NULL && strcmp(tag, "!") && strcmp(tag, is_map ? TAG("map") : TAG("seq")))
    return fail_at(l, ev->start_mark, "unsupported tag %.100s", tag);
  char *name = NULL;
  if (anchor != NULL && (name = strdup(anchor)) == NULL)
    return bh_yaml_nomem(l->r);
  cJSON *node = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
  int rc = attach(l, node);
  if (rc != 0) {
    free(name);
    return rc;
  }
  l->stack[l->depth++] = (frame_t){.node = node, .anchor = name};
  return 0;
}

static int on_end(loader_t *l) {
  frame_t *f = &l->stack[--l->depth];
  int rc = f->anchor == NULL ? 0 : register_anchor(l, f->anchor, f->node);
  free(f->key);
  free(f->anchor);
  *f = (frame_t){0};
  return rc;
}

static int parser_error(loader_t *l, const yaml_parser_t *p, const char *text, size_t len) {
  if (p->error == YAML_MEMORY_ERROR)
    return bh_yaml_nomem(l->r);
  const char *problem = p->problem ? p->problem : "malformed YAML";
  yaml_mark_t m = p->problem_mark;
  if (p->error == YAML_READER_ERROR) { /* no mark: count lines up to the offset */
    memset(&m, 0, sizeof(m));
    for (size_t i = 0; i < p->problem_offset && i < len; i++, m.column++)
      if (text[i] == '\n')
        m.line++, m.column = (size_t)-1;
  }
  if (p->context != NULL && p->error != YAML_READER_ERROR)
    return fail_at(l, m, "%s (%s at line %zu, column %zu)", problem, p->context, p->context_mark.line + 1,
                   p->context_mark.column + 1);
  return fail_at(l, m, "%s", problem);
}

/* text (len bytes) into l->root: NULL or a cJSON tree. */
static int parse_yaml(loader_t *l, const char *text, size_t len) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return bh_yaml_nomem(l->r);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int rc = 0, done = 0;
  while (rc == 0 && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = parser_error(l, &parser, text, len);
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT: done = 1; break;
    case YAML_DOCUMENT_START_EVENT:
      if (l->documents++ > 0)
        rc = fail_at(l, ev.start_mark, "more than one YAML document in the file");
      break;
    case YAML_SCALAR_EVENT: rc = on_scalar(l, &ev); break;
    case YAML_ALIAS_EVENT: rc = on_alias(l, &ev); break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: rc = on_start(l, &ev); break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: rc = on_end(l); break;
    default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return rc;
}

/* The file's bytes; the buffer's untouched pages cost nothing. */
static int read_file(bh_yaml_report_t *r, const char *path, char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC), e = errno;
  if (fd < 0)
    return fail(r, -e, "%s: %s", path, strerror(e));
  char *buf = malloc(BH_YAML_MAX_FILE + 1);
  size_t n = 0;
  int rc = buf ? 0 : bh_yaml_nomem(r);
  while (rc == 0 && n <= BH_YAML_MAX_FILE) {
    ssize_t got = read(fd, buf + n, BH_YAML_MAX_FILE + 1 - n);
    if (got < 0 && errno != EINTR)
      rc = (e = errno, fail(r, -e, "%s: %s", path, strerror(e)));
    else if (got == 0)
      break;
    n += got > 0 ? (size_t)got : 0;
  }
  if (rc == 0 && n > BH_YAML_MAX_FILE)
    rc = fail(r, -EFBIG, "%s: larger than %u MiB", path, BH_YAML_MAX_FILE >> 20);
  close(fd);
  if (rc != 0)
    free(buf);
  *out = rc == 0 ? buf : NULL;
  *len = n;
  return rc;
}

int bh_yaml_load_map(bh_yaml_report_t *r, const char *path, cJSON **out) {
  char what[64], *text = NULL;
  size_t len = 0;
  *out = NULL;
  int rc = read_file(r, path, &text, &len);
  if (rc != 0)
    return rc;
  loader_t l = {.r = r, .file = path, .anchors = cJSON_CreateObject()};
  rc = l.anchors ? parse_yaml(&l, text, len) : bh_yaml_nomem(r);
  free(text);
  if (rc == 0 && (l.root == NULL || cJSON_IsNull(l.root))) { /* an empty file: an empty map */
    cJSON_Delete(l.root);
    rc = (l.root = cJSON_CreateObject()) ? 0 : bh_yaml_nomem(r);
  }
  if (rc == 0 && !cJSON_IsObject(l.root))
    rc = fail(r, -EINVAL, "%s: the top level must be a map, got %s", path,
              bh_yaml_describe(l.root, what, sizeof(what)));
  if (rc == 0) {
    *out = l.root;
    l.root = NULL;
  }
  loader_free(&l);
  return rc;
}
