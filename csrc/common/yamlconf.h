/* BentoML's configuration file (BENTOML_CONFIG, schema version 2) and its JSON
 * overrides (BENTOML_CONFIG_OVERRIDES), read into one checked JSON object. */
#ifndef BH_COMMON_YAMLCONF_H
#define BH_COMMON_YAMLCONF_H

#include <stddef.h>

#include "common/yaml.h"

#define BH_YAMLCONF_MAX_FILE BH_YAML_MAX_FILE   /* bytes of YAML, and of overrides JSON */
#define BH_YAMLCONF_MAX_DEPTH BH_YAML_MAX_DEPTH /* nested maps and lists, the top map is 1 */

/* Reads the YAML file at path (NULL or "" for none: only the overrides), then
 * merges overrides_json (NULL or "" for none) over it, and checks the result.
 *
 * On success returns 0 and sets *out_json to one malloc'd JSON object
 *
 *   {"defaults": {<global keys under services:>},
 *    "services": {"<Name>": {<that service's keys>}, ...}}
 *
 * with unknown keys left out, and, when warnings_json is not NULL, to a malloc'd
 * JSON array of strings, one per unknown key or duplicate key ("[]" when none).
 * Both come from cJSON's allocator: release them with cJSON_free() (free() unless
 * the program changed cJSON's hooks).
 *
 * On failure returns a negative errno (-ENOENT and the like for the file, -EFBIG
 * for a file over the limit, -EINVAL for everything else that is wrong, -ENOMEM),
 * sets both outputs to NULL and writes one line to err (errlen bytes, always
 * NUL-terminated when errlen > 0): "FILE: <strerror>", "FILE:LINE:COLUMN: <problem>"
 * (1-based) for malformed YAML, "services.Name.workers: expected ..." for a value
 * of the wrong type, "BENTOML_CONFIG_OVERRIDES: ..." for bad overrides. */
int bh_yamlconf_load(const char *path, const char *overrides_json, char **out_json, char **warnings_json,
                     char *err, size_t errlen);

/* The bento arguments (bentohost.use_arguments()): the YAML or JSON map in the
 * file at path (--arg-file; NULL or "" for none) with args_json (a JSON object of
 * --arg KEY=VALUE strings; NULL or "" for none) laid over it. 0 and *out_json a
 * JSON object, *warnings_json an array of strings (duplicate keys), both freed
 * with cJSON_free(); or a negative errno and one line in err, as above. */
int bh_yamlconf_arguments(const char *path, const char *args_json, char **out_json, char **warnings_json,
                          char *err, size_t errlen);

#endif
