/* Views, digests and discovery data: the values membership protocols pass to each other. */
#ifndef RS_STACK_VIEW_H
#define RS_STACK_VIEW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raftstack/types.h>

#include "stack/addr.h"
#include "stack/codec.h"

#define RS_NAME_MAX 127      /* bytes of a logical name */
#define RS_VIEW_MAX_MEMBERS 4096

/*
 * A view: the members in order, coordinator first, with a view id (creator, id) ordered by id
 * then creator. Immutable once made and refcounted, so events and protocols keep it without
 * copying. GMS makes views; everyone else reads them (RS_EV_VIEW_CHANGE, up and down).
 */
struct rs_view_data {
  atomic_uint refs;
  struct rs_addr creator;
  uint64_t id;
  bool merge;    /* made by a merge of subgroups */
  size_t n;
  struct rs_addr *members;
  char **names;  /* parallel to members; "" when unknown */
};

/* A view with one reference; copies members and names (names may be NULL). NULL on ENOMEM. */
struct rs_view_data *view_new(const struct rs_addr *creator, uint64_t id, size_t n,
                              const struct rs_addr *members, const char *const *names);
struct rs_view_data *view_ref(struct rs_view_data *v);
void view_unref(struct rs_view_data *v);
/* Index of addr in the view, or -1. */
long view_index(const struct rs_view_data *v, const struct rs_addr *addr);
static inline bool view_contains(const struct rs_view_data *v, const struct rs_addr *a) {
  return v && view_index(v, a) >= 0;
}
static inline const struct rs_addr *view_coord(const struct rs_view_data *v) {
  return v && v->n ? &v->members[0] : NULL;
}
/* Orders view ids: <0, 0, >0. */
int view_id_cmp(const struct rs_view_data *a, const struct rs_view_data *b);
/* "[A|3] (3) [A, B, C]" into buf; returns buf. */
char *view_format(const struct rs_view_data *v, char *buf, size_t len);

/* Wire form: creator (16) | id (varint) | flags (u8: 1 = merge) | n (varint) | n x (addr (16) |
 * name (varint len + bytes)). Decoding checks n against RS_VIEW_MAX_MEMBERS and what remains;
 * returns a new view (one reference) or NULL with r->err set. */
void put_view(struct rs_writer *w, const struct rs_view_data *v);
size_t view_wire_size(const struct rs_view_data *v);
struct rs_view_data *get_view(struct rs_reader *r);

/*
 * A digest: per member, the highest seqno delivered and the highest received of its multicasts
 * (NAKACK2). GMS hands the coordinator's digest to a joiner; STABLE computes the stable minimum
 * and NAKACK2 purges below it.
 */
struct rs_digest_entry {
  struct rs_addr addr;
  uint64_t delivered; /* highest seqno delivered */
  uint64_t received;  /* highest seqno received (>= delivered) */
};
struct rs_digest {
  size_t n;
  struct rs_digest_entry *e;
};
void digest_free(struct rs_digest *d);
/* Wire form: n (varint) | n x (addr (16) | delivered (varint) | received - delivered (varint)). */
void put_digest(struct rs_writer *w, const struct rs_digest *d);
size_t digest_wire_size(const struct rs_digest *d);
/* Fills d (malloc'd entries) or sets r->err; n is checked against RS_VIEW_MAX_MEMBERS. */
void get_digest(struct rs_reader *r, struct rs_digest *d);

/* What discovery learns of one member. */
struct rs_ping_data {
  struct rs_addr addr;
  char name[RS_NAME_MAX + 1];
  struct rs_phys phys;
  bool is_coord;            /* it is the coordinator of its view */
  bool is_server;           /* it has joined (is in a view), not still joining */
};

#endif
