#!/usr/bin/env bash
# Set up everything multimodal_s2s needs on a fresh Debian machine: system packages (when
# run as root), then a virtual environment outside the checkout with the package installed.
# The venv lives at $MS2S_VENV (default ~/.venvs/ms2s) and is reused by later runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MS2S_VENV:-$HOME/.venvs/ms2s}"

if [ "$(id -u)" = 0 ] && [ -s "$root/scripts/system-packages.txt" ]; then
  missing=$(grep -v '^#' "$root/scripts/system-packages.txt" | xargs -r dpkg-query -W 2>&1 >/dev/null | grep -c . || true)
  if [ "$missing" != 0 ]; then
    apt-get update -qq
    grep -v '^#' "$root/scripts/system-packages.txt" | xargs -r apt-get install -y -qq --no-install-recommends >/dev/null
  fi
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.ms2s-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$root[dev]"
  touch "$stamp"
elif ! "$venv/bin/python" -c "import multimodal_s2s" 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps -e "$root"
fi
echo "environment ready: $venv"
