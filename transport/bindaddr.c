/* bind_addr resolution: literal addresses, host names, JGroups' symbolic values and match rules. */
#include "transport/bindaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <raftstack/errors.h>

#define ITEM_MAX 512
#define WHY_MAX 256

/* What an item of the spec asks for. */
enum item_kind {
  ITEM_NAME, /* a literal address or a host name */
  ITEM_GLOBAL,
  ITEM_SITE_LOCAL,
  ITEM_LINK_LOCAL,
  ITEM_NON_LOOPBACK,
  ITEM_LOOPBACK,
  ITEM_MATCH_INTERFACE,
  ITEM_MATCH_HOST,
  ITEM_MATCH_ADDRESS,
};

static const struct {
  const char *word;
  enum item_kind kind;
} keywords[] = {
    {"GLOBAL", ITEM_GLOBAL},         {"SITE_LOCAL", ITEM_SITE_LOCAL},
    {"LINK_LOCAL", ITEM_LINK_LOCAL}, {"NON_LOOPBACK", ITEM_NON_LOOPBACK},
    {"LOOPBACK", ITEM_LOOPBACK},
};

static const struct {
  const char *prefix;
  enum item_kind kind;
  const char *none; /* the reason when nothing matches */
} matchers[] = {
    {"match-interface:", ITEM_MATCH_INTERFACE, "no interface matches"},
    {"match-host:", ITEM_MATCH_HOST, "no host name of this host's addresses matches"},
    {"match-address:", ITEM_MATCH_ADDRESS, "no address of this host matches"},
};

/* ---- classifying addresses ------------------------------------------------------------------ */

bool bindaddr_is_loopback(const struct rs_phys *a) {
  static const uint8_t v6_loop[16] = {[15] = 1};
  if (a->family == RS_PHYS_IP4) return a->ip[0] == 127;
  return a->family == RS_PHYS_IP6 && !memcmp(a->ip, v6_loop, 16);
}

static bool is_link_local(const struct rs_phys *a) {
  if (a->family == RS_PHYS_IP4) return a->ip[0] == 169 && a->ip[1] == 254;
  return a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80; /* fe80::/10 */
}

/* Private ranges. For IPv6 both the deprecated site-local fec0::/10 (what Java's
 * isSiteLocalAddress tests) and the unique local fc00::/7 that replaced it (RFC 4193): a ULA is
 * what a site uses today, and calling it GLOBAL would surprise. */
static bool is_site_local(const struct rs_phys *a) {
  if (a->family == RS_PHYS_IP4)
    return a->ip[0] == 10 || (a->ip[0] == 172 && (a->ip[1] & 0xf0) == 16) ||
           (a->ip[0] == 192 && a->ip[1] == 168);
  return (a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0xc0) || (a->ip[0] & 0xfe) == 0xfc;
}

static bool is_unusable(const struct rs_phys *a) {
  static const uint8_t zero[16];
  size_t n = a->family == RS_PHYS_IP4 ? 4 : 16;
  bool multicast = a->family == RS_PHYS_IP4 ? (a->ip[0] & 0xf0) == 0xe0 : a->ip[0] == 0xff;
  return multicast || !memcmp(a->ip, zero, n);
}

static bool kind_accepts(enum item_kind kind, const struct rs_phys *a) {
  if (is_unusable(a)) return false;
  switch (kind) {
  case ITEM_LOOPBACK: return bindaddr_is_loopback(a);
  case ITEM_NON_LOOPBACK: return !bindaddr_is_loopback(a);
  case ITEM_LINK_LOCAL: return is_link_local(a);
  case ITEM_SITE_LOCAL: return is_site_local(a);
  case ITEM_GLOBAL: return !bindaddr_is_loopback(a) && !is_link_local(a) && !is_site_local(a);
  default: return true;
  }
}

static int to_af(uint8_t family) { return family == RS_PHYS_IP4 ? AF_INET : AF_INET6; }

/* True when the address belongs to this host: the kernel's own answer, by binding a datagram
 * socket to it (no packet is sent). The wildcard address always belongs. */
