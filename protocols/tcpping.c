/* TCPPING: discovery through a static list of members' addresses (initial_hosts, port_range). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "protocols/discovery.h"
#include "transport/tp.h"

/*
 * As JGroups' TCPPING: the members' addresses are configured, as `initial_hosts`
 * ("host[port],host[port]", also "host:port" and "[v6]:port") and/or a file of them
 * (`initial_hosts_file`: one or more per line, '#' starts a comment); each host is tried at
 * port .. port + port_range. The list is checked when the stack is built (init), so a typo fails
 * rs_channel_open with a message naming the entry. At start the names are resolved (numeric
 * addresses or host names, preferring the transport's address family) and every address is added
 * to the transport's static group targets (tp_add_static_peer). A discovery request is then a
 * group message, as PING's: on TCP it goes to every static target and every member the
 * transport has learned of (JGroups keeps those as TCPPING's "dynamic hosts"; here they are the
 * transport's table). A host name that does not resolve is skipped with a warning and tried
 * again at the next start, as JGroups retries unresolved hosts.
 *
 * Resolving host names may block (DNS). It happens once per connect, on the stack's loop thread
 * while the stack starts and nothing else runs on it, as the transport's own bind_addr
 * resolution does; numeric addresses never block.
 */

#define TCPPING_ID 9
#define MAX_HOSTS 1024 /* entries of initial_hosts and the file together */
#define HOST_MAX 253   /* longest DNS name */
#define FILE_LINE_MAX 4096

struct tcpping_host {
  char *name;
  uint16_t port;
};

struct tcpping {
  struct discovery disc;
  /* Attributes. */
  struct rs_strlist initial_hosts;
  int64_t port_range;
  char *initial_hosts_file;
  /* State. */
  struct tcpping_host *hosts;
  size_t n_hosts;
  uint64_t peers_added, unresolved;
};

#define T(p) ((struct tcpping *)(p))

/* ---------------------------------------------------------------------------------------------
 * Parsing host[port].
 */
static bool parse_port(const char *s, size_t n, uint16_t *port) {
  if (n == 0 || n > 5) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i])) return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = (uint16_t)v;
  return true;
}

static bool valid_host(const char *s, size_t n) {
  if (n == 0 || n > HOST_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isspace(c) || !isprint(c) || strchr("[],#/", c)) return false;
  }
  return true;
}

/* "host[port]" (host may be an IPv6 address), "host:port" or "[v6]:port". */
static bool split_host(const char *s, const char **host, size_t *hlen, uint16_t *port) {
  size_t n = strlen(s);
  if (n && s[0] != '[' && s[n - 1] == ']') {
    const char *lb = strchr(s, '[');
    if (!lb) return false;
    *host = s;
    *hlen = (size_t)(lb - s);
    return parse_port(lb + 1, n - *hlen - 2, port);
  }
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':') return false;
    *host = s + 1;
    *hlen = (size_t)(rb - s - 1);
    return memchr(*host, ':', *hlen) && parse_port(rb + 2, strlen(rb + 2), port);
  }
  const char *colon = strchr(s, ':');
  if (!colon || strchr(colon + 1, ':')) return false;
  *host = s;
  *hlen = (size_t)(colon - s);
  return parse_port(colon + 1, strlen(colon + 1), port);
}

/* Adds one entry; *ok is false when it is not host[port] (the caller says where it was). */
static int add_host(struct tcpping *t, const char *spec, bool *ok) {
  const char *host;
  size_t hlen;
  uint16_t port;
  *ok = split_host(spec, &host, &hlen, &port) && valid_host(host, hlen);
  if (!*ok) return 0;
  if (t->n_hosts == MAX_HOSTS)
    return proto_error(&t->disc.base, "initial_hosts: more than %d hosts", MAX_HOSTS);
  char *name = strndup(host, hlen);
  if (!name) return RS_ENOMEM;
  t->hosts[t->n_hosts].name = name;
  t->hosts[t->n_hosts].port = port;
  t->n_hosts++;
  return 0;
}

static int parse_list(struct tcpping *t) {
  for (size_t i = 0; i < t->initial_hosts.n; i++) {
    bool ok;
    int rc = add_host(t, t->initial_hosts.v[i], &ok);
    if (rc) return rc;
    if (!ok)
      return proto_error(&t->disc.base, "initial_hosts: '%s' is not host[port]",
                         t->initial_hosts.v[i]);
  }
  return 0;
}

/* One line of the file: entries separated by commas or blanks, '#' to the end is a comment. */
static int parse_line(struct tcpping *t, char *line, unsigned lineno) {
  char *hash = strchr(line, '#'), *save = NULL;
  if (hash) *hash = '\0';
  for (char *tok = strtok_r(line, ", \t\r\n", &save); tok;
       tok = strtok_r(NULL, ", \t\r\n", &save)) {
    bool ok;
    int rc = add_host(t, tok, &ok);
    if (rc) return rc;
    if (!ok)
      return proto_error(&t->disc.base, "initial_hosts_file: %s:%u: '%s' is not host[port]",
                         t->initial_hosts_file, lineno, tok);
  }
  return 0;
}

