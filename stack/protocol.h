/* Protocols: the ops table, instances, events between layers and attribute tables. */
#ifndef RS_STACK_PROTOCOL_H
#define RS_STACK_PROTOCOL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raftstack/log.h>

#include "stack/addr.h"
#include "stack/msg.h"
#include "stack/runtime.h"

struct rs_stack;
struct rs_protocol;

/* ---------------------------------------------------------------------------------------------
 * Attributes: declared once per protocol; the XML binding, validation, `raftstack protocols`,
 * docs/protocols.md and probe all read the same table.
 */
enum rs_attr_type {
  RS_ATTR_BOOL,     /* bool */
  RS_ATTR_INT,      /* int64_t; plain integer */
  RS_ATTR_SIZE,     /* uint64_t; bytes: 64K, 5M, 2g (decimal), 64KiB, 5MiB (binary) */
  RS_ATTR_DURATION, /* rs_time (ns): 500ms, 2s, 1m, 1h, 1d, 0.5s; a bare number is ms */
  RS_ATTR_DOUBLE,   /* double */
  RS_ATTR_STRING,   /* char * (owned by the instance) */
  RS_ATTR_LIST,     /* struct rs_strlist: comma-separated, trimmed, empty items dropped */
  RS_ATTR_ENUM,     /* int: index into choices[] (case-insensitive match) */
  RS_ATTR_ALIAS,    /* another name for the attribute named in `def` */
  RS_ATTR_IGNORED,  /* a JGroups attribute with no meaning here: accepted with a warning */
};

enum rs_attr_flags {
  RS_ATTR_REQUIRED = 1u << 0, /* must be set (by XML, -D property or API) before start */
  RS_ATTR_PREFIX = 1u << 1,   /* IGNORED only: the name is a prefix ("thread_pool.") */
};

struct rs_strlist {
  size_t n;
  char **v;
};

struct rs_attr {
  const char *name;
  enum rs_attr_type type;
  size_t offset;    /* into the protocol instance */
  const char *def;  /* default as XML would write it; NULL: unset (0 / NULL / empty) */
  double min, max;  /* inclusive range of numeric types (DURATION: in ms); both 0: unbounded */
  const char *desc; /* one line */
  unsigned flags;
  const char *const *choices; /* ENUM: NULL-terminated */
};

#define RS_ATTR_END {NULL, RS_ATTR_BOOL, 0, NULL, 0, 0, NULL, 0, NULL}

/* ---------------------------------------------------------------------------------------------
 * Events between layers: a small enum with a typed payload. Down events travel towards the
 * transport, up events towards the channel. Request/response events fill their result fields.
 */
enum rs_event_type {
  RS_EV_CONNECT,              /* down: u.cluster; 0 = done, RS_EAGAIN = CONNECT_DONE follows */
  RS_EV_CONNECT_DONE,         /* up: u.status (GMS when the join completed or failed) */
  RS_EV_DISCONNECT,           /* down; 0 = done, RS_EAGAIN = DISCONNECT_DONE follows */
  RS_EV_DISCONNECT_DONE,      /* up: u.status (GMS when the leave completed) */
  RS_EV_SET_LOCAL_ADDRESS,    /* down: u.addr (before CONNECT) */
  RS_EV_VIEW_CHANGE,          /* up and down: u.view (GMS installs a view; keep it with view_ref) */
  RS_EV_GET_PHYSICAL_ADDRESS, /* down: u.addr in (null = own), result phys */
  RS_EV_ADD_PHYSICAL_ADDRESS, /* down: u.mapping */
  RS_EV_CONFIG,               /* down and up: u.config (frag_size, ...) */
  RS_EV_FIND_INITIAL_MBRS,    /* down: u.find; discovery calls u.find.done once, on the loop */
  RS_EV_BECOME_SERVER,        /* down: GMS joined; discovery answers, NAKACK2 accepts */
  RS_EV_SUSPECT,              /* up: u.addr seems to have crashed (FD_* → VERIFY_SUSPECT → GMS) */
  RS_EV_UNSUSPECT,            /* up: u.addr was heard from after all */
  RS_EV_GET_DIGEST,           /* down: result in ev->digest (the caller frees it) */
  RS_EV_SET_DIGEST,           /* down: u.digest: a joiner's windows start there */
  RS_EV_MERGE_DIGEST,         /* down: u.digest: windows of members new after a merge */
  RS_EV_STABLE,               /* down: u.digest: delivered everywhere; NAKACK2 may purge */
  RS_EV_MERGE,                /* up: u.merge: MERGE3 found subgroups with other coordinators */
  RS_EV__COUNT
};

struct rs_view_data;
struct rs_digest;
struct rs_ping_data;

struct rs_event {
  enum rs_event_type type;
  union {
    const char *cluster;
    int status;
    struct rs_addr addr;
    const struct rs_view_data *view;
    const struct rs_digest *digest;
    struct {
      struct rs_addr addr;
      struct rs_phys phys;
      const char *name; /* logical name, may be NULL */
    } mapping;
    struct {
      const char *key;
      int64_t value;
    } config;
    struct {
      rs_time timeout;          /* 0: discovery's own `timeout` attribute */
      size_t num_members;       /* stop early once this many answered (0: wait the timeout) */
      /* Called exactly once, on the loop thread, with what was found (not including ourselves);
       * the array is valid during the call only. Not called if the stack stops first: stop()
       * cancels outstanding requests. */
      void (*done)(void *arg, const struct rs_ping_data *found, size_t n);
      void *arg;
    } find;
    struct {
      struct rs_view_data *const *views; /* one view per subgroup, as each coordinator sees it */
      size_t n;
    } merge;
  } u;
  struct rs_phys phys;          /* result of GET_PHYSICAL_ADDRESS */
  struct rs_digest *digest_out; /* GET_DIGEST: points to caller storage to fill */
};