static bool is_local(const struct rs_phys *a) {
  struct sockaddr_storage ss;
  socklen_t sl = phys_to_sockaddr(a, &ss);
  int fd = socket(to_af(a->family), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true; /* cannot tell (out of descriptors): let the real bind report */
  int rc = bind(fd, (struct sockaddr *)&ss, sl);
  int e = errno;
  close(fd);
  return rc == 0 || e != EADDRNOTAVAIL;
}

/* ---- scanning interfaces -------------------------------------------------------------------- */

struct scan {
  enum item_kind kind;
  regex_t re; /* for the match-* kinds */
  int family; /* AF_INET or AF_INET6 */
};

static bool host_matches(const struct scan *s, const struct sockaddr *sa) {
  char host[NI_MAXHOST];
  socklen_t sl = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
  if (getnameinfo(sa, sl, host, sizeof(host), NULL, 0, NI_NAMEREQD)) return false;
  return regexec(&s->re, host, 0, NULL, 0) == 0;
}

static bool ifaddr_matches(const struct scan *s, const struct ifaddrs *ifa,
                           const struct rs_phys *a) {
  char text[INET6_ADDRSTRLEN];
  switch (s->kind) {
  case ITEM_MATCH_INTERFACE: return regexec(&s->re, ifa->ifa_name, 0, NULL, 0) == 0;
  case ITEM_MATCH_ADDRESS:
    inet_ntop(to_af(a->family), a->ip, text, sizeof(text));
    return regexec(&s->re, text, 0, NULL, 0) == 0;
  case ITEM_MATCH_HOST: return host_matches(s, ifa->ifa_addr);
  default: return kind_accepts(s->kind, a);
  }
}

/* The first address of an interface that is up, of s->family, that the item accepts. */
static bool scan_interfaces(const struct scan *s, const struct ifaddrs *list,
                            struct rs_phys *out) {
  for (const struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != s->family || !(ifa->ifa_flags & IFF_UP))
      continue;
    struct rs_phys a;
    phys_from_sockaddr(&a, ifa->ifa_addr);
    if (is_unusable(&a)) continue;
    if (ifaddr_matches(s, ifa, &a)) {
      *out = a;
      out->port = 0;
      return true;
    }
  }
  return false;
}

/* Tries IPv4 then IPv6 (or only the preferred family's order: preferred first). */
static bool scan_families(struct scan *s, int family_pref, struct rs_phys *out) {
  struct ifaddrs *list;
  if (getifaddrs(&list)) return false;
  int order[2] = {AF_INET, AF_INET6};
  if (family_pref == AF_INET6) {
    order[0] = AF_INET6;
    order[1] = AF_INET;
  }
  bool found = false;
  for (int i = 0; i < 2 && !found; i++) {
    s->family = order[i];
    found = scan_interfaces(s, list, out);
  }
  freeifaddrs(list);
  return found;
}

/* ---- one item ------------------------------------------------------------------------------- */

static int resolve_matcher(size_t m, const char *re_text, int family_pref, struct rs_phys *out,
                           char *why, size_t whylen) {
  struct scan s = {.kind = matchers[m].kind};
  size_t n = strlen(re_text);
  if (n == 0) {
    snprintf(why, whylen, "empty regular expression");
    return RS_EINVAL;
  }
  /* Anchored, so that the whole name must match, as Java's String.matches() requires. */
  char *anchored = malloc(n + 5);
  if (!anchored) return RS_ENOMEM;
  snprintf(anchored, n + 5, "^(%s)$", re_text);
  int cflags = REG_EXTENDED | REG_NOSUB | (s.kind == ITEM_MATCH_HOST ? REG_ICASE : 0);
  int rc = regcomp(&s.re, anchored, cflags);
  free(anchored);
  if (rc) {
    char msg[128];
    regerror(rc, &s.re, msg, sizeof(msg));
    snprintf(why, whylen, "bad regular expression: %s", msg);
    return RS_EINVAL;
  }
  bool found = scan_families(&s, family_pref, out);
  regfree(&s.re);
  if (found) return 0;
  snprintf(why, whylen, "%s", matchers[m].none);
  return RS_ENOTFOUND;
}

static int resolve_keyword(enum item_kind kind, const char *word, int family_pref,
                           struct rs_phys *out, char *why, size_t whylen) {
  struct scan s = {.kind = kind};
  if (scan_families(&s, family_pref, out)) return 0;
  snprintf(why, whylen, "no %s address on this host", word);
  return RS_ENOTFOUND;
}

/* A host name: the first of its addresses that belongs to this host, preferred family first. */
static int resolve_host(const char *name, int family_pref, struct rs_phys *out, char *why,
                        size_t whylen) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
  struct addrinfo *res;
  int rc = getaddrinfo(name, NULL, &hints, &res);
  if (rc) {
    snprintf(why, whylen, "host not found (%s); symbolic values are GLOBAL, SITE_LOCAL, "
             "LINK_LOCAL, NON_LOOPBACK, LOOPBACK, match-interface:RE, match-host:RE, "
             "match-address:RE", gai_strerror(rc));
    return RS_ENOTFOUND;
  }
  bool found = false;
  for (int pass = 0; pass < 2 && !found; pass++) {
    for (struct addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
      /* First pass: the preferred family (IPv4 when unspecified); second: any. */
      int want = family_pref == AF_UNSPEC ? AF_INET : family_pref;
      if (pass == 0 && ai->ai_family != want) continue;
      struct rs_phys a;
      phys_from_sockaddr(&a, ai->ai_addr);
      a.port = 0;
      if (is_local(&a)) {
        *out = a;
        found = true;
      }
    }
  }
  freeaddrinfo(res);
  if (found) return 0;
  snprintf(why, whylen, "no address of host '%.128s' belongs to this host", name);
  return RS_ENOTFOUND;
}

