#!/usr/bin/env bash
# The project's test command (`make test` runs it after `npm ci` and `make tools`): every jest suite
# — static checks, unit tests, and integration tests against a real control plane — then one plain
# line "N passed, N failed". Extra arguments go to jest (for example a path pattern) and run those
# suites in one jest run.
#
# Without arguments, the benchmarks (test/bench/) run after everything else, one at a time: their
# bars compare timings and memory (against openssl, bare nft, a 2 s fleet bar), and the other suites
# running alongside on two cores would distort them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
out=.test-output
mkdir -p "$out"
# Each run has its own control plane and reports, so that runs in one checkout do not collide.
export SECAI_TEST_RUN_ID=$$
reports=()

# The jest global setup stops its control plane itself; this covers interrupts and crashes.
cleanup() {
  tsx hack/control-plane/cli.ts down "$PWD/$out/control-plane-$SECAI_TEST_RUN_ID" >/dev/null 2>&1 || true
  rm -f "${reports[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# jest_run NAME [jest args]: one jest run with its JSON report in $out/jest-NAME.json.
status=0
jest_run() {
  local name=$1 report="$out/jest-$SECAI_TEST_RUN_ID-$1.json"
  shift
  reports+=("$report")
  NODE_OPTIONS=--experimental-vm-modules jest --json --outputFile="$report" "$@" || status=1
  if [ -s "$report" ]; then cp "$report" "$out/jest-$name.json"; fi
}

if [ $# -gt 0 ]; then
  jest_run selected "$@"
else
  SECAI_SKIP_BENCHMARKS=true jest_run suites
  jest_run benchmarks --runInBand test/bench/
fi

node hack/test-summary.mjs "${reports[@]}"
exit "$status"
