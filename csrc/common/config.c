/* The service configuration as reported by the first worker (JSON, read with cJSON).
 * Both the supervisor (worker count) and each worker (routes) read it. */
#include "common/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *dup_string(const cJSON *item, const char *fallback) {
  const char *s = cJSON_IsString(item) ? item->valuestring : fallback;
  return s ? strdup(s) : NULL;
}

static int int_field(const cJSON *obj, const char *key, int fallback) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(item) ? item->valueint : fallback;
}

static int bool_field(const cJSON *obj, const char *key) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* An array of strings (anything else in it skipped) into *out; -ENOMEM. */
static int parse_names(const cJSON *arr, char ***out, size_t *n) {
  const cJSON *item;
  int cap = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;

  *n = 0;
  if (cap == 0)
    return 0;
  if ((*out = calloc((size_t)cap, sizeof(char *))) == NULL)
    return -ENOMEM;
  cJSON_ArrayForEach(item, arr) {
    if (!cJSON_IsString(item))
      continue;
    if (((*out)[*n] = strdup(item->valuestring)) == NULL)
      return -ENOMEM;
    (*n)++;
  }
  return 0;
}

static int method_field(const cJSON *obj) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "method");
  if (!cJSON_IsString(item))
    return BH_METHOD_POST;
  if (!strcmp(item->valuestring, "GET"))
    return BH_METHOD_GET;
  if (!strcmp(item->valuestring, "PUT"))
    return BH_METHOD_PUT;
  return BH_METHOD_POST;
}

static double number_field(const cJSON *obj, const char *key, double fallback) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(item) ? item->valuedouble : fallback;
}

void bh_config_free(bh_service_config_t *cfg) {
  for (size_t i = 0; i < cfg->napis; i++) {
    free(cfg->apis[i].name);
    free(cfg->apis[i].route);
    free(cfg->apis[i].batch_field);
    for (size_t k = 0; k < cfg->apis[i].nimage_fields; k++)
      free(cfg->apis[i].image_fields[k]);
    free(cfg->apis[i].image_fields);
  }
  free(cfg->apis);
  free(cfg->name);
  free(cfg->ssl_certfile);
  free(cfg->ssl_keyfile);
  free(cfg->ssl_keyfile_password);
  free(cfg->ssl_ca_certs);
  free(cfg->ssl_ciphers);
  cJSON_free(cfg->cors);
  cJSON_free(cfg->placement);
  memset(cfg, 0, sizeof(*cfg));
}

static int parse_service(bh_service_config_t *cfg, const cJSON *root);

int bh_config_parse(bh_service_config_t *cfg, const char *json, size_t len) {
  memset(cfg, 0, sizeof(*cfg));
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return -EINVAL;
  }
  int err = parse_service(cfg, root);
  cJSON_Delete(root);
  return err;
}

int bh_config_parse_graph(const char *json, size_t len, bh_service_config_t **deps, size_t *ndeps) {
  *deps = NULL;
  *ndeps = 0;
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return -EINVAL;
  }
  const cJSON *graph = cJSON_GetObjectItemCaseSensitive(root, "graph"), *item;
  int n = cJSON_IsArray(graph) ? cJSON_GetArraySize(graph) : 0, err = 0;
  if (n > 0 && (*deps = calloc((size_t)n, sizeof(**deps))) == NULL)
    err = -ENOMEM;
  cJSON_ArrayForEach(item, graph) {
    if (err != 0)
      break;
    err = cJSON_IsObject(item) ? parse_service(&(*deps)[*ndeps], item) : -EINVAL;
    if (err == 0)
      (*ndeps)++;
  }
  cJSON_Delete(root);
  if (err != 0) {
    for (size_t i = 0; i < *ndeps; i++)
      bh_config_free(&(*deps)[i]);
    free(*deps);
    *deps = NULL;
    *ndeps = 0;
  }
  return err;
}

