/* Group benchmarks (`raftstack perf multicast|rpc`): member processes, their ports and channels. */
#ifndef RS_TOOLS_PERF_GROUP_H
#define RS_TOOLS_PERF_GROUP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <raftstack/raftstack.h>

#define PG_MAX_MEMBERS 16
#define PG_MAX_PROPS 64

/* What every group benchmark is given on its command line, besides its own options. */
struct pg_opts {
  char config[4096];      /* the resolved XML file */
  const char *config_arg; /* as given (NULL: udp.xml) */
  int members;
  unsigned timeout_s; /* a member gives up after this long without progress */
  bool verbose;
  const char *user_props[PG_MAX_PROPS]; /* -Dname=value, after ours so they win */
  int n_user_props;
};

/* The environment of one run: ports (member i binds base_port + i), the multicast group, the
 * cluster name. Made by the parent before forking; members inherit it. */
struct pg_run {
  const struct pg_opts *o;
  int base_port, mcast_port;
  char mcast_addr[32], cluster[64];
};

/* A member process as the parent sees it: two pipes, one line-oriented each way. */
struct pg_member {
  pid_t pid;
  int to, from; /* parent → member, member → parent */
  char buf[512];
  size_t have;
};

/* A member's side, inside its process: its channel and its current view. */
struct pg_node {
  int index;
  char name[16];
  struct rs_channel *ch;
  int to_parent, from_parent;
  pthread_mutex_t lock; /* view fields below and whatever the benchmark guards with it */
  pthread_cond_t changed;
  size_t n_view;
  struct rs_addr view[PG_MAX_MEMBERS];
};

/* What a benchmark runs inside each member process. */
struct pg_bench {
  const struct rs_receiver *recv; /* its view callback must call pg_on_view */
  /* After "go": measure, then pg_report one result line. Returns the exit status. */
  int (*run)(struct pg_node *n, void *arg);
  /* After the channel disconnected, before it is closed (join threads blocked in a send). */
  void (*stopped)(struct pg_node *n, void *arg);
};

uint64_t pg_now_ns(void);
double pg_per_sec(uint64_t v, uint64_t ns);
void pg_put_u32(uint8_t *p, uint32_t v);
void pg_put_u64(uint8_t *p, uint64_t v);
uint32_t pg_get_u32(const uint8_t *p);
uint64_t pg_get_u64(const uint8_t *p);

/* The options every group benchmark takes: getopt_long rows and short letters. */
#define PG_COMMON_LONGOPTS                                                                   \
  {"config", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 'T'},       \
      {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'}
#define PG_COMMON_SHORTOPTS "c:D:T:vh"
/* Parses one common option (opt is getopt's return value). Returns 0, TOOL_USAGE with a message
 * printed, or -1 when opt is not a common option. */
int pg_common_opt(struct pg_opts *o, int opt, const char *arg, const char *bench);
/* Finds o->config_arg (a path, or a file name looked up in the configuration directories). */
int pg_resolve_config(struct pg_opts *o, const char *bench);
/* A positive integer option in [lo, hi], or TOOL_USAGE with a message. */
int pg_parse_u64(const char *arg, uint64_t lo, uint64_t hi, const char *what, const char *bench,
                 uint64_t *out);

/* Picks ports and a multicast group nobody on this machine uses now, and the properties. */
int pg_run_init(struct pg_run *r, const struct pg_opts *o);
const char *pg_config_base(const struct pg_opts *o);

/* Forks the members (the first alone, until it is the coordinator), waits until every member
 * sees a view of all, and tells them to start. In each member process, `node` and `arg` (the
 * benchmark's state, made before the call) are that process's copies. Returns 0, TOOL_USAGE when
 * the stack cannot be built, or TOOL_FAIL with the members killed and the reason printed. */
int pg_start(struct pg_run *r, struct pg_member *m, struct pg_node *node,
             const struct pg_bench *b, void *arg);
/* Reads a member's result line ("R ...", without the "R "); false if the member died first. */
bool pg_read_result(struct pg_member *m, char *line, size_t len);
/* With verbose, has each member print its counters in turn; then tells every member to leave
 * and waits for them (SIGKILL after 30 s). */
void pg_finish(struct pg_member *m, int n, bool verbose);

/* Member side. */
void pg_on_view(struct pg_node *n, const struct rs_view *v);
void pg_report(struct pg_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True once the parent has sent its next command (the run is over) or is gone; waits at most
 * ms. Does not consume the command. */
bool pg_parent_spoke(struct pg_node *n, int ms);

#endif
