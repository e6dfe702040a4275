/* PING: discovery with a group message (IP multicast over UDP, every member over LOOPBACK). */
#include "protocols/discovery.h"

/*
 * As JGroups' PING: a GET_MBRS_REQ is one group message. The transport carries it as one IP
 * multicast (UDP), to every endpoint of the process (LOOPBACK), or, on a transport that cannot
 * multicast (TCP, UDP with ip_mcast=false), to every physical address it knows: its `peers` and
 * the members in its table. Everything else is the common discovery (protocols/discovery.c).
 */

#define PING_ID 5

struct ping {
  struct discovery disc;
};

static void ping_send_request(struct discovery *d, struct rs_msg *m) {
  proto_down_msg(&d->base, m);
}

static const struct discovery_ops ping_dops = {.send_request = ping_send_request};

static int ping_init(struct rs_protocol *p) {
  ((struct ping *)p)->disc.dops = &ping_dops;
  return discovery_init(p);
}

static const struct rs_header_type ping_header = DISCOVERY_HEADER_TYPE(PING_ID, "PING");

static const struct rs_attr ping_attrs[] = {
    DISCOVERY_ATTRS(struct ping),
    RS_ATTR_END,
};

static const char *const ping_below[] = {"UDP|TCP|LOOPBACK", NULL};

const struct rs_protocol_ops ping_protocol = {
    .name = "PING",
    .id = PING_ID,
    .size = sizeof(struct ping),
    .description = "discovery by a group message: finds the members of the cluster, their names, "
                   "physical addresses and coordinator",
    .attrs = ping_attrs,
    .header = &ping_header,
    .requires_below = ping_below,
    .init = ping_init,
    .start = discovery_start,
    .stop = discovery_stop,
    .destroy = discovery_destroy,
    .up_batch = discovery_up_batch,
    .down_event = discovery_down_event,
    .stats = discovery_stats,
};
