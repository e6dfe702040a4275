/* The XML stack definition: libexpat parsing, ${...} substitution and -Dname=value properties. */
#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <raftstack/errors.h>

#include "stack/stack.h"

/* A configuration is a few kilobytes; anything this large is a mistake, not a stack. */
#define XML_MAX_FILE (16u << 20)

/* ---------------------------------------------------------------------------------------------
 * Properties.
 */
void props_init(struct rs_props *pr) { memset(pr, 0, sizeof(*pr)); }

void props_free(struct rs_props *pr) {
  for (size_t i = 0; i < pr->n; i++) {
    free(pr->names[i]);
    free(pr->values[i]);
  }
  free(pr->names);
  free(pr->values);
  props_init(pr);
}

static int props_append(struct rs_props *pr, char *name, char *value) {
  char **names = realloc(pr->names, (pr->n + 1) * sizeof(*names));
  if (!names) return RS_ENOMEM;
  pr->names = names;
  char **values = realloc(pr->values, (pr->n + 1) * sizeof(*values));
  if (!values) return RS_ENOMEM;
  pr->values = values;
  pr->names[pr->n] = name;
  pr->values[pr->n] = value;
  pr->n++;
  return 0;
}

int props_add(struct rs_props *pr, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment) return RS_EINVAL;
  char *name = strndup(assignment, (size_t)(eq - assignment));
  char *value = strdup(eq + 1);
  if (!name || !value) goto err_nomem;
  for (size_t i = 0; i < pr->n; i++) {
    if (!strcmp(pr->names[i], name)) { /* a later -D wins, as on a Java command line */
      free(pr->values[i]);
      pr->values[i] = value;
      free(name);
      return 0;
    }
  }
  if (props_append(pr, name, value)) goto err_nomem;
  return 0;

err_nomem:
  free(name);
  free(value);
  return RS_ENOMEM;
}

