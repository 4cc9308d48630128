/* The run's settings read before any worker starts: BENTOML_CONFIG and the bento
 * arguments, each checked here so that a broken file is one line and an exit. */
#include "supervisor/internal.h"
#include "common/log.h"
#include "common/yamlconf.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* BENTOML_CONFIG (a v2 YAML file) and BENTOML_CONFIG_OVERRIDES (JSON), checked
 * here so that a broken file is one line and an exit before any worker starts;
 * the workers get the merged result, applied over each service's decorator. */
int bh_sup_load_config(void) {
  const char *path = getenv("BENTOML_CONFIG"), *overrides = getenv("BENTOML_CONFIG_OVERRIDES");
  char err[512], *json = NULL, *warnings = NULL;

  if ((path == NULL || *path == '\0') && (overrides == NULL || *overrides == '\0'))
    return 0;
  if (bh_yamlconf_load(path, overrides, &json, &warnings, err, sizeof(err)) < 0) {
    bh_log("error: %s", err);
    return -1;
  }
  cJSON *list = warnings != NULL ? cJSON_Parse(warnings) : NULL, *item;
  cJSON_ArrayForEach(item, list) {
    if (cJSON_IsString(item))
      bh_log("warning: %s: %s", path != NULL && *path ? path : "BENTOML_CONFIG_OVERRIDES",
             item->valuestring);
  }
  cJSON_Delete(list);
  setenv("BENTOHOST_CONFIG_JSON", json, 1);
  cJSON_free(json);
  cJSON_free(warnings);
  return 0;
}

/* The bento arguments: BENTOHOST_ARGUMENT_FILE (--arg-file, YAML or JSON) with
 * BENTOHOST_ARGUMENTS (--arg pairs, JSON) over it, read here for the same reason
 * as the configuration; the workers' use_arguments() reads the merged JSON. */
int bh_sup_load_arguments(void) {
  const char *path = getenv("BENTOHOST_ARGUMENT_FILE"), *flags = getenv("BENTOHOST_ARGUMENTS");
  char err[512], *json = NULL, *warnings = NULL;

  if (path == NULL || *path == '\0')
    return 0;
  if (bh_yamlconf_arguments(path, flags, &json, &warnings, err, sizeof(err)) < 0) {
    bh_log("error: --arg-file %s", err);
    return -1;
  }
  cJSON *list = cJSON_Parse(warnings), *item;
  cJSON_ArrayForEach(item, list) {
    if (cJSON_IsString(item))
      bh_log("warning: --arg-file %s", item->valuestring);
  }
  cJSON_Delete(list);
  setenv("BENTOHOST_ARGUMENTS", json, 1);
  unsetenv("BENTOHOST_ARGUMENT_FILE");
  cJSON_free(json);
  cJSON_free(warnings);
  return 0;
}
