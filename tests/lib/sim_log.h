/* The "sim" log class: a simulated disk per raft_id that outlives its node and loses unsynced data.
 */
#ifndef RS_TESTS_SIM_LOG_H
#define RS_TESTS_SIM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/log/log.h"
#include "stack/sim.h"

/*
 * A struct sim_disk is owned by the test and holds one storage per log name (log_prefix or
 * raft_id). A node opens its storage with log_class="sim"; it survives the node's close, so a
 * restart is a new node opening the same storage.
 *
 * Durability model (what a power loss costs):
 *  - a submit completes after a seeded virtual delay (a timer on the node's runtime: the
 *    simulated fsync). Until then nothing of it is on the disk;
 *  - with sync (log_use_fsync) a completed batch is durable, together with everything completed
 *    before it;
 *  - without sync a completed batch is only in the "page cache": a crash keeps a random prefix of
 *    the unsynced operations and may tear the last append kept (only its first entries
 *    survive). A clean close writes everything back;
 *  - sim_disk_crash(name) before closing the node makes its close a crash: the batch in flight is
 *    lost and the page cache is cut as above.
 */

struct sim_disk;

/* A disk whose delays and tears come from the world's stream (rs_sim_random). Delays of a
 * submit are uniform in [min_delay, max_delay]. */
struct sim_disk *sim_disk_new(struct rs_sim *sim, rs_time min_delay, rs_time max_delay);
/* Frees every storage (no store may be open). */
void sim_disk_free(struct sim_disk *d);
/* The disk that stores opened from now on use (one world at a time). Registers the class. */
void sim_disk_set_current(struct sim_disk *d);
/* The next close of `name`'s open store is a crash. */
void sim_disk_crash(struct sim_disk *d, const char *name);
/* Wipes `name`'s storage (a replaced machine). */
void sim_disk_wipe(struct sim_disk *d, const char *name);

/* What is durable for `name` now (for checks): term, vote, last index, and the term at idx
 * (0 when absent). False when the disk has no such storage. */
bool sim_disk_durable(const struct sim_disk *d, const char *name, rs_term *term,
                      const char **voted_for, rs_index *last_index);
rs_term sim_disk_term_at(const struct sim_disk *d, const char *name, rs_index idx);

/* Counters over the disk's life. */
struct sim_disk_stats {
  uint64_t submits, synced, crashes, lost_inflight, lost_unsynced_ops, torn_appends;
};
void sim_disk_stats(const struct sim_disk *d, struct sim_disk_stats *out);

extern const struct rs_log_ops sim_log_ops;

#endif
