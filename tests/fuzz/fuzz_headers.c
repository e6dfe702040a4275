/* libFuzzer target: every registered header type's decoder. The first byte picks the type; the
 * rest is the header's bytes. Whatever decodes must re-encode to exactly wire_size bytes and
 * decode again to the same encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stack/protocol.h"
#include "tests/lib/testhdr.h"

static const struct rs_header_type *types[2048];
static size_t n_types;

static void collect(void) {
  registry_add_header(&testhdr_type);
  for (uint16_t id = 0; id < 2048; id++) {
    const struct rs_header_type *t = registry_header_type(id);
    if (t) types[n_types++] = t;
  }
}

/* Decodes bytes into h (zeroed storage); true when the header took exactly all of them. */
static bool decode(const struct rs_header_type *t, void *h, const uint8_t *p, size_t len) {
  struct rs_reader r;
  memset(h, 0, RS_HDR_INLINE);
  reader_init(&r, p, len);
  t->read(h, &r);
  return !r.err && r.pos == r.len;
}

static void encode(const struct rs_header_type *t, const void *h, struct rs_writer *w) {
  writer_init_grow(w, 64);
  t->write(h, w);
  if (w->err || w->len != t->wire_size(h)) abort();
}

static void release(const struct rs_header_type *t, void *h) {
  if (t->free) t->free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!n_types) collect();
  if (size < 1 || !n_types) return 0;
  const struct rs_header_type *t = types[data[0] % n_types];
  if (t->size > RS_HDR_INLINE) abort();
  _Alignas(8) uint8_t h1[RS_HDR_INLINE], h2[RS_HDR_INLINE];
  bool ok = decode(t, h1, data + 1, size - 1);
  if (ok) {
    struct rs_writer w1, w2;
    encode(t, h1, &w1);
    if (!decode(t, h2, w1.p, w1.len)) abort();
    encode(t, h2, &w2);
    if (w1.len != w2.len || memcmp(w1.p, w2.p, w1.len)) abort();
    if (t->print) {
      char text[256];
      t->print(h2, text, sizeof(text));
    }
    release(t, h2);
    free(w1.p);
    free(w2.p);
  }
  release(t, h1);
  return 0;
}
