/* The values inside a multipart part's header lines (server/part_header.c):
 * a parameter of Content-Disposition or Content-Type, and the name a file
 * part's upload is stored under. */
#ifndef BH_SERVER_PART_HEADER_H
#define BH_SERVER_PART_HEADER_H

#include <stddef.h>

/* The most of an upload's filename kept (its end: the extension matters). */
#define BH_PART_NAME_MAX 128

/* Finds parameter key (case-insensitive) in a header value such as
 * `form-data; name="a"; filename="b c"`, unquoted into out (cap bytes, NUL
 * included; longer values are cut) with its length in *outlen. 1 when found. */
int bh_part_param(const char *s, size_t len, const char *key, char *out, size_t cap,
                  size_t *outlen);

/* The upload's filename made safe as one name in any directory, into out. */
void bh_part_filename(const char *in, char *out, size_t cap);

#endif
