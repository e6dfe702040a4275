/* Logging: one sink, a default level and per-subsystem levels from RS_LOG. */
#include "stack/log_internal.h"

#include <pthread.h>

#include <raftstack/errors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_OVERRIDES 32

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static enum rs_log_level default_level = RS_LOG_WARN;
static struct {
  char name[48];
  enum rs_log_level level;
} overrides[MAX_OVERRIDES];
static size_t n_overrides;
static rs_log_sink sink;
static void *sink_arg;

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"};

const char *rs_log_level_name(enum rs_log_level level) {
  return level <= RS_LOG_OFF ? level_names[level] : "?";
}

int rs_log_level_parse(const char *s, enum rs_log_level *out) {
  for (int i = 0; i <= RS_LOG_OFF; i++)
    if (!strcasecmp(s, level_names[i])) {
      *out = (enum rs_log_level)i;
      return 0;
    }
  if (!strcasecmp(s, "warning")) {
    *out = RS_LOG_WARN;
    return 0;
  }
  return RS_EINVAL;
}

/* RS_LOG="info" or "warn,UDP=debug,NAKACK2=trace". Unparseable parts are ignored. */
static void parse_env(void) {
  const char *env = getenv("RS_LOG");
  if (!env) return;
  char *copy = strdup(env), *save = NULL;
  if (!copy) return;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    enum rs_log_level lvl;
    if (!eq) {
      if (rs_log_level_parse(tok, &lvl) == 0) default_level = lvl;
    } else if (n_overrides < MAX_OVERRIDES && rs_log_level_parse(eq + 1, &lvl) == 0) {
      *eq = '\0';
      snprintf(overrides[n_overrides].name, sizeof(overrides[0].name), "%s", tok);
      overrides[n_overrides++].level = lvl;
    }
  }
  free(copy);
}

static void init_once(void) { pthread_once(&once, parse_env); }

void rs_log_set_level(enum rs_log_level level) {
  init_once();
  pthread_mutex_lock(&lock);
  default_level = level;
  pthread_mutex_unlock(&lock);
}

void rs_log_set_sink(rs_log_sink s, void *arg) {
  pthread_mutex_lock(&lock);
  sink = s;
  sink_arg = arg;
  pthread_mutex_unlock(&lock);
}

enum rs_log_level log_level_of(const char *subsys) {
  init_once();
  for (size_t i = 0; i < n_overrides; i++)
    if (subsys && !strcasecmp(overrides[i].name, subsys)) return overrides[i].level;
  return default_level;
}

bool log_enabled(enum rs_log_level level, const char *subsys) {
  return level >= log_level_of(subsys) && level < RS_LOG_OFF;
}

void log_emitv(enum rs_log_level level, const char *subsys, const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  pthread_mutex_lock(&lock);
  if (sink) sink(sink_arg, level, subsys ? subsys : "-", line);
  else fprintf(stderr, "%-5s %s: %s\n", rs_log_level_name(level), subsys ? subsys : "-", line);
  pthread_mutex_unlock(&lock);
}

void log_emit(enum rs_log_level level, const char *subsys, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_emitv(level, subsys, fmt, ap);
  va_end(ap);
}
