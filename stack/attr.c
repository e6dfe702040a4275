/* Attribute values: parsing, range checks, defaults and formatting, driven by the tables. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <raftstack/errors.h>

#include "stack/log_internal.h"
#include "stack/stack.h"

#define FIELD(p, a, type) ((type *)(void *)((char *)(p) + (a)->offset))
#define CFIELD(p, a, type) ((const type *)(const void *)((const char *)(p) + (a)->offset))

/* ---------------------------------------------------------------------------------------------
 * Value parsers.
 */
static const char *skip_ws(const char *s) {
  while (isspace((unsigned char)*s))
    s++;
  return s;
}

/* Whether s (after trailing white space) ends here. */
static bool at_end(const char *s) { return *skip_ws(s) == '\0'; }

/* A non-negative decimal number "12", "0.5", ".5": the integer part and up to 9 fraction
 * digits (further digits must be zeros for the caller's exactness, reported in *inexact).
 * Returns the position after it, or NULL when there is no number or it overflows. */
struct decimal {
  uint64_t whole;
  uint64_t frac;  /* fraction digits as an integer */
  uint64_t scale; /* 10^(fraction digits kept) */
  bool inexact;   /* a non-zero digit beyond the 9th */
};

static const char *parse_decimal(const char *s, struct decimal *v) {
  memset(v, 0, sizeof(*v));
  v->scale = 1;
  bool digits = false;
  for (; isdigit((unsigned char)*s); s++, digits = true) {
    unsigned d = (unsigned)(*s - '0');
    if (v->whole > (UINT64_MAX - d) / 10) return NULL;
    v->whole = v->whole * 10 + d;
  }
  if (*s == '.') {
    for (s++; isdigit((unsigned char)*s); s++, digits = true) {
      if (v->scale < 1000000000u) {
        v->frac = v->frac * 10 + (uint64_t)(*s - '0');
        v->scale *= 10;
      } else if (*s != '0') {
        v->inexact = true;
      }
    }
  }
  return digits ? s : NULL;
}

/* v * mult, exactly; RS_ETOOBIG on overflow, RS_EINVAL if `exact` and there is a remainder. */
static int scale(const struct decimal *v, uint64_t mult, bool exact, uint64_t *out) {
  unsigned __int128 whole = (unsigned __int128)v->whole * mult;
  unsigned __int128 frac = (unsigned __int128)v->frac * mult;
  if (exact && (frac % v->scale || v->inexact)) return RS_EINVAL;
  unsigned __int128 total = whole + frac / v->scale;
  if (total > UINT64_MAX) return RS_ETOOBIG;
  *out = (uint64_t)total;
  return 0;
}

struct unit {
  const char *suffix;
  uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1},
    {"k", 1000},
    {"kb", 1000},
    {"m", 1000000},
    {"mb", 1000000},
    {"g", 1000000000},
    {"gb", 1000000000},
    {"kib", 1024},
    {"mib", 1024 * 1024},
    {"gib", 1024 * 1024 * 1024},
    {NULL, 0},
};

static const struct unit duration_units[] = {
    {"", RS_MS}, /* a bare number is milliseconds, as in JGroups */
    {"ms", RS_MS},        {"s", RS_SEC},         {"m", 60 * RS_SEC},
    {"h", 3600 * RS_SEC}, {"d", 86400 * RS_SEC}, {NULL, 0},
};

/* Matches the suffix at s (case-insensitive, then only white space). */
static const struct unit *find_unit(const struct unit *units, const char *s) {
  s = skip_ws(s);
  size_t n = 0;
  while (isalpha((unsigned char)s[n]))
    n++;
  if (!at_end(s + n)) return NULL;
  for (const struct unit *u = units; u->suffix; u++)
    if (strlen(u->suffix) == n && !strncasecmp(u->suffix, s, n)) return u;
  return NULL;
}

static int parse_with_units(const char *s, const struct unit *units, bool exact, uint64_t *out) {
  struct decimal v;
  const char *rest = parse_decimal(skip_ws(s), &v);
  if (!rest) return isdigit((unsigned char)*skip_ws(s)) ? RS_ETOOBIG : RS_EINVAL;
  const struct unit *u = find_unit(units, rest);
  if (!u) return RS_EINVAL;
  return scale(&v, u->mult, exact, out);
}

