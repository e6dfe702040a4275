/* Messages: allocation, headers, copies. */
#include "stack/msg.h"

#include <stdlib.h>
#include <string.h>

struct rs_msg *rs_msg_new(void) {
  struct rs_msg *m = malloc(sizeof(*m));
  if (!m) return NULL;
  m->next = NULL;
  m->dest = RS_ADDR_NULL;
  m->src = RS_ADDR_NULL;
  m->flags = 0;
  m->tflags = 0;
  m->n_hdrs = 0;
  m->buf = NULL;
  m->data = NULL;
  m->len = 0;
  return m;
}

struct rs_msg *rs_msg_new_copy(const void *data, size_t len) {
  struct rs_msg *m = rs_msg_new();
  if (!m || !len) return m;
  m->buf = rs_buf_new(len);
  if (!m->buf) {
    free(m);
    return NULL;
  }
  memcpy(m->buf->data, data, len);
  m->data = m->buf->data;
  m->len = len;
  return m;
}

struct rs_msg *rs_msg_new_slice(struct rs_buf *buf, size_t off, size_t len) {
  struct rs_msg *m = rs_msg_new();
  if (!m || !len) return m;
  m->buf = rs_buf_ref(buf);
  m->data = buf->data + off;
  m->len = len;
  return m;
}

static void hdr_release(struct rs_hdr *h) {
  if (h->type->free) h->type->free(h->u.bytes);
}

void rs_msg_free(struct rs_msg *m) {
  if (!m) return;
  for (unsigned i = 0; i < m->n_hdrs; i++) hdr_release(&m->hdrs[i]);
  rs_buf_unref(m->buf);
  free(m);
}

struct rs_msg *rs_msg_copy(const struct rs_msg *m) {
  struct rs_msg *c = malloc(sizeof(*c));
  if (!c) return NULL;
  *c = *m;
  c->next = NULL;
  c->n_hdrs = 0;
  for (unsigned i = 0; i < m->n_hdrs; i++) {
    const struct rs_hdr *h = &m->hdrs[i];
    c->hdrs[i].type = h->type;
    if (h->type->copy) {
      if (h->type->copy(c->hdrs[i].u.bytes, h->u.bytes) != 0) {
        c->buf = NULL;
        rs_msg_free(c);
        return NULL;
      }
    } else {
      memcpy(c->hdrs[i].u.bytes, h->u.bytes, h->type->size);
    }
    c->n_hdrs++;
  }
  if (c->buf) rs_buf_ref(c->buf);
  return c;
}

void *rs_msg_put_header(struct rs_msg *m, const struct rs_header_type *type) {
  struct rs_hdr *h = NULL;
  for (unsigned i = 0; i < m->n_hdrs; i++)
    if (m->hdrs[i].type->id == type->id) {
      h = &m->hdrs[i];
      hdr_release(h);
      break;
    }
  if (!h) {
    if (m->n_hdrs == RS_MSG_MAX_HDRS) return NULL;
    h = &m->hdrs[m->n_hdrs++];
  }
  h->type = type;
  memset(h->u.bytes, 0, sizeof(h->u.bytes));
  return h->u.bytes;
}

void *rs_msg_header(const struct rs_msg *m, uint16_t id) {
  for (unsigned i = 0; i < m->n_hdrs; i++)
    if (m->hdrs[i].type->id == id) return (void *)m->hdrs[i].u.bytes;
  return NULL;
}

void rs_msg_remove_header(struct rs_msg *m, uint16_t id) {
  for (unsigned i = 0; i < m->n_hdrs; i++)
    if (m->hdrs[i].type->id == id) {
      hdr_release(&m->hdrs[i]);
      memmove(&m->hdrs[i], &m->hdrs[i + 1], (m->n_hdrs - i - 1) * sizeof(m->hdrs[0]));
      m->n_hdrs--;
      return;
    }
}

void rs_batch_clear(struct rs_batch *b) {
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) rs_msg_free(m);
}
