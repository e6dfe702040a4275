/* `raftstack protocols [NAME] [--markdown]`: the protocol reference, read from the tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/stack.h"
#include "tools/tools.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack protocols [NAME] [--markdown]\n"
          "\n"
          "Without NAME lists every protocol with a one-line description; with NAME prints its\n"
          "attributes (type, default, range, description) and the JGroups attributes it accepts\n"
          "and ignores. --markdown prints the reference as Markdown (docs/protocols.md).\n");
}

/* ---------------------------------------------------------------------------------------------
 * Cells shared by the text and Markdown forms.
 */
static const char *qualified(const struct rs_protocol_ops *ops, char *buf, size_t len) {
  if (!ops->package) return ops->name;
  snprintf(buf, len, "%s.%s", ops->package, ops->name);
  return buf;
}

/* A duration bound in ms, with the unit that reads best ("1s", "500ms"). */
static void format_ms(double ms, char *buf, size_t len) {
  long long v = (long long)ms;
  if (v && v % 60000 == 0)
    snprintf(buf, len, "%lldm", v / 60000);
  else if (v && v % 1000 == 0)
    snprintf(buf, len, "%llds", v / 1000);
  else
    snprintf(buf, len, "%lldms", v);
}

/* Sizes that are whole binary units read better as such ("64KiB", "1GiB"). */
static void format_bytes(double v, char *buf, size_t len) {
  static const char *const units[] = {"GiB", "MiB", "KiB"};
  unsigned long long b = (unsigned long long)v;
  for (int i = 0; i < 3; i++) {
    unsigned long long u = 1ull << (10 * (3 - i));
    if (b && b % u == 0) {
      snprintf(buf, len, "%llu%s", b / u, units[i]);
      return;
    }
  }
  snprintf(buf, len, "%llu", b);
}

static void format_bound(const struct rs_attr *a, double v, char *buf, size_t len) {
  if (a->type == RS_ATTR_DURATION)
    format_ms(v, buf, len);
  else if (a->type == RS_ATTR_SIZE)
    format_bytes(v, buf, len);
  else if (a->type == RS_ATTR_DOUBLE)
    snprintf(buf, len, "%.15g", v);
  else
    snprintf(buf, len, "%.0f", v);
}

/* "a, b, c": an enum's choices. */
static void choices_cell(const struct rs_attr *a, char *buf, size_t len) {
  buf[0] = '\0';
  for (const char *const *c = a->choices; c && *c; c++) {
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s%s", n ? ", " : "", *c);
  }
}

/* The range of a number; an enum's choices go with its description instead. */
static void range_cell(const struct rs_attr *a, char *buf, size_t len) {
  buf[0] = '\0';
  if (a->type != RS_ATTR_ENUM && (a->min != 0 || a->max != 0)) {
    char lo[32], hi[32];
    format_bound(a, a->min, lo, sizeof(lo));
    format_bound(a, a->max, hi, sizeof(hi));
    snprintf(buf, len, "[%s, %s]", lo, hi);
  }
}

/* The description, with an enum's choices appended. */
static void desc_cell(const struct rs_attr *a, char *buf, size_t len) {
  char choices[256];
  choices_cell(a, choices, sizeof(choices));
  snprintf(buf, len, "%s%s%s%s", a->desc ? a->desc : "", choices[0] ? " (one of: " : "", choices,
           choices[0] ? ")" : "");
}

static void type_cell(const struct rs_attr *a, char *buf, size_t len) {
  snprintf(buf, len, "%s%s", attr_type_name(a->type),
           (a->flags & RS_ATTR_REQUIRED) ? " (required)" : "");
}

/* The name as written in XML; a prefix row stands for all its sub-attributes. */
static void name_cell(const struct rs_attr *a, char *buf, size_t len) {
  snprintf(buf, len, "%s%s", a->name, (a->flags & RS_ATTR_PREFIX) ? "*" : "");
}

static bool is_value(const struct rs_attr *a) { return a->type != RS_ATTR_IGNORED; }

