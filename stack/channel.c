/* The channel: the public handle on a stack, and the thread-safe way into its loop. */
#include "stack/channel_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raftstack/errors.h>

#include "stack/log_internal.h"
#include "stack/sim.h"
#include "stack/view.h"
#include "stack/wire.h"

/* Messages an application may queue before rs_channel_send blocks. Kept below every bundler's
 * capacity, so that one drain of this queue can never overflow the transport's queues. */
#define SEND_QUEUE_CAP 1024

enum ch_state { CH_OPEN, CH_CONNECTED, CH_CLOSED };

/* A lifecycle operation run on the loop for an application thread that waits for it. */
struct op {
  struct rs_channel *ch;
  const char *cluster;
  struct rs_completion done;
};

struct rs_channel {
  struct rs_stack *st;
  struct rs_runtime *rt;
  bool own_rt;
  struct rs_receiver recv;
  void *recv_arg;
  _Atomic enum ch_state state; /* read by application threads, written on the loop */
  char name[128];
  char err[1024];

  /* Application threads → loop: the send queue. */
  pthread_mutex_t lock;
  pthread_cond_t not_full;
  struct rs_msg *sq_head, *sq_tail;
  size_t sq_len;
  bool kick_pending; /* a call to post drain_task is on its way */
  struct rs_task drain_task;
  bool congested; /* loop only */

  struct rs_completion *connecting;  /* loop only: waiting for CONNECT_DONE */
  struct op *disconnecting;          /* loop only: waiting for DISCONNECT_DONE */
};

struct rs_stack *channel_stack(struct rs_channel *ch) { return ch->st; }
struct rs_runtime *channel_runtime(struct rs_channel *ch) { return ch->rt; }

/* --- from the stack up ------------------------------------------------------------------------ */

static void ch_deliver(void *owner, struct rs_msg *m) {
  struct rs_channel *ch = owner;
  if (ch->recv.receive) ch->recv.receive(ch->recv_arg, &m->src, m->data, m->len, m->flags);
  rs_msg_free(m);
}

static void deliver_view(struct rs_channel *ch, const struct rs_view_data *v) {
  if (!ch->recv.view) return;
  struct rs_view view = {.creator = v->creator, .id = v->id, .n_members = v->n,
                         .members = v->members, .names = (const char *const *)v->names};
  ch->recv.view(ch->recv_arg, &view);
}

static void finish_disconnect(struct rs_channel *ch, struct op *op);

static int ch_up_event(void *owner, struct rs_event *ev) {
  struct rs_channel *ch = owner;
  switch (ev->type) {
  case RS_EV_CONNECT_DONE:
    if (ch->connecting) {
      struct rs_completion *c = ch->connecting;
      ch->connecting = NULL;
      if (ev->u.status) {
        snprintf(ch->err, sizeof(ch->err), "%s", ch->st->err[0] ? ch->st->err : rs_strerror(ev->u.status));
        ch->state = CH_OPEN;
        stack_stop(ch->st);
      }
      completion_done(c, ev->u.status);
    }
    break;
  case RS_EV_DISCONNECT_DONE:
    if (ch->disconnecting) {
      struct op *op = ch->disconnecting;
      ch->disconnecting = NULL;
      finish_disconnect(ch, op);
    }
    break;
  case RS_EV_VIEW_CHANGE: deliver_view(ch, ev->u.view); break;
  default: break;
  }
  return 0;
}

/* --- sending ---------------------------------------------------------------------------------- */

/* Takes the whole queue under one lock and passes it down, keeping back what is left if the
 * transport pushes back meanwhile. */
