/* `raftstack log dump|verify DIR`: print or check a file log directory without modifying it. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <raftstack/errors.h>

#include "raft/log/log_internal.h"
#include "tools/tools.h"

#define PREVIEW 32 /* bytes of payload shown per entry without --data */

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack log dump DIR [--data]\n"
          "       raftstack log verify DIR\n"
          "       raftstack log bench DIR [options]   (raftstack log bench --help)\n"
          "\n"
          "DIR is a file log's directory (<log_dir>/<name>.log). Neither command modifies it:\n"
          "a torn tail that the next start would cut is reported, not cut.\n"
          "\n"
          "dump    prints the metadata, then one line per entry: index, term, type, length and\n"
          "        the payload (quoted when printable, else hex; the first %d bytes, or all of\n"
          "        them with --data).\n"
          "verify  checks every record's CRC, index continuity and terms, and prints\n"
          "        'ok: N entries, first F, last L, term T' (T: the current term) and exits 0,\n"
          "        or prints the problem as 'file:offset: what' and exits 1.\n",
          PREVIEW);
}

static const char *type_name(uint8_t t) {
  switch (t) {
  case RAFT_ENTRY_COMMAND: return "command";
  case RAFT_ENTRY_NOOP: return "noop";
  case RAFT_ENTRY_CONFIG: return "config";
  }
  return "?";
}

static void print_payload(const uint8_t *p, uint32_t len, bool all) {
  uint32_t n = all || len <= PREVIEW ? len : PREVIEW;
  bool printable = true;
  for (uint32_t i = 0; i < n && printable; i++)
    printable = isprint(p[i]) && p[i] != '"';
  if (printable && !all) {
    printf(" \"%.*s\"%s", (int)n, (const char *)p, n < len ? "..." : "");
    return;
  }
  if (n) printf(" ");
  for (uint32_t i = 0; i < n; i++)
    printf("%02x", p[i]);
  if (n < len) printf("...");
}

/* Loads DIR read-only; prints the problem and returns TOOL_FAIL on error. */
static int load(const char *path, struct log_dir_state *st, struct log_loaded *l) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "raftstack log: %s: %s\n", path, strerror(errno));
    return TOOL_FAIL;
  }
  char err[1024];
  int rc = log_dir_load(fd, path, false, st, l, err, sizeof(err));
  close(fd);
  if (rc != 0) {
    fprintf(stderr, "raftstack log: %s\n", err);
    return TOOL_FAIL;
  }
  if (st->torn)
    fprintf(stderr,
            "note: %s/%s:%" PRIu64 ": torn tail of %" PRIu64
            " bytes (cut when the log is next opened)\n",
            path, st->torn_file, st->torn_offset, st->torn_bytes);
  if (st->tmp_found)
    fprintf(stderr, "note: %s/%s: leftover of an interrupted metadata write (ignored)\n", path,
            LOG_META_TMP);
  return TOOL_OK;
}

static rs_index last_index(const struct log_loaded *l) {
  return l->n ? l->entries[l->n - 1].index : l->first_index - 1;
}

static int dump(const char *path, bool all) {
  struct log_dir_state st;
  struct log_loaded l;
  if (load(path, &st, &l) != TOOL_OK) return TOOL_FAIL;
  printf("log %s\n", path);
  printf("meta: term %" PRIu64 ", voted_for '%s', commit %" PRIu64 ", prefix index %" PRIu64
         ", prefix term %" PRIu64 "%s\n",
         st.meta.term, st.meta.voted_for, st.meta.commit, st.meta.prefix_index, st.meta.prefix_term,
         st.has_meta ? "" : " (no metadata file)");
  for (size_t i = 0; i < st.n_segs; i++) {
    char name[64];
    log_segment_name(name, sizeof(name), st.segs[i].first);
    printf("segment %s: %zu records, %" PRIu64 " bytes\n", name, st.segs[i].n, st.segs[i].size);
  }
  printf("entries: %zu, first %" PRIu64 ", last %" PRIu64 "\n", l.n, l.first_index, last_index(&l));
  printf("# index term type length data\n");
  for (size_t i = 0; i < l.n; i++) {
    const struct raft_entry *e = &l.entries[i];
    printf("%" PRIu64 " %" PRIu64 " %s %" PRIu32, e->index, e->term, type_name(e->type), e->len);
    print_payload(e->data, e->len, all);
    printf("\n");
  }
  log_loaded_free(&l);
  log_dir_state_free(&st);
  return fflush(stdout) == 0 ? TOOL_OK : TOOL_FAIL;
}

static int verify(const char *path) {
  struct log_dir_state st;
  struct log_loaded l;
  if (load(path, &st, &l) != TOOL_OK) return TOOL_FAIL;
  printf("ok: %zu entries, first %" PRIu64 ", last %" PRIu64 ", term %" PRIu64 "\n", l.n,
         l.first_index, last_index(&l), st.meta.term);
  log_loaded_free(&l);
  log_dir_state_free(&st);
  return TOOL_OK;
}

int cmd_log(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return TOOL_OK;
  }
  bool all = argc == 4 && !strcmp(argv[3], "--data");
  if (argc >= 3 && !strcmp(argv[1], "dump") && (argc == 3 || all)) return dump(argv[2], all);
  if (argc == 3 && !strcmp(argv[1], "verify")) return verify(argv[2]);
  if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_log_bench(argc - 1, argv + 1);
  usage(stderr);
  return TOOL_USAGE;
}
