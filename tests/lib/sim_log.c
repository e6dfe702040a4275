/* The "sim" log class: a simulated disk per raft_id that outlives its node and loses unsynced data.
 */
#include "tests/lib/sim_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

/* An operation copied out of a batch (entries keep buffer references). */
struct sop {
  enum log_op_type type;
  struct raft_entry *entries;
  size_t n;
  rs_index a;   /* from / upto / commit */
  rs_term term; /* upto_term / meta term */
  char voted_for[RAFT_ID_MAX + 1];
};

/* The durable image of one log. */
struct image {
  rs_term term;
  char voted_for[RAFT_ID_MAX + 1];
  rs_index commit;
  rs_index first_index;
  rs_term prefix_term;
  struct raft_entry *e;
  size_t n, cap;
};

struct sim_store;

struct storage {
  char name[RAFT_ID_MAX + 1];
  struct image durable;
  struct sop *cache; /* completed without sync: lost on a crash unless written back */
  size_t n_cache, cap_cache;
  bool crash_next;
  struct sim_store *open;
};

struct sim_disk {
  struct rs_sim *sim;
  rs_time min_delay, max_delay;
  struct storage **v;
  size_t n;
  struct sim_disk_stats st;
};

struct sim_store {
  struct sim_disk *disk;
  struct storage *sto;
  struct rs_runtime *rt;
  struct rs_timer timer;
  struct sop *inflight;
  size_t n_inflight;
  bool sync;
  log_done_fn done;
  void *arg;
};

static struct sim_disk *current;

/* --- the image -------------------------------------------------------------------------------- */

static rs_index last_index(const struct image *im) { return im->first_index + im->n - 1; }

static void image_truncate_suffix(struct image *im, rs_index from) {
  size_t keep = from <= im->first_index ? 0 : (size_t)(from - im->first_index);
  while (im->n > keep)
    rs_buf_unref(im->e[--im->n].buf);
}

static void image_truncate_prefix(struct image *im, rs_index upto, rs_term upto_term) {
  if (upto < im->first_index) return;
  size_t drop = upto - im->first_index + 1 < im->n ? (size_t)(upto - im->first_index + 1) : im->n;
  for (size_t i = 0; i < drop; i++)
    rs_buf_unref(im->e[i].buf);
  memmove(im->e, im->e + drop, (im->n - drop) * sizeof(im->e[0]));
  im->n -= drop;
  im->first_index = upto + 1;
  im->prefix_term = upto_term;
}

static void image_append(struct image *im, const struct raft_entry *e, size_t n) {
  if (n == 0) return;
  if (e[0].index <= last_index(im)) image_truncate_suffix(im, e[0].index);
  if (im->n == 0) im->first_index = e[0].index;
  if (im->n + n > im->cap) {
    size_t cap = im->cap ? im->cap : 64;
    while (cap < im->n + n)
      cap *= 2;
    struct raft_entry *v = realloc(im->e, cap * sizeof(*v));
    if (!v) abort(); /* a test helper: out of memory ends the test */
    im->e = v;
    im->cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    im->e[im->n] = e[i];
    if (e[i].buf) rs_buf_ref(e[i].buf);
    im->n++;
  }
}

static void image_apply(struct image *im, const struct sop *o, size_t n_entries) {
  switch (o->type) {
  case LOG_OP_APPEND: image_append(im, o->entries, n_entries); break;
  case LOG_OP_TRUNCATE_SUFFIX: image_truncate_suffix(im, o->a); break;
  case LOG_OP_TRUNCATE_PREFIX: image_truncate_prefix(im, o->a, o->term); break;
  case LOG_OP_META:
    im->term = o->term;
    memcpy(im->voted_for, o->voted_for, sizeof(im->voted_for));
    break;
  case LOG_OP_COMMIT:
    if (o->a > im->commit) im->commit = o->a;
    break;
  }
}

static void image_free(struct image *im) {
  image_truncate_suffix(im, 0);
  free(im->e);
}

/* --- copied operations ------------------------------------------------------------------------ */

static void sop_free(struct sop *o) {
  for (size_t i = 0; i < o->n; i++)
    rs_buf_unref(o->entries[i].buf);
  free(o->entries);
}

static void sops_free(struct sop *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    sop_free(&v[i]);
  free(v);
}

