/* The frame codec: encoding and a decoder that checks every length. */
#include "stack/wire.h"

#include <string.h>

#include "stack/protocol.h"

static _Thread_local const char *last_error = "";

const char *wire_last_error(void) { return last_error; }

size_t wire_msg_size(const struct rs_msg *m) {
  size_t n = 2 + 1;
  for (unsigned i = 0; i < m->n_hdrs; i++) {
    size_t h = m->hdrs[i].type->wire_size(m->hdrs[i].u.bytes);
    n += 2 + varint_size(h) + h;
  }
  return n + varint_size(m->len) + m->len;
}

size_t wire_frame_header_size(const char *cluster, bool multicast, size_t count) {
  size_t n = 5 + strlen(cluster) + 16 + (multicast ? 0 : 16);
  return count > 1 ? n + varint_size(count) : n;
}

static void encode_msg(struct rs_writer *w, const struct rs_msg *m) {
  put_u16(w, m->flags);
  put_u8(w, m->n_hdrs);
  for (unsigned i = 0; i < m->n_hdrs; i++) {
    const struct rs_hdr *h = &m->hdrs[i];
    size_t len = h->type->wire_size(h->u.bytes);
    put_u16(w, h->type->id);
    put_varint(w, len);
    size_t before = w->len;
    h->type->write(h->u.bytes, w);
    /* A header that writes other than it announced would corrupt every later field. */
    if (!w->err && w->len - before != len) w->err = RS_EINVAL;
  }
  put_varint(w, m->len);
  put_bytes(w, m->data, m->len);
}

void wire_encode_frame(struct rs_writer *w, const char *cluster, const struct rs_addr *src,
                       const struct rs_addr *dest, struct rs_msg *const *msgs, size_t n) {
  size_t clen = strlen(cluster);
  bool multicast = !dest || rs_addr_is_null(dest);
  if (clen > RS_WIRE_CLUSTER_MAX || n == 0) {
    w->err = RS_EINVAL;
    return;
  }
  put_u8(w, RS_WIRE_MAGIC0);
  put_u8(w, RS_WIRE_MAGIC1);
  put_u8(w, RS_WIRE_VERSION);
  put_u8(w, (uint8_t)((n > 1 ? RS_FRAME_BATCH : 0) | (multicast ? RS_FRAME_MULTICAST : 0)));
  put_u8(w, (uint8_t)clen);
  put_bytes(w, cluster, clen);
  put_addr(w, src);
  if (!multicast) put_addr(w, dest);
  if (n > 1) put_varint(w, n);
  for (size_t i = 0; i < n; i++) encode_msg(w, msgs[i]);
}

static int fail(const char *why, int err) {
  last_error = why;
  return err;
}

/* Decodes one message; on failure returns NULL with r->err set and last_error saying why. */
static struct rs_msg *decode_msg(struct rs_reader *r, struct rs_buf *buf,
                                 const struct rs_wire_limits *limits) {
  uint16_t flags = get_u16(r);
  unsigned n_hdrs = get_u8(r);
  if (r->err) return (void)fail("truncated message header", 0), NULL;
  if (n_hdrs > RS_MSG_MAX_HDRS) {
    reader_fail(r, RS_EMALFORMED);
    return (void)fail("too many headers", 0), NULL;
  }
  struct rs_msg *m = rs_msg_new();
  if (!m) {
    reader_fail(r, RS_ENOMEM);
    return NULL;
  }
  m->flags = flags;
  for (unsigned i = 0; i < n_hdrs; i++) {
    uint16_t id = get_u16(r);
    size_t len = get_len(r, RS_WIRE_HDR_MAX);
    const uint8_t *bytes = get_bytes(r, len);
    if (r->err) {
      fail(r->err == RS_ETOOBIG ? "header over 65535 bytes" : "truncated header", 0);
      goto err;
    }
    const struct rs_header_type *type = registry_header_type(id);
    if (!type) {
      reader_fail(r, RS_EMALFORMED);
      fail("unknown header id", 0);
      goto err;
    }
    if (rs_msg_header(m, id)) {
      reader_fail(r, RS_EMALFORMED);
      fail("duplicate header", 0);
      goto err;
    }
    void *h = rs_msg_put_header(m, type);
    struct rs_reader hr;
    reader_init(&hr, bytes, len);
    type->read(h, &hr);
    if (!hr.err && hr.pos != hr.len) hr.err = RS_EMALFORMED;
    if (hr.err) {
      /* The header was not fully read: release only what read() set up successfully. */
      reader_fail(r, hr.err);
      fail("malformed header", 0);
      goto err;
    }
  }
  size_t plen = get_len(r, limits->max_payload);
  const uint8_t *payload = get_bytes(r, plen);
  if (r->err) {
    fail(r->err == RS_ETOOBIG ? "payload over max_payload" : "truncated payload", 0);
    goto err;
  }
  if (plen) {
    m->buf = rs_buf_ref(buf);
    m->data = payload;
    m->len = plen;
  }
  return m;
err:
  rs_msg_free(m);
  return NULL;
}

