/* The Raft log tests' fixture (log_fixture.h). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/log_fixture.h"

struct fx LF;

/* ---- the fixture ---------------------------------------------------------------------------- */

void lf_payload(uint8_t *p, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)(seed * 31 + i * 7 + (seed >> 3));
}
uint32_t lf_payload_len(uint64_t index) { return (uint32_t)(index % 37) + 1; }

static void persisted(void *arg, int status) {
  struct fx *fx = arg;
  fx->persisted_calls++;
  fx->last_status = status;
}

void lf_take_snap(struct fx *fx) {
  struct raft_log *l = fx->log;
  struct snap *s = &fx->snap;
  s->first = raft_log_first_index(l);
  s->last = raft_log_last_index(l);
  s->durable = raft_log_durable_index(l);
  s->commit = raft_log_commit_index(l);
  s->last_term = raft_log_last_term(l);
  s->term = raft_log_current_term(l);
  s->term_at_prev = raft_log_term_at(l, s->first - 1);
  s->meta_durable = raft_log_meta_durable(l);
  snprintf(s->voted_for, sizeof(s->voted_for), "%s", raft_log_voted_for(l));
  s->error = raft_log_error(l);
  s->size = raft_log_size_bytes(l);
  s->persisted_calls = fx->persisted_calls;
  raft_log_get_stats(l, &s->stats);
}

/* Appends entries a..b (inclusive) of term c, payloads from lf_payload(), in one call. */
static int lf_append_range(struct fx *fx, rs_index a, rs_index b, rs_term term) {
  for (rs_index i = a; i <= b; i++) {
    uint32_t len = lf_payload_len(i);
    struct rs_buf *buf = rs_buf_new(len + 8);
    if (!buf) return RS_ENOMEM;
    lf_payload(buf->data + 8, len, i * 1000 + term); /* a slice at offset 8: never copied */
    rs_index idx;
    int rc = raft_log_append(fx->log, term, RAFT_ENTRY_COMMAND, buf, buf->data + 8, len, &idx);
    rs_buf_unref(buf);
    if (rc) return rc;
    if (idx != i) return RS_EINVAL;
  }
  return 0;
}

static void exec(struct fx *fx, struct call *c) {
  switch (c->op) {
  case C_OPEN: {
    struct log_config cfg = {
        .dir = fx->dir, .name = "n1", .use_fsync = fx->use_fsync, .segment_size = fx->segment_size};
    fx->persisted_calls = 0;
    fx->last_status = 0;
    c->rc = raft_log_open(&fx->log, fx->ops, &cfg, fx->rt, fx->err, sizeof(fx->err));
    if (c->rc == 0) raft_log_set_listener(fx->log, persisted, fx);
    break;
  }
  case C_CLOSE:
    raft_log_close(fx->log);
    fx->log = NULL;
    break;
  case C_APPEND: c->rc = lf_append_range(fx, c->a, c->a, c->b); break;
  case C_APPEND_N: c->rc = lf_append_range(fx, c->a, c->b, c->c); break;
  case C_TRUNC_SUFFIX: c->rc = raft_log_truncate_suffix(fx->log, c->a); break;
  case C_TRUNC_APPEND:
    c->rc = raft_log_truncate_suffix(fx->log, c->a);
    if (c->rc == 0) c->rc = lf_append_range(fx, c->a, c->b, c->c);
    break;
  case C_TRUNC_PREFIX: c->rc = raft_log_truncate_prefix(fx->log, c->a, c->b); break;
  case C_META: c->rc = raft_log_set_term_vote(fx->log, c->a, c->s); break;
  case C_COMMIT: c->rc = raft_log_set_commit(fx->log, c->a); break;
  case C_SNAP: lf_take_snap(fx); break;
  case C_ENTRY: {
    const struct raft_entry *e = raft_log_get(fx->log, c->a);
    c->found = e != NULL;
    if (e) {
      c->entry = *e;
      if (e->buf) rs_buf_ref(e->buf);
    }
    break;
  }
  }
}

struct loop_job {
  struct fx *fx;
  struct call *c;
  struct rs_completion done;
};

static void loop_job_run(void *arg) {
  struct loop_job *j = arg;
  exec(j->fx, j->c);
  completion_done(&j->done, 0);
}

/* Runs the call on the log's loop thread (directly in the simulation) and returns c->rc. */
int lf_fx_do(struct call *c) {
  if (LF.sim) {
    exec(&LF, c);
    return c->rc;
  }
  struct loop_job j = {.fx = &LF, .c = c};
  completion_init(&j.done);
  ck_assert_int_eq(rs_runtime_call(LF.rt, loop_job_run, &j), 0);
  ck_assert_int_eq(completion_wait(LF.rt, &j.done, 20 * RS_SEC), 0);
  completion_fini(&j.done);
  return c->rc;
}

