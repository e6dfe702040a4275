#!/usr/bin/env bash
# demo-chat.sh BUILD_DIR [udp|tcp]: three chat members on 127.0.0.1 over the full stack; they
# discover each other, agree on a view, each sends one line, and one leaves.
set -euo pipefail
build=${1:-build}
kind=${2:-udp}
src=$(cd "$(dirname "$0")/.." && pwd)
bin="$build/chat"
[ -x "$bin" ] || { echo "no $bin: build first" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT

base=$((30000 + ($$ % 1000) * 10))
props=(-Drs.port=$base -Drs.join_timeout=1s)
if [ "$kind" = udp ]; then
  props+=(-Drs.mcast_addr="239.$((100 + $$ % 100)).7.7" -Drs.mcast_port=$((base + 9)) -Drs.ttl=0)
else
  props+=(-Drs.initial_hosts="127.0.0.1[$base]" -Drs.hosts_range=4)
fi
members=(A B C)
for n in "${members[@]}"; do
  mkfifo "$dir/$n.in"
  "$bin" --config "$src/xml-configs/$kind.xml" --name "$n" "${props[@]}" --members 3 --expect 2 \
    <"$dir/$n.in" >"$dir/$n.out" 2>"$dir/$n.err" &
  pids+=($!)
done
fd=3
for n in "${members[@]}"; do
  eval "exec $fd>\"$dir/$n.in\""
  fd=$((fd + 1))
done
echo "== three members over xml-configs/$kind.xml on 127.0.0.1; each sends one line"
fd=3
for n in "${members[@]}"; do
  echo "hello from $n" >&$fd # each member sends once the view has all three
  eval "exec $fd>&-"
  fd=$((fd + 1))
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
pids=()
for n in "${members[@]}"; do
  echo "--- $n saw:"
  sed 's/^/    /' "$dir/$n.out"
done
[ "$status" = 0 ] && echo "demo: one view of three, every line delivered to every member" ||
  { echo "demo: something went wrong; stderr of each member:"; for f in "$dir"/*.err; do echo "--- $f"; tail -n 3 "$f"; done; }
exit $status