static struct sop *copy_ops(const struct log_op *ops, size_t n) {
  struct sop *v = calloc(n ? n : 1, sizeof(*v));
  if (!v) abort();
  for (size_t i = 0; i < n; i++) {
    const struct log_op *op = &ops[i];
    struct sop *o = &v[i];
    o->type = op->type;
    switch (op->type) {
    case LOG_OP_APPEND:
      o->n = op->u.append.n;
      o->entries = malloc((o->n ? o->n : 1) * sizeof(*o->entries));
      if (!o->entries) abort();
      for (size_t j = 0; j < o->n; j++) {
        o->entries[j] = op->u.append.entries[j];
        if (o->entries[j].buf) rs_buf_ref(o->entries[j].buf);
      }
      break;
    case LOG_OP_TRUNCATE_SUFFIX: o->a = op->u.from; break;
    case LOG_OP_TRUNCATE_PREFIX:
      o->a = op->u.prefix.upto;
      o->term = op->u.prefix.upto_term;
      break;
    case LOG_OP_META:
      o->term = op->u.meta.term;
      snprintf(o->voted_for, sizeof(o->voted_for), "%s",
               op->u.meta.voted_for ? op->u.meta.voted_for : "");
      break;
    case LOG_OP_COMMIT: o->a = op->u.commit; break;
    }
  }
  return v;
}

/* Moves ops to the page cache (they are completed, not synced). */
static void cache_add(struct storage *sto, struct sop *ops, size_t n) {
  if (sto->n_cache + n > sto->cap_cache) {
    size_t cap = sto->cap_cache ? sto->cap_cache : 16;
    while (cap < sto->n_cache + n)
      cap *= 2;
    struct sop *v = realloc(sto->cache, cap * sizeof(*v));
    if (!v) abort();
    sto->cache = v;
    sto->cap_cache = cap;
  }
  memcpy(sto->cache + sto->n_cache, ops, n * sizeof(*ops));
  sto->n_cache += n;
  free(ops);
}

/* Writes the page cache back (an fsync, or a clean shutdown). */
static void cache_flush(struct storage *sto) {
  for (size_t i = 0; i < sto->n_cache; i++) {
    image_apply(&sto->durable, &sto->cache[i], sto->cache[i].n);
    sop_free(&sto->cache[i]);
  }
  sto->n_cache = 0;
}

/* A power loss: a random prefix of the page cache reached the disk, the next append maybe in
 * part (a torn write). */
static void cache_crash(struct sim_disk *d, struct storage *sto) {
  size_t keep = (size_t)(rs_sim_random(d->sim) % (sto->n_cache + 1));
  for (size_t i = 0; i < sto->n_cache; i++) {
    struct sop *o = &sto->cache[i];
    if (i < keep) {
      image_apply(&sto->durable, o, o->n);
    } else if (i == keep && o->type == LOG_OP_APPEND && o->n > 0 && rs_sim_random(d->sim) % 2) {
      image_apply(&sto->durable, o, (size_t)(rs_sim_random(d->sim) % o->n));
      d->st.torn_appends++;
    }
    sop_free(o);
  }
  d->st.lost_unsynced_ops += sto->n_cache - keep;
  sto->n_cache = 0;
}

/* --- the disk --------------------------------------------------------------------------------- */

struct sim_disk *sim_disk_new(struct rs_sim *sim, rs_time min_delay, rs_time max_delay) {
  struct sim_disk *d = calloc(1, sizeof(*d));
  if (!d) return NULL;
  d->sim = sim;
  d->min_delay = min_delay;
  d->max_delay = max_delay < min_delay ? min_delay : max_delay;
  return d;
}

void sim_disk_free(struct sim_disk *d) {
  if (!d) return;
  for (size_t i = 0; i < d->n; i++) {
    cache_flush(d->v[i]);
    free(d->v[i]->cache);
    image_free(&d->v[i]->durable);
    free(d->v[i]);
  }
  free(d->v);
  if (current == d) current = NULL;
  free(d);
}

void sim_disk_set_current(struct sim_disk *d) {
  log_class_register(&sim_log_ops);
  current = d;
}

static struct storage *find(const struct sim_disk *d, const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->v[i]->name, name) == 0) return d->v[i];
  return NULL;
}

static struct storage *find_or_add(struct sim_disk *d, const char *name) {
  struct storage *s = find(d, name);
  if (s || strlen(name) > RAFT_ID_MAX) return s;
  struct storage **v = realloc(d->v, (d->n + 1) * sizeof(*v));
  if (!v) return NULL;
  d->v = v;
  if (!(s = calloc(1, sizeof(*s)))) return NULL;
  strcpy(s->name, name);
  s->durable.first_index = 1;
  d->v[d->n++] = s;
  return s;
}

void sim_disk_crash(struct sim_disk *d, const char *name) {
  struct storage *s = find(d, name);
  if (s) s->crash_next = true;
}

void sim_disk_wipe(struct sim_disk *d, const char *name) {
  struct storage *s = find(d, name);
  if (!s || s->open) return;
  cache_flush(s);
  image_free(&s->durable);
  memset(&s->durable, 0, sizeof(s->durable));
  s->durable.first_index = 1;
}

