/* Credit-based flow control shared by UFC (unicast) and MFC (multicast), as JGroups' FlowControl. */
#ifndef RS_PROTOCOLS_FLOW_CONTROL_H
#define RS_PROTOCOLS_FLOW_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/protocol.h"
#include "stack/stack.h"

/*
 * UFC and MFC are each a struct fc (their instance is exactly this struct) and an ops table that
 * points at the handlers below; they differ only in the messages they govern (unicasts or
 * multicasts), their protocol id (the header's id) and how a sender's credit is kept: UFC one
 * flow per destination, MFC one flow for the group whose credit is the smallest of the members'.
 * The design is described in flow_control.c.
 */

/* The header's message types (JGroups' numbers for the first two). */
enum { FC_REPLENISH = 1, FC_CREDIT_REQUEST = 2, FC_CREDIT_RESPONSE = 3 };

/* Byte counts on the wire are at most this, so sums of a few of them never overflow int64_t. */
#define FC_COUNT_MAX ((uint64_t)1 << 62)

/* The header (in-memory form; no pointers, so a failed decode leaves it freeable). */
struct fc_hdr {
  uint64_t consumed; /* REPLENISH, CREDIT_RESPONSE: bytes passed up from the sender, cumulative */
  uint64_t sent;     /* CREDIT_REQUEST: bytes sent under flow control; CREDIT_RESPONSE: its echo */
  uint8_t type;
};

/* The header codec, shared by UFC's and MFC's header types. */
size_t fc_hdr_wire_size(const void *h);
void fc_hdr_write(const void *h, struct rs_writer *w);
void fc_hdr_read(void *h, struct rs_reader *r);
int fc_hdr_print(const void *h, char *buf, size_t len);

/* What a sender knows of one receiver's credit: it may send until its byte count reaches
 * base + seen + max_credits (see flow_control.c). */
struct fc_credit {
  struct rs_addr addr;
  int64_t base;  /* our byte count at the receiver's count 0 */
  uint64_t seen; /* highest count the receiver reported */
  uint64_t sync_sent; /* `sent` of the last CREDIT_RESPONSE taken: older ones are stale */
};

/* Messages waiting for credit and the credit they wait for: UFC has one flow per destination,
 * MFC one for the group. */
struct fc_flow {
  struct fc *fc;
  struct rs_addr dest;       /* null: the group */
  uint64_t sent;             /* bytes sent under flow control */
  struct fc_credit *credits; /* UFC: &one; MFC: the members but ourselves */
  size_t n_credits, cap_credits;
  struct fc_credit one;
  int64_t min_limit; /* smallest base + seen over credits (INT64_MAX: none) */
  struct rs_msg *head, *tail;
  size_t n_queued;
  uint64_t queued_bytes;
  rs_time blocked_since;
  bool requested;        /* a CREDIT_REQUEST went out, at last_request */
  rs_time last_request;
  struct rs_timer timer; /* every max_block_time while blocked: CREDIT_REQUEST */
};

/* What a receiver counts of one sender. */
struct fc_received {
  struct rs_addr addr;
  uint64_t consumed; /* bytes passed up */
  uint64_t reported; /* consumed as of the last REPLENISH or CREDIT_RESPONSE */
};

struct fc_stats {
  uint64_t msgs_sent, bytes_sent, msgs_queued, blockings;
  uint64_t blocked_ns;
  uint64_t replenish_sent, replenish_received, requests_sent, requests_received;
  uint64_t responses_sent, responses_received, resyncs;
  uint64_t unblocked_by_view, bypassed_table_full, stale_ignored, bad_dropped;
  uint64_t queued_max;
};

struct fc {
  struct rs_protocol base;
  /* Attributes (FC_ATTRS). */
  uint64_t max_credits;
  rs_time max_block_time;
  double min_threshold;
  uint64_t min_credits;
  /* State. */
  bool multicast; /* MFC */
  uint64_t replenish_at; /* max_credits - min_credits: a receiver reports after this many bytes */
  struct fc_flow **flows; /* UFC: one per destination; MFC: flows[0], the group */
  size_t n_flows, cap_flows;
  size_t last_flow; /* index of the last flow looked up */
  struct fc_received *recv;
  size_t n_recv, cap_recv, last_recv;
  struct rs_view_data *view; /* the last view (a reference), or NULL before the first */
  size_t n_queued;  /* messages waiting in all flows */
  uint64_t queued_bytes;
  bool congested;
  struct rs_ratelimit rl_bad;
  struct fc_stats st;
};

/* The attribute rows of both protocols (JGroups' FlowControl properties and ignored ones). */
extern const struct rs_attr fc_attrs[];

/* Handlers; ufc.c and mfc.c point their ops tables at these. */
int fc_init(struct rs_protocol *p, bool multicast);
void fc_stop(struct rs_protocol *p);
void fc_destroy(struct rs_protocol *p);
int fc_down_msg(struct rs_protocol *p, struct rs_msg *m);
void fc_up_batch(struct rs_protocol *p, struct rs_batch *b);
int fc_down_event(struct rs_protocol *p, struct rs_event *ev);
int fc_up_event(struct rs_protocol *p, struct rs_event *ev);
void fc_stats(struct rs_protocol *p, struct rs_stats_printer *out);

#endif