int parse_size(const char *s, uint64_t *out) { return parse_with_units(s, size_units, true, out); }

int parse_duration(const char *s, rs_time *out) {
  uint64_t v;
  int rc = parse_with_units(s, duration_units, false, &v);
  if (!rc) *out = v;
  return rc;
}

int parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  s = skip_ws(s);
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1]))
    n--;
  for (size_t i = 0; i < 4; i++) {
    if (strlen(yes[i]) == n && !strncasecmp(s, yes[i], n)) return *out = true, 0;
    if (strlen(no[i]) == n && !strncasecmp(s, no[i], n)) return *out = false, 0;
  }
  return RS_EINVAL;
}

static int parse_int(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || !at_end(end)) return RS_EINVAL;
  if (errno == ERANGE) return RS_ETOOBIG;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !at_end(end) || !isfinite(v)) return RS_EINVAL;
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Formatting.
 */
/* Durations with the largest unit that divides them ("500ms", "2s", "1m"); sub-millisecond
 * values as decimal milliseconds ("1.5ms"), which parse_duration reads back. */
static int format_duration(rs_time ns, char *buf, size_t len) {
  static const struct unit units[] = {{"d", 86400 * RS_SEC}, {"h", 3600 * RS_SEC},
                                      {"m", 60 * RS_SEC},    {"s", RS_SEC},
                                      {"ms", RS_MS},         {NULL, 0}};
  if (ns == 0) return snprintf(buf, len, "0ms");
  for (const struct unit *u = units; u->suffix; u++)
    if (ns % u->mult == 0)
      return snprintf(buf, len, "%llu%s", (unsigned long long)(ns / u->mult), u->suffix);
  char frac[8];
  snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(ns % RS_MS));
  for (size_t n = strlen(frac); n && frac[n - 1] == '0'; n--)
    frac[n - 1] = '\0';
  return snprintf(buf, len, "%llu.%sms", (unsigned long long)(ns / RS_MS), frac);
}

/* Doubles without exponent noise for ordinary values ("0.1", "1000000000"). */
static int format_double(double v, char *buf, size_t len) { return snprintf(buf, len, "%.15g", v); }

/* Appends to a bounded buffer, counting the full length like snprintf. */
struct out {
  char *buf;
  size_t len, pos;
};

static void out_add(struct out *o, const char *s) {
  size_t n = strlen(s);
  if (o->len && o->pos < o->len - 1) {
    size_t room = o->len - 1 - o->pos;
    memcpy(o->buf + o->pos, s, n < room ? n : room);
    o->buf[o->pos + (n < room ? n : room)] = '\0';
  }
  o->pos += n;
}

static int format_list(const struct rs_strlist *l, char *buf, size_t len) {
  struct out o = {buf, len, 0};
  if (len) buf[0] = '\0';
  for (size_t i = 0; i < l->n; i++) {
    if (i) out_add(&o, ",");
    out_add(&o, l->v[i]);
  }
  return (int)o.pos;
}

int attr_format(const struct rs_attr *a, const struct rs_protocol *p, char *buf, size_t len) {
  switch (a->type) {
  case RS_ATTR_BOOL: return snprintf(buf, len, "%s", *CFIELD(p, a, bool) ? "true" : "false");
  case RS_ATTR_INT: return snprintf(buf, len, "%lld", (long long)*CFIELD(p, a, int64_t));
  case RS_ATTR_SIZE: return snprintf(buf, len, "%llu", (unsigned long long)*CFIELD(p, a, uint64_t));
  case RS_ATTR_DURATION: return format_duration(*CFIELD(p, a, rs_time), buf, len);
  case RS_ATTR_DOUBLE: return format_double(*CFIELD(p, a, double), buf, len);
  case RS_ATTR_STRING: {
    const char *s = *CFIELD(p, a, char *);
    return snprintf(buf, len, "%s", s ? s : "");
  }
  case RS_ATTR_LIST: return format_list(CFIELD(p, a, struct rs_strlist), buf, len);
  case RS_ATTR_ENUM: {
    int i = *CFIELD(p, a, int), n = 0;
    while (a->choices && a->choices[n])
      n++;
    return snprintf(buf, len, "%s", i >= 0 && i < n ? a->choices[i] : "");
  }
  case RS_ATTR_ALIAS:
  case RS_ATTR_IGNORED: break;
  }
  return snprintf(buf, len, "%s", "");
}

