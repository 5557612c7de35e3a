#!/usr/bin/env bash
# The project's test command (`make test` runs it after `npm ci` and `make tools`): every jest suite
# — static checks, unit tests, and integration tests against a real control plane — then one plain
# line "N passed, N failed". Extra arguments go to jest (for example a path pattern).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
out=.test-output
mkdir -p "$out"
rm -f "$out/jest.json"

# The jest global setup stops its control plane itself; this covers interrupts and crashes.
cleanup() { tsx hack/control-plane/cli.ts down "$PWD/$out/control-plane" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

NODE_OPTIONS=--experimental-vm-modules jest --json --outputFile="$out/jest.json" "$@"
status=$?

if [ -s "$out/jest.json" ]; then
  node hack/test-summary.mjs "$out/jest.json"
else
  echo "0 passed, 1 failed"
fi
exit "$status"
