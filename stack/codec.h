/* Bounds-checked cursors for encoding and decoding: big-endian integers, varints, bytes. */
#ifndef RS_STACK_CODEC_H
#define RS_STACK_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <raftstack/errors.h>
#include <raftstack/types.h>

/*
 * Writer: over a caller's fixed buffer, or growable (heap). A write that does not fit sets a
 * sticky error and is dropped; check w->err once at the end.
 * Reader: every read checks what remains; the first failure sets a sticky error code (RS_E*),
 * and every later read returns zero. Decoders read everything, then check r->err once.
 */
struct rs_writer {
  uint8_t *p;
  size_t len, cap;
  int err;     /* 0 or RS_ENOMEM / RS_ETOOBIG */
  bool grow;   /* heap buffer owned by the writer */
};

struct rs_reader {
  const uint8_t *p;
  size_t len, pos;
  int err; /* 0 or RS_EMALFORMED / RS_ETOOBIG */
};

#define RS_VARINT_MAX 10

void writer_init(struct rs_writer *w, void *buf, size_t cap);
/* A growable writer starting with `hint` bytes; free w->p with free() when done. */
void writer_init_grow(struct rs_writer *w, size_t hint);
/* Makes room for n more bytes; returns a pointer to them or NULL (error set). */
uint8_t *writer_reserve(struct rs_writer *w, size_t n);

static inline void put_bytes(struct rs_writer *w, const void *src, size_t n) {
  uint8_t *d = writer_reserve(w, n);
  if (d && n) memcpy(d, src, n);
}
static inline void put_u8(struct rs_writer *w, uint8_t v) { put_bytes(w, &v, 1); }
static inline void put_u16(struct rs_writer *w, uint16_t v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  put_bytes(w, b, 2);
}
static inline void put_u32(struct rs_writer *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put_bytes(w, b, 4);
}
static inline void put_u64(struct rs_writer *w, uint64_t v) {
  put_u32(w, (uint32_t)(v >> 32));
  put_u32(w, (uint32_t)v);
}
/* Unsigned LEB128: 7 bits a byte, low group first, high bit = more follows. */
static inline void put_varint(struct rs_writer *w, uint64_t v) {
  uint8_t b[RS_VARINT_MAX];
  size_t n = 0;
  do {
    b[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) b[n] |= 0x80;
    n++;
  } while (v);
  put_bytes(w, b, n);
}
static inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}
static inline void put_addr(struct rs_writer *w, const struct rs_addr *a) {
  put_u64(w, a->hi);
  put_u64(w, a->lo);
}
/* A string: varint length + bytes (no NUL). */
static inline void put_str(struct rs_writer *w, const char *s) {
  size_t n = s ? strlen(s) : 0;
  put_varint(w, n);
  put_bytes(w, s, n);
}

static inline void reader_init(struct rs_reader *r, const void *p, size_t len) {
  r->p = p;
  r->len = len;
  r->pos = 0;
  r->err = 0;
}
static inline size_t reader_remaining(const struct rs_reader *r) {
  return r->err ? 0 : r->len - r->pos;
}
static inline void reader_fail(struct rs_reader *r, int err) {
  if (!r->err) r->err = err;
}
/* Returns a pointer to the next n bytes and advances, or NULL (error set). */
static inline const uint8_t *get_bytes(struct rs_reader *r, size_t n) {
  if (r->err) return NULL;
  if (n > r->len - r->pos) {
    r->err = RS_EMALFORMED;
    return NULL;
  }
  const uint8_t *q = r->p + r->pos;
  r->pos += n;
  return q;
}
static inline uint8_t get_u8(struct rs_reader *r) {
  const uint8_t *q = get_bytes(r, 1);
  return q ? q[0] : 0;
}
static inline uint16_t get_u16(struct rs_reader *r) {
  const uint8_t *q = get_bytes(r, 2);
  return q ? (uint16_t)((q[0] << 8) | q[1]) : 0;
}
static inline uint32_t get_u32(struct rs_reader *r) {
  const uint8_t *q = get_bytes(r, 4);
  return q ? ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3] : 0;
}
static inline uint64_t get_u64(struct rs_reader *r) {
  uint64_t hi = get_u32(r);
  return (hi << 32) | get_u32(r);
}
/* Rejects truncation, more than 10 bytes, overflow past 64 bits, and non-minimal encodings
 * (so every value has exactly one encoding). */
uint64_t get_varint(struct rs_reader *r);
/* A length: a varint checked against `max` (RS_ETOOBIG) and against what remains
 * (RS_EMALFORMED). */
size_t get_len(struct rs_reader *r, size_t max);
static inline struct rs_addr get_addr(struct rs_reader *r) {
  struct rs_addr a;
  a.hi = get_u64(r);
  a.lo = get_u64(r);
  return a;
}
/* A string of at most max bytes copied into dst (dstlen > max), NUL-terminated; embedded NULs
 * are malformed. */
void get_str(struct rs_reader *r, char *dst, size_t dstlen, size_t max);

#endif