const char *attr_type_name(enum rs_attr_type t) {
  switch (t) {
  case RS_ATTR_BOOL: return "bool";
  case RS_ATTR_INT: return "int";
  case RS_ATTR_SIZE: return "size";
  case RS_ATTR_DURATION: return "duration";
  case RS_ATTR_DOUBLE: return "double";
  case RS_ATTR_STRING: return "string";
  case RS_ATTR_LIST: return "list";
  case RS_ATTR_ENUM: return "enum";
  case RS_ATTR_ALIAS: return "alias";
  case RS_ATTR_IGNORED: return "ignored";
  }
  return "?";
}

/* ---------------------------------------------------------------------------------------------
 * Setting values.
 */
static bool has_range(const struct rs_attr *a) { return a->min != 0 || a->max != 0; }

/* Writes the message and returns RS_EINVAL, for one-line error returns. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return RS_EINVAL;
}

/* Formats a range bound or a value of a's type for messages. */
static void format_bound(const struct rs_attr *a, double v, char *buf, size_t len) {
  if (a->type == RS_ATTR_DURATION && v >= 0 && v * (double)RS_MS < 1.8e19)
    format_duration((rs_time)(v * (double)RS_MS), buf, len);
  else if (a->type == RS_ATTR_DURATION) /* a table's odd bound must not overflow the cast */
    snprintf(buf, len, "%.0fms", v);
  else if (a->type == RS_ATTR_DOUBLE)
    format_double(v, buf, len);
  else
    snprintf(buf, len, "%.0f", v);
}

static int out_of_range(const struct rs_attr *a, const char *value, char *err, size_t errlen) {
  char lo[32], hi[32];
  format_bound(a, a->min, lo, sizeof(lo));
  format_bound(a, a->max, hi, sizeof(hi));
  return fail(err, errlen, "value %s out of range [%s, %s]", value, lo, hi);
}

static int check_range(const struct rs_attr *a, double v, const char *shown, char *err,
                       size_t errlen) {
  if (has_range(a) && (v < a->min || v > a->max)) return out_of_range(a, shown, err, errlen);
  return 0;
}

static int set_int(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                   size_t errlen) {
  int64_t v;
  int rc = parse_int(value, &v);
  if (rc == RS_ETOOBIG) return fail(err, errlen, "'%s' is too large", value);
  if (rc) return fail(err, errlen, "'%s' is not an integer", value);
  char shown[32];
  snprintf(shown, sizeof(shown), "%lld", (long long)v);
  if (check_range(a, (double)v, shown, err, errlen)) return RS_EINVAL;
  *FIELD(p, a, int64_t) = v;
  return 0;
}

static int set_size(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                    size_t errlen) {
  uint64_t v;
  int rc = parse_size(value, &v);
  if (rc == RS_ETOOBIG) return fail(err, errlen, "size '%s' is too large", value);
  if (rc)
    return fail(err, errlen,
                "'%s' is not a size in bytes (a number, or with a suffix: 64K, 5M, 2g, 64KiB, "
                "1MiB)",
                value);
  char shown[32];
  snprintf(shown, sizeof(shown), "%llu", (unsigned long long)v);
  if (check_range(a, (double)v, shown, err, errlen)) return RS_EINVAL;
  *FIELD(p, a, uint64_t) = v;
  return 0;
}

static int set_duration(const struct rs_attr *a, struct rs_protocol *p, const char *value,
                        char *err, size_t errlen) {
  rs_time v;
  int rc = parse_duration(value, &v);
  if (rc == RS_ETOOBIG) return fail(err, errlen, "duration '%s' is too large", value);
  if (rc)
    return fail(err, errlen,
                "'%s' is not a duration (a number of ms, or with a unit: 500ms, 2s, 1m, 1h, 1d)",
                value);
  char shown[32];
  format_duration(v, shown, sizeof(shown));
  if (check_range(a, (double)v / (double)RS_MS, shown, err, errlen)) return RS_EINVAL;
  *FIELD(p, a, rs_time) = v;
  return 0;
}

