#!/usr/bin/env bash
# Builds llama.cpp's own llama-server from the very llama.cpp sources the inference worker runs:
# the git bundle inside the npm package node-llama-cpp (node_modules/node-llama-cpp/llama/
# gitRelease.bundle), so the comparison in test/bench/inference-vs-llama-server.ts is release
# against release with nothing downloaded. CPU only, no libcurl. The binary is cached outside the
# repository by commit and build flags; prints its path.
#
#   hack/llama-server/build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[ -f "$bundle" ] || { echo "llama-server: $bundle is missing: run npm install first" >&2; exit 1; }
commit=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" { print $1 }')
[[ $commit =~ ^[0-9a-f]{40}$ ]] || { echo "llama-server: cannot read the bundle's commit" >&2; exit 1; }
# Built for this CPU (GGML_NATIVE): the prebuilt @node-llama-cpp/linux-x64 picks, at run time, the
# best of its CPU variants for the host; a native build is what someone choosing llama-server on
# this machine would run, so the comparison does not favour the worker.
flags=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF)
# Native code is for this CPU: its model name is part of the key.
key=$(printf '%s\n' "$commit" "${flags[@]}" "$(cmake --version | head -1)" "$(gcc --version | head -1)" "$(grep -m1 'model name' /proc/cpuinfo)" | sha256sum | cut -c1-16)
cache=${SECAI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/tools}/llama-server/$commit/$key
if [ -x "$cache/llama-server" ]; then
  echo "$cache/llama-server"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
git clone --quiet "$bundle" "$work/src" 2>/dev/null
git -C "$work/src" checkout --quiet "$commit"
cmake -S "$work/src" -B "$work/build" "${flags[@]}" >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$cache/llama-server.tmp"
mv "$cache/llama-server.tmp" "$cache/llama-server"
echo "llama-server ${commit:0:12}: built in $(( $(date +%s) - started )) s" >&2
echo "$cache/llama-server"
