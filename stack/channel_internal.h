/* The channel's internals, for tests that reach below the public API. */
#ifndef RS_STACK_CHANNEL_INTERNAL_H
#define RS_STACK_CHANNEL_INTERNAL_H

#include <raftstack/channel.h>

#include "stack/stack.h"

/* The channel's stack (for tests and tools: stats, protocol lookup). */
struct rs_stack *channel_stack(struct rs_channel *ch);
struct rs_runtime *channel_runtime(struct rs_channel *ch);

#endif
