/* The channel: a node's handle on its protocol stack (create, connect, send, receive, close). */
#ifndef RAFTSTACK_CHANNEL_H
#define RAFTSTACK_CHANNEL_H

#include <raftstack/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rs_channel;
struct rs_runtime;

/* A view: the members of the group, coordinator first. Valid during the callback only. */
struct rs_view {
  struct rs_addr creator; /* with id: the view id, ordered by id then creator */
  uint64_t id;
  size_t n_members;
  const struct rs_addr *members;
  const char *const *names; /* logical names, parallel to members (never NULL entries) */
};

/* Callbacks run on the channel's event-loop thread and must not block. A blocking call made from
 * one (rs_channel_connect, ...) fails with RS_EDEADLK. */
struct rs_receiver {
  /* One delivered message. `data` is valid during the call only. */
  void (*receive)(void *arg, const struct rs_addr *src, const void *data, size_t len,
                  unsigned flags);
  /* A new view was installed (needs a membership protocol in the stack). */
  void (*view)(void *arg, const struct rs_view *view);
};

struct rs_channel_opts {
  const char *config_file;      /* an XML stack definition, or ... */
  const char *config_xml;       /* ... its text (exactly one of the two) */
  const char *const *props;     /* NULL-terminated "name=value" list for ${name} (may be NULL) */
  const char *name;             /* logical name (NULL: hostname-NNNN) */
  struct rs_runtime *runtime;   /* NULL: the channel runs its own event-loop thread */
};

/* Builds the stack from the XML and runs every protocol's init. On error returns RS_ECONFIG (or
 * another code) and writes the detail ("file:line: PROTOCOL: what is wrong") into err. The
 * caller owns *out and releases it with rs_channel_close. */
RS_API int rs_channel_open(struct rs_channel **out, const struct rs_channel_opts *opts, char *err,
                           size_t errlen);

/* Sets the receiver; call before connect. `arg` is passed back unchanged. */
RS_API void rs_channel_set_receiver(struct rs_channel *ch, const struct rs_receiver *r,
                                    void *arg);

/* Starts the stack (bottom to top) and joins `cluster`; blocks until joined or failed. */
RS_API int rs_channel_connect(struct rs_channel *ch, const char *cluster);

/* Sends len bytes (copied before the call returns) to dest, or to the whole group when dest is
 * NULL. flags: RS_MSG_* | RS_MSG_DONT_LOOPBACK << 16. May block while the send queue is full
 * (back pressure); never on the loop thread (RS_EDEADLK there: use rs_channel_send_nb). */
RS_API int rs_channel_send(struct rs_channel *ch, const struct rs_addr *dest, const void *data,
                           size_t len, unsigned flags);

/* As rs_channel_send but never blocks: RS_EAGAIN when the send queue is full. Usable from
 * callbacks. */
RS_API int rs_channel_send_nb(struct rs_channel *ch, const struct rs_addr *dest,
                              const void *data, size_t len, unsigned flags);

/* Leaves the cluster and stops the stack (top to bottom); the channel may connect again. */
RS_API int rs_channel_disconnect(struct rs_channel *ch);

/* Disconnects if needed, destroys the stack and frees the channel. Not from a callback (it
 * would wait for its own loop): refused there with an error line. */
RS_API void rs_channel_close(struct rs_channel *ch);

/* Detail of the last connect failure ("" if none). Owned by the channel. */
RS_API const char *rs_channel_last_error(const struct rs_channel *ch);

/* The local address (null before the first connect) and logical name. Owned by the channel. */
RS_API struct rs_addr rs_channel_address(const struct rs_channel *ch);
RS_API const char *rs_channel_name(const struct rs_channel *ch);

/* Writes the stack bottom-up with every attribute's effective value (as `config check` prints
 * it) into a malloc'd string the caller frees. */
RS_API char *rs_channel_print_stack(const struct rs_channel *ch);

#ifdef __cplusplus
}
#endif
#endif
