/* raftstack: everything a user includes. */
#ifndef RAFTSTACK_H
#define RAFTSTACK_H

#include <raftstack/channel.h>
#include <raftstack/errors.h>
#include <raftstack/log.h>
#include <raftstack/raft.h>
#include <raftstack/types.h>

#endif
