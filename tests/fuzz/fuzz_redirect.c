/* libFuzzer target: REDIRECT headers (decode, and re-encode to the same bytes) and REDIRECT
 * requests and responses with arbitrary ids, statuses, payloads and senders, fed to the leader
 * and a follower of a live simulated 3-node Raft cluster. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/raftstack.h>

#include "protocols/raft/raft.h"
#include "protocols/raft/redirect.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"

/*
 * Input: byte 0: bit 0 picks the receiver (the leader or a follower), bits 1..2 the sender (the
 * other two members, the receiver itself, or a stranger), bit 3 makes the receiver forward a
 * request of its own first (so that responses can match one); byte 1: the header's length (mod 16);
 * then the header bytes, then the payload. A header that decodes must encode back to exactly
 * its bytes (every value has one encoding); the message then goes up into the receiver's
 * REDIRECT, and the world runs 20 ms of virtual time so answers travel and timers fire.
 */

static const char *const xml_fmt =
    "<config><LOOPBACK/><raft.ELECTION election_min_interval=\"100ms\" "
    "election_max_interval=\"200ms\" heartbeat_interval=\"30ms\"/>"
    "<raft.RAFT raft_id=\"%s\" members=\"A,B,C\" log_class=\"memory\"/>"
    "<raft.REDIRECT leader_change_timeout=\"100ms\" max_pending=\"64\"/></config>";

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

static bool has_leader(void *arg) {
  (void)arg;
  for (int i = 0; i < 3; i++)
    if (raft_role(raft_find(channel_stack(ch[i]))) == RS_RAFT_LEADER) return true;
  return false;
}

static void setup(void) {
  rs_log_set_level(RS_LOG_OFF);
  sim = rs_sim_new(1);
  static const char *const names[] = {"A", "B", "C"};
  for (int i = 0; i < 3; i++) {
    rts[i] = rs_sim_runtime_new(sim, names[i]);
    char xml[1024];
    snprintf(xml, sizeof(xml), xml_fmt, names[i]);
    struct rs_channel_opts o = {.config_xml = xml, .name = names[i], .runtime = rts[i]};
    char err[512];
    struct rs_raft *h;
    if (rs_channel_open(&ch[i], &o, err, sizeof(err)) || rs_raft_open(&h, ch[i], &sm, NULL) ||
        rs_channel_connect(ch[i], "fuzz"))
      abort();
    /* The handles live as long as the process. */
  }
  if (!rs_sim_run_until(sim, has_leader, NULL, 10 * RS_SEC)) abort();
}

struct delivery {
  struct rs_protocol *to;
  struct rs_msg *m;
  bool submit_first;
};

static void done(void *arg, int status, const void *rsp, size_t len) {
  (void)arg, (void)status, (void)rsp, (void)len;
}

static void deliver(void *arg) {
  struct delivery *d = arg;
  if (d->submit_first) redirect_submit((struct redirect *)d->to, NULL, NULL, 0, done, NULL);
  struct rs_batch b;
  rs_batch_init(&b);
  b.src = d->m->src;
  b.dest = d->m->dest;
  rs_batch_add(&b, d->m);
  d->to->ops->up_batch(d->to, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sim) setup();
  if (size < 2) return 0;
  const struct rs_header_type *t = registry_header_type(REDIRECT_ID);
  size_t hlen = data[1] % 16;
  if (size < 2 + hlen) return 0;
  uint8_t hdr[RS_HDR_INLINE] = {0};
  struct rs_reader r;
  reader_init(&r, data + 2, hlen);
  t->read(hdr, &r);
  if (r.err || reader_remaining(&r)) return 0;
  uint8_t out[32];
  struct rs_writer w;
  writer_init(&w, out, sizeof(out));
  t->write(hdr, &w);
  if (w.err || w.len != hlen || memcmp(out, data + 2, hlen) || t->wire_size(hdr) != hlen) abort();
  char text[128];
  t->print(hdr, text, sizeof(text));

  int leader = 0;
  while (leader < 3 && raft_role(raft_find(channel_stack(ch[leader]))) != RS_RAFT_LEADER)
    leader++;
  int recv = (data[0] & 1) || leader == 3 ? (leader + 1) % 3 : leader;
  int who = (data[0] >> 1) & 3;
  struct rs_addr stranger = {0x5555, (uint64_t)data[0]};
  struct rs_addr src = who == 3 ? stranger : rs_channel_address(ch[(recv + who) % 3]);

  struct rs_msg *m = rs_msg_new_copy(data + 2 + hlen, size - 2 - hlen);
  if (!m) return 0;
  memcpy(rs_msg_put_header(m, t), hdr, t->size);
  m->src = src;
  m->dest = rs_channel_address(ch[recv]);
  struct delivery d = {(struct rs_protocol *)redirect_find(channel_stack(ch[recv])), m,
                       (data[0] & 0x08) != 0};
  if (rs_runtime_call(rts[recv], deliver, &d)) abort();
  rs_sim_run_for(sim, 20 * RS_MS);
  return 0;
}
