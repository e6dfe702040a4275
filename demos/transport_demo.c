/* transport-demo: processes on 127.0.0.1 exchanging lines of text over UDP or TCP. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <raftstack/raftstack.h>

/*
 * Each line read from standard input goes to the group; each message received is printed as
 * "NAME: text". The sender's name travels in the message (u8 length, name, then the text), since
 * a transport-only stack has no discovery to tell names; a message without it is printed with
 * the sender's UUID. At end of input the demo waits a moment for messages still in flight (or,
 * with --expect N, until N messages have arrived), then leaves, so a script can drive it:
 *
 *   (sleep 1; echo hello) | transport-demo --transport tcp --name A --expect 1 &
 *   (sleep 1; echo hi)    | transport-demo --transport tcp --name B --expect 1
 */

#define MAX_LINE 4096
#define GRACE_MS 300 /* at least this long between end of input and leaving */

struct demo {
  const char *transport, *name, *config, *peers, *cluster;
  int port;
  long expect;
  long linger_ms;
  const char *props[64];
  int n_props;
  atomic_long received;
  pthread_mutex_t out_lock;
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: transport-demo --name NAME [--transport udp|tcp] [--port P]\n"
          "                      [--peers host:port,...] [--cluster C] [--expect N]\n"
          "                      [--linger MS] [--config FILE] [-Dname=value ...]\n"
          "\n"
          "Sends every line of standard input to the group and prints every message received\n"
          "as 'NAME: text'. Run two or more on this machine, e.g. in two terminals:\n"
          "  transport-demo --transport tcp --name A\n"
          "  transport-demo --transport tcp --name B\n"
          "\n"
          "  --transport T  udp (IP multicast through the loopback interface, ip_ttl 0) or tcp\n"
          "                 (default)\n"
          "  --port P       first port to bind on 127.0.0.1 (default: udp 7600, tcp 7800); the\n"
          "                 next free one of P..P+10 is taken\n"
          "  --peers LIST   members' host:port for group messages (tcp; default P..P+3)\n"
          "  --cluster C    cluster name (default 'demo')\n"
          "  --expect N     at end of input, wait until N messages have been received\n"
          "  --linger MS    at end of input, wait at most this long (default 1000, or 10000\n"
          "                 with --expect)\n"
          "  --config FILE  an XML stack instead of the built-in one (see xml-configs/); the\n"
          "                 -D properties fill its ${...}\n");
}

