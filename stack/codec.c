/* Bounds-checked cursors: the out-of-line parts. */
#include "stack/codec.h"

#include <stdlib.h>

void writer_init(struct rs_writer *w, void *buf, size_t cap) {
  w->p = buf;
  w->len = 0;
  w->cap = cap;
  w->err = 0;
  w->grow = false;
}

void writer_init_grow(struct rs_writer *w, size_t hint) {
  w->len = 0;
  w->err = 0;
  w->grow = true;
  w->cap = hint ? hint : 64;
  w->p = malloc(w->cap);
  if (!w->p) {
    w->cap = 0;
    w->err = RS_ENOMEM;
  }
}

uint8_t *writer_reserve(struct rs_writer *w, size_t n) {
  if (w->err) return NULL;
  if (n > w->cap - w->len) {
    if (!w->grow) {
      w->err = RS_ETOOBIG;
      return NULL;
    }
    size_t cap = w->cap ? w->cap : 64;
    while (cap - w->len < n) {
      if (cap > SIZE_MAX / 2) {
        w->err = RS_ENOMEM;
        return NULL;
      }
      cap *= 2;
    }
    uint8_t *p = realloc(w->p, cap);
    if (!p) {
      w->err = RS_ENOMEM;
      return NULL;
    }
    w->p = p;
    w->cap = cap;
  }
  uint8_t *d = w->p + w->len;
  w->len += n;
  return d;
}

uint64_t get_varint(struct rs_reader *r) {
  uint64_t v = 0;
  for (unsigned i = 0; i < RS_VARINT_MAX; i++) {
    const uint8_t *q = get_bytes(r, 1);
    if (!q) return 0;
    uint64_t group = *q & 0x7fu;
    if (i == 9 && group > 1) break; /* the 10th byte may carry only bit 63 */
    v |= group << (7 * i);
    if (!(*q & 0x80)) {
      if (i > 0 && group == 0) break; /* non-minimal: a trailing zero group */
      return v;
    }
  }
  reader_fail(r, RS_EMALFORMED);
  return 0;
}

size_t get_len(struct rs_reader *r, size_t max) {
  uint64_t n = get_varint(r);
  if (r->err) return 0;
  if (n > max) {
    reader_fail(r, RS_ETOOBIG);
    return 0;
  }
  if (n > r->len - r->pos) {
    reader_fail(r, RS_EMALFORMED);
    return 0;
  }
  return (size_t)n;
}

void get_str(struct rs_reader *r, char *dst, size_t dstlen, size_t max) {
  if (dstlen) dst[0] = '\0';
  if (max >= dstlen) max = dstlen ? dstlen - 1 : 0;
  size_t n = get_len(r, max);
  const uint8_t *q = get_bytes(r, n);
  if (!q) return;
  if (memchr(q, 0, n)) {
    reader_fail(r, RS_EMALFORMED);
    return;
  }
  memcpy(dst, q, n);
  dst[n] = '\0';
}
