/* YAML files read into cJSON as PyYAML's safe_load reads them (common/yaml.c),
 * and the report of one error line and warnings that BentoML's file readers
 * (common/yamlconf.c) fill in. */
#ifndef BH_COMMON_YAML_H
#define BH_COMMON_YAML_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define BH_YAML_MAX_FILE (16u << 20) /* bytes of YAML (and of JSON read alongside it) */
#define BH_YAML_MAX_DEPTH 64         /* nested maps and lists, the top map is 1 */

typedef struct bh_yaml_report {
  char *err;         /* one line, errlen bytes, NUL-terminated when errlen > 0 */
  size_t errlen;
  cJSON *warnings;   /* array of strings */
} bh_yaml_report_t;

/* The message into r->err; returns rc (a negative errno), so that a caller
 * can `return bh_yaml_fail(r, -EINVAL, ...)`. */
__attribute__((format(printf, 3, 4))) int bh_yaml_fail(bh_yaml_report_t *r, int rc, const char *fmt, ...);
int bh_yaml_nomem(bh_yaml_report_t *r);
/* One more warning line; 0 or -ENOMEM. */
__attribute__((format(printf, 2, 3))) int bh_yaml_warn(bh_yaml_report_t *r, const char *fmt, ...);
/* How a value reads in a message: "a list", "a map", "\"abc\"", "true", "null", "2.5". */
const char *bh_yaml_describe(const cJSON *v, char *buf, size_t cap);
/* Height of a tree (a scalar 0, a map or list 1 + its tallest child), looking no
 * deeper than limit + 1; *count gets the number of nodes seen. */
int bh_yaml_shape(const cJSON *node, int limit, size_t *count);
/* node[key] = item (consumed), replacing what was there; 0 or -ENOMEM. */
int bh_yaml_set_key(bh_yaml_report_t *r, cJSON *node, const char *key, cJSON *item);

/* The YAML file at path (one document, at most BH_YAML_MAX_FILE bytes) as a map
 * in *out (an empty file: an empty map). 0, or a negative errno with the reason
 * in r->err: "FILE: <strerror>", "FILE:LINE:COLUMN: <problem>", "FILE: the top
 * level must be a map, got ...". A duplicate key is a warning. */
int bh_yaml_load_map(bh_yaml_report_t *r, const char *path, cJSON **out);

#endif
