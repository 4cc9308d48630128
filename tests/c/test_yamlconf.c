/* bh_yamlconf_load driven by tests/test_c_yamlconf.py.
 *
 *   test_yamlconf load FILE [OVERRIDES]   one line of JSON: {"rc", "error"} or
 *                                         {"rc", "config", "warnings"}; FILE "-" is none
 *   test_yamlconf api FILE BADFILE        the C contract: err sizes, NULL warnings,
 *                                         outputs on failure; prints OK or what failed
 *   test_yamlconf oom FILE [OVERRIDES]    every allocation made to fail in turn:
 *                                         -ENOMEM each time, never a leak
 *   test_yamlconf args FILE [ARGS_JSON]   bh_yamlconf_arguments, printed as `load` does
 *   test_yamlconf oomargs FILE [ARGS_JSON] `oom` for bh_yamlconf_arguments
 *
 * Linked with -Wl,--wrap=malloc -Wl,--wrap=strdup (tests/test_c_yamlconf.py does). */
#include "common/yamlconf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load(const char *file, const char *overrides, int arguments) {
  char err[512], *json = NULL, *warnings = NULL;
  int rc = arguments ? bh_yamlconf_arguments(strcmp(file, "-") ? file : NULL, overrides, &json, &warnings, err,
                                             sizeof(err))
                     : bh_yamlconf_load(strcmp(file, "-") ? file : NULL, overrides, &json, &warnings, err, sizeof(err));
  cJSON *out = cJSON_CreateObject();
  cJSON_AddNumberToObject(out, "rc", rc);
  if (rc == 0) {
    cJSON_AddItemToObject(out, "config", cJSON_Parse(json));
    cJSON_AddItemToObject(out, "warnings", cJSON_Parse(warnings));
  } else {
    cJSON_AddStringToObject(out, "error", err);
    if (json != NULL || warnings != NULL)
      cJSON_AddTrueToObject(out, "outputs_left_set");
  }
  char *text = cJSON_PrintUnformatted(out);
  printf("%s\n", text);
  free(text);
  cJSON_Delete(out);
  free(json);
  free(warnings);
  return 0;
}

