/* Discovery: what PING and TCPPING share (finding members, answering them, the header codec). */
#ifndef RS_PROTOCOLS_DISCOVERY_H
#define RS_PROTOCOLS_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/protocol.h"
#include "stack/stack.h"
#include "stack/view.h"

/*
 * Every discovery protocol is a struct discovery followed by its own fields, with a small ops
 * table for what differs (as transport/tp.c serves the transports): how a discovery request
 * leaves, and what to do at start. Everything else is here: RS_EV_FIND_INITIAL_MBRS, answering
 * GET_MBRS_REQ, collecting GET_MBRS_RSP, teaching the transport each member's address and name,
 * and the header codec (each protocol registers its own header type with its own id, using the
 * functions below).
 *
 * The contract of RS_EV_FIND_INITIAL_MBRS (down, u.find), as discovery implements it:
 *  - 0: accepted; u.find.done is called exactly once, on the loop thread, from a timer or a task
 *    (never from within the down_event call), with the distinct members that answered, not
 *    including ourselves; unless the stack stops first (below).
 *  - RS_ENOTCONN (the stack is not started), RS_EAGAIN (MAX_FINDS requests already outstanding)
 *    or RS_ENOMEM: refused; done is never called.
 *  - stop() cancels every outstanding request WITHOUT calling done. Protocols above stop before
 *    discovery (stack_stop goes top to bottom), so a completion at that point would call into a
 *    requester that has already stopped; the requester owns `arg` and releases whatever it tied
 *    to the request in its own stop(). The count shows in the `finds_cancelled` stat.
 *  - The event is not passed further down: one discovery protocol (the lowest that sees it)
 *    answers it.
 */

#define DISCOVERY_MAX_FINDS 64   /* outstanding RS_EV_FIND_INITIAL_MBRS requests */
#define DISCOVERY_MAX_FOUND 4096 /* distinct members one request collects (RS_VIEW_MAX_MEMBERS) */
#define DISCOVERY_MAX_PENDING_RSP 1024 /* answers waiting for their stagger delay */

/* Header types on the wire (JGroups' PingHeader numbers). */
enum { DISCOVERY_GET_MBRS_REQ = 1, DISCOVERY_GET_MBRS_RSP = 2 };
/* Flag bits of the ping data on the wire (JGroups' PingData bits). */
enum { DISCOVERY_IS_SERVER = 0x01, DISCOVERY_IS_COORD = 0x02 };

/* The header (protocol id 5 for PING, 9 for TCPPING). In memory the ping data is held by
 * pointer (it is larger than an inline header); the message owns it. */
struct discovery_hdr {
  struct rs_ping_data *data; /* NULL only in zeroed storage or after a failed read */
  uint8_t type;              /* DISCOVERY_GET_MBRS_REQ or _RSP */
};

size_t discovery_hdr_wire_size(const void *h);
void discovery_hdr_write(const void *h, struct rs_writer *w);
void discovery_hdr_read(void *h, struct rs_reader *r);
int discovery_hdr_copy(void *dst, const void *src);
void discovery_hdr_free(void *h);
int discovery_hdr_print(const void *h, char *buf, size_t len);

#define DISCOVERY_HEADER_TYPE(ID, NAME)                                                            \
  {                                                                                                \
    .id = (ID), .name = (NAME), .size = sizeof(struct discovery_hdr),                              \
    .wire_size = discovery_hdr_wire_size, .write = discovery_hdr_write,                            \
    .read = discovery_hdr_read, .copy = discovery_hdr_copy, .free = discovery_hdr_free,            \
    .print = discovery_hdr_print,                                                                  \
  }

struct discovery;

struct discovery_ops {
  /* Sends one GET_MBRS_REQ: m carries the header and flags; the callee takes ownership. */
  void (*send_request)(struct discovery *d, struct rs_msg *m);
  /* Optional, at start before anything is sent: 0 or RS_E* with proto_error. */
  int (*start)(struct discovery *d);
};

struct discovery_stats {
  uint64_t discovery_runs;        /* FIND_INITIAL_MBRS requests accepted */
  uint64_t finds_completed_early; /* done before the timeout (coordinator or num_members) */
  uint64_t finds_timed_out;
  uint64_t finds_cancelled; /* still outstanding at stop */
  uint64_t finds_refused;
  uint64_t requests_sent, requests_received;
  uint64_t responses_sent, responses_received;
  uint64_t members_found;        /* distinct members reported, summed over completed finds */
  uint64_t not_answered;         /* requests not answered (leaving, max_rank_to_reply) */
  uint64_t dropped_pending_full; /* answers dropped: too many waiting for their stagger */
  uint64_t dropped_found_full;   /* answers beyond DISCOVERY_MAX_FOUND for one request */
  uint64_t bad_dropped;          /* messages with a bad discovery header */
  uint64_t foreign_dropped;      /* messages of a discovery protocol not in this stack */
};

struct disc_request;
struct disc_pending_rsp {
  struct rs_addr to;
  rs_time at;
};

