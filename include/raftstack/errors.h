/* raftstack error codes: every function returns 0 or a negative RS_E* value. */
#ifndef RAFTSTACK_ERRORS_H
#define RAFTSTACK_ERRORS_H

#include <raftstack/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One list, one place: the code, its number and its text. Numbers are part of the ABI and of the
 * CLIENT protocol's status codes; never renumber, only append. */
#define RS_ERRNO_MAP(X)                                                                   \
  X(ENOMEM, 1, "out of memory")                                                           \
  X(EINVAL, 2, "invalid argument")                                                        \
  X(EMALFORMED, 3, "malformed input")                                                     \
  X(ETOOBIG, 4, "length exceeds the configured maximum")                                  \
  X(ECONFIG, 5, "configuration error")                                                    \
  X(EIO, 6, "I/O error")                                                                  \
  X(ETIMEDOUT, 7, "timed out")                                                            \
  X(EDEADLK, 8, "blocking call made on the event-loop thread")                            \
  X(ESHUTDOWN, 9, "shut down")                                                            \
  X(ENOTCONN, 10, "not connected")                                                        \
  X(EISCONN, 11, "already connected")                                                     \
  X(EAGAIN, 12, "resource temporarily unavailable")                                       \
  X(ENOTFOUND, 13, "not found")                                                           \
  X(EADDRINUSE, 14, "no free port in the configured range")                               \
  X(EVERSION, 15, "incompatible wire version")                                            \
  X(ENOLEADER, 16, "no leader")                                                           \
  X(ENOTLEADER, 17, "not the leader")                                                     \
  X(EUNKNOWN, 18, "outcome unknown")                                                      \
  X(ECANCELED, 19, "canceled")                                                            \
  X(EEXIST, 20, "already exists")                                                         \
  X(ECORRUPT, 21, "data corrupted")                                                       \
  X(ESTATE, 22, "operation not valid in the current state")

enum rs_errno {
  RS_OK = 0,
#define RS__ERR_ENUM(name, num, text) RS_##name = -(num),
  RS_ERRNO_MAP(RS__ERR_ENUM)
#undef RS__ERR_ENUM
};

/* Text for an RS_E* code (negative) or 0; never NULL; static storage. */
RS_API const char *rs_strerror(int err);

/* The symbolic name ("RS_ETIMEDOUT") of a code; static storage. */
RS_API const char *rs_errname(int err);

#ifdef __cplusplus
}
#endif
#endif
