/* raft-example: a replicated counter on the RaftHandle (rs_raft_open, set, set_async, role
 * listener). */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raftstack/raftstack.h>

/*
 * Usage:
 *   raft-example                       three members A, B, C in this process, over LOOPBACK
 *   raft-example CONFIG.xml ID [-Dk=v]  one member, ID, over a stack from CONFIG.xml (e.g.
 *                                      xml-configs/raft.xml; start A, B and C in three shells)
 *
 * The state machine is a counter. A command is a signed decimal delta ("+1", "-3"); applying it
 * adds the delta and answers with the new value. Every member applies every committed command
 * in log order, so every member's counter goes through the same values.
 */

/* ---- the state machine --------------------------------------------------------------------- */

struct counter {
  const char *name;
  atomic_llong value; /* written on the member's loop thread, read by main */
};

/* Runs on the member's loop thread, once per committed command, in log order. */
static int counter_apply(void *arg, uint64_t index, const void *data, size_t len,
                         struct rs_raft_reply *reply) {
  struct counter *c = arg;
  char buf[32];
  if (len == 0 || len >= sizeof(buf)) return RS_EINVAL; /* still applied: it changes nothing */
  memcpy(buf, data, len);
  buf[len] = '\0';
  long long delta = strtoll(buf, NULL, 10);
  long long v = atomic_fetch_add(&c->value, delta) + delta;
  char rsp[32];
  int n = snprintf(rsp, sizeof(rsp), "%lld", v);
  rs_raft_reply_set(reply, rsp, (size_t)n); /* copied: only the caller of set on the node that
                                               appended the command receives it */
  (void)index;
  return 0;
}

/* A role listener: this is where a cluster singleton would start (Leader) or stop its work. */
static void on_role(void *arg, enum rs_raft_role role, uint64_t term, const char *leader) {
  struct counter *c = arg;
  printf("%s: %s in term %" PRIu64 ", leader %s\n", c->name, rs_raft_role_name(role), term,
         leader ? leader : "unknown");
}

static const struct rs_state_machine counter_sm = {.apply = counter_apply};

/* ---- helpers -------------------------------------------------------------------------------- */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/*
 * Adds delta through Raft and prints the new value. What each error means for the caller:
 *  RS_ENOLEADER, RS_ENOTLEADER: nothing was appended; retrying is safe (here: after 100 ms).
 *  RS_ETIMEDOUT, RS_EUNKNOWN: the delta may or may not be applied. Retrying could add it twice,
 *    so a real application makes commands idempotent (a client id and a sequence number in each
 *    command, remembered by the state machine); this example only reports it.
 */
static int add(struct rs_raft *h, const char *delta) {
  for (int attempt = 0; attempt < 50; attempt++) {
    struct rs_raft_rsp rsp;
    int rc = rs_raft_set(h, delta, strlen(delta), &rsp, 2000);
    if (rc == 0) {
      printf("%s: %s -> %.*s\n", rs_raft_id(h), delta, (int)rsp.len, (const char *)rsp.data);
      free(rsp.data); /* the response is ours */
      return 0;
    }
    if (rc != RS_ENOLEADER && rc != RS_ENOTLEADER) {
      printf("%s: %s: %s (outcome unknown)\n", rs_raft_id(h), delta, rs_strerror(rc));
      return rc;
    }
    free(rsp.data); /* with RS_ENOTLEADER: the leader's raft_id, when known */
    sleep_ms(100);
  }
  return RS_ENOLEADER;
}

/* Called on the loop thread when an rs_raft_set_async completes; must not block. */
static void on_added(void *arg, int status, const void *data, size_t len) {
  const char *delta = arg;
  if (status == 0)
    printf("async %s -> %.*s\n", delta, (int)len, (const char *)data);
  else
    printf("async %s: %s\n", delta, rs_strerror(status));
}

/* ---- three members in one process ----------------------------------------------------------- */

#define LOCAL_XML                                                                                  \
  "<config><LOOPBACK/>"                                                                            \
  "<raft.ELECTION election_min_interval=\"150ms\" election_max_interval=\"300ms\" "                \
  "heartbeat_interval=\"50ms\"/>"                                                                  \
  "<raft.RAFT raft_id=\"%s\" members=\"A,B,C\" log_class=\"memory\"/>"                             \
  "<raft.REDIRECT/></config>"

