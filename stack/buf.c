/* Refcounted byte buffers. */
#include "stack/buf.h"

#include <stdlib.h>

struct rs_buf *rs_buf_new(size_t cap) {
  struct rs_buf *b = malloc(sizeof(*b) + (cap ? cap : 1));
  if (!b) return NULL;
  atomic_init(&b->refs, 1);
  b->cap = cap;
  return b;
}

struct rs_buf *rs_buf_ref(struct rs_buf *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void rs_buf_unref(struct rs_buf *b) {
  if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}