static int resolve_name(const char *item, int family_pref, struct rs_phys *out, char *why,
                        size_t whylen) {
  struct rs_phys a = {0};
  if (inet_pton(AF_INET, item, a.ip) == 1) a.family = RS_PHYS_IP4;
  else if (inet_pton(AF_INET6, item, a.ip) == 1) a.family = RS_PHYS_IP6;
  else return resolve_host(item, family_pref, out, why, whylen);
  if (!is_local(&a)) {
    snprintf(why, whylen, "not an address of this host");
    return RS_ENOTFOUND;
  }
  *out = a;
  return 0;
}

static int resolve_item(const char *item, int family_pref, struct rs_phys *out, char *why,
                        size_t whylen) {
  if (!*item) {
    snprintf(why, whylen, "empty item");
    return RS_EINVAL;
  }
  for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
    if (!strcasecmp(item, keywords[i].word))
      return resolve_keyword(keywords[i].kind, keywords[i].word, family_pref, out, why, whylen);
  for (size_t m = 0; m < sizeof(matchers) / sizeof(matchers[0]); m++) {
    size_t n = strlen(matchers[m].prefix);
    if (!strncasecmp(item, matchers[m].prefix, n))
      return resolve_matcher(m, item + n, family_pref, out, why, whylen);
  }
  return resolve_name(item, family_pref, out, why, whylen);
}

/* ---- the list ------------------------------------------------------------------------------- */

/* Copies the next comma-separated item, trimmed, into buf; returns the rest (NULL at the end). */
static const char *next_item(const char *p, char *buf, size_t cap, bool *too_long) {
  const char *comma = strchr(p, ',');
  const char *end = comma ? comma : p + strlen(p);
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  size_t n = (size_t)(end - p);
  *too_long = n >= cap;
  if (*too_long) n = cap - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return comma ? comma + 1 : NULL;
}

/* Appends "item: why" to the list of reasons. */
static void add_reason(char *reasons, size_t cap, const char *item, const char *why) {
  size_t len = strlen(reasons);
  if (len + 1 >= cap) return;
  snprintf(reasons + len, cap - len, "%s%s: %s", len ? "; " : "", item, why);
}

int bindaddr_resolve(const char *spec, int family_pref, struct rs_phys *out, char *err,
                     size_t errlen) {
  char item[ITEM_MAX], why[WHY_MAX], reasons[1024] = "";
  unsigned tried = 0;
  if (!spec) spec = "";
  for (const char *p = spec; p;) {
    bool too_long;
    p = next_item(p, item, sizeof(item), &too_long);
    if (!*item && p == NULL && tried > 0) break; /* tolerate a trailing comma */
    tried++;
    int rc = too_long ? RS_EINVAL : resolve_item(item, family_pref, out, why, sizeof(why));
    if (too_long) snprintf(why, sizeof(why), "item too long");
    if (rc == 0) return 0;
    if (rc != RS_ENOTFOUND) {
      bool name_item = *item && (tried > 1 || p); /* in a list: say which item */
      snprintf(err, errlen, "bind_addr '%s': %s%s%s", spec, name_item ? item : "",
               name_item ? ": " : "", why);
      return rc;
    }
    add_reason(reasons, sizeof(reasons), item, why);
  }
  if (tried == 1) snprintf(err, errlen, "bind_addr '%s': %s", spec, why);
  else snprintf(err, errlen, "bind_addr '%s': nothing resolves on this host (%s)", spec, reasons);
  return RS_ENOTFOUND;
}

unsigned bindaddr_ifindex(const struct rs_phys *addr) {
  struct ifaddrs *list;
  unsigned index = 0;
  if (getifaddrs(&list)) return 0;
  for (struct ifaddrs *ifa = list; ifa && !index; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != to_af(addr->family)) continue;
    struct rs_phys a;
    phys_from_sockaddr(&a, ifa->ifa_addr);
    a.port = addr->port;
    if (phys_eq(&a, addr)) index = if_nametoindex(ifa->ifa_name);
  }
  freeifaddrs(list);
  return index;
}
