/* Encoding and decoding of the RAFT header, the raft-id prefix and entry lists. */
#include "protocols/raft/raft_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define RAFT_HDR_ID 521

static size_t hdr_wire_size(const void *p) {
  const struct raft_hdr *h = p;
  size_t n = 1 + varint_size(h->term);
  switch (h->type) {
  case RAFT_APPEND_REQ:
    return n + varint_size(h->prev_index) + varint_size(h->prev_term) + varint_size(h->commit) +
           varint_size(h->n);
  case RAFT_APPEND_RSP:
    return n + 1 + varint_size(h->index) + varint_size(h->last) + varint_size(h->prev_index);
  default: return n + varint_size(h->commit);
  }
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct raft_hdr *h = p;
  put_u8(w, h->type);
  put_varint(w, h->term);
  switch (h->type) {
  case RAFT_APPEND_REQ:
    put_varint(w, h->prev_index);
    put_varint(w, h->prev_term);
    put_varint(w, h->commit);
    put_varint(w, h->n);
    break;
  case RAFT_APPEND_RSP:
    put_u8(w, h->flags);
    put_varint(w, h->index);
    put_varint(w, h->last);
    put_varint(w, h->prev_index);
    break;
  default: put_varint(w, h->commit); break;
  }
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct raft_hdr *h = p;
  *h = (struct raft_hdr){0};
  h->type = get_u8(r);
  h->term = get_varint(r);
  switch (h->type) {
  case RAFT_APPEND_REQ: {
    h->prev_index = get_varint(r);
    h->prev_term = get_varint(r);
    h->commit = get_varint(r);
    uint64_t n = get_varint(r);
    if (n > RAFT_MAX_DECODE) reader_fail(r, RS_ETOOBIG);
    h->n = (uint32_t)n;
    break;
  }
  case RAFT_APPEND_RSP:
    h->flags = get_u8(r);
    h->index = get_varint(r);
    h->last = get_varint(r);
    h->prev_index = get_varint(r);
    if (h->flags & ~RAFT_RSP_REJECT) reader_fail(r, RS_EMALFORMED);
    break;
  case RAFT_HEARTBEAT: h->commit = get_varint(r); break;
  default: reader_fail(r, RS_EMALFORMED); break;
  }
  /* Indices and terms stay below 2^63 so that index + n never wraps. */
  if ((h->term | h->prev_index | h->prev_term | h->commit | h->index) >> 63)
    reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct raft_hdr){0};
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct raft_hdr *h = p;
  switch (h->type) {
  case RAFT_APPEND_REQ:
    return snprintf(buf, len,
                    "APPEND_REQ term=%" PRIu64 " prev=%" PRIu64 "/%" PRIu64 " commit=%" PRIu64
                    " n=%" PRIu32,
                    h->term, h->prev_index, h->prev_term, h->commit, h->n);
  case RAFT_APPEND_RSP:
    return snprintf(
        buf, len, "APPEND_RSP term=%" PRIu64 " %s index=%" PRIu64 " last=%" PRIu64 " prev=%" PRIu64,
        h->term, h->flags & RAFT_RSP_REJECT ? "reject" : "ok", h->index, h->last, h->prev_index);
  default:
    return snprintf(buf, len, "HEARTBEAT term=%" PRIu64 " commit=%" PRIu64, h->term, h->commit);
  }
}

const struct rs_header_type raft_header_type = {
    .id = RAFT_HDR_ID,
    .name = "RAFT",
    .size = sizeof(struct raft_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

size_t raft_ids_size(const char *from, const char *to) {
  size_t a = strlen(from), b = strlen(to);
  return varint_size(a) + a + varint_size(b) + b;
}

void raft_ids_put(struct rs_writer *w, const char *from, const char *to) {
  put_str(w, from);
  put_str(w, to);
}

void raft_ids_get(struct rs_reader *r, char *from, char *to) {
  get_str(r, from, RAFT_ID_MAX + 1, RAFT_ID_MAX);
  get_str(r, to, RAFT_ID_MAX + 1, RAFT_ID_MAX);
  if (!r->err && !from[0]) reader_fail(r, RS_EMALFORMED);
  if (r->err) from[0] = to[0] = '\0';
}

size_t raft_entry_wire_size(const struct raft_entry *e) {
  return varint_size(e->term) + 1 + varint_size(e->len) + e->len;
}

void raft_entry_put(struct rs_writer *w, const struct raft_entry *e) {
  put_varint(w, e->term);
  put_u8(w, e->type);
  put_varint(w, e->len);
  put_bytes(w, e->data, e->len);
}

void raft_entries_get(struct rs_reader *r, struct rs_buf *buf, rs_index first, uint32_t n,
                      struct raft_entry *e) {
  /* Each entry takes at least 3 bytes: a count beyond that is a lie, refused before any work. */
  if (n > reader_remaining(r) / 3) reader_fail(r, RS_EMALFORMED);
  for (uint32_t i = 0; i < n && !r->err; i++) {
    e[i].term = get_varint(r);
    e[i].type = get_u8(r);
    size_t len = get_len(r, UINT32_MAX);
    e[i].data = get_bytes(r, len);
    e[i].len = (uint32_t)len;
    e[i].index = first + i;
    e[i].buf = len ? buf : NULL;
    if (e[i].type < RAFT_ENTRY_COMMAND || e[i].type > RAFT_ENTRY_CONFIG || e[i].term == 0 ||
        e[i].term >> 63)
      reader_fail(r, RS_EMALFORMED);
  }
}