int lf_log_open(void) { return lf_fx_do(&(struct call){.op = C_OPEN}); }
void lf_log_close(void) { lf_fx_do(&(struct call){.op = C_CLOSE}); }
int lf_append(rs_index idx, rs_term term) {
  return lf_fx_do(&(struct call){.op = C_APPEND, .a = idx, .b = term});
}
int lf_append_n(rs_index a, rs_index b, rs_term term) {
  return lf_fx_do(&(struct call){.op = C_APPEND_N, .a = a, .b = b, .c = term});
}
int lf_trunc_suffix(rs_index from) {
  return lf_fx_do(&(struct call){.op = C_TRUNC_SUFFIX, .a = from});
}
int lf_trunc_append(rs_index a, rs_index b, rs_term t) {
  return lf_fx_do(&(struct call){.op = C_TRUNC_APPEND, .a = a, .b = b, .c = t});
}
int lf_trunc_prefix(rs_index upto, rs_term t) {
  return lf_fx_do(&(struct call){.op = C_TRUNC_PREFIX, .a = upto, .b = t});
}
int lf_set_meta(rs_term t, const char *v) {
  return lf_fx_do(&(struct call){.op = C_META, .a = t, .s = v});
}
int lf_set_commit(rs_index c) { return lf_fx_do(&(struct call){.op = C_COMMIT, .a = c}); }
struct snap *lf_snap(void) {
  lf_fx_do(&(struct call){.op = C_SNAP});
  return &LF.snap;
}

/* Every mutation made so far has been through the store and the listener. */
static bool lf_settled_cond(void *arg) {
  (void)arg;
  lf_take_snap(&LF);
  return LF.snap.error || (LF.snap.durable == LF.snap.last && LF.snap.meta_durable &&
                           LF.snap.stats.batches == (uint64_t)LF.snap.persisted_calls);
}
static bool lf_settled_ev(void *arg) {
  (void)arg;
  /* On the loop, persisted_calls included: the listener writes it there (no data race). A flush
   * posted by an earlier call has run by now. */
  struct snap *s = lf_snap();
  return s->error || (s->durable == s->last && s->meta_durable &&
                      s->stats.batches == (uint64_t)s->persisted_calls);
}
void lf_settle(void) {
  if (LF.sim) {
    ck_assert(rs_sim_run_until(LF.sim, lf_settled_cond, NULL, 10 * RS_SEC));
    rs_sim_run_for(LF.sim, RS_MS); /* and whatever those completions started */
    ck_assert(lf_settled_cond(NULL));
  } else {
    bool ok = wait_until(lf_settled_ev, NULL, 20000);
    ck_assert_msg(
        ok, "the log did not settle: last %llu durable %llu meta %d batches %llu done %d err %d",
        (unsigned long long)LF.snap.last, (unsigned long long)LF.snap.durable, LF.snap.meta_durable,
        (unsigned long long)LF.snap.stats.batches, LF.snap.persisted_calls, LF.snap.error);
  }
}

/* The entry at idx, checked against what append_range wrote with term t. */
void lf_check_entry(rs_index idx, rs_term t) {
  struct call c = {.op = C_ENTRY, .a = idx};
  lf_fx_do(&c);
  ck_assert_msg(c.found, "entry %llu missing", (unsigned long long)idx);
  ck_assert_uint_eq(c.entry.index, idx);
  ck_assert_uint_eq(c.entry.term, t);
  ck_assert_uint_eq(c.entry.type, RAFT_ENTRY_COMMAND);
  ck_assert_uint_eq(c.entry.len, lf_payload_len(idx));
  uint8_t want[64];
  lf_payload(want, c.entry.len, idx * 1000 + t);
  ck_assert_msg(memcmp(c.entry.data, want, c.entry.len) == 0, "entry %llu payload differs",
                (unsigned long long)idx);
  ck_assert_ptr_nonnull(c.entry.buf);
  ck_assert(c.entry.data >= c.entry.buf->data &&
            c.entry.data + c.entry.len <= c.entry.buf->data + c.entry.buf->cap);
  rs_buf_unref(c.entry.buf);
}
bool lf_has_entry(rs_index idx) {
  struct call c = {.op = C_ENTRY, .a = idx};
  lf_fx_do(&c);
  if (c.found) rs_buf_unref(c.entry.buf);
  return c.found;
}

int lf_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void fixture_common(void) {
  memset(&LF, 0, sizeof(LF));
  LF.use_fsync = true;
  snprintf(LF.dir, sizeof(LF.dir), "/tmp/rs-test-log-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(LF.dir));
}

void lf_setup_memory(void) {
  fixture_common();
  LF.ops = log_class_find("memory");
  LF.sim = rs_sim_new(7);
  LF.rt = rs_sim_runtime_new(LF.sim, "n1");
}

void lf_setup_file(void) {
  fixture_common();
  LF.ops = log_class_find("file");
  LF.rt = rs_runtime_ev_new("n1");
  ck_assert_ptr_nonnull(LF.rt);
}

void lf_teardown(void) {
  if (LF.log) lf_log_close();
  log_file_fault = NULL;
  rs_runtime_destroy(LF.rt);
  if (LF.sim) rs_sim_free(LF.sim);
  nftw(LF.dir, lf_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the files of a log directory ------------------------------------------------------------ */

void lf_seg_path(char *buf, size_t len, rs_index first) {
  char name[64];
  log_segment_name(name, sizeof(name), first);
  snprintf(buf, len, "%s/n1.log/%s", LF.dir, name);
}

uint8_t *lf_read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return p;
}

void lf_write_all_file(const char *path, const uint8_t *p, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(p, 1, len, f), len);
  fclose(f);
}

size_t lf_count_segments(void) {
  char path[512];
  size_t n = 0;
  for (rs_index i = 1; i <= 2000; i++) {
    lf_seg_path(path, sizeof(path), i);
    if (access(path, F_OK) == 0) n++;
  }
  return n;
}
