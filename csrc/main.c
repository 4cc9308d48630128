/* Entry point of the host binary: `bentohost-host serve --target T ...`.
 * The Python launcher (bentohost/cli.py) validates user input and execs this
 * binary; here the options are parsed and the supervisor takes over.
 * `bentohost-host config` prints the configuration file as serve reads it. */
#include "bh.h"
#include "common/log.h"
#include "common/options.h"
#include "common/yamlconf.h"
#include "supervisor/supervisor.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* BENTOML_CONFIG and BENTOML_CONFIG_OVERRIDES read and checked exactly as serve
 * reads them, printed as {"config": <bh_yamlconf_load's object>, "warnings": [...]}
 * (`python -m bentohost k8s` reads it); a bad file is one line on stderr, exit 1. */
static int print_config(void) {
  char err[512], *json = NULL, *warnings = NULL;
  if (bh_yamlconf_load(getenv("BENTOML_CONFIG"), getenv("BENTOML_CONFIG_OVERRIDES"), &json, &warnings, err,
                       sizeof(err)) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  printf("{\"config\":%s,\"warnings\":%s}\n", json, warnings);
  cJSON_free(json);
  cJSON_free(warnings);
  return fflush(stdout) == 0 ? 0 : 1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: bentohost-host serve --target TARGET --python PYTHON [options]\n"
          "This binary is started by `python -m bentohost serve`; see its --help.\n");
}

int main(int argc, char **argv) {
  bh_options_t opts;
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    if (argc == 2 && strcmp(argv[1], "config") == 0)
      return print_config();
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
      printf("bentohost-host %s\n", BH_VERSION);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  if (bh_options_parse(&opts, argc - 1, argv + 1) != 0) {
    usage(stderr);
    return 2;
  }
  bh_log_set_json(opts.log_json);
  return bh_supervisor_run(&opts);
}
