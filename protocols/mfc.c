/* MFC: credit-based flow control of multicasts, so a sender waits for the slowest member. */
#include "protocols/flow_control.h"

/*
 * JGroups' MFC: every other member of the view gives a sender max_credits bytes of credit for
 * its multicasts, and a multicast needs credit from all of them, so the group's credit is the
 * smallest one. The logic is shared with UFC (protocols/flow_control.c, which explains the model
 * and where it differs from JGroups); here are what is MFC's own: it governs multicasts, keeps one
 * flow for the group with a credit per member, learns the members from RS_EV_VIEW_CHANGE (up from
 * GMS, or down; without a view there is nobody to wait for), and asks for credit with a
 * *multicast* CREDIT_REQUEST, which NAKACK2 delivers behind the multicasts sent before it (a
 * unicast would race them); every member answers with a CREDIT_RESPONSE.
 *
 * Header (protocol id 30; docs/wire-format.md, UFC / MFC):
 *
 *   REPLENISH (1):        type u8 | consumed varint
 *   CREDIT_REQUEST (2):   type u8 | sent varint
 *   CREDIT_RESPONSE (3):  type u8 | consumed varint | sent varint
 */

#define MFC_ID 30

static const struct rs_header_type mfc_header = {
    .id = MFC_ID,
    .name = "MFC",
    .size = sizeof(struct fc_hdr),
    .wire_size = fc_hdr_wire_size,
    .write = fc_hdr_write,
    .read = fc_hdr_read,
    .print = fc_hdr_print,
};

static int mfc_init(struct rs_protocol *p) { return fc_init(p, true); }

const struct rs_protocol_ops mfc_protocol = {
    .name = "MFC",
    .id = MFC_ID,
    .size = sizeof(struct fc),
    .description = "credit-based flow control of multicasts: a sender waits for the slowest member",
    .attrs = fc_attrs,
    .header = &mfc_header,
    .init = mfc_init,
    .stop = fc_stop,
    .destroy = fc_destroy,
    .down_msg = fc_down_msg,
    .up_batch = fc_up_batch,
    .down_event = fc_down_event,
    .up_event = fc_up_event,
    .stats = fc_stats,
};
