/* raftstack logging: one sink, a level per subsystem (protocol name). */
#ifndef RAFTSTACK_LOG_H
#define RAFTSTACK_LOG_H

#include <stdarg.h>

#include <raftstack/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum rs_log_level {
  RS_LOG_TRACE = 0,
  RS_LOG_DEBUG = 1,
  RS_LOG_INFO = 2,
  RS_LOG_WARN = 3,
  RS_LOG_ERROR = 4,
  RS_LOG_OFF = 5,
};

/* A sink receives every line that passes its subsystem's level. `subsys` and `line` are valid
 * only during the call. The default sink writes "LEVEL subsys: line" to stderr. */
typedef void (*rs_log_sink)(void *arg, enum rs_log_level level, const char *subsys,
                            const char *line);

/* Replace the process-wide sink (NULL restores the default). Thread-safe. */
RS_API void rs_log_set_sink(rs_log_sink sink, void *arg);

/* Default level for subsystems without their own (initially WARN, or the RS_LOG environment
 * variable: "info", or "warn,NAKACK2=trace,UDP=debug"). */
RS_API void rs_log_set_level(enum rs_log_level level);

/* Parse "trace|debug|info|warn|error|off" (case-insensitive); returns 0 or RS_EINVAL. */
RS_API int rs_log_level_parse(const char *s, enum rs_log_level *out);
RS_API const char *rs_log_level_name(enum rs_log_level level);

#ifdef __cplusplus
}
#endif
#endif
