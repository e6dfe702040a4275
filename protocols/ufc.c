/* UFC: credit-based flow control of unicasts, so a fast sender cannot overrun a slow receiver. */
#include "protocols/flow_control.h"

/*
 * JGroups' UFC: each destination gives a sender max_credits bytes of credit, spent by the
 * unicasts sent to it and given back by its REPLENISH messages as it passes them up. The logic
 * is shared with MFC (protocols/flow_control.c, which explains the model and where it differs
 * from JGroups); here are what is UFC's own: it governs unicasts (not those to ourselves), keeps
 * one flow (queue and credit) per destination, and asks a blocked destination for credit with a
 * unicast CREDIT_REQUEST, which UNICAST3 delivers behind the messages sent before it.
 *
 * Header (protocol id 31; docs/wire-format.md, UFC / MFC):
 *
 *   REPLENISH (1):        type u8 | consumed varint
 *   CREDIT_REQUEST (2):   type u8 | sent varint
 *   CREDIT_RESPONSE (3):  type u8 | consumed varint | sent varint
 */

#define UFC_ID 31

static const struct rs_header_type ufc_header = {
    .id = UFC_ID,
    .name = "UFC",
    .size = sizeof(struct fc_hdr),
    .wire_size = fc_hdr_wire_size,
    .write = fc_hdr_write,
    .read = fc_hdr_read,
    .print = fc_hdr_print,
};

static int ufc_init(struct rs_protocol *p) { return fc_init(p, false); }

const struct rs_protocol_ops ufc_protocol = {
    .name = "UFC",
    .id = UFC_ID,
    .size = sizeof(struct fc),
    .description = "credit-based flow control of unicasts: a sender waits for a slow receiver",
    .attrs = fc_attrs,
    .header = &ufc_header,
    .init = ufc_init,
    .stop = fc_stop,
    .destroy = fc_destroy,
    .down_msg = fc_down_msg,
    .up_batch = fc_up_batch,
    .down_event = fc_down_event,
    .up_event = fc_up_event,
    .stats = fc_stats,
};
