/* bentohost: the one thing every source file of the host may need.
 *
 * Each module has its own header (common/log.h, server/io.h, ...); include
 * those for what a file uses. csrc/README.md maps the layers and traces one
 * request through the files. */
#ifndef BH_H
#define BH_H

#define BH_VERSION "0.1.0"

#endif
