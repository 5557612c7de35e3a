#!/usr/bin/env bash
# Pins every k8s.io staging module to the tag matching the Kubernetes release, read from the
# release's own go.mod on the Go module proxy. k8s.io/kubernetes requires its staging modules at
# v0.0.0 through ./staging replaces that only apply when it is the main module.
set -euo pipefail
kv=${1:?usage: sync-replaces.sh vX.Y.Z}
sv="v0.${kv#v1.}"
cd "$(dirname "$0")"
gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@${kv}" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$gomod")
args=()
for m in $mods; do args+=("-replace=${m}=${m}@${sv}"); done
go mod edit -require="k8s.io/kubernetes@${kv}" "${args[@]}"
grep -E '^(go|godebug) ' "$gomod"
go mod tidy
