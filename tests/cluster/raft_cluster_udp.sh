#!/usr/bin/env bash
# The Raft 3-process test over raft.xml (UDP; see raft_cluster.sh).
exec "$(dirname "$0")/raft_cluster.sh" udp