/* "NAKACK2, PING or TCPPING" from {"NAKACK2", "PING|TCPPING"}. */
static void requires_cell(const struct rs_protocol_ops *ops, char *buf, size_t len) {
  buf[0] = '\0';
  for (const char *const *r = ops->requires_below; r && *r; r++) {
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s", n ? ", " : "");
    for (const char *s = *r; *s;) {
      size_t k = strcspn(s, "|");
      n = strlen(buf);
      snprintf(buf + n, len - n, "%.*s%s", (int)k, s, s[k] == '|' ? " or " : "");
      s += k + (s[k] == '|');
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Plain text.
 */
static void list_protocols(void) {
  char q[128];
  printf(
      "Protocols (XML element names; a stack lists them bottom first, the transport first):\n\n");
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    const struct rs_protocol_ops *ops = rs_protocol_registry[i];
    printf("  %-18s %s\n", qualified(ops, q, sizeof(q)), ops->description ? ops->description : "");
  }
  printf("\n`raftstack protocols NAME` prints a protocol's attributes.\n");
}

/* Column widths of the attribute table, from the rows it will print. */
struct widths {
  int name, type, def, range;
};

#define TEXT_WIDTH 100

static int max_int(int a, int b) { return a > b ? a : b; }

static void measure(const struct rs_attr *a, struct widths *w) {
  char name[128], type[64], range[256];
  name_cell(a, name, sizeof(name));
  type_cell(a, type, sizeof(type));
  range_cell(a, range, sizeof(range));
  w->name = max_int(w->name, (int)strlen(name));
  if (a->type == RS_ATTR_ALIAS) return;
  w->type = max_int(w->type, (int)strlen(type));
  w->def = max_int(w->def, a->def ? (int)strlen(a->def) : 1);
  w->range = max_int(w->range, range[0] ? (int)strlen(range) : 1);
}

/* Prints text from column `col` on, wrapped at TEXT_WIDTH with continuation lines indented. */
static void print_wrapped(const char *text, int col) {
  int room = max_int(TEXT_WIDTH - col, 30);
  while (text && *text) {
    int n = (int)strlen(text);
    if (n > room) {
      n = room;
      while (n > 0 && text[n] != ' ')
        n--;
      if (n == 0) n = room;
    }
    printf("%.*s\n", n, text);
    text += n;
    while (*text == ' ')
      text++;
    if (*text) printf("%*s", col, "");
  }
}

static void print_attr_row(const struct rs_attr *a, const struct widths *w) {
  char name[128], type[64], range[256];
  name_cell(a, name, sizeof(name));
  if (a->type == RS_ATTR_ALIAS) {
    printf("  %-*s alias of %s\n", w->name, name, a->def ? a->def : "?");
    return;
  }
  type_cell(a, type, sizeof(type));
  range_cell(a, range, sizeof(range));
  printf("  %-*s  %-*s  %-*s  %-*s  ", w->name, name, w->type, type, w->def, a->def ? a->def : "-",
         w->range, range[0] ? range : "-");
  char desc[1024];
  desc_cell(a, desc, sizeof(desc));
  if (!desc[0]) printf("\n");
  print_wrapped(desc, 2 + w->name + 2 + w->type + 2 + w->def + 2 + w->range + 2);
}

static void print_ignored(const struct rs_attr *attrs) {
  for (const struct rs_attr *a = attrs; a && a->name; a++) {
    if (is_value(a)) continue;
    char name[128];
    name_cell(a, name, sizeof(name));
    printf("    %s: %s\n", name, a->desc ? a->desc : "not used");
  }
}

static void print_protocol(const struct rs_protocol_ops *ops) {
  char q[128], req[512];
  printf("%s: %s\n", qualified(ops, q, sizeof(q)), ops->description ? ops->description : "");
  if (ops->flags & RS_PROTO_TRANSPORT) printf("  a transport: the first (bottom) protocol\n");
  if (ops->aliases && ops->aliases[0]) {
    printf("  also accepted as:");
    for (const char *const *a = ops->aliases; *a; a++)
      printf(" %s", *a);
    printf("\n");
  }
  requires_cell(ops, req, sizeof(req));
  if (req[0]) printf("  needs below it: %s\n", req);
  struct widths w = {(int)strlen("attribute"), (int)strlen("type"), (int)strlen("default"),
                     (int)strlen("range")};
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++)
    if (is_value(a)) measure(a, &w);
  measure(&stack_common_attrs[0], &w);
  printf("\n  %-*s  %-*s  %-*s  %-*s  %s\n", w.name, "attribute", w.type, "type", w.def, "default",
         w.range, "range", "description");
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++)
    if (is_value(a)) print_attr_row(a, &w);
  print_attr_row(&stack_common_attrs[0], &w);
  printf("\n  JGroups attributes accepted and ignored (one warning each):\n");
  print_ignored(ops->attrs);
  print_ignored(stack_common_attrs);
}

