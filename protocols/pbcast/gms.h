/* GMS internals: the header and message bodies (NO_DUPES reads JOIN_REQ), and the instance. */
#ifndef RS_PROTOCOLS_PBCAST_GMS_H
#define RS_PROTOCOLS_PBCAST_GMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/protocol.h"
#include "stack/stack.h"
#include "stack/view.h"

#define GMS_ID 12

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 12) and the bodies that travel in the payload (docs/wire-format.md,
 * "GMS (id 12)"). The header is small and fixed; views and digests go in the payload, whose size
 * is bounded by max_payload rather than by a header's 64 KiB.
 *
 *   header:  type u8 | flags u8 | merge id (u64, only when flags has GMS_F_MERGE_ID)
 *
 * Message types keep JGroups' numbers.
 */
enum gms_type {
  GMS_JOIN_REQ = 1,           /* body: joiner's logical name (str) */
  GMS_JOIN_RSP = 2,           /* body: u8 0 | view | digest, or u8 1 | code varint | text (str) */
  GMS_LEAVE_REQ = 3,          /* body: empty (the sender leaves) */
  GMS_LEAVE_RSP = 4,          /* body: empty */
  GMS_VIEW = 5,               /* body: view */
  GMS_MERGE_REQ = 6,          /* body: empty */
  GMS_MERGE_RSP = 7,          /* body: view | digest, or empty with GMS_F_REJECTED */
  GMS_INSTALL_MERGE_VIEW = 8, /* body: view | digest */
  GMS_CANCEL_MERGE = 9,       /* body: empty */
  GMS_VIEW_ACK = 10,          /* body: view id: creator (16) | id varint */
};
#define GMS_TYPE_MAX GMS_VIEW_ACK

enum gms_flags {
  GMS_F_MERGE_ID = 0x01, /* a merge id follows (exactly the merge types have one) */
  GMS_F_REJECTED = 0x02, /* MERGE_RSP only: the coordinator is busy and refuses */
};

#define GMS_TEXT_MAX 1000 /* bytes of a refusal text (it must fit the stack's error) */

struct gms_hdr {
  uint8_t type;
  uint8_t flags;
  uint64_t merge_id;
};

extern const struct rs_header_type gms_header;

/* Reads the joiner's name from a JOIN_REQ's body. 0 or RS_EMALFORMED. */
int gms_read_join_req(const struct rs_msg *m, char name[RS_NAME_MAX + 1]);
/* A JOIN_RSP that refuses the join with `code` (a negative RS_E*) and `text`, addressed to
 * `joiner` (OOB, NO_FC). The caller sends it down. NULL when out of memory. */
struct rs_msg *gms_make_refusal(const struct rs_addr *joiner, int code, const char *text);

/* ---------------------------------------------------------------------------------------------
 * The instance, shared by gms.c (join, leave, views, suspicion) and gms_merge.c (merging).
 */
enum gms_role {
  GMS_IDLE,        /* not connected */
  GMS_CLIENT,      /* joining */
  GMS_PARTICIPANT, /* a member, not the coordinator */
  GMS_COORD,       /* the coordinator of the current view */
};

enum gms_req_type { REQ_JOIN, REQ_LEAVE, REQ_SUSPECT };

/* A membership request queued at the coordinator. */
struct gms_req {
  uint8_t type;
  struct rs_addr addr;
  char name[RS_NAME_MAX + 1]; /* joins */
};

/* The merge this member takes part in (at most one at a time). */
struct gms_merge {
  uint64_t id; /* 0: none */
  bool leader; /* we run it */
  struct rs_addr leader_addr;
  size_t n; /* leader: subgroup coordinators asked (ourselves included) */
  struct rs_addr *coords;
  struct rs_view_data **views; /* their answers, NULL until received */
  struct rs_digest *digests;
  size_t answered;
  struct rs_timer timer; /* merge_timeout */
};

struct gms_stats {
  uint64_t views_installed, views_sent, join_attempts, join_reqs_received, joins_admitted;
  uint64_t leaves_handled, suspects_handled, joins_refused;
  uint64_t view_acks_received, view_ack_timeouts, views_resent;
  uint64_t merges_started, merges_completed, merges_cancelled, merges_rejected, merges_ignored;
  uint64_t merge_views_installed;
  uint64_t stale_ignored, bad_dropped, requests_dropped;
};

struct gms {
  struct rs_protocol base;
  /* Attributes. */
  rs_time join_timeout;
  int64_t max_join_attempts;
  rs_time all_clients_retry_timeout;
  rs_time leave_timeout;
  rs_time merge_timeout;
  rs_time view_ack_collection_timeout;
  bool print_local_addr;
  bool print_physical_addrs;

  /* Membership. */
  enum gms_role role;
  struct rs_view_data *view; /* current view (one reference), NULL before the first */
  struct rs_addr *suspects;  /* members of the view suspected and not yet removed */
  size_t n_suspects, cap_suspects;

  /* Joining. */
  enum { JOIN_FINDING, JOIN_WAIT_RSP, JOIN_RETRY_WAIT } join_phase; /* what join_timer waits for */
  bool finding; /* discovery asked, not yet answered */
  struct rs_addr join_target;
  int64_t join_attempts;
  struct rs_timer join_timer;

  /* Leaving. */
  bool leaving;
  bool leave_cast; /* coordinator: the view without us is out */
  bool left;       /* the leave is over: DISCONNECT_DONE is on its way */
  struct rs_timer leave_timer;

