/* DISCARD's control surface for tests and tools (call on the stack's loop thread). */
#ifndef RS_PROTOCOLS_DISCARD_H
#define RS_PROTOCOLS_DISCARD_H

#include <stdbool.h>

#include "stack/protocol.h"

/* Drop every message to and from other members (a node cut off from all). */
void discard_set_all(struct rs_protocol *p, bool on);
/* Drop messages from `addr` (received) and to it (sent). */
int discard_ignore(struct rs_protocol *p, const struct rs_addr *addr);
void discard_clear_ignored(struct rs_protocol *p);
/* Fractions in [0, 1] of received and sent messages dropped at random. */
void discard_set_rates(struct rs_protocol *p, double up, double down);

#endif
