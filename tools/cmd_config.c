/* `raftstack config check FILE [-Dname=value ...]`: validate a stack and print it bottom-up. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "stack/sim.h"
#include "stack/stack.h"
#include "tools/tools.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack config check FILE [-Dname=value ...]\n"
          "\n"
          "Parses the XML stack definition FILE ('-' reads standard input), substitutes ${...}\n"
          "with the -D properties and the environment, builds every protocol and checks the\n"
          "attributes and the order of the protocols, without opening a socket.\n"
          "\n"
          "On success prints the stack bottom-up with every attribute's effective value and exits\n"
          "0; warnings (JGroups attributes that are ignored here, required attributes a program\n"
          "may still set before start) go to standard error. On errors prints each of them as\n"
          "'file:line: PROTOCOL: what is wrong' to standard error and exits 2.\n");
}

/* Reads all of standard input; NULL on failure. */
static char *read_stdin(size_t *len) {
  size_t cap = 8192, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n, stdin);
    if (n < cap) break;
    char *p = realloc(buf, cap *= 2);
    if (!p) free(buf);
    buf = p;
  }
  if (buf && ferror(stdin)) {
    free(buf);
    buf = NULL;
  }
  *len = n;
  return buf;
}

static int parse(const char *file, const struct rs_props *props, struct rs_xml_config *cfg,
                 struct rs_diag *d) {
  if (strcmp(file, "-")) return xml_parse_file(file, props, cfg, d);
  size_t len;
  char *text = read_stdin(&len);
  if (!text) {
    diag_error(d, "<stdin>: cannot read");
    return RS_EIO;
  }
  int rc = xml_parse_string(text, len, "<stdin>", props, cfg, d);
  free(text);
  return rc;
}

/* Builds on a simulated runtime, which starts no thread; init opens no socket either. Prints the
 * stack when `print` and the build succeeds. */
static int build(const struct rs_xml_config *cfg, struct rs_diag *d, bool print) {
  struct rs_sim *sim = rs_sim_new(1);
  struct rs_runtime *rt = sim ? rs_sim_runtime_new(sim, "check") : NULL;
  struct rs_stack *st = NULL;
  int rc = rt ? stack_build(&st, cfg, rt, d) : RS_ENOMEM;
  if (rc == 0 && print) {
    struct rs_diag req;
    diag_init(&req);
    stack_check_required(st, &req); /* a program may still set them: warnings here */
    fputs(d->text ? d->text : "", stderr);
    fputs(req.text ? req.text : "", stderr);
    diag_free(&req);
    char *text = stack_print(st);
    fputs(text ? text : "", stdout);
    free(text);
  }
  stack_destroy(st);
  if (rt) rs_runtime_destroy(rt);
  if (sim) rs_sim_free(sim);
  return rc;
}

static int check(int argc, char **argv) {
  const char *file = NULL;
  struct rs_props props;
  props_init(&props);
  int status = TOOL_USAGE;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "-D", 2)) {
      if (props_add(&props, argv[i] + 2)) {
        fprintf(stderr, "raftstack config check: bad property '%s' (expected -Dname=value)\n",
                argv[i]);
        goto out;
      }
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      status = TOOL_OK;
      goto out;
    } else if (!file && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) {
      file = argv[i];
    } else {
      fprintf(stderr, "raftstack config check: unexpected argument '%s'\n", argv[i]);
      usage(stderr);
      goto out;
    }
  }
  if (!file) {
    usage(stderr);
    goto out;
  }
  struct rs_xml_config cfg = {0};
  struct rs_diag d;
  diag_init(&d);
  int rc = parse(file, &props, &cfg, &d);
  if (rc == 0)
    rc = build(&cfg, &d, true);
  else if (cfg.n > 0)
    build(&cfg, &d, false); /* what parsed still shows the errors it has */
  if (rc) fputs(d.text ? d.text : "", stderr);
  status = rc ? TOOL_USAGE : TOOL_OK;
  xml_config_free(&cfg);
  diag_free(&d);
out:
  props_free(&props);
  return status;
}

int cmd_config(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "check")) return check(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return TOOL_OK;
  }
  if (argc >= 2) fprintf(stderr, "raftstack config: unknown subcommand '%s'\n", argv[1]);
  usage(stderr);
  return TOOL_USAGE;
}
