/* The Raft log tests' fixture: one struct raft_log in the simulation or on libev, and file helpers.
 */
#ifndef RS_TESTS_UNIT_LOG_FIXTURE_H
#define RS_TESTS_UNIT_LOG_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "raft/log/log.h"
#include "raft/log/log_internal.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"

/*
 * One fixture drives a struct raft_log either in the simulation (class "memory": the test
 * thread steps the world, so calls are direct) or on a libev runtime (class "file": the store's
 * I/O thread completes batches with rs_runtime_call, so every call to the log is made on the
 * loop thread through lf_fx_do and the test waits for it).
 */

enum call_op {
  C_OPEN,
  C_CLOSE,
  C_APPEND,
  C_APPEND_N,
  C_TRUNC_SUFFIX,
  C_TRUNC_APPEND,
  C_TRUNC_PREFIX,
  C_META,
  C_COMMIT,
  C_SNAP,
  C_ENTRY,
};

struct snap {
  rs_index first, last, durable, commit;
  rs_term last_term, term, term_at_prev;
  bool meta_durable;
  char voted_for[RAFT_ID_MAX + 1];
  int error;
  int persisted_calls; /* listener calls so far (read on the loop) */
  uint64_t size;
  struct raft_log_stats stats;
};

struct call {
  enum call_op op;
  uint64_t a, b, c;
  const char *s;
  int rc;
  rs_index index;
  struct raft_entry entry; /* C_ENTRY: a copy (data points into buf, a reference we hold) */
  bool found;
};

struct fx {
  struct rs_sim *sim;
  struct rs_runtime *rt;
  struct raft_log *log;
  const struct rs_log_ops *ops;
  char dir[256];
  bool use_fsync;
  size_t segment_size;
  char err[512];
  int persisted_calls, last_status;
  struct snap snap;
};

extern struct fx LF; /* the fixture of the running test */

struct FTW;

/* Entry i's payload (as lf_append writes it with term t: seed i * 1000 + t) and its length. */
void lf_payload(uint8_t *p, size_t len, uint64_t seed);
uint32_t lf_payload_len(uint64_t index);
void lf_take_snap(struct fx *fx); /* on the loop thread */
int lf_fx_do(struct call *c);     /* runs c on the log's loop thread; c->rc */

int lf_log_open(void); /* "n1" in LF.dir with LF.use_fsync and LF.segment_size */
void lf_log_close(void);
int lf_append(rs_index idx, rs_term term);
int lf_append_n(rs_index a, rs_index b, rs_term term); /* a..b in one loop callback */
int lf_trunc_suffix(rs_index from);
/* Truncates from a and appends a..b of term t in one loop callback, as a follower does. */
int lf_trunc_append(rs_index a, rs_index b, rs_term t);
int lf_trunc_prefix(rs_index upto, rs_term t);
int lf_set_meta(rs_term t, const char *v);
int lf_set_commit(rs_index c);
struct snap *lf_snap(void);
/* Waits until every mutation went through the store and the listener. */
void lf_settle(void);
void lf_check_entry(rs_index idx, rs_term t);
bool lf_has_entry(rs_index idx);

void lf_setup_memory(void);
void lf_setup_file(void);
void lf_teardown(void);
int lf_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw);

/* Files of the log directory LF.dir/n1.log. */
void lf_seg_path(char *buf, size_t len, rs_index first);
uint8_t *lf_read_all(const char *path, size_t *len); /* malloc'd */
void lf_write_all_file(const char *path, const uint8_t *p, size_t len);
size_t lf_count_segments(void);

#endif
