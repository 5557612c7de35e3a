#!/usr/bin/env bash
# Builds the Python virtual environment the tests use (PyPI gguf, model-signing; every package
# pinned in requirements.txt), cached outside the repository keyed by the requirements and the
# Python version, and links it to hack/bin/python-tools. A cached venv is reused (seconds).
#
#   hack/python-tools/install.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin_dir="$here/../bin"
cache_root=${SECAI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/tools}
python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "python-tools: $python is required" >&2; exit 1; }
key=$({ cat "$here/requirements.txt"; "$python" --version; } | sha256sum | cut -c1-16)
dest="$cache_root/python-tools/$key"
mkdir -p "$bin_dir"

if [ ! -e "$dest/installed" ]; then
  echo "python-tools: building the venv (first build takes a minute)..."
  # A venv's scripts name its absolute path, so it is built where it lives; the marker comes last
  # and a half-built one is started again.
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  "$python" -m venv "$dest"
  "$dest/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$here/requirements.txt"
  "$dest/bin/pip" check >/dev/null
  touch "$dest/installed"
else
  echo "python-tools: cached ($dest)"
fi
ln -sfn "$dest" "$bin_dir/python-tools"
