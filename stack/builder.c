/* The stack builder: XML elements to protocol instances, attribute binding, ordering checks. */
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "stack/stack.h"

/* ---------------------------------------------------------------------------------------------
 * Diagnostics.
 */
void diag_init(struct rs_diag *d) { memset(d, 0, sizeof(*d)); }

void diag_free(struct rs_diag *d) {
  free(d->text);
  diag_init(d);
}

/* Appends one line; on allocation failure the line is lost but still counted. */
__attribute__((format(printf, 2, 0))) static void diag_add(struct rs_diag *d, const char *fmt,
                                                           va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  char *t = realloc(d->text, d->len + (size_t)n + 2);
  if (!t) return;
  d->text = t;
  vsnprintf(t + d->len, (size_t)n + 1, fmt, ap);
  d->len += (size_t)n;
  t[d->len++] = '\n';
  t[d->len] = '\0';
}

void diag_error(struct rs_diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_add(d, fmt, ap);
  va_end(ap);
  d->errors++;
}

void diag_warn(struct rs_diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_add(d, fmt, ap);
  va_end(ap);
  d->warnings++;
}

/* ---------------------------------------------------------------------------------------------
 * The origin: what the stack remembers of its XML after the build, for messages at start.
 */
struct origin_proto {
  const struct rs_protocol *p;
  int line;
};

/* An attribute whose ${...} resolved to nothing, so it kept its default. */
struct origin_unresolved {
  const struct rs_protocol *p;
  const struct rs_attr *a;
  char *names;
  int line;
};

struct rs_stack_origin {
  struct origin_proto *protos;
  size_t n_protos;
  struct origin_unresolved *unresolved;
  size_t n_unresolved;
};

void stack_origin_free(struct rs_stack_origin *o) {
  if (!o) return;
  for (size_t i = 0; i < o->n_unresolved; i++)
    free(o->unresolved[i].names);
  free(o->unresolved);
  free(o->protos);
  free(o);
}

static int origin_line(const struct rs_stack *st, const struct rs_protocol *p) {
  const struct rs_stack_origin *o = st->origin;
  for (size_t i = 0; o && i < o->n_protos; i++)
    if (o->protos[i].p == p) return o->protos[i].line;
  return 0;
}

static const struct origin_unresolved *
origin_unresolved(const struct rs_stack *st, const struct rs_protocol *p, const struct rs_attr *a) {
  const struct rs_stack_origin *o = st->origin;
  for (size_t i = 0; o && i < o->n_unresolved; i++)
    if (o->unresolved[i].p == p && o->unresolved[i].a == a) return &o->unresolved[i];
  return NULL;
}

