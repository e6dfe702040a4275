#!/usr/bin/env bash
# raft_perf_smoke.sh: raft-perf runs to the end over raft.xml (file log, fsync on, 1 outstanding)
# and raft-tcp.xml (memory log, 64 outstanding) for 2 seconds each and prints a summary line that
# parses, with commits > 0 and errors=0. No timing is asserted; the figures go to the log.
set -uo pipefail
src=${RS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${RAFT_PERF_BIN:-./raft-perf}
[ -x "$bin" ] || { echo "raft_perf_smoke: no $bin" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
passed=0

# run NAME ARGS...: one raft-perf run (bounded by `timeout`); checks its exit status, its
# progress lines and its summary line.
run() {
  local name=$1
  shift
  timeout 300 "$bin" "$@" >"$dir/$name.out" 2>"$dir/$name.err"
  local rc=$?
  local summary
  summary=$(grep '^raft-perf members=' "$dir/$name.out" | tail -1)
  local re='^raft-perf members=3 outstanding=[0-9]+ size=[0-9]+ fsync=(on|off) config=[^ ]+ '
  re+='duration=[0-9.]+s commits=([0-9]+) throughput=[0-9]+/s p50=[0-9.]+us p90=[0-9.]+us '
  re+='p99=[0-9.]+us p99.9=[0-9.]+us max=[0-9.]+us errors=0$'
  if [ $rc -eq 0 ] && [[ "$summary" =~ $re ]] && [ "${BASH_REMATCH[2]}" -gt 0 ] &&
    grep -q '^raft-perf: [0-9]*s commits=' "$dir/$name.out"; then
    echo "raft_perf_smoke: PASS $name: $summary"
    passed=$((passed + 1))
  else
    echo "raft_perf_smoke: FAIL $name (exit $rc): ${summary:-no summary line}"
    cat "$dir/$name.out" "$dir/$name.err"
    failed=$((failed + 1))
  fi
}

run udp_fsync --config "$src/xml-configs/raft.xml" --duration 2 --warmup 1 --outstanding 1
run tcp_memory --config "$src/xml-configs/raft-tcp.xml" --duration 2 --warmup 1 --outstanding 64 \
  --fsync off

# A bad option is a usage error (2), not a run.
"$bin" --outstanding 0 >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then passed=$((passed + 1)); else
  echo "raft_perf_smoke: FAIL --outstanding 0 exited $rc, not 2"
  failed=$((failed + 1))
fi

echo "raft_perf_smoke: $passed passed, $failed failed"
[ $failed -eq 0 ]