static void drain(struct rs_task *task) {
  struct rs_channel *ch = (struct rs_channel *)((char *)task - offsetof(struct rs_channel, drain_task));
  if (ch->congested) return;
  pthread_mutex_lock(&ch->lock);
  struct rs_msg *m = ch->sq_head;
  bool was_full = ch->sq_len >= SEND_QUEUE_CAP;
  ch->sq_head = ch->sq_tail = NULL;
  ch->sq_len = 0;
  if (was_full) pthread_cond_broadcast(&ch->not_full);
  pthread_mutex_unlock(&ch->lock);
  while (m && !ch->congested) {
    struct rs_msg *next = m->next;
    m->next = NULL;
    if (ch->state == CH_CONNECTED) stack_down_msg(ch->st, m);
    else rs_msg_free(m);
    m = next;
  }
  if (!m) return;
  /* Back pressure: the rest goes back to the front, in order, until the transport resumes. */
  size_t n = 0;
  struct rs_msg *last = m;
  for (; last->next; last = last->next) n++;
  pthread_mutex_lock(&ch->lock);
  last->next = ch->sq_head;
  if (!ch->sq_head) ch->sq_tail = last;
  ch->sq_head = m;
  ch->sq_len += n + 1;
  pthread_mutex_unlock(&ch->lock);
}

static void kick(void *arg) {
  struct rs_channel *ch = arg;
  pthread_mutex_lock(&ch->lock);
  ch->kick_pending = false;
  pthread_mutex_unlock(&ch->lock);
  rs_post(ch->rt, &ch->drain_task);
}

static void ch_congestion(void *owner, bool congested) {
  struct rs_channel *ch = owner;
  bool resumed = ch->congested && !congested;
  ch->congested = congested;
  if (resumed) rs_post(ch->rt, &ch->drain_task);
}

static struct rs_msg *make_msg(const struct rs_addr *dest, const void *data, size_t len,
                               unsigned flags) {
  struct rs_msg *m = rs_msg_new_copy(data, len);
  if (!m) return NULL;
  if (dest) m->dest = *dest;
  m->flags = (uint16_t)(flags & 0xffff);
  m->tflags = (uint8_t)(flags >> 16);
  return m;
}

static int send_common(struct rs_channel *ch, const struct rs_addr *dest, const void *data,
                       size_t len, unsigned flags, bool block) {
  if (ch->state != CH_CONNECTED) return RS_ENOTCONN;
  if (rs_runtime_on_loop(ch->rt)) {
    /* From a callback: straight down the stack, unless the transport asked us to wait. */
    if (block) return RS_EDEADLK;
    if (ch->congested) return RS_EAGAIN;
    struct rs_msg *m = make_msg(dest, data, len, flags);
    return m ? stack_down_msg(ch->st, m) : RS_ENOMEM;
  }
  struct rs_msg *m = make_msg(dest, data, len, flags);
  if (!m) return RS_ENOMEM;
  pthread_mutex_lock(&ch->lock);
  while (ch->sq_len >= SEND_QUEUE_CAP && ch->state == CH_CONNECTED) {
    if (!block) {
      pthread_mutex_unlock(&ch->lock);
      rs_msg_free(m);
      return RS_EAGAIN;
    }
    if (ch->rt->simulated) {
      /* One thread runs the world: let it drain the queue. */
      pthread_mutex_unlock(&ch->lock);
      rs_sim_step(rs_sim_of(ch->rt));
      pthread_mutex_lock(&ch->lock);
      continue;
    }
    pthread_cond_wait(&ch->not_full, &ch->lock);
  }
  if (ch->state != CH_CONNECTED) {
    pthread_mutex_unlock(&ch->lock);
    rs_msg_free(m);
    return RS_ENOTCONN;
  }
  if (ch->sq_tail) ch->sq_tail->next = m;
  else ch->sq_head = m;
  ch->sq_tail = m;
  ch->sq_len++;
  bool need_kick = !ch->kick_pending;
  ch->kick_pending = true;
  pthread_mutex_unlock(&ch->lock);
  if (need_kick && rs_runtime_call(ch->rt, kick, ch) != 0) return RS_ESHUTDOWN;
  return 0;
}

int rs_channel_send(struct rs_channel *ch, const struct rs_addr *dest, const void *data,
                    size_t len, unsigned flags) {
  return send_common(ch, dest, data, len, flags, true);
}

int rs_channel_send_nb(struct rs_channel *ch, const struct rs_addr *dest, const void *data,
                       size_t len, unsigned flags) {
  return send_common(ch, dest, data, len, flags, false);
}

/* --- lifecycle -------------------------------------------------------------------------------- */

static void default_name(char *buf, size_t len) {
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  char *dot = strchr(host, '.');
  if (dot) *dot = '\0';
  unsigned r = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (f) {
    if (fread(&r, sizeof(r), 1, f) != 1) r = (unsigned)getpid();
    fclose(f);
  }
  snprintf(buf, len, "%s-%u", host, r % 65534 + 1);
}