/* ---- receiving ------------------------------------------------------------------------------ */

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct demo *d = arg;
  const char *p = data;
  char who[RS_ADDR_STRLEN];
  size_t nlen = len ? (uint8_t)p[0] : 0;
  const char *name = who, *text = p;
  int name_len, text_len;
  if (len > 0 && nlen > 0 && 1 + nlen <= len) {
    name = p + 1;
    name_len = (int)nlen;
    text = p + 1 + nlen;
    text_len = (int)(len - 1 - nlen);
  } else {
    rs_addr_format(src, who);
    name_len = (int)strlen(who);
    text_len = (int)len;
  }
  pthread_mutex_lock(&d->out_lock);
  printf("%.*s: %.*s\n", name_len, name, text_len, text);
  fflush(stdout);
  pthread_mutex_unlock(&d->out_lock);
  atomic_fetch_add(&d->received, 1);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct demo *d) {
  static const struct option longopts[] = {
      {"transport", required_argument, NULL, 't'}, {"name", required_argument, NULL, 'n'},
      {"port", required_argument, NULL, 'p'},      {"peers", required_argument, NULL, 'P'},
      {"config", required_argument, NULL, 'c'},    {"cluster", required_argument, NULL, 'C'},
      {"expect", required_argument, NULL, 'e'},    {"linger", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "t:n:p:P:c:C:e:l:D:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 't': d->transport = optarg; break;
    case 'n': d->name = optarg; break;
    case 'p': d->port = atoi(optarg); break;
    case 'P': d->peers = optarg; break;
    case 'c': d->config = optarg; break;
    case 'C': d->cluster = optarg; break;
    case 'e': d->expect = atol(optarg); break;
    case 'l': d->linger_ms = atol(optarg); break;
    case 'D':
      if (d->n_props == 63) return 2;
      d->props[d->n_props++] = optarg;
      break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || !d->name || strlen(d->name) > 255) {
    usage(stderr);
    return 2;
  }
  if (strcasecmp(d->transport, "udp") && strcasecmp(d->transport, "tcp")) {
    fprintf(stderr, "transport-demo: --transport must be udp or tcp\n");
    return 2;
  }
  if (d->port < 0 || d->port > 65535 - 10) {
    fprintf(stderr, "transport-demo: --port must be 1..65525\n");
    return 2;
  }
  return 0;
}

/* The built-in stack: the transport alone, on 127.0.0.1. */
static void build_xml(const struct demo *d, char *xml, size_t len) {
  bool udp = !strcasecmp(d->transport, "udp");
  int port = d->port ? d->port : udp ? 7600 : 7800;
  char peers[512];
  if (d->peers) snprintf(peers, sizeof(peers), "%s", d->peers);
  else snprintf(peers, sizeof(peers), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", port,
                port + 1, port + 2, port + 3);
  if (udp)
    snprintf(xml, len, "<config><UDP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"10\" "
             "ip_ttl=\"0\"%s%s%s/></config>", port, d->peers ? " peers=\"" : "",
             d->peers ? d->peers : "", d->peers ? "\"" : "");
  else
    snprintf(xml, len, "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"10\" "
             "peers=\"%s\"/></config>", port, peers);
}

static struct rs_channel *start(struct demo *d) {
  char xml[1024], err[2048];
  static const struct rs_receiver receiver = {.receive = on_receive};
  build_xml(d, xml, sizeof(xml));
  d->props[d->n_props] = NULL;
  struct rs_channel_opts o = {.name = d->name, .props = d->props};
  if (d->config) o.config_file = d->config;
  else o.config_xml = xml;
  struct rs_channel *ch;
  if (rs_channel_open(&ch, &o, err, sizeof(err))) {
    fprintf(stderr, "transport-demo: %s\n", err);
    return NULL;
  }
  rs_channel_set_receiver(ch, &receiver, d);
  int rc = rs_channel_connect(ch, d->cluster);
  if (rc) {
    fprintf(stderr, "transport-demo: %s (%s)\n", rs_strerror(rc), rs_channel_last_error(ch));
    rs_channel_close(ch);
    return NULL;
  }
  return ch;
}

/* ---- the input loop ------------------------------------------------------------------------- */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int send_lines(struct demo *d, struct rs_channel *ch) {
  char line[MAX_LINE], msg[1 + 255 + MAX_LINE];
  size_t nlen = strlen(d->name);
  msg[0] = (char)nlen;
  memcpy(msg + 1, d->name, nlen);
  while (fgets(line, sizeof(line), stdin)) {
    size_t len = strcspn(line, "\r\n");
    memcpy(msg + 1 + nlen, line, len);
    /* Our own lines are not echoed back: the terminal shows them already. */
    int rc = rs_channel_send(ch, NULL, msg, 1 + nlen + len, RS_MSG_DONT_LOOPBACK << 16);
    if (rc) {
      fprintf(stderr, "transport-demo: send: %s\n", rs_strerror(rc));
      return 1;
    }
  }
  return 0;
}

/* After the input ends: let messages in flight arrive, and our own last lines leave (they may
 * still sit in the stack's queues, which closing the channel discards). */
static void drain(struct demo *d) {
  long waited = 0, limit = d->linger_ms >= 0 ? d->linger_ms : d->expect ? 10000 : 1000;
  while (waited < limit) {
    if (d->expect && atomic_load(&d->received) >= d->expect) break;
    sleep_ms(10);
    waited += 10;
  }
  if (waited < GRACE_MS) sleep_ms(GRACE_MS - waited);
}

int main(int argc, char **argv) {
  struct demo d = {.transport = "tcp", .cluster = "demo", .linger_ms = -1};
  pthread_mutex_init(&d.out_lock, NULL);
  if (parse_args(argc, argv, &d)) return 2;
  struct rs_channel *ch = start(&d);
  if (!ch) return 1;
  char *stack = rs_channel_print_stack(ch);
  fprintf(stderr, "%s: connected to '%s'; type lines to send them, end with Ctrl-D\n", d.name,
          d.cluster);
  if (getenv("RS_DEMO_VERBOSE") && stack) fprintf(stderr, "%s", stack);
  free(stack);
  int rc = send_lines(&d, ch);
  drain(&d);
  rs_channel_close(ch);
  pthread_mutex_destroy(&d.out_lock);
  if (d.expect && atomic_load(&d.received) < d.expect) {
    fprintf(stderr, "transport-demo: received %ld of %ld messages\n", atomic_load(&d.received),
            d.expect);
    return 1;
  }
  return rc;
}
