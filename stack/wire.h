/* The frame format: one message or a batch, to one destination or the whole group. */
#ifndef RS_STACK_WIRE_H
#define RS_STACK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "stack/codec.h"
#include "stack/msg.h"

/*
 * Frame (docs/wire-format.md has the full diagram):
 *
 *   0       2       3       4
 *   +-------+-------+-------+---------------+-----------------+------------+-----------+------+
 *   | magic |version| flags | cluster len u8| cluster (bytes) | src (16 B) | [dest 16B]|[count]| msgs
 *   +-------+-------+-------+---------------+-----------------+------------+-----------+------+
 *   magic "RS" (0x52 0x53); flags: 0x01 BATCH (a varint count follows), 0x02 MULTICAST (no dest)
 *
 * Message:
 *   u16 flags | u8 n_headers | n x (u16 protocol id | varint len | header bytes)
 *   | varint payload len | payload
 */

#define RS_WIRE_MAGIC0 0x52
#define RS_WIRE_MAGIC1 0x53
#define RS_WIRE_VERSION 1
#define RS_WIRE_CLUSTER_MAX 255

enum { RS_FRAME_BATCH = 0x01, RS_FRAME_MULTICAST = 0x02, RS_FRAME_FLAGS_ALL = 0x03 };

/* Bytes before the first message: at most this many. */
#define RS_WIRE_FRAME_HDR_MAX (5 + RS_WIRE_CLUSTER_MAX + 32 + RS_VARINT_MAX)
/* Every header fits in this many bytes. */
#define RS_WIRE_HDR_MAX 65535

struct rs_wire_limits {
  size_t max_frame;   /* a frame longer than this is refused */
  size_t max_msgs;    /* messages in one batch */
  size_t max_payload; /* bytes of one message's payload */
};

/* What a frame says about itself. */
struct rs_frame_info {
  uint8_t version;
  uint8_t flags;
  char cluster[RS_WIRE_CLUSTER_MAX + 1];
  struct rs_addr src, dest;
  size_t count;
};

/* Exact encoded size of one message inside a frame. */
size_t wire_msg_size(const struct rs_msg *m);
/* Size of the frame header for this cluster name and destination. */
size_t wire_frame_header_size(const char *cluster, bool multicast, size_t count);

/* Encodes n messages (n >= 1) into one frame; a single message is written without the BATCH
 * flag. dest NULL: multicast. Errors are left in w->err. */
void wire_encode_frame(struct rs_writer *w, const char *cluster, const struct rs_addr *src,
                       const struct rs_addr *dest, struct rs_msg *const *msgs, size_t n);

/* Decodes a frame held in buf[off..off+len). Payloads reference buf (no copy). On success fills
 * info and out (src/dest set on every message) and returns 0; otherwise returns RS_EMALFORMED,
 * RS_ETOOBIG or RS_EVERSION and leaves out empty. `cluster` (may be NULL) is only reported in
 * info, the caller compares. */
int wire_decode_frame(struct rs_buf *buf, size_t off, size_t len,
                      const struct rs_wire_limits *limits, struct rs_frame_info *info,
                      struct rs_batch *out);

/* A reason for the last decode failure, for the counted log line. */
const char *wire_last_error(void);

#endif
