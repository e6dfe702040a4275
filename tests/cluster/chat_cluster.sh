#!/usr/bin/env bash
# chat_cluster.sh udp|tcp: five chat processes on 127.0.0.1 form one view; a member killed with
# SIGKILL is removed from every view within the failure-detection bound; a member that leaves
# is removed at once; lines typed on one member reach all the others.
set -uo pipefail
kind=${1:?usage: chat_cluster.sh udp|tcp}
src=${RS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${CHAT_BIN:-./chat}
[ -x "$bin" ] || { echo "chat_cluster: no $bin" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT

# Ports: a base chosen from the PID so parallel runs do not meet; the multicast group likewise.
base=$((20000 + ($$ % 2000) * 10))
group="239.$((100 + $$ % 100)).$(( ($$ / 100) % 250 + 1)).$(( ($$ / 7) % 250 + 1))"
props=(-Drs.port=$base -Drs.fd.interval=300ms -Drs.fd.timeout=1500ms -Drs.verify.timeout=500ms
       -Drs.join_timeout=1s -Drs.merge.min=1s -Drs.merge.max=2s)
if [ "$kind" = udp ]; then
  config="$src/xml-configs/udp.xml"
  props+=(-Drs.mcast_addr=$group -Drs.mcast_port=$((base + 9)) -Drs.ttl=0)
else
  config="$src/xml-configs/tcp.xml"
  props+=(-Drs.initial_hosts="127.0.0.1[$base]" -Drs.hosts_range=6)
fi

members=(A B C D E)
fd=3
for n in "${members[@]}"; do
  mkfifo "$dir/$n.in"
  "$bin" --config "$config" --name "$n" "${props[@]}" --linger 100 <"$dir/$n.in" >"$dir/$n.out" 2>"$dir/$n.err" &
  pids+=($!)
done
# The write ends are opened only now, so no member inherits another's: closing one ends that
# member's input alone.
for n in "${members[@]}"; do
  eval "exec $fd>\"$dir/$n.in\""
  fd=$((fd + 1))
done

fail() {
  echo "chat_cluster($kind): FAILED: $*"
  for n in "${members[@]}"; do echo "--- $n"; tail -5 "$dir/$n.out"; tail -5 "$dir/$n.err"; done
  exit 1
}

# last_view NAME: the members of the last view NAME printed, sorted (join order varies).
last_view() {
  grep '^\*\* view' "$dir/$1.out" | tail -1 | sed 's/.*) \[//; s/\]$//' | tr -d ' ' | tr ',' '\n' |
    sort | paste -sd, - | sed 's/,/, /g'
}

# wait_views EXPECTED SECONDS NAMES...: until each named member's last view is EXPECTED.
wait_views() {
  local want=$1 secs=$2 start=$SECONDS
  shift 2
  while :; do
    local ok=1
    for n in "$@"; do [ "$(last_view "$n")" = "$want" ] || ok=0; done
    [ $ok = 1 ] && return 0
    [ $((SECONDS - start)) -ge "$secs" ] && return 1
    sleep 0.05
  done
}

wait_views "A, B, C, D, E" 30 A B C D E || fail "no common view of 5: $(for n in A B C D E; do echo -n "$n:[$(last_view $n)] "; done)"
echo "chat_cluster($kind): 5 members in one view: $(grep '^\*\* view' "$dir/E.out" | tail -1)"

echo "hello from B" >&4
for n in A C D E; do
  for _ in $(seq 100); do grep -q '^B: hello from B$' "$dir/$n.out" && break; sleep 0.05; done
  grep -q '^B: hello from B$' "$dir/$n.out" || fail "$n did not receive B's line"
done
echo "chat_cluster($kind): a line from B reached A, C, D, E"

# C is killed: FD_SOCK notices at once; FD_ALL3 (1.5 s) + VERIFY_SUSPECT (0.5 s) bound it.
start=$(date +%s%N)
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null
wait_views "A, B, D, E" 10 A B D E || fail "C not removed after SIGKILL"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "chat_cluster($kind): C killed, removed from every view after ${ms} ms"
[ "$ms" -le 4500 ] || fail "removal took ${ms} ms, over FD_ALL3 timeout + VERIFY_SUSPECT timeout + 2.5 s"

# D leaves (end of its input): removed at once, without failure detection.
start=$(date +%s%N)
exec 6>&-
wait_views "A, B, E" 10 A B E || fail "D not removed after leaving"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "chat_cluster($kind): D left, removed from every view after ${ms} ms"
[ "$ms" -le 1400 ] || fail "a graceful leave took ${ms} ms"
echo "chat_cluster($kind): PASS"
exit 0
