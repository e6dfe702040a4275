/* The registry: every protocol compiled into raftstack, looked up by its XML element name. */
#include <pthread.h>
#include <string.h>

#include <raftstack/errors.h>

#include "stack/protocol.h"

extern const struct rs_protocol_ops loopback_protocol;
extern const struct rs_protocol_ops udp_protocol;
extern const struct rs_protocol_ops tcp_protocol;
extern const struct rs_protocol_ops discard_protocol;
extern const struct rs_protocol_ops delay_protocol;
extern const struct rs_protocol_ops ping_protocol;
extern const struct rs_protocol_ops tcpping_protocol;
extern const struct rs_protocol_ops merge3_protocol;
extern const struct rs_protocol_ops fd_sock_protocol;
extern const struct rs_protocol_ops fd_all3_protocol;
extern const struct rs_protocol_ops verify_suspect_protocol;
extern const struct rs_protocol_ops nakack2_protocol;
extern const struct rs_protocol_ops unicast3_protocol;
extern const struct rs_protocol_ops stable_protocol;
extern const struct rs_protocol_ops no_dupes_protocol;
extern const struct rs_protocol_ops gms_protocol;
extern const struct rs_protocol_ops ufc_protocol;
extern const struct rs_protocol_ops mfc_protocol;
extern const struct rs_protocol_ops frag4_protocol;
extern const struct rs_protocol_ops election_protocol;
extern const struct rs_protocol_ops raft_protocol;
extern const struct rs_protocol_ops redirect_protocol;

/* Adding a protocol is adding its file and a line here, in the order `raftstack protocols`
 * lists them: transports, then bottom to top as a typical stack has them. */
const struct rs_protocol_ops *const rs_protocol_registry[] = {
    &udp_protocol,
    &tcp_protocol,
    &loopback_protocol,
    &discard_protocol,
    &delay_protocol,
    &ping_protocol,
    &tcpping_protocol,
    &merge3_protocol,
    &fd_sock_protocol,
    &fd_all3_protocol,
    &verify_suspect_protocol,
    &nakack2_protocol,
    &unicast3_protocol,
    &stable_protocol,
    &no_dupes_protocol,
    &gms_protocol,
    &ufc_protocol,
    &mfc_protocol,
    &frag4_protocol,
    &election_protocol,
    &raft_protocol,
    &redirect_protocol,
};
const size_t rs_protocol_registry_len = sizeof(rs_protocol_registry) / sizeof(rs_protocol_registry[0]);

#define JAVA_PREFIX "org.jgroups.protocols."
#define MAX_HEADER_ID 2048

static bool name_matches(const struct rs_protocol_ops *ops, const char *name) {
  if (!strcmp(ops->name, name)) return true;
  for (const char *const *a = ops->aliases; a && *a; a++)
    if (!strcmp(*a, name)) return true;
  return false;
}

const struct rs_protocol_ops *registry_find(const char *name) {
  if (!strncmp(name, JAVA_PREFIX, strlen(JAVA_PREFIX))) name += strlen(JAVA_PREFIX);
  const char *dot = strrchr(name, '.');
  const char *base = dot ? dot + 1 : name;
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    const struct rs_protocol_ops *ops = rs_protocol_registry[i];
    if (!name_matches(ops, base)) continue;
    if (dot) {
      /* "pbcast.GMS" must name GMS's own package. */
      size_t plen = (size_t)(dot - name);
      if (!ops->package || strlen(ops->package) != plen || strncmp(ops->package, name, plen))
        continue;
    }
    return ops;
  }
  return NULL;
}

static const struct rs_header_type *headers[MAX_HEADER_ID];
static pthread_once_t headers_once = PTHREAD_ONCE_INIT;
static void index_headers(void);

/* Header types of protocols defined outside raftstack (ids 1024..2047; as in JGroups, ids
 * from 1024 belong to applications; raftstack's own stay below). */
int registry_add_header(const struct rs_header_type *h) {
  pthread_once(&headers_once, index_headers);
  if (h->id < 1024 || h->id >= MAX_HEADER_ID || h->size > RS_HDR_INLINE) return RS_EINVAL;
  if (headers[h->id] && headers[h->id] != h) return RS_EEXIST;
  headers[h->id] = h;
  return 0;
}

static void index_headers(void) {
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    const struct rs_header_type *h = rs_protocol_registry[i]->header;
    if (h && h->id < MAX_HEADER_ID) headers[h->id] = h;
  }
}

const struct rs_header_type *registry_header_type(uint16_t id) {
  pthread_once(&headers_once, index_headers);
  return id < MAX_HEADER_ID ? headers[id] : NULL;
}
