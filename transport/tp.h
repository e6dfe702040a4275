/* The common transport: bundling, frame encoding and decoding, loopback to self, address table. */
#ifndef RS_TRANSPORT_TP_H
#define RS_TRANSPORT_TP_H

#include "stack/protocol.h"
#include "stack/stack.h"
#include "stack/wire.h"

/*
 * Every transport (UDP, TCP, LOOPBACK) is a struct rs_tp followed by its own fields, and gives a
 * small ops table for what differs: opening its sockets and sending one encoded frame. All else
 * is here: messages going down are queued per destination (the bundler) and flushed by a task
 * that runs after the current loop callback, so everything sent in one loop iteration to one
 * destination leaves in as few frames as bundler.max_size allows.
 */

struct rs_tp;

struct rs_tp_ops {
  /* At start: bind, listen, join groups; set tp->local_phys. 0 or RS_E* via proto_error. */
  int (*open)(struct rs_tp *tp);
  /* At stop: close everything. */
  void (*close)(struct rs_tp *tp);
  /* Sends one frame to a physical address, or to the group (dest NULL) when `multicast` is
   * true. Returns 0 (sent, or queued by the transport), RS_EAGAIN (not accepted: the caller keeps
   * the frame and retries after tp_writable()), or another error (frame dropped, counted). The
   * transport copies what it keeps. */
  int (*send)(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame, size_t len);
  /* Optional: finds a member's physical address when the table has none (LOOPBACK knows every
   * endpoint of the process). 0 or RS_ENOTFOUND. */
  int (*resolve)(struct rs_tp *tp, const struct rs_addr *addr, struct rs_phys *out);
  bool multicast;     /* can send one frame to the whole group */
  size_t max_frame;   /* largest frame it can carry (UDP: 65507) */
};

/* One entry of the logical→physical address table. */
struct tp_peer {
  struct rs_addr addr;
  struct rs_phys phys;
  char *name;
};

/* Messages queued for one destination (null address: the group). */
struct tp_queue {
  struct rs_addr dest;
  struct rs_msg *head, *tail;
  size_t n, bytes;
};

struct tp_stats {
  uint64_t msgs_sent, msgs_received;
  uint64_t frames_sent, frames_received, batches_sent, batches_received;
  uint64_t bytes_sent, bytes_received;
  uint64_t dropped_malformed, dropped_other_cluster, dropped_own, dropped_not_for_us;
  uint64_t dropped_no_route, dropped_send_error, dropped_queue_full;
  uint64_t send_blocked; /* times a send was refused by the socket and retried later */
  uint64_t diag_requests, diag_bad_requests;
};

struct rs_tp {
  struct rs_protocol base;
  const struct rs_tp_ops *tops;

  /* Attributes common to all transports (TP_ATTRS below). */
  char *bind_addr;
  int64_t bind_port;
  int64_t port_range;
  uint64_t bundler_max_size;
  int64_t bundler_capacity;
  uint64_t max_frame_size;
  uint64_t max_payload;
  struct rs_strlist peers; /* static physical addresses of members, until discovery */
  bool diag_enabled;
  char *diag_mcast_addr;
  int64_t diag_port, diag_ttl;

  /* State. */
  struct rs_phys local_phys;
  struct rs_wire_limits limits;
  struct tp_peer *table;
  size_t n_table, cap_table;
  struct rs_phys *static_peers; /* `peers`, and what discovery adds (tp_add_static_peer) */
  size_t n_static, cap_static;
  struct tp_queue *queues;
  size_t n_queues, cap_queues;
  size_t queued; /* messages in all queues */
  struct rs_task flush_task;
  struct rs_batch self_loop; /* messages to ourselves, passed up by self_task */
  struct rs_task self_task;
  struct rs_writer frame; /* reused encode buffer */
  struct rs_msg **pack;   /* scratch: messages of the frame being packed */
  bool blocked;           /* the transport refused a frame: wait for tp_writable() */
  struct {
    uint8_t *bytes;
    size_t len;
    struct rs_phys *targets; /* still to send to (none: a multicast) */
    size_t n_targets;
    bool multicast;
  } pending; /* the refused frame */
  struct rs_ratelimit rl_bad;
  struct tp_stats stats;
  struct rs_view_data *view; /* the current view, for probe */
  int diag_fd;
  struct rs_io *diag_io;
};