int rs_channel_open(struct rs_channel **out, const struct rs_channel_opts *opts, char *err,
                    size_t errlen) {
  struct rs_props props;
  struct rs_xml_config cfg = {0};
  struct rs_diag d;
  int rc;
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  if (!opts || !!opts->config_file == !!opts->config_xml) {
    if (err) snprintf(err, errlen, "exactly one of config_file and config_xml must be given");
    return RS_EINVAL;
  }
  struct rs_channel *ch = calloc(1, sizeof(*ch));
  if (!ch) return RS_ENOMEM;
  props_init(&props);
  diag_init(&d);
  for (const char *const *p = opts->props; p && *p; p++)
    if ((rc = props_add(&props, *p)) != 0) {
      diag_error(&d, "bad property '%s' (expected name=value)", *p);
      goto err_after_props;
    }
  rc = opts->config_file ? xml_parse_file(opts->config_file, &props, &cfg, &d)
                         : xml_parse_string(opts->config_xml, strlen(opts->config_xml), "<string>",
                                            &props, &cfg, &d);
  if (rc) goto err_after_props;
  if (opts->name) snprintf(ch->name, sizeof(ch->name), "%s", opts->name);
  else default_name(ch->name, sizeof(ch->name));
  ch->rt = opts->runtime;
  if (!ch->rt) {
    ch->rt = rs_runtime_ev_new(ch->name);
    ch->own_rt = true;
    if (!ch->rt) {
      rc = RS_ENOMEM;
      diag_error(&d, "cannot start the event loop");
      goto err_after_cfg;
    }
  }
  rc = stack_build(&ch->st, &cfg, ch->rt, &d);
  if (rc) goto err_after_rt;
  if (d.warnings) RS_LOG(WARN, "config", "%s", d.text);
  snprintf(ch->st->name, sizeof(ch->st->name), "%s", ch->name);
  ch->st->owner = ch;
  ch->st->deliver = ch_deliver;
  ch->st->up_event = ch_up_event;
  ch->st->congestion = ch_congestion;
  pthread_mutex_init(&ch->lock, NULL);
  pthread_cond_init(&ch->not_full, NULL);
  rs_task_init(&ch->drain_task, drain);
  ch->state = CH_OPEN;
  xml_config_free(&cfg);
  props_free(&props);
  diag_free(&d);
  *out = ch;
  return 0;

err_after_rt:
  if (ch->own_rt) rs_runtime_destroy(ch->rt);
err_after_cfg:
  xml_config_free(&cfg);
err_after_props:
  if (err && errlen) snprintf(err, errlen, "%s", d.text ? d.text : rs_strerror(rc));
  props_free(&props);
  diag_free(&d);
  free(ch);
  return rc ? rc : RS_ECONFIG;
}

void rs_channel_set_receiver(struct rs_channel *ch, const struct rs_receiver *r, void *arg) {
  if (r) ch->recv = *r;
  else memset(&ch->recv, 0, sizeof(ch->recv));
  ch->recv_arg = arg;
}


static void do_connect(void *arg) {
  struct op *op = arg;
  struct rs_channel *ch = op->ch;
  struct rs_stack *st = ch->st;
  struct rs_diag d;
  diag_init(&d);
  int rc = stack_check_required(st, &d);
  if (rc) {
    snprintf(ch->err, sizeof(ch->err), "%s", d.text ? d.text : "required attribute missing");
    diag_free(&d);
    completion_done(&op->done, rc);
    return;
  }
  diag_free(&d);
  st->local_addr = addr_random(ch->rt);
  snprintf(st->cluster, sizeof(st->cluster), "%s", op->cluster);
  if ((rc = stack_start(st)) != 0) {
    snprintf(ch->err, sizeof(ch->err), "%s", st->err);
    completion_done(&op->done, rc);
    return;
  }
  ch->state = CH_CONNECTED;
  ch->congested = false;
  ch->connecting = &op->done;
  struct rs_event ev = {.type = RS_EV_CONNECT, .u.cluster = st->cluster};
  rc = stack_down_event(st, &ev);
  if (rc == RS_EAGAIN) return; /* CONNECT_DONE comes up later */
  ch->connecting = NULL;
  if (rc) {
    snprintf(ch->err, sizeof(ch->err), "%s", st->err[0] ? st->err : rs_strerror(rc));
    ch->state = CH_OPEN;
    stack_stop(st);
  }
  completion_done(&op->done, rc);
}