/* "rows": {"dtype": "float32", "shape": [-1, 256] | null} (bentohost/_rows.py). */
static void parse_rows(bh_api_t *api, const cJSON *rows) {
  static const struct { const char *name; char kind; int size; } dtypes[] = {
      {"float32", 'f', 4}, {"float64", 'f', 8}, {"int8", 'i', 1},   {"int16", 'i', 2},  {"int32", 'i', 4},
      {"int64", 'i', 8},   {"uint8", 'u', 1},   {"uint16", 'u', 2}, {"uint32", 'u', 4}, {"uint64", 'u', 8},
  };
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(rows, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(rows, "shape"), *d;
  if (!cJSON_IsString(dtype))
    return;
  if (cJSON_IsArray(shape)) {
    if (cJSON_GetArraySize(shape) > BH_API_MAX_SHAPE)
      return;
    cJSON_ArrayForEach(d, shape) {
      if (!cJSON_IsNumber(d))
        return;
      api->rows_shape[api->rows_nshape++] = (long long)d->valuedouble;
    }
  }
  for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
    if (!strcmp(dtypes[i].name, dtype->valuestring)) {
      api->rows_kind = dtypes[i].kind;
      api->rows_size = dtypes[i].size;
    }
  if (api->rows_kind == 0)
    api->rows_nshape = 0;
}

/* One service's description from its JSON object; 0, -ENOMEM or -EINVAL. */
static int parse_service(bh_service_config_t *cfg, const cJSON *root) {
  memset(cfg, 0, sizeof(*cfg));

  cfg->name = dup_string(cJSON_GetObjectItemCaseSensitive(root, "name"), "Service");
  cfg->workers = int_field(root, "workers", 1);
  cfg->threads = int_field(root, "threads", 1);
  if (cfg->workers < 1)
    cfg->workers = 1;
  if (cfg->threads < 1)
    cfg->threads = 1;

  const cJSON *traffic = cJSON_GetObjectItemCaseSensitive(root, "traffic");
  cfg->timeout_s = number_field(traffic, "timeout", 60.0);
  if (cfg->timeout_s <= 0)
    cfg->timeout_s = 60.0;
  cfg->max_concurrency = int_field(traffic, "max_concurrency", 0);
  cfg->concurrency = int_field(traffic, "concurrency", 0);
  if (cfg->max_concurrency < 0)
    cfg->max_concurrency = 0;
  if (cfg->concurrency < 0)
    cfg->concurrency = 0;
  const cJSON *cors = cJSON_GetObjectItemCaseSensitive(root, "cors");
  if (cJSON_IsObject(cors) && (cfg->cors = cJSON_PrintUnformatted(cors)) == NULL)
    goto nomem;
  const cJSON *placement = cJSON_GetObjectItemCaseSensitive(root, "placement");
  if (cJSON_IsArray(placement) && (cfg->placement = cJSON_PrintUnformatted(placement)) == NULL)
    goto nomem;

  const cJSON *ssl = cJSON_GetObjectItemCaseSensitive(root, "ssl");
  cfg->ssl_enabled = bool_field(ssl, "enabled");
  cfg->ssl_cert_reqs = int_field(ssl, "cert_reqs", -1);
  cfg->ssl_version = int_field(ssl, "version", -1);
  {
    static const char *const keys[] = {"certfile", "keyfile", "keyfile_password", "ca_certs", "ciphers"};
    char **fields[] = {&cfg->ssl_certfile, &cfg->ssl_keyfile, &cfg->ssl_keyfile_password,
                       &cfg->ssl_ca_certs, &cfg->ssl_ciphers};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(ssl, keys[i]);
      if (cJSON_IsString(v) && (*fields[i] = strdup(v->valuestring)) == NULL)
        goto nomem;
    }
  }

  const cJSON *apis = cJSON_GetObjectItemCaseSensitive(root, "apis");
  int n = cJSON_IsArray(apis) ? cJSON_GetArraySize(apis) : 0;
  if (n > 0) {
    cfg->apis = calloc((size_t)n, sizeof(bh_api_t));
    if (cfg->apis == NULL)
      goto nomem;
  }
  const cJSON *item;
  cJSON_ArrayForEach(item, apis) {
    bh_api_t *api = &cfg->apis[cfg->napis];
    api->index = (int)cfg->napis;
    api->name = dup_string(cJSON_GetObjectItemCaseSensitive(item, "name"), "api");
    api->route = dup_string(cJSON_GetObjectItemCaseSensitive(item, "route"), "/");
    cfg->napis++;
    if (api->name == NULL || api->route == NULL)
      goto nomem;
    api->route_len = strlen(api->route);
    api->method = method_field(item);
    api->task_route = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(item, "task"));
    api->is_async = bool_field(item, "is_async");
    api->is_stream = bool_field(item, "is_stream");
    api->batchable = bool_field(item, "batchable");
    api->needs_request = bool_field(item, "needs_request");
    api->batch_root = bool_field(item, "batch_root");
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(item, "batch_field");
    if (cJSON_IsString(field) && (api->batch_field = strdup(field->valuestring)) == NULL)
      goto nomem;
    api->max_batch_size = int_field(item, "max_batch_size", 100);
    if (api->max_batch_size < 1)
      api->max_batch_size = 1;
    parse_rows(api, cJSON_GetObjectItemCaseSensitive(item, "rows"));
    api->image_root = bool_field(item, "image_root");
    if (parse_names(cJSON_GetObjectItemCaseSensitive(item, "image_fields"), &api->image_fields,
                    &api->nimage_fields) != 0)
      goto nomem;
    api->max_latency_s = number_field(item, "max_latency_ms", 60000.0) / 1000.0;
    if (api->max_latency_s <= 0)
      api->max_latency_s = 60.0;
  }
  if (cfg->name == NULL)
    goto nomem;
  return 0;

nomem:
  bh_config_free(cfg);
  return -ENOMEM;
}