static int parse_file(struct tcpping *t) {
  FILE *f = fopen(t->initial_hosts_file, "r");
  if (!f)
    return proto_error(&t->disc.base, "initial_hosts_file: cannot read '%s': %s",
                       t->initial_hosts_file, strerror(errno));
  char line[FILE_LINE_MAX];
  unsigned lineno = 0;
  int rc = 0;
  while (!rc && fgets(line, sizeof(line), f)) {
    lineno++;
    if (!strchr(line, '\n') && !feof(f))
      rc = proto_error(&t->disc.base, "initial_hosts_file: %s:%u: line longer than %d bytes",
                       t->initial_hosts_file, lineno, FILE_LINE_MAX - 2);
    else
      rc = parse_line(t, line, lineno);
  }
  if (!rc && ferror(f))
    rc = proto_error(&t->disc.base, "initial_hosts_file: cannot read '%s'", t->initial_hosts_file);
  fclose(f);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Resolving at start.
 */
static int resolve(const char *name, int prefer, struct rs_phys *out) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res;
  int rc = getaddrinfo(name, NULL, &hints, &res);
  if (rc) return rc;
  const struct addrinfo *pick = NULL;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (!pick || (ai->ai_family == prefer && pick->ai_family != prefer)) pick = ai;
  }
  if (pick) phys_from_sockaddr(out, pick->ai_addr);
  freeaddrinfo(res);
  return pick ? 0 : EAI_FAMILY;
}

static int tcpping_start(struct discovery *d) {
  struct tcpping *t = (struct tcpping *)d;
  struct rs_tp *tp = discovery_transport(d);
  if (!tp) return proto_error(&d->base, "needs a transport at the bottom of the stack");
  int prefer = tp->local_phys.family == RS_PHYS_IP6 ? AF_INET6 : AF_INET;
  size_t before = tp->n_static;
  t->peers_added = t->unresolved = 0;
  for (size_t i = 0; i < t->n_hosts; i++) {
    struct rs_phys ph;
    int rc = resolve(t->hosts[i].name, prefer, &ph);
    if (rc) {
      t->unresolved++;
      PLOG(&d->base, WARN,
           "initial_hosts: cannot resolve '%s' (%s); skipped until the next connect",
           t->hosts[i].name, gai_strerror(rc));
      continue;
    }
    uint32_t last = (uint32_t)t->hosts[i].port + (uint32_t)t->port_range;
    for (uint32_t port = t->hosts[i].port; port <= last && port <= 65535; port++) {
      ph.port = (uint16_t)port;
      if (tp_add_static_peer(tp, &ph)) return proto_error(&d->base, "out of memory");
    }
  }
  t->peers_added = tp->n_static - before;
  return 0;
}

static void tcpping_send_request(struct discovery *d, struct rs_msg *m) {
  proto_down_msg(&d->base, m);
}

static const struct discovery_ops tcpping_dops = {
    .send_request = tcpping_send_request,
    .start = tcpping_start,
};

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int tcpping_init(struct rs_protocol *p) {
  struct tcpping *t = T(p);
  t->disc.dops = &tcpping_dops;
  int rc = discovery_init(p);
  if (rc) return rc;
  t->hosts = calloc(MAX_HOSTS, sizeof(*t->hosts));
  if (!t->hosts) return proto_error(p, "out of memory");
  if ((rc = parse_list(t)) != 0) return rc;
  if (t->initial_hosts_file && *t->initial_hosts_file && (rc = parse_file(t)) != 0) return rc;
  if (!t->n_hosts) PLOG(p, INFO, "no initial_hosts: discovery reaches only the transport's peers");
  return 0;
}

static void tcpping_destroy(struct rs_protocol *p) {
  struct tcpping *t = T(p);
  discovery_destroy(p);
  for (size_t i = 0; t->hosts && i < t->n_hosts; i++)
    free(t->hosts[i].name);
  free(t->hosts);
  t->hosts = NULL;
  t->n_hosts = 0;
}

static void tcpping_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct tcpping *t = T(p);
  discovery_stats(p, out);
  out->line(out, "initial_hosts", "%zu", t->n_hosts);
  out->line(out, "static_peers_added", "%" PRIu64, t->peers_added);
  out->line(out, "unresolved_hosts", "%" PRIu64, t->unresolved);
}

static const struct rs_header_type tcpping_header = DISCOVERY_HEADER_TYPE(TCPPING_ID, "TCPPING");

static const struct rs_attr tcpping_attrs[] = {
    {"initial_hosts", RS_ATTR_LIST, offsetof(struct tcpping, initial_hosts), NULL, 0, 0,
     "members' addresses: host[port],host[port] (also host:port, [v6]:port)", 0, NULL},
    {"port_range", RS_ATTR_INT, offsetof(struct tcpping, port_range), "1", 0, 1000,
     "each host is tried at port .. port + port_range", 0, NULL},
    {"initial_hosts_file", RS_ATTR_STRING, offsetof(struct tcpping, initial_hosts_file), NULL, 0, 0,
     "a file of more initial hosts: host[port] entries, one or more per line, # comments", 0, NULL},
    {"max_dynamic_hosts", RS_ATTR_IGNORED, 0, NULL, 0, 0,
     "members learned at run time are in the transport's table, which requests reach", 0, NULL},
    DISCOVERY_ATTRS(struct tcpping),
    RS_ATTR_END,
};

static const char *const tcpping_below[] = {"UDP|TCP|LOOPBACK", NULL};

const struct rs_protocol_ops tcpping_protocol = {
    .name = "TCPPING",
    .id = TCPPING_ID,
    .size = sizeof(struct tcpping),
    .description = "discovery through a static list of members' addresses (initial_hosts)",
    .attrs = tcpping_attrs,
    .header = &tcpping_header,
    .requires_below = tcpping_below,
    .init = tcpping_init,
    .start = discovery_start,
    .stop = discovery_stop,
    .destroy = tcpping_destroy,
    .up_batch = discovery_up_batch,
    .down_event = discovery_down_event,
    .stats = tcpping_stats,
};
