/* Shared public types: addresses, views, the export macro. */
#ifndef RAFTSTACK_TYPES_H
#define RAFTSTACK_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RS_BUILDING_LIBRARY)
#define RS_API __attribute__((visibility("default")))
#else
#define RS_API
#endif

/* A logical address: a random 128-bit UUID made at connect (RFC 4122 version 4). The all-zero
 * address is "no address" and, as a destination, means the whole group. */
struct rs_addr {
  uint64_t hi;
  uint64_t lo;
};

#define RS_ADDR_NULL ((struct rs_addr){0, 0})
#define RS_ADDR_STRLEN 37 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" + NUL */

static inline bool rs_addr_is_null(const struct rs_addr *a) { return a->hi == 0 && a->lo == 0; }
static inline bool rs_addr_eq(const struct rs_addr *a, const struct rs_addr *b) {
  return a->hi == b->hi && a->lo == b->lo;
}
/* Total order (hi, then lo, unsigned): the order GMS uses where it needs one. */
static inline int rs_addr_cmp(const struct rs_addr *a, const struct rs_addr *b) {
  if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
  if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
  return 0;
}

/* Writes the canonical UUID text into buf (at least RS_ADDR_STRLEN bytes); returns buf. */
RS_API char *rs_addr_format(const struct rs_addr *a, char *buf);

/* Message flags, with JGroups' meanings and bit values. */
enum rs_msg_flag {
  RS_MSG_OOB = 1u << 0,            /* delivered as soon as it arrives, not in sender order */
  RS_MSG_DONT_BUNDLE = 1u << 1,    /* sent in a frame of its own */
  RS_MSG_NO_FC = 1u << 2,          /* not subject to flow control */
  RS_MSG_NO_RELIABILITY = 1u << 4, /* no retransmission, no ordering */
};
/* Transient flags: local only, never on the wire. */
enum rs_msg_tflag {
  RS_MSG_DONT_LOOPBACK = 1u << 0, /* a multicast is not delivered to its own sender */
};

#ifdef __cplusplus
}
#endif
#endif