static int run_op(struct rs_channel *ch, void (*fn)(void *), const char *cluster) {
  if (rs_runtime_on_loop(ch->rt)) return RS_EDEADLK;
  struct op op = {.ch = ch, .cluster = cluster};
  completion_init(&op.done);
  int rc = rs_runtime_call(ch->rt, fn, &op);
  if (rc == 0) rc = completion_wait(ch->rt, &op.done, UINT64_MAX);
  completion_fini(&op.done);
  return rc;
}

int rs_channel_connect(struct rs_channel *ch, const char *cluster) {
  if (rs_runtime_on_loop(ch->rt)) return RS_EDEADLK;
  if (ch->state == CH_CONNECTED) return RS_EISCONN;
  if (ch->state == CH_CLOSED) return RS_ESHUTDOWN;
  if (!cluster || !*cluster || strlen(cluster) > RS_WIRE_CLUSTER_MAX) return RS_EINVAL;
  ch->err[0] = '\0';
  return run_op(ch, do_connect, cluster);
}

static void finish_disconnect(struct rs_channel *ch, struct op *op) {
  if (ch->state == CH_CONNECTED) {
    stack_stop(ch->st);
    rs_task_cancel(ch->rt, &ch->drain_task);
  }
  pthread_mutex_lock(&ch->lock);
  ch->state = CH_OPEN;
  for (struct rs_msg *m = ch->sq_head, *n; m; m = n) {
    n = m->next;
    rs_msg_free(m);
  }
  ch->sq_head = ch->sq_tail = NULL;
  ch->sq_len = 0;
  pthread_cond_broadcast(&ch->not_full);
  pthread_mutex_unlock(&ch->lock);
  completion_done(&op->done, 0);
}

/* A membership protocol leaves the group first (RS_EAGAIN: DISCONNECT_DONE follows); then the
 * stack stops. */
static void do_disconnect(void *arg) {
  struct op *op = arg;
  struct rs_channel *ch = op->ch;
  if (ch->state == CH_CONNECTED) {
    struct rs_event ev = {.type = RS_EV_DISCONNECT};
    if (stack_down_event(ch->st, &ev) == RS_EAGAIN) {
      ch->disconnecting = op;
      return;
    }
  }
  finish_disconnect(ch, op);
}

int rs_channel_disconnect(struct rs_channel *ch) {
  if (rs_runtime_on_loop(ch->rt)) return RS_EDEADLK;
  if (ch->state != CH_CONNECTED) return RS_ENOTCONN;
  return run_op(ch, do_disconnect, NULL);
}

static void do_destroy(void *arg) {
  struct op *op = arg;
  stack_destroy(op->ch->st);
  op->ch->st = NULL;
  completion_done(&op->done, 0);
}

void rs_channel_close(struct rs_channel *ch) {
  if (!ch) return;
  if (rs_runtime_on_loop(ch->rt)) {
    /* It would wait for the very loop it runs on. */
    RS_LOG(ERROR, "channel", "rs_channel_close called from a callback: refused (%s)", rs_strerror(RS_EDEADLK));
    return;
  }
  if (ch->state == CH_CONNECTED) rs_channel_disconnect(ch);
  ch->state = CH_CLOSED;
  run_op(ch, do_destroy, NULL);
  if (ch->own_rt) rs_runtime_destroy(ch->rt);
  pthread_mutex_destroy(&ch->lock);
  pthread_cond_destroy(&ch->not_full);
  free(ch);
}

struct rs_addr rs_channel_address(const struct rs_channel *ch) { return ch->st ? ch->st->local_addr : RS_ADDR_NULL; }
const char *rs_channel_name(const struct rs_channel *ch) { return ch->name; }
const char *rs_channel_last_error(const struct rs_channel *ch) { return ch->err; }
char *rs_channel_print_stack(const struct rs_channel *ch) { return stack_print(ch->st); }
