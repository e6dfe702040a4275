#!/usr/bin/env bash
# perf_smoke.sh: `raftstack perf multicast` (3 members, each sending 2,000 messages, over udp.xml
# and tcp.xml) and `raftstack perf rpc` (1 and 16 outstanding) run to the end with every message
# delivered exactly once and in order: their summary lines say errors=0 missing=0. No timing is
# asserted; the figures are printed for the log.
set -uo pipefail
src=${RS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${RAFTSTACK_BIN:-./raftstack}
[ -x "$bin" ] || { echo "perf_smoke: no $bin" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
passed=0

# run NAME ARGS...: runs one benchmark (bounded by `timeout`) and checks its summary line.
run() {
  local name=$1
  shift
  local out="$dir/$name.out"
  timeout 300 "$bin" perf "$@" >"$out" 2>"$dir/$name.err"
  local rc=$?
  local summary
  summary=$(grep '^perf=' "$out" | tail -1)
  if [ $rc -eq 0 ] && [[ "$summary" == *" errors=0 missing=0"* ]]; then
    echo "perf_smoke: PASS $name: $summary"
    passed=$((passed + 1))
  else
    echo "perf_smoke: FAIL $name (exit $rc): ${summary:-no summary line}"
    cat "$out" "$dir/$name.err"
    failed=$((failed + 1))
  fi
}

run multicast_udp multicast --config "$src/xml-configs/udp.xml" --members 3 --count 2000
run multicast_tcp multicast --config "$src/xml-configs/tcp.xml" --members 3 --count 2000
run rpc_udp_1 rpc --config "$src/xml-configs/udp.xml" --count 2000 --warmup 200
run rpc_tcp_16 rpc --config "$src/xml-configs/tcp.xml" --count 2000 --warmup 200 --outstanding 16

echo "perf_smoke: $passed passed, $failed failed"
[ $failed -eq 0 ]