/* ---------------------------------------------------------------------------------------------
 * Markdown (docs/protocols.md).
 */
/* A table cell: '|' would end the cell and a newline the row. */
static void md_cell(const char *s) {
  for (; s && *s; s++) {
    if (*s == '|')
      fputs("\\|", stdout);
    else if (*s == '\n')
      fputc(' ', stdout);
    else
      fputc(*s, stdout);
  }
}

static void md_code_cell(const char *s) {
  if (!s || !*s) return;
  fputc('`', stdout);
  md_cell(s);
  fputc('`', stdout);
}

static void md_header(void) {
  printf(
      "# Protocol reference\n"
      "\n"
      "Generated from the attribute tables by `raftstack protocols --markdown` (`make docs`);\n"
      "do not edit by hand. `raftstack protocols NAME` prints the same on a terminal.\n"
      "\n"
      "A stack is an XML file in JGroups' syntax: a `<config>` root whose children are the\n"
      "protocols, **bottom (transport) first**. An element is named after its protocol, with or\n"
      "without the package (`pbcast.NAKACK2` or `NAKACK2`; `org.jgroups.protocols.UDP` works\n"
      "too), and its attributes configure it. `raftstack config check FILE` validates a file and\n"
      "prints every attribute's effective value.\n"
      "\n"
      "## Values\n"
      "\n"
      "| Type | Syntax |\n"
      "|---|---|\n"
      "| size | bytes: `65536`; decimal suffixes as in JGroups `64K` = 64000, `5M`, `2g` "
      "(case-insensitive, also `KB`, `MB`, `GB`); binary `64KiB` = 65536, `1MiB`, `1GiB`; "
      "decimals if the result is whole: `1.5M` |\n"
      "| duration | `500ms`, `2s`, `1m` (minutes), `1h`, `1d`; decimals `0.5s`; a bare number is "
      "milliseconds |\n"
      "| bool | `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` |\n"
      "| int, double | plain numbers |\n"
      "| list | comma-separated; items are trimmed and empty items dropped |\n"
      "| enum | one of the listed choices, case-insensitive |\n"
      "\n"
      "Ranges are inclusive. Every value may use `${...}`: `${name}`, `${name:default}` and\n"
      "`${a,b,env.C:default}` try the names in order; a plain name is looked up in the\n"
      "properties (`-Dname=value` on the command line, or the API) and then in the environment,\n"
      "`env.C` only in the environment; only the first `:` starts the default. When an\n"
      "expression resolves to nothing, the attribute is left out and keeps its default, as in\n"
      "JGroups; a *required* attribute still unset when the stack starts is an error naming the\n"
      "property to pass.\n"
      "\n"
      "Attributes that JGroups has but that mean nothing here (thread pools, `stats`, `diag.*`,\n"
      "...) are accepted with one warning line each, so a configuration written for JGroups\n"
      "loads. Names ending in `*` stand for every attribute with that prefix.\n");
}

static void md_attr_row(const struct rs_attr *a) {
  char name[128], type[64], range[256];
  name_cell(a, name, sizeof(name));
  printf("| ");
  md_code_cell(name);
  if (a->type == RS_ATTR_ALIAS) {
    printf(" | alias | | | another name for `%s` |\n", a->def ? a->def : "?");
    return;
  }
  type_cell(a, type, sizeof(type));
  range_cell(a, range, sizeof(range));
  printf(" | %s | ", type);
  md_code_cell(a->def);
  char desc[1024];
  desc_cell(a, desc, sizeof(desc));
  printf(" | ");
  md_cell(range);
  printf(" | ");
  md_cell(desc);
  printf(" |\n");
}

