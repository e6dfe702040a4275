/* The simulated runtime: virtual time and a seeded scheduler for many stacks in one thread. */
#ifndef RS_STACK_SIM_H
#define RS_STACK_SIM_H

#include "stack/runtime.h"

struct rs_sim;

/* A world with virtual time starting at 0. Same seed, same run. */
struct rs_sim *rs_sim_new(uint64_t seed);
/* Frees the world; its runtimes must have been destroyed first. */
void rs_sim_free(struct rs_sim *sim);

/* A runtime in the world (one per stack). Destroy with rs_runtime_destroy. */
struct rs_runtime *rs_sim_runtime_new(struct rs_sim *sim, const char *name);

/* Runs one step: a ready task or call of one runtime (chosen by the seeded scheduler when several
 * are ready), else the earliest timer, advancing virtual time to it. False when nothing is left. */
bool rs_sim_step(struct rs_sim *sim);
/* Steps until cond(arg) holds (true) or virtual time passes now+timeout (false). */
bool rs_sim_run_until(struct rs_sim *sim, bool (*cond)(void *arg), void *arg, rs_time timeout);
/* Steps until virtual time reaches now+duration (events at exactly that time run). */
void rs_sim_run_for(struct rs_sim *sim, rs_time duration);
rs_time rs_sim_now(const struct rs_sim *sim);
uint64_t rs_sim_steps(const struct rs_sim *sim);
/* The world's own random stream (for fault injection), independent of the runtimes'. */
uint64_t rs_sim_random(struct rs_sim *sim);

/* Every step is reported as one line ("<time_ns> <runtime> timer|task|call"). */
void rs_sim_set_trace(struct rs_sim *sim, void (*fn)(void *arg, const char *line), void *arg);

/* Pauses a simulated runtime for `duration` of virtual time from now, as a stopped process (GC
 * pause, SIGSTOP): nothing of it runs until then; its calls and tasks wait, and timers due
 * meanwhile fire late, once it resumes. A later pause that ends sooner does not shorten it. */
void rs_sim_pause(struct rs_runtime *rt, rs_time duration);

/* Calls fn(arg) after every step (e.g. to check invariants); NULL removes it. */
void rs_sim_set_step_hook(struct rs_sim *sim, void (*fn)(void *arg), void *arg);

/* The world a simulated runtime belongs to, or NULL for another kind of runtime. */
struct rs_sim *rs_sim_of(struct rs_runtime *rt);

#endif
