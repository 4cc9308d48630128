/* BentoML's configuration file (BENTOML_CONFIG, version 2) read with libyaml's
 * event parser into cJSON, BENTOML_CONFIG_OVERRIDES merged over it, and the
 * result split into global defaults and per-service settings, each checked. */
#include "common/yamlconf.h"

#include <cjson/cJSON.h>
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
#define OVERRIDES "BENTOML_CONFIG_OVERRIDES"

typedef struct {
  char *err;
  size_t errlen;
  cJSON *warnings; /* array of strings */
} report_t;

__attribute__((format(printf, 2, 3))) static void say(report_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (r->errlen > 0)
    vsnprintf(r->err, r->errlen, fmt, ap);
  va_end(ap);
}

/* The message into err, and rc (a negative errno) as the value. */
#define fail(r, rc, ...) (say((r), __VA_ARGS__), (rc))

static int nomem(report_t *r) {
  return fail(r, -ENOMEM, "out of memory reading the configuration");
}

__attribute__((format(printf, 2, 3))) static int warn(report_t *r, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  cJSON *s = cJSON_CreateString(line);
  if (s == NULL || !cJSON_AddItemToArray(r->warnings, s)) {
    cJSON_Delete(s);
    return nomem(r);
  }
  return 0;
}

/* How a value reads in a message: "a list", "a map", "\"abc\"", "true", "null", "2.5". */
static const char *describe(const cJSON *v, char *buf, size_t cap) {
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
static int shape(const cJSON *node, int limit, size_t *count) {
  (*count)++;
  if (!cJSON_IsArray(node) && !cJSON_IsObject(node))
    return 0;
  int tallest = 0;
  const cJSON *c;
  if (limit > 0)
    cJSON_ArrayForEach(c, node) {
      int h = shape(c, limit - 1, count);
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
static int set_key(report_t *r, cJSON *node, const char *key, cJSON *item) {
  cJSON_DeleteItemFromObjectCaseSensitive(node, key);
  if (!cJSON_AddItemToObject(node, key, item)) {
    cJSON_Delete(item);
    return nomem(r);
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
  report_t *r;
  const char *file;
  frame_t stack[BH_YAMLCONF_MAX_DEPTH];
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
    return nomem(l->r);
  }
  return 0;
}

/* Puts item (consumed) where the parser is: the root, the end of a list, or the
 * value of the key waiting in a map (a duplicate key: the later value wins). */
static int attach(loader_t *l, cJSON *item) {
  if (item == NULL)
    return nomem(l->r);
  if (l->depth == 0) {
    l->root = item;
    return 0;
  }
  frame_t *f = &l->stack[l->depth - 1];
  if (cJSON_IsArray(f->node))
    return cJSON_AddItemToArray(f->node, item) ? 0 : nomem(l->r);
  char *key = f->key;
  int rc = 0;
  f->key = NULL;
  if (cJSON_GetObjectItemCaseSensitive(f->node, key) != NULL)
    rc = warn(l->r, "%s:%zu:%zu: duplicate key \"%.100s\": the later value wins", l->file, f->key_mark.line + 1,
              f->key_mark.column + 1, key);
  int set = set_key(l->r, f->node, key, item);
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
  return *out ? 0 : nomem(l->r);
}

static int on_scalar(loader_t *l, const yaml_event_t *ev) {
  const char *v = (const char *)ev->data.scalar.value, *anchor = (const char *)ev->data.scalar.anchor;
  if (memchr(v, '\0', ev->data.scalar.length) != NULL)
    return fail_at(l, ev->start_mark, "a NUL character in a scalar is not supported");
  if (wants_key(l)) {
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.tag == NULL && !strcmp(v, "<<"))
      return fail_at(l, ev->start_mark, "merge keys (<<) are not supported");
    l->stack[l->depth - 1].key_mark = ev->start_mark;
    return (l->stack[l->depth - 1].key = strdup(v)) ? 0 : nomem(l->r);
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
  if (l->depth + shape(a, BH_YAMLCONF_MAX_DEPTH, &count) > BH_YAMLCONF_MAX_DEPTH)
    return fail_at(l, ev->start_mark, "nested deeper than %d levels", BH_YAMLCONF_MAX_DEPTH);
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
  if (l->depth >= BH_YAMLCONF_MAX_DEPTH)
    return fail_at(l, ev->start_mark, "nested deeper than %d levels", BH_YAMLCONF_MAX_DEPTH);
  if (tag != NULL && strcmp(tag, "!") && strcmp(tag, is_map ? TAG("map") : TAG("seq")))
    return fail_at(l, ev->start_mark, "unsupported tag %.100s", tag);
  char *name = NULL;
  if (anchor != NULL && (name = strdup(anchor)) == NULL)
    return nomem(l->r);
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
    return nomem(l->r);
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
    return nomem(l->r);
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
static int read_file(report_t *r, const char *path, char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC), e = errno;
  if (fd < 0)
    return fail(r, -e, "%s: %s", path, strerror(e));
  char *buf = malloc(BH_YAMLCONF_MAX_FILE + 1);
  size_t n = 0;
  int rc = buf ? 0 : nomem(r);
  while (rc == 0 && n <= BH_YAMLCONF_MAX_FILE) {
    ssize_t got = read(fd, buf + n, BH_YAMLCONF_MAX_FILE + 1 - n);
    if (got < 0 && errno != EINTR)
      rc = (e = errno, fail(r, -e, "%s: %s", path, strerror(e)));
    else if (got == 0)
      break;
    n += got > 0 ? (size_t)got : 0;
  }
  if (rc == 0 && n > BH_YAMLCONF_MAX_FILE)
    rc = fail(r, -EFBIG, "%s: larger than %u MiB", path, BH_YAMLCONF_MAX_FILE >> 20);
  close(fd);
  if (rc != 0)
    free(buf);
  *out = rc == 0 ? buf : NULL;
  *len = n;
  return rc;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* The file as a cJSON map in *doc, its schema version checked. */
static int load_file(report_t *r, const char *path, cJSON **doc) {
  char what[64], *text = NULL;
  size_t len = 0;
  if (!has_suffix(path, ".yaml") && !has_suffix(path, ".yml"))
    return fail(r, -EINVAL, "%s: the configuration file must end in .yaml or .yml", path);
  int rc = read_file(r, path, &text, &len);
  if (rc != 0)
    return rc;
  loader_t l = {.r = r, .file = path, .anchors = cJSON_CreateObject()};
  rc = l.anchors ? parse_yaml(&l, text, len) : nomem(r);
  free(text);
  if (rc == 0 && (l.root == NULL || cJSON_IsNull(l.root))) { /* an empty file: nothing configured */
    cJSON_Delete(l.root);
    rc = (l.root = cJSON_CreateObject()) ? 0 : nomem(r);
  }
  if (rc == 0 && !cJSON_IsObject(l.root))
    rc = fail(r, -EINVAL, "%s: the top level must be a map, got %s", path, describe(l.root, what, sizeof(what)));
  if (rc == 0) {
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(l.root, "version");
    int v1 = (cJSON_IsNumber(version) && version->valuedouble == 1) ||
             (version == NULL && (cJSON_GetObjectItemCaseSensitive(l.root, "api_server") ||
                                  cJSON_GetObjectItemCaseSensitive(l.root, "runners")));
    if (v1)
      rc = fail(r, -EINVAL, "%s: a version 1 configuration (api_server:, runners:) is not supported: "
                "write version: 2 with each service's settings under services:", path);
    else if (version == NULL && cJSON_GetObjectItemCaseSensitive(l.root, "services") != NULL)
      rc = fail(r, -EINVAL, "%s: services: needs version: 2 at the top of the file "
                "(BentoML reads a file without a version as version 1)", path);
  }
  if (rc == 0) {
    *doc = l.root;
    l.root = NULL;
  }
  loader_free(&l);
  return rc;
}

/* ---- BENTOML_CONFIG_OVERRIDES -------------------------------------------------- */

static int merge_maps(report_t *r, cJSON *dst, cJSON *src);

/* node[key] = item (consumed), deep-merged when both are maps; key may be item->string. */
static int put(report_t *r, cJSON *node, const char *key, cJSON *item) {
  cJSON *old = cJSON_GetObjectItemCaseSensitive(node, key);
  return cJSON_IsObject(old) && cJSON_IsObject(item) ? merge_maps(r, old, item) : set_key(r, node, key, item);
}

static int merge_maps(report_t *r, cJSON *dst, cJSON *src) {
  int rc = 0;
  while (rc == 0 && src->child != NULL) {
    cJSON *c = cJSON_DetachItemViaPointer(src, src->child);
    rc = put(r, dst, c->string, c);
  }
  cJSON_Delete(src);
  return rc;
}

/* One top-level override (consumed): its key a dotted path ("services.Model.workers"). */
static int put_path(report_t *r, cJSON *doc, cJSON *item) {
  const char *key = item->string;
  size_t n = strlen(key);
  char *path = strdup(key), *seg = path, *dot;
  cJSON *node = doc, *child;
  int rc = path ? 0 : nomem(r);
  if (rc == 0 && (n == 0 || key[0] == '.' || key[n - 1] == '.' || strstr(key, "..") != NULL))
    rc = fail(r, -EINVAL, OVERRIDES ": \"%.100s\" is not a dotted path of keys", key);
  for (; rc == 0 && (dot = strchr(seg, '.')) != NULL; node = child, seg = dot + 1) {
    *dot = '\0';
    if (!cJSON_IsObject(child = cJSON_GetObjectItemCaseSensitive(node, seg))) /* missing, or a scalar */
      rc = set_key(r, node, seg, child = cJSON_CreateObject());
  }
  rc = rc == 0 ? put(r, node, seg, item) : (cJSON_Delete(item), rc);
  free(path);
  return rc;
}

static int merge_overrides(report_t *r, cJSON *doc, const char *json) {
  char what[64];
  size_t len = strnlen(json, BH_YAMLCONF_MAX_FILE + 1);
  if (len > BH_YAMLCONF_MAX_FILE)
    return fail(r, -EINVAL, OVERRIDES ": longer than %u MiB", BH_YAMLCONF_MAX_FILE >> 20);
  const char *end = json;
  cJSON *o = cJSON_ParseWithLengthOpts(json, len + 1, &end, 1); /* + 1: the NUL, which must end it */
  if (o == NULL)
    return fail(r, -EINVAL, OVERRIDES ": not valid JSON (near byte %zu)", (size_t)(end - json));
  int rc = 0;
  if (!cJSON_IsObject(o))
    rc = fail(r, -EINVAL, OVERRIDES ": expected a JSON object, got %s", describe(o, what, sizeof(what)));
  while (rc == 0 && o->child != NULL)
    rc = put_path(r, doc, cJSON_DetachItemViaPointer(o, o->child));
  cJSON_Delete(o);
  size_t count = 0;
  if (rc == 0 && shape(doc, BH_YAMLCONF_MAX_DEPTH, &count) > BH_YAMLCONF_MAX_DEPTH)
    rc = fail(r, -EINVAL, OVERRIDES ": the configuration is nested deeper than %d levels", BH_YAMLCONF_MAX_DEPTH);
  return rc;
}

/* ---- the schema: which keys, of which types ------------------------------------ */

enum { /* what a value may be, then what else a rule says */
  K_NULL = 1, K_BOOL = 2, K_INT = 4, K_NUM = 8, K_STR = 16, K_MAP = 32, K_LIST = 64,
  K_CPU_COUNT = 128 /* "cpu_count" */, K_ABOVE = 256 /* numbers > min */, K_FILLED = 512 /* no "" */,
  K_REQUIRED = 1024 /* a map's key that must be there */,
  K_GLOBAL = 2048 /* also a default for all services, written directly under services: */
};

typedef struct rule {
  const char *name;
  unsigned kinds;
  double min;                /* the least number accepted */
  const char *what;          /* the kinds in words, for errors */
  const struct rule *fields; /* a map's known keys, up to a NULL name; NULL: any key */
  const struct rule *items;  /* a list's items */
} rule_t;

#define R(name, kinds, min, what) {name, kinds, min, what, NULL, NULL}
#define ANY_MAP(name, global) R(name, K_MAP | K_NULL | (global), 0, "a map")

static const rule_t TRAFFIC_KEYS[] = {
    R("timeout", K_NUM | K_ABOVE | K_NULL, 0, "a number > 0"),
    R("max_concurrency", K_INT | K_NULL, 0, "an integer >= 0"), R("concurrency", K_INT | K_NULL, 0, "an integer >= 0"),
    R("external_queue", K_BOOL | K_NULL, 0, "true or false"),
    {0},
};

static const rule_t RESOURCE_KEYS[] = {
    R("gpu", K_NUM | K_NULL, 0, "a number >= 0"), R("gpu_type", K_STR | K_NULL, 0, "a string"),
    R("cpu", K_STR | K_NUM | K_NULL, 0, "a string or a number >= 0"),
    R("memory", K_STR | K_NUM | K_NULL, 0, "a string or a number >= 0"),
    {0},
};

/* BentoCloud's replica bounds; only `python -m bentohost k8s` reads them (serve ignores them). */
static const rule_t SCALING_KEYS[] = {
    R("min_replicas", K_INT | K_NULL, 0, "an integer >= 0"), R("max_replicas", K_INT | K_NULL, 1, "an integer >= 1"),
    {0},
};

static const rule_t ENV_KEYS[] = {
    R("name", K_STR | K_FILLED | K_REQUIRED, 0, "a non-empty string"), R("value", K_STR | K_NULL, 0, "a string"),
    {0},
};

static const rule_t ENV = {"", K_MAP, 0, "a map with a name and a value", ENV_KEYS, NULL};

/* A service's keys (BentoML's configuration/v2 schema); K_GLOBAL marks those that
 * its finalize_config treats as defaults for all services. */
static const rule_t SERVICE_KEYS[] = {
    R("workers", K_INT | K_CPU_COUNT | K_GLOBAL, 1, "an integer >= 1 or \"cpu_count\""),
    R("threads", K_INT, 1, "an integer >= 1"),
    {"traffic", K_MAP | K_NULL | K_GLOBAL, 0, "a map", TRAFFIC_KEYS, NULL},
    {"resources", K_MAP | K_NULL | K_GLOBAL, 0, "a map", RESOURCE_KEYS, NULL},
    {"envs", K_LIST, 0, "a list of {name, value} maps", NULL, &ENV},
    ANY_MAP("batching", K_GLOBAL),     ANY_MAP("http", K_GLOBAL),       ANY_MAP("ssl", K_GLOBAL),
    ANY_MAP("logging", K_GLOBAL),      ANY_MAP("metrics", K_GLOBAL),    ANY_MAP("tracing", K_GLOBAL),
    ANY_MAP("runner_probe", K_GLOBAL), ANY_MAP("monitoring", K_GLOBAL), ANY_MAP("grpc", K_GLOBAL),
    ANY_MAP("runner_connection", 0),   ANY_MAP("endpoints", 0),         R("extra_ports", K_LIST | K_NULL, 0, "a list"),
    ANY_MAP("tasks", 0), /* bentohost's task store and limits, checked in Python (bentohost/_tasks.py) */
    R("backlog", K_INT | K_GLOBAL, 1, "an integer >= 1"),
    R("max_runner_connections", K_INT | K_GLOBAL, 1, "an integer >= 1"),
    R("replicate_process", K_NULL | K_BOOL | K_INT | K_NUM | K_STR | K_MAP | K_LIST, 0, "anything"),
    R("replicas", K_INT | K_GLOBAL, 1, "an integer >= 1"),
    {"scaling", K_MAP | K_NULL | K_GLOBAL, 0, "a map", SCALING_KEYS, NULL},
    {0},
};

static const rule_t SERVICE = {"", K_MAP | K_NULL, 0, "a map of that service's settings", SERVICE_KEYS, NULL};

static const rule_t *find_rule(const rule_t *rules, const char *key) {
  for (; rules->name != NULL; rules++)
    if (!strcmp(rules->name, key))
      return rules;
  return NULL;
}

static int check(report_t *r, const char *path, cJSON *v, const rule_t *rule);

/* Each key of map checked by its rule; keys with none are dropped with a warning. */
static int check_fields(report_t *r, const char *path, cJSON *map, const rule_t *rules) {
  char sub[320];
  cJSON *c = map->child, *next;
  int rc = 0;
  for (; rc == 0 && c != NULL; c = next) {
    next = c->next;
    snprintf(sub, sizeof(sub), "%s.%.200s", path, c->string);
    const rule_t *rule = find_rule(rules, c->string);
    if (rule != NULL)
      rc = check(r, sub, c, rule);
    else if ((rc = warn(r, "%s: unknown key, ignored", sub)) == 0)
      cJSON_Delete(cJSON_DetachItemViaPointer(map, c));
  }
  for (; rc == 0 && rules->name != NULL; rules++)
    if ((rules->kinds & K_REQUIRED) && cJSON_GetObjectItemCaseSensitive(map, rules->name) == NULL)
      rc = fail(r, -EINVAL, "%s.%s: expected %s, got nothing", path, rules->name, rules->what);
  return rc;
}

static int check(report_t *r, const char *path, cJSON *v, const rule_t *rule) {
  char buf[64], sub[320];
  unsigned k = rule->kinds;
  double d = v->valuedouble;
  int number = cJSON_IsNumber(v) && (k & (K_INT | K_NUM)) && d >= rule->min && (!(k & K_ABOVE) || d > rule->min) &&
               (!(k & K_INT) || (k & K_NUM) || (d == floor(d) && d <= INT_MAX));
  int string = cJSON_IsString(v) && (((k & K_STR) && (!(k & K_FILLED) || v->valuestring[0] != '\0')) ||
                                     ((k & K_CPU_COUNT) && !strcmp(v->valuestring, "cpu_count")));
  int ok = number || string || ((k & K_NULL) && cJSON_IsNull(v)) || ((k & K_BOOL) && cJSON_IsBool(v)) ||
           ((k & K_MAP) && cJSON_IsObject(v)) || ((k & K_LIST) && cJSON_IsArray(v));
  if (!ok)
    return fail(r, -EINVAL, "%s: expected %s, got %s", path, rule->what, describe(v, buf, sizeof(buf)));
  if (cJSON_IsObject(v) && rule->fields != NULL)
    return check_fields(r, path, v, rule->fields);
  int i = 0, rc = 0;
  cJSON *item;
  if (cJSON_IsArray(v) && rule->items != NULL)
    cJSON_ArrayForEach(item, v) {
      snprintf(sub, sizeof(sub), "%.280s[%d]", path, i++);
      if ((rc = check(r, sub, item, rule->items)) != 0)
        break;
    }
  return rc;
}

/* One entry under services: into defaults (a global key) or services (a name). */
static int place(report_t *r, cJSON *entry, cJSON *defaults, cJSON *services) {
  char path[320];
  const rule_t *rule = find_rule(SERVICE_KEYS, entry->string);
  int global = rule != NULL && (rule->kinds & K_GLOBAL);
  snprintf(path, sizeof(path), "services.%.200s", entry->string);
  int rc = check(r, path, entry, global ? rule : &SERVICE);
  if (rc == -EINVAL && rule != NULL && !global && !cJSON_IsObject(entry) && r->errlen > 0) /* {threads: 4} */
    snprintf(r->err + strlen(r->err), r->errlen - strlen(r->err),
             " (%s is no default for all services: set it under services.<Name>)", entry->string);
  if (rc != 0) {
    cJSON_Delete(entry);
    return rc;
  }
  if (!global && cJSON_IsNull(entry)) /* "Name:" with nothing under it */
    entry->type = (entry->type & ~0xff) | cJSON_Object;
  return put(r, global ? defaults : services, entry->string, entry);
}

/* {"defaults": {...}, "services": {...}} from the merged document (its services: entries move). */
static int build(report_t *r, cJSON *doc, cJSON **out) {
  char what[64];
  cJSON *result = cJSON_CreateObject();
  cJSON *defaults = cJSON_AddObjectToObject(result, "defaults");
  cJSON *services = cJSON_AddObjectToObject(result, "services");
  cJSON *section = NULL, *c;
  int rc = defaults && services ? 0 : nomem(r);
  for (c = doc->child; rc == 0 && c != NULL; c = c->next) {
    if (!strcmp(c->string, "version")) {
      if (!cJSON_IsNumber(c) || c->valuedouble != 2)
        rc = fail(r, -EINVAL, "version: expected 2, got %s", describe(c, what, sizeof(what)));
    } else if (!strcmp(c->string, "services")) {
      section = c;
    } else {
      rc = warn(r, "%.200s: unknown key, ignored", c->string);
    }
  }
  if (rc == 0 && section != NULL && !cJSON_IsObject(section) && !cJSON_IsNull(section))
    rc = fail(r, -EINVAL, "services: expected a map, got %s", describe(section, what, sizeof(what)));
  while (rc == 0 && section != NULL && section->child != NULL)
    rc = place(r, cJSON_DetachItemViaPointer(section, section->child), defaults, services);
  if (rc != 0) {
    cJSON_Delete(result);
    return rc;
  }
  *out = result;
  return 0;
}

int bh_yamlconf_load(const char *path, const char *overrides_json, char **out_json, char **warnings_json,
                     char *err, size_t errlen) {
  report_t r = {err, errlen, cJSON_CreateArray()};
  cJSON *doc = NULL, *result = NULL;
  int rc = 0;
  *out_json = NULL;
  if (warnings_json != NULL)
    *warnings_json = NULL;
  if (errlen > 0)
    err[0] = '\0';
  if (r.warnings == NULL)
    return nomem(&r);
  if (path != NULL && *path != '\0')
    rc = load_file(&r, path, &doc);
  else if ((doc = cJSON_CreateObject()) == NULL)
    rc = nomem(&r);
  if (rc == 0 && overrides_json != NULL && *overrides_json != '\0')
    rc = merge_overrides(&r, doc, overrides_json);
  if (rc == 0)
    rc = build(&r, doc, &result);
  if (rc == 0 && (*out_json = cJSON_PrintUnformatted(result)) == NULL)
    rc = nomem(&r);
  if (rc == 0 && warnings_json != NULL && (*warnings_json = cJSON_PrintUnformatted(r.warnings)) == NULL)
    rc = nomem(&r);
  if (rc != 0) {
    cJSON_free(*out_json);
    *out_json = NULL;
  }
  cJSON_Delete(result);
  cJSON_Delete(doc);
  cJSON_Delete(r.warnings);
  return rc;
}
