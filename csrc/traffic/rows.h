/* A batch's numeric input decoded by C (traffic/rows.c) on the I/O thread: every
 * member's array (a JSON list of numbers, raw application/octet-stream bytes or a
 * .npy body) written one after the other into one contiguous buffer of the API's
 * dtype, which Python sees as one np.frombuffer: no Python object per number, no
 * GIL. A batch that does not fit (any member that is not such an array, another
 * trailing shape, a token Python's json would read differently) is left to Python
 * whole, so that what it answers is exactly what it answered before. */
#ifndef BH_TRAFFIC_ROWS_H
#define BH_TRAFFIC_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/request.h"

/* The batch (first, linked through batch_next) as one array (bh_rows_t, common/request.h):
 * 0 and *out filled, or a negative errno (-EINVAL: Python decodes it; -ENOMEM). */
int bh_rows_build(const bh_api_t *api, bh_req_t *first, bh_rows_t *out);

/* Rows of a binary member (octet-stream, .npy) for the batch's size accounting;
 * 0 when it is not one the API decodes in C. */
uint32_t bh_rows_count_binary(const bh_api_t *api, const bh_req_t *req);

/* One JSON number (the whole of s[0..len)) as the API's dtype into out: 0, or
 * -EINVAL when Python's json and numpy would not read it as exactly that (not
 * JSON's number grammar, NaN/Infinity, a fraction for an integer dtype, out of
 * its range). For the unit tests. */
int bh_rows_number(const bh_api_t *api, const char *s, size_t len, void *out);

#endif
