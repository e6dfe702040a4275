#!/usr/bin/env bash
# demo-transport.sh BUILD_DIR [udp|tcp]: three transport-demo members on 127.0.0.1; each sends
# one line to the group and prints the lines of the other two.
set -euo pipefail
build=${1:-build}
transport=${2:-udp}
bin="$build/transport-demo"
[ -x "$bin" ] || { echo "no $bin: build first" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

members=(A B C)
fd=3
for n in "${members[@]}"; do
  mkfifo "$dir/$n.in"
  "$bin" --transport "$transport" --name "$n" --expect 2 <"$dir/$n.in" >"$dir/$n.out" 2>"$dir/$n.err" &
  pids+=($!)
done
# The write ends are opened only now, so no member inherits another's: closing one ends that
# member's input alone.
for n in "${members[@]}"; do
  eval "exec $fd>\"$dir/$n.in\""
  fd=$((fd + 1))
done

# Wait (at most 10 s) until every member says it is connected, so no line is sent too early.
for _ in $(seq 100); do
  ready=0
  for n in "${members[@]}"; do grep -q connected "$dir/$n.err" && ready=$((ready + 1)); done
  [ "$ready" = 3 ] && break
  sleep 0.1
done
for n in "${members[@]}"; do head -1 "$dir/$n.err"; done

fd=3
for n in "${members[@]}"; do
  echo "hello from $n" >&$fd
  eval "exec $fd>&-" # end of input: the member leaves once it has the other two lines
  fd=$((fd + 1))
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
pids=()
for n in "${members[@]}"; do
  echo "--- $n received:"
  sed 's/^/    /' "$dir/$n.out"
done
[ "$status" = 0 ] && echo "demo: every member received every line" || echo "demo: some lines were lost (UDP without the reliability protocols of the next issue)"
exit $status
