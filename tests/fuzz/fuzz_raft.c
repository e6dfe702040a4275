/* libFuzzer target: ELECTION and RAFT headers (decode, re-encode to the same bytes) and whole
 * ELECTION/RAFT messages (raft-id prefix, entry lists) fed to a live simulated 3-node cluster. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/raftstack.h>

#include "protocols/raft/raft.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"

/*
 * Input: byte 0: bits 0..1 pick the receiver (A, B, C; 3 = A), bit 2 the header (ELECTION 520 or
 * RAFT 521), bits 3..4 the sender address (A, B, C or a stranger); byte 1: the header's length
 * (mod 32); then the header bytes, then the payload (raft-id prefix, entries). A header that
 * decodes must encode back to exactly its bytes; the message then goes up into the receiver's
 * ELECTION (which passes RAFT's on), and the world runs 20 ms so answers travel and timers fire.
 */

static const char *const xml_fmt =
    "<config><LOOPBACK/><raft.ELECTION election_min_interval=\"100ms\" "
    "election_max_interval=\"200ms\" heartbeat_interval=\"30ms\"/>"
    "<raft.RAFT raft_id=\"%s\" members=\"A,B,C\" log_class=\"memory\" "
    "resend_interval=\"100ms\"/></config>";

static struct rs_sim *sim;
static struct rs_channel *ch[3];
static struct rs_runtime *rts[3];

static int apply(void *arg, uint64_t index, const void *data, size_t len,
                 struct rs_raft_reply *reply) {
  (void)arg, (void)index;
  rs_raft_reply_set(reply, data, len < 16 ? len : 16);
  return 0;
}
static const struct rs_state_machine sm = {.apply = apply};

static void setup(void) {
  rs_log_set_level(RS_LOG_OFF);
  sim = rs_sim_new(7);
  for (int i = 0; i < 3; i++) {
    char id[2] = {(char)('A' + i), 0}, xml[512];
    snprintf(xml, sizeof(xml), xml_fmt, id);
    rts[i] = rs_sim_runtime_new(sim, id);
    struct rs_channel_opts o = {.config_xml = xml, .name = id, .runtime = rts[i]};
    char err[256];
    if (rs_channel_open(&ch[i], &o, err, sizeof(err)) != 0) abort();
    raft_set_state_machine(raft_find(channel_stack(ch[i])), &sm, NULL);
    if (rs_channel_connect(ch[i], "fuzz") != 0) abort();
  }
  rs_sim_run_for(sim, RS_SEC);
}

static bool check_header(const struct rs_header_type *t, const uint8_t *p, size_t len) {
  _Alignas(8) uint8_t h[RS_HDR_INLINE] = {0};
  struct rs_reader r;
  reader_init(&r, p, len);
  t->read(h, &r);
  if (r.err || r.pos != len) return false;
  struct rs_writer w;
  writer_init_grow(&w, 64);
  t->write(h, &w);
  if (w.err || w.len != len || w.len != t->wire_size(h) || memcmp(w.p, p, len)) abort();
  free(w.p);
  char text[256];
  t->print(h, text, sizeof(text));
  return true;
}

/* Forged entries pile up in the logs: a fresh cluster every RESTART_EVERY inputs bounds memory. */
#define RESTART_EVERY 20000
static void teardown(void) {
  for (int i = 0; i < 3; i++) {
    rs_channel_close(ch[i]);
    rs_runtime_destroy(rts[i]);
  }
  rs_sim_free(sim);
  sim = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  if (sim && ++runs % RESTART_EVERY == 0) teardown();
  if (!sim) setup();
  if (size < 2) return 0;
  int recv = data[0] & 3;
  if (recv == 3) recv = 0;
  uint16_t id = (data[0] & 4) ? 521 : 520;
  int from = (data[0] >> 3) & 3;
  size_t hlen = data[1] % 32;
  if (hlen > size - 2) return 0;
  const struct rs_header_type *t = registry_header_type(id);
  if (!t || !check_header(t, data + 2, hlen)) return 0;
  struct rs_msg *m = rs_msg_new_copy(data + 2 + hlen, size - 2 - hlen);
  if (!m) return 0;
  void *h = rs_msg_put_header(m, t);
  struct rs_reader r;
  reader_init(&r, data + 2, hlen);
  t->read(h, &r);
  m->src = from < 3 ? rs_channel_address(ch[from]) : (struct rs_addr){0x5eed, 0xf00d};
  m->dest = rs_channel_address(ch[recv]);
  struct rs_protocol *p = proto_find(channel_stack(ch[recv])->bottom, "ELECTION");
  p->ops->up_msg(p, m);
  rs_sim_run_for(sim, 20 * RS_MS);
  return 0;
}
