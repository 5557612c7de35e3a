#!/usr/bin/env bash
# Verifies, offline, that an image archive is the image its cosign signature covers, and prints the
# image's manifest digest. Fails, naming the image, when the signature does not verify with the key,
# when the saved signature is missing, or when the archive holds another manifest than the signed one.
#
# Usage: hack/images/verify.sh COSIGN_PUB ARCHIVE.oci.tar SIGNED_DIR
#   SIGNED_DIR: what `cosign save` wrote for the image (hack/images/build.sh: <name>.signed/)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
pub=${1:?usage: verify.sh COSIGN_PUB ARCHIVE SIGNED_DIR}
archive=${2:?usage: verify.sh COSIGN_PUB ARCHIVE SIGNED_DIR}
signed=${3:?usage: verify.sh COSIGN_PUB ARCHIVE SIGNED_DIR}
cosign=$repo/hack/bin/cosign

fail() {
  echo "image $image: $*" >&2
  exit 1
}

# The archive's one manifest: its digest and its name (org.opencontainers.image.ref.name).
read -r digest image < <(tar -xOf "$archive" ./index.json | node -e '
  const index = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (!Array.isArray(index.manifests) || index.manifests.length !== 1) { console.log("- -"); process.exit(0); }
  const m = index.manifests[0];
  console.log(m.digest, (m.annotations ?? {})["org.opencontainers.image.ref.name"] ?? "-");
') || { image=$archive; fail "not an OCI archive with an index.json"; }
[ "$image" != - ] || image=$archive
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || fail "the archive must hold exactly one manifest ($archive)"
[ -d "$signed" ] || fail "no signature: $signed does not exist"
[ -x "$cosign" ] || fail "cannot verify: $cosign is missing (hack/install-tools.sh images)"

# Keyed signature, no transparency log (the build signs offline); --local-image reads `cosign save`.
if ! result=$("$cosign" verify --key "$pub" --insecure-ignore-tlog=true --local-image "$signed" 2>&1); then
  fail "signature does not verify with $pub: $(printf '%s' "$result" | grep -v '^WARNING' | tail -n 3 | tr '\n' ' ')"
fi
signed_digests=$(printf '%s\n' "$result" | node -e '
  const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.startsWith("["));
  for (const l of lines) for (const s of JSON.parse(l)) console.log(s.critical.image["docker-manifest-digest"]);
')
grep -qxF "$digest" <<<"$signed_digests" ||
  fail "the archive's manifest $digest is not the signed one (${signed_digests//$'\n'/ })"
echo "$digest"