static int set_double(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                      size_t errlen) {
  double v;
  if (parse_double(value, &v)) return fail(err, errlen, "'%s' is not a number", value);
  char shown[32];
  format_double(v, shown, sizeof(shown));
  if (check_range(a, v, shown, err, errlen)) return RS_EINVAL;
  *FIELD(p, a, double) = v;
  return 0;
}

static int set_bool(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                    size_t errlen) {
  bool v;
  if (parse_bool(value, &v))
    return fail(err, errlen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", value);
  *FIELD(p, a, bool) = v;
  return 0;
}

static int set_enum(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                    size_t errlen) {
  const char *v = skip_ws(value);
  size_t n = strlen(v);
  while (n && isspace((unsigned char)v[n - 1]))
    n--;
  for (int i = 0; a->choices && a->choices[i]; i++) {
    if (strlen(a->choices[i]) == n && !strncasecmp(a->choices[i], v, n)) {
      *FIELD(p, a, int) = i;
      return 0;
    }
  }
  struct out o = {err, errlen, 0};
  snprintf(err, errlen, "'%s' is not one of: ", value);
  o.pos = strlen(err);
  for (int i = 0; a->choices && a->choices[i]; i++) {
    if (i) out_add(&o, ", ");
    out_add(&o, a->choices[i]);
  }
  return RS_EINVAL;
}

static int set_string(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                      size_t errlen) {
  char *copy = strdup(value);
  if (!copy) {
    fail(err, errlen, "out of memory");
    return RS_ENOMEM;
  }
  char **field = FIELD(p, a, char *);
  free(*field);
  *field = copy;
  return 0;
}

static void strlist_free(struct rs_strlist *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* Splits on ',', trims each item and drops empty ones ("a, b,,c " → a b c). */
static int split_list(const char *value, struct rs_strlist *out) {
  size_t cap = 1;
  for (const char *s = value; *s; s++)
    cap += *s == ',';
  out->n = 0;
  out->v = calloc(cap, sizeof(*out->v));
  if (!out->v) return RS_ENOMEM;
  for (const char *s = value;;) {
    const char *comma = strchr(s, ',');
    const char *end = comma ? comma : s + strlen(s);
    const char *b = skip_ws(s);
    while (end > b && isspace((unsigned char)end[-1]))
      end--;
    if (end > b && !(out->v[out->n++] = strndup(b, (size_t)(end - b)))) {
      strlist_free(out);
      return RS_ENOMEM;
    }
    if (!comma) break;
    s = comma + 1;
  }
  return 0;
}

static int set_list(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
                    size_t errlen) {
  struct rs_strlist l;
  if (split_list(value, &l)) {
    fail(err, errlen, "out of memory");
    return RS_ENOMEM;
  }
  struct rs_strlist *field = FIELD(p, a, struct rs_strlist);
  strlist_free(field);
  *field = l;
  return 0;
}

int attr_set(const struct rs_attr *a, struct rs_protocol *p, const char *value, char *err,
             size_t errlen) {
  switch (a->type) {
  case RS_ATTR_BOOL: return set_bool(a, p, value, err, errlen);
  case RS_ATTR_INT: return set_int(a, p, value, err, errlen);
  case RS_ATTR_SIZE: return set_size(a, p, value, err, errlen);
  case RS_ATTR_DURATION: return set_duration(a, p, value, err, errlen);
  case RS_ATTR_DOUBLE: return set_double(a, p, value, err, errlen);
  case RS_ATTR_STRING: return set_string(a, p, value, err, errlen);
  case RS_ATTR_LIST: return set_list(a, p, value, err, errlen);
  case RS_ATTR_ENUM: return set_enum(a, p, value, err, errlen);
  case RS_ATTR_IGNORED: return 0;
  case RS_ATTR_ALIAS: break; /* callers resolve aliases with attr_find */
  }
  snprintf(err, errlen, "'%s' is an alias; set '%s'", a->name, a->def ? a->def : "?");
  return RS_EINVAL;
}

/* ---------------------------------------------------------------------------------------------
 * Defaults and cleanup.
 */
static bool has_value(const struct rs_attr *a) {
  return a->type != RS_ATTR_ALIAS && a->type != RS_ATTR_IGNORED;
}

/* A NULL default is the zero of the type. Strings and lists are freed first, so applying the
 * defaults twice does not leak (the instance starts zeroed, from calloc). */
static void set_zero(const struct rs_attr *a, struct rs_protocol *p) {
  switch (a->type) {
  case RS_ATTR_BOOL: *FIELD(p, a, bool) = false; break;
  case RS_ATTR_INT: *FIELD(p, a, int64_t) = 0; break;
  case RS_ATTR_SIZE: *FIELD(p, a, uint64_t) = 0; break;
  case RS_ATTR_DURATION: *FIELD(p, a, rs_time) = 0; break;
  case RS_ATTR_DOUBLE: *FIELD(p, a, double) = 0; break;
  case RS_ATTR_STRING:
    free(*FIELD(p, a, char *));
    *FIELD(p, a, char *) = NULL;
    break;
  case RS_ATTR_LIST: strlist_free(FIELD(p, a, struct rs_strlist)); break;
  case RS_ATTR_ENUM: *FIELD(p, a, int) = 0; break;
  case RS_ATTR_ALIAS:
  case RS_ATTR_IGNORED: break;
  }
}

void attr_set_defaults(const struct rs_protocol_ops *ops, struct rs_protocol *p) {
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++) {
    if (!has_value(a)) continue;
    set_zero(a, p);
    if (!a->def) continue;
    char err[256];
    if (attr_set(a, p, a->def, err, sizeof(err))) {
      /* A table bug, caught by any test that builds the protocol. */
      RS_LOG(ERROR, ops->name, "bad default for '%s': %s", a->name, err);
      assert(!"attribute default does not parse");
    }
  }
}

void attr_free_values(const struct rs_protocol_ops *ops, struct rs_protocol *p) {
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++)
    if (a->type == RS_ATTR_STRING || a->type == RS_ATTR_LIST) set_zero(a, p);
}