struct discovery {
  struct rs_protocol base;
  const struct discovery_ops *dops; /* set by the protocol's init before discovery_init */

  /* Attributes (DISCOVERY_ATTRS). */
  rs_time timeout;
  bool break_on_coord_rsp;
  int64_t num_discovery_runs;
  rs_time stagger_timeout;
  int64_t max_rank_to_reply;

  /* State. */
  bool running;                  /* between start and stop */
  struct rs_view_data *view;     /* the last view passed down (a reference), or NULL */
  bool is_server;                /* RS_EV_BECOME_SERVER passed down */
  bool leaving;                  /* RS_EV_DISCONNECT passed down: no more answers */
  unsigned foreign_ids;          /* bit i: discovery_ids[i] is not in this stack (its messages are
                                  * dropped) */
  struct disc_request *requests; /* outstanding finds, newest first */
  size_t n_requests;
  struct rs_task finish_task;       /* completes finished requests outside the receive path */
  struct disc_pending_rsp *pending; /* answers delayed by stagger_timeout */
  size_t n_pending;
  struct rs_timer stagger_timer;
  struct rs_ratelimit rl_bad;
  struct discovery_stats st;
};

/* The attribute rows of every discovery protocol (the instance type starts with
 * `struct discovery disc`), then the JGroups Discovery attributes that mean nothing here. */
/* clang-format off */
#define DISCOVERY_ATTRS(type)                                                                     \
  {"timeout", RS_ATTR_DURATION, offsetof(type, disc.timeout), "2s", 1, 3600000,                   \
   "how long FIND_INITIAL_MBRS waits for answers when its caller gives no timeout", 0, NULL},     \
  {"break_on_coord_rsp", RS_ATTR_BOOL, offsetof(type, disc.break_on_coord_rsp), "true", 0, 0,     \
   "finish a discovery as soon as a coordinator has answered", 0, NULL},                          \
  {"num_discovery_runs", RS_ATTR_INT, offsetof(type, disc.num_discovery_runs), "1", 1, 100,       \
   "requests sent per discovery, spread evenly over its timeout (for lossy networks)", 0, NULL},  \
  {"stagger_timeout", RS_ATTR_DURATION, offsetof(type, disc.stagger_timeout), "0", 0, 60000,      \
   "spread answers over this long: the member at position r of an n-member view answers after "  \
   "stagger_timeout*(r-1)/n (the coordinator at once), one without a view after a random delay " \
   "up to it; 0: everyone at once",                                                              \
   0, NULL},                                                                                      \
  {"max_rank_to_reply", RS_ATTR_INT, offsetof(type, disc.max_rank_to_reply), "0", 0, 1e9,         \
   "only members at this position or better in the view answer (1: the coordinator); members "    \
   "without a view always answer; 0: everyone",                                                   \
   0, NULL},                                                                                      \
  {"return_entire_cache", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                         \
   "every member answers for itself", 0, NULL},                                                   \
  {"use_disk_cache", RS_ATTR_IGNORED, 0, NULL, 0, 0, "no disk cache", 0, NULL},                   \
  {"send_cache_on_join", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                          \
   "members learn each other's addresses from discovery and from every frame", 0, NULL},          \
  {"max_members_in_discovery_request", RS_ATTR_IGNORED, 0, NULL, 0, 0,                            \
   "requests never list members", 0, NULL},                                                       \
  {"discovery_rsp_expiry_time", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                   \
   "answers are kept only while their request is outstanding", 0, NULL},                          \
  {"async_discovery", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                             \
   "discovery never blocks: results come through a callback", 0, NULL},                          \
  {"async_discovery_use_separate_thread_per_request", RS_ATTR_IGNORED, 0, NULL, 0, 0,             \
   "one event-loop thread per stack", 0, NULL},                                                   \
  {"force_sending_discovery_rsps", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                \
   "every member answers, unless max_rank_to_reply says otherwise", 0, NULL},                              \
  {"num_initial_members", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                         \
   "the caller of FIND_INITIAL_MBRS says how many answers end a discovery", 0, NULL},             \
  {"num_initial_srv_members", RS_ATTR_IGNORED, 0, NULL, 0, 0,                                     \
   "the caller of FIND_INITIAL_MBRS says how many answers end a discovery", 0, NULL}
/* clang-format on */

/* The common handlers; a discovery protocol's ops table points at these. */
int discovery_init(struct rs_protocol *p);
int discovery_start(struct rs_protocol *p);
void discovery_stop(struct rs_protocol *p);
void discovery_destroy(struct rs_protocol *p);
void discovery_up_batch(struct rs_protocol *p, struct rs_batch *b);
int discovery_down_event(struct rs_protocol *p, struct rs_event *ev);
void discovery_stats(struct rs_protocol *p, struct rs_stats_printer *out);

/* The transport at the bottom of the stack, or NULL (TCPPING adds its hosts there). */
struct rs_tp *discovery_transport(struct discovery *d);

#endif
