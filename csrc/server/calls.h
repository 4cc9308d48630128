/* Outbound calls to dependencies on the I/O thread (server/calls.c). */
#ifndef BH_SERVER_CALLS_H
#define BH_SERVER_CALLS_H

#include "common/request.h"

struct bh_io;

/* One client per dependency the worker registered; 0 or a negative errno. */
int bh_calls_start(struct bh_io *io);
/* Python's BH_OUT_CALL message: the request goes out; its response comes back
 * to Python as a BH_IN_RESPONSE entry carrying msg->req. A streamed call
 * (req->call_stream) first sends its head and body bytes as they arrive, as
 * BH_IN_RESPONSE_DATA entries of their own; the BH_IN_RESPONSE that ends it
 * has no body. Takes msg. */
void bh_calls_send(struct bh_io *io, bh_out_t *msg);
/* Python's BH_OUT_CALL_CANCEL: the call still in flight is aborted (its
 * response, -ECANCELED, still comes back). Takes msg. */
void bh_calls_cancel(struct bh_io *io, bh_out_t *msg);
/* Python's BH_OUT_CALL_ACK: it consumed that many bytes of a streamed call;
 * a call paused for back-pressure reads again once few are left. Takes msg. */
void bh_calls_ack(struct bh_io *io, bh_out_t *msg);
/* At the end: pending calls fail (-ECANCELED), the clients close. */
void bh_calls_close(struct bh_io *io);

#endif
