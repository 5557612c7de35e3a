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
# No package may start a service while installing: Debian's tor would start a client of the public
# Tor network. The project runs tor itself, only inside lab namespaces (policy-rc.d, as in images).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# And it stays off on machines with systemd.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now tor.service tor@default.service >/dev/null 2>&1 || true
fi
