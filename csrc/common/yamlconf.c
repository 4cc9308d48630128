/* BentoML's configuration file (BENTOML_CONFIG, version 2) read into cJSON
 * (common/yaml.c), BENTOML_CONFIG_OVERRIDES merged over it, and the result split
 * into global defaults and per-service settings, each checked; and the bento
 * arguments of --arg-file / --arg. */
#include "common/yamlconf.h"
#include "common/yaml.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OVERRIDES "BENTOML_CONFIG_OVERRIDES"

typedef bh_yaml_report_t report_t;
#define fail bh_yaml_fail
#define nomem bh_yaml_nomem
#define warn bh_yaml_warn
#define describe bh_yaml_describe
#define shape bh_yaml_shape
#define set_key bh_yaml_set_key

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* The file as a cJSON map in *doc, its schema version checked. */
static int load_file(report_t *r, const char *path, cJSON **doc) {
  cJSON *root = NULL;
  if (!has_suffix(path, ".yaml") && !has_suffix(path, ".yml"))
    return fail(r, -EINVAL, "%s: the configuration file must end in .yaml or .yml", path);
  int rc = bh_yaml_load_map(r, path, &root);
  if (rc == 0) {
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    int v1 = (cJSON_IsNumber(version) && version->valuedouble == 1) ||
             (version == NULL && (cJSON_GetObjectItemCaseSensitive(root, "api_server") ||
                                  cJSON_GetObjectItemCaseSensitive(root, "runners")));
    if (v1)
      rc = fail(r, -EINVAL, "%s: a version 1 configuration (api_server:, runners:) is not supported: "
                "write version: 2 with each service's settings under services:", path);
    else if (version == NULL && cJSON_GetObjectItemCaseSensitive(root, "services") != NULL)
      rc = fail(r, -EINVAL, "%s: services: needs version: 2 at the top of the file "
                "(BentoML reads a file without a version as version 1)", path);
  }
  if (rc == 0)
    *doc = root;
  else
    cJSON_Delete(root);
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
  K_CPU_COUNT = 128 /* "cpu_count" or "gpu_count" */, K_ABOVE = 256 /* numbers > min */, K_FILLED = 512 /* no "" */,
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

/* http: (BentoML's v2 schema); cors: is answered in C (server/cors.c). A
 * string where a list is expected is a list of one. */
static const rule_t STRING = {"", K_STR, 0, "a string", NULL, NULL};
#define STRINGS(name) {name, K_STR | K_LIST | K_NULL, 0, "a string or a list of strings", NULL, &STRING}

static const rule_t CORS_KEYS[] = {
    R("enabled", K_BOOL, 0, "true or false"),
    STRINGS("access_control_allow_origins"),
    R("access_control_allow_origin_regex", K_STR | K_NULL, 0, "a regular expression"),
    R("access_control_allow_credentials", K_BOOL | K_NULL, 0, "true or false"),
    STRINGS("access_control_allow_headers"),
    STRINGS("access_control_allow_methods"),
    R("access_control_max_age", K_INT | K_NULL, 0, "an integer >= 0"),
    STRINGS("access_control_expose_headers"),
    {0},
};

static const rule_t RESPONSE_KEYS[] = {R("trace_id", K_BOOL, 0, "true or false"), {0}};

static const rule_t HTTP_KEYS[] = {
    R("host", K_STR | K_FILLED, 0, "an IP address"), R("port", K_INT, 1, "an integer >= 1"),
    R("proxy_port", K_INT, 1, "an integer >= 1"),
    {"cors", K_MAP | K_NULL, 0, "a map", CORS_KEYS, NULL},
    {"response", K_MAP | K_NULL, 0, "a map", RESPONSE_KEYS, NULL},
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
    R("workers", K_INT | K_CPU_COUNT | K_GLOBAL, 1, "an integer >= 1, \"cpu_count\" or \"gpu_count\""),
    R("threads", K_INT, 1, "an integer >= 1"),
    /* bentohost's placement (bentohost/_placement.py) */
    R("gpu_per_worker", K_BOOL | K_NULL | K_GLOBAL, 0, "true or false"),
    R("cpu_affinity", K_BOOL | K_NULL | K_GLOBAL, 0, "true or false"),
    {"traffic", K_MAP | K_NULL | K_GLOBAL, 0, "a map", TRAFFIC_KEYS, NULL},
    {"resources", K_MAP | K_NULL | K_GLOBAL, 0, "a map", RESOURCE_KEYS, NULL},
    {"envs", K_LIST, 0, "a list of {name, value} maps", NULL, &ENV},
    {"http", K_MAP | K_NULL | K_GLOBAL, 0, "a map", HTTP_KEYS, NULL},
    ANY_MAP("batching", K_GLOBAL),     ANY_MAP("ssl", K_GLOBAL),
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
                                     ((k & K_CPU_COUNT) && (!strcmp(v->valuestring, "cpu_count") ||
                                                            !strcmp(v->valuestring, "gpu_count"))));
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

/* Both outputs and err cleared; -ENOMEM when the report could not be made. */
static int start(report_t *r, char **out_json, char **warnings_json) {
  *out_json = NULL;
  if (warnings_json != NULL)
    *warnings_json = NULL;
  if (r->errlen > 0)
    r->err[0] = '\0';
  return r->warnings == NULL ? nomem(r) : 0;
}

/* result and the warnings printed for the caller (warnings_json may be NULL),
 * or, when anything failed, neither; the report's warnings are released. */
static int finish(report_t *r, int rc, const cJSON *result, char **out_json, char **warnings_json) {
  if (rc == 0 && (*out_json = cJSON_PrintUnformatted(result)) == NULL)
    rc = nomem(r);
  if (rc == 0 && warnings_json != NULL && (*warnings_json = cJSON_PrintUnformatted(r->warnings)) == NULL)
    rc = nomem(r);
  if (rc != 0) {
    cJSON_free(*out_json);
    *out_json = NULL;
  }
  cJSON_Delete(r->warnings);
  r->warnings = NULL;
  return rc;
}

int bh_yamlconf_load(const char *path, const char *overrides_json, char **out_json, char **warnings_json,
                     char *err, size_t errlen) {
  report_t r = {err, errlen, cJSON_CreateArray()};
  cJSON *doc = NULL, *result = NULL;
  int rc = start(&r, out_json, warnings_json);
  if (rc == 0 && path != NULL && *path != '\0')
    rc = load_file(&r, path, &doc);
  else if (rc == 0 && (doc = cJSON_CreateObject()) == NULL)
    rc = nomem(&r);
  if (rc == 0 && overrides_json != NULL && *overrides_json != '\0')
    rc = merge_overrides(&r, doc, overrides_json);
  if (rc == 0)
    rc = build(&r, doc, &result);
  rc = finish(&r, rc, result, out_json, warnings_json);
  cJSON_Delete(result);
  cJSON_Delete(doc);
  return rc;
}

int bh_yamlconf_arguments(const char *path, const char *args_json, char **out_json, char **warnings_json,
                          char *err, size_t errlen) {
  report_t r = {err, errlen, cJSON_CreateArray()};
  cJSON *args = NULL, *flags = NULL;
  char what[64];
  int rc = start(&r, out_json, warnings_json);
  if (rc == 0 && path != NULL && *path != '\0')
    rc = bh_yaml_load_map(&r, path, &args);
  else if (rc == 0 && (args = cJSON_CreateObject()) == NULL)
    rc = nomem(&r);
  /* --arg KEY=VALUE pairs, machine-written by the launcher: they win over the file. */
  if (rc == 0 && args_json != NULL && *args_json != '\0') {
    flags = cJSON_ParseWithLength(args_json, strnlen(args_json, BH_YAML_MAX_FILE));
    if (!cJSON_IsObject(flags))
      rc = fail(&r, -EINVAL, "--arg: expected a JSON object, got %s",
                flags ? describe(flags, what, sizeof(what)) : "invalid JSON");
    while (rc == 0 && flags->child != NULL) {
      cJSON *c = cJSON_DetachItemViaPointer(flags, flags->child);
      rc = set_key(&r, args, c->string, c);
    }
  }
  rc = finish(&r, rc, args, out_json, warnings_json);
  cJSON_Delete(flags);
  cJSON_Delete(args);
  return rc;
}