bool attr_is_set(const struct rs_attr *a, const struct rs_protocol *p) {
  if (!(a->flags & RS_ATTR_REQUIRED)) return true;
  if (a->type == RS_ATTR_STRING) {
    const char *s = *CFIELD(p, a, char *);
    return s && *s;
  }
  if (a->type == RS_ATTR_LIST) return CFIELD(p, a, struct rs_strlist)->n > 0;
  return true; /* a number always has a value: its default */
}

/* ---------------------------------------------------------------------------------------------
 * Lookup and suggestions.
 */
static const struct rs_attr *find_exact(const struct rs_protocol_ops *ops, const char *name,
                                        bool aliases) {
  for (const struct rs_attr *a = ops->attrs; a && a->name; a++)
    if (!(a->flags & RS_ATTR_PREFIX) && (aliases || a->type != RS_ATTR_ALIAS) &&
        !strcmp(a->name, name))
      return a;
  return NULL;
}

const struct rs_attr *attr_find(const struct rs_protocol_ops *ops, const char *name) {
  const struct rs_attr *a = find_exact(ops, name, true);
  if (a && a->type == RS_ATTR_ALIAS) return a->def ? find_exact(ops, a->def, false) : NULL;
  if (a) return a;
  for (a = ops->attrs; a && a->name; a++)
    if ((a->flags & RS_ATTR_PREFIX) && !strncmp(name, a->name, strlen(a->name))) return a;
  return NULL;
}

/* Levenshtein distance, case-insensitive, with two rows. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  size_t *prev = calloc(lb + 1, sizeof(*prev)), *cur = calloc(lb + 1, sizeof(*cur));
  size_t d = SIZE_MAX;
  if (!prev || !cur) goto out;
  for (size_t j = 0; j <= lb; j++)
    prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t sub =
          prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    size_t *t = prev;
    prev = cur;
    cur = t;
  }
  d = prev[lb];
out:
  free(prev);
  free(cur);
  return d;
}

const char *suggest_closest(const char *name, const char *const *candidates, size_t n) {
  size_t len = strlen(name);
  size_t limit = len / 3 > 2 ? len / 3 : 2; /* a typo, not a different word */
  const char *best = NULL;
  size_t best_d = SIZE_MAX;
  for (size_t i = 0; i < n; i++) {
    if (!candidates[i]) continue;
    size_t d = edit_distance(name, candidates[i]);
    if (d < best_d) {
      best_d = d;
      best = candidates[i];
    }
  }
  return best_d <= limit ? best : NULL;
}
