/* The stack: protocol instances in a chain, their lifecycle, and the builder's diagnostics. */
#ifndef RS_STACK_STACK_H
#define RS_STACK_STACK_H

#include <stdbool.h>
#include <stddef.h>

#include "stack/protocol.h"

/* ---------------------------------------------------------------------------------------------
 * Diagnostics: errors and warnings collected while parsing and building, one line each
 * ("file:line: PROTOCOL: what is wrong"). The builder reports every error it finds, not just the
 * first.
 */
struct rs_diag {
  char *text; /* all lines, '\n'-separated, malloc'd */
  size_t len;
  unsigned errors, warnings;
};
void diag_init(struct rs_diag *d);
void diag_free(struct rs_diag *d);
void diag_error(struct rs_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_warn(struct rs_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------------------------------
 * Properties for ${name} substitution: given with -Dname=value or the API; looked up before the
 * environment.
 */
struct rs_props {
  size_t n;
  char **names;
  char **values;
};
void props_init(struct rs_props *pr);
void props_free(struct rs_props *pr);
/* Adds "name=value" (a later definition of a name wins). 0, RS_EINVAL or RS_ENOMEM. */
int props_add(struct rs_props *pr, const char *assignment);
/* The value of name, or NULL. */
const char *props_get(const struct rs_props *pr, const char *name);

/* ---------------------------------------------------------------------------------------------
 * The parsed XML: one element per protocol, bottom (transport) first, values already
 * substituted. An attribute whose value resolved to nothing is absent (the default stays).
 */
struct rs_xml_attr {
  char *name;
  char *value;      /* NULL: a ${...} resolved to nothing, so the attribute is absent */
  char *unresolved; /* then: that expression's names ("raft_id", "a,b,env.C"), for messages */
  int line;
};
struct rs_xml_proto {
  char *name; /* as written: "pbcast.NAKACK2" */
  int line;
  struct rs_xml_attr *attrs;
  size_t n_attrs;
};
struct rs_xml_config {
  char *file; /* for messages: the path, or "<string>" */
  struct rs_xml_proto *protos;
  size_t n;
};

/* Parse a file or a string (stack/xml.c). Errors go to d; returns 0 or RS_ECONFIG. After errors
 * inside elements (a bad ${...}, a child element) *out keeps the rest, which `config check`
 * builds to report more errors; after a syntax error it is empty. Free it with xml_config_free
 * in every case. */
int xml_parse_file(const char *path, const struct rs_props *props, struct rs_xml_config *out,
                   struct rs_diag *d);
int xml_parse_string(const char *text, size_t len, const char *name, const struct rs_props *props,
                     struct rs_xml_config *out, struct rs_diag *d);
void xml_config_free(struct rs_xml_config *c);

/* ---------------------------------------------------------------------------------------------
 * Counters printed by probe, perf and `raftstack protocols` stats.
 */
struct rs_stats_printer {
  void (*line)(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
      __attribute__((format(printf, 3, 4)));
  void *arg;
};

/* ---------------------------------------------------------------------------------------------
 * The stack.
 */
struct rs_stack {
  struct rs_protocol *bottom, *top;
  size_t n;
  struct rs_runtime *rt;
  char *file; /* the configuration's name, for messages */
  struct rs_addr local_addr;
  char name[128];
  char cluster[256];
  bool started;
  /* The channel above the top protocol. */
  void *owner;
  void (*deliver)(void *owner, struct rs_msg *m);
  int (*up_event)(void *owner, struct rs_event *ev);
  /* Transports report socket back pressure; the channel stops feeding the stack meanwhile. */
  void (*congestion)(void *owner, bool congested);
  /* Who holds back pressure: bit i for the protocol at position i from the bottom (the transport
   * is bit 0; positions past 63 share bit 63). The channel hears of the first and the last. */
  uint64_t congested_by;
  char err[1024]; /* detail of the last init/start failure */
  uint64_t dropped_at_bottom;
  /* What the builder keeps about the XML for later messages (element lines, ${...} that
   * resolved to nothing); freed by stack_origin_free. */
  struct rs_stack_origin *origin;
};

/* Builds a stack from a parsed configuration: looks up each protocol (with "did you mean"),
 * applies defaults then the XML attributes (validated against the table), checks the ordering
 * rules, and runs every init bottom→top. Errors and warnings go to d; returns 0 or RS_ECONFIG. */
int stack_build(struct rs_stack **out, const struct rs_xml_config *cfg, struct rs_runtime *rt,
                struct rs_diag *d);
/* Frees st->origin (stack_destroy calls it; stack/builder.c). NULL is ignored. */
void stack_origin_free(struct rs_stack_origin *o);
/* Attributes every protocol accepts besides its own table (stack/builder.c): `level` (bound to
 * struct rs_protocol's level by the builder, not through `offset`) and the JGroups attributes
 * that are ignored with a warning. RS_ATTR_END-terminated. */
extern const struct rs_attr stack_common_attrs[];
/* For tests: protocols stack_build knows besides the registry (a NULL-terminated array, or NULL),
 * e.g. one with a required attribute. Set before building; not thread-safe. */
void stack_set_extra_protocols(const struct rs_protocol_ops *const *ops);
/* Required attributes still unset become errors naming the property to pass; then start
 * bottom→top. On failure stops what started and returns the error (detail in st->err). */
int stack_start(struct rs_stack *st);
void stack_stop(struct rs_stack *st);
void stack_destroy(struct rs_stack *st);

/* Bottom-up, one protocol per line followed by its attributes with effective values. Malloc'd. */
char *stack_print(const struct rs_stack *st);
/* Every protocol's stats lines. */
void stack_stats(const struct rs_stack *st, struct rs_stats_printer *out);

/* The transport's back pressure (its bit in congested_by). */
void stack_set_congested(struct rs_stack *st, bool congested);
/* Back pressure held by protocol p (UFC, MFC): the channel stops feeding the stack while any
 * protocol holds it, so one protocol's release does not undo another's hold. */
void proto_set_congested(struct rs_protocol *p, bool congested);

/* From above the top protocol: a message or an event going down (the channel's entry). */
int stack_down_msg(struct rs_stack *st, struct rs_msg *m);
int stack_down_event(struct rs_stack *st, struct rs_event *ev);

/* Every RS_ATTR_REQUIRED attribute still unset becomes an error naming the property to pass
 * (stack/builder.c). 0 or RS_ECONFIG. */
int stack_check_required(struct rs_stack *st, struct rs_diag *d);

/* ---------------------------------------------------------------------------------------------
 * Attribute values (stack/attr.c).
 */
/* Sets every attribute of ops to its default in the instance. */
void attr_set_defaults(const struct rs_protocol_ops *ops, struct rs_protocol *p);
/* Frees strings and lists held by the instance's attributes. */
void attr_free_values(const struct rs_protocol_ops *ops, struct rs_protocol *p);
/* Parses and stores one value. On error writes "what is wrong" (without file/protocol prefix)
 * into err and returns RS_EINVAL. */
int attr_set(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
             size_t errlen);
/* The attribute called `name` (aliases resolved, ignored/prefix entries returned as such). */
const struct rs_attr *attr_find(const struct rs_protocol_ops *ops, const char *name);
/* Formats the effective value ("64000", "500ms", "a,b"); returns the length. */
int attr_format(const struct rs_attr *a, const struct rs_protocol *p, char *buf, size_t len);
const char *attr_type_name(enum rs_attr_type t);
/* True when the attribute has a value (non-NULL string, non-empty list, or not REQUIRED). */
bool attr_is_set(const struct rs_attr *a, const struct rs_protocol *p);

/* Value parsers shared with tools: sizes (decimal k/m/g, binary KiB/MiB/GiB), durations (ms, s,
 * m, h, d; bare numbers in ms; decimals allowed). 0 or RS_EINVAL / RS_ETOOBIG. */
int parse_size(const char *s, uint64_t *out);
int parse_duration(const char *s, rs_time *out);
int parse_bool(const char *s, bool *out);

/* The candidate closest to `name` by edit distance, if close enough to be a likely typo. */
const char *suggest_closest(const char *name, const char *const *candidates, size_t n);

#endif