/* ---------------------------------------------------------------------------------------------
 * A protocol: a const ops table (one per file, listed in stack/registry.c) and an instance that
 * embeds struct rs_protocol first. Handlers left NULL pass messages and events through.
 * Messages are owned by whoever holds them: down_msg/up_msg take ownership (forward or free).
 */
enum rs_protocol_kind_flags {
  RS_PROTO_TRANSPORT = 1u << 0, /* must be at the bottom */
};

struct rs_stats_printer; /* see stack/stack.h */

struct rs_protocol_ops {
  const char *name;              /* the XML element without package: "NAKACK2" */
  const char *package;           /* "pbcast", "raft" or NULL */
  const char *const *aliases;    /* other accepted names ("FRAG2" for FRAG4), NULL-terminated */
  uint16_t id;                   /* wire constant: header id; never renumber */
  unsigned flags;                /* RS_PROTO_* */
  size_t size;                   /* instance size */
  const char *description;       /* one line for `raftstack protocols` */
  const struct rs_attr *attrs;   /* NULL or RS_ATTR_END-terminated */
  const struct rs_header_type *header; /* NULL: adds no header */
  /* Names of protocols that must be somewhere below this one (NULL-terminated; an entry
   * "A|B" is satisfied by either). */
  const char *const *requires_below;
  /* Names of protocols that must be somewhere above this one (NO_DUPES: "GMS"). */
  const char *const *requires_above;

  /* Lifecycle: init bottom→top after attributes are set (validate, allocate); start bottom→top
   * at connect; stop top→bottom at disconnect; destroy top→bottom at close. init/start return 0
   * or RS_E* with the detail given to proto_error(). */
  int (*init)(struct rs_protocol *p);
  int (*start)(struct rs_protocol *p);
  void (*stop)(struct rs_protocol *p);
  void (*destroy)(struct rs_protocol *p);

  int (*down_msg)(struct rs_protocol *p, struct rs_msg *m);
  void (*up_msg)(struct rs_protocol *p, struct rs_msg *m);
  /* Optional: a batch at once (default: up_msg for each message in order). */
  void (*up_batch)(struct rs_protocol *p, struct rs_batch *b);
  int (*down_event)(struct rs_protocol *p, struct rs_event *ev);
  int (*up_event)(struct rs_protocol *p, struct rs_event *ev);
  /* Optional: counters for probe and perf ("name=value" lines through the printer). */
  void (*stats)(struct rs_protocol *p, struct rs_stats_printer *out);
};

struct rs_protocol {
  const struct rs_protocol_ops *ops;
  struct rs_stack *stack;
  struct rs_protocol *up, *down; /* neighbours; NULL at the ends */
  struct rs_runtime *rt;
  enum rs_log_level level;       /* the `level` attribute */
  bool level_set;
};

/* Passing on: to the next protocol with a handler, or off the end (the channel above, nothing
 * below: a message that falls off the bottom is freed and counted). */
int proto_down_msg(struct rs_protocol *p, struct rs_msg *m);
void proto_up_msg(struct rs_protocol *p, struct rs_msg *m);
void proto_up_batch(struct rs_protocol *p, struct rs_batch *b);
int proto_down_event(struct rs_protocol *p, struct rs_event *ev);
int proto_up_event(struct rs_protocol *p, struct rs_event *ev);

/* The stack's local address, logical name and cluster name. */
struct rs_addr proto_local_addr(const struct rs_protocol *p);
const char *proto_local_name(const struct rs_protocol *p);
const char *proto_cluster(const struct rs_protocol *p);
/* Finds a protocol of the stack by name (with or without package), or NULL. */
struct rs_protocol *proto_find(const struct rs_protocol *p, const char *name);

/* Records why init/start failed ("PROTOCOL: <text>"); returns RS_ECONFIG for chaining. */
int proto_error(struct rs_protocol *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logging at the protocol's level, with the protocol's name as subsystem. */
void proto_log(const struct rs_protocol *p, enum rs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool proto_log_enabled(const struct rs_protocol *p, enum rs_log_level level);
#define PLOG(p, lvl, ...)                                                   \
  do {                                                                      \
    if (proto_log_enabled((p), RS_LOG_##lvl)) proto_log((p), RS_LOG_##lvl, __VA_ARGS__); \
  } while (0)

/* A rate limiter for log lines about bad input: at most one line per `interval`, saying how
 * many were suppressed in between. Counting is the caller's (its stats). */
struct rs_ratelimit {
  rs_time last;
  uint64_t suppressed;
};
/* True when a line may be logged now; *suppressed receives the count since the last one. */
bool ratelimit_ok(struct rs_ratelimit *rl, rs_time now, rs_time interval, uint64_t *suppressed);

/* ---------------------------------------------------------------------------------------------
 * The registry (stack/registry.c): every protocol compiled in, and their header types.
 */
extern const struct rs_protocol_ops *const rs_protocol_registry[];
extern const size_t rs_protocol_registry_len;
/* By XML element name: "NAKACK2", "pbcast.NAKACK2", an alias, or a fully qualified Java class
 * name ("org.jgroups.protocols.pbcast.NAKACK2"). NULL when unknown. */
const struct rs_protocol_ops *registry_find(const char *name);
const struct rs_header_type *registry_header_type(uint16_t id);
/* Registers the header type of a protocol defined outside raftstack; its id must be in
 * 1024..2047 and its size at most RS_HDR_INLINE. Call before any stack is built. 0, RS_EINVAL or
 * RS_EEXIST. */
int registry_add_header(const struct rs_header_type *h);

#endif
