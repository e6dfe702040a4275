/* FRAG4 tests: no-copy fragmentation, reassembly in any order, headers kept, loss, bad input. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/testhdr.h"
#include "tests/lib/testlib.h"
#include "transport/tp.h"

#define FRAG4_ID 69
#define MAX_RECV 64
#define MAX_KEPT 64
#define MAX_UP 4096

/* Byte `i` of a test payload: depends on the position, so a fragment put at the wrong offset or
 * a swapped pair shows. */
static uint8_t pat(uint32_t tag, size_t i) {
  uint32_t x = (uint32_t)i * 2654435761u ^ tag * 2246822519u;
  x ^= x >> 15;
  x *= 0x85ebca6bu;
  return (uint8_t)(x >> 13);
}

/* A payload: the tag in its first 4 bytes (when it has them), the pattern after. */
static uint8_t *make_payload(uint32_t tag, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(p);
  for (size_t i = 0; i < len; i++)
    p[i] = pat(tag, i);
  if (len >= 4) memcpy(p, &tag, 4);
  return p;
}

static bool payload_ok(const uint8_t *p, size_t len, uint32_t *tag) {
  *tag = 0;
  if (len < 4) return true;
  memcpy(tag, p, 4);
  for (size_t i = 4; i < len; i++)
    if (p[i] != pat(*tag, i)) return false;
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Test protocols. ABOVE sits above FRAG4: it puts a test header on every message going down and
 * records the one it finds on every message coming up. SPY sits below FRAG4: it records what
 * FRAG4 sends (and keeps it, with capture="true") and the ids of the fragments it passes up.
 */
struct above {
  struct rs_protocol base;
  uint64_t next_seqno;
  size_t n;
  uint64_t seqno[MAX_RECV]; /* 0: the message came up without the header */
  char tag[MAX_RECV][16];
};

static int above_down(struct rs_protocol *p, struct rs_msg *m) {
  struct above *a = (struct above *)p;
  struct testhdr *h = rs_msg_put_header(m, &testhdr_type);
  ck_assert_ptr_nonnull(h);
  h->seqno = ++a->next_seqno;
  strcpy(h->tag, "from-above");
  return proto_down_msg(p, m);
}

static void above_up(struct rs_protocol *p, struct rs_msg *m) {
  struct above *a = (struct above *)p;
  const struct testhdr *h = rs_msg_header(m, TESTHDR_ID);
  if (a->n < MAX_RECV) {
    a->seqno[a->n] = h ? h->seqno : 0;
    snprintf(a->tag[a->n], sizeof(a->tag[0]), "%s", h ? h->tag : "");
    a->n++;
  }
  rs_msg_remove_header(m, TESTHDR_ID);
  proto_up_msg(p, m);
}

static const struct rs_protocol_ops above_ops = {
    .name = "ABOVE",
    .size = sizeof(struct above),
    .description = "test: a header from above FRAG4",
    .down_msg = above_down,
    .up_msg = above_up,
};

struct spy_rec {
  const struct rs_buf *buf;
  const uint8_t *data;
  size_t len;
  unsigned refs;
  bool test_hdr, frag_hdr;
  uint16_t flags;
};

struct spy {
  struct rs_protocol base;
  bool capture;
  struct rs_msg *kept[MAX_KEPT];
  size_t n_kept;
  struct spy_rec down[MAX_KEPT];
  size_t n_down;
  struct {
    struct rs_addr src;
    uint64_t id;
  } up[MAX_UP];
  size_t n_up;
};

static int spy_down(struct rs_protocol *p, struct rs_msg *m) {
  struct spy *s = (struct spy *)p;
  if (s->n_down < MAX_KEPT)
    s->down[s->n_down++] = (struct spy_rec){.buf = m->buf,
                                            .data = m->data,
                                            .len = m->len,
                                            .refs = m->buf ? atomic_load(&m->buf->refs) : 0,
                                            .test_hdr = rs_msg_header(m, TESTHDR_ID) != NULL,
                                            .frag_hdr = rs_msg_header(m, FRAG4_ID) != NULL,
                                            .flags = m->flags};
  if (!s->capture) return proto_down_msg(p, m);
  ck_assert_uint_lt(s->n_kept, MAX_KEPT);
  s->kept[s->n_kept++] = m;
  return 0;
}

/* The id in a FRAG4 header, through the header type's own printer (its struct is private). */
static uint64_t frag_id(const struct rs_msg *m) {
  const void *h = rs_msg_header(m, FRAG4_ID);
  char text[160];
  uint64_t id = UINT64_MAX;
  if (h && registry_header_type(FRAG4_ID)->print(h, text, sizeof(text)) > 0)
    sscanf(text, "id=%" SCNu64, &id);
  return id;
}

static void spy_up(struct rs_protocol *p, struct rs_msg *m) {
  struct spy *s = (struct spy *)p;
  if (s->n_up < MAX_UP && rs_msg_header(m, FRAG4_ID)) {
    s->up[s->n_up].src = m->src;
    s->up[s->n_up].id = frag_id(m);
    s->n_up++;
  }
  proto_up_msg(p, m);
}

static void spy_destroy(struct rs_protocol *p) {
  struct spy *s = (struct spy *)p;
  for (size_t i = 0; i < s->n_kept; i++)
    rs_msg_free(s->kept[i]);
  s->n_kept = 0;
}

static const struct rs_attr spy_attrs[] = {
    {"capture", RS_ATTR_BOOL, offsetof(struct spy, capture), "false", 0, 0,
     "keep messages going down", 0, NULL},
    RS_ATTR_END,
};

static const struct rs_protocol_ops spy_ops = {
    .name = "SPY",
    .size = sizeof(struct spy),
    .description = "test: sees what FRAG4 sends and receives",
    .attrs = spy_attrs,
    .destroy = spy_destroy,
    .down_msg = spy_down,
    .up_msg = spy_up,
};

static const struct rs_protocol_ops *const extra[] = {&above_ops, &spy_ops, NULL};

static struct rs_protocol *find_proto(struct rs_stack *st, const char *name) {
  for (struct rs_protocol *p = st->bottom; p; p = p->up)
    if (!strcmp(p->ops->name, name)) return p;
  ck_abort_msg("no %s in the stack", name);
  return NULL;
}

/* One counter of a protocol's stats. */
struct stat_req {
  const char *name;
  char value[64];
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_req *r = out->arg;
  if (strcmp(name, r->name)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->value, sizeof(r->value), fmt, ap);
  va_end(ap);
}

static uint64_t stat_of(struct rs_protocol *p, const char *name) {
  struct stat_req r = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &r};
  p->ops->stats(p, &out);
  ck_assert_msg(r.value[0], "no stat '%s'", name);
  return strtoull(r.value, NULL, 10);
}

