/* Library-internal logging: one function, a level and a subsystem. No printf in library code. */
#ifndef RS_STACK_LOG_INTERNAL_H
#define RS_STACK_LOG_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

#include <raftstack/log.h>

/* The effective level of a subsystem (RS_LOG per-subsystem overrides, else the default). */
enum rs_log_level log_level_of(const char *subsys);
bool log_enabled(enum rs_log_level level, const char *subsys);
void log_emit(enum rs_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_emitv(enum rs_log_level level, const char *subsys, const char *fmt, va_list ap);

#define RS_LOG(lvl, subsys, ...)                                                     \
  do {                                                                               \
    if (log_enabled(RS_LOG_##lvl, (subsys))) log_emit(RS_LOG_##lvl, (subsys), __VA_ARGS__); \
  } while (0)

#endif