  /* Completion of CONNECT/DISCONNECT, reported from a task (never from inside the message or
   * event being handled, which the channel's reaction, stopping the stack, would pull from under
   * our callers). */
  struct rs_task done_task;
  bool connect_done_pending, disconnect_done_pending;
  int connect_status;

  /* The coordinator's view handler: requests queued, handled one view at a time. */
  struct gms_req *queue;
  size_t n_queue, cap_queue;
  struct rs_task queue_task;
  bool collecting;             /* a view is out; waiting for VIEW_ACKs */
  struct rs_view_data *acking; /* the view acks are collected for */
  struct rs_addr *ack_missing;
  size_t n_ack_missing, cap_ack_missing;
  struct rs_timer ack_timer;
  /* After an ack timeout: the members that did not ack the last view, to which it is multicast
   * again every view_ack_collection_timeout until they do (gms_coord.c). */
  struct rs_view_data *resend_view;
  struct rs_addr *laggards;
  size_t n_laggards, cap_laggards;
  int64_t resends;
  struct rs_timer resend_timer;

  struct gms_merge merge;
  struct rs_ratelimit rl_bad;
  struct gms_stats st;
};

#define GMS(p) ((struct gms *)(p))

static inline bool gms_addr_in(const struct rs_addr *list, size_t n, const struct rs_addr *a) {
  for (size_t i = 0; i < n; i++)
    if (rs_addr_eq(&list[i], a)) return true;
  return false;
}
/* Removes a from the unordered list; true if it was there. */
static inline bool gms_addr_remove(struct rs_addr *list, size_t *n, const struct rs_addr *a) {
  for (size_t i = 0; i < *n; i++)
    if (rs_addr_eq(&list[i], a)) {
      list[i] = list[--*n];
      return true;
    }
  return false;
}

/* gms.c, for gms_coord.c and gms_merge.c. */
/* Installs v (takes the reference): digest first (SET_DIGEST, or MERGE_DIGEST of the entries of
 * members new to us when `merge`), then VIEW_CHANGE down and up. */
void gms_install(struct gms *g, struct rs_view_data *v, const struct rs_digest *d, bool merge);
/* Sends a GMS message: header type/flags/merge id, body bytes (copied; may be NULL/0). */
void gms_send(struct gms *g, const struct rs_addr *dest, uint8_t type, uint8_t flags,
              uint64_t merge_id, const void *body, size_t len);
/* A view from src (INSTALL_MERGE_VIEW, VIEW): installed if newer than ours, sent by a member
 * allowed to, and containing us; acked to src. Takes v; false when ignored. */
bool gms_accept_view(struct gms *g, const struct rs_addr *src, struct rs_view_data *v,
                     const struct rs_digest *d);
/* Sends a view (and a digest when d is non-NULL); JOIN_RSP's body starts with "accepted". */
void gms_send_view(struct gms *g, const struct rs_addr *dest, uint8_t type, uint8_t flags,
                   uint64_t merge_id, const struct rs_view_data *v, const struct rs_digest *d);
/* Reads a view (and a digest into d when non-NULL) that must end the body; NULL with r->err set
 * when malformed or empty. */
struct rs_view_data *gms_read_view(struct rs_reader *r, struct rs_digest *d);
/* The leave is over: DISCONNECT goes down, DISCONNECT_DONE up (from a task). */
void gms_finish_leave(struct gms *g);
/* The current digest (GET_DIGEST); empty when no protocol below keeps one. */
void gms_get_digest(struct gms *g, struct rs_digest *out);
/* Counts and logs (rate-limited) a message dropped as bad. */
void gms_log_bad(struct gms *g, const struct rs_addr *src, const char *what);

/* gms_coord.c: the coordinator's view handler. */
void gms_coord_init(struct gms *g);
/* Forgets the queue and any ack collection (a member that stops being coordinator). */
void gms_coord_reset(struct gms *g);
/* Queues a request (once per member and kind) and kicks the handler; false when full. */
bool gms_enqueue(struct gms *g, uint8_t type, const struct rs_addr *a, const char *name);
void gms_unqueue(struct gms *g, uint8_t type, const struct rs_addr *a);
/* Runs queued requests when the view handler is free. */
void gms_kick_queue(struct gms *g);
/* Turns everything queued into one view now, and casts it. */
void gms_handle_requests(struct gms *g);
/* Starts collecting VIEW_ACKs for v from its members but ourselves and the suspects. */
void gms_collect_acks(struct gms *g, struct rs_view_data *v);
/* Stops collecting (all acks in, or given up); ends a coordinator's leave, or resumes. */
void gms_acks_done(struct gms *g);
void gms_on_view_ack(struct gms *g, const struct rs_msg *m);
/* A member suspected: no ack is expected from it any more. */
void gms_coord_forget(struct gms *g, const struct rs_addr *a);
void gms_on_join_req(struct gms *g, const struct rs_msg *m);

/* gms_merge.c. */
void gms_merge_init(struct gms *g);
void gms_merge_reset(struct gms *g);
bool gms_merge_busy(const struct gms *g);
/* RS_EV_MERGE from MERGE3. */
void gms_merge_event(struct gms *g, struct rs_view_data *const *views, size_t n);
/* MERGE_REQ, MERGE_RSP, INSTALL_MERGE_VIEW and CANCEL_MERGE; takes nothing. */
void gms_merge_msg(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h);

#endif