/* "file:line" (or "file" when the line is unknown) for the start of a message. */
static const char *where(const struct rs_stack *st, int line, char *buf, size_t len) {
  if (line > 0)
    snprintf(buf, len, "%s:%d", st->file ? st->file : "<config>", line);
  else
    snprintf(buf, len, "%s", st->file ? st->file : "<config>");
  return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Building.
 */
struct build {
  struct rs_stack *st;
  struct rs_diag *d;
  const char *file;
  unsigned errors; /* d->errors before the build */
  bool unknown;    /* some element named no protocol: ordering checks would mislead */
  bool nomem;
  size_t n_inited; /* protocols from the bottom whose init was called (the last may have failed) */
};

static const struct rs_protocol_ops *const *extra_protocols;

void stack_set_extra_protocols(const struct rs_protocol_ops *const *ops) { extra_protocols = ops; }

/* The registry, then the extra protocols tests add. */
static const struct rs_protocol_ops *lookup(const char *name) {
  const struct rs_protocol_ops *ops = registry_find(name);
  for (const struct rs_protocol_ops *const *e = extra_protocols; !ops && e && *e; e++)
    if (!strcmp((*e)->name, name)) ops = *e;
  return ops;
}

static void no_memory(struct build *b) {
  if (!b->nomem) diag_error(b->d, "%s: out of memory", b->file);
  b->nomem = true;
}

static bool has_value(const struct rs_attr *a) {
  return a->type != RS_ATTR_ALIAS && a->type != RS_ATTR_IGNORED;
}

/* Appends s to a bounded list buffer, separated by sep. */
static void list_add(char *buf, size_t len, const char *sep, const char *s) {
  size_t n = strlen(buf);
  snprintf(buf + n, len - n, "%s%s", n ? sep : "", s);
}

/* "pbcast.NAKACK2" for a protocol with a package, else its name. */
static const char *qualified(const struct rs_protocol_ops *ops, char *buf, size_t len) {
  if (!ops->package) return ops->name;
  snprintf(buf, len, "%s.%s", ops->package, ops->name);
  return buf;
}

/* Every registered name and alias, for suggestions; malloc'd, NULL on failure. */
static const char **protocol_names(size_t *n) {
  *n = 0;
  for (size_t i = 0; i < rs_protocol_registry_len; i++)
    for (const char *const *a = rs_protocol_registry[i]->aliases; a && *a; a++)
      (*n)++;
  const char **names = calloc(*n + rs_protocol_registry_len + 1, sizeof(*names));
  if (!names) return NULL;
  *n = 0;
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    names[(*n)++] = rs_protocol_registry[i]->name;
    for (const char *const *a = rs_protocol_registry[i]->aliases; a && *a; a++)
      names[(*n)++] = *a;
  }
  return names;
}

static void report_unknown_protocol(struct build *b, const struct rs_xml_proto *x) {
  const char *dot = strrchr(x->name, '.'); /* a wrong package still suggests the protocol */
  size_t n;
  const char **names = protocol_names(&n);
  if (!names) {
    no_memory(b);
    return;
  }
  const char *s = suggest_closest(dot ? dot + 1 : x->name, names, n);
  if (s) {
    diag_error(b->d, "%s:%d: unknown protocol '%s' (did you mean '%s'?)", b->file, x->line, x->name,
               s);
  } else {
    char known[2048] = "", q[128];
    for (size_t i = 0; i < rs_protocol_registry_len; i++)
      list_add(known, sizeof(known), ", ", qualified(rs_protocol_registry[i], q, sizeof(q)));
    diag_error(b->d, "%s:%d: unknown protocol '%s' (known protocols: %s)", b->file, x->line,
               x->name, known);
  }
  free(names);
}

/* Attributes every protocol accepts besides its table: `level`, and JGroups attributes that
 * mean nothing here, accepted with a warning so that a configuration written for JGroups loads. */
static const char *const log_levels[] = {"trace", "debug", "info", "warn", "error", "off", NULL};
#define COMMON_IGNORED(n, why)                                                                     \
  { n, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }
const struct rs_attr stack_common_attrs[] = {
    {"level", RS_ATTR_ENUM, 0, NULL, 0, 0,
     "log level of this protocol; by default the one RS_LOG sets, else warn", 0, log_levels},
    COMMON_IGNORED("stats", "counters are always kept"),
    COMMON_IGNORED("ergonomics", "values are used as configured"),
    COMMON_IGNORED("id", "protocol ids are fixed wire constants"),
    COMMON_IGNORED("after_creation_hook", "no Java hooks"),
    COMMON_IGNORED("preview_warning", "no protocol is in preview"),
    COMMON_IGNORED("policies", "no Java policies"),
    RS_ATTR_END,
};

static const char *common_ignored_why(const char *name) {
  for (const struct rs_attr *a = stack_common_attrs; a->name; a++)
    if (a->type == RS_ATTR_IGNORED && !strcmp(a->name, name)) return a->desc;
  return NULL;
}

static void warn_ignored(struct build *b, const struct rs_protocol *p, const struct rs_xml_attr *a,
                         const char *why) {
  if (why)
    diag_warn(b->d, "%s:%d: %s: attribute '%s' is not used here (%s); ignored", b->file, a->line,
              p->ops->name, a->name, why);
  else
    diag_warn(b->d, "%s:%d: %s: attribute '%s' is not used here; ignored", b->file, a->line,
              p->ops->name, a->name);
}