static void md_ignored(const struct rs_attr *attrs) {
  bool any = false;
  for (const struct rs_attr *a = attrs; a && a->name; a++) {
    if (is_value(a)) continue;
    char name[128];
    name_cell(a, name, sizeof(name));
    printf("%s`%s` (%s)", any ? ", " : "Accepted and ignored (one warning each): ", name,
           a->desc ? a->desc : "not used");
    any = true;
  }
  if (any) printf(".\n\n");
}

static void md_table_head(void) {
  printf("| Attribute | Type | Default | Range | Description |\n|---|---|---|---|---|\n");
}

static void md_protocol(const struct rs_protocol_ops *ops) {
  char q[128], req[512];
  printf("\n## %s\n\n", qualified(ops, q, sizeof(q)));
  if (ops->description) printf("%s.\n\n", ops->description);
  if (ops->flags & RS_PROTO_TRANSPORT) printf("A transport: the first (bottom) protocol.\n\n");
  if (ops->aliases && ops->aliases[0]) {
    printf("Also accepted as:");
    for (const char *const *a = ops->aliases; *a; a++)
      printf(" `%s`", *a);
    printf(".\n\n");
  }
  requires_cell(ops, req, sizeof(req));
  if (req[0]) printf("Needs below it: %s.\n\n", req);
  bool any = false;
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++) {
    if (!is_value(a)) continue;
    if (!any) md_table_head();
    md_attr_row(a);
    any = true;
  }
  if (any)
    printf("\n");
  else
    printf("No attributes of its own.\n\n");
  md_ignored(ops->attrs);
}

static void print_markdown(void) {
  md_header();
  printf("\n## Attributes of every protocol\n\n");
  md_table_head();
  for (const struct rs_attr *a = stack_common_attrs; a->name; a++)
    if (is_value(a)) md_attr_row(a);
  printf("\n");
  md_ignored(stack_common_attrs);
  printf("## Protocols\n\n| Protocol | Description |\n|---|---|\n");
  char q[128];
  for (size_t i = 0; i < rs_protocol_registry_len; i++) {
    const struct rs_protocol_ops *ops = rs_protocol_registry[i];
    const char *name = qualified(ops, q, sizeof(q));
    printf("| [%s](#", name);
    for (const char *c = name; *c; c++) /* GitHub's anchor: lower case, dots dropped */
      if (*c != '.') putchar(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    printf(") | ");
    md_cell(ops->description);
    printf(" |\n");
  }
  for (size_t i = 0; i < rs_protocol_registry_len; i++)
    md_protocol(rs_protocol_registry[i]);
}

/* ---------------------------------------------------------------------------------------------
 * The command.
 */
static int unknown(const char *name) {
  const char **names = calloc(rs_protocol_registry_len + 1, sizeof(*names));
  for (size_t i = 0; names && i < rs_protocol_registry_len; i++)
    names[i] = rs_protocol_registry[i]->name;
  const char *dot = strrchr(name, '.');
  const char *s =
      names ? suggest_closest(dot ? dot + 1 : name, names, rs_protocol_registry_len) : NULL;
  if (s)
    fprintf(stderr, "raftstack protocols: unknown protocol '%s' (did you mean '%s'?)\n", name, s);
  else
    fprintf(stderr,
            "raftstack protocols: unknown protocol '%s' (`raftstack protocols` lists them)\n",
            name);
  free(names);
  return TOOL_USAGE;
}

int cmd_protocols(int argc, char **argv) {
  bool markdown = false;
  const char *name = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--markdown")) {
      markdown = true;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return TOOL_OK;
    } else if (argv[i][0] != '-' && !name) {
      name = argv[i];
    } else {
      fprintf(stderr, "raftstack protocols: unexpected argument '%s'\n", argv[i]);
      usage(stderr);
      return TOOL_USAGE;
    }
  }
  const struct rs_protocol_ops *ops = name ? registry_find(name) : NULL;
  if (name && !ops) return unknown(name);
  if (markdown && ops)
    md_protocol(ops);
  else if (markdown)
    print_markdown();
  else if (ops)
    print_protocol(ops);
  else
    list_protocols();
  return fflush(stdout) ? TOOL_FAIL : TOOL_OK;
}
