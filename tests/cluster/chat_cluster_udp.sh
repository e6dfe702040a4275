#!/usr/bin/env bash
# The chat cluster test over UDP (see chat_cluster.sh).
exec "$(dirname "$0")/chat_cluster.sh" udp
