/* libFuzzer target: the frame decoder. Anything accepted must re-encode to a frame that decodes
 * to the same messages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stack/protocol.h"
#include "stack/wire.h"
#include "tests/lib/testhdr.h"

static const struct rs_wire_limits limits = {.max_frame = 1 << 20, .max_msgs = 4096, .max_payload = 1 << 16};

static void check_same(const struct rs_batch *a, const struct rs_batch *b) {
  if (a->n != b->n) abort();
  for (struct rs_msg *x = a->head, *y = b->head; x; x = x->next, y = y->next) {
    if (x->flags != y->flags || x->len != y->len || x->n_hdrs != y->n_hdrs) abort();
    if (x->len && memcmp(x->data, y->data, x->len)) abort();
    if (!rs_addr_eq(&x->src, &y->src) || !rs_addr_eq(&x->dest, &y->dest)) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  if (!once) {
    registry_add_header(&testhdr_type);
    once = 1;
  }
  struct rs_buf *buf = rs_buf_new(size);
  if (!buf) return 0;
  if (size) memcpy(buf->data, data, size);
  struct rs_frame_info info;
  struct rs_batch batch;
  if (wire_decode_frame(buf, 0, size, &limits, &info, &batch) == 0) {
    struct rs_msg **v = malloc(batch.n * sizeof(*v));
    size_t n = 0;
    for (struct rs_msg *m = batch.head; m; m = m->next) v[n++] = m;
    struct rs_writer w;
    writer_init_grow(&w, size + 16);
    wire_encode_frame(&w, info.cluster, &info.src,
                      (info.flags & RS_FRAME_MULTICAST) ? NULL : &info.dest, v, n);
    if (w.err) abort();
    struct rs_buf *again = rs_buf_new(w.len);
    memcpy(again->data, w.p, w.len);
    struct rs_frame_info info2;
    struct rs_batch batch2;
    if (wire_decode_frame(again, 0, w.len, &limits, &info2, &batch2) != 0) abort();
    check_same(&batch, &batch2);
    rs_batch_clear(&batch2);
    rs_buf_unref(again);
    free(w.p);
    free(v);
    rs_batch_clear(&batch);
  }
  rs_buf_unref(buf);
  return 0;
}
