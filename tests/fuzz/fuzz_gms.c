/* libFuzzer target: GMS messages with arbitrary bodies, fed to the members of a live simulated
 * cluster (coordinator and participant), so that every body decoder and handler sees them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/raftstack.h>

#include "protocols/pbcast/gms.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"

/*
 * Input: byte 0 picks the receiver (bit 0), the type (bits 1..4, modulo the 10 types), REJECTED
 * (bit 5) and multicast (bit 6); byte 1 picks the sender (the coordinator, the other member,
 * the receiver itself, or a stranger) and the merge id (1..64); the rest is the body. After each
 * message the world runs 50 ms of virtual time, so timers (join, acks, merges) fire too.
 */

static const char *const xml =
    "<config><LOOPBACK/><PING/><pbcast.NAKACK2/><UNICAST3/><pbcast.STABLE/><raft.NO_DUPES/>"
    "<pbcast.GMS join_timeout=\"100ms\" merge_timeout=\"200ms\" "
    "view_ack_collection_timeout=\"200ms\"/></config>";

static struct rs_sim *sim;
static struct rs_channel *ch[2];

static void setup(void) {
  rs_log_set_level(RS_LOG_OFF);
  sim = rs_sim_new(1);
  static const char *const names[] = {"A", "B"};
  for (int i = 0; i < 2; i++) {
    struct rs_runtime *rt = rs_sim_runtime_new(sim, names[i]);
    struct rs_channel_opts o = {.config_xml = xml, .name = names[i], .runtime = rt};
    char err[512];
    if (rs_channel_open(&ch[i], &o, err, sizeof(err)) || rs_channel_connect(ch[i], "fuzz")) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sim) setup();
  if (size < 2) return 0;
  struct rs_channel *to = ch[data[0] & 1];
  uint8_t type = (uint8_t)(1 + ((data[0] >> 1) & 0x0f) % GMS_TYPE_MAX);
  bool merge = type >= GMS_MERGE_REQ && type <= GMS_CANCEL_MERGE;
  uint8_t flags = merge ? GMS_F_MERGE_ID : 0;
  if (type == GMS_MERGE_RSP && (data[0] & 0x20)) flags |= GMS_F_REJECTED;
  struct rs_addr stranger = {0x5555, 0xaaaa};
  struct rs_addr srcs[4] = {rs_channel_address(ch[0]), rs_channel_address(ch[1]),
                            rs_channel_address(to), stranger};

  struct rs_protocol *gms = proto_find(channel_stack(to)->bottom, "GMS");
  struct rs_msg *m = rs_msg_new_copy(data + 2, size - 2);
  struct gms_hdr *h = m ? rs_msg_put_header(m, &gms_header) : NULL;
  if (!h) abort();
  h->type = type;
  h->flags = flags;
  h->merge_id = merge ? 1 + (data[1] >> 2) % 64 : 0;
  m->src = srcs[data[1] & 3];
  m->dest = (data[0] & 0x40) ? RS_ADDR_NULL : rs_channel_address(to);
  struct rs_batch b;
  rs_batch_init(&b);
  b.src = m->src;
  b.dest = m->dest;
  rs_batch_add(&b, m);
  proto_up_batch(gms->down, &b);
  rs_sim_run_for(sim, 50 * RS_MS);
  return 0;
}