static void report_unknown_attr(struct build *b, const struct rs_protocol *p,
                                const struct rs_xml_attr *a) {
  size_t n = 1;
  for (const struct rs_attr *r = p->ops->attrs; r && r->name; r++)
    n++;
  const char **names = calloc(n, sizeof(*names));
  if (!names) {
    no_memory(b);
    return;
  }
  n = 0;
  names[n++] = "level";
  for (const struct rs_attr *r = p->ops->attrs; r && r->name; r++)
    if (!(r->flags & RS_ATTR_PREFIX)) names[n++] = r->name;
  const char *s = suggest_closest(a->name, names, n);
  if (s)
    diag_error(b->d, "%s:%d: %s: unknown attribute '%s' (did you mean '%s'?)", b->file, a->line,
               p->ops->name, a->name, s);
  else
    diag_error(b->d, "%s:%d: %s: unknown attribute '%s' (`raftstack protocols %s` lists them)",
               b->file, a->line, p->ops->name, a->name, p->ops->name);
  free(names);
}

static void set_level(struct build *b, struct rs_protocol *p, const struct rs_xml_attr *a) {
  enum rs_log_level level;
  if (rs_log_level_parse(a->value, &level)) {
    diag_error(b->d,
               "%s:%d: %s: attribute 'level': '%s' is not one of: trace, debug, info, warn, "
               "error, off",
               b->file, a->line, p->ops->name, a->value);
    return;
  }
  p->level = level;
  p->level_set = true;
}

static void record_unresolved(struct build *b, const struct rs_protocol *p,
                              const struct rs_attr *row, const struct rs_xml_attr *a) {
  struct rs_stack_origin *o = b->st->origin;
  char *names = strdup(a->unresolved);
  struct origin_unresolved *u =
      names ? realloc(o->unresolved, (o->n_unresolved + 1) * sizeof(*u)) : NULL;
  if (!u) {
    free(names);
    no_memory(b);
    return;
  }
  o->unresolved = u;
  u[o->n_unresolved++] = (struct origin_unresolved){p, row, names, a->line};
}

/* One XML attribute: `level`, then the protocol's table, then the JGroups attributes every
 * protocol accepts; the value was already substituted (NULL: it resolved to nothing). */
static void apply_attr(struct build *b, struct rs_protocol *p, const struct rs_xml_attr *a) {
  if (!strcmp(a->name, "level")) {
    if (a->value) set_level(b, p, a);
    return;
  }
  const struct rs_attr *row = attr_find(p->ops, a->name);
  if (!row) {
    const char *why = common_ignored_why(a->name);
    if (why)
      warn_ignored(b, p, a, why);
    else
      report_unknown_attr(b, p, a);
    return;
  }
  if (row->type == RS_ATTR_IGNORED) {
    warn_ignored(b, p, a, row->desc);
    return;
  }
  if (!a->value) {
    if (a->unresolved) record_unresolved(b, p, row, a);
    return;
  }
  char err[512];
  if (attr_set(row, p, a->value, err, sizeof(err)))
    diag_error(b->d, "%s:%d: %s: attribute '%s': %s", b->file, a->line, p->ops->name, a->name, err);
}

static struct rs_protocol *find_ops(const struct rs_stack *st, const struct rs_protocol_ops *ops) {
  for (struct rs_protocol *q = st->bottom; q; q = q->up)
    if (q->ops == ops) return q;
  return NULL;
}

