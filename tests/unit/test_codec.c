/* Unit tests of the codec: cursors, varints, addresses and the frame format, with every
 * rejection path of the decoder. */
#include <stdlib.h>
#include <string.h>

#include "stack/addr.h"
#include "stack/codec.h"
#include "stack/protocol.h"
#include "stack/view.h"
#include "stack/wire.h"
#include "tests/lib/testhdr.h"
#include "tests/lib/testlib.h"

static const struct rs_wire_limits limits = {.max_frame = 1 << 20, .max_msgs = 100, .max_payload = 4096};
static const struct rs_addr A = {0x1111111111111111ULL, 0x2222222222222222ULL};
static const struct rs_addr B = {0x3333333333333333ULL, 0x4444444444444444ULL};

/* --- cursors --------------------------------------------------------------------------------- */

/* A header lives inline in the message: a larger type would write over the next header's slot,
 * which shows only on stacks with several headers (the RAFT header once did, at 56 bytes). */
START_TEST(every_header_type_fits_inline) {
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    const struct rs_header_type *h = rs_protocol_registry[i]->header;
    if (h)
      ck_assert_msg(h->size <= RS_HDR_INLINE, "%s: header of %zu bytes over %d",
                    rs_protocol_registry[i]->name, h->size, RS_HDR_INLINE);
  }
  struct rs_header_type big = {.id = 2000, .name = "big", .size = RS_HDR_INLINE + 8};
  ck_assert_int_eq(registry_add_header(&big), RS_EINVAL);
}
END_TEST

START_TEST(fixed_ints_are_big_endian) {
  uint8_t buf[16];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_u16(&w, 0x0102);
  put_u32(&w, 0x03040506);
  put_u64(&w, 0x0708090a0b0c0d0eULL);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, 14);
  const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  ck_assert_mem_eq(buf, want, sizeof(want));
  struct rs_reader r;
  reader_init(&r, buf, w.len);
  ck_assert_uint_eq(get_u16(&r), 0x0102);
  ck_assert_uint_eq(get_u32(&r), 0x03040506);
  ck_assert_uint_eq(get_u64(&r), 0x0708090a0b0c0d0eULL);
  ck_assert_int_eq(r.err, 0);
  ck_assert_uint_eq(reader_remaining(&r), 0);
}
END_TEST

START_TEST(fixed_writer_overflow_is_sticky) {
  uint8_t buf[3];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_u16(&w, 1);
  put_u16(&w, 2); /* does not fit */
  ck_assert_int_eq(w.err, RS_ETOOBIG);
  put_u8(&w, 3); /* would fit, but the error is sticky */
  ck_assert_uint_eq(w.len, 2);
}
END_TEST

START_TEST(growable_writer_grows) {
  struct rs_writer w;
  writer_init_grow(&w, 1);
  for (uint32_t i = 0; i < 1000; i++) put_u32(&w, i);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, 4000);
  struct rs_reader r;
  reader_init(&r, w.p, w.len);
  for (uint32_t i = 0; i < 1000; i++) ck_assert_uint_eq(get_u32(&r), i);
  free(w.p);
}
END_TEST

static const uint64_t varint_values[] = {0, 1, 127, 128, 255, 300, 16383, 16384, 1ULL << 32,
                                         (1ULL << 63) - 1, 1ULL << 63, UINT64_MAX};

START_TEST(varint_round_trip) {
  uint64_t v = varint_values[_i];
  uint8_t buf[RS_VARINT_MAX];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_varint(&w, v);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, varint_size(v));
  struct rs_reader r;
  reader_init(&r, buf, w.len);
  ck_assert_uint_eq(get_varint(&r), v);
  ck_assert_int_eq(r.err, 0);
  ck_assert_uint_eq(reader_remaining(&r), 0);
}
END_TEST

static int varint_error(const uint8_t *bytes, size_t n) {
  struct rs_reader r;
  reader_init(&r, bytes, n);
  uint64_t v = get_varint(&r);
  ck_assert_uint_eq(v, 0);
  return r.err;
}

