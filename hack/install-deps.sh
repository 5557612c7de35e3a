#!/usr/bin/env bash
# Installs the Debian packages of hack/apt-packages.txt that are missing (needs root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
while read -r pkg; do
  case $pkg in ''|'#'*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < "$here/apt-packages.txt"
if [ ${#missing[@]} -eq 0 ]; then
  echo "apt packages: all present"
  exit 0
fi
echo "apt packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