static int run_local(void) {
  static const char *const names[] = {"A", "B", "C"};
  struct rs_channel *ch[3];
  struct rs_raft *h[3];
  struct counter c[3];
  for (int i = 0; i < 3; i++) {
    c[i].name = names[i];
    atomic_init(&c[i].value, 0);
    char xml[512], err[1024];
    snprintf(xml, sizeof(xml), LOCAL_XML, names[i]);
    struct rs_channel_opts o = {.config_xml = xml, .name = names[i]};
    /* Open the channel, wrap it in a handle (this installs the state machine), then connect. */
    if (rs_channel_open(&ch[i], &o, err, sizeof(err)) != 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    if (rs_raft_open(&h[i], ch[i], &counter_sm, &c[i]) != 0 ||
        rs_raft_add_role_listener(h[i], on_role, &c[i]) < 0 ||
        rs_channel_connect(ch[i], "counter") != 0) {
      fprintf(stderr, "%s: cannot start\n", names[i]);
      return 1;
    }
  }
  /* One add on every member: on the leader it is appended there, on a follower REDIRECT sends
   * it to the leader, and the leader's response comes back. */
  for (int i = 0; i < 3; i++)
    if (add(h[i], "+1") != 0) return 1;

  /* Ten adds without waiting, spread over the members, each with a completion callback (run on
   * the loop thread of the member that made it; one member's complete in the order it made them).
   */
  static const char *const deltas[] = {"+1", "+2", "+3", "+4", "+5", "+6", "+7", "+8", "+9", "+10"};
  struct rs_raft_future *f[10];
  for (int k = 0; k < 10; k++) {
    if (rs_raft_set_async(h[k % 3], deltas[k], strlen(deltas[k]), &f[k]) != 0) return 1;
    rs_raft_future_on_complete(f[k], on_added, (void *)deltas[k]);
  }
  int failed = 0;
  for (int k = 0; k < 10; k++) {
    failed |= rs_raft_future_wait_for(f[k], 5000, NULL) != 0;
    rs_raft_future_free(f[k]);
  }

  /* Every member applies every command: wait until they have applied as much as the leader. */
  uint64_t target = 0;
  for (int i = 0; i < 3; i++)
    if (rs_raft_is_leader(h[i])) target = rs_raft_last_applied(h[i]);
  for (int t = 0; t < 500; t++) {
    int behind = 0;
    for (int i = 0; i < 3; i++)
      behind += rs_raft_last_applied(h[i]) < target;
    if (!behind) break;
    sleep_ms(10);
  }
  for (int i = 0; i < 3; i++) {
    printf("%s: counter = %lld (applied up to index %" PRIu64 ")\n", names[i],
           (long long)atomic_load(&c[i].value), rs_raft_last_applied(h[i]));
    failed |= atomic_load(&c[i].value) != 3 + 55;
  }
  /* Close the handles first (outstanding requests end with RS_ESHUTDOWN), then the channels. */
  for (int i = 0; i < 3; i++) {
    rs_raft_close(h[i]);
    rs_channel_close(ch[i]);
  }
  return failed;
}

/* ---- one member of a cluster of processes ---------------------------------------------------- */

static int run_member(const char *config, const char *id, int nprops, char **props) {
  const char *p[64];
  char idprop[300];
  snprintf(idprop, sizeof(idprop), "raft_id=%s", id);
  int n = 0;
  p[n++] = idprop;
  for (int i = 0; i < nprops && n < 62; i++)
    if (!strncmp(props[i], "-D", 2)) p[n++] = props[i] + 2;
  p[n] = NULL;
  struct counter c = {.name = id};
  atomic_init(&c.value, 0);
  struct rs_channel_opts o = {.config_file = config, .props = p, .name = id};
  struct rs_channel *ch;
  struct rs_raft *h;
  char err[1024];
  if (rs_channel_open(&ch, &o, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  int rc = rs_raft_open(&h, ch, &counter_sm, &c);
  if (rc == 0) rc = rs_raft_add_role_listener(h, on_role, &c) < 0 ? RS_ENOMEM : 0;
  if (rc == 0) rc = rs_channel_connect(ch, "counter");
  if (rc != 0) {
    fprintf(stderr, "%s: %s %s\n", id, rs_strerror(rc), rs_channel_last_error(ch));
    rs_channel_close(ch);
    return 1;
  }
  for (int i = 0; i < 10; i++) {
    add(h, "+1");
    sleep_ms(1000);
  }
  printf("%s: counter = %lld\n", id, (long long)atomic_load(&c.value));
  rs_raft_close(h);
  rs_channel_close(ch);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 1) return run_local();
  if (argc >= 3 && argv[1][0] != '-') return run_member(argv[1], argv[2], argc - 3, argv + 3);
  fprintf(stderr, "usage: raft-example                 (three members in this process)\n"
                  "       raft-example CONFIG.xml ID [-Dname=value ...]\n");
  return 2;
}