/* The attribute rows every transport includes in its table (offsets relative to the instance,
 * which starts with struct rs_tp). */
#define TP_ATTRS(type)                                                                           \
  {"bind_addr", RS_ATTR_STRING, offsetof(type, tp.bind_addr), "127.0.0.1", 0, 0,                  \
   "address to bind to: an address, a host name, GLOBAL, SITE_LOCAL, LINK_LOCAL, NON_LOOPBACK, "  \
   "loopback, match-interface:RE, match-host:RE, match-address:RE, or a comma list of them",     \
   0, NULL},                                                                                     \
  {"bind_port", RS_ATTR_INT, offsetof(type, tp.bind_port), "0", 0, 65535,                         \
   "port to bind to; 0 picks an ephemeral port", 0, NULL},                                        \
  {"port_range", RS_ATTR_INT, offsetof(type, tp.port_range), "10", 0, 65535,                      \
   "ports tried above bind_port when it is taken", 0, NULL},                                      \
  {"bundler.max_size", RS_ATTR_SIZE, offsetof(type, tp.bundler_max_size), "64000", 1024,         \
   16777216, "bytes of messages bundled into one frame", 0, NULL},                               \
  {"bundler.capacity", RS_ATTR_INT, offsetof(type, tp.bundler_capacity), "16384", 16, 16777216,  \
   "messages queued in the bundler before sends are refused", 0, NULL},                          \
  {"max_frame_size", RS_ATTR_SIZE, offsetof(type, tp.max_frame_size), "64MiB", 1024, 1073741824, \
   "largest frame accepted from the network", 0, NULL},                                           \
  {"max_payload", RS_ATTR_SIZE, offsetof(type, tp.max_payload), "64MiB", 0, 1073741824,           \
   "largest message payload accepted from the network", 0, NULL},                                \
  {"peers", RS_ATTR_LIST, offsetof(type, tp.peers), NULL, 0, 0,                                   \
   "static list of members' physical addresses (host:port) to send group messages to, for "      \
   "stacks without discovery",                                                                   \
   0, NULL},                                                                                     \
  {"bundler_type", RS_ATTR_IGNORED, 0, NULL, 0, 0, "one per-destination bundler is built in", 0, NULL}, \
  {"thread_pool.", RS_ATTR_IGNORED, 0, NULL, 0, 0, "one event-loop thread per stack", RS_ATTR_PREFIX, NULL}, \
  {"diag.enabled", RS_ATTR_BOOL, offsetof(type, tp.diag_enabled), "true", 0, 0,                  \
   "answer `raftstack probe` (needs the libev runtime)", 0, NULL},                               \
  {"diag.mcast_addr", RS_ATTR_STRING, offsetof(type, tp.diag_mcast_addr), "224.0.75.75", 0, 0,   \
   "multicast group probe requests are sent to (joined on the bind interface)", 0, NULL},        \
  {"diag.port", RS_ATTR_INT, offsetof(type, tp.diag_port), "7500", 1, 65535,                     \
   "UDP port of the probe group", 0, NULL},                                                      \
  {"diag.ttl", RS_ATTR_INT, offsetof(type, tp.diag_ttl), "1", 0, 255,                            \
   "multicast TTL of probe traffic", 0, NULL},                                                   \
  {"diag.", RS_ATTR_IGNORED, 0, NULL, 0, 0, "other diagnostics options are not used", RS_ATTR_PREFIX, NULL}, \
  {"msg_stats.", RS_ATTR_IGNORED, 0, NULL, 0, 0, "counters are always kept", RS_ATTR_PREFIX, NULL}, \
  {"use_virtual_threads", RS_ATTR_IGNORED, 0, NULL, 0, 0, "no thread pools", 0, NULL},            \
  {"thread_naming_pattern", RS_ATTR_IGNORED, 0, NULL, 0, 0, "no thread pools", 0, NULL},          \
  {"message_processing_policy", RS_ATTR_IGNORED, 0, NULL, 0, 0, "delivery is on the loop thread", 0, NULL}, \
  {"logical_addr_cache_max_size", RS_ATTR_IGNORED, 0, NULL, 0, 0, "the table holds what discovery finds", 0, NULL}, \
  {"logical_addr_cache_expiration", RS_ATTR_IGNORED, 0, NULL, 0, 0, "entries of members live with the view", 0, NULL}, \
  {"logical_addr_cache_reaper_interval", RS_ATTR_IGNORED, 0, NULL, 0, 0, "entries of members live with the view", 0, NULL}, \
  {"time_service_interval", RS_ATTR_IGNORED, 0, NULL, 0, 0, "time comes from the runtime", 0, NULL}, \
  {"who_has_cache_timeout", RS_ATTR_IGNORED, 0, NULL, 0, 0, "not used", 0, NULL},                \
  {"use_direct_memory", RS_ATTR_IGNORED, 0, NULL, 0, 0, "Java only", 0, NULL},                    \
  {"log_discard_msgs", RS_ATTR_IGNORED, 0, NULL, 0, 0, "discards are counted and rate-limited", 0, NULL}, \
  {"log_discard_msgs_version", RS_ATTR_IGNORED, 0, NULL, 0, 0, "discards are counted and rate-limited", 0, NULL}