/* ---------------------------------------------------------------------------------------------
 * Channels on LOOPBACK in the simulation.
 */
struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  size_t n;
  struct {
    struct rs_addr src;
    uint32_t tag;
    size_t len;
    unsigned flags;
    bool ok;
  } got[MAX_RECV];
};

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct node *nd = arg;
  if (nd->n == MAX_RECV) return;
  nd->got[nd->n].src = *src;
  nd->got[nd->n].len = len;
  nd->got[nd->n].flags = flags;
  nd->got[nd->n].ok = payload_ok(data, len, &nd->got[nd->n].tag);
  nd->n++;
}

static struct rs_sim *sim;

static void open_node(struct node *nd, const char *name, const char *xml) {
  memset(nd, 0, sizeof(*nd));
  nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(nd->ch, &r, nd);
  ck_assert_int_eq(rs_channel_connect(nd->ch, "frag"), 0);
}

static void close_node(struct node *nd) {
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
}

static struct rs_protocol *frag_of(struct node *nd) {
  return find_proto(channel_stack(nd->ch), "FRAG4");
}

static void send_tagged(struct node *from, const struct rs_addr *to, uint32_t tag, size_t len,
                        unsigned flags) {
  uint8_t *p = make_payload(tag, len);
  ck_assert_int_eq(rs_channel_send(from->ch, to, p, len, flags), 0);
  free(p);
}

struct want {
  struct node *nd;
  size_t n;
};
static bool has_n(void *arg) {
  struct want *w = arg;
  return w->nd->n >= w->n;
}
static void wait_for(struct node *nd, size_t n) {
  struct want w = {nd, n};
  ck_assert_msg(rs_sim_run_until(sim, has_n, &w, 30 * RS_SEC), "%s got %zu of %zu messages",
                rs_channel_name(nd->ch), nd->n, n);
}

static void setup(void) {
  sim = rs_sim_new(4242);
  stack_set_extra_protocols(extra);
  registry_add_header(&testhdr_type);
}
static void teardown(void) {
  stack_set_extra_protocols(NULL);
  rs_sim_free(sim);
}

