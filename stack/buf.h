/* Refcounted byte buffers: payloads reference slices of them so layers never copy payload bytes. */
#ifndef RS_STACK_BUF_H
#define RS_STACK_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct rs_buf {
  atomic_uint refs;
  size_t cap;
  uint8_t data[];
};

/* A buffer with room for cap bytes and one reference (the caller's). NULL when out of memory. */
struct rs_buf *rs_buf_new(size_t cap);
/* Takes another reference; returns b. */
struct rs_buf *rs_buf_ref(struct rs_buf *b);
/* Drops a reference; frees at zero. NULL is ignored. */
void rs_buf_unref(struct rs_buf *b);

#endif
