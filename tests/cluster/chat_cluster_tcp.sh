#!/usr/bin/env bash
# The chat cluster test over TCP (see chat_cluster.sh).
exec "$(dirname "$0")/chat_cluster.sh" tcp