START_TEST(ten_megabytes_arrive_whole) {
  const char *xml = "<config><LOOPBACK/><FRAG4/></config>"; /* frag_size 60000 by default */
  struct node a, b, c;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  open_node(&c, "C", xml);
  const size_t ten_mb = 10 * 1000 * 1000;
  struct rs_addr to_b = rs_channel_address(b.ch);
  send_tagged(&a, &to_b, 7, ten_mb, 0);
  wait_for(&b, 1);
  send_tagged(&a, NULL, 8, ten_mb, 0); /* a multicast reaches everyone, the sender too */
  wait_for(&b, 2);
  wait_for(&c, 1);
  wait_for(&a, 1);
  ck_assert_uint_eq(b.got[0].len, ten_mb);
  ck_assert(b.got[0].ok);
  ck_assert_uint_eq(b.got[0].tag, 7);
  ck_assert(b.got[1].ok && b.got[1].tag == 8 && b.got[1].len == ten_mb);
  ck_assert(c.got[0].ok && c.got[0].tag == 8 && c.got[0].len == ten_mb);
  ck_assert(a.got[0].ok && a.got[0].tag == 8 && a.got[0].len == ten_mb);
  ck_assert_uint_eq(c.n, 1);
  const uint64_t frags = (ten_mb + 59999) / 60000; /* 167 */
  ck_assert_uint_eq(stat_of(frag_of(&a), "fragmented"), 2);
  ck_assert_uint_eq(stat_of(frag_of(&a), "frags_sent"), 2 * frags);
  ck_assert_uint_eq(stat_of(frag_of(&b), "frags_received"), 2 * frags);
  ck_assert_uint_eq(stat_of(frag_of(&b), "reassembled"), 2);
  ck_assert_uint_eq(stat_of(frag_of(&b), "bytes_held"), 0);
  ck_assert_uint_eq(stat_of(frag_of(&b), "incomplete"), 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

START_TEST(sizes_around_frag_size) {
  const char *xml = "<config><LOOPBACK/><FRAG4 frag_size=\"1000\"/></config>";
  static const size_t sizes[] = {4, 999, 1000, 1001, 1999, 2000, 2001, 0};
  const size_t n = sizeof(sizes) / sizeof(sizes[0]);
  struct node a, b;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  struct rs_addr to_b = rs_channel_address(b.ch);
  for (size_t i = 0; i < n; i++)
    send_tagged(&a, &to_b, (uint32_t)i + 100, sizes[i], 0);
  wait_for(&b, n);
  for (size_t i = 0; i < n; i++) {
    ck_assert_uint_eq(b.got[i].len, sizes[i]);
    ck_assert(b.got[i].ok);
    if (sizes[i] >= 4) ck_assert_uint_eq(b.got[i].tag, i + 100);
  }
  /* Longer than frag_size: 1001, 1999, 2000 (2 fragments each) and 2001 (3). */
  ck_assert_uint_eq(stat_of(frag_of(&a), "fragmented"), 4);
  ck_assert_uint_eq(stat_of(frag_of(&a), "frags_sent"), 9);
  ck_assert_uint_eq(stat_of(frag_of(&b), "frags_received"), 9);
  ck_assert_uint_eq(stat_of(frag_of(&b), "reassembled"), 4);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* True when fragments of another message arrived between the first and last fragment of one
 * message; `same_sender` restricts "another" to the same sender, else to another sender. */
static bool interleaved(const struct spy *s, bool same_sender) {
  for (size_t i = 0; i < s->n_up; i++)
    for (size_t j = i + 1; j < s->n_up; j++) {
      bool same_msg = rs_addr_eq(&s->up[j].src, &s->up[i].src) && s->up[j].id == s->up[i].id;
      if (same_msg) break;
      if (rs_addr_eq(&s->up[j].src, &s->up[i].src) != same_sender) continue;
      for (size_t k = j + 1; k < s->n_up; k++)
        if (rs_addr_eq(&s->up[k].src, &s->up[i].src) && s->up[k].id == s->up[i].id) return true;
    }
  return false;
}

START_TEST(two_senders_interleave_at_a_third) {
  const char *xml = "<config><LOOPBACK/><FRAG4 frag_size=\"1000\"/></config>";
  /* DELAY holds each fragment for a random time: fragments arrive in any order. */
  const char *xml_c = "<config><LOOPBACK/><DELAY in_delay=\"20ms\"/><SPY/>"
                      "<FRAG4 frag_size=\"1000\"/></config>";
  struct node a, b, c;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  open_node(&c, "C", xml_c);
  for (uint32_t i = 0; i < 10; i++) {
    send_tagged(&a, NULL, 1000 + i, 2500 + i * 777, RS_MSG_DONT_LOOPBACK << 16);
    send_tagged(&b, NULL, 2000 + i, 3100 + i * 555, RS_MSG_DONT_LOOPBACK << 16);
  }
  wait_for(&c, 20);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(c.n, 20);
  struct rs_addr addr_a = rs_channel_address(a.ch);
  bool seen[20] = {false};
  for (size_t i = 0; i < c.n; i++) {
    ck_assert(c.got[i].ok);
    uint32_t tag = c.got[i].tag;
    bool from_a = tag < 2000;
    ck_assert(rs_addr_eq(&c.got[i].src, &addr_a) == from_a);
    uint32_t k = tag % 1000;
    ck_assert_uint_lt(k, 10);
    ck_assert_uint_eq(c.got[i].len, from_a ? 2500 + k * 777 : 3100 + k * 555);
    ck_assert(!seen[(from_a ? 0 : 10) + k]);
    seen[(from_a ? 0 : 10) + k] = true;
  }
  struct spy *s = (struct spy *)find_proto(channel_stack(c.ch), "SPY");
  ck_assert(interleaved(s, false));
  ck_assert(interleaved(s, true));
  ck_assert_uint_eq(stat_of(frag_of(&c), "reassembled"), 20);
  ck_assert_uint_eq(stat_of(frag_of(&c), "bytes_held"), 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

START_TEST(headers_and_flags_from_above_survive) {
  const char *xml = "<config><LOOPBACK/><SPY/><FRAG4 frag_size=\"1000\"/><ABOVE/></config>";
  struct node a, b;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  struct rs_addr to_b = rs_channel_address(b.ch);
  const unsigned flags = RS_MSG_OOB | RS_MSG_NO_FC;
  send_tagged(&a, &to_b, 1, 3500, flags);
  send_tagged(&a, &to_b, 2, 500, 0); /* not fragmented */
  wait_for(&b, 2);
  ck_assert(b.got[0].ok && b.got[0].len == 3500 && b.got[0].tag == 1);
  ck_assert_uint_eq(b.got[0].flags, flags);
  ck_assert_uint_eq(b.got[1].flags, 0);
  struct above *ab = (struct above *)find_proto(channel_stack(b.ch), "ABOVE");
  ck_assert_uint_eq(ab->n, 2);
  ck_assert_uint_eq(ab->seqno[0], 1);
  ck_assert_str_eq(ab->tag[0], "from-above");
  ck_assert_uint_eq(ab->seqno[1], 2);

  /* What went below FRAG4 at A: four slices of one buffer, no copy; fragment 0 carries the
   * header from above; every fragment carries the flags. */
  struct spy *s = (struct spy *)find_proto(channel_stack(a.ch), "SPY");
  ck_assert_uint_eq(s->n_down, 5);
  static const size_t lens[] = {1000, 1000, 1000, 500};
  for (size_t i = 0; i < 4; i++) {
    ck_assert_ptr_eq(s->down[i].buf, s->down[0].buf);
    ck_assert_ptr_eq(s->down[i].data, s->down[0].data + i * 1000);
    ck_assert_uint_eq(s->down[i].len, lens[i]);
    ck_assert(s->down[i].frag_hdr);
    ck_assert(s->down[i].test_hdr == (i == 0));
    ck_assert_uint_eq(s->down[i].flags, flags);
  }
  ck_assert_uint_eq(s->down[0].refs, 4); /* the original (now fragment 0) and three slices */
  ck_assert(!s->down[4].frag_hdr && s->down[4].test_hdr);
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(lost_fragment_expires_and_is_freed) {
  const char *xml_a = "<config><LOOPBACK/><DISCARD drop_down_unicasts=\"1\"/>"
                      "<FRAG4 frag_size=\"1000\"/></config>";
  const char *xml_b = "<config><LOOPBACK/><FRAG4 frag_size=\"1000\" "
                      "reassembly_timeout=\"2s\"/></config>";
  struct node a, b;
  open_node(&a, "A", xml_a);
  open_node(&b, "B", xml_b);
  struct rs_protocol *fb = frag_of(&b);
  struct rs_addr to_b = rs_channel_address(b.ch);
  send_tagged(&a, &to_b, 1, 3000, 0); /* fragment 0 of 3 is lost */
  rs_sim_run_for(sim, 1500 * RS_MS);
  ck_assert_uint_eq(b.n, 0);
  ck_assert_uint_eq(stat_of(fb, "frags_received"), 2);
  ck_assert_uint_eq(stat_of(fb, "incomplete"), 1);
  ck_assert_uint_ge(stat_of(fb, "bytes_held"), 3000);
  ck_assert_uint_eq(stat_of(fb, "expired"), 0);
  rs_sim_run_for(sim, 1 * RS_SEC);
  ck_assert_uint_eq(stat_of(fb, "expired"), 1);
  ck_assert_uint_eq(stat_of(fb, "incomplete"), 0);
  ck_assert_uint_eq(stat_of(fb, "bytes_held"), 0);
  ck_assert_uint_eq(b.n, 0);
  send_tagged(&a, &to_b, 2, 3000, 0); /* the next one is whole */
  wait_for(&b, 1);
  ck_assert(b.got[0].ok && b.got[0].tag == 2 && b.got[0].len == 3000);
  ck_assert_uint_eq(stat_of(fb, "reassembled"), 1);
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(configuration_is_checked) {
  struct rs_channel *ch;
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "X");
  char err[512];
  struct rs_channel_opts o = {
      .config_xml = "<config><LOOPBACK bundler.max_size=\"10000\"/><FRAG4 frag_size=\"10000\"/>"
                    "</config>",
      .name = "X",
      .runtime = rt};
  ck_assert_int_eq(rs_channel_open(&ch, &o, err, sizeof(err)), RS_ECONFIG);
  ck_assert_msg(strstr(err, "FRAG4: frag_size (10000) must be below the transport's "
                            "bundler.max_size (10000)"),
                "%s", err);
  o.config_xml = "<config><LOOPBACK/><FRAG4 frag_size=\"100\"/></config>";
  ck_assert_int_eq(rs_channel_open(&ch, &o, err, sizeof(err)), RS_ECONFIG);
  ck_assert_msg(strstr(err, "frag_size"), "%s", err);
  o.config_xml = "<config><LOOPBACK/><FRAG4 max_reassembly_size=\"1MiB\" "
                 "max_reassembly_total=\"512KiB\"/></config>";
  ck_assert_int_eq(rs_channel_open(&ch, &o, err, sizeof(err)), RS_ECONFIG);
  ck_assert_msg(strstr(err, "max_reassembly_total"), "%s", err);
  /* JGroups configurations name FRAG2 or FRAG3: both are FRAG4. */
  static const char *const aliases[] = {
      "<config><LOOPBACK/><FRAG2 frag_size=\"60K\"/></config>",
      "<config><LOOPBACK/><FRAG3/></config>",
      "<config><LOOPBACK/><org.jgroups.protocols.FRAG2/></config>"};
  for (size_t i = 0; i < 3; i++) {
    o.config_xml = aliases[i];
    ck_assert_msg(rs_channel_open(&ch, &o, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(channel_stack(ch)->top->ops->name, "FRAG4");
    rs_channel_close(ch);
  }
  rs_runtime_destroy(rt);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * A stack driven by hand (LOOPBACK, SPY capture="true", FRAG4, built but not started): what FRAG4
 * sends stays in SPY, and the test pushes fragments up from SPY's place.
 */
struct direct {
  struct rs_runtime *rt;
  struct rs_stack *st;
  struct rs_protocol *spy, *frag;
  struct rs_msg *got[16];
  size_t n;
};

static void direct_deliver(void *owner, struct rs_msg *m) {
  struct direct *d = owner;
  if (d->n < 16)
    d->got[d->n++] = m;
  else
    rs_msg_free(m);
}

static void direct_open(struct direct *d, const char *frag_attrs) {
  memset(d, 0, sizeof(*d));
  char xml[512];
  snprintf(xml, sizeof(xml), "<config><LOOPBACK/><SPY capture=\"true\"/><FRAG4 %s/></config>",
           frag_attrs);
  struct rs_props props;
  struct rs_diag dg;
  struct rs_xml_config cfg;
  props_init(&props);
  diag_init(&dg);
  d->rt = rs_sim_runtime_new(sim, "D");
  ck_assert_int_eq(xml_parse_string(xml, strlen(xml), "t.xml", &props, &cfg, &dg), 0);
  int rc = stack_build(&d->st, &cfg, d->rt, &dg);
  ck_assert_msg(rc == 0, "%s", dg.text ? dg.text : "");
  xml_config_free(&cfg);
  diag_free(&dg);
  props_free(&props);
  d->st->deliver = direct_deliver;
  d->st->owner = d;
  d->st->local_addr = (struct rs_addr){9, 9};
  d->spy = find_proto(d->st, "SPY");
  rs_sim_run_for(sim, RS_MS); /* leave time 0: ratelimit_ok() does not limit there */
  d->frag = find_proto(d->st, "FRAG4");
}

static void direct_close(struct direct *d) {
  for (size_t i = 0; i < d->n; i++)
    rs_msg_free(d->got[i]);
  stack_destroy(d->st);
  rs_runtime_destroy(d->rt);
}

/* A fragment as a hostile (or honest) sender could put on the wire: the header's five fields as
 * given, and `len` bytes of the message `id`'s pattern from `offset` on. */
static struct rs_msg *craft(uint64_t sender, uint64_t id, uint64_t index, uint64_t count,
                            uint64_t total, uint64_t offset, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  for (size_t i = 0; i < len; i++)
    p[i] = pat((uint32_t)id, (size_t)offset + i);
  struct rs_msg *m = rs_msg_new_copy(p, len);
  free(p);
  ck_assert_ptr_nonnull(m);
  m->src = (struct rs_addr){1, sender};
  uint8_t b[64];
  struct rs_writer w;
  writer_init(&w, b, sizeof(b));
  put_varint(&w, id);
  put_varint(&w, index);
  put_varint(&w, count);
  put_varint(&w, total);
  put_varint(&w, offset);
  const struct rs_header_type *t = registry_header_type(FRAG4_ID);
  ck_assert_ptr_nonnull(t);
  struct rs_reader r;
  reader_init(&r, b, w.len);
  t->read(rs_msg_put_header(m, t), &r);
  ck_assert_int_eq(r.err, 0);
  ck_assert_uint_eq(r.pos, w.len);
  return m;
}

static void inject(struct direct *d, struct rs_msg *m) { proto_up_msg(d->spy, m); }

static bool whole(const struct rs_msg *m, uint64_t id, size_t total) {
  if (m->len != total) return false;
  for (size_t i = 0; i < total; i++)
    if (m->data[i] != pat((uint32_t)id, i)) return false;
  return true;
}

START_TEST(fragments_slice_the_original_buffer) {
  struct direct d;
  direct_open(&d, "frag_size=\"1000\"");
  uint8_t *p = make_payload(5, 3500);
  struct rs_msg *m = rs_msg_new_copy(p, 3500);
  m->dest = (struct rs_addr){4, 4};
  m->flags = RS_MSG_OOB;
  struct testhdr *th = rs_msg_put_header(m, &testhdr_type);
  th->seqno = 77;
  strcpy(th->tag, "kept");
  const struct rs_buf *orig = m->buf;
  ck_assert_int_eq(stack_down_msg(d.st, m), 0);
  struct spy *s = (struct spy *)d.spy;
  ck_assert_uint_eq(s->n_kept, 4);
  for (size_t i = 0; i < 4; i++) {
    ck_assert_ptr_eq(s->kept[i]->buf, orig);
    ck_assert_ptr_eq(s->kept[i]->data, orig->data + i * 1000);
    ck_assert_uint_eq(s->kept[i]->flags, RS_MSG_OOB);
  }
  ck_assert_uint_eq(atomic_load(&orig->refs), 4);
  /* Back up in reverse order, as from another member. */
  for (size_t i = 4; i-- > 0;) {
    struct rs_msg *f = s->kept[i];
    f->src = (struct rs_addr){1, 2};
    if (i) ck_assert_uint_eq(d.n, 0);
    inject(&d, f);
  }
  s->n_kept = 0;
  ck_assert_uint_eq(d.n, 1);
  struct rs_msg *got = d.got[0];
  ck_assert_uint_eq(got->len, 3500);
  ck_assert_int_eq(memcmp(got->data, p, 3500), 0);
  ck_assert_uint_eq(got->flags, RS_MSG_OOB);
  ck_assert_ptr_null(rs_msg_header(got, FRAG4_ID));
  const struct testhdr *gh = rs_msg_header(got, TESTHDR_ID);
  ck_assert_ptr_nonnull(gh);
  ck_assert_uint_eq(gh->seqno, 77);
  ck_assert_str_eq(gh->tag, "kept");
  ck_assert_uint_eq(got->n_hdrs, 1);
  free(p);
  direct_close(&d);
}
END_TEST

START_TEST(same_id_from_two_senders_is_two_messages) {
  struct direct d;
  direct_open(&d, "frag_size=\"1000\"");
  /* Sender 1's message 3 (2500 bytes, S=1000) and sender 2's message 3 (1200 bytes, S=600),
   * fragments interleaved; a duplicate of one fragment on the way. */
  inject(&d, craft(1, 3, 2, 3, 2500, 2000, 500));
  inject(&d, craft(2, 3, 1, 2, 1200, 600, 600));
  inject(&d, craft(1, 3, 0, 3, 2500, 0, 1000));
  inject(&d, craft(1, 3, 0, 3, 2500, 0, 1000));
  inject(&d, craft(2, 3, 0, 2, 1200, 0, 600));
  inject(&d, craft(1, 3, 1, 3, 2500, 1000, 1000));
  ck_assert_uint_eq(d.n, 2);
  ck_assert(whole(d.got[0], 3, 1200));
  ck_assert_uint_eq(d.got[0]->src.lo, 2);
  ck_assert(whole(d.got[1], 3, 2500));
  ck_assert_uint_eq(d.got[1]->src.lo, 1);
  ck_assert_uint_eq(stat_of(d.frag, "duplicates"), 1);
  ck_assert_uint_eq(stat_of(d.frag, "reassembled"), 2);
  ck_assert_uint_eq(stat_of(d.frag, "bytes_held"), 0);
  direct_close(&d);
}
END_TEST

START_TEST(hostile_fragments_are_dropped_and_counted) {
  struct direct d;
  direct_open(&d, "frag_size=\"1000\" max_reassembly_size=\"64KiB\" "
                  "max_reassembly_total=\"128KiB\" reassembly_timeout=\"1s\"");
  uint64_t bad = 0;
#define BAD(...)                                                                                   \
  do {                                                                                             \
    inject(&d, craft(__VA_ARGS__));                                                                \
    ck_assert_uint_eq(stat_of(d.frag, "dropped_inconsistent"), ++bad);                             \
  } while (0)
  BAD(1, 1, 3, 3, 3000, 2000, 1000);              /* index >= count */
  BAD(1, 1, 0, 0, 3000, 0, 1000);                 /* no fragments */
  BAD(1, 1, 0, 1, 0, 0, 0);                       /* empty */
  BAD(1, 1, 0, 2, 1500, 1000, 1000);              /* beyond the total length */
  BAD(1, 1, 1, 3, 3000, 0, 1000);                 /* overlaps fragment 0 */
  BAD(1, 1, 1, 3, 3000, 1500, 1000);              /* overlaps fragment 2 */
  BAD(1, 1, 2, 3, 3000, 2000, 500);               /* the last does not reach the end */
  BAD(1, 1, 2, 3, 3000, 2001, 999);               /* the last is not at index * S */
  BAD(1, 1, 0, 5, 3000, 0, 1000);                 /* count does not match the length */
  BAD(1, 1, 0, 2, 3000, 0, 1000);                 /* ... either way */
  BAD(1, 1, 1, 2, UINT64_MAX, UINT64_MAX - 5, 6); /* past 2^64 */
  /* Consistent, but longer than max_reassembly_size: nothing is allocated. */
  inject(&d, craft(1, 1, 1, 2, UINT64_MAX, UINT64_MAX - 5, 5));
  inject(&d, craft(1, 1, 1, UINT32_MAX, UINT32_MAX, 1, 1));
  inject(&d, craft(1, 1, 0, 65, 65000, 0, 1000));
  ck_assert_uint_eq(stat_of(d.frag, "dropped_too_big"), 3);
  ck_assert_uint_eq(stat_of(d.frag, "dropped_inconsistent"), bad);
  ck_assert_uint_eq(stat_of(d.frag, "incomplete"), 0);
  ck_assert_uint_eq(stat_of(d.frag, "bytes_held"), 0);

  /* A fragment that disagrees with the message's earlier ones. */
  inject(&d, craft(1, 7, 0, 3, 3000, 0, 1000));
  BAD(1, 7, 1, 3, 2500, 1000, 1000);            /* another total */
  BAD(1, 7, 2, 3, 2100, 1400, 700);             /* another fragment size */
  inject(&d, craft(1, 7, 0, 3, 3000, 0, 1000)); /* a duplicate */
  ck_assert_uint_eq(stat_of(d.frag, "duplicates"), 1);
  inject(&d, craft(1, 7, 2, 3, 3000, 2000, 1000));
  inject(&d, craft(1, 7, 1, 3, 3000, 1000, 1000));
  ck_assert_uint_eq(d.n, 1);
  ck_assert(whole(d.got[0], 7, 3000));
#undef BAD

  /* A flood of beginnings: each sender holds at most max_reassembly_size, all of them at most
   * max_reassembly_total. */
  uint64_t refused = 0, accepted = 0;
  for (uint64_t sender = 1; sender <= 3; sender++)
    for (uint64_t id = 100; id < 200; id++)
      inject(&d, craft(sender, id, 0, 10, 10000, 0, 1000));
  accepted = stat_of(d.frag, "incomplete");
  refused = stat_of(d.frag, "dropped_over_limit");
  ck_assert_uint_eq(accepted + refused, 300);
  uint64_t held = stat_of(d.frag, "bytes_held"), charge = held / accepted;
  ck_assert_uint_ge(charge, 10000);
  ck_assert_uint_le(held, 128 * 1024);
  ck_assert_uint_gt(held + charge, 128 * 1024); /* full */
  ck_assert_uint_le(accepted, 2 * (64 * 1024 / charge) + 1);
  ck_assert_uint_ge(accepted, 64 * 1024 / charge); /* the first sender got its share */
  ck_assert_uint_eq(d.n, 1);

  /* Nothing more arrives: after reassembly_timeout all of it is discarded and freed. */
  rs_sim_run_for(sim, 1500 * RS_MS);
  ck_assert_uint_eq(stat_of(d.frag, "expired"), accepted);
  ck_assert_uint_eq(stat_of(d.frag, "incomplete"), 0);
  ck_assert_uint_eq(stat_of(d.frag, "bytes_held"), 0);
  ck_assert_uint_eq(d.n, 1);
  direct_close(&d);
}
END_TEST

/* The header decoder on any bytes: an error or a header that re-encodes to the same bytes. */
START_TEST(header_decoder_takes_any_bytes) {
  const struct rs_header_type *t = registry_header_type(FRAG4_ID);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_le(t->size, RS_HDR_INLINE);
  uint64_t x = 88172645463325252ULL;
  size_t ok = 0;
  for (int round = 0; round < 20000; round++) {
    uint8_t in[24];
    size_t len = (size_t)(round % 25);
    for (size_t i = 0; i < len; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      /* Mostly small varint bytes, so that some inputs decode. */
      in[i] = (uint8_t)(round % 3 ? x & 0x7f : x);
    }
    uint64_t h[8] = {0};
    struct rs_reader r;
    reader_init(&r, in, len);
    t->read(h, &r);
    if (r.err || r.pos != len) continue;
    ok++;
    uint8_t out[64];
    struct rs_writer w;
    writer_init(&w, out, sizeof(out));
    t->write(h, &w);
    ck_assert_int_eq(w.err, 0);
    ck_assert_uint_eq(w.len, len);
    ck_assert_uint_eq(t->wire_size(h), len);
    ck_assert_int_eq(memcmp(in, out, len), 0);
  }
  ck_assert_uint_gt(ok, 100);
  /* The example of docs/wire-format.md. */
  static const uint8_t doc[] = {0x05, 0x02, 0x03, 0xf0, 0x93, 0x09, 0xc0, 0xa9, 0x07};
  uint64_t dh[8];
  char text[160];
  struct rs_reader dr;
  reader_init(&dr, doc, sizeof(doc));
  t->read(dh, &dr);
  ck_assert(!dr.err && dr.pos == sizeof(doc));
  t->print(dh, text, sizeof(text));
  ck_assert_str_eq(text, "id=5 frag=2/3 offset=120000 total=150000");
  /* An index or a count over 2^32-1 is malformed. */
  uint8_t big[] = {1, 0x80, 0x80, 0x80, 0x80, 0x10, 2, 3, 0};
  uint64_t h[8];
  struct rs_reader r;
  reader_init(&r, big, sizeof(big));
  t->read(h, &r);
  ck_assert_int_eq(r.err, RS_EMALFORMED);
}
END_TEST

static Suite *frag_suite(void) {
  Suite *s = suite_create("frag");
  TCase *tc = tcase_create("channels");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, ten_megabytes_arrive_whole);
  tcase_add_test(tc, sizes_around_frag_size);
  tcase_add_test(tc, two_senders_interleave_at_a_third);
  tcase_add_test(tc, headers_and_flags_from_above_survive);
  tcase_add_test(tc, lost_fragment_expires_and_is_freed);
  tcase_add_test(tc, configuration_is_checked);
  suite_add_tcase(s, tc);
  tc = tcase_create("by hand");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, fragments_slice_the_original_buffer);
  tcase_add_test(tc, same_id_from_two_senders_is_two_messages);
  tcase_add_test(tc, hostile_fragments_are_dropped_and_counted);
  tcase_add_test(tc, header_decoder_takes_any_bytes);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(frag_suite()); }