/* Links a new instance on top of the chain and remembers its element's line. */
static struct rs_protocol *add_instance(struct build *b, const struct rs_protocol_ops *ops,
                                        int line) {
  struct rs_stack *st = b->st;
  struct rs_stack_origin *o = st->origin;
  assert(ops->size >= sizeof(struct rs_protocol));
  struct origin_proto *lines = realloc(o->protos, (o->n_protos + 1) * sizeof(*lines));
  if (lines) o->protos = lines;
  struct rs_protocol *p = lines ? calloc(1, ops->size) : NULL;
  if (!p) {
    no_memory(b);
    return NULL;
  }
  o->protos[o->n_protos++] = (struct origin_proto){.p = p, .line = line};
  p->ops = ops;
  p->stack = st;
  p->rt = st->rt;
  p->down = st->top;
  if (st->top)
    st->top->up = p;
  else
    st->bottom = p;
  st->top = p;
  st->n++;
  return p;
}

static void add_protocol(struct build *b, const struct rs_xml_proto *x) {
  const struct rs_protocol_ops *ops = lookup(x->name);
  if (!ops) {
    b->unknown = true;
    report_unknown_protocol(b, x);
    return;
  }
  const struct rs_protocol *dup = find_ops(b->st, ops);
  if (dup) {
    diag_error(b->d, "%s:%d: %s: duplicate protocol (already at line %d)", b->file, x->line,
               ops->name, origin_line(b->st, dup));
    return;
  }
  struct rs_protocol *p = add_instance(b, ops, x->line);
  if (!p) return;
  attr_set_defaults(ops, p);
  for (size_t i = 0; i < x->n_attrs; i++)
    apply_attr(b, p, &x->attrs[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Ordering rules.
 */
static void check_transport(struct build *b) {
  const struct rs_stack *st = b->st;
  const struct rs_protocol *tp = NULL;
  for (const struct rs_protocol *p = st->bottom; p; p = p->up) {
    if (!(p->ops->flags & RS_PROTO_TRANSPORT)) continue;
    if (tp)
      diag_error(b->d, "%s:%d: %s: only one transport per stack (%s is the transport)", b->file,
                 origin_line(st, p), p->ops->name, tp->ops->name);
    else if (p != st->bottom)
      diag_error(b->d, "%s:%d: %s must be the first (bottom) protocol", b->file, origin_line(st, p),
                 p->ops->name);
    if (!tp) tp = p;
  }
  if (tp || !st->bottom) return;
  char known[512] = "";
  for (size_t i = 0; i < rs_protocol_registry_len; i++)
    if (rs_protocol_registry[i]->flags & RS_PROTO_TRANSPORT)
      list_add(known, sizeof(known), ", ", rs_protocol_registry[i]->name);
  diag_error(b->d, "%s:%d: no transport: the first (bottom) protocol must be one of %s", b->file,
             origin_line(st, st->bottom), known);
}

/* Whether q is one of the alternatives of a requires_below entry ("NAKACK2|NAKACK4"). */
static bool satisfies(const struct rs_protocol *q, const char *entry) {
  char alt[128];
  for (const char *s = entry; *s;) {
    size_t n = strcspn(s, "|");
    snprintf(alt, sizeof(alt), "%.*s", (int)n, s);
    const struct rs_protocol_ops *ops = lookup(alt);
    if (ops ? ops == q->ops : !strcmp(alt, q->ops->name)) return true;
    s += n + (s[n] == '|');
  }
  return false;
}

static const struct rs_protocol *find_satisfying(const struct rs_protocol *from, bool up,
                                                 const char *entry) {
  for (const struct rs_protocol *q = from; q; q = up ? q->up : q->down)
    if (satisfies(q, entry)) return q;
  return NULL;
}

/* One ordering rule: every entry of `rules` must be found on the `above` side of p. */
static void check_side(struct build *b, const struct rs_protocol *p, const char *const *rules, bool above) {
  const char *want = above ? "above" : "below", *other = above ? "below" : "above";
  for (const char *const *r = rules; r && *r; r++) {
    if (find_satisfying(above ? p->up : p->down, above, *r)) continue;
    char names[256] = "", alt[128];
    for (const char *s = *r; *s;) {
      size_t n = strcspn(s, "|");
      snprintf(alt, sizeof(alt), "%.*s", (int)n, s);
      list_add(names, sizeof(names), " or ", alt);
      s += n + (s[n] == '|');
    }
    const struct rs_protocol *wrong = find_satisfying(above ? p->down : p->up, !above, *r);
    if (wrong)
      diag_error(b->d, "%s:%d: %s: needs %s %s it, but %s is %s it (line %d)", b->file,
                 origin_line(b->st, p), p->ops->name, names, want, wrong->ops->name, other,
                 origin_line(b->st, wrong));
    else
      diag_error(b->d, "%s:%d: %s: needs %s %s it", b->file, origin_line(b->st, p), p->ops->name,
                 names, want);
  }
}

static void check_requires(struct build *b, const struct rs_protocol *p) {
  check_side(b, p, p->ops->requires_below, false);
  check_side(b, p, p->ops->requires_above, true);
}

/* ---------------------------------------------------------------------------------------------
 * Init, teardown and the entry point.
 */
static void run_inits(struct build *b) {
  struct rs_stack *st = b->st;
  for (struct rs_protocol *p = st->bottom; p; p = p->up, b->n_inited++) {
    if (!p->ops->init) continue;
    st->err[0] = '\0';
    int rc = p->ops->init(p);
    if (rc == 0) continue;
    b->n_inited++; /* its destroy frees what the init allocated before failing */
    /* proto_error() wrote "PROTOCOL: detail"; anything else gets the protocol's name. */
    size_t nl = strlen(p->ops->name);
    if (!strncmp(st->err, p->ops->name, nl) && st->err[nl] == ':')
      diag_error(b->d, "%s:%d: %s", b->file, origin_line(st, p), st->err);
    else
      diag_error(b->d, "%s:%d: %s: %s", b->file, origin_line(st, p), p->ops->name,
                 st->err[0] ? st->err : rs_strerror(rc));
    return; /* the protocols above may rely on this one: do not init them */
  }
}

/* Undoes a failed build: destroy (top→bottom) every protocol whose init was called, including one
 * that failed part-way (destroy copes with that), then free it all. Protocols above a failed init
 * never saw init, so their destroy is not called. */
static void discard(struct build *b) {
  struct rs_stack *st = b->st;
  size_t i = st->n;
  for (struct rs_protocol *p = st->top, *down; p; p = down) {
    down = p->down;
    if (--i < b->n_inited && p->ops->destroy) p->ops->destroy(p);
    attr_free_values(p->ops, p);
    free(p);
  }
  stack_origin_free(st->origin);
  free(st->file);
  free(st);
}

int stack_build(struct rs_stack **out, const struct rs_xml_config *cfg, struct rs_runtime *rt,
                struct rs_diag *d) {
  *out = NULL;
  struct rs_stack *st = calloc(1, sizeof(*st));
  if (!st) {
    diag_error(d, "%s: out of memory", cfg->file ? cfg->file : "<config>");
    return RS_ENOMEM;
  }
  st->rt = rt;
  st->file = strdup(cfg->file ? cfg->file : "<config>");
  st->origin = calloc(1, sizeof(*st->origin));
  struct build b = {
      .st = st, .d = d, .file = st->file ? st->file : "<config>", .errors = d->errors};
  if (!st->file || !st->origin) no_memory(&b);
  for (size_t i = 0; i < cfg->n && !b.nomem; i++)
    add_protocol(&b, &cfg->protos[i]);
  if (cfg->n == 0) diag_error(d, "%s: the configuration lists no protocols", b.file);
  if (!b.unknown && !b.nomem) {
    check_transport(&b);
    for (const struct rs_protocol *p = st->bottom; p; p = p->up)
      check_requires(&b, p);
  }
  if (d->errors == b.errors) run_inits(&b);
  if (d->errors != b.errors) {
    discard(&b);
    return b.nomem ? RS_ENOMEM : RS_ECONFIG;
  }
  *out = st;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Required attributes (checked at start: a program may still set them after the build).
 */
/* The -D hint for an unresolved ${a,b,env.C}: its first plain name, else its first env name. */
static void property_hint(const char *names, char *buf, size_t len) {
  char *copy = strdup(names), *save = NULL, *env = NULL;
  snprintf(buf, len, "pass -D%s=...", names);
  if (!copy) return;
  for (char *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
    while (isspace((unsigned char)*n))
      n++;
    if (!strncmp(n, "env.", 4)) {
      if (!env) env = n + 4;
      continue;
    }
    snprintf(buf, len, "pass -D%s=...", n);
    free(copy);
    return;
  }
  if (env) snprintf(buf, len, "set the environment variable %s", env);
  free(copy);
}

static void report_required(const struct rs_stack *st, struct rs_diag *d,
                            const struct rs_protocol *p, const struct rs_attr *a) {
  char loc[512], hint[256];
  const struct origin_unresolved *u = origin_unresolved(st, p, a);
  if (u) {
    property_hint(u->names, hint, sizeof(hint));
    diag_error(d, "%s: %s: required attribute '%s' is not set: ${%s} resolved to nothing (%s)",
               where(st, u->line, loc, sizeof(loc)), p->ops->name, a->name, u->names, hint);
  } else {
    /* A -D property only reaches an attribute through a ${...} in the XML. */
    diag_error(d,
               "%s: %s: required attribute '%s' is not set (set it in the XML, e.g. "
               "%s=\"${%s}\" with -D%s=...)",
               where(st, origin_line(st, p), loc, sizeof(loc)), p->ops->name, a->name, a->name,
               a->name, a->name);
  }
}

int stack_check_required(struct rs_stack *st, struct rs_diag *d) {
  unsigned errors = d->errors;
  for (const struct rs_protocol *p = st->bottom; p; p = p->up)
    for (const struct rs_attr *a = p->ops->attrs; a && a->name; a++)
      if ((a->flags & RS_ATTR_REQUIRED) && has_value(a) && !attr_is_set(a, p))
        report_required(st, d, p, a);
  return d->errors == errors ? 0 : RS_ECONFIG;
}

/* ---------------------------------------------------------------------------------------------
 * Printing: what `raftstack config check` shows and rs_channel_print_stack returns.
 */
static void print_attr(FILE *f, const struct rs_protocol *p, const struct rs_attr *a) {
  if (a->type == RS_ATTR_STRING && !*(char *const *)(const void *)((const char *)p + a->offset)) {
    fprintf(f, "    %s = (not set)\n", a->name);
    return;
  }
  char small[256];
  int n = attr_format(a, p, small, sizeof(small));
  if (n < 0) return;
  char *big = (size_t)n < sizeof(small) ? NULL : malloc((size_t)n + 1);
  if (big) attr_format(a, p, big, (size_t)n + 1);
  const char *v = big ? big : small;
  fprintf(f, "    %s = %s\n", a->name, *v ? v : "(none)");
  free(big);
}

static void print_protocol(FILE *f, const struct rs_protocol *p) {
  char q[128];
  fprintf(f, "%s\n", qualified(p->ops, q, sizeof(q)));
  if (p->level_set) {
    char lvl[16];
    snprintf(lvl, sizeof(lvl), "%s", rs_log_level_name(p->level));
    for (char *c = lvl; *c; c++)
      *c = (char)tolower((unsigned char)*c);
    fprintf(f, "    level = %s\n", lvl);
  }
  for (const struct rs_attr *a = p->ops->attrs; a && a->name; a++)
    if (has_value(a)) print_attr(f, p, a);
}

char *stack_print(const struct rs_stack *st) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return NULL;
  for (const struct rs_protocol *p = st->bottom; p; p = p->up)
    print_protocol(f, p);
  if (fclose(f)) {
    free(text);
    return NULL;
  }
  return text;
}