/* The common handlers; a transport's ops table points at these. */
int tp_init(struct rs_protocol *p);
int tp_start(struct rs_protocol *p);
void tp_stop(struct rs_protocol *p);
void tp_destroy(struct rs_protocol *p);
int tp_down_msg(struct rs_protocol *p, struct rs_msg *m);
int tp_down_event(struct rs_protocol *p, struct rs_event *ev);
void tp_stats(struct rs_protocol *p, struct rs_stats_printer *out);

/* Called by the transport with a received frame in buf[off..off+len) (the transport keeps its
 * own reference to buf). `from`: the sender's physical address when the transport knows it (its
 * unicast socket for UDP, the announced listening address for TCP), else NULL. */
void tp_receive(struct rs_tp *tp, struct rs_buf *buf, size_t off, size_t len,
                const struct rs_phys *from);
/* Called by the transport when it can take frames again after refusing one. */
void tp_writable(struct rs_tp *tp);

/* Binds fd to addr at bind_port, or the next free port up to bind_port + port_range (0: an
 * ephemeral port); sets addr->port. 0, or RS_EADDRINUSE / RS_ECONFIG with the detail given to
 * proto_error ("no free port in 127.0.0.1:7800..7810 ..."). */
int tp_bind_in_range(struct rs_tp *tp, int fd, struct rs_phys *addr);

/* Diagnostics (transport/diag.c): opened after the transport's own sockets, closed before. */
int diag_open(struct rs_tp *tp);
void diag_close(struct rs_tp *tp);

/* The address table. */
const struct tp_peer *tp_lookup(const struct rs_tp *tp, const struct rs_addr *addr);
int tp_learn(struct rs_tp *tp, const struct rs_addr *addr, const struct rs_phys *phys,
             const char *name);
/* Adds a physical address that group frames go to when the transport cannot multicast
 * (TCPPING's initial_hosts). Duplicates are ignored. 0 or RS_ENOMEM. */
int tp_add_static_peer(struct rs_tp *tp, const struct rs_phys *phys);
/* Physical addresses to send a group frame to when the transport cannot multicast: every
 * table entry and every static peer, without duplicates and without ourselves. Returns the count
 * written (at most cap). */
size_t tp_group_targets(struct rs_tp *tp, struct rs_phys *out, size_t cap);

#endif
