#!/usr/bin/env bash
# quickstart.sh: set up a fresh Debian machine, build raftstack, and run the demo or the tests.
#
#   ./quickstart.sh demo   build, then run the chat demo: three members on 127.0.0.1 over the
#                          full UDP stack find each other, form one view and exchange lines
#   ./quickstart.sh test   build with sanitizers, run the unit tests, the fuzz targets and a
#                          valgrind pass (what CI runs)
#   ./quickstart.sh deps   only install the packages
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES="build-essential autoconf automake libtool pkg-config libev-dev libssl-dev zlib1g-dev
check libexpat1-dev clang valgrind iproute2 procps"

need_install() {
  for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || return 0; done
  return 1
}

deps() {
  if need_install; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing packages: $(echo $PACKAGES)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $PACKAGES >/dev/null
  fi
}

# build DIR CONFIGURE-ARGS...: an out-of-tree build.
build() {
  local dir=$1
  shift
  [ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi >/dev/null
  mkdir -p "$dir"
  (cd "$dir" && { [ -f Makefile ] || ../configure "$@" >/dev/null; } && make -j"$(nproc)" >/dev/null)
}

demo() {
  build build
  exec tools/demo-chat.sh build udp
}

test_all() {
  echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer, warnings as errors"
  build build-check --enable-debug --enable-sanitizers --enable-werror
  echo "== unit tests and fuzz runs (make check)"
  (cd build-check && make -j2 check FUZZ_SECONDS="${FUZZ_SECONDS:-20}") || {
    cat build-check/tests/unit/*.log 2>/dev/null | tail -100
    exit 1
  }
  cat build-check/tests/unit/*.log | grep -E '^(Running suite|[0-9]+%: Checks)' || true
  echo "== valgrind over the unit tests"
  build build-valgrind --enable-debug --enable-werror
  (cd build-valgrind && make -j2 check TESTS= >/dev/null)
  tests/valgrind-run build-valgrind
}

case "${1:-}" in
  deps) deps ;;
  demo) deps; demo ;;
  test) deps; test_all ;;
  *) echo "usage: $0 demo|test|deps" >&2; exit 2 ;;
esac