int wire_decode_frame(struct rs_buf *buf, size_t off, size_t len,
                      const struct rs_wire_limits *limits, struct rs_frame_info *info,
                      struct rs_batch *out) {
  struct rs_reader r;
  rs_batch_init(out);
  if (len > limits->max_frame) return fail("frame over max_frame", RS_ETOOBIG);
  reader_init(&r, buf->data + off, len);
  uint8_t m0 = get_u8(&r), m1 = get_u8(&r);
  if (r.err || m0 != RS_WIRE_MAGIC0 || m1 != RS_WIRE_MAGIC1)
    return fail("bad magic (not a raftstack frame)", RS_EMALFORMED);
  info->version = get_u8(&r);
  if (r.err) return fail("truncated frame header", RS_EMALFORMED);
  if (info->version != RS_WIRE_VERSION) return fail("unsupported version", RS_EVERSION);
  info->flags = get_u8(&r);
  if (info->flags & ~RS_FRAME_FLAGS_ALL) return fail("unknown frame flags", RS_EMALFORMED);
  size_t clen = get_u8(&r);
  const uint8_t *cname = get_bytes(&r, clen);
  if (!cname) return fail("truncated cluster name", RS_EMALFORMED);
  if (memchr(cname, 0, clen)) return fail("NUL in cluster name", RS_EMALFORMED);
  memcpy(info->cluster, cname, clen);
  info->cluster[clen] = '\0';
  info->src = get_addr(&r);
  info->dest = RS_ADDR_NULL;
  if (!(info->flags & RS_FRAME_MULTICAST)) info->dest = get_addr(&r);
  info->count = 1;
  if (info->flags & RS_FRAME_BATCH) info->count = (size_t)get_varint(&r);
  if (r.err) return fail("truncated frame header", RS_EMALFORMED);
  if (rs_addr_is_null(&info->src)) return fail("null sender", RS_EMALFORMED);
  if (!(info->flags & RS_FRAME_MULTICAST) && rs_addr_is_null(&info->dest))
    return fail("null destination in a unicast frame", RS_EMALFORMED);
  if (info->count == 0) return fail("empty batch", RS_EMALFORMED);
  if (info->count > limits->max_msgs) return fail("batch over max_msgs", RS_ETOOBIG);
  /* Each message takes at least 4 bytes: a count the frame cannot hold is a lie. */
  if (info->count > reader_remaining(&r) / 4) return fail("batch count exceeds frame", RS_EMALFORMED);
  out->src = info->src;
  out->dest = info->dest;
  for (size_t i = 0; i < info->count; i++) {
    struct rs_msg *m = decode_msg(&r, buf, limits);
    if (!m) {
      rs_batch_clear(out);
      return r.err ? r.err : RS_EMALFORMED;
    }
    m->src = info->src;
    m->dest = info->dest;
    rs_batch_add(out, m);
  }
  if (reader_remaining(&r) != 0) {
    rs_batch_clear(out);
    return fail("trailing bytes after the last message", RS_EMALFORMED);
  }
  return 0;
}
