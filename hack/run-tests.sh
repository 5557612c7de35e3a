#!/usr/bin/env bash
# The project's test command (`make test` runs it after `npm ci` and `make tools`): every jest suite
# — static checks, unit tests, and integration tests against a real control plane — then one plain
# line "N passed, N failed". Extra arguments go to jest (for example a path pattern).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
out=.test-output
mkdir -p "$out"
# Each run has its own control plane and report, so that runs in one checkout do not collide.
export SECAI_TEST_RUN_ID=$$
report="$out/jest-$SECAI_TEST_RUN_ID.json"

# The jest global setup stops its control plane itself; this covers interrupts and crashes.
cleanup() {
  tsx hack/control-plane/cli.ts down "$PWD/$out/control-plane-$SECAI_TEST_RUN_ID" >/dev/null 2>&1 || true
  rm -f "$report"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NODE_OPTIONS=--experimental-vm-modules jest --json --outputFile="$report" "$@"
status=$?

if [ -s "$report" ]; then
  cp "$report" "$out/jest.json"
  node hack/test-summary.mjs "$report"
else
  echo "0 passed, 1 failed"
fi
exit "$status"