const char *props_get(const struct rs_props *pr, const char *name) {
  if (!pr) return NULL;
  for (size_t i = 0; i < pr->n; i++)
    if (!strcmp(pr->names[i], name)) return pr->values[i];
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * ${...} substitution (JGroups' Util.substituteVariable rules, see the reference §2.2).
 */
struct sbuf {
  char *p;
  size_t len, cap;
  bool nomem;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n) {
  if (b->nomem) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->nomem = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

/* One name of a ${a,b,env.C} list: env.C looks only at the environment; a plain name looks at
 * the properties first, then the environment. */
static const char *lookup_name(const char *name, const struct rs_props *props) {
  if (!*name) return NULL;
  if (!strncmp(name, "env.", 4)) return name[4] ? getenv(name + 4) : NULL;
  const char *v = props_get(props, name);
  return v ? v : getenv(name);
}

/* Resolves the inside of one ${...} (in place: expr is a scratch copy). Returns the value, or
 * NULL when no name resolves and there is no default. *names receives the trimmed name list. */
static const char *resolve_expr(char *expr, const struct rs_props *props, char **names) {
  char *colon = strchr(expr, ':'); /* only the first ':' separates the default */
  if (colon) *colon = '\0';
  *names = trim(expr);
  const char *found = NULL;
  char *list_copy = strdup(*names);
  if (!list_copy) return NULL;
  char *save = NULL;
  for (char *n = strtok_r(list_copy, ",", &save); n && !found; n = strtok_r(NULL, ",", &save))
    found = lookup_name(trim(n), props);
  free(list_copy);
  if (found) return found;
  return colon ? trim(colon + 1) : NULL;
}

enum subst_result { SUBST_OK, SUBST_UNRESOLVED, SUBST_UNTERMINATED, SUBST_NOMEM };

/* Substitutes every ${...} of `in` once, left to right (substituted text is not scanned again,
 * so a property cannot loop). When some ${...} resolves to nothing the attribute is dropped, as
 * JGroups drops it: *unresolved receives that expression's names and *out stays NULL. */
static enum subst_result substitute(const char *in, const struct rs_props *props, char **out,
                                    char **unresolved) {
  struct sbuf b = {0};
  *out = NULL;
  *unresolved = NULL;
  sbuf_add(&b, "", 0);
  for (const char *s = in; *s;) {
    const char *open = strstr(s, "${");
    if (!open) {
      sbuf_add(&b, s, strlen(s));
      break;
    }
    sbuf_add(&b, s, (size_t)(open - s)); /* text and any lone '$' before it are literal */
    const char *close = strchr(open + 2, '}');
    if (!close) {
      free(b.p);
      free(*unresolved);
      *unresolved = NULL;
      return SUBST_UNTERMINATED;
    }
    char *expr = strndup(open + 2, (size_t)(close - open - 2));
    if (!expr) b.nomem = true;
    char *names = NULL;
    const char *v = expr ? resolve_expr(expr, props, &names) : NULL;
    if (v)
      sbuf_add(&b, v, strlen(v));
    else if (expr && !*unresolved && !(*unresolved = strdup(names)))
      b.nomem = true;
    free(expr);
    s = close + 1;
  }
  if (b.nomem) {
    free(b.p);
    free(*unresolved);
    *unresolved = NULL;
    return SUBST_NOMEM;
  }
  if (*unresolved) {
    free(b.p);
    return SUBST_UNRESOLVED;
  }
  *out = b.p;
  return SUBST_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The parser.
 */
struct parser {
  XML_Parser xp;
  const char *text; /* the whole input, to find each attribute's own line */
  size_t len;
  const char *file;
  const struct rs_props *props;
  struct rs_xml_config *out;
  struct rs_diag *d;
  int depth; /* 1: <config>, 2: a protocol, 3+: inside a protocol */
  int root_line;
  bool skip; /* inside an element whose children were already reported */
  bool nomem;
  bool stopped; /* we stopped expat ourselves, after reporting why */
  bool fatal;   /* the document could not be read: nothing of it is usable */
};

static int cur_line(const struct parser *ps) { return (int)XML_GetCurrentLineNumber(ps->xp); }

static void stop(struct parser *ps) {
  ps->stopped = ps->fatal = true;
  XML_StopParser(ps->xp, XML_FALSE);
}

static void out_of_memory(struct parser *ps) {
  if (!ps->nomem) diag_error(ps->d, "%s: out of memory", ps->file);
  ps->nomem = true;
  stop(ps);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Skips a run of white space in s[..end), counting newlines into *line. */
static const char *skip_space(const char *s, const char *end, int *line) {
  for (; s < end && is_space(*s); s++)
    if (*s == '\n') (*line)++;
  return s;
}

/* expat gives the line of a start tag only, but configurations usually put one attribute per
 * line; so find each attribute in the raw tag and count the newlines before it. Anything
 * unexpected (another encoding, say) falls back to the tag's line. */
static void attr_lines(const struct parser *ps, const XML_Char **atts, size_t n, int *lines) {
  int line = cur_line(ps);
  for (size_t i = 0; i < n; i++)
    lines[i] = line;
  XML_Index off = XML_GetCurrentByteIndex(ps->xp);
  int count = XML_GetCurrentByteCount(ps->xp);
  if (off < 0 || count <= 0 || (size_t)off + (size_t)count > ps->len) return;
  const char *s = ps->text + off, *end = s + count;
  if (*s++ != '<') return;
  while (s < end && !is_space(*s) && *s != '/' && *s != '>')
    s++;
  for (size_t i = 0; i < n; i++) {
    s = skip_space(s, end, &line);
    const char *name = s;
    while (s < end && !is_space(*s) && *s != '=')
      s++;
    size_t name_len = (size_t)(s - name);
    if (name_len != strlen(atts[2 * i]) || memcmp(name, atts[2 * i], name_len)) return;
    lines[i] = line;
    while (s < end && *s != '"' && *s != '\'')
      line += *s++ == '\n';
    if (s >= end) return;
    char quote = *s++;
    while (s < end && *s != quote)
      line += *s++ == '\n';
    s++;
  }
}

static const char *local_name(const char *name) {
  const char *colon = strrchr(name, ':');
  return colon ? colon + 1 : name;
}

/* Namespace declarations and xsi:schemaLocation are what JGroups' shipped files carry. */
static bool root_attr_known(const char *name) {
  return !strcmp(name, "xmlns") || !strncmp(name, "xmlns:", 6) || !strncmp(name, "xsi:", 4);
}

static void on_root(struct parser *ps, const XML_Char *name, const XML_Char **atts) {
  ps->root_line = cur_line(ps);
  if (strcasecmp(local_name(name), "config")) {
    diag_error(ps->d, "%s:%d: the root element must be <config>, not <%s>", ps->file, ps->root_line,
               name);
    stop(ps);
    return;
  }
  for (size_t i = 0; atts[i]; i += 2)
    if (!root_attr_known(atts[i]))
      diag_warn(ps->d, "%s:%d: <config>: attribute '%s' is not used; ignored", ps->file,
                ps->root_line, atts[i]);
}

static struct rs_xml_proto *new_proto(struct parser *ps, const char *name, size_t n_attrs) {
  struct rs_xml_config *c = ps->out;
  struct rs_xml_proto *protos = realloc(c->protos, (c->n + 1) * sizeof(*protos));
  if (!protos) return NULL;
  c->protos = protos;
  struct rs_xml_proto *pr = &protos[c->n];
  memset(pr, 0, sizeof(*pr));
  pr->line = cur_line(ps);
  pr->name = strdup(name);
  pr->attrs = calloc(n_attrs ? n_attrs : 1, sizeof(*pr->attrs));
  if (!pr->name || !pr->attrs) {
    free(pr->name);
    free(pr->attrs);
    return NULL;
  }
  c->n++;
  return pr;
}

/* Substitutes one attribute value into pr->attrs[pr->n_attrs]. */
static void add_attr(struct parser *ps, struct rs_xml_proto *pr, const char *name, const char *raw,
                     int line) {
  struct rs_xml_attr *a = &pr->attrs[pr->n_attrs];
  memset(a, 0, sizeof(*a));
  a->line = line;
  enum subst_result r = substitute(raw, ps->props, &a->value, &a->unresolved);
  if (r == SUBST_UNTERMINATED) {
    diag_error(ps->d, "%s:%d: %s: attribute '%s': unterminated '${' in '%s'", ps->file, line,
               pr->name, name, raw);
    return;
  }
  if (r == SUBST_NOMEM || !(a->name = strdup(name))) {
    free(a->value);
    free(a->unresolved);
    out_of_memory(ps);
    return;
  }
  pr->n_attrs++;
}

static void on_protocol(struct parser *ps, const XML_Char *name, const XML_Char **atts) {
  if (!strcasecmp(name, "include")) { /* JGroups 5.5's splicing of another file */
    diag_error(ps->d, "%s:%d: <include> is not supported: list the protocols in this file",
               ps->file, cur_line(ps));
    ps->skip = true;
    return;
  }
  size_t n = 0;
  while (atts[2 * n])
    n++;
  struct rs_xml_proto *pr = new_proto(ps, name, n);
  int *lines = calloc(n ? n : 1, sizeof(*lines));
  if (!pr || !lines) {
    free(lines);
    out_of_memory(ps);
    return;
  }
  attr_lines(ps, atts, n, lines);
  for (size_t i = 0; i < n && !ps->nomem; i++)
    add_attr(ps, pr, atts[2 * i], atts[2 * i + 1], lines[i]);
  free(lines);
}

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **atts) {
  struct parser *ps = arg;
  ps->depth++;
  if (ps->depth == 1) {
    on_root(ps, name, atts);
  } else if (ps->depth == 2) {
    ps->skip = false;
    on_protocol(ps, name, atts);
  } else if (!ps->skip) {
    /* Reported once per protocol: the rest of its subtree says nothing new. */
    const struct rs_xml_config *c = ps->out;
    diag_error(ps->d, "%s:%d: %s: child elements are not supported (<%s>)", ps->file, cur_line(ps),
               c->n ? c->protos[c->n - 1].name : "?", name);
    ps->skip = true;
  }
}

static void XMLCALL on_end(void *arg, const XML_Char *name) {
  struct parser *ps = arg;
  (void)name;
  ps->depth--;
}

/* Entity declarations have no use in a stack definition and are how "billion laughs" inputs
 * start; refuse them outright. */
static void XMLCALL on_entity_decl(void *arg, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *system_id, const XML_Char *public_id,
                                   const XML_Char *notation) {
  struct parser *ps = arg;
  diag_error(ps->d, "%s:%d: entity declarations are not supported (<!ENTITY %s>)", ps->file,
             cur_line(ps), name);
  stop(ps);
}

void xml_config_free(struct rs_xml_config *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) {
    struct rs_xml_proto *pr = &c->protos[i];
    for (size_t j = 0; j < pr->n_attrs; j++) {
      free(pr->attrs[j].name);
      free(pr->attrs[j].value);
      free(pr->attrs[j].unresolved);
    }
    free(pr->attrs);
    free(pr->name);
  }
  free(c->protos);
  free(c->file);
  memset(c, 0, sizeof(*c));
}

static void run_expat(struct parser *ps) {
  XML_SetUserData(ps->xp, ps);
  XML_SetElementHandler(ps->xp, on_start, on_end);
  XML_SetEntityDeclHandler(ps->xp, on_entity_decl);
  ps->fatal = true; /* unless expat reads it to the end */
  if (ps->len > INT_MAX) {
    diag_error(ps->d, "%s: too large for a configuration", ps->file);
    return;
  }
  if (XML_Parse(ps->xp, ps->text, (int)ps->len, XML_TRUE) == XML_STATUS_OK) {
    ps->fatal = ps->stopped;
    return;
  }
  if (ps->stopped) return; /* already reported */
  diag_error(ps->d, "%s:%d: XML error: %s", ps->file, cur_line(ps),
             XML_ErrorString(XML_GetErrorCode(ps->xp)));
}

int xml_parse_string(const char *text, size_t len, const char *name, const struct rs_props *props,
                     struct rs_xml_config *out, struct rs_diag *d) {
  memset(out, 0, sizeof(*out));
  unsigned errors = d->errors;
  struct parser ps = {.text = text, .len = len, .props = props, .out = out, .d = d};
  out->file = strdup(name ? name : "<string>");
  ps.file = out->file ? out->file : "<string>";
  ps.xp = XML_ParserCreate(NULL);
  if (!out->file || !ps.xp) {
    diag_error(d, "%s: out of memory", ps.file);
    ps.nomem = true;
  } else {
    run_expat(&ps);
  }
  if (d->errors == errors && out->n == 0)
    diag_error(d, "%s:%d: <config> lists no protocols", ps.file, ps.root_line);
  if (ps.xp) XML_ParserFree(ps.xp);
  if (d->errors == errors) return 0;
  /* After errors inside elements (a bad ${, a child element) the rest is still a config that a
   * checker may build to find more errors; after a syntax error nothing is. */
  if (ps.fatal || ps.nomem) xml_config_free(out);
  return ps.nomem ? RS_ENOMEM : RS_ECONFIG;
}

/* Grows buf to hold more bytes, up to XML_MAX_FILE. 0, RS_ECONFIG (too large) or RS_ENOMEM. */
static int grow(char **buf, size_t *cap) {
  if (*cap >= XML_MAX_FILE) return RS_ECONFIG;
  size_t ncap = *cap ? *cap * 2 : 8192;
  char *p = realloc(*buf, ncap);
  if (!p) return RS_ENOMEM;
  *buf = p;
  *cap = ncap;
  return 0;
}

/* Reads the whole file: expat then sees one buffer, which attr_lines() relies on. */
static int read_file(const char *path, char **text, size_t *len, struct rs_diag *d) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    diag_error(d, "%s: cannot open: %s", path, strerror(errno));
    return RS_ECONFIG;
  }
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (n == cap && (rc = grow(&buf, &cap)) != 0) {
      diag_error(d, "%s: %s", path,
                 rc == RS_ENOMEM ? "out of memory" : "too large for a configuration");
      break;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) {
        diag_error(d, "%s: cannot read: %s", path, strerror(errno));
        rc = RS_ECONFIG;
      }
      break;
    }
  }
  fclose(f);
  if (rc) {
    free(buf);
    return rc;
  }
  *text = buf;
  *len = n;
  return 0;
}

int xml_parse_file(const char *path, const struct rs_props *props, struct rs_xml_config *out,
                   struct rs_diag *d) {
  memset(out, 0, sizeof(*out));
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(path, &text, &len, d);
  if (rc) return rc;
  rc = xml_parse_string(text, len, path, props, out, d);
  free(text);
  return rc;
}