START_TEST(varint_rejections) {
  const uint8_t truncated[] = {0x80};
  const uint8_t non_minimal[] = {0x80, 0x00};
  const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  const uint8_t overflow[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  ck_assert_int_eq(varint_error(truncated, sizeof(truncated)), RS_EMALFORMED);
  ck_assert_int_eq(varint_error(non_minimal, sizeof(non_minimal)), RS_EMALFORMED);
  ck_assert_int_eq(varint_error(eleven, sizeof(eleven)), RS_EMALFORMED);
  ck_assert_int_eq(varint_error(overflow, sizeof(overflow)), RS_EMALFORMED);
  ck_assert_int_eq(varint_error(NULL, 0), RS_EMALFORMED);
}
END_TEST

START_TEST(lengths_checked_against_max_and_remaining) {
  const uint8_t over_max[] = {0x81, 0x01, 0, 0}; /* 129 > max 100 */
  const uint8_t over_remaining[] = {0x05, 1, 2}; /* 5 announced, 2 there */
  struct rs_reader r;
  reader_init(&r, over_max, sizeof(over_max));
  ck_assert_uint_eq(get_len(&r, 100), 0);
  ck_assert_int_eq(r.err, RS_ETOOBIG);
  reader_init(&r, over_remaining, sizeof(over_remaining));
  ck_assert_uint_eq(get_len(&r, 100), 0);
  ck_assert_int_eq(r.err, RS_EMALFORMED);
  /* Sticky: every later read yields zero. */
  ck_assert_uint_eq(get_u8(&r), 0);
  ck_assert_ptr_null(get_bytes(&r, 1));
}
END_TEST

START_TEST(strings_reject_nul_and_overlength) {
  const uint8_t nul[] = {3, 'a', 0, 'b'};
  const uint8_t longer[] = {5, 'a', 'b', 'c', 'd', 'e'};
  char s[4];
  struct rs_reader r;
  reader_init(&r, nul, sizeof(nul));
  get_str(&r, s, sizeof(s), 3);
  ck_assert_int_eq(r.err, RS_EMALFORMED);
  reader_init(&r, longer, sizeof(longer));
  get_str(&r, s, sizeof(s), 100);
  ck_assert_int_eq(r.err, RS_ETOOBIG);
  ck_assert_str_eq(s, "");
}
END_TEST

START_TEST(addresses_text_and_wire) {
  char buf[RS_ADDR_STRLEN];
  struct rs_addr a = {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, back;
  ck_assert_str_eq(rs_addr_format(&a, buf), "01234567-89ab-cdef-fedc-ba9876543210");
  ck_assert_int_eq(addr_parse(&back, buf), 0);
  ck_assert(rs_addr_eq(&a, &back));
  ck_assert_int_eq(addr_parse(&back, "01234567-89ab-cdef-fedc-ba987654321"), RS_EINVAL);
  ck_assert_int_eq(addr_parse(&back, "0123456789ab-cdef-fedc-ba9876543210x"), RS_EINVAL);

  struct rs_phys p, q;
  ck_assert_int_eq(phys_parse(&p, "127.0.0.1:7800"), 0);
  ck_assert_str_eq(phys_format(&p, buf, sizeof(buf)), "127.0.0.1:7800");
  ck_assert_int_eq(phys_parse(&q, "[::1]:9"), 0);
  ck_assert_str_eq(phys_format(&q, buf, sizeof(buf)), "[::1]:9");
  ck_assert_int_eq(phys_parse(&q, "127.0.0.1:70000"), RS_EINVAL);
  ck_assert_int_eq(phys_parse(&q, "127.0.0.1"), RS_EINVAL);
  ck_assert_int_eq(phys_parse(&q, "nohost:1"), RS_EINVAL);

  uint8_t wire[32];
  struct rs_writer w;
  writer_init(&w, wire, sizeof(wire));
  put_phys(&w, &p);
  ck_assert_uint_eq(w.len, 7); /* family, 4 address bytes, port */
  struct rs_reader r;
  reader_init(&r, wire, w.len);
  q = get_phys(&r);
  ck_assert_int_eq(r.err, 0);
  ck_assert(phys_eq(&p, &q));
  wire[0] = 9; /* unknown family */
  reader_init(&r, wire, w.len);
  get_phys(&r);
  ck_assert_int_eq(r.err, RS_EMALFORMED);
}
END_TEST

/* --- frames ---------------------------------------------------------------------------------- */

static struct rs_msg *msg_with(const char *payload, uint64_t seqno, uint16_t flags) {
  struct rs_msg *m = rs_msg_new_copy(payload, strlen(payload));
  struct testhdr *h = rs_msg_put_header(m, &testhdr_type);
  h->seqno = seqno;
  strcpy(h->tag, "t");
  m->flags = flags;
  return m;
}

/* Encodes the messages into a fresh buffer; returns it (caller unrefs). */
static struct rs_buf *encode(struct rs_msg **msgs, size_t n, const struct rs_addr *dest) {
  struct rs_writer w;
  writer_init_grow(&w, 64);
  wire_encode_frame(&w, "demo", &A, dest, msgs, n);
  ck_assert_int_eq(w.err, 0);
  struct rs_buf *b = rs_buf_new(w.len);
  memcpy(b->data, w.p, w.len);
  free(w.p);
  return b;
}

static int decode(struct rs_buf *b, size_t len, struct rs_frame_info *info, struct rs_batch *out) {
  return wire_decode_frame(b, 0, len, &limits, info, out);
}

START_TEST(single_message_exact_bytes) {
  struct rs_msg *m = rs_msg_new_copy("hi", 2);
  m->flags = RS_MSG_OOB;
  struct rs_buf *b = encode(&m, 1, &B);
  const uint8_t want_head[] = {'R', 'S', 1, 0x00, 4, 'd', 'e', 'm', 'o'};
  ck_assert_uint_eq(b->cap, sizeof(want_head) + 32 + 2 + 1 + 1 + 2);
  ck_assert_mem_eq(b->data, want_head, sizeof(want_head));
  const uint8_t want_tail[] = {0x00, 0x01, 0x00, 0x02, 'h', 'i'}; /* flags, 0 headers, len, payload */
  ck_assert_mem_eq(b->data + sizeof(want_head) + 32, want_tail, sizeof(want_tail));
  ck_assert_uint_eq(wire_msg_size(m), sizeof(want_tail));
  ck_assert_uint_eq(wire_frame_header_size("demo", false, 1), sizeof(want_head) + 32);
  rs_msg_free(m);
  rs_buf_unref(b);
}
END_TEST

START_TEST(batch_round_trip) {
  struct rs_msg *msgs[3] = {msg_with("one", 1, 0), msg_with("", 2, RS_MSG_OOB), msg_with("three", 3, RS_MSG_NO_FC)};
  struct rs_buf *b = encode(msgs, 3, NULL);
  size_t expect = wire_frame_header_size("demo", true, 3);
  for (int i = 0; i < 3; i++) expect += wire_msg_size(msgs[i]);
  ck_assert_uint_eq(b->cap, expect);
  struct rs_frame_info info;
  struct rs_batch batch;
  ck_assert_int_eq(decode(b, b->cap, &info, &batch), 0);
  ck_assert_str_eq(info.cluster, "demo");
  ck_assert_uint_eq(info.flags, RS_FRAME_BATCH | RS_FRAME_MULTICAST);
  ck_assert(rs_addr_eq(&info.src, &A));
  ck_assert_uint_eq(batch.n, 3);
  const char *payloads[] = {"one", "", "three"};
  const uint16_t flags[] = {0, RS_MSG_OOB, RS_MSG_NO_FC};
  int i = 0;
  for (struct rs_msg *m = batch.head; m; m = m->next, i++) {
    ck_assert_uint_eq(m->len, strlen(payloads[i]));
    if (m->len) ck_assert_mem_eq(m->data, payloads[i], m->len);
    ck_assert_uint_eq(m->flags, flags[i]);
    ck_assert(rs_addr_eq(&m->src, &A));
    ck_assert(rs_addr_is_null(&m->dest));
    struct testhdr *h = rs_msg_header(m, TESTHDR_ID);
    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(h->seqno, (uint64_t)i + 1);
    ck_assert_str_eq(h->tag, "t");
    /* Zero copy: payloads point into the frame buffer. */
    if (m->len) ck_assert_ptr_eq(m->buf, b);
  }
  rs_batch_clear(&batch);
  for (int k = 0; k < 3; k++) rs_msg_free(msgs[k]);
  rs_buf_unref(b);
}
END_TEST

START_TEST(unicast_destination_survives) {
  struct rs_msg *m = msg_with("x", 9, 0);
  struct rs_buf *b = encode(&m, 1, &B);
  struct rs_frame_info info;
  struct rs_batch batch;
  ck_assert_int_eq(decode(b, b->cap, &info, &batch), 0);
  ck_assert_uint_eq(info.flags, 0);
  ck_assert(rs_addr_eq(&batch.head->dest, &B));
  rs_batch_clear(&batch);
  rs_msg_free(m);
  rs_buf_unref(b);
}
END_TEST

START_TEST(every_truncation_is_rejected) {
  struct rs_msg *msgs[2] = {msg_with("abc", 1, 0), msg_with("defg", 2, 0)};
  struct rs_buf *b = encode(msgs, 2, &B);
  for (size_t len = 0; len < b->cap; len++) {
    struct rs_frame_info info;
    struct rs_batch batch;
    int rc = decode(b, len, &info, &batch);
    ck_assert_msg(rc == RS_EMALFORMED, "prefix of %zu bytes gave %d", len, rc);
    ck_assert_uint_eq(batch.n, 0);
  }
  for (int k = 0; k < 2; k++) rs_msg_free(msgs[k]);
  rs_buf_unref(b);
}
END_TEST

/* Decodes a copy of b with byte `at` set to v. */
static int decode_patched(struct rs_buf *b, size_t at, uint8_t v, size_t extra) {
  struct rs_buf *c = rs_buf_new(b->cap + extra);
  memcpy(c->data, b->data, b->cap);
  memset(c->data + b->cap, 0, extra);
  c->data[at] = v;
  struct rs_frame_info info;
  struct rs_batch batch;
  int rc = decode(c, c->cap, &info, &batch);
  ck_assert(rc != 0 || batch.n > 0);
  rs_batch_clear(&batch);
  rs_buf_unref(c);
  return rc;
}

START_TEST(header_fields_rejected) {
  struct rs_msg *m = msg_with("x", 1, 0);
  struct rs_buf *b = encode(&m, 1, &B);
  size_t msg_at = 4 + 1 + 4 + 32; /* first byte of the message */
  ck_assert_int_eq(decode_patched(b, 0, 'X', 0), RS_EMALFORMED);          /* magic */
  ck_assert_int_eq(decode_patched(b, 2, 2, 0), RS_EVERSION);              /* version */
  ck_assert_int_eq(decode_patched(b, 3, 0x10, 0), RS_EMALFORMED);         /* unknown flag */
  ck_assert_int_eq(decode_patched(b, 6, 0, 0), RS_EMALFORMED);            /* NUL in cluster name */
  ck_assert_int_eq(decode_patched(b, b->cap - 1, 'y', 1), RS_EMALFORMED); /* trailing byte */
  ck_assert_int_eq(decode_patched(b, msg_at + 2, 9, 0), RS_EMALFORMED);   /* 9 headers > max */
  ck_assert_int_eq(decode_patched(b, msg_at + 4, 0x59, 0), RS_EMALFORMED); /* unknown header id */
  ck_assert_int_eq(decode_patched(b, msg_at + 5, 8, 0), RS_EMALFORMED);    /* header len 8 < 10 */
  /* Sanity: the untouched copy decodes. */
  ck_assert_int_eq(decode_patched(b, 0, 'R', 0), 0);
  rs_msg_free(m);
  rs_buf_unref(b);
}
END_TEST

/* Builds a frame by hand: header with the given flags and count, then raw message bytes. */
static struct rs_buf *raw_frame(uint8_t flags, const struct rs_addr *src, const struct rs_addr *dest,
                                uint64_t count, const uint8_t *body, size_t body_len) {
  struct rs_writer w;
  writer_init_grow(&w, 128);
  put_u8(&w, 'R');
  put_u8(&w, 'S');
  put_u8(&w, 1);
  put_u8(&w, flags);
  put_u8(&w, 1);
  put_u8(&w, 'c');
  put_addr(&w, src);
  if (!(flags & RS_FRAME_MULTICAST)) put_addr(&w, dest);
  if (flags & RS_FRAME_BATCH) put_varint(&w, count);
  put_bytes(&w, body, body_len);
  struct rs_buf *b = rs_buf_new(w.len);
  memcpy(b->data, w.p, w.len);
  free(w.p);
  return b;
}

static int decode_raw(uint8_t flags, const struct rs_addr *src, const struct rs_addr *dest,
                      uint64_t count, const uint8_t *body, size_t len) {
  struct rs_buf *b = raw_frame(flags, src, dest, count, body, len);
  struct rs_frame_info info;
  struct rs_batch batch;
  int rc = decode(b, b->cap, &info, &batch);
  rs_batch_clear(&batch);
  rs_buf_unref(b);
  return rc;
}

START_TEST(frame_level_rejections) {
  const struct rs_addr null = RS_ADDR_NULL;
  const uint8_t empty_msg[] = {0, 0, 0, 0};
  const uint8_t two_empty[] = {0, 0, 0, 0, 0, 0, 0, 0};
  /* Well-formed references. */
  ck_assert_int_eq(decode_raw(RS_FRAME_MULTICAST, &A, NULL, 0, empty_msg, 4), 0);
  ck_assert_int_eq(decode_raw(RS_FRAME_BATCH | RS_FRAME_MULTICAST, &A, NULL, 2, two_empty, 8), 0);
  /* Null sender; unicast to nobody; empty batch; count over max_msgs; count over the frame. */
  ck_assert_int_eq(decode_raw(RS_FRAME_MULTICAST, &null, NULL, 0, empty_msg, 4), RS_EMALFORMED);
  ck_assert_int_eq(decode_raw(0, &A, &null, 0, empty_msg, 4), RS_EMALFORMED);
  ck_assert_int_eq(decode_raw(RS_FRAME_BATCH | RS_FRAME_MULTICAST, &A, NULL, 0, empty_msg, 4), RS_EMALFORMED);
  ck_assert_int_eq(decode_raw(RS_FRAME_BATCH | RS_FRAME_MULTICAST, &A, NULL, 101, two_empty, 8), RS_ETOOBIG);
  ck_assert_int_eq(decode_raw(RS_FRAME_BATCH | RS_FRAME_MULTICAST, &A, NULL, 3, two_empty, 8), RS_EMALFORMED);
  ck_assert_int_eq(decode_raw(RS_FRAME_BATCH | RS_FRAME_MULTICAST, &A, NULL, UINT64_MAX, two_empty, 8), RS_ETOOBIG);
  /* Payload length over max_payload (4096): 0x81 0x20 = 4097. */
  const uint8_t big[] = {0, 0, 0, 0x81, 0x20};
  ck_assert_int_eq(decode_raw(RS_FRAME_MULTICAST, &A, NULL, 0, big, sizeof(big)), RS_ETOOBIG);
  /* A header over 65535 bytes: varint 65536. */
  const uint8_t bighdr[] = {0, 0, 1, 0x02, 0x58, 0x80, 0x80, 0x04};
  ck_assert_int_eq(decode_raw(RS_FRAME_MULTICAST, &A, NULL, 0, bighdr, sizeof(bighdr)), RS_ETOOBIG);
  /* The same header twice. */
  struct rs_msg *m = msg_with("x", 1, 0);
  struct rs_writer w;
  writer_init_grow(&w, 64);
  put_u16(&w, 0);
  put_u8(&w, 2);
  for (int i = 0; i < 2; i++) {
    put_u16(&w, TESTHDR_ID);
    put_varint(&w, testhdr_size(m->hdrs[0].u.bytes));
    testhdr_write(m->hdrs[0].u.bytes, &w);
  }
  put_varint(&w, 0);
  ck_assert_int_eq(decode_raw(RS_FRAME_MULTICAST, &A, NULL, 0, w.p, w.len), RS_EMALFORMED);
  ck_assert_str_eq(wire_last_error(), "duplicate header");
  free(w.p);
  rs_msg_free(m);
}
END_TEST

START_TEST(frame_over_max_frame) {
  static const struct rs_wire_limits tiny = {.max_frame = 16, .max_msgs = 10, .max_payload = 10};
  struct rs_msg *m = msg_with("payload", 1, 0);
  struct rs_buf *b = encode(&m, 1, NULL);
  struct rs_frame_info info;
  struct rs_batch batch;
  ck_assert_int_eq(wire_decode_frame(b, 0, b->cap, &tiny, &info, &batch), RS_ETOOBIG);
  rs_msg_free(m);
  rs_buf_unref(b);
}
END_TEST

START_TEST(message_copy_shares_payload) {
  struct rs_msg *m = msg_with("shared", 5, RS_MSG_OOB);
  struct rs_msg *c = rs_msg_copy(m);
  ck_assert_ptr_eq(c->buf, m->buf);
  ck_assert_uint_eq(atomic_load(&m->buf->refs), 2);
  struct testhdr *h = rs_msg_header(c, TESTHDR_ID);
  ck_assert_uint_eq(h->seqno, 5);
  h->seqno = 6; /* headers are copies */
  ck_assert_uint_eq(((struct testhdr *)rs_msg_header(m, TESTHDR_ID))->seqno, 5);
  rs_msg_remove_header(c, TESTHDR_ID);
  ck_assert_ptr_null(rs_msg_header(c, TESTHDR_ID));
  rs_msg_free(m);
  ck_assert_uint_eq(atomic_load(&c->buf->refs), 1);
  rs_msg_free(c);
}
END_TEST

START_TEST(header_slots_are_bounded) {
  static struct rs_header_type types[RS_MSG_MAX_HDRS + 1];
  struct rs_msg *m = rs_msg_new();
  for (int i = 0; i <= RS_MSG_MAX_HDRS; i++) {
    types[i] = testhdr_type;
    types[i].id = (uint16_t)(700 + i);
    void *h = rs_msg_put_header(m, &types[i]);
    if (i < RS_MSG_MAX_HDRS) ck_assert_ptr_nonnull(h);
    else ck_assert_ptr_null(h);
  }
  rs_msg_free(m);
}
END_TEST

START_TEST(views_and_digests_round_trip) {
  struct rs_addr m[3] = {A, B, {5, 6}};
  const char *names[3] = {"A", "B", NULL};
  struct rs_view_data *v = view_new(&A, 7, 3, m, names);
  v->merge = true;
  char text[128];
  ck_assert_str_eq(view_format(v, text, sizeof(text)),
                   "[A|7] (3) [A, B, 00000000-0000-0005-0000-000000000006]");
  ck_assert_int_eq(view_index(v, &B), 1);
  ck_assert(rs_addr_eq(view_coord(v), &A));
  struct rs_writer w;
  writer_init_grow(&w, 16);
  put_view(&w, v);
  ck_assert_uint_eq(w.len, view_wire_size(v));
  struct rs_reader r;
  reader_init(&r, w.p, w.len);
  struct rs_view_data *back = get_view(&r);
  ck_assert_ptr_nonnull(back);
  ck_assert_int_eq(view_id_cmp(v, back), 0);
  ck_assert(back->merge);
  ck_assert_str_eq(view_format(back, text, sizeof(text)),
                   "[A|7] (3) [A, B, 00000000-0000-0005-0000-000000000006]");
  /* Every truncation fails cleanly. */
  for (size_t len = 0; len < w.len; len++) {
    reader_init(&r, w.p, len);
    ck_assert_ptr_null(get_view(&r));
    ck_assert_int_ne(r.err, 0);
  }
  view_unref(back);
  view_unref(v);
  free(w.p);

  struct rs_digest_entry e[2] = {{A, 10, 12}, {B, 0, 0}};
  struct rs_digest d = {2, e}, d2;
  writer_init_grow(&w, 16);
  put_digest(&w, &d);
  ck_assert_uint_eq(w.len, digest_wire_size(&d));
  reader_init(&r, w.p, w.len);
  get_digest(&r, &d2);
  ck_assert_int_eq(r.err, 0);
  ck_assert_uint_eq(d2.n, 2);
  ck_assert_uint_eq(d2.e[0].delivered, 10);
  ck_assert_uint_eq(d2.e[0].received, 12);
  digest_free(&d2);
  free(w.p);
}
END_TEST

START_TEST(hostile_view_counts_are_refused) {
  uint8_t buf[64] = {0};
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_addr(&w, &A);
  put_varint(&w, 1);
  put_u8(&w, 0);
  put_varint(&w, 4000); /* 4000 members announced, a few bytes present */
  struct rs_reader r;
  reader_init(&r, buf, sizeof(buf));
  ck_assert_ptr_null(get_view(&r));
  ck_assert_int_eq(r.err, RS_EMALFORMED);
  writer_init(&w, buf, sizeof(buf));
  put_addr(&w, &A);
  put_varint(&w, 1);
  put_u8(&w, 0);
  put_varint(&w, 5000); /* over RS_VIEW_MAX_MEMBERS */
  reader_init(&r, buf, sizeof(buf));
  ck_assert_ptr_null(get_view(&r));
  ck_assert_int_eq(r.err, RS_ETOOBIG);
  writer_init(&w, buf, sizeof(buf));
  put_addr(&w, &A);
  put_varint(&w, 1);
  put_u8(&w, 2); /* unknown flag */
  put_varint(&w, 0);
  reader_init(&r, buf, w.len);
  ck_assert_ptr_null(get_view(&r));
  ck_assert_int_eq(r.err, RS_EMALFORMED);
}
END_TEST

static Suite *codec_suite(void) {
  Suite *s = suite_create("codec");
  TCase *tc = tcase_create("cursors");
  tcase_add_test(tc, every_header_type_fits_inline);
  tcase_add_test(tc, fixed_ints_are_big_endian);
  tcase_add_test(tc, fixed_writer_overflow_is_sticky);
  tcase_add_test(tc, growable_writer_grows);
  tcase_add_loop_test(tc, varint_round_trip, 0, sizeof(varint_values) / sizeof(varint_values[0]));
  tcase_add_test(tc, varint_rejections);
  tcase_add_test(tc, lengths_checked_against_max_and_remaining);
  tcase_add_test(tc, strings_reject_nul_and_overlength);
  tcase_add_test(tc, addresses_text_and_wire);
  suite_add_tcase(s, tc);
  tc = tcase_create("frames");
  tcase_add_test(tc, single_message_exact_bytes);
  tcase_add_test(tc, batch_round_trip);
  tcase_add_test(tc, unicast_destination_survives);
  tcase_add_test(tc, every_truncation_is_rejected);
  tcase_add_test(tc, header_fields_rejected);
  tcase_add_test(tc, frame_level_rejections);
  tcase_add_test(tc, frame_over_max_frame);
  tcase_add_test(tc, message_copy_shares_payload);
  tcase_add_test(tc, header_slots_are_bounded);
  tcase_add_test(tc, views_and_digests_round_trip);
  tcase_add_test(tc, hostile_view_counts_are_refused);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  registry_add_header(&testhdr_type);
  return test_run(codec_suite());
}