bool sim_disk_durable(const struct sim_disk *d, const char *name, rs_term *term,
                      const char **voted_for, rs_index *last) {
  const struct storage *s = find(d, name);
  if (!s) return false;
  if (term) *term = s->durable.term;
  if (voted_for) *voted_for = s->durable.voted_for;
  if (last) *last = last_index(&s->durable);
  return true;
}

rs_term sim_disk_term_at(const struct sim_disk *d, const char *name, rs_index idx) {
  const struct storage *s = find(d, name);
  if (!s || idx < s->durable.first_index || idx > last_index(&s->durable)) return 0;
  return s->durable.e[idx - s->durable.first_index].term;
}

void sim_disk_stats(const struct sim_disk *d, struct sim_disk_stats *out) { *out = d->st; }

/* --- the store -------------------------------------------------------------------------------- */

static void complete(struct rs_timer *t) {
  struct sim_store *s = (struct sim_store *)((char *)t - offsetof(struct sim_store, timer));
  struct storage *sto = s->sto;
  cache_add(sto, s->inflight, s->n_inflight);
  if (s->sync) {
    cache_flush(sto);
    s->disk->st.synced++;
  }
  s->inflight = NULL;
  s->n_inflight = 0;
  log_done_fn done = s->done;
  s->done = NULL;
  if (done) done(s->arg, 0);
}

static int sim_open(struct rs_log_store **out, const struct log_config *cfg, struct rs_runtime *rt,
                    struct log_loaded *loaded, char *err, size_t errlen) {
  struct sim_disk *d = current;
  if (!d || !rs_sim_of(rt)) {
    snprintf(err, errlen, "log class \"sim\" needs sim_disk_set_current and a simulated runtime");
    return RS_EINVAL;
  }
  struct storage *sto = find_or_add(d, cfg->name ? cfg->name : "");
  if (!sto) return RS_ENOMEM;
  if (sto->open) {
    snprintf(err, errlen, "sim log %s: already open", sto->name);
    return RS_EINVAL;
  }
  struct sim_store *s = calloc(1, sizeof(*s));
  if (!s) return RS_ENOMEM;
  const struct image *im = &sto->durable;
  memset(loaded, 0, sizeof(*loaded));
  loaded->term = im->term;
  memcpy(loaded->voted_for, im->voted_for, sizeof(loaded->voted_for));
  loaded->commit = im->commit;
  loaded->first_index = im->first_index;
  loaded->prefix_term = im->prefix_term;
  loaded->n = im->n;
  if (im->n) {
    if (!(loaded->entries = malloc(im->n * sizeof(*loaded->entries)))) {
      free(s);
      return RS_ENOMEM;
    }
    for (size_t i = 0; i < im->n; i++) {
      loaded->entries[i] = im->e[i];
      if (im->e[i].buf) rs_buf_ref(im->e[i].buf);
    }
  }
  s->disk = d;
  s->sto = sto;
  s->rt = rt;
  rs_timer_init(&s->timer, rt, complete);
  sto->open = s;
  sto->crash_next = false;
  *out = (struct rs_log_store *)s;
  return 0;
}

static void sim_submit(struct rs_log_store *store, const struct log_op *ops, size_t n, bool sync,
                       log_done_fn done, void *arg) {
  struct sim_store *s = (struct sim_store *)store;
  struct sim_disk *d = s->disk;
  s->inflight = copy_ops(ops, n);
  s->n_inflight = n;
  s->sync = sync;
  s->done = done;
  s->arg = arg;
  d->st.submits++;
  rs_time span = d->max_delay - d->min_delay;
  rs_time delay = d->min_delay + (span ? rs_sim_random(d->sim) % (span + 1) : 0);
  rs_timer_start(&s->timer, delay, 0);
}

/* A clean close finishes the batch in flight and writes the page cache back; a crash loses the
 * batch and cuts the page cache. The batch's done runs here in both cases. */
static void sim_close(struct rs_log_store *store) {
  struct sim_store *s = (struct sim_store *)store;
  if (!s) return;
  struct storage *sto = s->sto;
  struct sim_disk *d = s->disk;
  rs_timer_stop(&s->timer);
  int status = 0;
  if (sto->crash_next) {
    d->st.crashes++;
    if (s->done) d->st.lost_inflight++;
    sops_free(s->inflight, s->n_inflight);
    cache_crash(d, sto);
    status = RS_ESHUTDOWN;
  } else {
    if (s->inflight) cache_add(sto, s->inflight, s->n_inflight);
    cache_flush(sto);
  }
  sto->crash_next = false;
  sto->open = NULL;
  log_done_fn done = s->done;
  void *arg = s->arg;
  free(s);
  if (done) done(arg, status);
}

const struct rs_log_ops sim_log_ops = {
    .name = "sim",
    .open = sim_open,
    .submit = sim_submit,
    .close = sim_close,
};
