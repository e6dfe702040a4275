/* Messages: addresses, flags, protocol headers and a payload slice of a refcounted buffer. */
#ifndef RS_STACK_MSG_H
#define RS_STACK_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raftstack/types.h>

#include "stack/buf.h"
#include "stack/codec.h"

#define RS_MSG_MAX_HDRS 8
#define RS_HDR_INLINE 48

/*
 * A header type, registered by the protocol that adds it; its id is the protocol's id, a wire
 * constant. A header value lives inline in the message (at most RS_HDR_INLINE bytes); a header
 * that needs more keeps a pointer and supplies copy/free.
 */
struct rs_header_type {
  uint16_t id;
  const char *name;
  size_t size;                                      /* of the in-memory struct */
  size_t (*wire_size)(const void *h);               /* exact encoded length */
  void (*write)(const void *h, struct rs_writer *w);
  /* Decodes from exactly the header's bytes into zeroed storage; errors go to r->err. On error
   * the storage must still be safe to pass to free() (tests/fuzz/fuzz_headers.c checks it). */
  void (*read)(void *h, struct rs_reader *r);
  int (*copy)(void *dst, const void *src); /* optional: deep copy (default: bytes) */
  void (*free)(void *h);                   /* optional */
  int (*print)(const void *h, char *buf, size_t len); /* optional */
};

struct rs_hdr {
  const struct rs_header_type *type;
  union {
    uint8_t bytes[RS_HDR_INLINE];
    uint64_t align;
  } u;
};

struct rs_msg {
  struct rs_msg *next; /* link in a batch or a queue */
  struct rs_addr dest; /* null: the whole group */
  struct rs_addr src;
  uint16_t flags;  /* RS_MSG_* (wire) */
  uint8_t tflags;  /* RS_MSG_DONT_LOOPBACK ... (local) */
  uint8_t n_hdrs;
  struct rs_hdr hdrs[RS_MSG_MAX_HDRS];
  struct rs_buf *buf; /* owns one reference, or NULL for an empty payload */
  const uint8_t *data;
  size_t len;
};

/* An empty message (no payload, no headers). NULL when out of memory. */
struct rs_msg *rs_msg_new(void);
/* A message whose payload is a copy of data[0..len). */
struct rs_msg *rs_msg_new_copy(const void *data, size_t len);
/* A message whose payload is buf[off..off+len); takes a new reference to buf. */
struct rs_msg *rs_msg_new_slice(struct rs_buf *buf, size_t off, size_t len);
/* Frees the message, its headers and its payload reference. NULL is ignored. */
void rs_msg_free(struct rs_msg *m);
/* A copy sharing the payload buffer, with its own copies of the headers. */
struct rs_msg *rs_msg_copy(const struct rs_msg *m);

/* Adds a header for type->id, replacing an existing one; returns the inline storage to fill
 * (zeroed), or NULL when the message already has RS_MSG_MAX_HDRS headers. */
void *rs_msg_put_header(struct rs_msg *m, const struct rs_header_type *type);
/* The header of protocol `id`, or NULL. */
void *rs_msg_header(const struct rs_msg *m, uint16_t id);
void rs_msg_remove_header(struct rs_msg *m, uint16_t id);

static inline bool rs_msg_is_multicast(const struct rs_msg *m) { return rs_addr_is_null(&m->dest); }

/* A list of messages with one sender and one destination, as received in a batch frame. */
struct rs_batch {
  struct rs_addr src, dest; /* dest null: multicast */
  struct rs_msg *head, *tail;
  size_t n;
};

static inline void rs_batch_init(struct rs_batch *b) {
  b->src = RS_ADDR_NULL;
  b->dest = RS_ADDR_NULL;
  b->head = b->tail = NULL;
  b->n = 0;
}
static inline void rs_batch_add(struct rs_batch *b, struct rs_msg *m) {
  m->next = NULL;
  if (b->tail) b->tail->next = m;
  else b->head = m;
  b->tail = m;
  b->n++;
}
/* Detaches and returns the first message, or NULL. */
static inline struct rs_msg *rs_batch_pop(struct rs_batch *b) {
  struct rs_msg *m = b->head;
  if (!m) return NULL;
  b->head = m->next;
  if (!b->head) b->tail = NULL;
  m->next = NULL;
  b->n--;
  return m;
}
void rs_batch_clear(struct rs_batch *b);

#endif
