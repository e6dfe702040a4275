/* chat: every line typed on one member appears on all members; views are printed as they change. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raftstack/raftstack.h>

/*
 * Interactive or scripted: lines come from standard input, and received lines ("NAME: text") and
 * views ("** view [A|3] (3) [A, B, C]") go to standard output, flushed per line. For scripts:
 * --members N waits until a view has had N members before reading input, and --expect N waits
 * after the end of input until N lines of other members have been received (at most --linger
 * ms), then leaves.
 */

#define MAX_MEMBERS 256
#define MAX_LINE 4096

struct chat {
  const char *config, *name, *cluster;
  const char *props[64];
  int n_props;
  long members_wanted, expect, linger_ms;
  pthread_mutex_t lock;
  pthread_cond_t changed;
  size_t n_members, most_members; /* now, and the most any view had (--members waits for it) */
  struct rs_addr self;
  struct rs_addr members[MAX_MEMBERS];
  char names[MAX_MEMBERS][128];
  long received;
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: chat --config FILE --name NAME [--cluster C] [-Dname=value ...]\n"
          "            [--members N] [--expect N] [--linger MS]\n\n"
          "Every line of standard input goes to the whole group; every line received is printed\n"
          "as 'NAME: text', and every new view as '** view [coord|id] (n) [members]'.\n"
          "  --config FILE  the stack, e.g. xml-configs/udp.xml or xml-configs/tcp.xml\n"
          "  --members N    wait until a view has had N members before reading input\n"
          "  --expect N     at end of input, wait until N lines of others were received\n"
          "  --linger MS    at end of input, wait at most this long (default 500; 30000 with --expect)\n");
}

static const char *name_of(struct chat *c, const struct rs_addr *a, char *buf) {
  for (size_t i = 0; i < c->n_members; i++)
    if (rs_addr_eq(&c->members[i], a)) return c->names[i];
  return rs_addr_format(a, buf);
}

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct chat *c = arg;
  char buf[RS_ADDR_STRLEN];
  pthread_mutex_lock(&c->lock);
  printf("%s: %.*s\n", name_of(c, src, buf), (int)len, (const char *)data);
  fflush(stdout);
  if (!rs_addr_eq(src, &c->self)) c->received++; /* --expect counts the others' lines */
  pthread_cond_broadcast(&c->changed);
  pthread_mutex_unlock(&c->lock);
}

static void on_view(void *arg, const struct rs_view *v) {
  struct chat *c = arg;
  pthread_mutex_lock(&c->lock);
  c->n_members = v->n_members < MAX_MEMBERS ? v->n_members : MAX_MEMBERS;
  if (c->n_members > c->most_members) c->most_members = c->n_members;
  const char *creator = NULL;
  char buf[RS_ADDR_STRLEN];
  for (size_t i = 0; i < v->n_members && !creator; i++)
    if (rs_addr_eq(&v->members[i], &v->creator)) creator = v->names[i];
  printf("** view [%s|%llu] (%zu) [", creator ? creator : rs_addr_format(&v->creator, buf),
         (unsigned long long)v->id, v->n_members);
  for (size_t i = 0; i < v->n_members; i++) {
    if (i < MAX_MEMBERS) {
      c->members[i] = v->members[i];
      snprintf(c->names[i], sizeof(c->names[i]), "%s", v->names[i]);
    }
    printf("%s%s", i ? ", " : "", v->names[i]);
  }
  printf("]\n");
  fflush(stdout);
  pthread_cond_broadcast(&c->changed);
  pthread_mutex_unlock(&c->lock);
}

/* Waits until pred holds or ms pass; false on timeout. */
static bool wait_for(struct chat *c, bool (*pred)(struct chat *), long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&c->lock);
  int rc = 0;
  while (!pred(c) && rc == 0) rc = pthread_cond_timedwait(&c->changed, &c->lock, &ts);
  bool ok = pred(c);
  pthread_mutex_unlock(&c->lock);
  return ok;
}

/* Latched: a member that saw the full view goes on even if someone has left since. */
static bool enough_members(struct chat *c) { return (long)c->most_members >= c->members_wanted; }
static bool enough_lines(struct chat *c) { return c->received >= c->expect; }

static int parse_args(int argc, char **argv, struct chat *c) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
      {"cluster", required_argument, NULL, 'C'}, {"members", required_argument, NULL, 'm'},
      {"expect", required_argument, NULL, 'e'}, {"linger", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "c:n:C:m:e:l:D:h", opts, NULL)) != -1) {
    switch (opt) {
    case 'c': c->config = optarg; break;
    case 'n': c->name = optarg; break;
    case 'C': c->cluster = optarg; break;
    case 'm': c->members_wanted = atol(optarg); break;
    case 'e': c->expect = atol(optarg); break;
    case 'l': c->linger_ms = atol(optarg); break;
    case 'D':
      if (c->n_props == 63) return 2;
      c->props[c->n_props++] = optarg;
      break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || !c->config || !c->name) {
    usage(stderr);
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct chat c = {.cluster = "chat", .linger_ms = -1};
  pthread_mutex_init(&c.lock, NULL);
  pthread_cond_init(&c.changed, NULL);
  if (parse_args(argc, argv, &c)) return 2;
  if (c.linger_ms < 0) c.linger_ms = c.expect ? 30000 : 500;
  struct rs_channel *ch;
  char err[2048];
  struct rs_channel_opts o = {.config_file = c.config, .props = c.props, .name = c.name};
  if (rs_channel_open(&ch, &o, err, sizeof(err))) {
    fprintf(stderr, "chat: %s\n", err);
    return 2;
  }
  static const struct rs_receiver r = {.receive = on_receive, .view = on_view};
  rs_channel_set_receiver(ch, &r, &c);
  int rc = rs_channel_connect(ch, c.cluster);
  if (rc) {
    fprintf(stderr, "chat: connect: %s: %s\n", rs_strerror(rc), rs_channel_last_error(ch));
    rs_channel_close(ch);
    return 1;
  }
  pthread_mutex_lock(&c.lock);
  c.self = rs_channel_address(ch);
  pthread_mutex_unlock(&c.lock);
  if (c.members_wanted && !wait_for(&c, enough_members, 60000))
    fprintf(stderr, "chat: the view did not reach %ld members\n", c.members_wanted);
  char line[MAX_LINE];
  while (fgets(line, sizeof(line), stdin)) {
    size_t n = strcspn(line, "\r\n");
    if (n == 0) continue;
    if ((rc = rs_channel_send(ch, NULL, line, n, 0)) != 0) fprintf(stderr, "chat: send: %s\n", rs_strerror(rc));
  }
  if (c.expect) wait_for(&c, enough_lines, c.linger_ms);
  /* Stay a moment: a line of ours lost on the network is repaired by retransmission only while we
   * are here (there is no flush at leave, as in JGroups without FLUSH). */
  long stay = c.expect ? 1500 : c.linger_ms;
  struct timespec ts = {stay / 1000, (stay % 1000) * 1000000};
  nanosleep(&ts, NULL);
  rs_channel_close(ch);
  pthread_mutex_destroy(&c.lock);
  pthread_cond_destroy(&c.changed);
  return c.expect && c.received < c.expect ? 1 : 0;
}
