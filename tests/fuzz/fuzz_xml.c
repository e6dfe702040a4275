/* libFuzzer target: the XML stack definition, from bytes through parsing, substitution, build. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "stack/sim.h"
#include "stack/stack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A few properties so that ${...} takes every path: found, not found, defaults. */
static void add_props(struct rs_props *props) {
  props_add(props, "port=7800");
  props_add(props, "host=127.0.0.1");
  props_add(props, "empty=");
  props_add(props, "raft_id=A");
}

/* Builds on a simulated runtime: no thread, and init opens no socket. */
static void build(const struct rs_xml_config *cfg, struct rs_diag *d) {
  struct rs_sim *sim = rs_sim_new(1);
  struct rs_runtime *rt = sim ? rs_sim_runtime_new(sim, "fuzz") : NULL;
  struct rs_stack *st = NULL;
  if (rt && stack_build(&st, cfg, rt, d) == 0) {
    stack_check_required(st, d);
    free(stack_print(st));
    stack_destroy(st);
  }
  if (rt) rs_runtime_destroy(rt);
  if (sim) rs_sim_free(sim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct rs_props props;
  struct rs_diag d;
  struct rs_xml_config cfg;
  props_init(&props);
  add_props(&props);
  diag_init(&d);
  /* What parsed with errors is built too, as `raftstack config check` does. */
  xml_parse_string((const char *)data, size, "fuzz.xml", &props, &cfg, &d);
  if (cfg.n > 0) build(&cfg, &d);
  xml_config_free(&cfg);
  diag_free(&d);
  props_free(&props);
  return 0;
}
