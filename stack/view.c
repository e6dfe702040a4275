/* Views and digests: construction, refcounting, formatting and wire form. */
#include "stack/view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rs_view_data *view_new(const struct rs_addr *creator, uint64_t id, size_t n,
                              const struct rs_addr *members, const char *const *names) {
  struct rs_view_data *v = calloc(1, sizeof(*v));
  if (!v) return NULL;
  atomic_init(&v->refs, 1);
  v->creator = *creator;
  v->id = id;
  v->n = n;
  v->members = malloc((n ? n : 1) * sizeof(*members));
  v->names = calloc(n ? n : 1, sizeof(char *));
  if (!v->members || !v->names) goto err;
  if (n) memcpy(v->members, members, n * sizeof(*members));
  for (size_t i = 0; i < n; i++)
    if (!(v->names[i] = strdup(names && names[i] ? names[i] : ""))) goto err;
  return v;
err:
  v->refs = 1;
  view_unref(v);
  return NULL;
}

struct rs_view_data *view_ref(struct rs_view_data *v) {
  atomic_fetch_add(&v->refs, 1);
  return v;
}

void view_unref(struct rs_view_data *v) {
  if (!v || atomic_fetch_sub(&v->refs, 1) != 1) return;
  for (size_t i = 0; v->names && i < v->n; i++) free(v->names[i]);
  free(v->names);
  free(v->members);
  free(v);
}

long view_index(const struct rs_view_data *v, const struct rs_addr *addr) {
  for (size_t i = 0; v && i < v->n; i++)
    if (rs_addr_eq(&v->members[i], addr)) return (long)i;
  return -1;
}

int view_id_cmp(const struct rs_view_data *a, const struct rs_view_data *b) {
  if (a->id != b->id) return a->id < b->id ? -1 : 1;
  return rs_addr_cmp(&a->creator, &b->creator);
}

static const char *name_or_addr(const struct rs_view_data *v, size_t i, char *tmp) {
  return v->names[i][0] ? v->names[i] : rs_addr_format(&v->members[i], tmp);
}

char *view_format(const struct rs_view_data *v, char *buf, size_t len) {
  char tmp[RS_ADDR_STRLEN];
  long creator = view_index(v, &v->creator);
  int off = snprintf(buf, len, "[%s|%llu] (%zu) [",
                     creator >= 0 ? name_or_addr(v, (size_t)creator, tmp) : rs_addr_format(&v->creator, tmp),
                     (unsigned long long)v->id, v->n);
  for (size_t i = 0; i < v->n && off > 0 && (size_t)off < len; i++)
    off += snprintf(buf + off, len - (size_t)off, "%s%s", i ? ", " : "", name_or_addr(v, i, tmp));
  if (off > 0 && (size_t)off < len) snprintf(buf + off, len - (size_t)off, "]");
  return buf;
}

void put_view(struct rs_writer *w, const struct rs_view_data *v) {
  put_addr(w, &v->creator);
  put_varint(w, v->id);
  put_u8(w, v->merge ? 1 : 0);
  put_varint(w, v->n);
  for (size_t i = 0; i < v->n; i++) {
    put_addr(w, &v->members[i]);
    put_str(w, v->names[i]);
  }
}

size_t view_wire_size(const struct rs_view_data *v) {
  size_t n = 16 + varint_size(v->id) + 1 + varint_size(v->n);
  for (size_t i = 0; i < v->n; i++) {
    size_t l = strlen(v->names[i]);
    n += 16 + varint_size(l) + l;
  }
  return n;
}

struct rs_view_data *get_view(struct rs_reader *r) {
  struct rs_addr creator = get_addr(r);
  uint64_t id = get_varint(r);
  uint8_t flags = get_u8(r);
  size_t n = get_len(r, RS_VIEW_MAX_MEMBERS);
  if (!r->err && (flags & ~1u)) reader_fail(r, RS_EMALFORMED);
  /* Every member takes at least 17 bytes: a count the input cannot hold is refused before
   * anything is allocated. */
  if (!r->err && n > reader_remaining(r) / 17) reader_fail(r, RS_EMALFORMED);
  if (r->err) return NULL;
  struct rs_addr *members = malloc((n ? n : 1) * sizeof(*members));
  char (*names)[RS_NAME_MAX + 1] = malloc((n ? n : 1) * sizeof(*names));
  const char **ptrs = malloc((n ? n : 1) * sizeof(*ptrs));
  struct rs_view_data *v = NULL;
  if (!members || !names || !ptrs) {
    reader_fail(r, RS_ENOMEM);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    members[i] = get_addr(r);
    get_str(r, names[i], sizeof(names[i]), RS_NAME_MAX);
    ptrs[i] = names[i];
  }
  if (r->err) goto out;
  v = view_new(&creator, id, n, members, ptrs);
  if (!v) reader_fail(r, RS_ENOMEM);
  else v->merge = flags & 1u;
out:
  free(members);
  free(names);
  free(ptrs);
  return v;
}

void digest_free(struct rs_digest *d) {
  free(d->e);
  d->e = NULL;
  d->n = 0;
}

void put_digest(struct rs_writer *w, const struct rs_digest *d) {
  put_varint(w, d->n);
  for (size_t i = 0; i < d->n; i++) {
    put_addr(w, &d->e[i].addr);
    put_varint(w, d->e[i].delivered);
    put_varint(w, d->e[i].received - d->e[i].delivered);
  }
}

size_t digest_wire_size(const struct rs_digest *d) {
  size_t n = varint_size(d->n);
  for (size_t i = 0; i < d->n; i++)
    n += 16 + varint_size(d->e[i].delivered) + varint_size(d->e[i].received - d->e[i].delivered);
  return n;
}

void get_digest(struct rs_reader *r, struct rs_digest *d) {
  d->n = 0;
  d->e = NULL;
  size_t n = get_len(r, RS_VIEW_MAX_MEMBERS);
  if (!r->err && n > reader_remaining(r) / 18) reader_fail(r, RS_EMALFORMED);
  if (r->err || n == 0) return;
  d->e = malloc(n * sizeof(*d->e));
  if (!d->e) {
    reader_fail(r, RS_ENOMEM);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    d->e[i].addr = get_addr(r);
    d->e[i].delivered = get_varint(r);
    uint64_t gap = get_varint(r);
    if (!r->err && gap > UINT64_MAX - d->e[i].delivered) reader_fail(r, RS_EMALFORMED);
    d->e[i].received = d->e[i].delivered + gap;
  }
  if (r->err) {
    free(d->e);
    d->e = NULL;
    return;
  }
  d->n = n;
}
