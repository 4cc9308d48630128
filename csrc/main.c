/* Entry point of the host binary: `bentohost-host serve --target T ...`.
 * The Python launcher (bentohost/cli.py) validates user input and execs this
 * binary; here the options are parsed and the supervisor takes over. */
#include "bh.h"
#include "common/log.h"
#include "common/options.h"
#include "supervisor/supervisor.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: bentohost-host serve --target TARGET --python PYTHON [options]\n"
          "This binary is started by `python -m bentohost serve`; see its --help.\n");
}

int main(int argc, char **argv) {
  bh_options_t opts;
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
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
