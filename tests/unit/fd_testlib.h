/* Shared by the failure detection tests: test protocols, nodes on either runtime, stats, views
 * injected as GMS would pass them down, and the SUSPECT/UNSUSPECT events that come up. */
#ifndef RS_TESTS_UNIT_FD_TESTLIB_H
#define RS_TESTS_UNIT_FD_TESTLIB_H

#include <check.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <raftstack/raftstack.h>

#include "stack/protocol.h"
#include "stack/sim.h"

#define MAX_EVENTS 256
#define MAX_NODES 5

/* FDTEST, a test-only protocol on top of the stack (GMS does not exist yet): it records the
 * SUSPECT and UNSUSPECT events that come up, with the runtime's time. */
struct fd_event {
  enum rs_event_type type;
  struct rs_addr addr;
  rs_time t;
};

struct fdtest {
  struct rs_protocol base;
  struct fd_event ev[MAX_EVENTS];
  atomic_size_t n; /* written on the loop thread, read by the test thread */
};

/* FDTEST and SPY (just above DISCARD: when each member was last heard from), for
 * stack_set_extra_protocols. */
extern const struct rs_protocol_ops *const fd_extra[];

/* A member, on the simulated runtime (rt set) or on its channel's own libev loop. */
struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_addr addr;
  struct rs_phys phys; /* the transport's address */
  uint64_t delivered;  /* messages that reached the application */
};

extern struct rs_sim *sim; /* non-NULL: new nodes run in this world */
extern struct node nodes[MAX_NODES];
extern struct node *group[MAX_NODES];

/* Opens a channel (name, XML) and connects it to cluster "fd"; 0 or the error with its text. */
int open_node(struct node *nd, const char *name, const char *xml, char *err, size_t len);
void start_node(struct node *nd, const char *name, const char *xml); /* asserts success */
void close_node(struct node *nd);
/* Runs fn(arg) on the node's loop thread (directly in the simulation) and waits for it. */
void on_loop(struct node *nd, void (*fn)(void *), void *arg);
struct rs_protocol *proto_of(struct node *nd, const char *name);
struct fdtest *top_of(struct node *nd);

/* A protocol's stat, read on the node's loop. */
uint64_t stat(struct node *nd, const char *proto, const char *name);
const char *stat_str(struct node *nd, const char *proto, const char *name, char *buf, size_t len);

/* Installs the view `members` (the first is coordinator) on nd, as GMS passes it down, after
 * telling the transport the members' physical addresses (those that have an IPv4 one). */
void inject_view(struct node *nd, struct node **members, size_t n, uint64_t id);
void inject_view_all(struct node **members, size_t n, uint64_t id);

/* Events recorded by FDTEST; a NULL address matches any. */
size_t n_events(struct node *nd);
size_t count_events(struct node *nd, enum rs_event_type type, const struct rs_addr *a);
/* The time of the first event of this type about a, or 0. */
rs_time event_time(struct node *nd, enum rs_event_type type, const struct rs_addr *a);
struct want_event {
  struct node *nd;
  enum rs_event_type type;
  const struct rs_addr *addr;
  size_t count; /* at least this many (0: 1) */
};
bool has_event(void *arg);
/* When nd last received anything from `from`, per SPY. */
rs_time last_heard(struct node *nd, const struct rs_addr *from);

/* The FD_SOCK cases (TCP on 127.0.0.1, libev). */
TCase *fd_sock_tcase(void);

#endif
