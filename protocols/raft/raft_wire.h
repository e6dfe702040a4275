/* Wire forms shared by ELECTION and RAFT: the RAFT header, the raft-id prefix, entry lists. */
#ifndef RS_PROTOCOLS_RAFT_RAFT_WIRE_H
#define RS_PROTOCOLS_RAFT_RAFT_WIRE_H

#include <stdint.h>

#include "raft/log/log.h"
#include "stack/msg.h"

/*
 * Every ELECTION and RAFT message starts its payload with the raft ids of its sender and of its
 * target (docs/wire-format.md, "Raft id prefix"):
 *
 *   from_len varint | from bytes | to_len varint | to bytes      (each 1..255 bytes)
 *
 * The sender's id lets a receiver learn the address of a member (a restarted node has a new
 * UUID); the target's id lets a message go to the whole group when the target's address is not
 * known yet, and every other member drops it.
 */

/* RAFT header (protocol id 521). Byte layout:
 *
 *   APPEND_REQ (1): type u8 | term varint | prev_index varint | prev_term varint |
 *                   commit varint | n varint                  (n entries follow the id prefix)
 *   APPEND_RSP (2): type u8 | term varint | flags u8 (0x01 REJECT) | index varint |
 *                   last varint | prev_index varint
 *   HEARTBEAT (3):  type u8 | term varint | commit varint
 *
 * APPEND_RSP: index is the follower's ack (highest index it holds durably that matches the
 * leader) or, with REJECT, the index the leader should go back to; last is the follower's last
 * index; prev_index is the prev_index of the request rejected (0 for an ack).
 * Entries: n x (term varint | type u8 | len varint | len bytes), at indices prev_index + 1 ...
 */
enum raft_msg_type { RAFT_APPEND_REQ = 1, RAFT_APPEND_RSP = 2, RAFT_HEARTBEAT = 3 };
#define RAFT_RSP_REJECT 0x01
#define RAFT_MAX_DECODE 65536u /* entries in one AppendEntries a receiver accepts */

struct raft_hdr {
  rs_term term;
  rs_index prev_index;
  rs_term prev_term;
  union {
    rs_index commit; /* REQ, HEARTBEAT */
    rs_index last;   /* RSP */
  };
  rs_index index; /* RSP */
  uint32_t n;     /* REQ */
  uint8_t type;
  uint8_t flags;
};
_Static_assert(sizeof(struct raft_hdr) <= RS_HDR_INLINE, "RAFT header must fit inline");

extern const struct rs_header_type raft_header_type;

/* The id prefix. Writes from/to; `to` may be "" (anyone). */
size_t raft_ids_size(const char *from, const char *to);
void raft_ids_put(struct rs_writer *w, const char *from, const char *to);
/* Reads the prefix into from/to (RAFT_ID_MAX + 1 bytes each); errors go to r->err. */
void raft_ids_get(struct rs_reader *r, char *from, char *to);

/* Encoded size of one entry, and the entry list decoder: fills e[0..n) with slices of buf
 * (no copy, no reference taken) at indices first.. ; errors go to r->err. */
size_t raft_entry_wire_size(const struct raft_entry *e);
void raft_entry_put(struct rs_writer *w, const struct raft_entry *e);
void raft_entries_get(struct rs_reader *r, struct rs_buf *buf, rs_index first, uint32_t n,
                      struct raft_entry *e);

#endif
