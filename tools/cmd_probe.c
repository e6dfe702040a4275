/* raftstack probe: asks the members of a cluster on this host for their address, view and stats. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tools/tools.h"

static void usage(FILE *f) {
  fprintf(f, "usage: raftstack probe [--cluster NAME] [--timeout MS] [--mcast-addr A] [--port P]\n\n"
             "Multicasts a probe request on the loopback interface (TTL 0) and prints every answer:\n"
             "the member's name, address, cluster, physical address, view and the statistics of\n"
             "each protocol. Members answer when their transport has diag.enabled (the default).\n"
             "  --cluster NAME   only members of this cluster (default: all)\n"
             "  --timeout MS     how long to collect answers (default 500)\n"
             "  --mcast-addr A   the members' diag.mcast_addr (default 224.0.75.75)\n"
             "  --port P         the members' diag.port (default 7500)\n");
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int cmd_probe(int argc, char **argv) {
  static const struct option opts[] = {
      {"cluster", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 't'},
      {"mcast-addr", required_argument, NULL, 'a'}, {"port", required_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
  };
  const char *cluster = "*", *group = "224.0.75.75";
  long timeout = 500, port = 7500;
  int opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "c:t:a:p:h", opts, NULL)) != -1) {
    switch (opt) {
    case 'c': cluster = optarg; break;
    case 't': timeout = atol(optarg); break;
    case 'a': group = optarg; break;
    case 'p': port = atol(optarg); break;
    case 'h': usage(stdout); return TOOL_OK;
    default: usage(stderr); return TOOL_USAGE;
    }
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (optind != argc || port < 1 || port > 65535 || timeout < 1 || inet_pton(AF_INET, group, &to.sin_addr) != 1) {
    usage(stderr);
    return TOOL_USAGE;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct in_addr iface = {.s_addr = htonl(INADDR_LOOPBACK)};
  unsigned char ttl = 0; /* never beyond this host */
  if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) ||
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &iface, sizeof(iface)) ||
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl))) {
    perror("probe: socket");
    return TOOL_FAIL;
  }
  char req[300];
  int n = snprintf(req, sizeof(req), "RSPROBE 1 %s\n", cluster);
  if (sendto(fd, req, (size_t)n, 0, (struct sockaddr *)&to, sizeof(to)) != n) {
    perror("probe: send");
    close(fd);
    return TOOL_FAIL;
  }
  static char buf[65536];
  int answers = 0;
  long deadline = now_ms() + timeout;
  for (long left; (left = deadline - now_ms()) > 0;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0) continue;
    ssize_t got = recv(fd, buf, sizeof(buf) - 1, 0);
    if (got <= 0) continue;
    buf[got] = '\0';
    printf("%s#%d\n%s\n", answers ? "\n" : "", answers + 1, buf);
    answers++;
  }
  close(fd);
  fprintf(stderr, "probe: %d member%s answered\n", answers, answers == 1 ? "" : "s");
  return answers ? TOOL_OK : TOOL_FAIL;
}
