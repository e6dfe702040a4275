/* A header type for codec tests and fuzzing: u64 seqno + a short string, id 1100. */
#ifndef RS_TESTS_TESTHDR_H
#define RS_TESTS_TESTHDR_H

#include <stdint.h>
#include <string.h>

#include "stack/codec.h"
#include "stack/msg.h"

#define TESTHDR_ID 1100

struct testhdr {
  uint64_t seqno;
  char tag[16];
};

static inline size_t testhdr_size(const void *h) {
  const struct testhdr *t = h;
  return 8 + varint_size(strlen(t->tag)) + strlen(t->tag);
}
static inline void testhdr_write(const void *h, struct rs_writer *w) {
  const struct testhdr *t = h;
  put_u64(w, t->seqno);
  put_str(w, t->tag);
}
static inline void testhdr_read(void *h, struct rs_reader *r) {
  struct testhdr *t = h;
  t->seqno = get_u64(r);
  get_str(r, t->tag, sizeof(t->tag), sizeof(t->tag) - 1);
}

static const struct rs_header_type testhdr_type = {
    .id = TESTHDR_ID,
    .name = "TEST",
    .size = sizeof(struct testhdr),
    .wire_size = testhdr_size,
    .write = testhdr_write,
    .read = testhdr_read,
};

#endif