#define EXPECT(cond)                                                                                    \
  do {                                                                                                  \
    if (!(cond)) {                                                                                      \
      printf("FAIL line %d: %s\n", __LINE__, #cond);                                                    \
      bad = 1;                                                                                          \
    }                                                                                                   \
  } while (0)

static int api(const char *good, const char *bad_file) {
  char err[16], *json = (char *)"stale", *warnings = (char *)"stale";
  int bad = 0;

  /* no room for a message at all: still the error code, and nothing written */
  EXPECT(bh_yamlconf_load(bad_file, NULL, &json, &warnings, NULL, 0) == -EINVAL);
  EXPECT(json == NULL && warnings == NULL);

  /* a short buffer: truncated, NUL-terminated */
  memset(err, 'x', sizeof(err));
  EXPECT(bh_yamlconf_load(bad_file, NULL, &json, NULL, err, sizeof(err)) == -EINVAL);
  EXPECT(memchr(err, '\0', sizeof(err)) != NULL && strlen(err) == sizeof(err) - 1);

  /* warnings are optional */
  EXPECT(bh_yamlconf_load(good, NULL, &json, NULL, err, sizeof(err)) == 0);
  EXPECT(json != NULL && err[0] == '\0');
  free(json);

  /* neither a file nor overrides: the empty configuration */
  EXPECT(bh_yamlconf_load(NULL, NULL, &json, &warnings, err, sizeof(err)) == 0);
  EXPECT(json && !strcmp(json, "{\"defaults\":{},\"services\":{}}") && warnings && !strcmp(warnings, "[]"));
  free(json);
  free(warnings);
  EXPECT(bh_yamlconf_load("", "", &json, &warnings, err, sizeof(err)) == 0);
  free(json);
  free(warnings);

  /* a missing file: -ENOENT */
  EXPECT(bh_yamlconf_load("/nonexistent/dir/x.yaml", NULL, &json, &warnings, err, sizeof(err)) == -ENOENT);
  EXPECT(json == NULL && warnings == NULL);

  /* the same load many times: the same answer (and, under LeakSanitizer, no leak) */
  char *first = NULL;
  EXPECT(bh_yamlconf_load(good, "{\"services.M.workers\": 3}", &first, NULL, NULL, 0) == 0);
  for (int i = 0; i < 50 && first != NULL; i++) {
    EXPECT(bh_yamlconf_load(good, "{\"services.M.workers\": 3}", &json, &warnings, NULL, 0) == 0);
    EXPECT(json != NULL && !strcmp(json, first));
    free(json);
    free(warnings);
  }
  free(first);
  printf(bad ? "FAIL\n" : "OK\n");
  return bad;
}

/* The allocation that fails: 0 = the next one, -1 = none. cJSON's allocations come
 * through its hooks, yamlconf.c's own malloc and strdup through -Wl,--wrap. */
static long alloc_countdown = -1;
static int alloc_failed;

void *__real_malloc(size_t n);
char *__real_strdup(const char *s);

static int should_fail(void) {
  if (alloc_countdown >= 0 && alloc_countdown-- == 0)
    return alloc_failed = 1;
  return 0;
}

void *__wrap_malloc(size_t n) {
  return should_fail() ? NULL : __real_malloc(n);
}

char *__wrap_strdup(const char *s) {
  return should_fail() ? NULL : __real_strdup(s);
}

static void *failing_malloc(size_t n) {
  return should_fail() ? NULL : __real_malloc(n);
}

/* The loader under test: the configuration's, or (args) the bento arguments'. */
static int run(int args, const char *file, const char *json_in, char **json, char **warnings, char *err,
               size_t errlen) {
  return args ? bh_yamlconf_arguments(file, json_in, json, warnings, err, errlen)
              : bh_yamlconf_load(file, json_in, json, warnings, err, errlen);
}

static int oom(const char *file, const char *overrides, int args) {
  cJSON_Hooks hooks = {failing_malloc, free};
  file = strcmp(file, "-") ? file : NULL;
  char err[512], *json, *warnings, *expected = NULL;
  int bad = 0, rc = run(args, file, overrides, &expected, NULL, err, sizeof(err));
  long n;
  if (rc != 0) {
    printf("FAIL: the file does not load: %s\n", err);
    return 1;
  }
  cJSON_InitHooks(&hooks);
  for (n = 0; n < 1000000; n++) {
    alloc_countdown = n;
    alloc_failed = 0;
    rc = run(args, file, overrides, &json, &warnings, err, sizeof(err));
    alloc_countdown = -1;
    if (!alloc_failed) {
      EXPECT(rc == 0 && json != NULL && !strcmp(json, expected));
      free(json);
      free(warnings);
      break;
    }
    EXPECT(rc != 0); /* an allocation that failed unnoticed */
    if (rc == 0) {
      free(json);
      free(warnings);
      continue;
    }
    /* cJSON_Parse answers NULL for no memory as for bad JSON: the overrides read as invalid */
    int parse = rc == -EINVAL && (strstr(err, "BENTOML_CONFIG_OVERRIDES: not valid JSON") != NULL ||
                                  strstr(err, "--arg: expected a JSON object, got invalid JSON") != NULL);
    EXPECT((rc == -ENOMEM && strstr(err, "out of memory") != NULL) || parse);
    EXPECT(json == NULL && warnings == NULL);
    if (rc != -ENOMEM && !parse)
      printf("  allocation %ld: rc %d: %s\n", n, rc, err);
  }
  cJSON_InitHooks(NULL);
  free(expected);
  printf("%s after %ld failing allocations\n", bad ? "FAIL" : "OK", n);
  return bad;
}

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "load"))
    return load(argv[2], argc >= 4 ? argv[3] : NULL, 0);
  if (argc >= 3 && !strcmp(argv[1], "args"))
    return load(argv[2], argc >= 4 ? argv[3] : NULL, 1);
  if (argc == 4 && !strcmp(argv[1], "api"))
    return api(argv[2], argv[3]);
  if (argc >= 3 && !strcmp(argv[1], "oom"))
    return oom(argv[2], argc >= 4 ? argv[3] : NULL, 0);
  if (argc >= 3 && !strcmp(argv[1], "oomargs"))
    return oom(argv[2], argc >= 4 ? argv[3] : NULL, 1);
  fprintf(stderr, "usage: test_yamlconf load FILE [OVERRIDES] | api FILE BADFILE | oom FILE [OVERRIDES] | args FILE [ARGS] | oomargs FILE [ARGS]\n");
  return 2;
}
